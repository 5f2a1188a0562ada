//! The multimodal classifier: per-modality encoders → fusion → linear head.

use burn::module::{ParamId, list_param_ids};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use polymodal_audio::{AnyAudioEncoder, AudioEncoderKind, AudioEncoderSizes};
use polymodal_core::{
    Embeddings, Encoder, Error, Modality, ModalityBatch, ModalityEmbeddings, MultimodalBatch,
    Result,
};
use polymodal_fusion::{
    ContrastiveAlignment, EmbeddingNoise, FusionKind, FusionLayer, ModalityDropout,
};
use polymodal_image::{AnyImageEncoder, ConvEncoderConfig, ImageEncoderKind, ImageEncoderSizes};
use polymodal_text::{AnyTextEncoder, TextEncoderKind, TextEncoderSizes};
use polymodal_video::{FrameEncoder, FrameEncoderConfig};

use super::encoders::freeze_below_top;
use super::{EncoderChoice, EncoderChoices};
use crate::Classifier;

fn default_contrastive_weight() -> f64 {
    1.0
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
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
    /// Weight of the unimodal auxiliary losses: with a positive weight each
    /// modality gets a linear head of its own on its pooled embedding,
    /// trained on the same targets beside the fused head (the fixed-weight
    /// form of Wang et al.'s gradient blending, "What Makes Training
    /// Multi-modal Classification Networks Hard?", CVPR 2020), so that every
    /// encoder learns to classify alone instead of leaning on the modality
    /// that fits the training set first. Training only: predictions come
    /// from the fused head. 0 (the default) switches it off.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unimodal_weight: f64,
    /// Relative standard deviation of the Gaussian noise added in training
    /// to the embeddings that frozen encoders computed ahead (see
    /// `polymodal_fusion::EmbeddingNoise`): each sample's pooled vector and
    /// its real tokens are shifted by one draw of `embedding_noise` × the
    /// vector's root mean square. Cached embeddings are the
    /// same every epoch, so this is their augmentation. 0 (the default)
    /// switches it off.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub embedding_noise: f64,
    /// Multi-label: every class is an independent yes/no (sigmoid
    /// probabilities, binary cross-entropy) instead of one class per sample.
    #[serde(default)]
    pub multi_label: bool,
    /// The encoder of each modality that does not use its `scratch` kind
    /// at width [`ClassifierConfig::dim`]: another from-scratch kind, or a
    /// pretrained folder (its own width).
    #[serde(default, skip_serializing_if = "EncoderChoices::is_empty")]
    pub encoders: EncoderChoices,
}

impl ClassifierConfig {
    /// A classifier over `modalities`, combined by `fusion`, into `classes`
    /// classes; the rest at its defaults (width 64, no text, three image
    /// channels, no modality dropout, contrastive weight 1, single-label),
    /// changed with the `with_*` methods.
    pub fn new(modalities: Vec<Modality>, fusion: FusionKind, classes: usize) -> Self {
        Self {
            modalities,
            fusion,
            classes,
            dim: 64,
            vocab_size: 0,
            max_tokens: 0,
            channels: 3,
            modality_dropout: 0.0,
            contrastive_weight: default_contrastive_weight(),
            unimodal_weight: 0.0,
            embedding_noise: 0.0,
            multi_label: false,
            encoders: EncoderChoices::new(),
        }
    }

    /// Sets the encoder of `modality` (see [`ClassifierConfig::encoders`]).
    pub fn with_encoder(mut self, modality: Modality, choice: EncoderChoice) -> Self {
        self.encoders.insert(modality, choice);
        self
    }

    /// The choice for `modality` (the default: its `scratch` kind).
    fn encoder(&self, modality: Modality) -> EncoderChoice {
        self.encoders.get(&modality).cloned().unwrap_or_default()
    }

    /// Sets [`ClassifierConfig::dim`].
    pub fn with_dim(self, dim: usize) -> Self {
        Self { dim, ..self }
    }

    /// Sets the text sizes: [`ClassifierConfig::vocab_size`] and
    /// [`ClassifierConfig::max_tokens`].
    pub fn with_text(self, vocab_size: usize, max_tokens: usize) -> Self {
        Self {
            vocab_size,
            max_tokens,
            ..self
        }
    }

    /// Sets [`ClassifierConfig::channels`].
    pub fn with_channels(self, channels: usize) -> Self {
        Self { channels, ..self }
    }

    /// Sets [`ClassifierConfig::modality_dropout`].
    pub fn with_modality_dropout(self, modality_dropout: f64) -> Self {
        Self {
            modality_dropout,
            ..self
        }
    }

