//! Per-sample features: the settings ([`FeatureConfig`]), the decoded
//! features of a sample ([`Features`]), and computing them from one media
//! file or a shard's member ([`Media`]: text, audio, video; images go
//! through [`ImagePreprocess`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use polymodal_audio::{MelConfig, MelSpectrogram};
use polymodal_core::{Error, Modality, Result};
use polymodal_image::ImagePreprocess;

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
    /// Resample audio of another rate to `mel.sample_rate` (otherwise such a
    /// file is an error).
    pub resample: bool,
    /// Keep at most this many frames, the first, before the log scale
    /// (Whisper's encoder reads the first 3000 of the 3001 frames a centred
    /// 30-second STFT gives).
    pub max_frames: Option<usize>,
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
            resample: false,
            max_frames: None,
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
        if self.audio.max_frames == Some(0) {
            return Err(Error::Config(
                "features.audio.max_frames must be positive".into(),
            ));
        }
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
        Ok(self.audio_shape_with(&mel))
    }

    /// Spectrogram shape `[mels, frames]` made by `mel` (this config's).
    pub(crate) fn audio_shape_with(&self, mel: &MelSpectrogram) -> [usize; 2] {
        let frames = mel.frames_for(self.audio.clip_samples);
        [
            self.audio.mel.n_mels,
            self.audio
                .max_frames
                .map_or(frames, |keep| keep.min(frames)),
        ]
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
    /// A frozen encoder's output, in place of the modality's media features
    /// (see `polymodal_train::EmbeddedSamples`).
    pub embedded: BTreeMap<Modality, Embedded>,
}

/// One sample's embeddings from a frozen encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    /// The pooled vector, `[dim]`.
    pub pooled: Vec<f32>,
    /// The real tokens' vectors, `[tokens, dim]` row-major; empty when only
    /// pooled vectors are kept (feature-level fusion reads nothing else).
    pub sequence: Vec<f32>,
}

impl Features {
    /// Whether the sample has `modality`.
    pub fn has(&self, modality: Modality) -> bool {
        self.embedded.contains_key(&modality) || self.has_media(modality)
    }

    /// Whether the sample has `modality` as media features (text, decoded
    /// pixels or spectrogram), not embeddings computed ahead.
    pub fn has_media(&self, modality: Modality) -> bool {
        match modality {
            Modality::Text => self.text.is_some(),
            Modality::Image => self.image.is_some(),
            Modality::Audio => self.audio.is_some(),
            Modality::Video => self.video.is_some(),
        }
    }
}

/// One modality's media of a sample: a file, or the bytes of a shard's
/// member (named `SHARD.tar:KEY.EXT` in errors).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Media<'a> {
    /// A file on disk.
    File(&'a Path),
    /// Bytes read from somewhere else; `extension` tells their format.
    Bytes {
        /// The name errors give.
        name: &'a Path,
        /// The format's file extension (`"wav"`, `"jpg"`, ...).
        extension: &'a str,
        /// The content.
        bytes: &'a [u8],
    },
}

impl Media<'_> {
    /// The name errors give.
    pub(crate) fn name(&self) -> &Path {
        match self {
            Media::File(path) => path,
            Media::Bytes { name, .. } => name,
        }
    }

    /// The content (read from disk for a file).
    pub(crate) fn bytes(&self) -> Result<Cow<'_, [u8]>> {
        match self {
            Media::File(path) => std::fs::read(path)
                .map(Cow::Owned)
                .map_err(|e| Error::io(path, e)),
            Media::Bytes { bytes, .. } => Ok(Cow::Borrowed(bytes)),
        }
    }

    /// `error` naming this media instead of the in-memory placeholder the
    /// decoders give bytes.
    fn named(&self, error: Error) -> Error {
        match error {
            Error::Decode { what, reason, .. } => Error::decode(self.name(), what, reason),
            other => other,
        }
    }
}

