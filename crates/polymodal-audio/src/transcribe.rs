//! Speech to text with a Whisper checkpoint: [`Whisper`] loads a Hugging
//! Face `WhisperForConditionalGeneration` folder (encoder, decoder,
//! `generation_config.json`, `tokenizer.json`) and decodes greedily as
//! transformers' `generate` does for one 30-second window without
//! timestamps: the prompt `<|startoftranscript|>` `<|notimestamps|>`, the
//! suppressed tokens at every step and the begin-suppressed ones at the
//! first, until `<|endoftext|>`. Longer input is cut into consecutive
//! 30-second windows, each decoded on its own, which is what OpenAI's
//! `transcribe` does without timestamps and without conditioning on the
//! previous text ([`Whisper::transcribe_long`]).

use std::path::Path;

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use serde::Deserialize;

use polymodal_core::{Error, Init, LoadReport, Result, Weights, read_config};

use crate::{
    WhisperDecoder, WhisperDecoderConfig, WhisperEncoder, WhisperEncoderConfig, WhisperFeatures,
};

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
}

impl WhisperGenerationConfig {
    /// Reads a `generation_config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        read_config(path, |_| Ok(()))
    }
}

/// What greedy decoding gives for one window: the tokens, and the two
/// scores Whisper judges a window's speech by.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The generated token ids, without the prompt and `<|endoftext|>`.
    pub tokens: Vec<u32>,
    /// The probability of `<|nocaptions|>` (`<|nospeech|>`) at the start
    /// token: how sure the model is that the window holds no speech.
    pub no_speech_prob: f32,
    /// The mean log-probability of the generated tokens and
    /// `<|endoftext|>`, under the suppression rules.
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
        self.decoded.no_speech_prob > Whisper::NO_SPEECH_THRESHOLD
            && self.decoded.avg_logprob < Whisper::LOGPROB_THRESHOLD
    }
}

/// The text of one window of a longer input, and where the window lies.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Start of the window, in seconds from the start of the input.
    pub start_secs: f64,
    /// End of the window (the end of the input for the last one).
    pub end_secs: f64,
    /// What was said in it.
    pub transcript: Transcript,
}

/// A Whisper speech-to-text model.
#[derive(Debug)]
pub struct Whisper {
    encoder: WhisperEncoder,
    decoder: WhisperDecoder,
    generation: WhisperGenerationConfig,
    tokenizer: tokenizers::Tokenizer,
    features: WhisperFeatures,
    no_speech_token: Option<u32>,
    /// `[1, vocab]`: −∞ at the tokens never generated, 0 elsewhere.
    suppress: Tensor<2>,
    /// The same for the tokens not generated first.
    begin_suppress: Tensor<2>,
    beams: usize,
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
    /// not decoded: Whisper's own rule keeps its famous " you" on digital
    /// silence (no-speech probability 0.95, but a mean log-probability of
    /// −0.38 on whisper-tiny.en).
    pub const SILENT_PEAK: f32 = 1e-3;

