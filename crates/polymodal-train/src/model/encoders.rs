//! The encoder of each modality of a classifier ([`EncoderChoice`]): a
//! from-scratch kind of the modality's registry (the default), or a
//! pretrained model folder whose kind its `config.json` names; and how it
//! trains ([`EncoderMode`]). The inputs a pretrained folder's model expects
//! (tokenizer, image preprocessing, log-mel settings) come from the folder
//! ([`folder_features`]), so they are never restated by hand.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use polymodal_audio::{AudioEncoderKind, MelConfig, WhisperEncoderConfig, WhisperFeatures};
use polymodal_core::registry::EncoderKind;
use polymodal_core::{Error, Modality, Result};
use polymodal_image::ImageEncoderKind;
use polymodal_text::{TextEncoderKind, TextTokenizer};

use crate::{AudioFeatures, FeatureConfig};

/// How a pretrained encoder trains with the rest of the classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncoderMode {
    /// No gradients: the encoder's weights stay as loaded; only the fusion
    /// layer and the head learn.
    #[default]
    Frozen,
    /// Every weight of the encoder trains with the rest.
    FineTune,
}

/// The encoder of one modality: `[encoders.<modality>]` in an experiment,
/// `classifier.encoders` in a model card.
///
/// ```toml
/// [encoders.text]
/// pretrained = "../shared/models/all-MiniLM-L6-v2"   # kind from config.json
/// mode = "frozen"                                    # or "fine-tune"
///
/// [encoders.audio]
/// kind = "scratch"                                   # a from-scratch kind
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderChoice {
    /// A from-scratch kind of the modality's registry (`scratch`, text's
    /// `rnn`, ...); `None` with no folder: `scratch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A pretrained model folder (Hugging Face layout); its kind is read
    /// from its `config.json`. Video reads an image model's folder (the
    /// encoder runs on every frame).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<PathBuf>,
    /// How a pretrained encoder trains (default: frozen).
    #[serde(default)]
    pub mode: EncoderMode,
    /// SHA-256 of the folder's `model.safetensors`, recorded when training
    /// starts ([`EncoderChoice::record_weights`]): a model folder is only
    /// rebuilt from pretrained weights with this hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
}

/// The choices of a classifier, by modality (a modality without one uses
/// its `scratch` kind).
pub type EncoderChoices = BTreeMap<Modality, EncoderChoice>;

impl EncoderChoice {
    /// A pretrained folder in `mode`.
    pub fn pretrained(dir: impl Into<PathBuf>, mode: EncoderMode) -> Self {
        Self {
            pretrained: Some(dir.into()),
            mode,
            ..Self::default()
        }
    }

    /// Whether the encoder's weights stay as loaded.
    pub fn is_frozen(&self) -> bool {
        self.pretrained.is_some() && self.mode == EncoderMode::Frozen
    }

    /// Checks the choice for `modality`: a kind or a folder, not both; a
    /// kind its registry lists and that trains from scratch.
    pub fn validate(&self, modality: Modality) -> Result<()> {
        let bad = |what: String| Err(Error::Config(format!("encoders.{modality}: {what}")));
        match (&self.kind, &self.pretrained) {
            (Some(_), Some(_)) => bad("give `kind` or `pretrained`, not both".into()),
            (Some(name), None) => {
                let pretrained = match modality {
                    Modality::Text => is_pretrained::<TextEncoderKind>(name),
                    Modality::Image | Modality::Video => is_pretrained::<ImageEncoderKind>(name),
                    Modality::Audio => is_pretrained::<AudioEncoderKind>(name),
                };
                match pretrained {
                    Err(e) => bad(e.to_string()),
                    Ok(true) => bad(format!(
                        "`{name}` is pretrained: give its folder as `pretrained`"
                    )),
                    Ok(false) => Ok(()),
                }
            }
            (None, _) if self.mode == EncoderMode::FineTune && self.pretrained.is_none() => {
                bad("`mode` applies to a `pretrained` folder".into())
            }
            _ => Ok(()),
        }
    }

    /// Records the SHA-256 of the folder's weights (nothing for a
    /// from-scratch kind).
    pub fn record_weights(&mut self) -> Result<()> {
        if let Some(dir) = &self.pretrained {
            self.weights_sha256 = Some(weights_sha256(dir)?);
        }
        Ok(())
    }

    /// The encoder of this choice: a from-scratch kind built with `sizes`,
    /// or the folder's model loaded (its weights checked against
    /// [`EncoderChoice::weights_sha256`] when recorded).
    pub(crate) fn build<K: EncoderKind>(
        &self,
        sizes: &K::Sizes,
        device: &Device,
    ) -> Result<K::Any> {
        let Some(dir) = &self.pretrained else {
            let kind = self.kind.as_deref().map_or(Ok(K::all()[0]), K::parse)?;
            return kind.init(sizes, device);
        };
        if let Some(recorded) = &self.weights_sha256 {
            let found = weights_sha256(dir)?;
            if &found != recorded {
                return Err(Error::Config(format!(
                    "{}: the weights changed since the model was trained (SHA-256 {found}, \
                     the model card records {recorded})",
                    dir.join(WEIGHTS).display()
                )));
            }
        }
        let (encoder, _unused) = K::detect(dir)?.load(dir, device)?;
        Ok(encoder)
    }
}

