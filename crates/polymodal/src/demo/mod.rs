//! The demo: generate the embedded dataset, train every unimodal model and
//! every fusion method on it, and report test accuracy.

mod report;
pub mod synthetic;

use std::path::Path;
use std::time::Instant;

use burn::prelude::*;

use polymodal_audio::{LogScale, MelConfig};
use polymodal_core::{Error, Modality, Result};
use polymodal_fusion::{FusionKind, Pool, WeightedAverage};
use polymodal_image::{ImagePreprocess, Normalize};
use polymodal_text::TextTokenizer;
use polymodal_train::{
    AudioFeatures, Batcher, Dataset, FeatureConfig, Progress, RngGuard, TrainConfig, Trainer,
    VideoFeatures, accuracy, evaluate, load_dataset, read_manifest,
};

use polymodal_train::{ClassifierConfig, ModelCard, ModelDir};
pub use report::{DemoReport, Family, ModelResult};
pub use synthetic::{DatasetSize, GeneratedDataset};

/// Longest caption, in tokens.
const DEMO_MAX_TOKENS: usize = 24;

/// Settings of a demo run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Samples per class and split.
    pub size: DatasetSize,
    /// Training settings shared by every model.
    pub train: TrainConfig,
    /// Embedding width of every encoder.
    pub dim: usize,
    /// The device models train and run on.
    pub device: Device,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            size: DatasetSize::DEMO,
            train: TrainConfig {
                epochs: 16,
                batch_size: 32,
                learning_rate: 3e-3,
                seed: 7,
                ..TrainConfig::default()
            },
            dim: 32,
            device: Device::flex(),
        }
    }
}

/// The feature settings for the embedded dataset.
pub fn demo_features() -> FeatureConfig {
    let image = ImagePreprocess {
        normalize: Normalize::HALF,
        ..ImagePreprocess::new(synthetic::SIDE, synthetic::SIDE)
    };
    let mel = MelConfig {
        log: LogScale::Decibel { top_db: Some(80.0) },
        ..MelConfig::librosa(synthetic::SAMPLE_RATE, 256, 128, 32)
    };
    FeatureConfig {
        image: image.clone(),
        audio: AudioFeatures {
            clip_samples: synthetic::CLIP_SAMPLES,
            mel,
            standardize: true,
            ..AudioFeatures::default()
        },
        video: VideoFeatures {
            frames: 4,
            preprocess: image,
        },
    }
}

/// Receives progress: `model` is the model being trained.
pub trait Reporter {
    /// A line of plain text.
    fn line(&mut self, text: &str);
    /// Training progress of `model`.
    fn progress(&mut self, model: &str, event: &Progress);
}

struct Splits {
    train: Dataset,
    valid: Dataset,
    test: Dataset,
}

fn load_splits(data: &GeneratedDataset, features: &FeatureConfig) -> Result<Splits> {
    let train = load_dataset(&read_manifest(&data.train)?, features, None)?;
    let valid = load_dataset(&read_manifest(&data.valid)?, features, Some(&train.classes))?;
    let test = load_dataset(&read_manifest(&data.test)?, features, Some(&train.classes))?;
    Ok(Splits { train, valid, test })
}

