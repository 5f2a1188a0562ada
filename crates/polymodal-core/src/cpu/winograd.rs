//! Winograd's minimal filtering F(2×2, 3×3) for the 3×3 "same"
//! convolutions (stride 1, padding 1, no dilation) that make most of a
//! ResNet's work: every 2×2 block of outputs comes from the 4×4 block of
//! input around it through 16 products where im2col + gemm spends 36
//! multiplications, 2.25 times fewer (Lavin & Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2016). The 16 products of a chunk of
//! tiles are 16 gemms `[out, in] · [in, tiles]`, so the work stays in
//! gemm's kernels; the input gradient is the same convolution of the output
//! gradient with each kernel flipped and the channels swapped. The weight
//! gradient stays with im2col + gemm.
//!
//! Where im2col + gemm and Burn's op agree to rounding, so does this (the
//! tests hold all three to the same tolerance), except that an infinite or
//! NaN input, which makes every output whose window reads it NaN, also
//! makes NaN the rest of those outputs' 2×2 tiles (0 · NaN in the
//! transforms): a diverging model is caught all the same.
//!
//! Transforms, with the inverse-free matrices of the paper:
//! `Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]]`,
//! `G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]]`, `Aᵀ = [[1,1,1,0],[0,1,−1,−1]]`.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::conv::{ConvGeometry, Epilogue, Operand, matmul};
use super::parts;
use super::simd::wide_fn;

/// Input and output channels below which im2col + gemm is kept: the
/// transforms cost in proportion to the channels, the products to their
/// square. Measured on a ResNet-18 training step (batch 8, 224×224, steps
/// interleaved with and without): from 128 channels 7.5 % faster, from 64
/// (every stage) 12 %. From 16, AV-MNIST's two encoders (their 16 → 32
/// blocks on 14×14 and 32×50 maps) trained 9 % slower (27.6 against 25.3
/// ms a step, batch 32).
const MIN_CHANNELS: usize = 64;

/// Transformed input values per chunk of tiles (`16 × in × tiles`), 512
/// KiB: the chunk's 16 products read them from cache.
const CHUNK_VALUES: usize = 1 << 17;

/// The fewest tiles per chunk where whole tile rows allow (small maps put
/// several samples in one chunk): narrower products run slower. The tiles
/// are the columns gemm's AVX-512 kernel takes 64 at a time, then 48, 32
/// or 16: at 64, ResNet-18's 28- and 14-wide stages took 5 and 10 rows of
/// 14 and 7 tiles, 70 tiles, whose last 6 ran in a kernel of one vector
/// (6 accumulators, mostly masked). 112 is 4, 8, 16 or 28 rows of its
/// four stages, 64 + 48 columns: a training step 4 % faster (0.429
/// against 0.449 s, medians of 5 runs in turn).
const MIN_TILES: usize = 112;

/// Whether `g` is a convolution this module computes.
pub(super) fn applies(g: &ConvGeometry) -> bool {
    g.kernel == [3, 3]
        && g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.padding == [[1, 1], [1, 1]]
        && g.in_channels >= MIN_CHANNELS
        && g.out_channels >= MIN_CHANNELS
        && g.input[0] > 0
        && g.input[1] > 0
}

/// The forward pass `[batch, out, h, w]` of `x` `[batch, in, h, w]` by
/// `weight` `[out, in, 3, 3]`, each value through `epilogue`.
pub(super) fn forward(g: &ConvGeometry, x: &[f32], weight: &[f32], epilogue: Epilogue) -> Vec<f32> {
    let u = transform_kernels(weight, g, false);
    convolve(g, x, &u, &epilogue)
}

/// `∂L/∂x` `[batch, in, h, w]` from `∂L/∂out` `grad`: the convolution of
/// `grad` by the kernels flipped in both axes, input and output channels
/// swapped.
pub(super) fn x_grad(g: &ConvGeometry, weight: &[f32], grad: &[f32]) -> Vec<f32> {
    let (out, inp) = (g.out_channels, g.in_channels);
    let u = transform_kernels(weight, g, true);
    let swapped = ConvGeometry {
        in_channels: out,
        out_channels: inp,
        ..*g
    };
    let zeros = vec![0.0; inp];
    let identity = Epilogue {
        scale: None,
        shift: &zeros,
        relu: false,
    };
    convolve(&swapped, grad, &u, &identity)
}

