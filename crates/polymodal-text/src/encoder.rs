//! Text encoders to train from scratch: a small Transformer (token +
//! position embeddings, Transformer layers, mean pooling over the real
//! tokens) and a recurrent one (LSTM or GRU, uni- or bidirectional).

use burn::nn::transformer::{TransformerEncoder, TransformerEncoderInput};
use burn::nn::{Embedding, EmbeddingConfig};
use burn::prelude::*;

use polymodal_core::{
    Embeddings, Encoder, Error, Modality, Recurrent, RecurrentConfig, Result, TokenBatch,
    pre_norm_transformer,
};

/// Settings of [`TextEncoder`].
#[derive(Config, Debug)]
pub struct TextEncoderConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Embedding width.
    #[config(default = 64)]
    pub dim: usize,
    /// Longest sequence (size of the position table).
    #[config(default = 64)]
    pub max_length: usize,
    /// Transformer layers.
    #[config(default = 1)]
    pub layers: usize,
    /// Attention heads.
    #[config(default = 4)]
    pub heads: usize,
    /// Dropout inside the Transformer.
    #[config(default = 0.1)]
    pub dropout: f64,
}

impl TextEncoderConfig {
    /// Builds the encoder on `device`.
    pub fn init(&self, device: &Device) -> TextEncoder {
        TextEncoder {
            tokens: EmbeddingConfig::new(self.vocab_size, self.dim).init(device),
            positions: EmbeddingConfig::new(self.max_length, self.dim).init(device),
            transformer: pre_norm_transformer(
                self.dim,
                self.heads,
                self.layers,
                self.dropout,
                device,
            ),
            dim: self.dim,
            max_length: self.max_length,
        }
    }
}

/// Token embeddings, a Transformer, and mean pooling.
#[derive(Module, Debug)]
pub struct TextEncoder {
    tokens: Embedding,
    positions: Embedding,
    transformer: TransformerEncoder,
    dim: usize,
    max_length: usize,
}

impl Encoder for TextEncoder {
    type Input = TokenBatch;

    fn modality(&self) -> Modality {
        Modality::Text
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn encode(&self, input: &TokenBatch) -> Result<Embeddings> {
        let [batch, length] = input.ids.dims();
        // Longer inputs are cut to the position table; tokenizers truncate before this.
        let length = length.min(self.max_length);
        let ids = input.ids.clone().slice([0..batch, 0..length]);
        let mask = input.mask.clone().slice([0..batch, 0..length]);
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..length as i64, &device)
            .unsqueeze::<2>()
            .expand([batch, length]);
        let x = self.tokens.forward(ids) + self.positions.forward(positions);
        let x = self
            .transformer
            .forward(TransformerEncoderInput::new(x).mask_pad(mask.clone().bool_not()));
        Ok(Embeddings::from_sequence(x, mask))
    }
}

/// Settings of [`RnnTextEncoder`].
#[derive(Config, Debug)]
pub struct RnnTextEncoderConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Token embedding width.
    #[config(default = 64)]
    pub embedding_dim: usize,
    /// The recurrent layers (input width = `embedding_dim`).
    pub rnn: RecurrentConfig,
}

impl RnnTextEncoderConfig {
    /// Builds the encoder on `device`.
    pub fn init(&self, device: &Device) -> Result<RnnTextEncoder> {
        if self.rnn.d_input != self.embedding_dim {
            return Err(Error::Config(format!(
                "the recurrent layer reads {} wide inputs but the embeddings are {} wide",
                self.rnn.d_input, self.embedding_dim
            )));
        }
        Ok(RnnTextEncoder {
            tokens: EmbeddingConfig::new(self.vocab_size, self.embedding_dim).init(device),
            rnn: self.rnn.init(device)?,
            dim: self.rnn.output_dim(),
        })
    }
}

/// Token embeddings and an LSTM or GRU (uni- or bidirectional); the pooled
/// vector is the final state (both directions' when bidirectional).
#[derive(Module, Debug)]
pub struct RnnTextEncoder {
    tokens: Embedding,
    rnn: Recurrent,
    dim: usize,
}

impl Encoder for RnnTextEncoder {
    type Input = TokenBatch;

    fn modality(&self) -> Modality {
        Modality::Text
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn encode(&self, input: &TokenBatch) -> Result<Embeddings> {
        let x = self.tokens.forward(input.ids.clone());
        let out = self.rnn.forward(x, input.mask.clone());
        Ok(Embeddings {
            pooled: out.last,
            sequence: out.sequence,
            mask: input.mask.clone(),
        })
    }
}
