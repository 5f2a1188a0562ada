//! Model-level (late) fusion: combining the class probabilities of separately
//! trained per-modality models.

use burn::prelude::*;
use burn::tensor::activation::softmax;

use polymodal_core::{Error, Result};

/// How the per-model probabilities are averaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Linear opinion pool: `Σ w_m p_m(y)`, renormalised over present models.
    Linear,
    /// Logarithmic opinion pool (product of experts): `softmax(Σ w_m log p_m(y))`.
    /// Right when each model rules out different classes (each modality
    /// holds part of the answer): the classes no model rules out win.
    Logarithmic,
}

/// Smallest probability taken into a logarithm.
const FLOOR: f32 = 1e-6;

/// A weighted average of per-model class probabilities. A model whose
/// modality is absent for a sample is left out for that sample.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedAverage {
    pool: Pool,
    weights: Vec<f32>,
}

impl WeightedAverage {
    /// Fixed weights. For the linear pool they are normalised to sum to one.
    pub fn new(pool: Pool, weights: Vec<f32>) -> Result<Self> {
        let sum: f32 = weights.iter().sum();
        if weights.is_empty() || weights.iter().any(|w| !w.is_finite() || *w < 0.0) || sum <= 0.0 {
            return Err(Error::Config(format!(
                "late fusion weights must be finite, non-negative and not all zero, got {weights:?}"
            )));
        }
        let weights = match pool {
            Pool::Linear => weights.iter().map(|w| w / sum).collect(),
            Pool::Logarithmic => weights,
        };
        Ok(Self { pool, weights })
    }

    /// Equal weights for `models` models.
    pub fn uniform(pool: Pool, models: usize) -> Result<Self> {
        Self::new(pool, vec![1.0; models])
    }

    /// Fits the weights on held-out predictions by minimising the negative
    /// log-likelihood of the pooled prediction: exponentiated gradient on the
    /// simplex for the linear pool, projected gradient (weights ≥ 0) for the
    /// logarithmic pool.
    ///
    /// `probabilities[m]` holds model `m`'s `[samples, classes]` probabilities.
    pub fn fit(pool: Pool, probabilities: &[Tensor<2>], labels: &[usize]) -> Result<Self> {
        let classes = probabilities.first().map_or(0, |p| p.dims()[1]);
        let mut models = Vec::with_capacity(probabilities.len());
        for p in probabilities {
            let values = p
                .clone()
                .try_into_vec_as::<f32>()
                .map_err(|e| Error::Invalid(format!("{e:?}")))?;
            if values.len() != labels.len() * classes {
                return Err(Error::Invalid(
                    "late fusion fit: predictions and labels disagree in size".into(),
                ));
            }
            models.push(values);
        }
        if models.is_empty() || labels.is_empty() || labels.iter().any(|&y| y >= classes) {
            return Err(Error::Invalid(
                "late fusion fit needs predictions and labels within the classes".into(),
            ));
        }
        let weights = match pool {
            Pool::Linear => fit_linear(&models, labels, classes),
            Pool::Logarithmic => fit_logarithmic(&models, labels, classes),
        };
        Self::new(pool, weights)
    }

    /// The pool.
    pub fn pool(&self) -> Pool {
        self.pool
    }

