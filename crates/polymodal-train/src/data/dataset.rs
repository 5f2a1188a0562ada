//! Labelled samples: decoded ones ([`Example`], [`Dataset`]), the [`Samples`]
//! the trainer draws batches from, and batches prefetched on a worker thread.

use std::collections::BTreeSet;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use polymodal_core::{Modality, Result};

use crate::data::features::Features;
use crate::data::parallel::prefetch;

/// What a sample is labelled with, as indices into [`Dataset::classes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Label {
    /// Single-label classification: the one class of the sample.
    Single(usize),
    /// Multi-label classification: whether the sample has each class (one
    /// flag per class of the dataset; all false is allowed).
    Multi(Vec<bool>),
}

impl Label {
    /// A multi-label target with the classes `positive` out of `classes`.
    pub fn multi(positive: &[usize], classes: usize) -> Label {
        let mut flags = vec![false; classes];
        for &c in positive {
            if c < classes {
                flags[c] = true;
            }
        }
        Label::Multi(flags)
    }

    /// The class used to stratify splits: the class of a single-label sample;
    /// for a multi-label one its first class, or the number of classes when it
    /// has none (a stratum of its own).
    pub fn stratum(&self) -> usize {
        match self {
            Label::Single(c) => *c,
            Label::Multi(flags) => flags.iter().position(|&f| f).unwrap_or(flags.len()),
        }
    }

    /// Whether this is a multi-label target.
    pub fn is_multi(&self) -> bool {
        matches!(self, Label::Multi(_))
    }
}

/// A decoded sample with its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Sample name.
    pub id: String,
    /// Features.
    pub features: Features,
    /// Class or classes, indexing [`Dataset::classes`].
    pub label: Label,
}

/// Decoded samples and their class names.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Samples.
    pub examples: Vec<Example>,
    /// Class names; a label is an index into this list.
    pub classes: Vec<String>,
}

impl Dataset {
    /// The samples at `indices`, with the same classes.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        Dataset {
            examples: indices.iter().map(|&i| self.examples[i].clone()).collect(),
            classes: self.classes.clone(),
        }
    }

    /// A copy in which no sample has `modality` (to measure a model with a
    /// modality missing at test time).
    pub fn without(&self, modality: Modality) -> Dataset {
        let mut data = self.clone();
        for e in &mut data.examples {
            match modality {
                Modality::Text => e.features.text = None,
                Modality::Image => e.features.image = None,
                Modality::Audio => e.features.audio = None,
                Modality::Video => e.features.video = None,
            }
            e.features.embedded.remove(&modality);
        }
        data
    }

    /// The class of every sample (its [`Label::stratum`] for multi-label
    /// data).
    pub fn labels(&self) -> Vec<usize> {
        self.examples.iter().map(|e| e.label.stratum()).collect()
    }

    /// The label of every sample.
    pub fn targets(&self) -> Vec<Label> {
        self.examples.iter().map(|e| e.label.clone()).collect()
    }

    /// The modalities at least one sample has.
    pub fn modalities(&self) -> BTreeSet<Modality> {
        Modality::ALL
            .into_iter()
            .filter(|&m| self.examples.iter().any(|e| e.features.has(m)))
            .collect()
    }
}

/// A set of labelled samples the trainer can draw batches from.
pub trait Samples: Sync {
    /// Number of samples.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Class names; labels index into them.
    fn classes(&self) -> &[String];
    /// The label of every sample, in order.
    fn targets(&self) -> Vec<Label>;
    /// The class of every sample, in order ([`Label::stratum`] for
    /// multi-label samples).
    fn label_list(&self) -> Vec<usize> {
        self.targets().iter().map(Label::stratum).collect()
    }
    /// Whether the samples are multi-label.
    fn is_multi_label(&self) -> bool {
        self.targets().first().is_some_and(Label::is_multi)
    }
    /// The samples at `indices`, decoded.
    fn load(&self, indices: &[usize]) -> Result<Vec<Example>>;
    /// The order an epoch seeded by `seed` visits the samples in: every
    /// index once, the same for the same seed (so a resumed run replays
    /// the epoch). A uniform shuffle unless the samples are better read in
    /// another order (shards: a few at a time).
    fn epoch_order(&self, seed: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        order
    }
}

impl Samples for Dataset {
    fn len(&self) -> usize {
        self.examples.len()
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn targets(&self) -> Vec<Label> {
        Dataset::targets(self)
    }

    fn load(&self, indices: &[usize]) -> Result<Vec<Example>> {
        Ok(indices.iter().map(|&i| self.examples[i].clone()).collect())
    }
}

/// Runs `body` over the decoded samples of each chunk, in order, while a
/// worker thread decodes the next chunks. When `body` returns (or stops at an
/// error) the worker stops too.
pub(crate) fn prefetched<S: Samples + ?Sized, R>(
    data: &S,
    chunks: Vec<Vec<usize>>,
    body: impl FnOnce(&mut dyn Iterator<Item = Result<Vec<Example>>>) -> Result<R>,
) -> Result<R> {
    prefetch(chunks, |chunk| data.load(chunk), body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use polymodal_core::Error;

    #[test]
    fn prefetching_keeps_order_and_stops_at_the_first_error() {
        let data = Dataset {
            examples: (0..10)
                .map(|i| Example {
                    id: i.to_string(),
                    features: Default::default(),
                    label: Label::Single(0),
                })
                .collect(),
            classes: vec!["x".into()],
        };
        let chunks: Vec<Vec<usize>> = (0..10).map(|i| vec![9 - i]).collect();
        let seen = prefetched(&data, chunks.clone(), |batches| {
            batches
                .map(|b| b.map(|e| e[0].id.clone()))
                .collect::<Result<Vec<_>>>()
        })
        .unwrap();
        assert_eq!(
            seen,
            (0..10).rev().map(|i| i.to_string()).collect::<Vec<_>>()
        );
        let mut count = 0;
        let result: Result<()> = prefetched(&data, chunks, |batches| {
            for (index, batch) in batches.enumerate() {
                batch?;
                count += 1;
                if index == 3 {
                    return Err(Error::Invalid("stop".into()));
                }
            }
            Ok(())
        });
        assert!(result.is_err());
        assert_eq!(count, 4);
    }
}
