//! 2-D max pooling on Flex: the forward pass and its gradient, which finds
//! each window's maximum again rather than storing indices, planes split
//! over the cores. NaN propagates as in PyTorch (a NaN in a window is its
//! maximum).

use burn::backend::Dispatch;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;
use rayon::prelude::*;
use std::mem::MaybeUninit;

use super::conv::padding;
use super::extension::CpuTrainOps;
use super::simd::wide_fn;
use super::{on_flex_f32, parts};

/// The sizes of one max pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeometry {
    /// Planes (samples · channels).
    pub planes: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Padding (before, after) along height, then along width.
    pub padding: [[usize; 2]; 2],
    /// Dilation along height and width.
    pub dilation: [usize; 2],
}

impl PoolGeometry {
    /// Output height and width (floor mode); `None` when the window does
    /// not fit, a size is zero or some window would hold only padding.
    pub fn output(&self) -> Option<[usize; 2]> {
        let mut out = [0; 2];
        for (axis, size) in out.iter_mut().enumerate() {
            let span = self.dilation[axis] * (self.kernel[axis].checked_sub(1)?) + 1;
            let padded = self.input[axis] + self.padding[axis][0] + self.padding[axis][1];
            let [before, after] = self.padding[axis];
            if self.stride[axis] == 0 || padded < span || before >= span || after >= span {
                return None;
            }
            *size = (padded - span) / self.stride[axis] + 1;
        }
        Some(out)
    }

    /// A 2×2 window with stride 2, no padding or dilation: the common
    /// case, with its own loops.
    fn is_2x2(&self) -> bool {
        self.kernel == [2, 2]
            && self.stride == [2, 2]
            && self.padding == [[0, 0], [0, 0]]
            && self.dilation == [1, 1]
    }

    /// Output row `oy` of `plane` into `out`, in two passes: the maxima
    /// down the window's rows into `column` (one value per input column,
    /// vectorised), then along each window's columns. The same values as
    /// searching every window, without per-element branches.
    fn separable_row(&self, plane: &[f32], oy: usize, column: &mut [f32], out: &mut [f32]) {
        let [h, w] = self.input;
        let rows = (0..self.kernel[0])
            .map(|ki| {
                (oy * self.stride[0] + ki * self.dilation[0]).wrapping_sub(self.padding[0][0])
            })
            .filter(|&iy| iy < h);
        for (i, iy) in rows.enumerate() {
            let row = &plane[iy * w..(iy + 1) * w];
            if i == 0 {
                column.copy_from_slice(row);
            } else {
                column
                    .iter_mut()
                    .zip(row)
                    .for_each(|(m, &v)| *m = nan_max(*m, v));
            }
        }
        for (ox, o) in out.iter_mut().enumerate() {
            let mut best = None;
            for kj in 0..self.kernel[1] {
                let ix =
                    (ox * self.stride[1] + kj * self.dilation[1]).wrapping_sub(self.padding[1][0]);
                if ix < w {
                    best = Some(best.map_or(column[ix], |m| nan_max(m, column[ix])));
                }
            }
            // Every window holds an input (checked by `output`).
            *o = best.unwrap_or(f32::NAN);
        }
    }

    /// The input index (in its plane) of the first value of the window of
    /// output (oy, ox) in `plane` equal to the window's maximum `m` (or NaN
    /// when `m` is: values, not bits, since the two-pass forward pass may
    /// pick a later -0.0 over a first +0.0, where Burn takes the first
    /// input). Taps are visited last to first and each match
    /// selected without a branch, so the first one stays: where the
    /// maximum lies is random, and a branch on it was mispredicted often
    /// enough to make this search a twentieth of a ResNet-18 training step.
    #[inline]
    fn first_max(&self, plane: &[f32], oy: usize, ox: usize, m: f32) -> Option<usize> {
        let [h, w] = self.input;
        let mut at = usize::MAX;
        for ki in (0..self.kernel[0]).rev() {
            let iy = (oy * self.stride[0] + ki * self.dilation[0]).wrapping_sub(self.padding[0][0]);
            if iy >= h {
                continue;
            }
            for kj in (0..self.kernel[1]).rev() {
                let ix =
                    (ox * self.stride[1] + kj * self.dilation[1]).wrapping_sub(self.padding[1][0]);
                if ix < w {
                    let i = iy * w + ix;
                    let v = plane[i];
                    let hit = v == m || (v.is_nan() && m.is_nan());
                    at = std::hint::select_unpredictable(hit, i, at);
                }
            }
        }
        (at != usize::MAX).then_some(at)
    }
}

