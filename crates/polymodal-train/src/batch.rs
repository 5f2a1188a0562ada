//! Turning decoded examples into a [`MultimodalBatch`] on a device.

use burn::prelude::*;

use polymodal_core::{Error, Modality, ModalityBatch, MultimodalBatch, Result, Targets};
use polymodal_text::TextTokenizer;

use crate::features::{Example, FeatureConfig, Label};

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

    /// Stacks `examples` into one batch. A sample lacking a modality gets
    /// zeros there and `present = false`.
    pub fn batch(&self, examples: &[&Example], device: &Device) -> Result<MultimodalBatch> {
        let n = examples.len();
        let present = |m: Modality| {
            let flags: Vec<bool> = examples.iter().map(|e| e.features.has(m)).collect();
            Tensor::<1, Bool>::from_data(TensorData::new(flags, [n]), device)
        };
        let stack = |m: Modality, get: fn(&Example) -> Option<&Vec<f32>>, len: usize| {
            let mut values = Vec::with_capacity(n * len);
            for e in examples {
                match get(e) {
                    Some(v) => values.extend_from_slice(v),
                    None => values.resize(values.len() + len, 0.0),
                }
            }
            (values, present(m))
        };
        let has = |m| self.modalities.contains(&m);
        let mut batch = MultimodalBatch {
            text: None,
            image: None,
            audio: None,
            video: None,
            targets: targets(examples, device)?,
        };
        if has(Modality::Text) {
            let tokenizer = self.tokenizer.as_ref().expect("checked in new");
            let texts: Vec<&str> = examples
                .iter()
                .map(|e| e.features.text.as_deref().unwrap_or(""))
                .collect();
            let input = tokenizer.encode_batch(&texts)?.to_tensors(device)?;
            batch.text = Some(ModalityBatch {
                input,
                present: present(Modality::Text),
            });
        }
        if has(Modality::Image) {
            let pre = &self.config.image;
            let (values, present) =
                stack(Modality::Image, |e| e.features.image.as_ref(), pre.len());
            let shape = [n, pre.channels(), pre.height as usize, pre.width as usize];
            batch.image = Some(ModalityBatch {
                input: Tensor::from_data(TensorData::new(values, shape), device),
                present,
            });
        }
        if has(Modality::Audio) {
            let [mels, frames] = self.audio_shape;
            let (values, present) = stack(
                Modality::Audio,
                |e| e.features.audio.as_ref(),
                mels * frames,
            );
            let input = Tensor::from_data(TensorData::new(values, [n, 1, mels, frames]), device);
            batch.audio = Some(ModalityBatch { input, present });
        }
        if has(Modality::Video) {
            let video = &self.config.video;
            let pre = &video.preprocess;
            let (values, present) = stack(
                Modality::Video,
                |e| e.features.video.as_ref(),
                video.frames * pre.len(),
            );
            let shape = [
                n,
                video.frames,
                pre.channels(),
                pre.height as usize,
                pre.width as usize,
            ];
            batch.video = Some(ModalityBatch {
                input: Tensor::from_data(TensorData::new(values, shape), device),
                present,
            });
        }
        Ok(batch)
    }
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
