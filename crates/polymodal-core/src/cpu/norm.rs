//! Training-mode batch norm on Flex: the statistics in one parallel pass
//! per channel, the output in one fused multiply-add pass, and the backward
//! step as two per-channel sums and one pass, where Burn's default swaps
//! axes into temporaries for every reduction. A ReLU after the norm can be
//! part of both passes ([`batch_norm_relu`]): its mask is recomputed from
//! the input in the backward step, where Burn's ReLU makes a pass of its
//! own each way.

use std::mem::MaybeUninit;

use burn::backend::Dispatch;
use burn::nn::BatchNorm;
use burn::prelude::*;
use burn::tensor::activation;
use rayon::prelude::*;

use super::extension::{CpuTrainOps, NormSettings};
use super::simd::wide_fn;
use super::{on_flex_f32, parts};

/// `norm.forward(x)`: in training (an autodiff device and the layer not
/// frozen) with f32 tensors on Flex, the batch statistics and the
/// normalisation run on the CPU fast path, differentiable, and the running
/// statistics are updated as Burn's layer updates them; otherwise Burn's
/// layer runs.
pub fn batch_norm<const D: usize>(norm: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    norm_train(norm, x, false)
}

/// `relu(norm.forward(x))`, with the ReLU inside the fast path's two
/// passes (forward and backward) when [`batch_norm`]'s fast path runs;
/// otherwise Burn's layer and ReLU.
pub fn batch_norm_relu<const D: usize>(norm: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    norm_train(norm, x, true)
}

/// [`batch_norm`], then a ReLU when `relu`.
fn norm_train<const D: usize>(norm: &BatchNorm, x: Tensor<D>, relu: bool) -> Tensor<D> {
    let (gamma, beta) = (norm.gamma.val(), norm.beta.val());
    let training = x.device().is_autodiff() && norm.training.is_enabled();
    let dims = x.dims();
    let fits = D >= 2 && dims[1] == gamma.dims()[0] && !dims.contains(&0);
    if !(training && fits && on_flex_f32(&x) && on_flex_f32(&gamma) && on_flex_f32(&beta)) {
        let y = norm.forward(x);
        if training {
            settle(&norm.running_mean);
            settle(&norm.running_var);
        }
        return if relu { activation::relu(y) } else { y };
    }
    let (output, mean, variance) = <Dispatch as CpuTrainOps>::cpu_batch_norm_train(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        NormSettings {
            epsilon: norm.epsilon,
            relu,
        },
    );
    let (mean, variance) = (
        Tensor::<1>::from_dispatch(mean),
        Tensor::<1>::from_dispatch(variance),
    );
    let device = mean.device();
    let momentum = norm.momentum;
    let update = |running: &burn::module::RunningState<Tensor<1>>, batch: Tensor<1>| {
        let value = running
            .value_sync()
            .to_device(&device)
            .mul_scalar(1.0 - momentum)
            .add(batch.detach().mul_scalar(momentum));
        running.update(value.detach());
        settle(running);
    };
    update(&norm.running_mean, mean);
    update(&norm.running_var, variance);
    Tensor::from_dispatch(output)
}

/// Makes the update just made on this thread the running statistic's
/// value. Burn keeps each thread's update apart until that thread reads it
/// again (for data-parallel training, where the threads' updates are then
/// averaged): a training step that runs on whichever thread is free would
/// read an older value, or an average, depending on which threads ran the
/// steps before it, and runs would stop repeating exactly.
fn settle(running: &burn::module::RunningState<Tensor<1>>) {
    running.value_sync();
}

/// `x` `[batch, channels, rest]` as slices of `rest` values: slice `i` is
/// sample `i / channels`, channel `i % channels`.
#[derive(Clone, Copy)]
pub(super) struct Layout {
    pub batch: usize,
    pub channels: usize,
    pub rest: usize,
}

impl Layout {
    /// The layout of a tensor of `shape` `[batch, channels, …]`.
    pub fn of(shape: &[usize]) -> Self {
        Self {
            batch: shape[0],
            channels: shape[1],
            rest: shape[2..].iter().product(),
        }
    }

    /// Values per channel.
    fn count(&self) -> f64 {
        (self.batch * self.rest) as f64
    }

    /// `f(channel)` for every channel, over the cores when the work is large.
    fn per_channel<T: Send>(&self, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
        if parts(self.channels, self.batch * self.rest) == 1 {
            (0..self.channels).map(f).collect()
        } else {
            (0..self.channels).into_par_iter().map(f).collect()
        }
    }

    /// The slices of channel `c`, one per sample: index ranges of a
    /// `[batch, channels, rest]` buffer.
    fn channel_slices(&self, c: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
        let (channels, rest) = (self.channels, self.rest);
        (0..self.batch).map(move |b| (b * channels + c) * rest..(b * channels + c + 1) * rest)
    }

