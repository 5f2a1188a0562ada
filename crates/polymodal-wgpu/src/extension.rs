//! What every polymodal kernel needs beside its own code: the kernels live
//! with their users (log-mel in `polymodal-audio`, frame preprocessing in
//! `polymodal-image`, the gated unit in `polymodal-fusion`), each a Burn
//! backend extension with a CubeCL part for wgpu, a CPU reference on Flex
//! and an autodiff part; these helpers keep the three parts short.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Autodiff, Backend, Bytes, DispatchTensorKind, tensor::FloatTensor};
use burn::prelude::*;
use burn::tensor::DType;

/// Whether `x` lives on a wgpu (CubeCL) device.
pub fn on_wgpu<const D: usize>(x: &Tensor<D>) -> bool {
    matches!(x.clone().into_dispatch().kind, DispatchTensorKind::Cube(_))
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

/// A contiguous f32 CPU tensor of `shape` holding `values`.
pub fn flex_tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape.into()),
        DType::F32,
    )
}

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
