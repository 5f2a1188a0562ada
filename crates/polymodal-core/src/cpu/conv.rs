//! 2-D convolution on Flex by im2col + gemm, one sample per task: the
//! forward pass, the input gradient (gemm then col2im, the adjoint of
//! im2col) and the weight gradient (gemm against the same columns), with no
//! transposed copies of activations.

use std::mem::MaybeUninit;
use std::ops::Range;

use burn::backend::Dispatch;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::prelude::*;
use rayon::prelude::*;

use super::extension::CpuTrainOps;
use super::simd::wide_fn;
use super::{on_flex_f32, parts, winograd};

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

    /// Output rows per block of the forward pass and the input gradient: a
    /// block's column matrix (patch · rows · ow values) stays within
    /// [`COLUMN_BLOCK`] values, so gemm reads it from cache rather than
    /// from memory, where a whole sample's columns (up to 7 MB in
    /// ResNet-18) went out and came back; but a block has at least
    /// [`BLOCK_COLUMNS`] columns, as narrower products run slower.
    /// Pointwise convolutions read the input itself: one block.
    pub(super) fn block_rows(&self) -> usize {
        let [oh, ow] = self.output().unwrap_or([1, 1]);
        if self.pointwise() {
            return oh.max(1);
        }
        let cached = COLUMN_BLOCK / (self.patch() * ow).max(1);
        cached
            .max(BLOCK_COLUMNS.div_ceil(ow.max(1)))
            .clamp(1, oh.max(1))
    }

    /// Whole samples per product: one when a sample has
    /// [`GROUP_COLUMNS`] output positions or more, else enough samples (at
    /// most `available`) side by side to reach it. A 7×7 map is 49
    /// positions: gemm's tiles of 16 positions leave a quarter of the last
    /// one idle, and each product streams every weight (9.4 MB in
    /// ResNet-18's last stage) for those few columns.
    pub(super) fn group(&self, available: usize) -> usize {
        let n = self.positions().max(1);
        if n >= GROUP_COLUMNS {
            1
        } else {
            GROUP_COLUMNS.div_ceil(n).clamp(1, available.max(1))
        }
    }

    /// The tiles of samples `samples`: groups of [`group`](Self::group)
    /// whole samples, or one sample at a time in blocks of `rows` output
    /// rows (the last may be shorter).
    fn tiles(&self, samples: Range<usize>, rows: usize) -> Vec<Tile> {
        let [oh, ow] = self.output().unwrap_or([0, 0]);
        let group = self.group(samples.len());
        if group > 1 {
            let end = samples.end;
            return samples
                .step_by(group)
                .map(|b| Tile {
                    samples: b..(b + group).min(end),
                    rows: 0..oh,
                    ow,
                })
                .collect();
        }
        let step = rows.max(1);
        samples
            .flat_map(|b| {
                (0..oh).step_by(step).map(move |first| Tile {
                    samples: b..b + 1,
                    rows: first..(first + step).min(oh),
                    ow,
                })
            })
            .collect()
    }

    /// Values of one sample's input `[in, h, w]`.
    fn sample_input(&self) -> usize {
        self.in_channels * self.input[0] * self.input[1]
    }

    /// The column matrix `[patch, width]` of `tile` from the input `x`
    /// `[batch, in, h, w]`: a pointwise convolution's one sample is its
    /// input itself; otherwise each sample's im2col goes side by side into
    /// `buffer`.
    fn tile_columns<'a>(&self, x: &'a [f32], tile: &Tile, buffer: &'a mut [f32]) -> &'a [f32] {
        let sample_in = self.sample_input();
        if self.pointwise() && tile.samples.len() == 1 {
            let b = tile.samples.start;
            return &x[b * sample_in..(b + 1) * sample_in];
        }
        let width = tile.width();
        let cols = &mut buffer[..self.patch() * width];
        for (s, b) in tile.samples.clone().enumerate() {
            let x = &x[b * sample_in..(b + 1) * sample_in];
            let at = s * tile.per_sample();
            im2col(self, tile.ow, tile.rows.clone(), x, &mut cols[at..], width);
        }
        cols
    }

    /// The tile's rows of `[batch, out, oh, ow]` values as an `out × width`
    /// operand: read in place for one sample, else the samples' rows
    /// gathered side by side into `buffer`.
    fn tile_grad<'a>(&self, grad: &'a [f32], tile: &Tile, buffer: &'a mut [f32]) -> Operand<'a> {
        let (m, n) = (self.out_channels, self.positions());
        if tile.samples.len() == 1 {
            let b = tile.samples.start;
            return Operand {
                data: &grad[b * m * n + tile.positions().start..(b + 1) * m * n],
                row: n,
                col: 1,
            };
        }
        let width = tile.width();
        let gathered = &mut buffer[..m * width];
        for (s, b) in tile.samples.clone().enumerate() {
            for c in 0..m {
                let src = &grad[(b * m + c) * n..][..n];
                gathered[c * width + s * n..][..n].copy_from_slice(src);
            }
        }
        Operand {
            data: gathered,
            row: width,
            col: 1,
        }
    }
}

