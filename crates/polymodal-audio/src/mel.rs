//! Mel spectrograms: framing, windowing, power spectrum, mel projection, log.
//!
//! The conventions follow librosa (`librosa.feature.melspectrogram`: centred
//! frames, a periodic window (Hann by default), Slaney or HTK mel filters);
//! [`MelConfig::kaldi_fbank`] gives Kaldi's filter banks instead
//! (`torchaudio.compliance.kaldi.fbank`: frames inside the signal, DC removal,
//! pre-emphasis, a symmetric window, triangles drawn in mel space), the input
//! of the Audio Spectrogram Transformer.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};

use polymodal_core::{Error, Result};

/// Which Hz-to-mel formula to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MelScale {
    /// Slaney's Auditory Toolbox scale (librosa's default): linear below 1 kHz, log above.
    Slaney,
    /// The HTK formula `2595 log10(1 + f / 700)`.
    Htk,
    /// Kaldi's: the same formula as `1127 ln(1 + f / 700)`, with each
    /// triangle drawn in mel space (linear in mels, not in Hz) and nothing at
    /// the Nyquist bin (`torchaudio.compliance.kaldi.get_mel_banks`).
    Kaldi,
}

/// How a centred spectrogram pads the signal's ends by `n_fft / 2`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PadMode {
    /// Mirror the signal (numpy `reflect`; Whisper, torchaudio).
    #[default]
    Reflect,
    /// Zeros (librosa's default since 0.10).
    Zeros,
}

/// The analysis window, periodic (scipy's `get_window(..., fftbins=True)`,
/// as librosa and torch.stft use it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Window {
    /// Hann (the default of librosa, Whisper and torchaudio).
    #[default]
    Hann,
    /// Hamming (0.54 - 0.46 cos).
    Hamming,
    /// Blackman (0.42 - 0.5 cos + 0.08 cos 2x).
    Blackman,
    /// No taper.
    Rectangular,
    /// Hann, symmetric: `0.5 - 0.5 cos(2πi / (n - 1))` (numpy's `hanning`,
    /// Kaldi's `hanning` window).
    HannSymmetric,
}

impl Window {
    /// The `n` window values.
    pub fn values(self, n: usize) -> Vec<f32> {
        let phase = |i: usize| 2.0 * std::f64::consts::PI * i as f64 / n as f64;
        let symmetric = |i: usize| 2.0 * std::f64::consts::PI * i as f64 / (n.max(2) - 1) as f64;
        (0..n)
            .map(|i| match self {
                Self::Hann => 0.5 - 0.5 * phase(i).cos(),
                Self::HannSymmetric => 0.5 - 0.5 * symmetric(i).cos(),
                Self::Hamming => 0.54 - 0.46 * phase(i).cos(),
                Self::Blackman => 0.42 - 0.5 * phase(i).cos() + 0.08 * (2.0 * phase(i)).cos(),
                Self::Rectangular => 1.0,
            })
            .map(|w| w as f32)
            .collect()
    }
}

/// How the magnitudes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum LogScale {
    /// Power, uncompressed.
    Power,
    /// `10 log10(max(x, 1e-10))`, then clamped to `max - top_db` when given.
    Decibel {
        /// Dynamic range kept below the maximum of the spectrogram.
        top_db: Option<f32>,
    },
    /// `ln(x + offset)`.
    Natural {
        /// Added before the logarithm to avoid `ln(0)`.
        offset: f32,
    },
    /// Whisper's scaling: `log10(max(x, 1e-10))`, clamped to `max - 8`, then
    /// `(x + 4) / 4` (OpenAI's `log_mel_spectrogram`, Hugging Face's
    /// `WhisperFeatureExtractor`).
    Whisper,
    /// `ln(max(x, floor))` (Kaldi's filter banks, with `floor` = `f32::EPSILON`).
    NaturalFloor {
        /// The smallest value the logarithm is taken of.
        floor: f32,
    },
}

