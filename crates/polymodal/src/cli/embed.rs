//! `polymodal embed`: embeddings from a trained model or a Hugging Face folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::Device;

use indicatif::{ProgressBar, ProgressStyle};
use polymodal::core::Modality;
use polymodal::core::weights::save_f32;
use polymodal::train::shards::{expand_pattern, shard_range};
use polymodal::train::{FeatureConfig, FolderEmbedder, Samples, ShardDataset, read_manifest};
use polymodal::{Error, Result};

use super::args::{InferenceDevice, SampleFiles};

/// Embeddings as JSON: with a trained model folder, the fused
/// representation (the head's input) of one sample given as files; with a
/// Hugging Face folder of any modality (text: BERT, sentence-transformers;
/// image: ViT, ResNet, also per video frame; audio: Whisper, AST), the
/// pooled vector of each TEXT, or of the file given (--text, --image,
/// --audio, --video), one line each; with --manifest or --shards, every
/// sample's file into a safetensors file.
#[derive(clap::Args)]
pub struct Embed {
    /// Model folder.
    #[arg(long)]
    model: PathBuf,
    /// Texts to embed (Hugging Face text models).
    texts: Vec<String>,
    /// Embed every file of this JSONL or CSV manifest (of the Hugging Face
    /// folder's modality; video with an image model when the manifest has
    /// videos only), in batches, with a progress bar.
    #[arg(long, requires = "out")]
    manifest: Option<PathBuf>,
    /// Embed every sample of these tar shards (a file or a brace pattern,
    /// `shards/train-{000000..000099}.tar`; WebDataset layout, labels not
    /// needed) into --out, like --manifest.
    #[arg(long, requires = "out", conflicts_with = "manifest")]
    shards: Option<String>,
    /// With --shards: only these shards of the pattern's list (`a..b`: from
    /// a up to, not including, b; `a..`; `a`), so that a large collection
    /// splits into independent jobs.
    #[arg(long, requires = "shards")]
    shard_range: Option<String>,
    /// The safetensors file for --manifest or --shards: `embeddings`
    /// [samples, dim], with the sample ids, the model folder, the modality
    /// (and the shards) as metadata.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Samples per batch with --manifest or --shards.
    #[arg(long, default_value_t = 16)]
    batch: usize,
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
            if let (Some(manifest), Some(out)) = (&self.manifest, &self.out) {
                return embed_manifest(&self.model, manifest, out, self.batch, &device);
            }
            if let (Some(pattern), Some(out)) = (&self.shards, &self.out) {
                let jobs = ShardJob {
                    pattern,
                    range: self.shard_range.as_deref(),
                };
                return embed_shards(&self.model, jobs, out, self.batch, &device);
            }
            if self.out.is_some() {
                return Err(Error::Config(
                    "--out is where --manifest or --shards embeddings go: give one of them".into(),
                ));
            }
            if self.texts.is_empty() {
                let files = self.files.list().map_err(|_| {
                    Error::Config(
                        "give the texts to embed as arguments (polymodal embed --model DIR \
                         \"some text\"), one file (--text, --image, --audio, --video), or \
                         --manifest M --out FILE.safetensors"
                            .into(),
                    )
                })?;
                embed_file(&self.model, files, &device)?
            } else {
                embed_texts(&self.model, &self.texts, &device)?
            }
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

/// The pooled vector of the one file given, with a Hugging Face folder.
fn embed_file(
    dir: &Path,
    files: Vec<(Modality, PathBuf)>,
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let [(modality, file)] = <[_; 1]>::try_from(files).map_err(|_| {
        Error::Config("a Hugging Face folder embeds one file at a time (or --manifest)".into())
    })?;
    let embedder = FolderEmbedder::load(dir, Some(modality), device)?;
    embedder.embed(&[file], 1, device, &mut |_, _| {})
}

/// Every file of `manifest` of the folder's modality, into `out`.
fn embed_manifest(
    dir: &Path,
    manifest: &Path,
    out: &Path,
    batch: usize,
    device: &Device,
) -> Result<()> {
    let entries = read_manifest(manifest)?;
    // The first modality of the folder's that the manifest has; an image
    // model embeds the videos of a manifest that has no images.
    let own = FolderEmbedder::modalities_of(dir)?;
    let has = |m: Modality| entries.iter().any(|e| e.path(m).is_some());
    let image_videos = own.contains(&Modality::Image) && has(Modality::Video);
    let modality = match own.iter().copied().find(|&m| has(m)) {
        Some(m) => m,
        None if image_videos => Modality::Video,
        None => own[0],
    };
    let (ids, files): (Vec<String>, Vec<PathBuf>) = entries
        .iter()
        .filter_map(|e| e.path(modality).map(|f| (e.id.clone(), f.to_path_buf())))
        .unzip();
    if files.is_empty() {
        return Err(Error::Config(format!(
            "{}: no sample has {modality}, the modality of {}",
            manifest.display(),
            dir.display()
        )));
    }
    let embedder = FolderEmbedder::load(dir, Some(modality), device)?;
    let bar = progress_bar(files.len());
    let vectors = embedder.embed(&files, batch, device, &mut |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    save_embeddings(out, dir, modality, &ids, &vectors, BTreeMap::new())
}

/// The shards of a `--shards` job: a pattern and an optional range of it.
struct ShardJob<'a> {
    pattern: &'a str,
    range: Option<&'a str>,
}

/// Every sample of the job's shards that has a modality of the folder's
/// (the first the shards hold; an image model embeds videos when they
/// hold no images), into `out`, with the shard files in the metadata.
fn embed_shards(
    dir: &Path,
    job: ShardJob,
    out: &Path,
    batch: usize,
    device: &Device,
) -> Result<()> {
    let mut shards: Vec<PathBuf> = expand_pattern(job.pattern)?
        .into_iter()
        .map(PathBuf::from)
        .collect();
    if let Some(range) = job.range {
        shards = shards[shard_range(range, shards.len())?].to_vec();
    }
    let data = ShardDataset::open_unlabelled(&shards, FeatureConfig::default())?;
    let held = data.modalities();
    let own = FolderEmbedder::modalities_of(dir)?;
    let image_videos = own.contains(&Modality::Image) && held.contains(&Modality::Video);
    let modality = match own.iter().copied().find(|m| held.contains(m)) {
        Some(m) => m,
        None if image_videos => Modality::Video,
        None => {
            return Err(Error::Config(format!(
                "{}: no sample of the shards has {}, the modality of {}",
                job.pattern,
                own[0],
                dir.display()
            )));
        }
    };
    let embedder = FolderEmbedder::load(dir, Some(modality), device)?;
    let with = data.indices_with(modality);
    let data = data
        .subset(&with)?
        .keeping(&[modality])
        .with_features(embedder.features().clone())?;
    let bar = progress_bar(data.len());
    let vectors = embedder.embed_samples(&data, batch, device, &mut |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    let ids: Vec<String> = data.ids().into_iter().map(str::to_string).collect();
    let names: Vec<String> = shards.iter().map(|p| p.display().to_string()).collect();
    let names = serde_json::to_string(&names).map_err(|e| Error::Invalid(e.to_string()))?;
    save_embeddings(
        out,
        dir,
        modality,
        &ids,
        &vectors,
        BTreeMap::from([("shards".to_string(), names)]),
    )
}

fn progress_bar(total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("embed [{bar:30}] {pos}/{len} samples {eta}")
            .expect("valid template"),
    );
    bar
}

/// `vectors` as the `embeddings` tensor of the safetensors file `out`, with
/// the sample ids, the model folder, the modality and `extra` as metadata.
fn save_embeddings(
    out: &Path,
    dir: &Path,
    modality: Modality,
    ids: &[String],
    vectors: &[Vec<f32>],
    extra: BTreeMap<String, String>,
) -> Result<()> {
    let dim = vectors.first().map_or(0, Vec::len);
    let values: Vec<f32> = vectors.concat();
    let ids = serde_json::to_string(ids).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut metadata = BTreeMap::from([
        ("ids".to_string(), ids),
        ("model".to_string(), dir.display().to_string()),
        ("modality".to_string(), modality.name().to_string()),
    ]);
    metadata.extend(extra);
    save_f32(
        out,
        &[("embeddings", vec![vectors.len(), dim], &values)],
        metadata,
    )?;
    println!(
        "{} {modality} embeddings of width {dim} written to {}",
        vectors.len(),
        out.display()
    );
    Ok(())
}
