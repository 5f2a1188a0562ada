//! The fused log-mel kernel on wgpu, the CPU reference behind the same op
//! and the unfused Burn ops, against `MelSpectrogram::compute` (the
//! librosa-checked CPU code) and against [`naive_log_mel`], the definition
//! computed here in f64 with a direct DFT and none of polymodal-audio's code
//! (the op's CPU implementation calls `MelSpectrogram` itself, so comparing
//! the two would test nothing).
//!
//! In CI the wgpu part runs on Mesa's lavapipe; tolerances are stated per
//! test (the kernel's direct DFT sums in a different order than realfft).

use burn::prelude::*;
use polymodal_audio::kernel::LogMel;
use polymodal_audio::{LogScale, MelConfig, MelScale, MelSpectrogram, PadMode, Window};
use polymodal_core::testing::max_abs_diff;

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

/// Hz to mel on `scale` (librosa's `hz_to_mel`).
fn hz_to_mel(hz: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 2595.0 * (1.0 + hz / 700.0).log10(),
        // Linear below 1 kHz (200/3 Hz a mel), logarithmic above.
        MelScale::Slaney if hz < 1000.0 => hz * 3.0 / 200.0,
        MelScale::Slaney => 15.0 + (hz / 1000.0).ln() * 27.0 / 6.4f64.ln(),
        // Kaldi draws its triangles in mels, which this reference does not.
        MelScale::Kaldi => panic!("no naive Kaldi filter banks"),
    }
}

/// Mel to Hz on `scale` (librosa's `mel_to_hz`).
fn mel_to_hz(mel: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 700.0 * (10f64.powf(mel / 2595.0) - 1.0),
        MelScale::Slaney if mel < 15.0 => mel * 200.0 / 3.0,
        MelScale::Slaney => 1000.0 * ((mel - 15.0) * 6.4f64.ln() / 27.0).exp(),
        MelScale::Kaldi => panic!("no naive Kaldi filter banks"),
    }
}

