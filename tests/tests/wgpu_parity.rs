//! The slice's forward pass, and every pretrained encoder's, on wgpu equals
//! the CPU (Flex) result.
//!
//! In CI this runs on Mesa's lavapipe (a Vulkan driver on the CPU) with
//! WGSL shaders. Tolerance: 1e-4 absolute on softmax probabilities (f32,
//! different summation order in matmul and convolution kernels).

use burn::prelude::*;
use burn::tensor::activation::softmax;
use polymodal::train::Classifier;
use polymodal::{FusionKind, Modality};
use polymodal_tests::{HostBatch, N, ParamGrads, classifier, classifier_for};

const TOLERANCE: f32 = 1e-4;

/// Burn's random stream is per device and shared by a process's threads:
/// tests that seed it and initialise models hold this, so their weights are
/// the same on every run.
static RANDOM: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn forward_pass_matches_the_cpu() {
    let Some(gpu) = polymodal::wgpu::wgpu_for_tests() else {
        return;
    };
    let _random = RANDOM.lock().unwrap_or_else(|p| p.into_inner());
    let cpu = Device::flex();
    cpu.seed(11);
    let host = HostBatch::random();
    for fusion in [FusionKind::Concat, FusionKind::SingleStream] {
        let config = classifier(fusion, Modality::ALL.to_vec());
        let model = config.init(&cpu).unwrap();
        let expected = softmax(model.logits(&host.on(&cpu)).unwrap(), 1);
        let on_gpu = model.to_device(&gpu);
        let actual = softmax(on_gpu.logits(&host.on(&gpu)).unwrap(), 1).to_device(&cpu);
        let diff = (expected.clone() - actual).abs().max().into_scalar::<f32>();
        eprintln!("{fusion:?}: max |wgpu - cpu| = {diff:e}");
        assert!(
            diff <= TOLERANCE,
            "{fusion:?}: wgpu differs from the CPU by {diff} (tolerance {TOLERANCE})"
        );
        // Guard against a trivially constant output.
        let spread = (expected.clone().max() - expected.min()).into_scalar::<f32>();
        assert!(spread > 1e-3, "{fusion:?}: degenerate output");
    }
}

/// The pretrained encoders (the parity fixtures' tiny models), loaded on each
/// device from the same files, give the same outputs on wgpu as on the CPU
/// (within 1e-4), and the same gradient of a fixed linear read-out for
/// every parameter (within 2e-3 relative in norm).
#[test]
fn pretrained_encoders_agree_on_wgpu() {
    let Some(gpu) = polymodal::wgpu::wgpu_for_tests() else {
        return;
    };
    let runs = polymodal_tests::pretrained_encoders();
    let cpu = Device::flex();
    for (name, run) in runs {
        let expected = run(&cpu).values;
        let actual = run(&gpu).values;
        assert_eq!(
            expected.len(),
            actual.len(),
            "{name}: {} values on the CPU, {} on wgpu",
            expected.len(),
            actual.len()
        );
        let diff = expected
            .iter()
            .zip(&actual)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // Backward: the gradient of Σ w ⊙ out for every parameter.
        let grads_cpu = run(&cpu.clone().autodiff()).grads;
        let grads_gpu = run(&gpu.clone().autodiff()).grads;
        let worst = worst_gradient(&grads_cpu, &grads_gpu);
        eprintln!(
            "{name}: max |wgpu - cpu| = {diff:e}; {} parameter gradients, worst rel diff {worst:e}",
            grads_cpu.len()
        );
        assert!(
            diff <= TOLERANCE,
            "{name}: wgpu differs from the CPU by {diff}"
        );
        assert!(
            !grads_cpu.is_empty() && grads_cpu.len() == grads_gpu.len(),
            "{name}: gradients"
        );
        assert!(
            worst < 2e-3,
            "{name}: a gradient differs by {worst} of its norm"
        );
    }
}

