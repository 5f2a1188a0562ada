//! The training loop: Adam on Burn's autodiff with a learning-rate schedule,
//! gradient clipping and accumulation, per-epoch validation, early stopping,
//! and a run folder with the best model, an exactly resumable state, and the
//! metrics as CSV, JSONL and charts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{
    AdamConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer, OptimizerRecord,
};
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::activation::{sigmoid, softmax};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use polymodal_core::{Error, MultimodalBatch, Result, Targets};

use crate::batch::Batcher;
use crate::chart::LineChart;
use crate::features::{Example, Label};
use crate::losses::binary_cross_entropy_with_logits;
use crate::metrics::{ConfusionMatrix, MultiLabelMetrics};
use crate::source::{Samples, prefetched};

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

/// How the learning rate changes over training.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LrSchedule {
    /// The same rate throughout.
    #[default]
    Constant,
    /// Linear warm-up from zero over `warmup_steps` optimiser steps, then a
    /// cosine decay to `min_factor × learning_rate` at the last step.
    WarmupCosine {
        /// Optimiser steps of warm-up.
        warmup_steps: usize,
        /// Final rate as a fraction of the peak.
        #[serde(default)]
        min_factor: f64,
    },
}

impl LrSchedule {
    /// The rate at optimiser step `step` (0-based) of `total`.
    pub fn rate(&self, peak: f64, step: usize, total: usize) -> f64 {
        match *self {
            Self::Constant => peak,
            Self::WarmupCosine {
                warmup_steps,
                min_factor,
            } => {
                if step < warmup_steps {
                    return peak * (step + 1) as f64 / warmup_steps as f64;
                }
                let span = total.saturating_sub(warmup_steps).max(1) as f64;
                let progress = ((step - warmup_steps) as f64 / span).min(1.0);
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                peak * (min_factor + (1.0 - min_factor) * cosine)
            }
        }
    }
}

/// Training settings. Every field but the first four has a default, so a
/// TOML `[train]` table may name only what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training set (at most: early stopping may end sooner).
    pub epochs: usize,
    /// Samples per forward pass.
    pub batch_size: usize,
    /// Peak Adam learning rate.
    pub learning_rate: f64,
    /// Seed for initialisation, shuffling and dropout.
    pub seed: u64,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
    /// Clip the global gradient norm to this value.
    pub clip_grad_norm: Option<f32>,
    /// Batches whose gradients are summed (averaged) before each optimiser
    /// step: the effective batch is `batch_size × accumulation`.
    pub accumulation: usize,
    /// Label smoothing of the cross-entropy, in `[0, 1)`.
    pub label_smoothing: f32,
    /// Stop when validation accuracy has not improved for this many epochs.
    pub early_stopping: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 32,
            learning_rate: 2e-3,
            seed: 42,
            schedule: LrSchedule::Constant,
            clip_grad_norm: None,
            accumulation: 1,
            label_smoothing: 0.0,
            early_stopping: None,
        }
    }
}

impl TrainConfig {
    /// Checks every setting; the error names the offending one.
    pub fn validate(&self) -> Result<()> {
        let problem = if self.epochs == 0 {
            Some("epochs must be at least 1")
        } else if self.batch_size == 0 {
            Some("batch_size must be at least 1")
        } else if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            Some("learning_rate must be positive")
        } else if self.accumulation == 0 {
            Some("accumulation must be at least 1")
        } else if !(0.0..1.0).contains(&self.label_smoothing) {
            Some("label_smoothing must be in [0, 1)")
        } else if self
            .clip_grad_norm
            .is_some_and(|c| !(c > 0.0 && c.is_finite()))
        {
            Some("clip_grad_norm must be positive")
        } else if self.early_stopping == Some(0) {
            Some("early_stopping (patience) must be at least 1")
        } else if matches!(self.schedule, LrSchedule::WarmupCosine { min_factor, .. } if !(0.0..=1.0).contains(&min_factor))
        {
            Some("schedule.min_factor must be in [0, 1]")
        } else {
            None
        };
        problem.map_or(Ok(()), |p| {
            Err(Error::Config(format!("training settings: {p}")))
        })
    }

    /// Whether `other` continues the same run (all settings equal but the
    /// epoch budget and the patience, which a resumed run may change).
    fn same_run(&self, other: &TrainConfig) -> bool {
        let strip = |c: &TrainConfig| TrainConfig {
            epochs: 0,
            early_stopping: None,
            ..c.clone()
        };
        strip(self) == strip(other)
    }
}

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
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// Every epoch (including those before a resume).
    pub epochs: Vec<EpochReport>,
    /// The epoch whose model was kept (best validation accuracy).
    pub best_epoch: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Wall time of this call.
    pub elapsed: Duration,
}

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

