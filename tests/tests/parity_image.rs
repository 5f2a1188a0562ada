//! Image preprocessing against its references: Hugging Face's
//! `CLIPImageProcessor` and `ViTImageProcessor` (Pillow-based) and Pillow's
//! resize filters, on the real photos of the shared folder. Fixtures:
//! `scripts/parity/image.py`.
//!
//! Tolerance: our resampler reproduces Pillow's arithmetic (same weights,
//! same 22-bit fixed point, same pass order), so PNG photos must come out
//! identical. JPEG decoders may differ (zune-jpeg here, libjpeg-turbo under
//! Pillow: IDCT and chroma upsampling rounding), so for the JPEG photo up to
//! 3 steps of 8 bits on at most 2% of values are allowed. After CLIP's
//! normalisation one step is 1 / 255 / 0.2613 = 0.0150.

use polymodal::image::{Filter, ImagePreprocess, load_rgb, resize_rgb};
use polymodal_tests::{Fixture, shared_dir};

const PHOTOS: [&str; 4] = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"];

/// One 8-bit step after normalisation with the smallest std of the preset.
fn step(preprocess: &ImagePreprocess) -> f32 {
    let std = preprocess
        .normalize
        .std
        .iter()
        .copied()
        .fold(f32::MAX, f32::min);
    1.0 / 255.0 / std
}

/// (max steps, share of values differing) allowed for a photo.
fn allowed(photo: &str) -> (f32, f32) {
    if photo.ends_with(".jpg") {
        (3.0, 0.02)
    } else {
        (0.0, 0.0)
    }
}

fn compare(ours: &[f32], expected: &[f32], step: f32, photo: &str, what: &str) {
    assert_eq!(
        ours.len(),
        expected.len(),
        "{what}: {} values computed, {} expected",
        ours.len(),
        expected.len()
    );
    let diffs: Vec<f32> = ours
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .collect();
    let max = diffs.iter().copied().fold(0.0, f32::max);
    let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
    let off = diffs.iter().filter(|&&d| d > 1e-5).count() as f32 / diffs.len() as f32;
    eprintln!(
        "{what}: max {:.2} steps, mean {:.4} steps, {:.2}% of values differ",
        max / step,
        mean / step,
        off * 100.0
    );
    let (max_steps, share) = allowed(photo);
    // 1e-5: the float rounding of (x / 255 - mean) / std.
    assert!(max <= max_steps * step + 1e-5, "{what}: max diff {max}");
    assert!(off <= share, "{what}: {off} of values differ");
}

#[test]
fn clip_and_vit_processors_match_transformers() {
    let Some(shared) = shared_dir() else { return };
    let fixture = Fixture::load("image.safetensors");
    for photo in PHOTOS {
        let image = load_rgb(shared.join("data/media/images").join(photo)).unwrap();
        let key = photo.split('.').next().unwrap();
        for (kind, preprocess) in [
            ("clip", ImagePreprocess::clip(48)),
            ("vit", ImagePreprocess::vit(48)),
        ] {
            let (expected, shape) = fixture.f32(&format!("{kind}.{key}"));
            assert_eq!(shape, [3, 48, 48]);
            let ours = preprocess.apply(&image).unwrap();
            compare(
                &ours,
                &expected,
                step(&preprocess),
                photo,
                &format!("{kind} {photo}"),
            );
        }
    }
}

#[test]
fn clip_and_vit_at_224_match_transformers() {
    let Some(shared) = shared_dir() else { return };
    let fixture = Fixture::load("image.safetensors");
    let image = load_rgb(shared.join("data/media/images/chelsea.png")).unwrap();
    for (kind, preprocess) in [
        ("clip", ImagePreprocess::clip(224)),
        ("vit", ImagePreprocess::vit(224)),
    ] {
        let (expected, shape) = fixture.f32(&format!("{kind}224.chelsea.rows96to128"));
        assert_eq!(shape, [3, 32, 224]);
        let ours = preprocess.apply(&image).unwrap();
        let rows: Vec<f32> = (0..3)
            .flat_map(|c| ours[c * 224 * 224 + 96 * 224..c * 224 * 224 + 128 * 224].to_vec())
            .collect();
        compare(
            &rows,
            &expected,
            step(&preprocess),
            "chelsea.png",
            &format!("{kind}224 chelsea"),
        );
    }
}

#[test]
fn resize_filters_match_pillow() {
    let Some(shared) = shared_dir() else { return };
    let fixture = Fixture::load("image.safetensors");
    for photo in PHOTOS {
        let image = load_rgb(shared.join("data/media/images").join(photo)).unwrap();
        let key = photo.split('.').next().unwrap();
        for (name, filter) in [
            ("nearest", Filter::Nearest),
            ("bilinear", Filter::Bilinear),
            ("bicubic", Filter::Bicubic),
            ("lanczos", Filter::Lanczos3),
        ] {
            let expected = fixture.bytes(&format!("pillow.{name}.{key}"));
            let ours = resize_rgb(&image, None, 48, 80, filter).unwrap().into_raw();
            assert_eq!(
                ours.len(),
                expected.len(),
                "{name} {photo}: {} bytes resized, {} from Pillow",
                ours.len(),
                expected.len()
            );
            let diffs: Vec<u8> = ours
                .iter()
                .zip(&expected)
                .map(|(a, b)| a.abs_diff(*b))
                .collect();
            let max = diffs.iter().copied().max().unwrap();
            let off = diffs.iter().filter(|&&d| d > 0).count() as f32 / diffs.len() as f32;
            eprintln!(
                "{name} {photo}: max {max} steps, {:.2}% differ",
                off * 100.0
            );
            let (max_steps, share) = allowed(photo);
            assert!(max as f32 <= max_steps, "{name} {photo}: {max}");
            assert!(off <= share, "{name} {photo}: {off}");
        }
    }
}
