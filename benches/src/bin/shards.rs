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
//! The two sides alternate round by round (`--rounds`), and each ratio is
//! the median of its rounds' ratios, shown with their range.
//!
//! Usage: shards --shared DIR [--python PYTHON] [--reps N] [--rounds N]
//!        shards --worker W N PATTERN REPS   (one worker's epoch, as JSON)

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use polymodal::train::shards::write_shards;
use polymodal::train::{
    ManifestEntry, ShardDataset, StreamConfig, StreamPosition, avmnist_features, open_avmnist,
};
use polymodal_benches::report::{
    Align, Goal, Provenance, Report, Table, reports_dir, workspace_root,
};
use polymodal_benches::{
    Measured, Options, Rounds, best_of, error, peak_memory_mb, python_reference, timing,
};
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

/// What one side measured in one round.
struct Side {
    write: Measured,
    index: Option<Duration>,
    one: Result<Workers, String>,
    two: Result<Workers, String>,
}

/// The run's fixed parts: the exported samples and where shards go.
struct Setup {
    entries: Vec<ManifestEntry>,
    scratch: PathBuf,
    /// polymodal's shards' pattern (both sides stream them).
    pattern: String,
    shard_bytes: u64,
}

/// polymodal's round: writing (best of `reps`), indexing, one and two
/// stream workers.
fn ours(setup: &Setup, reps: usize) -> Result<Side, String> {
    let out = setup.scratch.join("polymodal-write");
    let write = best_of(reps, || {
        let _ = std::fs::remove_dir_all(&out);
        write_shards(&setup.entries, &out, "avmnist", PER_SHARD)
            .map(|_| ())
            .map_err(error)
    })?;
    let index = best_of(reps, || {
        ShardDataset::open_pattern(&setup.pattern, avmnist_features(), None)
            .map(|_| ())
            .map_err(error)
    })?;
    let exe = std::env::current_exe().map_err(error)?;
    let exe = exe.to_str().ok_or("the benchmark's path is not UTF-8")?;
    let workers = |n: usize| {
        run_workers(n, |w| {
            let mut command = pinned(w, exe);
            command.args(["--worker", &w.to_string(), &n.to_string()]);
            command.args([&setup.pattern, &reps.to_string()]);
            command
        })
    };
    Ok(Side {
        write: Ok((write, "polymodal".into())),
        index: Some(index),
        one: Ok(workers(1)?),
        two: Ok(workers(2)?),
    })
}

/// The reference's round: webdataset writes the same samples (its own
/// shards) and streams polymodal's, so both sides read the same bytes.
fn theirs(setup: &Setup, options: &Options) -> (Side, Result<Value, String>) {
    let samples: Vec<Value> = setup
        .entries
        .iter()
        .map(|e| json!({"id": e.id, "label": e.label.to_string(), "image": e.image, "audio": e.audio}))
        .collect();
    let spec = json!({
        "reps": options.reps, "samples": samples, "per_shard": PER_SHARD,
        "out": setup.scratch.join("webdataset").join("avmnist-%06d.tar"),
    });
    let python = python_reference(&options.python, "shards_reference.py", &spec);
    let script = workspace_root().join("benches/python/shards_reference.py");
    let workers = |n: usize| {
        python.as_ref().map_err(Clone::clone)?;
        run_workers(n, |w| {
            let mut command = pinned(w, &options.python);
            command
                .arg(&script)
                .args(["worker", &w.to_string(), &n.to_string()])
                .args([&setup.pattern, &options.reps.to_string()])
                .env("PYTHONDONTWRITEBYTECODE", "1");
            command
        })
    };
    let side = Side {
        write: timing(&python, "write"),
        index: None,
        one: workers(1),
        two: workers(2),
    };
    (side, python)
}

/// Exports AV-MNIST's training pairs and writes polymodal's shards once.
fn setup(options: &Options) -> Result<Setup, String> {
    let scratch = workspace_root().join("target").join("bench-shards");
    let _ = std::fs::remove_dir_all(&scratch);
    let avmnist = options.shared.join("data/avmnist");
    let pairs = open_avmnist(&avmnist, &avmnist_features())
        .map_err(error)?
        .train;
    let entries = pairs.export(&scratch.join("files")).map_err(error)?;
    let out = scratch.join("polymodal");
    let written = write_shards(&entries, &out, "avmnist", PER_SHARD).map_err(error)?;
    let shard_bytes = written
        .shards
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    Ok(Setup {
        entries,
        scratch,
        pattern: written.pattern,
        shard_bytes,
    })
}

/// A streaming round's time, after checking it read every sample.
fn epoch_time(workers: &Workers, expected: usize) -> Result<Duration, String> {
    if workers.samples() != expected {
        return Err(format!(
            "the workers read {} samples, the shards hold {expected}",
            workers.samples()
        ));
    }
    Ok(Duration::from_secs_f64(workers.seconds()))
}

