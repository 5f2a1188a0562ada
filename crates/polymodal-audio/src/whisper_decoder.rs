//! The decoder half of Whisper (Radford et al., 2022) as Hugging Face's
//! `WhisperModel.decoder`: token and learned position embeddings, pre-norm
//! layers of causal self-attention, cross-attention over the encoder's
//! output and a feed-forward block, a final layer norm, and the output
//! projection tied to the token embeddings. Keys and values are kept between
//! steps ([`DecoderCache`]), so each new token costs one position.

use std::path::Path;

use burn::nn::{Embedding, LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::ops::AttentionModuleOptions;
use serde::Deserialize;

use polymodal_core::{
    Activation, Error, Init, LoadReport, Result, Weights, read_config, weights::hf_check,
};

/// The decoder fields of a Hugging Face Whisper `config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WhisperDecoderConfig {
    /// Token width.
    pub d_model: usize,
    /// Decoder layers.
    pub decoder_layers: usize,
    /// Decoder attention heads.
    pub decoder_attention_heads: usize,
    /// Decoder feed-forward width.
    pub decoder_ffn_dim: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest token sequence (448).
    pub max_target_positions: usize,
    /// Activation.
    #[serde(default = "polymodal_core::weights::hf_default::gelu")]
    pub activation_function: String,
}

impl WhisperDecoderConfig {
    /// Reads a Hugging Face `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        read_config(path, Self::validate)
    }

    /// Checks the sizes and the activation.
    pub fn validate(&self) -> Result<()> {
        hf_check::positive(&[
            ("d_model", self.d_model),
            ("decoder_attention_heads", self.decoder_attention_heads),
            ("vocab_size", self.vocab_size),
            ("max_target_positions", self.max_target_positions),
        ])?;
        hf_check::multiple(
            "d_model",
            self.d_model,
            "decoder_attention_heads",
            self.decoder_attention_heads,
        )?;
        hf_check::activation(&self.activation_function)
    }

    /// A randomly initialised decoder.
    pub fn init(&self, device: &Device) -> Result<WhisperDecoder> {
        WhisperDecoder::build(self, &Init::random(), device)
    }
}

/// Multi-head attention with Whisper's names (`q_proj`, `k_proj` without a
/// bias, `v_proj`, `out_proj`); the keys and values may come from another
/// sequence (cross-attention) or from a cache.
#[derive(Module, Debug)]
struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    heads: usize,
}

impl Attention {
    fn build(init: &Init, dim: usize, heads: usize, device: &Device) -> Result<Self> {
        let linear = |name: &str, bias: bool| init.pp(name).linear_with(dim, dim, bias, device);
        Ok(Self {
            query: linear("q_proj", true)?,
            key: linear("k_proj", false)?,
            value: linear("v_proj", true)?,
            output: linear("out_proj", true)?,
            heads,
        })
    }

    /// `x` `[batch, length, dim]` through `linear`, split into heads:
    /// `[batch, heads, length, dim / heads]`.
    fn split(&self, linear: &Linear, x: Tensor<3>) -> Tensor<4> {
        let [batch, length, dim] = x.dims();
        linear
            .forward(x)
            .reshape([batch, length, self.heads, dim / self.heads])
            .swap_dims(1, 2)
    }

    /// Keys and values of `x`, split into heads.
    fn keys_values(&self, x: Tensor<3>) -> (Tensor<4>, Tensor<4>) {
        (self.split(&self.key, x.clone()), self.split(&self.value, x))
    }

    /// The queries of `x` attend over `keys` and `values`; `mask` is true
    /// where a query may not look.
    fn attend(
        &self,
        x: Tensor<3>,
        (keys, values): (Tensor<4>, Tensor<4>),
        mask: Option<Tensor<4, Bool>>,
    ) -> Tensor<3> {
        let [batch, length, dim] = x.dims();
        let queries = self.split(&self.query, x);
        // Unmasked (cross-attention, one step with the cache) on the CPU
        // fast path; masked on Burn's op.
        let context = polymodal_core::cpu::attention(
            queries,
            keys,
            values,
            mask,
            AttentionModuleOptions::default(),
        );
        self.output
            .forward(context.swap_dims(1, 2).reshape([batch, length, dim]))
    }
}