    /// Sets [`ClassifierConfig::contrastive_weight`].
    pub fn with_contrastive_weight(self, contrastive_weight: f64) -> Self {
        Self {
            contrastive_weight,
            ..self
        }
    }

    /// Sets [`ClassifierConfig::embedding_noise`].
    pub fn with_embedding_noise(self, embedding_noise: f64) -> Self {
        Self {
            embedding_noise,
            ..self
        }
    }

    /// Sets [`ClassifierConfig::unimodal_weight`].
    pub fn with_unimodal_weight(self, unimodal_weight: f64) -> Self {
        Self {
            unimodal_weight,
            ..self
        }
    }

    /// Sets [`ClassifierConfig::multi_label`].
    pub fn with_multi_label(self, multi_label: bool) -> Self {
        Self {
            multi_label,
            ..self
        }
    }

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
        } else if !(self.unimodal_weight >= 0.0 && self.unimodal_weight.is_finite()) {
            Some("unimodal_weight must be finite and non-negative".to_string())
        } else if self.unimodal_weight > 0.0 && self.fusion == FusionKind::None {
            Some("unimodal_weight needs fusion of two or more modalities".to_string())
        } else if !(self.embedding_noise >= 0.0 && self.embedding_noise.is_finite()) {
            Some("embedding_noise must be finite and non-negative".to_string())
        } else {
            let unread = self.encoders.keys().find(|m| !self.modalities.contains(m));
            unread.map(|m| format!("encoders.{m}: the model does not read {m}"))
        };
        problem.map_or(Ok(()), |p| Err(Error::Config(p)))?;
        for (&modality, choice) in &self.encoders {
            choice.validate(modality)?;
        }
        Ok(())
    }

    /// Builds the model on `device`: each modality's encoder as
    /// [`ClassifierConfig::encoders`] chooses (by default the `scratch` kind
    /// of its crate's registry at width `dim`; a pretrained folder's model
    /// with its weights, frozen unless fine-tuned), the fusion layer of
    /// [`ClassifierConfig::fusion`] over the encoders' widths, the head.
    /// Burn draws a layer's random initial weights when they are first read
    /// (in training, the first step, under the trainer's
    /// [`RngGuard`](crate::RngGuard)).
    pub fn init(&self, device: &Device) -> Result<MultimodalClassifier> {
        self.validate()?;
        let uses = |m| self.modalities.contains(&m);
        let text = TextEncoderSizes {
            vocab_size: self.vocab_size,
            dim: self.dim,
            max_tokens: self.max_tokens,
        };
        let image = ImageEncoderSizes {
            channels: self.channels,
            dim: self.dim,
        };
        let audio = AudioEncoderSizes { dim: self.dim };
        // The video encoder's temporal model and clip length are
        // `FrameEncoderConfig`'s defaults (the mean over frames); its frame
        // encoder comes from the image registry.
        let video =
            FrameEncoderConfig::new(ConvEncoderConfig::new(self.channels).with_dim(self.dim));
        let choice = |modality: Modality| self.encoder(modality);
        let mut model = MultimodalClassifier {
            text: uses(Modality::Text)
                .then(|| choice(Modality::Text).build::<TextEncoderKind>(&text, device))
                .transpose()?,
            image: uses(Modality::Image)
                .then(|| choice(Modality::Image).build::<ImageEncoderKind>(&image, device))
                .transpose()?,
            audio: uses(Modality::Audio)
                .then(|| choice(Modality::Audio).build::<AudioEncoderKind>(&audio, device))
                .transpose()?,
            video: uses(Modality::Video)
                .then(|| -> Result<_> {
                    let frame =
                        choice(Modality::Video).build::<ImageEncoderKind>(&image, device)?;
                    FrameEncoder::new(frame, video.temporal, video.max_frames, device)
                })
                .transpose()?,
            fusion: None,
            head: LinearConfig::new(1, 1).init(device),
            unimodal_heads: Vec::new(),
            modality_dropout: self.modality_dropout,
            contrastive_weight: self.contrastive_weight,
            unimodal_weight: self.unimodal_weight,
            embedding_noise: self.embedding_noise,
            modalities: self
                .modalities
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
        };
        let dims = model.encoder_dims();
        let fusion = self.fusion.layer(dims.clone(), self.dim, device)?;
        let fused_dim = fusion.as_ref().map_or(dims[0], |f| f.fusion().output_dim());
        model.fusion = fusion;
        model.head = LinearConfig::new(fused_dim, self.classes).init(device);
        if self.unimodal_weight > 0.0 {
            let head = |&dim: &usize| LinearConfig::new(dim, self.classes).init(device);
            model.unimodal_heads = dims.iter().map(head).collect();
        }
        self.freeze_encoders(model)
    }

    /// The model with the encoders of frozen choices taken out of training
    /// ([`Module::freeze`]): their parameters need no gradient, so autodiff
    /// records nothing for them and the optimiser never moves them, and
    /// their batch norms and dropout act as in inference. A fine-tuned
    /// choice with `layers` trains only the top layers of its stack.
    fn freeze_encoders(&self, mut model: MultimodalClassifier) -> Result<MultimodalClassifier> {
        let choice = |m: Modality| self.encoders.get(&m);
        model.text = train_mode(model.text, choice(Modality::Text), Module::freeze)?;
        model.image = train_mode(model.image, choice(Modality::Image), Module::freeze)?;
        model.audio = train_mode(model.audio, choice(Modality::Audio), Module::freeze)?;
        // A frozen video encoder's temporal model still trains.
        let freeze_frames = FrameEncoder::freeze_frames;
        model.video = train_mode(model.video, choice(Modality::Video), freeze_frames)?;
        Ok(model)
    }
}