/// Kernels per task of [`transform_kernels`]: the input gradient's task
/// gathers, for each output channel, this many input channels' kernels,
/// one run of `9 · BLOCK` values.
const KERNEL_BLOCK: usize = 16;

/// The transformed kernels `[rows, 16, columns]`, `G·k·Gᵀ` of each 3×3
/// kernel of `weight` `[out, in, 3, 3]`; ξ = 4·row + column. The forward
/// pass's are `[out, 16, in]`; with `flipped`, the input gradient's,
/// `[in, 16, out]`, of each kernel flipped in both axes.
///
/// A task per block of [`KERNEL_BLOCK`] rows gathers their taps `[9,
/// columns]` (from runs of the weight: the input gradient's rows are its
/// second axis), then [`transform_rows`] combines whole rows. Kernel by
/// kernel (a scalar transform, its 16 values scattered apart, into zeroed
/// memory) this took a fifth of a 512-channel convolution on 7×7 maps
/// (`perf`): every call transforms all of them (16 · 512 · 512 values).
fn transform_kernels(weight: &[f32], g: &ConvGeometry, flipped: bool) -> Vec<f32> {
    let (out, inp) = (g.out_channels, g.in_channels);
    let (rows, columns) = if flipped { (inp, out) } else { (out, inp) };
    let len = 16 * rows * columns;
    let mut u = Vec::with_capacity(len);
    u.spare_capacity_mut()[..len]
        .par_chunks_mut(16 * columns * KERNEL_BLOCK)
        .enumerate()
        .for_each(|(block, u)| {
            let first = block * KERNEL_BLOCK;
            let count = u.len() / (16 * columns);
            // taps[(r · 9 + t) · pitch + c] for row first + r: a pitch one
            // cache line longer than the rows, as their count (up to 144)
            // of streams `columns` apart, a power of two, would otherwise
            // share a few cache sets (measured 40 % slower).
            let pitch = columns + 16;
            let mut taps = vec![0.0; count * 9 * pitch];
            let mut put = |r: usize, c: usize| {
                let (o, i) = if flipped {
                    (c, first + r)
                } else {
                    (first + r, c)
                };
                let kernel = &weight[(o * inp + i) * 9..][..9];
                for (t, v) in kernel.iter().enumerate() {
                    // Flipped: tap (y, x) is (2 − y, 2 − x), t ↦ 8 − t.
                    let t = if flipped { 8 - t } else { t };
                    taps[(r * 9 + t) * pitch + c] = *v;
                }
            };
            // The weight read in order: the forward pass's rows are its
            // first axis, the input gradient's its second.
            if flipped {
                (0..columns).for_each(|c| (0..count).for_each(|r| put(r, c)));
            } else {
                (0..count).for_each(|r| (0..columns).for_each(|c| put(r, c)));
            }
            for (taps, u) in taps.chunks(9 * pitch).zip(u.chunks_mut(16 * columns)) {
                transform_rows(taps, pitch, u, columns);
            }
        });
    // SAFETY: `transform_rows` wrote all 16 · columns values of every row.
    unsafe { u.set_len(len) };
    u
}

