//! The frame preprocessing kernel on wgpu (lavapipe in CI) and its CPU
//! implementation on the same frames, for every filter, both resize modes
//! (stretch; shorter side then centre crop), grey-scale and frames already
//! at size: against [`pillow_preprocess`], Pillow's resampling written out
//! here pixel by pixel from its C source (`Resample.c`, `Geometry.c`)
//! without polymodal-image's code (the op's CPU implementation calls
//! `ImagePreprocess::apply` itself, so comparing the two would test
//! nothing), and on wgpu also against `ImagePreprocess::apply`.

use burn::prelude::*;
use image::RgbImage;
use polymodal_core::testing::max_abs_diff;
use polymodal_image::kernel::FramePreprocess;
use polymodal_image::{Filter, ImagePreprocess, ResizeMode};

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

/// Pillow's fixed-point precision (`PRECISION_BITS` in `Resample.c`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's filter function for `filter` and its support at scale 1.
fn pillow_filter(filter: Filter) -> (fn(f64) -> f64, f64) {
    fn bilinear(x: f64) -> f64 {
        (1.0 - x.abs()).max(0.0)
    }
    fn bicubic(x: f64) -> f64 {
        let (a, x) = (-0.5, x.abs());
        if x < 1.0 {
            ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            (((x - 5.0) * x + 8.0) * x - 4.0) * a
        } else {
            0.0
        }
    }
    fn sinc(x: f64) -> f64 {
        if x == 0.0 {
            1.0
        } else {
            (x * std::f64::consts::PI).sin() / (x * std::f64::consts::PI)
        }
    }
    fn lanczos(x: f64) -> f64 {
        if (-3.0..3.0).contains(&x) {
            sinc(x) * sinc(x / 3.0)
        } else {
            0.0
        }
    }
    match filter {
        Filter::Bilinear => (bilinear, 1.0),
        Filter::Bicubic => (bicubic, 2.0),
        Filter::Lanczos3 => (lanczos, 3.0),
        Filter::Nearest => unreachable!("nearest is not a convolution in Pillow"),
    }
}

/// Pillow's `precompute_coeffs` and `normalize_coeffs_8bpc` for one axis of
/// `size` pixels resampled to `out`: per output pixel, its first source
/// pixel and fixed-point weights.
fn pillow_coefficients(size: usize, out: usize, filter: Filter) -> Vec<(usize, Vec<i64>)> {
    let (kernel, support) = pillow_filter(filter);
    let scale = size as f64 / out as f64;
    let filter_scale = scale.max(1.0);
    let support = support * filter_scale;
    let ss = 1.0 / filter_scale;
    (0..out)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            // C's (int) casts truncate toward zero.
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let end = ((center + support + 0.5) as i64).min(size as i64) as usize;
            let weights: Vec<f64> = (first..end)
                .map(|x| kernel((x as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|w| if total != 0.0 { w / total } else { *w })
                .map(|w| {
                    let w = w * (1u64 << PRECISION_BITS) as f64;
                    (if w < 0.0 { w - 0.5 } else { w + 0.5 }) as i64
                })
                .collect();
            (first, fixed)
        })
        .collect()
}

/// Pillow's `clip8`: the fixed-point sum back to 8 bits.
fn clip8(sum: i64) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `Image.resize((width, height), filter)` of `frame`, one output
/// value at a time: the horizontal pass rounded to 8 bits, then the
/// vertical pass over those values; nearest neighbour as Pillow's
/// `ImagingScaleAffine` (source positions accumulated from the first pixel
/// centre, truncated).
fn pillow_resize(frame: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    if filter == Filter::Nearest {
        let positions = |size: usize, out: u32| -> Vec<u32> {
            let step = size as f64 / out as f64;
            let mut at = step * 0.5;
            (0..out)
                .map(|_| {
                    let index = at as u32;
                    at += step;
                    index
                })
                .collect()
        };
        let (xs, ys) = (positions(w, width), positions(h, height));
        return RgbImage::from_fn(width, height, |x, y| {
            *frame.get_pixel(xs[x as usize], ys[y as usize])
        });
    }
    let horizontal = pillow_coefficients(w, width as usize, filter);
    let vertical = pillow_coefficients(h, height as usize, filter);
    let half = 1i64 << (PRECISION_BITS - 1);
    RgbImage::from_fn(width, height, |x, y| {
        let (first_column, column_weights) = &horizontal[x as usize];
        let (first_row, row_weights) = &vertical[y as usize];
        image::Rgb(std::array::from_fn(|c| {
            let across = |row: usize| {
                let sum: i64 = column_weights
                    .iter()
                    .enumerate()
                    .map(|(k, weight)| {
                        frame.get_pixel((first_column + k) as u32, row as u32)[c] as i64 * weight
                    })
                    .sum();
                clip8(half + sum) as i64
            };
            let sum: i64 = row_weights
                .iter()
                .enumerate()
                .map(|(k, weight)| across(first_row + k) * weight)
                .sum();
            clip8(half + sum)
        }))
    })
}

