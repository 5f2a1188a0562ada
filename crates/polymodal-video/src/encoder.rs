//! Video encoders: any image encoder applied to every frame, then a temporal
//! model over the frame vectors: mean pooling, attention pooling (a learned
//! score per frame, softmax over the clip's frames), or a Transformer over
//! the frames with learned positions.

use burn::nn::transformer::{TransformerEncoder, TransformerEncoderInput};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use serde::{Deserialize, Serialize};

use polymodal_core::{
    Embeddings, Encoder, Error, Modality, Result, masked_mean, pre_norm_transformer,
};
use polymodal_image::{ConvEncoder, ConvEncoderConfig};

/// How the frame vectors of a clip become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TemporalPooling {
    /// The mean of the frame vectors.
    #[default]
    Mean,
    /// A learned score per frame, softmax over the frames, weighted sum.
    Attention,
    /// Learned frame positions, a pre-norm Transformer over the frames, then
    /// the mean.
    Transformer {
        /// Transformer layers.
        layers: usize,
        /// Attention heads (must divide the frame vectors' width).
        heads: usize,
    },
}

/// The temporal model of a [`FrameEncoder`].
#[derive(Module, Debug)]
pub struct Temporal {
    score: Option<Linear>,
    positions: Option<Embedding>,
    transformer: Option<TransformerEncoder>,
    max_frames: usize,
}

impl Temporal {
    /// A temporal model for frame vectors of width `dim`, clips of at most
    /// `max_frames` frames.
    pub fn new(
        pooling: TemporalPooling,
        dim: usize,
        max_frames: usize,
        device: &Device,
    ) -> Result<Self> {
        let mut temporal = Self {
            score: None,
            positions: None,
            transformer: None,
            max_frames,
        };
        match pooling {
            TemporalPooling::Mean => {}
            TemporalPooling::Attention => {
                temporal.score = Some(LinearConfig::new(dim, 1).init(device));
            }
            TemporalPooling::Transformer { layers, heads } => {
                if heads == 0 || !dim.is_multiple_of(heads) || layers == 0 || max_frames == 0 {
                    return Err(Error::Config(format!(
                        "temporal Transformer: {heads} heads must divide width {dim}, \
                         and layers ({layers}) and max_frames ({max_frames}) be positive"
                    )));
                }
                temporal.positions = Some(EmbeddingConfig::new(max_frames, dim).init(device));
                temporal.transformer = Some(pre_norm_transformer(dim, heads, layers, 0.1, device));
            }
        }
        Ok(temporal)
    }

    /// Frame vectors `[batch, frames, dim]` (mask: real frames) → the
    /// sequence after the temporal model and the pooled vector.
    pub fn forward(
        &self,
        frames: Tensor<3>,
        mask: Tensor<2, Bool>,
    ) -> Result<(Tensor<3>, Tensor<2>)> {
        let [batch, length, dim] = frames.dims();
        let mut sequence = frames;
        if let (Some(positions), Some(transformer)) = (&self.positions, &self.transformer) {
            if length > self.max_frames {
                return Err(Error::Invalid(format!(
                    "{length} frames exceed the temporal Transformer's {}",
                    self.max_frames
                )));
            }
            let index = Tensor::<1, Int>::arange(0..length as i64, &sequence.device())
                .unsqueeze::<2>()
                .expand([batch, length]);
            let x = sequence + positions.forward(index);
            sequence = transformer
                .forward(TransformerEncoderInput::new(x).mask_pad(mask.clone().bool_not()));
        }
        let pooled = match &self.score {
            Some(score) => {
                let logits = score
                    .forward(sequence.clone())
                    .reshape([batch, length])
                    // -1e4, not f32::MIN: that is -inf in f16 and a fully masked row would give NaN.
                    .mask_fill(mask.clone().bool_not(), -1e4);
                let weights = softmax(logits, 1).unsqueeze_dim::<3>(2); // [batch, frames, 1]
                (sequence.clone() * weights)
                    .sum_dim(1)
                    .reshape([batch, dim])
            }
            None => masked_mean(sequence.clone(), mask),
        };
        Ok((sequence, pooled))
    }
}

