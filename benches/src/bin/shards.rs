//! `cargo xtask bench shards`: training data in tar shards, polymodal
//! against webdataset in the same run. AV-MNIST's 2,700 training pairs
//! (each MNIST digit as a PNG, each FSDD recording as its WAV) are written
//! as six shards of 500, indexed, and streamed for an epoch (shards
//! shuffled, a shuffle buffer of 1,000, every sample decoded to the
//! AV-MNIST features: 28×28 normalised pixels, a 40-band log-mel of one
//! second) by one worker on one core and by two workers on a core each,
//! each worker its own process reading every second shard. The reference
//! does the same in Python: webdataset's `ShardWriter`, then `WebDataset`
//! with Pillow, soundfile and librosa. Reported: times, samples per second
//! per worker, ratios (reference time / polymodal time) and each worker's
//! peak memory, in `docs/benchmarks/shards-cpu.md`.
//!
//! Usage: shards --shared DIR [--python PYTHON] [--reps N]
//!        shards --worker W N PATTERN REPS   (one worker's epoch, as JSON)

use std::process::{Command, Stdio};

use polymodal::train::shards::write_shards;
use polymodal::train::{
    ShardDataset, StreamConfig, StreamPosition, avmnist_features, open_avmnist,
};
use polymodal_benches::report::{
    Align, Goal, Provenance, Report, Table, ratio_cell, reports_dir, workspace_root,
};
use polymodal_benches::{Options, best_of, error, python_reference, timing};
use serde_json::{Value, json};

/// Samples per shard: 2,700 pairs make six shards, so two workers get
/// three each.
const PER_SHARD: usize = 500;
/// Samples in each stream's shuffle buffer.
const SHUFFLE_BUFFER: usize = 1000;
/// Samples decoded at a time.
const BATCH: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--worker") {
        polymodal_benches::main_of("shards worker", || worker(&args[1..]));
    } else {
        polymodal_benches::main_of("shards", run);
    }
}

/// One worker's epochs: `W N PATTERN REPS`; prints the samples, the best
/// epoch's seconds and the process's peak memory as JSON.
fn worker(args: &[String]) -> Result<(), String> {
    let [w, n, pattern, reps] = args else {
        return Err("--worker takes W N PATTERN REPS".into());
    };
    let number = |s: &String| s.parse::<usize>().map_err(error);
    let config = StreamConfig {
        shuffle_buffer: SHUFFLE_BUFFER,
        seed: 7,
        worker: number(w)?,
        workers: number(n)?,
    };
    let data = ShardDataset::open_pattern(pattern, avmnist_features(), None)
        .and_then(|d| d.with_stream(config))
        .map_err(error)?;
    let mut samples = 0;
    let mut epoch = 0;
    let seconds = best_of(number(reps)?, || {
        let position = StreamPosition { epoch, consumed: 0 };
        epoch += 1;
        let mut stream = data.stream(position).map_err(error)?;
        samples = 0;
        while let Some(batch) = stream.next_batch(BATCH).map_err(error)? {
            samples += batch.len();
        }
        Ok(())
    })?;
    let peak = peak_memory_mb()?;
    println!(
        "{}",
        json!({"samples": samples, "seconds": seconds.as_secs_f64(), "peak_mb": peak})
    );
    Ok(())
}

/// This process's peak resident memory (`VmHWM`), in MB.
fn peak_memory_mb() -> Result<f64, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(error)?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .ok_or("no VmHWM in /proc/self/status")?;
    Ok(kb / 1024.0)
}

/// What the workers of one side measured: each worker's samples,
/// seconds and peak memory.
struct Workers(Vec<(usize, f64, f64)>);

impl Workers {
    /// The slowest worker's time: the epoch ends when it does.
    fn seconds(&self) -> f64 {
        self.0.iter().map(|w| w.1).fold(0.0, f64::max)
    }

    fn samples(&self) -> usize {
        self.0.iter().map(|w| w.0).sum()
    }

