//! What training reports: per epoch ([`EpochReport`]), as it goes
//! ([`Progress`]) and at the end ([`TrainReport`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What happened in one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// Epoch number (1-based).
    pub epoch: usize,
    /// Mean training loss (including any extra loss term).
    pub train_loss: f32,
    /// Mean cross-entropy on the validation set.
    pub valid_loss: f32,
    /// Accuracy on the validation set.
    pub valid_accuracy: f32,
    /// Macro-averaged F1 on the validation set.
    pub valid_macro_f1: f32,
    /// Learning rate of the epoch's last optimiser step.
    pub learning_rate: f64,
    /// Wall time of the epoch.
    #[serde(with = "seconds")]
    pub elapsed: Duration,
}

mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// Progress events of [`Trainer::train`].
///
/// [`Trainer::train`]: crate::Trainer::train
#[derive(Debug, Clone)]
pub enum Progress {
    /// A training batch finished (`step` of `steps` in the epoch).
    Step {
        /// Epoch (1-based).
        epoch: usize,
        /// Epochs in the run.
        epochs: usize,
        /// Batch (1-based).
        step: usize,
        /// Batches per epoch.
        steps: usize,
    },
    /// An epoch finished.
    Epoch(EpochReport),
    /// Training continues from a saved state after `epoch`.
    Resumed {
        /// The last finished epoch.
        epoch: usize,
    },
}

/// The outcome of [`Trainer::train`].
///
/// [`Trainer::train`]: crate::Trainer::train
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// Every epoch (including those before a resume).
    pub epochs: Vec<EpochReport>,
    /// The epoch whose model was kept: the best validation accuracy, ties
    /// broken by the lower validation loss.
    pub best_epoch: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Wall time of this call.
    pub elapsed: Duration,
}
