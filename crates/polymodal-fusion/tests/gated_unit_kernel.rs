//! The gated-unit kernel, forward and backward, against the same function
//! written with Burn's ops (differentiated by Burn's autodiff), on the CPU
//! (the op's CPU implementation) and on wgpu (the CubeCL kernels; Mesa's
//! lavapipe in CI).

use burn::prelude::*;
use polymodal_fusion::kernel::{gated_unit, gated_unit_unfused};

/// More samples than the CPU implementation does on one thread, and not a
/// multiple of the core count, so its split between cores is exercised.
const BATCH: usize = 37;
const MODALITIES: usize = 3;
const HIDDEN: usize = 37;

/// Fixed pseudo-random values in [-2, 2).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

struct Inputs {
    scores: Tensor<3>,
    candidates: Tensor<3>,
    present: Tensor<2>,
    /// Weights of the loss `Σ w ⊙ h`.
    weights: Tensor<2>,
}

/// Sample 1 lacks modality 2, sample 3 has none at all.
fn inputs(device: &Device) -> Inputs {
    let shape = [BATCH, MODALITIES, HIDDEN];
    let mut present = vec![1.0f32; BATCH * MODALITIES];
    present[MODALITIES + 2] = 0.0;
    present[3 * MODALITIES..4 * MODALITIES].fill(0.0);
    Inputs {
        scores: Tensor::from_data(
            TensorData::new(values(BATCH * MODALITIES * HIDDEN, 1), shape),
            device,
        ),
        candidates: Tensor::from_data(
            TensorData::new(values(BATCH * MODALITIES * HIDDEN, 2), shape),
            device,
        ),
        present: Tensor::from_data(TensorData::new(present, [BATCH, MODALITIES]), device),
        weights: Tensor::from_data(
            TensorData::new(values(BATCH * HIDDEN, 3), [BATCH, HIDDEN]),
            device,
        ),
    }
}

fn max_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

