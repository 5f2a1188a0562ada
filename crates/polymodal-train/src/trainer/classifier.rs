//! The model side of training: what [`Trainer::train`] and [`evaluate`]
//! need of a model.
//!
//! [`Trainer::train`]: crate::Trainer::train
//! [`evaluate`]: crate::evaluate

use burn::module::{Module, ParamId};
use burn::prelude::*;

use polymodal_core::{Modality, MultimodalBatch, Result};

/// A model that maps a batch to class logits `[batch, classes]`.
///
/// `Sync`, as Burn's modules are: training and evaluation run the model on
/// a thread of rayon's pool ([`polymodal_core::cpu::on_pool`]).
pub trait Classifier: Module + Sized + Sync {
    /// Class logits for `batch`.
    fn logits(&self, batch: &MultimodalBatch) -> Result<Tensor<2>>;

    /// Class logits and an extra loss term to add in training (for example
    /// a contrastive alignment loss). The default has no extra term.
    fn training_output(&self, batch: &MultimodalBatch) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
        Ok((self.logits(batch)?, None))
    }

    /// The parameters of `modality`'s encoder, which train at that
    /// modality's rate of [`crate::TrainConfig::encoder_learning_rates`]
    /// when it has one. The default: none (everything trains at the run's
    /// rate).
    fn modality_params(&self, modality: Modality) -> Vec<ParamId> {
        let _ = modality;
        Vec::new()
    }
}
