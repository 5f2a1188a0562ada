//! The convolution and batch-norm fast paths as a Burn backend extension:
//! implemented on Flex (`conv.rs`, `norm.rs`) and under autodiff
//! (`autodiff.rs`), called through [`conv2d`](super::conv2d) and
//! [`batch_norm`](super::batch_norm).

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Backend, Bytes, Flex, backend_extension, tensor::FloatTensor};
use burn::tensor::DType;

use super::{ConvGeometry, PoolGeometry, conv, norm, pool};

/// The settings of a training-mode batch norm beside its tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormSettings {
    /// Added to the variance before its root.
    pub epsilon: f64,
    /// Whether a ReLU follows the norm (in the same passes).
    pub relu: bool,
}

/// Training ops with a CPU implementation faster than Burn's generic one.
/// Every tensor is f32; the wrappers check that before they dispatch.
#[backend_extension(Flex, Autodiff)]
pub trait CpuTrainOps: Backend {
    /// `x` `[batch, in, h, w]` convolved with `weight` `[out, in, kh, kw]`
    /// plus `bias` `[out]` → `[batch, out, oh, ow]`.
    fn cpu_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self>;

    /// Inference: `x` convolved with `weight`, then each output channel `c`
    /// times `scale[c]` plus `shift[c]` (a batch norm with running
    /// statistics folded into the convolution), then a ReLU when `relu`,
    /// all while each sample's output is in cache. Not differentiable: its
    /// wrapper [`conv2d_norm`](super::conv2d_norm) calls it only outside
    /// autodiff.
    fn cpu_conv2d_affine(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        relu: bool,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self>;

    /// `∂L/∂x` `[batch, in, h, w]` from `∂L/∂out` `output_grad`.
    fn cpu_conv2d_x_grad(
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self>;

    /// `∂L/∂weight` `[out, in, kh, kw]` from `∂L/∂out` `output_grad`.
    fn cpu_conv2d_weight_grad(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self>;

    /// The sum over every dimension but the second, `[batch, channels, …]`
    /// → `[channels]` (a convolution's bias gradient).
    fn cpu_channel_sum(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Max pooling of `x` `[batch, channels, h, w]` → `[batch, channels,
    /// oh, ow]`.
    fn cpu_max_pool2d(x: FloatTensor<Self>, geometry: PoolGeometry) -> FloatTensor<Self>;

    /// `∂L/∂x` of [`cpu_max_pool2d`](CpuTrainOps::cpu_max_pool2d) from
    /// its input `x`, its output `out` and `∂L/∂out` `output_grad`.
    fn cpu_max_pool2d_x_grad(
        x: FloatTensor<Self>,
        out: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        geometry: PoolGeometry,
    ) -> FloatTensor<Self>;

    /// Training-mode batch norm of `x` `[batch, channels, …]` with the
    /// batch's statistics, then a ReLU when the settings ask for one:
    /// (output, mean, biased variance), as Burn's `batch_norm_train`.
    fn cpu_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        settings: NormSettings,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Gradients of [`cpu_batch_norm_train`](CpuTrainOps::cpu_batch_norm_train)
    /// for `x`, `gamma` and `beta` from `∂L/∂output` `grad`.
    fn cpu_batch_norm_train_grad(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        settings: NormSettings,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// A contiguous f32 view of `t` (a copy only when `t` is not contiguous).
pub(super) fn contiguous(t: &FlexTensor) -> FlexTensor {
    t.to_contiguous()
}

/// The values of a contiguous f32 tensor made by [`contiguous`].
pub(super) fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("the CPU fast paths are dispatched for contiguous f32 tensors only")
}

/// A contiguous f32 CPU tensor of `shape` holding `values` (also what the
/// kernels' CPU parts in the modality crates return).
///
/// # Panics
/// When `values` does not hold exactly the shape's element count (the
/// callers compute both: a mismatch is a bug, not bad input).
pub fn flex_tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    assert_eq!(
        values.len(),
        shape.iter().product::<usize>(),
        "flex_tensor: {} values for shape {shape:?}",
        values.len()
    );
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape.to_vec().into()),
        DType::F32,
    )
}

/// The convolution's forward pass with its epilogue (`conv::Epilogue`).
fn conv_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    scale: Option<&FlexTensor>,
    shift: &FlexTensor,
    relu: bool,
    geometry: ConvGeometry,
) -> FlexTensor {
    let [x, weight, shift] = [x, weight, shift].map(contiguous);
    let scale = scale.map(contiguous);
    let epilogue = conv::Epilogue {
        scale: scale.as_ref().map(values),
        shift: values(&shift),
        relu,
    };
    let out = conv::forward(&geometry, values(&x), values(&weight), epilogue);
    let [oh, ow] = geometry.output().expect("checked by the wrapper");
    flex_tensor(out, &[geometry.batch, geometry.out_channels, oh, ow])
}

impl CpuTrainOps for Flex {
    fn cpu_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        geometry: ConvGeometry,
    ) -> FlexTensor {
        conv_forward(&x, &weight, None, &bias, false, geometry)
    }

