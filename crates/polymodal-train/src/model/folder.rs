//! Model folders: the weights of a trained [`MultimodalClassifier`] with
//! everything needed to rebuild and use it (`polymodal eval`, `predict`).

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softmax};
use serde::{Deserialize, Serialize};

use polymodal_core::{Error, Modality, Result};
use polymodal_fusion::FusionKind;
use polymodal_text::TextTokenizer;

use super::{ClassifierConfig, MultimodalClassifier};
use crate::{
    Batcher, Classifier, FeatureConfig, LabelNames, ManifestEntry, WEIGHTS_FILE, evaluate,
    load_dataset, read_manifest, write_atomic,
};

/// What a trained model's folder holds besides its weights.
///
/// In `model.json` the card also carries the [`ModelCard::FORMAT`] of the
/// polymodal that wrote it (`"format": 3`; a card without one is format 1).
/// Reading a card of another format is an error that says so: its weights
/// are laid out differently.
#[derive(Debug, Clone)]
pub struct ModelCard {
    /// Model architecture.
    pub classifier: ClassifierConfig,
    /// Feature extraction.
    pub features: FeatureConfig,
    /// Class names, in label order.
    pub classes: Vec<String>,
}

impl ModelCard {
    /// The layout of the model folders this polymodal writes and reads.
    ///
    /// - 1 (cards without `format`): encoders stored as their own types;
    /// - 2: encoders stored as the registries' dispatch enums
    ///   (`polymodal_text::AnyTextEncoder`, …), whose parameter names include
    ///   the encoder kind, so format-1 weights do not load;
    /// - 3: `cross-modal` fusion's attention blocks carry a learned null
    ///   token. Only that fusion's weights changed: format-2 cards of every
    ///   other fusion are still read.
    pub const FORMAT: u32 = 3;

    /// Whether a card of `format` and `fusion` can be read, and if not, why.
    fn check_format(format: u32, fusion: Option<FusionKind>) -> std::result::Result<(), String> {
        use std::cmp::Ordering::*;
        let cross_modal = fusion == Some(FusionKind::CrossModal);
        match format.cmp(&Self::FORMAT) {
            Equal => Ok(()),
            Less if format == 2 && !cross_modal => Ok(()),
            Less if format == 2 => Err(
                "made by an older polymodal (format 2), whose cross-modal fusion had no null \
                 token: retrain, or use the version that made it"
                    .to_string(),
            ),
            Less => Err(format!(
                "made by an older polymodal (format {format}): retrain, or use the version \
                 that made it"
            )),
            Greater => Err(format!(
                "made by a newer polymodal (format {format}; this one reads format {}): \
                 update polymodal",
                Self::FORMAT
            )),
        }
    }
}

/// `model.json` as written: the card and its format.
#[derive(Serialize)]
struct CardOut<'a> {
    format: u32,
    classifier: &'a ClassifierConfig,
    features: &'a FeatureConfig,
    classes: &'a [String],
}

/// `model.json` as read: cards written before formats were numbered are 1.
#[derive(Deserialize)]
struct CardIn {
    #[serde(default = "first_format")]
    format: u32,
    classifier: ClassifierConfig,
    features: FeatureConfig,
    classes: Vec<String>,
}

/// Only the format of a `model.json` and the fusion it names, read before
/// the rest (whose fields may have changed between formats).
#[derive(Deserialize)]
struct CardFormat {
    #[serde(default = "first_format")]
    format: u32,
    classifier: Option<CardFusion>,
}

/// The fusion of a card's classifier, as written: a newer card's may be a
/// kind this polymodal does not know, and its format must still be read.
#[derive(Deserialize)]
struct CardFusion {
    fusion: Option<serde_json::Value>,
}

fn first_format() -> u32 {
    1
}

