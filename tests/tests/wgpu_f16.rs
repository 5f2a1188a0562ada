//! Half precision (`--precision f16`) on wgpu: every fusion method, every
//! pretrained encoder and the project's kernels, with the device configured
//! for f16 (weights cast on load, every tensor f16), against the f32 CPU
//! result.
//!
//! Its own test binary: a device's float type is fixed for the process once
//! it has a tensor, so f16 cannot share a process with the f32 suites.
//! In CI this runs on Mesa's lavapipe, which has `shader-f16`.

use burn::prelude::*;
use burn::tensor::DType;
use polymodal::FusionKind;
use polymodal::device::Precision;
use polymodal::train::{Classifier, load_checkpoint, save_checkpoint};
use polymodal_tests::{HostBatch, classifier_for, scratch_dir};

/// Largest difference allowed between f16 on wgpu and f32 on the CPU,
/// relative to the largest f32 value: f16 keeps 11 significant bits
/// (4.9e-4 relative per rounding) and the errors add up over the layers.
const RELATIVE: f32 = 1e-2;

/// The default wgpu device in f16; `None` (after a message) without an
/// adapter, or without f16 outside CI.
fn half_device() -> Option<Device> {
    let mut device = polymodal::wgpu::wgpu_for_tests()?;
    match Precision::F16.configure(&mut device) {
        Ok(()) => Some(device),
        Err(e) => {
            // CI's adapter (lavapipe) has f16: there this fails the test.
            polymodal::core::testing::skip(e);
            None
        }
    }
}

/// max |a − b| relative to max |a|.
fn relative_diff(expected: &[f32], actual: &[f32]) -> f32 {
    assert_eq!(
        expected.len(),
        actual.len(),
        "{} values expected, {} computed",
        expected.len(),
        actual.len()
    );
    let scale = expected.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let diff = expected
        .iter()
        .zip(actual)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale.max(1e-6)
}

#[test]
fn every_fusion_method_infers_in_f16() {
    let Some(gpu) = half_device() else {
        return;
    };
    let cpu = Device::flex();
    cpu.seed(5);
    let host = HostBatch::random();
    let dir = scratch_dir("f16-fusion");
    for fusion in FusionKind::ALL {
        let config = classifier_for(fusion);
        let model = config.init(&cpu).unwrap();
        let expected = model.logits(&host.on(&cpu)).unwrap();
        // The way `polymodal predict` loads a model: f32 weights from disk,
        // cast to the f16 parameters of a model built on the device.
        let path = dir.join(format!("{fusion:?}.bpk"));
        save_checkpoint(&model, &path).unwrap();
        let half = load_checkpoint(config.init(&gpu).unwrap(), &path).unwrap();
        let logits = half.logits(&host.on(&gpu)).unwrap();
        assert_eq!(logits.dtype(), DType::F16, "{fusion:?}: computed in f16");
        // Logits, not probabilities: a near-uniform softmax of a fresh model
        // would hide differences.
        let actual = logits.try_into_vec_as::<f32>().unwrap();
        let expected = expected.try_into_vec_as::<f32>().unwrap();
        let diff = relative_diff(&expected, &actual);
        eprintln!("{fusion:?}: f16 wgpu vs f32 cpu, relative {diff:e}");
        assert!(diff <= RELATIVE, "{fusion:?}: f16 differs by {diff}");
    }
}

#[test]
fn pretrained_encoders_infer_in_f16() {
    let Some(gpu) = half_device() else {
        return;
    };
    let cpu = Device::flex();
    for (name, run) in polymodal_tests::pretrained_encoders() {
        let expected = run(&cpu).values;
        let actual = run(&gpu);
        assert_eq!(actual.dtype, DType::F16, "{name}: computed in f16");
        let diff = relative_diff(&expected, &actual.values);
        eprintln!("{name}: f16 wgpu vs f32 cpu, relative {diff:e}");
        assert!(diff <= RELATIVE, "{name}: f16 differs by {diff}");
    }
}

