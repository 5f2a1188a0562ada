//! One Adam update in one pass over memory. Burn's `Adam` makes about a
//! dozen tensor passes per parameter (scale the moments, square the
//! gradient, add, take the root, divide, scale, subtract), each reading and
//! writing a tensor the size of the parameter: on ResNet-18's 11.7 million
//! parameters that was about 40 ms of a training step. Here each parameter
//! reads its value, gradient and two moments once and writes three of them
//! back, in place when the tensors own their buffers, split over the cores.

use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

/// Parameters per task: below this, one thread does the whole tensor.
const CHUNK: usize = 1 << 15;

/// Adam's settings for one step, with Burn's meaning: the update is
/// `lr · m̂ / (√v̂ + ε)` with ε inside the bias correction as Burn (and
/// PyTorch) place it, and weight decay (L2, not AdamW's decoupled decay)
/// added to the gradient first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// The learning rate of this step.
    pub learning_rate: f64,
    /// Decay of the first moment (Burn's default 0.9).
    pub beta_1: f32,
    /// Decay of the second moment (Burn's default 0.999).
    pub beta_2: f32,
    /// Added to the root of the second moment (Burn's default 1e-5).
    pub epsilon: f32,
    /// L2 penalty added to the gradient as `penalty · param`.
    pub weight_decay: Option<f32>,
    /// The step's number, from 1 (the bias corrections depend on it).
    pub time: usize,
}

impl AdamStep {
    /// The scalars of the update: (m's factor, ε's factor) from the bias
    /// corrections, computed as Burn's `AdaptiveMomentum` does.
    fn corrections(&self) -> (f32, f32) {
        let time = self.time.min(i32::MAX as usize) as i32;
        let correction_2 = (1.0 - self.beta_2.powi(time)).sqrt();
        (correction_2 / (1.0 - self.beta_1.powi(time)), correction_2)
    }
}

/// One Adam step of `param` with gradient `grad` and the moments of the
/// previous steps (`None` before the first: zeros): the new parameter, first
/// moment and second moment. f32 tensors on Flex (without autodiff, as an
/// optimizer sees them) take the one-pass path; any other device or dtype
/// runs Burn's tensor ops with the same formula.
pub fn adam_step<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: Option<[Tensor<D>; 2]>,
    step: &AdamStep,
) -> [Tensor<D>; 3] {
    let fast = |t: &Tensor<D>| {
        t.dtype() == DType::F32 && super::untracked_flex(t.clone().into_dispatch()).is_ok()
    };
    if !([&param, &grad].into_iter().chain(moments.iter().flatten())).all(fast) {
        return adam_tensor_ops(param, grad, moments, step);
    }
    let take = |t: Tensor<D>| super::untracked_flex(t.into_dispatch()).expect("checked above");
    let shape = param.dims();
    let (param, grad) = (take(param), take(grad).to_contiguous());
    let [m, v] = match moments {
        Some(moments) => moments.map(take),
        None => [(); 2].map(|_| FlexTensor::zeros(shape.to_vec().into(), DType::F32)),
    };
    adam_flex(param, &grad, m, v, step).map(super::from_untracked_flex)
}

/// Burn's `Adam` step written with tensor ops (other devices and dtypes).
fn adam_tensor_ops<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: Option<[Tensor<D>; 2]>,
    step: &AdamStep,
) -> [Tensor<D>; 3] {
    let grad = match step.weight_decay {
        Some(penalty) => param.clone().mul_scalar(penalty).add(grad),
        None => grad,
    };
    let (m, v) = match moments {
        Some([m, v]) => (
            m.mul_scalar(step.beta_1)
                .add(grad.clone().mul_scalar(1.0 - step.beta_1)),
            v.mul_scalar(step.beta_2)
                .add(grad.square().mul_scalar(1.0 - step.beta_2)),
        ),
        None => (
            grad.clone().mul_scalar(1.0 - step.beta_1),
            grad.square().mul_scalar(1.0 - step.beta_2),
        ),
    };
    let (factor, correction_2) = step.corrections();
    let update = m
        .clone()
        .mul_scalar(factor)
        .div(v.clone().sqrt().add_scalar(step.epsilon * correction_2));
    [param - update.mul_scalar(step.learning_rate), m, v]
}

/// The update of the contiguous f32 tensors: `param`, `m` and `v` in place
/// when they own their buffers (else on copies).
fn adam_flex(
    param: FlexTensor,
    grad: &FlexTensor,
    m: FlexTensor,
    v: FlexTensor,
    step: &AdamStep,
) -> [FlexTensor; 3] {
    let [mut param, mut m, mut v] = [param, m, v].map(|t| t.to_contiguous());
    let grad = grad
        .as_slice::<f32>()
        .expect("a contiguous f32 tensor (made so by the caller)");
    let scalars = Scalars::of(step);
    let (p_values, m_values, v_values) = (
        param.storage_mut::<f32>(),
        m.storage_mut::<f32>(),
        v.storage_mut::<f32>(),
    );
    assert!(
        [p_values.len(), m_values.len(), v_values.len()] == [grad.len(); 3],
        "adam_step: the parameter, its gradient and its moments differ in size"
    );
    if grad.len() <= CHUNK {
        update(p_values, grad, m_values, v_values, &scalars);
    } else {
        p_values
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(m_values.par_chunks_mut(CHUNK))
            .zip(v_values.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| update(p, g, m, v, &scalars));
    }
    [param, m, v]
}

/// The step's scalars in f32, as Burn's scalar ops apply them.
struct Scalars {
    learning_rate: f32,
    beta_1: f32,
    beta_2: f32,
    /// 1 − β₁, 1 − β₂.
    rest_1: f32,
    rest_2: f32,
    penalty: Option<f32>,
    factor: f32,
    epsilon: f32,
}

impl Scalars {
    fn of(step: &AdamStep) -> Self {
        let (factor, correction_2) = step.corrections();
        Self {
            learning_rate: step.learning_rate as f32,
            beta_1: step.beta_1,
            beta_2: step.beta_2,
            rest_1: 1.0 - step.beta_1,
            rest_2: 1.0 - step.beta_2,
            penalty: step.weight_decay,
            factor,
            epsilon: step.epsilon * correction_2,
        }
    }
}

super::simd::wide_fn! {
/// One chunk of the element-wise update, in the order of Burn's ops (no
/// fused multiply-adds: the same roundings as its tensor passes), compiled
/// for the widest vector instructions the CPU has (the square root and
/// division vectorise).
fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &Scalars) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = match s.penalty {
            Some(penalty) => *p * penalty + g,
            None => g,
        };
        *m = *m * s.beta_1 + g * s.rest_1;
        *v = *v * s.beta_2 + g * g * s.rest_2;
        let update = *m * s.factor / (v.sqrt() + s.epsilon);
        *p -= update * s.learning_rate;
    }
}
}
