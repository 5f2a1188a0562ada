//! The AV-MNIST fusion benchmark (`cargo xtask bench fusion`): trains an
//! image-only and an audio-only model, every model-level combiner of them,
//! and every feature-level and joint fusion method, for several seeds, and
//! writes `avmnist.md`, `avmnist.svg` and `avmnist.json`.
//!
//! Each (method, seed) runs in a child process of this binary, so its peak
//! memory is its own. The model-level job trains the two unimodal models
//! (reported as such) and combines them, so its peak memory is shared.
//!
//! Usage: `avmnist --data DIR --out DIR [--seeds N] [--epochs N] [--only a,b] [--parallel N]`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use polymodal::fusion::{Pool, Stacking, StackingConfig, Voting, WeightedAverage};
use polymodal::train::{
    Bar, BarChart, Batcher, ConfusionMatrix, Dataset, Example, LrSchedule, Progress, TrainConfig,
    Trainer, avmnist_features, evaluate, k_folds, load_avmnist, recall_at_k, stratified_holdout,
};
use polymodal::{ClassifierConfig, Error, FusionKind, Modality, MultimodalClassifier, Result};

/// The model-level job (also the unimodal models), then one job per fusion layer.
const JOBS: [&str; 10] = [
    "late",
    "concat",
    "gated",
    "film",
    "tensor",
    "low-rank",
    "attention-sum",
    "cross-modal",
    "single-stream",
    "contrastive",
];
/// The validation hold-out (10 % of each digit of the training pairs) is the
/// same for every seed, so seeds vary only the models.
const HOLDOUT_SEED: u64 = 2026;
const MODALITIES: [Modality; 2] = [Modality::Image, Modality::Audio];
/// Modality dropout of every fused model (see docs/fusion.md).
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
    accuracy: f32,
    macro_f1: f32,
    without_image: Option<f32>,
    without_audio: Option<f32>,
    parameters: usize,
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
    outcomes: Vec<Outcome>,
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
    job: Option<(String, u64, PathBuf)>,
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
            "--job" => job.0 = Some(value()?),
            "--seed" => job.1 = number(value()?)?,
            "--json" => job.2 = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if let Some(name) = args.only.iter().find(|n| !JOBS.contains(&n.as_str())) {
        return Err(format!("unknown job `{name}` (jobs: {})", JOBS.join(", ")));
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
    let jobs: Vec<&str> = JOBS
        .iter()
        .copied()
        .filter(|j| args.only.is_empty() || args.only.iter().any(|o| o == j))
        .collect();
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let scratch = std::env::temp_dir().join(format!("polymodal-avmnist-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| Error::io(&scratch, e))?;
    let started = Instant::now();
    let exe = std::env::current_exe().map_err(|e| Error::io("self", e))?;
    let queue: Vec<(String, u64)> = (1..=args.seeds)
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
                .arg(&json);
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
        seeds: args.seeds,
        epochs: args.epochs,
        parallel: args.parallel,
        total_seconds: started.elapsed().as_secs_f64(),
        machine: machine(),
        outcomes,
    };
    let json = serde_json::to_string_pretty(&saved).map_err(|e| Error::Config(e.to_string()))?;
    let path = args.out.join("avmnist.json");
    std::fs::write(&path, json).map_err(|e| Error::io(&path, e))?;
    let _ = std::fs::remove_dir_all(&scratch);
    write_report(args, Report::new(saved))
}

/// Rewrites `avmnist.md` and `avmnist.svg` from `avmnist.json`.
fn render(args: &Args) -> Result<()> {
    let path = args.out.join("avmnist.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let saved: Saved = serde_json::from_str(&text)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    write_report(args, Report::new(saved))
}

fn write_report(args: &Args, report: Report) -> Result<()> {
    let write = |name: &str, content: String| {
        let path = args.out.join(name);
        std::fs::write(&path, content).map_err(|e| Error::io(&path, e))
    };
    write("avmnist.md", report.markdown())?;
    write("avmnist.svg", report.chart())?;
    println!("{}", report.markdown());
    Ok(())
}

/// The CPU model and core count, for the report.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {cores} cores")
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

struct Row {
    method: String,
    family: String,
    runs: Vec<Outcome>,
}

impl Row {
    fn stat(&self, f: impl Fn(&Outcome) -> Option<f32>) -> Option<(f64, f64)> {
        let values: Option<Vec<f64>> = self.runs.iter().map(|o| f(o).map(f64::from)).collect();
        values.filter(|v| !v.is_empty()).map(|v| mean_std(&v))
    }

    fn accuracy(&self) -> (f64, f64) {
        self.stat(|o| Some(o.accuracy)).expect("at least one run")
    }
}

struct Report {
    rows: Vec<Row>,
    saved: Saved,
}

impl Report {
    fn new(saved: Saved) -> Self {
        let mut rows: Vec<Row> = Vec::new();
        for o in &saved.outcomes {
            match rows.iter_mut().find(|r| r.method == o.method) {
                Some(row) => row.runs.push(o.clone()),
                None => rows.push(Row {
                    method: o.method.clone(),
                    family: o.family.clone(),
                    runs: vec![o.clone()],
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
        Self { rows, saved }
    }

    fn best_unimodal(&self) -> f64 {
        self.rows
            .iter()
            .filter(|r| r.family == "unimodal")
            .map(|r| r.accuracy().0)
            .fold(0.0, f64::max)
    }

    fn markdown(&self) -> String {
        let fmt = |s: Option<(f64, f64)>| {
            s.map_or("—".to_string(), |(m, sd)| format!("{m:.4} ± {sd:.4}"))
        };
        let saved = &self.saved;
        let mut md = format!(
            "# AV-MNIST: unimodal models and every fusion method\n\n\
             Reproduce: `cargo xtask bench fusion{parallel}` (release build, CPU backend; this run: {machine}).\n\n\
             **Data** (`shared/data/avmnist`): FSDD spoken digits paired with MNIST images, FSDD's official \
             split: 2700 training pairs, of which 10 % of each digit (270, the same for every seed) are held \
             out for validation, and 300 test pairs. Image: 28×28 grey, MNIST statistics. Audio: the first \
             second, 40 log-mel bands (32 ms window, 20 ms hop), standardised per clip.\n\n\
             **Models**: each encoder is two convolution blocks (16 and 32 channels) giving 64-d tokens and \
             a pooled vector on a 4×4 grid. Adam, batch 64, peak rate 2e-3 with one epoch of warm-up then \
             cosine decay, at most {epochs} epochs; the best validation epoch's model is tested. Fused models \
             train with modality dropout 0.2, so the *without image / audio* columns (that modality removed \
             from every test sample) measure graceful degradation; `contrastive` adds 0.5 × InfoNCE. The \
             model-level rows combine the image and audio models of the same seed (their training time is \
             included); `stacking` is fitted on 3-fold out-of-fold predictions of the training pairs (6 more \
             trainings, included). Mean ± sample standard deviation over {seeds} seeds.\n\n",
            parallel = if saved.parallel > 1 {
                format!(" --parallel {}", saved.parallel)
            } else {
                String::new()
            },
            machine = saved.machine,
            epochs = saved.epochs,
            seeds = saved.seeds,
        );
        md.push_str(
            "| method | family | test accuracy | macro-F1 | without image | without audio | parameters | training time | peak memory |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for row in &self.rows {
            let time = row.stat(|o| Some(o.train_seconds as f32)).expect("runs");
            let memory = row.stat(|o| Some(o.peak_mb as f32)).expect("runs");
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.0} ± {:.0} s | {:.0} MB |\n",
                row.method,
                row.family,
                fmt(Some(row.accuracy())),
                fmt(row.stat(|o| Some(o.macro_f1))),
                fmt(row.stat(|o| o.without_image)),
                fmt(row.stat(|o| o.without_audio)),
                row.runs[0].parameters,
                time.0,
                time.1,
                memory.0,
            ));
        }
        let best_unimodal = self.best_unimodal();
        let fused: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.family != "unimodal")
            .collect();
        let losers: Vec<&str> = fused
            .iter()
            .filter(|r| r.accuracy().0 <= best_unimodal)
            .map(|r| r.method.as_str())
            .collect();
        let best = fused
            .iter()
            .map(|r| (r.accuracy().0, r.method.as_str()))
            .fold((0.0, ""), |a, b| if b.0 > a.0 { b } else { a });
        md.push_str(&format!(
            "\n{} seeds, at most {} epochs per model (the best validation epoch's model is tested), \
             {:.0} s in all, {} job(s) at a time{}.\n\n",
            saved.seeds,
            saved.epochs,
            saved.total_seconds,
            saved.parallel,
            if saved.parallel > 1 {
                " (each with one compute thread: training times are under that shared load)"
            } else {
                ""
            }
        ));
        md.push_str(&format!(
            "- Best unimodal model: {best_unimodal:.4}. {}\n- Best fused model: {} at {:.4} (goal ≥ 0.995: {}).\n",
            if losers.is_empty() {
                "Every fusion method is above it.".to_string()
            } else {
                format!("Not above it: {}.", losers.join(", "))
            },
            best.1,
            best.0,
            if best.0 >= 0.995 { "met" } else { "not met" }
        ));
        let reference: Vec<String> = REFERENCE
            .iter()
            .map(|(name, value)| format!("{name} {value}"))
            .collect();
        md.push_str(&format!(
            "- Logistic regression on the same pairing (shared/README.md): {}.\n",
            reference.join(", ")
        ));
        md.push_str(
            "- With two base models, hard voting settles a disagreement between their top classes by \
             the mean probability; soft voting may instead pick a class both models rank second.\n",
        );
        md.push_str(
            "- Chart: [avmnist.svg](avmnist.svg); every run: [avmnist.json](avmnist.json).\n",
        );
        for row in &self.rows {
            if let Some(r1) = row.stat(|o| o.retrieval.map(|r| r[0])) {
                let r5 = row
                    .stat(|o| o.retrieval.map(|r| r[1]))
                    .expect("both recalls");
                md.push_str(&format!(
                    "- {}: audio → image retrieval over the 300 test pairs, an image of the spoken digit \
                     counting as a hit: recall@1 {}, recall@5 {}.\n",
                    row.method,
                    fmt(Some(r1)),
                    fmt(Some(r5))
                ));
            }
        }
        md
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
                "AV-MNIST test accuracy (mean ± std over {} seeds)",
                self.saved.seeds
            ),
            bars: self
                .rows
                .iter()
                .map(|r| Bar {
                    label: r.method.clone(),
                    value: r.accuracy().0,
                    error: Some(r.accuracy().1),
                    colour: colour(&r.family).into(),
                })
                .collect(),
            min: ((lowest - 0.02) * 50.0).floor() / 50.0,
            max: 1.0,
            reference: Some(("best unimodal".into(), self.best_unimodal())),
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

// ---------------------------------------------------------------- child

struct Splits {
    train: Dataset,
    valid: Dataset,
    test: Dataset,
}

fn run_job(args: &Args, name: &str, seed: u64, json: &Path) -> Result<()> {
    let started = Instant::now();
    let features = avmnist_features();
    let data = load_avmnist(&args.data, &features)?;
    let (kept, held) = stratified_holdout(&data.train.labels(), 0.1, HOLDOUT_SEED)?;
    let splits = Splits {
        train: data.train.subset(&kept),
        valid: data.train.subset(&held),
        test: data.test,
    };
    eprintln!(
        "decoded {} train, {} validation, {} test pairs in {:.1} s",
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
    let mut outcomes = if name == "late" {
        late_job(&splits, &settings)?
    } else {
        vec![fused_job(name.parse()?, &splits, &settings)?]
    };
    let peak = peak_memory_mb();
    for o in &mut outcomes {
        o.seed = seed;
        o.peak_mb = peak;
    }
    let text = serde_json::to_string(&outcomes).map_err(|e| Error::Config(e.to_string()))?;
    std::fs::write(json, text).map_err(|e| Error::io(json, e))
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

fn classifier(modalities: &[Modality], fusion: FusionKind) -> ClassifierConfig {
    ClassifierConfig {
        modalities: modalities.to_vec(),
        fusion,
        classes: 10,
        dim: 64,
        vocab_size: 0,
        max_tokens: 0,
        channels: 1,
        modality_dropout: if fusion == FusionKind::None {
            0.0
        } else {
            MODALITY_DROPOUT
        },
        contrastive_weight: 0.5,
        multi_label: false,
    }
}

struct Trained {
    model: MultimodalClassifier,
    batcher: Batcher,
    parameters: usize,
    seconds: f64,
}

fn train(
    name: &str,
    config: &ClassifierConfig,
    train: &Dataset,
    valid: &Dataset,
    settings: &TrainConfig,
) -> Result<Trained> {
    let device = Device::flex().autodiff();
    device.seed(settings.seed);
    let model = config.init(&device)?;
    let parameters = burn::module::Module::num_params(&model);
    let batcher = Batcher::new(config.modalities.clone(), avmnist_features(), None)?;
    let trainer = Trainer {
        batcher: &batcher,
        config: settings.clone(),
        device,
        output: None,
        resume: false,
    };
    let started = Instant::now();
    let (model, _) = trainer.train(model, train, valid, &mut |event| {
        if let Progress::Epoch(r) = event {
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
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn test_scores(trained: &Trained, data: &Dataset) -> Result<Tensor<2>> {
    Ok(evaluate(&trained.model, data, &trained.batcher, &Device::flex())?.probabilities)
}

fn scores(probabilities: &Tensor<2>, labels: &[usize]) -> Result<(f32, f32)> {
    let m = ConfusionMatrix::from_scores(probabilities, labels)?;
    Ok((m.accuracy(), m.macro_f1()))
}

fn fused_job(kind: FusionKind, splits: &Splits, settings: &TrainConfig) -> Result<Outcome> {
    let config = classifier(&MODALITIES, kind);
    let trained = train(kind.name(), &config, &splits.train, &splits.valid, settings)?;
    let labels = splits.test.labels();
    let (accuracy, macro_f1) = scores(&test_scores(&trained, &splits.test)?, &labels)?;
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
        macro_f1,
        without_image: Some(without(Modality::Image)?),
        without_audio: Some(without(Modality::Audio)?),
        parameters: trained.parameters,
        train_seconds: trained.seconds,
        peak_mb: 0.0,
        retrieval,
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

fn late_job(splits: &Splits, settings: &TrainConfig) -> Result<Vec<Outcome>> {
    let labels = splits.test.labels();
    let valid_labels = splits.valid.labels();
    let n = splits.test.examples.len();
    let flags =
        |on: bool| Tensor::<1, Bool>::from_data(TensorData::new(vec![on; n], [n]), &Device::flex());
    let mut outcomes = Vec::new();
    let mut valid_p = Vec::new();
    let mut test_p = Vec::new();
    let mut base_seconds = 0.0;
    let mut base_parameters = 0;
    for modality in MODALITIES {
        let config = classifier(&[modality], FusionKind::None);
        let trained = train(
            modality.name(),
            &config,
            &splits.train,
            &splits.valid,
            settings,
        )?;
        let p = test_scores(&trained, &splits.test)?;
        let (accuracy, macro_f1) = scores(&p, &labels)?;
        outcomes.push(Outcome {
            method: modality.name().into(),
            family: "unimodal".into(),
            seed: 0,
            accuracy,
            macro_f1,
            without_image: None,
            without_audio: None,
            parameters: trained.parameters,
            train_seconds: trained.seconds,
            peak_mb: 0.0,
            retrieval: None,
        });
        valid_p.push(test_scores(&trained, &splits.valid)?);
        test_p.push(p);
        base_seconds += trained.seconds;
        base_parameters += trained.parameters;
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
            let config = classifier(&[modality], FusionKind::None);
            let name = format!("{modality} fold {}", f + 1);
            let trained = train(
                &name,
                &config,
                &splits.train.subset(&rest),
                &splits.valid,
                settings,
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
        let no_image = combine(&test_p, &[flags(false), flags(true)])?;
        let no_audio = combine(&test_p, &[flags(true), flags(false)])?;
        outcomes.push(Outcome {
            method: method.into(),
            family: "late (model-level)".into(),
            seed: 0,
            accuracy,
            macro_f1,
            without_image: Some(scores(&no_image, &labels)?.0),
            without_audio: Some(scores(&no_audio, &labels)?.0),
            parameters: base_parameters + extra_parameters,
            train_seconds: base_seconds + extra_seconds + started.elapsed().as_secs_f64(),
            peak_mb: 0.0,
            retrieval: None,
        });
    }
    Ok(outcomes)
}
