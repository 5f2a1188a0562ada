//! Classification and retrieval metrics on host values.

use burn::prelude::*;

use polymodal_core::{Error, Result};

/// Counts `[true class][predicted class]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    counts: Vec<Vec<usize>>,
}

impl ConfusionMatrix {
    /// The matrix of `predicted` against `labels` over `classes` classes.
    pub fn new(predicted: &[usize], labels: &[usize], classes: usize) -> Result<Self> {
        if predicted.len() != labels.len() || labels.is_empty() {
            return Err(Error::Invalid(format!(
                "{} predictions for {} labels",
                predicted.len(),
                labels.len()
            )));
        }
        if let Some(&c) = predicted.iter().chain(labels).find(|&&c| c >= classes) {
            return Err(Error::Invalid(format!(
                "class {c} is outside the {classes} classes"
            )));
        }
        let mut counts = vec![vec![0; classes]; classes];
        for (&p, &y) in predicted.iter().zip(labels) {
            counts[y][p] += 1;
        }
        Ok(Self { counts })
    }

    /// The matrix of the arg-max of `scores` `[samples, classes]` against `labels`.
    pub fn from_scores(scores: &Tensor<2>, labels: &[usize]) -> Result<Self> {
        let classes = scores.dims()[1];
        Self::new(&argmax(scores)?, labels, classes)
    }

    /// `counts()[y][p]`: samples of class `y` predicted as `p`.
    pub fn counts(&self) -> &[Vec<usize>] {
        &self.counts
    }

    /// Fraction of samples on the diagonal.
    pub fn accuracy(&self) -> f32 {
        let total: usize = self.counts.iter().flatten().sum();
        let correct: usize = (0..self.counts.len()).map(|c| self.counts[c][c]).sum();
        correct as f32 / total as f32
    }

    /// Per-class recall (`None` for a class absent from the labels).
    pub fn recall(&self) -> Vec<Option<f32>> {
        (0..self.counts.len())
            .map(|c| {
                let support: usize = self.counts[c].iter().sum();
                (support > 0).then(|| self.counts[c][c] as f32 / support as f32)
            })
            .collect()
    }

    /// Macro-averaged F1 over the classes present in the labels or the
    /// predictions (a class never predicted and never true is left out;
    /// one with no correct prediction counts as 0).
    pub fn macro_f1(&self) -> f32 {
        let classes = self.counts.len();
        let mut sum = 0.0;
        let mut counted = 0;
        for c in 0..classes {
            let support: usize = self.counts[c].iter().sum();
            let predicted: usize = (0..classes).map(|y| self.counts[y][c]).sum();
            if support == 0 && predicted == 0 {
                continue;
            }
            let tp = self.counts[c][c] as f32;
            sum += 2.0 * tp / (support + predicted) as f32;
            counted += 1;
        }
        sum / counted.max(1) as f32
    }
}

/// Multi-label metrics: every class an independent yes/no decision, a class
/// predicted when its probability is at least the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiLabelMetrics {
    /// Per class: (true positives, false positives, false negatives).
    counts: Vec<(usize, usize, usize)>,
    /// Samples whose predicted set equals the true set.
    exact: usize,
    samples: usize,
    /// Mean over classes with a positive sample of the average precision.
    map: f32,
}

