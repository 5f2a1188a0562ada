//! Pretrained weights by name from a safetensors file (the Hugging Face
//! layout), with the checks a user needs: every tensor a model asks for is
//! reported by name when missing, a shape mismatch is an error naming the
//! tensor, and tensors the model did not use are listed.
//!
//! Only safetensors is read: PyTorch pickle files (`.bin`, `.pt`) can run
//! code when loaded, so they are refused with a hint to convert them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use burn::module::{Param, RunningState};
use burn::nn::conv::{Conv1d, Conv1dConfig, Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::prelude::*;
use safetensors::tensor::{Dtype, TensorInfo};

use crate::{Error, Result};

/// The tensors of one safetensors file, taken by name.
///
/// A loader asks for each tensor with its expected shape; a missing one is
/// recorded (and zeros returned) so that [`Weights::finish`] can name *all*
/// missing tensors at once; a wrong shape fails at once.
pub struct Weights {
    path: PathBuf,
    bytes: Vec<u8>,
    data_start: usize,
    infos: BTreeMap<String, TensorInfo>,
    prefix: String,
    used: Mutex<BTreeSet<String>>,
    missing: Mutex<Vec<String>>,
}

/// What loading left over: tensors of the file no module used.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadReport {
    /// Names in the file that the model did not ask for.
    pub unexpected: Vec<String>,
}

impl Weights {
    /// Reads a `.safetensors` file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if matches!(ext, "bin" | "pt" | "pth" | "ckpt" | "pkl") {
            return Err(Error::Weights {
                path: path.into(),
                reason: "PyTorch pickle files can run code when loaded and are not read; \
                         convert them to safetensors (e.g. `safetensors.torch.save_file`)"
                    .into(),
            });
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(path, bytes)
    }

    /// Parses safetensors `bytes` (`path` is only used in messages).
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self> {
        let path = path.into();
        let (header, metadata) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| Error::Weights {
                path: path.clone(),
                reason: format!("not a safetensors file: {e}"),
            })?;
        let infos = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, info.clone()))
            .collect();
        Ok(Self {
            path,
            bytes,
            data_start: 8 + header,
            infos,
            prefix: String::new(),
            used: Mutex::new(BTreeSet::new()),
            missing: Mutex::new(Vec::new()),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor name in the file, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.infos.keys().map(String::as_str)
    }

    /// Looks names up under `prefix` (e.g. `"bert."` for a `BertFor…`
    /// checkpoint whose encoder is stored under `bert.`).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Looks names up under the first of `prefixes` under which the file
    /// has `name`, or under the last when none has it (so that missing
    /// tensors are named as the usual layout names them). A task head's
    /// checkpoint nests its encoder (`ViTForImageClassification` under
    /// `vit.`, Whisper's under `model.encoder.`): `name` is a tensor every
    /// such encoder has.
    pub fn with_prefix_of(self, name: &str, prefixes: &[&str]) -> Self {
        let prefix = prefixes
            .iter()
            .find(|p| self.infos.contains_key(&format!("{p}{name}")))
            .or(prefixes.last())
            .map_or(String::new(), |p| p.to_string());
        self.with_prefix(prefix)
    }

    /// Whether the file has `name` (under the prefix).
    pub fn contains(&self, name: &str) -> bool {
        self.infos.contains_key(&self.full(name))
    }

    /// The shape of `name`, if the file has it.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.infos.get(&self.full(name)).map(|i| i.shape.as_slice())
    }

    fn full(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Marks `name` as used without reading it (a buffer the model
    /// recomputes, such as BERT's `position_ids`).
    pub fn skip(&self, name: &str) {
        let full = self.full(name);
        if self.infos.contains_key(&full) {
            self.used.lock().expect("not poisoned").insert(full);
        }
    }

    /// The values of `name` as f32 (F32, F16, BF16 and F64 are converted),
    /// checked against `shape`.
    pub fn values(&self, name: &str, shape: &[usize]) -> Result<Option<Vec<f32>>> {
        let full = self.full(name);
        let Some(info) = self.infos.get(&full) else {
            self.missing.lock().expect("not poisoned").push(full);
            return Ok(None);
        };
        if info.shape != shape {
            return Err(self.error(format!(
                "tensor `{full}` has shape {:?}, the model expects {shape:?}",
                info.shape
            )));
        }
        let (start, end) = info.data_offsets;
        let data = self
            .bytes
            .get(self.data_start + start..self.data_start + end)
            .ok_or_else(|| self.error(format!("tensor `{full}` lies outside the file")))?;
        let values = to_f32(data, info.dtype)
            .ok_or_else(|| self.error(format!("tensor `{full}` has dtype {:?}", info.dtype)))?;
        self.used.lock().expect("not poisoned").insert(full);
        Ok(Some(values))
    }

    /// Tensor `name` of `shape` on `device` (zeros when missing; see
    /// [`Weights::finish`]).
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>> {
        Ok(match self.values(name, &shape)? {
            Some(values) => Tensor::from_data(TensorData::new(values, shape), device),
            None => Tensor::zeros(shape, device),
        })
    }

    /// A scalar stored with shape `[]` or `[1]` (e.g. CLIP's `logit_scale`);
    /// `None` when missing (recorded like any missing tensor).
    pub fn scalar(&self, name: &str) -> Result<Option<f32>> {
        let shape: &[usize] = match self.shape(name) {
            Some([]) => &[],
            _ => &[1],
        };
        Ok(self.values(name, shape)?.map(|v| v[0]))
    }

    /// Ends loading: an error naming every missing tensor, else the tensors
    /// of the file that were not used.
    pub fn finish(self) -> Result<LoadReport> {
        let missing = self.missing.into_inner().expect("not poisoned");
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(8).map(String::as_str).collect();
            return Err(Error::Weights {
                path: self.path,
                reason: format!(
                    "{} tensor(s) the model needs are missing: {}{}",
                    missing.len(),
                    shown.join(", "),
                    if missing.len() > shown.len() {
                        ", …"
                    } else {
                        ""
                    }
                ),
            });
        }
        let used = self.used.into_inner().expect("not poisoned");
        Ok(LoadReport {
            unexpected: self
                .infos
                .into_keys()
                .filter(|name| !used.contains(name))
                .collect(),
        })
    }

    fn error(&self, reason: String) -> Error {
        Error::Weights {
            path: self.path.clone(),
            reason,
        }
    }
}

