//! Mel-frequency cepstral coefficients: a DCT of the log-mel spectrogram.

use polymodal_core::{Error, Result};

use crate::{LogScale, MelConfig, MelSpectrogram};

/// MFCCs as librosa computes them: dB mel spectrogram (top 80 dB), then an
/// orthonormal DCT-II over the bands, keeping the first `n_mfcc`.
#[derive(Debug)]
pub struct Mfcc {
    mel: MelSpectrogram,
    n_mfcc: usize,
    /// `[n_mfcc][n_mels]`, row-major.
    basis: Vec<f32>,
}

impl Mfcc {
    /// Builds the extractor over `mel` (its log scale should be dB, as in librosa).
    pub fn new(mel: MelConfig, n_mfcc: usize) -> Result<Self> {
        if n_mfcc == 0 || n_mfcc > mel.n_mels {
            return Err(Error::Config(format!(
                "mfcc: n_mfcc must be in 1..={} (the mel band count), got {n_mfcc}",
                mel.n_mels
            )));
        }
        if !matches!(mel.log, LogScale::Decibel { .. } | LogScale::Natural { .. }) {
            return Err(Error::Config(
                "mfcc: the mel spectrogram must be logarithmic (dB or ln)".into(),
            ));
        }
        let basis = dct2_ortho(n_mfcc, mel.n_mels);
        Ok(Self {
            mel: MelSpectrogram::new(mel)?,
            n_mfcc,
            basis,
        })
    }

    /// The coefficients of mono `samples`: `n_mfcc * frames` values,
    /// coefficient-major. Returns the frame count too.
    pub fn compute(&self, samples: &[f32]) -> Result<(Vec<f32>, usize)> {
        let (log_mel, frames) = self.mel.compute(samples)?;
        let n_mels = self.mel.config().n_mels;
        let mut out = vec![0.0f32; self.n_mfcc * frames];
        for (k, row) in self.basis.chunks_exact(n_mels).enumerate() {
            let coefficients = &mut out[k * frames..(k + 1) * frames];
            for (weight, band) in row.iter().zip(log_mel.chunks_exact(frames)) {
                for (c, v) in coefficients.iter_mut().zip(band) {
                    *c += weight * v;
                }
            }
        }
        Ok((out, frames))
    }
}

/// scipy's `dct(type=2, norm="ortho")` as a matrix: row `k`, column `n`.
fn dct2_ortho(n_out: usize, n_in: usize) -> Vec<f32> {
    let n = n_in as f64;
    (0..n_out)
        .flat_map(|k| {
            let scale = if k == 0 {
                (1.0 / n).sqrt()
            } else {
                (2.0 / n).sqrt()
            };
            (0..n_in).map(move |i| {
                let angle = std::f64::consts::PI * k as f64 * (2 * i + 1) as f64 / (2.0 * n);
                (scale * angle.cos()) as f32
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dct_basis_is_orthonormal() {
        let basis = dct2_ortho(8, 8);
        for a in 0..8 {
            for b in 0..8 {
                let dot: f32 = (0..8).map(|i| basis[a * 8 + i] * basis[b * 8 + i]).sum();
                let expected = if a == b { 1.0 } else { 0.0 };
                assert!((dot - expected).abs() < 1e-5, "{a} {b} {dot}");
            }
        }
    }

    #[test]
    fn a_flat_log_spectrum_has_only_a_constant_term() {
        let basis = dct2_ortho(4, 16);
        for k in 1..4 {
            let sum: f32 = basis[k * 16..(k + 1) * 16].iter().sum();
            assert!(sum.abs() < 1e-5);
        }
    }

    #[test]
    fn bad_settings_are_errors() {
        let mel = MelConfig::librosa(16_000, 512, 160, 40);
        assert!(Mfcc::new(mel.clone(), 0).is_err());
        assert!(Mfcc::new(mel.clone(), 41).is_err());
        let power = MelConfig {
            log: LogScale::Power,
            ..mel
        };
        assert!(Mfcc::new(power, 13).is_err());
    }
}