impl Attention {
    /// Unmasked attention of `x` `[rows, length, d]` over the keys and
    /// values of `rows / group` sequences, each shared by `group`
    /// consecutive rows (the beams of one window and its audio): each
    /// group's queries are folded into one sequence, so the shared keys
    /// are read once per group in one product, not once per row.
    fn attend_grouped(
        &self,
        x: Tensor<3>,
        keys_values: (Tensor<4>, Tensor<4>),
        group: usize,
    ) -> Tensor<3> {
        let [rows, length, dim] = x.dims();
        let folded = x.reshape([rows / group, group * length, dim]);
        self.attend(folded, keys_values, None)
            .reshape([rows, length, dim])
    }
}

/// One decoder layer: causal self-attention, cross-attention, feed-forward,
/// each pre-normed and residual.
#[derive(Module, Debug)]
struct DecoderLayer {
    self_norm: LayerNorm,
    self_attention: Attention,
    cross_norm: LayerNorm,
    cross_attention: Attention,
    final_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    #[module(skip)]
    activation: Activation,
}

impl DecoderLayer {
    fn build(config: &WhisperDecoderConfig, init: &Init, device: &Device) -> Result<Self> {
        let (d, heads) = (config.d_model, config.decoder_attention_heads);
        Ok(Self {
            self_norm: init
                .pp("self_attn_layer_norm")
                .layer_norm(d, 1e-5, device)?,
            self_attention: Attention::build(&init.pp("self_attn"), d, heads, device)?,
            cross_norm: init
                .pp("encoder_attn_layer_norm")
                .layer_norm(d, 1e-5, device)?,
            cross_attention: Attention::build(&init.pp("encoder_attn"), d, heads, device)?,
            final_norm: init.pp("final_layer_norm").layer_norm(d, 1e-5, device)?,
            fc1: init.pp("fc1").linear(d, config.decoder_ffn_dim, device)?,
            fc2: init.pp("fc2").linear(config.decoder_ffn_dim, d, device)?,
            activation: Activation::from_hf(&config.activation_function)?,
        })
    }

    /// `x` `[batch, new, d]` after `cache.self_keys` (the earlier positions);
    /// appends the new keys and values to `cache`.
    fn forward(
        &self,
        x: Tensor<3>,
        cache: &mut LayerCache,
        mask: Option<Tensor<4, Bool>>,
        group: usize,
    ) -> Tensor<3> {
        let normed = self.self_norm.forward(x.clone());
        let (keys, values) = self.self_attention.keys_values(normed.clone());
        let (keys, values) = match cache.own.take() {
            Some((k, v)) => (
                Tensor::cat(vec![k, keys], 2),
                Tensor::cat(vec![v, values], 2),
            ),
            None => (keys, values),
        };
        cache.own = Some((keys.clone(), values.clone()));
        let x = x + self.self_attention.attend(normed, (keys, values), mask);
        let normed = self.cross_norm.forward(x.clone());
        let x = x + self
            .cross_attention
            .attend_grouped(normed, cache.encoder.clone(), group);
        let inner = self
            .activation
            .apply(self.fc1.forward(self.final_norm.forward(x.clone())));
        x + self.fc2.forward(inner)
    }
}

/// One layer's keys and values: of the tokens so far (grows each step) and
/// of the encoder's output (fixed, one row per audio).
#[derive(Debug, Clone)]
struct LayerCache {
    own: Option<(Tensor<4>, Tensor<4>)>,
    encoder: (Tensor<4>, Tensor<4>),
}

/// What the decoder keeps between steps for one batch of audio: every
/// layer's keys and values, and how many positions have been decoded.
#[derive(Debug, Clone)]
pub struct DecoderCache {
    layers: Vec<LayerCache>,
    length: usize,
    /// Token rows.
    batch: usize,
    /// Token rows per row of the encoder's output (rows `r · group ..
    /// (r+1) · group` attend audio `r`).
    group: usize,
}

impl DecoderCache {
    /// Positions decoded so far.
    pub fn len(&self) -> usize {
        self.length
    }