/// Counts the elements of the parameters that need a gradient.
struct TrainableCount(usize);

impl burn::module::ModuleVisitor for TrainableCount {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        let value = param.val();
        if value.is_require_grad() {
            self.0 += value.shape().num_elements();
        }
    }
}

/// `encoder` as `choice` trains it: frozen with `freeze`, only its top
/// layers trainable, or as built.
fn train_mode<M: Module>(
    encoder: Option<M>,
    choice: Option<&EncoderChoice>,
    freeze: fn(M) -> M,
) -> Result<Option<M>> {
    match choice {
        Some(c) if c.is_frozen() => Ok(encoder.map(freeze)),
        Some(EncoderChoice {
            layers: Some(keep), ..
        }) => encoder.map(|e| freeze_below_top(e, *keep)).transpose(),
        _ => Ok(encoder),
    }
}

/// Encoders for the modalities it reads (each of any kind its crate's
/// registry lists; video: an image encoder per frame), a fusion layer, a
/// linear head.
#[derive(Module, Debug)]
pub struct MultimodalClassifier {
    text: Option<AnyTextEncoder>,
    image: Option<AnyImageEncoder>,
    audio: Option<AnyAudioEncoder>,
    video: Option<FrameEncoder<AnyImageEncoder>>,
    fusion: Option<FusionLayer>,
    head: Linear,
    /// One head per modality, in fusion order, when
    /// [`ClassifierConfig::unimodal_weight`] is positive (else none).
    unimodal_heads: Vec<Linear>,
    modality_dropout: f64,
    contrastive_weight: f64,
    unimodal_weight: f64,
    embedding_noise: f64,
    /// Modality names in fusion order.
    modalities: Vec<String>,
}

/// Encodes one modality if the model has its encoder; the batch must carry it.
/// When no sample of the batch has the modality the encoder does not run:
/// fusion reads an absent modality through `present` only, and running a
/// large pretrained encoder on placeholders would cost as much as on media.
/// The batch's host flag decides, so the skip costs no device read.
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
    let embeddings = if part.any_present {
        encoder.encode(&part.input)?
    } else {
        absent(
            part.present.dims()[0],
            encoder.dim(),
            &part.present.device(),
        )
    };
    Ok(Some(ModalityEmbeddings {
        modality: encoder.modality(),
        embeddings,
        present: part.present.clone(),
    }))
}

/// The embeddings of a modality no sample has: zero vectors, each a
/// one-token sequence whose token is masked out (as
/// [`crate::EmbeddedSamples`] batches give absent samples).
fn absent(batch: usize, dim: usize, device: &Device) -> Embeddings {
    let pooled = Tensor::<2>::zeros([batch, dim], device);
    Embeddings {
        sequence: pooled.clone().unsqueeze_dim(1),
        pooled,
        mask: Tensor::<2>::zeros([batch, 1], device).equal_elem(1.0),
    }
}

impl MultimodalClassifier {
    /// The widths of the encoders, in the model's modality order.
    fn encoder_dims(&self) -> Vec<usize> {
        let widths = [
            (Modality::Text, self.text.as_ref().map(Encoder::dim)),
            (Modality::Image, self.image.as_ref().map(Encoder::dim)),
            (Modality::Audio, self.audio.as_ref().map(Encoder::dim)),
            (Modality::Video, self.video.as_ref().map(Encoder::dim)),
        ];
        self.modalities
            .iter()
            .filter_map(|name| {
                widths
                    .iter()
                    .find(|(m, _)| m.name() == name)
                    .and_then(|(_, dim)| *dim)
            })
            .collect()
    }