    /// Samples per second of each worker: the one, or the lowest to the
    /// highest.
    fn per_worker(&self) -> String {
        let rates: Vec<f64> = self.0.iter().map(|w| w.0 as f64 / w.1).collect();
        let low = rates.iter().copied().fold(f64::MAX, f64::min);
        let high = rates.iter().copied().fold(0.0, f64::max);
        if rates.len() == 1 {
            format!("{low:.0}")
        } else {
            format!("{low:.0}–{high:.0}")
        }
    }

    fn peak_mb(&self) -> String {
        let peaks: Vec<String> = self.0.iter().map(|w| format!("{:.0}", w.2)).collect();
        format!("{} MB", peaks.join(" / "))
    }
}

/// Runs `n` worker processes at once, worker `w` pinned to core `w`
/// (`taskset`), each made by `command(w)`; their JSON reports.
fn run_workers(n: usize, command: impl Fn(usize) -> Command) -> Result<Workers, String> {
    let children = (0..n)
        .map(|w| {
            command(w)
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("worker {w}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut measured = Vec::new();
    for (w, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().map_err(error)?;
        if !output.status.success() {
            return Err(format!("worker {w} of {n} failed"));
        }
        let report: Value = serde_json::from_slice(&output.stdout)
            .map_err(|e| format!("worker {w} of {n}: {e}"))?;
        let field = |name: &str| {
            report[name]
                .as_f64()
                .ok_or(format!("worker {w}: no {name}"))
        };
        measured.push((
            field("samples")? as usize,
            field("seconds")?,
            field("peak_mb")?,
        ));
    }
    Ok(Workers(measured))
}

/// `program` pinned to core `core`.
fn pinned(core: usize, program: &str) -> Command {
    let mut command = Command::new("taskset");
    command.args(["-c", &core.to_string(), program]);
    command
}

fn run() -> Result<(), String> {
    let options = Options::from_args()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        return Err("the two-worker rows need two cores".into());
    }
    let scratch = workspace_root().join("target").join("bench-shards");
    let _ = std::fs::remove_dir_all(&scratch);
    let avmnist = options.shared.join("data/avmnist");
    let features = avmnist_features();
    let pairs = open_avmnist(&avmnist, &features).map_err(error)?.train;
    let entries = pairs.export(&scratch.join("files")).map_err(error)?;
    let out = scratch.join("polymodal");
    let mut pattern = String::new();
    let ours_write = best_of(options.reps, || {
        let _ = std::fs::remove_dir_all(&out);
        pattern = write_shards(&entries, &out, "avmnist", PER_SHARD)
            .map_err(error)?
            .pattern;
        Ok(())
    })?;
    let shard_bytes: u64 = std::fs::read_dir(&out)
        .map_err(error)?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let ours_index = best_of(options.reps, || {
        ShardDataset::open_pattern(&pattern, features.clone(), None)
            .map(|_| ())
            .map_err(error)
    })?;
    let exe = std::env::current_exe().map_err(error)?;
    let exe = exe.to_str().ok_or("the benchmark's path is not UTF-8")?;
    let reps = options.reps.to_string();
    let ours = |n: usize| {
        run_workers(n, |w| {
            let mut command = pinned(w, exe);
            command.args(["--worker", &w.to_string(), &n.to_string(), &pattern, &reps]);
            command
        })
    };
    let (ours_one, ours_two) = (ours(1)?, ours(2)?);

    // The reference: webdataset writes the same samples (its own shards,
    // which polymodal's stream would read as well) and streams polymodal's
    // shards, so both read the same bytes.
    let script = workspace_root().join("benches/python/shards_reference.py");
    let samples: Vec<Value> = entries
        .iter()
        .map(|e| json!({"id": e.id, "label": e.label.to_string(), "image": e.image, "audio": e.audio}))
        .collect();
    let spec = json!({
        "reps": options.reps, "samples": samples, "per_shard": PER_SHARD,
        "out": scratch.join("webdataset").join("avmnist-%06d.tar"),
    });
    let python = python_reference(&options.python, "shards_reference.py", &spec);
    let reference_write = timing(&python, "write");
    let reference = |n: usize| {
        run_workers(n, |w| {
            let mut command = pinned(w, &options.python);
            command
                .arg(&script)
                .args(["worker", &w.to_string(), &n.to_string(), &pattern, &reps])
                .env("PYTHONDONTWRITEBYTECODE", "1");
            command
        })
    };
    let (theirs_one, theirs_two) = match &python {
        Ok(_) => (reference(1), reference(2)),
        Err(why) => (Err(why.clone()), Err(why.clone())),
    };
    let tool = python
        .as_ref()
        .ok()
        .and_then(|p| p["stream_tool"].as_str())
        .unwrap_or("webdataset")
        .to_string();

    let mut table = Table::against_reference();
    let secs = |d: f64| format!("{d:.2} s");
    let (write_time, write_tool, write_ratio) = match &reference_write {
        Ok((time, tool)) => (
            secs(time.as_secs_f64()),
            tool.clone(),
            Some(time.as_secs_f64() / ours_write.as_secs_f64()),
        ),
        Err(why) => ("-".into(), why.clone(), None),
    };
    table.goal_row(
        vec![
            format!(
                "write {} pairs as {} shards of {PER_SHARD} ({:.1} MB)",
                entries.len(),
                entries.len().div_ceil(PER_SHARD),
                shard_bytes as f64 / 1e6
            ),
            secs(ours_write.as_secs_f64()),
            write_time,
            write_tool,
            ratio_cell(write_ratio),
        ],
        write_ratio,
        None,
    );
    table.row(vec![
        "index the shards (headers and labels, all cores)".into(),
        secs(ours_index.as_secs_f64()),
        "-".into(),
        "webdataset streams without an index".into(),
        ratio_cell(None),
    ]);
    for (label, ours, theirs) in [
        ("one worker on one core", &ours_one, &theirs_one),
        ("two workers, one core each", &ours_two, &theirs_two),
    ] {
        let what = format!(
            "stream an epoch, decode to features: {label} ({} samples/s per worker)",
            ours.per_worker()
        );
        let (time, tool_cell, ratio) = match theirs {
            Ok(t) => (
                format!(
                    "{} ({} samples/s per worker)",
                    secs(t.seconds()),
                    t.per_worker()
                ),
                tool.clone(),
                Some(t.seconds() / ours.seconds() * ours.samples() as f64 / t.samples() as f64),
            ),
            Err(why) => ("-".into(), why.clone(), None),
        };
        table.goal_row(
            vec![
                what,
                secs(ours.seconds()),
                time,
                tool_cell,
                ratio_cell(ratio),
            ],
            ratio,
            Some(Goal(1.0)),
        );
    }
    let mut memory = Table::new(&[
        ("peak memory per worker process", Align::Left),
        ("polymodal", Align::Right),
        ("reference", Align::Right),
    ]);
    for (label, ours, theirs) in [
        ("one worker", &ours_one, &theirs_one),
        ("two workers", &ours_two, &theirs_two),
    ] {
        memory.row(vec![
            label.into(),
            ours.peak_mb(),
            theirs.as_ref().map_or("-".into(), Workers::peak_mb),
        ]);
    }
    let provenance = Provenance::capture().python_tools(&python);
    let mut report = Report::new(
        "Tar shards: writing and streaming against webdataset",
        provenance,
    );
    report
        .text(format!(
            "AV-MNIST's {} training pairs from `shared/data/avmnist` (each MNIST digit written as \
             a grey PNG, each FSDD recording as its WAV), {PER_SHARD} pairs per shard. Best of {} \
             passes; an epoch streams every sample through a shuffle buffer of {SHUFFLE_BUFFER} \
             with the shards shuffled, decoding {BATCH} at a time to the AV-MNIST features \
             (28×28 normalised pixels; one second at 8 kHz as a 40-band log-mel in dB, \
             standardised); worker `w` of `n` reads every `n`-th shard in its own process, pinned \
             to core `w`. Ratio = reference time / polymodal time for the same samples (above 1: \
             polymodal is faster), rounded down. The reference writes its own shards with \
             webdataset's `ShardWriter` and streams polymodal's, so both sides read the same \
             bytes. What the rows mean: [../scaling.md](../scaling.md).",
            entries.len(),
            options.reps
        ))
        .table(&table)
        .table(&memory);
    report.write(&reports_dir(), "shards-cpu.md")?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
