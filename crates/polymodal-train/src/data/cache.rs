//! The on-disk feature cache ([`FeatureCache`]) and its entry format.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use polymodal_core::{Error, Result};

use crate::data::features::Media;

/// Decoded features on disk, keyed by the SHA-256 of the media file's bytes,
/// the modality and the preprocessing settings: editing a file or changing
/// a setting makes a new entry, so a stale feature is never served.
///
/// Each entry is a header (magic, format version, shape, SHA-256 of the
/// values) followed by the values as little-endian f32. An entry is served
/// only when all of it checks out; anything else (a torn or damaged file,
/// another shape, another format version) is recomputed and rewritten.
/// Entries are written to a temporary name and renamed, so a reader never
/// sees half an entry.
#[derive(Debug, Clone)]
pub struct FeatureCache {
    dir: PathBuf,
}

/// The first bytes of every entry.
const CACHE_MAGIC: &[u8; 4] = b"PMFC";
/// Bumped whenever the entry layout changes: older entries are recomputed.
const CACHE_VERSION: u32 = 1;

impl FeatureCache {
    /// A cache in `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Self { dir })
    }

    /// The features of `file` for `modality` under `settings` (any stable
    /// text, e.g. the settings as JSON), of the given `shape`: from the
    /// cache, or computed and stored. `compute` must return exactly the
    /// values of `shape`.
    pub fn get_or_compute(
        &self,
        file: &Path,
        modality: &str,
        settings: &str,
        shape: &[usize],
        compute: impl FnOnce() -> Result<Vec<f32>>,
    ) -> Result<Vec<f32>> {
        self.get_or_compute_media(Media::File(file), modality, settings, shape, compute)
    }

    /// [`Self::get_or_compute`] for a file or a shard's member.
    pub(crate) fn get_or_compute_media(
        &self,
        media: Media,
        modality: &str,
        settings: &str,
        shape: &[usize],
        compute: impl FnOnce() -> Result<Vec<f32>>,
    ) -> Result<Vec<f32>> {
        let key = Self::key(&[settings.as_bytes(), modality.as_bytes(), &media.bytes()?]);
        if let Some((stored, values)) = self.get(&key)
            && stored == shape
        {
            return Ok(values);
        }
        let values = compute()?;
        let expected: usize = shape.iter().product();
        if values.len() != expected {
            return Err(Error::Invalid(format!(
                "{}: {} {modality} feature values, the shape {shape:?} holds {expected}",
                media.name().display(),
                values.len()
            )));
        }
        self.put(&key, shape, &values)?;
        Ok(values)
    }

    /// The key of an entry made from `parts` (each length-prefixed, so no
    /// two lists of parts share a key).
    pub fn key(parts: &[&[u8]]) -> String {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        hex(&hasher.finalize())
    }

    /// The shape and values stored under `key`, when the entry checks out
    /// (see [`FeatureCache`]); `None` for a missing or damaged entry.
    pub fn get(&self, key: &str) -> Option<(Vec<usize>, Vec<f32>)> {
        std::fs::read(self.path(key))
            .ok()
            .and_then(|stored| decode_entry_bytes(&stored))
    }

    /// Stores `values` of `shape` under `key` (atomically).
    pub fn put(&self, key: &str, shape: &[usize], values: &[f32]) -> Result<()> {
        self.store(&self.path(key), &encode_entry(shape, values))
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir
            .join(key.get(..2).unwrap_or("00"))
            .join(format!("{key}.f32"))
    }

    fn store(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let parent = path.parent().expect("a file in a shard folder");
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        // A unique temporary name: several workers may store the same entry.
        let tmp = path.with_extension(format!("{:?}.partial", std::thread::current().id()));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| Error::io(path, e))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A cache entry: magic, version, rank, dimensions, SHA-256 of the values,
/// values (all little-endian).
fn encode_entry(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let payload: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = Vec::with_capacity(48 + 8 * shape.len() + payload.len());
    out.extend_from_slice(CACHE_MAGIC);
    out.extend_from_slice(&CACHE_VERSION.to_le_bytes());
    out.extend_from_slice(&(shape.len() as u32).to_le_bytes());
    for &d in shape {
        out.extend_from_slice(&(d as u64).to_le_bytes());
    }
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    out
}