fn run() -> Result<(), String> {
    let options = Options::from_args()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        return Err("the two-worker rows need two cores".into());
    }
    let setup = setup(&options)?;
    let n = setup.entries.len();
    // Rows: write, index, one worker, two workers.
    let mut rounds = vec![Rounds::default(); 4];
    let mut skipped: Option<String> = None;
    let mut last: Option<(Side, Side)> = None;
    let mut python = Err("not run".into());
    for _ in 0..options.rounds.max(1) {
        let mine = ours(&setup, options.reps)?;
        let (other, output) = theirs(&setup, &options);
        python = output;
        let my_times = [
            mine.write.as_ref().map(|w| w.0).map_err(Clone::clone)?,
            mine.index.unwrap_or_default(),
            epoch_time(mine.one.as_ref()?, n)?,
            epoch_time(mine.two.as_ref()?, n)?,
        ];
        let their_times = [
            other.write.as_ref().map(|w| w.0).map_err(Clone::clone),
            Err("webdataset streams without an index".to_string()),
            other
                .one
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|w| epoch_time(w, n)),
            other
                .two
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|w| epoch_time(w, n)),
        ];
        for (row, (mine, theirs)) in my_times.into_iter().zip(their_times).enumerate() {
            rounds[row].ours.push(mine);
            match theirs {
                Ok(time) => rounds[row].theirs.push(time),
                Err(why) if row != 1 => skipped = Some(why),
                Err(_) => {}
            }
        }
        last = Some((mine, other));
    }
    let (mine, other) = last.expect("at least one round");
    let write_tool = other
        .write
        .as_ref()
        .map(|w| w.1.clone())
        .unwrap_or_else(|why| why.clone());
    // The reference's tools, or why it was skipped.
    let stream_tool = python
        .as_ref()
        .ok()
        .and_then(|p| p["stream_tool"].as_str())
        .map(str::to_string)
        .or(skipped)
        .unwrap_or_else(|| "webdataset".into());
    let rows: [(String, &Rounds, String, Option<Goal>); 4] = [
        (
            format!(
                "write {n} pairs as {} shards of {PER_SHARD} ({:.1} MB)",
                n.div_ceil(PER_SHARD),
                setup.shard_bytes as f64 / 1e6
            ),
            &rounds[0],
            write_tool,
            None,
        ),
        (
            "index the shards (headers and labels, all cores)".into(),
            &rounds[1],
            "webdataset streams without an index".into(),
            None,
        ),
        (
            format!(
                "stream an epoch, decode to features: one worker on one core ({} samples/s)",
                mine.one
                    .as_ref()
                    .map(Workers::per_worker)
                    .unwrap_or_default()
            ),
            &rounds[2],
            stream_tool.clone(),
            Some(Goal(1.0)),
        ),
        (
            format!(
                "stream an epoch, decode to features: two workers, one core each ({} samples/s per worker)",
                mine.two
                    .as_ref()
                    .map(Workers::per_worker)
                    .unwrap_or_default()
            ),
            &rounds[3],
            stream_tool,
            Some(Goal(1.0)),
        ),
    ];
    let mut table = Table::against_reference();
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    for (what, rounds, tool, goal) in rows {
        table.rounds_row(what, rounds, tool, goal, secs);
    }
    let mut memory = Table::new(&[
        ("peak memory per worker process (last round)", Align::Left),
        ("polymodal", Align::Right),
        ("reference", Align::Right),
    ]);
    for (label, ours, theirs) in [
        ("one worker", &mine.one, &other.one),
        ("two workers", &mine.two, &other.two),
    ] {
        memory.row(vec![
            label.into(),
            ours.as_ref().map_or("-".into(), Workers::peak_mb),
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
            "AV-MNIST's {n} training pairs from `shared/data/avmnist` (each MNIST digit written as \
             a grey PNG, each FSDD recording as its WAV), {PER_SHARD} pairs per shard. {} rounds, \
             each timing polymodal and then the reference, each side best of {} passes; an epoch \
             streams every sample through a shuffle buffer of {SHUFFLE_BUFFER} with the shards \
             shuffled, decoding {BATCH} at a time to the AV-MNIST features (28×28 normalised \
             pixels; one second at 8 kHz as a 40-band log-mel in dB, standardised); worker `w` of \
             `n` reads every `n`-th shard in its own process, pinned to core `w`, and an epoch \
             ends when its slowest worker is done. Times are medians over the rounds; ratio = \
             reference time / polymodal time of each round (above 1: polymodal is faster), its \
             median and in brackets its range, rounded down; a goal is judged on the median. The \
             reference writes its own shards with webdataset's `ShardWriter` and streams \
             polymodal's, so both sides read the same bytes. What the rows mean: \
             [../scaling.md](../scaling.md).",
            options.rounds.max(1),
            options.reps
        ))
        .table(&table)
        .table(&memory);
    report.write(&reports_dir(), "shards-cpu.md")?;
    let _ = std::fs::remove_dir_all(&setup.scratch);
    Ok(())
}
