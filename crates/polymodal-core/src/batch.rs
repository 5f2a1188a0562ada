use burn::prelude::*;

/// One modality's part of a batch: the model input and which samples have it.
///
/// `present[i]` is false when sample `i` lacks this modality; its input row is
/// then padding and fusion must ignore it.
#[derive(Debug, Clone)]
pub struct ModalityBatch<I> {
    /// The model input (for example `[batch, channels, height, width]` for images).
    pub input: I,
    /// Presence of the modality per sample, `[batch]`.
    pub present: Tensor<1, Bool>,
    /// Whether any sample has the modality: `present.any()` kept on the
    /// host, so that a model can skip an encoder for a batch without the
    /// modality without reading `present` back from the device.
    pub any_present: bool,
}

impl<I> ModalityBatch<I> {
    /// A batch whose sample `i` has the modality when `present[i]` is true.
    pub fn new(input: I, present: &[bool], device: &Device) -> Self {
        Self {
            input,
            present: Tensor::from_data(TensorData::new(present.to_vec(), [present.len()]), device),
            any_present: present.contains(&true),
        }
    }

    /// A batch in which every sample has the modality.
    pub fn all_present(input: I, batch_size: usize, device: &Device) -> Self {
        Self::new(input, &vec![true; batch_size], device)
    }
}

/// Token ids with their attention mask (`true` marks a real token).
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// Token ids, `[batch, length]`.
    pub ids: Tensor<2, Int>,
    /// Attention mask, `[batch, length]`.
    pub mask: Tensor<2, Bool>,
}

/// What a batch is trained to predict.
#[derive(Debug, Clone)]
pub enum Targets {
    /// Single-label classification: the class index per sample, `[batch]`.
    Classes(Tensor<1, Int>),
    /// Multi-label classification: 1 for every class a sample has, else 0,
    /// `[batch, classes]`.
    MultiHot(Tensor<2>),
}

impl Targets {
    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes(t) => t.dims()[0],
            Targets::MultiHot(t) => t.dims()[0],
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A batch with any subset of the modalities, and the targets.
#[derive(Debug, Clone)]
pub struct MultimodalBatch {
    /// Token ids and mask.
    pub text: Option<ModalityBatch<TokenBatch>>,
    /// Images `[batch, channels, height, width]`.
    pub image: Option<ModalityBatch<Tensor<4>>>,
    /// Spectrograms `[batch, 1, mels, frames]`.
    pub audio: Option<ModalityBatch<Tensor<4>>>,
    /// Video clips `[batch, frames, channels, height, width]`.
    pub video: Option<ModalityBatch<Tensor<5>>>,
    /// Embeddings computed ahead of training (a frozen encoder's, once per
    /// sample): a model uses them instead of running that modality's
    /// encoder, so the batch needs no media input for it.
    pub embedded: Vec<crate::ModalityEmbeddings>,
    /// Class index or classes per sample.
    pub targets: Targets,
}

impl MultimodalBatch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether the batch has no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