impl MultiLabelMetrics {
    /// Metrics of `probabilities` `[samples, classes]` against `targets`
    /// (one flag per class per sample) at `threshold`.
    pub fn new(probabilities: &Tensor<2>, targets: &[Vec<bool>], threshold: f32) -> Result<Self> {
        let [samples, classes] = probabilities.dims();
        if samples != targets.len() || samples == 0 || targets.iter().any(|t| t.len() != classes) {
            return Err(Error::Invalid(format!(
                "multi-label metrics: {samples}x{classes} probabilities for {} targets",
                targets.len()
            )));
        }
        let p = probabilities
            .clone()
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::Invalid(format!("reading probabilities: {e:?}")))?;
        let mut counts = vec![(0, 0, 0); classes];
        let mut exact = 0;
        for (i, truth) in targets.iter().enumerate() {
            let mut all = true;
            for (c, &t) in truth.iter().enumerate() {
                let predicted = p[i * classes + c] >= threshold;
                match (predicted, t) {
                    (true, true) => counts[c].0 += 1,
                    (true, false) => counts[c].1 += 1,
                    (false, true) => counts[c].2 += 1,
                    (false, false) => {}
                }
                all &= predicted == t;
            }
            exact += usize::from(all);
        }
        let precisions: Vec<f32> = (0..classes)
            .filter_map(|c| {
                let scores: Vec<f32> = (0..samples).map(|i| p[i * classes + c]).collect();
                let truth: Vec<bool> = targets.iter().map(|t| t[c]).collect();
                average_precision(&scores, &truth)
            })
            .collect();
        let map = precisions.iter().sum::<f32>() / precisions.len().max(1) as f32;
        Ok(Self {
            counts,
            exact,
            samples,
            map,
        })
    }

    /// Fraction of samples whose predicted set of classes is exactly right.
    pub fn subset_accuracy(&self) -> f32 {
        self.exact as f32 / self.samples as f32
    }

    /// Fraction of (sample, class) decisions that are right (1 − Hamming loss).
    pub fn hamming_accuracy(&self) -> f32 {
        let wrong: usize = self.counts.iter().map(|&(_, fp, fn_)| fp + fn_).sum();
        1.0 - wrong as f32 / (self.samples * self.counts.len()) as f32
    }

    /// F1 of all decisions pooled.
    pub fn micro_f1(&self) -> f32 {
        let (tp, fp, fn_) = self
            .counts
            .iter()
            .fold((0, 0, 0), |a, c| (a.0 + c.0, a.1 + c.1, a.2 + c.2));
        f1(tp, fp, fn_).unwrap_or(1.0)
    }

    /// F1 per class, averaged over the classes that are true or predicted at
    /// least once (as [`ConfusionMatrix::macro_f1`]).
    pub fn macro_f1(&self) -> f32 {
        let scores: Vec<f32> = self
            .counts
            .iter()
            .filter_map(|&(tp, fp, fn_)| f1(tp, fp, fn_))
            .collect();
        if scores.is_empty() {
            return 1.0;
        }
        scores.iter().sum::<f32>() / scores.len() as f32
    }

    /// Mean average precision: per class, the mean of the precision at the
    /// rank of each positive sample (scores sorted high to low), averaged
    /// over the classes with at least one positive. Threshold-free.
    pub fn mean_average_precision(&self) -> f32 {
        self.map
    }
}

/// F1 from counts; `None` when the class is neither true nor predicted.
fn f1(tp: usize, fp: usize, fn_: usize) -> Option<f32> {
    let denominator = 2 * tp + fp + fn_;
    (denominator > 0).then(|| 2.0 * tp as f32 / denominator as f32)
}

/// Average precision of `scores` against `truth`; `None` with no positive.
/// Tied scores rank the negatives first (no credit for a constant score).
fn average_precision(scores: &[f32], truth: &[bool]) -> Option<f32> {
    let positives = truth.iter().filter(|&&t| t).count();
    if positives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        scores[b]
            .total_cmp(&scores[a])
            .then(truth[a].cmp(&truth[b]))
    });
    let mut hits = 0;
    let mut sum = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        if truth[i] {
            hits += 1;
            sum += hits as f32 / (rank + 1) as f32;
        }
    }
    Some(sum / positives as f32)
}

/// The arg-max of each row.
pub fn argmax(scores: &Tensor<2>) -> Result<Vec<usize>> {
    Ok(scores
        .clone()
        .argmax(1)
        .try_into_vec_as::<i64>()
        .map_err(|e| Error::Invalid(format!("reading predictions: {e:?}")))?
        .into_iter()
        .map(|p| p as usize)
        .collect())
}

