//! `polymodal retrieve`: text ↔ image retrieval over a manifest with a CLIP
//! folder.

use std::path::{Path, PathBuf};

use burn::prelude::*;

use polymodal::core::Modality;
use polymodal::image::{ImageEncoderKind, load_rgb};
use polymodal::text::{Clip, TextTokenizer};
use polymodal::train::{ManifestEntry, read_manifest, recall_at_k};
use polymodal::{Error, Result};

use super::args::InferenceDevice;

/// Text ↔ image retrieval over a JSONL or CSV manifest with a Hugging Face
/// CLIP folder: with --query, the images that best match the text (one JSON
/// line each); without, every sample's text (a UTF-8 file) queries every
/// image and the other way round, and recall@1/5/10 is reported (a sample's
/// own image and text are the match).
#[derive(clap::Args)]
pub struct Retrieve {
    /// The CLIP folder (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// The manifest of images (and texts, for recall).
    #[arg(long)]
    manifest: PathBuf,
    /// A text to search the images for.
    #[arg(long)]
    query: Option<String>,
    /// How many images to list for --query.
    #[arg(long, default_value_t = 5)]
    top: usize,
    #[command(flatten)]
    device: InferenceDevice,
}

impl Retrieve {
    /// Lists the best images for the query, or prints recall@k both ways.
    pub fn run(self) -> Result<()> {
        let device = self.device.device()?;
        let (clip, _) = Clip::load(&self.model, &device)?;
        let tokenizer = TextTokenizer::from_file(self.model.join("tokenizer.json"), 77)?;
        let entries = read_manifest(&self.manifest)?;
        let samples: Vec<&ManifestEntry> = entries
            .iter()
            .filter(|e| e.path(Modality::Image).is_some())
            .collect();
        if samples.is_empty() {
            return Err(Error::Config(format!(
                "{}: no sample has an image",
                self.manifest.display()
            )));
        }
        let images = image_embeds(&clip, &self.model, &samples, &device)?;
        match &self.query {
            Some(query) => print_best(&clip, &tokenizer, &samples, images, query, self.top),
            None => print_recall(&clip, &tokenizer, &samples, images, &device),
        }
    }
}

/// The normalised embeddings `[samples, dim]` of the samples' images.
fn image_embeds(
    clip: &Clip,
    dir: &Path,
    samples: &[&ManifestEntry],
    device: &Device,
) -> Result<Tensor<2>> {
    let preprocess = ImageEncoderKind::Clip.preprocess(dir)?;
    let side = preprocess.width as usize;
    let mut rows = Vec::with_capacity(samples.len());
    for chunk in samples.chunks(16) {
        let mut pixels = Vec::with_capacity(chunk.len() * 3 * side * side);
        for entry in chunk {
            let path = entry.path(Modality::Image).expect("filtered");
            pixels.extend(preprocess.apply(&load_rgb(path)?)?);
        }
        let pixels = Tensor::<4>::from_data(
            TensorData::new(pixels, [chunk.len(), 3, side, side]),
            device,
        );
        rows.push(clip.image_embeds(pixels)?);
    }
    Ok(Tensor::cat(rows, 0))
}

/// The `top` images most similar to `query`, best first.
fn print_best(
    clip: &Clip,
    tokenizer: &TextTokenizer,
    samples: &[&ManifestEntry],
    images: Tensor<2>,
    query: &str,
    top: usize,
) -> Result<()> {
    let batch = tokenizer
        .encode_batch(&[query])?
        .to_tensors(&images.device())?;
    let text = clip.text_embeds(batch.ids, batch.mask)?;
    let scores = values(text.matmul(images.transpose()))?;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    for &i in order.iter().take(top) {
        let line = serde_json::json!({
            "id": samples[i].id,
            "image": samples[i].path(Modality::Image),
            "cosine": scores[i],
        });
        println!("{line}");
    }
    Ok(())
}

/// Recall@1/5/10 of text → image and image → text over the samples that
/// have both (each one's own pair is the match).
fn print_recall(
    clip: &Clip,
    tokenizer: &TextTokenizer,
    samples: &[&ManifestEntry],
    images: Tensor<2>,
    device: &Device,
) -> Result<()> {
    let mut texts = Vec::new();
    let mut owners = Vec::new();
    for (i, entry) in samples.iter().enumerate() {
        if let Some(path) = entry.path(Modality::Text) {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            texts.push(text.trim().to_string());
            owners.push(i);
        }
    }
    if texts.is_empty() {
        return Err(Error::Config(
            "recall needs samples with both a text and an image (or give --query)".into(),
        ));
    }
    let mut rows = Vec::new();
    for chunk in texts.chunks(64) {
        let batch = tokenizer.encode_batch(chunk)?.to_tensors(device)?;
        rows.push(clip.text_embeds(batch.ids, batch.mask)?);
    }
    let text_embeds = Tensor::cat(rows, 0);
    let similarity = text_embeds.matmul(images.transpose()); // [texts, images]
    let mut report = serde_json::Map::new();
    report.insert("texts".into(), texts.len().into());
    report.insert("images".into(), samples.len().into());
    for k in [1, 5, 10] {
        let text_to_image = recall_at_k(&similarity, k, |q, c| owners[q] == c)?;
        let image_to_text = recall_at_k(&similarity.clone().transpose(), k, |q, c| owners[c] == q)?;
        report.insert(format!("text_to_image_recall@{k}"), text_to_image.into());
        report.insert(format!("image_to_text_recall@{k}"), image_to_text.into());
    }
    println!("{}", serde_json::Value::Object(report));
    Ok(())
}

fn values(t: Tensor<2>) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| Error::Invalid(format!("{e:?}")))
}
