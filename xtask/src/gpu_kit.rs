//! `cargo xtask gpu-kit`: everything `cargo xtask gpu` runs, packed for a
//! GPU machine that has no Rust toolchain, no crates and no network, and
//! receives the repository's working tree plus at most 64 MiB of build
//! outputs (`target/gpu-kit/` is one such output: name it in `carry`).
//!
//! The kit is `kit.tar.xz` and `run.sh` (xtask/gpu-kit/run.sh). The archive
//! holds one stripped release binary (`polymodal-benches`' `gpu`: the
//! kernel, encoder and epoch benchmarks and the adapter listing, built
//! without FFmpeg, which those machines lack) with a link per benchmark,
//! Debian's Vulkan loader packages for amd64, the Python wheels the
//! reference scripts need beyond what the GPU image ships, AV-MNIST, and
//! all-MiniLM-L6-v2's configuration and tokenizer (its weights are made on
//! the machine: they would not fit).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{cargo, root, run, shared_dir};

/// What a GPU machine receives at most: the working tree and carried paths.
const BUDGET_BYTES: u64 = 64 * 1024 * 1024;

/// Debian's Vulkan loader and the GL libraries it pulls (the device
/// README's list): the GPU image has NVIDIA's driver but no loader.
const LOADER_PACKAGES: [&str; 7] = [
    "libvulkan1",
    "libegl1",
    "libglvnd0",
    "libopengl0",
    "libgl1",
    "libglx0",
    "libgles2",
];

/// The reference scripts' packages the GPU image lacks (it has torch,
/// transformers, numpy, scipy, numba, scikit-learn, msgpack, lazy-loader),
/// for its Python 3.12: librosa and soundfile (AV-MNIST's reference
/// decoding) and their dependencies.
const WHEELS: [&str; 9] = [
    "librosa==0.11.0",
    "soundfile==0.14.0",
    "soxr==1.0.0",
    "audioread==3.0.1",
    "decorator==5.2.1",
    "pooch==1.8.2",
    "platformdirs==4.3.8",
    "cffi==2.0.0",
    "pycparser==2.23",
];

/// The benchmarks the one binary answers to, as links to it.
const APPLETS: [&str; 4] = ["kernels", "encoders", "epoch", "devices"];

/// The kit's script, written beside the archive.
const RUN_SH: &str = include_str!("../gpu-kit/run.sh");

pub fn gpu_kit(args: &[String]) -> Result<(), String> {
    // Everything after --check goes to run.sh.
    let check = match args.split_first() {
        None => None,
        Some((flag, rest)) if flag == "--check" => Some(rest.to_vec()),
        Some((other, _)) => {
            return Err(format!(
                "gpu-kit takes `[--check [run.sh's options]]`, not `{other}`"
            ));
        }
    };
    let kit = root().join("target").join("gpu-kit");
    build(&kit)?;
    match check {
        Some(options) => check_here(&kit, &options),
        None => Ok(()),
    }
}

/// Builds the kit into `kit` and checks it fits.
fn build(kit: &Path) -> Result<(), String> {
    run(
        "build the GPU kit's binary (release, no FFmpeg)",
        cargo().args([
            "build",
            "--release",
            "-p",
            "polymodal-benches",
            "--no-default-features",
            "--bin",
            "gpu",
        ]),
    )?;
    let stage = kit.join("stage");
    let _ = std::fs::remove_dir_all(kit);
    for dir in ["bin", "debs", "wheels", "shared/data", "shared/models"] {
        std::fs::create_dir_all(stage.join(dir)).map_err(|e| format!("{dir}: {e}"))?;
    }
    stage_binary(&stage.join("bin"))?;
    download_loader(&stage.join("debs"))?;
    download_wheels(&stage.join("wheels"))?;
    stage_data(&stage.join("shared"))?;
    std::fs::write(stage.join("commit.txt"), commit()).map_err(|e| e.to_string())?;
    std::fs::write(stage.join("rustc.txt"), rustc_version()).map_err(|e| e.to_string())?;
    run(
        "pack kit.tar.xz",
        Command::new("tar")
            .env("XZ_OPT", "-9 -T0")
            .arg("-cJf")
            .arg(kit.join("kit.tar.xz"))
            .arg("-C")
            .arg(&stage)
            .arg("."),
    )?;
    std::fs::remove_dir_all(&stage).map_err(|e| e.to_string())?;
    let script = kit.join("run.sh");
    std::fs::write(&script, RUN_SH).map_err(|e| e.to_string())?;
    report_size(kit)
}

