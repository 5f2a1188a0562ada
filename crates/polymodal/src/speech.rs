//! Search over what is said: a [`SpeechIndex`] holds the timed segments of
//! transcribed audio and video files (Whisper) with one sentence embedding
//! each (a sentence-transformers model such as all-MiniLM-L6-v2), and finds
//! the segments closest in meaning to a query. Two real pretrained models,
//! one retrieval application (docs/speech.md, "Search").
//!
//! An index is a folder: `index.json` (the models, the width, the count),
//! `segments.jsonl` (one segment per line: file, start, end, text) and
//! `embeddings.f32` (the unit vectors, little-endian, one row per segment).

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use polymodal_audio::{AudioReader, Progress, Segment, Whisper};
use polymodal_core::{Error, Modality, Result};
use polymodal_text::SentenceEncoder;

/// File extensions [`speech_files`] takes as audio or video.
pub const MEDIA_EXTENSIONS: [&str; 12] = [
    "wav", "flac", "mp3", "ogg", "m4a", "aac", "opus", "mp4", "mkv", "mov", "webm", "avi",
];

/// Transcribes an audio file, or (with the `video` feature) a video file's
/// soundtrack, read from disk window by window rather than held whole
/// ([`Whisper::transcribe_source`]), telling `progress` how far it has come.
pub fn transcribe_media(
    whisper: &Whisper,
    path: &Path,
    progress: impl FnMut(Progress),
) -> Result<Vec<Segment>> {
    let audio_error = match AudioReader::open(path) {
        Ok(_) => return whisper.transcribe_file(path, progress),
        Err(e) => e,
    };
    #[cfg(feature = "video")]
    {
        use polymodal_audio::{LoadOptions, WhisperFeatures};
        let options = LoadOptions::mono_at(WhisperFeatures::SAMPLE_RATE);
        if polymodal_video::AudioTrackStream::open(path, &options).is_ok() {
            let open = || polymodal_video::AudioTrackStream::open(path, &options);
            return whisper.transcribe_source(open, progress);
        }
    }
    let _ = progress;
    Err(audio_error)
}

/// The media files of `inputs`: a file as it is, a folder's audio and video
/// files (by extension, recursively, in name order), a `.jsonl` or `.csv`
/// manifest's audio files (else its video files).
pub fn speech_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let extension = input
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if input.is_dir() {
            walk(input, &mut files)?;
        } else if matches!(extension.as_deref(), Some("jsonl" | "csv")) {
            for entry in polymodal_train::read_manifest(input)? {
                if let Some(path) = entry.path(Modality::Audio).or(entry.path(Modality::Video)) {
                    files.push(path.to_path_buf());
                }
            }
        } else {
            files.push(input.clone());
        }
    }
    if files.is_empty() {
        return Err(Error::Config(format!(
            "no audio or video files in {inputs:?}"
        )));
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|entry| entry.map(|e| e.path()).map_err(|e| Error::io(dir, e)))
        .collect::<Result<_>>()?;
    entries.sort();
    for path in entries {
        let media = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| MEDIA_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if path.is_dir() {
            walk(&path, files)?;
        } else if media {
            files.push(path);
        }
    }
    Ok(())
}

/// One indexed segment: where it was said, and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexedSegment {
    /// The audio or video file.
    pub file: PathBuf,
    /// Start, in seconds from the start of the file.
    pub start: f64,
    /// End, in seconds.
    pub end: f64,
    /// What was said (trimmed).
    pub text: String,
}

/// A segment found by [`SpeechIndex::search`].
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit<'a> {
    /// The segment.
    pub segment: &'a IndexedSegment,
    /// Cosine similarity of its text to the query.
    pub score: f32,
}

/// What `index.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    /// The Whisper folder the segments were transcribed with.
    whisper: PathBuf,
    /// The sentence encoder folder the texts were embedded with.
    text_model: PathBuf,
    dim: usize,
    segments: usize,
}

