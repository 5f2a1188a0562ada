//! A video encoder: an image encoder applied to every frame, then temporal pooling.

use burn::prelude::*;

use polymodal_core::{Embeddings, Encoder, Modality};
use polymodal_image::{ConvEncoder, ConvEncoderConfig};

/// Settings of [`FrameEncoder`].
#[derive(Config, Debug)]
pub struct FrameEncoderConfig {
    /// The per-frame image encoder.
    pub frame: ConvEncoderConfig,
}

impl FrameEncoderConfig {
    /// Builds the encoder on `device`.
    pub fn init(&self, device: &Device) -> FrameEncoder {
        FrameEncoder {
            frame: self.frame.init(device),
        }
    }
}

/// Encodes each frame of `[batch, frames, channels, height, width]` to one
/// vector; the frames are the tokens, and the pooled vector is their mean.
#[derive(Module, Debug)]
pub struct FrameEncoder {
    frame: ConvEncoder,
}

impl Encoder for FrameEncoder {
    type Input = Tensor<5>;

    fn modality(&self) -> Modality {
        Modality::Video
    }

    fn dim(&self) -> usize {
        self.frame.dim()
    }

    fn encode(&self, clips: &Tensor<5>) -> Embeddings {
        let [batch, frames, channels, height, width] = clips.dims();
        let images = clips
            .clone()
            .reshape([batch * frames, channels, height, width]);
        let per_frame = self.frame.encode(&images).pooled; // [batch * frames, dim]
        let sequence = per_frame.reshape([batch, frames, self.dim()]);
        let mask = Tensor::<2>::ones([batch, frames], &sequence.device()).equal_elem(1.0);
        Embeddings::from_sequence(sequence, mask)
    }
}
