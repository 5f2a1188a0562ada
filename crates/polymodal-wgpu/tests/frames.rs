//! The frame preprocessing kernel on wgpu (lavapipe in CI) and its CPU
//! implementation against `ImagePreprocess::apply` (Pillow-exact) on the
//! same frames: equal values, for every filter, both resize modes (stretch;
//! shorter side then centre crop), grey-scale and frames already at size.

use burn::prelude::*;
use image::RgbImage;
use polymodal_image::{Filter, ImagePreprocess};
use polymodal_wgpu::kernels::FramePreprocess;

/// Two 97×61 frames with gradients, edges and noise (odd sizes on purpose).
fn frames() -> Vec<RgbImage> {
    let mut state = 11u64;
    (0..2)
        .map(|f| {
            RgbImage::from_fn(97, 61, |x, y| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let noise = (state >> 58) as u8;
                let edge: u8 = if (x / 8 + y / 8 + f) % 2 == 0 {
                    200
                } else {
                    30
                };
                image::Rgb([
                    (x * 255 / 96) as u8,
                    edge.wrapping_add(noise),
                    (y * 4) as u8 ^ noise,
                ])
            })
        })
        .collect()
}

fn configs() -> Vec<(&'static str, ImagePreprocess)> {
    let stretch = |filter| ImagePreprocess {
        filter,
        ..ImagePreprocess::new(40, 24)
    };
    vec![
        ("bilinear", stretch(Filter::Bilinear)),
        ("bicubic", stretch(Filter::Bicubic)),
        ("lanczos", stretch(Filter::Lanczos3)),
        ("nearest", stretch(Filter::Nearest)),
        // Upscaling, too.
        (
            "bicubic up",
            ImagePreprocess {
                filter: Filter::Bicubic,
                ..ImagePreprocess::new(150, 90)
            },
        ),
        // CLIP: shorter side 32 (bicubic), centre crop 32×32.
        ("clip", ImagePreprocess::clip(32)),
        (
            "grey",
            ImagePreprocess {
                grayscale: true,
                ..ImagePreprocess::new(33, 17)
            },
        ),
        // Already at the output size: used as they are.
        ("same size", ImagePreprocess::new(97, 61)),
    ]
}

fn reference(config: &ImagePreprocess, frames: &[RgbImage]) -> Vec<f32> {
    frames
        .iter()
        .flat_map(|f| config.apply(f).unwrap())
        .collect()
}

fn check(device: &Device, name: &str, unfused_steps: f32) {
    let frames = frames();
    for (config_name, config) in configs() {
        let expected = reference(&config, &frames);
        // One step of 255 in normalised units, per channel's std.
        let step = 1.0 / (255.0 * config.normalize.std.iter().fold(1.0f32, |m, s| m.min(*s)));
        let kernel = FramePreprocess::new(config.clone(), 97, 61).unwrap();
        let pixels = kernel.pixels(&frames, device).unwrap();
        let fused = kernel.forward(pixels.clone()).unwrap();
        assert_eq!(
            fused.dims(),
            [
                2,
                config.channels(),
                config.height as usize,
                config.width as usize
            ]
        );
        let got = fused.try_into_vec_as::<f32>().unwrap();
        let diff = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        eprintln!(
            "{name} {config_name}: fused max |diff| {diff:e} ({:.3} steps)",
            diff / step
        );
        assert!(diff <= 1e-5, "{name} {config_name}: {diff}");
        let unfused = kernel
            .forward_unfused(pixels)
            .unwrap()
            .try_into_vec_as::<f32>()
            .unwrap();
        let diff = unfused
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        eprintln!(
            "{name} {config_name}: unfused max |diff| {:.3} steps",
            diff / step
        );
        assert!(
            diff <= unfused_steps * step + 1e-5,
            "{name} {config_name} unfused: {diff}"
        );
    }
}

#[test]
fn cpu_implementation_equals_image_preprocess() {
    check(&Device::flex(), "cpu", 1.0);
}

#[test]
fn wgpu_kernel_equals_image_preprocess() {
    let Some(device) = polymodal_wgpu::wgpu_for_tests() else {
        return;
    };
    check(&device, "wgpu", 1.0);
}

#[test]
fn bad_frames_are_errors() {
    let device = Device::flex();
    let kernel = FramePreprocess::new(ImagePreprocess::new(8, 8), 97, 61).unwrap();
    assert!(kernel.pixels(&[], &device).is_err());
    let err = kernel
        .pixels(&[RgbImage::new(10, 10)], &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("10x10"), "{err}");
    let wrong = Tensor::<2, Int>::zeros([1, 5], &device);
    assert!(kernel.forward(wrong).is_err());
    assert!(FramePreprocess::new(ImagePreprocess::new(8, 8), 0, 61).is_err());
    let too_short = ImagePreprocess {
        resize: polymodal_image::ResizeMode::ShorterSideThenCenterCrop { shorter_side: 20 },
        ..ImagePreprocess::new(32, 32)
    };
    let err = FramePreprocess::new(too_short, 97, 61)
        .unwrap_err()
        .to_string();
    assert!(err.contains("crop"), "{err}");
}
