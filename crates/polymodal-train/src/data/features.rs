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
    /// Pad the log spectrogram of a shorter clip with this value up to
    /// `max_frames` frames, rather than the clip with silence up to
    /// `clip_samples` (`ASTFeatureExtractor` pads its filter banks with zeros
    /// after the log). Needs `max_frames`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pad_frames_with: Option<f32>,
    /// Fixed statistics every value is normalised with, after any padding
    /// (a pretrained model's training set's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalize: Option<Normalization>,
}

/// `(x - mean) / std` with fixed statistics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    /// Subtracted first.
    pub mean: f32,
    /// Divided by next (positive).
    pub std: f32,
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
            pad_frames_with: None,
            normalize: None,
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
        let audio = &self.audio;
        if audio.max_frames == Some(0) {
            return Err(Error::Config(
                "features.audio.max_frames must be positive".into(),
            ));
        }
        if let Some(value) = audio.pad_frames_with
            && (audio.max_frames.is_none() || !value.is_finite())
        {
            return Err(Error::Config(format!(
                "features.audio.pad_frames_with ({value}) must be finite and needs max_frames"
            )));
        }
        if let Some(Normalization { mean, std }) = audio.normalize
            && !(mean.is_finite() && std.is_finite() && std > 0.0)
        {
            return Err(Error::Config(format!(
                "features.audio.normalize needs a finite mean and a positive std, got {mean} and \
                 {std}"
            )));
        }
        if audio.normalize.is_some() && audio.standardize {
            return Err(Error::Config(
                "features.audio: normalize (fixed statistics) and standardize (per clip) \
                 exclude each other"
                    .into(),
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
        let frames = match (self.audio.max_frames, self.audio.pad_frames_with) {
            (Some(keep), Some(_)) => keep,
            (Some(keep), None) => keep.min(frames),
            (None, _) => frames,
        };
        [self.audio.mel.n_mels, frames]
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
/// `config.clip_samples` samples (zero-padded, or the spectrogram padded
/// after the log scale: `pad_frames_with`), standardised or normalised if
/// asked.
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
    match config.pad_frames_with {
        Some(_) => samples.truncate(config.clip_samples),
        None => samples.resize(config.clip_samples, 0.0),
    }
    let (mut values, frames) = mel
        .mel_power(&samples)
        .map_err(|e| Error::decode(path, "audio", e.to_string()))?;
    if let Some(keep) = config.max_frames.filter(|&keep| keep < frames) {
        values = values
            .chunks_exact(frames)
            .flat_map(|band| band[..keep].iter().copied())
            .collect();
    }
    mel.config().log.apply(&mut values);
    // A clip of `max_frames` or more was cut above and needs no copy.
    if let (Some(value), Some(keep)) = (config.pad_frames_with, config.max_frames)
        && frames < keep
    {
        values = pad_frames(&values, frames, keep, value);
    }
    if config.standardize {
        standardize(&mut values);
    }
    if let Some(Normalization { mean, std }) = config.normalize {
        values.iter_mut().for_each(|v| *v = (*v - mean) / std);
    }
    Ok(values)
}

/// Band-major `values` of `frames` frames padded with `value` to `wanted`
/// frames.
fn pad_frames(values: &[f32], frames: usize, wanted: usize, value: f32) -> Vec<f32> {
    if frames == wanted {
        return values.to_vec();
    }
    values
        .chunks_exact(frames)
        .flat_map(|band| {
            band.iter()
                .copied()
                .chain(std::iter::repeat_n(value, wanted - frames))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_padded_band_by_band() {
        // Two bands of three frames, padded to five.
        let values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let padded = pad_frames(&values, 3, 5, 0.5);
        assert_eq!(padded, [1.0, 2.0, 3.0, 0.5, 0.5, 4.0, 5.0, 6.0, 0.5, 0.5]);
        assert_eq!(pad_frames(&values, 3, 3, 0.5), values);
    }

    #[test]
    fn padding_and_fixed_statistics_are_checked() {
        let with = |audio: AudioFeatures| {
            FeatureConfig {
                audio,
                ..FeatureConfig::default()
            }
            .validate()
        };
        let base = AudioFeatures {
            standardize: false,
            ..AudioFeatures::default()
        };
        let error = with(AudioFeatures {
            pad_frames_with: Some(0.0),
            ..base.clone()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("max_frames"), "{error}");
        let padded = AudioFeatures {
            pad_frames_with: Some(0.0),
            max_frames: Some(120),
            ..base.clone()
        };
        with(padded.clone()).unwrap();
        // Padded to max_frames whatever the clip gives (101 frames here).
        let config = FeatureConfig {
            audio: padded,
            ..FeatureConfig::default()
        };
        assert_eq!(config.audio_shape().unwrap(), [64, 120]);
        for std in [0.0, f32::NAN] {
            let error = with(AudioFeatures {
                normalize: Some(Normalization { mean: 0.0, std }),
                ..base.clone()
            })
            .unwrap_err()
            .to_string();
            assert!(error.contains("normalize"), "{error}");
        }
        let error = with(AudioFeatures {
            normalize: Some(Normalization {
                mean: 0.0,
                std: 1.0,
            }),
            standardize: true,
            ..base
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("standardize"), "{error}");
    }

    /// Settings left at their defaults are left out of the JSON, so model
    /// cards and feature-cache keys written before they existed read and
    /// hash the same.
    #[test]
    fn unset_new_settings_leave_the_json_as_it_was() {
        let json = serde_json::to_string(&AudioFeatures::default()).unwrap();
        for key in [
            "pad_frames_with",
            "normalize",
            "frame_length",
            "preemphasis",
        ] {
            assert!(!json.contains(key), "{key} in {json}");
        }
    }
}
