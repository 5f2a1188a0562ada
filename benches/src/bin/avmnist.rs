//! The AV-MNIST fusion benchmark (`cargo xtask bench fusion`): trains an
//! image-only and an audio-only model, every model-level combiner of them,
//! and every feature-level and joint fusion method, for several seeds, and
//! writes `avmnist.json` (every outcome, test and validation accuracy per
//! seed, and the run's provenance), then renders `avmnist.md` and
//! `avmnist.svg` from it. The headline is the fused method with the best
//! validation accuracy, reported with its test accuracy; combiners that are
//! the same for two models are shown once. `--render` (`cargo xtask bench
//! fusion --report-only`) renders the report again from `avmnist.json`
//! without training.
//!
//! Each (method, seed) runs in a child process of this binary, so its peak
//! memory is its own. The model-level job trains the two unimodal models
//! (reported as such) and combines them, so its peak memory is shared.
//!
//! `--audio-encoder DIR` puts a frozen pretrained audio encoder (e.g.
//! whisper-tiny.en) in place of the from-scratch audio CNN in every job: the
//! parent embeds every clip once (kept in `--cache DIR`), the jobs train on
//! the embeddings. `--split speakers` replaces FSDD's official split by
//! leave-one-speaker-out: six folds, each testing on the 500 pairs of a
//! speaker no model heard in training. Each setting writes its own report
//! (`avmnist[-ENCODER][-speakers].{json,md,svg}`). `--only image` or
//! `--only audio` trains one unimodal model without the combiners.
//!
//! Usage: `avmnist --data DIR --out DIR [--seeds N] [--epochs N] [--only a,b] [--parallel N]
//! [--audio-encoder DIR] [--split official|speakers] [--cache DIR]`, or
//! `avmnist --render --out DIR [--audio-encoder DIR] [--split …]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use polymodal::Weights;
use polymodal::core::weights::save_f32;
use polymodal::fusion::{ModalityDropout, Pool, Stacking, StackingConfig, Voting, WeightedAverage};
use polymodal::train::{
    Bar, BarChart, Batcher, ConfusionMatrix, Dataset, EmbedPlan, Embedded, EmbeddedSamples,
    EncoderChoice, EncoderMode, Example, FeatureCache, FeatureConfig, LrSchedule, Progress,
    RngGuard, Samples, TrainConfig, Trainer, avmnist_features, evaluate, folder_features, k_folds,
    load_avmnist, open_avmnist, recall_at_k, stratified_holdout,
};
use polymodal::{ClassifierConfig, Error, FusionKind, Modality, MultimodalClassifier, Result};
use polymodal_benches::report::{self, Align, Goal, Provenance, Table, Verdict};

/// The model-level job (also the unimodal models).
const LATE_JOB: &str = "late";

/// Jobs that train one unimodal model and nothing else (only on request:
/// [`LATE_JOB`] trains both and reports them).
const UNIMODAL_JOBS: [&str; 2] = ["image", "audio"];

/// FSDD's speakers: fold `k` of `--split speakers` tests on speaker `k - 1`.
const SPEAKERS: [&str; 6] = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"];

/// The goals of the leave-one-speaker-out split: audio alone, and every
/// fused method (none below the best single modality).
const SPEAKERS_AUDIO_GOAL: f64 = 0.99;

/// Where each test pair comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    /// FSDD's official split (recordings 0–4 are the test set).
    Official,
    /// Leave one speaker out: six folds.
    Speakers,
}

impl Split {
    fn name(self) -> &'static str {
        match self {
            Split::Official => "official",
            Split::Speakers => "speakers",
        }
    }
}

/// The jobs: [`LATE_JOB`], then one per fusion layer of the registry
/// ([`FusionKind::ALL`] but `none`), named as the kind.
fn jobs() -> Vec<&'static str> {
    let fused = FusionKind::ALL
        .into_iter()
        .filter(|&kind| kind != FusionKind::None)
        .map(FusionKind::name);
    std::iter::once(LATE_JOB).chain(fused).collect()
}
/// The validation hold-out (10 % of each digit of the training pairs) is the
/// same for every seed, so seeds vary only the models.
const HOLDOUT_SEED: u64 = 2026;
const MODALITIES: [Modality; 2] = [Modality::Image, Modality::Audio];
/// Modality dropout of every fused model (see docs/fusion.md); the joint
/// ones may train with another (`--joint-modality-dropout`).
const MODALITY_DROPOUT: f64 = 0.2;
/// Folds of the out-of-fold predictions that stacking is fitted on.
const STACKING_FOLDS: usize = 3;
/// Logistic regression on this pairing (shared/README.md).
const REFERENCE: [(&str, f32); 3] = [("image", 0.883), ("audio", 0.937), ("fused", 0.973)];

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Outcome {
    method: String,
    family: String,
    seed: u64,
    /// Test accuracy.
    accuracy: f32,
    /// Accuracy on the validation pairs, which the headline chooses on
    /// (absent from runs saved before it was recorded).
    #[serde(default)]
    valid_accuracy: Option<f32>,
    macro_f1: f32,
    without_image: Option<f32>,
    without_audio: Option<f32>,
    parameters: usize,
    /// Parameters a training step updates (absent from runs saved before
    /// it was recorded).
    #[serde(default)]
    trained_parameters: Option<usize>,
    /// Mean wall time of a training epoch (none for model-level rows).
    #[serde(default)]
    epoch_seconds: Option<f64>,
    train_seconds: f64,
    peak_mb: f64,
    /// Audio → image retrieval on the test set, class-level recall@1 and @5.
    retrieval: Option<[f32; 2]>,
}

/// What `avmnist.json` holds: the settings of the run and every outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    seeds: u64,
    epochs: usize,
    parallel: usize,
    total_seconds: f64,
    machine: String,
    /// Command, date, commit, machine and tools of the run (absent from
    /// runs saved before it was recorded).
    #[serde(default)]
    provenance: Option<Provenance>,
    outcomes: Vec<Outcome>,
    /// `official` or `speakers` (absent from runs saved before there was a
    /// choice: official).
    #[serde(default = "official")]
    split: String,
    /// The frozen pretrained audio encoder's folder name, when the audio
    /// side is one.
    #[serde(default)]
    audio_encoder: Option<String>,
    /// The build that ran: `release` (`cargo xtask bench`), or `dev`
    /// (dependencies optimised, this crate at opt-level 1).
    #[serde(default = "release")]
    build: String,
    /// What `benches/python/avmnist_logreg_reference.py` printed for the
    /// audio encoder (logistic regression on the Hugging Face encoder's
    /// pooled vectors), or `{"skipped": why}`; absent without an audio
    /// encoder and from runs saved before it was run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reference: Option<serde_json::Value>,
    /// The fused models' unimodal auxiliary loss weight (0, or absent
    /// from runs saved before it could be chosen: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    unimodal_weight: f64,
    /// The relative noise on the frozen encoder's embeddings in training
    /// (0, or absent from runs saved before it could be chosen: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    embedding_noise: f64,
    /// The joint fusion models' modality dropout (absent when it is
    /// [`MODALITY_DROPOUT`], as in runs saved before it could be chosen).
    #[serde(
        default = "modality_dropout",
        skip_serializing_if = "is_modality_dropout"
    )]
    joint_modality_dropout: f64,
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

fn modality_dropout() -> f64 {
    MODALITY_DROPOUT
}

fn is_modality_dropout(value: &f64) -> bool {
    *value == MODALITY_DROPOUT
}

/// `avmnist`, then the audio encoder's folder name, then `speakers` for
/// the leave-one-speaker-out split, then `unimodal` when the fused models
/// train with unimodal auxiliary losses of weight 1 (`unimodal-W` for
/// another weight W), then `noise-N` when the frozen embeddings train
/// with noise N, then `joint-dropout-P` when the joint models train with
/// modality dropout P other than [`MODALITY_DROPOUT`], joined by `-`.
fn report_stem(
    audio_encoder: Option<&str>,
    speakers: bool,
    unimodal_weight: f64,
    embedding_noise: f64,
    joint_modality_dropout: f64,
) -> String {
    let mut stem = "avmnist".to_string();
    if let Some(name) = audio_encoder {
        stem = format!("{stem}-{name}");
    }
    if speakers {
        stem.push_str("-speakers");
    }
    if unimodal_weight == 1.0 {
        stem.push_str("-unimodal");
    } else if unimodal_weight > 0.0 {
        stem = format!("{stem}-unimodal-{unimodal_weight}");
    }
    if embedding_noise > 0.0 {
        stem = format!("{stem}-noise-{embedding_noise}");
    }
    if joint_modality_dropout != MODALITY_DROPOUT {
        stem = format!("{stem}-joint-dropout-{joint_modality_dropout}");
    }
    stem
}

fn official() -> String {
    Split::Official.name().into()
}

fn release() -> String {
    "release".into()
}

/// The build of this binary.
fn this_build() -> String {
    if cfg!(debug_assertions) {
        "dev".into()
    } else {
        release()
    }
}

struct Args {
    data: PathBuf,
    out: PathBuf,
    seeds: u64,
    epochs: usize,
    only: Vec<String>,
    /// Jobs run at once (each then gets one compute thread).
    parallel: usize,
    /// Only rewrite the report from `avmnist.json`.
    render: bool,
    /// A frozen pretrained audio encoder in place of the audio CNN.
    audio_encoder: Option<PathBuf>,
    split: Split,
    /// Where the frozen encoder's embeddings are kept between runs.
    cache: PathBuf,
    /// In a job: the audio embeddings the parent computed.
    embeddings: Option<PathBuf>,
    /// The interpreter of the reference script (with torch, transformers
    /// and scikit-learn).
    python: String,
    /// With `--render`: run the reference again and keep it in the json.
    reference: bool,
    /// The fused models' unimodal auxiliary loss weight (0: none).
    unimodal_weight: f64,
    /// Relative noise on the frozen encoder's embeddings in training (0: none).
    embedding_noise: f64,
    /// Modality dropout of the joint fusion models.
    joint_modality_dropout: f64,
    job: Option<(String, u64, PathBuf)>,
}

impl Args {
    /// The report's file stem: `avmnist`, the audio encoder's folder name,
    /// `speakers` for that split.
    fn stem(&self) -> String {
        report_stem(
            self.encoder_name().as_deref(),
            self.split == Split::Speakers,
            self.unimodal_weight,
            self.embedding_noise,
            self.joint_modality_dropout,
        )
    }

