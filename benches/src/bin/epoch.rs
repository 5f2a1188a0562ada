//! `cargo xtask bench epoch`: AV-MNIST training epochs of `polymodal train`
//! (concat fusion, every other setting at its default) on a device, against
//! the same model trained the same way in PyTorch
//! (`benches/python/avmnist_reference.py`) in the same run: on CUDA when the
//! device is a GPU and torch has one, else on the CPU.
//!
//! Reported per phase: decoding the data (WAV + MNIST files to features),
//! each of two epochs (training steps + validation, as `metrics.csv` counts
//! an epoch: the first pays the start-up costs, shader compilation on wgpu,
//! CUDA's set-up in PyTorch; the second is the steady state) and the whole
//! run (decoding, epochs, test evaluation; polymodal also writes its model
//! folder).
//!
//! Written with the run's provenance to `docs/benchmarks/epoch-<device>.md`
//! (`<device>`: `cpu`, or `wgpu-` and the adapter's name).
//!
//! The two sides alternate round by round (`--rounds`, default 3); times
//! are medians and ratios the median of the rounds' ratios with their
//! range. Each side's peak resident memory is reported too.
//!
//! Usage: epoch --shared DIR [--python PYTHON] [--device cpu|wgpu|wgpu:N] [--rounds N]

use std::time::{Duration, Instant};

use burn::module::Module;
use burn::prelude::Device;
use polymodal::ModelDir;
use polymodal::device::parse_device;
use polymodal::experiment::{self, Experiment};
use polymodal_benches::report::{
    Align, Goal, Provenance, Report, Table, device_slug, reports_dir, spread_cell,
};
use polymodal_benches::{Options, Rounds, adapter_name, error, peak_memory_mb, python_reference};
use serde_json::{Value, json};

/// The benchmark (also the GPU kit's `gpu` binary's applet of this name).
pub(crate) fn main() {
    polymodal_benches::main_of("epoch", run);
}

/// Epochs on each side: the first pays the start-up costs.
const EPOCHS: usize = 2;

fn run() -> Result<(), String> {
    let options = Options::from_args()?;
    let out = std::env::temp_dir().join(format!("polymodal-epoch-{}", std::process::id()));
    std::fs::create_dir_all(&out).map_err(error)?;
    let result = compare(&options, &out);
    let _ = std::fs::remove_dir_all(&out);
    result
}

/// What polymodal's run gives besides its times.
struct OurRun {
    accuracy: f32,
    parameters: usize,
}

/// polymodal's round: decoding alone, then the whole run (which decodes
/// again); the phases' times (decoding, each epoch, the whole run).
fn our_round(experiment: &Experiment, device: &Device) -> Result<(Vec<Duration>, OurRun), String> {
    let start = Instant::now();
    experiment::load_splits(experiment).map_err(error)?;
    let mut times = vec![start.elapsed()];
    let start = Instant::now();
    let report = experiment::run(experiment, device, false, &mut |_| {}).map_err(error)?;
    let whole = start.elapsed();
    times.extend(report.train.epochs.iter().map(|e| e.elapsed));
    if times.len() != EPOCHS + 1 {
        return Err(format!("{} epochs ran, {EPOCHS} asked", times.len() - 1));
    }
    times.push(whole);
    let (model, _, _) = ModelDir(report.model_dir.clone())
        .load(device)
        .map_err(error)?;
    let run = OurRun {
        accuracy: report.test.as_ref().map_or(f32::NAN, |t| t.accuracy),
        parameters: model.num_params(),
    };
    Ok((times, run))
}

/// PyTorch's phases' times, in [`our_round`]'s order (each `None` when
/// missing); `None` when the reference was skipped.
fn their_times(python: &Result<Value, String>) -> Option<Vec<Option<Duration>>> {
    let reference = python.as_ref().ok().filter(|r| r["skipped"].is_null())?;
    let seconds = |v: &Value| v.as_f64().map(Duration::from_secs_f64);
    let mut times = vec![seconds(&reference["decode_seconds"])];
    times.extend((0..EPOCHS).map(|i| seconds(&reference["epoch_seconds"][i])));
    times.push(seconds(&reference["total_seconds"]));
    Some(times)
}