/// Runs the demo into `out`: `out/data` (the dataset), `out/models/<name>`
/// (checkpoints), `results.md`, `results.json` and `accuracy.svg`.
pub fn run(out: &Path, options: &DemoOptions, reporter: &mut dyn Reporter) -> Result<DemoReport> {
    let started = Instant::now();
    reporter.line(&format!(
        "generating the embedded dataset in {}",
        out.join("data").display()
    ));
    let data = synthetic::generate(&out.join("data"), options.size, options.train.seed)?;
    let features = demo_features();
    let splits = load_splits(&data, &features)?;
    reporter.line(&format!(
        "decoded {} train, {} validation, {} test samples ({} classes) in {:.1} s",
        splits.train.examples.len(),
        splits.valid.examples.len(),
        splits.test.examples.len(),
        splits.train.classes.len(),
        started.elapsed().as_secs_f64()
    ));
    let captions = splits
        .train
        .examples
        .iter()
        .filter_map(|e| e.features.text.clone());
    let tokenizer = TextTokenizer::train_wordpiece(captions, 200, DEMO_MAX_TOKENS)?;
    let session = Session {
        out,
        options,
        splits,
        tokenizer,
        device: options.device.clone(),
    };
    let (splits, device) = (&session.splits, &session.device);
    let mut results = Vec::new();
    let mut unimodal_valid = Vec::new();
    let mut unimodal_test = Vec::new();
    for modality in Modality::ALL {
        let run = session.train(
            &modality.to_string(),
            &[modality],
            FusionKind::None,
            reporter,
        )?;
        results.push(run.result(Family::Unimodal));
        unimodal_valid.push(run.valid_probabilities);
        unimodal_test.push(run.test_probabilities);
    }
    // Model-level fusion: the unimodal models' predictions, weights fitted on validation.
    let fit_start = Instant::now();
    let valid_labels = splits.valid.labels();
    let late = WeightedAverage::fit(Pool::Logarithmic, &unimodal_valid, &valid_labels)?;
    let present: Vec<_> = Modality::ALL
        .iter()
        .map(|&m| {
            let flags: Vec<bool> = splits
                .test
                .examples
                .iter()
                .map(|e| e.features.has(m))
                .collect();
            Tensor::<1, Bool>::from_data(
                TensorData::new(flags, [splits.test.examples.len()]),
                device,
            )
        })
        .collect();
    let combined = late.combine(&unimodal_test, &present)?;
    let test_labels = splits.test.labels();
    let weights: Vec<String> = Modality::ALL
        .iter()
        .zip(late.weights())
        .map(|(m, w)| format!("{m} {w:.2}"))
        .collect();
    reporter.line(&format!(
        "late fusion (logarithmic pool) weights fitted on validation: {}",
        weights.join(", ")
    ));
    results.push(ModelResult {
        name: "weighted-average (log pool)".into(),
        family: Family::Late,
        modalities: Modality::ALL.iter().map(|m| m.to_string()).collect(),
        accuracy: accuracy(&combined, &test_labels)?,
        parameters: results.iter().map(|r| r.parameters).sum(),
        train_seconds: results.iter().map(|r| r.train_seconds).sum::<f64>()
            + fit_start.elapsed().as_secs_f64(),
    });
    for (name, fusion, family) in [
        ("concat", FusionKind::Concat, Family::Early),
        ("single-stream", FusionKind::SingleStream, Family::Joint),
    ] {
        let run = session.train(name, &Modality::ALL, fusion, reporter)?;
        results.push(run.result(family));
    }
    let report = DemoReport {
        results,
        test_samples: splits.test.examples.len(),
    };
    write_report(out, &report)?;
    reporter.line(&format!(
        "demo finished in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(report)
}

struct TrainedModel {
    name: String,
    modalities: Vec<Modality>,
    accuracy: f32,
    parameters: usize,
    seconds: f64,
    valid_probabilities: Tensor<2>,
    test_probabilities: Tensor<2>,
}

impl TrainedModel {
    fn result(&self, family: Family) -> ModelResult {
        ModelResult {
            name: self.name.clone(),
            family,
            modalities: self.modalities.iter().map(|m| m.to_string()).collect(),
            accuracy: self.accuracy,
            parameters: self.parameters,
            train_seconds: self.seconds,
        }
    }
}

/// What every model of a demo run shares.
struct Session<'a> {
    out: &'a Path,
    options: &'a DemoOptions,
    splits: Splits,
    tokenizer: TextTokenizer,
    device: Device,
}

impl Session<'_> {
    /// Trains one model, writes its folder, and evaluates it on validation and test.
    fn train(
        &self,
        name: &str,
        modalities: &[Modality],
        fusion: FusionKind,
        reporter: &mut dyn Reporter,
    ) -> Result<TrainedModel> {
        let Self {
            out,
            options,
            splits,
            tokenizer,
            device,
        } = self;
        let config = ClassifierConfig::new(modalities.to_vec(), fusion, splits.train.classes.len())
            .with_dim(options.dim)
            .with_text(
                tokenizer.vocab_size(),
                tokenizer.max_length().unwrap_or(DEMO_MAX_TOKENS),
            );
        let uses_text = modalities.contains(&Modality::Text);
        let text = uses_text.then(|| tokenizer.clone());
        let batcher = Batcher::new(modalities.to_vec(), demo_features(), text)?;
        let dir = ModelDir(out.join("models").join(name));
        let card = ModelCard {
            classifier: config.clone(),
            features: demo_features(),
            classes: splits.train.classes.clone(),
        };
        dir.write_metadata(&card, uses_text.then_some(tokenizer))?;
        let train_device = device.clone().autodiff();
        let _rng = RngGuard::seeded(&train_device, options.train.seed);
        let model = config.init(&train_device)?;
        let parameters = model.num_params();
        let started = Instant::now();
        let trainer = Trainer {
            batcher: &batcher,
            config: options.train.clone(),
            device: train_device,
            output: Some(dir.0.clone()),
            resume: false,
        };
        let (model, _) = trainer.train(model, &splits.train, &splits.valid, &mut |event| {
            reporter.progress(name, &event)
        })?;
        let seconds = started.elapsed().as_secs_f64();
        let test = evaluate(&model, &splits.test, &batcher, device)?;
        let valid = evaluate(&model, &splits.valid, &batcher, device)?;
        reporter.line(&format!(
            "{name}: test accuracy {:.3} ({parameters} parameters, {seconds:.1} s)",
            test.accuracy
        ));
        Ok(TrainedModel {
            name: name.into(),
            modalities: modalities.to_vec(),
            accuracy: test.accuracy,
            parameters,
            seconds,
            valid_probabilities: valid.probabilities,
            test_probabilities: test.probabilities,
        })
    }
}

fn write_report(out: &Path, report: &DemoReport) -> Result<()> {
    let write = |name: &str, content: String| {
        let path = out.join(name);
        std::fs::write(&path, content).map_err(|e| Error::io(&path, e))
    };
    write("results.md", report.markdown())?;
    write(
        "results.json",
        serde_json::to_string_pretty(report).map_err(|e| Error::Config(e.to_string()))?,
    )?;
    write("accuracy.svg", report.svg())
}