/// `pool.forward(x)`, on the CPU fast path for f32 tensors on Flex in floor
/// mode (ceil mode, other devices and dtypes run Burn's op).
/// Differentiable: under autodiff its backward step is this module's.
pub fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let Some(geometry) = geometry(pool, x.dims()) else {
        return pool.forward(x);
    };
    if !on_flex_f32(&x) {
        return pool.forward(x);
    }
    Tensor::from_dispatch(<Dispatch as CpuTrainOps>::cpu_max_pool2d(
        x.into_dispatch(),
        geometry,
    ))
}

/// The geometry of `pool` on an input of `[batch, channels, h, w]`, when
/// the fast path can run it (floor mode, some output).
fn geometry(pool: &MaxPool2d, [batch, channels, h, w]: [usize; 4]) -> Option<PoolGeometry> {
    let geometry = PoolGeometry {
        planes: batch * channels,
        input: [h, w],
        kernel: pool.kernel_size,
        stride: pool.stride,
        padding: padding(&pool.padding, [h, w], pool.kernel_size, pool.stride),
        dilation: pool.dilation,
    };
    let runs = !pool.ceil_mode && geometry.planes > 0 && geometry.output().is_some();
    runs.then_some(geometry)
}

/// Runs `f(plane index, output plane)` over `out`'s planes of `size`
/// values, runs of planes split over the cores.
fn for_each_plane<T: Send>(
    out: &mut [T],
    size: usize,
    work: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    let planes = out.len() / size.max(1);
    let run = planes.div_ceil(parts(planes, work)).max(1);
    out.par_chunks_mut(run * size.max(1))
        .enumerate()
        .for_each(|(part, out)| {
            for (i, plane) in out.chunks_mut(size.max(1)).enumerate() {
                f(part * run + i, plane);
            }
        });
}

/// `a` when `take`, else `b`, without a branch (random data makes
/// branches on comparisons unpredictable).
#[inline(always)]
fn pick(take: bool, a: f32, b: f32) -> f32 {
    let mask = (take as u32).wrapping_neg();
    f32::from_bits((a.to_bits() & mask) | (b.to_bits() & !mask))
}

/// The larger of `a` and `b`, NaN if either is.
#[inline(always)]
fn nan_max(a: f32, b: f32) -> f32 {
    pick(b > a || b.is_nan(), b, a)
}

/// Whether `v` is the window maximum `m` that the forward pass picked: the
/// forward pass copies one input's bits, so comparing bits finds it (NaN
/// included) with integer compares the compiler vectorises.
#[inline(always)]
fn is_max(v: f32, m: f32) -> bool {
    v.to_bits() == m.to_bits()
}

/// The forward pass: `[planes, oh, ow]` values.
pub(super) fn forward(g: &PoolGeometry, x: &[f32]) -> Vec<f32> {
    let [oh, ow] = g.output().expect("checked by the wrapper");
    let plane_in = g.input[0] * g.input[1];
    let mut out = vec![0.0f32; g.planes * oh * ow];
    let (w, two_by_two) = (g.input[1], g.is_2x2());
    for_each_plane(&mut out, oh * ow, plane_in, |p, out| {
        let plane = &x[p * plane_in..(p + 1) * plane_in];
        let mut column = if two_by_two { Vec::new() } else { vec![0.0; w] };
        for (oy, out) in out.chunks_exact_mut(ow).enumerate() {
            if two_by_two {
                let top = &plane[2 * oy * w..][..2 * ow];
                let bottom = &plane[(2 * oy + 1) * w..][..2 * ow];
                window_row_maxima(top, bottom, out);
            } else {
                g.separable_row(plane, oy, &mut column, out);
            }
        }
    });
    out
}

