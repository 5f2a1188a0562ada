//! `cargo xtask fuzz`: runs the cargo-fuzz targets of `fuzz/` for a given
//! time each, seeded with the test fixtures, and reports the executions
//! reached and any crash (saved under fuzz/artifacts/<target>/).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::{cargo, root};

/// The targets in `fuzz/Cargo.toml`, with the fixture folders that seed them.
const TARGETS: [(&str, &[&str]); 5] = [
    (
        "audio_decode",
        &[
            "tests/fixtures/media",
            "crates/polymodal-audio/tests/fixtures",
        ],
    ),
    ("audio_features", &[]),
    ("image_decode", &["tests/fixtures/media/images"]),
    ("video_decode", &["tests/fixtures/media"]),
    ("tokenizer_load", &["tests/fixtures/parity"]),
];

pub fn fuzz(args: &[String]) -> Result<(), String> {
    let mut seconds = 60u64;
    let mut chosen: Vec<&str> = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--seconds" {
            let value = rest.next().ok_or("--seconds needs a value")?;
            seconds = value.parse().map_err(|e| format!("--seconds: {e}"))?;
        } else if let Some((name, _)) = TARGETS.iter().find(|(name, _)| name == arg) {
            chosen.push(name);
        } else {
            let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "unknown fuzz target `{arg}` (targets: {})",
                names.join(", ")
            ));
        }
    }
    if chosen.is_empty() {
        chosen = TARGETS.iter().map(|(n, _)| *n).collect();
    }
    ensure_cargo_fuzz()?;
    let mut report = Vec::new();
    for name in chosen {
        let seeds = TARGETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .unwrap_or(&[]);
        report.push((name, run_target(name, seeds, seconds)?));
    }
    println!("\n| target | seconds | executions | crashes |");
    println!("| --- | ---: | ---: | --- |");
    let mut crashed = false;
    for (name, outcome) in &report {
        let crashes = if outcome.crashes.is_empty() {
            "none".to_string()
        } else {
            crashed = true;
            outcome.crashes.join(", ")
        };
        println!(
            "| {name} | {seconds} | {} | {crashes} |",
            outcome.executions
        );
    }
    if crashed {
        Err("crashes found: reproduce with `cargo fuzz run <target> <artifact>` in fuzz/".into())
    } else {
        Ok(())
    }
}

struct Outcome {
    executions: String,
    crashes: Vec<String>,
}

/// cargo-fuzz passes nightly-only flags (`-Zsanitizer=address`, coverage
/// instrumentation). The stable toolchain ships the sanitizer runtimes, so
/// RUSTC_BOOTSTRAP lets it accept them: no second toolchain is needed.
fn fuzz_command() -> Command {
    let mut command = cargo();
    command.env("RUSTC_BOOTSTRAP", "1");
    command.current_dir(root().join("fuzz"));
    command.arg("fuzz");
    command
}

fn ensure_cargo_fuzz() -> Result<(), String> {
    let present = cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    println!("==> cargo install cargo-fuzz (once)");
    let status = cargo()
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .map_err(|e| format!("cargo install cargo-fuzz: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| "cargo install cargo-fuzz failed".to_string())
}

fn run_target(name: &str, seeds: &[&str], seconds: u64) -> Result<Outcome, String> {
    println!("==> fuzz {name} for {seconds} s");
    let corpus = root().join("fuzz/corpus").join(name);
    std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
    let mut command = fuzz_command();
    command.args(["run", "--release", name]).arg(&corpus);
    for seed in seeds {
        command.arg(root().join(seed));
    }
    command.args([
        "--",
        &format!("-max_total_time={seconds}"),
        "-max_len=262144",
        "-rss_limit_mb=4096",
        "-timeout=30",
    ]);
    let output = command
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cargo fuzz: {e}"))?;
    let log = String::from_utf8_lossy(&output.stderr);
    // libFuzzer ends with "Done N runs in S second(s)".
    let executions = log
        .lines()
        .rev()
        .find_map(|l| {
            l.strip_prefix("Done ")
                .and_then(|r| r.split_whitespace().next())
        })
        .unwrap_or("?")
        .to_string();
    let crashes = artifacts(&root().join("fuzz/artifacts").join(name));
    if !output.status.success() && crashes.is_empty() {
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("fuzz {name} failed:\n{}", tail.join("\n")));
    }
    Ok(Outcome {
        executions,
        crashes,
    })
}

fn artifacts(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default()
}