/// The files of a run folder:
/// - `model.bpk`: the best epoch's weights (what `polymodal eval` loads);
/// - `training/state.json` and `training/epoch-N.{model,optim}.bpk`: the
///   last finished epoch, enough to resume exactly;
/// - `metrics.csv`, `metrics.jsonl`: one row per epoch; `loss.svg`,
///   `accuracy.svg`: the training curves.
///
/// Every file is written to a temporary name (`*.partial`), flushed, and
/// renamed; the state file is replaced only after the files it names are
/// complete, and `model.bpk` only after the state naming its epoch. A kill
/// at any moment therefore leaves the previous good state (and at most a
/// `*.partial` file, which the next run removes unread), and a resumed run
/// ends with the same weights, optimiser state and metrics as an
/// uninterrupted one (`crates/polymodal/tests/kill_resume.rs` checks this by
/// killing the CLI, with this module's `POLYMODAL_FAULT_INJECT` hook to stop
/// it inside a write).
#[derive(Debug, Clone)]
pub struct RunDir(pub PathBuf);

impl RunDir {
    /// The best model's weights.
    pub fn best_weights(&self) -> PathBuf {
        self.0.join("model.bpk")
    }

    fn training(&self) -> PathBuf {
        self.0.join("training")
    }

    fn state(&self) -> PathBuf {
        self.training().join("state.json")
    }

    fn epoch_file(&self, epoch: usize, what: &str) -> PathBuf {
        self.training().join(format!("epoch-{epoch}.{what}.bpk"))
    }
}

/// The resumable state after an epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunState {
    config: TrainConfig,
    epoch: usize,
    best_epoch: usize,
    best_accuracy: f32,
    optimizer_steps: usize,
    history: Vec<EpochReport>,
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
    /// [`LazyDataset`]: crate::LazyDataset
    pub fn train<M: Classifier>(
        &self,
        model: M,
        train: &dyn Samples,
        valid: &dyn Samples,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(M, TrainReport)> {
        Run::new(self, train, valid)?.fit(model, progress)
    }
}

struct Run<'a> {
    trainer: &'a Trainer<'a>,
    train: &'a dyn Samples,
    valid: &'a dyn Samples,
    dir: Option<RunDir>,
    device: Device,
}