    /// Per-modality embeddings in the model's modality order; a modality
    /// whose embeddings the batch carries (computed ahead, see
    /// [`crate::EmbeddedSamples`]) is not encoded again.
    pub fn embed(&self, batch: &MultimodalBatch) -> Result<Vec<ModalityEmbeddings>> {
        let mut parts = Vec::with_capacity(self.modalities.len());
        for modality in Modality::ALL {
            let ahead = batch.embedded.iter().find(|p| p.modality == modality);
            match ahead {
                Some(part) if self.reads(modality) => parts.push(part.clone()),
                _ => parts.extend(self.encode(modality, batch)?),
            }
        }
        let order =
            |m: &ModalityEmbeddings| self.modalities.iter().position(|n| n == m.modality.name());
        parts.sort_by_key(order);
        Ok(parts)
    }

    /// The number of parameters a training step updates: all but those of
    /// frozen encoders and frozen lower layers (as
    /// [`burn::module::Module::num_params`] counts them).
    pub fn trainable_params(&self) -> usize {
        let mut count = TrainableCount(0);
        self.visit(&mut count);
        count.0
    }

    /// Whether the model has an encoder for `modality`.
    pub fn reads(&self, modality: Modality) -> bool {
        self.modalities.iter().any(|n| n == modality.name())
    }

    /// Runs the encoder of `modality` on the batch's input for it; `None`
    /// when the model does not read the modality.
    pub fn encode(
        &self,
        modality: Modality,
        batch: &MultimodalBatch,
    ) -> Result<Option<ModalityEmbeddings>> {
        match modality {
            Modality::Text => encode(&self.text, &batch.text),
            Modality::Image => encode(&self.image, &batch.image),
            Modality::Audio => encode(&self.audio, &batch.audio),
            Modality::Video => encode(&self.video, &batch.video),
        }
    }
}