wide_fn! {
/// One row of 2×2 windows: their two input rows `top` and `bottom`
/// (`2 * out.len()` values each), their maxima into `out`.
fn window_row_maxima(top: &[f32], bottom: &[f32], out: &mut [f32]) {
    let windows = top.chunks_exact(2).zip(bottom.chunks_exact(2));
    for (o, (t, b)) in out.iter_mut().zip(windows) {
        *o = nan_max(nan_max(t[0], t[1]), nan_max(b[0], b[1]));
    }
}
}

/// `∂L/∂x` `[planes, h, w]`: each output's gradient added at its window's
/// maximum (the first one: row by row, left to right), found again from
/// the input `x` and the forward output `out` (NaN included).
pub(super) fn x_grad(g: &PoolGeometry, x: &[f32], out: &[f32], grad: &[f32]) -> Vec<f32> {
    if g.is_2x2() {
        return x_grad_2x2(g, x, out, grad);
    }
    let [oh, ow] = g.output().expect("checked by the wrapper");
    let plane_in = g.input[0] * g.input[1];
    let mut dx = vec![0.0f32; g.planes * plane_in];
    for_each_plane(&mut dx, plane_in, plane_in, |p, dx| {
        let plane = &x[p * plane_in..(p + 1) * plane_in];
        let grad = &grad[p * oh * ow..(p + 1) * oh * ow];
        let out = &out[p * oh * ow..(p + 1) * oh * ow];
        for oy in 0..oh {
            for ox in 0..ow {
                let at = oy * ow + ox;
                // The forward pass copied one of the window's inputs.
                if let Some(i) = g.first_max(plane, oy, ox, out[at]) {
                    dx[i] += grad[at];
                }
            }
        }
    });
    dx
}

/// [`x_grad`] of 2×2 windows with stride 2: they do not overlap, so every
/// input is written once, by a window or as the zero of a row or column
/// past the last window, and the buffer is not zeroed first (one pass
/// over memory fewer).
fn x_grad_2x2(g: &PoolGeometry, x: &[f32], out: &[f32], grad: &[f32]) -> Vec<f32> {
    let [oh, ow] = g.output().expect("checked by the wrapper");
    let [h, w] = g.input;
    let (plane_in, len) = (h * w, g.planes * h * w);
    let mut dx = Vec::with_capacity(len);
    for_each_plane(
        &mut dx.spare_capacity_mut()[..len],
        plane_in,
        plane_in,
        |p, dx| {
            let plane = &x[p * plane_in..(p + 1) * plane_in];
            let (out, grad) = (
                &out[p * oh * ow..][..oh * ow],
                &grad[p * oh * ow..][..oh * ow],
            );
            for oy in 0..oh {
                let (top, bottom) = dx[2 * oy * w..(2 * oy + 2) * w].split_at_mut(w);
                let inputs = [
                    &plane[2 * oy * w..][..2 * ow],
                    &plane[(2 * oy + 1) * w..][..2 * ow],
                ];
                let (top, top_rest) = top.split_at_mut(2 * ow);
                let (bottom, bottom_rest) = bottom.split_at_mut(2 * ow);
                window_row_grads(
                    inputs,
                    &out[oy * ow..][..ow],
                    &grad[oy * ow..][..ow],
                    [top, bottom],
                );
                top_rest.fill(MaybeUninit::new(0.0));
                bottom_rest.fill(MaybeUninit::new(0.0));
            }
            dx[2 * oh * w..].fill(MaybeUninit::new(0.0));
        },
    );
    // SAFETY: the planes cover all `len` elements and each was written above.
    unsafe { dx.set_len(len) };
    dx
}