    /// A new `[batch, channels, rest]` buffer written slice by slice by
    /// `f(channel, input offset, out slice)`, runs of slices split over the
    /// cores. The buffer is not zeroed first: that would be one more pass
    /// over memory not yet in cache.
    ///
    /// # Safety
    /// `f` must write every element of each slice it is given.
    unsafe fn map_slices(
        &self,
        f: impl Fn(usize, usize, &mut [MaybeUninit<f32>]) + Sync + Send,
    ) -> Vec<f32> {
        let slices = self.batch * self.channels;
        let len = slices * self.rest;
        let run = slices.div_ceil(parts(slices, self.rest)).max(1);
        let mut out = Vec::with_capacity(len);
        out.spare_capacity_mut()[..len]
            .par_chunks_mut((run * self.rest).max(1))
            .enumerate()
            .for_each(|(part, out)| {
                for (i, out) in out.chunks_mut(self.rest).enumerate() {
                    let slice = part * run + i;
                    f(slice % self.channels, slice * self.rest, out);
                }
            });
        // SAFETY: the chunks cover all `len` elements and the caller's `f`
        // wrote each of them.
        unsafe { out.set_len(len) };
        out
    }
}

/// Each channel's (scale, shift) of the normalisation, `x·scale + shift`,
/// from the batch statistics as returned (f32): the backward step
/// recomputes the very values the forward pass wrote (the ReLU's mask).
fn affine(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    variance: &[f32],
    epsilon: f64,
) -> Vec<(f32, f32)> {
    (0..gamma.len())
        .map(|c| {
            let scale = gamma[c] as f64 / (variance[c] as f64 + epsilon).sqrt();
            (
                scale as f32,
                (beta[c] as f64 - mean[c] as f64 * scale) as f32,
            )
        })
        .collect()
}

/// `v`, or 0 where it is negative when `relu` (a NaN stays NaN, as Burn's
/// ReLU keeps it).
#[inline(always)]
fn activate(v: f32, relu: bool) -> f32 {
    if relu && v < 0.0 { 0.0 } else { v }
}

/// (output, mean, biased variance) of training-mode batch norm, then a
/// ReLU when `relu`.
pub(super) fn forward(
    layout: Layout,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    relu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let rest = layout.rest;
    let stats = layout.per_channel(|c| channel_moments(layout, x, c));
    let mean: Vec<f32> = stats.iter().map(|s| s.0 as f32).collect();
    let variance: Vec<f32> = stats.iter().map(|s| s.1 as f32).collect();
    let scale_shift = affine(gamma, beta, &mean, &variance, epsilon);
    // SAFETY: each slice is zipped with as many values of `x` (`rest`).
    let out = unsafe {
        layout.map_slices(|c, at, out| {
            normalize(&x[at..at + rest], scale_shift[c], relu, out);
        })
    };
    (out, mean, variance)
}

wide_fn! {
/// Channel `c`'s (mean, biased variance) over `x`: each slice's mean and
/// squared deviations (two passes over a slice still in cache), merged
/// slice by slice in f64 (Chan et al.'s pairwise update): one pass over
/// memory where a channel-wide mean, then the deviations from it, took two.
fn channel_moments(layout: Layout, x: &[f32], c: usize) -> (f64, f64) {
    let rest = layout.rest;
    let (mut mean, mut squares) = (0.0f64, 0.0f64);
    for (b, slice) in layout.channel_slices(c).enumerate() {
        let slice = &x[slice];
        let slice_mean = lanes_sum(slice, |v| v) / rest as f32;
        let slice_squares = lanes_sum(slice, |v| (v - slice_mean) * (v - slice_mean));
        // Merging b slices of `rest` values with one more.
        let delta = slice_mean as f64 - mean;
        let share = 1.0 / (b + 1) as f64;
        mean += delta * share;
        squares += slice_squares as f64 + delta * delta * rest as f64 * b as f64 * share;
    }
    (mean, squares / layout.count())
}
}

wide_fn! {
/// `x · scale + shift` (then the ReLU when `relu`) into `out`.
fn normalize(x: &[f32], affine: (f32, f32), relu: bool, out: &mut [MaybeUninit<f32>]) {
    let (scale, shift) = affine;
    for (o, v) in out.iter_mut().zip(x) {
        o.write(activate(v * scale + shift, relu));
    }
}
}

/// What [`backward`] needs of the forward pass besides `x`: the norm's
/// parameters, the batch statistics it returned, and whether a ReLU
/// followed.
pub(super) struct Saved<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub mean: &'a [f32],
    pub variance: &'a [f32],
    pub epsilon: f64,
    pub relu: bool,
}

