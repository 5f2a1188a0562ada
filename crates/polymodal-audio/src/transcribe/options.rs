//! How a long input is transcribed: beams, the temperatures to fall back
//! to, and the thresholds that judge a window's text.

use std::io::Write;

use polymodal_core::{Error, Result};

/// The settings of [`crate::Whisper::transcribe_long`]. The default is
/// OpenAI's `transcribe`: each window prompted with the text before it,
/// greedy decoding at temperature 0, decoded again
/// at 0.2, 0.4 … 1.0 (sampling) while the text is too repetitive
/// (compression ratio above 2.4) or too unlikely (mean log-probability
/// below −1), windows judged silent (no-speech probability above 0.6 with a
/// mean log-probability below −1) left out; and windows of digital silence
/// not decoded at all. [`DecodeOptions::plain`] is transformers' `generate`
/// default: one pass at temperature 0, no thresholds, no previous text.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOptions {
    /// Beams of the beam search at temperature 0 (1: greedy decoding).
    /// Higher temperatures sample one sequence.
    pub beams: usize,
    /// The temperatures tried in turn while a window's text fails the
    /// thresholds (0: the most likely tokens).
    pub temperatures: Vec<f32>,
    /// Above this gzip compression ratio of its text, a window is decoded
    /// again at the next temperature.
    pub compression_ratio_threshold: Option<f32>,
    /// Below this mean log-probability, a window is decoded again at the
    /// next temperature.
    pub logprob_threshold: Option<f32>,
    /// Above this no-speech probability, with a mean log-probability below
    /// `logprob_threshold`, a window is silence: left out, not decoded again.
    pub no_speech_threshold: Option<f32>,
    /// Leaves out, without decoding, windows whose samples all stay below
    /// [`crate::Whisper::SILENT_PEAK`]: Whisper's own rule keeps its famous
    /// " you" on digital silence.
    pub skip_digital_silence: bool,
    /// Seed of the sampling at temperatures above 0.
    pub seed: u64,
    /// The spoken language, as a code (`"fr"`) or token (`"<|fr|>"`), for a
    /// multilingual checkpoint; none: heard in the first window. An
    /// English-only checkpoint takes none or `"en"`.
    pub language: Option<String>,
    /// Transcribe, or translate into English (multilingual checkpoints).
    pub task: Task,
    /// Prompts each window with the text of the ones before it (the last
    /// 223 tokens), which keeps names and style consistent across windows;
    /// a window decoded at temperature 0.5 or more is followed by one
    /// without.
    pub condition_on_previous_text: bool,
}

/// What a multilingual checkpoint is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Task {
    /// Write what is said, in its language.
    #[default]
    Transcribe,
    /// Write what is said in English.
    Translate,
}

impl Task {
    /// The name in `task_to_id`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Transcribe => "transcribe",
            Self::Translate => "translate",
        }
    }
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            beams: 1,
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            compression_ratio_threshold: Some(2.4),
            logprob_threshold: Some(-1.0),
            no_speech_threshold: Some(0.6),
            skip_digital_silence: true,
            seed: 0,
            language: None,
            task: Task::Transcribe,
            condition_on_previous_text: true,
        }
    }
}

impl DecodeOptions {
    /// transformers' `generate` defaults: one pass at temperature 0, no
    /// thresholds, every window decoded on its own.
    pub fn plain() -> Self {
        Self {
            temperatures: vec![0.0],
            condition_on_previous_text: false,
            compression_ratio_threshold: None,
            logprob_threshold: None,
            no_speech_threshold: None,
            skip_digital_silence: false,
            ..Self::default()
        }
    }

    /// These options with `beams` beams.
    pub fn with_beams(mut self, beams: usize) -> Self {
        self.beams = beams;
        self
    }

