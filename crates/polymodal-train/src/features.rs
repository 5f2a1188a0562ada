//! Decoding a manifest's media into model-ready features, on worker threads.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use polymodal_audio::{MelConfig, MelSpectrogram};
use polymodal_core::{Error, Modality, Result};
use polymodal_image::ImagePreprocess;

use crate::manifest::{LabelNames, ManifestEntry};
use crate::source::{FeatureCache, LazyDataset};

/// Audio feature settings: a fixed-length clip turned into a log-mel spectrogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioFeatures {
    /// Clip length in samples (longer audio is cut, shorter is zero-padded).
    pub clip_samples: usize,
    /// The spectrogram; its `sample_rate` is the rate the audio must have.
    pub mel: MelConfig,
    /// Scale each spectrogram to zero mean and unit variance.
    pub standardize: bool,
}

/// Video feature settings: uniformly sampled frames, each preprocessed like an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VideoFeatures {
    /// Frames kept per clip.
    pub frames: usize,
    /// Per-frame preprocessing.
    pub preprocess: ImagePreprocess,
}

/// How each modality's files become features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureConfig {
    /// Images.
    pub image: ImagePreprocess,
    /// Audio.
    pub audio: AudioFeatures,
    /// Video.
    pub video: VideoFeatures,
}

/// Images as 64×64 RGB with ImageNet statistics: small enough to train a
/// CNN from scratch on a CPU.
fn default_image() -> ImagePreprocess {
    ImagePreprocess::new(64, 64)
}

impl Default for AudioFeatures {
    /// One second at 16 kHz as 64 log-mel bands (25 ms window, 10 ms hop),
    /// standardised per clip.
    fn default() -> Self {
        Self {
            clip_samples: 16_000,
            mel: MelConfig::librosa(16_000, 400, 160, 64),
            standardize: true,
        }
    }
}

impl Default for VideoFeatures {
    /// Eight uniformly sampled frames, each like a default image.
    fn default() -> Self {
        Self {
            frames: 8,
            preprocess: default_image(),
        }
    }
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            image: default_image(),
            audio: AudioFeatures::default(),
            video: VideoFeatures::default(),
        }
    }
}

/// The longest audio clip the features take, in samples: an hour at 48 kHz.
pub const MAX_CLIP_SAMPLES: usize = 3600 * 48_000;

impl FeatureConfig {
    /// Checks every setting (they often come from an experiment file); the
    /// error names the setting.
    pub fn validate(&self) -> Result<()> {
        fn named(what: &'static str) -> impl Fn(Error) -> Error {
            move |e| Error::Config(format!("features.{what}: {e}"))
        }
        self.image.validate().map_err(named("image"))?;
        self.video
            .preprocess
            .validate()
            .map_err(named("video.preprocess"))?;
        let frames = self.video.frames;
        if frames == 0 || frames > polymodal_video::MAX_SAMPLED_FRAMES {
            return Err(Error::Config(format!(
                "features.video.frames must be 1 to {}, got {frames}",
                polymodal_video::MAX_SAMPLED_FRAMES
            )));
        }
        let clip = self.audio.clip_samples;
        if clip == 0 || clip > MAX_CLIP_SAMPLES {
            return Err(Error::Config(format!(
                "features.audio.clip_samples must be 1 to {MAX_CLIP_SAMPLES}, got {clip}"
            )));
        }
        MelSpectrogram::new(self.audio.mel.clone()).map_err(named("audio.mel"))?;
        Ok(())
    }

    /// Image shape `[channels, height, width]`.
    pub fn image_shape(&self) -> [usize; 3] {
        let pre = &self.image;
        [pre.channels(), pre.height as usize, pre.width as usize]
    }

    /// Clip shape `[frames, channels, height, width]`.
    pub fn video_shape(&self) -> [usize; 4] {
        let pre = &self.video.preprocess;
        [
            self.video.frames,
            pre.channels(),
            pre.height as usize,
            pre.width as usize,
        ]
    }

