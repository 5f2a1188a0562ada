//! Speech to text with a Whisper checkpoint: [`Whisper`] loads a Hugging
//! Face `WhisperForConditionalGeneration` folder (encoder, decoder,
//! `generation_config.json`, `tokenizer.json`) and decodes as transformers'
//! `generate` does: greedy or beam search, the suppressed tokens at every
//! step and the begin-suppressed ones at the first. One window without
//! timestamps ([`Whisper::transcribe`]), or input of any length with
//! timestamps, window after window, each starting where the last complete
//! segment of the one before ended: the sequential algorithm of OpenAI's
//! `transcribe`, with its temperature fallback and silence rules
//! ([`Whisper::transcribe_long`], [`DecodeOptions`]).

mod beam;
mod options;
mod rules;
mod segments;
mod subtitles;
mod windows;

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::*;
use burn::tensor::activation::softmax;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use polymodal_core::{Error, Init, LoadReport, Result, Weights, read_config};

use crate::{
    LoadOptions, SampleSource, SampleStream, WhisperDecoder, WhisperDecoderConfig, WhisperEncoder,
    WhisperEncoderConfig, WhisperFeatures, WhisperFrames,
};
use beam::{BeamSearch, top_k};
use rules::{Rules, TimestampRules};
use windows::{HOP, HeldWindows, StreamedWindows, WINDOW_FRAMES, Windows};

pub use options::{DecodeOptions, Task, compression_ratio};
pub use segments::TIME_PRECISION;
pub use subtitles::{SubtitleFormat, subtitles};

/// The fields of a Whisper `generation_config.json` decoding reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WhisperGenerationConfig {
    /// `<|startoftranscript|>`.
    pub decoder_start_token_id: u32,
    /// `<|endoftext|>`.
    pub eos_token_id: u32,
    /// `<|notimestamps|>`.
    pub no_timestamps_token_id: u32,
    /// Never generated.
    #[serde(default)]
    pub suppress_tokens: Vec<u32>,
    /// Not generated first (a space, `<|endoftext|>`).
    #[serde(default)]
    pub begin_suppress_tokens: Vec<u32>,
    /// Whether the checkpoint speaks many languages (and needs language and
    /// task tokens in its prompt).
    #[serde(default)]
    pub is_multilingual: bool,
    /// The latest timestamp allowed first, in steps of 0.02 s after
    /// `<|0.00|>` (any when absent, as in transformers).
    #[serde(default)]
    pub max_initial_timestamp_index: Option<u32>,
    /// Multilingual checkpoints: each language's token (`"<|fr|>"`: 50265).
    #[serde(default)]
    pub lang_to_id: BTreeMap<String, u32>,
    /// Multilingual checkpoints: the task tokens (`"transcribe"`,
    /// `"translate"`).
    #[serde(default)]
    pub task_to_id: BTreeMap<String, u32>,
    /// `<|startofprev|>`, which opens the previous window's text in a
    /// prompt (transformers takes the second last suppressed token when it
    /// is absent, as here).
    #[serde(default)]
    pub prev_sot_token_id: Option<u32>,
}

impl WhisperGenerationConfig {
    /// Reads a `generation_config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        read_config(path, |_| Ok(()))
    }
}

/// What decoding gives for one window: the tokens, and the two scores
/// Whisper judges a window's speech by.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The generated token ids (timestamp tokens included when they were
    /// predicted), without the prompt and `<|endoftext|>`.
    pub tokens: Vec<u32>,
    /// The probability of `<|nocaptions|>` (`<|nospeech|>`) at the start
    /// token: how sure the model is that the window holds no speech.
    pub no_speech_prob: f32,
    /// The mean log-probability of the generated tokens and
    /// `<|endoftext|>`, under the suppression rules (beam search: the
    /// length-normalised score of the best beam).
    pub avg_logprob: f32,
}

/// The text of one window and what it was decoded from.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// The tokens and their scores.
    pub decoded: Decoded,
    /// The tokens as text, special tokens left out.
    pub text: String,
}

impl Transcript {
    /// Whether Whisper would drop the window as silence: a no-speech
    /// probability above [`Whisper::NO_SPEECH_THRESHOLD`] while the mean
    /// log-probability is below [`Whisper::LOGPROB_THRESHOLD`] (the rule
    /// and defaults of OpenAI's `transcribe`).
    pub fn is_silence(&self) -> bool {
        DecodeOptions::default().is_silence(self.decoded.avg_logprob, self.decoded.no_speech_prob)
    }
}

