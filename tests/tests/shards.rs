//! Training data in WebDataset-style tar shards: a manifest written as
//! shards decodes to exactly what the manifest decodes to; a stream
//! resumed from any position gives each sample once per epoch; workers
//! split the shards; a training run resumed after a crash reads every
//! sample once per epoch and ends where an uninterrupted one does; damaged
//! shards are errors naming them.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use burn::prelude::*;
use polymodal::train::shards::{expand_pattern, write_shards};
use polymodal::train::{
    Batcher, Example, FeatureConfig, Label, LabelNames, LazyDataset, LrSchedule, ManifestEntry,
    Progress, RngGuard, Samples, ShardDataset, StreamConfig, StreamPosition, TrainConfig, Trainer,
    avmnist_features,
};
use polymodal::{Modality, Result};
use polymodal_tests::{Tiny, scratch_dir};

fn media(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/media")
        .join(name)
}

/// Samples of every modality and several formats each (the fixtures'
/// real files), some lacking modalities, with text files written here.
fn mixed_manifest(dir: &Path) -> Vec<ManifestEntry> {
    let images = [
        "images/rgb.png",
        "images/quality90.jpg",
        "images/lossless.webp",
        "images/palette.gif",
        "images/exif-rotated.jpg",
        "images/rgb.bmp",
    ];
    let audio = [
        "tone-f32.wav",
        "tone.mp3",
        "tone.ogg",
        "tone-s24.wav",
        "tone.m4a",
    ];
    let video = ["seek-h264.mp4", "mjpeg.avi", "vp9.webm"];
    (0..9)
        .map(|i| {
            let text = dir.join(format!("caption-{i}.txt"));
            std::fs::write(&text, format!("sample {i}: a tone and a picture")).unwrap();
            ManifestEntry {
                id: format!("clip.{i}/x"),
                label: LabelNames::Single(["low", "high", "mid"][i % 3].into()),
                text: (i % 4 != 3).then_some(text),
                image: (i % 3 != 2).then(|| media(images[i % images.len()])),
                audio: (i % 2 == 0).then(|| media(audio[i % audio.len()])),
                video: (i % 3 == 0).then(|| media(video[i / 3])),
            }
        })
        .collect()
}

fn small_features() -> FeatureConfig {
    let mut config = FeatureConfig::default();
    config.image.width = 16;
    config.image.height = 16;
    config.audio.resample = true;
    config.video.frames = 2;
    config.video.preprocess.width = 8;
    config.video.preprocess.height = 8;
    config
}