    fn cpu_conv2d_affine(
        x: FlexTensor,
        weight: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
        relu: bool,
        geometry: ConvGeometry,
    ) -> FlexTensor {
        conv_forward(&x, &weight, Some(&scale), &shift, relu, geometry)
    }

    fn cpu_conv2d_x_grad(
        weight: FlexTensor,
        output_grad: FlexTensor,
        geometry: ConvGeometry,
    ) -> FlexTensor {
        let (weight, grad) = (contiguous(&weight), contiguous(&output_grad));
        let dx = conv::x_grad(&geometry, values(&weight), values(&grad));
        let [h, w] = geometry.input;
        flex_tensor(dx, &[geometry.batch, geometry.in_channels, h, w])
    }

    fn cpu_conv2d_weight_grad(
        x: FlexTensor,
        output_grad: FlexTensor,
        geometry: ConvGeometry,
    ) -> FlexTensor {
        let (x, grad) = (contiguous(&x), contiguous(&output_grad));
        let dw = conv::weight_grad(&geometry, values(&x), values(&grad));
        let [kh, kw] = geometry.kernel;
        flex_tensor(dw, &[geometry.out_channels, geometry.in_channels, kh, kw])
    }

    fn cpu_channel_sum(x: FlexTensor) -> FlexTensor {
        let x = contiguous(&x);
        let shape = x.layout().shape().to_vec();
        let sums = conv::channel_sum(values(&x), shape[0], shape[1]);
        flex_tensor(sums, &[shape[1]])
    }

    fn cpu_max_pool2d(x: FlexTensor, geometry: PoolGeometry) -> FlexTensor {
        let x = contiguous(&x);
        let shape = x.layout().shape().to_vec();
        let out = pool::forward(&geometry, values(&x));
        let [oh, ow] = geometry.output().expect("checked by the wrapper");
        flex_tensor(out, &[shape[0], shape[1], oh, ow])
    }

    fn cpu_max_pool2d_x_grad(
        x: FlexTensor,
        out: FlexTensor,
        output_grad: FlexTensor,
        geometry: PoolGeometry,
    ) -> FlexTensor {
        let [x, out, grad] = [&x, &out, &output_grad].map(contiguous);
        let shape = x.layout().shape().to_vec();
        let dx = pool::x_grad(&geometry, values(&x), values(&out), values(&grad));
        flex_tensor(dx, &shape)
    }

    fn cpu_batch_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        settings: NormSettings,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (x, gamma, beta) = (contiguous(&x), contiguous(&gamma), contiguous(&beta));
        let shape = x.layout().shape().to_vec();
        let layout = norm::Layout::of(&shape);
        let (out, mean, variance) = norm::forward(
            layout,
            values(&x),
            values(&gamma),
            values(&beta),
            settings.epsilon,
            settings.relu,
        );
        let channels = [layout.channels];
        (
            flex_tensor(out, &shape),
            flex_tensor(mean, &channels),
            flex_tensor(variance, &channels),
        )
    }

    fn cpu_batch_norm_train_grad(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        settings: NormSettings,
        grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [x, gamma, beta, mean, variance, grad] =
            [&x, &gamma, &beta, &mean, &variance, &grad].map(contiguous);
        let shape = x.layout().shape().to_vec();
        let layout = norm::Layout::of(&shape);
        let saved = norm::Saved {
            gamma: values(&gamma),
            beta: values(&beta),
            mean: values(&mean),
            variance: values(&variance),
            epsilon: settings.epsilon,
            relu: settings.relu,
        };
        let (dx, gamma_grad, beta_grad) = norm::backward(layout, values(&x), &saved, values(&grad));
        let channels = [layout.channels];
        (
            flex_tensor(dx, &shape),
            flex_tensor(gamma_grad, &channels),
            flex_tensor(beta_grad, &channels),
        )
    }
}
