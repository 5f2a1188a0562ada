//! `cargo xtask bench media`: polymodal's media paths against the reference
//! tools on the same files in the same run, as ratios (reference time /
//! polymodal time: above 1 means polymodal is faster), written with the
//! run's provenance and each goal's verdict to `docs/benchmarks/media.md`.
//!
//! The two sides alternate round by round (polymodal, then the references,
//! `--rounds` times), and each row's ratio is the median of its rounds'
//! ratios, shown with their range.
//!
//! Usage: media --shared DIR [--python PYTHON] [--reps N] [--rounds N]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use image::RgbImage;
use polymodal_audio::{LoadOptions, MelConfig, MelSpectrogram, load};
use polymodal_benches::report::{Goal, Provenance, Report, Table, ffmpeg_version, reports_dir};
use polymodal_benches::{Measured, Options, Rounds, best_of, error, python_reference, timing};
use polymodal_image::{ImagePreprocess, load_rgb};
use polymodal_text::TextTokenizer;
use polymodal_video::VideoReader;
use serde_json::{Value, json};

const AUDIO_RATE: u32 = 22_050;
const N_FFT: usize = 2048;
const HOP: usize = 512;
const N_MELS: usize = 128;

fn files(dir: &Path, extension: &str) -> Result<Vec<PathBuf>, String> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    found.sort();
    Ok(found)
}

/// The shared files every round works on.
struct Inputs {
    video: PathBuf,
    speech: Vec<PathBuf>,
    photos: Vec<PathBuf>,
    tokenizer: PathBuf,
    sentences: Vec<String>,
}

/// The rows, in order: what each measures and its goal.
fn rows(inputs: &Inputs) -> [(String, Option<Goal>); 5] {
    [
        (
            "video: 132 frames 1280x720 H.264 -> RGB, 1 thread".into(),
            Some(Goal(1.0)),
        ),
        (
            "video: the same, FFmpeg's automatic threads on both sides".into(),
            None,
        ),
        (
            format!(
                "audio: {} LibriVox clips, decode + resample 22.05 kHz + 128-mel dB",
                inputs.speech.len()
            ),
            Some(Goal(3.0)),
        ),
        (
            format!(
                "image: {} photos, decode + CLIP resize/crop/normalise",
                inputs.photos.len()
            ),
            Some(Goal(1.5)),
        ),
        (
            "text: 2000 sentences, all-MiniLM-L6-v2 tokenizer, pad + truncate 128".into(),
            Some(Goal(1.0)),
        ),
    ]
}

fn main() {
    polymodal_benches::main_of("media", run);
}

/// polymodal's time for each row, best of `reps` passes.
fn ours(inputs: &Inputs, reps: usize) -> Result<[Duration; 5], String> {
    // Video: every frame of the 720p clip to RGB, on one thread (as
    // `ffmpeg -threads 1`) and with FFmpeg's automatic threading (as video-rs).
    let decode_video = |threads: usize| {
        best_of(reps, || {
            let mut reader =
                VideoReader::open_with_threads(&inputs.video, threads).map_err(error)?;
            let mut image = RgbImage::new(0, 0);
            let mut frames = 0;
            while reader.next_frame_into(&mut image).map_err(error)?.is_some() {
                frames += 1;
            }
            (frames == 132)
                .then_some(())
                .ok_or(format!("{frames} frames"))
        })
    };
    // Audio: decode, resample to 22.05 kHz, 128-band log-mel.
    let mel =
        MelSpectrogram::new(MelConfig::librosa(AUDIO_RATE, N_FFT, HOP, N_MELS)).map_err(error)?;
    let audio = best_of(reps, || {
        for path in &inputs.speech {
            let clip = load(path, &LoadOptions::mono_at(AUDIO_RATE)).map_err(error)?;
            mel.compute(&clip.samples).map_err(error)?;
        }
        Ok(())
    })?;
    // Images: decode, CLIP preprocessing to 224 x 224 CHW f32.
    let clip = ImagePreprocess::clip(224);
    let images = best_of(reps, || {
        for path in &inputs.photos {
            clip.apply(&load_rgb(path).map_err(error)?).map_err(error)?;
        }
        Ok(())
    })?;
    // Text: 2000 sentences through all-MiniLM-L6-v2's tokenizer.
    let tokenizer = TextTokenizer::from_file(&inputs.tokenizer, 128).map_err(error)?;
    let tokens = best_of(reps, || {
        tokenizer
            .encode_batch(&inputs.sentences)
            .map(|_| ())
            .map_err(error)
    })?;
    Ok([decode_video(1)?, decode_video(0)?, audio, images, tokens])
}