const FORMAT: &str = "polymodal-speech-index";

/// Timed segments of speech and their sentence embeddings.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechIndex {
    header: Header,
    segments: Vec<IndexedSegment>,
    /// `[segments, dim]`, each row of unit length.
    embeddings: Vec<f32>,
}

impl SpeechIndex {
    /// An empty index of segments transcribed with the Whisper folder
    /// `whisper` and embedded with `text_model` (`dim` wide).
    pub fn new(whisper: &Path, text_model: &Path, dim: usize) -> Self {
        Self {
            header: Header {
                format: FORMAT.into(),
                version: 1,
                whisper: whisper.to_path_buf(),
                text_model: text_model.to_path_buf(),
                dim,
                segments: 0,
            },
            segments: Vec::new(),
            embeddings: Vec::new(),
        }
    }

    /// The indexed segments.
    pub fn segments(&self) -> &[IndexedSegment] {
        &self.segments
    }

    /// The sentence encoder folder queries must be embedded with.
    pub fn text_model(&self) -> &Path {
        &self.header.text_model
    }

    /// Adds `file`'s segments that have text, embedded with `encoder`.
    pub fn add(
        &mut self,
        file: &Path,
        segments: &[Segment],
        encoder: &SentenceEncoder,
        device: &Device,
    ) -> Result<()> {
        let spoken: Vec<IndexedSegment> = segments
            .iter()
            .filter(|s| !s.text.trim().is_empty())
            .map(|s| IndexedSegment {
                file: file.to_path_buf(),
                start: s.start_secs,
                end: s.end_secs,
                text: s.text.trim().to_string(),
            })
            .collect();
        for chunk in spoken.chunks(64) {
            let texts: Vec<&str> = chunk.iter().map(|s| s.text.as_str()).collect();
            let rows = embed(encoder, &texts, device)?;
            if rows.len() != texts.len() * self.header.dim {
                return Err(Error::Config(format!(
                    "the sentence encoder gives {} values for {} texts, not {} wide",
                    rows.len(),
                    texts.len(),
                    self.header.dim
                )));
            }
            self.embeddings.extend(rows);
        }
        self.segments.extend(spoken);
        self.header.segments = self.segments.len();
        Ok(())
    }

