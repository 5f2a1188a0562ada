//! The training loop: Adam on Burn's autodiff, per-epoch evaluation, and
//! a checkpoint of the best model on disk.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::activation::softmax;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use polymodal_core::{Error, MultimodalBatch, Result};

use crate::batch::Batcher;
use crate::features::{Dataset, Example};

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

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Samples per step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Seed for parameter initialisation and shuffling.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 32,
            learning_rate: 2e-3,
            seed: 42,
        }
    }
}

impl TrainConfig {
    fn validate(&self) -> Result<()> {
        if self.epochs == 0
            || self.batch_size == 0
            || !(self.learning_rate > 0.0 && self.learning_rate.is_finite())
        {
            return Err(Error::Config(format!(
                "training needs epochs >= 1, batch_size >= 1 and a positive learning rate, got {self:?}"
            )));
        }
        Ok(())
    }
}

/// What happened in one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    /// Epoch number (1-based).
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f32,
    /// Accuracy on the validation set.
    pub valid_accuracy: f32,
    /// Wall time of the epoch.
    pub elapsed: Duration,
}

/// Progress events of [`train`].
#[derive(Debug, Clone)]
pub enum Progress {
    /// A training step finished (`step` of `steps` in the epoch).
    Step {
        /// Epoch (1-based).
        epoch: usize,
        /// Epochs in the run.
        epochs: usize,
        /// Step (1-based).
        step: usize,
        /// Steps per epoch.
        steps: usize,
    },
    /// An epoch finished.
    Epoch(EpochReport),
}

/// The outcome of [`train`].
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// Every epoch.
    pub epochs: Vec<EpochReport>,
    /// The epoch whose model was kept (best validation accuracy).
    pub best_epoch: usize,
    /// Total wall time.
    pub elapsed: Duration,
}

/// Where and how [`Trainer::train`] trains.
#[derive(Debug, Clone)]
pub struct Trainer<'a> {
    /// Builds the batches.
    pub batcher: &'a Batcher,
    /// Epochs, batch size, learning rate, seed.
    pub config: TrainConfig,
    /// The device; training runs on its autodiff form.
    pub device: Device,
    /// Where the best model's weights are written (a `.bpk` file).
    pub checkpoint: Option<PathBuf>,
}

impl Trainer<'_> {
    /// Trains `model` on `train`, keeps the weights with the best accuracy on
    /// `valid`, and writes them to the checkpoint file when one is set.
    ///
    /// The model must have been built on the trainer's device in its autodiff
    /// form. A non-finite loss stops training with [`Error::NonFiniteLoss`];
    /// the checkpoint on disk then still holds the last good (best) model.
    pub fn train<M: Classifier>(
        &self,
        model: M,
        train: &Dataset,
        valid: &Dataset,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(M, TrainReport)> {
        fit(model, train, valid, self, progress)
    }
}

fn fit<M: Classifier>(
    mut model: M,
    train: &Dataset,
    valid: &Dataset,
    trainer: &Trainer<'_>,
    progress: &mut dyn FnMut(Progress),
) -> Result<(M, TrainReport)> {
    let Trainer {
        batcher,
        config,
        device,
        checkpoint,
    } = trainer;
    config.validate()?;
    if train.examples.is_empty() || valid.examples.is_empty() {
        return Err(Error::Config(
            "training and validation sets must not be empty".into(),
        ));
    }
    let device = device.clone().autodiff();
    let started = Instant::now();
    let mut optimizer = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..train.examples.len()).collect();
    let steps = order.len().div_ceil(config.batch_size);
    // The best epoch's weights as a record: a snapshot, unlike a module clone,
    // whose batch-norm running statistics keep being updated by training.
    let mut best: Option<(f32, usize, ModuleRecord)> = None;
    let mut epochs = Vec::with_capacity(config.epochs);
    for epoch in 1..=config.epochs {
        let epoch_start = Instant::now();
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for (index, chunk) in order.chunks(config.batch_size).enumerate() {
            let examples: Vec<&Example> = chunk.iter().map(|&i| &train.examples[i]).collect();
            let batch = batcher.batch(&examples, &device)?;
            let (logits, auxiliary) = model.training_output(&batch)?;
            let mut loss = loss_fn.forward(logits, batch.labels.clone());
            if let Some(extra) = auxiliary {
                loss = loss + extra;
            }
            let value = loss.clone().into_scalar::<f32>();
            if !value.is_finite() {
                return Err(Error::NonFiniteLoss {
                    loss: value,
                    epoch,
                    step: index + 1,
                });
            }
            loss_sum += value;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(config.learning_rate, model, grads);
            progress(Progress::Step {
                epoch,
                epochs: config.epochs,
                step: index + 1,
                steps,
            });
        }
        let valid_accuracy = evaluate(
            &model.valid(),
            valid,
            batcher,
            &device.clone().without_autodiff(),
        )?
        .accuracy;
        let report = EpochReport {
            epoch,
            train_loss: loss_sum / steps as f32,
            valid_accuracy,
            elapsed: epoch_start.elapsed(),
        };
        progress(Progress::Epoch(report.clone()));
        epochs.push(report);
        if best
            .as_ref()
            .is_none_or(|(accuracy, _, _)| valid_accuracy > *accuracy)
        {
            let record = model.valid().into_record();
            if let Some(path) = checkpoint.as_deref() {
                write_record(record.clone(), path)?;
            }
            best = Some((valid_accuracy, epoch, record));
        }
    }
    let (_, best_epoch, record) = best.expect("at least one epoch ran");
    let best_model = model
        .valid()
        .try_load_record(record)
        .map_err(|e| Error::Checkpoint {
            path: checkpoint.clone().unwrap_or_default(),
            reason: e.to_string(),
        })?;
    Ok((
        best_model,
        TrainReport {
            epochs,
            best_epoch,
            elapsed: started.elapsed(),
        },
    ))
}

