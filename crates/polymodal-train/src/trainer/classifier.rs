//! The model side of training: what [`Trainer::train`] and [`evaluate`]
//! need of a model.
//!
//! [`Trainer::train`]: crate::Trainer::train
//! [`evaluate`]: crate::evaluate

use burn::module::Module;
use burn::prelude::*;

use polymodal_core::{MultimodalBatch, Result};

/// A model that maps a batch to class logits `[batch, classes]`.
pub trait Classifier: Module + Sized {
    /// Class logits for `batch`.
    fn logits(&self, batch: &MultimodalBatch) -> Result<Tensor<2>>;

    /// Class logits and an extra loss term to add in training (for example
    /// a contrastive alignment loss). The default has no extra term.
    fn training_output(&self, batch: &MultimodalBatch) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
        Ok((self.logits(batch)?, None))
    }
}
