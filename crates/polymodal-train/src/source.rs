//! Where samples come from: decoded up front ([`Dataset`]) or decoded when a
//! batch needs them ([`LazyDataset`], optionally through an on-disk
//! [`FeatureCache`]); and batches prepared on a worker thread ahead of the
//! training loop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use sha2::{Digest, Sha256};

use polymodal_audio::MelSpectrogram;
use polymodal_core::{Error, Result};

use crate::features::{
    Dataset, Example, FeatureConfig, Label, decode_entry, label_of, parallel_map,
};
use crate::manifest::{ManifestEntry, class_names};

/// Batches decoded ahead of the one being trained on.
const PREFETCH: usize = 2;

/// A set of labelled samples the trainer can draw batches from.
pub trait Samples: Sync {
    /// Number of samples.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Class names; labels index into them.
    fn classes(&self) -> &[String];
    /// The label of every sample, in order.
    fn targets(&self) -> Vec<Label>;
    /// The class of every sample, in order ([`Label::stratum`] for
    /// multi-label samples).
    fn label_list(&self) -> Vec<usize> {
        self.targets().iter().map(Label::stratum).collect()
    }
    /// Whether the samples are multi-label.
    fn is_multi_label(&self) -> bool {
        self.targets().first().is_some_and(Label::is_multi)
    }
    /// The samples at `indices`, decoded.
    fn load(&self, indices: &[usize]) -> Result<Vec<Example>>;
}

impl Samples for Dataset {
    fn len(&self) -> usize {
        self.examples.len()
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn targets(&self) -> Vec<Label> {
        Dataset::targets(self)
    }

    fn load(&self, indices: &[usize]) -> Result<Vec<Example>> {
        Ok(indices.iter().map(|&i| self.examples[i].clone()).collect())
    }
}

/// Runs `body` over the decoded samples of each chunk, in order, while a
/// worker thread decodes the next chunks. When `body` returns (or stops at an
/// error) the worker stops too.
pub(crate) fn prefetched<S: Samples + ?Sized, R>(
    data: &S,
    chunks: Vec<Vec<usize>>,
    body: impl FnOnce(&mut dyn Iterator<Item = Result<Vec<Example>>>) -> Result<R>,
) -> Result<R> {
    std::thread::scope(|scope| {
        let (sender, receiver) = sync_channel(PREFETCH);
        scope.spawn(move || {
            for chunk in chunks {
                // A closed channel means the consumer stopped: stop too.
                if sender.send(data.load(&chunk)).is_err() {
                    break;
                }
            }
        });
        body(&mut receiver.into_iter())
    })
}

/// A manifest whose media are decoded when a batch needs them, on all
/// cores, through an optional [`FeatureCache`]. Memory stays at a few
/// batches however large the dataset.
pub struct LazyDataset {
    entries: Vec<ManifestEntry>,
    config: FeatureConfig,
    classes: Vec<String>,
    labels: Vec<Label>,
    mel: MelSpectrogram,
    cache: Option<FeatureCache>,
}

impl LazyDataset {
    /// A lazy dataset over `entries`; labels are checked now (`classes`:
    /// the list to index into, `None` for the sorted labels of `entries`).
    pub fn new(
        entries: Vec<ManifestEntry>,
        config: FeatureConfig,
        classes: Option<&[String]>,
        cache: Option<FeatureCache>,
    ) -> Result<Self> {
        let classes = classes.map_or_else(|| class_names(&entries), <[String]>::to_vec);
        let labels = entries
            .iter()
            .map(|e| label_of(e, &classes))
            .collect::<Result<_>>()?;
        let mel = MelSpectrogram::new(config.audio.mel.clone())?;
        Ok(Self {
            entries,
            config,
            classes,
            labels,
            mel,
            cache,
        })
    }

