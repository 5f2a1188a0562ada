//! The embedded default dataset: a deterministic generator of real media
//! files (PNG, WAV, MP4, text) and JSONL manifests.
//!
//! Each class is a pair (shape, pitch): the shape is seen in the image and
//! in the video, the pitch is heard in the audio, and the caption hints at
//! the pitch but is wrong a quarter of the time. No single modality can tell
//! the six classes apart; together they can.

use std::f32::consts::{PI, TAU};
use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use polymodal_core::{Error, Result};

/// The shapes drawn in images and videos.
pub const SHAPES: [&str; 3] = ["circle", "square", "triangle"];
/// The pitches heard in the audio.
pub const PITCHES: [&str; 2] = ["low", "high"];
/// Side of images and video frames, in pixels.
pub const SIDE: u32 = 32;
/// Audio sample rate, in Hz.
pub const SAMPLE_RATE: u32 = 8000;
/// Audio clip length, in samples (half a second).
pub const CLIP_SAMPLES: usize = 4000;
/// Frames per video.
pub const VIDEO_FRAMES: usize = 16;
/// Probability that a caption names the right pitch.
pub const CAPTION_RELIABILITY: f32 = 0.75;

/// How many samples of each class each split gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetSize {
    /// Per class in `train.jsonl`.
    pub train: usize,
    /// Per class in `valid.jsonl`.
    pub valid: usize,
    /// Per class in `test.jsonl`.
    pub test: usize,
}

impl DatasetSize {
    /// The demo's size: 480 training, 120 validation and 180 test samples.
    pub const DEMO: Self = Self {
        train: 80,
        valid: 20,
        test: 30,
    };
}

/// Where [`generate`] wrote the manifests.
#[derive(Debug, Clone)]
pub struct GeneratedDataset {
    /// Training manifest.
    pub train: PathBuf,
    /// Validation manifest.
    pub valid: PathBuf,
    /// Test manifest.
    pub test: PathBuf,
}

/// Class name of a (shape, pitch) pair, e.g. `circle-low`.
pub fn class_name(shape: usize, pitch: usize) -> String {
    format!("{}-{}", SHAPES[shape], PITCHES[pitch])
}

/// Writes the dataset under `dir` (media in sub-folders, one manifest per
/// split). The same `seed` always gives the same files. Its samples have
/// videos: built without the `video` feature, an error saying so.
pub fn generate(dir: &Path, size: DatasetSize, seed: u64) -> Result<GeneratedDataset> {
    video_support()?;
    for sub in ["image", "audio", "video", "text"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
    }
    let splits = [
        ("train", size.train),
        ("valid", size.valid),
        ("test", size.test),
    ];
    let mut manifests = Vec::new();
    for (split_index, (split, per_class)) in splits.into_iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(split_index as u64));
        let mut lines = String::new();
        for index in 0..per_class * SHAPES.len() * PITCHES.len() {
            let (shape, pitch) = (index % SHAPES.len(), (index / SHAPES.len()) % PITCHES.len());
            let id = format!("{split}-{index:04}");
            write_sample(dir, &id, shape, pitch, &mut rng)?;
            lines.push_str(&format!(
                "{{\"id\":\"{id}\",\"label\":\"{}\",\"text\":\"text/{id}.txt\",\"image\":\"image/{id}.png\",\"audio\":\"audio/{id}.wav\",\"video\":\"video/{id}.mp4\"}}\n",
                class_name(shape, pitch)
            ));
        }
        let manifest = dir.join(format!("{split}.jsonl"));
        std::fs::write(&manifest, lines).map_err(|e| Error::io(&manifest, e))?;
        manifests.push(manifest);
    }
    let [train, valid, test] = <[PathBuf; 3]>::try_from(manifests).expect("three splits");
    Ok(GeneratedDataset { train, valid, test })
}

fn write_sample(dir: &Path, id: &str, shape: usize, pitch: usize, rng: &mut StdRng) -> Result<()> {
    let image_path = dir.join(format!("image/{id}.png"));
    draw_still(shape, rng)
        .save(&image_path)
        .map_err(|e| Error::Invalid(format!("{}: {e}", image_path.display())))?;
    polymodal_audio::write_wav_pcm16(
        dir.join(format!("audio/{id}.wav")),
        &tone(pitch, rng),
        SAMPLE_RATE,
        1,
    )?;
    write_video(
        &dir.join(format!("video/{id}.mp4")),
        &moving_shape(shape, rng),
    )?;
    let caption_path = dir.join(format!("text/{id}.txt"));
    std::fs::write(&caption_path, caption(pitch, rng)).map_err(|e| Error::io(&caption_path, e))
}

/// Whether this build can write the dataset's videos.
fn video_support() -> Result<()> {
    if cfg!(feature = "video") {
        Ok(())
    } else {
        Err(Error::Config(
            "the demo dataset has videos, and this build of polymodal has no video support: \
             it was built without the `video` feature (FFmpeg), which is on by default"
                .into(),
        ))
    }
}

/// Encodes `frames` as an MP4 at 8 frames per second.
#[cfg(feature = "video")]
fn write_video(path: &Path, frames: &[RgbImage]) -> Result<()> {
    polymodal_video::encode_mp4(path, frames, 8.0)
}

