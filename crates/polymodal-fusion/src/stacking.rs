//! Model-level (late) fusion by stacking (Wolpert 1992): a meta-model learns
//! to combine the base models' predictions from their out-of-fold outputs.

use burn::prelude::*;

use polymodal_core::{Error, Result};

use crate::late::check_predictions;

/// Smallest probability taken into a logarithm (features are `ln p / ln FLOOR`).
const FLOOR: f64 = 1e-4;

/// Settings of the meta-model fit.
#[derive(Debug, Clone, PartialEq)]
pub struct StackingConfig {
    /// L2 penalty on the meta-model's weights.
    pub l2: f64,
    /// Full-batch Adam iterations.
    pub iterations: usize,
    /// Adam step size.
    pub learning_rate: f64,
    /// Also train on copies of every sample with each base model hidden, so the
    /// meta-model handles a missing modality (recommended).
    pub augment_missing: bool,
}

impl Default for StackingConfig {
    fn default() -> Self {
        Self {
            l2: 1e-3,
            iterations: 400,
            learning_rate: 0.05,
            augment_missing: true,
        }
    }
}

/// A multinomial logistic regression over the base models' log-probabilities
/// (and a presence flag per model), fitted on out-of-fold predictions: each
/// base model's prediction for a training sample must come from a copy of
/// that model trained without the sample (k-fold), or the meta-model learns
/// to trust overfitted outputs. An absent model's features are those of a
/// uniform prediction, with its presence flag at zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Stacking {
    models: usize,
    classes: usize,
    /// `[features, classes]`, row-major.
    weights: Vec<f64>,
    bias: Vec<f64>,
}

/// Host copies of per-model predictions.
struct Predictions {
    models: Vec<Vec<f32>>,
    present: Vec<Vec<bool>>,
    samples: usize,
    classes: usize,
}

impl Predictions {
    fn read(probabilities: &[Tensor<2>], present: &[Tensor<1, Bool>]) -> Result<Self> {
        check_predictions("stacking", probabilities, present, None)?;
        let [samples, classes] = probabilities[0].dims();
        let read_error = |e: &dyn std::fmt::Debug| {
            Error::Invalid(format!("stacking: reading predictions: {e:?}"))
        };
        let models = probabilities
            .iter()
            .map(|p| {
                p.clone()
                    .try_into_vec_as::<f32>()
                    .map_err(|e| read_error(&e))
            })
            .collect::<Result<_>>()?;
        let present = present
            .iter()
            .map(|m| {
                m.clone()
                    .into_data()
                    .try_into_vec_as::<bool>()
                    .map_err(|e| read_error(&e))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            models,
            present,
            samples,
            classes,
        })
    }

    /// The features of sample `i` with the models in `hidden` treated as absent.
    fn features(&self, i: usize, hidden: Option<usize>) -> Vec<f64> {
        let c = self.classes;
        let mut x = Vec::with_capacity(self.models.len() * (c + 1));
        for (m, p) in self.models.iter().enumerate() {
            let present = self.present[m][i] && hidden != Some(m);
            for k in 0..c {
                let q = if present {
                    p[i * c + k] as f64
                } else {
                    1.0 / c as f64
                };
                x.push(q.max(FLOOR).ln() / -FLOOR.ln() + 1.0);
            }
            x.push(if present { 1.0 } else { 0.0 });
        }
        x
    }
}

impl Stacking {
    /// Fits the meta-model on out-of-fold predictions `probabilities[m]`
    /// (`[samples, classes]`), presence masks and labels.
    pub fn fit(
        probabilities: &[Tensor<2>],
        present: &[Tensor<1, Bool>],
        labels: &[usize],
        config: &StackingConfig,
    ) -> Result<Self> {
        let data = Predictions::read(probabilities, present)?;
        if labels.len() != data.samples || labels.iter().any(|&y| y >= data.classes) {
            return Err(Error::Invalid(format!(
                "stacking: {} labels (each below {}) for {} samples",
                labels.len(),
                data.classes,
                data.samples
            )));
        }
        if !(config.l2 >= 0.0 && config.learning_rate > 0.0 && config.iterations > 0) {
            return Err(Error::Config(format!("stacking: bad settings {config:?}")));
        }
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        for (i, &y) in labels.iter().enumerate() {
            rows.push(data.features(i, None));
            targets.push(y);
            if config.augment_missing && data.models.len() > 1 {
                for m in 0..data.models.len() {
                    rows.push(data.features(i, Some(m)));
                    targets.push(y);
                }
            }
        }
        let (weights, bias) = fit_softmax_regression(&rows, &targets, data.classes, config);
        Ok(Self {
            models: data.models.len(),
            classes: data.classes,
            weights,
            bias,
        })
    }

    /// Number of base models.
    pub fn models(&self) -> usize {
        self.models
    }

    /// Number of fitted values (weights and biases).
    pub fn parameters(&self) -> usize {
        self.weights.len() + self.bias.len()
    }

    /// Combines the base models' `[batch, classes]` probabilities into the
    /// meta-model's probabilities.
    pub fn combine(
        &self,
        probabilities: &[Tensor<2>],
        present: &[Tensor<1, Bool>],
    ) -> Result<Tensor<2>> {
        check_predictions("stacking", probabilities, present, Some(self.models))?;
        let data = Predictions::read(probabilities, present)?;
        if data.classes != self.classes {
            return Err(Error::Invalid(format!(
                "stacking was fitted for {} classes, got {}",
                self.classes, data.classes
            )));
        }
        let mut out = Vec::with_capacity(data.samples * self.classes);
        for i in 0..data.samples {
            let p = softmax_row(&self.logits(&data.features(i, None)));
            out.extend(p.into_iter().map(|v| v as f32));
        }
        Ok(Tensor::from_data(
            TensorData::new(out, [data.samples, self.classes]),
            &probabilities[0].device(),
        ))
    }

