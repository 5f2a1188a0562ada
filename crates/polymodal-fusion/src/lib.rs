//! Fusion for polymodal, in the three families defined in `docs/fusion.md`:
//!
//! - **feature-level (early)**: [`ConcatFusion`] joins per-modality features
//!   into one representation before a shared head;
//! - **model-level (late)**: [`WeightedAverage`] combines the predictions of
//!   separately trained per-modality models;
//! - **joint**: [`CrossModalAttention`] is one model whose layers attend across
//!   modalities.
//!
//! ```
//! use burn::prelude::*;
//! use polymodal_core::{Embeddings, Fusion, Modality, ModalityBatch, ModalityEmbeddings};
//! use polymodal_fusion::ConcatFusionConfig;
//!
//! let device = Device::flex();
//! let part = |modality, dim| {
//!     let sequence = Tensor::<3>::ones([2, 5, dim], &device);
//!     let mask = Tensor::<2>::ones([2, 5], &device).equal_elem(1.0);
//!     let present = ModalityBatch::all_present((), 2, &device).present;
//!     ModalityEmbeddings { modality, embeddings: Embeddings::from_sequence(sequence, mask), present }
//! };
//! let fusion = ConcatFusionConfig::new(vec![16, 8]).with_hidden(32).init(&device);
//! let fused = fusion.fuse(&[part(Modality::Image, 16), part(Modality::Audio, 8)]);
//! assert_eq!(fused.dims(), [2, 32]);
//! ```

mod attention;
mod concat;
mod late;

pub use attention::{CrossModalAttention, CrossModalAttentionConfig};
pub use concat::{ConcatFusion, ConcatFusionConfig};
pub use late::{Pool, WeightedAverage};
