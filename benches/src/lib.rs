//! Criterion benchmarks live in `benches/`; run `cargo bench -p polymodal-benches`.
//! The binaries in `src/bin` compare polymodal with Python reference tools in
//! the same run; this library holds what they share, [`report`] the writing
//! of their generated reports (`docs/benchmarks/*.md`), [`resnet_step`] the
//! ResNet-18 training step they time.

pub mod report;
pub mod resnet_step;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `--shared DIR [--python PYTHON] [--reps N] [--rounds N] [--device D]
/// [--precision P]` (`--device`: the encoder and epoch benchmarks';
/// `--precision`: the encoder benchmark's).
pub struct Options {
    /// The shared data folder.
    pub shared: PathBuf,
    /// The Python interpreter of the reference side.
    pub python: String,
    /// Timed passes per measurement (its best is the round's time).
    pub reps: usize,
    /// Rounds, each measuring polymodal then the reference (see [`Rounds`]).
    pub rounds: usize,
    /// `cpu`, `wgpu` or `wgpu:N`.
    pub device: String,
    /// `f32` or `f16`.
    pub precision: String,
}

impl Options {
    /// Parses the process arguments.
    pub fn from_args() -> Result<Self, String> {
        let mut options = Self {
            shared: PathBuf::from("../shared"),
            python: "python3".into(),
            reps: 5,
            rounds: 3,
            device: "cpu".into(),
            precision: "f32".into(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let value = args.next().ok_or(format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--shared" => options.shared = value.into(),
                "--python" => options.python = value,
                "--reps" => options.reps = value.parse().map_err(|e| format!("--reps: {e}"))?,
                "--rounds" => {
                    options.rounds = value.parse().map_err(|e| format!("--rounds: {e}"))?
                }
                "--device" => options.device = value,
                "--precision" => options.precision = value,
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        Ok(options)
    }
}

/// Runs `benches/python/<script>` with `spec` as JSON on stdin and returns
/// the JSON object it prints.
pub fn python_reference(python: &str, script: &str, spec: &Value) -> Result<Value, String> {
    let script = report::workspace_root()
        .join("benches")
        .join("python")
        .join(script);
    let mut child = Command::new(python)
        .arg(&script)
        // No `__pycache__` next to the scripts (provenance.py is imported).
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("skipped: cannot run {python} ({e}); pass --python"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(spec.to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!("skipped: {} failed", script.display()));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("python output: {e}"))
}

/// A reference's time and tool name, or why it was skipped.
pub type Measured = Result<(Duration, String), String>;

/// The reference's time and tool name for `name` in the output of
/// [`python_reference`]; why it was skipped otherwise.
pub fn timing(python: &Result<Value, String>, name: &str) -> Measured {
    let python = python.as_ref().map_err(Clone::clone)?;
    let entry = &python[name];
    if let Some(skipped) = entry["skipped"].as_str() {
        return Err(format!("skipped: {skipped}"));
    }
    let seconds = entry["seconds"].as_f64().ok_or("no time")?;
    Ok((
        Duration::from_secs_f64(seconds),
        entry["tool"].as_str().unwrap_or("?").to_string(),
    ))
}

/// The name of the wgpu adapter behind `device`, named `flag` on the
/// command line (`None` on the CPU).
pub fn adapter_name(flag: &str, device: &burn::prelude::Device) -> Option<String> {
    (flag != "cpu")
        .then(|| device.identity().map(|identity| identity.name))
        .flatten()
}

/// The `main` of a benchmark binary: runs `run`; an error is printed with
/// the binary's `name` and the process exits with status 1.
pub fn main_of(name: &str, run: impl FnOnce() -> Result<(), String>) {
    // As the `polymodal` command line does: tensor buffers reused, not unmapped.
    polymodal_core::cpu::tune_allocator();
    if let Err(e) = run() {
        eprintln!("{name} bench: {e}");
        std::process::exit(1);
    }
}

/// The fastest of `reps` timed passes, after one untimed warm-up pass.
pub fn best_of(
    reps: usize,
    mut work: impl FnMut() -> Result<(), String>,
) -> Result<Duration, String> {
    work()?;
    let mut best = Duration::MAX;
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        work()?;
        best = best.min(start.elapsed());
    }
    Ok(best)
}

/// One row's times over interleaved rounds, polymodal's and the
/// reference's: each round measures polymodal, then the reference, so a
/// machine whose speed drifts between rounds (this one's does, by up to
/// half) slows both sides of a round alike, and the per-round ratios hold
/// still where the times do not.
#[derive(Debug, Clone, Default)]
pub struct Rounds {
    /// polymodal's time in each round.
    pub ours: Vec<Duration>,
    /// The reference's time in each round (empty when it was skipped).
    pub theirs: Vec<Duration>,
}

impl Rounds {
    /// The median of polymodal's times.
    pub fn ours_median(&self) -> Duration {
        median(&self.ours)
    }

    /// The median of the reference's times.
    pub fn theirs_median(&self) -> Duration {
        median(&self.theirs)
    }

    /// The ratio (reference / polymodal) of each round: median and range.
    pub fn ratio(&self) -> Option<report::Spread> {
        let ratios: Vec<f64> = self
            .ours
            .iter()
            .zip(&self.theirs)
            .map(|(ours, theirs)| theirs.as_secs_f64() / ours.as_secs_f64())
            .collect();
        report::Spread::of(&ratios)
    }
}

/// The median of `times` (zero for none).
pub fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

/// The profiling examples' one argument: how many runs (or steps) to time,
/// `default` when absent; at least 2, as the first is a warm-up.
pub fn runs_arg(default: usize) -> Result<usize, String> {
    let runs = match std::env::args().nth(1) {
        Some(n) => n.parse().map_err(|_| format!("`{n}` is not a count"))?,
        None => default,
    };
    if runs < 2 {
        return Err("at least 2 runs (the first is a warm-up)".into());
    }
    Ok(runs)
}

/// This process's peak resident memory (`VmHWM`), in MB.
pub fn peak_memory_mb() -> Result<f64, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(error)?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .ok_or_else(|| "no VmHWM in /proc/self/status".into())
}

/// Any error as the binaries' `String` errors.
pub fn error(e: impl std::fmt::Display) -> String {
    e.to_string()
}
