//! JSONL manifests: one sample per line, media paths relative to the manifest.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use polymodal_core::{Error, Modality, Result};

/// One sample of a manifest, with paths resolved against the manifest's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Sample name (defaults to the line number).
    pub id: String,
    /// Class name.
    pub label: String,
    /// A UTF-8 text file (caption, transcript).
    pub text: Option<PathBuf>,
    /// An image file.
    pub image: Option<PathBuf>,
    /// An audio file.
    pub audio: Option<PathBuf>,
    /// A video file.
    pub video: Option<PathBuf>,
}

impl ManifestEntry {
    /// The file of `modality`, if the sample has one.
    pub fn path(&self, modality: Modality) -> Option<&Path> {
        match modality {
            Modality::Text => self.text.as_deref(),
            Modality::Image => self.image.as_deref(),
            Modality::Audio => self.audio.as_deref(),
            Modality::Video => self.video.as_deref(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: Option<String>,
    label: serde_json::Value,
    text: Option<PathBuf>,
    image: Option<PathBuf>,
    audio: Option<PathBuf>,
    video: Option<PathBuf>,
}

/// Reads a JSONL manifest. Errors name the manifest and the line.
pub fn read_manifest(path: impl AsRef<Path>) -> Result<Vec<ManifestEntry>> {
    let path = path.as_ref();
    let content = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut entries = Vec::new();
    for (index, text) in content.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), index + 1);
        let line: Line =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("{}: {e}", at())))?;
        let label = match line.label {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            other => {
                return Err(Error::Config(format!(
                    "{}: label must be a string or number, got {other}",
                    at()
                )));
            }
        };
        let resolve = |p: Option<PathBuf>| p.map(|p| base.join(p));
        let entry = ManifestEntry {
            id: line.id.unwrap_or_else(|| format!("line{}", index + 1)),
            label,
            text: resolve(line.text),
            image: resolve(line.image),
            audio: resolve(line.audio),
            video: resolve(line.video),
        };
        if Modality::ALL.iter().all(|&m| entry.path(m).is_none()) {
            return Err(Error::Config(format!(
                "{}: the sample has no media (text, image, audio or video)",
                at()
            )));
        }
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err(Error::Config(format!(
            "{}: the manifest has no samples",
            path.display()
        )));
    }
    Ok(entries)
}

/// The sorted class names of a set of entries.
pub fn class_names(entries: &[ManifestEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e.label.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, content: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("polymodal-manifest-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("m.jsonl");
        std::fs::write(&file, content).unwrap();
        file
    }

    #[test]
    fn paths_are_relative_to_the_manifest() {
        let file = write(
            "ok",
            "{\"label\": \"a\", \"image\": \"img/1.png\"}\n\n{\"id\": \"x\", \"label\": 3, \"audio\": \"a.wav\"}\n",
        );
        let entries = read_manifest(&file).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0].image.as_deref(),
            Some(file.parent().unwrap().join("img/1.png").as_path())
        );
        assert_eq!(entries[1].label, "3");
        assert_eq!(
            class_names(&entries),
            vec!["3".to_string(), "a".to_string()]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let file = write(
            "bad",
            "{\"label\": \"a\", \"image\": \"1.png\"}\n{\"label\": \"b\", \"imgae\": \"2.png\"}\n",
        );
        let message = read_manifest(&file).unwrap_err().to_string();
        assert!(message.contains("m.jsonl:2"), "{message}");
        let file = write("nomedia", "{\"label\": \"a\"}\n");
        assert!(
            read_manifest(&file)
                .unwrap_err()
                .to_string()
                .contains("no media")
        );
        assert!(matches!(
            read_manifest("/nonexistent.jsonl"),
            Err(Error::Io { .. })
        ));
    }
}