    /// The `top` segments closest to `query` (embedded with `encoder`, the
    /// index's text model), best first.
    pub fn search(
        &self,
        query: &str,
        encoder: &SentenceEncoder,
        device: &Device,
        top: usize,
    ) -> Result<Vec<SearchHit<'_>>> {
        let query = embed(encoder, &[query], device)?;
        if query.len() != self.header.dim {
            return Err(Error::Config(format!(
                "the query's embedding is {} wide, the index's {}: embed it with {}",
                query.len(),
                self.header.dim,
                self.header.text_model.display()
            )));
        }
        Ok(self.nearest(&query, top))
    }

    /// The `top` segments whose embeddings are closest to the unit vector
    /// `query`, best first.
    pub fn nearest(&self, query: &[f32], top: usize) -> Vec<SearchHit<'_>> {
        let dim = self.header.dim.max(1);
        let mut hits: Vec<SearchHit> = self
            .embeddings
            .chunks_exact(dim)
            .zip(&self.segments)
            .map(|(row, segment)| SearchHit {
                segment,
                score: row.iter().zip(query).map(|(a, b)| a * b).sum(),
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(top);
        hits
    }

    /// Writes the index into the folder `dir` (created if needed).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut lines = Vec::new();
        for segment in &self.segments {
            let line = serde_json::to_string(segment)
                .map_err(|e| Error::Config(format!("cannot write a segment: {e}")))?;
            writeln!(lines, "{line}").map_err(|e| Error::io(dir, e))?;
        }
        let bytes: Vec<u8> = self
            .embeddings
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let header = serde_json::to_string_pretty(&self.header)
            .map_err(|e| Error::Config(format!("cannot write the index header: {e}")))?;
        // The header last: an interrupted write leaves no index that looks whole.
        for (name, content) in [
            ("segments.jsonl", lines),
            ("embeddings.f32", bytes),
            ("index.json", header.into_bytes()),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, content).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }

    /// Reads an index folder written by [`SpeechIndex::save`], checking that
    /// its three files agree.
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| Error::io(&path, e))
        };
        let header_path = dir.join("index.json");
        let header: Header = serde_json::from_slice(&read("index.json")?)
            .map_err(|e| Error::Config(format!("{}: {e}", header_path.display())))?;
        if header.format != FORMAT || header.version != 1 || header.dim == 0 {
            return Err(Error::Config(format!(
                "{}: not a version 1 {FORMAT} with embeddings",
                header_path.display()
            )));
        }
        let text = String::from_utf8(read("segments.jsonl")?)
            .map_err(|_| Error::Config(format!("{}/segments.jsonl is not UTF-8", dir.display())))?;
        let segments = text
            .lines()
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str(line).map_err(|e| {
                    Error::Config(format!("{}/segments.jsonl:{}: {e}", dir.display(), i + 1))
                })
            })
            .collect::<Result<Vec<IndexedSegment>>>()?;
        let bytes = read("embeddings.f32")?;
        let expected = header
            .segments
            .checked_mul(header.dim)
            .and_then(|n| n.checked_mul(4));
        if segments.len() != header.segments || expected != Some(bytes.len()) {
            return Err(Error::Config(format!(
                "{}: index.json counts {} segments of {} values; segments.jsonl has {} lines and \
                 embeddings.f32 {} bytes",
                dir.display(),
                header.segments,
                header.dim,
                segments.len(),
                bytes.len()
            )));
        }
        let embeddings = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(Self {
            header,
            segments,
            embeddings,
        })
    }
}

/// Unit-length embeddings of `texts`, row after row.
fn embed(encoder: &SentenceEncoder, texts: &[&str], device: &Device) -> Result<Vec<f32>> {
    let rows = polymodal_core::l2_normalize(encoder.embed(texts, device)?);
    rows.try_into_vec_as::<f32>()
        .map_err(|e| Error::Invalid(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> SpeechIndex {
        let mut index = SpeechIndex::new(Path::new("whisper"), Path::new("minilm"), 2);
        for (i, (x, y)) in [(1.0, 0.0), (0.6, 0.8), (0.0, 1.0)].into_iter().enumerate() {
            index.segments.push(IndexedSegment {
                file: PathBuf::from(format!("clip{i}.wav")),
                start: i as f64,
                end: i as f64 + 1.0,
                text: format!("segment {i}"),
            });
            index.embeddings.extend([x, y]);
        }
        index.header.segments = 3;
        index
    }

    #[test]
    fn nearest_ranks_by_cosine() {
        let index = index();
        let hits = index.nearest(&[0.0, 1.0], 2);
        let files: Vec<_> = hits.iter().map(|h| h.segment.file.clone()).collect();
        assert_eq!(
            files,
            [PathBuf::from("clip2.wav"), PathBuf::from("clip1.wav")]
        );
        assert!((hits[1].score - 0.8).abs() < 1e-6);
    }

    #[test]
    fn a_saved_index_loads_and_a_damaged_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("polymodal-index-{}", std::process::id()));
        let index = index();
        index.save(&dir).unwrap();
        assert_eq!(SpeechIndex::load(&dir).unwrap(), index);
        // Embeddings shorter than the header says.
        let path = dir.join("embeddings.f32");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let error = SpeechIndex::load(&dir).unwrap_err().to_string();
        assert!(error.contains("embeddings.f32 21 bytes"), "{error}");
        // A broken segment line names its line.
        std::fs::write(&path, &bytes).unwrap();
        std::fs::write(dir.join("segments.jsonl"), "{}\n").unwrap();
        let error = SpeechIndex::load(&dir).unwrap_err().to_string();
        assert!(error.contains("segments.jsonl:1"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