    /// The weights.
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// Combines `[batch, classes]` probabilities; `present[m]` `[batch]` says
    /// which samples model `m` saw its modality for.
    pub fn combine(
        &self,
        probabilities: &[Tensor<2>],
        present: &[Tensor<1, Bool>],
    ) -> Result<Tensor<2>> {
        check_predictions(
            "late fusion",
            probabilities,
            present,
            Some(self.weights.len()),
        )?;
        let mut total: Option<Tensor<2>> = None;
        let mut weight_sum: Option<Tensor<2>> = None;
        for ((p, present), &w) in probabilities.iter().zip(present).zip(&self.weights) {
            let w = present.clone().float().unsqueeze_dim::<2>(1) * w; // [batch, 1]
            let term = match self.pool {
                Pool::Linear => p.clone() * w.clone(),
                Pool::Logarithmic => p.clone().clamp_min(FLOOR).log() * w.clone(),
            };
            total = Some(total.map_or(term.clone(), |t| t + term));
            weight_sum = Some(weight_sum.map_or(w.clone(), |s| s + w));
        }
        let (total, weight_sum) = (total.expect("non-empty"), weight_sum.expect("non-empty"));
        Ok(match self.pool {
            // A sample with no model present gets zeros (0 / 1), in any float type.
            Pool::Linear => {
                let none = weight_sum.clone().equal_elem(0.0);
                total / weight_sum.mask_fill(none, 1.0)
            }
            Pool::Logarithmic => softmax(total, 1),
        })
    }
}

/// Checks that there is one `[batch, classes]` prediction and one `[batch]`
/// presence mask per model (`models` of them when given), all of one shape.
pub(crate) fn check_predictions(
    what: &str,
    probabilities: &[Tensor<2>],
    present: &[Tensor<1, Bool>],
    models: Option<usize>,
) -> Result<()> {
    let expected = models.unwrap_or(probabilities.len());
    let shape = probabilities.first().map(|p| p.dims());
    let problem = if probabilities.is_empty() || probabilities.len() != expected {
        Some(format!(
            "needs {expected} model predictions, got {}",
            probabilities.len()
        ))
    } else if present.len() != probabilities.len() {
        Some(format!(
            "got {} predictions but {} presence masks",
            probabilities.len(),
            present.len()
        ))
    } else if probabilities.iter().any(|p| Some(p.dims()) != shape) {
        Some("the predictions differ in shape".to_string())
    } else if present
        .iter()
        .any(|m| Some(m.dims()[0]) != shape.map(|s| s[0]))
    {
        Some("a presence mask does not match the batch size".to_string())
    } else {
        None
    };
    problem.map_or(Ok(()), |p| Err(Error::Invalid(format!("{what}: {p}"))))
}

fn fit_linear(models: &[Vec<f32>], labels: &[usize], classes: usize) -> Vec<f32> {
    // p[m][i]: model m's probability of sample i's true class.
    let p: Vec<Vec<f64>> = models
        .iter()
        .map(|m| {
            labels
                .iter()
                .enumerate()
                .map(|(i, &y)| m[i * classes + y] as f64)
                .collect()
        })
        .collect();
    let n = labels.len() as f64;
    let mut w = vec![1.0 / models.len() as f64; models.len()];
    for _ in 0..500 {
        let mut gradient = vec![0.0; w.len()];
        for i in 0..labels.len() {
            let mixture: f64 = w
                .iter()
                .zip(&p)
                .map(|(w, p)| w * p[i])
                .sum::<f64>()
                .max(1e-12);
            for (g, p) in gradient.iter_mut().zip(&p) {
                *g -= p[i] / mixture / n;
            }
        }
        for (w, g) in w.iter_mut().zip(&gradient) {
            *w *= (-0.5 * g).exp();
        }
        let sum: f64 = w.iter().sum();
        w.iter_mut().for_each(|w| *w /= sum);
    }
    w.into_iter().map(|w| w as f32).collect()
}

