//! The slice's forward pass on wgpu equals the CPU (Flex) result.
//!
//! In CI this runs on Mesa's lavapipe (a Vulkan driver on the CPU) with
//! WGSL shaders. Tolerance: 1e-4 absolute on softmax probabilities (f32,
//! different summation order in matmul and convolution kernels).

use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::softmax;
use polymodal::train::Classifier;
use polymodal::{
    ClassifierConfig, FusionKind, Modality, ModalityBatch, MultimodalBatch, TokenBatch,
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

fn batch(device: &Device) -> MultimodalBatch {
    let n = 3;
    let present = |flags: [bool; 3]| Tensor::<1, Bool>::from_data(flags, device);
    let ids =
        Tensor::<2, Int>::from_data([[2, 7, 9, 3, 0], [2, 11, 3, 0, 0], [2, 5, 6, 8, 3]], device);
    MultimodalBatch {
        text: Some(ModalityBatch {
            input: TokenBatch {
                ids: ids.clone(),
                mask: ids.not_equal_elem(0),
            },
            present: present([true; 3]),
        }),
        image: Some(ModalityBatch {
            input: Tensor::random([n, 3, 32, 32], Distribution::Normal(0.0, 1.0), device),
            present: present([true; 3]),
        }),
        audio: Some(ModalityBatch {
            input: Tensor::random([n, 1, 32, 32], Distribution::Normal(0.0, 1.0), device),
            present: present([true, false, true]),
        }),
        video: Some(ModalityBatch {
            input: Tensor::random([n, 4, 3, 32, 32], Distribution::Normal(0.0, 1.0), device),
            present: present([true, true, false]),
        }),
        labels: Tensor::<1, Int>::from_data([0, 1, 2], device),
    }
}

fn to_device(batch: &MultimodalBatch, device: &Device) -> MultimodalBatch {
    fn move_part<const D: usize>(
        p: &Option<ModalityBatch<Tensor<D>>>,
        device: &Device,
    ) -> Option<ModalityBatch<Tensor<D>>> {
        p.as_ref().map(|p| ModalityBatch {
            input: p.input.clone().to_device(device),
            present: p.present.clone().to_device(device),
        })
    }
    MultimodalBatch {
        text: batch.text.as_ref().map(|t| ModalityBatch {
            input: TokenBatch {
                ids: t.input.ids.clone().to_device(device),
                mask: t.input.mask.clone().to_device(device),
            },
            present: t.present.clone().to_device(device),
        }),
        image: move_part(&batch.image, device),
        audio: move_part(&batch.audio, device),
        video: move_part(&batch.video, device),
        labels: batch.labels.clone().to_device(device),
    }
}

#[test]
fn forward_pass_matches_the_cpu() {
    let Some(gpu) = wgpu_or_skip() else { return };
    let cpu = Device::flex();
    cpu.seed(11);
    let input = batch(&cpu);
    for fusion in [FusionKind::Concat, FusionKind::CrossAttention] {
        let config = ClassifierConfig {
            modalities: Modality::ALL.to_vec(),
            fusion,
            classes: 6,
            dim: 16,
            vocab_size: 12,
            max_tokens: 8,
            channels: 3,
        };
        let model = config.init(&cpu).unwrap();
        let expected = softmax(model.logits(&input).unwrap(), 1);
        let on_gpu = model.to_device(&gpu);
        let actual = softmax(on_gpu.logits(&to_device(&input, &gpu)).unwrap(), 1).to_device(&cpu);
        let diff = (expected.clone() - actual).abs().max().into_scalar::<f32>();
        assert!(
            diff <= TOLERANCE,
            "{fusion:?}: wgpu differs from the CPU by {diff} (tolerance {TOLERANCE})"
        );
        // Guard against a trivially constant output.
        let spread = (expected.clone().max() - expected.min()).into_scalar::<f32>();
        assert!(spread > 1e-3, "{fusion:?}: degenerate output");
    }
}
