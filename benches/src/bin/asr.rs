//! `cargo xtask bench asr`: speech-to-text speed with whisper-tiny.en on the
//! CPU, against faster-whisper (CTranslate2, float32 and int8) and
//! transformers on the same machine in the same run, as real-time factors
//! (seconds of audio per second) and ratios (above 1: polymodal is faster).
//!
//! - many short clips: the five LibriVox utterances and three English
//!   audioeval clips of the shared folder, one 30-second window each, greedy
//!   and with 5 beams;
//! - one long input: the LibriVox utterances joined, repeated to over two
//!   minutes, transcribed with timestamps window after window (OpenAI's
//!   sequential algorithm, at temperature 0 with the silence thresholds),
//!   greedy and with 5 beams.
//!
//! Decoding the files is not timed on either side. The texts of the last
//! round's last pass are scored against the clips' reference transcripts: word and
//! character error rates after Whisper's English normaliser
//! ([`polymodal_text::EnglishTextNormalizer`]) on both sides, for every
//! tool. Written with the run's provenance and the goals' verdicts to
//! `docs/benchmarks/asr-cpu.md`.
//!
//! The two sides alternate round by round (`--rounds`, default 3): speeds
//! are of median times, ratios the median of the rounds' ratios with
//! their range; the error rates are the last round's texts'.
//!
//! On a wgpu device (`--device wgpu`), polymodal runs there and the
//! reference tools stay on the CPU; the report is
//! `docs/benchmarks/asr-wgpu-<adapter>.md`, without goals (they are set for
//! the CPU).
//!
//! Usage: asr --shared DIR [--python PYTHON] [--reps N] [--rounds N]
//! [--device cpu|wgpu|wgpu:N]

use std::path::{Path, PathBuf};
use std::time::Duration;

use polymodal::device::{Precision, device_with_precision};
use polymodal_audio::{DecodeOptions, LoadOptions, Whisper, load};
use polymodal_benches::report::{Align, Goal, Provenance, Report, Table, device_slug, reports_dir};
use polymodal_benches::{
    Measured, Options, Rounds, adapter_name, best_of, error, python_reference, timing,
};
use polymodal_text::{EnglishTextNormalizer, ErrorCounts};
use serde_json::{Value, json};

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

/// The reference transcript of each of `files`: the LibriVox utterances'
/// line in their folder's `transcription` file (`<s> TEXT </s> (ID)`), an
/// audioeval clip's `.txt` beside it.
fn transcripts(files: &[PathBuf]) -> Result<Vec<String>, String> {
    files
        .iter()
        .map(|path| {
            let stem = path
                .file_stem()
                .map_or(String::new(), |s| s.to_string_lossy().into());
            let own = path.with_extension("txt");
            if own.is_file() {
                return std::fs::read_to_string(&own)
                    .map_err(|e| format!("{}: {e}", own.display()));
            }
            let list = path.with_file_name("transcription");
            let text =
                std::fs::read_to_string(&list).map_err(|e| format!("{}: {e}", list.display()))?;
            text.lines()
                .find_map(|line| {
                    let (words, id) = line.rsplit_once('(')?;
                    (id.trim_end().strip_suffix(')')? == stem).then(|| {
                        words
                            .replace("<s>", "")
                            .replace("</s>", "")
                            .trim()
                            .to_string()
                    })
                })
                .ok_or_else(|| format!("{}: no transcript of {stem}", list.display()))
        })
        .collect()
}

/// Word and character error counts of `hypotheses` against `references`,
/// both through Whisper's English normaliser, summed over the pairs.
fn score(references: &[String], hypotheses: &[String]) -> (ErrorCounts, ErrorCounts) {
    let (mut words, mut chars) = (ErrorCounts::default(), ErrorCounts::default());
    for (reference, hypothesis) in references.iter().zip(hypotheses) {
        let (r, h) = (
            EnglishTextNormalizer.normalize(reference),
            EnglishTextNormalizer.normalize(hypothesis),
        );
        words += ErrorCounts::words(&r, &h);
        chars += ErrorCounts::chars(&r, &h);
    }
    (words, chars)
}

