//! 2-D convolution on Flex by im2col + gemm, one sample per task: the
//! forward pass, the input gradient (gemm then col2im, the adjoint of
//! im2col) and the weight gradient (gemm against the same columns), with no
//! transposed copies of activations.

use std::mem::MaybeUninit;

use burn::backend::Dispatch;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use rayon::prelude::*;

use super::extension::CpuTrainOps;
use super::{on_flex_f32, parts};

/// The sizes of one convolution: every dimension the forward and backward
/// passes need, so the gradient ops know the shapes they produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Samples in the batch.
    pub batch: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Padding (before, after) along height, then along width.
    pub padding: [[usize; 2]; 2],
    /// Dilation along height and width.
    pub dilation: [usize; 2],
}

impl ConvGeometry {
    /// Output height and width; `None` when the kernel does not fit the
    /// padded input or a size is zero.
    pub fn output(&self) -> Option<[usize; 2]> {
        let mut out = [0; 2];
        for (axis, size) in out.iter_mut().enumerate() {
            let padded = self.input[axis] + self.padding[axis][0] + self.padding[axis][1];
            let span = self.dilation[axis] * (self.kernel[axis].checked_sub(1)?) + 1;
            if self.stride[axis] == 0 || padded < span {
                return None;
            }
            *size = (padded - span) / self.stride[axis] + 1;
        }
        Some(out)
    }

    /// Rows of the column matrix: in_channels · kh · kw.
    fn patch(&self) -> usize {
        self.in_channels * self.kernel[0] * self.kernel[1]
    }

    /// Output positions per channel (oh · ow).
    fn positions(&self) -> usize {
        self.output().map_or(0, |[h, w]| h * w)
    }

    /// A 1×1 kernel with stride 1 and no padding: the columns are the input.
    fn pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [[0, 0], [0, 0]]
    }

    /// Scratch space for one sample's column matrix (none when pointwise).
    fn column_buffer(&self) -> Vec<f32> {
        if self.pointwise() {
            Vec::new()
        } else {
            vec![0.0; self.patch() * self.positions()]
        }
    }

    /// The column matrix of one sample `x`: `x` itself when pointwise, else
    /// im2col into `buffer`.
    fn columns<'a>(&self, x: &'a [f32], buffer: &'a mut [f32]) -> &'a [f32] {
        if self.pointwise() {
            return x;
        }
        im2col(
            self,
            self.output().expect("checked by the wrapper"),
            x,
            buffer,
        );
        buffer
    }

    /// Sample `b` of `[batch, out, oh, ow]` values as an `out × positions`
    /// matrix.
    fn sample_rows<'a>(&self, values: &'a [f32], b: usize) -> Operand<'a> {
        let (m, n) = (self.out_channels, self.positions());
        Operand {
            data: &values[b * m * n..(b + 1) * m * n],
            row: n,
            col: 1,
        }
    }
}

/// `conv.forward(x)`, on the CPU fast path for f32 tensors on Flex with one
/// group (grouped convolutions, other devices and dtypes run Burn's op).
/// Differentiable: under autodiff its backward step is this module's.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let weight = conv.weight.val();
    let bias = conv.bias.as_ref().map(|b| b.val());
    let Some(geometry) = geometry(conv, &x, &weight) else {
        return conv.forward(x);
    };
    let fast = on_flex_f32(&x) && on_flex_f32(&weight) && bias.as_ref().is_none_or(on_flex_f32);
    if !fast {
        return conv.forward(x);
    }
    let bias = bias.unwrap_or_else(|| Tensor::zeros([geometry.out_channels], &weight.device()));
    Tensor::from_dispatch(<Dispatch as CpuTrainOps>::cpu_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        geometry,
    ))
}

