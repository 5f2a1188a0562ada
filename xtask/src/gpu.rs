//! `cargo xtask gpu`: the GPU run in one command. It first records whether
//! a hardware wgpu adapter can be had (driver, kernel modules, Vulkan
//! drivers, what wgpu sees: read only, no GPU setting is changed), then on
//! the first hardware adapter runs the kernel benchmark, the encoder
//! benchmark in f32 and in f16, and AV-MNIST training epochs, each with
//! PyTorch's equivalents on the same GPU, then the epochs on the CPU. Without
//! a hardware adapter it prints what it saw and fails, so the report says
//! exactly why.

use std::path::Path;
use std::process::Command;

use crate::{bench_binary, build_polymodal, cargo, python, python_bench, run, runtime_env, setup};

/// Software rasterisers wgpu may list: not a GPU.
const SOFTWARE: [&str; 3] = ["llvmpipe", "lavapipe", "swiftshader"];

/// The output of a command, or why it could not run (for the report).
fn capture(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let lines: Vec<&str> = text.lines().take(12).collect();
            format!("[{}] {}", out.status, lines.join("\n    "))
        }
        Err(e) => format!("not available ({e})"),
    }
}

fn diagnostics() {
    println!("==> what this machine offers (read only)");
    let modules = std::fs::read_to_string("/proc/modules").unwrap_or_default();
    let nvidia: Vec<&str> = modules
        .lines()
        .filter(|l| l.starts_with("nvidia"))
        .map(|l| l.split(' ').next().unwrap_or(l))
        .collect();
    println!("  loaded nvidia modules: {nvidia:?}");
    println!(
        "  nvidia_modeset module file: {}",
        capture("modinfo", &["-F", "filename", "nvidia_modeset"])
    );
    println!(
        "  /dev/nvidia-modeset present: {}",
        Path::new("/dev/nvidia-modeset").exists()
    );
    println!(
        "  driver: {}",
        std::fs::read_to_string("/proc/driver/nvidia/version")
            .map(|v| v.lines().next().unwrap_or("").to_string())
            .unwrap_or_else(|_| "no /proc/driver/nvidia/version".into())
    );
    println!(
        "  nvidia-smi: {}",
        capture(
            "nvidia-smi",
            &["--query-gpu=name,driver_version", "--format=csv,noheader"]
        )
    );
    for var in ["VK_DRIVER_FILES", "VK_ICD_FILENAMES"] {
        println!(
            "  ${var}: {}",
            std::env::var(var).unwrap_or_else(|_| "unset".into())
        );
    }
    for dir in [
        "/usr/share/vulkan/icd.d",
        "/etc/vulkan/icd.d",
        "/usr/local/nvidia/share/vulkan/icd.d",
    ] {
        let files: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        println!("  Vulkan drivers in {dir}: {files:?}");
    }
    println!(
        "  vulkaninfo --summary: {}",
        capture("vulkaninfo", &["--summary"])
    );
}

/// `polymodal devices` (release build), printed and returned.
fn devices(polymodal: &Path) -> Result<String, String> {
    let mut command = Command::new(polymodal);
    command.arg("devices");
    runtime_env(&mut command);
    let out = command
        .output()
        .map_err(|e| format!("polymodal devices: {e}"))?;
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("==> polymodal devices\n{listing}");
    Ok(listing)
}

/// The first `wgpu:N` of `listing` that is not a software rasteriser.
fn hardware_adapter(listing: &str) -> Option<String> {
    listing
        .lines()
        .filter(|l| l.starts_with("wgpu:"))
        .find(|l| {
            let name = l.to_lowercase();
            !SOFTWARE.iter().any(|s| name.contains(s))
        })
        .and_then(|l| l.split('\t').next())
        .map(str::to_string)
}

/// What `listing` says of `adapter` after its flag: `NVIDIA H200\tf32, f16`
/// for `wgpu:0\tNVIDIA H200\tf32, f16`.
fn adapter_entry<'a>(listing: &'a str, adapter: &str) -> Option<&'a str> {
    listing
        .lines()
        .find_map(|l| l.strip_prefix(adapter)?.strip_prefix('\t'))
}

