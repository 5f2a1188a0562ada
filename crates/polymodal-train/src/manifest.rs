//! Manifests: one sample per JSONL line or CSV row, media paths relative to
//! the manifest's folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use polymodal_core::{Error, Modality, Result};

/// The class names a manifest gives a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelNames {
    /// Single-label: exactly one class (`label`).
    Single(String),
    /// Multi-label: any number of classes, possibly none (`labels`).
    Multi(Vec<String>),
}

impl LabelNames {
    /// Every class name given.
    pub fn names(&self) -> &[String] {
        match self {
            LabelNames::Single(name) => std::slice::from_ref(name),
            LabelNames::Multi(names) => names,
        }
    }

    /// Whether this is a multi-label annotation.
    pub fn is_multi(&self) -> bool {
        matches!(self, LabelNames::Multi(_))
    }
}

impl std::fmt::Display for LabelNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LabelNames::Single(name) => write!(f, "{name}"),
            LabelNames::Multi(names) => write!(f, "[{}]", names.join(", ")),
        }
    }
}

/// One sample of a manifest, with paths resolved against the manifest's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Sample name (defaults to the line number).
    pub id: String,
    /// Class name (single-label) or names (multi-label).
    pub label: LabelNames,
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
    label: Option<serde_json::Value>,
    labels: Option<Vec<serde_json::Value>>,
    text: Option<PathBuf>,
    image: Option<PathBuf>,
    audio: Option<PathBuf>,
    video: Option<PathBuf>,
}

/// Reads a manifest: CSV when the file name ends in `.csv` (a header row
/// naming the columns `id`, `label`, `text`, `image`, `audio`, `video`; empty
/// cells are absent), JSONL otherwise (one object per line with the same
/// keys; `label` a string or a number). Errors name the manifest and the line.
///
/// A multi-label manifest has `labels` instead of `label`: a JSON array of
/// class names, or in CSV the names separated by `|` (an empty cell or `[]`
/// is a sample of no class). One manifest is either single- or multi-label.
pub fn read_manifest(path: impl AsRef<Path>) -> Result<Vec<ManifestEntry>> {
    let path = path.as_ref();
    let content = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let lines = if is_csv {
        csv_lines(path, &content)?
    } else {
        jsonl_lines(path, &content)?
    };
    let mut entries = Vec::with_capacity(lines.len());
    let multi = lines.first().is_some_and(|(_, row)| row.label.is_multi());
    for (number, line) in lines {
        let at = || format!("{}:{number}", path.display());
        let resolve = |p: Option<PathBuf>| p.map(|p| base.join(p));
        let entry = ManifestEntry {
            id: line.id.unwrap_or_else(|| format!("line{number}")),
            label: line.label,
            text: resolve(line.text),
            image: resolve(line.image),
            audio: resolve(line.audio),
            video: resolve(line.video),
        };
        if entry.label.is_multi() != multi {
            return Err(Error::Config(format!(
                "{}: the manifest mixes `label` (single-label) and `labels` (multi-label) samples",
                at()
            )));
        }
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

/// One sample as read, before paths are resolved.
struct Row {
    id: Option<String>,
    label: LabelNames,
    text: Option<PathBuf>,
    image: Option<PathBuf>,
    audio: Option<PathBuf>,
    video: Option<PathBuf>,
}

fn jsonl_lines(path: &Path, content: &str) -> Result<Vec<(usize, Row)>> {
    let mut rows = Vec::new();
    for (index, text) in content.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), index + 1);
        let line: Line =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("{}: {e}", at())))?;
        let label = label_names(line.label, line.labels, &at)?;
        rows.push((
            index + 1,
            Row {
                id: line.id,
                label,
                text: line.text,
                image: line.image,
                audio: line.audio,
                video: line.video,
            },
        ));
    }
    Ok(rows)
}

/// The class names of a JSON `label` (one class) or `labels` (a list):
/// exactly one of them, each a non-empty string or a number. `at` names
/// where they were read, for errors.
pub(crate) fn label_names(
    label: Option<serde_json::Value>,
    labels: Option<Vec<serde_json::Value>>,
    at: &dyn Fn() -> String,
) -> Result<LabelNames> {
    let name = |value: serde_json::Value| match value {
        serde_json::Value::String(s) if !s.is_empty() => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(Error::Config(format!(
            "{}: a class name must be a non-empty string or a number, got {other}",
            at()
        ))),
    };
    match (label, labels) {
        (Some(label), None) => Ok(LabelNames::Single(name(label)?)),
        (None, Some(labels)) => Ok(LabelNames::Multi(distinct(
            labels.into_iter().map(name).collect::<Result<_>>()?,
        ))),
        _ => Err(Error::Config(format!(
            "{}: give exactly one of `label` (one class) and `labels` (a list of classes)",
            at()
        ))),
    }
}

const COLUMNS: [&str; 7] = ["id", "label", "labels", "text", "image", "audio", "video"];

