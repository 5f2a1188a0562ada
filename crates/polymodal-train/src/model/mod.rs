//! The model polymodal trains and serves: [`MultimodalClassifier`] (an
//! encoder per modality from the modality crates' registries, a fusion
//! layer from polymodal-fusion's registry, a linear head) built from a
//! [`ClassifierConfig`] (with an [`EncoderChoice`] per modality: from
//! scratch or a pretrained folder, frozen or fine-tuned); frozen encoders'
//! embeddings computed once per sample ([`EmbeddedSamples`]); and model
//! folders ([`ModelDir`]: its weights and [`ModelCard`]) with what is done
//! with one: [`evaluate_dir`], [`predict_files`], [`embed_files`].

mod embedded;
mod embedder;
mod encoders;
mod folder;
mod multimodal;

pub use embedded::{EmbedPlan, EmbeddedSamples};
pub use embedder::FolderEmbedder;
pub use encoders::{EncoderChoice, EncoderChoices, EncoderMode, folder_features, weights_sha256};
pub use folder::{ModelCard, ModelDir, embed_files, evaluate_dir, predict_files};
pub use multimodal::{ClassifierConfig, MultimodalClassifier};
