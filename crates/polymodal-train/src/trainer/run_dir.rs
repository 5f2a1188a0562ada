//! The run folder: where its files lie ([`RunDir`]), the metrics files
//! (CSV, JSONL and SVG charts), and the removal of files no state names.

use std::path::{Path, PathBuf};

use polymodal_core::{Error, Result};

use crate::chart::{LineChart, Series};
use crate::trainer::checkpoint::{PARTIAL, WEIGHTS_FILE, write_atomic};
use crate::trainer::report::EpochReport;

/// The files of a run folder:
/// - `model.bpk` ([`WEIGHTS_FILE`]): the best epoch's weights (what
///   `polymodal eval` loads);
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
/// killing the CLI, with the trainer's `POLYMODAL_FAULT_INJECT` hook to stop
/// it inside a write).
#[derive(Debug, Clone)]
pub struct RunDir(pub PathBuf);

impl RunDir {
    /// The best model's weights.
    pub fn best_weights(&self) -> PathBuf {
        self.0.join(WEIGHTS_FILE)
    }

    pub(super) fn training(&self) -> PathBuf {
        self.0.join("training")
    }

    pub(super) fn state(&self) -> PathBuf {
        self.training().join("state.json")
    }

    pub(super) fn epoch_file(&self, epoch: usize, what: &str) -> PathBuf {
        self.training().join(format!("epoch-{epoch}.{what}.bpk"))
    }

    /// Creates the folder and its `training` folder, and removes the
    /// temporary files a killed run left.
    pub(super) fn prepare(&self) -> Result<()> {
        std::fs::create_dir_all(self.training()).map_err(|e| Error::io(self.training(), e))?;
        // A process killed while writing leaves its temporary file; no
        // state names one, so it is never read, only removed.
        for folder in [self.0.clone(), self.training()] {
            remove_files(&folder, |name| name.ends_with(PARTIAL))?;
        }
        Ok(())
    }
}

/// Removes every `training/epoch-N.*.bpk` but `keep`'s: all of the earlier
/// ones, not only the previous epoch's, since a kill may have left older
/// ones behind.
pub(super) fn remove_stale_epochs(dir: &RunDir, keep: usize) -> Result<()> {
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
pub(super) fn write_metrics(dir: &RunDir, history: &[EpochReport]) -> Result<()> {
    let (csv, jsonl) = metrics_tables(history)?;
    write_atomic(&dir.0.join("metrics.csv"), csv.as_bytes())?;
    write_atomic(&dir.0.join("metrics.jsonl"), jsonl.as_bytes())?;
    let (loss, accuracy) = curves(history);
    write_atomic(&dir.0.join("loss.svg"), loss.svg().as_bytes())?;
    write_atomic(&dir.0.join("accuracy.svg"), accuracy.svg().as_bytes())
}

/// The text of `metrics.csv` and of `metrics.jsonl`: one row per epoch.
fn metrics_tables(history: &[EpochReport]) -> Result<(String, String)> {
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
    Ok((csv, jsonl))
}

/// The loss chart and the validation accuracy and macro-F1 chart.
fn curves(history: &[EpochReport]) -> (LineChart, LineChart) {
    let series = |name: &str, colour: &str, f: fn(&EpochReport) -> f32| -> Series {
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
    (loss, accuracy)
}