/// The log-mel spectrogram of one signal straight from its definition
/// (librosa's `melspectrogram` + `power_to_db`, Whisper's log10 scaling),
/// all in f64: pad (numpy's `reflect` or zeros), cut frames, multiply by the
/// periodic window, a direct DFT per bin, |X|², the mel triangles built here
/// (librosa's `filters.mel`), compress. `[n_mels, frames]`, band-major.
fn naive_log_mel(config: &MelConfig, signal: &[f32]) -> Vec<f32> {
    let n = config.n_fft;
    let pad = if config.center { n / 2 } else { 0 };
    let len = signal.len() as isize;
    assert!(len as usize > pad, "the reflection below folds once");
    let padded: Vec<f64> = (-(pad as isize)..len + pad as isize)
        .map(|i| match config.pad_mode {
            _ if (0..len).contains(&i) => signal[i as usize] as f64,
            PadMode::Zeros => 0.0,
            // numpy's reflect: mirror about the first and last sample.
            PadMode::Reflect if i < 0 => signal[(-i) as usize] as f64,
            PadMode::Reflect => signal[(2 * (len - 1) - i) as usize] as f64,
        })
        .collect();
    let frames = 1 + (padded.len() - n) / config.hop_length;
    let tau = 2.0 * std::f64::consts::PI;
    let window: Vec<f64> = (0..n)
        .map(|i| {
            let phase = (tau * i as f64 / n as f64).cos();
            match config.window {
                Window::Hann => 0.5 - 0.5 * phase,
                Window::Hamming => 0.54 - 0.46 * phase,
                other => panic!("no naive window for {other:?}"),
            }
        })
        .collect();
    let bins = n / 2 + 1;
    // cos and sin of 2πj/n: the DFT's e^{-2πikm/n} is entry (k·m) mod n.
    let cos: Vec<f64> = (0..n).map(|j| (tau * j as f64 / n as f64).cos()).collect();
    let sin: Vec<f64> = (0..n).map(|j| (tau * j as f64 / n as f64).sin()).collect();
    let power: Vec<Vec<f64>> = (0..frames)
        .map(|f| {
            let x: Vec<f64> = (0..n)
                .map(|m| padded[f * config.hop_length + m] * window[m])
                .collect();
            (0..bins)
                .map(|k| {
                    let (mut re, mut im) = (0.0, 0.0);
                    for (m, v) in x.iter().enumerate() {
                        re += v * cos[k * m % n];
                        im -= v * sin[k * m % n];
                    }
                    re * re + im * im
                })
                .collect()
        })
        .collect();
    // n_mels + 2 edges evenly spaced in mels from f_min to f_max.
    let rate = config.sample_rate as f64;
    let f_max = config.f_max.map_or(rate / 2.0, f64::from);
    let (lo, hi) = (
        hz_to_mel(config.f_min as f64, config.scale),
        hz_to_mel(f_max, config.scale),
    );
    let edges: Vec<f64> = (0..config.n_mels + 2)
        .map(|i| {
            mel_to_hz(
                lo + (hi - lo) * i as f64 / (config.n_mels + 1) as f64,
                config.scale,
            )
        })
        .collect();
    let mut out = vec![0.0f64; config.n_mels * frames];
    for band in 0..config.n_mels {
        let (left, centre, right) = (edges[band], edges[band + 1], edges[band + 2]);
        let area = if config.slaney_norm {
            2.0 / (right - left)
        } else {
            1.0
        };
        for k in 0..bins {
            let hz = k as f64 * rate / n as f64;
            let weight = ((hz - left) / (centre - left))
                .min((right - hz) / (right - centre))
                .max(0.0)
                * area;
            if weight > 0.0 {
                for (f, spectrum) in power.iter().enumerate() {
                    out[band * frames + f] += weight * spectrum[k];
                }
            }
        }
    }
    let floor_below = |values: &mut Vec<f64>, range: f64| {
        let floor = values.iter().copied().fold(f64::NEG_INFINITY, f64::max) - range;
        values.iter_mut().for_each(|v| *v = v.max(floor));
    };
    match config.log {
        LogScale::Power => {}
        LogScale::Natural { offset } => {
            out.iter_mut().for_each(|v| *v = (*v + offset as f64).ln());
        }
        LogScale::Decibel { top_db } => {
            out.iter_mut()
                .for_each(|v| *v = 10.0 * v.max(1e-10).log10());
            if let Some(top_db) = top_db {
                floor_below(&mut out, top_db as f64);
            }
        }
        LogScale::Whisper => {
            out.iter_mut().for_each(|v| *v = v.max(1e-10).log10());
            floor_below(&mut out, 8.0);
            out.iter_mut().for_each(|v| *v = (*v + 4.0) / 4.0);
        }
        LogScale::NaturalFloor { floor } => {
            out.iter_mut().for_each(|v| *v = v.max(floor as f64).ln());
        }
    }
    out.into_iter().map(|v| v as f32).collect()
}

/// [`naive_log_mel`] of every row, concatenated.
fn naive(config: &MelConfig, rows: &[Vec<f32>]) -> Vec<f32> {
    rows.iter().flat_map(|r| naive_log_mel(config, r)).collect()
}

/// `MelSpectrogram::compute` of every row, concatenated.
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

/// A case: name, settings, and two tolerances (absolute on log outputs,
/// relative to the largest value on power): `gpu` for the wgpu kernel
/// (lavapipe in CI), `cpu` for the CPU op and the unfused ops on the CPU
/// against [`naive_log_mel`].
struct Case {
    name: &'static str,
    config: MelConfig,
    gpu: f32,
    cpu: f32,
}