fn fit_logarithmic(models: &[Vec<f32>], labels: &[usize], classes: usize) -> Vec<f32> {
    let logs: Vec<Vec<f64>> = models
        .iter()
        .map(|m| m.iter().map(|&p| (p.max(FLOOR) as f64).ln()).collect())
        .collect();
    let n = labels.len() as f64;
    let mut w = vec![1.0; models.len()];
    let mut scores = vec![0.0f64; classes];
    for _ in 0..500 {
        let mut gradient = vec![0.0; w.len()];
        for (i, &y) in labels.iter().enumerate() {
            for (c, s) in scores.iter_mut().enumerate() {
                *s = w
                    .iter()
                    .zip(&logs)
                    .map(|(w, l)| w * l[i * classes + c])
                    .sum();
            }
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = scores.iter().map(|s| (s - max).exp()).sum();
            for (g, l) in gradient.iter_mut().zip(&logs) {
                let expected: f64 = (0..classes)
                    .map(|c| (scores[c] - max).exp() / z * l[i * classes + c])
                    .sum();
                *g += (expected - l[i * classes + y]) / n;
            }
        }
        for (w, g) in w.iter_mut().zip(&gradient) {
            *w = (*w - 0.1 * g).max(0.0);
        }
    }
    if w.iter().all(|&w| w == 0.0) {
        w.iter_mut().for_each(|w| *w = 1.0);
    }
    w.into_iter().map(|w| w as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device::flex()
    }

    /// Three classes; model A knows the class is 0 or 1, model B that it is 1 or 2.
    fn complementary() -> (Vec<Tensor<2>>, Vec<usize>) {
        let a = Tensor::<2>::from_data([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]], &device());
        let b = Tensor::<2>::from_data([[0.0, 0.5, 0.5], [0.0, 0.5, 0.5]], &device());
        (vec![a, b], vec![1, 1])
    }

    fn argmax(t: &Tensor<2>) -> Vec<i64> {
        t.clone().argmax(1).try_into_vec_as::<i64>().unwrap()
    }

    #[test]
    fn both_pools_find_the_class_no_model_rules_out() {
        let (p, labels) = complementary();
        let present = vec![Tensor::<1, Bool>::from_data([true, true], &device()); 2];
        for pool in [Pool::Linear, Pool::Logarithmic] {
            let fused = WeightedAverage::uniform(pool, 2)
                .unwrap()
                .combine(&p, &present)
                .unwrap();
            assert_eq!(argmax(&fused), vec![1, 1], "{pool:?}");
        }
        let fitted = WeightedAverage::fit(Pool::Logarithmic, &p, &labels).unwrap();
        assert!(
            fitted.weights().iter().all(|&w| w > 1.0),
            "{:?}",
            fitted.weights()
        );
    }

    #[test]
    fn an_absent_model_is_left_out() {
        let (p, _) = complementary();
        let present = vec![
            Tensor::<1, Bool>::from_data([true, true], &device()),
            Tensor::<1, Bool>::from_data([true, false], &device()),
        ];
        let fused = WeightedAverage::uniform(Pool::Linear, 2)
            .unwrap()
            .combine(&p, &present)
            .unwrap();
        let row = fused.slice([1..2, 0..3]).try_into_vec_as::<f32>().unwrap();
        assert_eq!(row, vec![0.5, 0.5, 0.0]);
    }

    #[test]
    fn linear_fit_prefers_the_better_model() {
        let good = Tensor::<2>::from_data([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]], &device());
        let bad = Tensor::<2>::from_data([[0.4, 0.6], [0.6, 0.4], [0.5, 0.5]], &device());
        let fitted = WeightedAverage::fit(Pool::Linear, &[good, bad], &[0, 1, 0]).unwrap();
        assert!(fitted.weights()[0] > 0.9, "{:?}", fitted.weights());
    }

    #[test]
    fn bad_weights_and_shapes_are_errors() {
        assert!(WeightedAverage::new(Pool::Linear, vec![]).is_err());
        assert!(WeightedAverage::new(Pool::Linear, vec![-1.0, 2.0]).is_err());
        assert!(WeightedAverage::new(Pool::Logarithmic, vec![f32::NAN]).is_err());
        let (p, _) = complementary();
        assert!(WeightedAverage::fit(Pool::Linear, &p, &[0]).is_err());
        assert!(
            WeightedAverage::uniform(Pool::Linear, 3)
                .unwrap()
                .combine(&p, &[])
                .is_err()
        );
    }
}
