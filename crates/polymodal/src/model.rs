//! The multimodal classifier: per-modality encoders → fusion → linear head.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use polymodal_audio::{SpectrogramEncoder, SpectrogramEncoderConfig};
use polymodal_core::{
    Encoder, Error, Fusion, Modality, ModalityBatch, ModalityEmbeddings, MultimodalBatch, Result,
};
use polymodal_fusion::{
    ConcatFusion, ConcatFusionConfig, CrossModalAttention, CrossModalAttentionConfig,
};
use polymodal_image::{ConvEncoder, ConvEncoderConfig};
use polymodal_text::{TextEncoder, TextEncoderConfig};
use polymodal_train::Classifier;
use polymodal_video::{FrameEncoder, FrameEncoderConfig};

/// How the modalities of a [`MultimodalClassifier`] are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FusionKind {
    /// One modality, no fusion: the head reads its pooled embedding.
    None,
    /// Feature-level (early) fusion: concatenated pooled embeddings.
    Concat,
    /// Joint fusion: self-attention across the tokens of all modalities.
    CrossAttention,
}

impl std::str::FromStr for FusionKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Self::None),
            "concat" => Ok(Self::Concat),
            "cross-attention" => Ok(Self::CrossAttention),
            _ => Err(Error::Config(format!(
                "unknown fusion `{s}` (expected none, concat or cross-attention)"
            ))),
        }
    }
}

/// Everything needed to build a [`MultimodalClassifier`] (saved next to checkpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    /// The modalities read, in order.
    pub modalities: Vec<Modality>,
    /// How they are combined.
    pub fusion: FusionKind,
    /// Number of classes.
    pub classes: usize,
    /// Embedding width of every encoder.
    pub dim: usize,
    /// Text vocabulary size (when text is used).
    pub vocab_size: usize,
    /// Longest token sequence (when text is used).
    pub max_tokens: usize,
    /// Image and video frame channels.
    pub channels: usize,
}

impl ClassifierConfig {
    /// Checks the combination of modalities and fusion.
    pub fn validate(&self) -> Result<()> {
        let mut seen = self.modalities.clone();
        seen.sort();
        seen.dedup();
        let problem = if self.modalities.is_empty() {
            Some("a model needs at least one modality".to_string())
        } else if seen.len() != self.modalities.len() {
            Some(format!("modalities repeat: {:?}", self.modalities))
        } else if self.fusion == FusionKind::None && self.modalities.len() != 1 {
            Some("fusion `none` takes exactly one modality".to_string())
        } else if self.classes < 2 || self.dim == 0 {
            Some("need at least two classes and a positive width".to_string())
        } else {
            None
        };
        problem.map_or(Ok(()), |p| Err(Error::Config(p)))
    }

    /// Builds the model with fresh weights on `device`.
    pub fn init(&self, device: &Device) -> Result<MultimodalClassifier> {
        self.validate()?;
        let uses = |m| self.modalities.contains(&m);
        let dims = vec![self.dim; self.modalities.len()];
        let fusion = match self.fusion {
            FusionKind::None => None,
            FusionKind::Concat => Some(FusionLayer::Concat(
                ConcatFusionConfig::new(dims).init(device),
            )),
            FusionKind::CrossAttention => Some(FusionLayer::CrossAttention(
                CrossModalAttentionConfig::new(dims)
                    .with_dim(self.dim)
                    .init(device),
            )),
        };
        let fused_dim = match &fusion {
            None => self.dim,
            Some(FusionLayer::Concat(f)) => f.output_dim(),
            Some(FusionLayer::CrossAttention(f)) => f.output_dim(),
        };
        let image = ConvEncoderConfig::new(self.channels).with_dim(self.dim);
        Ok(MultimodalClassifier {
            text: uses(Modality::Text).then(|| {
                TextEncoderConfig::new(self.vocab_size)
                    .with_dim(self.dim)
                    .with_max_length(self.max_tokens)
                    .init(device)
            }),
            image: uses(Modality::Image).then(|| image.init(device)),
            audio: uses(Modality::Audio).then(|| {
                SpectrogramEncoderConfig::new()
                    .with_dim(self.dim)
                    .init(device)
            }),
            video: uses(Modality::Video)
                .then(|| FrameEncoderConfig::new(image.clone()).init(device)),
            fusion,
            head: LinearConfig::new(fused_dim, self.classes).init(device),
            modalities: self
                .modalities
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
        })
    }
}

/// The fusion layer of a classifier.
#[derive(Module, Debug)]
pub enum FusionLayer {
    /// Feature-level concatenation.
    Concat(ConcatFusion),
    /// Joint cross-modal attention.
    CrossAttention(CrossModalAttention),
}

/// Encoders for the modalities it reads, a fusion layer, a linear head.
#[derive(Module, Debug)]
pub struct MultimodalClassifier {
    text: Option<TextEncoder>,
    image: Option<ConvEncoder>,
    audio: Option<SpectrogramEncoder>,
    video: Option<FrameEncoder>,
    fusion: Option<FusionLayer>,
    head: Linear,
    /// Modality names in fusion order.
    modalities: Vec<String>,
}

/// Encodes one modality if the model has its encoder; the batch must carry it.
fn encode<E: Encoder>(
    encoder: &Option<E>,
    part: &Option<ModalityBatch<E::Input>>,
) -> Result<Option<ModalityEmbeddings>> {
    let Some(encoder) = encoder else {
        return Ok(None);
    };
    let part = part
        .as_ref()
        .ok_or(Error::MissingModality(encoder.modality()))?;
    Ok(Some(ModalityEmbeddings {
        modality: encoder.modality(),
        embeddings: encoder.encode(&part.input),
        present: part.present.clone(),
    }))
}

impl MultimodalClassifier {
    /// Per-modality embeddings in the model's modality order.
    pub fn embed(&self, batch: &MultimodalBatch) -> Result<Vec<ModalityEmbeddings>> {
        let mut parts = [
            encode(&self.text, &batch.text)?,
            encode(&self.image, &batch.image)?,
            encode(&self.audio, &batch.audio)?,
            encode(&self.video, &batch.video)?,
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
        let order =
            |m: &ModalityEmbeddings| self.modalities.iter().position(|n| n == m.modality.name());
        parts.sort_by_key(order);
        Ok(parts)
    }
}

impl Classifier for MultimodalClassifier {
    fn logits(&self, batch: &MultimodalBatch) -> Result<Tensor<2>> {
        let parts = self.embed(batch)?;
        let features = match &self.fusion {
            Some(FusionLayer::Concat(f)) => f.fuse(&parts),
            Some(FusionLayer::CrossAttention(f)) => f.fuse(&parts),
            None => parts[0].embeddings.pooled.clone(),
        };
        Ok(self.head.forward(features))
    }
}
