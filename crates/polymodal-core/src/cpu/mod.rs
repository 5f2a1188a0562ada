//! Fast paths on Burn's CPU backend (Flex) for the work that dominates
//! training and inference after the matrix products Flex already does well.
//!
//! - [`gelu`]: the exact GELU vectorised over every core (Flex evaluates
//!   libm's scalar `erff` on one thread).
//! - [`conv2d`]: 2-D convolution by im2col + one gemm per sample, forward
//!   and both gradients, samples split over the cores. Burn's generic
//!   backward turns the weight gradient into a convolution over transposed
//!   copies of the input and the output gradient and the input gradient into
//!   a transposed convolution; those copies and loops were most of an
//!   AV-MNIST training step (`perf`, [benchmarks.md](../../../docs/benchmarks.md)).
//! - [`batch_norm`]: training-mode batch norm as one pass for the statistics
//!   and one for the output, and a two-pass backward, per channel, where
//!   Burn's default swaps axes and reduces through temporaries;
//!   [`batch_norm_relu`] with the ReLU after it in the same passes.
//! - [`conv2d_norm`]: a convolution and its batch norm (and ReLU); in
//!   inference the norm's running statistics are folded into the
//!   convolution's output pass, where Burn's layers make five more passes.
//! - [`max_pool2d`]: max pooling and its gradient in plain loops over the
//!   planes, branch-free for 2×2 windows (Flex's took as long as the
//!   convolution before it).
//! - [`adam_step`]: one Adam update per parameter in one pass over memory
//!   (Burn's `Adam` makes about a dozen tensor passes), the step of
//!   polymodal-train's `FusedAdam`.
//! - [`matmul_transposed`]: a few rows times a wide matrix's transpose
//!   (a decoder step's output projection), reading the matrix once where
//!   gemm packs it and fills a fifth of its microkernel.
//! - [`log_sum_exp`]: over a host slice, vectorised (a decoding step's
//!   log-softmax and timestamp rule over the vocabulary).
//! - [`on_pool`]: a training step run on a thread of rayon's pool, so the
//!   ops inside it split their work without a hand-off each.
//! - [`tune_allocator`]: glibc's malloc set up so that freed tensor buffers
//!   are reused rather than unmapped and faulted in again.
//!
//! The convolution, batch norm and max pooling are a Burn backend extension
//! ([`CpuTrainOps`]) with their own backward step under autodiff (the folded
//! inference op needs none). Every fast path is taken only for f32 tensors
//! on Flex; other devices (wgpu), other dtypes and unsupported settings
//! (grouped convolutions, ceil-mode pooling, batch norm outside training
//! unless folded into a convolution) go through Burn's own ops, so results
//! there are unchanged. Each is tested
//! against Burn's op, values and gradients.

mod adam;
mod allocator;
mod attention;
mod autodiff;
mod conv;
mod extension;
mod few_rows;
mod gelu;
mod log_sum_exp;
mod norm;
mod pool;
mod simd;
mod winograd;

pub use adam::{AdamStep, adam_step};
pub use allocator::tune_allocator;
pub use attention::{attention, attention_padded};
pub use conv::{ConvGeometry, conv2d, conv2d_norm};
pub use extension::{CpuTrainOps, NormSettings, flex_tensor};
pub use few_rows::{MAX_ROWS, matmul_transposed};
pub use gelu::gelu;
pub use log_sum_exp::log_sum_exp;
pub use norm::{batch_norm, batch_norm_relu};
pub use pool::{PoolGeometry, max_pool2d};

use burn::backend::flex::FlexTensor;
use burn::backend::{BackendTensor, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind};
use burn::prelude::*;
use burn::tensor::DType;

/// Whether `x` is an f32 tensor on Flex (tracked by autodiff or not): the
/// tensors the fast paths handle.
fn on_flex_f32<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && is_flex(&x.clone().into_dispatch().kind)
}

/// Whether `kind` is a Flex tensor, directly or wrapped by autodiff.
fn is_flex(kind: &DispatchTensorKind) -> bool {
    match kind {
        DispatchTensorKind::Flex(_) => true,
        DispatchTensorKind::Autodiff(inner) => is_flex(inner),
        // Unreachable when Flex is the only backend compiled in.
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// The Flex float tensor inside `t` when it is one without autodiff (what
/// an inference pass or an optimiser sees), else `t` back.
fn untracked_flex(t: DispatchTensor) -> Result<FlexTensor, Box<DispatchTensor>> {
    match t {
        DispatchTensor {
            kind: DispatchTensorKind::Flex(BackendTensor::Float(tensor)),
            autodiff: DispatchAutodiffContext::Disabled,
        } => Ok(tensor),
        other => Err(Box::new(other)),
    }
}

/// `t` as a tensor without autodiff: the inverse of [`untracked_flex`].
fn from_untracked_flex<const D: usize>(t: FlexTensor) -> Tensor<D> {
    Tensor::from_dispatch(DispatchTensor {
        kind: DispatchTensorKind::Flex(BackendTensor::Float(t)),
        autodiff: DispatchAutodiffContext::Disabled,
    })
}

/// Samples or channels below which one thread does all the work.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 14;

/// How many parts to split `items` units of `work` elements each into: one
/// per core, one in all when the work is small.
fn parts(items: usize, work: usize) -> usize {
    if items * work < PARALLEL_MIN_ELEMENTS {
        1
    } else {
        rayon::current_num_threads().clamp(1, items.max(1))
    }
}

/// Runs `f` on a thread of rayon's pool, the one Flex and these fast paths
/// split their work over (on this thread when it is one of them).
///
/// An op that splits its work, called from outside the pool, sends it in
/// and sleeps until a worker is done: two thread wake-ups per op, and a
/// training step makes hundreds of ops. Called from a worker, the op runs
/// part of its work on that worker and the others take the rest directly.
/// A training step run through this function pays the hand-off once.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

#[cfg(test)]
mod tests;