    /// Loads a Hugging Face Whisper folder: `config.json`,
    /// `model.safetensors`, `generation_config.json`, `tokenizer.json`.
    /// Multilingual checkpoints are refused for now (their prompts need
    /// language and task tokens, which are not chosen yet).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LoadReport)> {
        let dir = dir.as_ref();
        let generation = WhisperGenerationConfig::from_file(dir.join("generation_config.json"))?;
        if generation.is_multilingual {
            return Err(Error::Config(format!(
                "{}: multilingual Whisper checkpoints need language and task tokens, which \
                 transcription does not choose yet; use an English-only (.en) checkpoint",
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
        let vocab = decoder.vocab_size();
        let suppress = mask(&generation.suppress_tokens, vocab, device)?;
        let begin_suppress = mask(&generation.begin_suppress_tokens, vocab, device)?;
        // English-only vocabularies call it <|nocaptions|>, later ones <|nospeech|>.
        let no_speech_token = ["<|nospeech|>", "<|nocaptions|>"]
            .iter()
            .find_map(|t| tokenizer.token_to_id(t));
        let model = Self {
            encoder,
            decoder,
            generation,
            no_speech_token,
            suppress,
            begin_suppress,
            beams: 1,
            tokenizer,
            features: WhisperFeatures::new()?,
            device: device.clone(),
        };
        Ok((model, report))
    }

    /// The decoding settings.
    pub fn generation(&self) -> &WhisperGenerationConfig {
        &self.generation
    }

    /// The decoder.
    pub fn decoder(&self) -> &WhisperDecoder {
        &self.decoder
    }

    /// The encoder.
    pub fn encoder(&self) -> &WhisperEncoder {
        &self.encoder
    }

    /// The tokens every transcription starts from.
    pub fn prompt(&self) -> Vec<u32> {
        vec![
            self.generation.decoder_start_token_id,
            self.generation.no_timestamps_token_id,
        ]
    }

    /// Whisper's input features of 16 kHz mono `samples` (the first 30 s;
    /// shorter input is padded): `[1, 80, 3000]`.
    pub fn features(&self, samples: &[f32]) -> Result<Tensor<3>> {
        if samples.iter().any(|s| !s.is_finite()) {
            return Err(Error::Invalid(
                "audio samples contain NaN or infinity".into(),
            ));
        }
        let values = self.features.compute(samples)?;
        let frames = self.features.frames();
        let bands = values.len() / frames;
        Ok(Tensor::from_data(
            TensorData::new(values, [1, bands, frames]),
            &self.device,
        ))
    }

    /// Decodes with `beams` beams in [`Whisper::transcribe`] and
    /// [`Whisper::transcribe_long`] (1, the default: greedy decoding).
    pub fn with_beams(mut self, beams: usize) -> Result<Self> {
        if beams == 0 {
            return Err(Error::Config("beam search needs at least one beam".into()));
        }
        self.beams = beams;
        Ok(self)
    }

    /// Transcribes up to 30 s of 16 kHz mono `samples` (greedily, or by beam
    /// search after [`Whisper::with_beams`]).
    pub fn transcribe(&self, samples: &[f32]) -> Result<Transcript> {
        let features = self.features(samples)?;
        let decoded = match self.beams {
            1 => self.greedy(features)?.remove(0),
            beams => self.beam_search(features, beams)?,
        };
        let text = self.decode(&decoded.tokens)?;
        Ok(Transcript { decoded, text })
    }

    /// Transcribes 16 kHz mono `samples` of any length, 30 s at a time
    /// (each window decoded on its own). Windows that are digitally silent
    /// ([`Whisper::SILENT_PEAK`]), that Whisper's rule calls silence
    /// ([`Transcript::is_silence`]) or that give no text are left out.
    pub fn transcribe_long(&self, samples: &[f32]) -> Result<Vec<Segment>> {
        let rate = WhisperFeatures::SAMPLE_RATE as usize;
        let window = 30 * rate;
        let mut segments = Vec::new();
        for (i, chunk) in samples.chunks(window).enumerate() {
            if chunk.iter().all(|s| s.abs() < Self::SILENT_PEAK) {
                continue;
            }
            let transcript = self.transcribe(chunk)?;
            if transcript.is_silence() || transcript.text.trim().is_empty() {
                continue;
            }
            let start = i * window;
            segments.push(Segment {
                start_secs: start as f64 / rate as f64,
                end_secs: (start + chunk.len()) as f64 / rate as f64,
                transcript,
            });
        }
        Ok(segments)
    }

    /// Greedy decoding of features `[batch, 80, 3000]`: each row's
    /// generated tokens (without the prompt and `<|endoftext|>`) and scores.
    pub fn greedy(&self, features: Tensor<3>) -> Result<Vec<Decoded>> {
        let batch = features.dims()[0];
        let mut cache = self.decoder.cache(self.encoder.forward(features)?)?;
        let prompt = self.prompt();
        let eos = self.generation.eos_token_id;
        let mut input: Vec<i64> = (0..batch)
            .flat_map(|_| prompt.iter().map(|&t| t as i64))
            .collect();
        let mut width = prompt.len();
        let mut out: Vec<Decoded> = vec![
            Decoded {
                tokens: Vec::new(),
                no_speech_prob: 0.0,
                avg_logprob: 0.0,
            };
            batch
        ];
        let mut done = vec![false; batch];
        while cache.len() + width <= self.decoder.max_positions() {
            let tokens =
                Tensor::<2, Int>::from_data(TensorData::new(input, [batch, width]), &self.device);
            let logits = self.decoder.step(tokens, &mut cache)?;
            let first = width > 1;
            if first {
                for (row, p) in out.iter_mut().zip(self.no_speech(&logits)?) {
                    row.no_speech_prob = p;
                }
            }
            let last: Tensor<2> = logits.narrow(1, width - 1, 1).squeeze_dim(1);
            // OpenAI suppresses before the log-softmax (its mean log-probability).
            let logprobs = log_softmax(self.suppressed(last, first), 1);
            let (chosen, next) = logprobs.max_dim_with_indices(1);
            let (chosen, next) = (host_f32(chosen)?, host_i64(next)?);
            for row in 0..batch {
                if done[row] {
                    continue;
                }
                out[row].avg_logprob += chosen[row];
                if next[row] as u32 == eos {
                    done[row] = true;
                } else {
                    out[row].tokens.push(next[row] as u32);
                }
            }
            if done.iter().all(|d| *d) {
                break;
            }
            // Finished rows go on with <|endoftext|>, as transformers pads them.
            input = next
                .iter()
                .zip(&done)
                .map(|(&t, &d)| if d { eos as i64 } else { t })
                .collect();
            width = 1;
        }
        for row in &mut out {
            // The sum over the tokens and <|endoftext|>, as OpenAI averages it.
            row.avg_logprob /= (row.tokens.len() + 1) as f32;
        }
        Ok(out)
    }

    /// Beam search with `beams` beams over the features `[1, 80, 3000]` of
    /// one window, as transformers' `generate(num_beams=…)` does it: at each
    /// step the `2 × beams` best continuations of all beams by summed
    /// log-probability (log-softmax, then the suppression rules), the best
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
        let mut cache = self.decoder.cache(self.encoder.forward(features)?)?;
        cache.repeat_rows(beams)?;
        let prompt = self.prompt();
        let vocab = self.decoder.vocab_size();
        let mut search = BeamSearch::new(beams, self.generation.eos_token_id);
        let mut no_speech_prob = 0.0;
        let mut input: Vec<i64> = (0..beams)
            .flat_map(|_| prompt.iter().map(|&t| t as i64))
            .collect();
        let mut width = prompt.len();
        loop {
            let tokens =
                Tensor::<2, Int>::from_data(TensorData::new(input, [beams, width]), &self.device);
            let logits = self.decoder.step(tokens, &mut cache)?;
            let first = width > 1;
            if first {
                // Every beam starts from the same prompt.
                no_speech_prob = self.no_speech(&logits)?[0];
            }
            let last: Tensor<2> = logits.narrow(1, width - 1, 1).squeeze_dim(1);
            // transformers suppresses after the log-softmax.
            let logprobs = self.suppressed(log_softmax(last, 1), first);
            let running = Tensor::<2>::from_data(
                TensorData::new(search.running_scores(), [beams, 1]),
                &self.device,
            );
            // The best continuations are picked on the host: the same order
            // on every device (ties: the lower index first).
            let (values, indices) = top_k(&host_f32(logprobs + running)?, 2 * beams);
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

    /// Each row's no-speech probability from the prompt step's `logits`
    /// `[batch, prompt, vocab]`: the softmax at `<|startoftranscript|>`
    /// (position 0), before any token is suppressed; 0 when the vocabulary
    /// has no no-speech token.
    fn no_speech(&self, logits: &Tensor<3>) -> Result<Vec<f32>> {
        let Some(token) = self.no_speech_token else {
            return Ok(vec![0.0; logits.dims()[0]]);
        };
        let at_start: Tensor<2> = logits.clone().narrow(1, 0, 1).squeeze_dim(1);
        host_f32(softmax(at_start, 1).narrow(1, token as usize, 1))
    }

    /// `scores` `[rows, vocab]` with the suppressed tokens at −∞ (and the
    /// begin-suppressed ones at the `first` generated position).
    fn suppressed(&self, scores: Tensor<2>, first: bool) -> Tensor<2> {
        let scores = scores + self.suppress.clone();
        if first {
            scores + self.begin_suppress.clone()
        } else {
            scores
        }
    }

    /// `tokens` as text, special tokens left out.
    pub fn decode(&self, tokens: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(tokens, true)
            .map_err(|e| Error::Invalid(format!("cannot decode Whisper tokens: {e}")))
    }
}

/// `[1, vocab]`: −∞ at `tokens`, 0 elsewhere (added to the logits).
fn mask(tokens: &[u32], vocab: usize, device: &Device) -> Result<Tensor<2>> {
    let mut values = vec![0.0f32; vocab];
    for &token in tokens {
        let slot = values.get_mut(token as usize).ok_or_else(|| {
            Error::Config(format!(
                "generation_config.json suppresses token {token}, past the vocabulary of {vocab}"
            ))
        })?;
        *slot = f32::NEG_INFINITY;
    }
    Ok(Tensor::from_data(
        TensorData::new(values, [1, vocab]),
        device,
    ))
}

fn host_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| Error::Invalid(format!("{e:?}")))
}

fn host_i64<const D: usize>(t: Tensor<D, Int>) -> Result<Vec<i64>> {
    t.try_into_vec_as::<i64>()
        .map_err(|e| Error::Invalid(format!("{e:?}")))
}

/// The `k` largest of `scores` and their indices, largest first (ties: the
/// lower index first).
fn top_k(scores: &[f32], k: usize) -> (Vec<f32>, Vec<i64>) {
    let descending = |a: &usize, b: &usize| {
        scores[*b]
            .partial_cmp(&scores[*a])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(b))
    };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    let k = k.min(order.len());
    if k < order.len() {
        order.select_nth_unstable_by(k, descending);
        order.truncate(k);
    }
    order.sort_by(descending);
    (
        order.iter().map(|&i| scores[i]).collect(),
        order.iter().map(|&i| i as i64).collect(),
    )
}

/// The bookkeeping of transformers' beam search for one window (length
/// penalty 1, no early stopping).
struct BeamSearch {
    beams: usize,
    eos: u32,
    /// The running beams' tokens and summed log-probabilities.
    running: Vec<(Vec<u32>, f32)>,
    /// The best finished hypotheses (length-normalised score, tokens with
    /// `<|endoftext|>`), at most `beams`, best first.
    finished: Vec<(f32, Vec<u32>)>,
    /// Whether a running beam can still beat the finished ones.
    improvable: bool,
}

/// What transformers adds to a score to rule a candidate out.
const RULED_OUT: f32 = -1.0e9;

impl BeamSearch {
    fn new(beams: usize, eos: u32) -> Self {
        // Only the first beam is live at the start: the others are copies.
        let running = (0..beams)
            .map(|b| (Vec::new(), if b == 0 { 0.0 } else { RULED_OUT }))
            .collect();
        Self {
            beams,
            eos,
            running,
            finished: Vec::new(),
            improvable: true,
        }
    }

