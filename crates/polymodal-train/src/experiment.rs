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
//! [encoders.audio]                  # default: each modality's `scratch` kind
//! pretrained = "models/whisper-tiny.en"  # a Hugging Face folder; its input
//! mode = "frozen"                   # features come from it (or "fine-tune")
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

use crate::{
    Batcher, Evaluation, FeatureConfig, Progress, RngGuard, TrainConfig, TrainReport, Trainer,
    evaluate,
};
pub use crate::{DataConfig, Splits, TextConfig};
use polymodal_core::{Error, Modality, Result};
use polymodal_fusion::FusionKind;

use crate::{
    ClassifierConfig, EmbedPlan, EmbeddedSamples, EncoderChoices, FeatureCache, ModelCard,
    ModelDir, MultimodalClassifier, Samples, folder_features,
};
use polymodal_text::TextTokenizer;

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
    /// The encoder of each modality (default: its `scratch` kind); a
    /// pretrained folder decides its modality's input features.
    #[serde(default)]
    pub encoders: EncoderChoices,
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
    /// Weight of the unimodal auxiliary losses (a head per modality trained
    /// beside the fused one; 0: none).
    pub unimodal_weight: f64,
    /// Relative standard deviation of the noise added in training to frozen
    /// encoders' embeddings (0: none).
    pub embedding_noise: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            modalities: None,
            fusion: None,
            dim: 64,
            modality_dropout: 0.0,
            contrastive_weight: 1.0,
            unimodal_weight: 0.0,
            embedding_noise: 0.0,
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
        let folders = experiment
            .encoders
            .values_mut()
            .filter_map(|c| c.pretrained.as_mut());
        data.chain(&mut experiment.text.tokenizer)
            .chain(folders)
            .for_each(resolve);
        experiment
            .validate()
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Ok(experiment)
    }

    fn validate(&self) -> Result<()> {
        self.data.validate()?;
        for (&modality, choice) in &self.encoders {
            choice.validate(modality)?;
        }
        let text_folder = self.encoders.get(&Modality::Text);
        if self.text.tokenizer.is_some() && text_folder.is_some_and(|c| c.pretrained.is_some()) {
            return Err(Error::Config(
                "text.tokenizer and a pretrained encoders.text both give the tokenizer: \
                 remove text.tokenizer (the folder's tokenizer.json is used)"
                    .into(),
            ));
        }
        self.train.validate()
    }

    /// The feature settings in force: `[features]` or the data's defaults,
    /// with the settings of the pretrained encoders' folders (see
    /// [`folder_features`]; an explicit `[features]` setting that differs
    /// from a folder's is an error).
    pub fn features(&self) -> Result<FeatureConfig> {
        let mut features = self
            .features
            .clone()
            .unwrap_or_else(|| self.data.default_features());
        let explicit = self.features.is_some();
        folder_features(
            &self.encoders,
            &Modality::ALL,
            &mut features,
            self.text.max_tokens,
            explicit,
        )?;
        Ok(features)
    }

    /// The tokenizer for `texts`: a pretrained text encoder's, the
    /// `text.tokenizer` file, or one trained on `texts`.
    fn tokenizer(&self, texts: &[String]) -> Result<TextTokenizer> {
        let mut features = FeatureConfig::default();
        let folder = folder_features(
            &self.encoders,
            &[Modality::Text],
            &mut features,
            self.text.max_tokens,
            false,
        )?;
        folder.map_or_else(|| self.text.tokenizer(texts), Ok)
    }
}

/// Reads the experiment's manifests and decodes the data (all at once, or
/// batch by batch with `lazy`); media of modalities the model does not read
/// are not decoded.
pub fn load_splits(experiment: &Experiment) -> Result<Splits> {
    let used = experiment.model.modalities.as_deref();
    experiment.data.load(&experiment.features()?, used)
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
        Some(experiment.tokenizer(&splits.texts)?)
    } else {
        None
    };
    let features = experiment.features()?;
    let mut encoders = experiment.encoders.clone();
    encoders.retain(|m, _| modalities.contains(m));
    for choice in encoders.values_mut() {
        choice.record_weights()?;
    }
    let config = ClassifierConfig::new(modalities.clone(), fusion, splits.train.classes().len())
        .with_dim(experiment.model.dim)
        .with_text(
            tokenizer.as_ref().map_or(0, |t| t.vocab_size()),
            experiment.text.max_tokens,
        )
        .with_channels(features.image.channels())
        .with_modality_dropout(experiment.model.modality_dropout)
        .with_contrastive_weight(experiment.model.contrastive_weight)
        .with_unimodal_weight(experiment.model.unimodal_weight)
        .with_embedding_noise(experiment.model.embedding_noise)
        .with_multi_label(splits.train.is_multi_label());
    let config = ClassifierConfig { encoders, ..config };
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
    // Seeding, the model's initial weights and training draw from the
    // backend's one generator: under one guard, the seed decides them all.
    let _rng = RngGuard::seeded(&train_device, experiment.train.seed);
    let trainer = Trainer {
        batcher: &batcher,
        config: train_config(experiment, &config)?,
        device: train_device.clone(),
        output: Some(dir.0.clone()),
        resume,
    };
    let model = config.init(&train_device)?;
    let splits = embed_frozen(experiment, &config, &model, &batcher, splits, device)?;
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