#[test]
fn shards_decode_to_what_their_manifest_decodes_to() {
    let dir = scratch_dir("shards-parity");
    let entries = mixed_manifest(&dir);
    let written = write_shards(&entries, &dir.join("shards"), "mixed", 4).unwrap();
    assert_eq!(written.shards.len(), 3);
    assert_eq!(expand_pattern(&written.pattern).unwrap().len(), 3);
    let shards = ShardDataset::open_pattern(&written.pattern, small_features(), None).unwrap();
    let files = LazyDataset::new(entries.clone(), small_features(), None, None).unwrap();
    assert_eq!(shards.len(), entries.len());
    assert_eq!(shards.classes(), files.classes());
    assert_eq!(shards.targets(), files.targets());
    let all: Vec<usize> = (0..entries.len()).collect();
    let (from_shards, from_files) = (shards.load(&all).unwrap(), files.load(&all).unwrap());
    for (a, b) in from_shards.iter().zip(&from_files) {
        assert_eq!(a, b, "sample {}", b.id);
    }
    // The same entries give the same bytes.
    let again = write_shards(&entries, &dir.join("again"), "mixed", 4).unwrap();
    for (a, b) in written.shards.iter().zip(&again.shards) {
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    }
    // Only the modalities asked for are read.
    let images = ShardDataset::open_pattern(&written.pattern, small_features(), None)
        .unwrap()
        .keeping(&[Modality::Image]);
    for e in images.load(&all).unwrap() {
        assert!(
            e.features.audio.is_none() && e.features.video.is_none() && e.features.text.is_none()
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Grey 8×8 PNGs of three classes, each a noisy pattern.
fn image_manifest(dir: &Path, n: usize) -> Vec<ManifestEntry> {
    (0..n)
        .map(|i| {
            let class = i % 3;
            let pixels: Vec<u8> = (0..64)
                .map(|p| {
                    let noise = ((i * 7919 + p * 104_729) % 64) as u8;
                    if p % 3 == class { 160 + noise } else { noise }
                })
                .collect();
            let path = dir.join(format!("img-{i}.png"));
            image::GrayImage::from_raw(8, 8, pixels)
                .unwrap()
                .save(&path)
                .unwrap();
            ManifestEntry {
                id: format!("s{i}"),
                label: LabelNames::Single(["a", "b", "c"][class].into()),
                text: None,
                image: Some(path),
                audio: None,
                video: None,
            }
        })
        .collect()
}

fn tiny_features() -> FeatureConfig {
    let mut config = avmnist_features();
    config.image.width = 4;
    config.image.height = 4;
    config
}

fn ids(examples: &[Example]) -> Vec<String> {
    examples.iter().map(|e| e.id.clone()).collect()
}

#[test]
fn a_stream_resumed_anywhere_gives_each_sample_once_per_epoch() {
    let dir = scratch_dir("shards-stream");
    let entries = image_manifest(&dir, 23);
    let written = write_shards(&entries, &dir.join("shards"), "s", 5).unwrap();
    let data = ShardDataset::open_pattern(&written.pattern, tiny_features(), None)
        .unwrap()
        .with_stream(StreamConfig {
            shuffle_buffer: 6,
            seed: 11,
            ..StreamConfig::default()
        })
        .unwrap();
    for epoch in 0..2 {
        let start = StreamPosition { epoch, consumed: 0 };
        let mut whole = Vec::new();
        let mut stream = data.stream(start).unwrap();
        while let Some(batch) = stream.next_batch(4).unwrap() {
            whole.extend(ids(&batch));
        }
        let mut sorted = whole.clone();
        sorted.sort();
        let mut expected: Vec<String> = (0..23).map(|i| format!("s{i}")).collect();
        expected.sort();
        assert_eq!(sorted, expected, "epoch {epoch}: every sample once");
        // Stopped after any number of samples and resumed from the saved
        // position, the rest is what the uninterrupted stream gave.
        for stop in 0..=23 {
            let mut first = data.stream(start).unwrap();
            let mut seen = Vec::new();
            while seen.len() < stop {
                seen.extend(ids(&first.next_batch(stop - seen.len()).unwrap().unwrap()));
            }
            let saved = serde_json::to_string(&first.position()).unwrap();
            drop(first);
            let position: StreamPosition = serde_json::from_str(&saved).unwrap();
            let mut resumed = data.stream(position).unwrap();
            while let Some(batch) = resumed.next_batch(7).unwrap() {
                seen.extend(ids(&batch));
            }
            assert_eq!(seen, whole, "epoch {epoch}, stopped after {stop}");
        }
    }
    let past = StreamPosition {
        epoch: 0,
        consumed: 24,
    };
    assert!(data.stream(past).is_err());
    // Three workers read disjoint shards that together hold every sample.
    let mut union: Vec<usize> = (0..3)
        .flat_map(|worker| {
            let config = StreamConfig {
                worker,
                workers: 3,
                ..StreamConfig::default()
            };
            let part = ShardDataset::open_pattern(&written.pattern, tiny_features(), None)
                .unwrap()
                .with_stream(config)
                .unwrap();
            part.stream(StreamPosition::default())
                .unwrap()
                .pending()
                .to_vec()
        })
        .collect();
    union.sort_unstable();
    assert_eq!(union, (0..23).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(dir);
}

/// Samples that record which indices the trainer loads.
struct Recording<'a> {
    inner: &'a ShardDataset,
    loaded: Mutex<Vec<usize>>,
}

impl Samples for Recording<'_> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn classes(&self) -> &[String] {
        self.inner.classes()
    }
    fn targets(&self) -> Vec<Label> {
        self.inner.targets()
    }
    fn load(&self, indices: &[usize]) -> Result<Vec<Example>> {
        self.loaded.lock().unwrap().extend_from_slice(indices);
        self.inner.load(indices)
    }
    fn epoch_order(&self, seed: u64) -> Vec<usize> {
        self.inner.epoch_order(seed)
    }
}

/// Trains `Tiny` on `train` for `epochs`; with `crash_after` the process
/// "crashes" (panics) right after that epoch is saved. Returns the
/// indices loaded and the last weights.
fn train(
    train: &ShardDataset,
    valid: &ShardDataset,
    epochs: usize,
    output: &Path,
    resume: bool,
    crash_after: Option<usize>,
) -> (Vec<usize>, Option<Vec<f32>>) {
    let recording = Recording {
        inner: train,
        loaded: Mutex::new(Vec::new()),
    };
    let batcher = Batcher::new(vec![Modality::Image], tiny_features(), None).unwrap();
    let device = Device::flex().autodiff();
    let _rng = RngGuard::seeded(&device, 1);
    let trainer = Trainer {
        batcher: &batcher,
        config: TrainConfig {
            epochs,
            batch_size: 8,
            learning_rate: 0.02,
            seed: 5,
            schedule: LrSchedule::Constant,
            ..TrainConfig::default()
        },
        device: device.clone(),
        output: Some(output.to_path_buf()),
        resume,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        trainer.train(Tiny::new(&device), &recording, valid, &mut |event| {
            if let Progress::Epoch(report) = event
                && Some(report.epoch) == crash_after
            {
                panic!("simulated crash after epoch {}", report.epoch);
            }
        })
    }));
    let weights = result.ok().map(|r| {
        let (model, _) = r.unwrap();
        model.linear.weight.val().try_into_vec_as::<f32>().unwrap()
    });
    (recording.loaded.into_inner().unwrap(), weights)
}

