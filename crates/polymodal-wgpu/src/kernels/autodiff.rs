//! [`KernelOps`](super::KernelOps) under autodiff: the gated unit records
//! its backward step (the two gradient kernels of the inner backend); the
//! log-mel spectrogram is a constant (features are not differentiated).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{
    Autodiff, Backend,
    tensor::{FloatTensor, IntTensor},
};

use super::{FrameShape, KernelOps, LogMelShape};

/// The backward step of the gated unit; its state is the forward inputs.
#[derive(Debug)]
struct GatedUnitBackward;

impl<B: Backend + KernelOps> Backward<B, 2> for GatedUnitBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (scores, candidates, present) = ops.state;
        let [scores_node, candidates_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = scores_node {
            let g = B::gated_unit_grad_scores(
                scores.clone(),
                candidates.clone(),
                present.clone(),
                grad.clone(),
            );
            grads.register::<B>(node.id, g);
        }
        if let Some(node) = candidates_node {
            let g = B::gated_unit_grad_candidates(scores, candidates, present, grad);
            grads.register::<B>(node.id, g);
        }
    }
}

/// A result with no backward step (its inputs are treated as constants).
#[derive(Debug)]
struct Constant;

impl<B: Backend> Backward<B, 1> for Constant {
    type State = ();

    fn backward(self, _: Ops<(), 1>, _: &mut Gradients, _: &mut Checkpointer) {}
}

/// `out`, computed by the inner backend from `input` (and others), as a
/// tensor with no backward step.
fn constant<B: Backend, C: CheckpointStrategy>(
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

impl<B: Backend + KernelOps, C: CheckpointStrategy> KernelOps for Autodiff<B, C> {
    fn log_mel(
        signal: FloatTensor<Self>,
        window: FloatTensor<Self>,
        twiddles: FloatTensor<Self>,
        dft_cos: FloatTensor<Self>,
        dft_sin: FloatTensor<Self>,
        filters: FloatTensor<Self>,
        bands: FloatTensor<Self>,
        shape: LogMelShape,
    ) -> FloatTensor<Self> {
        let out = B::log_mel(
            signal.primitive().clone(),
            window.into_primitive(),
            twiddles.into_primitive(),
            dft_cos.into_primitive(),
            dft_sin.into_primitive(),
            filters.into_primitive(),
            bands.into_primitive(),
            shape,
        );
        constant::<B, C>(&signal, out)
    }

    fn preprocess_frames(
        pixels: IntTensor<Self>,
        horizontal_start: IntTensor<Self>,
        horizontal_len: IntTensor<Self>,
        horizontal_weights: IntTensor<Self>,
        vertical_start: IntTensor<Self>,
        vertical_len: IntTensor<Self>,
        vertical_weights: IntTensor<Self>,
        norm: FloatTensor<Self>,
        shape: FrameShape,
    ) -> FloatTensor<Self> {
        let out = B::preprocess_frames(
            pixels,
            horizontal_start,
            horizontal_len,
            horizontal_weights,
            vertical_start,
            vertical_len,
            vertical_weights,
            norm.primitive().clone(),
            shape,
        );
        constant::<B, C>(&norm, out)
    }

    fn gated_unit(
        scores: FloatTensor<Self>,
        candidates: FloatTensor<Self>,
        present: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let guards = [scores.node(), candidates.node()];
        let (scores, candidates, present) = (
            scores.into_primitive(),
            candidates.into_primitive(),
            present.into_primitive(),
        );
        let out = B::gated_unit(scores.clone(), candidates.clone(), present.clone());
        match GatedUnitBackward
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((scores, candidates, present), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn gated_unit_grad_scores(
        scores: FloatTensor<Self>,
        candidates: FloatTensor<Self>,
        present: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // Second-order derivatives are not propagated through the gradient.
        let out = B::gated_unit_grad_scores(
            scores.into_primitive(),
            candidates.into_primitive(),
            present.into_primitive(),
            grad.primitive().clone(),
        );
        constant::<B, C>(&grad, out)
    }

    fn gated_unit_grad_candidates(
        scores: FloatTensor<Self>,
        candidates: FloatTensor<Self>,
        present: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // Second-order derivatives are not propagated through the gradient.
        let out = B::gated_unit_grad_candidates(
            scores.into_primitive(),
            candidates.into_primitive(),
            present.into_primitive(),
            grad.primitive().clone(),
        );
        constant::<B, C>(&grad, out)
    }
}
