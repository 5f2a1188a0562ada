//! `polymodal embed`: embeddings from a trained model or a Hugging Face folder.

use std::path::{Path, PathBuf};

use burn::prelude::Device;

use polymodal::{Error, Result};

use super::args::{InferenceDevice, SampleFiles};

/// Embeddings as JSON: with a trained model folder, the fused
/// representation (the head's input) of one sample given as files; with a
/// Hugging Face sentence-transformers folder (config.json,
/// model.safetensors, tokenizer.json), one sentence embedding per TEXT,
/// one line each.
#[derive(clap::Args)]
pub struct Embed {
    /// Model folder.
    #[arg(long)]
    model: PathBuf,
    /// Texts to embed (Hugging Face text models).
    texts: Vec<String>,
    #[command(flatten)]
    files: SampleFiles,
    #[command(flatten)]
    device: InferenceDevice,
}

impl Embed {
    /// Prints one JSON array per embedding.
    pub fn run(self) -> Result<()> {
        let device = self.device.device()?;
        let vectors = if self.model.join("model.json").is_file() {
            if !self.texts.is_empty() {
                return Err(Error::Config(format!(
                    "{} is a trained polymodal model: give the sample as files \
                     (--text FILE, --image, --audio, --video), not as arguments",
                    self.model.display()
                )));
            }
            vec![polymodal::embed_files(
                &self.model,
                &self.files.list()?,
                &device,
            )?]
        } else if self.model.join("config.json").is_file() {
            embed_texts(&self.model, &self.texts, &device)?
        } else {
            return Err(Error::Config(format!(
                "{}: neither a polymodal model folder (model.json) nor a Hugging Face \
                 model folder (config.json)",
                self.model.display()
            )));
        };
        for vector in vectors {
            let line = serde_json::to_string(&vector).map_err(|e| Error::Invalid(e.to_string()))?;
            println!("{line}");
        }
        Ok(())
    }
}

/// Sentence embeddings of `texts` with a Hugging Face sentence-transformers
/// folder, one batch.
fn embed_texts(dir: &Path, texts: &[String], device: &Device) -> Result<Vec<Vec<f32>>> {
    if texts.is_empty() {
        return Err(Error::Config(
            "give the texts to embed as arguments: polymodal embed --model DIR \"some text\""
                .into(),
        ));
    }
    let (encoder, _) = polymodal::text::SentenceEncoder::load(dir, device)?;
    let values = encoder
        .embed(texts, device)?
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Invalid(format!("{e:?}")))?;
    Ok(values.chunks(encoder.dim()).map(<[f32]>::to_vec).collect())
}
