//! The run behind [`Trainer::train`]: the epoch loop with validation, early
//! stopping and the best model, one epoch's optimiser steps, and resuming.
//!
//! [`Trainer::train`]: crate::Trainer::train

use std::time::Instant;

use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::Gradients;

use polymodal_core::{Error, Modality, MultimodalBatch, Result, Targets};

use crate::data::{Example, Samples, prefetched};
use crate::losses::binary_cross_entropy_with_logits;
use crate::optim::FusedAdamConfig;
use crate::trainer::Trainer;
use crate::trainer::classifier::Classifier;
use crate::trainer::config::TrainConfig;
use crate::trainer::evaluate::evaluate;
use crate::trainer::report::{EpochReport, Progress, TrainReport};
use crate::trainer::run_dir::{RunDir, write_metrics};
use crate::trainer::state::{self, Resumed, RunState, save_state};

/// One call of [`Trainer::train`]: the trainer, the data and the run folder.
pub(super) struct Run<'a> {
    trainer: &'a Trainer<'a>,
    train: &'a dyn Samples,
    valid: &'a dyn Samples,
    dir: Option<RunDir>,
    device: Device,
}

impl<'a> Run<'a> {
    /// Checks the settings and the data, and prepares the run folder.
    pub(super) fn new(
        trainer: &'a Trainer<'a>,
        train: &'a dyn Samples,
        valid: &'a dyn Samples,
    ) -> Result<Self> {
        trainer.config.validate()?;
        if train.is_empty() || valid.is_empty() {
            return Err(Error::Config(
                "training and validation sets must not be empty".into(),
            ));
        }
        let dir = trainer.output.clone().map(RunDir);
        if let Some(dir) = &dir {
            dir.prepare()?;
        }
        Ok(Self {
            trainer,
            train,
            valid,
            dir,
            device: trainer.device.clone().autodiff(),
        })
    }