    /// Checks the settings: at least one beam and one temperature, finite
    /// values, no negative temperature.
    pub fn validate(&self) -> Result<()> {
        if self.beams == 0 {
            return Err(Error::Config("beam search needs at least one beam".into()));
        }
        if self.temperatures.is_empty() {
            return Err(Error::Config(
                "decoding needs at least one temperature".into(),
            ));
        }
        if let Some(t) = self
            .temperatures
            .iter()
            .find(|t| !t.is_finite() || **t < 0.0)
        {
            return Err(Error::Config(format!(
                "temperature {t}: give finite values of 0 or more"
            )));
        }
        let thresholds = [
            ("compression ratio", self.compression_ratio_threshold),
            ("log-probability", self.logprob_threshold),
            ("no-speech", self.no_speech_threshold),
        ];
        for (name, value) in thresholds {
            if value.is_some_and(|v| !v.is_finite()) {
                return Err(Error::Config(format!(
                    "the {name} threshold must be finite"
                )));
            }
        }
        Ok(())
    }

    /// Whether a window decoded at some temperature must be decoded again at
    /// the next: its text too repetitive or too unlikely, unless it is
    /// silence.
    pub(crate) fn needs_fallback(
        &self,
        compression_ratio: f32,
        avg_logprob: f32,
        no_speech_prob: f32,
    ) -> bool {
        let repetitive = self
            .compression_ratio_threshold
            .is_some_and(|t| compression_ratio > t);
        let unlikely = self.logprob_threshold.is_some_and(|t| avg_logprob < t);
        (repetitive || unlikely) && !self.is_silence(avg_logprob, no_speech_prob)
    }

    /// Whisper's rule for a silent window: a no-speech probability above
    /// the threshold while the text's mean log-probability is below its own.
    pub(crate) fn is_silence(&self, avg_logprob: f32, no_speech_prob: f32) -> bool {
        let (Some(no_speech), Some(logprob)) = (self.no_speech_threshold, self.logprob_threshold)
        else {
            return false;
        };
        no_speech_prob > no_speech && avg_logprob < logprob
    }
}

/// How much gzip shrinks `text` (OpenAI's `compression_ratio`: its UTF-8
/// bytes over their zlib-compressed bytes): text that loops on itself
/// compresses well.
pub fn compression_ratio(text: &str) -> f32 {
    if text.is_empty() {
        return 0.0;
    }
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let compressed = encoder
        .write_all(text.as_bytes())
        .and_then(|()| encoder.finish())
        .map_or(text.len(), |bytes| bytes.len());
    text.len() as f32 / compressed as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_text_compresses_far_better_than_speech() {
        let speech = " And Mr. John Dashwood had then leisure to consider how much there might be prudently in his power to do for them.";
        let looped = " Thank you. ".repeat(20);
        assert!(
            compression_ratio(speech) < 1.5,
            "{}",
            compression_ratio(speech)
        );
        assert!(
            compression_ratio(&looped) > 2.4,
            "{}",
            compression_ratio(&looped)
        );
    }

    #[test]
    fn silence_is_not_decoded_again() {
        let options = DecodeOptions::default();
        assert!(options.needs_fallback(3.0, -0.2, 0.1));
        assert!(options.needs_fallback(1.2, -1.5, 0.1));
        assert!(!options.needs_fallback(1.2, -1.5, 0.9));
        assert!(!options.needs_fallback(1.2, -0.5, 0.9));
        assert!(!DecodeOptions::plain().needs_fallback(3.0, -1.5, 0.1));
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = [
            DecodeOptions::default().with_beams(0),
            DecodeOptions {
                temperatures: vec![],
                ..DecodeOptions::default()
            },
            DecodeOptions {
                temperatures: vec![0.0, -0.2],
                ..DecodeOptions::default()
            },
            DecodeOptions {
                logprob_threshold: Some(f32::NAN),
                ..DecodeOptions::default()
            },
        ];
        for options in bad {
            assert!(options.validate().is_err(), "{options:?}");
        }
        assert!(DecodeOptions::default().validate().is_ok());
    }
}
