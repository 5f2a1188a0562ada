//! Frozen encoders run once per sample ([`EmbeddedSamples`]): their
//! embeddings replace the media features, so training the fusion layer and
//! the head never decodes nor encodes a media file again; optionally kept
//! on disk in a [`FeatureCache`].

use std::collections::BTreeMap;

use burn::prelude::*;

use polymodal_core::{Error, Modality, Result};

use super::MultimodalClassifier;
use crate::{Batcher, Embedded, Example, FeatureCache, Label, Samples};

/// Samples carried through at most this many at a time.
const CHUNK: usize = 16;

/// Part of every cache key: bumped whenever an encoder's output for the
/// same weights and input changes (2: Whisper pools over the positions
/// that hold audio) or the key's parts do (3: one key whether or not the
/// tokens are kept; an identity holds only its own modality's settings),
/// so no stale embedding is served.
const ENCODERS_VERSION: &[u8] = b"3";

/// A set of samples whose frozen modalities hold a frozen encoder's
/// embeddings ([`Embedded`]) in place of their media: each sample is
/// decoded and encoded once, when the set is made; [`Samples::load`] then
/// only copies vectors.
///
/// The embeddings are those `model` computes; with a cache, an entry is
/// keyed by the modality, the encoder's identity (`identities`, e.g. the
/// SHA-256 of its weights and its input settings, [`EmbedPlan::identities`])
/// and the sample's decoded features, so a change to any of them computes
/// anew. An entry holds the pooled vector alone (shape `[dim]`) or with
/// every token (`[1 + tokens, dim]`): a run that keeps sequences computes
/// again over a pooled-only entry and stores the tokens, a run that does
/// not reads the pooled row of either.
pub struct EmbeddedSamples {
    examples: Vec<Example>,
    classes: Vec<String>,
}

/// What [`EmbeddedSamples::new`] needs besides the samples.
pub struct EmbedPlan<'a> {
    /// The model whose encoders run (on a plain device, in inference mode).
    pub model: &'a MultimodalClassifier,
    /// The batcher of the model's inputs.
    pub batcher: &'a Batcher,
    /// The frozen modalities and each encoder's identity (the cache key).
    pub identities: BTreeMap<Modality, String>,
    /// Keep every token's vector (joint fusion reads them), or only the
    /// pooled vector (feature-level fusion reads nothing else).
    pub keep_sequences: bool,
    /// Where embeddings are kept between runs.
    pub cache: Option<&'a FeatureCache>,
    /// The device the encoders run on.
    pub device: &'a Device,
}

impl EmbedPlan<'_> {
    /// The cache identity of each frozen encoder of `config` whose inputs
    /// `features` describe: the SHA-256 of its weights
    /// ([`crate::EncoderChoice::weights_sha256`], "unrecorded" when not
    /// recorded) and its own modality's settings (a change to another
    /// modality's settings keeps its entries).
    pub fn identities(
        config: &crate::ClassifierConfig,
        features: &crate::FeatureConfig,
    ) -> Result<BTreeMap<Modality, String>> {
        let json = |value: serde_json::Result<String>| {
            value.map_err(|e| Error::Config(format!("encoder settings: {e}")))
        };
        config
            .encoders
            .iter()
            .filter(|(m, choice)| choice.is_frozen() && config.modalities.contains(m))
            .map(|(&m, choice)| {
                let settings = match m {
                    Modality::Text => json(serde_json::to_string(&config.max_tokens))?,
                    Modality::Image => json(serde_json::to_string(&features.image))?,
                    Modality::Audio => json(serde_json::to_string(&features.audio))?,
                    Modality::Video => json(serde_json::to_string(&features.video))?,
                };
                let weights = choice.weights_sha256.as_deref().unwrap_or("unrecorded");
                Ok((m, format!("{weights}|{settings}")))
            })
            .collect()
    }
}