/// Reads a JSON settings file such as a Hugging Face `config.json`, then
/// checks it with `validate`; errors name the file.
pub fn read_config<T: serde::de::DeserializeOwned>(
    path: impl AsRef<Path>,
    validate: impl FnOnce(&T) -> Result<()>,
) -> Result<T> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let config: T = serde_json::from_str(&text)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    validate(&config).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    Ok(config)
}

/// Reads the part `field` of a JSON settings file when it has one (a
/// two-tower model's `text_config` / `vision_config`), else the whole file
/// (a single tower's own `config.json`), and checks it with `validate`;
/// errors name the file.
pub fn read_config_part<T: serde::de::DeserializeOwned>(
    path: impl AsRef<Path>,
    field: &str,
    validate: impl FnOnce(&T) -> Result<()>,
) -> Result<T> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let in_file = |e: &dyn std::fmt::Display| Error::Config(format!("{}: {e}", path.display()));
    let mut json: serde_json::Value = serde_json::from_str(&text).map_err(|e| in_file(&e))?;
    let part = match json.get_mut(field) {
        Some(part) => part.take(),
        None => json,
    };
    let config: T = serde_json::from_value(part).map_err(|e| in_file(&e))?;
    validate(&config).map_err(|e| in_file(&e))?;
    Ok(config)
}

