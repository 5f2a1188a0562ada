//! Sample-rate conversion with rubato's synchronous FFT resampler (a
//! windowed-sinc low-pass applied in the frequency domain, exact for the
//! rational ratio of two integer rates), whole buffers or streamed chunk by
//! chunk.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler as _, WindowFunction};

use polymodal_core::{Error, Result};

/// Largest sample magnitude accepted: far above any audio scale, far enough
/// below f32::MAX that the FFT's sums cannot overflow.
const MAX_MAGNITUDE: f32 = 1e30;

/// About this many input frames are handed to rubato per call.
const CHUNK: usize = 512;

/// A streaming resampler for interleaved audio at a fixed rate ratio.
///
/// Feed it with [`Resampler::process`] as often as needed and end with
/// [`Resampler::finish`]; the output is aligned with the input (the filter's
/// delay is removed) and holds exactly `ceil(frames_in * to / from)` frames.
pub struct Resampler {
    inner: Fft<f32>,
    from: u32,
    to: u32,
    channels: usize,
    /// Interleaved input waiting for a whole chunk.
    pending: Vec<f32>,
    /// Input frames per rubato call.
    chunk: usize,
    scratch: Vec<f32>,
    /// Output frames still to drop (the filter's delay).
    to_trim: usize,
    frames_in: u64,
    frames_out: u64,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("channels", &self.channels)
            .finish()
    }
}

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz for `channels` interleaved channels.
    pub fn new(from: u32, to: u32, channels: usize) -> Result<Self> {
        if from == 0 || to == 0 || channels == 0 {
            return Err(Error::Config(format!(
                "resampler: rates and channel count must be positive, got {from} Hz -> {to} Hz, {channels} channels"
            )));
        }
        // rubato's FFT sizes are multiples of the reduced ratio's terms. An
        // even multiple keeps the filter's centre on a whole input and output
        // frame, so trimming its delay aligns the output exactly.
        let step = (from / gcd(from, to)) as usize;
        let chunk = 2 * step * CHUNK.div_ceil(2 * step);
        let inner = Fft::<f32>::new_custom(
            from as usize,
            to as usize,
            chunk,
            1,
            channels,
            WindowFunction::BlackmanHarris2,
            FixedSync::Input,
        )
        .map_err(|e| Error::Config(format!("resampler {from} Hz -> {to} Hz: {e}")))?;
        let scratch = vec![0.0; inner.output_frames_max() * channels];
        // The filter is symmetric: its delay is exactly this many output frames.
        let to_trim = inner.output_delay();
        let pending = Vec::with_capacity(chunk * channels);
        Ok(Self {
            inner,
            from,
            to,
            channels,
            pending,
            scratch,
            chunk,
            to_trim,
            frames_in: 0,
            frames_out: 0,
        })
    }

    /// Resamples the next interleaved samples, appending what is ready to `out`.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<()> {
        if !input.len().is_multiple_of(self.channels) {
            return Err(Error::Invalid(format!(
                "resampler: {} samples is not a whole number of {}-channel frames",
                input.len(),
                self.channels
            )));
        }
        // rubato's inverse FFT fails (and panics) on non-finite spectra,
        // which NaN, infinities or values near f32::MAX produce.
        if input.iter().any(|s| s.is_nan() || s.abs() > MAX_MAGNITUDE) {
            return Err(Error::Invalid(format!(
                "resampler: samples must be finite and at most {MAX_MAGNITUDE:e} in magnitude"
            )));
        }
        self.frames_in += (input.len() / self.channels) as u64;
        self.pending.extend_from_slice(input);
        let chunk = self.chunk * self.channels;
        let whole = self.pending.len() / chunk * chunk;
        let pending = std::mem::take(&mut self.pending);
        let result = pending[..whole]
            .chunks_exact(chunk)
            .try_for_each(|piece| self.step(piece, None, out));
        self.pending = pending;
        self.pending.drain(..whole);
        result
    }

    /// Flushes the filter: appends the last frames to `out`. The resampler
    /// can be reused afterwards for a new stream.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<()> {
        let expected = (self.frames_in * self.to as u64).div_ceil(self.from as u64);
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            let frames = pending.len() / self.channels;
            self.step(&pending, Some(&Indexing::new().partial_len(frames)), out)?;
            self.pending = pending;
            self.pending.clear();
        }
        let silence = Indexing::new().partial_len(0);
        while self.frames_out < expected {
            self.step(&[], Some(&silence), out)?;
        }
        let excess = (self.frames_out - expected) as usize * self.channels;
        out.truncate(out.len().saturating_sub(excess));
        self.inner.reset();
        self.to_trim = self.inner.output_delay();
        (self.frames_in, self.frames_out) = (0, 0);
        Ok(())
    }

    fn step(
        &mut self,
        input: &[f32],
        indexing: Option<&Indexing>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let channels = self.channels;
        let size_error = |_| Error::Invalid("resampler: buffer size mismatch".into());
        let frames = input.len() / channels;
        let source = InterleavedSlice::new(input, channels, frames).map_err(size_error)?;
        let capacity = self.scratch.len() / channels;
        let mut sink =
            InterleavedSlice::new_mut(&mut self.scratch, channels, capacity).map_err(size_error)?;
        let (_, written) = self
            .inner
            .process_into_buffer(&source, &mut sink, indexing)
            .map_err(|e| Error::Invalid(format!("resampler: {e}")))?;
        let skip = self.to_trim.min(written);
        self.to_trim -= skip;
        out.extend_from_slice(&self.scratch[skip * channels..written * channels]);
        self.frames_out += (written - skip) as u64;
        Ok(())
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Resamples a whole interleaved buffer from `from` Hz to `to` Hz.
pub fn resample(samples: &[f32], channels: usize, from: u32, to: u32) -> Result<Vec<f32>> {
    if from == to {
        return Ok(samples.to_vec());
    }
    let mut resampler = Resampler::new(from, to, channels)?;
    let frames_out = (samples.len() / channels.max(1)) as u64 * to as u64 / from as u64;
    let mut out = Vec::with_capacity((frames_out as usize + 1) * channels);
    resampler.process(samples, &mut out)?;
    resampler.finish(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, frames: usize, phase_samples: f64) -> Vec<f32> {
        (0..frames)
            .map(|i| {
                let t = (i as f64 + phase_samples) / rate as f64;
                (std::f64::consts::TAU * freq * t).sin() as f32 * 0.5
            })
            .collect()
    }

    /// Largest error against the ideal sine away from the edges.
    fn error_against_ideal(from: u32, to: u32, freq: f64) -> f32 {
        let input = sine(freq, from, from as usize, 0.0);
        let output = resample(&input, 1, from, to).unwrap();
        assert_eq!(output.len(), to as usize);
        let ideal = sine(freq, to, to as usize, 0.0);
        let edge = to as usize / 20;
        output[edge..output.len() - edge]
            .iter()
            .zip(&ideal[edge..ideal.len() - edge])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn a_sine_stays_the_same_sine_at_the_new_rate() {
        for (from, to) in [
            (48_000, 16_000),
            (44_100, 16_000),
            (8_000, 16_000),
            (22_050, 44_100),
        ] {
            let error = error_against_ideal(from, to, 440.0);
            // A tenth of a sample of misalignment would be 0.009 here.
            assert!(error < 1e-4, "{from} -> {to}: {error}");
        }
    }

    #[test]
    fn content_above_the_new_nyquist_is_removed() {
        // 7 kHz from 48 kHz to 8 kHz would alias to 1 kHz without the filter.
        let input = sine(7_000.0, 48_000, 48_000, 0.0);
        let output = resample(&input, 1, 48_000, 8_000).unwrap();
        let middle = &output[800..7200];
        let peak = middle.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!(peak < 1e-3, "aliased peak {peak}");
    }

    #[test]
    fn streaming_in_odd_pieces_equals_one_call() {
        let left = sine(300.0, 44_100, 20_000, 0.0);
        let right = sine(900.0, 44_100, 20_000, 3.0);
        let stereo: Vec<f32> = left
            .iter()
            .zip(&right)
            .flat_map(|(l, r)| [*l, *r])
            .collect();
        let whole = resample(&stereo, 2, 44_100, 16_000).unwrap();
        let mut resampler = Resampler::new(44_100, 16_000, 2).unwrap();
        let mut streamed = Vec::new();
        for piece in stereo.chunks(2 * 777) {
            resampler.process(piece, &mut streamed).unwrap();
        }
        resampler.finish(&mut streamed).unwrap();
        assert_eq!(streamed, whole);
        assert_eq!(
            whole.len(),
            2 * (20_000u64 * 16_000).div_ceil(44_100) as usize
        );
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(Resampler::new(0, 16_000, 1).is_err());
        assert!(Resampler::new(16_000, 8_000, 0).is_err());
        let mut resampler = Resampler::new(16_000, 8_000, 2).unwrap();
        assert!(resampler.process(&[0.0; 3], &mut Vec::new()).is_err());
        // Found by `cargo xtask fuzz`: NaN made rubato's inverse FFT panic.
        for bad in [f32::NAN, f32::INFINITY, -2.3e38] {
            assert!(
                resample(&[0.1, bad, 0.0], 1, 8_000, 16_000).is_err(),
                "{bad}"
            );
        }
    }
}
