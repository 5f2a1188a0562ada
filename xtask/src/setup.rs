//! Detects the system packages the build and the tests need and installs the
//! missing ones with apt-get, or says exactly what to run.

use std::path::Path;
use std::process::{Command, Stdio};

/// One requirement: how to tell it is there, and the Debian packages that provide it.
struct Requirement {
    what: &'static str,
    present: fn() -> bool,
    packages: &'static [&'static str],
}

const FFMPEG_LIBS: [&str; 7] = [
    "libavcodec",
    "libavformat",
    "libavutil",
    "libswscale",
    "libswresample",
    "libavfilter",
    "libavdevice",
];

fn requirements() -> Vec<Requirement> {
    vec![
        Requirement {
            what: "pkg-config (finds FFmpeg for video-rs)",
            present: || succeeds("pkg-config", &["--version"]),
            packages: &["pkg-config"],
        },
        Requirement {
            what: "a C compiler and libclang (bindgen for FFmpeg's headers)",
            present: || {
                succeeds("cc", &["--version"])
                    && succeeds("clang", &["--version"])
                    && has_libclang()
            },
            packages: &["clang", "libclang-dev"],
        },
        Requirement {
            what: "FFmpeg development libraries (video-rs)",
            present: || {
                let mut args = vec!["--exists"];
                args.extend(FFMPEG_LIBS);
                succeeds("pkg-config", &args)
            },
            packages: &[
                "libavcodec-dev",
                "libavformat-dev",
                "libavutil-dev",
                "libswscale-dev",
                "libswresample-dev",
                "libavfilter-dev",
                "libavdevice-dev",
            ],
        },
        Requirement {
            what: "the Vulkan loader and Mesa's lavapipe (wgpu tests without a GPU)",
            present: || has_shared_library("libvulkan.so.1") && has_lavapipe(),
            packages: &["libvulkan1", "mesa-vulkan-drivers"],
        },
    ]
}

/// What building and testing need (FFmpeg's libraries, libclang, the
/// Vulkan loader and lavapipe), installed with apt-get when missing.
pub fn ensure_system_packages() -> Result<(), String> {
    ensure(requirements)
}

/// What the build needs, and the ffmpeg command line, the reference of
/// `cargo xtask bench media`'s video row.
pub fn ensure_media_bench_tools() -> Result<(), String> {
    ensure(|| {
        let mut all = requirements();
        all.push(Requirement {
            what: "the ffmpeg command line (the video reference of bench media)",
            present: || succeeds("ffmpeg", &["-version"]),
            packages: &["ffmpeg"],
        });
        all
    })
}

/// Installs (apt-get) the packages of whatever `requirements` lists as
/// missing, or says what to run.
fn ensure(requirements: fn() -> Vec<Requirement>) -> Result<(), String> {
    check_rust_components()?;
    let missing: Vec<Requirement> = requirements()
        .into_iter()
        .filter(|r| !(r.present)())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().flat_map(|r| r.packages).copied().collect();
    for r in &missing {
        println!("setup: missing {}", r.what);
    }
    let install = format!("apt-get install -y {}", packages.join(" "));
    if !succeeds("apt-get", &["--version"]) {
        return Err(format!(
            "this is not a Debian/Ubuntu machine (no apt-get); install the equivalents of: {}",
            packages.join(" ")
        ));
    }
    let sudo = if is_root() {
        ""
    } else if succeeds("sudo", &["-n", "true"]) {
        "sudo "
    } else {
        return Err(format!(
            "system packages are missing; run:\n  sudo apt-get update && sudo {install}"
        ));
    };
    println!("setup: installing {}", packages.join(" "));
    let script = format!("{sudo}apt-get update -qq && {sudo}{install}");
    let status = Command::new("sh")
        .args(["-c", &script])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("could not run apt-get: {e}"))?;
    if !status.success() {
        return Err(format!("`{script}` failed ({status})"));
    }
    let still: Vec<&str> = requirements()
        .iter()
        .filter(|r| !(r.present)())
        .map(|r| r.what)
        .collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!("still missing after apt-get: {}", still.join("; ")))
    }
}

fn check_rust_components() -> Result<(), String> {
    for (tool, component) in [("fmt", "rustfmt"), ("clippy", "clippy")] {
        if !succeeds("cargo", &[tool, "--version"]) {
            return Err(format!(
                "cargo {tool} is missing; run: rustup component add {component}"
            ));
        }
    }
    Ok(())
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Whether the dynamic linker's cache knows a library whose name starts with `prefix`.
fn has_shared_library(prefix: &str) -> bool {
    let Ok(output) = Command::new("ldconfig").arg("-p").output() else {
        return false;
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .any(|line| line.trim_start().starts_with(prefix))
}

/// libclang itself (`libclang.so*` or `libclang-14.so*`), not libclang-cpp.
fn has_libclang() -> bool {
    ["libclang.so", "libclang-1", "libclang-2"]
        .iter()
        .any(|prefix| has_shared_library(prefix))
}

fn has_lavapipe() -> bool {
    ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(Path::new(dir)).ok())
        .flatten()
        .flatten()
        .any(|entry| entry.file_name().to_string_lossy().starts_with("lvp_icd"))
}
