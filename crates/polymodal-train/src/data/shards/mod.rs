//! Training data as WebDataset-style tar shards, the format open_clip and
//! other large multimodal trainers read: one sample's files grouped by key
//! inside a tar, shards listed by a brace pattern.
//!
//! - `pattern`: brace patterns ([`expand_pattern`]) and shard ranges
//!   ([`shard_range`]) that split a collection into independent jobs;
//! - `index`: one shard's samples ([`read_shard`]) and a member's bytes;
//! - `write`: a manifest written as shards ([`write_shards`]);
//! - `stream`: the order a worker reads in ([`stream_order`]: shards split
//!   between workers and shuffled per epoch, a shuffle buffer), and the
//!   position a stream resumes from ([`StreamPosition`]);
//! - `dataset`: [`ShardDataset`] (the trainer's [`crate::Samples`] over
//!   shards) and [`ShardStream`].

mod dataset;
mod index;
mod pattern;
mod stream;
mod write;

pub use dataset::{ShardDataset, ShardStream, is_shard_path};
pub use index::{Member, ShardSample, modality_of_extension, read_shard};
pub use pattern::{expand_pattern, shard_range};
pub use stream::{StreamConfig, StreamPosition, stream_order};
pub use write::{WrittenShards, write_shards};