fn max_diff3(a: Tensor<3>, b: Tensor<3>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

type Op = fn(Tensor<3>, Tensor<3>, Tensor<2>) -> polymodal_core::Result<Tensor<2>>;

/// `h` and the gradients of `Σ w ⊙ h` with respect to scores and candidates.
fn run(op: Op, device: &Device) -> (Tensor<2>, Tensor<3>, Tensor<3>) {
    let x = inputs(device);
    let scores = x.scores.require_grad();
    let candidates = x.candidates.require_grad();
    let h = op(scores.clone(), candidates.clone(), x.present).unwrap();
    let grads = (h.clone() * x.weights).sum().backward();
    (
        h.detach(),
        scores.grad(&grads).expect("a gradient for the scores"),
        candidates
            .grad(&grads)
            .expect("a gradient for the candidates"),
    )
}

fn compare(device: &Device, name: &str) {
    let (h, ds, du) = run(gated_unit, device);
    let (h_ref, ds_ref, du_ref) = run(gated_unit_unfused, device);
    let (dh, dds, ddu) = (
        max_diff(h.clone(), h_ref),
        max_diff3(ds, ds_ref),
        max_diff3(du, du_ref),
    );
    eprintln!("{name}: max |diff| h {dh:e}, dscores {dds:e}, dcandidates {ddu:e}");
    assert!(
        dh < 1e-5 && dds < 1e-5 && ddu < 1e-5,
        "{name}: {dh} {dds} {ddu}"
    );
    // The sample with no modality gets zeros.
    let empty = h.slice([3..4, 0..HIDDEN]).abs().max().into_scalar::<f32>();
    assert_eq!(empty, 0.0);
}

#[test]
fn forward_and_backward_match_burn_ops_on_the_cpu() {
    compare(&Device::flex().autodiff(), "cpu");
}

#[test]
fn forward_and_backward_match_burn_ops_on_wgpu() {
    let Some(device) = polymodal_wgpu::wgpu_for_tests() else {
        return;
    };
    compare(&device.clone().autodiff(), "wgpu");
    // Without autodiff the same kernel runs.
    let x = inputs(&device);
    let fused = gated_unit(x.scores.clone(), x.candidates.clone(), x.present.clone()).unwrap();
    let unfused = gated_unit_unfused(x.scores, x.candidates, x.present).unwrap();
    assert!(max_diff(fused, unfused) < 1e-5);
}

#[test]
fn it_trains() {
    // Gradient descent through the kernel fits targets the unit can reach.
    let device = match polymodal_wgpu::wgpu_for_tests() {
        Some(device) => device,
        None => Device::flex(),
    }
    .autodiff();
    let x = inputs(&device);
    let target = gated_unit_unfused(x.candidates.clone(), x.scores.clone(), x.present.clone())
        .unwrap()
        .detach();
    let (mut scores, mut candidates) = (x.scores * 0.0, x.candidates * 0.1);
    let loss = |s: &Tensor<3>, c: &Tensor<3>| {
        let h = gated_unit(s.clone(), c.clone(), x.present.clone()).unwrap();
        (h - target.clone()).powi_scalar(2).mean()
    };
    let first = loss(&scores, &candidates).into_scalar::<f32>();
    for _ in 0..300 {
        let (s, c) = (
            scores.detach().require_grad(),
            candidates.detach().require_grad(),
        );
        let grads = loss(&s, &c).backward();
        scores = s.clone() - s.grad(&grads).unwrap() * 20.0;
        candidates = c.clone() - c.grad(&grads).unwrap() * 20.0;
    }
    let last = loss(&scores.detach(), &candidates.detach()).into_scalar::<f32>();
    assert!(last < first * 0.05, "loss {first} -> {last}");
}

#[test]
fn mismatched_shapes_are_errors() {
    let device = Device::flex();
    let scores = Tensor::<3>::zeros([2, 3, 4], &device);
    let err = gated_unit(
        scores.clone(),
        Tensor::zeros([2, 3, 5], &device),
        Tensor::ones([2, 3], &device),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("must match"), "{err}");
    assert!(gated_unit(scores.clone(), scores, Tensor::ones([2, 2], &device)).is_err());
}

#[test]
fn mixed_or_unsupported_dtypes_are_errors() {
    use burn::tensor::DType;
    let device = Device::flex();
    let scores = Tensor::<3>::zeros([2, 3, 4], &device);
    let present = Tensor::<2>::ones([2, 3], &device);
    let err = gated_unit(
        scores.clone(),
        scores.clone().cast(DType::F16),
        present.clone(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("must all be f32 or all f16"), "{err}");
    let doubles = |t: Tensor<3>| t.cast(DType::F64);
    assert!(
        gated_unit(
            doubles(scores.clone()),
            doubles(scores),
            present.cast(DType::F64)
        )
        .is_err()
    );
}

/// In f16 the CPU path computes in f32 and gives f16 back, within f16's
/// rounding of the definition computed by hand in f64.
#[test]
fn f16_on_the_cpu_goes_through_f32() {
    use burn::tensor::DType;
    let device = Device::flex();
    // [sample][modality][hidden]
    let (s, u) = ([[0.5f32, -1.0], [2.0, 0.25]], [[1.0f32, 0.5], [-0.5, 2.0]]);
    let scores = Tensor::<3>::from_data([s], &device);
    let candidates = Tensor::<3>::from_data([u], &device);
    let present = Tensor::<2>::from_data([[1.0f32, 1.0]], &device);
    let half = |t: Tensor<3>| t.cast(DType::F16);
    let out = gated_unit(half(scores), half(candidates), present.cast(DType::F16)).unwrap();
    assert_eq!(out.dtype(), DType::F16);
    let got = out.cast(DType::F32).try_into_vec_as::<f32>().unwrap();
    // h_j = Σ_m softmax_m(s_mj) · tanh(u_mj), both modalities present.
    let expected: Vec<f64> = (0..2)
        .map(|j| {
            let e = [(s[0][j] as f64).exp(), (s[1][j] as f64).exp()];
            (0..2)
                .map(|m| e[m] / (e[0] + e[1]) * (u[m][j] as f64).tanh())
                .sum()
        })
        .collect();
    assert_eq!(got.len(), expected.len(), "h: computed vs expected values");
    for (g, e) in got.iter().zip(&expected) {
        // f16 inputs and output: about 3 significant decimals.
        assert!((*g as f64 - e).abs() < 2e-3, "{got:?} vs {expected:?}");
    }
}
