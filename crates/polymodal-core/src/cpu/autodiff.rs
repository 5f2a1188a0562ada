//! [`CpuTrainOps`] under autodiff: the convolution and batch norm record
//! their backward steps (the gradient ops of the inner backend); the
//! gradient ops themselves are not differentiated again.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Backend, tensor::FloatTensor};

use super::{ConvGeometry, CpuTrainOps, NormSettings, PoolGeometry};

/// The convolution's backward step; its state is the input, the weight and
/// the sizes.
#[derive(Debug)]
struct Conv2dBackward;

impl<B: Backend + CpuTrainOps> Backward<B, 3> for Conv2dBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, ConvGeometry);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, weight, geometry) = ops.state;
        let [x_node, weight_node, bias_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = bias_node {
            grads.register::<B>(node.id, B::cpu_channel_sum(grad.clone()));
        }
        if let Some(node) = weight_node {
            let dw = B::cpu_conv2d_weight_grad(x, grad.clone(), geometry);
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = x_node {
            grads.register::<B>(node.id, B::cpu_conv2d_x_grad(weight, grad, geometry));
        }
    }
}

/// Max pooling's backward step; its state is the input, the output and
/// the sizes.
#[derive(Debug)]
struct MaxPoolBackward;

impl<B: Backend + CpuTrainOps> Backward<B, 1> for MaxPoolBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, PoolGeometry);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, out, geometry) = ops.state;
        let [x_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = x_node {
            let dx = B::cpu_max_pool2d_x_grad(x, out, grad, geometry);
            grads.register::<B>(node.id, dx);
        }
    }
}

/// Batch norm's backward step; its state is the input, gamma, beta, the
/// batch statistics and the settings.
#[derive(Debug)]
struct BatchNormBackward;

impl<B: Backend + CpuTrainOps> Backward<B, 3> for BatchNormBackward {
    type State = (
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        NormSettings,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, gamma, beta, mean, variance, settings) = ops.state;
        let [x_node, gamma_node, beta_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (dx, dgamma, dbeta) =
            B::cpu_batch_norm_train_grad(x, gamma, beta, mean, variance, settings, grad);
        for (node, g) in [(x_node, dx), (gamma_node, dgamma), (beta_node, dbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// `out` as an autodiff tensor with no history (a gradient, or statistics).
fn constant<B: Backend, C: CheckpointStrategy>(out: FloatTensor<B>) -> FloatTensor<Autodiff<B, C>> {
    <FloatTensor<Autodiff<B, C>>>::new(out)
}

impl<B: Backend + CpuTrainOps, C: CheckpointStrategy> CpuTrainOps for Autodiff<B, C> {
    fn cpu_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self> {
        let guards = [x.node(), weight.node(), bias.node()];
        let (x, weight, bias) = (
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
        );
        let out = B::cpu_conv2d(x.clone(), weight.clone(), bias, geometry);
        match Conv2dBackward
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x, weight, geometry), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    /// Untracked: an inference op (its wrapper never calls it under
    /// autodiff), so its output has no history.
    fn cpu_conv2d_affine(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        relu: bool,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self> {
        constant::<B, C>(B::cpu_conv2d_affine(
            x.into_primitive(),
            weight.into_primitive(),
            scale.into_primitive(),
            shift.into_primitive(),
            relu,
            geometry,
        ))
    }

    fn cpu_conv2d_x_grad(
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self> {
        constant::<B, C>(B::cpu_conv2d_x_grad(
            weight.into_primitive(),
            output_grad.into_primitive(),
            geometry,
        ))
    }

    fn cpu_conv2d_weight_grad(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self> {
        constant::<B, C>(B::cpu_conv2d_weight_grad(
            x.into_primitive(),
            output_grad.into_primitive(),
            geometry,
        ))
    }

    fn cpu_channel_sum(x: FloatTensor<Self>) -> FloatTensor<Self> {
        constant::<B, C>(B::cpu_channel_sum(x.into_primitive()))
    }

    fn cpu_max_pool2d(x: FloatTensor<Self>, geometry: PoolGeometry) -> FloatTensor<Self> {
        let guards = [x.node()];
        let x = x.into_primitive();
        let out = B::cpu_max_pool2d(x.clone(), geometry);
        match MaxPoolBackward
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x, out.clone(), geometry), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn cpu_max_pool2d_x_grad(
        x: FloatTensor<Self>,
        out: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        geometry: PoolGeometry,
    ) -> FloatTensor<Self> {
        constant::<B, C>(B::cpu_max_pool2d_x_grad(
            x.into_primitive(),
            out.into_primitive(),
            output_grad.into_primitive(),
            geometry,
        ))
    }

    fn cpu_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        settings: NormSettings,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let guards = [x.node(), gamma.node(), beta.node()];
        let (x, gamma, beta) = (
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
        );
        let (out, mean, variance) =
            B::cpu_batch_norm_train(x.clone(), gamma.clone(), beta.clone(), settings);
        let out = match BatchNormBackward
            .prepare::<C>(guards)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let saved = (x, gamma, beta, mean.clone(), variance.clone(), settings);
                prep.finish(saved, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        (out, constant::<B, C>(mean), constant::<B, C>(variance))
    }

    fn cpu_batch_norm_train_grad(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        settings: NormSettings,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dgamma, dbeta) = B::cpu_batch_norm_train_grad(
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
            mean.into_primitive(),
            variance.into_primitive(),
            settings,
            grad.into_primitive(),
        );
        (
            constant::<B, C>(dx),
            constant::<B, C>(dgamma),
            constant::<B, C>(dbeta),
        )
    }
}
