//! Scaled dot-product attention on Flex in f32 without autodiff, for the
//! encoders' inference. Flex's fused op runs its softmax one scalar
//! element at a time, with the mask and causal tests inside the loop and
//! libm's `expf` per score: on whisper-tiny.en's 1,500-position encoder
//! that loop and `expf` were a quarter of a transcription's time. Here each
//! block of query rows is one gemm for the scores, a softmax in plain
//! vectorisable arithmetic (the exponential of the GELU fast path), and one
//! gemm for the output, written straight into the `[batch, query, head,
//! value]` layout the caller merges the heads from; the inputs are read
//! through their strides (the heads are views of the projections), so
//! nothing is copied.

use burn::backend::Bytes;
use burn::backend::flex::{FlexTensor, Layout};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::ops::AttentionModuleOptions;
use rayon::prelude::*;

use super::conv::{Operand, product};
use super::{from_untracked_flex, untracked_flex};

/// Query rows per block: the block's scores (`rows × keys`) stay in cache
/// for the softmax and the second product.
const QUERY_BLOCK: usize = 64;

/// Multiply-adds below which one thread does all the blocks.
const PARALLEL_MIN: usize = 1 << 18;

/// `burn::tensor::module::attention(q, k, v, mask, None, options)`: `q`
/// `[batch, heads, queries, dim]`, `k` `[batch, heads, keys, dim]`, `v`
/// `[batch, heads, keys, value]`. Without a mask or soft cap, for f32
/// tensors on Flex outside autodiff (causal only when queries and keys are
/// as many), it runs here; otherwise Burn's op.
pub fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Option<Tensor<4, Bool>>,
    options: AttentionModuleOptions,
) -> Tensor<4> {
    if mask.is_some() {
        return burn::tensor::module::attention(q, k, v, mask, None, options);
    }
    attention_padded(q, k, v, None, options)
}

/// [`attention`] where `padding` `[batch, keys]` is true at the keys each
/// sample hides from every query (a padded batch of sequences): Burn's op
/// with the mask `padding` broadcast over heads and queries, computed here
/// under the same conditions as [`attention`]. A query that sees no key
/// gets zeros, as from Burn's op.
pub fn attention_padded(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    padding: Option<Tensor<2, Bool>>,
    options: AttentionModuleOptions,
) -> Tensor<4> {
    let [batch, heads, queries, dim] = q.dims();
    let [kb, kh, keys, kd] = k.dims();
    let [vb, vh, vk, _] = v.dims();
    let fits = options.softcap.is_none()
        && (!options.is_causal || queries == keys)
        && [kb, vb] == [batch; 2]
        && [kh, vh] == [heads; 2]
        && kd == dim
        && vk == keys
        && padding.as_ref().is_none_or(|p| p.dims() == [batch, keys])
        && [&q, &k, &v].iter().all(|t| t.dtype() == DType::F32);
    let mask = |padding: Option<Tensor<2, Bool>>| {
        padding.map(|p| {
            p.reshape([batch, 1, 1, keys])
                .expand([batch, heads, queries, keys])
        })
    };
    if !fits {
        return burn::tensor::module::attention(q, k, v, mask(padding), None, options);
    }
    let flex = (
        untracked_flex(q.into_dispatch()),
        untracked_flex(k.into_dispatch()),
        untracked_flex(v.into_dispatch()),
    );
    // The `[batch, keys]` flags on the host (small next to the scores),
    // read only on this path: elsewhere the read would wait for a device.
    let hidden = match (&flex, &padding) {
        ((Ok(_), Ok(_), Ok(_)), Some(p)) => p.clone().into_data().try_into_vec::<bool>().map(Some),
        _ => Ok(None),
    };
    match (flex, hidden) {
        ((Ok(q), Ok(k), Ok(v)), Ok(hidden)) => {
            from_untracked_flex(attend(q, k, v, hidden.as_deref(), options))
        }
        ((q, k, v), _) => {
            let back = |t: Result<FlexTensor, Box<_>>| match t {
                Ok(t) => from_untracked_flex(t),
                Err(other) => Tensor::from_dispatch(*other),
            };
            burn::tensor::module::attention(back(q), back(k), back(v), mask(padding), None, options)
        }
    }
}

