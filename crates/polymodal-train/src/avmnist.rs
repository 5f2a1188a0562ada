//! AV-MNIST: spoken digits (FSDD, 8 kHz WAV) paired with handwritten digits
//! (MNIST, idx files), with a fixed pairing and FSDD's official split, as
//! laid out in `shared/data/avmnist` (see its README).
//!
//! Images go through the same [`ImagePreprocess`] a PNG file would, so a model
//! trained here also predicts from image files.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;
use serde::Deserialize;

use polymodal_audio::{LogScale, MelConfig, MelSpectrogram};
use polymodal_core::{Error, Result};
use polymodal_image::{ImagePreprocess, Normalize};

use crate::data::{
    AudioFeatures, Dataset, Example, FeatureConfig, Features, Label, Media, Samples, VideoFeatures,
};
use crate::manifest::{LabelNames, ManifestEntry};

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

/// The benchmark's two splits, decoded on demand ([`AvMnistPairs`]).
pub struct AvMnistSplits {
    /// 2700 pairs (FSDD recordings 5–49 with MNIST training images).
    pub train: AvMnistPairs,
    /// 300 pairs (FSDD recordings 0–4 with MNIST test images).
    pub test: AvMnistPairs,
}

/// One split's pairs as [`Samples`], decoded when loaded: what a large
/// input (Whisper's 30-second log-mel) needs, where holding every decoded
/// pair at once would take gigabytes.
pub struct AvMnistPairs {
    dir: PathBuf,
    name: String,
    pairs: Vec<Pair>,
    images: Arc<[MnistImages; 2]>,
    features: FeatureConfig,
    mel: Arc<MelSpectrogram>,
    classes: Vec<String>,
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

/// Opens the benchmark in `dir` with `features` (normally
/// [`avmnist_features`]): reads the pairings and the MNIST files, decodes
/// no audio yet.
pub fn open_avmnist(dir: &Path, features: &FeatureConfig) -> Result<AvMnistSplits> {
    let mnist = dir.join("mnist");
    let images = Arc::new([
        MnistImages::read(&mnist, "train")?,
        MnistImages::read(&mnist, "t10k")?,
    ]);
    let mel = Arc::new(MelSpectrogram::new(features.audio.mel.clone())?);
    let split = |name: &str| -> Result<AvMnistPairs> {
        Ok(AvMnistPairs {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            pairs: read_pairs(&dir.join(name))?,
            images: images.clone(),
            features: features.clone(),
            mel: mel.clone(),
            classes: (0..CLASSES).map(|d| d.to_string()).collect(),
        })
    };
    Ok(AvMnistSplits {
        train: split("pairs_train.csv")?,
        test: split("pairs_test.csv")?,
    })
}

/// Decodes the benchmark in `dir` with `features` (normally
/// [`avmnist_features`]). Every pair's label is checked against the MNIST
/// label file and the FSDD file name; a mismatch or a damaged file is an
/// error naming it.
pub fn load_avmnist(dir: &Path, features: &FeatureConfig) -> Result<AvMnist> {
    let splits = open_avmnist(dir, features)?;
    Ok(AvMnist {
        train: splits.train.decode_all()?,
        test: splits.test.decode_all()?,
    })
}

impl AvMnistPairs {
    /// The speaker of every pair, in order (FSDD's six: george, jackson,
    /// lucas, nicolas, theo, yweweler).
    pub fn speakers(&self) -> Vec<&str> {
        self.pairs.iter().map(|p| p.speaker.as_str()).collect()
    }

    /// Every pair decoded (on all cores).
    pub fn decode_all(&self) -> Result<Dataset> {
        let examples = crate::data::parallel_map(&self.pairs, |pair| self.decode(pair))?;
        Ok(Dataset {
            examples,
            classes: self.classes.clone(),
        })
    }

