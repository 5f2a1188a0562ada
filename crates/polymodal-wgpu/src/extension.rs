//! What every polymodal kernel needs beside its own code: the kernels live
//! with their users (log-mel in `polymodal-audio`, frame preprocessing in
//! `polymodal-image`, the gated unit in `polymodal-fusion`), each a Burn
//! backend extension with a CubeCL part for wgpu, a CPU reference on Flex
//! and an autodiff part; these helpers keep the three parts short.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Backend, DispatchTensorKind, tensor::FloatTensor};
use burn::prelude::*;
use burn::tensor::DType;

/// Whether `x` lives on a wgpu (CubeCL) device, tracked by autodiff or not.
pub fn on_wgpu<const D: usize>(x: &Tensor<D>) -> bool {
    is_cube(&x.clone().into_dispatch().kind)
}

/// Whether `kind` is a CubeCL tensor, directly or wrapped by autodiff (an
/// autodiff tensor is `Autodiff(inner)`: matching `Cube` alone missed
/// every tensor of a training step).
fn is_cube(kind: &DispatchTensorKind) -> bool {
    match kind {
        DispatchTensorKind::Cube(_) => true,
        DispatchTensorKind::Autodiff(inner) => is_cube(inner),
        _ => false,
    }
}

/// The float dtype tensors created on `device` get by default: f32, or f16
/// on a device configured for it.
pub fn float_dtype(device: &Device) -> DType {
    device.settings().float_dtype.into()
}

/// The f32 values of a CPU tensor in row-major order, and its shape.
///
/// # Panics
/// When `t` is not f32: the kernel wrappers cast before they dispatch.
pub fn flex_values(t: &FlexTensor) -> (Vec<f32>, Vec<usize>) {
    let t = t.to_contiguous();
    let shape = t.layout().shape().to_vec();
    (t.as_slice::<f32>().expect("f32").to_vec(), shape)
}

pub use polymodal_core::cpu::flex_tensor;

/// A result with no backward step (its inputs are treated as constants).
#[derive(Debug)]
struct Constant;

impl<B: Backend> Backward<B, 1> for Constant {
    type State = ();

    fn backward(self, _: Ops<(), 1>, _: &mut Gradients, _: &mut Checkpointer) {}
}

/// `out`, computed by the inner backend from `input` (and others), as an
/// autodiff tensor with no backward step: for features that are not
/// differentiated, and for gradients (no second-order derivatives).
pub fn untracked<B: Backend, C: CheckpointStrategy>(
    input: &FloatTensor<Autodiff<B, C>>,
    out: FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    // (The autodiff tensor type does not name the strategy: callers pass C.)
    match Constant
        .prepare::<C>([input.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_wgpu_sees_through_autodiff() {
        let cpu = Tensor::<1>::zeros([2], &Device::flex());
        assert!(!on_wgpu(&cpu));
        assert!(!on_wgpu(&Tensor::<1>::zeros(
            [2],
            &Device::flex().autodiff()
        )));
        let Some(device) = crate::wgpu_for_tests() else {
            return;
        };
        assert!(on_wgpu(&Tensor::<1>::zeros([2], &device)));
        let tracked = Tensor::<1>::zeros([2], &device.autodiff()).require_grad();
        assert!(on_wgpu(&tracked), "an autodiff tensor on wgpu");
    }
}