/// The geometry of `conv` on `x`, when the fast path can run it.
fn geometry(conv: &Conv2d, x: &Tensor<4>, weight: &Tensor<4>) -> Option<ConvGeometry> {
    let [batch, in_channels, h, w] = x.dims();
    let [out_channels, weight_in, kh, kw] = weight.dims();
    if conv.groups != 1
        || weight_in != in_channels
        || [batch, in_channels, out_channels].contains(&0)
    {
        return None;
    }
    let [[top, bottom], [left, right]] =
        padding(&conv.padding, [h, w], conv.kernel_size, conv.stride);
    let geometry = ConvGeometry {
        batch,
        in_channels,
        out_channels,
        input: [h, w],
        kernel: [kh, kw],
        stride: conv.stride,
        padding: [[top, bottom], [left, right]],
        dilation: conv.dilation,
    };
    geometry.output().map(|_| geometry)
}

/// The (before, after) padding along each axis, as Burn's layer computes it
/// (its helper is private): "same" pads so the output is ⌈input / stride⌉,
/// the odd cell after.
pub(super) fn padding(
    config: &PaddingConfig2d,
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> [[usize; 2]; 2] {
    let same = |axis: usize| {
        let out = input[axis].div_ceil(stride[axis].max(1));
        let total = if out > 0 {
            ((out - 1) * stride[axis] + kernel[axis]).saturating_sub(input[axis])
        } else {
            0
        };
        [total / 2, total - total / 2]
    };
    match config {
        PaddingConfig2d::Valid => [[0, 0], [0, 0]],
        PaddingConfig2d::Same => [same(0), same(1)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [[*top, *bottom], [*left, *right]],
    }
}

/// A matrix operand for [`matmul`]: element (r, c) at `r·row + c·col`.
#[derive(Clone, Copy)]
struct Operand<'a> {
    data: &'a [f32],
    row: usize,
    col: usize,
}

/// `dst` (`m × n`, row-major) = `lhs · rhs` (`m × k`, `k × n`), added to
/// `dst`'s values when `accumulate`.
fn matmul(dst: &mut [f32], [m, n, k]: [usize; 3], lhs: Operand, rhs: Operand, accumulate: bool) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    assert!(dst.len() >= m * n);
    // SAFETY: `dst` holds the m × n elements gemm writes (checked above).
    unsafe { product(dst.as_mut_ptr(), [m, n, k], lhs, rhs, accumulate) }
}

