//! Model folders: the weights of a trained [`MultimodalClassifier`] with
//! everything needed to rebuild and use it (`polymodal eval`, `predict`).

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softmax};
use serde::{Deserialize, Serialize};

use polymodal_core::{Error, Modality, Result};
use polymodal_text::TextTokenizer;
use polymodal_train::{
    Batcher, Classifier, FeatureConfig, LabelNames, WEIGHTS_FILE, evaluate, load_dataset,
    read_manifest,
};

use crate::model::{ClassifierConfig, MultimodalClassifier};

/// What a trained model's folder holds besides its weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCard {
    /// Model architecture.
    pub classifier: ClassifierConfig,
    /// Feature extraction.
    pub features: FeatureConfig,
    /// Class names, in label order.
    pub classes: Vec<String>,
}

/// A model folder: `model.bpk`, `model.json` (a [`ModelCard`]), and
/// `tokenizer.json` when the model reads text.
pub struct ModelDir(pub PathBuf);

impl ModelDir {
    /// The weights file.
    pub fn weights(&self) -> PathBuf {
        self.0.join(WEIGHTS_FILE)
    }

    fn card(&self) -> PathBuf {
        self.0.join("model.json")
    }

    fn tokenizer(&self) -> PathBuf {
        self.0.join("tokenizer.json")
    }

    /// Writes the card and tokenizer (the weights are written by training).
    pub fn write_metadata(
        &self,
        card: &ModelCard,
        tokenizer: Option<&TextTokenizer>,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.0).map_err(|e| Error::io(&self.0, e))?;
        let json = serde_json::to_string_pretty(card).map_err(|e| Error::Config(e.to_string()))?;
        // Written at every run start: a kill must never leave a torn card.
        polymodal_train::write_atomic(&self.card(), json.as_bytes())?;
        if let Some(tokenizer) = tokenizer {
            // The `.partial` name is the run folder's: a leftover is removed.
            let partial = self.0.join("tokenizer.json.partial");
            tokenizer.save(&partial)?;
            std::fs::rename(&partial, self.tokenizer())
                .map_err(|e| Error::io(self.tokenizer(), e))?;
        }
        Ok(())
    }

    /// Loads the model, its card and its batcher for evaluation on `device`.
    pub fn load(&self, device: &Device) -> Result<(MultimodalClassifier, ModelCard, Batcher)> {
        let text = std::fs::read_to_string(self.card()).map_err(|e| Error::io(self.card(), e))?;
        let card: ModelCard = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", self.card().display())))?;
        let tokenizer = if card.classifier.modalities.contains(&Modality::Text) {
            Some(TextTokenizer::from_file(
                self.tokenizer(),
                card.classifier.max_tokens,
            )?)
        } else {
            None
        };
        let model =
            polymodal_train::load_checkpoint(card.classifier.init(device)?, &self.weights())?;
        let batcher = Batcher::new(
            card.classifier.modalities.clone(),
            card.features.clone(),
            tokenizer,
        )?;
        Ok((model, card, batcher))
    }
}

/// Evaluates a saved model folder on a manifest: accuracy and probabilities.
pub fn evaluate_dir(
    model_dir: &Path,
    manifest: &Path,
    device: &Device,
) -> Result<(f32, ModelCard)> {
    let (model, card, batcher) = ModelDir(model_dir.to_path_buf()).load(device)?;
    let data = load_dataset(
        &read_manifest(manifest)?,
        &card.features,
        Some(&card.classes),
    )?;
    let evaluation = evaluate(&model, &data, &batcher, device)?;
    Ok((evaluation.accuracy, card))
}

/// Decodes one sample given as files, for a model folder's features.
fn sample_batch(
    card: &ModelCard,
    batcher: &Batcher,
    files: &[(Modality, PathBuf)],
    device: &Device,
) -> Result<polymodal_core::MultimodalBatch> {
    // The sample is unlabelled: any label of the right kind will do.
    let label = if card.classifier.multi_label {
        LabelNames::Multi(Vec::new())
    } else {
        LabelNames::Single(card.classes[0].clone())
    };
    let mut entry = polymodal_train::ManifestEntry {
        id: "input".into(),
        label,
        text: None,
        image: None,
        audio: None,
        video: None,
    };
    for (modality, path) in files {
        let slot = match modality {
            Modality::Text => &mut entry.text,
            Modality::Image => &mut entry.image,
            Modality::Audio => &mut entry.audio,
            Modality::Video => &mut entry.video,
        };
        *slot = Some(path.clone());
    }
    let data = load_dataset(&[entry], &card.features, Some(&card.classes))?;
    let examples: Vec<_> = data.examples.iter().collect();
    batcher.batch(&examples, device)
}

/// Class probabilities of one sample given as files: they sum to 1, or for
/// a multi-label model each is the independent probability of its class.
pub fn predict_files(
    model_dir: &Path,
    files: &[(Modality, PathBuf)],
    device: &Device,
) -> Result<Vec<(String, f32)>> {
    let (model, card, batcher) = ModelDir(model_dir.to_path_buf()).load(device)?;
    let batch = sample_batch(&card, &batcher, files, device)?;
    let logits = model.logits(&batch)?;
    let probabilities = if card.classifier.multi_label {
        sigmoid(logits)
    } else {
        softmax(logits, 1)
    };
    let probabilities = probabilities
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Invalid(format!("{e:?}")))?;
    Ok(card.classes.into_iter().zip(probabilities).collect())
}

/// The fused representation (the head's input) of one sample given as files.
pub fn embed_files(
    model_dir: &Path,
    files: &[(Modality, PathBuf)],
    device: &Device,
) -> Result<Vec<f32>> {
    let (model, card, batcher) = ModelDir(model_dir.to_path_buf()).load(device)?;
    let batch = sample_batch(&card, &batcher, files, device)?;
    model
        .fused(&batch)?
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Invalid(format!("{e:?}")))
}
