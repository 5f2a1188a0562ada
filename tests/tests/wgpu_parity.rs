//! The slice's forward pass, and every pretrained encoder's, on wgpu equals
//! the CPU (Flex) result.
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

/// Burn's random stream is per device and shared by a process's threads:
/// tests that seed it and initialise models hold this, so their weights are
/// the same on every run.
static RANDOM: std::sync::Mutex<()> = std::sync::Mutex::new(());

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

/// A small classifier over `modalities` (6 classes, width 16), no modality
/// dropout.
fn classifier(fusion: FusionKind, modalities: Vec<Modality>) -> ClassifierConfig {
    ClassifierConfig {
        modalities,
        fusion,
        classes: 6,
        dim: 16,
        vocab_size: 12,
        max_tokens: 8,
        channels: 3,
        modality_dropout: 0.0,
        contrastive_weight: 1.0,
        multi_label: false,
    }
}

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
    use polymodal::Encoder;
    use polymodal::audio::{Ast, WhisperEncoder};
    use polymodal::core::weights::Init;
    use polymodal::core::{RecurrentConfig, RnnKind, Weights};
    use polymodal::image::{ResNet, ResNetConfig, Vit};
    use polymodal::text::{Bert, BertPooling, Clip};
    use polymodal_tests::Fixture;

    let Some(gpu) = polymodal::wgpu::wgpu_for_tests() else {
        return;
    };
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/parity/encoders");
    let io = |name: &str| Fixture::load(&format!("encoders/{name}/io.safetensors"));
    let float = |f: &Fixture, name: &str| -> TensorData {
        let (values, shape) = f.f32(name);
        TensorData::new(values, shape)
    };
    let ints = |f: &Fixture, name: &str, shape: [usize; 2], device: &Device| {
        Tensor::<2, Int>::from_data(TensorData::new(f.i64(name), shape), device)
    };
    type Run = Box<dyn Fn(&Device) -> (Vec<f32>, Vec<Vec<f32>>)>;
    let runs: Vec<(&str, Run)> = vec![
        ("bert", {
            let (dir, f) = (dir.join("bert"), io("bert"));
            Box::new(move |d: &Device| {
                let (m, _) = Bert::load(&dir, BertPooling::Pooler, d).unwrap();
                let mask = ints(&f, "attention_mask", [3, 9], d).equal_elem(1);
                let out = m
                    .forward(
                        ints(&f, "input_ids", [3, 9], d),
                        Some(ints(&f, "token_type_ids", [3, 9], d)),
                        mask,
                    )
                    .unwrap();
                finish(&m, out.last_hidden_state)
            })
        }),
        ("vit", {
            let (dir, f) = (dir.join("vit"), io("vit"));
            Box::new(move |d: &Device| {
                let (m, _) = Vit::load(&dir, d).unwrap();
                let x = Tensor::<4>::from_data(float(&f, "pixel_values"), d);
                finish(&m, m.forward(x).unwrap().last_hidden_state)
            })
        }),
        ("resnet", {
            let (dir, f) = (dir.join("resnet"), io("resnet"));
            Box::new(move |d: &Device| {
                let config = ResNetConfig {
                    blocks: [1, 1, 1, 1],
                    bottleneck: true,
                    base_width: 4,
                };
                let (m, _) = ResNet::load(&config, dir.join("bottleneck.safetensors"), d).unwrap();
                let x = Tensor::<4>::from_data(float(&f, "images"), d);
                finish(&m, m.encode(&x).unwrap().pooled)
            })
        }),
        ("clip", {
            let (dir, f) = (dir.join("clip"), io("clip"));
            Box::new(move |d: &Device| {
                let (m, _) = Clip::load(&dir, d).unwrap();
                let mask = ints(&f, "attention_mask", [3, 8], d).equal_elem(1);
                let x = Tensor::<4>::from_data(float(&f, "pixel_values"), d);
                let out = m
                    .forward(ints(&f, "input_ids", [3, 8], d), mask, x)
                    .unwrap();
                finish(&m, out.logits_per_text)
            })
        }),
        ("ast", {
            let (dir, f) = (dir.join("ast"), io("ast"));
            Box::new(move |d: &Device| {
                let (m, _) = Ast::load(&dir, d).unwrap();
                let x = Tensor::<3>::from_data(float(&f, "input_values"), d);
                finish(&m, m.encode(&x).unwrap().pooled)
            })
        }),
        ("whisper", {
            let (dir, f) = (dir.join("whisper"), io("whisper"));
            Box::new(move |d: &Device| {
                let (m, _) = WhisperEncoder::load(&dir, d).unwrap();
                let x = Tensor::<3>::from_data(float(&f, "input_features"), d);
                finish(&m, m.forward(x).unwrap())
            })
        }),
        ("lstm", {
            let (dir, f) = (dir.join("rnn"), io("rnn"));
            Box::new(move |d: &Device| {
                let weights = Weights::open(dir.join("model.safetensors")).unwrap();
                let rnn = RecurrentConfig::new(5, 6)
                    .with_kind(RnnKind::Lstm)
                    .with_layers(2)
                    .with_bidirectional(true)
                    .build(Init::From(&weights), "lstm.", d)
                    .unwrap();
                let x = Tensor::<3>::from_data(float(&f, "input"), d);
                let mask = ints(&f, "mask", [3, 7], d).equal_elem(1);
                finish(&rnn, rnn.forward(x, mask).sequence)
            })
        }),
    ];
    let cpu = Device::flex();
    for (name, run) in runs {
        let (expected, _) = run(&cpu);
        let (actual, _) = run(&gpu);
        let diff = expected
            .iter()
            .zip(&actual)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // Backward: the gradient of Σ w ⊙ out for every parameter.
        let (_, grads_cpu) = run(&cpu.clone().autodiff());
        let (_, grads_gpu) = run(&gpu.clone().autodiff());
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

/// The output's values and, on an autodiff device, the gradient of a fixed
/// linear read-out Σ w ⊙ out for every parameter of `model`.
fn finish<M: Module, const D: usize>(model: &M, out: Tensor<D>) -> (Vec<f32>, Vec<Vec<f32>>) {
    let values = out.clone().try_into_vec_as::<f32>().unwrap();
    if !out.device().is_autodiff() {
        return (values, Vec::new());
    }
    // A fixed linear read-out, not Σ out²: several outputs are layer-normed,
    // and the squared norm of a normalised vector barely depends on the
    // input, which leaves gradients made of rounding noise.
    let count = out.shape().num_elements();
    let weights: Vec<f32> = (0..count)
        .map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.5)
        .collect();
    let weights = Tensor::<1>::from_data(weights.as_slice(), &out.device()).reshape(out.dims());
    let grads = (out * weights).sum().backward();
    let mut visitor = ParamGrads {
        grads: &grads,
        cpu: Device::flex(),
        out: Vec::new(),
    };
    model.visit(&mut visitor);
    (values, visitor.out)
}

/// The largest distance between matching gradients, relative to the CPU
/// gradient's norm (or to a thousandth of the largest norm, for a parameter
/// with next to no gradient). A norm, not the largest element: where a ReLU
/// input sits at zero the two backends may round it to different sides,
/// which moves single elements only.
fn worst_gradient(cpu: &[Vec<f32>], gpu: &[Vec<f32>]) -> f32 {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let largest = cpu.iter().map(|g| norm(g)).fold(0.0f32, f32::max);
    cpu.iter().zip(gpu).fold(0.0f32, |worst, (c, g)| {
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

/// The gradient of every float parameter, flattened, in visiting order.
struct ParamGrads<'a> {
    grads: &'a burn::tensor::Gradients,
    cpu: Device,
    out: Vec<Vec<f32>>,
}

impl burn::module::ModuleVisitor for ParamGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        if let Some(grad) = param.val().grad(self.grads) {
            let grad = grad.to_device(&self.cpu);
            self.out.push(grad.try_into_vec_as::<f32>().unwrap());
        }
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
    use polymodal::core::Modality;
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
        let modalities = if fusion == FusionKind::None {
            vec![Modality::Image]
        } else {
            Modality::ALL.to_vec()
        };
        let config = classifier(fusion, modalities);
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