/// `[train]` with the learning rates of `[encoders.<modality>]` added; a
/// modality given a rate in both places is an error.
fn train_config(experiment: &Experiment, config: &ClassifierConfig) -> Result<TrainConfig> {
    let mut train = experiment.train.clone();
    for (&modality, choice) in &config.encoders {
        let Some(rate) = choice.learning_rate else {
            continue;
        };
        if train
            .encoder_learning_rates
            .insert(modality, rate)
            .is_some()
        {
            return Err(Error::Config(format!(
                "the learning rate of the {modality} encoder is given twice: in \
                 [encoders.{modality}] and in [train] encoder_learning_rates"
            )));
        }
    }
    train.validate()?;
    Ok(train)
}

/// The splits with the embeddings of the frozen encoders computed once per
/// sample in place of their media ([`EmbeddedSamples`]; kept in `[data]
/// cache` when set), so no epoch decodes or encodes those media again.
/// Sequences are kept only for joint fusion, which reads them.
fn embed_frozen(
    experiment: &Experiment,
    config: &ClassifierConfig,
    model: &MultimodalClassifier,
    batcher: &Batcher,
    splits: Splits,
    device: &Device,
) -> Result<Splits> {
    let identities = EmbedPlan::identities(config, batcher.features())?;
    if identities.is_empty() {
        return Ok(splits);
    }
    let cache = experiment
        .data
        .cache
        .as_ref()
        .map(FeatureCache::new)
        .transpose()?;
    let plan = EmbedPlan {
        model,
        batcher,
        identities,
        keep_sequences: config.fusion.is_joint(),
        cache: cache.as_ref(),
        device,
    };
    let embed = |samples: Box<dyn Samples>| -> Result<Box<dyn Samples>> {
        Ok(Box::new(EmbeddedSamples::new(&*samples, &plan)?))
    };
    Ok(Splits {
        train: embed(splits.train)?,
        valid: embed(splits.valid)?,
        test: splits.test.map(embed).transpose()?,
        ..splits
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
        assert_eq!(e.features().unwrap(), FeatureConfig::default());
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

    /// A pretrained folder decides its modality's features; an explicit
    /// setting that differs is an error naming both, and a tokenizer file
    /// beside a pretrained text encoder is refused.
    #[test]
    fn pretrained_folders_decide_the_features() {
        let vit = polymodal_core::testing::encoder_fixture("vit");
        let whisper = polymodal_core::testing::encoder_fixture("whisper");
        let folders = format!(
            "[encoders.image]\npretrained = {vit:?}\n[encoders.audio]\npretrained = {whisper:?}\n"
        );
        let path = write(
            "folders",
            &format!("[data]\ntrain = \"m.jsonl\"\n{folders}"),
        );
        let features = Experiment::from_file(&path).unwrap().features().unwrap();
        let side = polymodal_image::VitConfig::from_file(vit.join("config.json"))
            .unwrap()
            .image_size as u32;
        assert_eq!(features.image, polymodal_image::ImagePreprocess::vit(side));
        assert_eq!(features.audio.max_frames, Some(3000));
        assert!(features.audio.resample && !features.audio.standardize);
        // A [features.image] of another size is an error naming both.
        assert_ne!(features.image.width, 64);
        let path = write(
            "clash",
            &format!(
                "[data]\ntrain = \"m.jsonl\"\n{folders}[features.image]\nwidth = 64\nheight = 64\n"
            ),
        );
        let error = Experiment::from_file(&path)
            .unwrap()
            .features()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("features.image") && error.contains(&vit.display().to_string()),
            "{error}"
        );
        let path = write(
            "tokenizer",
            &format!(
                "[data]\ntrain = \"m.jsonl\"\n[text]\ntokenizer = \"t.json\"\n\
                 [encoders.text]\npretrained = {vit:?}\n"
            ),
        );
        let error = Experiment::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("text.tokenizer"), "{error}");
    }

    /// Training with a frozen pretrained encoder (the ViT fixture) on image
    /// files: the samples are embedded once (with `[data] cache`, a second
    /// run serves them from disk), the card records the weights' hash, and
    /// the model folder evaluates the test manifest from the files as
    /// training evaluated it from the embeddings.
    #[test]
    fn a_frozen_pretrained_encoder_trains_on_its_embeddings() {
        let path = write("frozen", "");
        let dir = path.parent().unwrap();
        let files = (0..16).map(|i| {
            let class = i % 2;
            let image = image::RgbImage::from_fn(16, 16, |x, y| {
                let noise = ((i * 31 + x * 7 + y * 13) % 40) as u8;
                if class == 0 {
                    image::Rgb([200 + noise / 2, 40 + noise, 30])
                } else {
                    image::Rgb([30, 40 + noise, 200 + noise / 2])
                }
            });
            let file = dir.join(format!("{i}.png"));
            image.save(&file).unwrap();
            (file, class)
        });
        let vit = polymodal_core::testing::encoder_fixture("vit");
        train_frozen_twice(&path, files.collect(), Modality::Image, &vit);
    }

    /// The same with the AST fixture on audio files: its folder decides
    /// Kaldi filter banks of its 12 frames (`ASTFeatureExtractor`'s
    /// defaults: it has no `preprocessor_config.json`).
    #[test]
    fn a_frozen_ast_trains_on_audio_files() {
        let path = write("frozen-ast", "");
        let dir = path.parent().unwrap();
        let files = (0..16u32).map(|i| {
            let class = i % 2;
            let hz = if class == 0 { 300.0 } else { 2_000.0 } + 10.0 * i as f32;
            let tone: Vec<f32> = (0..4_000)
                .map(|t| 0.3 * (std::f32::consts::TAU * hz * t as f32 / 16_000.0).sin())
                .collect();
            let file = dir.join(format!("{i}.wav"));
            polymodal_audio::write_wav_pcm16(&file, &tone, 16_000, 1).unwrap();
            (file, class)
        });
        let ast = polymodal_core::testing::encoder_fixture("ast");
        let features = train_frozen_twice(&path, files.collect(), Modality::Audio, &ast);
        assert_eq!(
            features.audio.mel,
            polymodal_audio::MelConfig::kaldi_fbank(16_000, 10)
        );
        assert_eq!(features.audio_shape().unwrap(), [10, 12]);
        let statistics = crate::Normalization {
            mean: -4.267_739_3,
            std: 2.0 * 4.568_997_4,
        };
        assert_eq!(features.audio.normalize, Some(statistics));
    }

    /// Trains twice (three epochs, `[data] cache`) on `files` (path, class;
    /// the last quarter the test set) of `modality` with the frozen
    /// pretrained `folder` (its embeddings with noise in training, `[model]
    /// embedding_noise`); checks each run's model folder evaluates the
    /// test files as training did, records the weights' hash and the noise,
    /// and that the second run (from the cache) equals the first. The run's
    /// features.
    fn train_frozen_twice(
        path: &Path,
        files: Vec<(PathBuf, u32)>,
        modality: Modality,
        folder: &Path,
    ) -> FeatureConfig {
        // Loading the model folder in `evaluate_dir` builds a model and so
        // draws from the generator: held for the whole test, so it neither
        // changes another test's seeded run nor is changed by one.
        let _rng = crate::RngGuard::hold();
        let dir = path.parent().unwrap();
        let mut lines = (String::new(), String::new());
        for (i, (file, class)) in files.iter().enumerate() {
            let line = format!("{{\"{modality}\": {file:?}, \"label\": \"c{class}\"}}\n");
            if i < files.len() * 3 / 4 {
                &mut lines.0
            } else {
                &mut lines.1
            }
            .push_str(&line);
        }
        std::fs::write(dir.join("train.jsonl"), &lines.0).unwrap();
        std::fs::write(dir.join("test.jsonl"), &lines.1).unwrap();
        let toml = |output: &str| {
            format!(
                "output = \"{output}\"\n[data]\ntrain = \"train.jsonl\"\ntest = \"test.jsonl\"\n\
                 cache = \"cache\"\nvalid_fraction = 0.25\n[encoders.{modality}]\n\
                 pretrained = {folder:?}\n[model]\nembedding_noise = 0.1\n[train]\nepochs = 3\n"
            )
        };
        let mut accuracies = Vec::new();
        let mut features = None;
        for output in ["run1", "run2"] {
            std::fs::write(path, toml(output)).unwrap();
            let experiment = Experiment::from_file(path).unwrap();
            features = Some(experiment.features().unwrap());
            let report = run(&experiment, &Device::flex(), false, &mut |_| {}).unwrap();
            let test = report.test.unwrap();
            let (accuracy, card) =
                crate::evaluate_dir(&report.model_dir, &dir.join("test.jsonl"), &Device::flex())
                    .unwrap();
            assert_eq!(accuracy, test.accuracy, "from files and from embeddings");
            let recorded = &card.classifier.encoders[&modality].weights_sha256;
            assert_eq!(recorded, &Some(crate::weights_sha256(folder).unwrap()));
            assert_eq!(card.classifier.embedding_noise, 0.1);
            accuracies.push(accuracy);
        }
        // The second run's embeddings come from the cache: the same run.
        assert_eq!(accuracies[0], accuracies[1]);
        let entries = std::fs::read_dir(dir.join("cache")).unwrap().count();
        assert!(entries > 0, "nothing cached");
        features.unwrap()
    }
}