fn compare(options: &Options, out: &std::path::Path) -> Result<(), String> {
    let data = std::path::absolute(options.shared.join("data/avmnist")).map_err(error)?;
    let config = out.join("experiment.toml");
    // A JSON string is a valid TOML basic string (quotes, backslashes escaped).
    let toml = format!(
        "output = \"run\"\n[data]\navmnist = {}\n[model]\nfusion = \"concat\"\n[train]\nepochs = {EPOCHS}\n",
        json!(data)
    );
    std::fs::write(&config, toml).map_err(error)?;
    let experiment = Experiment::from_file(&config).map_err(error)?;
    let device = parse_device(&options.device).map_err(error)?;

    let train = &experiment.train;
    let spec = json!({
        "data": data, "gpu": options.device != "cpu",
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "epochs": EPOCHS, "batch_size": train.batch_size, "learning_rate": train.learning_rate,
        "dim": experiment.model.dim, "seed": train.seed,
    });
    // Phases: decoding, each epoch, the whole run.
    let mut rounds = vec![Rounds::default(); EPOCHS + 2];
    let mut python = Err("not run".to_string());
    let mut ours = None;
    for _ in 0..options.rounds.max(1) {
        let (times, run) = our_round(&experiment, &device)?;
        ours = Some(run);
        python = python_reference(&options.python, "avmnist_reference.py", &spec);
        let theirs = their_times(&python);
        for (row, time) in times.into_iter().enumerate() {
            rounds[row].ours.push(time);
            if let Some(Some(theirs)) = theirs.as_ref().map(|t| t[row]) {
                rounds[row].theirs.push(theirs);
            }
        }
    }
    let OurRun {
        accuracy,
        parameters,
    } = ours.expect("at least one round");
    // The bench process runs nothing heavier than polymodal's side (the
    // reference is a child process), so its peak is polymodal's.
    let our_peak = peak_memory_mb()?;
    let reference = python.as_ref().ok().filter(|r| r["skipped"].is_null());
    let why = match &python {
        Err(e) => e.clone(),
        Ok(r) => format!("skipped: {}", r["skipped"].as_str().unwrap_or("?")),
    };
    let tool = reference.map_or(why, |r| r["tool"].as_str().unwrap_or("?").to_string());
    let mut phases = vec!["decoding + features".to_string()];
    phases.extend((1..=EPOCHS).map(|i| format!("epoch {i} (training + validation)")));
    phases.push("whole run".into());
    let mut table = Table::new(&[
        ("phase", Align::Left),
        ("polymodal", Align::Right),
        ("PyTorch", Align::Right),
        ("ratio", Align::Right),
    ]);
    let s = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let last_epoch = format!("epoch {EPOCHS} (training + validation)");
    for (phase, rounds) in phases.into_iter().zip(&rounds) {
        let theirs = if rounds.theirs.is_empty() {
            "-".into()
        } else {
            s(rounds.theirs_median())
        };
        // The goal is the steady-state epoch on the CPU backend.
        let goal = (phase == last_epoch && options.device == "cpu").then_some(Goal(1.0));
        let ratio = rounds.ratio().map(|r| r.median);
        let cells = vec![
            phase,
            s(rounds.ours_median()),
            theirs,
            spread_cell(rounds.ratio()),
        ];
        table.goal_row(cells, ratio, goal);
    }
    let their_peak = reference
        .and_then(|r| r["peak_mb"].as_f64())
        .map_or("-".to_string(), |mb| format!("{mb:.0} MB"));
    table.row(vec![
        "peak resident memory (decoding + training, CPU)".into(),
        format!("{our_peak:.0} MB"),
        their_peak,
        "-".into(),
    ]);
    let theirs = reference.and_then(|r| r["parameters"].as_u64());
    let their_accuracy = reference
        .and_then(|r| r["test_accuracy"].as_f64())
        .map_or("-".to_string(), |a| format!("{a:.3}"));
    let adapter = adapter_name(&options.device, &device);
    let provenance = Provenance::capture().python_tools(&python);
    let mut report = Report::new(
        format!(
            "AV-MNIST training epochs against PyTorch: {}",
            adapter.as_deref().unwrap_or(&options.device)
        ),
        provenance,
    );
    report
        .text(format!(
            "{EPOCHS} epochs of concat fusion (every other setting at its default): polymodal on \
             `{}`{}; PyTorch side: {tool}. {} rounds, each running polymodal and then PyTorch; \
             times are medians over the rounds, ratio = PyTorch time / polymodal time of each \
             round (above 1: polymodal is faster), its median and in brackets its range, rounded \
             down. Peak memory: each process's largest resident set over the rounds (polymodal's \
             bench process, the reference script's process); on a GPU the device's memory is not \
             counted. Goal on the CPU backend: the steady-state epoch (the last) at PyTorch's \
             speed or better. What each phase measures: \
             [../benchmarks.md](../benchmarks.md#av-mnist-training-cargo-xtask-bench-epoch).",
            options.device,
            adapter
                .as_ref()
                .map_or(String::new(), |a| format!(" (adapter: {a})")),
            options.rounds.max(1),
        ))
        .table(&table)
        .text(format!(
            "Test accuracy after {EPOCHS} epochs: polymodal {accuracy:.3}, PyTorch \
             {their_accuracy}. Parameters (batch-norm statistics included): polymodal \
             {parameters}, PyTorch {}.",
            theirs.map_or("-".into(), |n| n.to_string())
        ));
    let name = format!(
        "epoch-{}.md",
        device_slug(&options.device, adapter.as_deref())
    );
    report.write(&reports_dir(), &name)?;
    Ok(())
}