/// A timed piece of a transcription, between two timestamps, with the
/// scores of the window it was decoded in (the fields of OpenAI's segments).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Start, in seconds from the start of the input.
    pub start_secs: f64,
    /// End, in seconds from the start of the input.
    pub end_secs: f64,
    /// What was said.
    pub text: String,
    /// Its tokens, with the timestamp tokens around them.
    pub tokens: Vec<u32>,
    /// The window's temperature (0 unless it fell back to sampling).
    pub temperature: f32,
    /// The window's mean log-probability.
    pub avg_logprob: f32,
    /// The compression ratio of the window's text.
    pub compression_ratio: f32,
    /// The window's no-speech probability.
    pub no_speech_prob: f32,
}

/// How far a long transcription has come: seconds decoded of the total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Seconds of input behind the current window.
    pub done_secs: f64,
    /// Seconds of input in all.
    pub total_secs: f64,
}

/// One decoding's prompts and rules.
struct Plan {
    /// The prompt of each row (one: the same for every row).
    prompts: Vec<Vec<u32>>,
    /// Where `<|startoftranscript|>` is in the prompts (after the previous
    /// window's text, when it is given).
    start: usize,
    rules: Rules,
}

impl Plan {
    fn prompt(&self, row: usize) -> &[u32] {
        &self.prompts[row.min(self.prompts.len() - 1)]
    }
}

/// A Whisper speech-to-text model.
#[derive(Debug)]
pub struct Whisper {
    encoder: WhisperEncoder,
    decoder: WhisperDecoder,
    generation: WhisperGenerationConfig,
    tokenizer: tokenizers::Tokenizer,
    features: WhisperFeatures,
    options: DecodeOptions,
    device: Device,
}

impl Whisper {
    /// OpenAI's default: above this no-speech probability a window may be
    /// silence.
    pub const NO_SPEECH_THRESHOLD: f32 = 0.6;

    /// OpenAI's default: below this mean log-probability the decoded text of
    /// a likely silent window is not trusted.
    pub const LOGPROB_THRESHOLD: f32 = -1.0;

    /// A window whose samples all stay below this magnitude (−60 dBFS) is
    /// not decoded ([`DecodeOptions::skip_digital_silence`]): Whisper's own
    /// rule keeps its famous " you" on digital silence (no-speech
    /// probability 0.95, but a mean log-probability of −0.38 on
    /// whisper-tiny.en).
    pub const SILENT_PEAK: f32 = 1e-3;

