//! Weights files and the atomic writes behind every run-folder file.
//!
//! Weights are burnpack records: [`save_checkpoint`] writes a model's,
//! [`load_checkpoint`] loads them back; [`WEIGHTS_FILE`] is the name a model
//! or run folder gives its weights. [`write_atomic`] writes any file so that
//! a crash leaves either the previous or the new content, never a mix.

use std::path::Path;

use burn::module::Module;
use burn::store::ModuleRecord;

use polymodal_core::{Error, Result};

use crate::trainer::fault;

/// The name of the weights file in a run folder (the best epoch's weights,
/// see [`RunDir::best_weights`]) and in a model folder: `model.bpk`.
///
/// [`RunDir::best_weights`]: crate::RunDir::best_weights
pub const WEIGHTS_FILE: &str = "model.bpk";

/// Writes the model's weights to `path` atomically: a crash mid-write leaves
/// the previous checkpoint intact.
pub fn save_checkpoint<M: Module>(model: &M, path: &Path) -> Result<()> {
    write_record(model.clone().into_record(), path)
}

pub(super) fn write_record(record: ModuleRecord, path: &Path) -> Result<()> {
    let bytes = record.into_bytes().map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}

/// The suffix of the temporary file [`write_atomic`] writes before renaming it.
pub(super) const PARTIAL: &str = ".partial";

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

pub(super) fn read_record(path: &Path) -> Result<ModuleRecord> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_record(bytes, path)
}

/// Decodes the bytes of the weights file `path`.
pub(super) fn decode_record(bytes: Vec<u8>, path: &Path) -> Result<ModuleRecord> {
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
    use burn::prelude::Device;

    /// Weights of another shape (a head saved for a narrower fused vector,
    /// say, by an older version of a fusion layer) are an error naming the
    /// file, not a shape panic at the first forward pass.
    #[test]
    fn weights_of_another_shape_are_refused() {
        // Holds the generator so a seeded run on another test thread is
        // not changed by this test's draws.
        let _rng = crate::RngGuard::hold();
        let device = Device::flex();
        let dir = std::env::temp_dir().join(format!("polymodal-shape-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("head.bpk");
        save_checkpoint(&burn::nn::LinearConfig::new(8, 3).init(&device), &path).unwrap();
        let wider = burn::nn::LinearConfig::new(16, 3).init(&device);
        let error = load_checkpoint(wider, &path).unwrap_err().to_string();
        assert!(error.contains("head.bpk"), "{error}");
        let same = burn::nn::LinearConfig::new(8, 3).init(&device);
        assert!(load_checkpoint(same, &path).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
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
