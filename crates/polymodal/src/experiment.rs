//! Experiments described by a TOML file: `polymodal train --config x.toml`.
//!
//! ```toml
//! output = "runs/digits"            # the model folder (relative to this file)
//!
//! [data]
//! train = "data/train.jsonl"        # JSONL or CSV manifest
//! valid = "data/valid.csv"          # optional: else `valid_fraction` of train
//! test = "data/test.jsonl"          # optional: evaluated after training
//!
//! [model]
//! fusion = "gated"                  # see `polymodal_fusion`; default concat
//! modalities = ["image", "audio"]   # default: every modality of the train set
//!
//! [train]
//! epochs = 20
//! schedule = { kind = "warmup-cosine", warmup_steps = 100 }
//! ```
//!
//! Every key has a default except `data.train` (or `data.avmnist`, the
//! built-in AV-MNIST benchmark folder); unknown keys are errors naming them.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use polymodal_core::{Error, Modality, Result};
use polymodal_fusion::FusionKind;
use polymodal_train::{
    Batcher, Evaluation, FeatureConfig, Progress, TrainConfig, TrainReport, Trainer, evaluate,
};
pub use polymodal_train::{DataConfig, Splits, TextConfig};

use polymodal_train::{ClassifierConfig, ModelCard, ModelDir};

/// A whole experiment: data, model, features, training, output folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// The model folder to write (relative to the config file).
    #[serde(default = "default_output")]
    pub output: PathBuf,
    /// Where the samples are.
    pub data: DataConfig,
    /// The model.
    #[serde(default)]
    pub model: ModelConfig,
    /// Feature extraction (defaults: `FeatureConfig::default()`, or the
    /// AV-MNIST settings with `data.avmnist`).
    pub features: Option<FeatureConfig>,
    /// Training settings.
    #[serde(default)]
    pub train: TrainConfig,
    /// Tokenisation, for models that read text.
    #[serde(default)]
    pub text: TextConfig,
}

fn default_output() -> PathBuf {
    PathBuf::from("runs/experiment")
}

/// The model section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Modalities read, in fusion order (default: those of the training set).
    pub modalities: Option<Vec<Modality>>,
    /// Fusion (default `concat`; `none` for one modality).
    pub fusion: Option<FusionKind>,
    /// Embedding width of every encoder.
    pub dim: usize,
    /// Modality dropout probability.
    pub modality_dropout: f64,
    /// Weight of the InfoNCE loss for `contrastive` fusion.
    pub contrastive_weight: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            modalities: None,
            fusion: None,
            dim: 64,
            modality_dropout: 0.0,
            contrastive_weight: 1.0,
        }
    }
}

impl Experiment {
    /// Reads and checks a TOML file; relative paths become relative to its folder.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut experiment: Experiment =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| *p = base.join(&*p);
        resolve(&mut experiment.output);
        let data = experiment.data.paths_mut();
        data.chain(&mut experiment.text.tokenizer).for_each(resolve);
        experiment
            .validate()
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Ok(experiment)
    }

    fn validate(&self) -> Result<()> {
        self.data.validate()?;
        self.train.validate()
    }

    /// The feature settings in force.
    pub fn features(&self) -> FeatureConfig {
        self.features
            .clone()
            .unwrap_or_else(|| self.data.default_features())
    }
}

/// Reads the experiment's manifests and decodes the data (all at once, or
/// batch by batch with `lazy`); media of modalities the model does not read
/// are not decoded.
pub fn load_splits(experiment: &Experiment) -> Result<Splits> {
    let used = experiment.model.modalities.as_deref();
    experiment.data.load(&experiment.features(), used)
}

/// What [`run`] produced.
pub struct ExperimentReport {
    /// The training run.
    pub train: TrainReport,
    /// Test-set evaluation of the best model, if there is a test set.
    pub test: Option<Evaluation>,
    /// The model folder.
    pub model_dir: PathBuf,
}

