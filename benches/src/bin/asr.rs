//! `cargo xtask bench asr`: speech-to-text speed with whisper-tiny.en on the
//! CPU, against faster-whisper (CTranslate2, float32 and int8) and
//! transformers on the same machine in the same run, as real-time factors
//! (seconds of audio per second) and ratios (above 1: polymodal is faster).
//!
//! - many short clips: the five LibriVox utterances and three English
//!   audioeval clips of the shared folder, one 30-second window each, greedy
//!   and with 5 beams;
//! - one long input: the LibriVox utterances joined, repeated to over two
//!   minutes, in 30-second windows without timestamps, greedy.
//!
//! Decoding the files is not timed on either side. Written with the run's
//! provenance and the goals' verdicts to `docs/benchmarks/asr-cpu.md`.
//!
//! Usage: asr --shared DIR [--python PYTHON] [--reps N]

use std::path::{Path, PathBuf};
use std::time::Duration;

use burn::prelude::*;
use polymodal_audio::{LoadOptions, Whisper, load};
use polymodal_benches::report::{Align, Goal, Provenance, Report, Table, ratio_cell, reports_dir};
use polymodal_benches::{Options, best_of, error, python_reference, timing};
use serde_json::json;

/// Times the LibriVox utterances are repeated in the long input.
const LONG_REPEATS: usize = 5;

/// The short clips and the files the long input is made of.
fn files(shared: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), String> {
    let librivox = shared.join("data/media/audio/librivox");
    let mut utterances: Vec<PathBuf> = std::fs::read_dir(&librivox)
        .map_err(|e| format!("{}: {e}", librivox.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "wav"))
        .collect();
    utterances.sort();
    let english = shared.join("data/speech/audioeval/en");
    let mut clips = utterances.clone();
    for name in ["hello_world", "counting", "quick_brown_fox"] {
        clips.push(english.join(format!("{name}.wav")));
    }
    let long = (0..LONG_REPEATS).flat_map(|_| utterances.clone()).collect();
    Ok((clips, long))
}

fn samples(path: &Path) -> Result<Vec<f32>, String> {
    Ok(load(path, &LoadOptions::mono_at(16_000))
        .map_err(error)?
        .samples)
}

struct Row {
    what: String,
    audio_secs: f64,
    ours: Duration,
    reference: Result<(Duration, String), String>,
    goal: Option<Goal>,
}

fn main() {
    polymodal_benches::main_of("asr", run);
}

fn run() -> Result<(), String> {
    let options = Options::from_args()?;
    let reps = options.reps;
    let device = Device::flex();
    let model_dir = options.shared.join("models/whisper-tiny.en");
    let (whisper, _) = Whisper::load(&model_dir, &device).map_err(error)?;
    let (clip_files, long_files) = files(&options.shared)?;
    let clips = clip_files
        .iter()
        .map(|p| samples(p))
        .collect::<Result<Vec<_>, _>>()?;
    let long: Vec<f32> = long_files
        .iter()
        .map(|p| samples(p))
        .collect::<Result<Vec<_>, _>>()?
        .concat();
    let seconds = |s: &[f32]| s.len() as f64 / 16_000.0;
    let clip_secs: f64 = clips.iter().map(|c| seconds(c)).sum();
    let long_secs = seconds(&long);

    // Each clip: features, then greedy decoding or a 5-beam search (what
    // `transcribe` does with `with_beams(1)` or `with_beams(5)`).
    let transcribe_clips = |beams: usize| {
        best_of(reps, || {
            for clip in &clips {
                let features = whisper.features(clip).map_err(error)?;
                let tokens = match beams {
                    1 => whisper.greedy(features).map_err(error)?.remove(0).tokens,
                    _ => whisper.beam_search(features, beams).map_err(error)?.tokens,
                };
                whisper.decode(&tokens).map_err(error)?;
            }
            Ok(())
        })
    };
    let ours_greedy = transcribe_clips(1)?;
    let ours_beam = transcribe_clips(5)?;
    let ours_long = best_of(reps, || {
        whisper.transcribe_long(&long).map_err(error)?;
        Ok(())
    })?;

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let spec = json!({
        "reps": reps, "threads": threads, "model": model_dir,
        "clips": clip_files, "long": long_files,
    });
    let python = python_reference(&options.python, "asr_reference.py", &spec);
    let reference = |name: &str| timing(&python, name);
    let short = format!("{} short clips ({clip_secs:.1} s)", clips.len());
    let long_what = format!("one long input ({long_secs:.1} s, 30-s windows)");
    let mut rows = Vec::new();
    for (what, ours, secs, jobs) in [
        (
            format!("{short}, greedy"),
            ours_greedy,
            clip_secs,
            ["fw_f32_greedy", "fw_int8_greedy", "hf_greedy"].as_slice(),
        ),
        (
            format!("{short}, 5 beams"),
            ours_beam,
            clip_secs,
            ["fw_f32_beam", "fw_int8_beam", "hf_beam"].as_slice(),
        ),
        (
            format!("{long_what}, greedy"),
            ours_long,
            long_secs,
            ["fw_f32_long", "fw_int8_long"].as_slice(),
        ),
    ] {
        for job in jobs {
            // The goal: ahead of faster-whisper in float32.
            let goal = job.starts_with("fw_f32").then_some(Goal(1.0));
            rows.push(Row {
                what: what.clone(),
                audio_secs: secs,
                ours,
                reference: reference(job),
                goal,
            });
        }
    }

    let mut table = Table::new(&[
        ("work", Align::Left),
        ("polymodal", Align::Right),
        ("reference", Align::Right),
        ("tool", Align::Left),
        ("ratio", Align::Right),
    ]);
    for row in rows {
        let speed = |d: Duration| row.audio_secs / d.as_secs_f64();
        let ours = format!("{:.1}x real time", speed(row.ours));
        let (theirs, tool, ratio) = match row.reference {
            Ok((time, tool)) => (
                format!("{:.1}x real time", speed(time)),
                tool,
                Some(speed(row.ours) / speed(time)),
            ),
            Err(why) => ("-".into(), why, None),
        };
        table.goal_row(
            vec![row.what, ours, theirs, tool, ratio_cell(ratio)],
            ratio,
            row.goal,
        );
    }
    let provenance = Provenance::capture().python_tools(&python);
    let mut report = Report::new("Speech to text against faster-whisper: CPU", provenance);
    report
        .text(format!(
            "whisper-tiny.en (`../shared/models/whisper-tiny.en`; faster-whisper reads the \
             CTranslate2 checkpoint it was converted from) on the CPU backend in f32, \
             {threads} thread(s) on both sides; best of {reps} passes each after a warm-up \
             pass; decoding the files is not timed. Speed is seconds of audio per second; \
             ratio = polymodal's speed / the reference's (above 1: polymodal is faster), \
             rounded down. The goal is faster-whisper in float32; int8 and transformers are \
             shown beside it. faster-whisper runs without timestamps, without the previous \
             text as prompt and without VAD, as polymodal does. What each row measures: \
             [../benchmarks.md](../benchmarks.md#speech-to-text-cargo-xtask-bench-asr).",
        ))
        .table(&table);
    report.write(&reports_dir(), "asr-cpu.md")?;
    Ok(())
}
