//! Embeddings from a pretrained Hugging Face folder of any modality
//! ([`FolderEmbedder`]): the folder's kind decides the encoder (through the
//! modality crates' registries) and its inputs (tokenizer, preprocessing,
//! log-mel settings), as in training.

use std::path::{Path, PathBuf};

use burn::prelude::*;

use polymodal_audio::AudioEncoderKind;
use polymodal_core::{Error, Modality, Result, l2_normalize};
use polymodal_fusion::FusionKind;
use polymodal_image::ImageEncoderKind;
use polymodal_text::TextEncoderKind;

use super::{ClassifierConfig, EncoderChoice, EncoderMode, MultimodalClassifier, folder_features};
use crate::data::prefetched;
use crate::{Batcher, Example, FeatureConfig, LabelNames, ManifestEntry, Samples, load_dataset};

/// Tokens a text is cut at (or the model's position table, if shorter).
const MAX_TOKENS: usize = 512;

/// A pretrained encoder loaded from its folder, with the inputs the folder
/// describes; [`FolderEmbedder::embed`] gives one pooled vector per sample.
pub struct FolderEmbedder {
    model: MultimodalClassifier,
    batcher: Batcher,
    features: FeatureConfig,
    modality: Modality,
    /// sentence-transformers folders L2-normalise, as
    /// `polymodal_text::SentenceEncoder::embed` does.
    normalize: bool,
}

impl FolderEmbedder {
    /// The modalities a folder's model reads, from its `config.json`: text
    /// (BERT, sentence-transformers, CLIP's text tower), image (ViT, ResNet,
    /// CLIP's vision tower), audio (Whisper, AST); a CLIP folder reads text
    /// and images. An image model also embeds videos (frame by frame, the
    /// mean over frames): ask for [`Modality::Video`].
    pub fn modalities_of(dir: &Path) -> Result<Vec<Modality>> {
        let found: Vec<Modality> = [
            (Modality::Text, TextEncoderKind::detect(dir).is_ok()),
            (Modality::Image, ImageEncoderKind::detect(dir).is_ok()),
            (Modality::Audio, AudioEncoderKind::detect(dir).is_ok()),
        ]
        .into_iter()
        .filter_map(|(m, yes)| yes.then_some(m))
        .collect();
        if found.is_empty() {
            // The audio registry's error names the folder and what it found.
            let error = AudioEncoderKind::detect(dir).err();
            return Err(Error::Config(format!(
                "{} (nor a text or image model)",
                error.map_or_else(String::new, |e| e.to_string())
            )));
        }
        Ok(found)
    }

    /// Loads the folder `dir` to embed `modality` (default: the folder's
    /// first, [`FolderEmbedder::modalities_of`]; video for an image folder).
    pub fn load(dir: &Path, modality: Option<Modality>, device: &Device) -> Result<Self> {
        let own = Self::modalities_of(dir)?;
        let modality = modality.unwrap_or(own[0]);
        let reads =
            |m| own.contains(&m) || (m == Modality::Video && own.contains(&Modality::Image));
        if !reads(modality) {
            let names: Vec<&str> = own.iter().map(|m| m.name()).collect();
            return Err(Error::Config(format!(
                "{} holds a {} model: it cannot embed {modality}",
                dir.display(),
                names.join(" and ")
            )));
        }
        let choice = EncoderChoice::pretrained(dir, EncoderMode::Frozen);
        let config = ClassifierConfig::new(vec![modality], FusionKind::None, 2)
            .with_encoder(modality, choice);
        let encoders = config.encoders.clone();
        let mut features = FeatureConfig::default();
        let tokenizer = folder_features(&encoders, &[modality], &mut features, MAX_TOKENS, false)?;
        let batcher = Batcher::new(vec![modality], features.clone(), tokenizer)?;
        let normalize = modality == Modality::Text
            && ["modules.json", "1_Pooling/config.json"]
                .iter()
                .any(|file| dir.join(file).is_file());
        Ok(Self {
            model: config.init(device)?,
            batcher,
            features,
            modality,
            normalize,
        })
    }

    /// The modality embedded.
    pub fn modality(&self) -> Modality {
        self.modality
    }

