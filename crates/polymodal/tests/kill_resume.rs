//! Kill and resume: `polymodal train` killed with SIGKILL at any moment and
//! continued with `--resume` ends like an uninterrupted run (the same files,
//! weights, optimiser state, metrics, charts and final evaluation), and a
//! kill never leaves a checkpoint that cannot be read.
//!
//! The kills land at moments drawn by a seeded RNG (over an uninterrupted
//! run's duration, or a fraction of an epoch into an epoch), and, since a
//! random moment almost never falls inside a file write, deterministically
//! inside every kind of checkpoint write through the trainer's
//! `POLYMODAL_FAULT_INJECT` hook, which stops the process there for the test
//! to kill it.
//!
//! `POLYMODAL_KILL_SEED=N` repeats (up to timing jitter) the random kills of
//! a failed run, whose seed and kill times the test prints.
//!
//! The runs train on the demo dataset, which has videos: the `video`
//! feature (on by default).
#![cfg(feature = "video")]

#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use polymodal::ModelCard;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Epochs of every run: enough for kills before, inside and after a middle
/// epoch, and for a last epoch to be interrupted too.
const EPOCHS: usize = 3;

/// What the child prints when the fault-injection hook has stopped it.
const PAUSED: &str = "polymodal: fault injection: paused";

/// Runs killed at random moments (each then resumed, and perhaps killed
/// again, until it ends).
const RANDOM_TRIALS: usize = 5;

/// Default seed of the random kill times.
const DEFAULT_SEED: u64 = 18;

/// The demo dataset, two training samples per class (twelve, three batches
/// of four): a run takes a fraction of a second, so the test's sixty-odd
/// runs stay well under a minute.
fn generate(dir: &Path) -> PathBuf {
    common::generate(dir, ["2", "1", "1"])
}

/// Writes `<dir>/experiment.toml` (model folder `<dir>/run`, data in
/// `<dir>/../data`). Everything resume must restore is in play: modality
/// dropout (Burn's random stream), a warm-up + cosine schedule (the
/// optimiser step), accumulation and clipping (Adam's state).
fn experiment(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("experiment.toml");
    let text = format!(
        "output = \"run\"\n\
         [data]\ntrain = \"../data/train.jsonl\"\nvalid = \"../data/valid.jsonl\"\n\
         test = \"../data/test.jsonl\"\n\
         [model]\nmodalities = [\"image\", \"audio\"]\nfusion = \"gated\"\ndim = 8\n\
         modality_dropout = 0.3\n\
         [features.image]\nwidth = 16\nheight = 16\n\
         [features.audio]\nclip_samples = 2000\n\
         mel = {{ sample_rate = 8000, n_fft = 128, hop_length = 128, n_mels = 16 }}\n\
         [train]\nepochs = {EPOCHS}\nbatch_size = 4\naccumulation = 2\nclip_grad_norm = 1.0\n\
         learning_rate = 0.01\nschedule = {{ kind = \"warmup-cosine\", warmup_steps = 2, min_factor = 0.1 }}\n"
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// A `polymodal train` child process, its output in files (a pipe nobody
/// reads could fill up and stall it). Dropping it kills it, so a failing
/// test leaves no process behind.
struct Training {
    child: std::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
    started: Instant,
}

impl Training {
    /// Starts `polymodal train --config <config>` (with `--resume`), the
    /// hook set to `fault` if given; output goes to `<log>.out` / `.err`.
    fn start(config: &Path, resume: bool, fault: Option<&str>, log: &Path) -> Self {
        let stdout = log.with_extension("out");
        let stderr = log.with_extension("err");
        let mut command = Command::new(env!("CARGO_BIN_EXE_polymodal"));
        command
            .args([
                "train",
                "--device",
                "cpu",
                "--config",
                config.to_str().unwrap(),
            ])
            .args(resume.then_some("--resume"))
            .env_remove("POLYMODAL_FAULT_INJECT")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        if let Some(fault) = fault {
            command.env("POLYMODAL_FAULT_INJECT", fault);
        }
        Self {
            child: command.spawn().expect("start polymodal train"),
            stdout,
            stderr,
            started: Instant::now(),
        }
    }

    fn output(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "stdout:\n{}stderr:\n{}",
            read(&self.stdout),
            read(&self.stderr)
        )
    }

    /// Waits for the run to finish, requiring success; returns its stdout.
    fn finish(mut self) -> String {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "training failed: {}", self.output());
        std::fs::read_to_string(&self.stdout).unwrap()
    }

    /// The epochs this process has finished (the CLI prints a line for
    /// each, after the epoch's files are written).
    fn epochs_done(&self) -> usize {
        std::fs::read_to_string(&self.stdout)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("train: epoch"))
            .count()
    }

    /// SIGKILLs the child at `moment` unless it has finished by then;
    /// whether it was killed.
    fn kill_at(mut self, moment: Moment) -> bool {
        let mut counting_from = None;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "training failed: {}", self.output());
                return false;
            }
            let due = match moment {
                Moment::AfterStart(delay) => self.started.elapsed() >= delay,
                Moment::IntoEpoch { finished, delay } => {
                    if counting_from.is_none() && self.epochs_done() >= finished {
                        counting_from = Some(Instant::now());
                    }
                    counting_from.is_some_and(|t| t.elapsed() >= delay)
                }
            };
            if due {
                return self.kill();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits until the hook has stopped the child, then SIGKILLs it.
    fn kill_when_paused(mut self) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while !std::fs::read_to_string(&self.stderr)
            .unwrap_or_default()
            .contains(PAUSED)
        {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the fault point was never reached ({status}): {}",
                    self.output()
                );
            }
            assert!(Instant::now() < deadline, "no pause: {}", self.output());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(self.kill(), "a paused child cannot have exited");
    }

    /// `Child::kill` is SIGKILL on Unix: no destructor, flush or handler runs.
    fn kill(&mut self) -> bool {
        let killed = self.child.try_wait().unwrap().is_none() && self.child.kill().is_ok();
        self.child.wait().unwrap();
        killed
    }
}

