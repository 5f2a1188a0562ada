//! `cargo xtask bench kernels`: each of polymodal's own kernels against the
//! same computation written with Burn's tensor ops, on the same device in
//! the same run (ratio = unfused time / fused time: above 1 means the
//! kernel is faster).
//!
//! - log-mel: Whisper's front end (n_fft 400, hop 160, 80 mels) on a batch
//!   of 8 signals of 10 s at 16 kHz already on the device;
//! - frame preprocessing: 16 video frames of 640×360 (u8 RGB, already on
//!   the device) to CLIP input (shorter side 224, bicubic, centre crop,
//!   normalised CHW);
//! - the gated unit's combination (batch 256, 3 modalities, 512 hidden
//!   units), forward alone and forward + backward under autodiff.
//!
//! With `--python PYTHON`, the same work in PyTorch
//! (`benches/python/kernels_reference.py`, on CUDA when torch sees a GPU)
//! gets its own columns: PyTorch time / polymodal fused time (above 1:
//! polymodal is faster).
//!
//! Written with the run's provenance to `docs/benchmarks/kernels-<device>.md`
//! (`<device>`: `cpu`, or `wgpu-` and the adapter's name).
//!
//! The sides alternate round by round (`--rounds`, default 3): times are
//! medians, ratios the median of the rounds' ratios with their range.
//!
//! Usage: kernels [--device wgpu|wgpu:N|cpu] [--reps N] [--rounds N] [--python PYTHON]

use std::time::{Duration, Instant};

use burn::prelude::*;
use polymodal::image::ImagePreprocess;
use polymodal::kernels::{FramePreprocess, LogMel, gated_unit, gated_unit_unfused};
use polymodal_audio::MelConfig;
use polymodal_benches::report::{
    Align, Provenance, Report, Table, device_slug, reports_dir, spread_cell,
};
use polymodal_benches::{Measured, Rounds, adapter_name, python_reference, timing};

/// The benchmark (also the GPU kit's `gpu` binary's applet of this name).
pub(crate) fn main() {
    polymodal_benches::main_of("kernels", run);
}

/// The fastest of `reps` passes after a warm-up pass (which also compiles
/// the shaders), each waiting for the device to finish.
fn best_of(
    reps: usize,
    device: &Device,
    mut work: impl FnMut() -> Result<(), String>,
) -> Result<Duration, String> {
    work()?;
    device.sync().map_err(|e| format!("{e:?}"))?;
    let mut best = Duration::MAX;
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        work()?;
        device.sync().map_err(|e| format!("{e:?}"))?;
        best = best.min(start.elapsed());
    }
    Ok(best)
}

/// One line of the table.
struct Row {
    kernel: &'static str,
    work: String,
    fused: Duration,
    unfused: Duration,
    /// The name of the same work in `kernels_reference.py`.
    reference: &'static str,
}

/// Every row measured once: each kernel fused and unfused, best of `reps`.
fn measure(reps: usize, device: &Device) -> Result<Vec<Row>, String> {
    let (batch, samples) = (8, 160_000);
    let signal = Tensor::<2>::random(
        [batch, samples],
        burn::tensor::Distribution::Uniform(-0.5, 0.5),
        device,
    );
    let log_mel = LogMel::new(MelConfig::whisper()).map_err(|e| e.to_string())?;
    let fused = best_of(reps, device, || {
        log_mel
            .forward(signal.clone())
            .map(|_| ())
            .map_err(|e| e.to_string())
    })?;
    let unfused = best_of(reps, device, || {
        log_mel
            .forward_unfused(signal.clone())
            .map(|_| ())
            .map_err(|e| e.to_string())
    })?;
    let (frames_fused, frames_unfused) = frame_times(reps, device)?;
    let mut rows = vec![
        Row {
            kernel: "log-mel",
            work: format!("Whisper front end, {batch} x 10 s at 16 kHz"),
            fused,
            unfused,
            reference: "log_mel",
        },
        Row {
            kernel: "frames",
            work: "16 x 640x360 video frames to CLIP input (224, bicubic, crop)".into(),
            fused: frames_fused,
            unfused: frames_unfused,
            reference: "frames",
        },
    ];
    for ((work, fused, unfused), reference) in gated_rows(reps, device)?
        .into_iter()
        .zip(["gated_forward", "gated_backward"])
    {
        rows.push(Row {
            kernel: "gated unit",
            work,
            fused,
            unfused,
            reference,
        });
    }
    Ok(rows)
}