/// Settings of a [`FrameEncoder`] over the small convolutional encoder.
#[derive(Config, Debug)]
pub struct FrameEncoderConfig {
    /// The per-frame image encoder.
    pub frame: ConvEncoderConfig,
    /// The temporal model.
    #[config(default = "TemporalPooling::Mean")]
    pub temporal: TemporalPooling,
    /// Longest clip, in frames (the temporal Transformer's position table).
    #[config(default = 64)]
    pub max_frames: usize,
}

impl FrameEncoderConfig {
    /// Builds the encoder on `device`.
    pub fn init(&self, device: &Device) -> Result<FrameEncoder<ConvEncoder>> {
        FrameEncoder::new(
            self.frame.init(device),
            self.temporal,
            self.max_frames,
            device,
        )
    }
}

/// Encodes each frame of `[batch, frames, channels, height, width]` with an
/// image encoder `E` (its pooled vector), then runs the temporal model; the
/// frames are the tokens.
#[derive(Module, Debug)]
pub struct FrameEncoder<E> {
    frame: E,
    temporal: Temporal,
}

impl<E: Encoder<Input = Tensor<4>> + Module> FrameEncoder<E> {
    /// Wraps `frame` (any image encoder: the small CNN, ResNet, ViT).
    pub fn new(
        frame: E,
        temporal: TemporalPooling,
        max_frames: usize,
        device: &Device,
    ) -> Result<Self> {
        let temporal = Temporal::new(temporal, frame.dim(), max_frames, device)?;
        Ok(Self { frame, temporal })
    }

    /// The encoder with its frame encoder frozen ([`Module::freeze`]: no
    /// gradients, batch norms and dropout as in inference; a frozen
    /// pretrained image model): the temporal model still trains.
    pub fn freeze_frames(self) -> Self {
        Self {
            frame: self.frame.freeze(),
            temporal: self.temporal,
        }
    }
}

impl<E: Encoder<Input = Tensor<4>> + Module> Encoder for FrameEncoder<E> {
    type Input = Tensor<5>;

    fn modality(&self) -> Modality {
        Modality::Video
    }

    fn dim(&self) -> usize {
        self.frame.dim()
    }

    fn encode(&self, clips: &Tensor<5>) -> Result<Embeddings> {
        let [batch, frames, channels, height, width] = clips.dims();
        let images = clips
            .clone()
            .reshape([batch * frames, channels, height, width]);
        let per_frame = self.frame.encode(&images)?.pooled; // [batch * frames, dim]
        let sequence = per_frame.reshape([batch, frames, self.dim()]);
        let mask = Tensor::<2>::ones([batch, frames], &sequence.device()).equal_elem(1.0);
        let (sequence, pooled) = self.temporal.forward(sequence, mask.clone())?;
        Ok(Embeddings {
            pooled,
            sequence,
            mask,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_temporal_model_pools_and_padding_frames_are_ignored() {
        let device = Device::flex();
        for pooling in [
            TemporalPooling::Mean,
            TemporalPooling::Attention,
            TemporalPooling::Transformer {
                layers: 1,
                heads: 2,
            },
        ] {
            let temporal = Temporal::new(pooling, 4, 8, &device).unwrap();
            let values: Vec<f32> = (0..12).map(|i| (i as f32 * 0.7).sin()).collect();
            let mut padded = values.clone();
            padded.extend([7.0; 8]);
            let short = Tensor::<3>::from_data(TensorData::new(values, [1, 3, 4]), &device);
            let long = Tensor::<3>::from_data(TensorData::new(padded, [1, 5, 4]), &device);
            let (_, a) = temporal
                .forward(short, Tensor::from_data([[true; 3]], &device))
                .unwrap();
            let (_, b) = temporal
                .forward(
                    long,
                    Tensor::from_data([[true, true, true, false, false]], &device),
                )
                .unwrap();
            let (a, b) = (
                a.try_into_vec_as::<f32>().unwrap(),
                b.try_into_vec_as::<f32>().unwrap(),
            );
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-5, "{pooling:?}: {a:?} vs {b:?}");
            }
        }
        let bad = TemporalPooling::Transformer {
            layers: 1,
            heads: 3,
        };
        assert!(Temporal::new(bad, 4, 8, &device).is_err());
    }
}