/// The texts a reference job printed, when it ran.
fn reference_texts(python: &Result<Value, String>, job: &str) -> Option<Vec<String>> {
    let texts = python.as_ref().ok()?[job]["texts"].as_array()?;
    texts.iter().map(|t| t.as_str().map(String::from)).collect()
}

fn samples(path: &Path) -> Result<Vec<f32>, String> {
    Ok(load(path, &LoadOptions::mono_at(16_000))
        .map_err(error)?
        .samples)
}

fn main() {
    polymodal_benches::main_of("asr", run);
}

/// One round of polymodal's side: each set's time, best of `reps` passes,
/// and the last pass's texts.
struct OurPass {
    /// Short clips greedy, short clips with 5 beams, the long input greedy
    /// and with 5 beams.
    times: [Duration; 4],
    greedy: Vec<String>,
    beam: Vec<String>,
    long: String,
    long_beam: String,
}

/// Each clip: features, then greedy decoding or a 5-beam search (what
/// `transcribe` does with `with_beams(1)` or `with_beams(5)`); the long
/// input through `transcribe_long` at temperature 0, greedy and with 5
/// beams.
fn ours(
    whisper: &mut Whisper,
    clips: &[Vec<f32>],
    long: &[f32],
    reps: usize,
) -> Result<OurPass, String> {
    let transcribe_clips = |beams: usize| {
        let mut texts = Vec::new();
        let time = best_of(reps, || {
            texts.clear();
            for clip in clips {
                let features = whisper.features(clip).map_err(error)?;
                let tokens = match beams {
                    1 => whisper.greedy(features).map_err(error)?.remove(0).tokens,
                    _ => whisper.beam_search(features, beams).map_err(error)?.tokens,
                };
                texts.push(whisper.decode(&tokens).map_err(error)?);
            }
            Ok(())
        })?;
        Ok::<_, String>((time, texts))
    };
    let (greedy_time, greedy) = transcribe_clips(1)?;
    let (beam_time, beam) = transcribe_clips(5)?;
    let mut transcribe_long = |beams: usize| {
        // faster-whisper's settings below: temperature 0, its thresholds.
        let options = DecodeOptions {
            temperatures: vec![0.0],
            condition_on_previous_text: false,
            ..DecodeOptions::default().with_beams(beams)
        };
        whisper.set_options(options).map_err(error)?;
        let mut text = String::new();
        let time = best_of(reps, || {
            let segments = whisper.transcribe_long(long).map_err(error)?;
            text = segments.iter().map(|s| s.text.as_str()).collect();
            Ok(())
        })?;
        Ok::<_, String>((time, text))
    };
    let (long_time, long_text) = transcribe_long(1)?;
    let (long_beam_time, long_beam) = transcribe_long(5)?;
    Ok(OurPass {
        times: [greedy_time, beam_time, long_time, long_beam_time],
        greedy,
        beam,
        long: long_text,
        long_beam,
    })
}

/// The reference jobs, each with the set of [`OurPass::times`] it is
/// compared with.
const JOBS: [(usize, &str); 11] = [
    (0, "fw_f32_greedy"),
    (0, "fw_int8_greedy"),
    (0, "hf_greedy"),
    (1, "fw_f32_beam"),
    (1, "fw_int8_beam"),
    (1, "hf_beam"),
    (2, "fw_f32_long"),
    (2, "fw_int8_long"),
    (2, "hf_long"),
    (3, "fw_f32_long_beam"),
    (3, "fw_int8_long_beam"),
];

