//! The multimodal classifier: per-modality encoders → fusion → linear head.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use polymodal_audio::{SpectrogramEncoder, SpectrogramEncoderConfig};
use polymodal_core::{
    Encoder, Error, Modality, ModalityBatch, ModalityEmbeddings, MultimodalBatch, Result,
};
use polymodal_fusion::{ContrastiveAlignment, FusionKind, FusionLayer, ModalityDropout};
use polymodal_image::{ConvEncoder, ConvEncoderConfig};
use polymodal_text::{TextEncoder, TextEncoderConfig};
use polymodal_train::Classifier;
use polymodal_video::{FrameEncoder, FrameEncoderConfig};

fn default_contrastive_weight() -> f64 {
    1.0
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
    /// Probability of hiding each modality of a training sample (see
    /// `polymodal_fusion::ModalityDropout`); 0 switches it off.
    #[serde(default)]
    pub modality_dropout: f64,
    /// Weight of the InfoNCE loss for [`FusionKind::Contrastive`].
    #[serde(default = "default_contrastive_weight")]
    pub contrastive_weight: f64,
    /// Multi-label: every class is an independent yes/no (sigmoid
    /// probabilities, binary cross-entropy) instead of one class per sample.
    #[serde(default)]
    pub multi_label: bool,
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
        } else if self.fusion != FusionKind::None && self.modalities.len() < 2 {
            Some(format!(
                "fusion `{}` needs at least two modalities",
                self.fusion
            ))
        } else if self.classes < 2 - usize::from(self.multi_label) || self.dim == 0 {
            Some(
                "need at least two classes (one when multi-label) and a positive width".to_string(),
            )
        } else if !(0.0..1.0).contains(&self.modality_dropout) {
            Some(format!(
                "modality_dropout must be in [0, 1), got {}",
                self.modality_dropout
            ))
        } else if !(self.contrastive_weight >= 0.0 && self.contrastive_weight.is_finite()) {
            Some("contrastive_weight must be finite and non-negative".to_string())
        } else {
            None
        };
        problem.map_or(Ok(()), |p| Err(Error::Config(p)))
    }

    /// Builds the model with fresh weights on `device`.
    pub fn init(&self, device: &Device) -> Result<MultimodalClassifier> {
        self.validate()?;
        let uses = |m| self.modalities.contains(&m);
        let fusion = self.fusion_layer(device)?;
        let fused_dim = fusion
            .as_ref()
            .map_or(self.dim, |f| f.fusion().output_dim());
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
                .then(|| FrameEncoderConfig::new(image.clone()).init(device))
                .transpose()?,
            fusion,
            head: LinearConfig::new(fused_dim, self.classes).init(device),
            modality_dropout: self.modality_dropout,
            contrastive_weight: self.contrastive_weight,
            modalities: self
                .modalities
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
        })
    }
}

impl ClassifierConfig {
    fn fusion_layer(&self, device: &Device) -> Result<Option<FusionLayer>> {
        self.fusion
            .layer(vec![self.dim; self.modalities.len()], self.dim, device)
    }
}

/// Encoders for the modalities it reads, a fusion layer, a linear head.
#[derive(Module, Debug)]
pub struct MultimodalClassifier {
    text: Option<TextEncoder>,
    image: Option<ConvEncoder>,
    audio: Option<SpectrogramEncoder>,
    video: Option<FrameEncoder<ConvEncoder>>,
    fusion: Option<FusionLayer>,
    head: Linear,
    modality_dropout: f64,
    contrastive_weight: f64,
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
        embeddings: encoder.encode(&part.input)?,
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

impl MultimodalClassifier {
    /// Logits and, on an autodiff device (training), the fusion layer's
    /// auxiliary loss times `contrastive_weight` if it has one
    /// ([`polymodal_core::Fusion::auxiliary_loss`]: contrastive fusion's
    /// InfoNCE loss). On an autodiff device modality dropout hides
    /// modalities first.
    fn forward(&self, batch: &MultimodalBatch) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
        let (features, parts) = self.fused_parts(batch)?;
        let logits = self.head.forward(features);
        let auxiliary = match &self.fusion {
            Some(layer) if parts[0].present.device().is_autodiff() => layer
                .fusion()
                .auxiliary_loss(&parts)?
                .map(|loss| loss * self.contrastive_weight),
            _ => None,
        };
        Ok((logits, auxiliary))
    }

    fn fused_parts(&self, batch: &MultimodalBatch) -> Result<(Tensor<2>, Vec<ModalityEmbeddings>)> {
        let mut parts = self.embed(batch)?;
        if self.modality_dropout > 0.0 {
            ModalityDropout::new(self.modality_dropout)?.apply(&mut parts);
        }
        let features = match &self.fusion {
            Some(fusion) => fusion.fusion().fuse(&parts)?,
            None => parts[0].embeddings.pooled.clone(),
        };
        Ok((features, parts))
    }

    /// The fused representation `[batch, width]` the head reads (for a
    /// single-modality model, its pooled embedding).
    pub fn fused(&self, batch: &MultimodalBatch) -> Result<Tensor<2>> {
        Ok(self.fused_parts(batch)?.0)
    }

    /// The contrastive alignment layer, when the model has one (for retrieval).
    pub fn alignment(&self) -> Option<&ContrastiveAlignment> {
        match &self.fusion {
            Some(FusionLayer::Contrastive(f)) => Some(f),
            _ => None,
        }
    }
}

impl Classifier for MultimodalClassifier {
    fn logits(&self, batch: &MultimodalBatch) -> Result<Tensor<2>> {
        Ok(self.forward(batch)?.0)
    }

    fn training_output(&self, batch: &MultimodalBatch) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
        self.forward(batch)
    }
}
