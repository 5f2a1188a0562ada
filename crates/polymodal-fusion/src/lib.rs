//! Fusion for polymodal, in the three families defined in `docs/fusion.md`.
//!
//! **Feature-level (early)**: per-modality features are joined into one
//! representation before one shared head, trained end to end:
//! [`ConcatFusion`] (concatenation + MLP), [`GatedFusion`] (GMU),
//! [`FilmFusion`] (FiLM conditioning), [`TensorFusion`] (TFN),
//! [`LowRankFusion`] (LMF), [`AttentionSum`] (attention-weighted sum).
//!
//! **Model-level (late)**: the predictions of separately trained
//! per-modality models are combined: [`WeightedAverage`] (fixed or fitted
//! weights, linear or logarithmic pool), [`Voting`] (hard, soft),
//! [`Stacking`] (a meta-model fitted on out-of-fold predictions).
//!
//! **Joint**: one model whose layers attend across modalities:
//! [`CrossModalTransformer`] (pairwise cross-attention, MulT-style),
//! [`SingleStreamTransformer`] (self-attention over all modalities' tokens),
//! and [`ContrastiveAlignment`] (CLIP-style symmetric InfoNCE, for retrieval
//! and as an aligned space to classify from).
//!
//! **Registry**: [`FusionKind`] names the feature-level and joint layers a
//! classifier can be built with (`fusion = "…"` in configs) and
//! [`FusionKind::layer`] builds the matching [`FusionLayer`]; both are
//! generated from one table in `registry.rs` (see "Adding a fusion method" in
//! `docs/fusion.md`).
//!
//! Every layer takes per-sample presence masks: an absent modality never
//! influences a sample's output. [`ModalityDropout`] hides modalities during
//! training so that models degrade gracefully when one is missing;
//! [`EmbeddingNoise`] perturbs frozen encoders' cached embeddings during
//! training so that fusion does not trust their fine detail.
//!
//! ```
//! use burn::prelude::*;
//! use polymodal_core::{Embeddings, Fusion, Modality, ModalityBatch, ModalityEmbeddings};
//! use polymodal_fusion::GatedFusionConfig;
//!
//! let device = Device::flex();
//! let part = |modality, dim, present: [bool; 2]| {
//!     let sequence = Tensor::<3>::ones([2, 5, dim], &device);
//!     let mask = Tensor::<2>::ones([2, 5], &device).equal_elem(1.0);
//!     let present = Tensor::<1, Bool>::from_data(present, &device);
//!     ModalityEmbeddings { modality, embeddings: Embeddings::from_sequence(sequence, mask), present }
//! };
//! let fusion = GatedFusionConfig::new(vec![16, 8]).with_hidden(32).init(&device)?;
//! // The second sample has no audio: the gate gives its image all the weight.
//! let inputs = [part(Modality::Image, 16, [true, true]), part(Modality::Audio, 8, [true, false])];
//! let fused = fusion.fuse(&inputs)?;
//! assert_eq!(fused.dims(), [2, 32]);
//! # Ok::<(), polymodal_core::Error>(())
//! ```

mod attention_sum;
mod concat;
mod contrastive;
mod cross_modal;
mod embedding_noise;
mod film;
mod gated;
mod inputs;
#[cfg(feature = "wgpu")]
pub mod kernel;
mod late;
mod low_rank;
mod modality_dropout;
mod registry;
mod single_stream;
mod stacking;
mod tensor;
mod voting;

pub use attention_sum::{AttentionSum, AttentionSumConfig};
pub use concat::{ConcatFusion, ConcatFusionConfig};
pub use contrastive::{ContrastiveAlignment, ContrastiveAlignmentConfig, info_nce};
pub use cross_modal::{CrossAttentionBlock, CrossModalTransformer, CrossModalTransformerConfig};
pub use embedding_noise::EmbeddingNoise;
pub use film::{FilmFusion, FilmFusionConfig};
pub use gated::{GatedFusion, GatedFusionConfig};
pub use late::{Pool, WeightedAverage};
pub use low_rank::{LowRankFusion, LowRankFusionConfig};
pub use modality_dropout::ModalityDropout;
pub use polymodal_core::l2_normalize;
pub use registry::{FusionFamily, FusionKind, FusionLayer, RegisteredFusion};
pub use single_stream::{SingleStreamTransformer, SingleStreamTransformerConfig};
pub use stacking::{Stacking, StackingConfig};
pub use tensor::{TensorFusion, TensorFusionConfig};
pub use voting::Voting;

use polymodal_core::{Error, Result};

/// A dropout layer, with a bad probability as a configuration error.
fn dropout(prob: f64) -> Result<burn::nn::Dropout> {
    if !(0.0..1.0).contains(&prob) {
        return Err(Error::Config(format!(
            "dropout must be in [0, 1), got {prob}"
        )));
    }
    Ok(burn::nn::DropoutConfig::new(prob).init())
}

/// Attention needs a positive width that the heads divide.
fn check_heads(layer: &str, dim: usize, heads: usize) -> Result<()> {
    if dim == 0 || heads == 0 || !dim.is_multiple_of(heads) {
        return Err(Error::Config(format!(
            "{layer}: the width {dim} must be positive and divisible by the {heads} heads"
        )));
    }
    Ok(())
}