/// The adapter's name in `listing`, or its flag when the listing lacks it.
fn adapter_name<'a>(listing: &'a str, adapter: &'a str) -> &'a str {
    adapter_entry(listing, adapter)
        .and_then(|entry| entry.split('\t').next())
        .unwrap_or(adapter)
}

pub fn gpu(args: &[String]) -> Result<(), String> {
    let (mut reps, mut chosen) = ("10".to_string(), None);
    for pair in args.chunks(2) {
        match pair {
            [flag, n] if flag == "--reps" => reps = n.clone(),
            [flag, a] if flag == "--adapter" => chosen = Some(a.clone()),
            _ => return Err("gpu takes `[--reps N] [--adapter wgpu:N]`".into()),
        }
    }
    setup::ensure_system_packages()?;
    diagnostics();
    let polymodal = build_polymodal()?;
    let listing = devices(&polymodal)?;
    // `--adapter` picks one among several GPUs, or runs the whole script on
    // a software adapter to check it.
    let Some(adapter) = chosen.or_else(|| hardware_adapter(&listing)) else {
        return Err(
            "no hardware wgpu adapter (only software rasterisers or none; see above): \
             nothing was run on a GPU"
                .into(),
        );
    };
    let has_f16 = adapter_entry(&listing, &adapter).is_some_and(|e| e.ends_with("f16"));
    println!("==> using {adapter} (f16: {has_f16})");
    // Every binary built once, before anything is timed.
    run(
        "build the benchmarks (release)",
        cargo().args(["build", "--release", "-p", "polymodal-benches", "--bins"]),
    )?;
    let python = python();
    let mut kernels = bench_binary("kernels");
    kernels.args(["--device", &adapter, "--reps", &reps, "--python", &python]);
    runtime_env(&mut kernels);
    let mut steps = vec![("kernels, with PyTorch".to_string(), kernels)];
    let precisions: &[&str] = if has_f16 { &["f32", "f16"] } else { &["f32"] };
    for precision in precisions {
        let args = [
            "--device",
            &adapter,
            "--precision",
            precision,
            "--reps",
            &reps,
        ];
        steps.push((
            format!("encoders in {precision}"),
            python_bench("encoders", &args)?,
        ));
    }
    for device in [adapter.as_str(), "cpu"] {
        let args = ["--device", device];
        let mut epoch = python_bench("epoch", &args)?;
        if device == "cpu" {
            // Timed on the GPU machine's processor: its own report, not the
            // one of the machine the CPU goals are judged on.
            epoch.env(
                "POLYMODAL_REPORT_MACHINE",
                format!("{} machine", adapter_name(&listing, &adapter)),
            );
        }
        steps.push((format!("AV-MNIST epoch on {device}"), epoch));
    }
    // One failing step does not cost the others their figures.
    let failed: Vec<String> = steps
        .iter_mut()
        .filter_map(|(what, command)| run(what, command).err())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("steps failed: {}", failed.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "cpu\tBurn Flex (CPU)\n\
                           wgpu:0\tllvmpipe (LLVM 15.0.6, 256 bits)\tf32, f16\n\
                           wgpu:1\tNVIDIA H200\tf32, f16\n";

    #[test]
    fn the_first_hardware_adapter_is_chosen_and_named() {
        assert_eq!(hardware_adapter(LISTING).as_deref(), Some("wgpu:1"));
        assert_eq!(
            adapter_entry(LISTING, "wgpu:1"),
            Some("NVIDIA H200\tf32, f16")
        );
        assert_eq!(adapter_entry(LISTING, "wgpu:2"), None);
        assert_eq!(adapter_name(LISTING, "wgpu:1"), "NVIDIA H200");
        assert_eq!(
            adapter_name(LISTING, "wgpu:0"),
            "llvmpipe (LLVM 15.0.6, 256 bits)"
        );
        // `wgpu:1` must not match a `wgpu:10`, and an unknown flag names itself.
        assert_eq!(adapter_name("wgpu:10\tOther\tf32\n", "wgpu:1"), "wgpu:1");
    }
}
