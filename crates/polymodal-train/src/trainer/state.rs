//! The resumable state of a run after an epoch ([`RunState`]): saving it
//! with the files it names, and resuming from it.

use std::path::Path;

use burn::module::Module;
use burn::optim::{ModuleOptimizer, OptimizerRecord};
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};

use polymodal_core::{Error, Result};

use crate::optim::FusedAdamConfig;
use crate::trainer::checkpoint::{
    decode_record, load_checkpoint, read_record, write_atomic, write_record,
};
use crate::trainer::config::TrainConfig;
use crate::trainer::report::EpochReport;
use crate::trainer::run_dir::{RunDir, remove_stale_epochs, write_metrics};

/// The resumable state after an epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RunState {
    pub(super) config: TrainConfig,
    pub(super) epoch: usize,
    pub(super) best_epoch: usize,
    pub(super) best_accuracy: f32,
    pub(super) optimizer_steps: usize,
    pub(super) history: Vec<EpochReport>,
}

impl RunState {
    /// The state before the first epoch of a run with `config`.
    pub(super) fn new(config: TrainConfig) -> Self {
        Self {
            config,
            epoch: 0,
            best_epoch: 0,
            best_accuracy: f32::NEG_INFINITY,
            optimizer_steps: 0,
            history: Vec::new(),
        }
    }

    /// Whether the epoch `report` beats the best so far: a higher
    /// validation accuracy, or the same accuracy at a lower validation loss.
    /// Small validation sets tie often, and the first epoch of a tie is the
    /// least trained one. A NaN loss never wins a tie.
    pub(super) fn improves(&self, report: &EpochReport) -> bool {
        if report.valid_accuracy != self.best_accuracy {
            return report.valid_accuracy > self.best_accuracy;
        }
        let best_loss = self
            .history
            .iter()
            .find(|r| r.epoch == self.best_epoch)
            .map_or(f32::INFINITY, |r| r.valid_loss);
        report.valid_loss < best_loss
    }
}

/// A resumed run: the model of the last finished epoch, the state, and the
/// best epoch's weights (if an epoch has been finished).
pub(super) type Resumed<M> = (M, RunState, Option<ModuleRecord>);

/// Writes the epoch's model and optimiser files, then the state file that
/// names them (the commit point: resume reads only what it names), then
/// `best` (the epoch's weights when it improved) as `model.bpk`, then removes
/// the other epochs' files.
///
/// `model.bpk` comes after the state so that it never holds an epoch the
/// state does not know yet: a kill between the two leaves the previous best,
/// which resume replaces from the epoch's own file.
pub(super) fn save_state<M: Module>(
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

/// Loads the state saved in `dir`, if it has one, into `model` and
/// `optimizer`; a saved run with other settings than `config` (but the
/// epochs and the patience) is an error.
pub(super) fn resume<M: Module>(
    dir: &RunDir,
    config: &TrainConfig,
    model: M,
    optimizer: &mut ModuleOptimizer,
) -> Result<Option<Resumed<M>>> {
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
    if !state.config.same_run(config) {
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
    load_optimizer(optimizer, &dir.epoch_file(state.epoch, "optim"))?;
    let best = best_record(dir, &state, &model_path)?;
    // A kill between the state and the metrics leaves the metrics an
    // epoch behind; a resumed run with no epoch left to train would
    // otherwise never write them again.
    write_metrics(dir, &state.history)?;
    Ok(Some((model, state, best)))
}

/// Replaces `optimizer` by the one saved in `optim_path`.
fn load_optimizer(optimizer: &mut ModuleOptimizer, optim_path: &Path) -> Result<()> {
    let bytes = std::fs::read(optim_path).map_err(|e| Error::io(optim_path, e))?;
    let record =
        OptimizerRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes)).map_err(|e| {
            Error::Checkpoint {
                path: optim_path.to_path_buf(),
                reason: e.to_string(),
            }
        })?;
    *optimizer = std::mem::replace(optimizer, FusedAdamConfig::new().init()).load_record(record);
    Ok(())
}

/// The best epoch's weights of a resumed `state` (`model_path`: the last
/// epoch's weights file), republishing them as `model.bpk` when the last
/// epoch was the best.
fn best_record(dir: &RunDir, state: &RunState, model_path: &Path) -> Result<Option<ModuleRecord>> {
    Ok(if state.best_epoch == state.epoch {
        // `model.bpk` is written after the state that names its epoch
        // (see `save_state`): a kill in between leaves the previous best
        // there. The epoch's own file was written from the same record,
        // so its bytes are published again (bytes, not a re-encoded
        // record: burnpack lays out a decoded record in another order).
        let bytes = std::fs::read(model_path).map_err(|e| Error::io(model_path, e))?;
        let best_path = dir.best_weights();
        if std::fs::read(&best_path).ok().as_ref() != Some(&bytes) {
            write_atomic(&best_path, &bytes)?;
        }
        Some(decode_record(bytes, model_path)?)
    } else if state.best_epoch > 0 {
        Some(read_record(&dir.best_weights())?)
    } else {
        None
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn epoch(epoch: usize, valid_accuracy: f32, valid_loss: f32) -> EpochReport {
        EpochReport {
            epoch,
            train_loss: 0.0,
            valid_loss,
            valid_accuracy,
            valid_macro_f1: valid_accuracy,
            learning_rate: 1e-3,
            elapsed: Duration::ZERO,
        }
    }

    /// The best epoch so far is epoch 2 (accuracy 0.9, loss 0.3).
    #[test]
    fn accuracy_decides_and_validation_loss_breaks_ties() {
        let mut state = RunState::new(TrainConfig::default());
        assert!(
            state.improves(&epoch(1, 0.5, 0.9)),
            "the first epoch is the best so far"
        );
        state.history = vec![epoch(1, 0.5, 0.9), epoch(2, 0.9, 0.3)];
        (state.epoch, state.best_epoch, state.best_accuracy) = (2, 2, 0.9);
        assert!(state.improves(&epoch(3, 0.95, 0.8)), "higher accuracy wins");
        assert!(
            !state.improves(&epoch(3, 0.85, 0.1)),
            "lower accuracy loses"
        );
        assert!(
            state.improves(&epoch(3, 0.9, 0.2)),
            "a tie at a lower loss wins"
        );
        assert!(
            !state.improves(&epoch(3, 0.9, 0.3)),
            "an exact tie keeps the first"
        );
        assert!(
            !state.improves(&epoch(3, 0.9, 0.4)),
            "a tie at a higher loss loses"
        );
        assert!(
            !state.improves(&epoch(3, 0.9, f32::NAN)),
            "a NaN loss never wins"
        );
    }
}