/// The reference's time and tool for each row (or why it was skipped),
/// and the Python side's output (for the provenance).
fn theirs(inputs: &Inputs, options: &Options) -> (Vec<Measured>, Result<Value, String>) {
    let reps = options.reps;
    let video_rs = best_of(reps, || {
        let mut decoder =
            video_rs::Decoder::new(inputs.video.as_path()).map_err(|e| e.to_string())?;
        loop {
            match decoder.decode_raw() {
                Ok(_) => {}
                Err(video_rs::Error::ReadExhausted | video_rs::Error::DecodeExhausted) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    });
    let ffmpeg = best_of(reps, || {
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-threads", "1", "-i"])
            .arg(&inputs.video)
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-y", "/dev/null"])
            .status()
            .map_err(|e| format!("ffmpeg: {e}"))?;
        status.success().then_some(()).ok_or("ffmpeg failed".into())
    });
    let spec = json!({
        "reps": reps,
        "audio": inputs.speech, "audio_rate": AUDIO_RATE, "n_fft": N_FFT, "hop": HOP, "n_mels": N_MELS,
        "images": inputs.photos, "image_size": 224,
        "tokenizer": inputs.tokenizer, "sentences": inputs.sentences,
    });
    let python = python_reference(&options.python, "media_reference.py", &spec);
    let times = vec![
        ffmpeg.map(|d| (d, "ffmpeg -threads 1 -f rawvideo -pix_fmt rgb24".into())),
        video_rs.map(|d| (d, "video-rs 0.12 decode_raw".into())),
        timing(&python, "audio"),
        timing(&python, "image"),
        timing(&python, "tokens"),
    ];
    (times, python)
}

fn run() -> Result<(), String> {
    let options = Options::from_args()?;
    let media = options.shared.join("data/media");
    let mut photos = files(&media.join("images"), "png")?;
    photos.extend(files(&media.join("images"), "jpg")?);
    let transcripts = std::fs::read_to_string(media.join("audio/librivox/transcription"))
        .map_err(|e| e.to_string())?;
    let inputs = Inputs {
        video: media.join("video/bigbuckbunny.mp4"),
        speech: files(&media.join("audio/librivox"), "wav")?,
        photos,
        tokenizer: options
            .shared
            .join("models/all-MiniLM-L6-v2/tokenizer.json"),
        sentences: transcripts
            .lines()
            .map(|l| {
                l.split(" (")
                    .next()
                    .unwrap_or(l)
                    .replace("<s>", "")
                    .replace("</s>", "")
            })
            .cycle()
            .take(2000)
            .collect(),
    };
    // Round by round: polymodal, then the references.
    let mut rounds = vec![Rounds::default(); 5];
    let mut tools: Vec<Result<String, String>> = vec![Err("not run".into()); 5];
    let mut python = Err("not run".into());
    for _ in 0..options.rounds.max(1) {
        let ours = ours(&inputs, options.reps)?;
        let (times, output) = theirs(&inputs, &options);
        for (row, (time, theirs)) in ours.into_iter().zip(times).enumerate() {
            rounds[row].ours.push(time);
            tools[row] = theirs.map(|(d, tool)| {
                rounds[row].theirs.push(d);
                tool
            });
        }
        python = output;
    }
    let mut table = Table::against_reference();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    for (((what, goal), rounds), tool) in rows(&inputs).into_iter().zip(&rounds).zip(tools) {
        let tool = tool.unwrap_or_else(|why| why);
        table.rounds_row(what, rounds, tool, goal, ms);
    }
    let provenance = Provenance::capture()
        .tool("ffmpeg", ffmpeg_version())
        .python_tools(&python);
    let mut report = Report::new("Media ingestion against the reference tools", provenance);
    report
        .text(format!(
            "{} rounds, each timing polymodal and then the reference tools, each side best of \
             {} passes on the shared files; times are the medians over the rounds, ratio = \
             reference time / polymodal time of each round (above 1: polymodal is faster), its \
             median and in brackets its range over the rounds, rounded down; a goal is judged on \
             the median. What each row measures: \
             [../benchmarks.md](../benchmarks.md#media-ingestion-cargo-xtask-bench-media).",
            options.rounds.max(1),
            options.reps
        ))
        .table(&table);
    report.write(&reports_dir(), "media.md")?;
    Ok(())
}
