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
//! Usage: epoch --shared DIR [--python PYTHON] [--device cpu|wgpu|wgpu:N]

use std::time::{Duration, Instant};

use burn::module::Module;
use polymodal::ModelDir;
use polymodal::device::parse_device;
use polymodal::experiment::{self, Experiment};
use polymodal_benches::report::{
    Align, Provenance, Report, Table, device_slug, ratio_cell, reports_dir,
};
use polymodal_benches::{Options, adapter_name, python_reference};
use serde_json::json;

fn main() {
    polymodal_benches::main_of("epoch", run);
}

/// Epochs on each side: the first pays the start-up costs.
const EPOCHS: usize = 2;

fn error(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn run() -> Result<(), String> {
    let options = Options::from_args()?;
    let out = std::env::temp_dir().join(format!("polymodal-epoch-{}", std::process::id()));
    std::fs::create_dir_all(&out).map_err(error)?;
    let result = compare(&options, &out);
    let _ = std::fs::remove_dir_all(&out);
    result
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

    // Decoding alone, then the whole run (which decodes again).
    let start = Instant::now();
    experiment::load_splits(&experiment).map_err(error)?;
    let decode = start.elapsed();
    let start = Instant::now();
    let report = experiment::run(&experiment, &device, false, &mut |_| {}).map_err(error)?;
    let whole = start.elapsed();
    let epochs: Vec<Duration> = report.train.epochs.iter().map(|e| e.elapsed).collect();
    let accuracy = report.test.as_ref().map_or(f32::NAN, |t| t.accuracy);
    let (model, _, _) = ModelDir(report.model_dir.clone())
        .load(&device)
        .map_err(error)?;
    let parameters = model.num_params();

    let train = &experiment.train;
    let spec = json!({
        "data": data, "gpu": options.device != "cpu",
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "epochs": EPOCHS, "batch_size": train.batch_size, "learning_rate": train.learning_rate,
        "dim": experiment.model.dim, "seed": train.seed,
    });
    let python = python_reference(&options.python, "avmnist_reference.py", &spec);
    let reference = python.as_ref().ok().filter(|r| r["skipped"].is_null());
    let why = match &python {
        Err(e) => e.clone(),
        Ok(r) => format!("skipped: {}", r["skipped"].as_str().unwrap_or("?")),
    };
    let tool = reference.map_or(why, |r| r["tool"].as_str().unwrap_or("?").to_string());
    let seconds = |key: &str, index: Option<usize>| {
        let value = reference.map(|r| &r[key]);
        let value = match index {
            Some(i) => value.and_then(|v| v.get(i)),
            None => value,
        };
        value
            .and_then(serde_json::Value::as_f64)
            .map(Duration::from_secs_f64)
    };
    let mut phases = vec![(
        "decoding + features".to_string(),
        decode,
        seconds("decode_seconds", None),
    )];
    for (i, ours) in epochs.iter().enumerate() {
        let phase = format!("epoch {} (training + validation)", i + 1);
        phases.push((phase, *ours, seconds("epoch_seconds", Some(i))));
    }
    phases.push((
        "whole run".to_string(),
        whole,
        seconds("total_seconds", None),
    ));
    let mut table = Table::new(&[
        ("phase", Align::Left),
        ("polymodal", Align::Right),
        ("PyTorch", Align::Right),
        ("ratio", Align::Right),
    ]);
    let s = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    for (phase, ours, theirs) in phases {
        let ratio = theirs.map(|t| t.as_secs_f64() / ours.as_secs_f64());
        table.row(vec![
            phase,
            s(ours),
            theirs.map_or("-".into(), s),
            ratio_cell(ratio),
        ]);
    }
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
             `{}`{}; PyTorch side: {tool}. Ratio = PyTorch time / polymodal time (above 1: polymodal \
             is faster), rounded down. No goal is set for these figures. What each phase \
             measures: [../benchmarks.md](../benchmarks.md#av-mnist-training-cargo-xtask-bench-epoch).",
            options.device,
            adapter.as_ref().map_or(String::new(), |a| format!(" (adapter: {a})")),
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
