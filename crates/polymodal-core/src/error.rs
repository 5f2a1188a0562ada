use std::path::PathBuf;

use crate::Modality;

/// Errors shared by every polymodal crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A media file was read but is not valid media of the expected kind.
    #[error("{path}: cannot decode {what}: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What was being decoded ("audio", "image", ...).
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A tensor or value does not have the shape or range required.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A model needs a modality the batch does not carry.
    #[error("the batch has no `{0}` input but the model needs it")]
    MissingModality(Modality),
    /// A configuration or manifest is wrong.
    #[error("{0}")]
    Config(String),
    /// Training produced a loss that is NaN or infinite.
    #[error(
        "non-finite loss ({loss}) at epoch {epoch}, step {step}; the last good checkpoint is kept"
    )]
    NonFiniteLoss {
        /// The loss value.
        loss: f32,
        /// Epoch (1-based).
        epoch: usize,
        /// Step within the epoch (1-based).
        step: usize,
    },
    /// A compute device could not be had (no wgpu adapter, bad device name).
    #[error("device: {0}")]
    Device(String),
    /// Pretrained weights could not be loaded (missing tensors, wrong
    /// shapes, an unsupported file).
    #[error("weights {path}: {reason}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
    /// A checkpoint could not be written or loaded.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A decoding error on `path`.
    pub fn decode(path: impl Into<PathBuf>, what: &'static str, reason: impl ToString) -> Self {
        Self::Decode {
            path: path.into(),
            what,
            reason: reason.to_string(),
        }
    }
}

/// `Result` with polymodal's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
