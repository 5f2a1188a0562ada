//! The exact GELU on Flex: Flex evaluates libm's scalar `erff` one element
//! at a time on one thread, a quarter of all-MiniLM-L6-v2's time at batch 32.
//! Here the error function is a short polynomial with its own exponential
//! (plain arithmetic the compiler vectorises, AVX2 when the CPU has it),
//! split over the cores.

use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::DType;

/// Element counts below this run on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;

/// The exact GELU, x·Φ(x) = x/2·(1 + erf(x/√2)), as
/// `burn::tensor::activation::gelu`; on the CPU backend in f32 without
/// autodiff it runs vectorised on every core (absolute difference to
/// libm's below 1e-6 for |x| ≤ 10, tested).
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.dtype() != DType::F32 {
        return burn::tensor::activation::gelu(x);
    }
    match super::untracked_flex(x.into_dispatch()) {
        Ok(tensor) => super::from_untracked_flex(gelu_flex(tensor)),
        Err(other) => burn::tensor::activation::gelu(Tensor::from_dispatch(*other)),
    }
}

/// In place when the tensor owns a contiguous buffer, else on a copy.
fn gelu_flex(tensor: FlexTensor) -> FlexTensor {
    let mut tensor =
        if tensor.is_unique() && tensor.is_contiguous() && tensor.layout().start_offset() == 0 {
            tensor
        } else {
            tensor.to_contiguous()
        };
    let n = tensor.layout().num_elements();
    let values = &mut tensor.storage_mut::<f32>()[..n];
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    if n < PARALLEL_MIN || threads == 1 {
        gelu_slice(values);
    } else {
        let chunk = n.div_ceil(threads);
        std::thread::scope(|scope| {
            let mut parts = values.chunks_mut(chunk);
            let first = parts.next();
            for part in parts {
                scope.spawn(move || gelu_slice(part));
            }
            if let Some(first) = first {
                gelu_slice(first);
            }
        });
    }
    tensor
}

super::simd::wide_fn! {
/// GELU over `values`, compiled for the widest vector instructions the CPU
/// has.
fn gelu_slice(values: &mut [f32]) {
    for v in values.iter_mut() {
        *v = gelu_scalar(*v);
    }
}
}

/// x/2·(1 + erf(x/√2)).
#[inline(always)]
pub(crate) fn gelu_scalar(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The error function by Abramowitz & Stegun 7.1.26 (absolute error below
/// 1.5e-7, 5.3e-7 once evaluated in f32): 1 − t·(a1 + t·(a2 + …))·e^(−x²),
/// t = 1/(1 + p·|x|), odd in x.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152,
        1.061_405_4,
    ];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let magnitude = 1.0 - poly * exp_non_positive(-a * a);
    magnitude.copysign(x)
}

/// e^v for v ≤ 0 (down to where it underflows to 0; NaN for NaN), with the same branch-free
/// code for every element: v = k·ln 2 + r, e^v = 2^k·e^r, e^r by its Taylor
/// series to r⁷ (|r| ≤ ln 2 / 2, relative error below 1e-8).
#[inline(always)]
pub(super) fn exp_non_positive(v: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and removing 1.5·2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    // A comparison rather than `max`, so a NaN stays NaN.
    let v = if v < -87.0 { -87.0 } else { v };
    // k sits in the low bits of `shifted`'s mantissa (its exponent is that
    // of ROUND for every k in −126..=0).
    let shifted = v * std::f32::consts::LOG2_E + ROUND;
    let k = shifted - ROUND;
    let r = v - k * LN2_HI - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))))));
    // 2^k from those bits in integer lanes: `k as i32` (a saturating
    // conversion) compiled to one scalar conversion per lane and was most
    // of the attention softmax's time.
    let k_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(k_bits.wrapping_add(127) << 23);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_libm() {
        let mut worst = 0.0f32;
        for i in -60_000..=60_000 {
            let x = i as f32 * 1e-4;
            worst = worst.max((erf(x) - libm_erf(x)).abs());
        }
        // The formula is within 1.5e-7; f32 rounding of 1 − (≈1) adds the rest.
        assert!(worst < 1e-6, "max |erf - libm| = {worst}");
    }

    fn libm_erf(x: f32) -> f32 {
        // f64 via the standard library's own erf is not stable; use Burn's.
        let t = Tensor::<1>::from_floats([x], &Device::flex());
        t.erf().into_scalar::<f32>()
    }

    #[test]
    fn exp_matches_std() {
        for i in 0..=87_000 {
            let v = -(i as f32) * 1e-3;
            let (ours, reference) = (exp_non_positive(v), v.exp());
            assert!(
                (ours - reference).abs() <= 2e-7 * reference + 1e-37,
                "e^{v}: {ours} vs {reference}"
            );
        }
        assert_eq!(
            exp_non_positive(-200.0),
            0.0f32.max(exp_non_positive(-200.0))
        );
    }

    #[test]
    fn gelu_matches_burn_on_flex() {
        let device = Device::flex();
        // Large enough to take the threaded path, with extremes and NaN.
        let mut values: Vec<f32> = (0..100_000).map(|i| (i as f32 - 50_000.0) * 2e-4).collect();
        values.extend([30.0, -30.0, 1e-30, -1e-30, 0.0]);
        let x = Tensor::<1>::from_floats(values.as_slice(), &device);
        let ours = gelu(x.clone()).try_into_vec_as::<f32>().unwrap();
        let burn = burn::tensor::activation::gelu(x)
            .try_into_vec_as::<f32>()
            .unwrap();
        let worst = ours
            .iter()
            .zip(&burn)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-6, "max |ours - burn| = {worst}");
        let nan = gelu(Tensor::<1>::from_floats([f32::NAN], &device)).into_scalar::<f32>();
        assert!(nan.is_nan());
    }

    #[test]
    fn views_and_autodiff_take_the_general_path() {
        let device = Device::flex();
        let x = Tensor::<2>::from_floats([[-1.0, 0.5], [2.0, -3.0]], &device);
        // A transposed view is copied, not written through.
        let t = x.clone().transpose();
        let expected = burn::tensor::activation::gelu(t.clone()).into_data();
        gelu(t)
            .into_data()
            .assert_approx_eq::<f32>(&expected, Default::default());
        assert_eq!(
            x.clone().try_into_vec_as::<f32>().unwrap(),
            vec![-1.0, 0.5, 2.0, -3.0]
        );
        let tracked = Tensor::<2>::from_floats([[-1.0, 0.5]], &device.autodiff()).require_grad();
        let grads = gelu(tracked.clone()).sum().backward();
        let grad = tracked.grad(&grads).expect("gelu is differentiable");
        assert_eq!(grad.dims(), [1, 2]);
    }
}