fn run() -> Result<(), String> {
    let options = Options::from_args()?;
    let reps = options.reps;
    let device = device_with_precision(Some(&options.device), Precision::F32).map_err(error)?;
    let adapter = adapter_name(&options.device, &device);
    let on_cpu = options.device == "cpu";
    let model_dir = options.shared.join("models/whisper-tiny.en");
    let (mut whisper, _) = Whisper::load(&model_dir, &device).map_err(error)?;
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

    // Round by round: polymodal, then the reference tools.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let spec = json!({
        "reps": reps, "threads": threads, "model": model_dir,
        "clips": clip_files, "long": long_files,
    });
    let mut rounds = vec![Rounds::default(); JOBS.len()];
    let mut tools: Vec<Measured> = vec![Err("not run".into()); JOBS.len()];
    let mut python = Err("not run".into());
    let mut last = None;
    for _ in 0..options.rounds.max(1) {
        let pass = ours(&mut whisper, &clips, &long, reps)?;
        python = python_reference(&options.python, "asr_reference.py", &spec);
        for (i, (set, job)) in JOBS.iter().enumerate() {
            rounds[i].ours.push(pass.times[*set]);
            tools[i] = timing(&python, job);
            if let Ok((time, _)) = &tools[i] {
                rounds[i].theirs.push(*time);
            }
        }
        last = Some(pass);
    }
    let pass = last.expect("at least one round");
    let short = format!("{} short clips ({clip_secs:.1} s)", clips.len());
    let long_what = format!("one long input ({long_secs:.1} s, timestamps)");
    let sets = [
        (format!("{short}, greedy"), clip_secs),
        (format!("{short}, 5 beams"), clip_secs),
        (format!("{long_what}, greedy"), long_secs),
        (format!("{long_what}, 5 beams"), long_secs),
    ];
    let mut table = Table::against_reference();
    for (((set, job), rounds), tool) in JOBS.iter().zip(&rounds).zip(tools) {
        let (what, audio_secs) = &sets[*set];
        let speed = |d: Duration| format!("{:.1}x real time", audio_secs / d.as_secs_f64());
        // The goal: ahead of faster-whisper in float32.
        let goal = (on_cpu && job.starts_with("fw_f32")).then_some(Goal(1.0));
        let tool = tool.map_or_else(|why| why, |(_, tool)| tool);
        table.rounds_row(what.clone(), rounds, tool, goal, speed);
    }
    let clip_refs = transcripts(&clip_files)?;
    let long_refs = vec![transcripts(&long_files)?.join(" ")];
    let long_texts = vec![pass.long];
    let long_beam_texts = vec![pass.long_beam];
    let errors = error_table(
        &[
            Scored {
                what: format!("{short}, greedy"),
                references: &clip_refs,
                ours: &pass.greedy,
                jobs: &["fw_f32_greedy", "fw_int8_greedy", "hf_greedy"],
            },
            Scored {
                what: format!("{short}, 5 beams"),
                references: &clip_refs,
                ours: &pass.beam,
                jobs: &["fw_f32_beam", "fw_int8_beam", "hf_beam"],
            },
            Scored {
                what: format!("{long_what}, greedy"),
                references: &long_refs,
                ours: &long_texts,
                jobs: &["fw_f32_long", "fw_int8_long", "hf_long"],
            },
            Scored {
                what: format!("{long_what}, 5 beams"),
                references: &long_refs,
                ours: &long_beam_texts,
                jobs: &["fw_f32_long_beam", "fw_int8_long_beam"],
            },
        ],
        &python,
    );
    let provenance = Provenance::capture().python_tools(&python);
    let place = adapter.clone().unwrap_or_else(|| "CPU".into());
    let mut report = Report::new(
        format!("Speech to text against faster-whisper: {place}"),
        provenance,
    );
    report
        .text(format!(
            "whisper-tiny.en (`../shared/models/whisper-tiny.en`; faster-whisper reads the \
             CTranslate2 checkpoint it was converted from); polymodal on `{}`{} in f32, the \
             reference tools on the CPU, {threads} thread(s) on both sides; {} rounds, each running polymodal and then the \
             reference tools, each side best of {reps} passes after a warm-up pass; decoding \
             the files is not timed. Speed is seconds of audio per second, of the median times \
             over the rounds; ratio = polymodal's speed / the reference's in each round (above \
             1: polymodal is faster), its median and in brackets its range, rounded down; a \
             goal is judged on the median. The goal is faster-whisper in float32; int8 and transformers are \
             shown beside it. Short clips: one window each without timestamps on every side. \
             The long input: timestamps, OpenAI's sequential windows, temperature 0 with the \
             no-speech and log-probability thresholds, without the previous text as prompt \
             and without VAD, on every side (transformers: its long-form `generate`). What each row measures: \
             [../benchmarks.md](../benchmarks.md#speech-to-text-cargo-xtask-bench-asr).",
            options.device,
            adapter
                .as_ref()
                .map_or(String::new(), |a| format!(" (adapter: {a}; goals are set for the CPU)")),
            options.rounds.max(1),
        ))
        .table(&table)
        .text(
            "**Error rates** of the same passes' texts against the clips' reference \
             transcripts (the LibriVox `transcription` file, the audioeval `.txt` files; the \
             long input's reference is its utterances' transcripts joined), both sides through \
             Whisper's English normaliser (`polymodal_text::EnglishTextNormalizer`, checked \
             against openai-whisper's): word error rate (WER) and character error rate (CER) \
             over all the words of the set, as jiwer computes them.",
        )
        .table(&errors);
    let name = format!(
        "asr-{}.md",
        device_slug(&options.device, adapter.as_deref())
    );
    report.write(&reports_dir(), &name)?;
    Ok(())
}