/// Accuracy and class probabilities on a dataset.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Fraction of samples whose most probable class is the label.
    pub accuracy: f32,
    /// `[samples, classes]` probabilities, in dataset order.
    pub probabilities: Tensor<2>,
    /// The labels, in dataset order.
    pub labels: Vec<usize>,
}

/// Runs `model` (without autodiff) over `data` in batches of 64.
pub fn evaluate<M: Classifier>(
    model: &M,
    data: &Dataset,
    batcher: &Batcher,
    device: &Device,
) -> Result<Evaluation> {
    if data.examples.is_empty() {
        return Err(Error::Config("cannot evaluate on an empty dataset".into()));
    }
    let mut parts = Vec::new();
    for chunk in data.examples.chunks(64) {
        let examples: Vec<&Example> = chunk.iter().collect();
        let batch = batcher.batch(&examples, device)?;
        parts.push(softmax(model.logits(&batch)?, 1));
    }
    let probabilities = Tensor::cat(parts, 0);
    let labels: Vec<usize> = data.examples.iter().map(|e| e.label).collect();
    let accuracy = accuracy(&probabilities, &labels)?;
    Ok(Evaluation {
        accuracy,
        probabilities,
        labels,
    })
}

/// Fraction of rows of `scores` `[samples, classes]` whose arg-max is the label.
pub fn accuracy(scores: &Tensor<2>, labels: &[usize]) -> Result<f32> {
    let predicted = scores
        .clone()
        .argmax(1)
        .try_into_vec_as::<i64>()
        .map_err(|e| Error::Invalid(format!("reading predictions: {e:?}")))?;
    if predicted.len() != labels.len() || labels.is_empty() {
        return Err(Error::Invalid(format!(
            "{} predictions for {} labels",
            predicted.len(),
            labels.len()
        )));
    }
    let correct = predicted
        .iter()
        .zip(labels)
        .filter(|&(&p, &y)| p as usize == y)
        .count();
    Ok(correct as f32 / labels.len() as f32)
}

/// Writes the model's weights to `path` atomically: a crash mid-write leaves
/// the previous checkpoint intact.
pub fn save_checkpoint<M: Module>(model: &M, path: &Path) -> Result<()> {
    write_record(model.clone().into_record(), path)
}

fn write_record(record: ModuleRecord, path: &Path) -> Result<()> {
    let fail = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let tmp: PathBuf = path.with_extension("bpk.partial");
    let bytes = record.into_bytes().map_err(|e| fail(e.to_string()))?;
    std::fs::write(&tmp, &*bytes).map_err(|e| fail(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| fail(e.to_string()))
}

/// Loads weights written by [`save_checkpoint`] into `model` (built with the
/// same configuration); names the file and the mismatch on failure.
pub fn load_checkpoint<M: Module>(model: M, path: &Path) -> Result<M> {
    let fail = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let record = ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| fail(e.to_string()))?;
    model
        .try_load_record(record)
        .map_err(|e| fail(e.to_string()))
}