    /// Spectrogram shape `[mels, frames]`.
    pub fn audio_shape(&self) -> Result<[usize; 2]> {
        let mel = MelSpectrogram::new(self.audio.mel.clone())?;
        Ok([
            self.audio.mel.n_mels,
            mel.frames_for(self.audio.clip_samples),
        ])
    }
}

/// The decoded features of one sample (`None`: the sample lacks the modality).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features {
    /// Raw text.
    pub text: Option<String>,
    /// `[channels, height, width]` values.
    pub image: Option<Vec<f32>>,
    /// `[mels, frames]` values.
    pub audio: Option<Vec<f32>>,
    /// `[frames, channels, height, width]` values.
    pub video: Option<Vec<f32>>,
}

impl Features {
    /// Whether the sample has `modality`.
    pub fn has(&self, modality: Modality) -> bool {
        match modality {
            Modality::Text => self.text.is_some(),
            Modality::Image => self.image.is_some(),
            Modality::Audio => self.audio.is_some(),
            Modality::Video => self.video.is_some(),
        }
    }
}

/// What a sample is labelled with, as indices into [`Dataset::classes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Label {
    /// Single-label classification: the one class of the sample.
    Single(usize),
    /// Multi-label classification: whether the sample has each class (one
    /// flag per class of the dataset; all false is allowed).
    Multi(Vec<bool>),
}

impl Label {
    /// A multi-label target with the classes `positive` out of `classes`.
    pub fn multi(positive: &[usize], classes: usize) -> Label {
        let mut flags = vec![false; classes];
        for &c in positive {
            if c < classes {
                flags[c] = true;
            }
        }
        Label::Multi(flags)
    }

    /// The class used to stratify splits: the class of a single-label sample;
    /// for a multi-label one its first class, or the number of classes when it
    /// has none (a stratum of its own).
    pub fn stratum(&self) -> usize {
        match self {
            Label::Single(c) => *c,
            Label::Multi(flags) => flags.iter().position(|&f| f).unwrap_or(flags.len()),
        }
    }

    /// Whether this is a multi-label target.
    pub fn is_multi(&self) -> bool {
        matches!(self, Label::Multi(_))
    }
}

/// A decoded sample with its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Sample name.
    pub id: String,
    /// Features.
    pub features: Features,
    /// Class or classes, indexing [`Dataset::classes`].
    pub label: Label,
}

/// Decoded samples and their class names.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Samples.
    pub examples: Vec<Example>,
    /// Class names; a label is an index into this list.
    pub classes: Vec<String>,
}