impl<'a> Run<'a> {
    fn new(
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
            std::fs::create_dir_all(dir.training()).map_err(|e| Error::io(dir.training(), e))?;
            // A process killed while writing leaves its temporary file; no
            // state names one, so it is never read, only removed.
            for folder in [dir.0.clone(), dir.training()] {
                remove_files(&folder, |name| name.ends_with(PARTIAL))?;
            }
        }
        Ok(Self {
            trainer,
            train,
            valid,
            dir,
            device: trainer.device.clone().autodiff(),
        })
    }

    fn fit<M: Classifier>(
        &self,
        mut model: M,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(M, TrainReport)> {
        let config = &self.trainer.config;
        let started = Instant::now();
        let mut adam = AdamConfig::new();
        if let Some(norm) = config.clip_grad_norm {
            adam = adam.with_grad_clipping(Some(GradientClippingConfig::Norm(norm)));
        }
        let mut optimizer = adam.init();
        let mut state = RunState {
            config: config.clone(),
            epoch: 0,
            best_epoch: 0,
            best_accuracy: f32::NEG_INFINITY,
            optimizer_steps: 0,
            history: Vec::new(),
        };
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
            let evaluation = evaluate(
                &model.valid(),
                self.valid,
                self.trainer.batcher,
                &self.device.clone().without_autodiff(),
            )?;
            let report = EpochReport {
                epoch,
                train_loss,
                valid_loss: evaluation.loss,
                valid_accuracy: evaluation.accuracy,
                valid_macro_f1: evaluation.macro_f1,
                learning_rate: rate,
                elapsed: epoch_start.elapsed(),
            };
            state.epoch = epoch;
            state.history.push(report.clone());
            let improved = report.valid_accuracy > state.best_accuracy;
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
        let record = best.ok_or_else(|| {
            Error::Config("no epoch was trained (the saved run already reached its end)".into())
        })?;
        let best_model = model
            .valid()
            .try_load_record(record)
            .map_err(|e| Error::Checkpoint {
                path: self
                    .dir
                    .as_ref()
                    .map(|d| d.best_weights())
                    .unwrap_or_default(),
                reason: e.to_string(),
            })?;
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
        let epoch_seed = config
            .seed
            .wrapping_add((epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.device.seed(epoch_seed);
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(epoch_seed));
        let loss_fn = CrossEntropyLossConfig::new()
            .with_smoothing((config.label_smoothing > 0.0).then_some(config.label_smoothing))
            .init(&self.device);
        let chunks: Vec<Vec<usize>> = order
            .chunks(config.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        prefetched(self.train, chunks, |batches| {
            let mut accumulator = GradientsAccumulator::new();
            let mut pending = 0;
            let mut loss_sum = 0.0;
            let mut rate = config.learning_rate;
            for (index, examples) in batches.enumerate() {
                let examples = examples?;
                let refs: Vec<&Example> = examples.iter().collect();
                let batch = self.trainer.batcher.batch(&refs, &self.device)?;
                let (logits, extra) = model.training_output(&batch)?;
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
                let value = loss.clone().into_scalar::<f32>();
                if !value.is_finite() {
                    return Err(Error::NonFiniteLoss {
                        loss: value,
                        epoch,
                        step: index + 1,
                    });
                }
                loss_sum += value;
                // Each batch of a group weighs by its size, as one large batch would.
                let group_start = index - index % config.accumulation;
                let group_end = (group_start + config.accumulation).min(sizes.len());
                let group_len: usize = sizes[group_start..group_end].iter().sum();
                let scaled = loss * (sizes[index] as f32 / group_len as f32);
                let grads = GradientsParams::from_grads(scaled.backward(), &model);
                accumulator.accumulate(&model, grads);
                pending += 1;
                if pending == config.accumulation || index + 1 == sizes.len() {
                    rate = config.schedule.rate(
                        config.learning_rate,
                        state.optimizer_steps,
                        total_steps,
                    );
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

    /// Loads the saved state, if the run folder has one.
    #[allow(clippy::type_complexity)]
    fn resume<M: Classifier>(
        &self,
        model: M,
        optimizer: &mut ModuleOptimizer,
    ) -> Result<Option<(M, RunState, Option<ModuleRecord>)>> {
        let Some(dir) = &self.dir else {
            return Err(Error::Config("resuming needs a run folder".into()));
        };
        let path = dir.state();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let state: RunState = serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if !state.config.same_run(&self.trainer.config) {
            return Err(Error::Config(format!(
                "{}: the saved run used other settings ({:?}); only epochs and early_stopping may change",
                path.display(),
                state.config
            )));
        }
        // A kill after the state was written but before the previous
        // epoch's files were removed leaves them behind.
        remove_stale_epochs(dir, state.epoch)?;
        let model_path = dir.epoch_file(state.epoch, "model");
        let model = load_checkpoint(model, &model_path)?;
        let optim_path = dir.epoch_file(state.epoch, "optim");
        let bytes = std::fs::read(&optim_path).map_err(|e| Error::io(&optim_path, e))?;
        let record = OptimizerRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
            .map_err(|e| Error::Checkpoint {
                path: optim_path,
                reason: e.to_string(),
            })?;
        *optimizer = std::mem::replace(optimizer, AdamConfig::new().init()).load_record(record);
        let best = if state.best_epoch == state.epoch {
            // `model.bpk` is written after the state that names its epoch
            // (see `save_state`): a kill in between leaves the previous best
            // there. The epoch's own file was written from the same record,
            // so its bytes are published again (bytes, not a re-encoded
            // record: burnpack lays out a decoded record in another order).
            let bytes = std::fs::read(&model_path).map_err(|e| Error::io(&model_path, e))?;
            let best_path = dir.best_weights();
            if std::fs::read(&best_path).ok().as_ref() != Some(&bytes) {
                write_atomic(&best_path, &bytes)?;
            }
            Some(decode_record(bytes, &model_path)?)
        } else if state.best_epoch > 0 {
            Some(read_record(&dir.best_weights())?)
        } else {
            None
        };
        // A kill between the state and the metrics leaves the metrics an
        // epoch behind; a resumed run with no epoch left to train would
        // otherwise never write them again.
        write_metrics(dir, &state.history)?;
        Ok(Some((model, state, best)))
    }
}

/// Writes the epoch's model and optimiser files, then the state file that
/// names them (the commit point: resume reads only what it names), then
/// `best` (the epoch's weights when it improved) as `model.bpk`, then removes
/// the other epochs' files.
///
/// `model.bpk` comes after the state so that it never holds an epoch the
/// state does not know yet: a kill between the two leaves the previous best,
/// which resume replaces from the epoch's own file.
fn save_state<M: Module>(
    dir: &RunDir,
    model: &M,
    optimizer: &ModuleOptimizer,
    state: &RunState,
    best: Option<ModuleRecord>,
) -> Result<()> {
    let model_path = dir.epoch_file(state.epoch, "model");
    write_record(model.valid().into_record(), &model_path)?;
    let optim_path = dir.epoch_file(state.epoch, "optim");
    let bytes = optimizer
        .to_record()
        .into_bytes()
        .map_err(|e| Error::Checkpoint {
            path: optim_path.clone(),
            reason: e.to_string(),
        })?;
    write_atomic(&optim_path, &bytes)?;
    let json = serde_json::to_string_pretty(state).map_err(|e| Error::Config(e.to_string()))?;
    write_atomic(&dir.state(), json.as_bytes())?;
    if let Some(record) = best {
        write_record(record, &dir.best_weights())?;
    }
    remove_stale_epochs(dir, state.epoch)
}

/// Removes every `training/epoch-N.*.bpk` but `keep`'s: all of the earlier
/// ones, not only the previous epoch's, since a kill may have left older
/// ones behind.
fn remove_stale_epochs(dir: &RunDir, keep: usize) -> Result<()> {
    let kept = [dir.epoch_file(keep, "model"), dir.epoch_file(keep, "optim")];
    let kept: Vec<_> = kept.iter().filter_map(|p| p.file_name()).collect();
    remove_files(&dir.training(), |name| {
        name.starts_with("epoch-")
            && name.ends_with(".bpk")
            && !kept.iter().any(|k| *k == std::ffi::OsStr::new(name))
    })
}

/// Removes the files of `folder` whose names match.
fn remove_files(folder: &Path, matches: impl Fn(&str) -> bool) -> Result<()> {
    let entries = std::fs::read_dir(folder).map_err(|e| Error::io(folder, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(folder, e))?;
        if entry.file_name().to_str().is_some_and(&matches) {
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(path, e));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// `metrics.csv`, `metrics.jsonl`, `loss.svg` and `accuracy.svg`.
fn write_metrics(dir: &RunDir, history: &[EpochReport]) -> Result<()> {
    let mut csv = String::from(
        "epoch,train_loss,valid_loss,valid_accuracy,valid_macro_f1,learning_rate,seconds\n",
    );
    let mut jsonl = String::new();
    for r in history {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{:.3}\n",
            r.epoch,
            r.train_loss,
            r.valid_loss,
            r.valid_accuracy,
            r.valid_macro_f1,
            r.learning_rate,
            r.elapsed.as_secs_f64()
        ));
        jsonl.push_str(&serde_json::to_string(r).map_err(|e| Error::Config(e.to_string()))?);
        jsonl.push('\n');
    }
    write_atomic(&dir.0.join("metrics.csv"), csv.as_bytes())?;
    write_atomic(&dir.0.join("metrics.jsonl"), jsonl.as_bytes())?;
    let series = |name: &str, colour: &str, f: fn(&EpochReport) -> f32| {
        let points = history
            .iter()
            .map(|r| (r.epoch as f64, f(r) as f64))
            .collect();
        (name.to_string(), colour.to_string(), points)
    };
    let loss = LineChart {
        title: "Loss".into(),
        x_label: "epoch".into(),
        series: vec![
            series("train", "#1f77b4", |r| r.train_loss),
            series("validation", "#ff7f0e", |r| r.valid_loss),
        ],
    };
    let accuracy = LineChart {
        title: "Validation accuracy and macro-F1".into(),
        x_label: "epoch".into(),
        series: vec![
            series("accuracy", "#2ca02c", |r| r.valid_accuracy),
            series("macro-F1", "#9467bd", |r| r.valid_macro_f1),
        ],
    };
    write_atomic(&dir.0.join("loss.svg"), loss.svg().as_bytes())?;
    write_atomic(&dir.0.join("accuracy.svg"), accuracy.svg().as_bytes())
}

/// Accuracy, loss and class probabilities on a dataset.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Fraction of samples whose most probable class is the label; for
    /// multi-label data, whose predicted set of classes is exactly right.
    pub accuracy: f32,
    /// Macro-averaged F1.
    pub macro_f1: f32,
    /// Mean cross-entropy (negative log-probability of the label); for
    /// multi-label data, mean binary cross-entropy per class.
    pub loss: f32,
    /// `[samples, classes]` probabilities, in dataset order: a softmax over
    /// the classes, or for multi-label data one sigmoid per class.
    pub probabilities: Tensor<2>,
    /// The class of every sample, in dataset order ([`Label::stratum`] for
    /// multi-label data).
    pub labels: Vec<usize>,
    /// Multi-label metrics at threshold 0.5 (multi-label data only).
    pub multi_label: Option<MultiLabelMetrics>,
}

/// Runs `model` (without autodiff) over `data` in batches of 64, the next
/// batches decoded on a worker thread.
pub fn evaluate<M: Classifier>(
    model: &M,
    data: &dyn Samples,
    batcher: &Batcher,
    device: &Device,
) -> Result<Evaluation> {
    if data.is_empty() {
        return Err(Error::Config("cannot evaluate on an empty dataset".into()));
    }
    let multi = data.is_multi_label();
    let indices: Vec<usize> = (0..data.len()).collect();
    let chunks = indices.chunks(64).map(<[usize]>::to_vec).collect();
    let parts = prefetched(data, chunks, |batches| {
        let mut parts = Vec::new();
        for examples in batches {
            let examples = examples?;
            let refs: Vec<&Example> = examples.iter().collect();
            let batch = batcher.batch(&refs, device)?;
            let logits = model.logits(&batch)?;
            parts.push(if multi {
                sigmoid(logits)
            } else {
                softmax(logits, 1)
            });
        }
        Ok(parts)
    })?;
    let probabilities = Tensor::cat(parts, 0);
    let values = probabilities
        .clone()
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Invalid(format!("reading probabilities: {e:?}")))?;
    let classes = probabilities.dims()[1];
    let labels = data.label_list();
    let nll = |p: f32| -(p.max(1e-12)).ln();
    if multi {
        let targets: Vec<Vec<bool>> = data
            .targets()
            .into_iter()
            .map(|t| match t {
                Label::Multi(flags) => flags,
                Label::Single(c) => (0..classes).map(|k| k == c).collect(),
            })
            .collect();
        let metrics = MultiLabelMetrics::new(&probabilities, &targets, 0.5)?;
        let loss = targets
            .iter()
            .flatten()
            .zip(&values)
            .map(|(&t, &p)| if t { nll(p) } else { nll(1.0 - p) })
            .sum::<f32>()
            / values.len() as f32;
        return Ok(Evaluation {
            accuracy: metrics.subset_accuracy(),
            macro_f1: metrics.macro_f1(),
            loss,
            probabilities,
            labels,
            multi_label: Some(metrics),
        });
    }
    let matrix = ConfusionMatrix::from_scores(&probabilities, &labels)?;
    let loss = labels
        .iter()
        .enumerate()
        .map(|(i, &y)| nll(values[i * classes + y]))
        .sum::<f32>()
        / labels.len() as f32;
    Ok(Evaluation {
        accuracy: matrix.accuracy(),
        macro_f1: matrix.macro_f1(),
        loss,
        probabilities,
        labels,
        multi_label: None,
    })
}

/// Fraction of rows of `scores` `[samples, classes]` whose arg-max is the label.
pub fn accuracy(scores: &Tensor<2>, labels: &[usize]) -> Result<f32> {
    Ok(ConfusionMatrix::from_scores(scores, labels)?.accuracy())
}

/// Writes the model's weights to `path` atomically: a crash mid-write leaves
/// the previous checkpoint intact.
pub fn save_checkpoint<M: Module>(model: &M, path: &Path) -> Result<()> {
    write_record(model.clone().into_record(), path)
}

fn write_record(record: ModuleRecord, path: &Path) -> Result<()> {
    let bytes = record.into_bytes().map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}

/// The suffix of the temporary file [`write_atomic`] writes before renaming it.
const PARTIAL: &str = ".partial";

/// Writes `bytes` to a temporary file next to `path`, flushes it to disk,
/// renames it over `path` and flushes the folder, so that the rename itself
/// is on disk before any later file (the state file that names this one)
/// can be.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let fail = |e: std::io::Error| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let fault = fault::next(path)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(PARTIAL);
    let tmp = path.with_file_name(name);
    let mut file = std::fs::File::create(&tmp).map_err(fail)?;
    if fault == Some(fault::Stage::Partial) {
        file.write_all(&bytes[..bytes.len() / 2]).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        fault::pause(fault::Stage::Partial, &tmp);
    }
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(fail)?;
    sync_folder(path.parent().unwrap_or(Path::new("."))).map_err(fail)?;
    if fault == Some(fault::Stage::Renamed) {
        fault::pause(fault::Stage::Renamed, path);
    }
    Ok(())
}

/// Flushes a folder's entries (a rename is durable only then).
#[cfg(unix)]
fn sync_folder(folder: &Path) -> std::io::Result<()> {
    std::fs::File::open(folder)?.sync_all()
}

/// Windows cannot open a folder as a file; its renames are flushed with the
/// file system's journal.
#[cfg(not(unix))]
fn sync_folder(_folder: &Path) -> std::io::Result<()> {
    Ok(())
}

/// A testing hook that stops the process in the middle of a checkpoint
/// write, so that a test can kill it exactly there (a kill at a random
/// moment would almost never land inside a write).
///
/// `POLYMODAL_FAULT_INJECT=<file name>:<n>[:renamed]`: at the `n`-th (from 1)
/// write in this process of a run-folder file named `<file name>` (such as
/// `state.json`, `model.bpk`, `epoch-2.optim.bpk`, `metrics.csv`), the
/// process writes the first half of the bytes to the temporary file and
/// flushes them (with `:renamed`: writes the whole file and renames it into
/// place), prints `polymodal: fault injection: paused …` to stderr and
/// sleeps, for the test to kill it with SIGKILL. Should no kill come, it
/// aborts after ten minutes. Unset, it costs one look-up per write.
mod fault {
    use std::path::Path;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use polymodal_core::{Error, Result};

    /// The environment variable.
    pub const VARIABLE: &str = "POLYMODAL_FAULT_INJECT";

    /// Where in a write the process stops.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Stage {
        /// Half of the temporary file written.
        Partial,
        /// The file complete and renamed into place.
        Renamed,
    }

    /// A parsed `POLYMODAL_FAULT_INJECT`.
    #[derive(Debug, PartialEq, Eq)]
    pub struct Point {
        /// The file name (no folder) whose write stops.
        pub file: String,
        /// Which write of that file in this process (from 1).
        pub occurrence: usize,
        /// Where in the write.
        pub stage: Stage,
    }

    /// Parses `<file name>:<n>[:renamed]`.
    pub fn parse(spec: &str) -> Result<Point> {
        let bad = || {
            Error::Config(format!(
                "{VARIABLE}={spec:?}: expected <file name>:<n>[:renamed], e.g. state.json:2"
            ))
        };
        let mut parts = spec.split(':');
        let file = parts.next().filter(|f| !f.is_empty()).ok_or_else(bad)?;
        let occurrence = parts
            .next()
            .and_then(|n| n.parse().ok())
            .filter(|&n| n > 0)
            .ok_or_else(bad)?;
        let stage = match parts.next() {
            None => Stage::Partial,
            Some("renamed") => Stage::Renamed,
            Some(_) => return Err(bad()),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Point {
            file: file.to_string(),
            occurrence,
            stage,
        })
    }

    /// Counts a write to `path`; the stage to stop at if this is the one.
    pub fn next(path: &Path) -> Result<Option<Stage>> {
        // Read once: the variable is set when the process starts.
        static POINT: OnceLock<std::result::Result<Option<Point>, String>> = OnceLock::new();
        static WRITES: AtomicUsize = AtomicUsize::new(0);
        let point = POINT.get_or_init(|| match std::env::var(VARIABLE) {
            Ok(spec) => parse(&spec).map(Some).map_err(|e| e.to_string()),
            Err(_) => Ok(None),
        });
        let point = match point {
            Ok(Some(point)) => point,
            Ok(None) => return Ok(None),
            Err(message) => return Err(Error::Config(message.clone())),
        };
        if path.file_name().and_then(|n| n.to_str()) != Some(point.file.as_str()) {
            return Ok(None);
        }
        let count = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
        Ok((count == point.occurrence).then_some(point.stage))
    }

    /// Announces the stop on stderr and waits to be killed.
    pub fn pause(stage: Stage, path: &Path) -> ! {
        let what = match stage {
            Stage::Partial => "half-written",
            Stage::Renamed => "renamed",
        };
        eprintln!(
            "polymodal: fault injection: paused with {} {what}",
            path.display()
        );
        std::thread::sleep(Duration::from_secs(600));
        std::process::abort()
    }
}

fn read_record(path: &Path) -> Result<ModuleRecord> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_record(bytes, path)
}

/// Decodes the bytes of the weights file `path`.
fn decode_record(bytes: Vec<u8>, path: &Path) -> Result<ModuleRecord> {
    ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes)).map_err(|e| {
        Error::Checkpoint {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    })
}

/// Loads weights written by [`save_checkpoint`] into `model` (built with the
/// same configuration), cast to the dtype of `model`'s parameters (f16 on a
/// device configured for it); names the file and the mismatch on failure.
pub fn load_checkpoint<M: Module>(model: M, path: &Path) -> Result<M> {
    let record = read_record(path)?.cast_to_module_dtype();
    model
        .try_load_record(record)
        .map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_reaches_the_floor() {
        let schedule = LrSchedule::WarmupCosine {
            warmup_steps: 4,
            min_factor: 0.1,
        };
        let rates: Vec<f64> = (0..14).map(|s| schedule.rate(1.0, s, 14)).collect();
        assert_eq!(&rates[..4], &[0.25, 0.5, 0.75, 1.0]);
        assert!((rates[4] - 1.0).abs() < 1e-12);
        assert!(rates[4..].windows(2).all(|w| w[1] < w[0]), "{rates:?}");
        // Half-way through the decay: the mean of the peak and the floor.
        assert!((schedule.rate(1.0, 9, 14) - 0.55).abs() < 1e-12);
        assert!((schedule.rate(1.0, 14, 14) - 0.1).abs() < 1e-12);
        assert_eq!(LrSchedule::Constant.rate(0.3, 99, 10), 0.3);
    }

    #[test]
    fn bad_settings_name_the_field() {
        let bad = [
            TrainConfig {
                accumulation: 0,
                ..Default::default()
            },
            TrainConfig {
                label_smoothing: 1.0,
                ..Default::default()
            },
            TrainConfig {
                clip_grad_norm: Some(-1.0),
                ..Default::default()
            },
            TrainConfig {
                early_stopping: Some(0),
                ..Default::default()
            },
        ];
        for (config, field) in bad.iter().zip([
            "accumulation",
            "label_smoothing",
            "clip_grad_norm",
            "early_stopping",
        ]) {
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(field), "{message}");
        }
        let toml_like: TrainConfig = serde_json::from_str(
            r#"{"epochs": 3, "schedule": {"kind": "warmup-cosine", "warmup_steps": 10}}"#,
        )
        .unwrap();
        assert_eq!(toml_like.batch_size, 32);
        assert!(serde_json::from_str::<TrainConfig>(r#"{"epoch": 3}"#).is_err());
    }

    #[test]
    fn fault_injection_points_parse() {
        assert_eq!(
            fault::parse("state.json:2").unwrap(),
            fault::Point {
                file: "state.json".into(),
                occurrence: 2,
                stage: fault::Stage::Partial,
            }
        );
        assert_eq!(
            fault::parse("model.bpk:1:renamed").unwrap().stage,
            fault::Stage::Renamed
        );
        for bad in [
            "",
            "state.json",
            "state.json:0",
            "state.json:x",
            "a:1:later",
            "a:1:renamed:2",
        ] {
            let message = fault::parse(bad).unwrap_err().to_string();
            assert!(message.contains(fault::VARIABLE), "{message}");
        }
    }

    #[test]
    fn atomic_writes_leave_no_partial_file() {
        let dir = std::env::temp_dir().join(format!("polymodal-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.bpk");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
