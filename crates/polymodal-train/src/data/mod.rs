//! Samples for training: per-sample features, the on-disk feature cache,
//! datasets (decoded up front or lazily per batch) and the worker threads
//! that decode them.
//!
//! One file per concern, each depending only on those above it:
//! - `features`: [`FeatureConfig`], [`Features`] and computing the features
//!   of one media file;
//! - `cache`: the on-disk [`FeatureCache`] and its entry format;
//! - `parallel`: a map over all cores and a loader running ahead of its
//!   consumer;
//! - `dataset`: [`Example`], [`Label`], [`Dataset`] and the [`Samples`] the
//!   trainer draws batches from;
//! - `lazy`: [`LazyDataset`] and [`load_dataset`], which decode a manifest's
//!   entries;
//! - `shards`: WebDataset-style tar shards ([`ShardDataset`], streams,
//!   writing a manifest as shards);
//! - `splits`: an experiment's `[data]` and `[text]` tables ([`DataConfig`],
//!   [`TextConfig`]) and the [`Splits`] they load.

mod cache;
mod dataset;
mod features;
mod lazy;
mod parallel;
pub mod shards;
mod splits;

pub use cache::FeatureCache;
pub use dataset::{Dataset, Example, Label, Samples};
pub use features::{
    AudioFeatures, Embedded, FeatureConfig, Features, MAX_CLIP_SAMPLES, Normalization,
    VideoFeatures,
};
pub use lazy::{LazyDataset, load_dataset};
pub use shards::{ShardDataset, ShardStream, StreamConfig, StreamPosition};
pub use splits::{DataConfig, Splits, TextConfig};

pub(crate) use dataset::prefetched;
pub(crate) use features::{Media, audio_features};
pub(crate) use parallel::parallel_map;
