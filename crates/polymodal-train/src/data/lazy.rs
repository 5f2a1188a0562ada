//! Datasets decoded from a manifest: [`LazyDataset`] (decoded when a batch
//! needs them) and [`load_dataset`] (all at once), and decoding one entry.

use std::collections::BTreeMap;

use serde::Serialize;

use polymodal_audio::MelSpectrogram;
use polymodal_core::{Error, Result};

use crate::data::cache::FeatureCache;
use crate::data::dataset::{Dataset, Example, Label, Samples};
use crate::data::features::{
    FeatureConfig, Features, Media, audio_features, image_features, read_text, video_features,
};
use crate::data::parallel::parallel_map;
use crate::manifest::{LabelNames, ManifestEntry, class_names};

/// A manifest whose media are decoded when a batch needs them, on all
/// cores, through an optional [`FeatureCache`]. Memory stays at a few
/// batches however large the dataset.
pub struct LazyDataset {
    entries: Vec<ManifestEntry>,
    config: FeatureConfig,
    classes: Vec<String>,
    labels: Vec<Label>,
    mel: MelSpectrogram,
    cache: Option<FeatureCache>,
}

impl LazyDataset {
    /// A lazy dataset over `entries`; labels are checked now (`classes`:
    /// the list to index into, `None` for the sorted labels of `entries`).
    pub fn new(
        entries: Vec<ManifestEntry>,
        config: FeatureConfig,
        classes: Option<&[String]>,
        cache: Option<FeatureCache>,
    ) -> Result<Self> {
        config.validate()?;
        // Fail before any decoding rather than at the first batch with a video.
        #[cfg(not(feature = "video"))]
        if let Some(video) = entries.iter().find_map(|e| e.video.as_deref()) {
            return Err(crate::data::features::no_video_support(video));
        }
        let classes = classes.map_or_else(|| class_names(&entries), <[String]>::to_vec);
        let labels = entries
            .iter()
            .map(|e| label_of(&e.id, &e.label, &classes))
            .collect::<Result<_>>()?;
        let mel = MelSpectrogram::new(config.audio.mel.clone())?;
        Ok(Self {
            entries,
            config,
            classes,
            labels,
            mel,
            cache,
        })
    }

    /// Decodes every sample into memory.
    pub fn decode_all(&self) -> Result<Dataset> {
        let all: Vec<usize> = (0..self.entries.len()).collect();
        Ok(Dataset {
            examples: self.load(&all)?,
            classes: self.classes.clone(),
        })
    }
}

impl Samples for LazyDataset {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn targets(&self) -> Vec<Label> {
        self.labels.clone()
    }

    fn load(&self, indices: &[usize]) -> Result<Vec<Example>> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.entries.len()) {
            return Err(Error::Invalid(format!(
                "sample {bad} of a dataset of {}",
                self.entries.len()
            )));
        }
        parallel_map(indices, |&i| {
            decode_entry(
                &self.entries[i],
                &self.config,
                &self.mel,
                &self.classes,
                self.cache.as_ref(),
            )
        })
    }
}

/// Decodes every entry's media. `classes`: the class list to index labels
/// into (`None`: the sorted labels of `entries`). Decoding runs on all cores;
/// the first failure is returned, naming the file.
pub fn load_dataset(
    entries: &[ManifestEntry],
    config: &FeatureConfig,
    classes: Option<&[String]>,
) -> Result<Dataset> {
    LazyDataset::new(entries.to_vec(), config.clone(), classes, None)?.decode_all()
}

/// Decodes one manifest entry, through `cache` when given.
fn decode_entry(
    entry: &ManifestEntry,
    config: &FeatureConfig,
    mel: &MelSpectrogram,
    classes: &[String],
    cache: Option<&FeatureCache>,
) -> Result<Example> {
    let media = SampleMedia {
        text: entry.text.as_deref().map(Media::File),
        image: entry.image.as_deref().map(Media::File),
        audio: entry.audio.as_deref().map(Media::File),
        video: entry.video.as_deref().map(Media::File),
    };
    Ok(Example {
        id: entry.id.clone(),
        features: decode_media(&media, config, mel, cache)?,
        label: label_of(&entry.id, &entry.label, classes)?,
    })
}