/// The cases. The `cpu` tolerances are about twice the largest difference
/// measured from the f64 definition (the f32 realfft's rounding, largest in
/// bands 80 dB down): 3.2e-5 (Whisper), 7.1e-4 dB (512), 5.2e-4 dB (2048),
/// 6.6e-7 relative (power), 8.9e-5 (ln).
fn configs() -> Vec<Case> {
    vec![
        // Whisper: n_fft 400 (not a power of two), reflect, log10 with floor.
        Case {
            name: "whisper",
            config: MelConfig::whisper(),
            gpu: 2e-4,
            cpu: 7e-5,
        },
        // librosa in dB with top_db 80, zero padding.
        Case {
            name: "librosa dB",
            config: MelConfig::librosa(16_000, 512, 160, 64),
            gpu: 5e-3,
            cpu: 1.5e-3,
        },
        // n_fft 2048: too large for the split kernel, the direct DFT.
        Case {
            name: "direct 2048 dB",
            config: MelConfig::librosa(16_000, 2048, 512, 64),
            gpu: 5e-3,
            cpu: 1.2e-3,
        },
        // A prime n_fft has no split either: the direct DFT, 8 frames a cube.
        Case {
            name: "direct prime 251 power",
            config: MelConfig {
                log: LogScale::Power,
                ..MelConfig::librosa(16_000, 251, 100, 24)
            },
            gpu: 1e-3,
            cpu: 1.5e-6,
        },
        // ln(x + 1e-6), not centred, HTK mels, Hamming window.
        Case {
            name: "ln htk",
            config: MelConfig {
                center: false,
                scale: MelScale::Htk,
                window: Window::Hamming,
                log: LogScale::Natural { offset: 1e-6 },
                ..MelConfig::librosa(16_000, 256, 128, 40)
            },
            gpu: 2e-3,
            cpu: 2e-4,
        },
    ]
}

fn check(name: &str, out: Tensor<3>, expected: &[f32], tolerance: f32) {
    check_values(
        name,
        &out.try_into_vec_as::<f32>().unwrap(),
        expected,
        tolerance,
    );
}

fn check_values(name: &str, got: &[f32], expected: &[f32], tolerance: f32) {
    let scale = if name.contains("power") {
        expected.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    } else {
        1.0
    };
    let diff = max_abs_diff(got, expected) / scale;
    eprintln!("{name}: max |diff| = {diff:e}");
    assert!(diff <= tolerance, "{name}: max |diff| {diff} > {tolerance}");
}

#[test]
fn fused_kernel_on_wgpu_matches_the_cpu_spectrogram() {
    let Some(device) = polymodal_wgpu::wgpu_for_tests() else {
        return;
    };
    let rows = signals(16_000);
    for Case {
        name,
        config,
        gpu: tolerance,
        ..
    } in configs()
    {
        let expected = reference(&config, &rows);
        let independent = naive(&config, &rows);
        let log_mel = LogMel::new(config).unwrap();
        let fused = log_mel
            .forward(batch(&rows, &device))
            .unwrap()
            .try_into_vec_as::<f32>()
            .unwrap();
        check_values(&format!("{name} fused wgpu"), &fused, &expected, tolerance);
        check_values(
            &format!("{name} fused wgpu vs naive"),
            &fused,
            &independent,
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
fn cpu_implementation_and_unfused_ops_match_the_definition() {
    let device = Device::flex();
    let rows = signals(8_000);
    for Case {
        name,
        config,
        cpu: tolerance,
        ..
    } in configs()
    {
        let expected = naive(&config, &rows);
        let log_mel = LogMel::new(config).unwrap();
        check(
            &format!("{name} cpu vs naive"),
            log_mel.forward(batch(&rows, &device)).unwrap(),
            &expected,
            tolerance,
        );
        check(
            &format!("{name} unfused cpu vs naive"),
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

/// Kaldi's framing (frames shorter than the FFT, DC removal, pre-emphasis)
/// and its floored log are `MelSpectrogram`'s only: the kernel refuses them
/// by name rather than computing something else.
#[test]
fn kaldi_filter_banks_are_refused_by_name() {
    let kaldi = MelConfig::kaldi_fbank(16_000, 64);
    let err = LogMel::new(kaldi.clone()).unwrap_err().to_string();
    assert!(err.contains("log"), "{err}");
    let framing = MelConfig {
        log: polymodal_audio::LogScale::Power,
        ..kaldi
    };
    let err = LogMel::new(framing).unwrap_err().to_string();
    assert!(err.contains("frame_length"), "{err}");
}