/// (∂L/∂x, ∂L/∂gamma, ∂L/∂beta) of training-mode batch norm (and its
/// ReLU) from `grad` = ∂L/∂output: after the ReLU's mask (the output was
/// positive), with x̂ = (x − mean)·inv_std,
/// ∂L/∂x = gamma·inv_std·(grad − mean(grad) − x̂·mean(grad·x̂)).
pub(super) fn backward(
    layout: Layout,
    x: &[f32],
    saved: &Saved,
    grad: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let Saved {
        gamma,
        beta,
        mean,
        variance,
        epsilon,
        relu,
    } = *saved;
    let rest = layout.rest;
    let scale_shift = affine(gamma, beta, mean, variance, epsilon);
    // Σ grad and Σ grad·(x − mean) in one pass over both.
    let sums = layout.per_channel(|c| {
        let (mut grad_sum, mut centred) = (0.0, 0.0);
        for slice in layout.channel_slices(c) {
            let (g, x) = (&grad[slice.clone()], &x[slice]);
            let [s, d] = grad_sums(g, x, mean[c], scale_shift[c], relu);
            (grad_sum, centred) = (grad_sum + s as f64, centred + d as f64);
        }
        (grad_sum, centred)
    });
    // ∂L/∂x = a·grad + b·x + c per channel.
    let mut gamma_grad = Vec::with_capacity(layout.channels);
    let mut beta_grad = Vec::with_capacity(layout.channels);
    let coefficients: Vec<(f32, f32, f32)> = sums
        .iter()
        .enumerate()
        .map(|(c, &(grad_sum, centred))| {
            let inv_std = 1.0 / (variance[c] as f64 + epsilon).sqrt();
            let normalized_grad = centred * inv_std; // Σ grad·x̂
            gamma_grad.push(normalized_grad as f32);
            beta_grad.push(grad_sum as f32);
            let n = layout.count();
            let k = gamma[c] as f64 * inv_std;
            let slope = k * inv_std * normalized_grad / n;
            let a = k;
            let b = -slope;
            let c0 = -k * grad_sum / n + slope * mean[c] as f64;
            (a as f32, b as f32, c0 as f32)
        })
        .collect();
    // SAFETY: each slice is zipped with as many values of `grad` and `x`.
    let dx = unsafe {
        layout.map_slices(|c, at, out| {
            let (grad, x) = (&grad[at..at + rest], &x[at..at + rest]);
            input_grad(grad, x, coefficients[c], scale_shift[c], relu, out);
        })
    };
    (dx, gamma_grad, beta_grad)
}

/// The gradient `g` through the ReLU at input `x`: zero where the forward
/// pass wrote zero (the same f32 arithmetic, so the same outputs).
#[inline(always)]
fn through_relu(g: f32, x: f32, (scale, shift): (f32, f32), relu: bool) -> f32 {
    if relu && x * scale + shift <= 0.0 {
        0.0
    } else {
        g
    }
}

wide_fn! {
/// Σ grad and Σ grad·(x − mean) over one slice, the gradient through the
/// ReLU of the normalisation `affine`.
fn grad_sums(grad: &[f32], x: &[f32], mean: f32, affine: (f32, f32), relu: bool) -> [f32; 2] {
    lanes_sums2(grad, x, |g, x| {
        let g = through_relu(g, x, affine, relu);
        [g, g * (x - mean)]
    })
}
}

wide_fn! {
/// One slice of ∂L/∂x = a·grad + b·x + c0 into `out`, the gradient through
/// the ReLU of the normalisation `affine`.
fn input_grad(
    grad: &[f32],
    x: &[f32],
    coefficients: (f32, f32, f32),
    affine: (f32, f32),
    relu: bool,
    out: &mut [MaybeUninit<f32>],
) {
    let (a, b, c0) = coefficients;
    for ((o, g), v) in out.iter_mut().zip(grad).zip(x) {
        o.write(a * through_relu(*g, *v, affine, relu) + b * v + c0);
    }
}
}

/// Lanes of the partial sums below: eight independent accumulators the
/// compiler keeps in one vector register (a plain `iter().sum()` of f32 is
/// one serial chain of additions, which it may not reorder).
const LANES: usize = 8;

/// Σ f(v) over `values`.
#[inline(always)]
pub(super) fn lanes_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += f(*v);
        }
    }
    tail.iter().map(|v| f(*v)).sum::<f32>() + acc.iter().sum::<f32>()
}

/// The two sums Σ f(a, b)[0] and Σ f(a, b)[1] over `a` and `b` side by
/// side, in one pass.
#[inline(always)]
fn lanes_sums2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> [f32; 2]) -> [f32; 2] {
    let mut acc = [[0.0f32; LANES]; 2];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let mut tail = [0.0f32; 2];
    for (a, b) in ca.remainder().iter().zip(cb.remainder()) {
        let [p, q] = f(*a, *b);
        tail = [tail[0] + p, tail[1] + q];
    }
    for (ca, cb) in ca.zip(cb) {
        for (i, (a, b)) in ca.iter().zip(cb).enumerate() {
            let [p, q] = f(*a, *b);
            acc[0][i] += p;
            acc[1][i] += q;
        }
    }
    [0, 1].map(|k| tail[k] + acc[k].iter().sum::<f32>())
}
