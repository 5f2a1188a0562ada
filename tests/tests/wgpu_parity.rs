//! The slice's forward pass on wgpu equals the CPU (Flex) result.
//!
//! In CI this runs on Mesa's lavapipe (a Vulkan driver on the CPU) with
//! WGSL shaders. Tolerance: 1e-4 absolute on softmax probabilities (f32,
//! different summation order in matmul and convolution kernels).

use burn::prelude::*;
use burn::tensor::activation::softmax;
use polymodal::train::Classifier;
use polymodal::{
    ClassifierConfig, FusionKind, Modality, ModalityBatch, MultimodalBatch, Targets, TokenBatch,
};

const TOLERANCE: f32 = 1e-4;

fn wgpu_or_skip() -> Option<Device> {
    match polymodal::wgpu::wgpu_device(DeviceKind::DefaultDevice) {
        Ok(device) => Some(device),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI must run the wgpu test (install mesa-vulkan-drivers): {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            None
        }
    }
}

/// Random inputs on the host, built into a batch on any device the way the
/// `Batcher` builds them (from host data, not by moving tensors).
struct HostBatch {
    image: Vec<f32>,
    audio: Vec<f32>,
    video: Vec<f32>,
}

const N: usize = 3;

impl HostBatch {
    fn random() -> Self {
        // A fixed linear congruential sequence: the same inputs on every run.
        let mut state = 12345u64;
        let mut values = |len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect()
        };
        Self {
            image: values(N * 3 * 32 * 32),
            audio: values(N * 32 * 32),
            video: values(N * 4 * 3 * 32 * 32),
        }
    }

    fn on(&self, device: &Device) -> MultimodalBatch {
        let present = |flags: [bool; N]| {
            Tensor::<1, Bool>::from_data(TensorData::new(flags.to_vec(), [N]), device)
        };
        let ids: Vec<i64> = vec![2, 7, 9, 3, 0, 2, 11, 3, 0, 0, 2, 5, 6, 8, 3];
        let mask: Vec<bool> = ids.iter().map(|&id| id != 0).collect();
        let float = |values: &[f32], shape: Vec<usize>| TensorData::new(values.to_vec(), shape);
        MultimodalBatch {
            text: Some(ModalityBatch {
                input: TokenBatch {
                    ids: Tensor::from_data(TensorData::new(ids, [N, 5]), device),
                    mask: Tensor::from_data(TensorData::new(mask, [N, 5]), device),
                },
                present: present([true; N]),
            }),
            image: Some(ModalityBatch {
                input: Tensor::from_data(float(&self.image, vec![N, 3, 32, 32]), device),
                present: present([true; N]),
            }),
            audio: Some(ModalityBatch {
                input: Tensor::from_data(float(&self.audio, vec![N, 1, 32, 32]), device),
                present: present([true, false, true]),
            }),
            video: Some(ModalityBatch {
                input: Tensor::from_data(float(&self.video, vec![N, 4, 3, 32, 32]), device),
                present: present([true, true, false]),
            }),
            targets: Targets::Classes(Tensor::from_data(
                TensorData::new(vec![0i64, 1, 2], [N]),
                device,
            )),
        }
    }
}

#[test]
fn forward_pass_matches_the_cpu() {
    let Some(gpu) = wgpu_or_skip() else { return };
    let cpu = Device::flex();
    cpu.seed(11);
    let host = HostBatch::random();
    for fusion in [FusionKind::Concat, FusionKind::SingleStream] {
        let config = ClassifierConfig {
            modalities: Modality::ALL.to_vec(),
            fusion,
            classes: 6,
            dim: 16,
            vocab_size: 12,
            max_tokens: 8,
            channels: 3,
            modality_dropout: 0.0,
            contrastive_weight: 1.0,
            multi_label: false,
        };
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
