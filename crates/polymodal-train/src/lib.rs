//! Training for polymodal: JSONL manifests of media files, decoding to
//! features on worker threads, batching with presence masks, a training loop
//! on Burn's autodiff, accuracy, and checkpoints on disk.
//!
//! The data flow is: manifest → [`load_dataset`] (decode) → [`Batcher`]
//! (tensors on a device) → a [`Classifier`] → [`Trainer::train`] / [`evaluate`].
//!
//! ```
//! use polymodal_train::{accuracy, TrainConfig};
//! use burn::prelude::*;
//!
//! let scores = Tensor::<2>::from_data([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], &Device::flex());
//! assert_eq!(accuracy(&scores, &[0, 1, 1])?, 2.0 / 3.0);
//! assert_eq!(TrainConfig::default().batch_size, 32);
//! # Ok::<(), polymodal_core::Error>(())
//! ```

mod avmnist;
mod batch;
mod chart;
mod features;
mod manifest;
mod metrics;
mod source;
mod split;
mod trainer;

pub use avmnist::{AvMnist, avmnist_features, load_avmnist};
pub use batch::Batcher;
pub use chart::{Bar, BarChart, LineChart, Series};
pub use features::{
    AudioFeatures, Dataset, Example, FeatureConfig, Features, VideoFeatures, load_dataset,
};
pub use manifest::{ManifestEntry, class_names, read_manifest};
pub use metrics::{ConfusionMatrix, argmax, recall_at_k};
pub use source::{FeatureCache, LazyDataset, Samples};
pub use split::{k_folds, stratified_holdout};
pub use trainer::{
    Classifier, EpochReport, Evaluation, LrSchedule, Progress, RunDir, TrainConfig, TrainReport,
    Trainer, accuracy, evaluate, load_checkpoint, save_checkpoint,
};
