//! polymodal: multimodal machine learning in Rust on Burn.
//!
//! This facade re-exports the crates (one per modality, fusion, training,
//! the wgpu backend) and the [`MultimodalClassifier`] that composes them
//! (from polymodal-train, as are the TOML experiments, [`experiment`]), and
//! adds what the `polymodal` command line composes from them: device and
//! precision names ([`device`]), search over what is said in audio and
//! video files ([`speech`]: Whisper and a sentence encoder) and the
//! embedded demo dataset ([`demo`]). The data flow is:
//! media file → decoded tensor → encoder → embeddings (pooled + sequence +
//! mask) → fusion → head → loss.
//!
//! Two Cargo features, both on by default, bring the heavy parts: `video`
//! (decoding video files with FFmpeg; without it the video encoders remain,
//! but a sample with a video file is an error) and `wgpu` (wgpu devices,
//! `polymodal::wgpu` and the fused kernels). With `default-features = false`
//! the crate trains and predicts on text, images and audio on the CPU without
//! either (docs/architecture.md, "Cargo features").
//!
//! ```
//! use burn::prelude::*;
//! use polymodal::{ClassifierConfig, FusionKind, Modality};
//!
//! let config = ClassifierConfig::new(vec![Modality::Image, Modality::Audio], FusionKind::Concat, 6)
//!     .with_dim(16);
//! let model = config.init(&Device::flex())?;
//! assert!(burn::module::Module::num_params(&model) > 0);
//! # Ok::<(), polymodal::Error>(())
//! ```

pub mod demo;
pub mod device;
pub mod speech;

pub use polymodal_core::{
    Embeddings, Encoder, Error, Fusion, Modality, ModalityBatch, ModalityEmbeddings,
    MultimodalBatch, Result, Targets, TokenBatch, Weights,
};
pub use polymodal_fusion::{FusionKind, FusionLayer};
pub use polymodal_train::experiment;
pub use polymodal_train::{
    ClassifierConfig, ModelCard, ModelDir, MultimodalClassifier, embed_files, evaluate_dir,
    predict_files,
};
pub use {
    polymodal_audio as audio, polymodal_core as core, polymodal_fusion as fusion,
    polymodal_image as image, polymodal_text as text, polymodal_train as train,
    polymodal_video as video,
};

/// wgpu devices (the `wgpu` feature).
#[cfg(feature = "wgpu")]
pub use polymodal_wgpu as wgpu;

/// The project's own compute kernels (the `wgpu` feature), each kept beside
/// its users: log-mel in `polymodal-audio`, frame preprocessing in
/// `polymodal-image`, the gated unit in `polymodal-fusion`.
#[cfg(feature = "wgpu")]
pub mod kernels {
    pub use polymodal_audio::kernel::*;
    pub use polymodal_fusion::kernel::*;
    pub use polymodal_image::kernel::*;
}