/// Mel spectrogram settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MelConfig {
    /// Sample rate of the input, in Hz.
    pub sample_rate: u32,
    /// FFT size (also the window length unless `frame_length` is given).
    pub n_fft: usize,
    /// Samples per frame when fewer than `n_fft`: the window is this long
    /// and each frame is zero-padded to `n_fft` (Kaldi reads 400 samples into
    /// a 512-point FFT). `None`: `n_fft`. Only without centring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_length: Option<usize>,
    /// Analysis window.
    #[serde(default)]
    pub window: Window,
    /// Samples between frame starts.
    pub hop_length: usize,
    /// Number of mel bands.
    pub n_mels: usize,
    /// Lowest band edge, in Hz.
    pub f_min: f32,
    /// Highest band edge, in Hz (`None`: half the sample rate).
    pub f_max: Option<f32>,
    /// Pad `n_fft / 2` samples on each side so frames are centred.
    pub center: bool,
    /// What the centring pads with.
    #[serde(default)]
    pub pad_mode: PadMode,
    /// Hz-to-mel formula.
    pub scale: MelScale,
    /// Divide each triangle by its width (Slaney's area normalisation).
    pub slaney_norm: bool,
    /// Compression of the output.
    pub log: LogScale,
    /// Subtract each frame's mean before anything else (Kaldi's
    /// `remove_dc_offset`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub remove_dc: bool,
    /// Pre-emphasis coefficient `c`: each frame becomes `x[i] - c·x[i-1]`,
    /// its first sample `x[0] - c·x[0]`, after the DC removal and before the
    /// window (Kaldi's `preemphasis_coefficient`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preemphasis: Option<f32>,
}

impl Default for MelConfig {
    /// `librosa.power_to_db(librosa.feature.melspectrogram(y, sr=22050), top_db=80)`:
    /// librosa's own defaults (2048-point FFT, hop 512, 128 bands).
    fn default() -> Self {
        Self::librosa(22050, 2048, 512, 128)
    }
}

impl MelConfig {
    /// librosa's defaults for a given rate, FFT size, hop and band count, in
    /// dB (`librosa.power_to_db(librosa.feature.melspectrogram(...), top_db=80)`).
    pub fn librosa(sample_rate: u32, n_fft: usize, hop_length: usize, n_mels: usize) -> Self {
        Self {
            sample_rate,
            n_fft,
            frame_length: None,
            window: Window::Hann,
            hop_length,
            n_mels,
            f_min: 0.0,
            f_max: None,
            center: true,
            pad_mode: PadMode::Zeros,
            scale: MelScale::Slaney,
            slaney_norm: true,
            log: LogScale::Decibel { top_db: Some(80.0) },
            remove_dc: false,
            preemphasis: None,
        }
    }

    /// Kaldi's log filter banks as `torchaudio.compliance.kaldi.fbank`
    /// computes them with `window_type="hanning"` and its other defaults
    /// (25 ms frames inside the signal every 10 ms, zero-padded to a power of
    /// two, DC removal, pre-emphasis 0.97, triangles from 20 Hz to half the
    /// sample rate, `ln(max(x, ε))`, no dither): the Audio Spectrogram
    /// Transformer's input, as `ASTFeatureExtractor` makes it.
    pub fn kaldi_fbank(sample_rate: u32, n_mels: usize) -> Self {
        // torchaudio truncates the frame and hop to whole samples.
        let frame = sample_rate as usize * 25 / 1000;
        Self {
            sample_rate,
            n_fft: frame.next_power_of_two(),
            frame_length: Some(frame),
            window: Window::HannSymmetric,
            hop_length: sample_rate as usize * 10 / 1000,
            n_mels,
            f_min: 20.0,
            f_max: None,
            center: false,
            pad_mode: PadMode::Zeros,
            scale: MelScale::Kaldi,
            slaney_norm: false,
            log: LogScale::NaturalFloor {
                floor: f32::EPSILON,
            },
            remove_dc: true,
            preemphasis: Some(0.97),
        }
    }

