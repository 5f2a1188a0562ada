//! Turning decoded examples into a [`MultimodalBatch`] on a device.

use burn::prelude::*;

use polymodal_core::{
    Embeddings, Error, Modality, ModalityBatch, ModalityEmbeddings, MultimodalBatch, Result,
    Targets,
};
use polymodal_text::TextTokenizer;

use crate::data::{Embedded, Example, FeatureConfig, Label};

/// Builds batches for a fixed set of modalities.
#[derive(Debug, Clone)]
pub struct Batcher {
    modalities: Vec<Modality>,
    config: FeatureConfig,
    tokenizer: Option<TextTokenizer>,
    /// Spectrogram `[mels, frames]`.
    audio_shape: [usize; 2],
}

impl Batcher {
    /// A batcher for `modalities`; text needs a tokenizer.
    pub fn new(
        modalities: Vec<Modality>,
        config: FeatureConfig,
        tokenizer: Option<TextTokenizer>,
    ) -> Result<Self> {
        if modalities.contains(&Modality::Text) && tokenizer.is_none() {
            return Err(polymodal_core::Error::Config(
                "text needs a tokenizer".into(),
            ));
        }
        config.validate()?;
        let audio_shape = config.audio_shape()?;
        Ok(Self {
            modalities,
            config,
            tokenizer,
            audio_shape,
        })
    }

    /// The modalities the batches carry.
    pub fn modalities(&self) -> &[Modality] {
        &self.modalities
    }

    /// The feature settings the batches are made with.
    pub fn features(&self) -> &FeatureConfig {
        &self.config
    }

    /// Stacks `examples` into one batch. A sample lacking a modality gets
    /// zeros there and `present = false`.
    pub fn batch(&self, examples: &[&Example], device: &Device) -> Result<MultimodalBatch> {
        let n = examples.len();
        let present =
            |m: Modality| -> Vec<bool> { examples.iter().map(|e| e.features.has(m)).collect() };
        // Features come from files (and the feature cache): a length other
        // than the configured shape's is an error naming the sample, never a
        // tensor built from it.
        let stack = |m: Modality, get: fn(&Example) -> Option<&Vec<f32>>, len: usize| {
            let mut values = Vec::with_capacity(n * len);
            for e in examples {
                match get(e) {
                    Some(v) if v.len() == len => values.extend_from_slice(v),
                    Some(v) => {
                        return Err(Error::Invalid(format!(
                            "sample `{}`: {m} features hold {} values, the model input takes {len}",
                            e.id,
                            v.len()
                        )));
                    }
                    None => values.resize(values.len() + len, 0.0),
                }
            }
            Ok((values, present(m)))
        };
        // A modality computed ahead (a frozen encoder's embeddings) is not
        // stacked from media.
        let mut batch_embedded = Vec::new();
        for &m in &self.modalities {
            if let Some(part) = embedded_part(m, examples, device)? {
                batch_embedded.push(part);
            }
        }
        let precomputed: Vec<Modality> = batch_embedded.iter().map(|p| p.modality).collect();
        let has = |m| self.modalities.contains(&m) && !precomputed.contains(&m);
        let mut batch = MultimodalBatch {
            text: None,
            image: None,
            audio: None,
            video: None,
            embedded: Vec::new(),
            targets: targets(examples, device)?,
        };
        if has(Modality::Text) {
            let tokenizer = self.tokenizer.as_ref().expect("checked in new");
            let texts: Vec<&str> = examples
                .iter()
                .map(|e| e.features.text.as_deref().unwrap_or(""))
                .collect();
            let input = tokenizer.encode_batch(&texts)?.to_tensors(device)?;
            batch.text = Some(ModalityBatch::new(input, &present(Modality::Text), device));
        }
        if has(Modality::Image) {
            let [c, h, w] = self.config.image_shape();
            let (values, present) =
                stack(Modality::Image, |e| e.features.image.as_ref(), c * h * w)?;
            let input = Tensor::from_data(TensorData::new(values, [n, c, h, w]), device);
            batch.image = Some(ModalityBatch::new(input, &present, device));
        }
        if has(Modality::Audio) {
            let [mels, frames] = self.audio_shape;
            let (values, present) = stack(
                Modality::Audio,
                |e| e.features.audio.as_ref(),
                mels * frames,
            )?;
            let input = Tensor::from_data(TensorData::new(values, [n, 1, mels, frames]), device);
            batch.audio = Some(ModalityBatch::new(input, &present, device));
        }
        if has(Modality::Video) {
            let [f, c, h, w] = self.config.video_shape();
            let (values, present) = stack(
                Modality::Video,
                |e| e.features.video.as_ref(),
                f * c * h * w,
            )?;
            let input = Tensor::from_data(TensorData::new(values, [n, f, c, h, w]), device);
            batch.video = Some(ModalityBatch::new(input, &present, device));
        }
        batch.embedded = batch_embedded;
        Ok(batch)
    }
}