    fn encoder_name(&self) -> Option<String> {
        let dir = self.audio_encoder.as_ref()?;
        Some(dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ))
    }

    /// Runs per job: seeds, or one fold per speaker.
    fn runs(&self) -> u64 {
        match self.split {
            Split::Official => self.seeds,
            Split::Speakers => SPEAKERS.len() as u64,
        }
    }
}

/// `v` as a finite, non-negative number, or an error naming `flag`.
fn non_negative(flag: &str, v: String) -> std::result::Result<f64, String> {
    match v.parse::<f64>() {
        Ok(x) if x >= 0.0 && x.is_finite() => Ok(x),
        _ => Err(format!("{flag}: `{v}` is not a non-negative number")),
    }
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut args = Args {
        data: PathBuf::from("../shared/data/avmnist"),
        out: PathBuf::from("docs/benchmarks"),
        seeds: 3,
        epochs: 20,
        only: Vec::new(),
        parallel: 1,
        render: false,
        audio_encoder: None,
        split: Split::Official,
        cache: PathBuf::from("target/polymodal-cache"),
        embeddings: None,
        python: "python3".into(),
        reference: false,
        unimodal_weight: 0.0,
        embedding_noise: 0.0,
        joint_modality_dropout: MODALITY_DROPOUT,
        job: None,
    };
    let mut job = (None, 1, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: `{v}` is not a number"))
        };
        match flag.as_str() {
            "--data" => args.data = value()?.into(),
            "--out" => args.out = value()?.into(),
            "--seeds" => args.seeds = number(value()?)?,
            "--epochs" => args.epochs = number(value()?)? as usize,
            "--only" => args.only = value()?.split(',').map(str::to_string).collect(),
            "--parallel" => args.parallel = number(value()?)?.max(1) as usize,
            "--render" => args.render = true,
            "--audio-encoder" => args.audio_encoder = Some(value()?.into()),
            "--cache" => args.cache = value()?.into(),
            "--embeddings" => args.embeddings = Some(value()?.into()),
            "--python" => args.python = value()?,
            "--reference" => args.reference = true,
            "--unimodal-weight" => args.unimodal_weight = non_negative(&flag, value()?)?,
            "--embedding-noise" => args.embedding_noise = non_negative(&flag, value()?)?,
            "--joint-modality-dropout" => {
                // The fusion crate states the valid range, in one place.
                let v = value()?;
                let rate = v
                    .parse::<f64>()
                    .map_err(|_| format!("{flag}: `{v}` is not a number"))
                    .and_then(|p| ModalityDropout::new(p).map_err(|e| format!("{flag}: {e}")))?;
                args.joint_modality_dropout = rate.prob();
            }
            "--split" => {
                args.split = match value()?.as_str() {
                    "official" => Split::Official,
                    "speakers" => Split::Speakers,
                    other => {
                        return Err(format!(
                            "--split: `{other}` is neither `official` nor `speakers`"
                        ));
                    }
                }
            }
            "--job" => job.0 = Some(value()?),
            "--seed" => job.1 = number(value()?)?,
            "--json" => job.2 = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let mut jobs = jobs();
    jobs.extend(UNIMODAL_JOBS);
    if let Some(name) = args.only.iter().find(|n| !jobs.contains(&n.as_str())) {
        return Err(format!("unknown job `{name}` (jobs: {})", jobs.join(", ")));
    }
    let asked = |name: &str| args.only.iter().any(|o| o == name);
    if asked(LATE_JOB) && UNIMODAL_JOBS.iter().any(|&j| asked(j)) {
        return Err(format!(
            "`{LATE_JOB}` already trains the image and audio models: ask for it or for them"
        ));
    }
    if args.embedding_noise > 0.0 && args.audio_encoder.is_none() {
        return Err(
            "--embedding-noise perturbs a frozen encoder's embeddings: give --audio-encoder".into(),
        );
    }
    if args.seeds == 0 || args.epochs == 0 {
        return Err("--seeds and --epochs must be positive".into());
    }
    args.job = match job {
        (Some(name), seed, Some(json)) => Some((name, seed, json)),
        (None, _, None) => None,
        _ => return Err("--job needs --json".into()),
    };
    Ok(args)
}

fn main() {
    let result = parse_args()
        .map_err(Error::Config)
        .and_then(|args| match &args.job {
            Some((name, seed, json)) => run_job(&args, name, *seed, json),
            None if args.render => render(&args),
            None => run_all(&args),
        });
    if let Err(error) = result {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- parent

fn run_all(args: &Args) -> Result<()> {
    let jobs: Vec<&str> = if args.only.is_empty() {
        jobs()
    } else {
        args.only.iter().map(String::as_str).collect()
    };
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let scratch = std::env::temp_dir().join(format!("polymodal-avmnist-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| Error::io(&scratch, e))?;
    let started = Instant::now();
    let provenance = Provenance::capture();
    let embeddings = match &args.audio_encoder {
        Some(dir) => {
            let path = scratch.join("audio-embeddings.safetensors");
            embed_audio(args, dir, &path)?;
            Some(path)
        }
        None => None,
    };
    let exe = std::env::current_exe().map_err(|e| Error::io("self", e))?;
    let queue: Vec<(String, u64)> = (1..=args.runs())
        .flat_map(|seed| jobs.iter().map(move |j| (j.to_string(), seed)))
        .collect();
    let mut running: Vec<(String, u64, PathBuf, std::process::Child)> = Vec::new();
    let mut outcomes = Vec::new();
    let mut queue = queue.into_iter();
    loop {
        while running.len() < args.parallel {
            let Some((job, seed)) = queue.next() else {
                break;
            };
            eprintln!(
                "== {job}, seed {seed} ({:.0} s so far)",
                started.elapsed().as_secs_f64()
            );
            let json = scratch.join(format!("{job}-{seed}.json"));
            let mut command = Command::new(&exe);
            command
                .arg("--data")
                .arg(&args.data)
                .args(["--epochs", &args.epochs.to_string()])
                .args(["--job", &job, "--seed", &seed.to_string()])
                .arg("--json")
                .arg(&json)
                .args(["--split", args.split.name()])
                .args(["--unimodal-weight", &args.unimodal_weight.to_string()])
                .args(["--embedding-noise", &args.embedding_noise.to_string()])
                .args([
                    "--joint-modality-dropout",
                    &args.joint_modality_dropout.to_string(),
                ]);
            if let (Some(dir), Some(embeddings)) = (&args.audio_encoder, &embeddings) {
                command
                    .arg("--audio-encoder")
                    .arg(dir)
                    .arg("--embeddings")
                    .arg(embeddings);
            }
            if args.parallel > 1 {
                command.env("RAYON_NUM_THREADS", "1");
            }
            let child = command.spawn().map_err(|e| Error::io("avmnist child", e))?;
            running.push((job, seed, json, child));
        }
        if running.is_empty() {
            break;
        }
        // Collect whichever job finishes first.
        let finished = loop {
            let mut done = None;
            for (i, (_, _, _, child)) in running.iter_mut().enumerate() {
                if let Some(status) = child
                    .try_wait()
                    .map_err(|e| Error::io("avmnist child", e))?
                {
                    done = Some((i, status));
                    break;
                }
            }
            match done {
                Some(found) => break found,
                None => std::thread::sleep(std::time::Duration::from_millis(200)),
            }
        };
        let (index, status) = finished;
        let (job, seed, json, _) = running.remove(index);
        if !status.success() {
            return Err(Error::Invalid(format!(
                "job {job} (seed {seed}) failed: {status}"
            )));
        }
        let text = std::fs::read_to_string(&json).map_err(|e| Error::io(&json, e))?;
        let mut results: Vec<Outcome> =
            serde_json::from_str(&text).map_err(|e| Error::Config(e.to_string()))?;
        outcomes.append(&mut results);
    }
    let saved = Saved {
        seeds: args.runs(),
        epochs: args.epochs,
        parallel: args.parallel,
        total_seconds: started.elapsed().as_secs_f64(),
        machine: provenance.machine.clone(),
        provenance: Some(provenance),
        outcomes,
        split: args.split.name().into(),
        audio_encoder: args.encoder_name(),
        build: this_build(),
        reference: logreg_reference(args),
        unimodal_weight: args.unimodal_weight,
        embedding_noise: args.embedding_noise,
        joint_modality_dropout: args.joint_modality_dropout,
    };
    save(&args.out.join(format!("{}.json", args.stem())), &saved)?;
    let _ = std::fs::remove_dir_all(&scratch);
    write_report(args, Report::new(saved, None))
}

/// Rewrites `avmnist.md` and `avmnist.svg` from `avmnist.json`, without
/// training (`cargo xtask bench fusion --report-only`).
fn render(args: &Args) -> Result<()> {
    let path = args.out.join(format!("{}.json", args.stem()));
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mut saved: Saved = serde_json::from_str(&text)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    if args.reference {
        saved.reference = logreg_reference(args);
        save(&path, &saved)?;
    }
    write_report(args, Report::new(saved, Some(Provenance::capture())))
}

/// Writes a run as the json its report is rendered from.
fn save(path: &Path, saved: &Saved) -> Result<()> {
    let json = serde_json::to_string_pretty(saved).map_err(|e| Error::Config(e.to_string()))?;
    std::fs::write(path, json).map_err(|e| Error::io(path, e))
}

/// Logistic regression on the Hugging Face encoder's pooled vectors of the
/// same clips (`benches/python/avmnist_logreg_reference.py`), when the
/// audio side is a pretrained encoder: the figure a frozen encoder's head
/// is held to. A reference that cannot run is kept as `{"skipped": why}`.
fn logreg_reference(args: &Args) -> Option<serde_json::Value> {
    let encoder = args.audio_encoder.as_ref()?;
    eprintln!(
        "reference: logistic regression on {} (Python)",
        encoder.display()
    );
    let spec = serde_json::json!({ "data": args.data, "encoder": encoder, "cache": args.cache });
    let output =
        polymodal_benches::python_reference(&args.python, "avmnist_logreg_reference.py", &spec);
    Some(output.unwrap_or_else(|why| serde_json::json!({ "skipped": why })))
}

fn write_report(args: &Args, report: Report) -> Result<()> {
    let write = |name: &str, content: String| {
        let path = args.out.join(name);
        std::fs::write(&path, content).map_err(|e| Error::io(&path, e))
    };
    let markdown = report.markdown();
    write(&format!("{}.md", args.stem()), markdown.clone())?;
    write(&format!("{}.svg", args.stem()), report.chart())?;
    println!("{markdown}");
    Ok(())
}

/// Mean and sample standard deviation.
fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Model-level combiners that compute the same scores as another for two
/// models, so that the report shows them once: (shown, the same as it, the
/// pair's label in the chart, which has room for about 35 characters).
/// Soft voting (voting.rs) is the mean of the present models' probabilities
/// and the equal-weight linear pool (late.rs) divides the same sum by the
/// same count, for any sample that at least one model sees.
const IDENTICAL_FOR_TWO_MODELS: [(&str, &str, &str); 1] = [(
    "weighted-average (equal weights)",
    "soft voting",
    "equal-weight average = soft voting",
)];

/// Mean validation accuracies closer than this are a tie.
const TIE: f64 = 1e-6;

/// The goal for the best fused model's test accuracy.
const ACCURACY_GOAL: f64 = 0.995;

struct Row {
    method: String,
    family: String,
    runs: Vec<Outcome>,
    /// Methods with the same figures by construction, folded into this row.
    same_as: Vec<String>,
    /// The label in the chart, when not the method's name.
    chart_label: Option<String>,
}

impl Row {
    fn stat(&self, f: impl Fn(&Outcome) -> Option<f32>) -> Option<(f64, f64)> {
        let values: Option<Vec<f64>> = self.runs.iter().map(|o| f(o).map(f64::from)).collect();
        values.filter(|v| !v.is_empty()).map(|v| mean_std(&v))
    }

    fn accuracy(&self) -> (f64, f64) {
        self.stat(|o| Some(o.accuracy)).expect("at least one run")
    }

    /// Mean and std of the validation accuracy; `None` when a run did not
    /// record it (`avmnist.json` written before it was).
    fn valid(&self) -> Option<(f64, f64)> {
        self.stat(|o| o.valid_accuracy)
    }

    fn label(&self) -> String {
        std::iter::once(self.method.as_str())
            .chain(self.same_as.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" = ")
    }
}

/// Groups outcomes by method, in the families' order.
fn rows(outcomes: &[Outcome]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for o in outcomes {
        match rows.iter_mut().find(|r| r.method == o.method) {
            Some(row) => row.runs.push(o.clone()),
            None => rows.push(Row {
                method: o.method.clone(),
                family: o.family.clone(),
                runs: vec![o.clone()],
                same_as: Vec::new(),
                chart_label: None,
            }),
        }
    }
    let order = [
        "unimodal",
        "early (feature-level)",
        "late (model-level)",
        "joint",
    ];
    rows.sort_by_key(|r| order.iter().position(|f| *f == r.family));
    rows
}

/// Folds each row that [`IDENTICAL_FOR_TWO_MODELS`] names into the row it
/// equals, when every seed's figures agree (as they must); returns a
/// warning for a pair whose figures differ, which both stay.
fn collapse_identical(rows: &mut Vec<Row>) -> Vec<String> {
    let figures = |row: &Row| {
        let mut runs: Vec<_> = row
            .runs
            .iter()
            .map(|o| {
                (
                    o.seed,
                    o.accuracy,
                    o.macro_f1,
                    o.without_image,
                    o.without_audio,
                    o.valid_accuracy,
                )
            })
            .collect();
        runs.sort_by_key(|r| r.0);
        runs
    };
    let mut warnings = Vec::new();
    for (shown, same, chart_label) in IDENTICAL_FOR_TWO_MODELS {
        let find = |rows: &[Row], name: &str| rows.iter().position(|r| r.method == name);
        let (Some(s), Some(d)) = (find(rows, shown), find(rows, same)) else {
            continue;
        };
        if figures(&rows[s]) == figures(&rows[d]) {
            let duplicate = rows.remove(d);
            let s = find(rows, shown).expect("still there");
            rows[s].same_as.push(duplicate.method);
            rows[s].chart_label = Some(chart_label.to_string());
        } else {
            warnings.push(format!(
                "{same} should give the same figures as {shown} with two models, but they \
                 differ: both are shown"
            ));
        }
    }
    warnings
}

/// The method a headline reports.
struct Pick<'a> {
    row: &'a Row,
    /// Chosen on validation accuracy; `false`: on test accuracy, for a run
    /// that did not record validation accuracies.
    on_validation: bool,
    /// The other candidates tied with it.
    tied: Vec<&'a str>,
}

/// The best of `candidates` on mean validation accuracy, ties going to
/// fewer parameters, then to the first in the table; when any candidate
/// lacks validation accuracies, the best on mean test accuracy instead
/// (marked by `on_validation: false`).
fn pick_best<'a>(candidates: &[&'a Row]) -> Option<Pick<'a>> {
    let on_validation = candidates.iter().all(|r| r.valid().is_some());
    let score = |r: &Row| {
        if on_validation {
            r.valid().map_or(f64::NEG_INFINITY, |v| v.0)
        } else {
            r.accuracy().0
        }
    };
    let best = candidates
        .iter()
        .map(|r| score(r))
        .fold(f64::NEG_INFINITY, f64::max);
    let tied: Vec<&'a Row> = candidates
        .iter()
        .copied()
        .filter(|r| best - score(r) < TIE)
        .collect();
    let row = *tied.iter().min_by_key(|r| r.runs[0].parameters)?;
    Some(Pick {
        row,
        on_validation,
        tied: tied
            .iter()
            .filter(|r| r.method != row.method)
            .map(|r| r.method.as_str())
            .collect(),
    })
}

struct Report {
    rows: Vec<Row>,
    saved: Saved,
    /// Figures that should agree but do not.
    warnings: Vec<String>,
    /// Set when the report is rendered from `avmnist.json` after the run.
    rendered: Option<Provenance>,
}

impl Report {
    fn new(saved: Saved, rendered: Option<Provenance>) -> Self {
        let mut rows = rows(&saved.outcomes);
        let warnings = collapse_identical(&mut rows);
        Self {
            rows,
            saved,
            warnings,
            rendered,
        }
    }

    /// The report's file stem (as [`Args::stem`]).
    fn stem(&self) -> String {
        report_stem(
            self.saved.audio_encoder.as_deref(),
            self.speakers(),
            self.saved.unimodal_weight,
            self.saved.embedding_noise,
            self.saved.joint_modality_dropout,
        )
    }

    fn speakers(&self) -> bool {
        self.saved.split == Split::Speakers.name()
    }

    /// "N seeds", or "N folds (one per held-out speaker)".
    fn runs_text(&self) -> String {
        if self.speakers() {
            format!("{} folds (one per held-out speaker)", self.saved.seeds)
        } else {
            format!("{} seeds", self.saved.seeds)
        }
    }

    /// How the fused models' unimodal auxiliary losses train, for the
    /// report's text (nothing without them).
    fn unimodal_text(&self) -> String {
        let weight = self.saved.unimodal_weight;
        if weight > 0.0 {
            format!(
                " Every feature-level and joint fusion model also trains a linear head per \
                 modality on that modality's embedding, beside the fused head, and adds \
                 {weight} × the mean of their cross-entropies to its loss (unimodal auxiliary \
                 losses, `unimodal_weight`: [docs/fusion.md](../fusion.md)); its predictions \
                 come from the fused head alone."
            )
        } else {
            String::new()
        }
    }

    /// The fused models' modality dropout, for the report's text: one rate,
    /// or the joint models' beside it.
    fn dropout_text(&self) -> String {
        let joint = self.saved.joint_modality_dropout;
        if joint == MODALITY_DROPOUT {
            format!("{MODALITY_DROPOUT}")
        } else {
            format!("{MODALITY_DROPOUT} (the joint ones {joint})")
        }
    }

    /// How the frozen embeddings are perturbed in training, for the
    /// report's text (nothing without noise).
    fn noise_text(&self) -> String {
        let noise = self.saved.embedding_noise;
        if noise > 0.0 {
            format!(
                ". In training every model that reads the audio embeddings sees them with \
                 Gaussian noise of {noise} × each vector's root mean square added afresh at \
                 every step, one draw per clip shared by its pooled vector and every position \
                 (`embedding_noise`: [docs/fusion.md](../fusion.md)); validation and test read \
                 them as they are"
            )
        } else {
            String::new()
        }
    }

    /// What the audio side is, for the report's text.
    fn audio_side(&self) -> String {
        match &self.saved.audio_encoder {
            Some(name) => format!(
                "the audio side is the frozen pretrained `{name}` encoder: every clip is embedded \
                 once, before training, from the folder's own log-mel input (resampled to its \
                 rate); its vector is the mean over the encoder positions that hold audio, and \
                 joint fusion attends over those positions; only the fusion layer, the head and \
                 the image CNN train (the *trained* column){noise}",
                noise = self.noise_text()
            ),
            None => "the audio side is the from-scratch audio CNN".into(),
        }
    }

    /// Goal lines of the leave-one-speaker-out split.
    fn speaker_goals(&self) -> Vec<String> {
        let fmt = |(m, s): (f64, f64)| format!("{m:.4} ± {s:.4}");
        let mut lines = Vec::new();
        if let Some(audio) = self.rows.iter().find(|r| r.method == "audio") {
            let accuracy = audio.accuracy();
            lines.push(format!(
                "- Goal: audio alone ≥ {SPEAKERS_AUDIO_GOAL} on unseen speakers: {} ({}).",
                fmt(accuracy),
                verdict_text(Verdict::of(
                    Some(accuracy.0),
                    Some(Goal(SPEAKERS_AUDIO_GOAL))
                ))
            ));
            let per_speaker: Vec<String> = audio
                .runs
                .iter()
                .map(|o| {
                    let who = SPEAKERS.get(o.seed as usize - 1).copied().unwrap_or("?");
                    format!("{who} {:.4}", o.accuracy)
                })
                .collect();
            lines.push(format!(
                "- Audio alone per held-out speaker: {}.",
                per_speaker.join(", ")
            ));
        }
        let fused: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.family != "unimodal")
            .collect();
        if !fused.is_empty() {
            let below: Vec<String> = fused
                .iter()
                .filter(|r| r.accuracy().0 < ACCURACY_GOAL)
                .map(|r| r.label())
                .collect();
            lines.push(format!(
                "- Goal: every fused method ≥ {ACCURACY_GOAL} on unseen speakers: {}.",
                if below.is_empty() {
                    "met".to_string()
                } else {
                    format!("**MISSED** by {}", below.join(", "))
                }
            ));
        }
        lines
    }

    /// Lines on the logistic-regression reference of a pretrained audio
    /// encoder, side by side with this run's audio row.
    fn reference_lines(&self) -> Vec<String> {
        let Some(reference) = &self.saved.reference else {
            return Vec::new();
        };
        let what = "Reference: scikit-learn's logistic regression (C = 1, to convergence, no \
                    validation hold-out) on the vectors transformers' encoder of the same folder \
                    gives for the same clips, averaged over the positions that hold audio \
                    ([avmnist_logreg_reference.py](../../benches/python/avmnist_logreg_reference.py))";
        if let Some(why) = reference["skipped"].as_str() {
            return vec![format!("- {what}: not run ({why}).")];
        }
        let audio = self.rows.iter().find(|r| r.method == "audio");
        let ours = |seed: u64| {
            audio
                .and_then(|r| r.runs.iter().find(|o| o.seed == seed))
                .map_or("—".to_string(), |o| format!("{:.4}", o.accuracy))
        };
        let speaker_id = reference["speaker_identification"]
            .as_f64()
            .map_or(String::new(), |a| {
                format!(" Speaker identification (six classes) on the official split: {a:.4}.")
            });
        if !self.speakers() {
            let official = reference["official"].as_f64().unwrap_or(f64::NAN);
            let audio = audio.map_or("—".to_string(), |r| format!("{:.4}", r.accuracy().0));
            return vec![format!(
                "- {what}: audio alone {official:.4} on the official split (this run's audio \
                 row: {audio}).{speaker_id}"
            )];
        }
        let folds: Vec<(String, f64)> = reference["speakers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|pair| Some((pair[0].as_str()?.to_string(), pair[1].as_f64()?)))
            .collect();
        let values: Vec<f64> = folds.iter().map(|(_, a)| *a).collect();
        let (mean, sd) = mean_std(&values);
        let per_speaker: Vec<String> = folds
            .iter()
            .map(|(who, a)| {
                let seed = SPEAKERS
                    .iter()
                    .position(|s| s == who)
                    .map_or(0, |i| i as u64 + 1);
                format!("{who} {a:.4} (ours {})", ours(seed))
            })
            .collect();
        vec![format!(
            "- {what}, per held-out speaker: {}; mean {mean:.4} ± {sd:.4}.{speaker_id}",
            per_speaker.join(", ")
        )]
    }

    /// The best unimodal row's test accuracy; `None` when `--only` left
    /// the unimodal models out.
    fn best_unimodal(&self) -> Option<f64> {
        self.rows
            .iter()
            .filter(|r| r.family == "unimodal")
            .map(|r| r.accuracy().0)
            .reduce(f64::max)
    }

    /// The run's provenance; for a run saved before it was recorded, what
    /// `avmnist.json` says (machine, settings) and "not recorded".
    fn provenance(&self) -> Provenance {
        let saved = &self.saved;
        saved.provenance.clone().unwrap_or_else(|| Provenance {
            command: format!(
                "cargo xtask bench fusion{}",
                if saved.parallel > 1 {
                    format!(" --parallel {}", saved.parallel)
                } else {
                    String::new()
                }
            ),
            date: "not recorded (avmnist.json predates provenance)".into(),
            commit: "not recorded".into(),
            machine: saved.machine.clone(),
            os: "not recorded".into(),
            rustc: "not recorded".into(),
            tools: Vec::new(),
        })
    }

    fn headline(&self) -> String {
        let fmt = |(m, s): (f64, f64)| format!("{m:.4} ± {s:.4}");
        let fused: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.family != "unimodal")
            .collect();
        let Some(pick) = pick_best(&fused) else {
            return "**Headline**: no fused model in this run.".into();
        };
        let test = pick.row.accuracy();
        let verdict = Verdict::of(Some(test.0), Some(Goal(ACCURACY_GOAL)));
        let tied = if pick.tied.is_empty() {
            String::new()
        } else {
            format!(
                " It ties on validation with {} (ties go to fewer parameters, then to the \
                 table's order).",
                pick.tied.join(", ")
            )
        };
        if pick.on_validation {
            format!(
                "**Headline**: the fused method with the best validation accuracy is {} ({}); \
                 its test accuracy is **{}** over {}; goal ≥ {ACCURACY_GOAL}: {}.{tied}",
                pick.row.label(),
                fmt(pick.row.valid().expect("chosen on it")),
                fmt(test),
                self.runs_text(),
                verdict_text(verdict),
            )
        } else {
            format!(
                "**Headline (fallback, chosen on the test set)**: this avmnist.json was written \
                 before validation accuracies were recorded, so the method cannot be chosen on \
                 validation; until the next full run the headline is the fused method with the \
                 best *test* accuracy, which is optimistic: {} at **{}** over {} seeds (goal ≥ \
                 {ACCURACY_GOAL}: {}).{}",
                pick.row.label(),
                fmt(test),
                self.saved.seeds,
                verdict_text(verdict),
                if pick.tied.is_empty() {
                    String::new()
                } else {
                    format!(" Tied on test accuracy with {}.", pick.tied.join(", "))
                }
            )
        }
    }

    fn markdown(&self) -> String {
        let fmt = |s: Option<(f64, f64)>| {
            s.map_or("—".to_string(), |(m, sd)| format!("{m:.4} ± {sd:.4}"))
        };
        let saved = &self.saved;
        let mut title = "AV-MNIST: unimodal models and every fusion method".to_string();
        if let Some(name) = &saved.audio_encoder {
            title.push_str(&format!(", audio by frozen {name}"));
        }
        if self.speakers() {
            title.push_str(", on speakers never heard in training");
        }
        let mut provenance = self.provenance();
        if let Some(reference) = &self.saved.reference {
            let output = match reference["skipped"].as_str() {
                Some(why) => Err(why.to_string()),
                None => Ok(reference.clone()),
            };
            provenance = provenance.python_tools(&output);
        }
        let mut report = report::Report::new(&title, provenance);
        let json = format!("{}.json", self.stem());
        if let Some(rendered) = &self.rendered {
            report.text(format!(
                "Report rendered from [{json}]({json}) (no training) by `{}` on {} at commit {}.",
                rendered.command, rendered.date, rendered.commit
            ));
        }
        report.text(self.headline());
        let data = if self.speakers() {
            "**Data** (`shared/data/avmnist`): FSDD spoken digits paired with MNIST images, all 3000 \
             pairs, left one speaker out: each of six folds tests on the 500 pairs of one speaker \
             (george, jackson, lucas, nicolas, theo, yweweler in folds 1 to 6) and trains on the \
             other five speakers' 2500 pairs, of which 10 % of each digit are held out for \
             validation; fold k trains with seed k. No model hears the test speaker's voice."
        } else {
            "**Data** (`shared/data/avmnist`): FSDD spoken digits paired with MNIST images, FSDD's \
             official split: 2700 training pairs, of which 10 % of each digit (270, the same for \
             every seed) are held out for validation, and 300 test pairs."
        };
        let runs = self.runs_text();
        report.text(format!(
            "{data} Image: 28×28 grey, MNIST statistics. Audio for the from-scratch CNN: the first \
             second, 40 log-mel bands (32 ms window, 20 ms hop), standardised per clip.\n\n\
             **Models** ({build} build, CPU backend): {audio}. Each from-scratch encoder is two \
             convolution blocks (16 and 32 channels) giving 64-d tokens and a pooled vector on a \
             4×4 grid. Adam, batch 64, peak rate 2e-3 with one epoch of warm-up then cosine decay, \
             at most {epochs} epochs; the best validation epoch's model is tested. Fused models \
             train with modality dropout {dropout}, so the *without image / audio* columns (that \
             modality removed from every test sample) measure graceful degradation; \
             `contrastive` adds 0.5 × InfoNCE.{unimodal} The model-level rows combine the image and audio \
             models of the same run (their training time is included); `stacking` is fitted on \
             3-fold out-of-fold predictions of the training pairs (6 more trainings, included); \
             the fitted log pool's two weights are fitted on the validation pairs, so its \
             validation accuracy is measured on the pairs it was fitted to. Mean ± sample \
             standard deviation over {runs}.",
            audio = self.audio_side(),
            unimodal = self.unimodal_text(),
            build = saved.build,
            epochs = saved.epochs,
            dropout = self.dropout_text(),
        ));
        let mut table = Table::new(&[
            ("method", Align::Left),
            ("family", Align::Left),
            ("validation accuracy", Align::Right),
            ("test accuracy", Align::Right),
            ("macro-F1", Align::Right),
            ("without image", Align::Right),
            ("without audio", Align::Right),
            ("parameters", Align::Right),
            ("trained", Align::Right),
            ("epoch time", Align::Right),
            ("training time", Align::Right),
            ("peak memory", Align::Right),
        ]);
        for row in &self.rows {
            let time = row.stat(|o| Some(o.train_seconds as f32)).expect("runs");
            let memory = row.stat(|o| Some(o.peak_mb as f32)).expect("runs");
            table.row(vec![
                row.label(),
                row.family.clone(),
                fmt(row.valid()),
                fmt(Some(row.accuracy())),
                fmt(row.stat(|o| Some(o.macro_f1))),
                fmt(row.stat(|o| o.without_image)),
                fmt(row.stat(|o| o.without_audio)),
                row.runs[0].parameters.to_string(),
                row.runs[0]
                    .trained_parameters
                    .map_or("—".into(), |n| n.to_string()),
                row.stat(|o| o.epoch_seconds.map(|s| s as f32))
                    .map_or("—".into(), |(m, _)| format!("{m:.2} s")),
                format!("{:.0} ± {:.0} s", time.0, time.1),
                format!("{:.0} MB", memory.0),
            ]);
        }
        report.table(&table);
        report.text(format!(
            "{runs}, at most {} epochs per model (the best validation epoch's model is tested), \
             {:.0} s in all, {} job(s) at a time{}.",
            saved.epochs,
            saved.total_seconds,
            saved.parallel,
            if saved.parallel > 1 {
                " (each with one compute thread: training times are under that shared load)"
            } else {
                ""
            }
        ));
        let mut notes = vec![match self.best_unimodal() {
            Some(best) => {
                let losers: Vec<String> = self
                    .rows
                    .iter()
                    .filter(|r| r.family != "unimodal" && r.accuracy().0 <= best)
                    .map(Row::label)
                    .collect();
                format!(
                    "- Best unimodal test accuracy: {best:.4}. {}",
                    if losers.is_empty() {
                        "Every fusion method is above it.".to_string()
                    } else {
                        format!("Not above it: {}.", losers.join(", "))
                    }
                )
            }
            None => "- Unimodal models: not run (`--only` left them out), so no fused \
                     method is compared with them here."
                .to_string(),
        }];
        let reference: Vec<String> = REFERENCE
            .iter()
            .map(|(name, value)| format!("{name} {value}"))
            .collect();
        if !self.speakers() {
            // Measured on the official split, with the raw features.
            notes.push(format!(
                "- Logistic regression on the same pairing (shared/README.md): {}.",
                reference.join(", ")
            ));
        }
        for row in self.rows.iter().filter(|r| !r.same_as.is_empty()) {
            notes.push(format!(
                "- {} is shown once as `{}`: with two models soft voting's scores are exactly the \
                 equal-weight average's (both divide the sum of the present models' probabilities \
                 by their count). Hard voting is not the same: when the two models disagree, each \
                 top class gets one vote and the mean probability breaks the tie, so it picks one \
                 of the two models' top classes, where soft voting may pick a class that neither \
                 model ranks first.",
                row.same_as.join(", "),
                row.label()
            ));
        }
        if self.speakers() {
            notes.extend(self.speaker_goals());
        }
        notes.extend(self.reference_lines());
        notes.extend(self.warnings.iter().map(|w| format!("- **Warning**: {w}.")));
        let stem = self.stem();
        notes.push(format!(
            "- Chart: [{stem}.svg]({stem}.svg); every run: [{stem}.json]({stem}.json)."
        ));
        for row in &self.rows {
            if let Some(r1) = row.stat(|o| o.retrieval.map(|r| r[0])) {
                let r5 = row
                    .stat(|o| o.retrieval.map(|r| r[1]))
                    .expect("both recalls");
                notes.push(format!(
                    "- {}: audio → image retrieval over the test pairs, an image of the spoken digit \
                     counting as a hit: recall@1 {}, recall@5 {}.",
                    row.label(),
                    fmt(Some(r1)),
                    fmt(Some(r5))
                ));
            }
        }
        report.text(notes.join("\n"));
        report.markdown()
    }

    fn chart(&self) -> String {
        let colour = |family: &str| match family {
            "unimodal" => "#9e9e9e",
            "early (feature-level)" => "#1f77b4",
            "late (model-level)" => "#ff7f0e",
            _ => "#2ca02c",
        };
        let lowest = self.rows.iter().map(|r| r.accuracy().0).fold(1.0, f64::min);
        BarChart {
            title: format!(
                "AV-MNIST test accuracy (mean ± std over {})",
                self.runs_text()
            ),
            bars: self
                .rows
                .iter()
                .map(|r| Bar {
                    label: r.chart_label.clone().unwrap_or_else(|| r.label()),
                    value: r.accuracy().0,
                    error: Some(r.accuracy().1),
                    colour: colour(&r.family).into(),
                })
                .collect(),
            min: ((lowest - 0.02) * 50.0).floor() / 50.0,
            max: 1.0,
            reference: self
                .best_unimodal()
                .map(|best| ("best unimodal".into(), best)),
            legend: [
                "unimodal",
                "early (feature-level)",
                "late (model-level)",
                "joint",
            ]
            .iter()
            .map(|f| (f.to_string(), colour(f).to_string()))
            .collect(),
        }
        .svg()
    }
}

