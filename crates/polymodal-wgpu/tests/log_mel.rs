//! The fused log-mel kernel on wgpu, the CPU reference behind the same op
//! and the unfused Burn ops, all against `MelSpectrogram::compute` (the
//! librosa-checked CPU code) on the same signals.
//!
//! In CI the wgpu part runs on Mesa's lavapipe; tolerances are stated per
//! test (the kernel's direct DFT sums in a different order than realfft).

use burn::prelude::*;
use polymodal_audio::{LogScale, MelConfig, MelSpectrogram, PadMode};
use polymodal_wgpu::kernels::LogMel;

/// Three different 16 kHz signals: a chirp, two tones with noise, noise.
fn signals(samples: usize) -> Vec<Vec<f32>> {
    let mut state = 7u64;
    let mut noise = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let t = |i: usize| i as f32 / 16_000.0;
    let pi2 = 2.0 * std::f32::consts::PI;
    vec![
        (0..samples)
            .map(|i| (pi2 * (200.0 + 3000.0 * t(i)) * t(i)).sin() * 0.8)
            .collect(),
        (0..samples)
            .map(|i| {
                0.5 * (pi2 * 440.0 * t(i)).sin()
                    + 0.3 * (pi2 * 2500.0 * t(i)).sin()
                    + 0.05 * noise()
            })
            .collect(),
        (0..samples).map(|_| 0.2 * noise()).collect(),
    ]
}

fn reference(config: &MelConfig, rows: &[Vec<f32>]) -> Vec<f32> {
    let mel = MelSpectrogram::new(config.clone()).unwrap();
    rows.iter()
        .flat_map(|r| mel.compute(r).unwrap().0)
        .collect()
}

fn batch(rows: &[Vec<f32>], device: &Device) -> Tensor<2> {
    let flat: Vec<f32> = rows.concat();
    Tensor::from_data(TensorData::new(flat, [rows.len(), rows[0].len()]), device)
}

/// Name, settings and tolerance: absolute on log outputs, relative to the
/// largest value on power.
fn configs() -> Vec<(&'static str, MelConfig, f32)> {
    vec![
        // Whisper: n_fft 400 (not a power of two), reflect, log10 with floor.
        ("whisper", MelConfig::whisper(), 2e-4),
        // librosa in dB with top_db 80, zero padding.
        ("librosa dB", MelConfig::librosa(16_000, 512, 160, 64), 5e-3),
        // n_fft 2048: too large for the split kernel, the direct DFT.
        (
            "direct 2048 dB",
            MelConfig::librosa(16_000, 2048, 512, 64),
            5e-3,
        ),
        // A prime n_fft has no split either: the direct DFT, 8 frames a cube.
        (
            "direct prime 251 power",
            MelConfig {
                log: LogScale::Power,
                ..MelConfig::librosa(16_000, 251, 100, 24)
            },
            1e-3,
        ),
        // ln(x + 1e-6), not centred, HTK mels, Hamming window.
        (
            "ln htk",
            MelConfig {
                center: false,
                scale: polymodal_audio::MelScale::Htk,
                window: polymodal_audio::Window::Hamming,
                log: LogScale::Natural { offset: 1e-6 },
                ..MelConfig::librosa(16_000, 256, 128, 40)
            },
            2e-3,
        ),
    ]
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check(name: &str, out: Tensor<3>, expected: &[f32], tolerance: f32) {
    let got = out.try_into_vec_as::<f32>().unwrap();
    let scale = if name.contains("power") {
        expected.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    } else {
        1.0
    };
    let diff = max_diff(&got, expected) / scale;
    eprintln!("{name}: max |diff| = {diff:e}");
    assert!(diff <= tolerance, "{name}: max |diff| {diff} > {tolerance}");
}

#[test]
fn fused_kernel_on_wgpu_matches_the_cpu_spectrogram() {
    let Some(device) = polymodal_wgpu::wgpu_for_tests() else {
        return;
    };
    let rows = signals(16_000);
    for (name, config, tolerance) in configs() {
        let expected = reference(&config, &rows);
        let log_mel = LogMel::new(config).unwrap();
        check(
            &format!("{name} fused wgpu"),
            log_mel.forward(batch(&rows, &device)).unwrap(),
            &expected,
            tolerance,
        );
        check(
            &format!("{name} unfused wgpu"),
            log_mel.forward_unfused(batch(&rows, &device)).unwrap(),
            &expected,
            tolerance,
        );
    }
}

#[test]
fn cpu_reference_and_unfused_ops_on_the_cpu_match() {
    let device = Device::flex();
    let rows = signals(8_000);
    for (name, config, tolerance) in configs() {
        let expected = reference(&config, &rows);
        let log_mel = LogMel::new(config).unwrap();
        // The op's CPU implementation is the reference itself.
        check(
            &format!("{name} cpu"),
            log_mel.forward(batch(&rows, &device)).unwrap(),
            &expected,
            1e-6,
        );
        check(
            &format!("{name} unfused cpu"),
            log_mel.forward_unfused(batch(&rows, &device)).unwrap(),
            &expected,
            tolerance,
        );
    }
}

#[test]
fn short_signals_fold_the_reflection_like_numpy() {
    // Fewer samples than the padding: the unfused path folds again, as
    // numpy does; the fused kernel refuses with an error.
    let config = MelConfig {
        pad_mode: PadMode::Reflect,
        ..MelConfig::librosa(16_000, 64, 16, 8)
    };
    let rows = vec![
        (0..20)
            .map(|i| (i as f32 * 0.3).sin())
            .collect::<Vec<f32>>(),
    ];
    let expected = reference(&config, &rows);
    let log_mel = LogMel::new(config).unwrap();
    let device = Device::flex();
    check(
        "short unfused",
        log_mel.forward_unfused(batch(&rows, &device)).unwrap(),
        &expected,
        1e-3,
    );
    let err = log_mel
        .forward(batch(&rows, &device))
        .unwrap_err()
        .to_string();
    assert!(err.contains("reflect padding"), "{err}");
}

#[test]
fn bad_input_is_an_error() {
    let device = Device::flex();
    let log_mel = LogMel::new(MelConfig::whisper()).unwrap();
    let mut rows = signals(4_000);
    rows[1][100] = f32::NAN;
    let err = log_mel
        .forward(batch(&rows, &device))
        .unwrap_err()
        .to_string();
    assert!(err.contains("NaN"), "{err}");
    let empty = Tensor::<2>::zeros([0, 4000], &device);
    assert!(log_mel.forward(empty).is_err());
    let tracked = Tensor::<2>::zeros([1, 4000], &device.clone().autodiff());
    let err = log_mel.forward(tracked).unwrap_err().to_string();
    assert!(err.contains("autodiff"), "{err}");
    let big = LogMel::new(MelConfig::librosa(16_000, 4096, 512, 64)).unwrap();
    let err = big
        .forward(Tensor::zeros([1, 8000], &device))
        .unwrap_err()
        .to_string();
    assert!(err.contains("n_fft"), "{err}");
    assert!(
        big.forward_unfused(Tensor::zeros([1, 8000], &device))
            .is_ok()
    );
}