impl Drop for Training {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// When a random kill comes.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// This long after the process started: anywhere, start-up included.
    AfterStart(Duration),
    /// This long after the process finished its `finished`-th epoch: inside
    /// the next epoch (or the final evaluation), which a time from the start
    /// hits only now and then, start-up being most of a short run.
    IntoEpoch { finished: usize, delay: Duration },
}

/// Every file of the run folder, by path relative to it.
fn files(run: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for folder in [run.to_path_buf(), run.join("training")] {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                let name = path
                    .strip_prefix(run)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                out.insert(name, path);
            }
        }
    }
    out
}

/// Checks that everything in the run folder of a killed run can be read —
/// every weights file, the optimiser state, the state file and the files it
/// names, the metrics — apart from `*.partial` temporary files, which nothing
/// reads. Returns a description of what the kill left.
fn check_readable(run: &Path) -> String {
    let files = files(run);
    let Some(card) = files.get("model.json") else {
        assert!(
            !files.keys().any(|f| f.ends_with(".bpk")),
            "weights without a model card: {files:?}"
        );
        return "nothing written yet".into();
    };
    let card: ModelCard = serde_json::from_str(&std::fs::read_to_string(card).unwrap())
        .unwrap_or_else(|e| panic!("model.json: {e}"));
    let device = Device::flex();
    let mut partial = Vec::new();
    let mut state = None;
    for (name, path) in &files {
        if name.ends_with(".partial") {
            partial.push(name.clone());
        } else if name.ends_with(".optim.bpk") {
            let bytes = burn::tensor::Bytes::from_bytes_vec(std::fs::read(path).unwrap());
            burn::optim::OptimizerRecord::from_bytes(bytes).unwrap_or_else(|e| unreadable(name, e));
        } else if name.ends_with(".bpk") {
            let model = card.classifier.init(&device).unwrap();
            polymodal::train::load_checkpoint(model, path).unwrap_or_else(|e| unreadable(name, e));
        } else if name.ends_with(".jsonl") {
            for line in std::fs::read_to_string(path).unwrap().lines() {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| unreadable(name, e));
            }
        } else if name.ends_with(".json") {
            let text = std::fs::read_to_string(path).unwrap();
            let value: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| unreadable(name, e));
            if name == "training/state.json" {
                state = Some((value["epoch"].as_u64(), value["best_epoch"].as_u64()));
            }
        } else if name.ends_with(".csv") {
            let text = std::fs::read_to_string(path).unwrap();
            assert!(text.ends_with('\n'), "{name} is cut short: {text:?}");
            assert!(
                text.lines().all(|l| l.split(',').count() == 7),
                "{name}: {text}"
            );
        }
    }
    let Some((Some(epoch), Some(best_epoch))) = state else {
        assert!(state.is_none(), "state.json lacks its epochs: {state:?}");
        return format!("no state yet, partial files {partial:?}");
    };
    // What resume reads: the files the state names and, once the state has
    // moved past the best epoch, the best model (the best model of the
    // state's own epoch is published after the state, and resume publishes
    // it again from the epoch's file).
    for what in ["model", "optim"] {
        let file = format!("training/epoch-{epoch}.{what}.bpk");
        assert!(files.contains_key(&file), "state names missing {file}");
    }
    assert!(
        best_epoch == epoch || files.contains_key("model.bpk"),
        "no best model"
    );
    format!("state after epoch {epoch}, partial files {partial:?}")
}

