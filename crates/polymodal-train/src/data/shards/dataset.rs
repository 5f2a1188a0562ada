//! [`ShardDataset`]: the samples of a list of shards, decoded when a batch
//! needs them, and [`ShardStream`], a resumable walk through them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use polymodal_audio::MelSpectrogram;
use polymodal_core::{Error, Modality, Result};

use super::index::{ShardSample, member_name, read_member, read_shard};
use super::pattern::expand_pattern;
use super::stream::{StreamConfig, StreamPosition, stream_order};
use crate::data::cache::FeatureCache;
use crate::data::dataset::{Example, Label, Samples};
use crate::data::features::{FeatureConfig, Media};
use crate::data::lazy::{SampleMedia, decode_media, label_of};
use crate::data::parallel::parallel_map;
use crate::manifest::LabelNames;

/// Samples read from tar shards: indexed when opened (member names, offsets
/// and labels: the headers and the small label members only), their media
/// read and decoded when a batch needs them, through an optional
/// [`FeatureCache`]. Memory stays at the index and a few batches however
/// many samples the shards hold.
pub struct ShardDataset {
    shards: Vec<PathBuf>,
    /// Every sample with the number of its shard, in shard order.
    samples: Vec<(usize, ShardSample)>,
    config: FeatureConfig,
    classes: Vec<String>,
    labels: Vec<Label>,
    mel: MelSpectrogram,
    cache: Option<FeatureCache>,
    stream: StreamConfig,
}

impl ShardDataset {
    /// The shards `pattern` names ([`super::expand_pattern`]).
    pub fn open_pattern(
        pattern: &str,
        config: FeatureConfig,
        classes: Option<&[String]>,
    ) -> Result<Self> {
        let shards: Vec<PathBuf> = expand_pattern(pattern)?
            .into_iter()
            .map(PathBuf::from)
            .collect();
        Self::open(&shards, config, classes)
    }

    /// The samples of `shards`; labels are checked now (`classes`: the list
    /// to index into, `None` for the sorted class names of the samples).
    pub fn open(
        shards: &[PathBuf],
        config: FeatureConfig,
        classes: Option<&[String]>,
    ) -> Result<Self> {
        config.validate()?;
        let samples = index(shards)?;
        if let Some((shard, s)) = samples.iter().find(|(_, s)| s.label.is_none()) {
            return Err(Error::Config(format!(
                "{}: sample `{}` has no label (a `cls` member, or `label`/`labels` in a `json` member)",
                shards[*shard].display(),
                s.key
            )));
        }
        let label = |s: &ShardSample| s.label.clone().expect("checked above");
        let multi = label(&samples[0].1).is_multi();
        if let Some((shard, s)) = samples.iter().find(|(_, s)| label(s).is_multi() != multi) {
            return Err(Error::Config(format!(
                "{}: sample `{}`: the shards mix `label` (single-label) and `labels` (multi-label) samples",
                shards[*shard].display(),
                s.key
            )));
        }
        let classes = classes.map_or_else(
            || {
                let names: BTreeSet<String> = samples
                    .iter()
                    .flat_map(|(_, s)| label(s).names().to_vec())
                    .collect();
                names.into_iter().collect()
            },
            <[String]>::to_vec,
        );
        let labels = samples
            .iter()
            .map(|(_, s)| label_of(&s.id, &label(s), &classes))
            .collect::<Result<_>>()?;
        let mel = MelSpectrogram::new(config.audio.mel.clone())?;
        Ok(Self {
            shards: shards.to_vec(),
            samples,
            config,
            classes,
            labels,
            mel,
            cache: None,
            stream: StreamConfig::default(),
        })
    }

    /// The samples of `shards` without their labels (they may have none):
    /// every sample is of the one class `_`, for embedding collections such
    /// as image-text pairs.
    pub fn open_unlabelled(shards: &[PathBuf], config: FeatureConfig) -> Result<Self> {
        config.validate()?;
        let samples = index(shards)?;
        let mel = MelSpectrogram::new(config.audio.mel.clone())?;
        Ok(Self {
            shards: shards.to_vec(),
            labels: vec![Label::Single(0); samples.len()],
            samples,
            config,
            classes: vec!["_".into()],
            mel,
            cache: None,
            stream: StreamConfig::default(),
        })
    }

