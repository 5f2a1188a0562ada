//! Reading one shard: its samples (the members that share a key) and a
//! member's bytes.
//!
//! The layout is WebDataset's: a POSIX tar whose members are named
//! `KEY.EXT`, the key being the name up to the first dot of its last path
//! component, the members of one sample next to each other. A member's
//! modality is told by the last part of its extension; `cls` is the class
//! name as text, `json` an object whose `label` or `labels` (and `id`) are
//! read as a manifest line's; other members are left out.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use polymodal_core::{Error, Modality, Result};

use crate::manifest::{LabelNames, label_names};

/// The largest `cls` or `json` member read (they hold a label).
const MAX_LABEL_BYTES: u64 = 1 << 20;

/// Where one file of a sample lies in its shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's extension (`jpg`, `image.png`, `wav`, ...).
    pub extension: String,
    /// Byte offset of its content in the shard.
    pub offset: u64,
    /// Length of its content.
    pub size: u64,
}

/// One sample of a shard: its name, label and media.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardSample {
    /// The `id` of its `json` member, else its key.
    pub id: String,
    /// The key its members share.
    pub key: String,
    /// Class name(s); `None` for an unlabelled sample (an image-text pair
    /// to embed, say: a dataset to train on requires one).
    pub label: Option<LabelNames>,
    /// Each modality's member.
    pub media: BTreeMap<Modality, Member>,
}

/// What a member holds, by the last part of its extension.
enum Kind {
    Media(Modality),
    Class,
    Json,
    Other,
}

/// The modality a file of extension `extension` (its last part, any case)
/// holds: the formats polymodal decodes.
pub fn modality_of_extension(extension: &str) -> Option<Modality> {
    let last = extension.rsplit('.').next()?.to_ascii_lowercase();
    Some(match last.as_str() {
        "txt" => Modality::Text,
        "jpg" | "jpeg" | "png" | "webp" | "gif" | "bmp" | "tif" | "tiff" => Modality::Image,
        "wav" | "flac" | "mp3" | "ogg" | "oga" | "m4a" | "aac" => Modality::Audio,
        "mp4" | "m4v" | "mov" | "mkv" | "webm" | "avi" => Modality::Video,
        _ => return None,
    })
}

fn kind(extension: &str) -> Kind {
    if let Some(m) = modality_of_extension(extension) {
        return Kind::Media(m);
    }
    match extension
        .rsplit('.')
        .next()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("cls") => Kind::Class,
        Some("json") => Kind::Json,
        _ => Kind::Other,
    }
}

/// `name` split into its sample key and extension (`a/b.c.d` → `a/b`,
/// `c.d`); `None` for a name without one.
fn split_key(name: &str) -> Option<(&str, &str)> {
    let start = name.rfind('/').map_or(0, |i| i + 1);
    let dot = name[start..].find('.')? + start;
    (dot > start && dot + 1 < name.len()).then(|| (&name[..dot], &name[dot + 1..]))
}

/// The `json` member's fields polymodal reads.
#[derive(Deserialize)]
struct SampleJson {
    id: Option<serde_json::Value>,
    label: Option<serde_json::Value>,
    labels: Option<Vec<serde_json::Value>>,
}

/// A sample whose members are still being read.
struct Pending {
    key: String,
    id: Option<String>,
    class: Option<String>,
    json_label: Option<LabelNames>,
    media: BTreeMap<Modality, Member>,
}

impl Pending {
    fn new(key: &str) -> Self {
        Self {
            key: key.to_string(),
            id: None,
            class: None,
            json_label: None,
            media: BTreeMap::new(),
        }
    }

    fn finish(self, shard: &Path) -> Result<ShardSample> {
        let at = || format!("{}: sample `{}`", shard.display(), self.key);
        let label = match (self.class, self.json_label) {
            (Some(class), None) => Some(LabelNames::Single(class)),
            (None, label) => label,
            (Some(class), Some(label)) if label == LabelNames::Single(class.clone()) => Some(label),
            (Some(class), Some(label)) => {
                return Err(Error::Config(format!(
                    "{}: its `cls` ({class}) and `json` ({label}) disagree",
                    at()
                )));
            }
        };
        if self.media.is_empty() {
            return Err(Error::Config(format!(
                "{}: no media (text `txt`, an image, audio or video member)",
                at()
            )));
        }
        Ok(ShardSample {
            id: self.id.unwrap_or_else(|| self.key.clone()),
            key: self.key,
            label,
            media: self.media,
        })
    }
}