/// The media of one sample, each modality's where it is.
pub(crate) struct SampleMedia<'a> {
    /// Text.
    pub text: Option<Media<'a>>,
    /// Image.
    pub image: Option<Media<'a>>,
    /// Audio.
    pub audio: Option<Media<'a>>,
    /// Video.
    pub video: Option<Media<'a>>,
}

/// The features of one sample's `media`, through `cache` when given.
pub(crate) fn decode_media(
    media: &SampleMedia,
    config: &FeatureConfig,
    mel: &MelSpectrogram,
    cache: Option<&FeatureCache>,
) -> Result<Features> {
    let cached = |media: Media,
                  modality: &str,
                  settings: String,
                  shape: &[usize],
                  compute: &dyn Fn() -> Result<Vec<f32>>| {
        match cache {
            Some(cache) => cache.get_or_compute_media(media, modality, &settings, shape, compute),
            None => compute(),
        }
    };
    let audio_shape = config.audio_shape_with(mel);
    Ok(Features {
        text: media.text.map(read_text).transpose()?,
        image: media
            .image
            .map(|m| {
                cached(
                    m,
                    "image",
                    settings_key(&config.image),
                    &config.image_shape(),
                    &|| image_features(m, &config.image),
                )
            })
            .transpose()?,
        audio: media
            .audio
            .map(|m| {
                cached(
                    m,
                    "audio",
                    settings_key(&config.audio),
                    &audio_shape,
                    &|| audio_features(m, &config.audio, mel),
                )
            })
            .transpose()?,
        video: media
            .video
            .map(|m| {
                cached(
                    m,
                    "video",
                    settings_key(&config.video),
                    &config.video_shape(),
                    &|| video_features(m, &config.video),
                )
            })
            .transpose()?,
        embedded: BTreeMap::new(),
    })
}

/// The label of sample `id` as indices into `classes`; a class name not in
/// the list is an error naming the sample.
pub(crate) fn label_of(id: &str, label: &LabelNames, classes: &[String]) -> Result<Label> {
    let index = |name: &String| {
        classes.iter().position(|c| c == name).ok_or_else(|| {
            Error::Config(format!(
                "sample `{}`: label `{name}` is not one of the training classes {classes:?}",
                id
            ))
        })
    };
    Ok(match label {
        LabelNames::Single(name) => Label::Single(index(name)?),
        LabelNames::Multi(names) => Label::multi(
            &names.iter().map(index).collect::<Result<Vec<_>>>()?,
            classes.len(),
        ),
    })
}

/// The cache key of a settings value: its JSON form.
fn settings_key<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::LabelNames;

    fn entry(id: &str, image: Option<&str>, video: Option<&str>) -> ManifestEntry {
        ManifestEntry {
            id: id.into(),
            label: LabelNames::Single("a".into()),
            text: None,
            image: image.map(Into::into),
            audio: None,
            video: video.map(Into::into),
        }
    }

    /// Without the `video` feature a sample with a video is an error naming
    /// the file, before anything is decoded; samples without one are fine.
    #[cfg(not(feature = "video"))]
    #[test]
    fn a_video_without_the_feature_is_an_error_naming_it() {
        let config = FeatureConfig::default();
        let entries = vec![
            entry("0", Some("a.png"), None),
            entry("1", None, Some("clips/b.mp4")),
        ];
        let Err(error) = LazyDataset::new(entries.clone(), config.clone(), None, None) else {
            panic!("a video without the feature was accepted");
        };
        let message = error.to_string();
        assert!(
            message.contains("clips/b.mp4") && message.contains("`video` feature"),
            "{message}"
        );
        let message = crate::data::features::video_features(
            crate::data::features::Media::File(std::path::Path::new("c.mp4")),
            &config.video,
        )
        .unwrap_err()
        .to_string();
        assert!(message.contains("c.mp4"), "{message}");
        assert!(LazyDataset::new(entries[..1].to_vec(), config, None, None).is_ok());
    }

    /// With it, the dataset is built and the video decoded when asked for:
    /// a missing file is an I/O error naming it.
    #[cfg(feature = "video")]
    #[test]
    fn a_video_is_decoded_when_asked_for() {
        let entries = vec![entry("0", None, Some("no-such-clip.mp4"))];
        let data = LazyDataset::new(entries, FeatureConfig::default(), None, None).unwrap();
        let message = data.load(&[0]).unwrap_err().to_string();
        assert!(message.contains("no-such-clip.mp4"), "{message}");
    }
}
