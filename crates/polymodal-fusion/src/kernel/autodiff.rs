//! [`GatedUnitOps`] under autodiff: the gated unit records its backward
//! step (the two gradient kernels of the inner backend); the gradients
//! themselves are not differentiated again.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Backend, tensor::FloatTensor};

use polymodal_wgpu::extension::untracked;

use super::GatedUnitOps;

/// The backward step of the gated unit; its state is the forward inputs.
#[derive(Debug)]
struct GatedUnitBackward;

impl<B: Backend + GatedUnitOps> Backward<B, 2> for GatedUnitBackward {
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

impl<B: Backend + GatedUnitOps, C: CheckpointStrategy> GatedUnitOps for Autodiff<B, C> {
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
        let out = B::gated_unit_grad_scores(
            scores.into_primitive(),
            candidates.into_primitive(),
            present.into_primitive(),
            grad.primitive().clone(),
        );
        untracked::<B, C>(&grad, out)
    }

    fn gated_unit_grad_candidates(
        scores: FloatTensor<Self>,
        candidates: FloatTensor<Self>,
        present: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let out = B::gated_unit_grad_candidates(
            scores.into_primitive(),
            candidates.into_primitive(),
            present.into_primitive(),
            grad.primitive().clone(),
        );
        untracked::<B, C>(&grad, out)
    }
}