#[cfg(not(feature = "video"))]
fn write_video(_path: &Path, _frames: &[RgbImage]) -> Result<()> {
    video_support()
}

fn normal(rng: &mut StdRng) -> f32 {
    let (u, v): (f32, f32) = (rng.random::<f32>().max(1e-7), rng.random());
    (-2.0 * u.ln()).sqrt() * (TAU * v).cos()
}

/// Placement of one shape: centre, radius, rotation, colour.
struct Placement {
    centre: (f32, f32),
    radius: f32,
    angle: f32,
    colour: [f32; 3],
}

impl Placement {
    fn random(rng: &mut StdRng) -> Self {
        let radius = rng.random_range(6.0..11.0);
        let margin = radius + 1.0;
        let side = SIDE as f32;
        Self {
            centre: (
                rng.random_range(margin..side - margin),
                rng.random_range(margin..side - margin),
            ),
            radius,
            angle: rng.random_range(0.0..TAU),
            colour: [
                rng.random_range(120.0..255.0),
                rng.random_range(120.0..255.0),
                rng.random_range(120.0..255.0),
            ],
        }
    }

    fn contains(&self, shape: usize, x: f32, y: f32) -> bool {
        let (dx, dy) = (x - self.centre.0, y - self.centre.1);
        let (c, s) = (self.angle.cos(), self.angle.sin());
        let (u, v) = (c * dx + s * dy, -s * dx + c * dy);
        let r = self.radius;
        match shape {
            0 => u * u + v * v <= r * r,
            1 => u.abs() <= r * 0.8 && v.abs() <= r * 0.8,
            _ => (0..3).all(|k| {
                // Inside all three edges of an equilateral triangle of circumradius r.
                let normal = PI / 2.0 + k as f32 * TAU / 3.0;
                u * normal.cos() + v * normal.sin() <= r * 0.5
            }),
        }
    }
}

fn render(shape: usize, placement: &Placement, noise: f32, rng: &mut StdRng) -> RgbImage {
    RgbImage::from_fn(SIDE, SIDE, |x, y| {
        let inside = placement.contains(shape, x as f32 + 0.5, y as f32 + 0.5);
        Rgb(std::array::from_fn(|c| {
            let base = if inside { placement.colour[c] } else { 40.0 };
            (base + noise * normal(rng)).clamp(0.0, 255.0) as u8
        }))
    })
}

fn draw_still(shape: usize, rng: &mut StdRng) -> RgbImage {
    let placement = Placement::random(rng);
    let noise = rng.random_range(10.0..45.0);
    render(shape, &placement, noise, rng)
}

fn moving_shape(shape: usize, rng: &mut StdRng) -> Vec<RgbImage> {
    let mut placement = Placement::random(rng);
    placement.radius = placement.radius.min(8.0);
    let speed = rng.random_range(0.3..0.9);
    let heading = rng.random_range(0.0..TAU);
    let spin = rng.random_range(-0.2..0.2);
    let noise = rng.random_range(10.0..35.0);
    let (margin, side) = (placement.radius + 1.0, SIDE as f32);
    (0..VIDEO_FRAMES)
        .map(|_| {
            let frame = render(shape, &placement, noise, rng);
            let (x, y) = placement.centre;
            placement.centre = (
                (x + speed * heading.cos()).clamp(margin, side - margin),
                (y + speed * heading.sin()).clamp(margin, side - margin),
            );
            placement.angle += spin;
            frame
        })
        .collect()
}

fn tone(pitch: usize, rng: &mut StdRng) -> Vec<f32> {
    let f0: f32 = if pitch == 0 {
        rng.random_range(180.0..380.0)
    } else {
        rng.random_range(700.0..1500.0)
    };
    let onset = rng.random_range(0..CLIP_SAMPLES / 4);
    let length = rng.random_range(CLIP_SAMPLES / 3..CLIP_SAMPLES - onset);
    let amplitude = rng.random_range(0.15..0.5);
    let noise = amplitude * rng.random_range(0.1..0.6);
    let harmonic = rng.random_range(0.0..0.5);
    (0..CLIP_SAMPLES)
        .map(|i| {
            let t = i as f32 / SAMPLE_RATE as f32;
            let envelope = if i >= onset && i < onset + length {
                let k = (i - onset) as f32 / length as f32;
                (PI * k).sin()
            } else {
                0.0
            };
            let voice = (TAU * f0 * t).sin() + harmonic * (TAU * 2.0 * f0 * t).sin();
            amplitude * envelope * voice + noise * normal(rng)
        })
        .collect()
}

fn caption(pitch: usize, rng: &mut StdRng) -> String {
    let honest = rng.random::<f32>() < CAPTION_RELIABILITY;
    let said = if honest { pitch } else { 1 - pitch };
    let sounds = [
        ["a low hum", "a deep rumble", "a low drone"],
        ["a high beep", "a shrill whistle", "a high chirp"],
    ];
    let sound = sounds[said][rng.random_range(0..3)];
    let colours = ["red", "green", "blue", "bright", "pale", "dark"];
    let colour = colours[rng.random_range(0..colours.len())];
    let templates = [
        format!("a {colour} object moves while {sound} plays"),
        format!("you can hear {sound} next to something {colour}"),
        format!("{sound} from a {colour} thing"),
    ];
    templates[rng.random_range(0..templates.len())].clone()
}