#[test]
fn kernels_take_and_give_f16() {
    use polymodal::audio::MelConfig;
    use polymodal::image::ImagePreprocess;
    use polymodal::kernels::{FramePreprocess, LogMel, gated_unit, gated_unit_unfused};

    let Some(gpu) = half_device() else {
        return;
    };
    let cpu = Device::flex();
    // Log-mel: f16 samples in, computed in f32, f16 features out.
    let log_mel = LogMel::new(MelConfig::whisper()).unwrap();
    let samples: Vec<f32> = (0..2 * 8000)
        .map(|i| (i as f32 * 0.031).sin() * 0.4 + ((i * 7919) % 101) as f32 / 1000.0)
        .collect();
    let audio = |d: &Device| Tensor::<2>::from_data(TensorData::new(samples.clone(), [2, 8000]), d);
    // The reference gets the same f16-rounded samples: quiet bands of a log
    // spectrum are sensitive to that rounding (2.9e-2 of the range when the
    // reference has the f32 samples), which is the input's, not the kernel's.
    let rounded = audio(&cpu).cast(DType::F16).cast(DType::F32);
    let expected = log_mel.forward(rounded).unwrap();
    let actual = log_mel.forward(audio(&gpu)).unwrap();
    assert_eq!(actual.dtype(), DType::F16);
    let unfused = log_mel.forward_unfused(audio(&gpu)).unwrap();
    assert_eq!(unfused.dtype(), DType::F16, "the unfused fallback too");
    let diff = relative_diff(
        &expected.try_into_vec_as::<f32>().unwrap(),
        &actual.try_into_vec_as::<f32>().unwrap(),
    );
    eprintln!("log-mel: f16 wgpu vs f32 cpu, relative {diff:e}");
    assert!(diff <= RELATIVE, "log-mel differs by {diff}");

    // Frames: u8 pixels in, f16 model input out (computed in f32).
    let frames = FramePreprocess::new(ImagePreprocess::clip(32), 48, 40).unwrap();
    let image = image::RgbImage::from_fn(48, 40, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 6) as u8, ((x * y) % 256) as u8])
    });
    let run = |d: &Device| {
        frames
            .forward(frames.pixels(std::slice::from_ref(&image), d).unwrap())
            .unwrap()
    };
    let (expected, actual) = (run(&cpu), run(&gpu));
    assert_eq!(actual.dtype(), DType::F16);
    let diff = relative_diff(
        &expected.try_into_vec_as::<f32>().unwrap(),
        &actual.try_into_vec_as::<f32>().unwrap(),
    );
    eprintln!("frames: f16 wgpu vs f32 cpu, relative {diff:e}");
    assert!(diff <= 1e-3, "frames differ by {diff}");

    // The gated unit's kernel in f16 against Burn's ops in f16 on the same
    // device, and against f32 on the CPU.
    let values = |n: usize, k: usize| -> Vec<f32> {
        (0..n)
            .map(|i| (((i * k) % 97) as f32 / 24.0) - 2.0)
            .collect()
    };
    let (scores, candidates) = (values(2 * 3 * 16, 31), values(2 * 3 * 16, 17));
    let present = vec![1.0f32, 0.0, 1.0, 1.0, 1.0, 0.0];
    let inputs = |d: &Device| {
        (
            Tensor::<3>::from_data(TensorData::new(scores.clone(), [2, 3, 16]), d),
            Tensor::<3>::from_data(TensorData::new(candidates.clone(), [2, 3, 16]), d),
            Tensor::<2>::from_data(TensorData::new(present.clone(), [2, 3]), d),
        )
    };
    let (s, u, p) = inputs(&gpu);
    let fused = gated_unit(s.clone(), u.clone(), p.clone()).unwrap();
    assert_eq!(fused.dtype(), DType::F16);
    let unfused = gated_unit_unfused(s, u, p).unwrap();
    let (s, u, p) = inputs(&cpu);
    let reference = gated_unit_unfused(s, u, p).unwrap();
    let reference = reference.try_into_vec_as::<f32>().unwrap();
    let fused = fused.try_into_vec_as::<f32>().unwrap();
    let unfused = unfused.try_into_vec_as::<f32>().unwrap();
    let (kernel, ops) = (
        relative_diff(&reference, &fused),
        relative_diff(&reference, &unfused),
    );
    eprintln!("gated unit vs f32: f16 kernel {kernel:e}, f16 Burn ops {ops:e}");
    // The kernel rounds only its inputs and output; Burn's f16 ops round
    // every intermediate.
    assert!(
        kernel <= 2e-3 && kernel <= ops.max(1e-3),
        "gated unit kernel in f16: {kernel}"
    );
}