fn run() -> Result<(), String> {
    let mut device_name = "wgpu".to_string();
    let mut reps = 10;
    let mut rounds = 3;
    let mut python = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--device" => device_name = value,
            "--reps" => reps = number(&value)?,
            "--rounds" => rounds = number(&value)?.max(1),
            "--python" => python = Some(value),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    let device = polymodal::device::parse_device(&device_name).map_err(|e| e.to_string())?;
    let spec = serde_json::json!({
        "reps": reps,
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    // Round by round: the kernels and Burn's ops, then PyTorch.
    let mut rows = Vec::new();
    let mut unfused: Vec<Rounds> = Vec::new();
    let mut pytorch: Vec<Rounds> = Vec::new();
    let mut tools: Vec<Measured> = Vec::new();
    let mut torch = None;
    for _ in 0..rounds {
        rows = measure(reps, &device)?;
        unfused.resize(rows.len(), Rounds::default());
        pytorch.resize(rows.len(), Rounds::default());
        tools.resize(rows.len(), Err("not run".into()));
        torch = python
            .as_ref()
            .map(|python| python_reference(python, "kernels_reference.py", &spec));
        for (i, row) in rows.iter().enumerate() {
            unfused[i].ours.push(row.fused);
            unfused[i].theirs.push(row.unfused);
            pytorch[i].ours.push(row.fused);
            if let Some(torch) = &torch {
                tools[i] = timing(torch, row.reference);
                if let Ok((time, _)) = &tools[i] {
                    pytorch[i].theirs.push(*time);
                }
            }
        }
    }
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    let mut columns = vec![
        ("kernel", Align::Left),
        ("work", Align::Left),
        ("fused", Align::Right),
        ("unfused (Burn ops)", Align::Right),
        ("ratio", Align::Right),
    ];
    if torch.is_some() {
        columns.extend([
            ("PyTorch", Align::Right),
            ("reference", Align::Left),
            ("PyTorch / fused", Align::Right),
        ]);
    }
    let mut table = Table::new(&columns);
    for (i, row) in rows.iter().enumerate() {
        let mut cells = vec![
            row.kernel.to_string(),
            row.work.clone(),
            ms(unfused[i].ours_median()),
            ms(unfused[i].theirs_median()),
            spread_cell(unfused[i].ratio()),
        ];
        if torch.is_some() {
            match &tools[i] {
                Ok((_, tool)) => cells.extend([
                    ms(pytorch[i].theirs_median()),
                    tool.clone(),
                    spread_cell(pytorch[i].ratio()),
                ]),
                Err(why) => cells.extend(["-".into(), why.clone(), "-".into()]),
            }
        }
        table.row(cells);
    }
    let adapters = polymodal::wgpu::adapter_names().join(", ");
    let adapter = adapter_name(&device_name, &device);
    let mut provenance = Provenance::capture();
    if let Some(torch) = &torch {
        provenance = provenance.python_tools(torch);
    }
    let mut report = Report::new(
        format!(
            "Kernels against Burn's ops: {}",
            adapter.as_deref().unwrap_or(&device_name)
        ),
        provenance,
    );
    report
        .text(format!(
            "Device `{device_name}`{}; wgpu adapters on this machine: {}. {rounds} rounds, each \
             timing the kernels, Burn's ops and PyTorch in turn, each best of {reps} passes after \
             a warm-up pass, each waiting for the device; times are medians over the rounds. \
             Ratio = unfused time / fused time of each round (above 1: the kernel is faster), \
             its median and in brackets its range, rounded down.{} {} No goal is set for these \
             figures. What each row measures: \
             [../benchmarks.md](../benchmarks.md#kernels-cargo-xtask-bench-kernels).",
            adapter.as_ref().map_or(String::new(), |a| format!(": {a}")),
            if adapters.is_empty() {
                "none"
            } else {
                &adapters
            },
            if device_name == "cpu" {
                " On the CPU, *fused* is each kernel's CPU implementation (the reference the \
                 kernel is tested against)."
            } else {
                ""
            },
            if torch.is_some() {
                "PyTorch / fused = PyTorch time / polymodal fused time, per round as above."
            } else {
                "PyTorch was not run (`--python PYTHON` adds it)."
            },
        ))
        .table(&table);
    let name = format!(
        "kernels-{}.md",
        device_slug(&device_name, adapter.as_deref())
    );
    report.write(&reports_dir(), &name)?;
    Ok(())
}

type GatedOp = fn(Tensor<3>, Tensor<3>, Tensor<2>) -> polymodal::Result<Tensor<2>>;

/// The gated unit, fused and unfused: forward, then forward + backward.
fn gated_rows(reps: usize, device: &Device) -> Result<Vec<(String, Duration, Duration)>, String> {
    let (batch, modalities, hidden) = (256, 3, 512);
    let random = |device: &Device| {
        Tensor::<3>::random(
            [batch, modalities, hidden],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            device,
        )
    };
    let forward = |op: GatedOp| {
        let (s, c) = (random(device), random(device));
        let present = Tensor::<2>::ones([batch, modalities], device);
        best_of(reps, device, || {
            op(s.clone(), c.clone(), present.clone())
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    };
    let tracked = device.clone().autodiff();
    let backward = |op: GatedOp| {
        let (s, c) = (random(&tracked), random(&tracked));
        let present = Tensor::<2>::ones([batch, modalities], &tracked);
        best_of(reps, &tracked, || {
            let (s, c) = (s.clone().require_grad(), c.clone().require_grad());
            let h = op(s.clone(), c.clone(), present.clone()).map_err(|e| e.to_string())?;
            let grads = h.sum().backward();
            let _ = (s.grad(&grads), c.grad(&grads));
            Ok(())
        })
    };
    let shape = format!("{batch} x {modalities} x {hidden}");
    Ok(vec![
        (
            format!("{shape}, forward"),
            forward(gated_unit)?,
            forward(gated_unit_unfused)?,
        ),
        (
            format!("{shape}, forward + backward"),
            backward(gated_unit)?,
            backward(gated_unit_unfused)?,
        ),
    ])
}

/// Frame preprocessing, fused and unfused, on frames already on the device.
fn frame_times(reps: usize, device: &Device) -> Result<(Duration, Duration), String> {
    let frames: Vec<image::RgbImage> = (0..16)
        .map(|f| {
            image::RgbImage::from_fn(640, 360, |x, y| {
                image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y + f) % 256) as u8])
            })
        })
        .collect();
    let kernel =
        FramePreprocess::new(ImagePreprocess::clip(224), 640, 360).map_err(|e| e.to_string())?;
    let pixels = kernel.pixels(&frames, device).map_err(|e| e.to_string())?;
    let fused = best_of(reps, device, || {
        kernel
            .forward(pixels.clone())
            .map(|_| ())
            .map_err(|e| e.to_string())
    })?;
    let unfused = best_of(reps, device, || {
        kernel
            .forward_unfused(pixels.clone())
            .map(|_| ())
            .map_err(|e| e.to_string())
    })?;
    Ok((fused, unfused))
}
