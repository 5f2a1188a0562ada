//! 2-D max pooling on Flex: the forward pass and its gradient, which finds
//! each window's maximum again rather than storing indices, planes split
//! over the cores. NaN propagates as in PyTorch (a NaN in a window is its
//! maximum).

use burn::backend::Dispatch;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;
use rayon::prelude::*;

use super::conv::padding;
use super::extension::CpuTrainOps;
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
    /// taking [`argmax`](Self::argmax) of every window, without its
    /// per-element branches.
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

    /// The input index (in its plane) of the maximum of the window of
    /// output (oy, ox) in `plane`: the first one, or a NaN.
    #[inline]
    fn argmax(&self, plane: &[f32], oy: usize, ox: usize) -> usize {
        let [h, w] = self.input;
        let (mut best, mut at) = (f32::NEG_INFINITY, usize::MAX);
        for ki in 0..self.kernel[0] {
            let iy = (oy * self.stride[0] + ki * self.dilation[0]).wrapping_sub(self.padding[0][0]);
            if iy >= h {
                continue;
            }
            for kj in 0..self.kernel[1] {
                let ix =
                    (ox * self.stride[1] + kj * self.dilation[1]).wrapping_sub(self.padding[1][0]);
                if ix >= w {
                    continue;
                }
                let v = plane[iy * w + ix];
                if at == usize::MAX || replaces(v, best) {
                    (best, at) = (v, iy * w + ix);
                }
            }
        }
        at
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
fn for_each_plane(
    out: &mut [f32],
    size: usize,
    work: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
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

/// Whether `v` replaces `best` as a window's maximum: larger, or the
/// window's first NaN.
#[inline(always)]
fn replaces(v: f32, best: f32) -> bool {
    v > best || (v.is_nan() && !best.is_nan())
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
                let windows = top.chunks_exact(2).zip(bottom.chunks_exact(2));
                for (o, (t, b)) in out.iter_mut().zip(windows) {
                    *o = nan_max(nan_max(t[0], t[1]), nan_max(b[0], b[1]));
                }
            } else {
                g.separable_row(plane, oy, &mut column, out);
            }
        }
    });
    out
}

/// `∂L/∂x` `[planes, h, w]`: each output's gradient added at its window's
/// maximum (the first one: row by row, left to right), found again from
/// the input `x` and the forward output `out`.
pub(super) fn x_grad(g: &PoolGeometry, x: &[f32], out: &[f32], grad: &[f32]) -> Vec<f32> {
    let [oh, ow] = g.output().expect("checked by the wrapper");
    let plane_in = g.input[0] * g.input[1];
    let mut dx = vec![0.0f32; g.planes * plane_in];
    let (w, two_by_two) = (g.input[1], g.is_2x2());
    for_each_plane(&mut dx, plane_in, plane_in, |p, dx| {
        let plane = &x[p * plane_in..(p + 1) * plane_in];
        let grad = &grad[p * oh * ow..(p + 1) * oh * ow];
        let out = &out[p * oh * ow..(p + 1) * oh * ow];
        for oy in 0..oh {
            let (m, g_out) = (&out[oy * ow..][..ow], &grad[oy * ow..][..ow]);
            if two_by_two {
                // Windows do not overlap: each input is written once.
                let (top, bottom) = dx[2 * oy * w..(2 * oy + 2) * w].split_at_mut(w);
                let x_top = &plane[2 * oy * w..][..2 * ow];
                let x_bottom = &plane[(2 * oy + 1) * w..][..2 * ow];
                let rows = top.chunks_exact_mut(2).zip(bottom.chunks_exact_mut(2));
                let inputs = x_top.chunks_exact(2).zip(x_bottom.chunks_exact(2));
                for (((dt, db), (xt, xb)), (&m, &g)) in rows.zip(inputs).zip(m.iter().zip(g_out)) {
                    let e = [is_max(xt[0], m), is_max(xt[1], m), is_max(xb[0], m)];
                    let first = [e[0], e[1] & !e[0], e[2] & !(e[0] | e[1])];
                    dt[0] = pick(first[0], g, 0.0);
                    dt[1] = pick(first[1], g, 0.0);
                    db[0] = pick(first[2], g, 0.0);
                    db[1] = pick(!(e[0] | e[1] | e[2]), g, 0.0);
                }
            } else {
                for ox in 0..ow {
                    dx[g.argmax(plane, oy, ox)] += g_out[ox];
                }
            }
        }
    });
    dx
}