    /// Whether nothing has been decoded yet.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// Repeats every row `times` (row `r` becomes rows `r·times ..
    /// (r+1)·times`): the beams of one window share the encoder's keys and
    /// values, computed and stored once.
    pub fn repeat_rows(&mut self, times: usize) -> Result<()> {
        if times == 0 {
            return Err(Error::Invalid("cannot repeat cache rows zero times".into()));
        }
        let repeat = |t: Tensor<4>| {
            let [batch, heads, length, width] = t.dims();
            t.unsqueeze_dim::<5>(1)
                .expand([batch, times, heads, length, width])
                .reshape([batch * times, heads, length, width])
        };
        for layer in &mut self.layers {
            layer.own = layer.own.take().map(|(k, v)| (repeat(k), repeat(v)));
        }
        self.batch *= times;
        self.group *= times;
        Ok(())
    }

    /// Keeps, as row `i`, the decoded positions of row `rows[i]` (beam
    /// search: each surviving beam continues one of the previous ones). The
    /// encoder's keys and values stay as they are, so a row may only take
    /// the place of a row of the same audio, as the beams of one window do.
    pub fn select_rows(&mut self, rows: &[usize]) -> Result<()> {
        let same_audio = rows
            .iter()
            .enumerate()
            .all(|(i, &r)| r / self.group == i / self.group);
        if rows.len() != self.batch || rows.iter().any(|&r| r >= self.batch) || !same_audio {
            return Err(Error::Invalid(format!(
                "cannot select rows {rows:?} of a cache of {} rows",
                self.batch
            )));
        }
        let Some(device) = self.layers.first().map(|layer| layer.encoder.0.device()) else {
            return Ok(());
        };
        let indices: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let indices = Tensor::<1, Int>::from_data(indices.as_slice(), &device);
        for layer in &mut self.layers {
            if let Some((keys, values)) = layer.own.take() {
                layer.own = Some((
                    keys.select(0, indices.clone()),
                    values.select(0, indices.clone()),
                ));
            }
        }
        Ok(())
    }
}

/// Whisper's text decoder.
#[derive(Module, Debug)]
pub struct WhisperDecoder {
    tokens: Embedding,
    positions: Tensor<2>,
    layers: Vec<DecoderLayer>,
    norm: LayerNorm,
    d_model: usize,
    heads: usize,
    vocab_size: usize,
    max_positions: usize,
}