/// A piece of a convolution's work, the columns of one product: output
/// rows `rows` of each sample of `samples` (several whole samples, or a
/// block of rows of one), side by side.
struct Tile {
    samples: Range<usize>,
    rows: Range<usize>,
    /// Output width.
    ow: usize,
}

impl Tile {
    /// Columns per sample.
    fn per_sample(&self) -> usize {
        self.rows.len() * self.ow
    }

    /// Columns in all.
    fn width(&self) -> usize {
        self.samples.len() * self.per_sample()
    }

    /// A sample's output positions in the tile.
    fn positions(&self) -> Range<usize> {
        self.rows.start * self.ow..self.rows.end * self.ow
    }
}

/// A task's scratch space: the column matrix of its widest tile (none when
/// a pointwise convolution reads its input in place), and for tiles of
/// several samples an `[out, width]` matrix (their product, or their
/// output gradient gathered). Allocated per call: a buffer kept per thread
/// between calls measured slower in a ResNet-18 training step (860 against
/// 825 ms, medians of 10 interleaved steps), the allocator's recently freed
/// memory being the warmer.
struct Scratch {
    buffer: Vec<f32>,
    columns: usize,
}

impl Scratch {
    fn new(g: &ConvGeometry, tiles: &[Tile]) -> Self {
        let width = tiles.iter().map(Tile::width).max().unwrap_or(0);
        let grouped = tiles.iter().any(|t| t.samples.len() > 1);
        let columns = if g.pointwise() && !grouped {
            0
        } else {
            g.patch() * width
        };
        let matrix = if grouped { g.out_channels * width } else { 0 };
        Self {
            buffer: vec![0.0; columns + matrix],
            columns,
        }
    }