    /// Decoded features go through `cache`.
    pub fn with_cache(mut self, cache: FeatureCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// How [`Samples::epoch_order`] and [`Self::stream`] walk the shards.
    pub fn with_stream(mut self, stream: StreamConfig) -> Result<Self> {
        stream.validate()?;
        self.stream = stream;
        Ok(self)
    }

    /// The same samples decoded with `config` instead.
    pub fn with_features(mut self, config: FeatureConfig) -> Result<Self> {
        config.validate()?;
        self.mel = MelSpectrogram::new(config.audio.mel.clone())?;
        self.config = config;
        Ok(self)
    }

    /// The indices of the samples that have `modality`.
    pub fn indices_with(&self, modality: Modality) -> Vec<usize> {
        (0..self.samples.len())
            .filter(|&i| self.samples[i].1.media.contains_key(&modality))
            .collect()
    }

    /// The same samples without the media of the modalities not in `used`
    /// (never read nor decoded).
    pub fn keeping(mut self, used: &[Modality]) -> Self {
        for (_, sample) in &mut self.samples {
            sample.media.retain(|m, _| used.contains(m));
        }
        self
    }

    /// The samples at `indices` (in that order), with the same classes.
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        check_indices(indices, self.samples.len())?;
        Ok(Self {
            shards: self.shards.clone(),
            samples: indices.iter().map(|&i| self.samples[i].clone()).collect(),
            config: self.config.clone(),
            classes: self.classes.clone(),
            labels: indices.iter().map(|&i| self.labels[i].clone()).collect(),
            mel: MelSpectrogram::new(self.config.audio.mel.clone())?,
            cache: self.cache.clone(),
            stream: self.stream.clone(),
        })
    }

    /// The shard files.
    pub fn shards(&self) -> &[PathBuf] {
        &self.shards
    }

    /// Each sample's id, in order.
    pub fn ids(&self) -> Vec<&str> {
        self.samples.iter().map(|(_, s)| s.id.as_str()).collect()
    }

    /// Each sample's class name(s) as its shard gives them, in order.
    pub fn label_names(&self) -> Vec<Option<&LabelNames>> {
        self.samples.iter().map(|(_, s)| s.label.as_ref()).collect()
    }

    /// The modalities at least one sample has.
    pub fn modalities(&self) -> BTreeSet<Modality> {
        self.samples
            .iter()
            .flat_map(|(_, s)| s.media.keys().copied())
            .collect()
    }

    /// The text of every sample that has one (to train a tokenizer on).
    pub fn texts(&self) -> Result<Vec<String>> {
        let with_text: Vec<usize> = (0..self.samples.len())
            .filter(|&i| self.samples[i].1.media.contains_key(&Modality::Text))
            .collect();
        parallel_map(&with_text, |&i| {
            let (shard, sample) = &self.samples[i];
            let member = &sample.media[&Modality::Text];
            let path = &self.shards[*shard];
            String::from_utf8(read_member(path, member)?).map_err(|e| {
                Error::decode(
                    member_name(path, &sample.key, member),
                    "text",
                    format!("not UTF-8 ({e})"),
                )
            })
        })
    }

    /// Sample indices grouped by shard, each group in shard order.
    fn by_shard(&self) -> Vec<Vec<usize>> {
        let mut groups = vec![Vec::new(); self.shards.len()];
        for (i, (shard, _)) in self.samples.iter().enumerate() {
            groups[*shard].push(i);
        }
        groups
    }