/// The shape and values of an entry, when every part of it checks out (the
/// values fill the shape, the checksum matches); `None` for anything else.
fn decode_entry_bytes(bytes: &[u8]) -> Option<(Vec<usize>, Vec<f32>)> {
    let mut rest = bytes;
    let mut take = |n: usize| {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let u32_at = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
    if take(4)? != CACHE_MAGIC || u32_at(take(4)?) != CACHE_VERSION {
        return None;
    }
    let rank = u32_at(take(4)?) as usize;
    if rank > 8 {
        return None;
    }
    let mut shape = Vec::with_capacity(rank);
    for _ in 0..rank {
        let d = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
        shape.push(usize::try_from(d).ok()?);
    }
    let checksum = take(32)?.to_vec();
    let expected = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))?
        .checked_mul(4)?;
    let payload = take(expected)?;
    if !rest.is_empty() || Sha256::digest(payload).as_slice() != checksum.as_slice() {
        return None;
    }
    let values = payload
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some((shape, values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn the_cache_serves_stored_features_and_misses_on_any_change() {
        let dir = std::env::temp_dir().join(format!("polymodal-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = FeatureCache::new(dir.join("cache")).unwrap();
        let file = dir.join("a.bin");
        std::fs::write(&file, b"media").unwrap();
        let calls = AtomicUsize::new(0);
        let compute = || {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(vec![1.5, -2.0])
        };
        let get = |settings: &str| {
            cache
                .get_or_compute(&file, "image", settings, &[2], compute)
                .unwrap()
        };
        assert_eq!(get("s1"), vec![1.5, -2.0]);
        assert_eq!(get("s1"), vec![1.5, -2.0]);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the second read is a hit");
        get("s2");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "other settings miss");
        std::fs::write(&file, b"edited").unwrap();
        get("s1");
        assert_eq!(calls.load(Ordering::SeqCst), 3, "an edited file misses");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The files of every entry in `dir`.
    fn entries(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .flat_map(|shard| std::fs::read_dir(shard.unwrap().path()).unwrap())
            .map(|entry| entry.unwrap().path())
            .collect()
    }

    /// Every kind of damage an entry can suffer, each of a length that the
    /// old cache (any non-empty multiple of 4 bytes) served as features.
    #[test]
    fn damaged_entries_are_recomputed_never_served() {
        let dir = std::env::temp_dir().join(format!("polymodal-cache-dmg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = FeatureCache::new(dir.join("cache")).unwrap();
        let file = dir.join("a.bin");
        std::fs::write(&file, b"media").unwrap();
        let truth = vec![0.25f32, -1.0, 3.5, 8.0, 0.0, -0.5];
        let calls = AtomicUsize::new(0);
        let get = |shape: &[usize]| {
            cache
                .get_or_compute(&file, "audio", "s", shape, || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok(truth.clone())
                })
                .unwrap()
        };
        assert_eq!(get(&[2, 3]), truth);
        let [path] = entries(&dir.join("cache")).try_into().unwrap();
        let good = std::fs::read(&path).unwrap();
        assert_eq!(good.len() % 4, 0);
        let flip = |at: usize| {
            let mut b = good.clone();
            b[at] ^= 0x40;
            b
        };
        let header = good.len() - 4 * truth.len();
        let damages: Vec<(&str, Vec<u8>)> = vec![
            ("a value flipped", flip(good.len() - 5)),
            ("the checksum flipped", flip(header - 1)),
            ("a dimension changed", flip(12)),
            ("another format version", flip(4)),
            ("another magic", flip(0)),
            ("cut by one value", good[..good.len() - 4].to_vec()),
            ("one value too many", [&good[..], &[0u8; 4]].concat()),
            ("the old headerless layout", good[header..].to_vec()),
            ("zeros", vec![0u8; good.len()]),
        ];
        for (n, (what, bytes)) in damages.into_iter().enumerate() {
            assert_eq!(bytes.len() % 4, 0, "{what}");
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(get(&[2, 3]), truth, "{what}");
            assert_eq!(calls.load(Ordering::SeqCst), n + 2, "{what}: recomputed");
            assert_eq!(std::fs::read(&path).unwrap(), good, "{what}: rewritten");
        }
        // An intact entry asked for with another shape is recomputed too.
        assert_eq!(get(&[3, 2]), truth);
        assert_eq!(decode_entry_bytes(&good), Some((vec![2, 3], truth.clone())));
        // A computation that disagrees with the shape is an error naming the file.
        let error = cache
            .get_or_compute(&file, "audio", "other", &[4], || Ok(vec![1.0]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("a.bin") && error.contains("[4]"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