impl Serialize for ModelCard {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        CardOut {
            format: Self::FORMAT,
            classifier: &self.classifier,
            features: &self.features,
            classes: &self.classes,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ModelCard {
    /// Reads a card of [`ModelCard::FORMAT`]; another format is an error.
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let card = CardIn::deserialize(deserializer)?;
        Self::check_format(card.format, Some(card.classifier.fusion))
            .map_err(serde::de::Error::custom)?;
        Ok(Self {
            classifier: card.classifier,
            features: card.features,
            classes: card.classes,
        })
    }
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
        write_atomic(&self.card(), json.as_bytes())?;
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
        let in_card =
            |e: &dyn std::fmt::Display| Error::Config(format!("{}: {e}", self.card().display()));
        // The format first: an older card's other fields may not parse.
        if let Ok(CardFormat { format, classifier }) = serde_json::from_str(&text) {
            let fusion = classifier
                .and_then(|c| c.fusion)
                .and_then(|v| serde_json::from_value(v).ok());
            ModelCard::check_format(format, fusion).map_err(|e| in_card(&e))?;
        }
        let card: ModelCard = serde_json::from_str(&text).map_err(|e| in_card(&e))?;
        let tokenizer = if card.classifier.modalities.contains(&Modality::Text) {
            Some(TextTokenizer::from_file(
                self.tokenizer(),
                card.classifier.max_tokens,
            )?)
        } else {
            None
        };
        let model = crate::load_checkpoint(card.classifier.init(device)?, &self.weights())?;
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
    let mut entry = ManifestEntry {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> ModelCard {
        ModelCard {
            classifier: ClassifierConfig::new(
                vec![Modality::Image],
                polymodal_fusion::FusionKind::None,
                2,
            )
            .with_dim(8),
            features: FeatureConfig::default(),
            classes: vec!["a".into(), "b".into()],
        }
    }

    fn folder(name: &str) -> ModelDir {
        let dir = std::env::temp_dir().join(format!(
            "polymodal-model-card-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        ModelDir(dir)
    }

    /// Cards are written with the current format and read back; a card
    /// without a format (written before formats were numbered) or of a newer
    /// format is a clear error, not a failure to load the weights.
    #[test]
    fn cards_carry_their_format_and_older_ones_are_refused() {
        // Holds the generator so a seeded run on another test thread is
        // not changed by this test's draws.
        let _rng = crate::RngGuard::hold();
        let json = serde_json::to_value(card()).unwrap();
        assert_eq!(json["format"], ModelCard::FORMAT);
        assert_eq!(ModelCard::FORMAT, 3);
        let back: ModelCard = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back.classifier, card().classifier);
        assert_eq!(back.classes, card().classes);

        // A folder written now loads.
        let dir = folder("current");
        dir.write_metadata(&card(), None).unwrap();
        let model = card().classifier.init(&Device::flex()).unwrap();
        crate::save_checkpoint(&model, &dir.weights()).unwrap();
        assert!(dir.load(&Device::flex()).is_ok());

        // The same folder with a card of format 1 (no `format`).
        let mut old = json.clone();
        old.as_object_mut().unwrap().remove("format");
        std::fs::write(dir.card(), old.to_string()).unwrap();
        let Err(error) = dir.load(&Device::flex()) else {
            panic!("a format-1 card was read");
        };
        assert!(matches!(error, Error::Config(_)), "{error:?}");
        let error = error.to_string();
        assert!(
            error.contains(&dir.card().display().to_string())
                && error.contains(
                    "made by an older polymodal (format 1): retrain, or use the version that made it"
                ),
            "{error}"
        );
        assert!(serde_json::from_value::<ModelCard>(old).is_err());

        // Format 2 is read unless its fusion is cross-modal, whose blocks
        // gained a null token in format 3.
        let mut second = json.clone();
        second["format"] = serde_json::json!(2);
        std::fs::write(dir.card(), second.to_string()).unwrap();
        assert!(dir.load(&Device::flex()).is_ok());
        second["classifier"]["fusion"] = serde_json::json!("cross-modal");
        let error = load_error(&dir, &second);
        assert!(
            error.contains("(format 2), whose cross-modal fusion had no null token"),
            "{error}"
        );
        assert!(serde_json::from_value::<ModelCard>(second).is_err());

        // A newer card says to update.
        let mut newer = json;
        newer["format"] = serde_json::json!(ModelCard::FORMAT + 1);
        newer["classifier"]["fusion"] = serde_json::json!("a-kind-not-known-yet");
        let error = load_error(&dir, &newer);
        assert!(
            error.contains("made by a newer polymodal (format 4"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir.0).unwrap();
    }

    /// What loading `dir` says once its card is `card`.
    fn load_error(dir: &ModelDir, card: &serde_json::Value) -> String {
        std::fs::write(dir.card(), card.to_string()).unwrap();
        let Err(error) = dir.load(&Device::flex()) else {
            panic!("a card that should be refused was read");
        };
        error.to_string()
    }
}