    /// The column matrix's space and the `[out, width]` matrix's.
    fn parts(&mut self) -> (&mut [f32], &mut [f32]) {
        self.buffer.split_at_mut(self.columns)
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

/// `norm.forward(conv.forward(x))`, then a ReLU when `relu`. In inference
/// (`x` not on an autodiff device) with f32 tensors on Flex, the batch norm
/// (running statistics) is folded into the convolution as a per-channel
/// scale and shift applied with the ReLU while each sample's output is in
/// cache, where Burn's layers make five more passes over the output (the
/// norm's subtract, divide, multiply and add, then the ReLU). In training
/// the fast paths [`conv2d`] and [`batch_norm`](super::batch_norm) (or
/// [`batch_norm_relu`](super::batch_norm_relu)) run.
pub fn conv2d_norm(conv: &Conv2d, norm: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    let unfused = |x: Tensor<4>| {
        let y = conv2d(conv, x);
        if relu {
            super::batch_norm_relu(norm, y)
        } else {
            super::batch_norm(norm, y)
        }
    };
    if x.device().is_autodiff() {
        return unfused(x);
    }
    let weight = conv.weight.val();
    let Some(geometry) = geometry(conv, &x, &weight) else {
        return unfused(x);
    };
    let (gamma, beta) = (norm.gamma.val(), norm.beta.val());
    let device = x.device();
    let (mean, variance) = (
        norm.running_mean.value().to_device(&device),
        norm.running_var.value().to_device(&device),
    );
    let bias = conv.bias.as_ref().map(|b| b.val());
    let fast = on_flex_f32(&x)
        && on_flex_f32(&weight)
        && [&gamma, &beta, &mean, &variance]
            .into_iter()
            .chain(&bias)
            .all(|t| on_flex_f32(t) && t.dims() == [geometry.out_channels]);
    if !fast {
        return unfused(x);
    }
    // (conv + bias − mean) / √(variance + ε) · γ + β
    //   = conv · scale + (bias − mean) · scale + β
    let scale = gamma / variance.add_scalar(norm.epsilon).sqrt();
    let centred = match bias {
        Some(bias) => bias - mean,
        None => mean.neg(),
    };
    let shift = centred * scale.clone() + beta;
    Tensor::from_dispatch(<Dispatch as CpuTrainOps>::cpu_conv2d_affine(
        x.into_dispatch(),
        weight.into_dispatch(),
        scale.into_dispatch(),
        shift.into_dispatch(),
        relu,
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

/// Output positions a product should have at least: convolutions with
/// smaller maps put several samples side by side
/// ([`ConvGeometry::group`]). Measured on gemm alone (one thread, the
/// shapes of ResNet-18's stages): 14 to 56 columns ran at 48–80 GFLOP/s,
/// 112 to 448 at 78–93 (`docs/benchmarks.md`).
const GROUP_COLUMNS: usize = 224;

/// The fewest columns of a block of output rows
/// ([`ConvGeometry::block_rows`]).
const BLOCK_COLUMNS: usize = 112;

/// Values in one block of the forward pass's column matrix: 64 Ki f32
/// (256 KiB), half of the L2 cache of the machines measured here.
const COLUMN_BLOCK: usize = 1 << 16;

/// A matrix operand for [`matmul`]: element (r, c) at `r·row + c·col`.
#[derive(Clone, Copy)]
pub(super) struct Operand<'a> {
    pub data: &'a [f32],
    pub row: usize,
    pub col: usize,
}

/// `dst` (`m × n`, row-major) = `lhs · rhs` (`m × k`, `k × n`), added to
/// `dst`'s values when `accumulate`.
pub(super) fn matmul(
    dst: &mut [f32],
    [m, n, k]: [usize; 3],
    lhs: Operand,
    rhs: Operand,
    accumulate: bool,
) {
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
    unsafe { product(dst.as_mut_ptr(), n, [m, n, k], lhs, rhs, accumulate) }
}

/// gemm of `lhs · rhs` into the `m × n` matrix at `dst` whose rows lie
/// `dst_row` elements apart.
///
/// # Safety
/// `dst` must be valid for writes (and reads when `accumulate`) of the
/// `m × n` elements at `r · dst_row + c`; `m`, `n` and `k` are positive.
pub(super) unsafe fn product(
    dst: *mut f32,
    dst_row: usize,
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
            dst_row as isize,
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
/// channel, kernel tap) and output row in `rows`, the input row it reads
/// and the valid output columns, handed to `visit(column offset, input
/// offset, lo, hi, input column of lo)`. The column matrix holds the
/// positions of `rows` only (`rows.len() · ow` per row) in rows `pitch`
/// values apart.
fn for_each_patch_row(
    g: &ConvGeometry,
    ow: usize,
    rows: Range<usize>,
    pitch: usize,
    mut visit: impl FnMut(usize, Option<usize>, usize, usize, usize),
) {
    let [h, w] = g.input;
    for ci in 0..g.in_channels {
        for ki in 0..g.kernel[0] {
            for kj in 0..g.kernel[1] {
                let row = ((ci * g.kernel[0] + ki) * g.kernel[1] + kj) * pitch;
                let x_offset = (kj * g.dilation[1]) as isize - g.padding[1][0] as isize;
                let (lo, hi) = valid_range(x_offset, g.stride[1], w, ow);
                let first_x = (lo as isize * g.stride[1] as isize + x_offset).max(0) as usize;
                for oy in rows.clone() {
                    let iy =
                        (oy * g.stride[0] + ki * g.dilation[0]) as isize - g.padding[0][0] as isize;
                    let input_row = (0..h as isize)
                        .contains(&iy)
                        .then(|| (ci * h + iy as usize) * w);
                    visit(row + (oy - rows.start) * ow, input_row, lo, hi, first_x);
                }
            }
        }
    }
}

/// The column matrix `[patch, rows.len()·ow]` of output rows `rows` of
/// one sample `x` `[in, h, w]`, its rows `pitch` values apart in `cols`.
fn im2col(
    g: &ConvGeometry,
    ow: usize,
    rows: Range<usize>,
    x: &[f32],
    cols: &mut [f32],
    pitch: usize,
) {
    if let Some(taps) = TapRun::all(g, rows.clone()) {
        return im2col_runs(g, taps, x, cols, pitch);
    }
    let stride = g.stride[1];
    for_each_patch_row(g, ow, rows, pitch, |at, input_row, lo, hi, first_x| {
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
            copy_strided(&mut dst[lo..hi], src, stride);
        }
    });
}

wide_fn! {
/// `dst[i] = src[i · stride]`. Stride 2 (the downsampling convolutions)
/// reads pairs, a loop that vectorises: element by element, the ResNet
/// stem's im2col was a third of its weight gradient (`perf`).
fn copy_strided(dst: &mut [f32], src: &[f32], stride: usize) {
    let Some(last) = dst.len().checked_sub(1) else {
        return;
    };
    if stride == 2 {
        // The last value alone: its pair may run past `src`.
        for (d, pair) in dst[..last].iter_mut().zip(src.chunks_exact(2)) {
            *d = pair[0];
        }
        dst[last] = src[2 * last];
    } else {
        for (i, d) in dst.iter_mut().enumerate() {
            *d = src[i * stride];
        }
    }
}
}

/// One kernel tap of a block of output rows, when the stride is 1 and
/// output rows are as wide as input rows (the "same" convolutions of most
/// networks): the output rows read consecutive input rows at one shift, so
/// the tap's row of the column matrix is one run of the input. Row by row,
/// copies of 7 to 56 values were mostly call overhead.
struct TapRun {
    /// Output rows in the block.
    block_rows: usize,
    /// The block's rows (from 0) whose input row lies inside the image.
    rows: Range<usize>,
    /// The output columns whose input column lies inside the image; the
    /// others are padding, where a run wraps round a row end.
    columns: Range<usize>,
    /// Value `d` of the tap's row reads input value `d + offset`.
    offset: isize,
}

impl TapRun {
    /// Every tap of output rows `rows`, in column-matrix order; `None`
    /// unless the stride is 1 and output rows are as wide as input rows.
    fn all(g: &ConvGeometry, rows: Range<usize>) -> Option<impl Iterator<Item = TapRun>> {
        let [h, w] = g.input;
        if g.stride != [1, 1] || g.output().map(|[_, ow]| ow) != Some(w) {
            return None;
        }
        let (g, [kh, kw]) = (*g, g.kernel);
        let tap = move |t: usize| {
            let (ci, ki, kj) = (t / (kh * kw), t / kw % kh, t % kw);
            let shift_y = (ki * g.dilation[0]) as isize - g.padding[0][0] as isize;
            let shift_x = (kj * g.dilation[1]) as isize - g.padding[1][0] as isize;
            let clamp = |oy: isize| oy.clamp(rows.start as isize, rows.end as isize) as usize;
            let (first, last) = (clamp(-shift_y), clamp(h as isize - shift_y));
            let (lo, hi) = valid_range(shift_x, 1, w, w);
            let start = (rows.start as isize + shift_y) * w as isize;
            TapRun {
                block_rows: rows.len(),
                rows: first - rows.start..last.max(first) - rows.start,
                columns: lo..hi,
                offset: (ci * h * w) as isize + start + shift_x,
            }
        };
        Some((0..g.patch()).map(tap))
    }

    /// The run `start..end` of the tap's row that reads the input (the
    /// padding columns inside it excepted); `None` when nothing does.
    fn run(&self, w: usize) -> Option<Range<usize>> {
        let (rows, columns) = (&self.rows, &self.columns);
        let empty = rows.is_empty() || columns.is_empty();
        (!empty).then(|| rows.start * w + columns.start..(rows.end - 1) * w + columns.end)
    }

    /// Sets the padding columns of the reading rows of `values` (the tap's
    /// row) to zero, one column at a time (a strided loop: not a call per
    /// row).
    fn zero_padding(&self, values: &mut [f32], w: usize) {
        for column in (0..self.columns.start).chain(self.columns.end..w) {
            for row in self.rows.clone() {
                values[row * w + column] = 0.0;
            }
        }
    }
}

/// [`im2col`] of [`TapRun`]s: each tap's run copied at once, then its
/// padding columns zeroed.
fn im2col_runs(
    g: &ConvGeometry,
    taps: impl Iterator<Item = TapRun>,
    x: &[f32],
    cols: &mut [f32],
    pitch: usize,
) {
    let w = g.input[1];
    for (t, tap) in taps.enumerate() {
        let dst = &mut cols[t * pitch..][..tap.block_rows * w];
        let Some(run) = tap.run(w) else {
            dst.fill(0.0);
            continue;
        };
        dst[..tap.rows.start * w].fill(0.0);
        dst[tap.rows.end * w..].fill(0.0);
        let src = (run.start as isize + tap.offset) as usize;
        dst[run.clone()].copy_from_slice(&x[src..src + run.len()]);
        tap.zero_padding(dst, w);
    }
}

/// [`col2im`] of [`TapRun`]s: each tap's padding columns zeroed in `cols`
/// (they hold gradients of no input), then its run added at once.
fn col2im_runs(
    g: &ConvGeometry,
    taps: impl Iterator<Item = TapRun>,
    cols: &mut [f32],
    dx: &mut [f32],
    pitch: usize,
) {
    let w = g.input[1];
    for (t, tap) in taps.enumerate() {
        let src = &mut cols[t * pitch..][..tap.block_rows * w];
        let Some(run) = tap.run(w) else { continue };
        tap.zero_padding(src, w);
        let at = (run.start as isize + tap.offset) as usize;
        for (d, s) in dx[at..at + run.len()].iter_mut().zip(&src[run]) {
            *d += s;
        }
    }
}

/// The adjoint of [`im2col`]: adds the column matrix `cols` of output rows
/// `rows` (its rows `pitch` values apart) into the sample's input gradient
/// `dx` `[in, h, w]`.
fn col2im(
    g: &ConvGeometry,
    ow: usize,
    rows: Range<usize>,
    cols: &mut [f32],
    dx: &mut [f32],
    pitch: usize,
) {
    if let Some(taps) = TapRun::all(g, rows.clone()) {
        return col2im_runs(g, taps, cols, dx, pitch);
    }
    let stride = g.stride[1];
    for_each_patch_row(g, ow, rows, pitch, |at, input_row, lo, hi, first_x| {
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

/// What the forward pass applies to each output channel `c` while a
/// sample's output is in cache: `v · scale[c] + shift[c]` (no scale: `v +
/// shift[c]`, the bias), then a ReLU when `relu`.
pub(super) struct Epilogue<'a> {
    pub scale: Option<&'a [f32]>,
    pub shift: &'a [f32],
    pub relu: bool,
}

impl Epilogue<'_> {
    /// Applies the epilogue to positions `block` of one sample's `[out,
    /// positions]` values.
    ///
    /// # Safety
    /// Those positions of every channel must be written.
    unsafe fn apply(&self, out: &mut [MaybeUninit<f32>], positions: usize, block: Range<usize>) {
        for (c, shift) in self.shift.iter().enumerate() {
            let row = &mut out[c * positions..][block.clone()];
            let scale = self.scale.map_or(1.0, |s| s[c]);
            // SAFETY: the caller vouches that `row` is written.
            let row = unsafe { &mut *(row as *mut [MaybeUninit<f32>] as *mut [f32]) };
            // `v < 0 → 0` rather than `max`: a NaN stays NaN, as Burn's
            // ReLU keeps it, so a diverging model is still caught.
            if self.relu {
                row.iter_mut().for_each(|v| {
                    let y = *v * scale + shift;
                    *v = if y < 0.0 { 0.0 } else { y };
                });
            } else {
                row.iter_mut().for_each(|v| *v = *v * scale + shift);
            }
        }
    }
}

/// The forward pass: `[batch, out, oh, ow]` values.
pub(super) fn forward(g: &ConvGeometry, x: &[f32], weight: &[f32], epilogue: Epilogue) -> Vec<f32> {
    if winograd::applies(g) {
        return winograd::forward(g, x, weight, epilogue);
    }
    let (k, n, m) = (g.patch(), g.positions(), g.out_channels);
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
            let first = part * run;
            let tiles = g.tiles(first..first + out.len() / (m * n), g.block_rows());
            let mut scratch = Scratch::new(g, &tiles);
            let (columns, matrix) = scratch.parts();
            for tile in &tiles {
                let c = Operand {
                    data: g.tile_columns(x, tile, columns),
                    row: tile.width(),
                    col: 1,
                };
                let b = tile.samples.start - first;
                if tile.samples.len() == 1 {
                    let (out, block) = (&mut out[b * m * n..(b + 1) * m * n], tile.positions());
                    // SAFETY: `out` holds the sample's m × n values; gemm
                    // writes (without reading) the block's columns of each
                    // of its rows; m, k and the block are positive.
                    unsafe {
                        let dst = out.as_mut_ptr().cast::<f32>().add(block.start);
                        product(dst, n, [m, block.len(), k], w, c, false);
                    }
                    // The bias (or folded batch norm) added while the
                    // block's output is in cache.
                    // SAFETY: gemm wrote the block's columns just above.
                    unsafe { epilogue.apply(out, n, block) };
                    continue;
                }
                let width = tile.width();
                matmul(matrix, [m, width, k], w, c, false);
                let samples = out[b * m * n..].chunks_mut(m * n);
                for (s, out) in samples.take(tile.samples.len()).enumerate() {
                    for (c, row) in out.chunks_mut(n).enumerate() {
                        let src = &matrix[c * width + s * n..][..n];
                        row.iter_mut().zip(src).for_each(|(d, v)| {
                            d.write(*v);
                        });
                    }
                    // SAFETY: every channel's positions were written just above.
                    unsafe { epilogue.apply(out, n, 0..n) };
                }
            }
        });
    // SAFETY: the chunks cover all `len` elements and the tiles every
    // column of every row of each.
    unsafe { out.set_len(len) };
    out
}

/// `∂L/∂x` `[batch, in, h, w]` from `∂L/∂out` `grad`.
pub(super) fn x_grad(g: &ConvGeometry, weight: &[f32], grad: &[f32]) -> Vec<f32> {
    if winograd::applies(g) {
        return winograd::x_grad(g, weight, grad);
    }
    let (k, m) = (g.patch(), g.out_channels);
    let sample_in = g.sample_input();
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
            let first = part * run;
            let tiles = g.tiles(first..first + dx.len() / sample_in, g.block_rows());
            let mut scratch = Scratch::new(g, &tiles);
            let (columns, matrix) = scratch.parts();
            for tile in &tiles {
                let dy = g.tile_grad(grad, tile, matrix);
                let (width, b) = (tile.width(), tile.samples.start - first);
                let dx = &mut dx[b * sample_in..];
                if g.pointwise() && tile.samples.len() == 1 {
                    matmul(&mut dx[..sample_in], [k, width, m], wt, dy, false);
                    continue;
                }
                let cols = &mut columns[..k * width];
                matmul(cols, [k, width, m], wt, dy, false);
                for (s, dx) in dx
                    .chunks_mut(sample_in)
                    .take(tile.samples.len())
                    .enumerate()
                {
                    let cols = &mut cols[s * tile.per_sample()..];
                    col2im(g, tile.ow, tile.rows.clone(), cols, dx, width);
                }
            }
        });
    dx
}

/// `∂L/∂weight` `[out, in, kh, kw]` from `∂L/∂out` `grad`: each task sums
/// its samples' products, then the tasks' sums are added.
///
/// gemm vectorises along its output's contiguous axis and copies (packs)
/// an operand that does not run along it. Written `[out, patch]`, the
/// product `∂L/∂out · colsᵀ` packs the column matrix (patch · positions
/// values) transposed, for each sample; with few output channels that copy
/// is used by few products: a third of the weight gradient's time in
/// ResNet-18's first stage (`perf`). There the product is the transpose,
/// `[patch, out] = cols · ∂L/∂outᵀ`, which reads the column matrix as it
/// is and packs the output gradient, `patch / out` times smaller; the sum
/// is transposed back at the end. See [`TRANSPOSED_MAX_OUT`].
pub(super) fn weight_grad(g: &ConvGeometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    let (k, m) = (g.patch(), g.out_channels);
    let transposed = m <= TRANSPOSED_MAX_OUT;
    let run = sample_runs(g);
    let partial = |part: usize| {
        let mut sum = vec![0.0f32; m * k];
        // Whole samples: blocks of rows would split the sum over positions
        // into many short products, each reading and writing the sum
        // again (measured slower in a ResNet-18 training step).
        let all_rows = g.output().map_or(1, |[h, _]| h);
        let tiles = g.tiles(part * run..((part + 1) * run).min(g.batch), all_rows);
        let mut scratch = Scratch::new(g, &tiles);
        let (columns, matrix) = scratch.parts();
        for (i, tile) in tiles.iter().enumerate() {
            let dy = g.tile_grad(grad, tile, matrix);
            let cols = g.tile_columns(x, tile, columns);
            let width = tile.width();
            if transposed {
                // cols `[patch, width]` · ∂L/∂outᵀ (element (p, c) at c·row + p).
                let cols = Operand {
                    data: cols,
                    row: width,
                    col: 1,
                };
                let dyt = Operand {
                    data: dy.data,
                    row: dy.col,
                    col: dy.row,
                };
                matmul(&mut sum, [k, m, width], cols, dyt, i > 0);
            } else {
                // ∂L/∂out · colsᵀ (element (p, r) at r·width + p).
                let ct = Operand {
                    data: cols,
                    row: 1,
                    col: width,
                };
                matmul(&mut sum, [m, k, width], dy, ct, i > 0);
            }
        }
        sum
    };
    // Collected in order and added in order: the same sum in every run
    // (a parallel reduction's order depends on scheduling).
    let partials: Vec<Vec<f32>> = (0..g.batch.div_ceil(run))
        .into_par_iter()
        .map(partial)
        .collect();
    let mut partials = partials.into_iter();
    let mut sum = partials.next().unwrap_or_else(|| vec![0.0; m * k]);
    for part in partials {
        sum.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
    }
    if transposed {
        crate::weights::transpose(&sum, k, m)
    } else {
        sum
    }
}

/// Output channels up to which [`weight_grad`] computes the transposed
/// product. Measured per ResNet-18 layer (batch 8, `conv_layers` example,
/// runs in turn): with 64 output channels 12.4 → 7.8–9.2 ms (56×56 maps)
/// and 16.6 → 13.0–13.8 ms (the 7×7 stem), with 128 about even to 20 %
/// faster, with 256 and 512 5–30 % slower (there the packed column matrix
/// serves as many products and gemm reads it faster than the unpacked one).
const TRANSPOSED_MAX_OUT: usize = 128;

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
