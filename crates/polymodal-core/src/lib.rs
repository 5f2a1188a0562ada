//! The shared vocabulary of polymodal: modalities, batches with presence masks,
//! encoder outputs, the encoder and fusion traits, the error type,
//! pretrained weights by name from safetensors files ([`Weights`]), and what
//! the modality crates' registries of encoders share ([`registry`]).
//!
//! This crate is small on purpose: it depends on Burn's tensor API only (no
//! backend, no media library; `safetensors` and `half` to read weights), so
//! every other crate can agree on it.
//!
//! ```
//! use burn::prelude::*;
//! use polymodal_core::{Embeddings, Modality};
//!
//! let device = Device::flex();
//! // Two samples, three tokens of width 4; the second sample has one padding token.
//! let sequence = Tensor::<3>::ones([2, 3, 4], &device);
//! let mask = Tensor::<2, Bool>::from_data([[true, true, true], [true, true, false]], &device);
//! let embeddings = Embeddings::from_sequence(sequence, mask);
//! assert_eq!(embeddings.pooled.dims(), [2, 4]);
//! assert_eq!(Modality::Audio.to_string(), "audio");
//! ```

mod attention;
mod batch;
mod blocks;
pub mod cpu;
mod embeddings;
mod error;
mod modality;
pub mod registry;
mod rnn;
pub mod testing;
pub mod weights;

pub use attention::{
    Activation, AttentionNames, BlockNames, BlockShape, PreNormBlock, SelfAttention, hf_vit_layers,
};
pub use batch::{ModalityBatch, MultimodalBatch, Targets, TokenBatch};
pub use blocks::{ConvBlock, GridPool, pre_norm_transformer};
pub use embeddings::{Embeddings, ModalityEmbeddings, l2_normalize, masked_mean};
pub use error::{Error, Result};
pub use modality::Modality;
pub use rnn::{Recurrent, RecurrentConfig, RecurrentOutput, RnnKind};
pub use weights::{Init, LoadReport, Weights, read_config};

use burn::prelude::*;

/// Turns one modality's model input into embeddings.
///
/// Encoders are Burn modules; the trait only fixes the contract shared by every
/// fusion method: a pooled vector per sample, a token sequence and its mask.
pub trait Encoder {
    /// What the encoder reads (an image tensor, token ids, ...).
    type Input;
    /// Which modality this encoder reads.
    fn modality(&self) -> Modality;
    /// Width of the embeddings it produces.
    fn dim(&self) -> usize;
    /// Encodes a batch; an input of the wrong shape (an image size a
    /// pretrained model was not built for, too many tokens) is
    /// [`Error::Invalid`].
    fn encode(&self, input: &Self::Input) -> Result<Embeddings>;
}

/// Combines the embeddings of several modalities into one representation
/// `[batch, output_dim]` (feature-level or joint fusion; see `docs/fusion.md`).
pub trait Fusion {
    /// Width of the fused representation.
    fn output_dim(&self) -> usize;
    /// Fuses the given modalities, in the order the layer was built for.
    /// Samples whose modality is absent (see [`ModalityEmbeddings::present`])
    /// must not influence the result. Wrong modality counts or widths are
    /// [`Error::Invalid`].
    fn fuse(&self, inputs: &[ModalityEmbeddings]) -> Result<Tensor<2>>;
    /// A loss of the layer's own that training adds (weighted) to the task
    /// loss, on the same inputs as [`Fusion::fuse`]: `None`, the default, for
    /// layers without one (contrastive alignment has its InfoNCE loss).
    fn auxiliary_loss(&self, inputs: &[ModalityEmbeddings]) -> Result<Option<Tensor<1>>> {
        let _ = inputs;
        Ok(None)
    }
}