/// The embeddings of `modality` computed ahead for `examples`, when any
/// example carries them (then every example that has the modality must):
/// pooled vectors `[n, dim]`, and the real tokens padded to the longest
/// `[n, tokens, dim]` with their mask, or, when only pooled vectors were
/// kept, each pooled vector as a one-token sequence. Samples without the
/// modality get zeros and `present = false`.
fn embedded_part(
    modality: Modality,
    examples: &[&Example],
    device: &Device,
) -> Result<Option<ModalityEmbeddings>> {
    let parts: Vec<Option<&Embedded>> = examples
        .iter()
        .map(|e| e.features.embedded.get(&modality))
        .collect();
    let Some(first) = parts.iter().flatten().next() else {
        return Ok(None);
    };
    let dim = first.pooled.len();
    let n = examples.len();
    let mut pooled = Vec::with_capacity(n * dim);
    let mut tokens = Vec::with_capacity(n);
    for (e, part) in examples.iter().zip(&parts) {
        match part {
            Some(p) if p.pooled.len() == dim && p.sequence.len() % dim == 0 => {
                pooled.extend_from_slice(&p.pooled);
                tokens.push(p.sequence.len() / dim);
            }
            Some(p) => {
                return Err(Error::Invalid(format!(
                    "sample `{}`: {modality} embeddings of width {} (sequence {} values) in a \
                     batch of width {dim}",
                    e.id,
                    p.pooled.len(),
                    p.sequence.len()
                )));
            }
            None if e.features.has_media(modality) => {
                return Err(Error::Invalid(format!(
                    "sample `{}`: {modality} media where the batch has embeddings computed ahead",
                    e.id
                )));
            }
            None => {
                pooled.resize(pooled.len() + dim, 0.0);
                tokens.push(0);
            }
        }
    }
    let flags: Vec<bool> = parts.iter().map(Option::is_some).collect();
    let present = Tensor::<1, Bool>::from_data(TensorData::new(flags.clone(), [n]), device);
    let pooled = Tensor::<2>::from_data(TensorData::new(pooled, [n, dim]), device);
    let length = tokens.iter().copied().max().unwrap_or(0);
    let embeddings = if length == 0 {
        // Pooled vectors only: each is a sequence of one token.
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(flags, [n, 1]), device);
        Embeddings {
            sequence: pooled.clone().unsqueeze_dim(1),
            pooled,
            mask,
        }
    } else {
        let mut sequence = vec![0.0f32; n * length * dim];
        let mut mask = vec![false; n * length];
        for (i, part) in parts.iter().enumerate() {
            if let Some(p) = part {
                let count = tokens[i];
                sequence[i * length * dim..][..count * dim].copy_from_slice(&p.sequence);
                mask[i * length..][..count].fill(true);
            }
        }
        Embeddings {
            pooled,
            sequence: Tensor::from_data(TensorData::new(sequence, [n, length, dim]), device),
            mask: Tensor::from_data(TensorData::new(mask, [n, length]), device),
        }
    };
    Ok(Some(ModalityEmbeddings {
        modality,
        embeddings,
        present,
    }))
}

/// The targets of `examples`: class indices, or multi-hot rows when the
/// samples are multi-label (every sample must then have the same classes).
fn targets(examples: &[&Example], device: &Device) -> Result<Targets> {
    let n = examples.len();
    match examples.first().map(|e| &e.label) {
        Some(Label::Multi(first)) => {
            let classes = first.len();
            let mut values = Vec::with_capacity(n * classes);
            for e in examples {
                match &e.label {
                    Label::Multi(flags) if flags.len() == classes => {
                        values.extend(flags.iter().map(|&f| if f { 1.0f32 } else { 0.0 }));
                    }
                    other => {
                        return Err(Error::Invalid(format!(
                            "sample `{}`: label {other:?} in a batch of multi-label samples with {classes} classes",
                            e.id
                        )));
                    }
                }
            }
            Ok(Targets::MultiHot(Tensor::from_data(
                TensorData::new(values, [n, classes]),
                device,
            )))
        }
        _ => {
            let mut classes = Vec::with_capacity(n);
            for e in examples {
                match e.label {
                    Label::Single(c) => classes.push(c as i64),
                    Label::Multi(_) => {
                        return Err(Error::Invalid(format!(
                            "sample `{}`: a multi-label sample in a batch of single-label samples",
                            e.id
                        )));
                    }
                }
            }
            Ok(Targets::Classes(Tensor::from_data(
                TensorData::new(classes, [n]),
                device,
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Features;

    /// Features of a length other than the model input's (a short video, a
    /// damaged cache entry) are an error naming the sample, not a panic in
    /// Burn's tensor constructor.
    #[test]
    fn features_of_the_wrong_length_are_errors_naming_the_sample() {
        let config = FeatureConfig::default();
        let [f, c, h, w] = config.video_shape();
        let batcher = Batcher::new(vec![Modality::Video], config, None).unwrap();
        let example = |id: &str, len: usize| Example {
            id: id.into(),
            features: Features {
                video: Some(vec![0.5; len]),
                ..Features::default()
            },
            label: Label::Single(0),
        };
        let full = f * c * h * w;
        let device = Device::flex();
        let good = example("good", full);
        let batch = batcher.batch(&[&good, &good], &device).unwrap();
        assert_eq!(batch.video.unwrap().input.dims(), [2, f, c, h, w]);
        // One frame short, as sampling a cut file could once return.
        let short = example("cut.mp4", full - c * h * w);
        let error = batcher.batch(&[&good, &short], &device).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("cut.mp4") && message.contains(&full.to_string()),
            "{message}"
        );
    }
}
