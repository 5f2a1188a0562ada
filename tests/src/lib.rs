//! Helpers shared by the end-to-end tests.

use std::path::PathBuf;

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use polymodal::train::Classifier;
use polymodal::{
    ClassifierConfig, FusionKind, Modality, ModalityBatch, MultimodalBatch, Targets, TokenBatch,
};

/// The shared data folder: `$POLYMODAL_SHARED`, else `../shared` next to the
/// workspace. `None` (with a message on stderr naming the setting) when it is
/// absent, so tests that need it skip; under `CI=true`, which always has it,
/// a missing folder fails the test instead.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("POLYMODAL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    if dir.join("README.md").is_file() {
        Some(dir)
    } else {
        polymodal::core::testing::skip(format!(
            "shared data not found at {} (set POLYMODAL_SHARED to the shared/ folder)",
            dir.display()
        ));
        None
    }
}

/// Token ids of a JSON fixture (an array of integers).
pub fn token_ids(value: &serde_json::Value) -> Vec<u32> {
    let ids = value.as_array().expect("an array of token ids");
    ids.iter()
        .map(|v| v.as_u64().expect("a token id") as u32)
        .collect()
}

/// A fresh empty folder under the system temp dir, unique to this test.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("polymodal-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A parity fixture: named tensors in a safetensors file under
/// `tests/fixtures/parity/`, written by a script in `scripts/parity/`.
pub struct Fixture {
    name: String,
    bytes: Vec<u8>,
}

impl Fixture {
    /// Reads `tests/fixtures/parity/<name>`.
    pub fn load(name: &str) -> Self {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/parity")
            .join(name);
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (see scripts/parity/)", path.display()));
        Self {
            name: name.to_string(),
            bytes,
        }
    }

    fn view(&self, tensor: &str) -> safetensors::tensor::TensorView<'_> {
        let file = safetensors::SafeTensors::deserialize(&self.bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", self.name));
        file.tensor(tensor)
            .unwrap_or_else(|e| panic!("{}: {tensor}: {e}", self.name))
    }

    /// An f32 tensor: its values (row-major) and shape.
    pub fn f32(&self, tensor: &str) -> (Vec<f32>, Vec<usize>) {
        let view = self.view(tensor);
        assert_eq!(view.dtype(), safetensors::Dtype::F32, "{tensor}");
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (values, view.shape().to_vec())
    }

    /// An i64 tensor's values.
    pub fn i64(&self, tensor: &str) -> Vec<i64> {
        let view = self.view(tensor);
        assert_eq!(view.dtype(), safetensors::Dtype::I64, "{tensor}");
        view.data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    /// A u8 tensor's bytes (strings are stored this way).
    pub fn bytes(&self, tensor: &str) -> Vec<u8> {
        let view = self.view(tensor);
        assert_eq!(view.dtype(), safetensors::Dtype::U8, "{tensor}");
        view.data().to_vec()
    }

    /// Names of the tensors in the file.
    pub fn names(&self) -> Vec<String> {
        let file = safetensors::SafeTensors::deserialize(&self.bytes).expect("valid fixture");
        let mut names: Vec<String> = file.names().into_iter().map(String::from).collect();
        names.sort();
        names
    }
}

pub use polymodal::core::testing::max_abs_diff;

/// Random inputs on the host, built into a batch on any device the way the
/// `Batcher` builds them (from host data, not by moving tensors).
pub struct HostBatch {
    image: Vec<f32>,
    audio: Vec<f32>,
    video: Vec<f32>,
}

/// The batch size of [`HostBatch`].
pub const N: usize = 3;

impl HostBatch {
    /// The same pseudo-random inputs on every run.
    pub fn random() -> Self {
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

    /// The batch on `device` (text, image, audio, video; some modalities
    /// absent in some samples), with class targets.
    pub fn on(&self, device: &Device) -> MultimodalBatch {
        let ids: Vec<i64> = vec![2, 7, 9, 3, 0, 2, 11, 3, 0, 0, 2, 5, 6, 8, 3];
        let mask: Vec<bool> = ids.iter().map(|&id| id != 0).collect();
        let float = |values: &[f32], shape: Vec<usize>| TensorData::new(values.to_vec(), shape);
        MultimodalBatch {
            text: Some(ModalityBatch::new(
                TokenBatch {
                    ids: Tensor::from_data(TensorData::new(ids, [N, 5]), device),
                    mask: Tensor::from_data(TensorData::new(mask, [N, 5]), device),
                },
                &[true; N],
                device,
            )),
            image: Some(ModalityBatch::new(
                Tensor::from_data(float(&self.image, vec![N, 3, 32, 32]), device),
                &[true; N],
                device,
            )),
            audio: Some(ModalityBatch::new(
                Tensor::from_data(float(&self.audio, vec![N, 1, 32, 32]), device),
                &[true, false, true],
                device,
            )),
            video: Some(ModalityBatch::new(
                Tensor::from_data(float(&self.video, vec![N, 4, 3, 32, 32]), device),
                &[true, true, false],
                device,
            )),
            embedded: Vec::new(),
            targets: Targets::Classes(Tensor::from_data(
                TensorData::new(vec![0i64, 1, 2], [N]),
                device,
            )),
        }
    }
}

/// A small classifier over `modalities` (6 classes, width 16), no modality
/// dropout.
pub fn classifier(fusion: FusionKind, modalities: Vec<Modality>) -> ClassifierConfig {
    ClassifierConfig::new(modalities, fusion, 6)
        .with_dim(16)
        .with_text(12, 8)
}

/// [`classifier`] with `fusion` over every modality (one image for `None`).
pub fn classifier_for(fusion: FusionKind) -> ClassifierConfig {
    let modalities = if fusion == FusionKind::None {
        vec![Modality::Image]
    } else {
        Modality::ALL.to_vec()
    };
    classifier(fusion, modalities)
}

/// One pretrained encoder's forward pass on a device: its output values and,
/// on an autodiff device, every parameter's gradient of a fixed linear
/// read-out (see [`finish`]).
pub type EncoderRun = Box<dyn Fn(&Device) -> EncoderOutput>;

/// What [`finish`] reads from an encoder's output.
pub struct EncoderOutput {
    /// The output's values, as f32.
    pub values: Vec<f32>,
    /// Each parameter's gradient (autodiff devices only).
    pub grads: Vec<Vec<f32>>,
    /// The float type the output was computed in.
    pub dtype: burn::tensor::DType,
}

/// The pretrained encoders of the parity fixtures (tiny BERT, ViT, ResNet,
/// CLIP, AST, Whisper and a bidirectional LSTM), each loaded by name from
/// its files on the device it is run on, with the fixture's inputs.
pub fn pretrained_encoders() -> Vec<(&'static str, EncoderRun)> {
    use polymodal::Encoder;
    use polymodal::audio::{Ast, WhisperEncoder};
    use polymodal::core::weights::Init;
    use polymodal::core::{RecurrentConfig, RnnKind, Weights};
    use polymodal::image::{ResNet, ResNetConfig, Vit};
    use polymodal::text::{Bert, BertPooling, Clip};

    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/parity/encoders");
    let io = |name: &str| Fixture::load(&format!("encoders/{name}/io.safetensors"));
    let float = |f: &Fixture, name: &str| -> TensorData {
        let (values, shape) = f.f32(name);
        TensorData::new(values, shape)
    };
    let ints = |f: &Fixture, name: &str, shape: [usize; 2], device: &Device| {
        Tensor::<2, Int>::from_data(TensorData::new(f.i64(name), shape), device)
    };
    vec![
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
                    .build(&Init::from(&weights).pp("lstm"), d)
                    .unwrap();
                let x = Tensor::<3>::from_data(float(&f, "input"), d);
                let mask = ints(&f, "mask", [3, 7], d).equal_elem(1);
                finish(&rnn, rnn.forward(x, mask).sequence)
            })
        }),
    ]
}