/// The image `media` decoded to RGB and preprocessed.
pub(crate) fn image_features(media: Media, preprocess: &ImagePreprocess) -> Result<Vec<f32>> {
    let image = polymodal_image::decode_rgb(&media.bytes()?)
        .map_err(|reason| Error::decode(media.name(), "image", reason))?;
    preprocess.apply(&image)
}

/// The UTF-8 text of `media`.
pub(crate) fn read_text(media: Media) -> Result<String> {
    String::from_utf8(media.bytes()?.into_owned())
        .map_err(|e| Error::decode(media.name(), "text", format!("not UTF-8 ({e})")))
}

/// The log-mel spectrogram of the audio `media`: its first
/// `config.clip_samples` samples (zero-padded), standardised if asked.
pub(crate) fn audio_features(
    media: Media,
    config: &AudioFeatures,
    mel: &MelSpectrogram,
) -> Result<Vec<f32>> {
    let mut clip = match media {
        Media::File(path) => polymodal_audio::decode_file(path)?,
        Media::Bytes {
            extension, bytes, ..
        } => polymodal_audio::decode_bytes(bytes.to_vec(), Some(extension))
            .map_err(|e| media.named(e))?,
    };
    let path = media.name();
    if clip.sample_rate != config.mel.sample_rate && config.resample {
        clip = clip.resample(config.mel.sample_rate)?;
    }
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
    let (mut values, frames) = mel.mel_power(&samples)?;
    if let Some(keep) = config.max_frames.filter(|&keep| keep < frames) {
        values = values
            .chunks_exact(frames)
            .flat_map(|band| band[..keep].iter().copied())
            .collect();
    }
    mel.config().log.apply(&mut values);
    if config.standardize {
        standardize(&mut values);
    }
    Ok(values)
}

/// Scales `values` to zero mean and unit variance.
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
/// error naming it. Built without the `video` feature, an error naming the
/// file ([`no_video_support`]).
///
/// FFmpeg reads files, so a shard's video is written to a temporary file
/// first (removed when decoded).
#[cfg(feature = "video")]
pub(crate) fn video_features(media: Media, config: &VideoFeatures) -> Result<Vec<f32>> {
    let (path, _scratch) = match media {
        Media::File(path) => (path.to_path_buf(), None),
        Media::Bytes {
            extension, bytes, ..
        } => {
            let scratch = ScratchFile::write(bytes, extension)?;
            (scratch.0.clone(), Some(scratch))
        }
    };
    let frames =
        polymodal_video::sample_uniform(&path, config.frames).map_err(|e| media.named(e))?;
    let path = media.name();
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

/// Without the `video` feature no video is decoded: the error naming `path`.
#[cfg(not(feature = "video"))]
pub(crate) fn video_features(media: Media, _config: &VideoFeatures) -> Result<Vec<f32>> {
    Err(no_video_support(media.name()))
}

/// A temporary file holding bytes a decoder must read from disk; removed
/// when dropped.
#[cfg(feature = "video")]
struct ScratchFile(std::path::PathBuf);

#[cfg(feature = "video")]
impl ScratchFile {
    fn write(bytes: &[u8], extension: &str) -> Result<Self> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // The extension is the member's: keep it to a plain word.
        let extension: String = extension
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        let path =
            std::env::temp_dir().join(format!("polymodal-{}-{n}.{extension}", std::process::id()));
        // `create_new`: never write through a file or link already there.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let scratch = Self(path);
        std::io::Write::write_all(&mut file, bytes).map_err(|e| Error::io(&scratch.0, e))?;
        Ok(scratch)
    }
}

#[cfg(feature = "video")]
impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The error for a video file met by a build without the `video` feature.
#[cfg(not(feature = "video"))]
pub(super) fn no_video_support(path: &Path) -> Error {
    Error::decode(
        path,
        "video",
        "this build has no video support: polymodal-train was built without its `video` \
         feature (FFmpeg), which is on by default; enable it or leave the video out",
    )
}