/// The samples of the shard `path`, in order. A shard that is not a tar, is
/// cut short, repeats a key, gives a sample two members of one modality or
/// none, or two labels that disagree, is an error naming it.
pub fn read_shard(path: &Path) -> Result<Vec<ShardSample>> {
    let bad = |reason: String| Error::decode(path, "shard", reason);
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let length = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut archive = tar::Archive::new(file);
    let entries = archive
        .entries_with_seek()
        .map_err(|e| bad(format!("not a tar archive ({e})")))?;
    let mut samples = Vec::new();
    let mut keys = HashSet::new();
    let mut pending: Option<Pending> = None;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("damaged tar ({e})")))?;
        let kind_of_entry = entry.header().entry_type();
        if kind_of_entry.is_dir() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| bad(format!("a member name is not a path ({e})")))?
            .to_string_lossy()
            .into_owned();
        if !kind_of_entry.is_file() {
            return Err(bad(format!("member `{name}` is not a regular file")));
        }
        let Some((key, extension)) = split_key(&name) else {
            continue;
        };
        let (offset, size) = (entry.raw_file_position(), entry.size());
        if offset.checked_add(size).is_none_or(|end| end > length) {
            return Err(bad(format!(
                "member `{name}` claims {size} bytes at offset {offset}, the file holds {length}"
            )));
        }
        if pending.as_ref().is_none_or(|p| p.key != key) {
            if let Some(done) = pending.take() {
                samples.push(done.finish(path)?);
            }
            if !keys.insert(key.to_string()) {
                return Err(bad(format!(
                    "sample `{key}` appears twice (a sample's members must be next to each other)"
                )));
            }
            pending = Some(Pending::new(key));
        }
        let sample = pending.as_mut().expect("set above");
        match kind(extension) {
            Kind::Media(modality) => {
                let member = Member {
                    extension: extension.to_string(),
                    offset,
                    size,
                };
                if let Some(first) = sample.media.insert(modality, member) {
                    return Err(bad(format!(
                        "sample `{key}` has two {modality} members (`{}` and `{extension}`)",
                        first.extension
                    )));
                }
            }
            Kind::Class => {
                let text =
                    small_text(&mut entry, size).map_err(|why| bad(format!("`{name}`: {why}")))?;
                let class = text.trim();
                if class.is_empty() {
                    return Err(bad(format!("`{name}` is empty")));
                }
                sample.class = Some(class.to_string());
            }
            Kind::Json => {
                let text =
                    small_text(&mut entry, size).map_err(|why| bad(format!("`{name}`: {why}")))?;
                let json: SampleJson = serde_json::from_str(&text)
                    .map_err(|e| bad(format!("`{name}`: not a JSON object ({e})")))?;
                let at = || format!("{}: `{name}`", path.display());
                if json.label.is_some() || json.labels.is_some() {
                    sample.json_label = Some(label_names(json.label, json.labels, &at)?);
                }
                sample.id = json.id.map(|id| match id {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                });
            }
            Kind::Other => {}
        }
    }
    if let Some(done) = pending.take() {
        samples.push(done.finish(path)?);
    }
    check_end(archive.into_inner(), length).map_err(bad)?;
    Ok(samples)
}

/// Checks that the archive read up to `file`'s position ended with its
/// end-of-archive block (zeros) and that only zeros follow: a shard cut
/// at a member boundary, or whose reading stopped early at a zeroed
/// header, would otherwise lose its later samples without a word.
fn check_end(mut file: File, length: u64) -> std::result::Result<(), String> {
    let io = |e: std::io::Error| format!("unreadable ({e})");
    let end = file.stream_position().map_err(io)?;
    let block = 512;
    if end < block {
        return Err("not a tar archive (no end-of-archive block)".into());
    }
    file.seek(SeekFrom::Start(end - block)).map_err(io)?;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut at = end - block;
    loop {
        let n = file.read(&mut chunk).map_err(io)?;
        if n == 0 {
            break;
        }
        if let Some(i) = chunk[..n].iter().position(|&b| b != 0) {
            let offset = at + i as u64;
            return Err(if offset < end {
                format!(
                    "cut short: the file ends at byte {length} without the end-of-archive block"
                )
            } else {
                format!("data after the end of the archive at byte {offset} (a damaged header?)")
            });
        }
        at += n as u64;
    }
    Ok(())
}