    /// Samples each frame reads: `frame_length`, or `n_fft`.
    pub fn frame_span(&self) -> usize {
        self.frame_length.unwrap_or(self.n_fft)
    }

    /// Whisper's front end: 16 kHz, 400-point FFT, hop 160, 80 Slaney mels
    /// up to 8 kHz, Whisper log scaling. Use [`crate::WhisperFeatures`] for the
    /// full extractor (30 s padding, last frame dropped).
    pub fn whisper() -> Self {
        Self {
            log: LogScale::Whisper,
            pad_mode: PadMode::Reflect,
            ..Self::librosa(16_000, 400, 160, 80)
        }
    }

    fn validate(&self) -> Result<()> {
        let nyquist = self.sample_rate as f32 / 2.0;
        let f_max = self.f_max.unwrap_or(nyquist);
        let problem = if self.sample_rate == 0 {
            Some("sample_rate must be positive".to_string())
        } else if self.n_fft < 2 || self.hop_length == 0 || self.n_mels == 0 {
            Some("n_fft must be at least 2, hop_length and n_mels positive".to_string())
        } else if !(0.0 <= self.f_min && self.f_min < f_max && f_max <= nyquist) {
            Some(format!(
                "need 0 <= f_min < f_max <= {nyquist} Hz, got {} and {f_max}",
                self.f_min
            ))
        } else if self
            .frame_length
            .is_some_and(|l| l < 2 || l > self.n_fft || self.center)
        {
            Some(format!(
                "frame_length must be 2 to n_fft = {} and needs center = false, got {:?}",
                self.n_fft, self.frame_length
            ))
        } else if self.scale == MelScale::Kaldi && self.slaney_norm {
            Some("Kaldi's filter banks have no area normalisation: set slaney_norm = false".into())
        } else if self.preemphasis.is_some_and(|c| !(0.0..=1.0).contains(&c)) {
            Some(format!(
                "preemphasis must be 0 to 1, got {:?}",
                self.preemphasis
            ))
        } else if matches!(self.log, LogScale::NaturalFloor { floor } if !(floor > 0.0 && floor.is_finite()))
        {
            Some(format!(
                "the log floor must be positive and finite, got {:?}",
                self.log
            ))
        } else {
            None
        };
        problem.map_or(Ok(()), |p| Err(Error::Config(format!("mel config: {p}"))))
    }
}

/// A mel spectrogram extractor with its filterbank and FFT plan built once.
pub struct MelSpectrogram {
    config: MelConfig,
    window: Vec<f32>,
    /// `[n_mels][n_fft / 2 + 1]`, row-major.
    filters: Vec<f32>,
    /// Per band, the range of FFT bins where its triangle is non-zero.
    supports: Vec<std::ops::Range<usize>>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl std::fmt::Debug for MelSpectrogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MelSpectrogram")
            .field("config", &self.config)
            .finish()
    }
}

impl MelSpectrogram {
    /// Builds the extractor; fails on an inconsistent config.
    pub fn new(config: MelConfig) -> Result<Self> {
        config.validate()?;
        // A frame shorter than the FFT is zero-padded: so is its window.
        let mut window = config.window.values(config.frame_span());
        window.resize(config.n_fft, 0.0);
        let filters = mel_filterbank(&config);
        let bins = config.n_fft / 2 + 1;
        let supports = filters
            .chunks_exact(bins)
            .map(|row| {
                let start = row.iter().position(|&w| w != 0.0).unwrap_or(0);
                let end = row.iter().rposition(|&w| w != 0.0).map_or(start, |i| i + 1);
                start..end
            })
            .collect();
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(config.n_fft);
        Ok(Self {
            config,
            window,
            filters,
            supports,
            fft,
        })
    }

    /// The settings.
    pub fn config(&self) -> &MelConfig {
        &self.config
    }

    /// The `n_fft` window values (zeros past `frame_length`).
    pub fn window(&self) -> &[f32] {
        &self.window
    }

    /// The mel filters, `[n_mels][n_fft / 2 + 1]` row-major.
    pub fn filters(&self) -> &[f32] {
        &self.filters
    }

