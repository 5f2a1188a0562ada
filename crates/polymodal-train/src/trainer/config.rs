//! Training settings: [`TrainConfig`] and its learning-rate schedule
//! ([`LrSchedule`]), with their validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use polymodal_core::{Error, Modality, Result};

/// How the learning rate changes over training.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LrSchedule {
    /// The same rate throughout.
    #[default]
    Constant,
    /// Linear warm-up from zero over `warmup_steps` optimiser steps, then a
    /// cosine decay to `min_factor × learning_rate` at the last step.
    WarmupCosine {
        /// Optimiser steps of warm-up.
        warmup_steps: usize,
        /// Final rate as a fraction of the peak.
        #[serde(default)]
        min_factor: f64,
    },
}

impl LrSchedule {
    /// The rate at optimiser step `step` (0-based) of `total`.
    pub fn rate(&self, peak: f64, step: usize, total: usize) -> f64 {
        match *self {
            Self::Constant => peak,
            Self::WarmupCosine {
                warmup_steps,
                min_factor,
            } => {
                if step < warmup_steps {
                    return peak * (step + 1) as f64 / warmup_steps as f64;
                }
                let span = total.saturating_sub(warmup_steps).max(1) as f64;
                let progress = ((step - warmup_steps) as f64 / span).min(1.0);
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                peak * (min_factor + (1.0 - min_factor) * cosine)
            }
        }
    }
}

/// Training settings. Every field but the first four has a default, so a
/// TOML `[train]` table may name only what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training set (at most: early stopping may end sooner).
    pub epochs: usize,
    /// Samples per forward pass.
    pub batch_size: usize,
    /// Peak Adam learning rate.
    pub learning_rate: f64,
    /// Seed for initialisation, shuffling and dropout.
    pub seed: u64,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
    /// Clip the global gradient norm to this value.
    pub clip_grad_norm: Option<f32>,
    /// Batches whose gradients are summed (averaged) before each optimiser
    /// step: the effective batch is `batch_size × accumulation`.
    pub accumulation: usize,
    /// Label smoothing of the cross-entropy, in `[0, 1)`.
    pub label_smoothing: f32,
    /// Stop when validation accuracy has not improved for this many epochs.
    pub early_stopping: Option<usize>,
    /// The peak learning rate of a modality's encoder where it differs from
    /// `learning_rate` (a pretrained encoder fine-tuned gently); the
    /// schedule shapes it the same way. An experiment fills it from
    /// `[encoders.<modality>] learning_rate`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub encoder_learning_rates: BTreeMap<Modality, f64>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 32,
            learning_rate: 2e-3,
            seed: 42,
            schedule: LrSchedule::Constant,
            clip_grad_norm: None,
            accumulation: 1,
            label_smoothing: 0.0,
            early_stopping: None,
            encoder_learning_rates: BTreeMap::new(),
        }
    }
}

impl TrainConfig {
    /// Checks every setting; the error names the offending one.
    pub fn validate(&self) -> Result<()> {
        let problem = if self.epochs == 0 {
            Some("epochs must be at least 1")
        } else if self.batch_size == 0 {
            Some("batch_size must be at least 1")
        } else if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            Some("learning_rate must be positive")
        } else if (self.encoder_learning_rates.values()).any(|r| !(*r > 0.0 && r.is_finite())) {
            Some("encoder_learning_rates must be positive")
        } else if self.accumulation == 0 {
            Some("accumulation must be at least 1")
        } else if !(0.0..1.0).contains(&self.label_smoothing) {
            Some("label_smoothing must be in [0, 1)")
        } else if self
            .clip_grad_norm
            .is_some_and(|c| !(c > 0.0 && c.is_finite()))
        {
            Some("clip_grad_norm must be positive")
        } else if self.early_stopping == Some(0) {
            Some("early_stopping (patience) must be at least 1")
        } else if matches!(self.schedule, LrSchedule::WarmupCosine { min_factor, .. } if !(0.0..=1.0).contains(&min_factor))
        {
            Some("schedule.min_factor must be in [0, 1]")
        } else {
            None
        };
        problem.map_or(Ok(()), |p| {
            Err(Error::Config(format!("training settings: {p}")))
        })
    }

    /// Whether `other` continues the same run (all settings equal but the
    /// epoch budget and the patience, which a resumed run may change).
    pub(super) fn same_run(&self, other: &TrainConfig) -> bool {
        let strip = |c: &TrainConfig| TrainConfig {
            epochs: 0,
            early_stopping: None,
            ..c.clone()
        };
        strip(self) == strip(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_reaches_the_floor() {
        let schedule = LrSchedule::WarmupCosine {
            warmup_steps: 4,
            min_factor: 0.1,
        };
        let rates: Vec<f64> = (0..14).map(|s| schedule.rate(1.0, s, 14)).collect();
        assert_eq!(&rates[..4], &[0.25, 0.5, 0.75, 1.0]);
        assert!((rates[4] - 1.0).abs() < 1e-12);
        assert!(rates[4..].windows(2).all(|w| w[1] < w[0]), "{rates:?}");
        // Half-way through the decay: the mean of the peak and the floor.
        assert!((schedule.rate(1.0, 9, 14) - 0.55).abs() < 1e-12);
        assert!((schedule.rate(1.0, 14, 14) - 0.1).abs() < 1e-12);
        assert_eq!(LrSchedule::Constant.rate(0.3, 99, 10), 0.3);
    }

    #[test]
    fn bad_settings_name_the_field() {
        let bad = [
            TrainConfig {
                accumulation: 0,
                ..Default::default()
            },
            TrainConfig {
                label_smoothing: 1.0,
                ..Default::default()
            },
            TrainConfig {
                clip_grad_norm: Some(-1.0),
                ..Default::default()
            },
            TrainConfig {
                early_stopping: Some(0),
                ..Default::default()
            },
        ];
        for (config, field) in bad.iter().zip([
            "accumulation",
            "label_smoothing",
            "clip_grad_norm",
            "early_stopping",
        ]) {
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(field), "{message}");
        }
        let toml_like: TrainConfig = serde_json::from_str(
            r#"{"epochs": 3, "schedule": {"kind": "warmup-cosine", "warmup_steps": 10}}"#,
        )
        .unwrap();
        assert_eq!(toml_like.batch_size, 32);
        assert!(serde_json::from_str::<TrainConfig>(r#"{"epoch": 3}"#).is_err());
    }
}
