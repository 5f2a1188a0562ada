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

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use polymodal_core::{Error, Modality, Result};
use polymodal_fusion::FusionKind;
use polymodal_text::TextTokenizer;
use polymodal_train::{
    Batcher, Evaluation, FeatureCache, FeatureConfig, LazyDataset, ManifestEntry, Progress,
    Samples, TrainConfig, TrainReport, Trainer, avmnist_features, class_names, evaluate,
    load_avmnist, read_manifest, stratified_holdout,
};

use crate::model::ClassifierConfig;
use crate::model_dir::{ModelCard, ModelDir};

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

/// The data section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Training manifest (JSONL or CSV).
    pub train: Option<PathBuf>,
    /// Validation manifest; without it `valid_fraction` of the training set
    /// (stratified by class, fixed seed) is held out.
    pub valid: Option<PathBuf>,
    /// Test manifest, evaluated after training.
    pub test: Option<PathBuf>,
    /// Instead of manifests: the AV-MNIST folder (`shared/data/avmnist`);
    /// its official test split is the test set.
    pub avmnist: Option<PathBuf>,
    /// Share of the training set held out for validation.
    #[serde(default = "default_valid_fraction")]
    pub valid_fraction: f64,
    /// Decode media batch by batch while training (memory stays at a few
    /// batches) instead of all at once before training.
    #[serde(default)]
    pub lazy: bool,
    /// A folder for decoded features (keyed by file content and feature
    /// settings): later runs skip decoding.
    pub cache: Option<PathBuf>,
}

fn default_valid_fraction() -> f64 {
    0.1
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

/// The text section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextConfig {
    /// A `tokenizer.json`; without one a WordPiece vocabulary is trained on
    /// the training texts.
    pub tokenizer: Option<PathBuf>,
    /// Vocabulary size of a trained tokenizer.
    pub vocab_size: usize,
    /// Longest token sequence.
    pub max_tokens: usize,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            tokenizer: None,
            vocab_size: 2000,
            max_tokens: 64,
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
        let data = &mut experiment.data;
        for p in [
            &mut data.train,
            &mut data.valid,
            &mut data.test,
            &mut data.avmnist,
            &mut data.cache,
            &mut experiment.text.tokenizer,
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
        experiment
            .validate()
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Ok(experiment)
    }

    fn validate(&self) -> Result<()> {
        let data = &self.data;
        if data.train.is_some() == data.avmnist.is_some() {
            return Err(Error::Config(
                "[data] needs exactly one of `train` (a manifest) or `avmnist` (a folder)".into(),
            ));
        }
        if data.avmnist.is_some()
            && (data.valid.is_some() || data.test.is_some() || data.lazy || data.cache.is_some())
        {
            return Err(Error::Config(
                "[data] `avmnist` brings its own splits and decoding: drop `valid`, `test`, `lazy` and `cache`".into(),
            ));
        }
        if !(data.valid_fraction > 0.0 && data.valid_fraction < 1.0) {
            return Err(Error::Config(
                "[data] valid_fraction must be in (0, 1)".into(),
            ));
        }
        self.train.validate()
    }

    /// The feature settings in force.
    pub fn features(&self) -> FeatureConfig {
        self.features.clone().unwrap_or_else(|| {
            if self.data.avmnist.is_some() {
                avmnist_features()
            } else {
                FeatureConfig::default()
            }
        })
    }
}

/// The datasets of an experiment.
pub struct Splits {
    /// Training samples.
    pub train: Box<dyn Samples>,
    /// Validation samples.
    pub valid: Box<dyn Samples>,
    /// Test samples, if any.
    pub test: Option<Box<dyn Samples>>,
    /// The modalities at least one training sample has.
    pub modalities: BTreeSet<Modality>,
    /// The training texts (for training a tokenizer).
    pub texts: Vec<String>,
}