    fn running_scores(&self) -> Vec<f32> {
        self.running.iter().map(|(_, score)| *score).collect()
    }

    fn last_tokens(&self) -> Vec<i64> {
        self.running
            .iter()
            .map(|(tokens, _)| tokens.last().map_or(self.eos as i64, |&t| t as i64))
            .collect()
    }

    /// One step from the `2 × beams` best continuations (`scores`, and
    /// `indices` into beams × vocabulary, best first): the rows of the cache
    /// the new running beams continue, or `None` when the search is over.
    fn advance(
        &mut self,
        scores: &[f32],
        indices: &[i64],
        vocab: usize,
        at_limit: bool,
    ) -> Option<Vec<usize>> {
        let candidates: Vec<(usize, Vec<u32>, f32, bool)> = indices
            .iter()
            .zip(scores)
            .map(|(&index, &score)| {
                let (beam, token) = (index as usize / vocab, (index as usize % vocab) as u32);
                let mut tokens = self.running[beam].0.clone();
                tokens.push(token);
                (beam, tokens, score, token == self.eos || at_limit)
            })
            .collect();
        // Finished among the first `beams` candidates: kept by mean score.
        for (_, tokens, score, hit) in candidates.iter().take(self.beams) {
            if *hit && self.improvable {
                let mean = score / tokens.len() as f32;
                self.finished.push((mean, tokens.clone()));
            }
        }
        self.finished
            .sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
        self.finished.truncate(self.beams);
        // The best `beams` candidates that go on (finished ones ruled out;
        // the sort is stable, as ties keep the top-k order).
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        let penalised = |i: usize| candidates[i].2 + if candidates[i].3 { RULED_OUT } else { 0.0 };
        order.sort_by(|&a, &b| {
            penalised(b)
                .partial_cmp(&penalised(a))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        order.truncate(self.beams);
        let rows = order.iter().map(|&i| candidates[i].0).collect();
        self.running = order
            .iter()
            .map(|&i| (candidates[i].1.clone(), penalised(i)))
            .collect();
        // Can the best running beam, at its length, still beat the worst
        // finished one? (transformers' heuristic without early stopping)
        if self.finished.len() == self.beams {
            let length = self.running[0].0.len() as f32;
            let worst = self.finished[self.beams - 1].0;
            self.improvable &= self.running[0].1 / length > worst;
        }
        let all_hit = candidates.iter().all(|c| c.3);
        (self.improvable && !all_hit).then_some(rows)
    }

    /// The best finished hypothesis: its score and its tokens without
    /// `<|endoftext|>` (the best running beam's if none finished).
    fn best(self) -> (f32, Vec<u32>) {
        let (score, mut tokens) = self.finished.into_iter().next().unwrap_or_else(|| {
            let (tokens, score) = self.running[0].clone();
            (score / tokens.len().max(1) as f32, tokens)
        });
        while tokens.last() == Some(&self.eos) {
            tokens.pop();
        }
        (score, tokens)
    }
}
