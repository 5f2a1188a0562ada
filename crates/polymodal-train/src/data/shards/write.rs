//! Writing a manifest's samples as tar shards.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use polymodal_core::{Error, Modality, Result};

use super::index::modality_of_extension;
use crate::manifest::{LabelNames, ManifestEntry};

/// The shards [`write_shards`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenShards {
    /// The shard files, in order.
    pub shards: Vec<PathBuf>,
    /// The brace pattern that names them all (`DIR/PREFIX-{000000..000009}.tar`).
    pub pattern: String,
    /// Samples written.
    pub samples: usize,
}

/// Writes `entries` into `dir` as WebDataset shards of `per_shard` samples
/// each (the last may hold fewer), named `PREFIX-000000.tar`, ... Sample `i`
/// is the members `KEY.json` (`id` and `label` or `labels`), `KEY.txt`
/// (its text) and `KEY.EXT` for its image, audio and video (the file's own
/// extension), `KEY` being `i` zero-padded to nine digits. The members carry
/// no time or owner, so the same entries give the same bytes. Each shard is
/// written under a temporary name and renamed when complete.
pub fn write_shards(
    entries: &[ManifestEntry],
    dir: &Path,
    prefix: &str,
    per_shard: usize,
) -> Result<WrittenShards> {
    if per_shard == 0 {
        return Err(Error::Config("samples per shard must be at least 1".into()));
    }
    if entries.is_empty() {
        return Err(Error::Config("no samples to write".into()));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut shards = Vec::new();
    for (number, chunk) in entries.chunks(per_shard).enumerate() {
        let path = dir.join(format!("{prefix}-{number:06}.tar"));
        let partial = path.with_extension("tar.partial");
        write_one(&partial, chunk, number * per_shard)?;
        std::fs::rename(&partial, &path).map_err(|e| Error::io(&path, e))?;
        shards.push(path);
    }
    let pattern = match shards.len() {
        1 => shards[0].display().to_string(),
        n => dir
            .join(format!("{prefix}-{{{:06}..{:06}}}.tar", 0, n - 1))
            .display()
            .to_string(),
    };
    Ok(WrittenShards {
        shards,
        pattern,
        samples: entries.len(),
    })
}

/// One shard holding `entries`, keyed from `first`.
fn write_one(path: &Path, entries: &[ManifestEntry], first: usize) -> Result<()> {
    let io = |e: std::io::Error| Error::io(path, e);
    let file = File::create(path).map_err(io)?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    for (i, entry) in entries.iter().enumerate() {
        let key = format!("{:09}", first + i);
        let mut json = serde_json::json!({ "id": entry.id });
        match &entry.label {
            LabelNames::Single(name) => json["label"] = name.clone().into(),
            LabelNames::Multi(names) => json["labels"] = names.clone().into(),
        }
        append(
            &mut tar,
            &format!("{key}.json"),
            json.to_string().as_bytes(),
        )
        .map_err(io)?;
        for modality in Modality::ALL {
            let Some(file) = entry.path(modality) else {
                continue;
            };
            let extension = member_extension(modality, file)?;
            let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
            append(&mut tar, &format!("{key}.{extension}"), &bytes).map_err(io)?;
        }
    }
    let mut out = tar.into_inner().map_err(io)?;
    out.flush().map_err(io)?;
    out.get_ref().sync_all().map_err(io)
}

/// The extension a file of `modality` is stored under: `txt` for text, else
/// the file's own, which must name a format of that modality (the reader
/// tells modalities by extension).
fn member_extension(modality: Modality, file: &Path) -> Result<String> {
    if modality == Modality::Text {
        return Ok("txt".into());
    }
    let extension = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if modality_of_extension(&extension) != Some(modality) {
        return Err(Error::Config(format!(
            "{}: a shard tells a member's modality by its extension, and `.{extension}` is not \
             one of {modality}'s (rename the file to its format's usual extension)",
            file.display()
        )));
    }
    Ok(extension)
}

/// Appends a file member `name` holding `bytes`, with no time or owner.
fn append(tar: &mut tar::Builder<impl Write>, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, bytes)
}