    /// A walk through this worker's samples from `position` in the order of
    /// [`Self::with_stream`]'s settings: resumed from a saved position it
    /// gives exactly the samples an uninterrupted walk would have given
    /// after it.
    pub fn stream(&self, position: StreamPosition) -> Result<ShardStream<'_>> {
        let order = stream_order(&self.by_shard(), &self.stream, position.epoch);
        if position.consumed > order.len() {
            return Err(Error::Config(format!(
                "stream position {} of epoch {}: the epoch holds {} samples",
                position.consumed,
                position.epoch,
                order.len()
            )));
        }
        Ok(ShardStream {
            data: self,
            order,
            position,
        })
    }

    /// Decodes sample `i`.
    fn decode(&self, i: usize) -> Result<Example> {
        let (shard, sample) = &self.samples[i];
        let path = &self.shards[*shard];
        let mut read = Vec::with_capacity(sample.media.len());
        for (&modality, member) in &sample.media {
            read.push((
                modality,
                member_name(path, &sample.key, member),
                member.extension.rsplit('.').next().unwrap_or_default(),
                read_member(path, member)?,
            ));
        }
        let media_of = |m: Modality| {
            read.iter()
                .find(|(modality, ..)| *modality == m)
                .map(|(_, name, extension, bytes)| Media::Bytes {
                    name,
                    extension,
                    bytes,
                })
        };
        let media = SampleMedia {
            text: media_of(Modality::Text),
            image: media_of(Modality::Image),
            audio: media_of(Modality::Audio),
            video: media_of(Modality::Video),
        };
        Ok(Example {
            id: sample.id.clone(),
            features: decode_media(&media, &self.config, &self.mel, self.cache.as_ref())?,
            label: self.labels[i].clone(),
        })
    }
}

/// Every sample of `shards` with the number of its shard, in order (the
/// shards indexed on all cores); no sample at all is an error.
fn index(shards: &[PathBuf]) -> Result<Vec<(usize, ShardSample)>> {
    if shards.is_empty() {
        return Err(Error::Config("no shards given".into()));
    }
    let indexed = parallel_map(shards, |path| read_shard(path))?;
    let samples: Vec<(usize, ShardSample)> = indexed
        .into_iter()
        .enumerate()
        .flat_map(|(shard, samples)| samples.into_iter().map(move |s| (shard, s)))
        .collect();
    if samples.is_empty() {
        return Err(Error::Config(format!(
            "the shards {} .. {} hold no samples",
            shards[0].display(),
            shards[shards.len() - 1].display()
        )));
    }
    Ok(samples)
}

fn check_indices(indices: &[usize], len: usize) -> Result<()> {
    match indices.iter().find(|&&i| i >= len) {
        Some(bad) => Err(Error::Invalid(format!(
            "sample {bad} of a dataset of {len}"
        ))),
        None => Ok(()),
    }
}

impl Samples for ShardDataset {
    fn len(&self) -> usize {
        self.samples.len()
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn targets(&self) -> Vec<Label> {
        self.labels.clone()
    }

    fn load(&self, indices: &[usize]) -> Result<Vec<Example>> {
        check_indices(indices, self.samples.len())?;
        parallel_map(indices, |&i| self.decode(i))
    }

    /// The stream's order for one process reading every shard (shards
    /// shuffled, samples through the shuffle buffer), seeded by `seed`: a
    /// batch reads from a few shards at a time instead of all over them.
    fn epoch_order(&self, seed: u64) -> Vec<usize> {
        let config = StreamConfig {
            seed,
            worker: 0,
            workers: 1,
            ..self.stream.clone()
        };
        stream_order(&self.by_shard(), &config, 0)
    }
}

/// A resumable walk through a [`ShardDataset`]'s samples for one epoch
/// (see [`ShardDataset::stream`]).
pub struct ShardStream<'a> {
    data: &'a ShardDataset,
    order: Vec<usize>,
    position: StreamPosition,
}

impl ShardStream<'_> {
    /// Where the walk is: save it to resume from there.
    pub fn position(&self) -> StreamPosition {
        self.position
    }

    /// Samples left in the epoch.
    pub fn remaining(&self) -> usize {
        self.order.len() - self.position.consumed
    }

    /// The next (at most) `n` samples, decoded on all cores; `None` at the
    /// end of the epoch. The position moves only when they decode.
    pub fn next_batch(&mut self, n: usize) -> Result<Option<Vec<Example>>> {
        let start = self.position.consumed;
        let end = start.saturating_add(n.max(1)).min(self.order.len());
        if start == end {
            return Ok(None);
        }
        let examples = self.data.load(&self.order[start..end])?;
        self.position.consumed = end;
        Ok(Some(examples))
    }

    /// The sample indices left in the epoch, in order (what the next
    /// batches would decode).
    pub fn pending(&self) -> &[usize] {
        &self.order[self.position.consumed..]
    }
}

/// Whether a `[data]` path names tar shards (a `.tar` file or a brace
/// pattern of them) rather than a manifest.
pub fn is_shard_path(path: &Path) -> bool {
    path.to_string_lossy().ends_with(".tar")
}