    /// Per band, the FFT bins where its filter is non-zero.
    pub fn supports(&self) -> &[std::ops::Range<usize>] {
        &self.supports
    }

    /// Number of frames produced for `len` input samples.
    pub fn frames_for(&self, len: usize) -> usize {
        let n_fft = self.config.n_fft;
        let span = self.config.frame_span();
        // n_fft / 2 on each side: one short of n_fft when n_fft is odd.
        let padded = if self.config.center {
            len + n_fft / 2 * 2
        } else {
            len
        };
        if padded < span {
            0
        } else {
            1 + (padded - span) / self.config.hop_length
        }
    }

    /// Computes the spectrogram of mono `samples`: `n_mels * frames` values,
    /// band-major (`out[band * frames + frame]`). Returns the frame count too.
    pub fn compute(&self, samples: &[f32]) -> Result<(Vec<f32>, usize)> {
        let (mut out, frames) = self.mel_power(samples)?;
        self.config.log.apply(&mut out);
        Ok((out, frames))
    }

    /// The mel-projected power spectrum before [`LogScale`] compression,
    /// laid out like [`MelSpectrogram::compute`].
    pub fn mel_power(&self, samples: &[f32]) -> Result<(Vec<f32>, usize)> {
        let n_fft = self.config.n_fft;
        if samples.is_empty() {
            return Err(Error::Invalid(
                "cannot compute a spectrogram of an empty signal".into(),
            ));
        }
        if samples.iter().any(|s| !s.is_finite()) {
            return Err(Error::Invalid(
                "audio samples contain NaN or infinity".into(),
            ));
        }
        let signal = if self.config.center {
            match self.config.pad_mode {
                PadMode::Reflect => reflect_pad(samples, n_fft / 2),
                PadMode::Zeros => {
                    let mut padded = vec![0.0; samples.len() + n_fft / 2 * 2];
                    padded[n_fft / 2..n_fft / 2 + samples.len()].copy_from_slice(samples);
                    padded
                }
            }
        } else {
            samples.to_vec()
        };
        let frames = self.frames_for(samples.len());
        let span = self.config.frame_span();
        if frames == 0 {
            return Err(Error::Invalid(format!(
                "signal of {} samples is shorter than a frame ({span} samples)",
                samples.len()
            )));
        }
        let bins = n_fft / 2 + 1;
        let n_mels = self.config.n_mels;
        let mut out = vec![0.0f32; n_mels * frames];
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0.0f32; bins];
        for frame in 0..frames {
            let start = frame * self.config.hop_length;
            let samples = &signal[start..start + span];
            if self.config.remove_dc || self.config.preemphasis.is_some() {
                self.kaldi_frame(samples, &mut input);
            } else {
                for ((slot, &x), &w) in input.iter_mut().zip(samples).zip(&self.window) {
                    *slot = x * w;
                }
            }
            // The FFT overwrites its input: pad the frame again each time.
            input[span..].fill(0.0);
            self.fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .map_err(|e| Error::Invalid(format!("fft: {e}")))?;
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            for (band, support) in self.supports.iter().enumerate() {
                let row = &self.filters[band * bins..(band + 1) * bins];
                out[band * frames + frame] = row[support.clone()]
                    .iter()
                    .zip(&power[support.clone()])
                    .map(|(w, p)| w * p)
                    .sum();
            }
        }
        Ok((out, frames))
    }

    /// One frame shaped as Kaldi shapes it, into `input[..samples.len()]`:
    /// mean removed, pre-emphasised (the first sample against itself), then
    /// windowed. Sums in f64, so a loud DC offset leaves no rounding behind.
    fn kaldi_frame(&self, samples: &[f32], input: &mut [f32]) {
        let mean = if self.config.remove_dc {
            samples.iter().map(|&x| x as f64).sum::<f64>() / samples.len() as f64
        } else {
            0.0
        };
        let c = self.config.preemphasis.unwrap_or(0.0);
        let mut previous = samples[0] as f64 - mean;
        for (i, (slot, &x)) in input.iter_mut().zip(samples).enumerate() {
            let x = x as f64 - mean;
            let emphasised = x - c as f64 * previous;
            previous = x;
            *slot = emphasised as f32 * self.window[i];
        }
    }
}

