//! The wgpu implementation of [`GatedUnitOps`]: the combining step of the
//! gated multimodal unit ([`GatedFusion`](crate::GatedFusion)), forward and
//! backward:
//! `h[b, j] = Σ_m z[b, m, j] · tanh(u[b, m, j])` with
//! `z = softmax over the present modalities m of s[b, m, j]`.
//!
//! Burn's ops write the masked scores, the softmax's maximum, exponentials,
//! sums and gates, the tanh and the products to memory one after the other,
//! and autodiff keeps several of them for the backward pass. Here one unit
//! per (sample, hidden unit) reads the M scores and candidates once and
//! writes one value; the backward pass recomputes the gates from the same
//! inputs instead of storing them:
//! `∂L/∂u_m = g · z_m · (1 − tanh²u_m)` and `∂L/∂s_m = g · z_m · (tanh u_m − h)`.

use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::wgpu::{CubeBackend, CubeTensor};
use burn_cubecl::cubecl;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use cubecl::prelude::*;

use super::GatedUnitOps;

/// Which value a launch writes.
const FORWARD: u32 = 0;
const GRAD_SCORES: u32 = 1;
const GRAD_CANDIDATES: u32 = 2;

/// `mode` 0 (forward): one unit per (b, j) writes `h[b, j]`; 1 and 2: one
/// unit per (b, m, j) writes `∂L/∂s` or `∂L/∂u` at (b, m, j) from `grad`
/// `[batch, hidden]`. Scores and candidates are `[batch, modalities,
/// hidden]`, `present` `[batch, modalities]` (1 or 0). Tensors are of one
/// float type `F` (f32 or f16); the arithmetic is f32 either way.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn gated_unit_kernel<F: Float>(
    scores: &Tensor<F>,
    candidates: &Tensor<F>,
    present: &Tensor<F>,
    grad: &Tensor<F>,
    output: &mut Tensor<F>,
    batch: u32,
    hidden: u32,
    #[comptime] modalities: usize,
    #[comptime] mode: u32,
    #[define(F)] _dtype: ElemType,
) {
    let hidden = hidden as usize;
    let pos = ABSOLUTE_POS;
    let mut units = (batch as usize) * hidden;
    if mode != 0u32 {
        units *= modalities;
    }
    if pos >= units {
        terminate!();
    }
    let j = pos % hidden;
    let mut b = pos / hidden;
    let mut m = 0usize;
    if mode != 0u32 {
        m = b % modalities;
        b /= modalities;
    }

    // The softmax over the present modalities, shifted by their maximum.
    let mut max = f32::new(-3.0e38);
    let mut any = 0u32;
    for k in 0..modalities {
        if f32::cast_from(present[b * modalities + k]) > 0.5f32 {
            max = f32::max(
                max,
                f32::cast_from(scores[(b * modalities + k) * hidden + j]),
            );
            any = 1u32;
        }
    }
    let mut total = 0.0f32;
    let mut weighted = 0.0f32;
    let mut mine = 0.0f32;
    for k in 0..modalities {
        if f32::cast_from(present[b * modalities + k]) > 0.5f32 {
            let at = (b * modalities + k) * hidden + j;
            let e = f32::exp(f32::cast_from(scores[at]) - max);
            total += e;
            weighted += e * f32::tanh(f32::cast_from(candidates[at]));
            if k == m {
                mine = e;
            }
        }
    }
    // No modality present: the gates and the fused value are zero.
    let mut gate = 0.0f32;
    let mut fused = 0.0f32;
    if any == 1u32 {
        gate = mine / total;
        fused = weighted / total;
    }

    if mode == 0u32 {
        output[pos] = F::cast_from(fused);
    } else {
        let t = f32::tanh(f32::cast_from(candidates[pos]));
        let g = f32::cast_from(grad[b * hidden + j]);
        if mode == 1u32 {
            output[pos] = F::cast_from(g * gate * (t - fused));
        } else {
            output[pos] = F::cast_from(g * gate * (1.0f32 - t * t));
        }
    }
}

/// `mode`: [`FORWARD`] writes `[batch, hidden]` (`grad` unused), the others
/// `[batch, modalities, hidden]`.
fn launch(
    scores: CubeTensor,
    candidates: CubeTensor,
    present: CubeTensor,
    grad: Option<CubeTensor>,
    mode: u32,
) -> CubeTensor {
    let scores = into_contiguous(scores);
    let [batch, modalities, hidden] = scores.meta.shape().dims::<3>();
    let client = scores.client.clone();
    let shape: Vec<usize> = if mode == FORWARD {
        vec![batch, hidden]
    } else {
        vec![batch, modalities, hidden]
    };
    let count: usize = shape.iter().product();
    let dtype = scores.dtype;
    let output =
        empty_device_contiguous_dtype(client.clone(), scores.device.clone(), shape.into(), dtype);
    // The forward pass reads no gradient: pass the output as a stand-in.
    let grad = grad.map_or_else(|| output.clone(), into_contiguous);
    let dim = CubeDim::new(&client, count.max(1));
    gated_unit_kernel::launch(
        &client,
        cubecl::calculate_cube_count_elemwise(&client, count.max(1), dim),
        dim,
        scores.into_tensor_arg(),
        into_contiguous(candidates).into_tensor_arg(),
        into_contiguous(present).into_tensor_arg(),
        grad.into_tensor_arg(),
        output.clone().into_tensor_arg(),
        batch as u32,
        hidden as u32,
        modalities,
        mode,
        dtype_to_storage_type(dtype),
    );
    output
}

impl GatedUnitOps for CubeBackend {
    fn gated_unit(scores: CubeTensor, candidates: CubeTensor, present: CubeTensor) -> CubeTensor {
        launch(scores, candidates, present, None, FORWARD)
    }

    fn gated_unit_grad_scores(
        scores: CubeTensor,
        candidates: CubeTensor,
        present: CubeTensor,
        grad: CubeTensor,
    ) -> CubeTensor {
        launch(scores, candidates, present, Some(grad), GRAD_SCORES)
    }

    fn gated_unit_grad_candidates(
        scores: CubeTensor,
        candidates: CubeTensor,
        present: CubeTensor,
        grad: CubeTensor,
    ) -> CubeTensor {
        launch(scores, candidates, present, Some(grad), GRAD_CANDIDATES)
    }
}