/// The output's values and, on an autodiff device, the gradient of a fixed
/// linear read-out Σ w ⊙ out for every parameter of `model`.
pub fn finish<M: Module, const D: usize>(model: &M, out: Tensor<D>) -> EncoderOutput {
    let values = out.clone().try_into_vec_as::<f32>().unwrap();
    let dtype = out.dtype();
    if !out.device().is_autodiff() {
        return EncoderOutput {
            values,
            grads: Vec::new(),
            dtype,
        };
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
    EncoderOutput {
        values,
        grads: visitor.out,
        dtype,
    }
}

/// The gradient of every float parameter, flattened, in visiting order.
pub struct ParamGrads<'a> {
    /// The gradients of one backward pass.
    pub grads: &'a burn::tensor::Gradients,
    /// Where they are read back to.
    pub cpu: Device,
    /// One flattened gradient per parameter that has one.
    pub out: Vec<Vec<f32>>,
}

impl burn::module::ModuleVisitor for ParamGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        if let Some(grad) = param.val().grad(self.grads) {
            let grad = grad.to_device(&self.cpu);
            self.out.push(grad.try_into_vec_as::<f32>().unwrap());
        }
    }
}

/// A linear classifier over 4×4 grey images (no batch norm, so a batch of
/// 16 and two accumulated batches of 8 see the same gradient), three classes.
#[derive(Module, Debug)]
pub struct Tiny {
    /// The one layer, `[16, 3]`.
    pub linear: Linear,
}

impl Tiny {
    /// Fixed initial weights: Burn's random stream is shared by every test
    /// thread of this process, so a seeded random init would not repeat.
    pub fn new(device: &Device) -> Self {
        let mut linear = LinearConfig::new(16, 3).init(device);
        let weights: Vec<f32> = (0..48)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) / 40.0)
            .collect();
        linear.weight =
            Param::from_tensor(Tensor::from_data(TensorData::new(weights, [16, 3]), device));
        linear.bias = Some(Param::from_tensor(Tensor::zeros([3], device)));
        Self { linear }
    }
}

impl Classifier for Tiny {
    fn logits(&self, batch: &MultimodalBatch) -> polymodal::Result<Tensor<2>> {
        let images = &batch
            .image
            .as_ref()
            .ok_or(polymodal::Error::MissingModality(Modality::Image))?
            .input;
        let n = images.dims()[0];
        Ok(self.linear.forward(images.clone().reshape([n, 16])))
    }
}