/// "met", or "**MISSED**" in bold.
fn verdict_text(verdict: Verdict) -> String {
    match verdict {
        Verdict::Missed => "**MISSED**".into(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------- child

struct Splits {
    train: Dataset,
    valid: Dataset,
    test: Dataset,
}

/// What every model of a job shares.
struct Job {
    splits: Splits,
    settings: TrainConfig,
    /// The batcher's settings (the audio encoder's inputs when pretrained).
    features: FeatureConfig,
    /// The frozen pretrained audio encoder, when chosen.
    audio: Option<EncoderChoice>,
    /// The fused models' unimodal auxiliary loss weight.
    unimodal_weight: f64,
    /// Relative noise on the frozen audio embeddings in training.
    embedding_noise: f64,
    /// Modality dropout of the joint fusion models.
    joint_modality_dropout: f64,
}

fn run_job(args: &Args, name: &str, seed: u64, json: &Path) -> Result<()> {
    let started = Instant::now();
    let data = load_avmnist(&args.data, &avmnist_features())?;
    let (mut train, mut test) = (data.train, data.test);
    let (features, audio) = match &args.audio_encoder {
        Some(dir) => {
            let (features, choice) = audio_setup(dir)?;
            let path = args.embeddings.as_ref().ok_or_else(|| {
                Error::Config("--audio-encoder in a job needs --embeddings".into())
            })?;
            let embeddings = Weights::open(path)?;
            // Joint fusion attends over the tokens; the rest read the pooled vector.
            let tokens = name.parse::<FusionKind>().is_ok_and(FusionKind::is_joint);
            attach_audio(&mut train, &embeddings, "train", tokens)?;
            attach_audio(&mut test, &embeddings, "test", tokens)?;
            (features, Some(choice))
        }
        None => (avmnist_features(), None),
    };
    let splits = job_splits(args.split, seed, train, test)?;
    eprintln!(
        "loaded {} train, {} validation, {} test pairs in {:.1} s",
        splits.train.examples.len(),
        splits.valid.examples.len(),
        splits.test.examples.len(),
        started.elapsed().as_secs_f64()
    );
    let settings = TrainConfig {
        epochs: args.epochs,
        batch_size: 64,
        learning_rate: 2e-3,
        seed,
        // One epoch (38 steps) of warm-up, then cosine decay.
        schedule: LrSchedule::WarmupCosine {
            warmup_steps: 38,
            min_factor: 0.02,
        },
        ..TrainConfig::default()
    };
    let job = Job {
        splits,
        settings,
        features,
        audio,
        unimodal_weight: args.unimodal_weight,
        embedding_noise: args.embedding_noise,
        joint_modality_dropout: args.joint_modality_dropout,
    };
    let mut outcomes = match name {
        LATE_JOB => late_job(&job)?,
        "image" => vec![unimodal(&job, Modality::Image)?.outcome],
        "audio" => vec![unimodal(&job, Modality::Audio)?.outcome],
        _ => vec![fused_job(&job, name.parse()?)?],
    };
    let peak = peak_memory_mb();
    for o in &mut outcomes {
        o.seed = seed;
        o.peak_mb = peak;
    }
    let text = serde_json::to_string(&outcomes).map_err(|e| Error::Config(e.to_string()))?;
    std::fs::write(json, text).map_err(|e| Error::io(json, e))
}

/// Training, validation and test pairs of run `seed`: FSDD's official split
/// (10 % of each digit of the training pairs held out for validation, the
/// same for every seed), or every pair of speaker `seed - 1` as the test set
/// and the other speakers' pairs split in the same way.
fn job_splits(split: Split, seed: u64, train: Dataset, test: Dataset) -> Result<Splits> {
    let (pool, test) = match split {
        Split::Official => (train, test),
        Split::Speakers => {
            let held = (seed as usize)
                .checked_sub(1)
                .and_then(|i| SPEAKERS.get(i))
                .ok_or_else(|| Error::Config(format!("no speaker for fold {seed}")))?;
            let mut all = train;
            all.examples.extend(test.examples);
            // Ids are `{digit}_{speaker}_{recording}`.
            let (out, kept): (Vec<usize>, Vec<usize>) = (0..all.examples.len())
                .partition(|&i| all.examples[i].id.split('_').nth(1) == Some(held));
            if out.is_empty() {
                return Err(Error::Config(format!("no pair of speaker {held}")));
            }
            (all.subset(&kept), all.subset(&out))
        }
    };
    let (kept, held) = stratified_holdout(&pool.labels(), 0.1, HOLDOUT_SEED)?;
    Ok(Splits {
        train: pool.subset(&kept),
        valid: pool.subset(&held),
        test,
    })
}

/// The audio inputs and the frozen choice of the pretrained folder `dir`
/// (its log-mel settings come from the folder).
fn audio_setup(dir: &Path) -> Result<(FeatureConfig, EncoderChoice)> {
    let mut choice = EncoderChoice::pretrained(dir, EncoderMode::Frozen);
    choice.record_weights()?;
    let mut features = avmnist_features();
    let encoders = BTreeMap::from([(Modality::Audio, choice.clone())]);
    folder_features(&encoders, &[Modality::Audio], &mut features, 0, false)?;
    Ok((features, choice))
}

/// Clips embedded per progress line.
const EMBED_CHUNK: usize = 100;

/// Embeds every clip of both splits once with the frozen encoder in `dir`
/// (served from `--cache` when computed before), every token kept, and
/// writes them to `path` as tensors `train.{i}` / `test.{i}` of shape
/// `[1 + tokens, dim]` (the pooled row first) for the jobs to read.
fn embed_audio(args: &Args, dir: &Path, path: &Path) -> Result<()> {
    let started = Instant::now();
    let (features, choice) = audio_setup(dir)?;
    let config = ClassifierConfig::new(vec![Modality::Audio], FusionKind::None, 10)
        .with_encoder(Modality::Audio, choice);
    let device = Device::flex();
    let model = config.init(&device)?;
    let batcher = Batcher::new(vec![Modality::Audio], features.clone(), None)?;
    let cache = FeatureCache::new(&args.cache)?;
    let plan = EmbedPlan {
        model: &model,
        batcher: &batcher,
        identities: EmbedPlan::identities(&config, &features)?,
        keep_sequences: true,
        cache: Some(&cache),
        device: &device,
    };
    let pairs = open_avmnist(&args.data, &features)?;
    let mut rows: Vec<(String, [usize; 2], Vec<f32>)> = Vec::new();
    for (name, split) in [("train", &pairs.train), ("test", &pairs.test)] {
        for start in (0..split.len()).step_by(EMBED_CHUNK) {
            let indices: Vec<usize> = (start..(start + EMBED_CHUNK).min(split.len())).collect();
            let part = Part {
                samples: split,
                indices: &indices,
            };
            let embedded = Dataset::from(EmbeddedSamples::new(&part, &plan)?);
            for (i, example) in indices.iter().zip(embedded.examples) {
                let e = example
                    .features
                    .embedded
                    .get(&Modality::Audio)
                    .ok_or_else(|| {
                        Error::Invalid(format!("{name} pair {i}: no audio embedding"))
                    })?;
                let dim = e.pooled.len();
                let values = [e.pooled.as_slice(), &e.sequence].concat();
                rows.push((format!("{name}.{i}"), [values.len() / dim, dim], values));
            }
            eprintln!(
                "embedded {} of {} {name} clips ({:.0} s)",
                indices.last().map_or(0, |i| i + 1),
                split.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let tensors: Vec<(&str, Vec<usize>, &[f32])> = rows
        .iter()
        .map(|(n, shape, v)| (n.as_str(), shape.to_vec(), v.as_slice()))
        .collect();
    save_f32(path, &tensors, BTreeMap::new())
}

/// Some samples of a set, in the order of `indices`.
struct Part<'a> {
    samples: &'a dyn Samples,
    indices: &'a [usize],
}

impl Samples for Part<'_> {
    fn len(&self) -> usize {
        self.indices.len()
    }

    fn classes(&self) -> &[String] {
        self.samples.classes()
    }

    fn targets(&self) -> Vec<polymodal::train::Label> {
        let all = self.samples.targets();
        self.indices.iter().map(|&i| all[i].clone()).collect()
    }

    fn load(&self, indices: &[usize]) -> Result<Vec<Example>> {
        let mapped: Option<Vec<usize>> = indices
            .iter()
            .map(|&i| self.indices.get(i).copied())
            .collect();
        let mapped = mapped.ok_or_else(|| Error::Invalid("sample outside the part".into()))?;
        self.samples.load(&mapped)
    }
}

/// Puts the parent's embedding `{split}.{i}` in place of the audio of pair
/// `i` of `data` (the pooled row; with `tokens`, every token too).
fn attach_audio(data: &mut Dataset, embeddings: &Weights, split: &str, tokens: bool) -> Result<()> {
    for (i, example) in data.examples.iter_mut().enumerate() {
        let name = format!("{split}.{i}");
        let missing = || Error::Invalid(format!("{}: no `{name}`", embeddings.path().display()));
        let shape = embeddings.shape(&name).ok_or_else(missing)?.to_vec();
        let &[rows, dim] = shape.as_slice() else {
            return Err(Error::Invalid(format!("`{name}` has shape {shape:?}")));
        };
        if rows == 0 || dim == 0 {
            return Err(Error::Invalid(format!("`{name}` has shape {shape:?}")));
        }
        let values = embeddings.values(&name, &shape)?.ok_or_else(missing)?;
        let sequence = if tokens {
            values[dim..].to_vec()
        } else {
            Vec::new()
        };
        example.features.audio = None;
        example.features.embedded.insert(
            Modality::Audio,
            Embedded {
                pooled: values[..dim].to_vec(),
                sequence,
            },
        );
    }
    Ok(())
}

/// The process's peak resident memory (VmHWM), in MB.
fn peak_memory_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn classifier(job: &Job, modalities: &[Modality], fusion: FusionKind) -> ClassifierConfig {
    let dropout = if fusion == FusionKind::None {
        0.0
    } else if fusion.is_joint() {
        job.joint_modality_dropout
    } else {
        MODALITY_DROPOUT
    };
    let config = ClassifierConfig::new(modalities.to_vec(), fusion, 10)
        .with_channels(1)
        .with_modality_dropout(dropout)
        .with_contrastive_weight(0.5)
        .with_unimodal_weight(if fusion == FusionKind::None {
            0.0
        } else {
            job.unimodal_weight
        })
        .with_embedding_noise(job.embedding_noise);
    match &job.audio {
        Some(choice) if modalities.contains(&Modality::Audio) => {
            config.with_encoder(Modality::Audio, choice.clone())
        }
        _ => config,
    }
}

struct Trained {
    model: MultimodalClassifier,
    batcher: Batcher,
    parameters: usize,
    /// Those a training step updates (not a frozen encoder's).
    trained_parameters: usize,
    seconds: f64,
    /// Mean wall time of an epoch.
    epoch_seconds: f64,
}

fn train(
    job: &Job,
    name: &str,
    config: &ClassifierConfig,
    train: &Dataset,
    valid: &Dataset,
) -> Result<Trained> {
    let device = Device::flex().autodiff();
    let _rng = RngGuard::seeded(&device, job.settings.seed);
    let model = config.init(&device)?;
    let parameters = burn::module::Module::num_params(&model);
    let trained_parameters = model.trainable_params();
    let batcher = Batcher::new(config.modalities.clone(), job.features.clone(), None)?;
    let trainer = Trainer {
        batcher: &batcher,
        config: job.settings.clone(),
        device,
        output: None,
        resume: false,
    };
    let started = Instant::now();
    let mut epochs = Vec::new();
    let (model, _) = trainer.train(model, train, valid, &mut |event| {
        if let Progress::Epoch(r) = event {
            epochs.push(r.elapsed.as_secs_f64());
            eprintln!(
                "{name}: epoch {} loss {:.4} valid accuracy {:.4} ({:.1} s)",
                r.epoch,
                r.train_loss,
                r.valid_accuracy,
                r.elapsed.as_secs_f64()
            );
        }
    })?;
    Ok(Trained {
        model,
        batcher,
        parameters,
        trained_parameters,
        seconds: started.elapsed().as_secs_f64(),
        epoch_seconds: epochs.iter().sum::<f64>() / epochs.len().max(1) as f64,
    })
}

fn test_scores(trained: &Trained, data: &Dataset) -> Result<Tensor<2>> {
    Ok(evaluate(&trained.model, data, &trained.batcher, &Device::flex())?.probabilities)
}

fn scores(probabilities: &Tensor<2>, labels: &[usize]) -> Result<(f32, f32)> {
    let m = ConfusionMatrix::from_scores(probabilities, labels)?;
    Ok((m.accuracy(), m.macro_f1()))
}

fn fused_job(job: &Job, kind: FusionKind) -> Result<Outcome> {
    let splits = &job.splits;
    let config = classifier(job, &MODALITIES, kind);
    let trained = train(job, kind.name(), &config, &splits.train, &splits.valid)?;
    let labels = splits.test.labels();
    let (accuracy, macro_f1) = scores(&test_scores(&trained, &splits.test)?, &labels)?;
    let valid_accuracy = scores(
        &test_scores(&trained, &splits.valid)?,
        &splits.valid.labels(),
    )?
    .0;
    let without = |m| -> Result<f32> {
        Ok(scores(&test_scores(&trained, &splits.test.without(m))?, &labels)?.0)
    };
    let retrieval = match trained.model.alignment() {
        Some(_) => Some(retrieval(&trained, &splits.test)?),
        None => None,
    };
    Ok(Outcome {
        method: kind.name().into(),
        family: if kind.is_joint() {
            "joint"
        } else {
            "early (feature-level)"
        }
        .into(),
        seed: 0,
        accuracy,
        valid_accuracy: Some(valid_accuracy),
        macro_f1,
        without_image: Some(without(Modality::Image)?),
        without_audio: Some(without(Modality::Audio)?),
        parameters: trained.parameters,
        trained_parameters: Some(trained.trained_parameters),
        epoch_seconds: Some(trained.epoch_seconds),
        train_seconds: trained.seconds,
        peak_mb: 0.0,
        retrieval,
    })
}

/// A unimodal model's outcome and its validation and test probabilities.
struct Unimodal {
    outcome: Outcome,
    valid: Tensor<2>,
    test: Tensor<2>,
}

fn unimodal(job: &Job, modality: Modality) -> Result<Unimodal> {
    let splits = &job.splits;
    let config = classifier(job, &[modality], FusionKind::None);
    let trained = train(job, modality.name(), &config, &splits.train, &splits.valid)?;
    let test = test_scores(&trained, &splits.test)?;
    let (accuracy, macro_f1) = scores(&test, &splits.test.labels())?;
    let valid = test_scores(&trained, &splits.valid)?;
    let valid_accuracy = scores(&valid, &splits.valid.labels())?.0;
    let outcome = Outcome {
        method: modality.name().into(),
        family: "unimodal".into(),
        seed: 0,
        accuracy,
        valid_accuracy: Some(valid_accuracy),
        macro_f1,
        without_image: None,
        without_audio: None,
        parameters: trained.parameters,
        trained_parameters: Some(trained.trained_parameters),
        epoch_seconds: Some(trained.epoch_seconds),
        train_seconds: trained.seconds,
        peak_mb: 0.0,
        retrieval: None,
    };
    Ok(Unimodal {
        outcome,
        valid,
        test,
    })
}

/// Class-level recall@1 and @5 of audio → image retrieval in the aligned space.
fn retrieval(trained: &Trained, test: &Dataset) -> Result<[f32; 2]> {
    let device = Device::flex();
    let examples: Vec<&Example> = test.examples.iter().collect();
    let batch = trained.batcher.batch(&examples, &device)?;
    let parts = trained.model.embed(&batch)?;
    let alignment = trained.model.alignment().expect("checked by the caller");
    let aligned = alignment.embed(&parts)?; // [image, audio]
    let similarity = alignment.similarity(aligned[1].clone(), aligned[0].clone());
    let labels = test.labels();
    let same = |q: usize, c: usize| labels[q] == labels[c];
    Ok([
        recall_at_k(&similarity, 1, same)?,
        recall_at_k(&similarity, 5, same)?,
    ])
}

fn late_job(job: &Job) -> Result<Vec<Outcome>> {
    let (splits, settings) = (&job.splits, &job.settings);
    let labels = splits.test.labels();
    let valid_labels = splits.valid.labels();
    let n = splits.test.examples.len();
    let flags =
        |on: bool| Tensor::<1, Bool>::from_data(TensorData::new(vec![on; n], [n]), &Device::flex());
    let valid_n = splits.valid.examples.len();
    let valid_present = vec![
        Tensor::<1, Bool>::from_data(
            TensorData::new(vec![true; valid_n], [valid_n]),
            &Device::flex()
        );
        2
    ];
    let mut outcomes = Vec::new();
    let mut valid_p = Vec::new();
    let mut test_p = Vec::new();
    let mut base_seconds = 0.0;
    let mut base_parameters = 0;
    let mut base_trained = 0;
    for modality in MODALITIES {
        let model = unimodal(job, modality)?;
        base_seconds += model.outcome.train_seconds;
        base_parameters += model.outcome.parameters;
        base_trained += model.outcome.trained_parameters.unwrap_or_default();
        valid_p.push(model.valid);
        test_p.push(model.test);
        outcomes.push(model.outcome);
    }
    // Out-of-fold predictions on the training pairs for stacking.
    let oof_started = Instant::now();
    let train_n = splits.train.examples.len();
    let folds = k_folds(train_n, STACKING_FOLDS, settings.seed)?;
    let mut oof: Vec<Vec<f32>> = vec![vec![0.0; train_n * 10]; MODALITIES.len()];
    for (f, held) in folds.iter().enumerate() {
        let rest: Vec<usize> = (0..train_n)
            .filter(|i| held.binary_search(i).is_err())
            .collect();
        for (m, modality) in MODALITIES.into_iter().enumerate() {
            let config = classifier(job, &[modality], FusionKind::None);
            let name = format!("{modality} fold {}", f + 1);
            let trained = train(
                job,
                &name,
                &config,
                &splits.train.subset(&rest),
                &splits.valid,
            )?;
            let p = test_scores(&trained, &splits.train.subset(held))?
                .try_into_vec_as::<f32>()
                .map_err(|e| Error::Invalid(format!("{e:?}")))?;
            for (row, &i) in held.iter().enumerate() {
                oof[m][i * 10..(i + 1) * 10].copy_from_slice(&p[row * 10..(row + 1) * 10]);
            }
        }
    }
    let device = Device::flex();
    let oof: Vec<Tensor<2>> = oof
        .into_iter()
        .map(|v| Tensor::from_data(TensorData::new(v, [train_n, 10]), &device))
        .collect();
    let all_train =
        vec![
            Tensor::<1, Bool>::from_data(TensorData::new(vec![true; train_n], [train_n]), &device);
            2
        ];
    let stacking = Stacking::fit(
        &oof,
        &all_train,
        &splits.train.labels(),
        &StackingConfig::default(),
    )?;
    let oof_seconds = oof_started.elapsed().as_secs_f64();

    let fixed = WeightedAverage::uniform(Pool::Linear, 2)?;
    let fitted = WeightedAverage::fit(Pool::Logarithmic, &valid_p, &valid_labels)?;
    type Combine<'a> = Box<dyn Fn(&[Tensor<2>], &[Tensor<1, Bool>]) -> Result<Tensor<2>> + 'a>;
    let combiners: Vec<(&str, Combine, usize, f64)> = vec![
        (
            "weighted-average (equal weights)",
            Box::new(|p, m| fixed.combine(p, m)),
            0,
            0.0,
        ),
        (
            "weighted-average (fitted, log pool)",
            Box::new(|p, m| fitted.combine(p, m)),
            2,
            0.0,
        ),
        (
            "hard voting",
            Box::new(|p, m| Voting::Hard.combine(p, m)),
            0,
            0.0,
        ),
        (
            "soft voting",
            Box::new(|p, m| Voting::Soft.combine(p, m)),
            0,
            0.0,
        ),
        (
            "stacking",
            Box::new(|p, m| stacking.combine(p, m)),
            stacking.parameters(),
            oof_seconds,
        ),
    ];
    for (method, combine, extra_parameters, extra_seconds) in combiners {
        let started = Instant::now();
        let both = combine(&test_p, &[flags(true), flags(true)])?;
        let (accuracy, macro_f1) = scores(&both, &labels)?;
        let valid_accuracy = scores(&combine(&valid_p, &valid_present)?, &valid_labels)?.0;
        let no_image = combine(&test_p, &[flags(false), flags(true)])?;
        let no_audio = combine(&test_p, &[flags(true), flags(false)])?;
        outcomes.push(Outcome {
            method: method.into(),
            family: "late (model-level)".into(),
            seed: 0,
            accuracy,
            valid_accuracy: Some(valid_accuracy),
            macro_f1,
            without_image: Some(scores(&no_image, &labels)?.0),
            without_audio: Some(scores(&no_audio, &labels)?.0),
            parameters: base_parameters + extra_parameters,
            trained_parameters: Some(base_trained + extra_parameters),
            epoch_seconds: None,
            train_seconds: base_seconds + extra_seconds + started.elapsed().as_secs_f64(),
            peak_mb: 0.0,
            retrieval: None,
        });
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each setting has a report of its own: weight 1 keeps the name the
    /// committed reports have, other weights add theirs.
    #[test]
    fn report_stems_name_every_setting() {
        let w = Some("whisper-tiny.en");
        assert_eq!(
            report_stem(None, false, 0.0, 0.0, MODALITY_DROPOUT),
            "avmnist"
        );
        assert_eq!(
            report_stem(w, true, 0.0, 0.0, MODALITY_DROPOUT),
            "avmnist-whisper-tiny.en-speakers"
        );
        assert_eq!(
            report_stem(w, true, 1.0, 0.0, MODALITY_DROPOUT),
            "avmnist-whisper-tiny.en-speakers-unimodal"
        );
        assert_eq!(
            report_stem(w, true, 2.0, 0.0, MODALITY_DROPOUT),
            "avmnist-whisper-tiny.en-speakers-unimodal-2"
        );
        assert_eq!(
            report_stem(None, false, 0.5, 0.0, MODALITY_DROPOUT),
            "avmnist-unimodal-0.5"
        );
        assert_eq!(
            report_stem(w, true, 1.0, 1.2, MODALITY_DROPOUT),
            "avmnist-whisper-tiny.en-speakers-unimodal-noise-1.2"
        );
        assert_eq!(
            report_stem(w, true, 1.0, 1.2, 0.5),
            "avmnist-whisper-tiny.en-speakers-unimodal-noise-1.2-joint-dropout-0.5"
        );
    }

    fn outcome(method: &str, family: &str, seed: u64, test: f32, valid: Option<f32>) -> Outcome {
        Outcome {
            method: method.into(),
            family: family.into(),
            seed,
            accuracy: test,
            valid_accuracy: valid,
            macro_f1: test,
            without_image: None,
            without_audio: None,
            parameters: 1000 + method.len(),
            trained_parameters: None,
            epoch_seconds: None,
            train_seconds: 1.0 + seed as f64,
            peak_mb: 100.0,
            retrieval: None,
        }
    }

    fn saved(outcomes: Vec<Outcome>) -> Saved {
        Saved {
            seeds: 2,
            epochs: 20,
            parallel: 1,
            total_seconds: 10.0,
            machine: "Test CPU, 2 cores".into(),
            provenance: None,
            outcomes,
            split: official(),
            audio_encoder: None,
            build: release(),
            reference: None,
            unimodal_weight: 0.0,
            embedding_noise: 0.0,
            joint_modality_dropout: MODALITY_DROPOUT,
        }
    }

    const EARLY: &str = "early (feature-level)";
    const LATE: &str = "late (model-level)";

    #[test]
    fn the_headline_is_chosen_on_validation_and_reports_test() {
        // `concat` is best on validation, `gated` on test: the headline
        // reports concat's test accuracy, not the best test accuracy.
        let outcomes = vec![
            outcome("image", "unimodal", 1, 0.96, Some(0.97)),
            outcome("concat", EARLY, 1, 0.980, Some(0.995)),
            outcome("concat", EARLY, 2, 0.990, Some(0.990)),
            outcome("gated", EARLY, 1, 0.999, Some(0.980)),
            outcome("gated", EARLY, 2, 0.999, Some(0.985)),
        ];
        let rows = rows(&outcomes);
        let fused: Vec<&Row> = rows.iter().filter(|r| r.family != "unimodal").collect();
        let pick = pick_best(&fused).unwrap();
        assert_eq!(pick.row.method, "concat");
        assert!(pick.on_validation);
        assert!(pick.tied.is_empty());
        let report = Report::new(saved(outcomes), None);
        let headline = report.headline();
        assert!(
            headline.contains("best validation accuracy is concat (0.9925 ± 0.0035)"),
            "{headline}"
        );
        assert!(headline.contains("**0.9850 ± 0.0071**"), "{headline}");
        assert!(headline.contains("goal ≥ 0.995: **MISSED**"), "{headline}");
        assert!(!headline.contains("fallback"), "{headline}");
    }

    #[test]
    fn validation_ties_go_to_fewer_parameters_then_the_table_order() {
        let mut outcomes = vec![
            outcome("film", EARLY, 1, 0.97, Some(0.99)),
            outcome("gated", EARLY, 1, 0.98, Some(0.99)),
            outcome("tensor", EARLY, 1, 0.999, Some(0.98)),
        ];
        outcomes[0].parameters = 500;
        outcomes[1].parameters = 400;
        let rows = rows(&outcomes);
        let all: Vec<&Row> = rows.iter().collect();
        let pick = pick_best(&all).unwrap();
        assert_eq!(pick.row.method, "gated");
        assert_eq!(pick.tied, vec!["film"]);
        let report = Report::new(saved(outcomes.clone()), None);
        assert!(
            report
                .headline()
                .contains("It ties on validation with film")
        );

        // Equal parameters too: the first in the table.
        outcomes[0].parameters = 400;
        let rows = super::rows(&outcomes);
        let all: Vec<&Row> = rows.iter().collect();
        assert_eq!(pick_best(&all).unwrap().row.method, "film");
    }

    #[test]
    fn an_old_run_without_validation_falls_back_to_test_marked_as_such() {
        let outcomes = vec![
            outcome("concat", EARLY, 1, 0.990, None),
            outcome("gated", EARLY, 1, 0.996, None),
        ];
        let report = Report::new(saved(outcomes), None);
        let headline = report.headline();
        assert!(
            headline.contains("fallback, chosen on the test set"),
            "{headline}"
        );
        assert!(
            headline.contains("gated at **0.9960 ± 0.0000**"),
            "{headline}"
        );
        assert!(headline.contains("goal ≥ 0.995: met"), "{headline}");
        let md = report.markdown();
        assert!(md.contains("- Date: not recorded"), "{md}");
        assert!(
            md.contains("| gated | early (feature-level) | — | 0.9960 ± 0.0000 |"),
            "{md}"
        );
    }

    #[test]
    fn identical_combiners_are_shown_once() {
        let mut outcomes = Vec::new();
        for seed in [1, 2] {
            for method in [
                "weighted-average (equal weights)",
                "soft voting",
                "hard voting",
            ] {
                let mut o = outcome(method, LATE, seed, 0.99, Some(1.0));
                o.parameters = 87316;
                outcomes.push(o);
            }
        }
        // Hard voting differs in one seed; soft voting equals the average.
        outcomes[5].accuracy = 0.98;
        let report = Report::new(saved(outcomes.clone()), None);
        let labels: Vec<String> = report.rows.iter().map(Row::label).collect();
        assert_eq!(
            labels,
            [
                "weighted-average (equal weights) = soft voting",
                "hard voting"
            ]
        );
        assert!(report.warnings.is_empty());
        let md = report.markdown();
        assert!(md.contains("- soft voting is shown once as"), "{md}");
        assert_eq!(md.matches("| soft voting |").count(), 0, "{md}");
        let chart = report.chart();
        assert!(
            chart.contains(">equal-weight average = soft voting<"),
            "{chart}"
        );
        assert!(!chart.contains(">soft voting<"), "{chart}");

        // Figures that should agree but do not: both rows stay, with a warning.
        outcomes[1].accuracy = 0.5;
        let report = Report::new(saved(outcomes), None);
        assert_eq!(report.rows.len(), 3);
        assert_eq!(report.warnings.len(), 1);
        assert!(
            report
                .markdown()
                .contains("**Warning**: soft voting should give")
        );
    }

    /// Pairs of every speaker, ids as the loader writes them.
    fn pairs() -> Dataset {
        let examples = SPEAKERS
            .iter()
            .flat_map(|who| {
                (0..20).map(move |i| Example {
                    id: format!("{}_{who}_{i}", i % 10),
                    features: polymodal::train::Features::default(),
                    label: polymodal::train::Label::Single(i % 10),
                })
            })
            .collect();
        Dataset {
            examples,
            classes: (0..10).map(|d| d.to_string()).collect(),
        }
    }

    /// Fold k tests on every pair of speaker k and trains on none of them;
    /// the official split keeps the given test set.
    #[test]
    fn leave_one_speaker_out_tests_on_an_unheard_speaker() {
        let all = pairs();
        let half = all.examples.len() / 2;
        let train = all.subset(&(0..half).collect::<Vec<_>>());
        let test = all.subset(&(half..all.examples.len()).collect::<Vec<_>>());
        for (fold, who) in SPEAKERS.iter().enumerate() {
            let splits = job_splits(
                Split::Speakers,
                fold as u64 + 1,
                train.clone(),
                test.clone(),
            )
            .unwrap();
            let speaker = |e: &Example| e.id.split('_').nth(1).unwrap().to_string();
            assert_eq!(splits.test.examples.len(), 20);
            assert!(splits.test.examples.iter().all(|e| speaker(e) == *who));
            let heard = splits.train.examples.iter().chain(&splits.valid.examples);
            assert!(heard.clone().all(|e| speaker(e) != *who));
            assert_eq!(heard.count(), 100);
        }
        assert!(job_splits(Split::Speakers, 7, train.clone(), test.clone()).is_err());
        let official = job_splits(Split::Official, 1, train, test.clone()).unwrap();
        assert_eq!(official.test.examples.len(), test.examples.len());
    }

    /// The parent's embeddings replace each pair's audio: the pooled row,
    /// and the tokens only when asked; a file without a pair's tensor is an
    /// error.
    #[test]
    fn embeddings_from_the_parent_replace_the_audio() {
        let path =
            std::env::temp_dir().join(format!("polymodal-avmnist-{}.st", std::process::id()));
        let first = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        save_f32(
            &path,
            &[
                ("train.0", vec![3, 2], &first),
                ("train.1", vec![1, 2], &[7.0, 8.0]),
            ],
            BTreeMap::new(),
        )
        .unwrap();
        let embeddings = Weights::open(&path).unwrap();
        let mut data = pairs().subset(&[0, 1]);
        data.examples[0].features.audio = Some(vec![0.5; 4]);
        attach_audio(&mut data, &embeddings, "train", true).unwrap();
        let e = &data.examples[0].features;
        assert!(e.audio.is_none());
        assert_eq!(e.embedded[&Modality::Audio].pooled, [1.0, 2.0]);
        assert_eq!(e.embedded[&Modality::Audio].sequence, [3.0, 4.0, 5.0, 6.0]);
        attach_audio(&mut data, &embeddings, "train", false).unwrap();
        assert!(
            data.examples[0].features.embedded[&Modality::Audio]
                .sequence
                .is_empty()
        );
        let error = attach_audio(&mut pairs(), &embeddings, "train", false).unwrap_err();
        assert!(error.to_string().contains("no `train.2`"), "{error}");
        std::fs::remove_file(path).unwrap();
    }

    /// The leave-one-speaker-out report names its setting in its file
    /// names and states each goal, with the audio accuracy per speaker.
    /// With `--only` leaving the unimodal models out, the report says so
    /// rather than comparing the fused methods with an accuracy of 0.
    #[test]
    fn a_report_without_unimodal_models_says_they_did_not_run() {
        let with = Report::new(
            saved(vec![
                outcome("image", "unimodal", 1, 0.96, Some(0.97)),
                outcome("concat", EARLY, 1, 0.98, Some(0.99)),
            ]),
            None,
        )
        .markdown();
        assert!(
            with.contains("Best unimodal test accuracy: 0.9600"),
            "{with}"
        );
        let without = Report::new(
            saved(vec![outcome("concat", EARLY, 1, 0.98, Some(0.99))]),
            None,
        )
        .markdown();
        assert!(!without.contains("Best unimodal"), "{without}");
        assert!(without.contains("Unimodal models: not run"), "{without}");
    }

    /// A run of one concat model.
    fn concat_run() -> Saved {
        saved(vec![outcome("concat", EARLY, 1, 0.98, Some(0.99))])
    }

    /// Noise on the frozen embeddings is stated in the text and in the
    /// report's name; without it neither says so.
    #[test]
    fn a_report_with_embedding_noise_says_so() {
        let mut noisy = concat_run();
        noisy.audio_encoder = Some("whisper-tiny.en".into());
        noisy.embedding_noise = 1.2;
        let report = Report::new(noisy, None);
        assert_eq!(report.stem(), "avmnist-whisper-tiny.en-noise-1.2");
        let text = report.markdown();
        assert!(
            text.contains("noise of 1.2 × each vector's root mean square"),
            "{text}"
        );
        let mut plain = concat_run();
        plain.audio_encoder = Some("whisper-tiny.en".into());
        let text = Report::new(plain, None).markdown();
        assert!(!text.contains("embedding_noise"), "{text}");
    }

    /// The joint models' own modality dropout is stated in the text and in
    /// the report's name, and a run saved without it reads as the common
    /// rate.
    #[test]
    fn a_report_with_its_own_joint_dropout_says_so() {
        let mut run = saved(vec![outcome("single-stream", "joint", 1, 0.98, Some(0.99))]);
        run.joint_modality_dropout = 0.5;
        let report = Report::new(run, None);
        assert_eq!(report.stem(), "avmnist-joint-dropout-0.5");
        let text = report.markdown();
        assert!(
            text.contains("modality dropout 0.2 (the joint ones 0.5)"),
            "{text}"
        );
        let json = serde_json::to_string(&concat_run()).unwrap();
        assert!(!json.contains("joint_modality_dropout"), "{json}");
        let old: Saved = serde_json::from_str(&json).unwrap();
        assert_eq!(old.joint_modality_dropout, MODALITY_DROPOUT);
        let text = Report::new(old, None).markdown();
        assert!(text.contains("modality dropout 0.2, so"), "{text}");
    }

    #[test]
    fn the_speakers_report_states_its_goals() {
        let mut outcomes = Vec::new();
        for seed in 1..=6 {
            outcomes.push(outcome("audio", "unimodal", seed, 0.995, Some(1.0)));
            outcomes.push(outcome("concat", EARLY, seed, 0.99, Some(1.0)));
        }
        outcomes[2].accuracy = 0.985; // jackson
        let mut saved = saved(outcomes);
        saved.seeds = 6;
        saved.split = Split::Speakers.name().into();
        saved.audio_encoder = Some("whisper-tiny.en".into());
        let report = Report::new(saved, None);
        assert_eq!(report.stem(), "avmnist-whisper-tiny.en-speakers");
        let md = report.markdown();
        assert!(
            md.contains("over 6 folds (one per held-out speaker)"),
            "{md}"
        );
        assert!(
            md.contains("audio alone ≥ 0.99 on unseen speakers: 0.9933 ± 0.0041 (met)"),
            "{md}"
        );
        assert!(md.contains("george 0.9950, jackson 0.9850"), "{md}");
        assert!(
            md.contains("≥ 0.995 on unseen speakers: **MISSED** by concat"),
            "{md}"
        );
        assert!(
            md.contains("frozen pretrained `whisper-tiny.en` encoder"),
            "{md}"
        );
        assert!(
            md.contains("[avmnist-whisper-tiny.en-speakers.json]"),
            "{md}"
        );
    }

    /// The logistic-regression reference stands beside the audio row, per
    /// held-out speaker, with its tools in the provenance; one that could
    /// not run says why.
    #[test]
    fn the_reference_is_shown_beside_the_audio_row() {
        let outcomes: Vec<Outcome> = (1..=6)
            .map(|seed| outcome("audio", "unimodal", seed, 0.99 - seed as f32 / 100.0, None))
            .collect();
        let mut saved = saved(outcomes);
        saved.split = Split::Speakers.name().into();
        saved.audio_encoder = Some("whisper-tiny.en".into());
        let folds: Vec<serde_json::Value> = SPEAKERS
            .iter()
            .enumerate()
            .map(|(i, s)| serde_json::json!([s, 1.0 - i as f64 / 50.0]))
            .collect();
        saved.reference = Some(serde_json::json!({
            "official": 1.0, "speakers": folds, "speaker_identification": 0.9967,
            "versions": [["Python", "3.11.2"], ["scikit-learn", "1.7.2"]],
        }));
        let md = Report::new(saved.clone(), None).markdown();
        assert!(
            md.contains("george 1.0000 (ours 0.9800), jackson 0.9800 (ours 0.9700)"),
            "{md}"
        );
        assert!(md.contains("mean 0.9500 ± 0.0374"), "{md}");
        assert!(md.contains("on the official split: 0.9967"), "{md}");
        assert!(md.contains("scikit-learn 1.7.2"), "{md}");
        saved.reference = Some(serde_json::json!({ "skipped": "sklearn not installed" }));
        let md = Report::new(saved, None).markdown();
        assert!(md.contains("not run (sklearn not installed)"), "{md}");
    }

    #[test]
    fn a_rendered_report_says_so() {
        let outcomes = vec![outcome("concat", EARLY, 1, 0.99, Some(0.99))];
        let mut rendered = Provenance::capture();
        rendered.command = "cargo xtask bench fusion --report-only".into();
        let md = Report::new(saved(outcomes), Some(rendered)).markdown();
        assert!(md.contains("Report rendered from [avmnist.json](avmnist.json) (no training) by `cargo xtask bench fusion --report-only`"), "{md}");
    }
}