/// Recall@K for retrieval: the fraction of queries (rows of `similarity`
/// `[queries, candidates]`) with at least one relevant candidate among their
/// `k` most similar. `relevant(query, candidate)` says which are relevant;
/// queries with no relevant candidate at all are left out.
pub fn recall_at_k(
    similarity: &Tensor<2>,
    k: usize,
    relevant: impl Fn(usize, usize) -> bool,
) -> Result<f32> {
    let [queries, candidates] = similarity.dims();
    if k == 0 || queries == 0 {
        return Err(Error::Invalid(format!("recall@{k} over {queries} queries")));
    }
    let values = similarity
        .clone()
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Invalid(format!("reading similarities: {e:?}")))?;
    let (mut hits, mut counted) = (0usize, 0usize);
    for q in 0..queries {
        if !(0..candidates).any(|c| relevant(q, c)) {
            continue;
        }
        counted += 1;
        let row = &values[q * candidates..(q + 1) * candidates];
        let mut order: Vec<usize> = (0..candidates).collect();
        // Ties rank the relevant candidate last: no credit for a constant score.
        order.sort_by(|&a, &b| {
            row[b]
                .total_cmp(&row[a])
                .then_with(|| relevant(q, a).cmp(&relevant(q, b)))
        });
        if order.iter().take(k).any(|&c| relevant(q, c)) {
            hits += 1;
        }
    }
    if counted == 0 {
        return Err(Error::Invalid("no query has a relevant candidate".into()));
    }
    Ok(hits as f32 / counted as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_matrix_metrics_match_hand_counts() {
        // 3 classes; class 2 never predicted.
        let labels = [0, 0, 1, 1, 2, 2];
        let predicted = [0, 1, 1, 1, 0, 1];
        let m = ConfusionMatrix::new(&predicted, &labels, 3).unwrap();
        assert_eq!(m.counts()[0], vec![1, 1, 0]);
        assert_eq!(m.accuracy(), 0.5);
        assert_eq!(m.recall(), vec![Some(0.5), Some(1.0), Some(0.0)]);
        // F1: class 0: 2*1/(2+2) = 0.5; class 1: 2*2/(2+4) = 2/3; class 2: 0.
        assert!((m.macro_f1() - (0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-6);
        assert!(ConfusionMatrix::new(&[0], &[0, 1], 2).is_err());
        assert!(ConfusionMatrix::new(&[5], &[0], 2).is_err());
    }

    #[test]
    fn recall_at_k_counts_relevant_candidates_in_the_top_k() {
        let device = Device::flex();
        let similarity =
            Tensor::<2>::from_data([[0.9, 0.1, 0.5], [0.2, 0.3, 0.1], [0.0, 0.0, 0.0]], &device);
        let diagonal = |q: usize, c: usize| q == c;
        // Query 0 finds itself first; query 1 ranks itself first; query 2 ties everything.
        assert!((recall_at_k(&similarity, 1, diagonal).unwrap() - 2.0 / 3.0).abs() < 1e-6);
        assert_eq!(recall_at_k(&similarity, 3, diagonal).unwrap(), 1.0);
        assert!(recall_at_k(&similarity, 0, diagonal).is_err());
        assert!(recall_at_k(&similarity, 1, |_, _| false).is_err());
    }

    #[test]
    fn multi_label_metrics_match_hand_counts() {
        let device = Device::flex();
        // 3 samples, 3 classes; threshold 0.5.
        let p =
            Tensor::<2>::from_data([[0.9, 0.2, 0.6], [0.1, 0.8, 0.3], [0.7, 0.4, 0.1]], &device);
        let t = vec![
            vec![true, false, true],   // predicted {0, 2}: exact
            vec![false, true, true],   // predicted {1}: misses 2
            vec![false, false, false], // predicted {0}: false positive
        ];
        let m = MultiLabelMetrics::new(&p, &t, 0.5).unwrap();
        assert_eq!(m.subset_accuracy(), 1.0 / 3.0);
        assert!((m.hamming_accuracy() - 7.0 / 9.0).abs() < 1e-6);
        // Pooled: tp 3, fp 1, fn 1 -> 6 / 8.
        assert!((m.micro_f1() - 0.75).abs() < 1e-6);
        // Class 0: tp1 fp1 -> 2/3; class 1: 1; class 2: tp1 fn1 -> 2/3.
        assert!((m.macro_f1() - (2.0 / 3.0 + 1.0 + 2.0 / 3.0) / 3.0).abs() < 1e-6);
        // AP: class 0 positive ranked 1st -> 1; class 1 -> 1; class 2
        // positives at ranks 1 (0.6) and 2 (0.3) -> 1.
        assert!((m.mean_average_precision() - 1.0).abs() < 1e-6);
        let ranked_low = average_precision(&[0.9, 0.1, 0.5], &[false, true, true]).unwrap();
        // Positives at ranks 2 and 3: (1/2 + 2/3) / 2.
        assert!((ranked_low - (0.5 + 2.0 / 3.0) / 2.0).abs() < 1e-6);
        assert!(MultiLabelMetrics::new(&p, &t[..2], 0.5).is_err());
    }
}