    /// The split as files a manifest lists: each pair's MNIST digit
    /// written to `dir` as a grey PNG, its FSDD recording where it is,
    /// labelled by digit and named as decoded pairs are; for the manifest
    /// and shard pipelines (`polymodal shard`, `cargo xtask bench shards`).
    pub fn export(&self, dir: &Path) -> Result<Vec<ManifestEntry>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let write = |pair: &Pair| -> Result<ManifestEntry> {
            let images = self.images_of(pair)?;
            let wav = self.dir.join(&pair.wav);
            check_pair(&wav, pair, images)?;
            let path = dir.join(format!("{}-{}.png", pair.mnist_split, pair.mnist_index));
            image::DynamicImage::ImageRgb8(images.rgb(pair.mnist_index))
                .to_luma8()
                .save(&path)
                .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
            Ok(ManifestEntry {
                id: pair_id(pair),
                label: LabelNames::Single(pair.label.to_string()),
                text: None,
                image: Some(path),
                audio: Some(wav),
                video: None,
            })
        };
        crate::data::parallel_map(&self.pairs, write)
    }

    /// The MNIST file the pair's image is in.
    fn images_of(&self, pair: &Pair) -> Result<&MnistImages> {
        match pair.mnist_split.as_str() {
            "train" => Ok(&self.images[0]),
            "t10k" | "test" => Ok(&self.images[1]),
            other => Err(Error::Config(format!(
                "{}: unknown mnist_split `{other}`",
                self.name
            ))),
        }
    }

    fn decode(&self, pair: &Pair) -> Result<Example> {
        decode_pair(
            &self.dir,
            pair,
            self.images_of(pair)?,
            &self.features,
            &self.mel,
        )
    }
}

impl Samples for AvMnistPairs {
    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn targets(&self) -> Vec<Label> {
        self.pairs.iter().map(|p| Label::Single(p.label)).collect()
    }

    fn load(&self, indices: &[usize]) -> Result<Vec<Example>> {
        let pairs: Vec<&Pair> = indices
            .iter()
            .map(|&i| {
                self.pairs.get(i).ok_or_else(|| {
                    Error::Invalid(format!("pair {i} of {} in {}", self.pairs.len(), self.name))
                })
            })
            .collect::<Result<_>>()?;
        crate::data::parallel_map(&pairs, |pair| self.decode(pair))
    }
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
    check_pair(&wav, pair, images)?;
    let image = features.image.apply(&images.rgb(pair.mnist_index))?;
    let audio = crate::data::audio_features(Media::File(&wav), &features.audio, mel)?;
    Ok(Example {
        id: pair_id(pair),
        features: Features {
            image: Some(image),
            audio: Some(audio),
            ..Features::default()
        },
        label: Label::Single(pair.label),
    })
}

/// A pair's name: digit, speaker, recording.
fn pair_id(pair: &Pair) -> String {
    format!("{}_{}_{}", pair.label, pair.speaker, pair.fsdd_index)
}