/// A 4-D operand read through its strides.
struct Strided<'a> {
    data: &'a [f32],
    start: usize,
    strides: [usize; 4],
}

impl<'a> Strided<'a> {
    /// `t`'s values and strides, which must be non-negative (`attend`
    /// makes them so).
    fn of(t: &'a FlexTensor) -> Self {
        let layout = t.layout();
        Self {
            data: t.storage::<f32>(),
            start: layout.start_offset(),
            strides: std::array::from_fn(|i| layout.strides()[i].unsigned_abs()),
        }
    }

    /// The `[rows, columns]` matrix of (batch, head) from row `first`, as a
    /// gemm operand (`transposed`: columns × rows).
    fn matrix(&self, b: usize, h: usize, first: usize, transposed: bool) -> Operand<'a> {
        let [sb, sh, sr, sc] = self.strides;
        let at = self.start + b * sb + h * sh + first * sr;
        let (row, col) = if transposed { (sc, sr) } else { (sr, sc) };
        Operand {
            data: &self.data[at..],
            row,
            col,
        }
    }
}

/// The attention of contiguous-or-strided `q`, `k`, `v` (shapes checked by
/// the caller), sample b's keys `hidden[b · keys..][..keys]` hidden when
/// given, as a `[batch, heads, queries, value]` view of a `[batch,
/// queries, heads, value]` buffer.
fn attend(
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    hidden: Option<&[bool]>,
    options: AttentionModuleOptions,
) -> FlexTensor {
    let dims = |t: &FlexTensor| -> [usize; 4] {
        let s = t.layout().shape();
        [s[0], s[1], s[2], s[3]]
    };
    let ([batch, heads, queries, dim], [_, _, keys, value]) = (dims(&q), dims(&v));
    let positive = |t: FlexTensor| {
        if t.layout().has_positive_strides() {
            t
        } else {
            t.to_contiguous()
        }
    };
    let (q, k, v) = (positive(q), positive(k), positive(v));
    let len = batch * queries * heads * value;
    let mut out = vec![0.0f32; len];
    let layout = Layout::contiguous(vec![batch, queries, heads, value].into()).transpose(1, 2);
    let (qs, ks, vs) = (Strided::of(&q), Strided::of(&k), Strided::of(&v));
    if keys > 0 && dim > 0 && value > 0 {
        let scale = options
            .scale
            .map_or(1.0 / (dim as f32).sqrt(), |s| s as f32);
        // Which keys each sample hides.
        let hidden: Option<Vec<Hidden>> = hidden.map(|h| h.chunks(keys).map(Hidden::of).collect());
        let blocks: Vec<(usize, usize, usize)> = (0..batch)
            .flat_map(|b| (0..heads).map(move |h| (b, h)))
            .flat_map(|(b, h)| (0..queries).step_by(QUERY_BLOCK).map(move |i| (b, h, i)))
            .collect();
        let out_ptr = SharedOut(out.as_mut_ptr());
        // One scores buffer per worker, reused block after block (gemm
        // overwrites it), rather than a zeroed allocation per block.
        let buffer = || vec![0.0f32; QUERY_BLOCK.min(queries) * keys];
        let run = |scores: &mut Vec<f32>, &(b, h, first): &(usize, usize, usize)| {
            let rows = QUERY_BLOCK.min(queries - first);
            let scores = &mut scores[..rows * keys];
            // SAFETY: `scores` holds rows × keys values; the operands'
            // bounds are asserted by `product`.
            unsafe {
                product(
                    scores.as_mut_ptr(),
                    keys,
                    [rows, keys, dim],
                    qs.matrix(b, h, first, false),
                    ks.matrix(b, h, 0, true),
                    false,
                );
            }
            let hidden = hidden.as_ref().map(|h| &h[b]);
            for (r, row) in scores.chunks_mut(keys).enumerate() {
                let visible = if options.is_causal {
                    first + r + 1
                } else {
                    keys
                };
                match hidden {
                    None => softmax(row, visible, scale),
                    Some(hidden) => softmax_shown(row, visible, hidden, scale),
                }
            }
            let p = Operand {
                data: scores,
                row: keys,
                col: 1,
            };
            let at = ((b * queries + first) * heads + h) * value;
            // SAFETY: the block writes rows first..first + rows of head h
            // (`value` values each, rows `heads · value` apart), which no
            // other block writes; the buffer holds all of them.
            unsafe {
                let dst = out_ptr.at(at);
                product(
                    dst,
                    heads * value,
                    [rows, value, keys],
                    p,
                    vs.matrix(b, h, 0, false),
                    false,
                );
            }
        };
        if batch * heads * queries * keys * (dim + value) < PARALLEL_MIN {
            let mut scores = buffer();
            blocks.iter().for_each(|block| run(&mut scores, block));
        } else {
            blocks.par_iter().for_each_init(buffer, run);
        }
    }
    FlexTensor::new(Bytes::from_elems(out), layout, DType::F32)
}