impl EmbeddedSamples {
    /// Encodes the frozen modalities of every sample of `samples` once.
    pub fn new(samples: &dyn Samples, plan: &EmbedPlan) -> Result<Self> {
        let model = plan.model.valid();
        let indices: Vec<usize> = (0..samples.len()).collect();
        let mut examples = Vec::with_capacity(samples.len());
        for chunk in indices.chunks(CHUNK) {
            let mut loaded = samples.load(chunk)?;
            for (&modality, identity) in &plan.identities {
                embed_modality(&model, plan, modality, identity, &mut loaded)?;
            }
            examples.extend(loaded);
        }
        Ok(Self {
            examples,
            classes: samples.classes().to_vec(),
        })
    }
}

impl From<EmbeddedSamples> for crate::Dataset {
    /// The embedded samples as a [`crate::Dataset`] (to subset them, or
    /// take a modality away).
    fn from(samples: EmbeddedSamples) -> Self {
        crate::Dataset {
            examples: samples.examples,
            classes: samples.classes,
        }
    }
}

/// Replaces `modality`'s media of `examples` by its embeddings: from the
/// cache, or encoded in one batch.
fn embed_modality(
    model: &MultimodalClassifier,
    plan: &EmbedPlan,
    modality: Modality,
    identity: &str,
    examples: &mut [Example],
) -> Result<()> {
    let keys: Vec<Option<String>> = examples
        .iter()
        .map(|e| media_bytes(e, modality).map(|bytes| key(modality, identity, &bytes)))
        .collect();
    let mut missing = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let Some(key) = key else { continue };
        let cached = plan.cache.and_then(|c| c.get(key));
        match cached.and_then(|(shape, values)| split(&shape, values, plan.keep_sequences)) {
            Some(embedded) => set(&mut examples[i], modality, embedded),
            None => missing.push(i),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let refs: Vec<&Example> = missing.iter().map(|&i| &examples[i]).collect();
    let batch = plan.batcher.batch(&refs, plan.device)?;
    let part = model
        .encode(modality, &batch)?
        .ok_or_else(|| Error::Config(format!("the model does not read {modality}")))?;
    let embeddings = part.embeddings;
    let [n, length, dim] = embeddings.sequence.dims();
    let pooled = values(embeddings.pooled)?;
    let sequence = values(embeddings.sequence)?;
    // Cast, not read: a device stores booleans its own way (wgpu as u32).
    let mask: Vec<bool> = embeddings
        .mask
        .into_data()
        .try_into_vec_as::<bool>()
        .map_err(data)?;
    for (row, &i) in missing.iter().enumerate().take(n) {
        let mut tokens = Vec::new();
        if plan.keep_sequences {
            for t in (0..length).filter(|&t| mask[row * length + t]) {
                tokens.extend_from_slice(&sequence[(row * length + t) * dim..][..dim]);
            }
        }
        let embedded = Embedded {
            pooled: pooled[row * dim..][..dim].to_vec(),
            sequence: tokens,
        };
        if let (Some(cache), Some(key)) = (plan.cache, &keys[i]) {
            if plan.keep_sequences {
                let rows = 1 + embedded.sequence.len() / dim;
                let values = [embedded.pooled.as_slice(), &embedded.sequence].concat();
                cache.put(key, &[rows, dim], &values)?;
            } else {
                cache.put(key, &[dim], &embedded.pooled)?;
            }
        }
        set(&mut examples[i], modality, embedded);
    }
    Ok(())
}

/// The cache key of one sample's embeddings.
fn key(modality: Modality, identity: &str, media: &[u8]) -> String {
    let parts = [
        b"embeddings".as_slice(),
        ENCODERS_VERSION,
        modality.name().as_bytes(),
        identity.as_bytes(),
        media,
    ];
    FeatureCache::key(&parts)
}

/// The bytes of `modality`'s media features of `example`, if it has them.
fn media_bytes(example: &Example, modality: Modality) -> Option<Vec<u8>> {
    let f = &example.features;
    let floats = |v: &Vec<f32>| v.iter().flat_map(|x| x.to_le_bytes()).collect();
    match modality {
        Modality::Text => f.text.as_ref().map(|t| t.as_bytes().to_vec()),
        Modality::Image => f.image.as_ref().map(floats),
        Modality::Audio => f.audio.as_ref().map(floats),
        Modality::Video => f.video.as_ref().map(floats),
    }
}

/// A cache entry as the pooled row and, when `tokens` are wanted, the token
/// rows: `[dim]` holds the pooled vector alone (no use when tokens are
/// wanted), `[1 + tokens, dim]` both.
fn split(shape: &[usize], values: Vec<f32>, tokens: bool) -> Option<Embedded> {
    let (rows, dim) = match *shape {
        [dim] if !tokens => (1, dim),
        [rows, dim] => (rows, dim),
        _ => return None,
    };
    if rows == 0 || dim == 0 || values.len() != rows * dim {
        return None;
    }
    let sequence = if tokens {
        values[dim..].to_vec()
    } else {
        Vec::new()
    };
    Some(Embedded {
        pooled: values[..dim].to_vec(),
        sequence,
    })
}

/// Puts `embedded` in place of `modality`'s media features.
fn set(example: &mut Example, modality: Modality, embedded: Embedded) {
    let f = &mut example.features;
    match modality {
        Modality::Text => f.text = None,
        Modality::Image => f.image = None,
        Modality::Audio => f.audio = None,
        Modality::Video => f.video = None,
    }
    f.embedded.insert(modality, embedded);
}

fn values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>().map_err(data)
}

