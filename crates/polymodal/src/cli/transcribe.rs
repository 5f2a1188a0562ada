//! `polymodal transcribe`: speech to text with a Whisper folder.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use polymodal::audio::{DecodeOptions, Segment, SubtitleFormat, Task, Whisper, subtitles};
use polymodal::speech::transcribe_media;
use polymodal::{Error, Result};

use super::args::InferenceDevice;

/// What `transcribe` writes.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// The text of each file.
    Txt,
    /// SubRip subtitles.
    Srt,
    /// WebVTT subtitles.
    Vtt,
    /// One object per file: the text and the segments with their times,
    /// tokens and scores.
    Json,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Self::Txt => "txt",
            Self::Srt => "srt",
            Self::Vtt => "vtt",
            Self::Json => "json",
        }
    }
}

/// `--task`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TaskArg {
    /// Write what is said, in its language.
    Transcribe,
    /// Write what is said in English.
    Translate,
}

/// Transcribes audio files (and the audio track of video files) with a
/// Hugging Face Whisper folder (config.json, model.safetensors,
/// generation_config.json, tokenizer.json): input of any length, 30-second
/// windows that follow the predicted timestamps, greedy decoding or beam
/// search, OpenAI's temperature fallback and silence rules (docs/speech.md).
#[derive(clap::Args)]
pub struct Transcribe {
    /// Whisper folder (e.g. whisper-tiny.en).
    #[arg(long)]
    model: PathBuf,
    /// What to write.
    #[arg(long, value_enum, default_value = "txt")]
    format: Format,
    /// Beams of the beam search (1: greedy decoding).
    #[arg(long, default_value_t = 1)]
    beam: usize,
    /// Decode as transformers' `generate` does by default: temperature 0
    /// only, no silence rules, every window decoded.
    #[arg(long)]
    plain: bool,
    /// The spoken language (a code such as fr) for a multilingual
    /// checkpoint; by default it is heard in the first 30 seconds.
    #[arg(long)]
    language: Option<String>,
    /// transcribe, or translate into English (multilingual checkpoints).
    #[arg(long, value_enum, default_value = "transcribe")]
    task: TaskArg,
    /// Decode each window on its own, without the text before it as prompt
    /// (OpenAI's `--condition_on_previous_text False`).
    #[arg(long)]
    no_previous_text: bool,
    /// Where to write instead of standard output: a file for one input, a
    /// folder (FILE_STEM.FORMAT inside) for several.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Audio or video files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    device: InferenceDevice,
}

impl Transcribe {
    /// Writes each file's transcript.
    pub fn run(self) -> Result<()> {
        let several = self.files.len() > 1;
        if several && self.out.is_none() && matches!(self.format, Format::Srt | Format::Vtt) {
            return Err(Error::Config(
                "subtitles of several files need --out FOLDER (one file each)".into(),
            ));
        }
        let device = self.device.device()?;
        let options = DecodeOptions {
            language: self.language.clone(),
            task: match self.task {
                TaskArg::Transcribe => Task::Transcribe,
                TaskArg::Translate => Task::Translate,
            },
            condition_on_previous_text: !self.plain && !self.no_previous_text,
            ..if self.plain {
                DecodeOptions::plain()
            } else {
                DecodeOptions::default()
            }
        };
        let model = Whisper::load(&self.model, &device)?
            .0
            .with_options(options.with_beams(self.beam))?;
        if let Some(folder) = self.out.as_ref().filter(|_| several) {
            std::fs::create_dir_all(folder).map_err(|e| Error::io(folder, e))?;
        }
        for file in &self.files {
            let segments = transcribe(&model, file)?;
            let written = render(self.format, file, &segments, several && self.out.is_none());
            match &self.out {
                None => print!("{written}"),
                Some(out) => {
                    let path = if several {
                        out.join(file.file_stem().unwrap_or(file.as_os_str()))
                            .with_extension(self.format.extension())
                    } else {
                        out.clone()
                    };
                    std::fs::write(&path, written).map_err(|e| Error::io(&path, e))?;
                }
            }
        }
        Ok(())
    }
}

/// The file's segments, with a progress bar on a terminal for input longer
/// than one window.
fn transcribe(model: &Whisper, file: &Path) -> Result<Vec<Segment>> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::hidden();
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} s")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(file.display().to_string());
        bar
    });
    let segments = transcribe_media(model, file, |p| {
        if let Some(bar) = bar.as_ref().filter(|_| p.total_secs > 30.0) {
            if bar.is_hidden() {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
            bar.set_length(p.total_secs as u64);
            bar.set_position(p.done_secs as u64);
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(segments)
}

/// What is written for one file (`named`: text lines start with its name).
fn render(format: Format, file: &Path, segments: &[Segment], named: bool) -> String {
    let text = segments
        .iter()
        .map(|s| s.text.trim())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    match format {
        Format::Txt if named => format!("{}: {text}\n", file.display()),
        Format::Txt => format!("{text}\n"),
        Format::Srt => subtitles(SubtitleFormat::Srt, segments),
        Format::Vtt => subtitles(SubtitleFormat::Vtt, segments),
        Format::Json => format!("{}\n", json_line(file, &text, segments)),
    }
}

fn json_line(file: &Path, text: &str, segments: &[Segment]) -> String {
    let segments: Vec<serde_json::Value> = segments
        .iter()
        .map(|s| {
            serde_json::json!({
                "start": s.start_secs,
                "end": s.end_secs,
                "text": s.text,
                "tokens": s.tokens,
                "temperature": s.temperature,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
            })
        })
        .collect();
    serde_json::json!({"file": file, "text": text, "segments": segments}).to_string()
}