/// Sorted names without repeats.
fn distinct(names: Vec<String>) -> Vec<String> {
    names
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn csv_lines(path: &Path, content: &str) -> Result<Vec<(usize, Row)>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(content.as_bytes());
    let fail = |line: u64, e: &dyn std::fmt::Display| {
        Error::Config(format!("{}:{line}: {e}", path.display()))
    };
    let headers = reader.headers().map_err(|e| fail(1, &e))?.clone();
    if let Some(unknown) = headers.iter().find(|h| !COLUMNS.contains(h)) {
        return Err(fail(
            1,
            &format!(
                "unknown column `{unknown}` (expected {})",
                COLUMNS.join(", ")
            ),
        ));
    }
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (label_column, multi) = match (column("label"), column("labels")) {
        (Some(c), None) => (c, false),
        (None, Some(c)) => (c, true),
        _ => {
            return Err(fail(
                1,
                &"give exactly one of the columns `label` (one class) and `labels` (classes separated by `|`)",
            ));
        }
    };
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            fail(line, &e)
        })?;
        let line = record.position().map_or(0, |p| p.line()) as usize;
        let cell = |name: &str| {
            column(name)
                .and_then(|c| record.get(c))
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let cell_text = record.get(label_column).unwrap_or("");
        let label = if multi {
            let names = cell_text.trim_start_matches('[').trim_end_matches(']');
            LabelNames::Multi(distinct(
                names
                    .split('|')
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect(),
            ))
        } else if cell_text.is_empty() {
            return Err(fail(line as u64, &"empty label"));
        } else {
            LabelNames::Single(cell_text.to_string())
        };
        rows.push((
            line,
            Row {
                id: cell("id"),
                label,
                text: cell("text").map(PathBuf::from),
                image: cell("image").map(PathBuf::from),
                audio: cell("audio").map(PathBuf::from),
                video: cell("video").map(PathBuf::from),
            },
        ));
    }
    Ok(rows)
}

/// The sorted class names of a set of entries.
pub fn class_names(entries: &[ManifestEntry]) -> Vec<String> {
    entries
        .iter()
        .flat_map(|e| e.label.names().iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, content: &str) -> PathBuf {
        write_as(name, "m.jsonl", content)
    }

    fn write_as(name: &str, file: &str, content: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("polymodal-manifest-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(file);
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
        assert_eq!(entries[1].label, LabelNames::Single("3".into()));
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

    #[test]
    fn csv_manifests_read_like_jsonl() {
        let file = write_as(
            "csv",
            "m.csv",
            "label,image,audio,id\n a , img/1.png,,first\n3,,\"sounds/a b.wav\",\n",
        );
        let entries = read_manifest(&file).unwrap();
        let base = file.parent().unwrap();
        assert_eq!(entries[0].label, LabelNames::Single("a".into()));
        assert_eq!(entries[0].id, "first");
        assert_eq!(entries[0].audio, None);
        assert_eq!(entries[1].id, "line3");
        assert_eq!(
            entries[1].audio.as_deref(),
            Some(base.join("sounds/a b.wav").as_path())
        );
        let bad = write_as("csv-bad", "m.csv", "label,imgae\na,1.png\n");
        let message = read_manifest(&bad).unwrap_err().to_string();
        assert!(
            message.contains("m.csv:1") && message.contains("imgae"),
            "{message}"
        );
        let empty_label = write_as("csv-empty", "m.csv", "label,image\na,1.png\n,2.png\n");
        let message = read_manifest(&empty_label).unwrap_err().to_string();
        assert!(message.contains("m.csv:3"), "{message}");
    }

    #[test]
    fn multi_label_manifests_list_classes() {
        let file = write(
            "multi",
            "{\"labels\": [\"dog\", \"cat\", \"dog\"], \"image\": \"1.png\"}\n{\"labels\": [], \"audio\": \"a.wav\"}\n{\"labels\": [7], \"audio\": \"b.wav\"}\n",
        );
        let entries = read_manifest(&file).unwrap();
        assert_eq!(
            entries[0].label,
            LabelNames::Multi(vec!["cat".into(), "dog".into()])
        );
        assert_eq!(entries[1].label, LabelNames::Multi(vec![]));
        assert_eq!(class_names(&entries), vec!["7", "cat", "dog"]);
        let csv = write_as(
            "multi-csv",
            "m.csv",
            "labels,image\ncat|dog,1.png\n,2.png\n[bird],3.png\n",
        );
        let entries = read_manifest(&csv).unwrap();
        assert_eq!(
            entries[0].label,
            LabelNames::Multi(vec!["cat".into(), "dog".into()])
        );
        assert_eq!(entries[1].label, LabelNames::Multi(vec![]));
        assert_eq!(entries[2].label, LabelNames::Multi(vec!["bird".into()]));
        // Mixing the two kinds, or giving both keys, is an error naming the line.
        let mixed = write(
            "mixed",
            "{\"labels\": [\"a\"], \"image\": \"1.png\"}\n{\"label\": \"a\", \"image\": \"2.png\"}\n",
        );
        let message = read_manifest(&mixed).unwrap_err().to_string();
        assert!(
            message.contains("m.jsonl:2") && message.contains("mixes"),
            "{message}"
        );
        let both = write(
            "both",
            "{\"label\": \"a\", \"labels\": [\"a\"], \"image\": \"1.png\"}\n",
        );
        let message = read_manifest(&both).unwrap_err().to_string();
        assert!(message.contains("exactly one"), "{message}");
        let columns = write_as("both-csv", "m.csv", "label,labels,image\na,a,1.png\n");
        assert!(read_manifest(&columns).is_err());
    }
}