impl WhisperDecoder {
    /// Loads the decoder from a Hugging Face Whisper folder (`config.json` +
    /// `model.safetensors`, tensors under `decoder.` or `model.decoder.`).
    /// The encoder's tensors are reported as unused.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LoadReport)> {
        let dir = dir.as_ref();
        let config = WhisperDecoderConfig::from_file(dir.join("config.json"))?;
        let weights = Weights::open(dir.join("model.safetensors"))?;
        // The output projection is tied to the token embeddings.
        weights.skip("proj_out.weight");
        let prefixes = ["decoder.", "model.decoder."];
        let weights = weights.with_prefix_of("embed_tokens.weight", &prefixes);
        let model = Self::build(&config, &Init::from(&weights), device)?;
        Ok((model, weights.finish()?))
    }

    /// The decoder in `init`'s scope (`model.decoder`).
    pub(crate) fn build(
        config: &WhisperDecoderConfig,
        init: &Init,
        device: &Device,
    ) -> Result<Self> {
        let d = config.d_model;
        let layers = (0..config.decoder_layers)
            .map(|i| DecoderLayer::build(config, &init.pp("layers").pp(i), device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            tokens: init
                .pp("embed_tokens")
                .embedding(config.vocab_size, d, device)?,
            positions: init.pp("embed_positions").tensor(
                "weight",
                [config.max_target_positions, d],
                device,
            )?,
            layers,
            norm: init.pp("layer_norm").layer_norm(d, 1e-5, device)?,
            d_model: d,
            heads: config.decoder_attention_heads,
            vocab_size: config.vocab_size,
            max_positions: config.max_target_positions,
        })
    }

    /// The vocabulary size (the width of the logits).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The longest token sequence (prompt included).
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// A fresh cache for `encoder_output` `[batch, positions, d_model]` (the
    /// encoder's last hidden state): the cross-attention keys and values are
    /// computed here, once.
    pub fn cache(&self, encoder_output: Tensor<3>) -> Result<DecoderCache> {
        let [batch, _, width] = encoder_output.dims();
        if width != self.d_model {
            return Err(Error::Invalid(format!(
                "the Whisper decoder reads encoder states of width {}, got {width}",
                self.d_model
            )));
        }
        let layers = self
            .layers
            .iter()
            .map(|layer| LayerCache {
                own: None,
                encoder: layer.cross_attention.keys_values(encoder_output.clone()),
            })
            .collect();
        Ok(DecoderCache {
            layers,
            length: 0,
            batch,
            group: 1,
        })
    }

    /// Decodes `tokens` `[batch, new]`, the positions after those already in
    /// `cache`, and returns their next-token logits `[batch, new, vocab]`.
    pub fn step(&self, tokens: Tensor<2, Int>, cache: &mut DecoderCache) -> Result<Tensor<3>> {
        let [batch, new] = tokens.dims();
        let past = cache.length;
        if batch != cache.batch || new == 0 || past + new > self.max_positions {
            return Err(Error::Invalid(format!(
                "the Whisper decoder takes [{}, 1..] tokens up to {} positions in all, got {:?} after {past}",
                cache.batch,
                self.max_positions,
                tokens.dims()
            )));
        }
        let device = tokens.device();
        let positions = self
            .positions
            .clone()
            .narrow(0, past, new)
            .unsqueeze::<3>()
            .expand([batch, new, self.d_model]);
        let mut x = self.tokens.forward(tokens) + positions;
        // Query i (position past + i) may not see keys after past + i.
        let mask = (new > 1).then(|| {
            let keys = past + new;
            let hidden: Vec<bool> = (0..new)
                .flat_map(|i| (0..keys).map(move |j| j > past + i))
                .collect();
            Tensor::<2, Bool>::from_data(TensorData::new(hidden, [new, keys]), &device)
                .unsqueeze::<4>()
                .expand([batch, self.heads, new, keys])
        });
        for (layer, layer_cache) in self.layers.iter().zip(&mut cache.layers) {
            x = layer.forward(x, layer_cache, mask.clone(), cache.group);
        }
        cache.length += new;
        let x = self.norm.forward(x).reshape([batch * new, self.d_model]);
        // Tied output projection: the states times the token embeddings'
        // transpose. A step's few rows read the 51,864 × 384 embeddings of
        // tiny.en once on the CPU fast path; a prompt goes through gemm.
        let logits = polymodal_core::cpu::matmul_transposed(x, self.tokens.weight.val());
        Ok(logits.reshape([batch, new, self.vocab_size]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> WhisperDecoderConfig {
        WhisperDecoderConfig {
            d_model: 16,
            decoder_layers: 2,
            decoder_attention_heads: 4,
            decoder_ffn_dim: 32,
            vocab_size: 50,
            max_target_positions: 12,
            activation_function: "gelu".into(),
        }
    }

    fn tokens(values: &[i64], device: &Device) -> Tensor<2, Int> {
        Tensor::from_data(TensorData::new(values.to_vec(), [1, values.len()]), device)
    }

    /// Decoding one token at a time from the cache gives the logits of
    /// decoding the whole sequence at once (causally masked).
    #[test]
    fn cached_steps_equal_one_masked_pass() {
        let device = Device::flex();
        let decoder = config().init(&device).unwrap();
        let encoded = Tensor::<3>::random(
            [1, 7, 16],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let sequence = [3i64, 17, 5, 42, 8];
        let encoded_copy = encoded.clone();
        let mut cache = decoder.cache(encoded.clone()).unwrap();
        let whole = decoder
            .step(tokens(&sequence, &device), &mut cache)
            .unwrap()
            .try_into_vec_as::<f32>()
            .unwrap();
        assert_eq!(cache.len(), 5);
        let mut cache = decoder.cache(encoded).unwrap();
        let mut stepped = decoder
            .step(tokens(&sequence[..2], &device), &mut cache)
            .unwrap()
            .try_into_vec_as::<f32>()
            .unwrap();
        for &token in &sequence[2..] {
            let logits = decoder.step(tokens(&[token], &device), &mut cache).unwrap();
            stepped.extend(logits.try_into_vec_as::<f32>().unwrap());
        }
        assert_eq!(whole.len(), 5 * 50);
        let diff = polymodal_core::testing::max_abs_diff(&stepped, &whole);
        assert!(diff < 1e-4, "{diff}");

        // A cache repeated for two beams decodes each row as the one it copies.
        let mut cache = decoder.cache(encoded_copy).unwrap();
        decoder
            .step(tokens(&sequence[..2], &device), &mut cache)
            .unwrap();
        cache.repeat_rows(2).unwrap();
        let next = Tensor::<2, Int>::from_data([[sequence[2]], [sequence[2]]], &device);
        let rows = decoder
            .step(next, &mut cache)
            .unwrap()
            .try_into_vec_as::<f32>()
            .unwrap();
        let third = &whole[2 * 50..3 * 50];
        for row in rows.chunks(50) {
            assert!(polymodal_core::testing::max_abs_diff(row, third) < 1e-4);
        }
    }

    /// Two audios with two beams each: every row, after its own tokens and
    /// a reordering of the beams, decodes as a one-row cache of its audio
    /// fed the same tokens (the beams share their audio's encoder keys).
    #[test]
    fn beams_of_several_audios_attend_their_own_audio() {
        let device = Device::flex();
        let decoder = config().init(&device).unwrap();
        let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
        let audio = Tensor::<3>::random([2, 7, 16], normal, &device);
        let one_row = |audio_row: usize, sequence: &[i64]| {
            let mut cache = decoder
                .cache(audio.clone().narrow(0, audio_row, 1))
                .unwrap();
            let logits = decoder.step(tokens(sequence, &device), &mut cache);
            let logits = logits.unwrap().try_into_vec_as::<f32>().unwrap();
            logits[(sequence.len() - 1) * 50..].to_vec()
        };
        let mut cache = decoder.cache(audio.clone()).unwrap();
        let prompt = Tensor::<2, Int>::from_data([[3i64, 17], [4, 9]], &device);
        decoder.step(prompt, &mut cache).unwrap();
        cache.repeat_rows(2).unwrap();
        // Rows 0, 1 are audio 0's beams (prompt 3 17), rows 2, 3 audio 1's.
        let second = Tensor::<2, Int>::from_data([[5i64], [6], [7], [8]], &device);
        decoder.step(second, &mut cache).unwrap();
        // Beam 1 of each audio continues beam 0's tokens and vice versa.
        cache.select_rows(&[1, 0, 3, 2]).unwrap();
        let third = Tensor::<2, Int>::from_data([[10i64], [11], [12], [13]], &device);
        let rows = decoder.step(third, &mut cache).unwrap();
        let rows = rows.try_into_vec_as::<f32>().unwrap();
        let expected = [
            one_row(0, &[3, 17, 6, 10]),
            one_row(0, &[3, 17, 5, 11]),
            one_row(1, &[4, 9, 8, 12]),
            one_row(1, &[4, 9, 7, 13]),
        ];
        for (row, want) in rows.chunks(50).zip(&expected) {
            let diff = polymodal_core::testing::max_abs_diff(row, want);
            assert!(diff < 1e-4, "{diff}");
        }
        // A beam may not continue another audio's.
        let error = cache.select_rows(&[2, 0, 3, 1]).unwrap_err();
        assert!(error.to_string().contains("select rows"), "{error}");
    }

    #[test]
    fn bad_input_is_an_error() {
        let device = Device::flex();
        let decoder = config().init(&device).unwrap();
        let wide = Tensor::<3>::zeros([1, 7, 8], &device);
        assert!(decoder.cache(wide).is_err());
        let mut cache = decoder.cache(Tensor::zeros([1, 7, 16], &device)).unwrap();
        // Past the position table.
        let error = decoder
            .step(tokens(&[1; 13], &device), &mut cache)
            .unwrap_err();
        assert!(error.to_string().contains("12 positions"), "{error}");
        // Another batch size than the cache's.
        let two = Tensor::<2, Int>::zeros([2, 1], &device);
        assert!(decoder.step(two, &mut cache).is_err());
        assert!(cache.is_empty());
        // Rows a one-row cache does not have.
        assert!(cache.select_rows(&[1]).is_err());
        assert!(cache.select_rows(&[0, 0]).is_err());
        assert!(cache.repeat_rows(0).is_err());
        cache.select_rows(&[0]).unwrap();
        let bad = WhisperDecoderConfig {
            decoder_attention_heads: 5,
            ..config()
        };
        assert!(bad.validate().is_err());
    }
}