/// `G·k·Gᵀ` of `n` kernels at once: `taps` `[9, n]` (rows `pitch` apart)
/// → every value of `u` `[16, n]`. `G·(a, b, c) = (a, ½(a + b + c), ½(a −
/// b + c), c)` along the columns (y), then along the rows (x).
fn transform_rows(taps: &[f32], pitch: usize, u: &mut [MaybeUninit<f32>], n: usize) {
    let tap = |t: usize| &taps[t * pitch..][..n];
    // G·k: row r of the 4 × 3 result, column x, at (3·r + x)·n.
    let mut gk = vec![MaybeUninit::uninit(); 12 * n];
    for x in 0..3 {
        let mut rows = gk.chunks_mut(n).skip(x).step_by(3);
        let rows = std::array::from_fn(|_| rows.next().unwrap_or_default());
        apply_g(tap(x), tap(3 + x), tap(6 + x), rows);
    }
    // SAFETY: the loop above wrote every row (r, x) of the 4 × 3.
    let gk = unsafe { &*(gk.as_slice() as *const [MaybeUninit<f32>] as *const [f32]) };
    // (G·k)·Gᵀ: row r of G·k gives ξ = 4·r .. 4·r + 4.
    for (r, u) in u.chunks_mut(4 * n).enumerate() {
        let row = |x: usize| &gk[(3 * r + x) * n..][..n];
        let mut out = u.chunks_mut(n);
        let out = std::array::from_fn(|_| out.next().unwrap_or_default());
        apply_g(row(0), row(1), row(2), out);
    }
}

wide_fn! {
/// `(a, ½(a + b + c), ½(a − b + c), c)` elementwise into the four rows.
fn apply_g(a: &[f32], b: &[f32], c: &[f32], rows: [&mut [MaybeUninit<f32>]; 4]) {
    let [r0, r1, r2, r3] = rows;
    for ((((w, x), (y, z)), a), (b, c)) in r0
        .iter_mut()
        .zip(r1.iter_mut())
        .zip(r2.iter_mut().zip(r3.iter_mut()))
        .zip(a)
        .zip(b.iter().zip(c))
    {
        w.write(*a);
        x.write(0.5 * (a + b + c));
        y.write(0.5 * (a - b + c));
        z.write(*c);
    }
}
}

/// One row of tiles: sample `sample` (within the task's samples), tile row
/// `ty`, its first tile at column `at` of the chunk.
#[derive(Clone, Copy)]
struct TileRow {
    sample: usize,
    ty: usize,
    at: usize,
}

/// The convolution of `x` `[batch, in, h, w]` by the transformed kernels
/// `u` `[out, 16, in]`, one task per run of samples, each in chunks of
/// whole tile rows.
fn convolve(g: &ConvGeometry, x: &[f32], u: &[f32], epilogue: &Epilogue) -> Vec<f32> {
    let (inp, out, [h, w]) = (g.in_channels, g.out_channels, g.input);
    let tw = w.div_ceil(2);
    let tile_rows = h.div_ceil(2);
    let (sample_in, sample_out) = (inp * h * w, out * h * w);
    let len = g.batch * sample_out;
    let mut y = Vec::with_capacity(len);
    let per_part = parts(g.batch, 9 * sample_in * out);
    let run = g.batch.div_ceil(per_part.max(1)).max(1);
    let rows_per_chunk = (CHUNK_VALUES / (16 * inp * tw))
        .max(MIN_TILES.div_ceil(tw))
        .max(1);
    y.spare_capacity_mut()[..len]
        .par_chunks_mut(run * sample_out)
        .enumerate()
        .for_each(|(part, y)| {
            let first = part * run;
            let samples = y.len() / sample_out;
            let x = &x[first * sample_in..(first + samples) * sample_in];
            // Every tile row of the task's samples, placed in its chunk.
            let rows: Vec<TileRow> = (0..samples)
                .flat_map(|sample| (0..tile_rows).map(move |ty| (sample, ty)))
                .enumerate()
                .map(|(r, (sample, ty))| TileRow {
                    sample,
                    ty,
                    at: r % rows_per_chunk * tw,
                })
                .collect();
            let widest = rows_per_chunk.min(rows.len()) * tw;
            let mut v = vec![0.0f32; 16 * inp * widest];
            let mut m = vec![0.0f32; 16 * out * widest];
            let mut scratch = RowScratch::new(w, tw);
            for chunk in rows.chunks(rows_per_chunk) {
                let tiles = chunk.len() * tw;
                let v = &mut v[..16 * inp * tiles];
                for row in chunk {
                    let x = &x[row.sample * sample_in..][..sample_in];
                    transform_input(x, inp, [h, w], *row, tiles, v, &mut scratch);
                }
                let m = &mut m[..16 * out * tiles];
                for xi in 0..16 {
                    let kernels = Operand {
                        data: &u[xi * inp..],
                        row: 16 * inp,
                        col: 1,
                    };
                    let inputs = Operand {
                        data: &v[xi * inp * tiles..][..inp * tiles],
                        row: tiles,
                        col: 1,
                    };
                    let dst = &mut m[xi * out * tiles..][..out * tiles];
                    matmul(dst, [out, tiles, inp], kernels, inputs, false);
                }
                for row in chunk {
                    let y = &mut y[row.sample * sample_out..][..sample_out];
                    transform_output(m, out, [h, w], *row, tiles, y, epilogue, &mut scratch);
                }
            }
        });
    // SAFETY: every output position of every channel lies in exactly one
    // tile, whose output transform wrote it.
    unsafe { y.set_len(len) };
    y
}

