//! An experiment's data: the `[data]` and `[text]` tables of a TOML
//! experiment, and the train / validation / test sets they describe.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use polymodal_core::{Error, Modality, Result};
use polymodal_text::TextTokenizer;

use super::shards::{ShardDataset, StreamConfig, is_shard_path};
use super::{FeatureCache, FeatureConfig, LazyDataset, Samples};
use crate::avmnist::{avmnist_features, load_avmnist};
use crate::manifest::{ManifestEntry, class_names, read_manifest};
use crate::split::stratified_holdout;

/// The seed of the validation hold-out: the same samples every run.
const HOLDOUT_SEED: u64 = 2026;

/// Where an experiment's samples are (the `[data]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Training samples: a manifest (JSONL or CSV), or tar shards (a
    /// `.tar` file or a brace pattern of them, `train-{000..015}.tar`).
    pub train: Option<PathBuf>,
    /// Validation samples (manifest or shards); without them
    /// `valid_fraction` of the training set (stratified by class, fixed
    /// seed) is held out.
    pub valid: Option<PathBuf>,
    /// Test samples (manifest or shards), evaluated after training.
    pub test: Option<PathBuf>,
    /// Instead of manifests: the AV-MNIST folder (`shared/data/avmnist`);
    /// its official test split is the test set.
    pub avmnist: Option<PathBuf>,
    /// Share of the training set held out for validation.
    #[serde(default = "default_valid_fraction")]
    pub valid_fraction: f64,
    /// Decode media batch by batch while training (memory stays at a few
    /// batches) instead of all at once before training.
    #[serde(default)]
    pub lazy: bool,
    /// A folder for decoded features (keyed by file content and feature
    /// settings): later runs skip decoding.
    pub cache: Option<PathBuf>,
    /// Training shards are read shard by shard through a shuffle buffer of
    /// this many samples (shards are always decoded batch by batch).
    #[serde(default = "default_shuffle_buffer")]
    pub shuffle_buffer: usize,
}

fn default_valid_fraction() -> f64 {
    0.1
}

fn default_shuffle_buffer() -> usize {
    StreamConfig::default().shuffle_buffer
}

impl DataConfig {
    /// Checks that the table names one source and a usable hold-out.
    pub fn validate(&self) -> Result<()> {
        if self.train.is_some() == self.avmnist.is_some() {
            return Err(Error::Config(
                "[data] needs exactly one of `train` (a manifest) or `avmnist` (a folder)".into(),
            ));
        }
        if self.avmnist.is_some()
            && (self.valid.is_some() || self.test.is_some() || self.lazy || self.cache.is_some())
        {
            return Err(Error::Config(
                "[data] `avmnist` brings its own splits and decoding: drop `valid`, `test`, `lazy` and `cache`".into(),
            ));
        }
        if !(self.valid_fraction > 0.0 && self.valid_fraction < 1.0) {
            return Err(Error::Config(
                "[data] valid_fraction must be in (0, 1)".into(),
            ));
        }
        Ok(())
    }