impl MultimodalClassifier {
    /// Logits and, on an autodiff device (training), the auxiliary losses:
    /// the fusion layer's own times `contrastive_weight` if it has one
    /// ([`polymodal_core::Fusion::auxiliary_loss`]: contrastive fusion's
    /// InfoNCE loss), and the unimodal heads' times `unimodal_weight`. On an
    /// autodiff device embedding noise perturbs the embeddings computed
    /// ahead and modality dropout hides modalities first.
    fn forward(&self, batch: &MultimodalBatch) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
        let (features, parts) = self.fused_parts(batch)?;
        let logits = self.head.forward(features);
        if !parts[0].present.device().is_autodiff() {
            return Ok((logits, None));
        }
        let fusion = match &self.fusion {
            Some(layer) => layer
                .fusion()
                .auxiliary_loss(&parts)?
                .map(|loss| loss * self.contrastive_weight),
            None => None,
        };
        let unimodal = self.unimodal_loss(&parts, &batch.targets)?;
        let auxiliary = [fusion, unimodal]
            .into_iter()
            .flatten()
            .reduce(|a, b| a + b);
        Ok((logits, auxiliary))
    }

    /// `unimodal_weight` times the mean over modalities of each unimodal
    /// head's loss on the samples that have the modality (after modality
    /// dropout: a hidden modality is not there to learn from); `None`
    /// without unimodal heads.
    fn unimodal_loss(
        &self,
        parts: &[ModalityEmbeddings],
        targets: &polymodal_core::Targets,
    ) -> Result<Option<Tensor<1>>> {
        let losses = self
            .unimodal_heads
            .iter()
            .zip(parts)
            .map(|(head, part)| {
                let logits = head.forward(part.embeddings.pooled.clone());
                crate::losses::masked_loss(logits, targets, part.present.clone())
            })
            .collect::<Result<Vec<_>>>()?;
        let scale = self.unimodal_weight / losses.len().max(1) as f64;
        Ok(losses
            .into_iter()
            .reduce(|a, b| a + b)
            .map(|sum| sum * scale))
    }

    fn fused_parts(&self, batch: &MultimodalBatch) -> Result<(Tensor<2>, Vec<ModalityEmbeddings>)> {
        let mut parts = self.embed(batch)?;
        if self.embedding_noise > 0.0 {
            let noise = EmbeddingNoise::new(self.embedding_noise)?;
            let ahead =
                |p: &ModalityEmbeddings| batch.embedded.iter().any(|e| e.modality == p.modality);
            parts
                .iter_mut()
                .filter(|p| ahead(p))
                .for_each(|p| noise.apply(p));
        }
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

    fn modality_params(&self, modality: Modality) -> Vec<ParamId> {
        match modality {
            Modality::Text => self.text.as_ref().map(list_param_ids),
            Modality::Image => self.image.as_ref().map(list_param_ids),
            Modality::Audio => self.audio.as_ref().map(list_param_ids),
            Modality::Video => self.video.as_ref().map(list_param_ids),
        }
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EncoderMode;
    use polymodal_audio::SpectrogramEncoderConfig;
    use polymodal_text::TextEncoderConfig;

    /// The registries build the encoders the classifier always had: the
    /// same kinds at the same sizes (parameter counts).
    #[test]
    fn encoders_come_from_the_registries_at_the_same_sizes() {
        // Holds the generator so a seeded run on another test thread is
        // not changed by this test's draws.
        let _rng = crate::RngGuard::hold();
        let device = Device::flex();
        let config = ClassifierConfig::new(Modality::ALL.to_vec(), FusionKind::Concat, 3)
            .with_dim(8)
            .with_text(40, 12);
        let model = config.init(&device).unwrap();
        assert!(matches!(model.text, Some(AnyTextEncoder::Scratch(_))));
        assert!(matches!(model.image, Some(AnyImageEncoder::Scratch(_))));
        assert!(matches!(model.audio, Some(AnyAudioEncoder::Scratch(_))));
        let image = ConvEncoderConfig::new(3).with_dim(8);
        let fusion = FusionKind::Concat
            .layer(vec![8; 4], 8, &device)
            .unwrap()
            .unwrap();
        let direct = TextEncoderConfig::new(40)
            .with_dim(8)
            .with_max_length(12)
            .init(&device)
            .num_params()
            + image.init(&device).num_params()
            + SpectrogramEncoderConfig::new()
                .with_dim(8)
                .init(&device)
                .num_params()
            + FrameEncoderConfig::new(image)
                .init(&device)
                .unwrap()
                .num_params()
            + fusion.num_params()
            + LinearConfig::new(fusion.fusion().output_dim(), 3)
                .init(&device)
                .num_params();
        assert_eq!(model.num_params(), direct);
    }

    /// A batch of three samples whose image and audio embeddings (width 4)
    /// are carried ahead, the second sample without audio; with those
    /// embeddings and its classes.
    fn embedded_batch(device: &Device) -> (MultimodalBatch, Tensor<2>, Tensor<2>, Tensor<1, Int>) {
        use polymodal_core::{Embeddings, Targets};
        let pooled = |seed: f32| {
            let values: Vec<f32> = (0..12).map(|i| (i as f32 * seed).sin()).collect();
            Tensor::<2>::from_data(TensorData::new(values, [3, 4]), device)
        };
        let part = |modality, pooled: Tensor<2>, present: [bool; 3]| ModalityEmbeddings {
            modality,
            embeddings: Embeddings {
                sequence: pooled.clone().unsqueeze_dim(1),
                mask: Tensor::<2>::ones([3, 1], device).equal_elem(1.0),
                pooled,
            },
            present: Tensor::from_data(TensorData::from(present), device),
        };
        let (image, audio) = (pooled(0.7), pooled(1.3));
        let classes = Tensor::<1, Int>::from_data([0, 2, 1], device);
        let batch = MultimodalBatch {
            text: None,
            image: None,
            audio: None,
            video: None,
            embedded: vec![
                part(Modality::Image, image.clone(), [true; 3]),
                part(Modality::Audio, audio.clone(), [true, false, true]),
            ],
            targets: Targets::Classes(classes.clone()),
        };
        (batch, image, audio, classes)
    }

    /// With a unimodal weight each modality has a head of its own, and
    /// training adds weight × the mean of their losses, each over the
    /// samples that have its modality (checked against Burn's
    /// cross-entropy on those rows); on a plain device there is no such
    /// loss, and without the weight there are no heads.
    #[test]
    fn unimodal_heads_add_each_modality_s_own_loss_in_training() {
        let _rng = crate::RngGuard::hold();
        use burn::nn::loss::CrossEntropyLossConfig;
        let device = Device::flex().autodiff();
        let modalities = vec![Modality::Image, Modality::Audio];
        let config = ClassifierConfig::new(modalities.clone(), FusionKind::Concat, 3)
            .with_dim(4)
            .with_unimodal_weight(0.5);
        let model = config.init(&device).unwrap();
        assert_eq!(model.unimodal_heads.len(), 2);
        let (batch, image, audio, classes) = embedded_batch(&device);
        let (_, auxiliary) = model.training_output(&batch).unwrap();
        let ours = auxiliary.unwrap().into_scalar::<f32>();
        let cross_entropy = CrossEntropyLossConfig::new().init(&device);
        let rows = Tensor::<1, Int>::from_data([0, 2], &device);
        let image_loss = cross_entropy
            .forward(model.unimodal_heads[0].forward(image), classes.clone())
            .into_scalar::<f32>();
        let audio_loss = cross_entropy
            .forward(
                model.unimodal_heads[1].forward(audio.select(0, rows.clone())),
                classes.select(0, rows),
            )
            .into_scalar::<f32>();
        let expected = 0.5 * (image_loss + audio_loss) / 2.0;
        assert!((ours - expected).abs() < 1e-5, "{ours} vs {expected}");

        let plain = model.valid();
        let (batch, ..) = embedded_batch(&Device::flex());
        assert!(plain.training_output(&batch).unwrap().1.is_none());

        let without = ClassifierConfig::new(modalities, FusionKind::Concat, 3).with_dim(4);
        assert!(without.init(&device).unwrap().unimodal_heads.is_empty());
        for weight in [-1.0, f64::NAN] {
            let bad = ClassifierConfig::new(
                vec![Modality::Image, Modality::Audio],
                FusionKind::Concat,
                3,
            )
            .with_unimodal_weight(weight);
            assert!(bad.validate().is_err(), "{weight}");
        }
        let single = ClassifierConfig::new(vec![Modality::Image], FusionKind::None, 3)
            .with_unimodal_weight(1.0);
        let error = single.validate().unwrap_err().to_string();
        assert!(error.contains("unimodal_weight"), "{error}");
    }

    /// Embedding noise perturbs the embeddings the batch carries ahead in
    /// training (each row by about `embedding_noise` × its root mean
    /// square), leaves them as they are at inference, and must be finite
    /// and non-negative.
    #[test]
    fn embedding_noise_perturbs_embeddings_carried_ahead_in_training_only() {
        let modalities = vec![Modality::Image, Modality::Audio];
        let config = ClassifierConfig::new(modalities.clone(), FusionKind::Concat, 3)
            .with_dim(4)
            .with_embedding_noise(0.5);
        let pooled = |parts: &[ModalityEmbeddings], i: usize| -> Vec<f32> {
            parts[i]
                .embeddings
                .pooled
                .clone()
                .into_data()
                .try_to_vec()
                .unwrap()
        };
        let device = Device::flex().autodiff();
        let _rng = crate::RngGuard::seeded(&device, 3);
        let model = config.init(&device).unwrap();
        let (batch, image, ..) = embedded_batch(&device);
        let (_, parts) = model.fused_parts(&batch).unwrap();
        let before: Vec<f32> = image.into_data().try_to_vec().unwrap();
        let after = pooled(&parts, 0);
        let change: f32 = before.iter().zip(&after).map(|(a, b)| (a - b).abs()).sum();
        let size: f32 = before.iter().map(|a| a.abs()).sum();
        // Noise of 0.5 × the rows' size moves them by about 0.4 × their
        // size on average (the mean absolute value of a normal variable).
        assert!(change > 0.1 * size, "{change} vs {size}");

        let plain = model.valid();
        let (batch, image, ..) = embedded_batch(&Device::flex());
        let (_, parts) = plain.fused_parts(&batch).unwrap();
        assert_eq!(
            pooled(&parts, 0),
            image.into_data().try_to_vec::<f32>().unwrap()
        );

        for bad in [-0.5, f64::NAN] {
            let config = ClassifierConfig::new(modalities.clone(), FusionKind::Concat, 3)
                .with_embedding_noise(bad);
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains("embedding_noise"), "{error}");
        }
    }

    /// A batch of text (the BERT fixture's vocabulary) and 16×16 images.
    fn text_and_images(device: &Device) -> MultimodalBatch {
        let ids = Tensor::<2, Int>::from_data([[2, 17, 42, 3], [2, 9, 3, 0]], device);
        let mask = ids.clone().not_equal_elem(0);
        let images = Tensor::<4>::random(
            [2, 3, 16, 16],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            device,
        );
        MultimodalBatch {
            text: Some(ModalityBatch::all_present(
                polymodal_core::TokenBatch { ids, mask },
                2,
                device,
            )),
            image: Some(ModalityBatch::all_present(images, 2, device)),
            audio: None,
            video: None,
            embedded: Vec::new(),
            targets: polymodal_core::Targets::Classes(Tensor::from_data([0, 1], device)),
        }
    }

    /// A modality no sample of the batch has is not encoded: its pooled
    /// vectors are zeros and its one token is masked (the scratch image
    /// encoder maps a zero image to a non-zero vector, so running it would
    /// show); one present sample makes the encoder run for the batch.
    #[test]
    fn a_modality_absent_from_the_whole_batch_is_not_encoded() {
        let _rng = crate::RngGuard::hold();
        let device = Device::flex();
        let config =
            ClassifierConfig::new(vec![Modality::Text, Modality::Image], FusionKind::Concat, 2)
                .with_dim(8)
                .with_text(64, 8);
        let model = config.init(&device).unwrap();
        let mut batch = text_and_images(&device);
        let pooled_image = |batch: &MultimodalBatch| {
            let parts = model.embed(batch).unwrap();
            let image = parts
                .iter()
                .find(|p| p.modality == Modality::Image)
                .unwrap();
            let mask = image
                .embeddings
                .mask
                .clone()
                .int()
                .sum()
                .into_scalar::<i64>();
            let pooled = image.embeddings.pooled.clone().try_into_vec_as::<f32>();
            (pooled.unwrap(), mask)
        };
        let zeros = batch.image.as_ref().unwrap().input.clone().zeros_like();
        batch.image = Some(ModalityBatch::new(zeros.clone(), &[true, false], &device));
        let (encoded, _) = pooled_image(&batch);
        assert!(
            encoded.iter().any(|v| *v != 0.0),
            "zero images encode to non-zero vectors"
        );
        batch.image = Some(ModalityBatch::new(zeros, &[false, false], &device));
        let (skipped, mask) = pooled_image(&batch);
        assert_eq!(skipped, vec![0.0; 16]);
        assert_eq!(mask, 0);
        assert!(model.logits(&batch).unwrap().dims() == [2, 2]);
    }

    /// The pooled text embeddings of `model` (on a plain device).
    fn text_embeddings(model: &MultimodalClassifier, batch: &MultimodalBatch) -> Vec<f32> {
        let parts = model.valid().embed(batch).unwrap();
        let text = parts.iter().find(|p| p.modality == Modality::Text).unwrap();
        text.embeddings
            .pooled
            .clone()
            .try_into_vec_as::<f32>()
            .unwrap()
    }

    /// One Adam step on `batch` with a large rate.
    fn one_step(model: MultimodalClassifier, batch: &MultimodalBatch) -> MultimodalClassifier {
        use burn::optim::{AdamConfig, GradientsParams};
        let logits = model.logits(batch).unwrap();
        let polymodal_core::Targets::Classes(classes) = &batch.targets else {
            unreachable!()
        };
        let loss = burn::nn::loss::CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits, classes.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        AdamConfig::new().init().step(0.1, model, grads)
    }

    /// A pretrained folder's encoder is built at its own width (BERT
    /// fixture: 32) beside a from-scratch one (8); frozen, a training step
    /// leaves it as loaded, fine-tuned it moves.
    #[test]
    fn pretrained_encoders_load_at_their_width_and_train_as_chosen() {
        let _rng = crate::RngGuard::hold();
        let device = Device::flex().autodiff();
        let bert = polymodal_core::testing::encoder_fixture("bert");
        let config = |mode| {
            ClassifierConfig::new(vec![Modality::Text, Modality::Image], FusionKind::Concat, 2)
                .with_dim(8)
                .with_encoder(Modality::Text, EncoderChoice::pretrained(&bert, mode))
        };
        let batch = text_and_images(&device);
        let mut trainable = Vec::new();
        for (mode, moves) in [(EncoderMode::Frozen, false), (EncoderMode::FineTune, true)] {
            let model = config(mode).init(&device).unwrap();
            assert!(matches!(model.text, Some(AnyTextEncoder::Bert(_))));
            assert_eq!(model.encoder_dims(), [32, 8]);
            trainable.push((
                model.trainable_params(),
                model.text.as_ref().unwrap().num_params(),
            ));
            let before = text_embeddings(&model, &batch);
            let model = one_step(model, &batch);
            let after = text_embeddings(&model, &batch);
            assert_eq!(before != after, moves, "{mode:?}");
        }
        // Freezing takes exactly BERT's parameters out of the trained ones.
        let [(frozen, bert_params), (fine_tuned, _)] = trainable[..] else {
            panic!("two modes")
        };
        assert!(frozen > 0 && bert_params > 0);
        assert_eq!(fine_tuned - frozen, bert_params);
        // The recorded weights must be the folder's.
        let mut choice = EncoderChoice::pretrained(&bert, EncoderMode::Frozen);
        choice.record_weights().unwrap();
        let recorded = config(EncoderMode::Frozen).with_encoder(Modality::Text, choice.clone());
        assert!(recorded.init(&device).is_ok());
        choice.weights_sha256 = Some("0".repeat(64));
        let error = config(EncoderMode::Frozen)
            .with_encoder(Modality::Text, choice)
            .init(&device)
            .unwrap_err()
            .to_string();
        assert!(error.contains("weights changed"), "{error}");
    }

    /// Choices are checked: a kind or a folder, a from-scratch kind by
    /// name, only for modalities the model reads; the card keeps them.
    #[test]
    fn encoder_choices_are_checked_and_kept_in_the_card() {
        let _rng = crate::RngGuard::hold();
        let base =
            ClassifierConfig::new(vec![Modality::Text, Modality::Image], FusionKind::Concat, 2)
                .with_text(40, 12)
                .with_dim(8);
        let rnn = EncoderChoice {
            kind: Some("rnn".into()),
            ..EncoderChoice::default()
        };
        let config = base.clone().with_encoder(Modality::Text, rnn.clone());
        let model = config.init(&Device::flex()).unwrap();
        assert!(matches!(model.text, Some(AnyTextEncoder::Rnn(_))));
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(
            serde_json::from_str::<ClassifierConfig>(&json).unwrap(),
            config
        );
        let errors = [
            (
                Modality::Text,
                EncoderChoice {
                    kind: Some("bert".into()),
                    ..rnn.clone()
                },
                "is pretrained",
            ),
            (
                Modality::Text,
                EncoderChoice {
                    kind: Some("gpt".into()),
                    ..rnn.clone()
                },
                "gpt",
            ),
            (Modality::Audio, rnn.clone(), "does not read audio"),
            (
                Modality::Image,
                EncoderChoice {
                    pretrained: Some("x".into()),
                    ..rnn.clone()
                },
                "not both",
            ),
        ];
        for (modality, choice, message) in errors {
            let error = base
                .clone()
                .with_encoder(modality, choice)
                .validate()
                .unwrap_err();
            assert!(error.to_string().contains(message), "{error}");
        }
    }

    /// An encoder with a learning rate of its own steps at it: the
    /// fine-tuned ViT fixture at a rate of 1e-12 stays put while the head
    /// learns; at the run's rate it moves.
    #[test]
    fn an_encoder_trains_at_its_own_learning_rate() {
        let _rng = crate::RngGuard::hold();
        use crate::{Dataset, Example, Features, Label, TrainConfig, Trainer};
        let device = Device::flex();
        let vit = polymodal_core::testing::encoder_fixture("vit");
        let config = ClassifierConfig::new(vec![Modality::Image], FusionKind::None, 2)
            .with_encoder(
                Modality::Image,
                EncoderChoice::pretrained(vit, EncoderMode::FineTune),
            );
        let examples: Vec<Example> = (0..8)
            .map(|i| Example {
                id: format!("s{i}"),
                features: Features {
                    image: Some((0..768).map(|j| ((i * 5 + j) as f32 * 0.7).sin()).collect()),
                    ..Features::default()
                },
                label: Label::Single(i % 2),
            })
            .collect();
        let data = Dataset {
            examples,
            classes: vec!["a".into(), "b".into()],
        };
        let features = crate::FeatureConfig {
            image: polymodal_image::ImagePreprocess::vit(16),
            ..crate::FeatureConfig::default()
        };
        let batcher = crate::Batcher::new(vec![Modality::Image], features, None).unwrap();
        let refs: Vec<&Example> = data.examples.iter().collect();
        let probe = batcher.batch(&refs, &device).unwrap();
        let pooled = |model: &MultimodalClassifier| -> Vec<f32> {
            let parts = model.valid().embed(&probe).unwrap();
            parts[0]
                .embeddings
                .pooled
                .clone()
                .try_into_vec_as::<f32>()
                .unwrap()
        };
        let moved = |rates: &[(Modality, f64)]| -> f32 {
            let train_device = device.clone().autodiff();
            let model = config.init(&train_device).unwrap();
            let before = pooled(&model);
            let trainer = Trainer {
                batcher: &batcher,
                config: TrainConfig {
                    epochs: 2,
                    batch_size: 4,
                    learning_rate: 1e-2,
                    encoder_learning_rates: rates.iter().copied().collect(),
                    ..TrainConfig::default()
                },
                device: train_device,
                output: None,
                resume: false,
            };
            let (model, _) = trainer.train(model, &data, &data, &mut |_| {}).unwrap();
            polymodal_core::testing::max_abs_diff(&before, &pooled(&model))
        };
        let (own, shared) = (moved(&[(Modality::Image, 1e-12)]), moved(&[]));
        assert!(own < 1e-5, "the encoder moved by {own} at a rate of 1e-12");
        assert!(
            shared > 1e-3,
            "the encoder moved by {shared} at the run's rate"
        );
    }
}