/// What `config` should make of `frames`, computed independently of
/// polymodal-image: Pillow's resize ([`pillow_resize`]), the centre crop of
/// Hugging Face's `CLIPImageProcessor` (longer side truncated, offsets
/// floored), the channel mean for grey-scale, `(v / 255 − mean) / std` in
/// f64, channels first.
fn pillow_preprocess(config: &ImagePreprocess, frames: &[RgbImage]) -> Vec<f32> {
    let (w, h) = (config.width, config.height);
    let mut out = Vec::new();
    for frame in frames {
        let (fw, fh) = frame.dimensions();
        let sized = if (fw, fh) == (w, h) {
            // Pillow's resize to the same size is a copy.
            frame.clone()
        } else {
            match config.resize {
                ResizeMode::Exact => pillow_resize(frame, w, h, config.filter),
                ResizeMode::ShorterSideThenCenterCrop { shorter_side: s } => {
                    let (sw, sh) = if fw <= fh {
                        (s, s * fh / fw)
                    } else {
                        (s * fw / fh, s)
                    };
                    let scaled = pillow_resize(frame, sw, sh, config.filter);
                    let (left, top) = ((sw - w) / 2, (sh - h) / 2);
                    RgbImage::from_fn(w, h, |x, y| *scaled.get_pixel(left + x, top + y))
                }
            }
        };
        let normalize = |v: f64, c: usize| {
            ((v / 255.0 - config.normalize.mean[c] as f64) / config.normalize.std[c] as f64) as f32
        };
        if config.grayscale {
            out.extend(sized.pixels().map(|p| {
                let mean = (p[0] as f64 + p[1] as f64 + p[2] as f64) / 3.0;
                normalize(mean, 0)
            }));
        } else {
            for c in 0..3 {
                out.extend(sized.pixels().map(|p| normalize(p[c] as f64, c)));
            }
        }
    }
    out
}

/// The kernel on `device` against Pillow written out ([`pillow_preprocess`]):
/// equal (within f32 rounding of the normalisation, far below one step of
/// 255); the unfused ops within `unfused_steps`. On wgpu, `apply` (the CPU
/// code) as well.
fn check(device: &Device, name: &str, unfused_steps: f32) {
    let frames = frames();
    for (config_name, config) in configs() {
        let expected = pillow_preprocess(&config, &frames);
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
        let diff = max_abs_diff(&got, &expected);
        eprintln!(
            "{name} {config_name}: fused max |diff| from Pillow {diff:e} ({:.3} steps)",
            diff / step
        );
        assert!(diff <= 1e-5, "{name} {config_name}: {diff}");
        if name != "cpu" {
            let diff = max_abs_diff(&got, &reference(&config, &frames));
            eprintln!("{name} {config_name}: fused max |diff| from the CPU code {diff:e}");
            assert!(diff <= 1e-5, "{name} {config_name} vs the CPU code: {diff}");
        }
        let unfused = kernel
            .forward_unfused(pixels)
            .unwrap()
            .try_into_vec_as::<f32>()
            .unwrap();
        let diff = max_abs_diff(&unfused, &expected);
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
fn cpu_implementation_equals_pillow() {
    check(&Device::flex(), "cpu", 1.0);
}

#[test]
fn wgpu_kernel_equals_pillow_and_the_cpu_code() {
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