    /// Loads a Hugging Face Whisper folder: `config.json`,
    /// `model.safetensors`, `generation_config.json`, `tokenizer.json`.
    /// A multilingual checkpoint's `generation_config.json` must name its
    /// language and task tokens (`lang_to_id`, `task_to_id`).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LoadReport)> {
        let dir = dir.as_ref();
        let generation = WhisperGenerationConfig::from_file(dir.join("generation_config.json"))?;
        let has_tasks = ["transcribe", "translate"]
            .iter()
            .all(|t| generation.task_to_id.contains_key(*t));
        if generation.is_multilingual && (generation.lang_to_id.is_empty() || !has_tasks) {
            return Err(Error::Config(format!(
                "{}: a multilingual checkpoint's generation_config.json needs `lang_to_id` and \
                 `task_to_id` (transcribe, translate)",
                dir.display()
            )));
        }
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| Error::Config(format!("{}: {e}", tokenizer_path.display())))?;
        // Both halves from one read of the weights: `model.encoder.*` and
        // `model.decoder.*` (`encoder.*` for a `WhisperModel` file); the
        // output projection is tied to the token embeddings.
        let config = dir.join("config.json");
        let weights = Weights::open(dir.join("model.safetensors"))?;
        let root = if weights.contains("encoder.conv1.weight") {
            ""
        } else {
            "model"
        };
        weights.skip("proj_out.weight");
        let init = Init::from(&weights);
        let encoder = WhisperEncoder::build(
            &WhisperEncoderConfig::from_file(&config)?,
            &init.pp(root).pp("encoder"),
            device,
        )?;
        let decoder = WhisperDecoder::build(
            &WhisperDecoderConfig::from_file(&config)?,
            &init.pp(root).pp("decoder"),
            device,
        )?;
        let report = weights.finish()?;
        check_tokens(&generation, decoder.vocab_size())?;
        let model = Self {
            encoder,
            decoder,
            generation,
            options: DecodeOptions::default(),
            tokenizer,
            features: WhisperFeatures::new()?,
            device: device.clone(),
        };
        Ok((model, report))
    }

    /// The decoding settings of the checkpoint.
    pub fn generation(&self) -> &WhisperGenerationConfig {
        &self.generation
    }

    /// The settings of [`Whisper::transcribe_long`].
    pub fn options(&self) -> &DecodeOptions {
        &self.options
    }

    /// The decoder.
    pub fn decoder(&self) -> &WhisperDecoder {
        &self.decoder
    }

    /// The encoder.
    pub fn encoder(&self) -> &WhisperEncoder {
        &self.encoder
    }

    /// The tokens a transcription without timestamps starts from, as the
    /// options say (language and task tokens for a multilingual checkpoint,
    /// whose language must then be set: see [`Whisper::prompt_for`]).
    pub fn prompt(&self) -> Result<Vec<u32>> {
        self.prompt_for(self.language_token()?, false)
    }

    /// The prompt of a transcription with or without `timestamps`:
    /// `<|startoftranscript|>`, for a multilingual checkpoint the `language`
    /// token (required) and the task's, then `<|notimestamps|>` unless
    /// timestamps are predicted.
    pub fn prompt_for(&self, language: Option<u32>, timestamps: bool) -> Result<Vec<u32>> {
        let mut prompt = vec![self.generation.decoder_start_token_id];
        if !self.generation.is_multilingual && self.options.task == Task::Translate {
            return Err(Error::Config(
                "translation needs a multilingual checkpoint; this one is English-only".into(),
            ));
        }
        if self.generation.is_multilingual {
            let language = language.ok_or_else(|| {
                Error::Config("a multilingual prompt needs a language (given or detected)".into())
            })?;
            prompt.push(language);
            prompt.push(self.generation.task_to_id[self.options.task.name()]);
        }
        if !timestamps {
            prompt.push(self.generation.no_timestamps_token_id);
        }
        Ok(prompt)
    }

    /// The token of the options' language (`"fr"`, `"<|fr|>"`, any case),
    /// none when no language is set or the checkpoint is English-only.
    fn language_token(&self) -> Result<Option<u32>> {
        let Some(language) = self.options.language.as_deref() else {
            return Ok(None);
        };
        let code = language
            .trim()
            .trim_start_matches("<|")
            .trim_end_matches("|>");
        let code = code.to_ascii_lowercase();
        if !self.generation.is_multilingual {
            return match code.as_str() {
                "en" | "english" => Ok(None),
                _ => Err(Error::Config(format!(
                    "language {language}: this checkpoint is English-only"
                ))),
            };
        }
        self.generation
            .lang_to_id
            .get(&format!("<|{code}|>"))
            .copied()
            .map(Some)
            .ok_or_else(|| {
                let known: Vec<&str> = self
                    .generation
                    .lang_to_id
                    .keys()
                    .map(|k| k.trim_start_matches("<|").trim_end_matches("|>"))
                    .collect();
                Error::Config(format!(
                    "language {language}: the checkpoint knows {}",
                    known.join(", ")
                ))
            })
    }

    /// The languages a multilingual checkpoint hears in each row of
    /// `features` `[batch, 80, 3000]`, likeliest first with their
    /// probabilities (the softmax of the first step's scores over the
    /// language tokens, as OpenAI's `detect_language`; transformers takes
    /// the first). Empty for an English-only checkpoint.
    pub fn detect_language(&self, features: Tensor<3>) -> Result<Vec<Vec<(String, f32)>>> {
        self.detect_in(self.encoder.forward(features)?)
    }

    fn detect_in(&self, encoded: Tensor<3>) -> Result<Vec<Vec<(String, f32)>>> {
        let batch = encoded.dims()[0];
        if !self.generation.is_multilingual {
            return Ok(vec![Vec::new(); batch]);
        }
        let mut cache = self.decoder.cache(encoded)?;
        let start = self.generation.decoder_start_token_id as i64;
        let tokens = Tensor::<2, Int>::from_data(
            TensorData::new(vec![start; batch], [batch, 1]),
            &self.device,
        );
        let logits = host_f32(self.decoder.step(tokens, &mut cache)?)?;
        let vocab = self.decoder.vocab_size();
        let languages: Vec<(&String, u32)> = self
            .generation
            .lang_to_id
            .iter()
            .map(|(k, &v)| (k, v))
            .collect();
        Ok(logits
            .chunks_exact(vocab)
            .map(|row| {
                let scores: Vec<f32> = languages.iter().map(|(_, id)| row[*id as usize]).collect();
                let total = rules::log_sum_exp(&scores);
                let mut probs: Vec<(u32, String, f32)> = languages
                    .iter()
                    .zip(&scores)
                    .map(|((name, id), s)| {
                        let code = name.trim_start_matches("<|").trim_end_matches("|>");
                        (*id, code.to_string(), (s - total).exp())
                    })
                    .collect();
                // Likeliest first; ties: the lower token id, as argmax.
                probs.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
                probs.into_iter().map(|(_, code, p)| (code, p)).collect()
            })
            .collect())
    }

    /// The language token of each row: the options' language, else (for a
    /// multilingual checkpoint) the likeliest in each row of `encoded`.
    fn languages(&self, encoded: &Tensor<3>) -> Result<Vec<Option<u32>>> {
        let batch = encoded.dims()[0];
        if let Some(token) = self.language_token()? {
            return Ok(vec![Some(token); batch]);
        }
        if !self.generation.is_multilingual {
            return Ok(vec![None; batch]);
        }
        self.detect_in(encoded.clone())?
            .iter()
            .map(|row| {
                let code = &row[0].0;
                Ok(self
                    .generation
                    .lang_to_id
                    .get(&format!("<|{code}|>"))
                    .copied())
            })
            .collect()
    }

    /// `<|0.00|>`: the first timestamp token.
    pub fn timestamp_begin(&self) -> u32 {
        self.generation.no_timestamps_token_id + 1
    }

    /// Whisper's input features of 16 kHz mono `samples` (the first 30 s;
    /// shorter input is padded): `[1, 80, 3000]`.
    pub fn features(&self, samples: &[f32]) -> Result<Tensor<3>> {
        check_finite(samples)?;
        let values = self.features.compute(samples)?;
        let frames = self.features.frames();
        let bands = values.len() / frames;
        Ok(Tensor::from_data(
            TensorData::new(values, [1, bands, frames]),
            &self.device,
        ))
    }

    /// Decodes with `beams` beams (1, the default: greedy decoding).
    pub fn with_beams(self, beams: usize) -> Result<Self> {
        let options = self.options.clone().with_beams(beams);
        self.with_options(options)
    }

    /// Transcribes long input with `options`.
    pub fn with_options(mut self, options: DecodeOptions) -> Result<Self> {
        self.set_options(options)?;
        Ok(self)
    }

    /// Transcribes long input with `options` from now on.
    pub fn set_options(&mut self, options: DecodeOptions) -> Result<()> {
        options.validate()?;
        self.options = options;
        Ok(())
    }

    /// Transcribes up to 30 s of 16 kHz mono `samples` without timestamps,
    /// at temperature 0 (greedily, or by beam search after
    /// [`Whisper::with_beams`]).
    pub fn transcribe(&self, samples: &[f32]) -> Result<Transcript> {
        let features = self.features(samples)?;
        let decoded = match self.options.beams {
            1 => self.greedy(features)?.remove(0),
            beams => self.beam_search(features, beams)?,
        };
        let text = self.decode(&decoded.tokens)?;
        Ok(Transcript { decoded, text })
    }

    /// Transcribes 16 kHz mono `samples` of any length into timed segments,
    /// by the sequential algorithm of OpenAI's `transcribe` (as transformers'
    /// long-form `generate` runs it): a 30-second window is decoded with
    /// timestamps; the next starts where its last complete segment ended
    /// (or after it, when its text ended with a single timestamp). Each
    /// window falls back to higher temperatures and is judged silent by
    /// [`Whisper::options`]. Input up to 30 s is padded to one window in
    /// samples; longer input gets the features of its whole length, and its
    /// last window is padded with zero features, as transformers does.
    pub fn transcribe_long(&self, samples: &[f32]) -> Result<Vec<Segment>> {
        self.transcribe_long_with(samples, |_| {})
    }

    /// [`Whisper::transcribe_long`], telling `progress` after each window
    /// how far it has come.
    pub fn transcribe_long_with(
        &self,
        samples: &[f32],
        progress: impl FnMut(Progress),
    ) -> Result<Vec<Segment>> {
        check_finite(samples)?;
        let (features, frames) = if samples.len() <= WINDOW_FRAMES * HOP {
            (self.features.compute(samples)?, WINDOW_FRAMES)
        } else {
            self.features.compute_all(samples)?
        };
        let mut windows = HeldWindows {
            features,
            frames,
            samples,
        };
        self.sequential(&mut windows, samples.len(), progress)
    }

    /// [`Whisper::transcribe_long_with`] on an audio file, read from disk as
    /// the windows move on rather than held whole (see
    /// [`Whisper::transcribe_source`]).
    pub fn transcribe_file(
        &self,
        path: impl AsRef<Path>,
        progress: impl FnMut(Progress),
    ) -> Result<Vec<Segment>> {
        let path = path.as_ref();
        let options = LoadOptions::mono_at(WhisperFeatures::SAMPLE_RATE);
        self.transcribe_source(|| SampleStream::open(path, &options), progress)
    }

    /// [`Whisper::transcribe_long_with`] on 16 kHz mono samples that
    /// `open` streams, with the same result as on the samples held whole:
    /// the source is read once for the loudest value of its features (the
    /// log scale's floor is taken over the whole input) and again, window by
    /// window, to transcribe it; only the current window's frames are kept.
    /// Input of up to 30 s is read whole on the second pass.
    pub fn transcribe_source<S: SampleSource>(
        &self,
        mut open: impl FnMut() -> Result<S>,
        progress: impl FnMut(Progress),
    ) -> Result<Vec<Segment>> {
        let mut scan = WhisperFrames::new(open()?)?;
        let (mut frames, mut loudest) = (0, f32::NEG_INFINITY);
        while let Some(block) = scan.next_block()? {
            frames += block.peaks.len();
            loudest = block.values.iter().copied().fold(loudest, f32::max);
        }
        let samples = scan.samples().unwrap_or(0);
        if samples == 0 {
            return Err(Error::Invalid("no audio samples".into()));
        }
        if samples <= WINDOW_FRAMES * HOP {
            let mut source = open()?;
            let mut held = Vec::with_capacity(samples);
            while let Some(chunk) = source.next_samples()? {
                held.extend(chunk);
            }
            return self.transcribe_long_with(&held, progress);
        }
        let mut windows = StreamedWindows {
            source: WhisperFrames::new(open()?)?,
            frames,
            floor: loudest - 8.0,
            held: Vec::new(),
            peaks: Vec::new(),
            first: 0,
        };
        self.sequential(&mut windows, samples, progress)
    }

    /// The sequential algorithm over `windows` of an input of `samples`.
    fn sequential(
        &self,
        windows: &mut impl Windows,
        samples: usize,
        mut progress: impl FnMut(Progress),
    ) -> Result<Vec<Segment>> {
        let frames = windows.frames();
        // The language is the options', or heard in the first window.
        let language = match self.language_token()? {
            Some(token) => Some(token),
            None if self.generation.is_multilingual => {
                let (first, _) = windows.window(0, frames.min(WINDOW_FRAMES))?;
                let bands = first.len() / WINDOW_FRAMES;
                let first = Tensor::from_data(
                    TensorData::new(first, [1, bands, WINDOW_FRAMES]),
                    &self.device,
                );
                self.languages(&self.encoder.forward(first)?)?[0]
            }
            None => None,
        };
        let prompt = self.prompt_for(language, true)?;
        let mut plan = self.plan(vec![prompt.clone()], true);
        // Each window is prompted with the text before it, unless the last
        // one fell back to a high temperature (transformers' rule).
        let mut condition = self.options.condition_on_previous_text;
        let begin = self.timestamp_begin();
        let mut rng = StdRng::seed_from_u64(self.options.seed);
        let rate = f64::from(WhisperFeatures::SAMPLE_RATE);
        let total_secs = samples as f64 / rate;
        let mut segments = Vec::new();
        let mut seek = 0;
        while seek < frames {
            progress(Progress {
                done_secs: ((seek * HOP) as f64 / rate).min(total_secs),
                total_secs,
            });
            let size = (frames - seek).min(WINDOW_FRAMES);
            let (values, loudest) = windows.window(seek, size)?;
            if self.options.skip_digital_silence && loudest < Self::SILENT_PEAK {
                seek += size;
                continue;
            }
            let bands = values.len() / WINDOW_FRAMES;
            let window = Tensor::from_data(
                TensorData::new(values, [1, bands, WINDOW_FRAMES]),
                &self.device,
            );
            let previous = if condition {
                self.previous_text(&segments)?
            } else {
                Vec::new()
            };
            plan.start = previous.len();
            plan.prompts = vec![[previous, prompt.clone()].concat()];
            let (decoded, temperature, ratio) =
                self.decode_with_fallback(window, &plan, &mut rng)?;
            condition = self.options.condition_on_previous_text && temperature < 0.5;
            if self
                .options
                .is_silence(decoded.avg_logprob, decoded.no_speech_prob)
            {
                seek += size;
                continue;
            }
            let (spans, advance) = segments::split(&decoded.tokens, begin, seek, size);
            for span in spans {
                let tokens = decoded.tokens[span.tokens].to_vec();
                segments.push(Segment {
                    start_secs: span.start,
                    end_secs: span.end,
                    text: self.decode(&tokens)?,
                    tokens,
                    temperature,
                    avg_logprob: decoded.avg_logprob,
                    compression_ratio: ratio,
                    no_speech_prob: decoded.no_speech_prob,
                });
            }
            // The rules make a first pair at <|0.00|> impossible; never stall.
            seek += advance.max(1);
        }
        progress(Progress {
            done_secs: total_secs,
            total_secs,
        });
        Ok(segments)
    }

    /// The prompt part that gives a window the text before it:
    /// `<|startofprev|>` and the last 223 tokens of the segments so far
    /// (each segment's closing timestamp left out when it ended on a pair),
    /// as transformers builds it; nothing before the first segment.
    fn previous_text(&self, segments: &[Segment]) -> Result<Vec<u32>> {
        if segments.is_empty() {
            return Ok(Vec::new());
        }
        let start_of_previous = self
            .generation
            .prev_sot_token_id
            .or_else(|| {
                let suppress = &self.generation.suppress_tokens;
                // transformers' fallback: the second last suppressed token.
                suppress.len().checked_sub(2).map(|i| suppress[i])
            })
            .ok_or_else(|| {
                Error::Config(
                    "conditioning on the previous text needs `prev_sot_token_id` in \
                     generation_config.json"
                        .into(),
                )
            })?;
        let begin = self.timestamp_begin();
        let tokens: Vec<u32> = segments
            .iter()
            .flat_map(|s| {
                let ends_on_pair = s.tokens.len() > 2 && s.tokens[s.tokens.len() - 2] >= begin;
                let keep = s.tokens.len() - usize::from(ends_on_pair);
                s.tokens[..keep].iter().copied()
            })
            .collect();
        let limit = self.decoder.max_positions() / 2 - 1;
        let tail = &tokens[tokens.len().saturating_sub(limit)..];
        Ok([&[start_of_previous], tail].concat())
    }

    /// Decodes one window at each temperature in turn until its text passes
    /// the thresholds (or the temperatures run out): the result, its
    /// temperature and the compression ratio of its text.
    fn decode_with_fallback(
        &self,
        window: Tensor<3>,
        plan: &Plan,
        rng: &mut StdRng,
    ) -> Result<(Decoded, f32, f32)> {
        let options = &self.options;
        let encoded = self.encoder.forward(window)?;
        let mut last = None;
        for &temperature in &options.temperatures {
            let decoded = if temperature == 0.0 && options.beams > 1 {
                self.beam_search_with(encoded.clone(), options.beams, plan)?
            } else {
                self.sample(encoded.clone(), plan, temperature, rng)?
                    .remove(0)
            };
            let ratio = compression_ratio(&self.decode(&decoded.tokens)?);
            let again = options.needs_fallback(ratio, decoded.avg_logprob, decoded.no_speech_prob);
            last = Some((decoded, temperature, ratio));
            if !again {
                break;
            }
        }
        last.ok_or_else(|| Error::Config("decoding needs at least one temperature".into()))
    }

    /// The rules of a decoding with or without timestamps, from `prompts`.
    fn plan(&self, prompts: Vec<Vec<u32>>, timestamps: bool) -> Plan {
        let rules = Rules {
            suppress: self.generation.suppress_tokens.clone(),
            begin_suppress: self.generation.begin_suppress_tokens.clone(),
            timestamps: timestamps.then(|| TimestampRules {
                begin: self.timestamp_begin(),
                no_timestamps: self.generation.no_timestamps_token_id,
                eos: self.generation.eos_token_id,
                max_initial: self.generation.max_initial_timestamp_index,
            }),
        };
        Plan {
            prompts,
            start: 0,
            rules,
        }
    }

    /// Greedy decoding without timestamps of features `[batch, 80, 3000]`:
    /// each row's generated tokens (without the prompt and `<|endoftext|>`)
    /// and scores.
    pub fn greedy(&self, features: Tensor<3>) -> Result<Vec<Decoded>> {
        let encoded = self.encoder.forward(features)?;
        let plan = self.plan(self.prompts(&encoded)?, false);
        let mut unused = StdRng::seed_from_u64(0);
        self.sample(encoded, &plan, 0.0, &mut unused)
    }

    /// Each row's prompt without timestamps (its language given or heard).
    fn prompts(&self, encoded: &Tensor<3>) -> Result<Vec<Vec<u32>>> {
        self.languages(encoded)?
            .into_iter()
            .map(|language| self.prompt_for(language, false))
            .collect()
    }

    /// Decodes every row of `features` token by token: the likeliest token
    /// at temperature 0, else one drawn from the softmax of the scores over
    /// `temperature`. The log-probabilities are those of the scores under
    /// the rules, at temperature 1 (as OpenAI and transformers score them).
    fn sample(
        &self,
        encoded: Tensor<3>,
        plan: &Plan,
        temperature: f32,
        rng: &mut StdRng,
    ) -> Result<Vec<Decoded>> {
        let batch = encoded.dims()[0];
        let vocab = self.decoder.vocab_size();
        let eos = self.generation.eos_token_id;
        let mut cache = self.decoder.cache(encoded)?;
        let mut input: Vec<i64> = (0..batch)
            .flat_map(|row| plan.prompt(row).iter().map(|&t| t as i64))
            .collect();
        let mut width = plan.prompt(0).len();
        let mut out = vec![
            Decoded {
                tokens: Vec::new(),
                no_speech_prob: 0.0,
                avg_logprob: 0.0,
            };
            batch
        ];
        let mut scored = vec![0usize; batch];
        let mut done = vec![false; batch];
        let mut first = true;
        // The sequence, prompt included, stays within the decoder's
        // positions (transformers' `max_length`).
        while cache.len() + width < self.decoder.max_positions() {
            let tokens =
                Tensor::<2, Int>::from_data(TensorData::new(input, [batch, width]), &self.device);
            let logits = self.decoder.step(tokens, &mut cache)?;
            if first {
                for (row, p) in out.iter_mut().zip(self.no_speech(&logits, plan.start)?) {
                    row.no_speech_prob = p;
                }
            }
            first = false;
            let last: Tensor<2> = logits.narrow(1, width - 1, 1).squeeze_dim(1);
            let mut scores = host_f32(last)?;
            let mut next = vec![eos as i64; batch];
            for (row, scores) in scores.chunks_exact_mut(vocab).enumerate() {
                if done[row] {
                    continue;
                }
                plan.rules.apply(&out[row].tokens, scores);
                let token = if temperature > 0.0 {
                    draw(scores, temperature, rng)
                } else {
                    arg_max(scores)
                };
                rules::log_softmax(scores);
                out[row].avg_logprob += scores[token];
                scored[row] += 1;
                if token as u32 == eos {
                    done[row] = true;
                } else {
                    out[row].tokens.push(token as u32);
                    next[row] = token as i64;
                }
            }
            if done.iter().all(|d| *d) {
                break;
            }
            // Finished rows go on with <|endoftext|>, as transformers pads them.
            input = next;
            width = 1;
        }
        for (row, scored) in out.iter_mut().zip(scored) {
            // The sum over the tokens and <|endoftext|>, as OpenAI averages it.
            row.avg_logprob /= scored.max(1) as f32;
        }
        Ok(out)
    }

    /// Beam search without timestamps with `beams` beams over the features
    /// `[1, 80, 3000]` of one window, as transformers' `generate(num_beams=…)`
    /// does it: at each step the `2 × beams` best continuations of all beams
    /// by summed log-probability (log-softmax, then the rules), the best
    /// `beams` unfinished ones go on, finished ones are kept by their sum
    /// divided by their length (length penalty 1, `<|endoftext|>` counted);
    /// it stops when no running beam can beat the finished ones. The result's
    /// `avg_logprob` is that length-normalised score.
    pub fn beam_search(&self, features: Tensor<3>, beams: usize) -> Result<Decoded> {
        if beams == 0 || features.dims()[0] != 1 {
            return Err(Error::Invalid(format!(
                "beam search takes the features of one window and at least one beam, got {:?} and {beams} beams",
                features.dims()
            )));
        }
        let encoded = self.encoder.forward(features)?;
        let plan = self.plan(self.prompts(&encoded)?, false);
        self.beam_search_with(encoded, beams, &plan)
    }

    fn beam_search_with(&self, encoded: Tensor<3>, beams: usize, plan: &Plan) -> Result<Decoded> {
        let mut cache = self.decoder.cache(encoded)?;
        cache.repeat_rows(beams)?;
        let vocab = self.decoder.vocab_size();
        let mut search = BeamSearch::new(beams, self.generation.eos_token_id);
        let mut no_speech_prob = 0.0;
        let mut input: Vec<i64> = (0..beams)
            .flat_map(|_| plan.prompt(0).iter().map(|&t| t as i64))
            .collect();
        let mut width = plan.prompt(0).len();
        let mut first = true;
        loop {
            let tokens =
                Tensor::<2, Int>::from_data(TensorData::new(input, [beams, width]), &self.device);
            let logits = self.decoder.step(tokens, &mut cache)?;
            if first {
                // Every beam starts from the same prompt.
                no_speech_prob = self.no_speech(&logits, plan.start)?[0];
            }
            first = false;
            let last: Tensor<2> = logits.narrow(1, width - 1, 1).squeeze_dim(1);
            let mut scores = host_f32(last)?;
            let running = search.running_scores();
            for (beam, row) in scores.chunks_exact_mut(vocab).enumerate() {
                // transformers applies the rules after the log-softmax.
                rules::log_softmax(row);
                plan.rules.apply(search.running_tokens(beam), row);
                row.iter_mut().for_each(|s| *s += running[beam]);
            }
            // The best continuations are picked on the host: the same order
            // on every device (ties: the lower index first).
            let (values, indices) = top_k(&scores, 2 * beams);
            let at_limit = cache.len() + 1 > self.decoder.max_positions() - 1;
            let rows = search.advance(&values, &indices, vocab, at_limit);
            let Some(rows) = rows else { break };
            cache.select_rows(&rows)?;
            input = search.last_tokens();
            width = 1;
        }
        let (score, tokens) = search.best();
        Ok(Decoded {
            tokens,
            no_speech_prob,
            avg_logprob: score,
        })
    }

    /// Each row's no-speech probability from the first step's `logits`
    /// `[batch, prompt, vocab]`: the softmax at `<|startoftranscript|>`
    /// (at `start` in the prompt), before any token is suppressed.
    fn no_speech(&self, logits: &Tensor<3>, start: usize) -> Result<Vec<f32>> {
        // `<|nocaptions|>` (`<|nospeech|>` in later vocabularies) comes just
        // before `<|notimestamps|>` in every Whisper vocabulary, as
        // transformers assumes.
        let token = self.generation.no_timestamps_token_id - 1;
        let at_start: Tensor<2> = logits.clone().narrow(1, start, 1).squeeze_dim(1);
        host_f32(softmax(at_start, 1).narrow(1, token as usize, 1))
    }

    /// `tokens` as text, special and timestamp tokens left out.
    pub fn decode(&self, tokens: &[u32]) -> Result<String> {
        let text: Vec<u32> = tokens
            .iter()
            .copied()
            .filter(|&t| t < self.generation.eos_token_id)
            .collect();
        self.tokenizer
            .decode(&text, true)
            .map_err(|e| Error::Invalid(format!("cannot decode Whisper tokens: {e}")))
    }
}