fn unreadable<T>(name: &str, error: impl std::fmt::Display) -> T {
    panic!("{name} cannot be read: {error}")
}

/// Every tensor of a model (parameters and batch-norm statistics), by module
/// path, as raw bytes.
#[derive(Default)]
struct Tensors {
    path: Vec<String>,
    values: Vec<(String, Vec<u8>)>,
}

impl ModuleVisitor for Tensors {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let bytes = param.val().into_data().as_bytes().to_vec();
        self.values.push((self.path.join("."), bytes));
    }
}

/// The files of a run folder in the form compared across runs:
/// - weights files (`*.model.bpk`, `model.bpk`) as their tensors' values:
///   Burn gives every parameter a random id when a model is built, from the
///   operating system's entropy, and stores it in the file (so that the Adam
///   state, keyed by those ids, finds its parameters again), so two runs
///   never write the same bytes, however equal their weights;
/// - the Adam state (`*.optim.bpk`), keyed by those ids, not at all: it is
///   compared by training on (see [`train_on`]);
/// - the metrics and the state without the wall-clock seconds of each epoch;
/// - every other file as its bytes.
fn contents(run: &Path) -> BTreeMap<String, Vec<u8>> {
    let without_seconds = |value: &mut serde_json::Value| {
        value.as_object_mut().unwrap().remove("elapsed");
    };
    let card: ModelCard =
        serde_json::from_str(&std::fs::read_to_string(run.join("model.json")).unwrap()).unwrap();
    files(run)
        .into_iter()
        .map(|(name, path)| {
            let bytes = std::fs::read(&path).unwrap();
            let text = || String::from_utf8(bytes.clone()).unwrap();
            let comparable = match name.as_str() {
                "metrics.csv" => text()
                    .lines()
                    .map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n")
                    .collect::<String>()
                    .into_bytes(),
                "metrics.jsonl" => text()
                    .lines()
                    .map(|l| {
                        let mut row: serde_json::Value = serde_json::from_str(l).unwrap();
                        without_seconds(&mut row);
                        row.to_string() + "\n"
                    })
                    .collect::<String>()
                    .into_bytes(),
                "training/state.json" => {
                    let mut state: serde_json::Value = serde_json::from_str(&text()).unwrap();
                    for row in state["history"].as_array_mut().unwrap() {
                        without_seconds(row);
                    }
                    state.to_string().into_bytes()
                }
                n if n.ends_with(".optim.bpk") => Vec::new(),
                n if n.ends_with(".bpk") => {
                    let device = Device::flex();
                    let model = card.classifier.init(&device).unwrap();
                    let model = polymodal::train::load_checkpoint(model, &path).unwrap();
                    let mut tensors = Tensors::default();
                    model.visit(&mut tensors);
                    assert!(!tensors.values.is_empty());
                    tensors
                        .values
                        .into_iter()
                        .flat_map(|(path, bytes)| [path.into_bytes(), bytes])
                        .flatten()
                        .collect()
                }
                _ => bytes,
            };
            (name, comparable)
        })
        .collect()
}