/// Pads by reflection around the edges (numpy's `mode="reflect"`), folding
/// again when the signal is shorter than the padding.
fn reflect_pad(samples: &[f32], pad: usize) -> Vec<f32> {
    reflect_indices(samples.len(), pad)
        .into_iter()
        .map(|i| samples[i])
        .collect()
}

/// The source index of every sample of a signal of `len` (> 0) samples
/// padded by `pad` on each side with numpy's `mode="reflect"` (folding again
/// when the signal is shorter than the padding): `len + 2·pad` indices.
pub fn reflect_indices(len: usize, pad: usize) -> Vec<usize> {
    let n = len as isize;
    let period = 2 * (n - 1);
    (-(pad as isize)..n + pad as isize)
        .map(|i| {
            if n == 1 {
                return 0;
            }
            let i = i.rem_euclid(period);
            (if i >= n { period - i } else { i }) as usize
        })
        .collect()
}

fn hz_to_mel(hz: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 2595.0 * (1.0 + hz / 700.0).log10(),
        MelScale::Kaldi => 1127.0 * (1.0 + hz / 700.0).ln(),
        MelScale::Slaney => {
            let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
            let min_log_mel = min_log_hz / f_sp;
            let logstep = 6.4f64.ln() / 27.0;
            if hz >= min_log_hz {
                min_log_mel + (hz / min_log_hz).ln() / logstep
            } else {
                hz / f_sp
            }
        }
    }
}

fn mel_to_hz(mel: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 700.0 * (10f64.powf(mel / 2595.0) - 1.0),
        MelScale::Kaldi => 700.0 * ((mel / 1127.0).exp() - 1.0),
        MelScale::Slaney => {
            let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
            let min_log_mel = min_log_hz / f_sp;
            let logstep = 6.4f64.ln() / 27.0;
            if mel >= min_log_mel {
                min_log_hz * (logstep * (mel - min_log_mel)).exp()
            } else {
                f_sp * mel
            }
        }
    }
}

/// Triangular filters on the mel scale, computed in f64 like librosa.
fn mel_filterbank(config: &MelConfig) -> Vec<f32> {
    if config.scale == MelScale::Kaldi {
        return kaldi_filterbank(config);
    }
    let bins = config.n_fft / 2 + 1;
    let sr = config.sample_rate as f64;
    let f_max = config.f_max.map_or(sr / 2.0, f64::from);
    let (mel_lo, mel_hi) = (
        hz_to_mel(config.f_min as f64, config.scale),
        hz_to_mel(f_max, config.scale),
    );
    let edges: Vec<f64> = (0..config.n_mels + 2)
        .map(|i| mel_lo + (mel_hi - mel_lo) * i as f64 / (config.n_mels + 1) as f64)
        .map(|m| mel_to_hz(m, config.scale))
        .collect();
    let fft_freqs: Vec<f64> = (0..bins)
        .map(|k| k as f64 * sr / config.n_fft as f64)
        .collect();
    let mut filters = vec![0.0f32; config.n_mels * bins];
    for band in 0..config.n_mels {
        let (lo, mid, hi) = (edges[band], edges[band + 1], edges[band + 2]);
        let norm = if config.slaney_norm {
            2.0 / (hi - lo)
        } else {
            1.0
        };
        for (k, &f) in fft_freqs.iter().enumerate() {
            let rising = (f - lo) / (mid - lo);
            let falling = (hi - f) / (hi - mid);
            let weight = rising.min(falling).max(0.0);
            filters[band * bins + k] = (weight * norm) as f32;
        }
    }
    filters
}