/// Refuses a generation config that names a token past the vocabulary (or
/// a `<|notimestamps|>` with no `<|nocaptions|>` before it).
fn check_tokens(generation: &WhisperGenerationConfig, vocab: usize) -> Result<()> {
    let special = [
        generation.decoder_start_token_id,
        generation.eos_token_id,
        generation.no_timestamps_token_id,
    ];
    let all = special
        .iter()
        .chain(&generation.suppress_tokens)
        .chain(&generation.begin_suppress_tokens)
        .chain(generation.lang_to_id.values())
        .chain(generation.task_to_id.values())
        .chain(generation.prev_sot_token_id.iter());
    if let Some(token) = all.copied().find(|&t| t as usize >= vocab) {
        return Err(Error::Config(format!(
            "generation_config.json names token {token}, past the vocabulary of {vocab}"
        )));
    }
    if generation.no_timestamps_token_id == 0 {
        return Err(Error::Config(
            "generation_config.json: no_timestamps_token_id cannot be 0".into(),
        ));
    }
    Ok(())
}

fn check_finite(samples: &[f32]) -> Result<()> {
    if samples.iter().any(|s| !s.is_finite()) {
        return Err(Error::Invalid(
            "audio samples contain NaN or infinity".into(),
        ));
    }
    Ok(())
}

fn host_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| Error::Invalid(format!("{e:?}")))
}

/// The index of the largest score (the first of equal ones, as torch's
/// `argmax`).
fn arg_max(scores: &[f32]) -> usize {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best
}

/// A token drawn from the softmax of `scores / temperature`.
fn draw(scores: &[f32], temperature: f32, rng: &mut StdRng) -> usize {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = scores
        .iter()
        .map(|&s| f64::from((s - max) / temperature).exp())
        .collect();
    let mut left = rng.random::<f64>() * weights.iter().sum::<f64>();
    for (i, w) in weights.iter().enumerate() {
        if left < *w {
            return i;
        }
        left -= w;
    }
    arg_max(scores)
}
