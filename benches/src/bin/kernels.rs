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
//! Usage: kernels [--device wgpu|wgpu:N|cpu] [--reps N]

use std::time::{Duration, Instant};

use burn::prelude::*;
use polymodal::image::ImagePreprocess;
use polymodal::wgpu::kernels::{FramePreprocess, LogMel, gated_unit, gated_unit_unfused};
use polymodal_audio::MelConfig;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
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

fn run() -> Result<(), String> {
    let mut device_name = "wgpu".to_string();
    let mut reps = 10;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--device" => device_name = value,
            "--reps" => reps = value.parse().map_err(|e| format!("--reps: {e}"))?,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    let device = polymodal::device::parse_device(&device_name).map_err(|e| e.to_string())?;
    let (batch, samples) = (8, 160_000);
    let signal = Tensor::<2>::random(
        [batch, samples],
        burn::tensor::Distribution::Uniform(-0.5, 0.5),
        &device,
    );
    let log_mel = LogMel::new(MelConfig::whisper()).map_err(|e| e.to_string())?;
    let fused = best_of(reps, &device, || {
        log_mel
            .forward(signal.clone())
            .map(|_| ())
            .map_err(|e| e.to_string())
    })?;
    let unfused = best_of(reps, &device, || {
        log_mel
            .forward_unfused(signal.clone())
            .map(|_| ())
            .map_err(|e| e.to_string())
    })?;
    let (frames_fused, frames_unfused) = frame_times(reps, &device)?;
    let gated = gated_rows(reps, &device)?;
    let adapter = polymodal::wgpu::adapter_names().join(", ");
    println!("| kernel | work | fused | unfused (Burn ops) | ratio |");
    println!("| --- | --- | ---: | ---: | ---: |");
    println!(
        "| log-mel | Whisper front end, {batch} x 10 s at 16 kHz | {:.2} ms | {:.2} ms | {:.2}x |",
        fused.as_secs_f64() * 1e3,
        unfused.as_secs_f64() * 1e3,
        unfused.as_secs_f64() / fused.as_secs_f64()
    );
    println!(
        "| frames | 16 x 640x360 video frames to CLIP input (224, bicubic, crop) | {:.2} ms | {:.2} ms | {:.2}x |",
        frames_fused.as_secs_f64() * 1e3,
        frames_unfused.as_secs_f64() * 1e3,
        frames_unfused.as_secs_f64() / frames_fused.as_secs_f64()
    );
    for (work, fused, unfused) in gated {
        println!(
            "| gated unit | {work} | {:.2} ms | {:.2} ms | {:.2}x |",
            fused.as_secs_f64() * 1e3,
            unfused.as_secs_f64() * 1e3,
            unfused.as_secs_f64() / fused.as_secs_f64()
        );
    }
    println!("\nDevice {device_name} (adapters: {adapter}); best of {reps} after a warm-up pass.");
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
