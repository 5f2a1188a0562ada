//! `cargo xtask gpu`: the GPU run in one command. It first records whether
//! a hardware wgpu adapter can be had (driver, kernel modules, Vulkan
//! drivers, what wgpu sees: read only, no GPU setting is changed), then on
//! the first hardware adapter runs the kernel benchmark with PyTorch's
//! equivalents on the same GPU, and one AV-MNIST training epoch on the GPU
//! and on the CPU. Without a hardware adapter it prints what it saw and
//! fails, so the report says exactly why.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::{bench_binary, build_polymodal, root, run, runtime_env, setup, shared_dir};

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
    for dir in ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"] {
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

/// `polymodal devices` (release build): the first `wgpu:N` that is not a
/// software rasteriser.
fn hardware_adapter(polymodal: &Path) -> Result<Option<String>, String> {
    let mut command = Command::new(polymodal);
    command.arg("devices");
    runtime_env(&mut command);
    let out = command
        .output()
        .map_err(|e| format!("polymodal devices: {e}"))?;
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("==> polymodal devices\n{listing}");
    Ok(listing
        .lines()
        .filter(|l| l.starts_with("wgpu:"))
        .find(|l| {
            let name = l.to_lowercase();
            !SOFTWARE.iter().any(|s| name.contains(s))
        })
        .and_then(|l| l.split('\t').next())
        .map(str::to_string))
}

/// One AV-MNIST epoch (the benchmark's concat model) on `device`, timed.
fn avmnist_epoch(polymodal: &Path, device: &str, out: &Path) -> Result<f64, String> {
    let data = shared_dir()?.join("data").join("avmnist");
    let config = out.join(format!("avmnist-{}.toml", device.replace(':', "-")));
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    let toml = format!(
        "output = \"{}\"\n[data]\navmnist = \"{}\"\n[model]\nfusion = \"concat\"\n[train]\nepochs = 1\n",
        out.join(format!("run-{}", device.replace(':', "-")))
            .display(),
        data.display()
    );
    std::fs::write(&config, toml).map_err(|e| e.to_string())?;
    let mut command = Command::new(polymodal);
    command
        .args(["train", "--config"])
        .arg(&config)
        .args(["--device", device]);
    runtime_env(&mut command);
    let start = Instant::now();
    run(&format!("AV-MNIST, one epoch on {device}"), &mut command)?;
    Ok(start.elapsed().as_secs_f64())
}

pub fn gpu(args: &[String]) -> Result<(), String> {
    let reps = match args {
        [] => "10".to_string(),
        [flag, n] if flag == "--reps" => n.clone(),
        _ => return Err("gpu takes `[--reps N]`".into()),
    };
    setup::ensure_system_packages()?;
    diagnostics();
    let polymodal = build_polymodal()?;
    let Some(adapter) = hardware_adapter(&polymodal)? else {
        return Err(
            "no hardware wgpu adapter (only software rasterisers or none; see above): \
             nothing was run on a GPU"
                .into(),
        );
    };
    println!("==> using {adapter}");
    let python = std::env::var("POLYMODAL_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut command = bench_binary("kernels");
    command.args(["--device", &adapter, "--reps", &reps, "--python", &python]);
    runtime_env(&mut command);
    run("kernel benchmark on the GPU, with PyTorch", &mut command)?;
    let out = root().join("target").join("gpu-run");
    let gpu_seconds = avmnist_epoch(&polymodal, &adapter, &out)?;
    let cpu_seconds = avmnist_epoch(&polymodal, "cpu", &out)?;
    println!(
        "\nAV-MNIST, one epoch (concat fusion, data loading and evaluation included): \
         {adapter} {gpu_seconds:.1} s, cpu {cpu_seconds:.1} s ({:.2}x)",
        cpu_seconds / gpu_seconds
    );
    Ok(())
}
