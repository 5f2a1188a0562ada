//! `polymodal index` and `polymodal search`: search over what is said in
//! audio and video files, with a Whisper folder and a sentence encoder.

use std::io::IsTerminal;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

use polymodal::audio::{DecodeOptions, Whisper};
use polymodal::speech::{SpeechIndex, speech_files, transcribe_media};
use polymodal::text::SentenceEncoder;
use polymodal::{Error, Result};

use super::args::InferenceDevice;

/// Transcribes audio and video files with Whisper and embeds each timed
/// segment with a sentence encoder, into an index folder for `polymodal
/// search` (docs/speech.md, "Search").
#[derive(clap::Args)]
pub struct Index {
    /// Whisper folder (e.g. whisper-tiny.en).
    #[arg(long)]
    whisper: PathBuf,
    /// sentence-transformers folder (e.g. all-MiniLM-L6-v2).
    #[arg(long)]
    text_model: PathBuf,
    /// The index folder to write.
    #[arg(long)]
    out: PathBuf,
    /// Beams of Whisper's beam search (1: greedy decoding).
    #[arg(long, default_value_t = 1)]
    beam: usize,
    /// Audio or video files, folders of them, or JSONL/CSV manifests.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[command(flatten)]
    device: InferenceDevice,
}

impl Index {
    /// Transcribes and embeds every file, then writes the index.
    pub fn run(self) -> Result<()> {
        let files = speech_files(&self.inputs)?;
        let device = self.device.device()?;
        let whisper = Whisper::load(&self.whisper, &device)?
            .0
            .with_options(DecodeOptions::default().with_beams(self.beam))?;
        let (encoder, _) = SentenceEncoder::load(&self.text_model, &device)?;
        let mut index = SpeechIndex::new(&self.whisper, &self.text_model, encoder.dim());
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(files.len() as u64);
            bar.set_style(
                ProgressStyle::with_template("indexing [{bar:30}] {pos}/{len} files {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar
        });
        for file in &files {
            if let Some(bar) = &bar {
                bar.set_message(file.display().to_string());
            }
            let segments = transcribe_media(&whisper, file, |_| {})?;
            index.add(file, &segments, &encoder, &device)?;
            if let Some(bar) = &bar {
                bar.inc(1);
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        index.save(&self.out)?;
        eprintln!(
            "indexed {} segments of {} files into {}",
            index.segments().len(),
            files.len(),
            self.out.display()
        );
        Ok(())
    }
}

/// Finds where something was said: the segments of an index (`polymodal
/// index`) closest in meaning to a query, best first, with their files and
/// time spans.
#[derive(clap::Args)]
pub struct Search {
    /// The index folder.
    index: PathBuf,
    /// What to look for.
    query: String,
    /// How many segments to list.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// The sentence encoder folder (default: the one the index was made with).
    #[arg(long)]
    text_model: Option<PathBuf>,
    /// One JSON object per segment instead of a line of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: InferenceDevice,
}

impl Search {
    /// Prints the best segments.
    pub fn run(self) -> Result<()> {
        if self.query.trim().is_empty() {
            return Err(Error::Config("give a query to search for".into()));
        }
        let index = SpeechIndex::load(&self.index)?;
        let device = self.device.device()?;
        let text_model = self
            .text_model
            .clone()
            .unwrap_or_else(|| index.text_model().to_path_buf());
        let (encoder, _) = SentenceEncoder::load(&text_model, &device)?;
        for hit in index.search(&self.query, &encoder, &device, self.top)? {
            let s = hit.segment;
            if self.json {
                let line = serde_json::json!({
                    "file": s.file, "start": s.start, "end": s.end,
                    "text": s.text, "score": hit.score,
                });
                println!("{line}");
            } else {
                println!(
                    "{:.3}  {}  {}–{}  {}",
                    hit.score,
                    s.file.display(),
                    clock(s.start),
                    clock(s.end),
                    s.text
                );
            }
        }
        Ok(())
    }
}

/// `m:ss.ss` (and hours when needed).
fn clock(secs: f64) -> String {
    let centis = (secs.max(0.0) * 100.0).round() as u64;
    let (hours, minutes) = (centis / 360_000, centis / 6000 % 60);
    let seconds = (centis % 6000) as f64 / 100.0;
    if hours > 0 {
        format!("{hours}:{minutes:02}:{seconds:05.2}")
    } else {
        format!("{minutes}:{seconds:05.2}")
    }
}