/// Per-task space for one tile row's transforms.
struct RowScratch {
    /// Four input rows padded by one column on each side (2·tw + 2 wide).
    rows: Vec<f32>,
    /// The even and odd padded columns of one transformed row (tw + 1 each).
    even: Vec<f32>,
    odd: Vec<f32>,
    /// Aᵀ·M of one channel: 2 × 4 rows of tw.
    partial: Vec<f32>,
}

impl RowScratch {
    fn new(w: usize, tw: usize) -> Self {
        let padded = 2 * tw + 2;
        debug_assert!(padded >= w + 2);
        Self {
            rows: vec![0.0; 4 * padded],
            even: vec![0.0; tw + 1],
            odd: vec![0.0; tw + 1],
            partial: vec![0.0; 8 * tw],
        }
    }
}

wide_fn! {
/// `Bᵀ·d·B` of every tile of `row` for every channel of the sample `x`
/// `[in, h, w]`, into `v` `[16, in, tiles]` at the row's columns.
fn transform_input(
    x: &[f32],
    inp: usize,
    size: [usize; 2],
    row: TileRow,
    tiles: usize,
    v: &mut [f32],
    scratch: &mut RowScratch,
) {
    let [h, w] = size;
    let tw = w.div_ceil(2);
    let padded = 2 * tw + 2;
    let RowScratch {
        rows, even, odd, ..
    } = scratch;
    for c in 0..inp {
        let plane = &x[c * h * w..][..h * w];
        // Input rows 2·ty − 1 ..= 2·ty + 2, zero outside the map; padded
        // column p holds input column p − 1.
        for (r, dst) in rows.chunks_mut(padded).enumerate() {
            let iy = (2 * row.ty + r).checked_sub(1).filter(|&iy| iy < h);
            match iy {
                Some(iy) => {
                    dst[0] = 0.0;
                    dst[1..=w].copy_from_slice(&plane[iy * w..][..w]);
                    dst[w + 1..].fill(0.0);
                }
                None => dst.fill(0.0),
            }
        }
        // Bᵀ·d row by row (into the rows' own space: each new row reads
        // only rows it has not overwritten), then d·B along each tile's
        // columns 2·tx ..= 2·tx + 3: even[tx], odd[tx], even[tx + 1],
        // odd[tx + 1].
        let (d0, rest) = rows.split_at_mut(padded);
        let (d1, rest) = rest.split_at_mut(padded);
        let (d2, d3) = rest.split_at_mut(padded);
        // Zipped iterators rather than indices: no bounds checks, so the
        // loops vectorise.
        let columns = d0.iter_mut().zip(d1.iter_mut()).zip(d2.iter_mut()).zip(d3.iter_mut());
        for (((d0, d1), d2), d3) in columns {
            let (a, b, c, d) = (*d0, *d1, *d2, *d3);
            *d0 = a - c;
            *d1 = b + c;
            *d2 = c - b;
            *d3 = b - d;
        }
        for (i, s) in rows.chunks(padded).enumerate() {
            let pairs = even.iter_mut().zip(odd.iter_mut()).zip(s.chunks_exact(2));
            for ((e, o), pair) in pairs {
                *e = pair[0];
                *o = pair[1];
            }
            let at = |j: usize| ((4 * i + j) * inp + c) * tiles + row.at;
            let (e0, e1) = (&even[..tw], &even[1..=tw]);
            let (o0, o1) = (&odd[..tw], &odd[1..=tw]);
            let dst = &mut v[at(0)..][..tw];
            for t in 0..tw {
                dst[t] = e0[t] - e1[t];
            }
            let dst = &mut v[at(1)..][..tw];
            for t in 0..tw {
                dst[t] = o0[t] + e1[t];
            }
            let dst = &mut v[at(2)..][..tw];
            for t in 0..tw {
                dst[t] = e1[t] - o0[t];
            }
            let dst = &mut v[at(3)..][..tw];
            for t in 0..tw {
                dst[t] = o0[t] - o1[t];
            }
        }
    }
}
}

