//! The gated multimodal unit's combining step ([`GatedFusion`](crate::GatedFusion))
//! in one kernel, forward and backward: [`gated_unit`].
//!
//! A Burn backend extension ([`GatedUnitOps`]): the CubeCL kernel for wgpu
//! devices (`cube`), the CPU reference on Flex, the definition written out
//! in plain loops (`cpu`), and the autodiff part that records the backward
//! step as the two gradient kernels (`autodiff`). Behind the `wgpu` feature.
//!
//! ```
//! use burn::prelude::*;
//! use polymodal_fusion::kernel::{gated_unit, gated_unit_unfused};
//!
//! // On the CPU here; on a `polymodal_wgpu::wgpu_device(..)?` the kernel runs.
//! let device = Device::flex();
//! let scores = Tensor::<3>::ones([2, 3, 4], &device);
//! let candidates = Tensor::<3>::ones([2, 3, 4], &device);
//! let present = Tensor::<2>::ones([2, 3], &device);
//! let fused = gated_unit(scores.clone(), candidates.clone(), present.clone())?;
//! let reference = gated_unit_unfused(scores, candidates, present)?;
//! assert!(fused.all_close(reference, None, Some(1e-5)));
//! # Ok::<(), polymodal_core::Error>(())
//! ```

mod autodiff;
mod cpu;
mod cube;

use burn::backend::{Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::prelude::*;
use burn::tensor::DType;

use polymodal_core::{Error, Result};
use polymodal_wgpu::extension::on_wgpu;

use crate::inputs::masked_softmax;

/// The gated unit as backend operations; call them through [`gated_unit`].
#[backend_extension(Flex, Cube, Autodiff)]
pub trait GatedUnitOps: Backend {
    /// The gated unit's combination: `h[b, j] = Σ_m z[b, m, j]·tanh(u[b, m,
    /// j])`, `z` the softmax of `scores` over the present modalities
    /// (`present` `[batch, modalities]`, 1 or 0). `scores`, `candidates`
    /// `[batch, modalities, hidden]` → `[batch, hidden]`.
    fn gated_unit(
        scores: FloatTensor<Self>,
        candidates: FloatTensor<Self>,
        present: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// `∂L/∂scores` from `grad` = `∂L/∂h` `[batch, hidden]`.
    fn gated_unit_grad_scores(
        scores: FloatTensor<Self>,
        candidates: FloatTensor<Self>,
        present: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// `∂L/∂candidates` from `grad` = `∂L/∂h` `[batch, hidden]`.
    fn gated_unit_grad_candidates(
        scores: FloatTensor<Self>,
        candidates: FloatTensor<Self>,
        present: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// The gated multimodal unit's combining step in one kernel (forward, and
/// backward under autodiff): `h = Σ_m softmax_m(scores)·tanh(candidates)`
/// over the modalities present in each sample (`present` `[batch,
/// modalities]`, 1 or 0); `scores`, `candidates` `[batch, modalities,
/// hidden]` → `[batch, hidden]`, in f32 or f16 (the dtype of `scores`; the
/// arithmetic is f32). A sample with no modality present gets zeros. Shapes
/// and dtypes are checked.
pub fn gated_unit(
    scores: Tensor<3>,
    candidates: Tensor<3>,
    present: Tensor<2>,
) -> Result<Tensor<2>> {
    check_gated(&scores, &candidates, &present)?;
    let dtype = scores.dtype();
    // The CPU reference reads f32: other precisions go through it in f32.
    let io = if on_wgpu(&scores) { dtype } else { DType::F32 };
    let fused = Tensor::<2>::from_dispatch(<Dispatch as GatedUnitOps>::gated_unit(
        scores.cast(io).into_dispatch(),
        candidates.cast(io).into_dispatch(),
        present.cast(io).into_dispatch(),
    ));
    Ok(fused.cast(dtype))
}

/// [`gated_unit`] on wgpu, [`gated_unit_unfused`] elsewhere: on the CPU
/// the kernel's implementation is a plain-loop reference and Burn's ops are
/// faster (`cargo xtask bench kernels --device cpu`). What
/// [`GatedFusion`](crate::GatedFusion) calls with the `wgpu` feature.
pub fn gated_unit_best(
    scores: Tensor<3>,
    candidates: Tensor<3>,
    present: Tensor<2>,
) -> Result<Tensor<2>> {
    if on_wgpu(&scores) {
        gated_unit(scores, candidates, present)
    } else {
        gated_unit_unfused(scores, candidates, present)
    }
}

/// The same with Burn's ops (masked softmax, tanh, product, sum): the
/// baseline [`gated_unit`] is measured against.
pub fn gated_unit_unfused(
    scores: Tensor<3>,
    candidates: Tensor<3>,
    present: Tensor<2>,
) -> Result<Tensor<2>> {
    check_gated(&scores, &candidates, &present)?;
    let gates = masked_softmax(scores, present);
    Ok((gates * candidates.tanh()).sum_dim(1).squeeze_dim(1))
}

fn check_gated(scores: &Tensor<3>, candidates: &Tensor<3>, present: &Tensor<2>) -> Result<()> {
    let [batch, modalities, _] = scores.dims();
    if candidates.dims() != scores.dims() || present.dims() != [batch, modalities] {
        return Err(Error::Invalid(format!(
            "gated unit: scores {:?} and candidates {:?} must match, present must be {:?}, got {:?}",
            scores.dims(),
            candidates.dims(),
            [batch, modalities],
            present.dims()
        )));
    }
    let dtypes = [scores.dtype(), candidates.dtype(), present.dtype()];
    if !matches!(dtypes[0], DType::F32 | DType::F16) || dtypes.iter().any(|d| *d != dtypes[0]) {
        return Err(Error::Invalid(format!(
            "gated unit: scores, candidates and present must all be f32 or all f16, got {dtypes:?}"
        )));
    }
    Ok(())
}