/// Kaldi's triangles (`get_mel_banks`): equally spaced in mels between
/// `f_min` and `f_max`, each rising and falling linearly in mels; the Nyquist
/// bin gets no weight (Kaldi computes `n_fft / 2` bins and pads one).
fn kaldi_filterbank(config: &MelConfig) -> Vec<f32> {
    let bins = config.n_fft / 2 + 1;
    let sr = config.sample_rate as f64;
    let mel = |hz: f64| hz_to_mel(hz, MelScale::Kaldi);
    let low = mel(config.f_min as f64);
    let high = mel(config.f_max.map_or(sr / 2.0, f64::from));
    let delta = (high - low) / (config.n_mels + 1) as f64;
    let mut filters = vec![0.0f32; config.n_mels * bins];
    for band in 0..config.n_mels {
        let edge = |i: usize| low + (band + i) as f64 * delta;
        let (left, centre, right) = (edge(0), edge(1), edge(2));
        for k in 0..bins - 1 {
            let m = mel(k as f64 * sr / config.n_fft as f64);
            let weight = ((m - left) / (centre - left)).min((right - m) / (right - centre));
            filters[band * bins + k] = weight.max(0.0) as f32;
        }
    }
    filters
}

impl LogScale {
    /// Compresses mel power values in place. The clamping variants use the
    /// maximum over all of `values`, so pass one whole spectrogram.
    pub fn apply(self, values: &mut [f32]) {
        compress(values, self);
    }
}