fn data(e: impl std::fmt::Debug) -> Error {
    Error::Invalid(format!("embeddings: {e:?}"))
}

impl Samples for EmbeddedSamples {
    fn len(&self) -> usize {
        self.examples.len()
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn targets(&self) -> Vec<Label> {
        self.examples.iter().map(|e| e.label.clone()).collect()
    }

    fn load(&self, indices: &[usize]) -> Result<Vec<Example>> {
        indices
            .iter()
            .map(|&i| {
                self.examples
                    .get(i)
                    .cloned()
                    .ok_or_else(|| Error::Invalid(format!("sample {i} of {}", self.examples.len())))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use polymodal_fusion::FusionKind;
    use polymodal_image::ImagePreprocess;

    use super::*;
    use crate::{
        Classifier, ClassifierConfig, Dataset, EncoderChoice, EncoderMode, FeatureConfig, Features,
    };

    /// Five 16×16 images (the ViT fixture's size), two classes.
    fn images() -> Dataset {
        let examples = (0..5)
            .map(|i| Example {
                id: format!("s{i}"),
                features: Features {
                    image: Some(
                        (0..3 * 16 * 16)
                            .map(|j| ((i * 7 + j) as f32 * 0.13).sin())
                            .collect(),
                    ),
                    ..Features::default()
                },
                label: Label::Single(i % 2),
            })
            .collect();
        Dataset {
            examples,
            classes: vec!["a".into(), "b".into()],
        }
    }

    fn batcher() -> Batcher {
        let features = FeatureConfig {
            image: ImagePreprocess::vit(16),
            ..FeatureConfig::default()
        };
        Batcher::new(vec![Modality::Image], features, None).unwrap()
    }

    /// A classifier of the image modality: the frozen ViT fixture, or
    /// (`vit` false) a from-scratch CNN of the same width.
    fn model(vit: bool) -> MultimodalClassifier {
        let config = ClassifierConfig::new(vec![Modality::Image], FusionKind::None, 2).with_dim(32);
        let config = if vit {
            let dir = polymodal_core::testing::encoder_fixture("vit");
            config.with_encoder(
                Modality::Image,
                EncoderChoice::pretrained(dir, EncoderMode::Frozen),
            )
        } else {
            config
        };
        config.init(&Device::flex()).unwrap()
    }

    fn batch(examples: &[Example]) -> polymodal_core::MultimodalBatch {
        let refs: Vec<&Example> = examples.iter().collect();
        batcher().batch(&refs, &Device::flex()).unwrap()
    }

    fn embed(
        samples: &dyn Samples,
        model: &MultimodalClassifier,
        cache: Option<&FeatureCache>,
        keep_sequences: bool,
    ) -> Vec<Example> {
        let batcher = batcher();
        let plan = EmbedPlan {
            model,
            batcher: &batcher,
            identities: BTreeMap::from([(Modality::Image, "vit-fixture".to_string())]),
            keep_sequences,
            cache,
            device: &Device::flex(),
        };
        let embedded = EmbeddedSamples::new(samples, &plan).unwrap();
        assert_eq!(embedded.targets(), samples.targets());
        embedded
            .load(&(0..samples.len()).collect::<Vec<_>>())
            .unwrap()
    }

    /// The embedded samples hold no media; the model reading their
    /// embeddings (pooled only, or every token) gives the pooled vectors,
    /// tokens and logits of the model encoding the media.
    #[test]
    fn embedded_samples_replace_media_and_give_the_same_outputs() {
        // Holds the generator so a seeded run on another test thread is
        // not changed by this test's draws.
        let _rng = crate::RngGuard::hold();
        let data = images();
        let model = model(true);
        let direct = batch(&data.examples);
        for keep_sequences in [false, true] {
            let loaded = embed(&data, &model, None, keep_sequences);
            for example in &loaded {
                assert!(
                    example.features.image.is_none(),
                    "{}: media kept",
                    example.id
                );
                let embedded = &example.features.embedded[&Modality::Image];
                // ViT: 16 patches and the class token, 32 wide.
                let tokens = if keep_sequences { 17 } else { 0 };
                assert_eq!(
                    (embedded.pooled.len(), embedded.sequence.len()),
                    (32, 32 * tokens)
                );
            }
            let ahead = batch(&loaded);
            assert!(ahead.image.is_none() && ahead.embedded.len() == 1);
            let (a, b) = (model.embed(&ahead).unwrap(), model.embed(&direct).unwrap());
            let close =
                |x: Vec<f32>, y: Vec<f32>| polymodal_core::testing::max_abs_diff(&x, &y) < 1e-5;
            let pooled = |p: &[polymodal_core::ModalityEmbeddings]| {
                values(p[0].embeddings.pooled.clone()).unwrap()
            };
            assert!(close(pooled(&a), pooled(&b)));
            if keep_sequences {
                let tokens = |p: &[polymodal_core::ModalityEmbeddings]| {
                    values(p[0].embeddings.sequence.clone()).unwrap()
                };
                assert!(close(tokens(&a), tokens(&b)));
            }
            let logits = |b| values(model.logits(b).unwrap()).unwrap();
            assert!(close(logits(&ahead), logits(&direct)));
        }
    }

    /// A second pass with a cache serves the stored embeddings without
    /// encoding: a model with another encoder (a CNN) under the same
    /// identity gets the ViT's vectors back.
    #[test]
    fn cached_embeddings_are_served_without_encoding() {
        let _rng = crate::RngGuard::hold();
        let dir =
            std::env::temp_dir().join(format!("polymodal-embed-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = FeatureCache::new(&dir).unwrap();
        let data = images();
        let pooled = |examples: &[Example]| -> Vec<Vec<f32>> {
            examples
                .iter()
                .map(|e| e.features.embedded[&Modality::Image].pooled.clone())
                .collect()
        };
        let first = pooled(&embed(&data, &model(true), Some(&cache), false));
        let cnn = model(false);
        let uncached = pooled(&embed(&data, &cnn, None, false));
        assert_ne!(uncached, first, "the CNN and the ViT differ");
        let second = pooled(&embed(&data, &cnn, Some(&cache), false));
        assert_eq!(second, first, "served from the cache");
        // Tokens wanted: the pooled-only entries are computed again (by the
        // CNN now) and stored with their tokens, which a pooled-only run
        // then reads too.
        let with_tokens = embed(&data, &cnn, Some(&cache), true);
        assert_eq!(pooled(&with_tokens), uncached, "computed again");
        assert!(
            with_tokens
                .iter()
                .all(|e| !e.features.embedded[&Modality::Image].sequence.is_empty())
        );
        let third = pooled(&embed(&data, &model(true), Some(&cache), false));
        assert_eq!(third, uncached, "the entries with tokens serve pooled runs");
        let again = embed(&data, &model(true), Some(&cache), true);
        assert_eq!(pooled(&again), uncached, "and runs that keep tokens");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
