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

/// How a fuzz run is bounded and reported.
struct Settings {
    /// Time budget per target (libFuzzer's -max_total_time); 0: none.
    seconds: u64,
    /// Executions per target (libFuzzer's -runs); `None`: until the time is up.
    runs: Option<u64>,
    /// Targets fuzzed at once (one core each).
    parallel: usize,
    /// cargo-fuzz's sanitizer: `address` (default) or `none` (several times
    /// faster; every target is Rust over memory-safe decoders or a guarded
    /// FFmpeg, and a panic is a crash either way).
    sanitizer: String,
    /// Markdown file the results table is written to, with its provenance.
    report: Option<std::path::PathBuf>,
}

fn parse(args: &[String]) -> Result<(Settings, Vec<&'static str>), String> {
    let mut settings = Settings {
        seconds: 60,
        runs: None,
        parallel: 1,
        sanitizer: "address".into(),
        report: None,
    };
    let mut chosen = Vec::new();
    let mut rest = args.iter();
    let mut time_given = false;
    while let Some(arg) = rest.next() {
        let mut value = |flag: &str| rest.next().ok_or(format!("{flag} needs a value"));
        let number = |flag: &str, v: &String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match arg.as_str() {
            "--seconds" => {
                settings.seconds = number(arg, value(arg)?)?;
                time_given = true;
            }
            "--runs" => settings.runs = Some(number(arg, value(arg)?)?).filter(|&n| n > 0),
            "--parallel" => settings.parallel = number(arg, value(arg)?)?.max(1) as usize,
            "--sanitizer" => match value(arg)?.as_str() {
                s @ ("address" | "none") => settings.sanitizer = s.into(),
                other => return Err(format!("--sanitizer: `{other}` (address or none)")),
            },
            "--report" => settings.report = Some(root().join(value(arg)?)),
            name => match TARGETS.iter().find(|(n, _)| *n == name) {
                Some((n, _)) => chosen.push(*n),
                None => {
                    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
                    return Err(format!(
                        "unknown fuzz target or flag `{name}` (targets: {})",
                        names.join(", ")
                    ));
                }
            },
        }
    }
    // A run count alone means: as long as those executions take.
    if settings.runs.is_some() && !time_given {
        settings.seconds = 0;
    }
    if chosen.is_empty() {
        chosen = TARGETS.iter().map(|(n, _)| *n).collect();
    }
    Ok((settings, chosen))
}

pub fn fuzz(args: &[String]) -> Result<(), String> {
    let (settings, chosen) = parse(args)?;
    ensure_cargo_fuzz()?;
    // What is fuzzed is what this build sees: a run outlasts commits.
    let source = Source::now();
    // One build for every target, before any of them runs in parallel.
    let mut build = fuzz_command();
    build.args(["build", "--release", "--sanitizer", &settings.sanitizer]);
    crate::run("cargo fuzz build (release)", &mut build)?;
    let queue = std::sync::Mutex::new(chosen.clone().into_iter());
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..settings.parallel.min(chosen.len()) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().expect("queue").next();
                    let Some(name) = next else { break };
                    let outcome = run_target(name, &settings);
                    results.lock().expect("results").push((name, outcome));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|(name, _)| chosen.iter().position(|n| n == name));
    let mut table = String::from(
        "| target | executions | seconds | executions/s | crashes |\n| --- | ---: | ---: | ---: | --- |\n",
    );
    let (mut crashed, mut failed) = (false, Vec::new());
    for (name, outcome) in &results {
        match outcome {
            Ok(o) => {
                crashed |= !o.crashes.is_empty();
                let crashes = if o.crashes.is_empty() {
                    "none".to_string()
                } else {
                    o.crashes.join(", ")
                };
                let rate = match (o.executions, o.seconds) {
                    (Some(n), Some(s)) if s > 0 => format!("{}", n / s),
                    _ => "?".into(),
                };
                let shown = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
                table.push_str(&format!(
                    "| {name} | {} | {} | {rate} | {crashes} |\n",
                    shown(o.executions),
                    shown(o.seconds)
                ));
            }
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    println!("\n{table}");
    if let Some(path) = &settings.report {
        write_report(path, &settings, &source, args, &table)?;
        println!("==> wrote {}", path.display());
    }
    if !failed.is_empty() {
        Err(failed.join("\n"))
    } else if crashed {
        Err("crashes found: reproduce with `cargo fuzz run <target> <artifact>` in fuzz/".into())
    } else {
        Ok(())
    }
}

/// The source a run fuzzes, read when its targets are built.
struct Source {
    commit: String,
    dirty: bool,
    started: String,
}

impl Source {
    fn now() -> Self {
        Self {
            commit: output("git", &["rev-parse", "--short", "HEAD"]),
            dirty: !output("git", &["status", "--porcelain"]).is_empty(),
            started: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        }
    }
}

/// A command's trimmed standard output, `?` when it cannot run.
fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// The results table with what produced it: command, dates, commit, cores.
fn write_report(
    path: &Path,
    settings: &Settings,
    source: &Source,
    args: &[String],
    table: &str,
) -> Result<(), String> {
    let text = format!(
        "# Fuzzing report\n\n\
         Written by `cargo xtask fuzz {}`, started {} and finished {}, fuzzing commit \
         `{}`{} (as built at the start), {} cores, {} target(s) at a time, sanitizer `{}`, \
         rustc `{}`. Do not edit: run the command again.\n\n{table}",
        args.join(" "),
        source.started,
        output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        source.commit,
        if source.dirty {
            " plus uncommitted changes"
        } else {
            ""
        },
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        settings.parallel,
        settings.sanitizer,
        output("rustc", &["--version"]),
    );
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

struct Outcome {
    executions: Option<u64>,
    seconds: Option<u64>,
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

fn run_target(name: &str, settings: &Settings) -> Result<Outcome, String> {
    let seeds = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .unwrap_or(&[]);
    println!("==> fuzz {name} (started)");
    let corpus = root().join("fuzz/corpus").join(name);
    std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
    let mut command = fuzz_command();
    command
        .args(["run", "--release", "--sanitizer", &settings.sanitizer, name])
        .arg(&corpus);
    for seed in seeds {
        command.arg(root().join(seed));
    }
    command.args([
        "--",
        &format!("-max_total_time={}", settings.seconds),
        "-max_len=262144",
        "-rss_limit_mb=4096",
        "-timeout=30",
    ]);
    if let Some(runs) = settings.runs {
        command.arg(format!("-runs={runs}"));
    }
    let output = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cargo fuzz: {e}"))?;
    let log = String::from_utf8_lossy(&output.stderr);
    // libFuzzer ends with "Done N runs in S second(s)".
    let done: Vec<u64> = log
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("Done "))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let crashes = artifacts(&root().join("fuzz/artifacts").join(name));
    if !output.status.success() && crashes.is_empty() {
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("fuzz {name} failed:\n{}", tail.join("\n")));
    }
    println!("==> fuzz {name} (done)");
    Ok(Outcome {
        executions: done.first().copied(),
        seconds: done.get(1).copied(),
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