    /// Trains every epoch left (or until early stopping) and returns the
    /// best epoch's model.
    pub(super) fn fit<M: Classifier>(
        &self,
        mut model: M,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(M, TrainReport)> {
        let config = &self.trainer.config;
        let started = Instant::now();
        let mut optimizer = new_optimizer(config);
        let mut state = RunState::new(config.clone());
        let mut best: Option<ModuleRecord> = None;
        if self.trainer.resume
            && let Some(resumed) = self.resume(model.clone(), &mut optimizer)?
        {
            (model, state, best) = resumed;
            progress(Progress::Resumed { epoch: state.epoch });
        }
        let batches = self.train.len().div_ceil(config.batch_size);
        let total_steps = config.epochs * batches.div_ceil(config.accumulation);
        let mut stopped_early = false;
        for epoch in state.epoch + 1..=config.epochs {
            if let Some(patience) = config.early_stopping
                && epoch > state.best_epoch + patience
            {
                stopped_early = true;
                break;
            }
            let epoch_start = Instant::now();
            let (next, train_loss, rate) = self.epoch(
                model,
                &mut optimizer,
                epoch,
                &mut state,
                total_steps,
                progress,
            )?;
            model = next;
            let report = self.validate(&model, epoch, train_loss, rate, epoch_start)?;
            let improved = state.improves(&report);
            state.epoch = epoch;
            state.history.push(report.clone());
            if improved {
                state.best_accuracy = report.valid_accuracy;
                state.best_epoch = epoch;
                best = Some(model.valid().into_record());
            }
            if let Some(dir) = &self.dir {
                let new_best = if improved { best.clone() } else { None };
                save_state(dir, &model, &optimizer, &state, new_best)?;
                write_metrics(dir, &state.history)?;
            }
            progress(Progress::Epoch(report));
        }
        let best_model = self.best_model(&model, best)?;
        Ok((
            best_model,
            TrainReport {
                epochs: state.history,
                best_epoch: state.best_epoch,
                stopped_early,
                elapsed: started.elapsed(),
            },
        ))
    }

    /// Evaluates the epoch's `model` on the validation set: the epoch's report.
    fn validate<M: Classifier>(
        &self,
        model: &M,
        epoch: usize,
        train_loss: f32,
        rate: f64,
        epoch_start: Instant,
    ) -> Result<EpochReport> {
        let evaluation = evaluate(
            &model.valid(),
            self.valid,
            self.trainer.batcher,
            &self.device.clone().without_autodiff(),
        )?;
        Ok(EpochReport {
            epoch,
            train_loss,
            valid_loss: evaluation.loss,
            valid_accuracy: evaluation.accuracy,
            valid_macro_f1: evaluation.macro_f1,
            learning_rate: rate,
            elapsed: epoch_start.elapsed(),
        })
    }

    /// `model` (without autodiff) with the best epoch's weights `best`.
    fn best_model<M: Classifier>(&self, model: &M, best: Option<ModuleRecord>) -> Result<M> {
        let record = best.ok_or_else(|| {
            Error::Config("no epoch was trained (the saved run already reached its end)".into())
        })?;
        model
            .valid()
            .try_load_record(record)
            .map_err(|e| Error::Checkpoint {
                path: self
                    .dir
                    .as_ref()
                    .map(|d| d.best_weights())
                    .unwrap_or_default(),
                reason: e.to_string(),
            })
    }

    /// One pass over the training set: the model, the mean loss and the last rate.
    fn epoch<M: Classifier>(
        &self,
        mut model: M,
        optimizer: &mut ModuleOptimizer,
        epoch: usize,
        state: &mut RunState,
        total_steps: usize,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(M, f32, f64)> {
        let config = &self.trainer.config;
        // Shuffling and dropout are seeded per epoch, so a resumed run
        // replays exactly what an uninterrupted one would.
        let epoch_seed = epoch_seed(config.seed, epoch);
        self.device.seed(epoch_seed);
        let order = self.train.epoch_order(epoch_seed);
        let loss_fn = CrossEntropyLossConfig::new()
            .with_smoothing((config.label_smoothing > 0.0).then_some(config.label_smoothing))
            .init(&self.device);
        let chunks: Vec<Vec<usize>> = order
            .chunks(config.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        // Encoders with a learning rate of their own step separately.
        let groups: Vec<(Modality, f64)> = config
            .encoder_learning_rates
            .iter()
            .map(|(&m, &rate)| (m, rate))
            .collect();
        prefetched(self.train, chunks, |batches| {
            let mut accumulator = GradientsAccumulator::new();
            let mut group_accumulators: Vec<GradientsAccumulator<M>> =
                groups.iter().map(|_| GradientsAccumulator::new()).collect();
            let mut pending = 0;
            let mut loss_sum = 0.0;
            let mut rate = config.learning_rate;
            for (index, examples) in batches.enumerate() {
                let examples = examples?;
                let refs: Vec<&Example> = examples.iter().collect();
                // Each batch of a group weighs by its size, as one large batch would.
                let group_start = index - index % config.accumulation;
                let group_end = (group_start + config.accumulation).min(sizes.len());
                let group_len: usize = sizes[group_start..group_end].iter().sum();
                let weight = sizes[index] as f32 / group_len as f32;
                // On a thread of the pool the backend's ops split their
                // work over (see `on_pool`).
                let (value, raw) =
                    polymodal_core::cpu::on_pool(|| self.step(&model, &refs, &loss_fn, weight))?;
                let Some(mut raw) = raw else {
                    return Err(Error::NonFiniteLoss {
                        loss: value,
                        epoch,
                        step: index + 1,
                    });
                };
                loss_sum += value;
                for ((modality, _), group) in groups.iter().zip(&mut group_accumulators) {
                    let ids = model.modality_params(*modality);
                    group.accumulate(&model, GradientsParams::from_params(&mut raw, &model, &ids));
                }
                accumulator.accumulate(&model, GradientsParams::from_grads(raw, &model));
                pending += 1;
                if pending == config.accumulation || index + 1 == sizes.len() {
                    rate = config.schedule.rate(
                        config.learning_rate,
                        state.optimizer_steps,
                        total_steps,
                    );
                    for ((_, base), group) in groups.iter().zip(&mut group_accumulators) {
                        let group_rate =
                            config
                                .schedule
                                .rate(*base, state.optimizer_steps, total_steps);
                        model = optimizer.step(group_rate, model, group.grads());
                    }
                    model = optimizer.step(rate, model, accumulator.grads());
                    state.optimizer_steps += 1;
                    pending = 0;
                }
                progress(Progress::Step {
                    epoch,
                    epochs: config.epochs,
                    step: index + 1,
                    steps: sizes.len(),
                });
            }
            Ok((model, loss_sum / sizes.len() as f32, rate))
        })
    }

    /// The loss of `model` on the batch of `examples` (f32) and, when it is
    /// finite, the gradients of `weight` times it.
    fn step<M: Classifier>(
        &self,
        model: &M,
        examples: &[&Example],
        loss_fn: &CrossEntropyLoss,
        weight: f32,
    ) -> Result<(f32, Option<Gradients>)> {
        let batch = self.trainer.batcher.batch(examples, &self.device)?;
        let loss = self.loss(model, &batch, loss_fn)?;
        let value = loss.clone().into_scalar::<f32>();
        let raw = value.is_finite().then(|| (loss * weight).backward());
        Ok((value, raw))
    }

    /// The training loss of `model` on `batch`: cross-entropy (binary for
    /// multi-label targets) with label smoothing, plus any extra term.
    fn loss<M: Classifier>(
        &self,
        model: &M,
        batch: &MultimodalBatch,
        loss_fn: &CrossEntropyLoss,
    ) -> Result<Tensor<1>> {
        let config = &self.trainer.config;
        let (logits, extra) = model.training_output(batch)?;
        let mut loss = match &batch.targets {
            Targets::Classes(classes) => loss_fn.forward(logits, classes.clone()),
            Targets::MultiHot(targets) => {
                // Label smoothing pulls each yes/no target towards 1/2.
                let s = config.label_smoothing;
                let targets = targets.clone() * (1.0 - s) + s / 2.0;
                binary_cross_entropy_with_logits(logits, targets)?
            }
        };
        if let Some(extra) = extra {
            loss = loss + extra;
        }
        Ok(loss)
    }

    /// Loads the saved state, if the run folder has one.
    fn resume<M: Classifier>(
        &self,
        model: M,
        optimizer: &mut ModuleOptimizer,
    ) -> Result<Option<Resumed<M>>> {
        let Some(dir) = &self.dir else {
            return Err(Error::Config("resuming needs a run folder".into()));
        };
        state::resume(dir, &self.trainer.config, model, optimizer)
    }
}

/// Adam (one pass per parameter on the CPU), with the configured gradient
/// clipping.
fn new_optimizer(config: &TrainConfig) -> ModuleOptimizer {
    let mut adam = FusedAdamConfig::new();
    if let Some(norm) = config.clip_grad_norm {
        adam = adam.with_grad_clipping(Some(GradientClippingConfig::Norm(norm)));
    }
    adam.init()
}

/// The seed of shuffling and dropout in `epoch`.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed.wrapping_add((epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}