    /// One pooled vector per file of `files` (this modality's), computed
    /// `batch` at a time; `progress(done, total)` after each batch.
    pub fn embed(
        &self,
        files: &[PathBuf],
        batch: usize,
        device: &Device,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<Vec<f32>>> {
        let mut vectors = Vec::with_capacity(files.len());
        for chunk in files.chunks(batch.max(1)) {
            vectors.extend(self.embed_batch(chunk, device)?);
            progress(vectors.len(), files.len());
        }
        Ok(vectors)
    }

    /// The feature settings the folder decides: open a dataset with them
    /// for [`Self::embed_samples`].
    pub fn features(&self) -> &FeatureConfig {
        &self.features
    }

    /// One pooled vector per sample of `data` (decoded with
    /// [`Self::features`]; each must have this modality), computed `batch`
    /// at a time while the next batch decodes; `progress(done, total)`
    /// after each batch.
    pub fn embed_samples(
        &self,
        data: &dyn Samples,
        batch: usize,
        device: &Device,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<Vec<f32>>> {
        let all: Vec<usize> = (0..data.len()).collect();
        let chunks: Vec<Vec<usize>> = all.chunks(batch.max(1)).map(<[usize]>::to_vec).collect();
        prefetched(data, chunks, |batches| {
            let mut vectors = Vec::with_capacity(data.len());
            for examples in batches {
                vectors.extend(self.embed_examples(&examples?, device)?);
                progress(vectors.len(), data.len());
            }
            Ok(vectors)
        })
    }

    fn embed_batch(&self, files: &[PathBuf], device: &Device) -> Result<Vec<Vec<f32>>> {
        let entries: Vec<ManifestEntry> = files
            .iter()
            .enumerate()
            .map(|(i, path)| entry(i, self.modality, path))
            .collect();
        let data = load_dataset(&entries, &self.features, Some(&["_".to_string()]))?;
        self.embed_examples(&data.examples, device)
    }

    fn embed_examples(&self, examples: &[Example], device: &Device) -> Result<Vec<Vec<f32>>> {
        if let Some(e) = examples.iter().find(|e| !e.features.has(self.modality)) {
            return Err(Error::Config(format!(
                "sample `{}` has no {}, the modality embedded",
                e.id, self.modality
            )));
        }
        let examples: Vec<_> = examples.iter().collect();
        let batch = self.batcher.batch(&examples, device)?;
        let part = self
            .model
            .encode(self.modality, &batch)?
            .ok_or_else(|| Error::Config(format!("no {} encoder", self.modality)))?;
        let pooled = part.embeddings.pooled;
        let pooled = if self.normalize {
            l2_normalize(pooled)
        } else {
            pooled
        };
        let [_, dim] = pooled.dims();
        let values = pooled
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::Invalid(format!("embeddings: {e:?}")))?;
        Ok(values.chunks(dim).map(<[f32]>::to_vec).collect())
    }
}

/// An unlabelled manifest entry holding one file of `modality`.
fn entry(index: usize, modality: Modality, path: &Path) -> ManifestEntry {
    let mut entry = ManifestEntry {
        id: index.to_string(),
        label: LabelNames::Single("_".into()),
        text: None,
        image: None,
        audio: None,
        video: None,
    };
    let slot = match modality {
        Modality::Text => &mut entry.text,
        Modality::Image => &mut entry.image,
        Modality::Audio => &mut entry.audio,
        Modality::Video => &mut entry.video,
    };
    *slot = Some(path.to_path_buf());
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use polymodal_core::Encoder;
    use polymodal_core::testing::encoder_fixture;

    /// Image files embedded through the folder give the fixture ViT's own
    /// class-token vectors of the same preprocessed pixels; a folder of
    /// another modality is refused for images.
    #[test]
    fn a_vit_folder_embeds_image_files() {
        let dir = std::env::temp_dir().join(format!("polymodal-embedder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files: Vec<PathBuf> = (0..3u8)
            .map(|i| {
                let image = image::RgbImage::from_fn(20, 12, |x, y| {
                    image::Rgb([x as u8 * 9 + i * 40, y as u8 * 17, 255 - i * 60])
                });
                let path = dir.join(format!("{i}.png"));
                image.save(&path).unwrap();
                path
            })
            .collect();
        let device = Device::flex();
        let vit = encoder_fixture("vit");
        assert_eq!(
            FolderEmbedder::modalities_of(&vit).unwrap(),
            [Modality::Image]
        );
        let clip = encoder_fixture("clip");
        let both = [Modality::Text, Modality::Image];
        assert_eq!(FolderEmbedder::modalities_of(&clip).unwrap(), both);
        let embedder = FolderEmbedder::load(&vit, None, &device).unwrap();
        let mut calls = Vec::new();
        let vectors = embedder
            .embed(&files, 2, &device, &mut |done, total| {
                calls.push((done, total))
            })
            .unwrap();
        assert_eq!(calls, [(2, 3), (3, 3)]);
        // The same pixels straight through the encoder.
        let (direct, _) = polymodal_image::Vit::load(&vit, &device).unwrap();
        let preprocess = ImageEncoderKind::Vit.preprocess(&vit).unwrap();
        for (file, vector) in files.iter().zip(&vectors) {
            let pixels = preprocess
                .apply(&polymodal_image::load_rgb(file).unwrap())
                .unwrap();
            let side = preprocess.width as usize;
            let input =
                Tensor::<4>::from_data(TensorData::new(pixels, [1, 3, side, side]), &device);
            let want = direct
                .encode(&input)
                .unwrap()
                .pooled
                .try_into_vec_as::<f32>()
                .unwrap();
            let diff = polymodal_core::testing::max_abs_diff(vector, &want);
            assert!(diff < 1e-5, "{}: {diff}", file.display());
        }
        let error = FolderEmbedder::load(&encoder_fixture("bert"), Some(Modality::Image), &device)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("text model"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
