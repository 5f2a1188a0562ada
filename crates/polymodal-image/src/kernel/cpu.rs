//! The CPU implementation of [`FramePreprocessOps`] on Burn's Flex backend:
//! each frame through [`ImagePreprocess::apply`](crate::ImagePreprocess::apply)
//! (Pillow-exact), the reference the wgpu kernel is tested against.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;

use polymodal_wgpu::extension::flex_tensor;

use super::{FramePreprocessOps, FrameShape};

impl FramePreprocessOps for Flex {
    fn preprocess_frames(
        pixels: FlexTensor,
        _horizontal_start: FlexTensor,
        _horizontal_len: FlexTensor,
        _horizontal_weights: FlexTensor,
        _vertical_start: FlexTensor,
        _vertical_len: FlexTensor,
        _vertical_weights: FlexTensor,
        _norm: FlexTensor,
        shape: FrameShape,
    ) -> FlexTensor {
        let pixels = pixels.to_contiguous();
        let values = pixels.as_slice::<i32>().expect("i32 pixels");
        let (w, h) = (shape.width as u32, shape.height as u32);
        let mut out = Vec::with_capacity(shape.frames * shape.config.len());
        for frame in values.chunks_exact(shape.width * shape.height) {
            let image = image::RgbImage::from_fn(w, h, |x, y| {
                let p = frame[(y * w + x) as usize];
                image::Rgb([p as u8, (p >> 8) as u8, (p >> 16) as u8])
            });
            out.extend(
                shape
                    .config
                    .apply(&image)
                    .expect("checked by FramePreprocess::new"),
            );
        }
        let channels = shape.config.channels();
        flex_tensor(
            out,
            &[shape.frames, channels, shape.out_height, shape.out_width],
        )
    }
}
