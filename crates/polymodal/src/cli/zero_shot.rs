//! `polymodal zero-shot`: classify images with a CLIP folder and label
//! names only.

use std::path::PathBuf;

use polymodal::image::{ImageEncoderKind, load_rgb};
use polymodal::text::{Clip, TextTokenizer};
use polymodal::{Error, Result};

use super::args::InferenceDevice;

/// Zero-shot image classification with a Hugging Face CLIP folder
/// (config.json, model.safetensors, tokenizer.json): the probability of
/// each label for each image, one JSON line per image.
#[derive(clap::Args)]
pub struct ZeroShot {
    /// The CLIP folder.
    #[arg(long)]
    model: PathBuf,
    /// Images to classify.
    #[arg(long = "image", required = true)]
    images: Vec<PathBuf>,
    /// The labels, comma-separated ("dog,cat,a red car").
    #[arg(long, value_delimiter = ',', required = true)]
    labels: Vec<String>,
    /// A prompt template with `{}` for the label; repeat for an ensemble
    /// (the mean of the prompts' embeddings).
    #[arg(long = "template", default_value = "a photo of a {}.")]
    templates: Vec<String>,
    #[command(flatten)]
    device: InferenceDevice,
}

impl ZeroShot {
    /// Prints `{"file": …, "probabilities": {label: p, …}}` per image.
    pub fn run(self) -> Result<()> {
        let device = self.device.device()?;
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        let (clip, _) = Clip::load(&self.model, &device)?;
        let tokenizer = TextTokenizer::from_file(self.model.join("tokenizer.json"), 77)?;
        let preprocess = ImageEncoderKind::Clip.preprocess(&self.model)?;
        let side = preprocess.width as usize;
        for file in &self.images {
            let pixels = preprocess.apply(&load_rgb(file)?)?;
            let pixels = burn::tensor::Tensor::<4>::from_data(
                burn::tensor::TensorData::new(pixels, [1, 3, side, side]),
                &device,
            );
            let probabilities = clip
                .zero_shot(&tokenizer, pixels, &labels, &self.templates)?
                .try_into_vec_as::<f32>()
                .map_err(|e| Error::Invalid(format!("{e:?}")))?;
            let row: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .zip(probabilities)
                .map(|(label, p)| (label.clone(), serde_json::json!(p)))
                .collect();
            let line = serde_json::json!({"file": file, "probabilities": row});
            println!("{line}");
        }
        Ok(())
    }
}