impl Dataset {
    /// The samples at `indices`, with the same classes.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        Dataset {
            examples: indices.iter().map(|&i| self.examples[i].clone()).collect(),
            classes: self.classes.clone(),
        }
    }

    /// A copy in which no sample has `modality` (to measure a model with a
    /// modality missing at test time).
    pub fn without(&self, modality: Modality) -> Dataset {
        let mut data = self.clone();
        for e in &mut data.examples {
            match modality {
                Modality::Text => e.features.text = None,
                Modality::Image => e.features.image = None,
                Modality::Audio => e.features.audio = None,
                Modality::Video => e.features.video = None,
            }
        }
        data
    }

    /// The class of every sample (its [`Label::stratum`] for multi-label
    /// data).
    pub fn labels(&self) -> Vec<usize> {
        self.examples.iter().map(|e| e.label.stratum()).collect()
    }

    /// The label of every sample.
    pub fn targets(&self) -> Vec<Label> {
        self.examples.iter().map(|e| e.label.clone()).collect()
    }

    /// The modalities at least one sample has.
    pub fn modalities(&self) -> BTreeSet<Modality> {
        Modality::ALL
            .into_iter()
            .filter(|&m| self.examples.iter().any(|e| e.features.has(m)))
            .collect()
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

/// `f` over `items` on all cores, in order; the first failure is returned.
pub(crate) fn parallel_map<T: Sync, U: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<U> + Sync,
) -> Result<Vec<U>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len().max(1));
    let chunk = items.len().div_ceil(workers).max(1);
    let parts: Vec<Result<Vec<U>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&f).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Invalid("a decoding thread panicked".into())))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(items.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// Decodes one manifest entry, through `cache` when given.
pub(crate) fn decode_entry(
    entry: &ManifestEntry,
    config: &FeatureConfig,
    mel: &MelSpectrogram,
    classes: &[String],
    cache: Option<&FeatureCache>,
) -> Result<Example> {
    let label = label_of(entry, classes)?;
    let cached = |path: &Path,
                  modality: &str,
                  settings: String,
                  shape: &[usize],
                  compute: &dyn Fn() -> Result<Vec<f32>>| {
        match cache {
            Some(cache) => cache.get_or_compute(path, modality, &settings, shape, compute),
            None => compute(),
        }
    };
    let audio_shape = [
        config.audio.mel.n_mels,
        mel.frames_for(config.audio.clip_samples),
    ];
    let features = Features {
        text: entry.text.as_deref().map(read_text).transpose()?,
        image: entry
            .image
            .as_deref()
            .map(|p| {
                cached(
                    p,
                    "image",
                    settings_key(&config.image),
                    &config.image_shape(),
                    &|| polymodal_image::load_rgb(p).and_then(|i| config.image.apply(&i)),
                )
            })
            .transpose()?,
        audio: entry
            .audio
            .as_deref()
            .map(|p| {
                cached(
                    p,
                    "audio",
                    settings_key(&config.audio),
                    &audio_shape,
                    &|| audio_features(p, &config.audio, mel),
                )
            })
            .transpose()?,
        video: entry
            .video
            .as_deref()
            .map(|p| {
                cached(
                    p,
                    "video",
                    settings_key(&config.video),
                    &config.video_shape(),
                    &|| video_features(p, &config.video),
                )
            })
            .transpose()?,
    };
    Ok(Example {
        id: entry.id.clone(),
        features,
        label,
    })
}

/// The label of `entry` as indices into `classes`; a class name not in the
/// list is an error naming the sample.
pub(crate) fn label_of(entry: &ManifestEntry, classes: &[String]) -> Result<Label> {
    let index = |name: &String| {
        classes.iter().position(|c| c == name).ok_or_else(|| {
            Error::Config(format!(
                "sample `{}`: label `{name}` is not one of the training classes {classes:?}",
                entry.id
            ))
        })
    };
    Ok(match &entry.label {
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

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| Error::decode(path, "text", format!("not UTF-8 ({e})")))
}

pub(crate) fn audio_features(
    path: &Path,
    config: &AudioFeatures,
    mel: &MelSpectrogram,
) -> Result<Vec<f32>> {
    let clip = polymodal_audio::decode_file(path)?;
    if clip.sample_rate != config.mel.sample_rate {
        return Err(Error::decode(
            path,
            "audio",
            format!(
                "sample rate {} Hz, the features expect {} Hz",
                clip.sample_rate, config.mel.sample_rate
            ),
        ));
    }
    let mut samples = clip.to_mono();
    samples.resize(config.clip_samples, 0.0);
    let (mut values, _) = mel.compute(&samples)?;
    if config.standardize {
        standardize(&mut values);
    }
    Ok(values)
}

fn standardize(values: &mut [f32]) {
    let n = values.len() as f32;
    let mean = values.iter().sum::<f32>() / n;
    let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n)
        .sqrt()
        .max(1e-6);
    values.iter_mut().for_each(|v| *v = (*v - mean) / std);
}

/// `config.frames` uniformly sampled frames. A file that holds fewer frames
/// than its header claims (cut short, or a header that lies about its
/// duration) still gives that many: instants past its last decodable frame
/// show that frame, as a player would. A file with no decodable frame is an
/// error naming it.
fn video_features(path: &Path, config: &VideoFeatures) -> Result<Vec<f32>> {
    let frames = polymodal_video::sample_uniform(path, config.frames)?;
    if frames.len() != config.frames {
        return Err(Error::decode(
            path,
            "video",
            format!(
                "{} frames sampled, {} asked for",
                frames.len(),
                config.frames
            ),
        ));
    }
    let mut values = Vec::with_capacity(frames.len() * config.preprocess.len());
    for frame in &frames {
        values.extend(config.preprocess.apply(frame)?);
    }
    Ok(values)
}
