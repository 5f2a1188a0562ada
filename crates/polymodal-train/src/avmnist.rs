//! AV-MNIST: spoken digits (FSDD, 8 kHz WAV) paired with handwritten digits
//! (MNIST, idx files), with a fixed pairing and FSDD's official split, as
//! laid out in `shared/data/avmnist` (see its README).
//!
//! Images go through the same [`ImagePreprocess`] a PNG file would, so a model
//! trained here also predicts from image files.

use std::io::Read;
use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::Deserialize;

use polymodal_audio::{LogScale, MelConfig, MelSpectrogram};
use polymodal_core::{Error, Result};
use polymodal_image::{ImagePreprocess, Normalize};

use crate::data::{AudioFeatures, Dataset, Example, FeatureConfig, Features, Label, VideoFeatures};

/// MNIST's pixel statistics (on the 0..1 scale).
const MNIST_MEAN: f32 = 0.1307;
const MNIST_STD: f32 = 0.3081;
/// MNIST and FSDD: the digits 0–9.
const CLASSES: usize = 10;

/// The feature settings of the benchmark: 28×28 grey images with MNIST's
/// statistics; 1 s of 8 kHz audio (longer clips are cut: 99 % of FSDD is
/// shorter) as a 40-band log-mel spectrogram, 32 ms window, 20 ms hop,
/// standardised per clip.
pub fn avmnist_features() -> FeatureConfig {
    let image = ImagePreprocess {
        grayscale: true,
        normalize: Normalize {
            mean: [MNIST_MEAN; 3],
            std: [MNIST_STD; 3],
        },
        ..ImagePreprocess::new(28, 28)
    };
    FeatureConfig {
        image: image.clone(),
        audio: AudioFeatures {
            clip_samples: 8000,
            mel: MelConfig {
                log: LogScale::Decibel { top_db: Some(80.0) },
                ..MelConfig::librosa(8000, 256, 160, 40)
            },
            standardize: true,
            ..AudioFeatures::default()
        },
        video: VideoFeatures {
            frames: 1,
            preprocess: image,
        },
    }
}

/// The decoded benchmark: the official train and test splits.
#[derive(Debug, Clone)]
pub struct AvMnist {
    /// 2700 pairs (FSDD recordings 5–49 with MNIST training images).
    pub train: Dataset,
    /// 300 pairs (FSDD recordings 0–4 with MNIST test images).
    pub test: Dataset,
}

#[derive(Deserialize)]
struct Pair {
    wav: PathBuf,
    speaker: String,
    fsdd_index: usize,
    mnist_split: String,
    mnist_index: usize,
    label: usize,
}

/// Decodes the benchmark in `dir` with `features` (normally
/// [`avmnist_features`]). Every pair's label is checked against the MNIST
/// label file and the FSDD file name; a mismatch or a damaged file is an
/// error naming it.
pub fn load_avmnist(dir: &Path, features: &FeatureConfig) -> Result<AvMnist> {
    let mnist = dir.join("mnist");
    let train_images = MnistImages::read(&mnist, "train")?;
    let test_images = MnistImages::read(&mnist, "t10k")?;
    let mel = MelSpectrogram::new(features.audio.mel.clone())?;
    let split = |name: &str| -> Result<Dataset> {
        let pairs = read_pairs(&dir.join(name))?;
        let examples = crate::data::parallel_map(&pairs, |pair| {
            let images = match pair.mnist_split.as_str() {
                "train" => &train_images,
                "t10k" | "test" => &test_images,
                other => {
                    return Err(Error::Config(format!(
                        "{name}: unknown mnist_split `{other}`"
                    )));
                }
            };
            decode_pair(dir, pair, images, features, &mel)
        })?;
        Ok(Dataset {
            examples,
            classes: (0..CLASSES).map(|d| d.to_string()).collect(),
        })
    };
    Ok(AvMnist {
        train: split("pairs_train.csv")?,
        test: split("pairs_test.csv")?,
    })
}

fn read_pairs(path: &Path) -> Result<Vec<Pair>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| csv_error(path, e))?;
    let pairs = reader
        .deserialize()
        .collect::<std::result::Result<Vec<Pair>, _>>()
        .map_err(|e| csv_error(path, e))?;
    if pairs.is_empty() {
        return Err(Error::Config(format!("{}: no pairs", path.display())));
    }
    Ok(pairs)
}

fn csv_error(path: &Path, error: csv::Error) -> Error {
    match error.kind() {
        csv::ErrorKind::Io(e) => Error::io(path, std::io::Error::new(e.kind(), e.to_string())),
        _ => Error::Config(format!("{}: {error}", path.display())),
    }
}