/// Resumes the run of `<dir>/experiment.toml` with one more epoch: the
/// extra epoch starts from the saved Adam state and step count, so two runs
/// train on to the same weights only if those were the same. Returns the
/// run's stdout.
fn train_on(dir: &Path) -> String {
    let config = dir.join("experiment.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let more = text.replace(
        &format!("epochs = {EPOCHS}\n"),
        &format!("epochs = {}\n", EPOCHS + 1),
    );
    assert_ne!(text, more);
    std::fs::write(&config, more).unwrap();
    Training::start(&config, true, None, &dir.join("log-on")).finish()
}

/// Copies `from` (two levels: the run folder and its `training/`) to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// The CLI's closing lines: the best epoch with its validation metrics, and
/// the test-set evaluation of the best model.
fn final_lines(stdout: &str) -> Vec<&str> {
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("best epoch") || l.starts_with("test accuracy"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    lines
}

/// Requires a resumed run to have ended exactly like the uninterrupted one:
/// the same closing lines and the same run folder.
fn assert_same(trial: &str, run: &Path, stdout: &str, reference: (&Path, &str)) {
    assert_eq!(
        final_lines(stdout),
        final_lines(reference.1),
        "{trial}: final metrics"
    );
    let (expected, got) = (contents(reference.0), contents(run));
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "{trial}: the run folders hold different files"
    );
    for (name, bytes) in &expected {
        assert!(
            *bytes == got[name],
            "{trial}: {name} differs from the uninterrupted run's"
        );
    }
}

