//! Text for polymodal: Hugging Face tokenizers (load a `tokenizer.json` or
//! train a WordPiece or byte-level BPE vocabulary; padding and truncation
//! chosen by the caller), a small Transformer text encoder to train from
//! scratch, and BERT loading Hugging Face `BertModel` weights, with
//! sentence-transformers embeddings ([`SentenceEncoder`]):
//!
//! ```no_run
//! use burn::prelude::*;
//! use polymodal_text::SentenceEncoder;
//!
//! let device = Device::flex();
//! let (model, _) = SentenceEncoder::load("../shared/models/all-MiniLM-L6-v2", &device)?;
//! let vectors = model.embed(&["a cat sleeps", "a dog barks"], &device)?;
//! assert_eq!(vectors.dims(), [2, 384]);
//! # Ok::<(), polymodal_core::Error>(())
//! ```
//!
//! Training from scratch with a tokenizer trained on the corpus:
//!
//! ```
//! use burn::prelude::*;
//! use polymodal_core::Encoder;
//! use polymodal_text::{Padding, TextEncoderConfig, TextTokenizer};
//!
//! let corpus = ["a red circle hums", "a blue square beeps"];
//! // Or TextTokenizer::from_file("all-MiniLM-L6-v2/tokenizer.json", 128)?
//! let tokenizer = TextTokenizer::train_wordpiece(corpus.iter(), 100, 16)?
//!     .with_padding(Padding::Fixed(8))?;
//! let device = Device::flex();
//! let batch = tokenizer.encode_batch(&corpus)?.to_tensors(&device)?;
//! let encoder = TextEncoderConfig::new(tokenizer.vocab_size()).with_dim(32).init(&device);
//! let embeddings = encoder.encode(&batch)?;
//! assert_eq!(batch.ids.dims(), [2, 8]);
//! assert_eq!(embeddings.pooled.dims(), [2, 32]);
//! # Ok::<(), polymodal_core::Error>(())
//! ```

mod bert;
mod clip;
mod encoder;
mod error_rate;
mod normalize;
mod registry;
mod sentence;
mod tokenize;

pub use bert::{Bert, BertConfig, BertOutput, BertPooling};
pub use clip::{
    Clip, ClipConfig, ClipOutput, ClipText, ClipTextConfig, ClipVision, ClipVisionConfig,
};
pub use encoder::{RnnTextEncoder, RnnTextEncoderConfig, TextEncoder, TextEncoderConfig};
pub use error_rate::{ErrorCounts, char_error_rate, word_error_rate};
pub use normalize::{
    BasicTextNormalizer, EnglishTextNormalizer, TextNormalizer, remove_symbols,
    remove_symbols_and_diacritics,
};
pub use polymodal_core::l2_normalize;
pub use registry::{AnyTextEncoder, TextEncoderKind, TextEncoderSizes};
pub use sentence::SentenceEncoder;
pub use tokenize::{EncodedBatch, Padding, SPECIAL_TOKENS, Side, TextTokenizer, Truncation};
pub use tokenizers::TruncationStrategy;