/// The stripped `gpu` binary and one link per benchmark.
fn stage_binary(bin: &Path) -> Result<(), String> {
    let built = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("release")
        .join("gpu");
    let binary = bin.join("gpu");
    std::fs::copy(&built, &binary).map_err(|e| format!("{}: {e}", built.display()))?;
    run(
        "strip the binary",
        Command::new("strip").arg("--strip-all").arg(&binary),
    )?;
    for applet in APPLETS {
        std::os::unix::fs::symlink("gpu", bin.join(applet)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Debian's amd64 loader packages, by the device README's recipe (a
/// private package list, so the system's own is untouched).
fn download_loader(debs: &Path) -> Result<(), String> {
    let lists = std::env::temp_dir().join("polymodal-gpu-kit-apt");
    std::fs::create_dir_all(lists.join("partial")).map_err(|e| e.to_string())?;
    let options = [
        "-oAPT::Architecture=amd64".to_string(),
        "-oAPT::Architectures=amd64".to_string(),
        format!("-oDir::State::Lists={}", lists.display()),
    ];
    run(
        "apt-get update (amd64, private lists)",
        Command::new("apt-get")
            .args(&options)
            .args(["-qq", "update"]),
    )?;
    run(
        "download the Vulkan loader packages",
        Command::new("apt-get")
            .current_dir(debs)
            .args(&options)
            .args(["-qq", "download"])
            .args(LOADER_PACKAGES),
    )
}

/// The wheels, for CPython 3.12 on manylinux x86-64 whatever this machine is.
fn download_wheels(wheels: &Path) -> Result<(), String> {
    let mut pip = Command::new(crate::python());
    pip.args([
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
    ])
    .args(["--python-version", "3.12", "--implementation", "cp"]);
    for platform in [
        "manylinux_2_28_x86_64",
        "manylinux_2_27_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
        "manylinux1_x86_64",
    ] {
        pip.args(["--platform", platform]);
    }
    pip.arg("-d").arg(wheels).args(WHEELS);
    run("download the reference scripts' wheels", &mut pip)
}

/// AV-MNIST whole, and MiniLM without its weights.
fn stage_data(shared: &Path) -> Result<(), String> {
    let source = shared_dir()?;
    run(
        "copy AV-MNIST",
        Command::new("cp")
            .arg("-r")
            .arg(source.join("data").join("avmnist"))
            .arg(shared.join("data")),
    )?;
    let minilm = source.join("models").join("all-MiniLM-L6-v2");
    let target = shared.join("models").join("all-MiniLM-L6-v2");
    copy_tree_except(&minilm, &target, "model.safetensors")
}

fn copy_tree_except(from: &Path, to: &Path, skip: &str) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let entries = std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for entry in entries.flatten() {
        let (path, name) = (entry.path(), entry.file_name());
        if path.is_dir() {
            copy_tree_except(&path, &to.join(&name), skip)?;
        } else if name != skip {
            std::fs::copy(&path, to.join(&name)).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// The commit the kit is built from, as the reports describe it.
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(root())
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let hash = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--", ".", ":!docs/benchmarks"])
        .is_none_or(|s| !s.is_empty());
    if dirty {
        format!("`{hash}` + uncommitted changes")
    } else {
        format!("`{hash}`")
    }
}

/// `rustc --version` of the toolchain that builds the kit, for the
/// reports written where there is none.
fn rustc_version() -> String {
    Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "rustc: unknown".into())
}

/// Prints the kit's size beside the working tree's and fails when both
/// together exceed what a GPU machine receives.
fn report_size(kit: &Path) -> Result<(), String> {
    let kit_bytes: u64 = ["kit.tar.xz", "run.sh"]
        .iter()
        .map(|f| std::fs::metadata(kit.join(f)).map_or(0, |m| m.len()))
        .sum();
    let tree_bytes = tracked_bytes()?;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "==> the kit: {:.1} MiB; the working tree: {:.1} MiB; together {:.1} of {:.0} MiB",
        mib(kit_bytes),
        mib(tree_bytes),
        mib(kit_bytes + tree_bytes),
        mib(BUDGET_BYTES)
    );
    if kit_bytes + tree_bytes > BUDGET_BYTES {
        return Err("the kit and the working tree exceed what a GPU machine receives".into());
    }
    println!(
        "    on a GPU machine, from the repository's root, carrying target/gpu-kit: \
         bash target/gpu-kit/run.sh"
    );
    Ok(())
}

/// The bytes of the files git tracks (what travels besides carried paths).
fn tracked_bytes() -> Result<u64, String> {
    let out = Command::new("git")
        .current_dir(root())
        .args(["ls-files", "-z"])
        .output()
        .map_err(|e| format!("git ls-files: {e}"))?;
    Ok(out
        .stdout
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        .filter_map(|name| {
            std::fs::metadata(root().join(String::from_utf8_lossy(name).as_ref())).ok()
        })
        .map(|m| m.len())
        .sum())
}

/// Runs the kit here, as a GPU machine would, from a copy of the tracked
/// files (no target/, no git), so that what it needs and does not carry
/// shows; the figures, reports and log land in `target/gpu-kit-check/`.
fn check_here(kit: &Path, options: &[String]) -> Result<(), String> {
    let copy = std::env::temp_dir().join("polymodal-gpu-kit-check");
    let _ = std::fs::remove_dir_all(&copy);
    run(
        "copy the tracked files (as a GPU machine receives them)",
        Command::new("bash")
            .current_dir(root())
            .arg("-c")
            .arg(format!(
                "mkdir -p '{dest}' && git ls-files -z | xargs -0 cp --parents -t '{dest}' \
             && mkdir -p '{dest}/target' && cp -r '{kit}' '{dest}/target/'",
                dest = copy.display(),
                kit = kit.display()
            )),
    )?;
    let out = root().join("target").join("gpu-kit-check");
    let mut command = Command::new("bash");
    command
        .current_dir(&copy)
        .arg("target/gpu-kit/run.sh")
        .args(options)
        .env("OUT", &out)
        // As on a fresh machine: nothing from this one's environment.
        .env_remove("POLYMODAL_SHARED")
        .env_remove("CARGO_MANIFEST_DIR");
    let result = run("the kit's run.sh, here", &mut command);
    let _ = std::fs::remove_dir_all(&copy);
    println!("==> figures and log in {}", out.display());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script is only ever run on a machine where a mistake costs the
    /// whole loan: bash must at least parse it.
    #[test]
    fn run_sh_parses() {
        let status = Command::new("bash")
            .args(["-n", "-c", RUN_SH])
            .status()
            .expect("bash runs");
        assert!(status.success(), "bash -n rejected xtask/gpu-kit/run.sh");
    }
}
