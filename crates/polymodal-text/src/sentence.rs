//! Sentence embeddings as sentence-transformers computes them from a model
//! folder: the tokenizer, a BERT encoder, pooling (`1_Pooling/config.json`)
//! and optional L2 normalisation (a `Normalize` step in `modules.json`).

use std::path::Path;

use burn::prelude::*;
use serde::Deserialize;

use polymodal_core::{Encoder, Error, LoadReport, Result, l2_normalize, read_config};

use crate::bert::{Bert, BertPooling};
use crate::tokenize::TextTokenizer;

/// Truncation length when the folder has no `sentence_bert_config.json`.
const DEFAULT_MAX_TOKENS: usize = 512;

/// A sentence-transformers model: text in, one vector per text out.
pub struct SentenceEncoder {
    bert: Bert,
    tokenizer: TextTokenizer,
    normalize: bool,
}

#[derive(Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct SentenceConfigFile {
    max_seq_length: usize,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type")]
    kind: String,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    read_config(path, |_: &T| Ok(()))
}

impl SentenceEncoder {
    /// Loads a sentence-transformers folder (Hugging Face layout:
    /// `config.json`, `model.safetensors`, `tokenizer.json`, and optionally
    /// `sentence_bert_config.json`, `1_Pooling/config.json`, `modules.json`).
    /// Without the sentence-transformers files: mean pooling, no
    /// normalisation, truncation at 512 tokens.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LoadReport)> {
        let dir = dir.as_ref();
        let pooling = match dir.join("1_Pooling/config.json") {
            path if path.is_file() => pooling_of(&path)?,
            _ => BertPooling::Mean,
        };
        let max_tokens = match dir.join("sentence_bert_config.json") {
            path if path.is_file() => read_json::<SentenceConfigFile>(&path)?.max_seq_length,
            _ => DEFAULT_MAX_TOKENS,
        };
        let normalize = match dir.join("modules.json") {
            path if path.is_file() => read_json::<Vec<ModuleEntry>>(&path)?
                .iter()
                .any(|m| m.kind.ends_with(".Normalize")),
            _ => false,
        };
        let tokenizer = TextTokenizer::from_file(dir.join("tokenizer.json"), max_tokens)?;
        let (bert, report) = Bert::load(dir, pooling, device)?;
        let model = Self {
            bert,
            tokenizer,
            normalize,
        };
        Ok((model, report))
    }

    /// Width of the embeddings.
    pub fn dim(&self) -> usize {
        self.bert.dim()
    }

    /// The encoder itself (to fine-tune, or to use in a fusion model).
    pub fn bert(&self) -> &Bert {
        &self.bert
    }

    /// The tokenizer (padding to the longest text, truncation as configured).
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// One embedding per text, `[texts, dim]`, computed as one batch.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S], device: &Device) -> Result<Tensor<2>> {
        if texts.is_empty() {
            return Err(Error::Invalid("no text to embed".into()));
        }
        let texts: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        // Tokenised and encoded on a thread of the CPU pool, as the
        // encoders run (`cpu::on_pool`).
        polymodal_core::cpu::on_pool(|| {
            let batch = self.tokenizer.encode_batch(&texts)?.to_tensors(device)?;
            let pooled = self.bert.encode(&batch)?.pooled;
            Ok(if self.normalize {
                l2_normalize(pooled)
            } else {
                pooled
            })
        })
    }
}

fn pooling_of(path: &Path) -> Result<BertPooling> {
    let p: PoolingFile = read_json(path)?;
    match (
        p.pooling_mode_mean_tokens,
        p.pooling_mode_cls_token,
        p.pooling_mode_max_tokens || p.pooling_mode_mean_sqrt_len_tokens,
    ) {
        (true, false, false) => Ok(BertPooling::Mean),
        (false, true, false) => Ok(BertPooling::Cls),
        _ => Err(Error::Config(format!(
            "{}: only mean or CLS pooling (one of them) is supported",
            path.display()
        ))),
    }
}
