//! Whisper's log-mel front end, equal to Hugging Face's `WhisperFeatureExtractor`.

use polymodal_core::{Error, Result};

use crate::{MelConfig, MelSpectrogram};

/// Whisper's input features: 16 kHz mono padded with zeros (or cut) to a
/// fixed length, 80 log-mel bands, `chunk_secs * 100` frames.
#[derive(Debug)]
pub struct WhisperFeatures {
    mel: MelSpectrogram,
    samples: usize,
}

impl WhisperFeatures {
    /// Whisper's sample rate.
    pub const SAMPLE_RATE: u32 = 16_000;

    /// The 30-second extractor used by every Whisper checkpoint.
    pub fn new() -> Result<Self> {
        Self::with_chunk_secs(30)
    }

    /// An extractor for another window length (`chunk_length` in HF).
    pub fn with_chunk_secs(secs: usize) -> Result<Self> {
        if secs == 0 {
            return Err(Error::Config(
                "whisper chunk length must be positive".into(),
            ));
        }
        Ok(Self {
            mel: MelSpectrogram::new(MelConfig::whisper())?,
            samples: secs * Self::SAMPLE_RATE as usize,
        })
    }

    /// Number of output frames.
    pub fn frames(&self) -> usize {
        self.samples / self.mel.config().hop_length
    }

    /// Features of 16 kHz mono `samples`: `80 * frames()` values, band-major.
    /// Longer input is cut to the window; shorter input is padded with zeros.
    pub fn compute(&self, samples: &[f32]) -> Result<Vec<f32>> {
        let mut padded = vec![0.0f32; self.samples];
        let used = samples.len().min(self.samples);
        padded[..used].copy_from_slice(&samples[..used]);
        let (power, frames) = self.mel.mel_power(&padded)?;
        // Whisper drops the last STFT frame (the centred STFT yields one more).
        let keep = self.frames();
        debug_assert_eq!(frames, keep + 1);
        let mut out: Vec<f32> = power
            .chunks_exact(frames)
            .flat_map(|band| band[..keep].iter().copied())
            .collect();
        self.mel.config().log.apply(&mut out);
        Ok(out)
    }

    /// Features of the whole of `samples`, neither padded nor cut, as
    /// `WhisperFeatureExtractor(truncation=False, padding="longest")` makes
    /// them for long-form transcription: `80 * frames` values, band-major,
    /// and `frames` (one per 10 ms: `samples.len() / 160`). The log scale's
    /// floor (8 below the loudest value) is taken over the whole input.
    pub fn compute_all(&self, samples: &[f32]) -> Result<(Vec<f32>, usize)> {
        let keep = samples.len() / self.mel.config().hop_length;
        if keep == 0 {
            return Err(Error::Invalid(format!(
                "{} samples are less than one frame of Whisper features",
                samples.len()
            )));
        }
        let (power, frames) = self.mel.mel_power(samples)?;
        let keep = keep.min(frames);
        let mut out: Vec<f32> = power
            .chunks_exact(frames)
            .flat_map(|band| band[..keep].iter().copied())
            .collect();
        self.mel.config().log.apply(&mut out);
        Ok((out, keep))
    }
}