/// Reads the experiment's manifests and decodes the data (all at once, or
/// batch by batch with `lazy`).
pub fn load_splits(experiment: &Experiment) -> Result<Splits> {
    let features = experiment.features();
    let data = &experiment.data;
    if let Some(dir) = &data.avmnist {
        let av = load_avmnist(dir, &features)?;
        let (kept, held) = stratified_holdout(&av.train.labels(), data.valid_fraction, 2026)?;
        return Ok(Splits {
            modalities: av.train.modalities(),
            train: Box::new(av.train.subset(&kept)),
            valid: Box::new(av.train.subset(&held)),
            test: Some(Box::new(av.test)),
            texts: Vec::new(),
        });
    }
    let mut train = read_manifest(data.train.as_ref().expect("validated"))?;
    let classes = class_names(&train);
    let mut valid = match &data.valid {
        Some(path) => read_manifest(path)?,
        None => {
            // Stratified by the (first) class; a sample of no class is its own stratum.
            let labels: Vec<usize> = train
                .iter()
                .map(|e| {
                    e.label
                        .names()
                        .first()
                        .and_then(|name| classes.iter().position(|c| c == name))
                        .unwrap_or(classes.len())
                })
                .collect();
            let (kept, held) = stratified_holdout(&labels, data.valid_fraction, 2026)?;
            let pick = |indices: &[usize]| indices.iter().map(|&i| train[i].clone()).collect();
            let (kept, held): (Vec<_>, Vec<_>) = (pick(&kept), pick(&held));
            train = kept;
            held
        }
    };
    let mut test = data.test.as_ref().map(read_manifest).transpose()?;
    // Media of modalities the model does not read are not decoded.
    if let Some(used) = &experiment.model.modalities {
        let entries = train
            .iter_mut()
            .chain(&mut valid)
            .chain(test.iter_mut().flatten());
        for entry in entries {
            for m in Modality::ALL.into_iter().filter(|m| !used.contains(m)) {
                match m {
                    Modality::Text => entry.text = None,
                    Modality::Image => entry.image = None,
                    Modality::Audio => entry.audio = None,
                    Modality::Video => entry.video = None,
                }
            }
        }
    }
    let modalities = Modality::ALL
        .into_iter()
        .filter(|&m| train.iter().any(|e| e.path(m).is_some()))
        .collect();
    let texts = train
        .iter()
        .filter_map(|e| e.text.as_ref())
        .map(|p| std::fs::read_to_string(p).map_err(|e| Error::io(p, e)))
        .collect::<Result<_>>()?;
    let cache = data.cache.as_ref().map(FeatureCache::new).transpose()?;
    let source = |entries: Vec<ManifestEntry>| -> Result<Box<dyn Samples>> {
        let lazy = LazyDataset::new(entries, features.clone(), Some(&classes), cache.clone())?;
        Ok(if data.lazy {
            Box::new(lazy)
        } else {
            Box::new(lazy.decode_all()?)
        })
    };
    Ok(Splits {
        train: source(std::mem::take(&mut train))?,
        valid: source(std::mem::take(&mut valid))?,
        test: test.map(source).transpose()?,
        modalities,
        texts,
    })
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
        Some(tokenizer(experiment, &splits.texts)?)
    } else {
        None
    };
    let features = experiment.features();
    let config = ClassifierConfig {
        modalities: modalities.clone(),
        fusion,
        classes: splits.train.classes().len(),
        dim: experiment.model.dim,
        vocab_size: tokenizer.as_ref().map_or(0, |t| t.vocab_size()),
        max_tokens: experiment.text.max_tokens,
        channels: features.image.channels(),
        modality_dropout: experiment.model.modality_dropout,
        contrastive_weight: experiment.model.contrastive_weight,
        multi_label: splits.train.is_multi_label(),
    };
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

fn tokenizer(experiment: &Experiment, texts: &[String]) -> Result<TextTokenizer> {
    let text = &experiment.text;
    match &text.tokenizer {
        Some(path) => TextTokenizer::from_file(path, text.max_tokens),
        None => TextTokenizer::train_wordpiece(texts.iter(), text.vocab_size, text.max_tokens),
    }
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