/// Where a model's parameters come from, and under which name: fresh random
/// initialisation (to train from scratch) or a weights file, scoped to a
/// name prefix. Models are built once against this, so the pretrained and
/// the fresh model cannot drift apart.
///
/// A scope is narrowed with [`Init::pp`] (`init.pp("encoder.layer").pp(3)`
/// names `encoder.layer.3.…`); each layer method reads its tensors under
/// the scope it is called on (`init.pp("pooler.dense").linear(…)` reads
/// `pooler.dense.weight` and `pooler.dense.bias`), or initialises the layer
/// randomly when there is no file. Errors name the full tensor name and the
/// file.
#[derive(Clone)]
pub struct Init<'a> {
    weights: Option<&'a Weights>,
    prefix: String,
}

impl<'a> From<&'a Weights> for Init<'a> {
    /// Tensors by name from `weights`, at the root scope.
    fn from(weights: &'a Weights) -> Self {
        Self {
            weights: Some(weights),
            prefix: String::new(),
        }
    }
}

impl Init<'_> {
    /// Burn's default initialisation (no file).
    pub fn random() -> Self {
        Self {
            weights: None,
            prefix: String::new(),
        }
    }

    /// Whether this initialises randomly.
    pub fn is_random(&self) -> bool {
        self.weights.is_none()
    }

    /// The scope's name prefix (`""` at the root, else e.g.
    /// `encoder.layer.3`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The child scope `name` (a name, a dotted path or an index); an empty
    /// name is this scope.
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        Self {
            weights: self.weights,
            prefix: self.name(&name.to_string()),
        }
    }

    /// `name` under this scope.
    fn name(&self, name: &str) -> String {
        match (self.prefix.is_empty(), name.is_empty()) {
            (true, _) => name.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}.{name}", self.prefix),
        }
    }

    /// Whether the file has `name` under this scope (false when random).
    pub fn contains(&self, name: &str) -> bool {
        self.weights.is_some_and(|w| w.contains(&self.name(name)))
    }

    /// Tensor `name` of this scope from `weights`, as a parameter.
    fn param<const D: usize>(
        &self,
        weights: &Weights,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Param<Tensor<D>>> {
        Ok(Param::from_tensor(weights.tensor(
            &self.name(name),
            shape,
            device,
        )?))
    }

    /// A PyTorch `nn.Linear` (`weight` `[out, in]`, `bias`); the weight is
    /// transposed to Burn's `[in, out]`.
    pub fn linear(&self, d_in: usize, d_out: usize, device: &Device) -> Result<Linear> {
        self.linear_with(d_in, d_out, true, device)
    }

    /// A PyTorch `nn.Linear` with or without `bias`.
    pub fn linear_with(
        &self,
        d_in: usize,
        d_out: usize,
        bias: bool,
        device: &Device,
    ) -> Result<Linear> {
        self.linear_named("weight", bias.then_some("bias"), d_in, d_out, device)
    }

    /// A linear map from a PyTorch-layout weight `[out, in]` and an optional
    /// bias stored under any names of this scope (e.g. an LSTM's
    /// `weight_ih_l0` and `bias_ih_l0`).
    pub fn linear_named(
        &self,
        weight: &str,
        bias: Option<&str>,
        d_in: usize,
        d_out: usize,
        device: &Device,
    ) -> Result<Linear> {
        let mut linear = LinearConfig::new(d_in, d_out)
            .with_bias(bias.is_some())
            .init(device);
        let Some(weights) = self.weights else {
            return Ok(linear);
        };
        // Transposed here, in host memory: a transposed view would make every
        // forward pass read (or copy) a strided weight.
        let values = weights
            .values(&self.name(weight), &[d_out, d_in])?
            .map(|v| transpose(&v, d_out, d_in));
        linear.weight = Param::from_tensor(match values {
            Some(v) => Tensor::from_data(TensorData::new(v, [d_in, d_out]), device),
            None => Tensor::zeros([d_in, d_out], device),
        });
        if let Some(bias) = bias {
            linear.bias = Some(self.param(weights, bias, [d_out], device)?);
        }
        Ok(linear)
    }

    /// A PyTorch `nn.LayerNorm` (`weight`, `bias`).
    pub fn layer_norm(&self, dim: usize, epsilon: f64, device: &Device) -> Result<LayerNorm> {
        let mut norm = LayerNormConfig::new(dim).with_epsilon(epsilon).init(device);
        if let Some(weights) = self.weights {
            norm.gamma = self.param(weights, "weight", [dim], device)?;
            norm.beta = Some(self.param(weights, "bias", [dim], device)?);
        }
        Ok(norm)
    }

    /// A PyTorch `nn.Embedding` (`weight` `[count, dim]`).
    pub fn embedding(&self, count: usize, dim: usize, device: &Device) -> Result<Embedding> {
        let mut embedding = EmbeddingConfig::new(count, dim).init(device);
        if let Some(weights) = self.weights {
            embedding.weight = self.param(weights, "weight", [count, dim], device)?;
        }
        Ok(embedding)
    }

    /// A PyTorch `nn.Conv2d` (`weight` `[out, in / groups, kh, kw]`, the same
    /// layout as Burn's; `bias` when `config.bias`).
    pub fn conv2d(&self, config: &Conv2dConfig, device: &Device) -> Result<Conv2d> {
        let mut conv = config.init(device);
        if let Some(weights) = self.weights {
            let [c_in, c_out] = config.channels;
            let [kh, kw] = config.kernel_size;
            let shape = [c_out, c_in / config.groups, kh, kw];
            conv.weight = self.param(weights, "weight", shape, device)?;
            if config.bias {
                conv.bias = Some(self.param(weights, "bias", [c_out], device)?);
            }
        }
        Ok(conv)
    }

    /// A PyTorch `nn.Conv1d` (`weight` `[out, in / groups, k]`, Burn's layout
    /// too; `bias` when `config.bias`).
    pub fn conv1d(&self, config: &Conv1dConfig, device: &Device) -> Result<Conv1d> {
        let mut conv = config.init(device);
        if let Some(weights) = self.weights {
            let c_out = config.channels_out;
            let shape = [
                c_out,
                config.channels_in / config.groups,
                config.kernel_size,
            ];
            conv.weight = self.param(weights, "weight", shape, device)?;
            if config.bias {
                conv.bias = Some(self.param(weights, "bias", [c_out], device)?);
            }
        }
        Ok(conv)
    }

    /// A PyTorch `nn.BatchNorm2d` (`weight`, `bias`, `running_mean`,
    /// `running_var`; `num_batches_tracked` is not needed).
    pub fn batch_norm(&self, channels: usize, epsilon: f64, device: &Device) -> Result<BatchNorm> {
        let mut norm = BatchNormConfig::new(channels)
            .with_epsilon(epsilon)
            .init(device);
        if let Some(weights) = self.weights {
            let get = |name: &str| weights.tensor(&self.name(name), [channels], device);
            norm.gamma = Param::from_tensor(get("weight")?);
            norm.beta = Param::from_tensor(get("bias")?);
            norm.running_mean = RunningState::new(get("running_mean")?);
            norm.running_var = RunningState::new(get("running_var")?);
            self.skip("num_batches_tracked");
        }
        Ok(norm)
    }

    /// A learned tensor `name` of this scope, such as a class token or
    /// position table (zeros when missing; see [`Weights::finish`]; random:
    /// normal with standard deviation 0.02, as Hugging Face initialises them).
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>> {
        match self.weights {
            None => Ok(Tensor::random(
                shape,
                burn::tensor::Distribution::Normal(0.0, 0.02),
                device,
            )),
            Some(weights) => weights.tensor(&self.name(name), shape, device),
        }
    }

    /// A learned table `[1, length, dim]` of this scope as a parameter: a
    /// ViT-style model's class token or position embeddings (see
    /// [`Init::tensor`]).
    pub fn token_table(
        &self,
        name: &str,
        length: usize,
        dim: usize,
        device: &Device,
    ) -> Result<Param<Tensor<3>>> {
        self.tensor(name, [1, length, dim], device)
            .map(Param::from_tensor)
    }

    /// A learned scalar `name` of this scope, stored with shape `[]` or `[1]`
    /// (e.g. CLIP's `logit_scale`): `initial` when random (or missing, which
    /// [`Weights::finish`] reports).
    pub fn scalar(&self, name: &str, initial: f32) -> Result<f32> {
        match self.weights {
            None => Ok(initial),
            Some(weights) => Ok(weights.scalar(&self.name(name))?.unwrap_or(initial)),
        }
    }

    /// A file buffer `name` of this scope that the model does not need (it
    /// recomputes it, such as BERT's `position_ids`).
    pub fn skip(&self, name: &str) {
        if let Some(weights) = self.weights {
            weights.skip(&self.name(name));
        }
    }
}

