//! The CubeCL kernels of frame preprocessing: Pillow's two resampling
//! passes in the same 22-bit fixed-point integer arithmetic as the CPU code
//! (so results are bit-identical), the second fused with normalisation and
//! the HWC → CHW layout. Pixels travel as one i32 per pixel, `r | g << 8 |
//! b << 16`, a quarter of the f32 traffic. The wgpu implementation of
//! [`FramePreprocessOps`].

use burn::backend::DType;
use burn::backend::wgpu::{CubeBackend, CubeTensor};
use burn_cubecl::cubecl;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use cubecl::prelude::*;

use super::{FramePreprocessOps, FrameShape};

/// `clamp(v >> 22, 0, 255)`, by division (the same after the clamp).
#[cube]
fn clip8(v: i32) -> i32 {
    i32::clamp(v / 4194304i32, 0i32, 255i32)
}

/// Horizontal pass over the source rows the vertical pass reads: one unit
/// per (frame, row, output column) writes a packed pixel.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn horizontal_kernel(
    pixels: &Tensor<i32>,
    start: &Tensor<i32>,
    len: &Tensor<i32>,
    weights: &Tensor<i32>,
    temp: &mut Tensor<i32>,
    width: u32,
    height: u32,
    out_width: u32,
    first_row: u32,
    rows: u32,
    stride: u32,
) {
    let pos = ABSOLUTE_POS;
    let out_width = out_width as usize;
    let rows = rows as usize;
    if pos >= temp.len() {
        terminate!();
    }
    let x = pos % out_width;
    let r = (pos / out_width) % rows;
    let n = pos / (out_width * rows);
    let source = (n * (height as usize) + (first_row as usize) + r) * (width as usize);
    let first = u32::cast_from(start[x]) as usize;
    let taps = u32::cast_from(len[x]) as usize;
    let mut red = 2097152i32;
    let mut green = 2097152i32;
    let mut blue = 2097152i32;
    for k in 0..taps {
        let p = pixels[source + first + k];
        let w = weights[x * (stride as usize) + k];
        red += (p % 256i32) * w;
        green += ((p / 256i32) % 256i32) * w;
        blue += (p / 65536i32) * w;
    }
    temp[pos] = clip8(red) + clip8(green) * 256i32 + clip8(blue) * 65536i32;
}

/// Vertical pass, normalisation and layout: one unit per (frame, output
/// row, output column) writes its channels (or their mean) as f32.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn vertical_kernel(
    temp: &Tensor<i32>,
    start: &Tensor<i32>,
    len: &Tensor<i32>,
    weights: &Tensor<i32>,
    norm: &Tensor<f32>,
    output: &mut Tensor<f32>,
    frames: u32,
    out_width: u32,
    out_height: u32,
    first_row: u32,
    rows: u32,
    stride: u32,
    #[comptime] grayscale: bool,
) {
    let pos = ABSOLUTE_POS;
    let out_width = out_width as usize;
    let out_height = out_height as usize;
    if pos >= (frames as usize) * out_height * out_width {
        terminate!();
    }
    let x = pos % out_width;
    let y = (pos / out_width) % out_height;
    let n = pos / (out_width * out_height);
    let first = u32::cast_from(start[y]) as usize - (first_row as usize);
    let taps = u32::cast_from(len[y]) as usize;
    let mut red = 2097152i32;
    let mut green = 2097152i32;
    let mut blue = 2097152i32;
    for k in 0..taps {
        let p = temp[(n * (rows as usize) + first + k) * out_width + x];
        let w = weights[y * (stride as usize) + k];
        red += (p % 256i32) * w;
        green += ((p / 256i32) % 256i32) * w;
        blue += (p / 65536i32) * w;
    }
    // norm: three scales, then three shifts: v·scale + shift = (v/255 − mean)/std.
    let r = f32::cast_from(clip8(red));
    let g = f32::cast_from(clip8(green));
    let b = f32::cast_from(clip8(blue));
    let plane = out_height * out_width;
    let at = y * out_width + x;
    if grayscale {
        output[n * plane + at] = (r + g + b) / 3.0f32 * norm[0] + norm[3];
    } else {
        output[(n * 3) * plane + at] = r * norm[0] + norm[3];
        output[(n * 3 + 1) * plane + at] = g * norm[1] + norm[4];
        output[(n * 3 + 2) * plane + at] = b * norm[2] + norm[5];
    }
}

/// Both passes: `pixels` `[frames, height·width]` i32 → `[frames, channels,
/// out_height, out_width]` f32.
fn launch(
    pixels: CubeTensor,
    horizontal: [CubeTensor; 3],
    vertical: [CubeTensor; 3],
    norm: CubeTensor,
    shape: &FrameShape,
) -> CubeTensor {
    let pixels = into_contiguous(pixels);
    let client = pixels.client.clone();
    let device = pixels.device.clone();
    let frames = shape.frames;
    let temp = empty_device_contiguous_dtype(
        client.clone(),
        device.clone(),
        [frames * shape.rows * shape.out_width].into(),
        DType::I32,
    );
    let units = frames * shape.rows * shape.out_width;
    let dim = CubeDim::new(&client, units.max(1));
    let [h_start, h_len, h_weights] = horizontal.map(into_contiguous);
    horizontal_kernel::launch(
        &client,
        cubecl::calculate_cube_count_elemwise(&client, units.max(1), dim),
        dim,
        pixels.into_tensor_arg(),
        h_start.into_tensor_arg(),
        h_len.into_tensor_arg(),
        h_weights.into_tensor_arg(),
        temp.clone().into_tensor_arg(),
        shape.width as u32,
        shape.height as u32,
        shape.out_width as u32,
        shape.first_row as u32,
        shape.rows as u32,
        shape.horizontal_stride as u32,
    );
    let channels = if shape.grayscale { 1 } else { 3 };
    let output = empty_device_contiguous_dtype(
        client.clone(),
        device,
        [frames, channels, shape.out_height, shape.out_width].into(),
        DType::F32,
    );
    let units = frames * shape.out_height * shape.out_width;
    let dim = CubeDim::new(&client, units.max(1));
    let [v_start, v_len, v_weights] = vertical.map(into_contiguous);
    vertical_kernel::launch(
        &client,
        cubecl::calculate_cube_count_elemwise(&client, units.max(1), dim),
        dim,
        temp.into_tensor_arg(),
        v_start.into_tensor_arg(),
        v_len.into_tensor_arg(),
        v_weights.into_tensor_arg(),
        into_contiguous(norm).into_tensor_arg(),
        output.clone().into_tensor_arg(),
        frames as u32,
        shape.out_width as u32,
        shape.out_height as u32,
        shape.first_row as u32,
        shape.rows as u32,
        shape.vertical_stride as u32,
        shape.grayscale,
    );
    output
}

impl FramePreprocessOps for CubeBackend {
    fn preprocess_frames(
        pixels: CubeTensor,
        horizontal_start: CubeTensor,
        horizontal_len: CubeTensor,
        horizontal_weights: CubeTensor,
        vertical_start: CubeTensor,
        vertical_len: CubeTensor,
        vertical_weights: CubeTensor,
        norm: CubeTensor,
        shape: FrameShape,
    ) -> CubeTensor {
        launch(
            pixels,
            [horizontal_start, horizontal_len, horizontal_weights],
            [vertical_start, vertical_len, vertical_weights],
            norm,
            &shape,
        )
    }
}
