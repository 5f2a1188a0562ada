//! Tokenisation with Hugging Face `tokenizers`: load a `tokenizer.json`, or
//! train a WordPiece vocabulary on a corpus; batch-encode with padding.

use std::path::Path;

use tokenizers::models::TrainerWrapper;
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainer};
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use burn::prelude::*;

use polymodal_core::{Error, Result, TokenBatch};

/// Special tokens of a trained vocabulary; they get ids 0.. in this order.
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Token ids of a batch, padded to one length, with the attention mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    /// `ids[sample][position]`.
    pub ids: Vec<Vec<u32>>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<Vec<u32>>,
}

impl EncodedBatch {
    /// Common padded length.
    pub fn len(&self) -> usize {
        self.ids.first().map_or(0, Vec::len)
    }

    /// Whether the batch has no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves the batch to `device` as ids and mask tensors.
    pub fn to_tensors(&self, device: &Device) -> TokenBatch {
        let (batch, length) = (self.ids.len(), self.len());
        let ids: Vec<i64> = self.ids.iter().flatten().map(|&id| id as i64).collect();
        let mask: Vec<bool> = self
            .attention_mask
            .iter()
            .flatten()
            .map(|&m| m == 1)
            .collect();
        TokenBatch {
            ids: Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, length]), device),
            mask: Tensor::<2, Bool>::from_data(TensorData::new(mask, [batch, length]), device),
        }
    }
}

/// A tokenizer plus the caller's padding and truncation policy.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    max_length: usize,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("max_length", &self.max_length)
            .finish()
    }
}

fn tk_error(context: &str, e: tokenizers::Error) -> Error {
    Error::Invalid(format!("{context}: {e}"))
}

impl TextTokenizer {
    /// Loads a Hugging Face `tokenizer.json`. Its own padding and truncation
    /// settings are replaced: batches pad to their longest sequence and
    /// truncate at `max_length`.
    pub fn from_file(path: impl AsRef<Path>, max_length: usize) -> Result<Self> {
        let path = path.as_ref();
        if !path.is_file() {
            let e = std::fs::metadata(path)
                .err()
                .unwrap_or_else(|| std::io::Error::other("not a file"));
            return Err(Error::io(path, e));
        }
        let inner = Tokenizer::from_file(path).map_err(|e| Error::decode(path, "tokenizer", e))?;
        Self::with_policy(inner, max_length)
    }

    /// Trains a lower-casing BERT-style WordPiece vocabulary on `corpus`.
    pub fn train_wordpiece<S: AsRef<str> + Send>(
        corpus: impl Iterator<Item = S> + Send,
        vocab_size: usize,
        max_length: usize,
    ) -> Result<Self> {
        let model = WordPiece::builder()
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| tk_error("wordpiece", e))?;
        let mut inner = Tokenizer::new(model);
        inner
            .with_normalizer(Some(BertNormalizer::default()))
            .map_err(|e| tk_error("normalizer", e))?;
        inner.with_pre_tokenizer(Some(BertPreTokenizer));
        inner.with_decoder(Some(tokenizers::decoders::wordpiece::WordPiece::default()));
        let mut trainer: TrainerWrapper = WordPieceTrainer::builder()
            .vocab_size(vocab_size)
            .min_frequency(1)
            .show_progress(false)
            .special_tokens(
                SPECIAL_TOKENS
                    .iter()
                    .map(|t| AddedToken::from(*t, true))
                    .collect(),
            )
            .build()
            .into();
        inner
            .train(&mut trainer, corpus)
            .map_err(|e| tk_error("training", e))?;
        let id = |token: &str| {
            inner
                .token_to_id(token)
                .ok_or_else(|| Error::Invalid(format!("{token} missing")))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        inner.with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), sep),
            ("[CLS]".into(), cls),
        )));
        Self::with_policy(inner, max_length)
    }

    fn with_policy(mut inner: Tokenizer, max_length: usize) -> Result<Self> {
        if max_length == 0 {
            return Err(Error::Config("max_length must be positive".into()));
        }
        let pad_token = inner
            .get_padding()
            .map(|p| p.pad_token.clone())
            .unwrap_or_else(|| "[PAD]".into());
        let pad_id = inner.token_to_id(&pad_token).unwrap_or(0);
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            pad_token,
            ..Default::default()
        }));
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                ..Default::default()
            }))
            .map_err(|e| tk_error("truncation", e))?;
        Ok(Self { inner, max_length })
    }

    /// Writes the tokenizer as `tokenizer.json`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.inner
            .save(path, false)
            .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Truncation length.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The underlying Hugging Face tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Encodes texts with special tokens, padded to the longest in the batch.
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<EncodedBatch> {
        let inputs: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        let encodings = self
            .inner
            .encode_batch(inputs, true)
            .map_err(|e| tk_error("encoding", e))?;
        Ok(EncodedBatch {
            ids: encodings.iter().map(|e| e.get_ids().to_vec()).collect(),
            attention_mask: encodings
                .iter()
                .map(|e| e.get_attention_mask().to_vec())
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        [
            "a red circle hums low",
            "a blue square beeps high",
            "the green triangle is quiet",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn trained_vocabulary_round_trips_through_a_file() {
        let tokenizer = TextTokenizer::train_wordpiece(corpus().into_iter(), 200, 16).unwrap();
        let batch = tokenizer.encode_batch(&["a red square", "blue"]).unwrap();
        // [CLS] a red square [SEP] / [CLS] blue [SEP] [PAD] [PAD]
        assert_eq!(batch.len(), 5);
        assert_eq!(batch.attention_mask[1], vec![1, 1, 1, 0, 0]);
        assert_eq!(
            batch.ids[0][0],
            tokenizer.inner().token_to_id("[CLS]").unwrap()
        );
        let dir = std::env::temp_dir().join(format!("polymodal-tok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tokenizer.json");
        tokenizer.save(&file).unwrap();
        let loaded = TextTokenizer::from_file(&file, 16).unwrap();
        assert_eq!(
            loaded.encode_batch(&["a red square", "blue"]).unwrap(),
            batch
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn truncates_at_max_length() {
        let tokenizer = TextTokenizer::train_wordpiece(corpus().into_iter(), 200, 4).unwrap();
        let batch = tokenizer
            .encode_batch(&["a red circle hums low and long"])
            .unwrap();
        assert_eq!(batch.len(), 4);
    }

    #[test]
    fn missing_or_corrupt_files_are_errors() {
        assert!(matches!(
            TextTokenizer::from_file("/nonexistent/tokenizer.json", 8),
            Err(Error::Io { .. })
        ));
        let file =
            std::env::temp_dir().join(format!("polymodal-bad-tok-{}.json", std::process::id()));
        std::fs::write(&file, b"{ not json").unwrap();
        assert!(matches!(
            TextTokenizer::from_file(&file, 8),
            Err(Error::Decode { .. })
        ));
        std::fs::remove_file(file).unwrap();
    }
}