/// A set of inputs whose texts are scored together.
struct Scored<'a> {
    what: String,
    references: &'a [String],
    /// polymodal's texts.
    ours: &'a [String],
    /// The reference jobs that transcribed the same inputs.
    jobs: &'a [&'a str],
}

/// The error-rate table: polymodal's texts and each reference tool's, per
/// set.
fn error_table(sets: &[Scored], python: &Result<Value, String>) -> Table {
    let mut table = Table::new(&[
        ("work", Align::Left),
        ("transcribed by", Align::Left),
        ("WER", Align::Right),
        ("CER", Align::Right),
        ("reference words", Align::Right),
    ]);
    for set in sets {
        let mut row = |tool: String, texts: Option<Vec<String>>| {
            let rate = |c: ErrorCounts| {
                c.rate()
                    .map_or("-".into(), |r| format!("{:.1} %", 100.0 * r))
            };
            let cells = match texts {
                Some(texts) if texts.len() == set.references.len() => {
                    let (words, chars) = score(set.references, &texts);
                    [rate(words), rate(chars), words.reference_len.to_string()]
                }
                Some(texts) => [
                    format!("{} texts for {} inputs", texts.len(), set.references.len()),
                    "-".into(),
                    "-".into(),
                ],
                None => ["not run".into(), "-".into(), "-".into()],
            };
            let [wer, cer, words] = cells;
            table.row(vec![set.what.clone(), tool, wer, cer, words]);
        };
        row("polymodal".into(), Some(set.ours.to_vec()));
        for job in set.jobs {
            let tool = timing(python, job).map_or_else(|why| why, |(_, tool)| tool);
            row(tool, reference_texts(python, job));
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clip's transcript comes from its `.txt`, else from its folder's
    /// `transcription` list by id; a clip with neither is an error naming it.
    #[test]
    fn transcripts_are_found_for_each_clip() {
        let dir = std::env::temp_dir().join(format!("polymodal-asr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hello.txt"), "Hello world.").unwrap();
        std::fs::write(
            dir.join("transcription"),
            "<s> he was not an ill disposed young man </s> (book-0880)\n\
             <s> unless to be rather cold hearted </s> (book-0890)\n",
        )
        .unwrap();
        let files = [dir.join("book-0890.wav"), dir.join("hello.wav")];
        assert_eq!(
            transcripts(&files).unwrap(),
            ["unless to be rather cold hearted", "Hello world."]
        );
        let missing = transcripts(&[dir.join("book-0999.wav")]).unwrap_err();
        assert!(missing.contains("no transcript of book-0999"), "{missing}");
        let (words, chars) = score(
            &["Mister Smith won't come".into()],
            &[" Mr. Smith will not come.".into()],
        );
        assert_eq!(
            (words.edits(), words.reference_len, chars.edits()),
            (0, 5, 0)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