/// The largest distance between matching gradients, relative to the CPU
/// gradient's norm (or to a thousandth of the largest norm, for a parameter
/// with next to no gradient). A norm, not the largest element: where a ReLU
/// input sits at zero the two backends may round it to different sides,
/// which moves single elements only.
fn worst_gradient(cpu: &[Vec<f32>], gpu: &[Vec<f32>]) -> f32 {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let largest = cpu.iter().map(|g| norm(g)).fold(0.0f32, f32::max);
    assert_eq!(
        cpu.len(),
        gpu.len(),
        "{} gradients on the CPU, {} on wgpu",
        cpu.len(),
        gpu.len()
    );
    cpu.iter().zip(gpu).fold(0.0f32, |worst, (c, g)| {
        assert_eq!(
            c.len(),
            g.len(),
            "a gradient of {} values on the CPU, {} on wgpu",
            c.len(),
            g.len()
        );
        let diff: Vec<f32> = c.iter().zip(g).map(|(a, b)| a - b).collect();
        worst.max(norm(&diff) / norm(c).max(1e-3 * largest))
    })
}

/// Switches every training flag off (dropout, batch-norm statistics
/// updates) while the module stays on an autodiff device: the same
/// deterministic function on both backends, still differentiable.
struct Deterministic;

impl burn::module::ModuleMapper for Deterministic {
    fn map_flag(
        &mut self,
        _: burn::module::Param<burn::module::Flag>,
    ) -> burn::module::Param<burn::module::Flag> {
        burn::module::Param::<burn::module::Flag>::from_bool(false)
    }
}

/// The conformance suite: the whole classifier (every modality's encoder,
/// then each fusion method, head and loss) forward and backward on wgpu
/// equals the CPU: the loss within 1e-4 relative, every parameter's
/// gradient within 2e-3 relative in norm (f32 with different summation
/// orders; the backward pass sums over batch and sequence; measured 6e-4 at
/// worst).
#[test]
fn every_fusion_method_trains_the_same_on_wgpu() {
    let Some(gpu) = polymodal::wgpu::wgpu_for_tests() else {
        return;
    };
    let _random = RANDOM.lock().unwrap_or_else(|p| p.into_inner());
    let (cpu, gpu) = (Device::flex().autodiff(), gpu.autodiff());
    cpu.seed(3);
    let host = HostBatch::random();
    // Fixed weights of the scalar loss Σ w ⊙ softmax(logits).
    let weights: Vec<f32> = (0..N * 6)
        .map(|i| ((i * 7) % 11) as f32 / 11.0 - 0.4)
        .collect();
    for fusion in FusionKind::ALL {
        let config = classifier_for(fusion);
        let model = config.init(&cpu).unwrap().map(&mut Deterministic);
        let run = |model: &polymodal::MultimodalClassifier, device: &Device| {
            let (logits, extra) = model.training_output(&host.on(device)).unwrap();
            let w = Tensor::<2>::from_data(TensorData::new(weights.clone(), [N, 6]), device);
            let mut loss = (softmax(logits, 1) * w).sum();
            if let Some(extra) = extra {
                loss = loss + extra.sum();
            }
            let grads = loss.backward();
            let mut visitor = ParamGrads {
                grads: &grads,
                cpu: Device::flex(),
                out: Vec::new(),
            };
            model.visit(&mut visitor);
            (loss.into_scalar::<f32>(), visitor.out)
        };
        let (loss_cpu, grads_cpu) = run(&model, &cpu);
        let (loss_gpu, grads_gpu) = run(&model.clone().fork(&gpu), &gpu);
        let loss_diff = (loss_cpu - loss_gpu).abs() / loss_cpu.abs().max(1e-3);
        assert!(
            loss_diff < 1e-4,
            "{fusion:?}: loss {loss_cpu} vs {loss_gpu}"
        );
        assert_eq!(
            grads_cpu.len(),
            grads_gpu.len(),
            "{fusion:?}: gradient count"
        );
        assert!(!grads_cpu.is_empty(), "{fusion:?}: no gradients");
        let worst = worst_gradient(&grads_cpu, &grads_gpu);
        eprintln!(
            "{fusion:?}: loss rel diff {loss_diff:e}, {} parameter gradients, worst rel diff {worst:e}",
            grads_cpu.len()
        );
        assert!(
            worst < 2e-3,
            "{fusion:?}: a gradient differs by {worst} of its norm"
        );
    }
}
