//! The multimodal classifier: per-modality encoders → fusion → linear head.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use polymodal_audio::{SpectrogramEncoder, SpectrogramEncoderConfig};
use polymodal_core::{
    Encoder, Error, Fusion, Modality, ModalityBatch, ModalityEmbeddings, MultimodalBatch, Result,
};
use polymodal_fusion::{
    AttentionSum, AttentionSumConfig, ConcatFusion, ConcatFusionConfig, ContrastiveAlignment,
    ContrastiveAlignmentConfig, CrossModalTransformer, CrossModalTransformerConfig, FilmFusion,
    FilmFusionConfig, GatedFusion, GatedFusionConfig, LowRankFusion, LowRankFusionConfig,
    ModalityDropout, SingleStreamTransformer, SingleStreamTransformerConfig, TensorFusion,
    TensorFusionConfig,
};
use polymodal_image::{ConvEncoder, ConvEncoderConfig};
use polymodal_text::{TextEncoder, TextEncoderConfig};
use polymodal_train::Classifier;
use polymodal_video::{FrameEncoder, FrameEncoderConfig};

/// How the modalities of a [`MultimodalClassifier`] are combined (the
/// feature-level and joint families of `docs/fusion.md`; model-level fusion
/// combines separately trained classifiers, see `polymodal_fusion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FusionKind {
    /// One modality, no fusion: the head reads its pooled embedding.
    None,
    /// Feature-level: concatenated pooled embeddings, linear + ReLU.
    Concat,
    /// Feature-level: gated multimodal unit (GMU).
    Gated,
    /// Feature-level: FiLM, the first modality conditioned on the others.
    Film,
    /// Feature-level: tensor fusion (outer product, TFN).
    Tensor,
    /// Feature-level: low-rank multimodal fusion (LMF).
    LowRank,
    /// Feature-level: attention-weighted sum of the modality embeddings.
    AttentionSum,
    /// Joint: pairwise cross-modal attention (MulT-style).
    CrossModal,
    /// Joint: one Transformer over every modality's tokens.
    SingleStream,
    /// Joint: CLIP-style contrastive alignment, the InfoNCE loss added to the
    /// classification loss; the head reads the aligned embeddings.
    Contrastive,
}

impl FusionKind {
    /// Every kind, in documentation order.
    pub const ALL: [FusionKind; 10] = [
        Self::None,
        Self::Concat,
        Self::Gated,
        Self::Film,
        Self::Tensor,
        Self::LowRank,
        Self::AttentionSum,
        Self::CrossModal,
        Self::SingleStream,
        Self::Contrastive,
    ];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Concat => "concat",
            Self::Gated => "gated",
            Self::Film => "film",
            Self::Tensor => "tensor",
            Self::LowRank => "low-rank",
            Self::AttentionSum => "attention-sum",
            Self::CrossModal => "cross-modal",
            Self::SingleStream => "single-stream",
            Self::Contrastive => "contrastive",
        }
    }

    /// Whether the kind is joint learning (the others are feature-level).
    pub fn is_joint(self) -> bool {
        matches!(
            self,
            Self::CrossModal | Self::SingleStream | Self::Contrastive
        )
    }
}

impl std::fmt::Display for FusionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FusionKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                Error::Config(format!(
                    "unknown fusion `{s}` (expected one of {})",
                    names.join(", ")
                ))
            })
    }
}

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

impl FusionKind {
    /// The fusion layer of this kind for modalities of widths `dims` (any
    /// encoders' embeddings, in order), working at width `dim` (hidden
    /// layers are `2 × dim`); `None` for [`FusionKind::None`].
    pub fn layer(
        self,
        dims: Vec<usize>,
        dim: usize,
        device: &Device,
    ) -> Result<Option<FusionLayer>> {
        let hidden = 2 * dim;
        Ok(Some(match self {
            FusionKind::None => return Ok(None),
            FusionKind::Concat => FusionLayer::Concat(
                ConcatFusionConfig::new(dims)
                    .with_hidden(hidden)
                    .init(device)?,
            ),
            FusionKind::Gated => FusionLayer::Gated(
                GatedFusionConfig::new(dims)
                    .with_hidden(hidden)
                    .init(device)?,
            ),
            FusionKind::Film => FusionLayer::Film(
                FilmFusionConfig::new(dims)
                    .with_hidden(hidden)
                    .init(device)?,
            ),
            FusionKind::Tensor => FusionLayer::Tensor(
                TensorFusionConfig::new(dims)
                    .with_hidden(hidden)
                    .init(device)?,
            ),
            FusionKind::LowRank => FusionLayer::LowRank(
                LowRankFusionConfig::new(dims)
                    .with_hidden(hidden)
                    .init(device)?,
            ),
            FusionKind::AttentionSum => {
                FusionLayer::AttentionSum(AttentionSumConfig::new(dims).with_dim(dim).init(device)?)
            }
            FusionKind::CrossModal => FusionLayer::CrossModal(
                CrossModalTransformerConfig::new(dims)
                    .with_dim(dim)
                    .init(device)?,
            ),
            FusionKind::SingleStream => FusionLayer::SingleStream(
                SingleStreamTransformerConfig::new(dims)
                    .with_dim(dim)
                    .init(device)?,
            ),
            FusionKind::Contrastive => FusionLayer::Contrastive(
                ContrastiveAlignmentConfig::new(dims)
                    .with_dim(dim)
                    .init(device)?,
            ),
        }))
    }
}

/// The fusion layer of a classifier, one variant per [`FusionKind`].
#[derive(Module, Debug)]
#[allow(missing_docs)]
pub enum FusionLayer {
    Concat(ConcatFusion),
    Gated(GatedFusion),
    Film(FilmFusion),
    Tensor(TensorFusion),
    LowRank(LowRankFusion),
    AttentionSum(AttentionSum),
    CrossModal(CrossModalTransformer),
    SingleStream(SingleStreamTransformer),
    Contrastive(ContrastiveAlignment),
}

impl FusionLayer {
    /// The layer as a [`Fusion`].
    pub fn fusion(&self) -> &dyn Fusion {
        match self {
            Self::Concat(f) => f,
            Self::Gated(f) => f,
            Self::Film(f) => f,
            Self::Tensor(f) => f,
            Self::LowRank(f) => f,
            Self::AttentionSum(f) => f,
            Self::CrossModal(f) => f,
            Self::SingleStream(f) => f,
            Self::Contrastive(f) => f,
        }
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
    /// Logits and, for contrastive fusion, the weighted InfoNCE loss. On an
    /// autodiff device (training) modality dropout hides modalities first.
    fn forward(&self, batch: &MultimodalBatch) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
        let (features, parts) = self.fused_parts(batch)?;
        let logits = self.head.forward(features);
        let auxiliary = match &self.fusion {
            Some(FusionLayer::Contrastive(f)) if parts[0].present.device().is_autodiff() => {
                Some(f.loss(&parts)? * self.contrastive_weight)
            }
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