fn decode_pair(
    dir: &Path,
    pair: &Pair,
    images: &MnistImages,
    features: &FeatureConfig,
    mel: &MelSpectrogram,
) -> Result<Example> {
    let wav = dir.join(&pair.wav);
    let spoken = pair
        .wav
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('_').next())
        .and_then(|d| d.parse::<usize>().ok());
    let written = images.labels.get(pair.mnist_index).map(|&l| l as usize);
    if spoken != Some(pair.label) || written != Some(pair.label) || pair.label >= CLASSES {
        return Err(Error::Config(format!(
            "{}: pair label {} disagrees with the audio file name ({spoken:?}) or MNIST {} #{} ({written:?})",
            wav.display(),
            pair.label,
            pair.mnist_split,
            pair.mnist_index
        )));
    }
    let image = features.image.apply(&images.rgb(pair.mnist_index))?;
    let audio = crate::data::audio_features(&wav, &features.audio, mel)?;
    Ok(Example {
        id: format!("{}_{}_{}", pair.label, pair.speaker, pair.fsdd_index),
        features: Features {
            image: Some(image),
            audio: Some(audio),
            ..Features::default()
        },
        label: Label::Single(pair.label),
    })
}

/// One MNIST split: grey pixels and labels.
struct MnistImages {
    pixels: Vec<u8>,
    labels: Vec<u8>,
    rows: usize,
    cols: usize,
}

impl MnistImages {
    fn read(dir: &Path, split: &str) -> Result<Self> {
        let images_path = dir.join(format!("{split}-images-idx3-ubyte.gz"));
        let labels_path = dir.join(format!("{split}-labels-idx1-ubyte.gz"));
        let (dims, pixels) = read_idx(&images_path, 0x0803)?;
        let (label_dims, labels) = read_idx(&labels_path, 0x0801)?;
        let [count, rows, cols] = dims[..] else {
            return Err(Error::decode(
                &images_path,
                "MNIST images",
                "not 3-dimensional",
            ));
        };
        if label_dims != [count] {
            return Err(Error::decode(
                &labels_path,
                "MNIST labels",
                format!("{label_dims:?} labels for {count} images"),
            ));
        }
        Ok(Self {
            pixels,
            labels,
            rows,
            cols,
        })
    }

    /// Image `index` as RGB (grey replicated).
    fn rgb(&self, index: usize) -> RgbImage {
        let size = self.rows * self.cols;
        let grey = &self.pixels[index * size..(index + 1) * size];
        RgbImage::from_fn(self.cols as u32, self.rows as u32, |x, y| {
            let v = grey[y as usize * self.cols + x as usize];
            image::Rgb([v, v, v])
        })
    }
}

/// Reads a gzipped idx file of unsigned bytes: its dimensions and data.
fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::decode(path, "gzip", e))?;
    let word = |i: usize| -> Option<usize> {
        let b = bytes.get(4 * i..4 * i + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let bad = |reason: String| Error::decode(path, "idx", reason);
    if word(0) != Some(magic as usize) {
        return Err(bad(format!("magic number is not {magic:#06x}")));
    }
    let rank = magic as usize & 0xff;
    let dims: Vec<usize> = (1..=rank)
        .map(word)
        .collect::<Option<_>>()
        .ok_or_else(|| bad("truncated header".into()))?;
    let header = 4 * (rank + 1);
    let expected = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if expected != Some(bytes.len() - header.min(bytes.len())) {
        return Err(bad(format!(
            "{} data bytes for dimensions {dims:?}",
            bytes.len().saturating_sub(header)
        )));
    }
    bytes.drain(..header);
    Ok((dims, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(path: &Path, content: &[u8]) {
        let file = std::fs::File::create(path).unwrap();
        let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        encoder.write_all(content).unwrap();
        encoder.finish().unwrap();
    }

    #[test]
    fn idx_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("polymodal-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.gz");
        let mut good = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        good.extend([1, 2, 3, 4]);
        gz(&path, &good);
        assert_eq!(
            read_idx(&path, 0x0803).unwrap(),
            (vec![2, 1, 2], vec![1, 2, 3, 4])
        );
        assert!(read_idx(&path, 0x0801).is_err());
        gz(&path, &good[..18]);
        assert!(
            read_idx(&path, 0x0803)
                .unwrap_err()
                .to_string()
                .contains("data bytes")
        );
        gz(&path, &good[..6]);
        assert!(read_idx(&path, 0x0803).is_err());
        std::fs::write(&path, b"not gzip").unwrap();
        assert!(read_idx(&path, 0x0803).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
