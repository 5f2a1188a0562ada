//! `x · wᵀ` for a handful of rows `x` against a wide row-major `w` (a
//! language model's tied output projection: whisper-tiny.en's 51,864 ×
//! 384 token embeddings), on Flex in f32 without autodiff.
//!
//! gemm handles this shape badly: with five rows (a 5-beam search step) it
//! packs the whole 80 MB matrix and runs its 16-row microkernel with five
//! rows filled, 7–10 ms a step where reading the matrix once takes 3 ms.
//! Here every row of `w` is read once, straight from memory, and dotted
//! with all the rows of `x` (which stay in L1) in registers.

use burn::backend::Bytes;
use burn::backend::flex::{FlexTensor, Layout};
use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

use super::{from_untracked_flex, untracked_flex};

/// The most rows of `x` the fast path takes: two registers of sums each,
/// plus two of `w` and one of `x`, fill 15 of AVX2's 16 (a 5-beam step
/// has five rows).
pub const MAX_ROWS: usize = 6;

/// Rows of `w` per task.
const CHUNK: usize = 1024;

/// `x` `[rows, k]` times the transpose of `w` `[n, k]`: `[rows, n]`, as
/// `x.matmul(w.transpose())`. For up to [`MAX_ROWS`] rows of f32 tensors
/// on Flex outside autodiff, with `w` contiguous, it runs here; otherwise
/// Burn's product, as `(w · xᵀ)ᵀ`: on Flex the transposed wide matrix on
/// the right was 7x slower (77 against 10 ms for a row against
/// whisper-tiny.en's embeddings).
pub fn matmul_transposed(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    let [rows, k] = x.dims();
    let [n, wk] = w.dims();
    let fits = (1..=MAX_ROWS).contains(&rows)
        && k == wk
        && k > 0
        && n > 0
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32;
    if !fits {
        return burn_product(x, w);
    }
    match (
        untracked_flex(x.into_dispatch()),
        untracked_flex(w.into_dispatch()),
    ) {
        (Ok(x), Ok(w)) if w.layout().is_contiguous() => {
            from_untracked_flex(product(&x.to_contiguous(), &w, rows, n, k))
        }
        (x, w) => {
            let back = |t: Result<FlexTensor, Box<_>>| match t {
                Ok(t) => from_untracked_flex::<2>(t),
                Err(other) => Tensor::from_dispatch(*other),
            };
            burn_product(back(x), back(w))
        }
    }
}

/// `x · wᵀ` by Burn's product, with `w` on the left.
fn burn_product(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    w.matmul(x.transpose()).transpose()
}

/// The product into an `[n, rows]` buffer (each task writes the results of
/// its own rows of `w`), returned as its `[rows, n]` transposed view.
/// (Writing `[rows, n]` directly, through a small buffer per task, was no
/// faster end to end.)
fn product(x: &FlexTensor, w: &FlexTensor, rows: usize, n: usize, k: usize) -> FlexTensor {
    let xs = &x.storage::<f32>()[x.layout().start_offset()..][..rows * k];
    let ws = &w.storage::<f32>()[w.layout().start_offset()..][..n * k];
    let mut out = vec![0.0f32; n * rows];
    let task = |(chunk, dst): (usize, &mut [f32])| {
        let first = chunk * CHUNK;
        let count = dst.len() / rows;
        dots(xs, rows, &ws[first * k..(first + count) * k], k, dst);
    };
    if n * rows * k < 1 << 16 {
        out.chunks_mut(CHUNK * rows).enumerate().for_each(task);
    } else {
        out.par_chunks_mut(CHUNK * rows).enumerate().for_each(task);
    }
    let layout = Layout::contiguous(vec![n, rows].into()).transpose(0, 1);
    FlexTensor::new(Bytes::from_elems(out), layout, DType::F32)
}

/// `dst[j · rows + r] = x[r] · w[j]` for every row `j` of `w` (`k` wide).
fn dots(x: &[f32], rows: usize, w: &[f32], k: usize, dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features; the slices' lengths are as the
        // caller computed them (`rows · k`, `count · k`, `count · rows`).
        unsafe {
            match rows {
                1 => return avx2::dots::<1>(x, w, k, dst),
                2 => return avx2::dots::<2>(x, w, k, dst),
                3 => return avx2::dots::<3>(x, w, k, dst),
                4 => return avx2::dots::<4>(x, w, k, dst),
                5 => return avx2::dots::<5>(x, w, k, dst),
                6 => return avx2::dots::<6>(x, w, k, dst),
                // More rows than registers: the portable loop below.
                _ => {}
            }
        }
    }
    for (row, out) in w.chunks_exact(k).zip(dst.chunks_exact_mut(rows)) {
        for (o, xr) in out.iter_mut().zip(x.chunks_exact(k)) {
            *o = xr.iter().zip(row).map(|(a, b)| a * b).sum();
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// [`super::dots`] for `R` rows: each row's sum in two registers of
    /// eight lanes (even and odd blocks of eight), so twice as many
    /// independent chains cover the FMA's latency (2.8 against 3.6 ms for
    /// five rows of tiny.en's embeddings on two cores here); the tail of
    /// `k` beyond a multiple of 16 in scalars. (Two or four rows of `w` at a
    /// time ran 1.5–1.8x slower.)
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA (`x` holding `R · k` values is
    /// asserted).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dots<const R: usize>(x: &[f32], w: &[f32], k: usize, dst: &mut [f32]) {
        assert!(x.len() >= R * k);
        let body = k / 16 * 16;
        for (row, out) in w.chunks_exact(k).zip(dst.chunks_exact_mut(R)) {
            let mut even = [_mm256_setzero_ps(); R];
            let mut odd = [_mm256_setzero_ps(); R];
            let mut i = 0;
            while i < body {
                // SAFETY: i + 16 ≤ k, within `row` and each row of `x`.
                unsafe {
                    let v = _mm256_loadu_ps(row.as_ptr().add(i));
                    let u = _mm256_loadu_ps(row.as_ptr().add(i + 8));
                    for r in 0..R {
                        let at = x.as_ptr().add(r * k + i);
                        even[r] = _mm256_fmadd_ps(v, _mm256_loadu_ps(at), even[r]);
                        odd[r] = _mm256_fmadd_ps(u, _mm256_loadu_ps(at.add(8)), odd[r]);
                    }
                }
                i += 16;
            }
            for (r, o) in out.iter_mut().enumerate() {
                let mut lanes = [0.0f32; 8];
                // SAFETY: `lanes` holds eight values.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(even[r], odd[r])) };
                let tail: f32 = (body..k).map(|j| row[j] * x[r * k + j]).sum();
                *o = lanes.iter().sum::<f32>() + tail;
            }
        }
    }
}