/// `dst` (`m × n`, row-major, not yet written) = `lhs · rhs`: gemm writes
/// every element without reading any, so a fresh buffer needs no zeroing
/// first (a pass over memory that is not in cache yet). Returns `dst` as
/// written values.
fn write_product<'a>(
    dst: &'a mut [MaybeUninit<f32>],
    [m, n, k]: [usize; 3],
    lhs: Operand,
    rhs: Operand,
) -> &'a mut [f32] {
    assert!(dst.len() == m * n);
    if k == 0 {
        dst.fill(MaybeUninit::new(0.0));
    } else if m > 0 && n > 0 {
        // SAFETY: `dst` holds exactly the m × n elements gemm writes.
        unsafe { product(dst.as_mut_ptr().cast(), [m, n, k], lhs, rhs, false) }
    }
    // SAFETY: every element was written above (gemm writes all of dst when
    // it does not read it).
    unsafe { &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// gemm of `lhs · rhs` into the `m × n` row-major matrix at `dst`.
///
/// # Safety
/// `dst` must be valid for writes (and reads when `accumulate`) of `m · n`
/// elements; `m`, `n` and `k` are positive.
unsafe fn product(
    dst: *mut f32,
    [m, n, k]: [usize; 3],
    lhs: Operand,
    rhs: Operand,
    accumulate: bool,
) {
    let last = |op: Operand, rows: usize, cols: usize| (rows - 1) * op.row + (cols - 1) * op.col;
    assert!(lhs.data.len() > last(lhs, m, k));
    assert!(rhs.data.len() > last(rhs, k, n));
    // SAFETY: the assertions above keep every index gemm forms in the
    // operands; the caller vouches for `dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col as isize,
            lhs.row as isize,
            rhs.data.as_ptr(),
            rhs.col as isize,
            rhs.row as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// For kernel offset `offset` (tap · dilation − padding) along an axis of
/// `size` inputs: the output positions `lo..hi` whose input index
/// `o · stride + offset` falls inside the input.
fn valid_range(offset: isize, stride: usize, size: usize, outputs: usize) -> (usize, usize) {
    let (stride, size) = (stride as isize, size as isize);
    let lo = if offset >= 0 {
        0
    } else {
        (-offset + stride - 1) / stride
    };
    let hi = if offset >= size {
        0
    } else {
        (size - 1 - offset) / stride + 1
    };
    let hi = hi.clamp(0, outputs as isize) as usize;
    (lo.clamp(0, hi as isize) as usize, hi)
}

/// The walk shared by im2col and col2im: for every column-matrix row (input
/// channel, kernel tap) and output row, the input row it reads and the
/// valid output columns, handed to `visit(column offset, input offset,
/// lo, hi, input column of lo)`.
fn for_each_patch_row(
    g: &ConvGeometry,
    [oh, ow]: [usize; 2],
    mut visit: impl FnMut(usize, Option<usize>, usize, usize, usize),
) {
    let [h, w] = g.input;
    let n = oh * ow;
    for ci in 0..g.in_channels {
        for ki in 0..g.kernel[0] {
            for kj in 0..g.kernel[1] {
                let row = ((ci * g.kernel[0] + ki) * g.kernel[1] + kj) * n;
                let x_offset = (kj * g.dilation[1]) as isize - g.padding[1][0] as isize;
                let (lo, hi) = valid_range(x_offset, g.stride[1], w, ow);
                let first_x = (lo as isize * g.stride[1] as isize + x_offset).max(0) as usize;
                for oy in 0..oh {
                    let iy =
                        (oy * g.stride[0] + ki * g.dilation[0]) as isize - g.padding[0][0] as isize;
                    let input_row = (0..h as isize)
                        .contains(&iy)
                        .then(|| (ci * h + iy as usize) * w);
                    visit(row + oy * ow, input_row, lo, hi, first_x);
                }
            }
        }
    }
}

/// The column matrix `[patch, oh·ow]` of one sample `x` `[in, h, w]`.
fn im2col(g: &ConvGeometry, out: [usize; 2], x: &[f32], cols: &mut [f32]) {
    let ow = out[1];
    let stride = g.stride[1];
    for_each_patch_row(g, out, |at, input_row, lo, hi, first_x| {
        let dst = &mut cols[at..at + ow];
        let Some(input_row) = input_row else {
            dst.fill(0.0);
            return;
        };
        dst[..lo].fill(0.0);
        dst[hi..].fill(0.0);
        let src = &x[input_row + first_x..];
        if stride == 1 {
            dst[lo..hi].copy_from_slice(&src[..hi - lo]);
        } else {
            for (i, d) in dst[lo..hi].iter_mut().enumerate() {
                *d = src[i * stride];
            }
        }
    });
}

/// The adjoint of [`im2col`]: adds the column matrix `cols` into the
/// sample's input gradient `dx` `[in, h, w]`.
fn col2im(g: &ConvGeometry, out: [usize; 2], cols: &[f32], dx: &mut [f32]) {
    let stride = g.stride[1];
    for_each_patch_row(g, out, |at, input_row, lo, hi, first_x| {
        let Some(input_row) = input_row else {
            return;
        };
        let src = &cols[at + lo..at + hi];
        let dst = &mut dx[input_row + first_x..];
        if stride == 1 {
            for (d, s) in dst.iter_mut().zip(src) {
                *d += s;
            }
        } else {
            for (i, s) in src.iter().enumerate() {
                dst[i * stride] += s;
            }
        }
    });
}

/// Splits `batch` samples into contiguous runs, one per task.
fn sample_runs(g: &ConvGeometry) -> usize {
    let per_part = parts(g.batch, g.patch() * g.positions() * g.out_channels.max(1));
    g.batch.div_ceil(per_part)
}

/// The forward pass: `[batch, out, oh, ow]` values.
pub(super) fn forward(g: &ConvGeometry, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let (k, n, m) = (g.patch(), g.positions(), g.out_channels);
    let sample_in = g.in_channels * g.input[0] * g.input[1];
    let len = g.batch * m * n;
    let mut out = Vec::with_capacity(len);
    let run = sample_runs(g);
    let w = Operand {
        data: weight,
        row: k,
        col: 1,
    };
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(run * m * n)
        .enumerate()
        .for_each(|(part, out)| {
            let mut buffer = g.column_buffer();
            for (i, out) in out.chunks_mut(m * n).enumerate() {
                let b = part * run + i;
                let cols = g.columns(&x[b * sample_in..(b + 1) * sample_in], &mut buffer);
                let c = Operand {
                    data: cols,
                    row: n,
                    col: 1,
                };
                // The bias added while the sample's output is in cache.
                let out = write_product(out, [m, n, k], w, c);
                for (row, bias) in out.chunks_mut(n).zip(bias) {
                    row.iter_mut().for_each(|v| *v += bias);
                }
            }
        });
    // SAFETY: the chunks cover all `len` elements and `write_product`
    // wrote each of them.
    unsafe { out.set_len(len) };
    out
}

/// `∂L/∂x` `[batch, in, h, w]` from `∂L/∂out` `grad`.
pub(super) fn x_grad(g: &ConvGeometry, weight: &[f32], grad: &[f32]) -> Vec<f32> {
    let out_size = g.output().expect("checked by the wrapper");
    let (k, n, m) = (g.patch(), g.positions(), g.out_channels);
    let sample_in = g.in_channels * g.input[0] * g.input[1];
    let mut dx = vec![0.0f32; g.batch * sample_in];
    let run = sample_runs(g);
    // Wᵀ: element (patch row r, channel c) at c·k + r.
    let wt = Operand {
        data: weight,
        row: 1,
        col: k,
    };
    dx.par_chunks_mut(run * sample_in)
        .enumerate()
        .for_each(|(part, dx)| {
            let mut cols = g.column_buffer();
            for (i, dx) in dx.chunks_mut(sample_in).enumerate() {
                let dy = g.sample_rows(grad, part * run + i);
                if g.pointwise() {
                    matmul(dx, [k, n, m], wt, dy, false);
                } else {
                    matmul(&mut cols, [k, n, m], wt, dy, false);
                    col2im(g, out_size, &cols, dx);
                }
            }
        });
    dx
}

/// `∂L/∂weight` `[out, in, kh, kw]` from `∂L/∂out` `grad`: each task sums
/// its samples' products, then the tasks' sums are added.
pub(super) fn weight_grad(g: &ConvGeometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    let (k, n, m) = (g.patch(), g.positions(), g.out_channels);
    let sample_in = g.in_channels * g.input[0] * g.input[1];
    let run = sample_runs(g);
    let partial = |part: usize| {
        let mut dw = vec![0.0f32; m * k];
        let mut buffer = g.column_buffer();
        for b in part * run..((part + 1) * run).min(g.batch) {
            let cols = g.columns(&x[b * sample_in..(b + 1) * sample_in], &mut buffer);
            // colsᵀ: element (position p, patch row r) at r·n + p.
            let ct = Operand {
                data: cols,
                row: 1,
                col: n,
            };
            matmul(
                &mut dw,
                [m, k, n],
                g.sample_rows(grad, b),
                ct,
                b > part * run,
            );
        }
        dw
    };
    // Collected in order and added in order: the same sum in every run
    // (a parallel reduction's order depends on scheduling).
    let partials: Vec<Vec<f32>> = (0..g.batch.div_ceil(run))
        .into_par_iter()
        .map(partial)
        .collect();
    let mut partials = partials.into_iter();
    let mut dw = partials.next().unwrap_or_else(|| vec![0.0; m * k]);
    for part in partials {
        dw.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
    }
    dw
}

/// The sum over every dimension but the second of `x` `[batch, channels,
/// rest]` → `[channels]`, accumulated in f64.
pub(super) fn channel_sum(x: &[f32], batch: usize, channels: usize) -> Vec<f32> {
    let rest = x.len().checked_div(batch * channels).unwrap_or(0);
    let sum = |c: usize| {
        (0..batch)
            .map(|b| {
                let at = (b * channels + c) * rest;
                super::norm::lanes_sum(&x[at..at + rest], |v| v) as f64
            })
            .sum::<f64>() as f32
    };
    if parts(channels, batch * rest) == 1 {
        (0..channels).map(sum).collect()
    } else {
        (0..channels).into_par_iter().map(sum).collect()
    }
}