    fn logits(&self, x: &[f64]) -> Vec<f64> {
        let mut z = self.bias.clone();
        for (f, &v) in x.iter().enumerate() {
            for (k, z) in z.iter_mut().enumerate() {
                *z += v * self.weights[f * self.classes + k];
            }
        }
        z
    }
}

fn softmax_row(z: &[f64]) -> Vec<f64> {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// Multinomial logistic regression by full-batch Adam on the mean
/// cross-entropy plus `l2 · |W|²`.
fn fit_softmax_regression(
    rows: &[Vec<f64>],
    targets: &[usize],
    classes: usize,
    config: &StackingConfig,
) -> (Vec<f64>, Vec<f64>) {
    let features = rows[0].len();
    let n = rows.len() as f64;
    let mut params = vec![0.0; (features + 1) * classes]; // weights then bias
    let (mut m, mut v) = (vec![0.0; params.len()], vec![0.0; params.len()]);
    let (beta1, beta2) = (0.9f64, 0.999f64);
    for step in 1..=config.iterations {
        let mut grad = vec![0.0; params.len()];
        for (x, &y) in rows.iter().zip(targets) {
            let mut z = params[features * classes..].to_vec();
            for (f, &xf) in x.iter().enumerate() {
                for (k, z) in z.iter_mut().enumerate() {
                    *z += xf * params[f * classes + k];
                }
            }
            let p = softmax_row(&z);
            for k in 0..classes {
                let d = (p[k] - if k == y { 1.0 } else { 0.0 }) / n;
                for (f, &xf) in x.iter().enumerate() {
                    grad[f * classes + k] += d * xf;
                }
                grad[features * classes + k] += d;
            }
        }
        for (g, w) in grad.iter_mut().zip(&params).take(features * classes) {
            *g += 2.0 * config.l2 * w;
        }
        let (c1, c2) = (1.0 - beta1.powi(step as i32), 1.0 - beta2.powi(step as i32));
        for i in 0..params.len() {
            m[i] = beta1 * m[i] + (1.0 - beta1) * grad[i];
            v[i] = beta2 * v[i] + (1.0 - beta2) * grad[i] * grad[i];
            params[i] -= config.learning_rate * (m[i] / c1) / ((v[i] / c2).sqrt() + 1e-8);
        }
    }
    let bias = params.split_off(features * classes);
    (params, bias)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device::flex()
    }

    /// Model A is right on classes 0 and 1, model B on 2 and 3; each says
    /// "uniform over my blind spot" otherwise.
    fn experts(labels: &[usize]) -> Vec<Tensor<2>> {
        let expert = |known: [usize; 2]| {
            let mut rows = Vec::new();
            for &y in labels {
                let mut p = [0.0f32; 4];
                if known.contains(&y) {
                    p[y] = 0.9;
                    p.iter_mut()
                        .filter(|q| **q == 0.0)
                        .for_each(|q| *q = 0.1 / 3.0);
                } else {
                    p = [0.1, 0.1, 0.1, 0.1];
                    p.iter_mut()
                        .enumerate()
                        .filter(|(k, _)| !known.contains(k))
                        .for_each(|(_, q)| *q = 0.4);
                }
                rows.extend(p);
            }
            Tensor::<2>::from_data(TensorData::new(rows, [labels.len(), 4]), &device())
        };
        vec![expert([0, 1]), expert([2, 3])]
    }

    fn all(n: usize) -> Vec<Tensor<1, Bool>> {
        vec![Tensor::from_data(TensorData::new(vec![true; n], [n]), &device()); 2]
    }

    #[test]
    fn learns_which_model_to_trust() {
        let labels: Vec<usize> = (0..40).map(|i| i % 4).collect();
        let p = experts(&labels);
        let stacking = Stacking::fit(&p, &all(40), &labels, &StackingConfig::default()).unwrap();
        let fused = stacking.combine(&p, &all(40)).unwrap();
        let predicted = fused.argmax(1).try_into_vec_as::<i64>().unwrap();
        let correct = predicted
            .iter()
            .zip(&labels)
            .filter(|&(&p, &y)| p as usize == y)
            .count();
        assert_eq!(correct, 40);
        // With model B hidden, classes 0 and 1 are still recognised from A.
        let hidden = vec![
            all(40)[0].clone(),
            Tensor::from_data(TensorData::new(vec![false; 40], [40]), &device()),
        ];
        let predicted = stacking
            .combine(&p, &hidden)
            .unwrap()
            .argmax(1)
            .try_into_vec_as::<i64>()
            .unwrap();
        let known = (0..40)
            .filter(|&i| labels[i] < 2 && predicted[i] as usize == labels[i])
            .count();
        assert_eq!(known, 20);
    }

    #[test]
    fn mismatches_are_errors() {
        let labels: Vec<usize> = (0..8).map(|i| i % 4).collect();
        let p = experts(&labels);
        let config = StackingConfig::default();
        assert!(Stacking::fit(&p, &all(8), &labels[..4], &config).is_err());
        assert!(Stacking::fit(&p, &all(8), &[9; 8], &config).is_err());
        let stacking = Stacking::fit(&p, &all(8), &labels, &config).unwrap();
        assert!(stacking.combine(&p[..1], &all(8)[..1]).is_err());
    }
}
