//! Whisper's log-mel front end, equal to Hugging Face's `WhisperFeatureExtractor`.

use polymodal_core::{Error, Result};

use crate::{LogScale, MelConfig, MelSpectrogram, SampleSource};

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

/// The log-mel frames of a stream of 16 kHz mono samples, block after
/// block, equal to [`WhisperFeatures::compute_all`]'s for the whole input
/// before its floor (`log10` of the mel power), with each frame's loudest
/// sample: a long input read once to find its loudest value and again to
/// cut its windows, without holding it whole.
pub struct WhisperFrames<S> {
    source: S,
    /// The mel projection without centring: the padding is done here.
    mel: MelSpectrogram,
    /// Buffered samples; `buffer[0]` is sample `base` of the input.
    buffer: Vec<f32>,
    base: usize,
    /// The input's length, once its end was read.
    total: Option<usize>,
    /// The next frame to hand out.
    next: usize,
}

/// A block of consecutive frames from [`WhisperFrames`].
#[derive(Debug, Clone, PartialEq)]
pub struct FrameBlock {
    /// The index of the first frame.
    pub first: usize,
    /// `log10(max(power, 1e-10))`, frame-major: `80` values per frame.
    pub values: Vec<f32>,
    /// Per frame, the largest magnitude of its hop's 160 samples.
    pub peaks: Vec<f32>,
}

impl<S: SampleSource> WhisperFrames<S> {
    /// Frames handed out per block.
    const BLOCK: usize = 1000;

    /// Frames of `source`.
    pub fn new(source: S) -> Result<Self> {
        let mel = MelSpectrogram::new(MelConfig {
            center: false,
            log: LogScale::Power,
            ..MelConfig::whisper()
        })?;
        Ok(Self {
            source,
            mel,
            buffer: Vec::new(),
            base: 0,
            total: None,
            next: 0,
        })
    }

    /// The input's length in samples, once the last block was handed out.
    pub fn samples(&self) -> Option<usize> {
        self.total
    }

    /// The next block of frames, or `None` after the last (frame `f` covers
    /// samples `160 f − 200 .. 160 f + 200`, reflected at both ends of the
    /// input; there are `samples / 160` frames, as in
    /// [`WhisperFeatures::compute_all`]).
    pub fn next_block(&mut self) -> Result<Option<FrameBlock>> {
        const HOP: usize = 160;
        const HALF: usize = 200;
        // Read until a whole block is covered, or to the end.
        let wanted_end = (self.next + Self::BLOCK) * HOP + HALF;
        while self.total.is_none() && self.base + self.buffer.len() < wanted_end {
            match self.source.next_samples()? {
                Some(samples) => {
                    if samples.iter().any(|s| !s.is_finite()) {
                        return Err(Error::Invalid(
                            "audio samples contain NaN or infinity".into(),
                        ));
                    }
                    self.buffer.extend(samples);
                }
                None => self.total = Some(self.base + self.buffer.len()),
            }
        }
        let last = match self.total {
            Some(total) => (total / HOP).min(self.next + Self::BLOCK),
            None => self.next + Self::BLOCK,
        };
        if last <= self.next {
            return Ok(None);
        }
        if self.total.is_some_and(|t| t <= HALF) {
            return Err(Error::Invalid(format!(
                "{} samples are too few to stream Whisper features",
                self.total.unwrap_or(0)
            )));
        }
        let first = self.next;
        let count = last - first;
        // The samples of these frames, padded by reflection at the input's ends.
        let start = (first * HOP) as isize - HALF as isize;
        let len = (count - 1) * HOP + 2 * HALF;
        let padded: Vec<f32> = (0..len as isize).map(|i| self.sample(start + i)).collect();
        let (power, frames) = self.mel.mel_power(&padded)?;
        // Band-major from the projection; frame-major out.
        let bands = power.len() / frames;
        let mut values = vec![0.0f32; count * bands];
        for (band, row) in power.chunks_exact(frames).enumerate() {
            for (frame, &p) in row.iter().take(count).enumerate() {
                values[frame * bands + band] = p.max(1e-10).log10();
            }
        }
        let peaks = (first..last)
            .map(|f| {
                (f * HOP..(f + 1) * HOP)
                    .map(|i| self.sample(i as isize).abs())
                    .fold(0.0f32, f32::max)
            })
            .collect();
        self.next = last;
        // Keep what the next frames still need.
        let keep_from = (self.next * HOP).saturating_sub(HALF);
        if keep_from > self.base {
            let drop = (keep_from - self.base).min(self.buffer.len());
            self.buffer.drain(..drop);
            self.base += drop;
        }
        Ok(Some(FrameBlock {
            first,
            values,
            peaks,
        }))
    }

    /// Sample `i` of the input, reflected at its ends (numpy's `reflect`).
    fn sample(&self, i: isize) -> f32 {
        let mut i = i.unsigned_abs();
        if let Some(total) = self.total
            && i >= total
        {
            i = 2 * (total - 1) - i;
        }
        self.buffer
            .get(i.wrapping_sub(self.base))
            .copied()
            .unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SliceSource;

    /// 35 s of a gliding tone over quiet noise.
    fn signal() -> Vec<f32> {
        (0..35 * 16_000u32)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                0.3 * (2.0 * std::f32::consts::PI * (200.0 + 40.0 * t) * t).sin()
                    + 0.01 * ((u64::from(i) * 7919 % 101) as f32 / 101.0 - 0.5)
            })
            .collect()
    }

    #[test]
    fn streamed_frames_are_the_whole_inputs_features() {
        let samples = signal();
        let (whole, frames) = WhisperFeatures::new()
            .unwrap()
            .compute_all(&samples)
            .unwrap();
        // Chunks that do not line up with hops or blocks.
        let mut stream = WhisperFrames::new(SliceSource::new(&samples, 7_777)).unwrap();
        let mut values = Vec::new();
        let mut peaks = Vec::new();
        while let Some(block) = stream.next_block().unwrap() {
            assert_eq!(block.first, peaks.len());
            values.extend(block.values);
            peaks.extend(block.peaks);
        }
        assert_eq!(stream.samples(), Some(samples.len()));
        assert_eq!(peaks.len(), frames);
        let floor = values.iter().copied().fold(f32::NEG_INFINITY, f32::max) - 8.0;
        for band in 0..80 {
            for frame in 0..frames {
                let streamed = (values[frame * 80 + band].max(floor) + 4.0) / 4.0;
                assert_eq!(
                    streamed,
                    whole[band * frames + frame],
                    "band {band} frame {frame}"
                );
            }
        }
        let hop_peak = samples[160..320].iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert_eq!(peaks[1], hop_peak);
    }

    #[test]
    fn a_stream_with_nan_is_refused() {
        let mut samples = signal();
        samples[20_000] = f32::NAN;
        let mut stream = WhisperFrames::new(SliceSource::new(&samples, 4096)).unwrap();
        let error = loop {
            match stream.next_block() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("NaN went through"),
                Err(e) => break e,
            }
        };
        assert!(error.to_string().contains("NaN"), "{error}");
    }
}