    /// The paths the table names, to make them relative to the config file.
    pub fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        [
            &mut self.train,
            &mut self.valid,
            &mut self.test,
            &mut self.avmnist,
            &mut self.cache,
        ]
        .into_iter()
        .flatten()
    }

    /// The feature settings when an experiment gives none: AV-MNIST's for
    /// AV-MNIST, else [`FeatureConfig::default`].
    pub fn default_features(&self) -> FeatureConfig {
        if self.avmnist.is_some() {
            avmnist_features()
        } else {
            FeatureConfig::default()
        }
    }

    /// Reads the manifests and decodes the data (all at once, or batch by
    /// batch with `lazy`). With `used`, media of the other modalities are
    /// not decoded.
    pub fn load(&self, features: &FeatureConfig, used: Option<&[Modality]>) -> Result<Splits> {
        if let Some(dir) = &self.avmnist {
            return self.load_avmnist(dir, features);
        }
        let train = self.train.as_ref().ok_or_else(|| {
            Error::Config("[data] needs `train` (a manifest) or `avmnist`".into())
        })?;
        if is_shard_path(train) {
            return self.load_shards(train, features, used);
        }
        let train = read_manifest(train)?;
        let classes = class_names(&train);
        let (mut train, mut valid) = match &self.valid {
            Some(path) => (train, read_manifest(path)?),
            None => self.hold_out(train, &classes)?,
        };
        let mut test = self.test.as_ref().map(read_manifest).transpose()?;
        if let Some(used) = used {
            let entries = train
                .iter_mut()
                .chain(&mut valid)
                .chain(test.iter_mut().flatten());
            entries.for_each(|entry| keep_only(entry, used));
        }
        let modalities = Modality::ALL
            .into_iter()
            .filter(|&m| train.iter().any(|e| e.path(m).is_some()))
            .collect();
        let texts = train
            .iter()
            .filter_map(|e| e.text.as_ref())
            .map(|p| std::fs::read_to_string(p).map_err(|e| Error::io(p, e)))
            .collect::<Result<_>>()?;
        let cache = self.cache.as_ref().map(FeatureCache::new).transpose()?;
        let source = |entries: Vec<ManifestEntry>| -> Result<Box<dyn Samples>> {
            let lazy = LazyDataset::new(entries, features.clone(), Some(&classes), cache.clone())?;
            Ok(if self.lazy {
                Box::new(lazy)
            } else {
                Box::new(lazy.decode_all()?)
            })
        };
        Ok(Splits {
            train: source(train)?,
            valid: source(valid)?,
            test: test.map(source).transpose()?,
            modalities,
            texts,
        })
    }

    /// Training samples from shards; validation and test from shards or
    /// manifests.
    fn load_shards(
        &self,
        train: &Path,
        features: &FeatureConfig,
        used: Option<&[Modality]>,
    ) -> Result<Splits> {
        let cache = self.cache.as_ref().map(FeatureCache::new).transpose()?;
        let stream = StreamConfig {
            shuffle_buffer: self.shuffle_buffer,
            ..StreamConfig::default()
        };
        let open = |path: &Path, classes: Option<&[String]>| -> Result<ShardDataset> {
            let mut data =
                ShardDataset::open_pattern(&path.to_string_lossy(), features.clone(), classes)?
                    .with_stream(stream.clone())?;
            if let Some(cache) = &cache {
                data = data.with_cache(cache.clone());
            }
            Ok(match used {
                Some(used) => data.keeping(used),
                None => data,
            })
        };
        let all = open(train, None)?;
        let classes = all.classes().to_vec();
        let modalities = all.modalities();
        let source = |path: &PathBuf| -> Result<Box<dyn Samples>> {
            if is_shard_path(path) {
                return Ok(Box::new(open(path, Some(&classes))?));
            }
            let mut entries = read_manifest(path)?;
            if let Some(used) = used {
                entries.iter_mut().for_each(|e| keep_only(e, used));
            }
            let lazy = LazyDataset::new(entries, features.clone(), Some(&classes), cache.clone())?;
            Ok(Box::new(lazy))
        };
        let (train, valid): (ShardDataset, Box<dyn Samples>) = match &self.valid {
            Some(path) => (all, source(path)?),
            None => {
                let (kept, held) =
                    stratified_holdout(&all.label_list(), self.valid_fraction, HOLDOUT_SEED)?;
                (all.subset(&kept)?, Box::new(all.subset(&held)?))
            }
        };
        // For a tokenizer trained on the training texts, as with manifests.
        let texts = if modalities.contains(&Modality::Text) {
            train.texts()?
        } else {
            Vec::new()
        };
        Ok(Splits {
            texts,
            train: Box::new(train),
            valid,
            test: self.test.as_ref().map(source).transpose()?,
            modalities,
        })
    }

    fn load_avmnist(&self, dir: &std::path::Path, features: &FeatureConfig) -> Result<Splits> {
        let av = load_avmnist(dir, features)?;
        let (kept, held) =
            stratified_holdout(&av.train.labels(), self.valid_fraction, HOLDOUT_SEED)?;
        Ok(Splits {
            modalities: av.train.modalities(),
            train: Box::new(av.train.subset(&kept)),
            valid: Box::new(av.train.subset(&held)),
            test: Some(Box::new(av.test)),
            texts: Vec::new(),
        })
    }

    /// Splits `valid_fraction` off the training entries, stratified by the
    /// (first) class; a sample of no class is its own stratum.
    fn hold_out(
        &self,
        train: Vec<ManifestEntry>,
        classes: &[String],
    ) -> Result<(Vec<ManifestEntry>, Vec<ManifestEntry>)> {
        let labels: Vec<usize> = train
            .iter()
            .map(|e| {
                e.label
                    .names()
                    .first()
                    .and_then(|name| classes.iter().position(|c| c == name))
                    .unwrap_or(classes.len())
            })
            .collect();
        let (kept, held) = stratified_holdout(&labels, self.valid_fraction, HOLDOUT_SEED)?;
        let pick = |indices: &[usize]| indices.iter().map(|&i| train[i].clone()).collect();
        Ok((pick(&kept), pick(&held)))
    }
}

/// Drops the media of the modalities a model does not read, so that they
/// are never decoded.
fn keep_only(entry: &mut ManifestEntry, used: &[Modality]) {
    for m in Modality::ALL.into_iter().filter(|m| !used.contains(m)) {
        match m {
            Modality::Text => entry.text = None,
            Modality::Image => entry.image = None,
            Modality::Audio => entry.audio = None,
            Modality::Video => entry.video = None,
        }
    }
}

/// The datasets of an experiment.
pub struct Splits {
    /// Training samples.
    pub train: Box<dyn Samples>,
    /// Validation samples.
    pub valid: Box<dyn Samples>,
    /// Test samples, if any.
    pub test: Option<Box<dyn Samples>>,
    /// The modalities at least one training sample has.
    pub modalities: BTreeSet<Modality>,
    /// The training texts (for training a tokenizer).
    pub texts: Vec<String>,
}

/// Tokenisation for models that read text (the `[text]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextConfig {
    /// A `tokenizer.json`; without one a WordPiece vocabulary is trained on
    /// the training texts.
    pub tokenizer: Option<PathBuf>,
    /// Vocabulary size of a trained tokenizer.
    pub vocab_size: usize,
    /// Longest token sequence.
    pub max_tokens: usize,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            tokenizer: None,
            vocab_size: 2000,
            max_tokens: 64,
        }
    }
}

impl TextConfig {
    /// The tokenizer of `tokenizer`, or a WordPiece vocabulary trained on
    /// `texts`.
    pub fn tokenizer(&self, texts: &[String]) -> Result<TextTokenizer> {
        match &self.tokenizer {
            Some(path) => TextTokenizer::from_file(path, self.max_tokens),
            None => TextTokenizer::train_wordpiece(texts.iter(), self.vocab_size, self.max_tokens),
        }
    }
}