/// `values`, a row-major `[rows, cols]` matrix, transposed to `[cols, rows]`
/// (also the CPU weight gradient's last step).
pub(crate) fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| values[r * cols + c]))
        .collect()
}

/// Little-endian `data` of `dtype` as f32; `None` for non-float types.
fn to_f32(data: &[u8], dtype: Dtype) -> Option<Vec<f32>> {
    let words = |size: usize| data.chunks_exact(size);
    Some(match dtype {
        Dtype::F32 => words(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F64 => words(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        Dtype::F16 => words(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => words(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    fn file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(name, dtype, shape, data)| {
                (
                    name.to_string(),
                    TensorView::new(*dtype, shape.clone(), data).unwrap(),
                )
            })
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn a_linear_loads_transposed_and_reports_leftovers() {
        // PyTorch weight [out = 2, in = 3]: y = W x + b.
        let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let bytes = file(&[
            ("fc.weight", Dtype::F32, vec![2, 3], f32_bytes(&w)),
            ("fc.bias", Dtype::F32, vec![2], f32_bytes(&[0.5, -0.5])),
            ("extra", Dtype::F32, vec![1], f32_bytes(&[0.0])),
        ]);
        let weights = Weights::from_bytes("t.safetensors", bytes).unwrap();
        let device = Device::flex();
        let linear = Init::from(&weights).pp("fc").linear(3, 2, &device).unwrap();
        let x = Tensor::<2>::from_data([[1.0, 0.0, -1.0]], &device);
        let y = linear.forward(x).try_into_vec_as::<f32>().unwrap();
        assert_eq!(y, vec![1.0 - 3.0 + 0.5, 4.0 - 6.0 - 0.5]);
        let report = weights.finish().unwrap();
        assert_eq!(report.unexpected, vec!["extra".to_string()]);
    }

    #[test]
    fn missing_tensors_are_all_named_and_shapes_checked() {
        let bytes = file(&[("a.weight", Dtype::F32, vec![2], f32_bytes(&[1.0, 2.0]))]);
        let weights = Weights::from_bytes("t.safetensors", bytes.clone()).unwrap();
        let device = Device::flex();
        let error = weights.tensor("a.weight", [3], &device).unwrap_err();
        assert!(
            error.to_string().contains("`a.weight` has shape [2]"),
            "{error}"
        );
        let weights = Weights::from_bytes("t.safetensors", bytes).unwrap();
        weights.tensor("b", [1], &device).unwrap();
        weights.tensor("c", [1], &device).unwrap();
        let error = weights.finish().unwrap_err().to_string();
        assert!(
            error.contains("2 tensor(s)") && error.contains("b, c"),
            "{error}"
        );
        assert!(Weights::from_bytes("t", b"not a file".to_vec()).is_err());
        let error = Weights::open("model.bin").err().unwrap().to_string();
        assert!(error.contains("pickle"), "{error}");
    }

    #[test]
    fn half_precision_converts_and_prefixes_apply() {
        let halves: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let brains: Vec<u8> = [0.25f32, 3.0]
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect();
        let bytes = file(&[
            ("bert.h", Dtype::F16, vec![2], halves),
            ("bert.b", Dtype::BF16, vec![2], brains),
        ]);
        let weights = Weights::from_bytes("t", bytes)
            .unwrap()
            .with_prefix("bert.");
        assert!(weights.contains("h"));
        assert_eq!(weights.values("h", &[2]).unwrap().unwrap(), vec![1.5, -2.0]);
        assert_eq!(weights.values("b", &[2]).unwrap().unwrap(), vec![0.25, 3.0]);
        assert!(weights.finish().unwrap().unexpected.is_empty());
    }

    #[test]
    fn scopes_name_tensors_and_random_reads_nothing() {
        let bytes = file(&[
            (
                "m.enc.0.ln.weight",
                Dtype::F32,
                vec![2],
                f32_bytes(&[1.0, 2.0]),
            ),
            (
                "m.enc.0.ln.bias",
                Dtype::F32,
                vec![2],
                f32_bytes(&[0.0, 0.5]),
            ),
            ("m.enc.0.buffer", Dtype::F32, vec![1], f32_bytes(&[0.0])),
        ]);
        let weights = Weights::from_bytes("t.safetensors", bytes)
            .unwrap()
            .with_prefix("m.");
        let device = Device::flex();
        let init = Init::from(&weights);
        let layer = init.pp("enc").pp(0);
        assert_eq!(layer.prefix(), "enc.0");
        assert_eq!(layer.pp("").prefix(), "enc.0");
        assert!(layer.contains("ln.weight") && !init.contains("ln.weight"));
        let norm = layer.pp("ln").layer_norm(2, 1e-5, &device).unwrap();
        let gamma = norm.gamma.val().try_into_vec_as::<f32>().unwrap();
        assert_eq!(gamma, vec![1.0, 2.0]);
        layer.skip("buffer");
        let error = layer
            .pp("ln")
            .linear(2, 3, &device)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`m.enc.0.ln.weight` has shape [2]") && error.contains("t.safetensors"),
            "{error}"
        );
        layer.pp("fc").embedding(4, 2, &device).unwrap();
        let error = weights.finish().unwrap_err().to_string();
        assert!(error.contains("m.enc.0.fc.weight"), "{error}");
        let random = Init::random().pp("enc").pp(0);
        assert!(random.is_random() && !random.contains("ln.weight"));
        assert_eq!(random.scalar("s", 2.5).unwrap(), 2.5);
        let linear = random.linear_with(2, 3, false, &device).unwrap();
        assert!(linear.bias.is_none());
    }

    #[test]
    fn hf_checks_name_the_fields() {
        let error = hf_check::multiple("hidden_size", 10, "num_attention_heads", 3)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("hidden_size 10 must be a positive multiple of num_attention_heads 3"),
            "{error}"
        );
        assert!(hf_check::multiple("image_size", 224, "patch_size", 0).is_err());
        assert!(hf_check::multiple("image_size", 224, "patch_size", 16).is_ok());
        let error = hf_check::positive(&[("vocab_size", 5), ("max_position_embeddings", 0)])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("vocab_size and max_position_embeddings must be positive"),
            "{error}"
        );
        assert!(hf_check::activation("gelu").is_ok() && hf_check::activation("swish").is_err());
    }
}

/// Default values of Hugging Face `config.json` fields that transformers
/// fills in when a file leaves them out, shared by the configs of every
/// model here (`#[serde(default = "polymodal_core::weights::hf_default::gelu")]`).
pub mod hf_default {
    /// `hidden_act` / `activation_function`: the exact GELU.
    pub fn gelu() -> String {
        "gelu".into()
    }

    /// `hidden_act` of CLIP.
    pub fn quick_gelu() -> String {
        "quick_gelu".into()
    }

    /// `layer_norm_eps` of BERT, ViT and AST.
    pub fn layer_norm_eps() -> f64 {
        1e-12
    }

    /// `layer_norm_eps` of CLIP.
    pub fn clip_layer_norm_eps() -> f64 {
        1e-5
    }

    /// `num_channels` of image models (RGB).
    pub fn channels() -> usize {
        3
    }
}

/// Checks of Hugging Face `config.json` values shared by the configs of
/// every model here; errors name the fields.
pub mod hf_check {
    use crate::{Activation, Error, Result};

    /// `value` (the field `name`) must be a positive multiple of `of` (the
    /// field `of_name`): e.g. `hidden_size` over `num_attention_heads`, or
    /// `image_size` over `patch_size`.
    pub fn multiple(name: &str, value: usize, of_name: &str, of: usize) -> Result<()> {
        if value == 0 || of == 0 || !value.is_multiple_of(of) {
            return Err(Error::Config(format!(
                "{name} {value} must be a positive multiple of {of_name} {of}"
            )));
        }
        Ok(())
    }

    /// Every field of `fields` (name, value) must be positive.
    pub fn positive(fields: &[(&str, usize)]) -> Result<()> {
        if fields.iter().all(|&(_, value)| value > 0) {
            return Ok(());
        }
        let names: Vec<&str> = fields.iter().map(|&(name, _)| name).collect();
        Err(Error::Config(format!(
            "{} must be positive",
            names.join(" and ")
        )))
    }

    /// The activation `name` (`hidden_act`) must be one polymodal supports
    /// (see [`Activation::from_hf`]).
    pub fn activation(name: &str) -> Result<()> {
        Activation::from_hf(name).map(|_| ())
    }
}

/// Writes f32 tensors (name, shape, values) and text `metadata` to the
/// safetensors file `path` (the format `Weights` reads, and
/// `safetensors.torch.load_file` / `safe_open` in Python), atomically
/// (a temporary file renamed). A tensor whose values do not fill its shape
/// is an [`Error::Invalid`].
pub fn save_f32(
    path: &Path,
    tensors: &[(&str, Vec<usize>, &[f32])],
    metadata: BTreeMap<String, String>,
) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(name, shape, values)| {
            if shape.iter().product::<usize>() != values.len() {
                return Err(Error::Invalid(format!(
                    "tensor `{name}`: {} values do not fill the shape {shape:?}",
                    values.len()
                )));
            }
            Ok(values.iter().flat_map(|v| v.to_le_bytes()).collect())
        })
        .collect::<Result<_>>()?;
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), data)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|view| (name.to_string(), view))
                .map_err(|e| Error::Invalid(format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let data = safetensors::serialize(views, Some(metadata.into_iter().collect()))
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    let partial = path.with_extension("safetensors.partial");
    std::fs::write(&partial, data).map_err(|e| Error::io(&partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| Error::io(path, e))
}

/// The fields of a BERT-style Hugging Face `config.json` (BERT, ViT, AST)
/// that shape its Transformer layers, with transformers' defaults; each
/// model's config flattens it in (`#[serde(flatten)]`), so the JSON keys
/// stay where Hugging Face puts them.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct HfTransformer {
    /// Token width.
    pub hidden_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Feed-forward activation: `gelu` (exact), `gelu_new` /
    /// `gelu_pytorch_tanh` (tanh approximation) or `relu`.
    #[serde(default = "hf_default::gelu")]
    pub hidden_act: String,
    /// Layer norm epsilon.
    #[serde(default = "hf_default::layer_norm_eps")]
    pub layer_norm_eps: f64,
}

impl HfTransformer {
    /// The heads must divide the width, the activation must be supported.
    pub fn validate(&self) -> Result<()> {
        hf_check::multiple(
            "hidden_size",
            self.hidden_size,
            "num_attention_heads",
            self.num_attention_heads,
        )?;
        hf_check::activation(&self.hidden_act)
    }

    /// The shape of one layer.
    pub fn block_shape(&self) -> Result<crate::BlockShape> {
        crate::BlockShape::from_hf(
            self.hidden_size,
            self.num_attention_heads,
            self.intermediate_size,
            self.layer_norm_eps,
            &self.hidden_act,
        )
    }
}