/// A small member's content as UTF-8 text.
fn small_text(entry: &mut impl Read, size: u64) -> std::result::Result<String, String> {
    if size > MAX_LABEL_BYTES {
        return Err(format!(
            "{size} bytes, more than a label takes ({MAX_LABEL_BYTES})"
        ));
    }
    let mut text = String::new();
    entry
        .read_to_string(&mut text)
        .map_err(|e| format!("unreadable or not UTF-8 ({e})"))?;
    Ok(text)
}

/// The content of `member` of the shard `path` (its offset and size were
/// checked against the file's length when the shard was read).
pub fn read_member(path: &Path, member: &Member) -> Result<Vec<u8>> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let size = usize::try_from(member.size)
        .map_err(|_| Error::decode(path, "shard", "a member larger than memory"))?;
    let mut bytes = vec![0; size];
    file.seek(SeekFrom::Start(member.offset))
        .and_then(|_| file.read_exact(&mut bytes))
        .map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}

/// The name a member is given in errors: `SHARD.tar:KEY.EXT`.
pub fn member_name(shard: &Path, key: &str, member: &Member) -> PathBuf {
    PathBuf::from(format!("{}:{key}.{}", shard.display(), member.extension))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member's name and content.
    type Named<'a> = (&'a str, &'a [u8]);

    /// A shard of `members` in `dir`.
    fn shard(dir: &Path, name: &str, members: &[Named]) -> PathBuf {
        let path = dir.join(name);
        let mut tar = tar::Builder::new(File::create(&path).unwrap());
        for (member, bytes) in members {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            tar.append_data(&mut header, member, *bytes).unwrap();
        }
        tar.finish().unwrap();
        path
    }

    #[test]
    fn members_group_by_key_and_say_their_modality() {
        let dir =
            std::env::temp_dir().join(format!("polymodal-shard-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = shard(
            &dir,
            "ok.tar",
            &[
                ("a/x.1.cls", b"cat\n"),
                ("a/x.1.image.JPG", b"jpeg"),
                ("a/x.1.txt", b"a cat"),
                ("a/x.1.meta", b"skipped"),
                ("README", b"no key: skipped"),
                (
                    "y.json",
                    br#"{"id": 7, "labels": ["b", "a", "b"], "extra": 1}"#,
                ),
                ("y.flac", b"flac"),
            ],
        );
        let samples = read_shard(&path).unwrap();
        assert_eq!(samples.len(), 2);
        assert_eq!(
            (samples[0].key.as_str(), samples[0].id.as_str()),
            ("a/x", "a/x")
        );
        assert_eq!(samples[0].label, Some(LabelNames::Single("cat".into())));
        let image = &samples[0].media[&Modality::Image];
        assert_eq!(image.extension, "1.image.JPG");
        assert_eq!(read_member(&path, image).unwrap(), b"jpeg");
        assert!(samples[0].media.contains_key(&Modality::Text));
        assert_eq!(samples[1].id, "7");
        assert_eq!(
            samples[1].label,
            Some(LabelNames::Multi(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            samples[1].media.keys().collect::<Vec<_>>(),
            [&Modality::Audio]
        );

        let unlabelled = shard(&dir, "unlabelled.tar", &[("k.png", b"p"), ("k.txt", b"t")]);
        assert_eq!(read_shard(&unlabelled).unwrap()[0].label, None);
        let bad: [(&str, &[Named], &str); 5] = [
            (
                "twice.tar",
                &[
                    ("k.cls", b"a"),
                    ("k.png", b"p"),
                    ("j.cls", b"a"),
                    ("j.png", b"p"),
                    ("k.wav", b"w"),
                ],
                "appears twice",
            ),
            ("no-media.tar", &[("k.cls", b"a")], "no media"),
            (
                "two-images.tar",
                &[("k.cls", b"a"), ("k.png", b"p"), ("k.jpg", b"j")],
                "two image members",
            ),
            (
                "disagree.tar",
                &[
                    ("k.cls", b"a"),
                    ("k.json", br#"{"label": "b"}"#),
                    ("k.png", b"p"),
                ],
                "disagree",
            ),
            (
                "bad-json.tar",
                &[("k.json", b"{label"), ("k.png", b"p")],
                "not a JSON object",
            ),
        ];
        for (name, members, expected) in bad {
            let path = shard(&dir, name, members);
            let message = read_shard(&path).unwrap_err().to_string();
            assert!(
                message.contains(expected) && message.contains(name),
                "{message}"
            );
        }
        std::fs::write(dir.join("not.tar"), b"plain text, not a tar archive").unwrap();
        assert!(read_shard(&dir.join("not.tar")).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