fn compress(values: &mut [f32], log: LogScale) {
    match log {
        LogScale::Power => {}
        LogScale::Natural { offset } => values.iter_mut().for_each(|v| *v = (*v + offset).ln()),
        LogScale::NaturalFloor { floor } => values.iter_mut().for_each(|v| *v = v.max(floor).ln()),
        LogScale::Whisper => {
            values.iter_mut().for_each(|v| *v = v.max(1e-10).log10());
            let floor = values.iter().copied().fold(f32::NEG_INFINITY, f32::max) - 8.0;
            values
                .iter_mut()
                .for_each(|v| *v = (v.max(floor) + 4.0) / 4.0);
        }
        LogScale::Decibel { top_db } => {
            values
                .iter_mut()
                .for_each(|v| *v = 10.0 * v.max(1e-10).log10());
            if let Some(top_db) = top_db {
                let floor = values.iter().copied().fold(f32::NEG_INFINITY, f32::max) - top_db;
                values.iter_mut().for_each(|v| *v = v.max(floor));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MelConfig {
        MelConfig::librosa(8000, 256, 128, 32)
    }

    #[test]
    fn a_pure_tone_peaks_in_the_band_holding_its_frequency() {
        let mel = MelSpectrogram::new(MelConfig {
            log: LogScale::Power,
            ..config()
        })
        .unwrap();
        let tone: Vec<f32> = (0..4000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 8000.0).sin())
            .collect();
        let (out, frames) = mel.compute(&tone).unwrap();
        assert_eq!(frames, 1 + 4000 / 128);
        let middle = frames / 2;
        let loudest = (0..32)
            .max_by(|&a, &b| out[a * frames + middle].total_cmp(&out[b * frames + middle]))
            .unwrap();
        let mel_1k = hz_to_mel(1000.0, MelScale::Slaney);
        let band_centre = |b: usize| {
            mel_to_hz(
                hz_to_mel(4000.0, MelScale::Slaney) * (b + 1) as f64 / 33.0,
                MelScale::Slaney,
            )
        };
        assert!(
            (hz_to_mel(band_centre(loudest), MelScale::Slaney) - mel_1k).abs() < 2.0,
            "band {loudest}"
        );
    }

    #[test]
    fn mel_scales_invert() {
        for scale in [MelScale::Slaney, MelScale::Htk] {
            for hz in [0.0, 440.0, 1000.0, 3999.0] {
                assert!((mel_to_hz(hz_to_mel(hz, scale), scale) - hz).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn an_odd_fft_size_pads_one_short_on_each_side() {
        // librosa pads n_fft // 2 = 125 on each side: 1 + (1000 + 250 - 251) // 100.
        let mel = MelSpectrogram::new(MelConfig::librosa(8000, 251, 100, 24)).unwrap();
        assert_eq!(mel.frames_for(1000), 10);
        let (out, frames) = mel.compute(&vec![0.1; 1000]).unwrap();
        assert_eq!((out.len(), frames), (24 * 10, 10));
    }

    /// Kaldi's frames lie inside the signal (`snip_edges`): a 400-sample
    /// frame every 160 samples, each zero-padded into a 512-point FFT.
    #[test]
    fn kaldi_frames_lie_inside_the_signal() {
        let mel = MelSpectrogram::new(MelConfig::kaldi_fbank(16_000, 23)).unwrap();
        assert_eq!((mel.config().n_fft, mel.config().frame_span()), (512, 400));
        assert_eq!(mel.frames_for(399), 0);
        assert_eq!(mel.frames_for(400), 1);
        assert_eq!(mel.frames_for(559), 1);
        assert_eq!(mel.frames_for(560), 2);
        assert!(mel.window()[400..].iter().all(|&w| w == 0.0));
        assert_eq!(
            (mel.window()[0], mel.window()[399]),
            (0.0, 0.0),
            "symmetric"
        );
        assert!(mel.compute(&[0.1; 399]).is_err());
        // A constant signal is all DC: removed, it leaves the log floor.
        let (out, frames) = mel.compute(&[0.5; 720]).unwrap();
        assert_eq!(frames, 3);
        assert!(out.iter().all(|&v| v == f32::EPSILON.ln()), "{out:?}");
        // Without the DC removal the lowest bands see it.
        let dc = MelSpectrogram::new(MelConfig {
            remove_dc: false,
            preemphasis: None,
            ..MelConfig::kaldi_fbank(16_000, 23)
        })
        .unwrap();
        let (out, _) = dc.compute(&[0.5; 720]).unwrap();
        assert!(out[0] > 0.0, "{}", out[0]);
    }

    #[test]
    fn kaldi_settings_are_checked() {
        let kaldi = MelConfig::kaldi_fbank(16_000, 23);
        for bad in [
            MelConfig {
                center: true,
                ..kaldi.clone()
            },
            MelConfig {
                frame_length: Some(513),
                ..kaldi.clone()
            },
            MelConfig {
                preemphasis: Some(1.5),
                ..kaldi.clone()
            },
            MelConfig {
                log: LogScale::NaturalFloor { floor: 0.0 },
                ..kaldi.clone()
            },
            MelConfig {
                slaney_norm: true,
                ..kaldi.clone()
            },
        ] {
            assert!(MelSpectrogram::new(bad.clone()).is_err(), "{bad:?}");
        }
        // The new settings are left out of a librosa config's JSON, so
        // earlier model cards and cache keys read and hash the same.
        let json = serde_json::to_string(&config()).unwrap();
        assert!(
            !json.contains("frame_length") && !json.contains("remove_dc"),
            "{json}"
        );
        assert!(!json.contains("preemphasis"), "{json}");
        let back: MelConfig =
            serde_json::from_str(&serde_json::to_string(&kaldi).unwrap()).unwrap();
        assert_eq!(back, kaldi);
    }

    #[test]
    fn reflect_pad_matches_numpy() {
        // np.pad([1, 2, 3], 2, mode="reflect") == [3, 2, 1, 2, 3, 2, 1]
        assert_eq!(
            reflect_pad(&[1.0, 2.0, 3.0], 2),
            vec![3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        let mel = MelSpectrogram::new(config()).unwrap();
        assert!(mel.compute(&[]).is_err());
        assert!(mel.compute(&[f32::NAN; 512]).is_err());
        assert!(
            MelSpectrogram::new(MelConfig {
                f_min: 5000.0,
                ..config()
            })
            .is_err()
        );
        assert!(
            MelSpectrogram::new(MelConfig {
                hop_length: 0,
                ..config()
            })
            .is_err()
        );
    }
}