wide_fn! {
/// `Aᵀ·M·A` of every tile of `row` for every output channel, from the
/// products `m` `[16, out, tiles]`, through `epilogue` into the sample's
/// output `y` `[out, h, w]`.
#[allow(clippy::too_many_arguments)]
fn transform_output(
    m: &[f32],
    out: usize,
    size: [usize; 2],
    row: TileRow,
    tiles: usize,
    y: &mut [MaybeUninit<f32>],
    epilogue: &Epilogue,
    scratch: &mut RowScratch,
) {
    let [h, w] = size;
    let tw = w.div_ceil(2);
    let partial = &mut scratch.partial;
    for k in 0..out {
        let product = |xi: usize| &m[(xi * out + k) * tiles + row.at..][..tw];
        // Aᵀ·M: rows (M₀ + M₁ + M₂, M₁ − M₂ − M₃) of each column j.
        for j in 0..4 {
            let (m0, m1, m2, m3) = (product(j), product(4 + j), product(8 + j), product(12 + j));
            let (top, bottom) = partial.split_at_mut(4 * tw);
            let (top, bottom) = (&mut top[j * tw..][..tw], &mut bottom[j * tw..][..tw]);
            for t in 0..tw {
                top[t] = m0[t] + m1[t] + m2[t];
                bottom[t] = m1[t] - m2[t] - m3[t];
            }
        }
        let scale = epilogue.scale.map_or(1.0, |s| s[k]);
        let shift = epilogue.shift[k];
        for i in 0..2 {
            let oy = 2 * row.ty + i;
            if oy >= h {
                continue;
            }
            let r = &partial[4 * i * tw..][..4 * tw];
            let dst = &mut y[(k * h + oy) * w..][..w];
            // Two loops rather than a test per value, so each vectorises.
            if epilogue.relu {
                // `v < 0 → 0` rather than `max`: a NaN stays NaN, as in
                // Burn's ReLU.
                write_row(r, tw, dst, |v| {
                    let v = v * scale + shift;
                    if v < 0.0 { 0.0 } else { v }
                });
            } else {
                write_row(r, tw, dst, |v| v * scale + shift);
            }
        }
    }
}
}

/// `M·A` of one row of tiles (`r`: the four rows of Aᵀ·M, `tw` each) into
/// the output row `dst`, each value through `finish`: columns 2·tx and
/// 2·tx + 1 of tile tx (the last tile's second column past an odd width
/// dropped). Inlined into the vectorised copies of [`transform_output`].
#[inline(always)]
fn write_row(r: &[f32], tw: usize, dst: &mut [MaybeUninit<f32>], finish: impl Fn(f32) -> f32) {
    let (r0, r1, r2, r3) = (&r[..tw], &r[tw..2 * tw], &r[2 * tw..3 * tw], &r[3 * tw..]);
    let pairs = dst.len() / 2;
    for (t, pair) in dst.chunks_exact_mut(2).enumerate().take(pairs) {
        pair[0].write(finish(r0[t] + r1[t] + r2[t]));
        pair[1].write(finish(r1[t] - r2[t] - r3[t]));
    }
    if dst.len() % 2 == 1 {
        let t = pairs;
        dst[2 * t].write(finish(r0[t] + r1[t] + r2[t]));
    }
}
