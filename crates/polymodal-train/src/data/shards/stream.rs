//! The order a stream reads shards in: shards split between workers and
//! shuffled per epoch, samples read shard by shard through a shuffle
//! buffer, and a position to resume from.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use polymodal_core::{Error, Result};

/// How samples are streamed from shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// Samples held in the shuffle buffer: each sample read goes in, a
    /// random one comes out (WebDataset's `shuffle`). 0 or 1: shard order.
    pub shuffle_buffer: usize,
    /// Seed of the shard order and the buffer, with the epoch.
    pub seed: u64,
    /// This worker's number, below `workers`.
    pub worker: usize,
    /// Workers sharing the shards: worker `w` reads shards `w`, `w + n`,
    /// `w + 2n`, ... so together they read every shard once.
    pub workers: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            shuffle_buffer: 1000,
            seed: 0,
            worker: 0,
            workers: 1,
        }
    }
}

impl StreamConfig {
    /// Checks the worker numbers.
    pub fn validate(&self) -> Result<()> {
        if self.workers == 0 || self.worker >= self.workers {
            return Err(Error::Config(format!(
                "stream worker {} of {}: the worker must be below the number of workers (at least 1)",
                self.worker, self.workers
            )));
        }
        Ok(())
    }
}

/// Where a stream is: the epoch, and how many of its samples were given out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// Epoch (each reshuffles the shards and the buffer).
    pub epoch: u64,
    /// Samples of the epoch already given out.
    pub consumed: usize,
}

/// The order worker `config.worker` reads samples in during `epoch`, as
/// the items of `shards` (one list per shard, each in the shard's order):
/// its shards shuffled, each read in order through the shuffle buffer.
/// The same arguments give the same order, which is what makes a stream
/// resumable.
pub fn stream_order<T: Copy>(shards: &[Vec<T>], config: &StreamConfig, epoch: u64) -> Vec<T> {
    let mut rng = StdRng::seed_from_u64(config.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let workers = config.workers.max(1);
    let mut mine: Vec<&Vec<T>> = shards.iter().skip(config.worker).step_by(workers).collect();
    mine.shuffle(&mut rng);
    let mut order = Vec::with_capacity(mine.iter().map(|s| s.len()).sum());
    let mut buffer: Vec<T> = Vec::with_capacity(config.shuffle_buffer);
    for &item in mine.iter().flat_map(|s| s.iter()) {
        buffer.push(item);
        if buffer.len() >= config.shuffle_buffer.max(1) {
            let k = rng.random_range(0..buffer.len());
            order.push(buffer.swap_remove(k));
        }
    }
    while !buffer.is_empty() {
        let k = rng.random_range(0..buffer.len());
        order.push(buffer.swap_remove(k));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards() -> Vec<Vec<usize>> {
        // Uneven shards, as a last shard usually is.
        let sizes = [5, 5, 5, 3, 1, 4, 5];
        let mut next = 0;
        sizes
            .iter()
            .map(|&n| {
                let shard = (next..next + n).collect();
                next += n;
                shard
            })
            .collect()
    }

    #[test]
    fn an_epoch_gives_every_sample_once_and_epochs_differ() {
        let shards = shards();
        let config = StreamConfig {
            shuffle_buffer: 4,
            ..StreamConfig::default()
        };
        let first = stream_order(&shards, &config, 0);
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..28).collect::<Vec<_>>());
        assert_eq!(first, stream_order(&shards, &config, 0));
        assert_ne!(first, stream_order(&shards, &config, 1));
        // Without a buffer each shard is read in its own order.
        let plain = stream_order(
            &shards,
            &StreamConfig {
                shuffle_buffer: 0,
                ..config
            },
            0,
        );
        assert!(plain.windows(2).filter(|w| w[1] != w[0] + 1).count() <= shards.len());
    }

    #[test]
    fn workers_split_the_shards_between_them() {
        let shards = shards();
        for workers in 1..=4 {
            let mut all: Vec<usize> = (0..workers)
                .flat_map(|worker| {
                    let config = StreamConfig {
                        worker,
                        workers,
                        ..StreamConfig::default()
                    };
                    stream_order(&shards, &config, 3)
                })
                .collect();
            all.sort_unstable();
            assert_eq!(all, (0..28).collect::<Vec<_>>(), "{workers} workers");
        }
        let bad = StreamConfig {
            worker: 2,
            workers: 2,
            ..StreamConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
