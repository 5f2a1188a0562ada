//! Training for polymodal: JSONL or CSV manifests of media files, decoding
//! to features (all at once on worker threads, or lazily per batch with
//! prefetching and an on-disk feature cache), batching with presence masks,
//! the training loop (Adam, warm-up + cosine schedule, gradient clipping and
//! accumulation, label smoothing, early stopping, exactly resumable run
//! folders with metrics and charts), metrics (accuracy, macro-F1, confusion
//! matrix, recall@K; multi-label F1 and mAP) and the AV-MNIST benchmark
//! loader. Single-label and multi-label (`labels` lists in the manifest,
//! binary cross-entropy) classification. See `docs/training.md`.
//!
//! The data flow is: manifest → [`load_dataset`] / [`LazyDataset`] →
//! [`Batcher`] (tensors on a device) → a [`Classifier`] → [`Trainer::train`] /
//! [`evaluate`].
//!
//! The crate's folders follow the same flow: `manifest`; `data` (per-sample
//! features, the feature cache, datasets and the worker threads that decode
//! them); `batch`; `trainer` (the classifier trait, settings, reports, the
//! run loop and resume, the run folder, checkpoints — named
//! [`WEIGHTS_FILE`] in run and model folders — and evaluation); then
//! `model` (the [`MultimodalClassifier`] and model folders, [`ModelDir`]),
//! `metrics`, `losses`, `split`, `chart` and the `avmnist` loader; and
//! [`experiment`], a whole run described by a TOML file (`polymodal train
//! --config`): its data splits (a hold-out of the training set when no
//! validation set is given, tokenizers trained on the training texts),
//! model, encoders and settings.
//!
//! ```
//! use burn::prelude::*;
//! use polymodal_train::{ConfusionMatrix, LrSchedule, TrainConfig};
//!
//! let scores = Tensor::<2>::from_data([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], &Device::flex());
//! let matrix = ConfusionMatrix::from_scores(&scores, &[0, 1, 1])?;
//! assert_eq!(matrix.accuracy(), 2.0 / 3.0);
//! assert_eq!(matrix.counts()[1], vec![1, 1]);
//!
//! // Settings as a TOML `[train]` table would give them: defaults for the rest.
//! let config = TrainConfig {
//!     epochs: 20,
//!     schedule: LrSchedule::WarmupCosine { warmup_steps: 100, min_factor: 0.05 },
//!     ..TrainConfig::default()
//! };
//! config.validate()?;
//! assert!((config.schedule.rate(1e-3, 49, 1000) - 5e-4).abs() < 1e-12);
//! # Ok::<(), polymodal_core::Error>(())
//! ```

mod avmnist;
mod batch;
mod chart;
mod data;
pub mod experiment;
mod losses;
mod manifest;
mod metrics;
mod model;
mod optim;
mod split;
mod trainer;

pub use avmnist::{
    AvMnist, AvMnistPairs, AvMnistSplits, avmnist_features, load_avmnist, open_avmnist,
};
pub use batch::Batcher;
pub use chart::{Bar, BarChart, LineChart, Series};
pub use data::{
    AudioFeatures, DataConfig, Dataset, Embedded, Example, FeatureCache, FeatureConfig, Features,
    Label, LazyDataset, MAX_CLIP_SAMPLES, Normalization, Samples, ShardDataset, ShardStream,
    Splits, StreamConfig, StreamPosition, TextConfig, VideoFeatures, load_dataset, shards,
};
pub use losses::binary_cross_entropy_with_logits;
pub use manifest::{LabelNames, ManifestEntry, class_names, read_manifest};
pub use metrics::{ConfusionMatrix, MultiLabelMetrics, argmax, recall_at_k};
pub use model::{
    ClassifierConfig, EmbedPlan, EmbeddedSamples, EncoderChoice, EncoderChoices, EncoderMode,
    FolderEmbedder, ModelCard, ModelDir, MultimodalClassifier, embed_files, evaluate_dir,
    folder_features, predict_files, weights_sha256,
};
pub use optim::{FusedAdam, FusedAdamConfig};
pub use split::{k_folds, stratified_holdout};
pub use trainer::{
    Classifier, EpochReport, Evaluation, LrSchedule, Progress, RngGuard, RunDir, TrainConfig,
    TrainReport, Trainer, WEIGHTS_FILE, accuracy, evaluate, load_checkpoint, save_checkpoint,
    write_atomic,
};
