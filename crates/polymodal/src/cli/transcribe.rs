//! `polymodal transcribe`: speech to text with a Whisper folder.

use std::path::{Path, PathBuf};

use polymodal::audio::{LoadOptions, Segment, Whisper, WhisperFeatures};
use polymodal::{Error, Result};

use super::args::InferenceDevice;

/// Transcribes audio files (and the audio track of video files) with a
/// Hugging Face Whisper folder (config.json, model.safetensors,
/// generation_config.json, tokenizer.json): greedy decoding or beam
/// search, 30-second windows, no timestamps (docs/speech.md).
#[derive(clap::Args)]
pub struct Transcribe {
    /// Whisper folder (e.g. whisper-tiny.en).
    #[arg(long)]
    model: PathBuf,
    /// txt (the text of each file) or json (one object per file, with the
    /// 30-second windows).
    #[arg(long, default_value = "txt")]
    format: String,
    /// Beams of the beam search (1: greedy decoding).
    #[arg(long, default_value_t = 1)]
    beam: usize,
    /// Audio or video files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    device: InferenceDevice,
}

impl Transcribe {
    /// Prints each file's transcript.
    pub fn run(self) -> Result<()> {
        if !matches!(self.format.as_str(), "txt" | "json") {
            return Err(Error::Config(format!(
                "--format {}: give txt or json (timestamped srt and vtt come with \
                 timestamp decoding)",
                self.format
            )));
        }
        let device = self.device.device()?;
        let model = Whisper::load(&self.model, &device)?
            .0
            .with_beams(self.beam)?;
        for file in &self.files {
            let segments = model.transcribe_long(&samples(file)?)?;
            let text: String = segments
                .iter()
                .map(|s| s.transcript.text.trim())
                .collect::<Vec<_>>()
                .join(" ");
            if self.format == "json" {
                println!("{}", json_line(file, &text, &segments));
            } else if self.files.len() > 1 {
                println!("{}: {text}", file.display());
            } else {
                println!("{text}");
            }
        }
        Ok(())
    }
}

/// The file's sound as 16 kHz mono: an audio file, else (with the `video`
/// feature) a video file's audio track.
fn samples(path: &Path) -> Result<Vec<f32>> {
    let options = LoadOptions::mono_at(WhisperFeatures::SAMPLE_RATE);
    let audio_error = match polymodal::audio::load(path, &options) {
        Ok(clip) => return Ok(clip.samples),
        Err(e) => e,
    };
    #[cfg(feature = "video")]
    if let Ok(clip) = polymodal::video::load_audio_track(path, &options) {
        return Ok(clip.samples);
    }
    Err(audio_error)
}

fn json_line(file: &Path, text: &str, segments: &[Segment]) -> String {
    let segments: Vec<serde_json::Value> = segments
        .iter()
        .map(|s| {
            serde_json::json!({
                "start": s.start_secs,
                "end": s.end_secs,
                "text": s.transcript.text,
                "tokens": s.transcript.decoded.tokens,
                "no_speech_prob": s.transcript.decoded.no_speech_prob,
                "avg_logprob": s.transcript.decoded.avg_logprob,
            })
        })
        .collect();
    serde_json::json!({"file": file, "text": text, "segments": segments}).to_string()
}