#[test]
fn a_run_resumed_from_shards_reads_every_sample_once_per_epoch() {
    let dir = scratch_dir("shards-resume");
    let entries = image_manifest(&dir, 45);
    let stream = StreamConfig {
        shuffle_buffer: 4,
        ..StreamConfig::default()
    };
    let open = |entries: &[ManifestEntry], name: &str| {
        let written = write_shards(entries, &dir.join(name), name, 4).unwrap();
        ShardDataset::open_pattern(&written.pattern, tiny_features(), None)
            .unwrap()
            .with_stream(stream.clone())
            .unwrap()
    };
    let (data, valid) = (open(&entries[..36], "train"), open(&entries[36..], "valid"));
    let per_epoch = |loaded: &[usize]| -> Vec<Vec<usize>> {
        loaded.chunks(36).map(<[usize]>::to_vec).collect()
    };
    let (straight, weights) = train(&data, &valid, 3, &dir.join("straight"), false, None);
    assert_eq!(straight.len(), 3 * 36);
    for (epoch, order) in per_epoch(&straight).iter().enumerate() {
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..36).collect::<Vec<_>>(), "epoch {}", epoch + 1);
    }
    let split = dir.join("split");
    let (before, crashed) = train(&data, &valid, 3, &split, false, Some(1));
    assert!(crashed.is_none(), "the simulated crash happened");
    let (after, resumed) = train(&data, &valid, 3, &split, true, None);
    assert_eq!(
        [before, after].concat(),
        straight,
        "the crashed and resumed runs read what the uninterrupted one read"
    );
    let (a, b) = (weights.unwrap(), resumed.unwrap());
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-6, "resumed weights differ by {diff}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn damaged_shards_are_errors_naming_them() {
    let dir = scratch_dir("shards-damaged");
    let entries = image_manifest(&dir, 6);
    let written = write_shards(&entries, &dir.join("shards"), "d", 6).unwrap();
    let good = std::fs::read(&written.shards[0]).unwrap();
    let damaged = dir.join("damaged.tar");
    let name = damaged.display().to_string();
    // The samples of a shard, all decoded.
    let decoded = |shard: &Path| {
        ShardDataset::open(&[shard.to_path_buf()], tiny_features(), None)
            .and_then(|d| d.load(&(0..d.len()).collect::<Vec<_>>()).map(|e| e.len()))
    };
    let mut cuts: Vec<usize> = (1..good.len()).step_by(97).collect();
    cuts.extend([1, 511, 512, 513, 1024, good.len() - 1024, good.len() - 1]);
    for cut in cuts {
        std::fs::write(&damaged, &good[..cut]).unwrap();
        let outcome = decoded(&damaged);
        match outcome {
            // Only a cut inside the end-of-archive blocks loses nothing.
            Ok(n) => assert!(
                n == 6 && cut >= good.len() - 512,
                "cut at {cut}: {n} samples"
            ),
            Err(e) => assert!(e.to_string().contains(&name), "cut at {cut}: {e}"),
        }
    }
    for (at, byte) in [(0, b'\xff'), (148, b'x'), (600, b'\0')] {
        let mut bytes = good.clone();
        bytes[at] = byte;
        std::fs::write(&damaged, &bytes).unwrap();
        let outcome = decoded(&damaged);
        if let Err(e) = outcome {
            assert!(e.to_string().contains(&name), "byte {at}: {e}");
        }
    }
    let missing = dir.join("missing-{0..1}.tar");
    let message = ShardDataset::open_pattern(&missing.display().to_string(), tiny_features(), None)
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("missing-0.tar"), "{message}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Seeded random damage (bytes changed anywhere, headers included, and
/// cuts) never panics: every variant opens and decodes, or is an error.
#[test]
fn random_damage_is_an_error_or_a_result_never_a_panic() {
    let dir = scratch_dir("shards-random-damage");
    let entries = image_manifest(&dir, 4);
    let written = write_shards(&entries, &dir.join("shards"), "r", 4).unwrap();
    let good = std::fs::read(&written.shards[0]).unwrap();
    let damaged = dir.join("damaged.tar");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |below: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % below
    };
    let (mut opened, mut refused) = (0, 0);
    for _ in 0..1500 {
        let mut bytes = good.clone();
        for _ in 0..1 + next(8) {
            let at = next(bytes.len());
            bytes[at] = next(256) as u8;
        }
        if next(4) == 0 {
            bytes.truncate(next(bytes.len()));
        }
        std::fs::write(&damaged, &bytes).unwrap();
        let outcome = ShardDataset::open(std::slice::from_ref(&damaged), tiny_features(), None)
            .and_then(|d| d.load(&(0..d.len()).collect::<Vec<_>>()));
        match outcome {
            Ok(_) => opened += 1,
            Err(_) => refused += 1,
        }
    }
    // Both happen: a change inside a PNG's pixels or a tar's padding can
    // leave a valid shard; one in a header cannot.
    assert!(
        opened > 0 && refused > 0,
        "{opened} opened, {refused} refused"
    );
    let _ = std::fs::remove_dir_all(dir);
}
