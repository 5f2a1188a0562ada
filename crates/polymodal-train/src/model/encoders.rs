//! The encoder of each modality of a classifier ([`EncoderChoice`]): a
//! from-scratch kind of the modality's registry (the default), or a
//! pretrained model folder whose kind its `config.json` names; and how it
//! trains ([`EncoderMode`]). The inputs a pretrained folder's model expects
//! (tokenizer, image preprocessing, log-mel settings) come from the folder
//! ([`folder_features`]), so they are never restated by hand.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use polymodal_audio::{
    AstFeatureConfig, AudioEncoderKind, MelConfig, WhisperEncoderConfig, WhisperFeatures,
};
use polymodal_core::registry::EncoderKind;
use polymodal_core::{Error, Modality, Result};
use polymodal_image::ImageEncoderKind;
use polymodal_text::{TextEncoderKind, TextTokenizer};

use crate::{AudioFeatures, FeatureConfig, Normalization};

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
    /// With `mode = "fine-tune"`: train only the top this many layers of
    /// the encoder's Transformer stack (and its final norm and pooler); the
    /// embeddings and lower layers stay frozen. `None`: every layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<usize>,
    /// The encoder's peak learning rate where it differs from the run's
    /// (`[train] learning_rate`): typically lower for a fine-tuned
    /// pretrained encoder. Lands in `TrainConfig::encoder_learning_rates`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
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
        }?;
        if self.layers.is_some() && (self.pretrained.is_none() || self.is_frozen()) {
            return bad(
                "`layers` applies to a pretrained encoder with mode = \"fine-tune\"".into(),
            );
        }
        if self.layers == Some(0) {
            return bad("layers must be at least 1".into());
        }
        match self.learning_rate {
            Some(rate) if !(rate > 0.0 && rate.is_finite()) => {
                bad(format!("learning_rate must be positive, got {rate}"))
            }
            Some(_) if self.is_frozen() => {
                bad("a frozen encoder does not train: drop `learning_rate` or fine-tune".into())
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

/// The audio features of the folder's model (audio of other rates
/// resampled): Whisper's 30-second log-mel input (16 kHz, the first 3000
/// frames); AST's normalised Kaldi filter banks of its
/// `preprocessor_config.json`.
fn folder_audio(dir: &Path) -> Result<AudioFeatures> {
    match AudioEncoderKind::detect(dir)? {
        AudioEncoderKind::Ast => {
            let ast = AstFeatureConfig::from_dir(dir)?;
            Ok(AudioFeatures {
                clip_samples: ast.clip_samples(),
                mel: ast.mel(),
                standardize: false,
                resample: true,
                max_frames: Some(ast.max_length),
                pad_frames_with: Some(0.0),
                normalize: ast
                    .normalization()
                    .map(|(mean, std)| Normalization { mean, std }),
            })
        }
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
                pad_frames_with: None,
                normalize: None,
            })
        }
        kind => Err(Error::Config(format!(
            "{}: audio encoder `{kind}` is not loaded from a folder",
            dir.display()
        ))),
    }
}

/// The encoder with every parameter frozen (no gradient) but those of the
/// top `keep` entries of its layer stack (the first list field named
/// `layers`: BERT's, ViT's, AST's, Whisper's Transformer layers) and of what
/// follows the stack (final norm, pooler): the embeddings and the lower
/// layers keep their pretrained values. An encoder without such a stack, or
/// with fewer than `keep` layers, is an [`Error::Config`].
pub(crate) fn freeze_below_top<M: Module>(encoder: M, keep: usize) -> Result<M> {
    let mut count = StackCount::default();
    encoder.visit(&mut count);
    if keep == 0 || count.layers < keep {
        return Err(Error::Config(format!(
            "fine-tuning the top {keep} layers needs a layer stack of at least {keep} \
             (this encoder has {})",
            count.layers
        )));
    }
    let mut freeze = FreezeBelow {
        first_trained: count.layers - keep,
        path: Vec::new(),
        trainable: false,
    };
    Ok(encoder.map(&mut freeze))
}

/// Whether the module path `path` ends in the layer stack (`…/layers`).
fn in_stack(path: &[String]) -> bool {
    path.last().is_some_and(|name| name == "layers")
}

/// Counts the entries of the first `layers` list.
#[derive(Default)]
struct StackCount {
    path: Vec<String>,
    layers: usize,
    done: bool,
}

impl ModuleVisitor for StackCount {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if !self.done && container_type == "Vec" && in_stack(&self.path) {
            self.layers = self.layers.max(name.parse::<usize>().map_or(0, |i| i + 1));
        }
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, name: &str, _container_type: &str) {
        self.path.pop();
        // Leaving the stack: a later `layers` list (a temporal model's) is
        // not the encoder's.
        if name == "layers" && self.layers > 0 {
            self.done = true;
        }
    }
}

/// Freezes every parameter met before layer `first_trained` of the stack.
struct FreezeBelow {
    first_trained: usize,
    path: Vec<String>,
    trainable: bool,
}

impl ModuleMapper for FreezeBelow {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        // Once trainable, everything after is: the rest of the stack and
        // what follows it.
        let index = name.parse::<usize>().ok();
        if container_type == "Vec"
            && in_stack(&self.path)
            && index.is_some_and(|i| i >= self.first_trained)
        {
            self.trainable = true;
        }
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.trainable {
            param
        } else {
            param.set_require_grad(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use polymodal_core::testing::encoder_fixture;
    use polymodal_text::AnyTextEncoder;

    use super::*;

    /// Float parameters that need a gradient, and those that do not.
    #[derive(Default)]
    struct Trainable {
        yes: usize,
        no: usize,
    }

    impl ModuleVisitor for Trainable {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if param.val().is_require_grad() {
                self.yes += 1;
            } else {
                self.no += 1;
            }
        }
    }

    fn count<M: Module>(module: &M) -> (usize, usize) {
        let mut trainable = Trainable::default();
        module.visit(&mut trainable);
        (trainable.yes, trainable.no)
    }

    /// The BERT fixture (embeddings: 3 tables and a norm, 5 tensors; then 2
    /// layers of 16 tensors; a pooler of 2): the top layer alone, both
    /// layers, more layers than it has.
    #[test]
    fn fine_tuning_the_top_layers_freezes_what_is_below() {
        // Holds the generator so a seeded run on another test thread is
        // not changed by this test's draws.
        let _rng = crate::RngGuard::hold();
        let device = Device::flex().autodiff();
        let (bert, _) = AnyTextEncoder::load(encoder_fixture("bert"), &device).unwrap();
        let all = count(&bert);
        assert_eq!(all, (5 + 2 * 16 + 2, 0));
        let top_two = count(&freeze_below_top(bert.clone(), 2).unwrap());
        assert_eq!(top_two, (2 * 16 + 2, 5), "the embeddings frozen");
        let top_one = count(&freeze_below_top(bert.clone(), 1).unwrap());
        assert_eq!(
            top_one,
            (16 + 2, 5 + 16),
            "the embeddings and layer 0 frozen"
        );
        let error = freeze_below_top(bert, 3).unwrap_err().to_string();
        assert!(error.contains("has 2"), "{error}");
        // A from-scratch CNN has no layer stack.
        let cnn = polymodal_image::ConvEncoderConfig::new(3).init(&device);
        let error = freeze_below_top(cnn, 1).unwrap_err().to_string();
        assert!(error.contains("has 0"), "{error}");
    }
}
