//! Where the 30-second windows of a long transcription come from: features
//! held in memory, or frames streamed from a source read a second time
//! (the first read found the loudest value the log scale's floor hangs on).

use polymodal_core::{Error, Result};

use crate::{SampleSource, WhisperFrames};

/// Feature frames in one 30-second window.
pub(crate) const WINDOW_FRAMES: usize = 3000;

/// Samples per feature frame.
pub(crate) const HOP: usize = 160;

/// The input of the sequential algorithm, window by window.
pub(crate) trait Windows {
    /// Feature frames of the whole input.
    fn frames(&self) -> usize;

    /// Frames `seek .. seek + size` as one window, band-major `80 × 3000`
    /// padded with zeros, and the loudest of their samples. `seek` never
    /// goes back from one call to the next.
    fn window(&mut self, seek: usize, size: usize) -> Result<(Vec<f32>, f32)>;
}

/// Features computed at once, band-major, with the samples they came from.
pub(crate) struct HeldWindows<'a> {
    pub features: Vec<f32>,
    pub frames: usize,
    pub samples: &'a [f32],
}

impl Windows for HeldWindows<'_> {
    fn frames(&self) -> usize {
        self.frames
    }

    fn window(&mut self, seek: usize, size: usize) -> Result<(Vec<f32>, f32)> {
        let bands = self.features.len() / self.frames;
        let mut values = vec![0.0f32; bands * WINDOW_FRAMES];
        for (band, out) in self
            .features
            .chunks_exact(self.frames)
            .zip(values.chunks_exact_mut(WINDOW_FRAMES))
        {
            out[..size].copy_from_slice(&band[seek..seek + size]);
        }
        let heard = self
            .samples
            .get(seek * HOP..((seek + size) * HOP).min(self.samples.len()))
            .unwrap_or(&[]);
        Ok((values, peak(heard)))
    }
}

/// Frames read from a stream as the windows move on; only the frames of
/// the current window are held.
pub(crate) struct StreamedWindows<S> {
    pub source: WhisperFrames<S>,
    pub frames: usize,
    /// The log scale's floor: the loudest value of the input, less 8.
    pub floor: f32,
    /// Frame-major `log10` values of frames `first ..`, and their peaks.
    pub held: Vec<f32>,
    pub peaks: Vec<f32>,
    pub first: usize,
}

impl<S: SampleSource> Windows for StreamedWindows<S> {
    fn frames(&self) -> usize {
        self.frames
    }

    fn window(&mut self, seek: usize, size: usize) -> Result<(Vec<f32>, f32)> {
        const BANDS: usize = 80;
        let dropped = seek.saturating_sub(self.first).min(self.peaks.len());
        self.held.drain(..dropped * BANDS);
        self.peaks.drain(..dropped);
        self.first += dropped;
        while self.first + self.peaks.len() < seek + size {
            let Some(block) = self.source.next_block()? else {
                break;
            };
            self.held.extend(block.values);
            self.peaks.extend(block.peaks);
        }
        if self.first + self.peaks.len() < seek + size {
            return Err(Error::Invalid(format!(
                "the input ended at frame {} on its second read, not {}: it changed between reads",
                self.first + self.peaks.len(),
                self.frames
            )));
        }
        let from = seek - self.first;
        let mut values = vec![0.0f32; BANDS * WINDOW_FRAMES];
        for i in 0..size {
            let column = &self.held[(from + i) * BANDS..(from + i + 1) * BANDS];
            for (band, &v) in column.iter().enumerate() {
                values[band * WINDOW_FRAMES + i] = (v.max(self.floor) + 4.0) / 4.0;
            }
        }
        let loudest = self.peaks[from..from + size]
            .iter()
            .copied()
            .fold(0.0f32, f32::max);
        Ok((values, loudest))
    }
}

/// The largest magnitude in `samples` (0 for none).
fn peak(samples: &[f32]) -> f32 {
    samples.iter().fold(0.0f32, |m, s| m.max(s.abs()))
}