#[test]
fn a_killed_and_resumed_run_ends_like_an_uninterrupted_one() {
    let test_start = Instant::now();
    let root = common::scratch("kill-all");
    generate(&root);

    // Two uninterrupted runs: the whole claim rests on training repeating
    // exactly from process to process. The shorter run's duration (the
    // first may pay for cold caches) is the range of the random kills.
    let mut duration = Duration::MAX;
    let mut straight_runs = Vec::new();
    for name in ["straight", "straight-again"] {
        let dir = root.join(name);
        let config = experiment(&dir);
        let started = Instant::now();
        let stdout = Training::start(&config, false, None, &dir.join("log")).finish();
        duration = duration.min(started.elapsed());
        straight_runs.push((dir, stdout));
    }
    let [(straight, reference), (again, stdout)] = &straight_runs[..] else {
        unreachable!()
    };
    let straight_run = straight.join("run");
    let reference = (straight_run.as_path(), reference.as_str());
    // The uninterrupted run trained on by one epoch, in a copy.
    let straight_on = root.join("straight-on");
    copy_dir(straight, &straight_on);
    let stdout_on = train_on(&straight_on);
    let straight_on_run = straight_on.join("run");
    let reference_on = (straight_on_run.as_path(), stdout_on.as_str());
    let check = |trial: &str, dir: &Path, stdout: &str| {
        assert_same(trial, &dir.join("run"), stdout, reference);
        let stdout = train_on(dir);
        assert_same(
            &format!("{trial} (trained on)"),
            &dir.join("run"),
            &stdout,
            reference_on,
        );
    };
    check("straight-again", again, stdout);
    eprintln!("uninterrupted run: {:.2} s", duration.as_secs_f64());
    let improvements = std::fs::read_to_string(straight.join("run/metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse::<f32>().unwrap())
        .fold((0, f32::NEG_INFINITY), |(n, best), accuracy| {
            if accuracy > best {
                (n + 1, accuracy)
            } else {
                (n, best)
            }
        })
        .0;

    // Inside every kind of write: the `n`-th write of a file in the killed
    // process, half-written (or, with `:renamed`, just renamed into place).
    // Each list is the hooks of successive processes: all but the last are
    // killed at their fault point, the last (no hook) runs to the end.
    let last = EPOCHS;
    let mut faults: Vec<Vec<String>> = [
        // Epoch 1's best model (written after the state naming it).
        "model.bpk:1".to_string(),
        // Epoch 2's files, before the state names them.
        "epoch-2.model.bpk:1".into(),
        "epoch-2.optim.bpk:1".into(),
        "state.json:2".into(),
        // Epoch 2 committed; epoch 1's files not yet removed.
        "state.json:2:renamed".into(),
        "metrics.csv:2".into(),
        "metrics.jsonl:2".into(),
        "loss.svg:2".into(),
        // The last epoch committed; metrics and charts not yet written.
        format!("state.json:{last}:renamed"),
        format!("accuracy.svg:{last}"),
    ]
    .into_iter()
    .map(|f| vec![f])
    .collect();
    // The last improvement's best model, when it is not epoch 1's.
    if improvements > 1 {
        faults.push(vec![format!("model.bpk:{improvements}")]);
    }
    // Killed again and again while resuming: resumed after epoch 1, the
    // process's first state write is epoch 2's; resumed after epoch 2, its
    // first metrics write is the rewrite of the resumed history.
    faults.push(vec![
        "epoch-2.optim.bpk:1".into(),
        "state.json:1:renamed".into(),
        "metrics.csv:1".into(),
    ]);
    for (i, hooks) in faults.iter().enumerate() {
        let trial = format!("fault-{i}");
        let dir = root.join(&trial);
        let config = experiment(&dir);
        for (n, hook) in hooks.iter().enumerate() {
            let log = dir.join(format!("log-{n}"));
            Training::start(&config, n > 0, Some(hook), &log).kill_when_paused();
            let left = check_readable(&dir.join("run"));
            if !hook.ends_with(":renamed") {
                assert!(left.contains(".partial"), "{trial}: {hook}: {left}");
            }
            eprintln!("{trial}: killed inside the write {hook}: {left}");
        }
        let log = dir.join(format!("log-{}", hooks.len()));
        let stdout = Training::start(&config, true, None, &log).finish();
        check(&trial, &dir, &stdout);
    }

    // At random moments: each trial is killed once, then resumed and
    // perhaps killed again (each time with probability 1/2, at most three
    // kills) until it ends. A kill comes at a time drawn over an
    // uninterrupted run's duration, or a fraction of an epoch's time into
    // the epoch after one this process finished.
    let seed = std::env::var("POLYMODAL_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    eprintln!("random kills: seed {seed} (POLYMODAL_KILL_SEED={seed} repeats them)");
    let seconds: Vec<f64> = std::fs::read_to_string(straight.join("run/metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    let epoch_time = Duration::from_secs_f64(seconds.iter().sum::<f64>() / seconds.len() as f64);
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..RANDOM_TRIALS {
        let trial = format!("random-{i}");
        let dir = root.join(&trial);
        let config = experiment(&dir);
        let mut process = 0;
        let stdout = loop {
            let log = dir.join(format!("log-{process}"));
            let child = Training::start(&config, process > 0, None, &log);
            let kill = process == 0 || (process < 3 && rng.random_bool(0.5));
            process += 1;
            if !kill {
                break child.finish();
            }
            let moment = if rng.random_bool(0.5) {
                Moment::AfterStart(duration.mul_f64(rng.random_range(0.02..1.0)))
            } else {
                Moment::IntoEpoch {
                    finished: rng.random_range(1..=EPOCHS),
                    delay: epoch_time.mul_f64(rng.random_range(0.0..1.0)),
                }
            };
            if child.kill_at(moment) {
                let left = check_readable(&dir.join("run"));
                let out = std::fs::read_to_string(log.with_extension("out")).unwrap();
                let epochs = out
                    .lines()
                    .filter(|l| l.starts_with("train: epoch"))
                    .count();
                eprintln!(
                    "{trial}: process {process} killed {moment:?}, having finished \
                     {epochs} epoch(s): {left}"
                );
            } else {
                eprintln!("{trial}: process {process} ended before {moment:?}");
                break std::fs::read_to_string(log.with_extension("out")).unwrap();
            }
        };
        check(&trial, &dir, &stdout);
    }
    eprintln!(
        "kill and resume: {} s in all",
        test_start.elapsed().as_secs()
    );
    let _ = std::fs::remove_dir_all(root);
}