    /// Decodes every sample into memory.
    pub fn decode_all(&self) -> Result<Dataset> {
        let all: Vec<usize> = (0..self.entries.len()).collect();
        Ok(Dataset {
            examples: self.load(&all)?,
            classes: self.classes.clone(),
        })
    }
}

impl Samples for LazyDataset {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn targets(&self) -> Vec<Label> {
        self.labels.clone()
    }

    fn load(&self, indices: &[usize]) -> Result<Vec<Example>> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.entries.len()) {
            return Err(Error::Invalid(format!(
                "sample {bad} of a dataset of {}",
                self.entries.len()
            )));
        }
        parallel_map(indices, |&i| {
            decode_entry(
                &self.entries[i],
                &self.config,
                &self.mel,
                &self.classes,
                self.cache.as_ref(),
            )
        })
    }
}

/// Decoded features on disk, keyed by the SHA-256 of the media file's bytes,
/// the modality and the preprocessing settings: editing a file or changing
/// a setting makes a new entry, so a stale feature is never served. Entries
/// are written atomically; an unreadable entry is recomputed.
#[derive(Debug, Clone)]
pub struct FeatureCache {
    dir: PathBuf,
}

impl FeatureCache {
    /// A cache in `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Self { dir })
    }

    /// The features of `file` for `modality` under `settings` (any stable
    /// text, e.g. the settings as JSON): from the cache, or computed and stored.
    pub fn get_or_compute(
        &self,
        file: &Path,
        modality: &str,
        settings: &str,
        compute: impl FnOnce() -> Result<Vec<f32>>,
    ) -> Result<Vec<f32>> {
        let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
        let mut hasher = Sha256::new();
        for part in [settings.as_bytes(), modality.as_bytes(), &bytes] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        let key: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let path = self.dir.join(&key[..2]).join(format!("{key}.f32"));
        if let Ok(stored) = std::fs::read(&path)
            && stored.len() % 4 == 0
            && !stored.is_empty()
        {
            return Ok(stored
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect());
        }
        let values = compute()?;
        self.store(&path, &values)?;
        Ok(values)
    }

    fn store(&self, path: &Path, values: &[f32]) -> Result<()> {
        let parent = path.parent().expect("a file in a shard folder");
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        // A unique temporary name: several workers may store the same entry.
        let tmp = path.with_extension(format!("{:?}.partial", std::thread::current().id()));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| Error::io(path, e))
    }
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
                .get_or_compute(&file, "image", settings, compute)
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
        // A damaged entry is recomputed, not served.
        for shard in std::fs::read_dir(dir.join("cache")).unwrap() {
            for entry in std::fs::read_dir(shard.unwrap().path()).unwrap() {
                std::fs::write(entry.unwrap().path(), b"xyz").unwrap();
            }
        }
        assert_eq!(get("s1"), vec![1.5, -2.0]);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn prefetching_keeps_order_and_stops_at_the_first_error() {
        let data = Dataset {
            examples: (0..10)
                .map(|i| Example {
                    id: i.to_string(),
                    features: Default::default(),
                    label: Label::Single(0),
                })
                .collect(),
            classes: vec!["x".into()],
        };
        let chunks: Vec<Vec<usize>> = (0..10).map(|i| vec![9 - i]).collect();
        let seen = prefetched(&data, chunks.clone(), |batches| {
            batches
                .map(|b| b.map(|e| e[0].id.clone()))
                .collect::<Result<Vec<_>>>()
        })
        .unwrap();
        assert_eq!(
            seen,
            (0..10).rev().map(|i| i.to_string()).collect::<Vec<_>>()
        );
        let mut count = 0;
        let result: Result<()> = prefetched(&data, chunks, |batches| {
            for (index, batch) in batches.enumerate() {
                batch?;
                count += 1;
                if index == 3 {
                    return Err(Error::Invalid("stop".into()));
                }
            }
            Ok(())
        });
        assert!(result.is_err());
        assert_eq!(count, 4);
    }
}
