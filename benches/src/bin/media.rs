//! `cargo xtask bench media`: polymodal's media paths against the reference
//! tools on the same files in the same run, as ratios (reference time /
//! polymodal time: above 1 means polymodal is faster), written with the
//! run's provenance and each goal's verdict to `docs/benchmarks/media.md`.
//!
//! Usage: media --shared DIR [--python PYTHON] [--reps N]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use image::RgbImage;
use polymodal_audio::{LoadOptions, MelConfig, MelSpectrogram, load};
use polymodal_benches::report::{
    Goal, Provenance, Report, Table, ffmpeg_version, ratio_cell, reports_dir,
};
use polymodal_benches::{Options, best_of, python_reference, timing};
use polymodal_image::{ImagePreprocess, load_rgb};
use polymodal_text::TextTokenizer;
use polymodal_video::VideoReader;
use serde_json::json;

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

/// One row of the report.
struct Row {
    what: String,
    ours: Duration,
    reference: Result<(Duration, String), String>,
    goal: Option<Goal>,
}

fn main() {
    polymodal_benches::main_of("media", run);
}

fn run() -> Result<(), String> {
    let options = Options::from_args()?;
    let media = options.shared.join("data/media");
    let video = media.join("video/bigbuckbunny.mp4");
    let speech = files(&media.join("audio/librivox"), "wav")?;
    let mut photos = files(&media.join("images"), "png")?;
    photos.extend(files(&media.join("images"), "jpg")?);
    let tokenizer_file = options
        .shared
        .join("models/all-MiniLM-L6-v2/tokenizer.json");
    let transcripts = std::fs::read_to_string(media.join("audio/librivox/transcription"))
        .map_err(|e| e.to_string())?;
    let sentences: Vec<String> = transcripts
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
        .collect();
    let reps = options.reps;
    let error = |e: polymodal_core::Error| e.to_string();

    // Video: every frame of the 720p clip to RGB, on one thread (as
    // `ffmpeg -threads 1`) and with FFmpeg's automatic threading (as video-rs).
    let decode_video = |threads: usize| {
        best_of(reps, || {
            let mut reader = VideoReader::open_with_threads(&video, threads).map_err(error)?;
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
    let ours_video = decode_video(1)?;
    let ours_video_auto = decode_video(0)?;
    let video_rs = best_of(reps, || {
        let mut decoder = video_rs::Decoder::new(video.as_path()).map_err(|e| e.to_string())?;
        loop {
            match decoder.decode_raw() {
                Ok(_) => {}
                Err(video_rs::Error::ReadExhausted | video_rs::Error::DecodeExhausted) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    })?;
    let ffmpeg = best_of(reps, || {
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-threads", "1", "-i"])
            .arg(&video)
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-y", "/dev/null"])
            .status()
            .map_err(|e| format!("ffmpeg: {e}"))?;
        status.success().then_some(()).ok_or("ffmpeg failed".into())
    });

    // Audio: decode, resample to 22.05 kHz, 128-band log-mel.
    let mel =
        MelSpectrogram::new(MelConfig::librosa(AUDIO_RATE, N_FFT, HOP, N_MELS)).map_err(error)?;
    let ours_audio = best_of(reps, || {
        for path in &speech {
            let clip = load(path, &LoadOptions::mono_at(AUDIO_RATE)).map_err(error)?;
            mel.compute(&clip.samples).map_err(error)?;
        }
        Ok(())
    })?;

    // Images: decode, CLIP preprocessing to 224 x 224 CHW f32.
    let clip = ImagePreprocess::clip(224);
    let ours_images = best_of(reps, || {
        for path in &photos {
            clip.apply(&load_rgb(path).map_err(error)?).map_err(error)?;
        }
        Ok(())
    })?;

    // Text: 2000 sentences through all-MiniLM-L6-v2's tokenizer.
    let tokenizer = TextTokenizer::from_file(&tokenizer_file, 128).map_err(error)?;
    let ours_tokens = best_of(reps, || {
        tokenizer
            .encode_batch(&sentences)
            .map(|_| ())
            .map_err(error)
    })?;

    let spec = json!({
        "reps": options.reps,
        "audio": speech, "audio_rate": AUDIO_RATE, "n_fft": N_FFT, "hop": HOP, "n_mels": N_MELS,
        "images": photos, "image_size": 224,
        "tokenizer": tokenizer_file, "sentences": sentences,
    });
    let python = python_reference(&options.python, "media_reference.py", &spec);
    let reference = |name: &str| timing(&python, name);
    // Goals (reference time / polymodal time) next to their rows.
    let rows = [
        Row {
            what: "video: 132 frames 1280x720 H.264 -> RGB, 1 thread".into(),
            ours: ours_video,
            reference: ffmpeg.map(|d| (d, "ffmpeg -threads 1 -f rawvideo -pix_fmt rgb24".into())),
            goal: Some(Goal(1.0)),
        },
        Row {
            what: "video: the same, FFmpeg's automatic threads on both sides".into(),
            ours: ours_video_auto,
            reference: Ok((video_rs, "video-rs 0.12 decode_raw".into())),
            goal: None,
        },
        Row {
            what: format!(
                "audio: {} LibriVox clips, decode + resample 22.05 kHz + 128-mel dB",
                speech.len()
            ),
            ours: ours_audio,
            reference: reference("audio"),
            goal: Some(Goal(3.0)),
        },
        Row {
            what: format!(
                "image: {} photos, decode + CLIP resize/crop/normalise",
                photos.len()
            ),
            ours: ours_images,
            reference: reference("image"),
            goal: Some(Goal(1.5)),
        },
        Row {
            what: "text: 2000 sentences, all-MiniLM-L6-v2 tokenizer, pad + truncate 128".into(),
            ours: ours_tokens,
            reference: reference("tokens"),
            goal: Some(Goal(1.0)),
        },
    ];
    let mut table = Table::against_reference();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    for row in rows {
        let (time, tool, ratio) = match row.reference {
            Ok((time, tool)) => {
                let ratio = time.as_secs_f64() / row.ours.as_secs_f64();
                (ms(time), tool, Some(ratio))
            }
            Err(why) => ("-".into(), why, None),
        };
        table.goal_row(
            vec![row.what, ms(row.ours), time, tool, ratio_cell(ratio)],
            ratio,
            row.goal,
        );
    }
    let provenance = Provenance::capture()
        .tool("ffmpeg", ffmpeg_version())
        .python_tools(&python);
    let mut report = Report::new("Media ingestion against the reference tools", provenance);
    report
        .text(format!(
            "Best of {reps} passes each on the shared files; ratio = reference time / polymodal \
             time (above 1: polymodal is faster), rounded down. What each row measures: \
             [../benchmarks.md](../benchmarks.md#media-ingestion-cargo-xtask-bench-media)."
        ))
        .table(&table);
    report.write(&reports_dir(), "media.md")?;
    Ok(())
}