/// Runs an experiment on `device`: decodes the data, trains, writes the
/// model folder (model card, weights, metrics, charts) and evaluates the best
/// model on the test set. `resume` continues a run saved in the folder.
pub fn run(
    experiment: &Experiment,
    device: &Device,
    resume: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<ExperimentReport> {
    let splits = load_splits(experiment)?;
    let present = &splits.modalities;
    let modalities = match &experiment.model.modalities {
        Some(m) => m.clone(),
        None => present.iter().copied().collect(),
    };
    if let Some(m) = modalities.iter().find(|m| !present.contains(m)) {
        return Err(Error::Config(format!(
            "[model] modalities: no training sample has `{m}`"
        )));
    }
    let fusion = experiment.model.fusion.unwrap_or(if modalities.len() == 1 {
        FusionKind::None
    } else {
        FusionKind::Concat
    });
    let tokenizer = if modalities.contains(&Modality::Text) {
        Some(experiment.text.tokenizer(&splits.texts)?)
    } else {
        None
    };
    let features = experiment.features();
    let config = ClassifierConfig::new(modalities.clone(), fusion, splits.train.classes().len())
        .with_dim(experiment.model.dim)
        .with_text(
            tokenizer.as_ref().map_or(0, |t| t.vocab_size()),
            experiment.text.max_tokens,
        )
        .with_channels(features.image.channels())
        .with_modality_dropout(experiment.model.modality_dropout)
        .with_contrastive_weight(experiment.model.contrastive_weight)
        .with_multi_label(splits.train.is_multi_label());
    config.validate()?;
    let dir = ModelDir(experiment.output.clone());
    let card = ModelCard {
        classifier: config.clone(),
        features: features.clone(),
        classes: splits.train.classes().to_vec(),
    };
    dir.write_metadata(&card, tokenizer.as_ref())?;
    let batcher = Batcher::new(modalities, features, tokenizer)?;
    let train_device = device.clone().autodiff();
    train_device.seed(experiment.train.seed);
    let trainer = Trainer {
        batcher: &batcher,
        config: experiment.train.clone(),
        device: train_device.clone(),
        output: Some(dir.0.clone()),
        resume,
    };
    let model = config.init(&train_device)?;
    let (model, report) = trainer.train(model, &*splits.train, &*splits.valid, progress)?;
    let test = splits
        .test
        .as_ref()
        .map(|t| evaluate(&model, &**t, &batcher, device))
        .transpose()?;
    Ok(ExperimentReport {
        train: report,
        test,
        model_dir: dir.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("polymodal-exp-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn defaults_fill_everything_but_the_data() {
        let path = write("min", "[data]\ntrain = \"m.jsonl\"\n");
        let e = Experiment::from_file(&path).unwrap();
        let base = path.parent().unwrap();
        assert_eq!(
            e.data.train.as_deref(),
            Some(base.join("m.jsonl").as_path())
        );
        assert_eq!(e.output, base.join("runs/experiment"));
        assert_eq!(e.train, TrainConfig::default());
        assert_eq!(e.model.dim, 64);
        assert_eq!(e.features(), FeatureConfig::default());
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let path = write("typo", "[data]\ntrain = \"m.jsonl\"\n[train]\nepochz = 3\n");
        let message = Experiment::from_file(&path).unwrap_err().to_string();
        assert!(
            message.contains("x.toml") && message.contains("epochz"),
            "{message}"
        );
        let path = write(
            "fusion",
            "[data]\ntrain = \"m.jsonl\"\n[model]\nfusion = \"late\"\n",
        );
        let message = Experiment::from_file(&path).unwrap_err().to_string();
        assert!(message.contains("late"), "{message}");
        let path = write("both", "[data]\ntrain = \"m.jsonl\"\navmnist = \"d\"\n");
        let message = Experiment::from_file(&path).unwrap_err().to_string();
        assert!(message.contains("exactly one"), "{message}");
        let path = write(
            "lr",
            "[data]\ntrain = \"m.jsonl\"\n[train]\nlearning_rate = -1.0\n",
        );
        let message = Experiment::from_file(&path).unwrap_err().to_string();
        assert!(message.contains("learning_rate"), "{message}");
    }
}