/// One row of 2×2 windows: `x` holds their two input rows (`2 * m.len()`
/// values each), `m` their maxima, `grad` their gradients; writes each
/// gradient at its window's first maximum and zero elsewhere into `dx`.
fn window_row_grads(x: [&[f32]; 2], m: &[f32], grad: &[f32], dx: [&mut [MaybeUninit<f32>]; 2]) {
    let windows = m.len();
    assert!(grad.len() == windows && x.iter().all(|r| r.len() == 2 * windows));
    assert!(dx.iter().all(|r| r.len() == 2 * windows));
    let [top, bottom] = dx;
    #[cfg(target_arch = "x86_64")]
    let done = {
        // SAFETY: the lengths were checked above.
        unsafe { sse2::window_row_grads(x, m, grad, [&mut *top, &mut *bottom]) }
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for i in done..windows {
        let (t, b) = (&x[0][2 * i..2 * i + 2], &x[1][2 * i..2 * i + 2]);
        let (m, g) = (m[i], grad[i]);
        let e = [is_max(t[0], m), is_max(t[1], m), is_max(b[0], m)];
        let first = [e[0], e[1] & !e[0], e[2] & !(e[0] | e[1])];
        top[2 * i].write(pick(first[0], g, 0.0));
        top[2 * i + 1].write(pick(first[1], g, 0.0));
        bottom[2 * i].write(pick(first[2], g, 0.0));
        bottom[2 * i + 1].write(pick(!(e[0] | e[1] | e[2]), g, 0.0));
    }
}

/// SSE2 (part of every x86-64 CPU) forms of the 2×2 loops: the compiler
/// does not vectorise a window's first-maximum choice on its own, and
/// the scalar loop was a tenth of an AV-MNIST training epoch.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// [`super::window_row_grads`] four windows at a time; returns how
    /// many windows it wrote (the rest are the caller's).
    ///
    /// # Safety
    /// `x[r]` and `dx[r]` hold `2 * m.len()` values and `grad` `m.len()`.
    pub(super) unsafe fn window_row_grads(
        x: [&[f32]; 2],
        m: &[f32],
        grad: &[f32],
        dx: [&mut [MaybeUninit<f32>]; 2],
    ) -> usize {
        let done = m.len() / 4 * 4;
        let [top, bottom] = dx;
        // SAFETY (whole block): SSE2 is always present on x86-64; every
        // access reads or writes within the first `2 * done` values of a
        // row, `done` of `m` and `grad`.
        unsafe {
            // Lanes 1 and 3: a window's right-hand input.
            let right = _mm_set_epi32(-1, 0, -1, 0);
            for i in (0..done).step_by(4) {
                let m4 = _mm_castps_si128(_mm_loadu_ps(m.as_ptr().add(i)));
                let g4 = _mm_loadu_ps(grad.as_ptr().add(i));
                // Two windows per register: each maximum and gradient twice.
                let halves = [
                    (_mm_unpacklo_epi32(m4, m4), _mm_unpacklo_ps(g4, g4)),
                    (_mm_unpackhi_epi32(m4, m4), _mm_unpackhi_ps(g4, g4)),
                ];
                for (half, (m2, g2)) in halves.into_iter().enumerate() {
                    let at = 2 * i + 4 * half;
                    let t = _mm_castps_si128(_mm_loadu_ps(x[0].as_ptr().add(at)));
                    let b = _mm_castps_si128(_mm_loadu_ps(x[1].as_ptr().add(at)));
                    // Bits equal to the maximum (see `is_max`), and the
                    // same answer for the other input of the row pair.
                    let is_top = _mm_cmpeq_epi32(t, m2);
                    let other_top = _mm_shuffle_epi32::<0b10_11_00_01>(is_top);
                    let is_bottom = _mm_cmpeq_epi32(b, m2);
                    let other_bottom = _mm_shuffle_epi32::<0b10_11_00_01>(is_bottom);
                    // Top row: the left input when it is the maximum, the
                    // right one when it is and the left is not.
                    let first_top = _mm_andnot_si128(_mm_and_si128(other_top, right), is_top);
                    // Bottom row, when no top input was: the left input
                    // when it is the maximum, else the right one.
                    let bottom_choice = _mm_or_si128(
                        _mm_andnot_si128(right, is_bottom),
                        _mm_andnot_si128(other_bottom, right),
                    );
                    let any_top = _mm_or_si128(is_top, other_top);
                    let first_bottom = _mm_andnot_si128(any_top, bottom_choice);
                    let write = |row: &mut [MaybeUninit<f32>], mask: __m128i| {
                        let value = _mm_and_ps(g2, _mm_castsi128_ps(mask));
                        _mm_storeu_ps(row.as_mut_ptr().add(at).cast::<f32>(), value);
                    };
                    write(top, first_top);
                    write(bottom, first_bottom);
                }
            }
        }
        done
    }
}
