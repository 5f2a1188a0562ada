//! `log Σ exp(x)` over a host slice in eight lanes with the branch-free
//! exponential of the GELU fast path: a beam search step normalises five
//! rows of 51,864 logits and its timestamp rule sums them twice more, where
//! libm's scalar `expf` per value was most of the step's host work.

use super::gelu::exp_non_positive;

super::simd::wide_fn! {
/// `log Σ exp(v)` over `values`: −∞ when none is above −∞ (or there are
/// none), NaN when one is NaN or +∞. Relative error of the sum's terms
/// below 1e-8; terms below e^−87 count as e^−87 (≈ 1.6e-38). Compiled for
/// the widest vector instructions the CPU has.
pub fn log_sum_exp(values: &[f32]) -> f32 {
    let max = scaled_max(values, 1.0);
    if max == f32::NEG_INFINITY {
        return max;
    }
    let mut sums = [0.0f32; 8];
    let mut chunks = values.chunks_exact(8);
    for chunk in &mut chunks {
        for (sum, &v) in sums.iter_mut().zip(chunk) {
            *sum += exp_non_positive(v - max);
        }
    }
    let rest: f32 = chunks
        .remainder()
        .iter()
        .map(|&v| exp_non_positive(v - max))
        .sum();
    max + (sums.iter().sum::<f32>() + rest).ln()
}
}

/// The largest of `scale · v` over `values` (−∞ for none), in eight lanes
/// so the loop vectorises; `max` passes over NaN, which the caller's
/// exponential brings back. Shared with the attention softmax.
#[inline(always)]
pub(super) fn scaled_max(values: &[f32], scale: f32) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = values.chunks_exact(8);
    for chunk in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = m.max(v * scale);
        }
    }
    chunks.remainder().iter().fold(
        lanes.into_iter().fold(f32::NEG_INFINITY, f32::max),
        |m, &v| m.max(v * scale),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sum in f64 with std's exponential.
    fn reference(values: &[f32]) -> f32 {
        let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        if max == f64::NEG_INFINITY {
            return f32::NEG_INFINITY;
        }
        let sum: f64 = values.iter().map(|&v| (v as f64 - max).exp()).sum();
        (max + sum.ln()) as f32
    }

    #[test]
    fn log_sum_exp_matches_f64_on_logits_with_suppressed_tokens() {
        // Logit-like values, every seventh suppressed, lengths around the
        // lanes and a vocabulary's.
        for len in [1, 7, 8, 9, 17, 1000, 51_864] {
            let values: Vec<f32> = (0..len)
                .map(|i| {
                    if i % 7 == 3 {
                        f32::NEG_INFINITY
                    } else {
                        ((i * 7919) % 2003) as f32 / 100.0 - 10.0
                    }
                })
                .collect();
            let (ours, want) = (log_sum_exp(&values), reference(&values));
            assert!(
                (ours - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{len}: {ours} vs {want}"
            );
        }
    }

    #[test]
    fn log_sum_exp_edges() {
        assert_eq!(log_sum_exp(&[]), f32::NEG_INFINITY);
        assert_eq!(log_sum_exp(&[f32::NEG_INFINITY; 11]), f32::NEG_INFINITY);
        assert!(log_sum_exp(&[0.0, f32::NAN, 1.0]).is_nan());
        assert!(log_sum_exp(&[0.0, f32::INFINITY]).is_nan());
        // Large values do not overflow.
        let big = log_sum_exp(&[1000.0, 1000.0]);
        assert!((big - (1000.0 + 2f32.ln())).abs() < 1e-3, "{big}");
    }
}