/// Checks the pair's label against its recording's file name and its MNIST
/// image's label (which also checks the image index).
fn check_pair(wav: &Path, pair: &Pair, images: &MnistImages) -> Result<()> {
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
    Ok(())
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

    /// An idx file of `dims` bytes.
    fn idx(path: &Path, magic: u8, dims: &[u32], data: &[u8]) {
        let mut bytes = vec![0, 0, 8, magic];
        for d in dims {
            bytes.extend(d.to_be_bytes());
        }
        bytes.extend(data);
        gz(path, &bytes);
    }

    /// A three-pair benchmark folder: two MNIST images per split, three
    /// short FSDD-named clips of two speakers.
    fn tiny_benchmark(dir: &Path) {
        let mnist = dir.join("mnist");
        std::fs::create_dir_all(&mnist).unwrap();
        std::fs::create_dir_all(dir.join("fsdd")).unwrap();
        for split in ["train", "t10k"] {
            let pixels: Vec<u8> = (0..2 * 28 * 28).map(|i| (i * 7 % 256) as u8).collect();
            idx(
                &mnist.join(format!("{split}-images-idx3-ubyte.gz")),
                3,
                &[2, 28, 28],
                &pixels,
            );
            idx(
                &mnist.join(format!("{split}-labels-idx1-ubyte.gz")),
                1,
                &[2],
                &[3, 5],
            );
        }
        for (name, hz) in [
            ("3_theo_7", 300.0),
            ("5_lucas_9", 500.0),
            ("3_lucas_0", 700.0),
        ] {
            let tone: Vec<f32> = (0..4000)
                .map(|i| (i as f32 * hz * std::f32::consts::TAU / 8000.0).sin() * 0.5)
                .collect();
            polymodal_audio::write_wav_pcm16(dir.join(format!("fsdd/{name}.wav")), &tone, 8000, 1)
                .unwrap();
        }
        let header = "wav,speaker,fsdd_index,mnist_split,mnist_index,label\n";
        std::fs::write(
            dir.join("pairs_train.csv"),
            format!(
                "{header}fsdd/3_theo_7.wav,theo,7,train,0,3\nfsdd/5_lucas_9.wav,lucas,9,train,1,5\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("pairs_test.csv"),
            format!("{header}fsdd/3_lucas_0.wav,lucas,0,t10k,0,3\n"),
        )
        .unwrap();
    }

    /// Pairs opened lazily decode, one by one, to exactly what decoding the
    /// whole benchmark gives; their labels and speakers come from the
    /// pairing; an index past the end and a pairing that contradicts MNIST
    /// are errors.
    #[test]
    fn pairs_decode_on_demand_as_the_whole_benchmark_does() {
        let dir = std::env::temp_dir().join(format!("polymodal-avpairs-{}", std::process::id()));
        tiny_benchmark(&dir);
        let features = avmnist_features();
        let whole = load_avmnist(&dir, &features).unwrap();
        let lazy = open_avmnist(&dir, &features).unwrap();
        assert_eq!((lazy.train.len(), lazy.test.len()), (2, 1));
        assert_eq!(lazy.train.speakers(), ["theo", "lucas"]);
        assert_eq!(lazy.train.targets(), [Label::Single(3), Label::Single(5)]);
        let one = lazy.train.load(&[1]).unwrap();
        assert_eq!(one[0].id, whole.train.examples[1].id);
        assert_eq!(one[0].features, whole.train.examples[1].features);
        assert_ne!(one[0].features, whole.train.examples[0].features);
        assert_eq!(lazy.test.load(&[0]).unwrap()[0].id, "3_lucas_0");
        let error = lazy.train.load(&[2]).unwrap_err().to_string();
        assert!(error.contains("pair 2 of 2"), "{error}");
        // MNIST's test image 1 is a 5, not a 3.
        std::fs::write(
            dir.join("pairs_test.csv"),
            "wav,speaker,fsdd_index,mnist_split,mnist_index,label\nfsdd/3_lucas_0.wav,lucas,0,t10k,1,3\n",
        )
        .unwrap();
        let error = open_avmnist(&dir, &features)
            .unwrap()
            .test
            .load(&[0])
            .unwrap_err();
        assert!(error.to_string().contains("disagrees"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Exported as files, the pairs decode through a manifest's dataset to
    /// exactly their own decoding (the PNG keeps MNIST's pixels).
    #[test]
    fn exported_pairs_decode_as_the_pairs_do() {
        let dir = std::env::temp_dir().join(format!("polymodal-avexport-{}", std::process::id()));
        tiny_benchmark(&dir);
        let features = avmnist_features();
        let pairs = open_avmnist(&dir, &features).unwrap().train;
        let entries = pairs.export(&dir.join("files")).unwrap();
        assert_eq!(entries.len(), 2);
        let classes: Vec<String> = (0..CLASSES).map(|d| d.to_string()).collect();
        let files = crate::load_dataset(&entries, &features, Some(&classes)).unwrap();
        assert_eq!(files.examples, pairs.load(&[0, 1]).unwrap());
        std::fs::remove_dir_all(dir).unwrap();
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
