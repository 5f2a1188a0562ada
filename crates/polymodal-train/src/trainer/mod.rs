//! The training loop: Adam on Burn's autodiff with a learning-rate schedule,
//! gradient clipping and accumulation, per-epoch validation, early stopping,
//! and a run folder with the best model, an exactly resumable state, and the
//! metrics as CSV, JSONL and charts.
//!
//! One file per concern:
//! - `classifier`: the [`Classifier`] trait a trained model implements;
//! - `config`: [`TrainConfig`] and [`LrSchedule`];
//! - `report`: [`EpochReport`], [`Progress`] and [`TrainReport`];
//! - `run`: the epoch loop behind [`Trainer::train`];
//! - `state`: the resumable state after an epoch, saved and resumed;
//! - `run_dir`: the run folder ([`RunDir`]) and its metrics files;
//! - `checkpoint`: weights files ([`save_checkpoint`], [`load_checkpoint`],
//!   [`WEIGHTS_FILE`]) and atomic writes ([`write_atomic`]);
//! - `fault`: the fault-injection hook inside atomic writes;
//! - `evaluate`: [`evaluate()`], [`Evaluation`] and [`accuracy`];
//! - `rng`: [`RngGuard`], one seeded run at a time on the backend's
//!   random generator.

mod checkpoint;
mod classifier;
mod config;
mod evaluate;
mod fault;
mod report;
mod rng;
mod run;
mod run_dir;
mod state;

use std::path::PathBuf;

use burn::prelude::*;

use polymodal_core::Result;

use crate::batch::Batcher;
use crate::data::Samples;

pub use checkpoint::{WEIGHTS_FILE, load_checkpoint, save_checkpoint, write_atomic};
pub use classifier::Classifier;
pub use config::{LrSchedule, TrainConfig};
pub use evaluate::{Evaluation, accuracy, evaluate};
pub use report::{EpochReport, Progress, TrainReport};
pub use rng::RngGuard;
pub use run_dir::RunDir;

/// Where and how [`Trainer::train`] trains.
#[derive(Debug, Clone)]
pub struct Trainer<'a> {
    /// Builds the batches.
    pub batcher: &'a Batcher,
    /// The settings.
    pub config: TrainConfig,
    /// The device; training runs on its autodiff form.
    pub device: Device,
    /// The run folder (see [`RunDir`]); `None` keeps everything in memory.
    pub output: Option<PathBuf>,
    /// Continue from the state saved in `output`, if there is one.
    pub resume: bool,
}

impl Trainer<'_> {
    /// Trains `model` on `train`, keeps the weights with the best accuracy on
    /// `valid`, and writes the run folder when `output` is set.
    ///
    /// The model must have been built on the trainer's device in its autodiff
    /// form. A non-finite loss stops training with [`Error::NonFiniteLoss`];
    /// the run folder then still holds the last good epoch and best model.
    ///
    /// `train` and `valid` may be decoded datasets or [`LazyDataset`]s
    /// (decoded batch by batch); either way the next batches are prepared on
    /// a worker thread while the current one trains.
    ///
    /// Training holds an [`RngGuard`]: other threads' seeded runs wait.
    ///
    /// [`Error::NonFiniteLoss`]: polymodal_core::Error::NonFiniteLoss
    /// [`LazyDataset`]: crate::LazyDataset
    pub fn train<M: Classifier>(
        &self,
        model: M,
        train: &dyn Samples,
        valid: &dyn Samples,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(M, TrainReport)> {
        let _rng = RngGuard::hold();
        run::Run::new(self, train, valid)?.fit(model, progress)
    }
}