fn is_pretrained<K: EncoderKind>(name: &str) -> Result<bool> {
    K::parse(name).map(K::is_pretrained)
}

/// The weights file of a pretrained folder.
const WEIGHTS: &str = "model.safetensors";

/// The SHA-256 (hex) of the folder's `model.safetensors`.
pub fn weights_sha256(dir: &Path) -> Result<String> {
    let path = dir.join(WEIGHTS);
    let mut file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(|e| Error::io(&path, e))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// What the pretrained folders of `encoders` (for the modalities in
/// `modalities`) decide about the inputs: the image, video-frame and audio
/// settings of `features` are replaced by the folders', and a text folder's
/// `tokenizer.json` is returned, cut at `max_tokens` or the model's position
/// table, whichever is shorter.
///
/// `explicit` says that `features` were written by the user: then a setting
/// that differs from a folder's is an [`Error::Config`] naming both.
pub fn folder_features(
    encoders: &EncoderChoices,
    modalities: &[Modality],
    features: &mut FeatureConfig,
    max_tokens: usize,
    explicit: bool,
) -> Result<Option<TextTokenizer>> {
    let mut tokenizer = None;
    for (&modality, choice) in encoders {
        let Some(dir) = &choice.pretrained else {
            continue;
        };
        if !modalities.contains(&modality) {
            continue;
        }
        match modality {
            Modality::Text => tokenizer = Some(folder_tokenizer(dir, max_tokens)?),
            Modality::Image => {
                let wanted = ImageEncoderKind::detect(dir)?.preprocess(dir)?;
                agree(explicit, "features.image", &features.image, &wanted, dir)?;
                features.image = wanted;
            }
            Modality::Video => {
                let wanted = ImageEncoderKind::detect(dir)?.preprocess(dir)?;
                let current = &features.video.preprocess;
                agree(explicit, "features.video.preprocess", current, &wanted, dir)?;
                features.video.preprocess = wanted;
            }
            Modality::Audio => {
                let wanted = folder_audio(dir)?;
                agree(explicit, "features.audio", &features.audio, &wanted, dir)?;
                features.audio = wanted;
            }
        }
    }
    Ok(tokenizer)
}

/// An error when the user's `current` setting differs from the folder's.
fn agree<T: PartialEq + Serialize>(
    explicit: bool,
    name: &str,
    current: &T,
    wanted: &T,
    dir: &Path,
) -> Result<()> {
    if !explicit || current == wanted {
        return Ok(());
    }
    let show = |t: &T| serde_json::to_string(t).unwrap_or_default();
    Err(Error::Config(format!(
        "{name} is {} but the pretrained model in {} expects {}: remove the setting (the \
         folder decides it)",
        show(current),
        dir.display(),
        show(wanted)
    )))
}

/// The folder's `tokenizer.json`, cut at `max_tokens` or the model's
/// `max_position_embeddings`, whichever is shorter.
fn folder_tokenizer(dir: &Path, max_tokens: usize) -> Result<TextTokenizer> {
    let config = dir.join("config.json");
    let text = std::fs::read_to_string(&config).map_err(|e| Error::io(&config, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Config(format!("{}: {e}", config.display())))?;
    let positions = json["max_position_embeddings"]
        .as_u64()
        .map_or(usize::MAX, |p| p as usize);
    TextTokenizer::from_file(dir.join("tokenizer.json"), max_tokens.min(positions))
}

/// The audio features of the folder's model: Whisper's 30-second log-mel
/// input (16 kHz, audio of other rates resampled, the first 3000 frames).
fn folder_audio(dir: &Path) -> Result<AudioFeatures> {
    match AudioEncoderKind::detect(dir)? {
        AudioEncoderKind::Whisper => {
            let config = WhisperEncoderConfig::from_file(dir.join("config.json"))?;
            let features = WhisperFeatures::new()?;
            Ok(AudioFeatures {
                clip_samples: 30 * WhisperFeatures::SAMPLE_RATE as usize,
                mel: MelConfig {
                    n_mels: config.num_mel_bins,
                    ..MelConfig::whisper()
                },
                standardize: false,
                resample: true,
                max_frames: Some(features.frames()),
            })
        }
        kind => Err(Error::Config(format!(
            "{}: the input features of audio encoder `{kind}` cannot be read from its folder \
             yet (Whisper's can)",
            dir.display()
        ))),
    }
}
