//! Evaluation: a model's accuracy, macro-F1, loss and class probabilities
//! on a dataset ([`evaluate`]), and [`accuracy`] of scores.

use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softmax};

use polymodal_core::{Error, Result};

use crate::batch::Batcher;
use crate::data::{Example, Label, Samples, prefetched};
use crate::metrics::{ConfusionMatrix, MultiLabelMetrics};
use crate::trainer::classifier::Classifier;

/// Accuracy, loss and class probabilities on a dataset.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Fraction of samples whose most probable class is the label; for
    /// multi-label data, whose predicted set of classes is exactly right.
    pub accuracy: f32,
    /// Macro-averaged F1.
    pub macro_f1: f32,
    /// Mean cross-entropy (negative log-probability of the label); for
    /// multi-label data, mean binary cross-entropy per class.
    pub loss: f32,
    /// `[samples, classes]` probabilities, in dataset order: a softmax over
    /// the classes, or for multi-label data one sigmoid per class.
    pub probabilities: Tensor<2>,
    /// The class of every sample, in dataset order ([`Label::stratum`] for
    /// multi-label data).
    pub labels: Vec<usize>,
    /// Multi-label metrics at threshold 0.5 (multi-label data only).
    pub multi_label: Option<MultiLabelMetrics>,
}

/// Runs `model` (without autodiff) over `data` in batches of 64, the next
/// batches decoded on a worker thread.
pub fn evaluate<M: Classifier>(
    model: &M,
    data: &dyn Samples,
    batcher: &Batcher,
    device: &Device,
) -> Result<Evaluation> {
    if data.is_empty() {
        return Err(Error::Config("cannot evaluate on an empty dataset".into()));
    }
    let multi = data.is_multi_label();
    let probabilities = probabilities(model, data, batcher, device, multi)?;
    let values = probabilities
        .clone()
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Invalid(format!("reading probabilities: {e:?}")))?;
    let labels = data.label_list();
    if multi {
        multi_label_evaluation(probabilities, &values, labels, data)
    } else {
        single_label_evaluation(probabilities, &values, labels)
    }
}

/// `[samples, classes]` probabilities of `model` over `data`: a softmax over
/// the classes, or with `multi` one sigmoid per class.
fn probabilities<M: Classifier>(
    model: &M,
    data: &dyn Samples,
    batcher: &Batcher,
    device: &Device,
    multi: bool,
) -> Result<Tensor<2>> {
    let indices: Vec<usize> = (0..data.len()).collect();
    let chunks = indices.chunks(64).map(<[usize]>::to_vec).collect();
    let parts = prefetched(data, chunks, |batches| {
        let mut parts = Vec::new();
        for examples in batches {
            let examples = examples?;
            let refs: Vec<&Example> = examples.iter().collect();
            // On a thread of the pool the backend's ops split their work
            // over (see `on_pool`).
            parts.push(polymodal_core::cpu::on_pool(|| -> Result<_> {
                let logits = model.logits(&batcher.batch(&refs, device)?)?;
                Ok(if multi {
                    sigmoid(logits)
                } else {
                    softmax(logits, 1)
                })
            })?);
        }
        Ok(parts)
    })?;
    Ok(Tensor::cat(parts, 0))
}

/// The negative log of a probability (at least 1e-12).
fn nll(p: f32) -> f32 {
    -(p.max(1e-12)).ln()
}

/// Subset accuracy, macro-F1 and mean binary cross-entropy of multi-label
/// `probabilities` (`values`: the same, read back) against `data`'s targets.
fn multi_label_evaluation(
    probabilities: Tensor<2>,
    values: &[f32],
    labels: Vec<usize>,
    data: &dyn Samples,
) -> Result<Evaluation> {
    let classes = probabilities.dims()[1];
    let targets: Vec<Vec<bool>> = data
        .targets()
        .into_iter()
        .map(|t| match t {
            Label::Multi(flags) => flags,
            Label::Single(c) => (0..classes).map(|k| k == c).collect(),
        })
        .collect();
    let metrics = MultiLabelMetrics::new(&probabilities, &targets, 0.5)?;
    let loss = targets
        .iter()
        .flatten()
        .zip(values)
        .map(|(&t, &p)| if t { nll(p) } else { nll(1.0 - p) })
        .sum::<f32>()
        / values.len() as f32;
    Ok(Evaluation {
        accuracy: metrics.subset_accuracy(),
        macro_f1: metrics.macro_f1(),
        loss,
        probabilities,
        labels,
        multi_label: Some(metrics),
    })
}

/// Accuracy, macro-F1 and mean cross-entropy of single-label
/// `probabilities` (`values`: the same, read back) against `labels`.
fn single_label_evaluation(
    probabilities: Tensor<2>,
    values: &[f32],
    labels: Vec<usize>,
) -> Result<Evaluation> {
    let classes = probabilities.dims()[1];
    let matrix = ConfusionMatrix::from_scores(&probabilities, &labels)?;
    let loss = labels
        .iter()
        .enumerate()
        .map(|(i, &y)| nll(values[i * classes + y]))
        .sum::<f32>()
        / labels.len() as f32;
    Ok(Evaluation {
        accuracy: matrix.accuracy(),
        macro_f1: matrix.macro_f1(),
        loss,
        probabilities,
        labels,
        multi_label: None,
    })
}

/// Fraction of rows of `scores` `[samples, classes]` whose arg-max is the label.
pub fn accuracy(scores: &Tensor<2>, labels: &[usize]) -> Result<f32> {
    Ok(ConfusionMatrix::from_scores(scores, labels)?.accuracy())
}