/// The output buffer shared by the blocks, each writing its own values.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: the blocks write disjoint values (see `attend`).
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer `offset` values in.
    ///
    /// # Safety
    /// `offset` must lie within the buffer.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: the caller keeps `offset` within the buffer.
        unsafe { self.0.add(offset) }
    }
}

super::simd::wide_fn! {
/// Softmax of `scale · row[..visible]` in place; the hidden rest gets 0.
/// A NaN score makes its row NaN, as in Burn's op. Maximum and sum run in
/// eight lanes, so the loops vectorise, compiled for the widest vector
/// instructions the CPU has (the same lanes and order, so the same
/// values).
fn softmax(row: &mut [f32], visible: usize, scale: f32) {
    let (shown, hidden) = row.split_at_mut(visible.min(row.len()));
    hidden.fill(0.0);
    let max = super::log_sum_exp::scaled_max(shown, scale);
    let mut sums = [0.0f32; 8];
    let mut chunks = shown.chunks_exact_mut(8);
    for chunk in &mut chunks {
        for (sum, s) in sums.iter_mut().zip(chunk) {
            *s = super::gelu::exp_non_positive(*s * scale - max);
            *sum += *s;
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for s in chunks.into_remainder() {
        *s = super::gelu::exp_non_positive(*s * scale - max);
        sum += *s;
    }
    let inverse = 1.0 / sum;
    shown.iter_mut().for_each(|s| *s *= inverse);
}
}

/// [`softmax`] of `row` with the keys `hidden` flags hidden as well.
/// Padding hides a run of last keys: then this is [`softmax`] over the
/// keys before it (the hidden ones get exactly 0). Other patterns take a
/// plain loop. A row that sees no key is zeros.
fn softmax_shown(row: &mut [f32], visible: usize, hidden: &Hidden, scale: f32) {
    match *hidden {
        Hidden::After(shown) => softmax(row, visible.min(shown), scale),
        Hidden::Flags(flags) => softmax_flags(row, visible, flags, scale),
    }
}

/// The keys one sample hides.
enum Hidden<'a> {
    /// Every key from this one on (and none before).
    After(usize),
    /// Hidden where true.
    Flags(&'a [bool]),
}

impl<'a> Hidden<'a> {
    fn of(flags: &'a [bool]) -> Self {
        let shown = flags.iter().position(|&h| h).unwrap_or(flags.len());
        if flags[shown..].iter().all(|&h| h) {
            Self::After(shown)
        } else {
            Self::Flags(flags)
        }
    }
}

/// [`softmax_shown`] for any pattern of hidden keys: their weight is 0, and
/// they take no part in the maximum or the sum (a NaN there is ignored,
/// as by Burn's op).
fn softmax_flags(row: &mut [f32], visible: usize, hidden: &[bool], scale: f32) {
    let (shown, rest) = row.split_at_mut(visible.min(row.len()));
    rest.fill(0.0);
    let mut max = f32::NEG_INFINITY;
    for (&s, &h) in shown.iter().zip(hidden) {
        if !h {
            max = max.max(s * scale);
        }
    }
    if max == f32::NEG_INFINITY {
        shown.fill(0.0);
        return;
    }
    let mut sum = 0.0f32;
    for (s, &h) in shown.iter_mut().zip(hidden) {
        *s = if h {
            0.0
        } else {
            super::gelu::exp_non_positive(*s * scale - max)
        };
        sum += *s;
    }
    let inverse = 1.0 / sum;
    shown.iter_mut().for_each(|s| *s *= inverse);
}
