//! Tokenisation with Hugging Face `tokenizers`: load any `tokenizer.json`, or
//! train a WordPiece or byte-level BPE vocabulary on a corpus; batch-encode
//! texts or text pairs with the caller's padding and truncation policy.

use std::path::Path;

use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainer};
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    AddedToken, EncodeInput, Encoding, PaddingParams, PaddingStrategy, Tokenizer,
    TruncationDirection, TruncationParams, TruncationStrategy,
};

use burn::prelude::*;

use polymodal_core::{Error, Result, TokenBatch};

/// Special tokens of a trained vocabulary; they get ids 0.. in this order.
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// How a batch is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// No padding: sequences keep their own lengths.
    None,
    /// Pad every sequence to the longest of its batch.
    Longest,
    /// Pad every sequence to this length (longer ones are not cut: see [`Truncation`]).
    Fixed(usize),
}

/// Which end of a sequence loses tokens when it is too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Keep the beginning.
    Right,
    /// Keep the end.
    Left,
}

/// How over-long inputs are cut (special tokens count towards `max_length`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Longest encoded sequence.
    pub max_length: usize,
    /// Which end is cut.
    pub side: Side,
    /// For pairs: `LongestFirst` cuts the longer text token by token;
    /// `OnlyFirst` / `OnlySecond` cut only that text.
    pub strategy: TruncationStrategy,
}

impl Truncation {
    /// Cut at `max_length`, keeping the beginning, longest text first.
    pub fn at(max_length: usize) -> Self {
        Self {
            max_length,
            side: Side::Right,
            strategy: TruncationStrategy::LongestFirst,
        }
    }
}

/// Token ids of a batch with everything a Transformer needs. With padding,
/// all rows have one length; with [`Padding::None`] they may differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    /// `ids[sample][position]`.
    pub ids: Vec<Vec<u32>>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<Vec<u32>>,
    /// Segment of each token: 0 for the first text, 1 for the second of a pair.
    pub type_ids: Vec<Vec<u32>>,
    /// 1 for special tokens (`[CLS]`, `[SEP]`, padding).
    pub special_tokens_mask: Vec<Vec<u32>>,
    /// Byte range of each token in its input text (`(0, 0)` for special tokens).
    pub offsets: Vec<Vec<(usize, usize)>>,
}

impl EncodedBatch {
    fn from_encodings(encodings: &[Encoding]) -> Self {
        let rows = |f: fn(&Encoding) -> &[u32]| encodings.iter().map(|e| f(e).to_vec()).collect();
        Self {
            ids: rows(Encoding::get_ids),
            attention_mask: rows(Encoding::get_attention_mask),
            type_ids: rows(Encoding::get_type_ids),
            special_tokens_mask: rows(Encoding::get_special_tokens_mask),
            offsets: encodings.iter().map(|e| e.get_offsets().to_vec()).collect(),
        }
    }

    /// Length of the longest row.
    pub fn len(&self) -> usize {
        self.ids.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// Whether the batch has no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves the batch to `device` as ids and mask tensors. Rows must have
    /// one length (any [`Padding`] but `None`, or equal-length inputs).
    pub fn to_tensors(&self, device: &Device) -> Result<TokenBatch> {
        let (batch, length) = (self.ids.len(), self.len());
        if self.ids.iter().any(|row| row.len() != length) {
            return Err(Error::Invalid(
                "token rows have different lengths: pad the batch before making tensors".into(),
            ));
        }
        let ids: Vec<i64> = self.ids.iter().flatten().map(|&id| id as i64).collect();
        let mask: Vec<bool> = self
            .attention_mask
            .iter()
            .flatten()
            .map(|&m| m == 1)
            .collect();
        Ok(TokenBatch {
            ids: Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, length]), device),
            mask: Tensor::<2, Bool>::from_data(TensorData::new(mask, [batch, length]), device),
        })
    }
}

/// A tokenizer plus the caller's padding and truncation policy.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("padding", &self.padding())
            .field("truncation", &self.truncation())
            .finish()
    }
}

fn tk_error(context: &str, e: tokenizers::Error) -> Error {
    Error::Invalid(format!("{context}: {e}"))
}

impl TextTokenizer {
    /// Loads a Hugging Face `tokenizer.json` with the usual training policy:
    /// batches pad to their longest sequence and truncate at `max_length`.
    /// (The file's own padding and truncation settings are replaced; use
    /// [`TextTokenizer::from_file_as_saved`] to keep them.)
    pub fn from_file(path: impl AsRef<Path>, max_length: usize) -> Result<Self> {
        Self::from_file_as_saved(path)?
            .with_padding(Padding::Longest)?
            .with_truncation(Some(Truncation::at(max_length)))
    }

    /// Loads a `tokenizer.json` keeping its own padding and truncation
    /// settings (all-MiniLM-L6-v2's file, for one, pads every input to 128).
    pub fn from_file_as_saved(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if !path.is_file() {
            let e = std::fs::metadata(path)
                .err()
                .unwrap_or_else(|| std::io::Error::other("not a file"));
            return Err(Error::io(path, e));
        }
        // tokenizers 0.23 panics on some malformed files (an `expect` while
        // reading the decoder section; found by `cargo xtask fuzz`).
        let loaded = std::panic::catch_unwind(|| Tokenizer::from_file(path))
            .map_err(|_| Error::decode(path, "tokenizer", "malformed tokenizer file"))?;
        let inner = loaded.map_err(|e| Error::decode(path, "tokenizer", e))?;
        Ok(Self { inner })
    }

    /// Trains a lower-casing BERT-style WordPiece vocabulary on `corpus`
    /// (`[CLS] text [SEP]`), padding to the longest and truncating at `max_length`.
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
        let trainer: TrainerWrapper = WordPieceTrainer::builder()
            .vocab_size(vocab_size)
            .min_frequency(1)
            .show_progress(false)
            .special_tokens(special_tokens())
            .build()
            .into();
        Self::train(inner, trainer, corpus, max_length)
    }

    /// Trains a byte-level BPE vocabulary (GPT-2 style: any text, no unknown
    /// tokens, case kept) on `corpus`, with `[CLS] text [SEP]` around each
    /// input, padding to the longest and truncating at `max_length`.
    pub fn train_bpe<S: AsRef<str> + Send>(
        corpus: impl Iterator<Item = S> + Send,
        vocab_size: usize,
        max_length: usize,
    ) -> Result<Self> {
        let mut inner = Tokenizer::new(BPE::default());
        inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        inner.with_decoder(Some(ByteLevel::default()));
        let trainer: TrainerWrapper = BpeTrainer::builder()
            .vocab_size(vocab_size)
            .min_frequency(1)
            .show_progress(false)
            .special_tokens(special_tokens())
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build()
            .into();
        Self::train(inner, trainer, corpus, max_length)
    }

    /// Trains `inner`'s model, adds `[CLS] ... [SEP]` and the default policy.
    fn train<S: AsRef<str> + Send>(
        mut inner: Tokenizer,
        mut trainer: TrainerWrapper,
        corpus: impl Iterator<Item = S> + Send,
        max_length: usize,
    ) -> Result<Self> {
        inner
            .train(&mut trainer, corpus)
            .map_err(|e| tk_error("training", e))?;
        add_bert_processing(&mut inner)?;
        Self { inner }
            .with_padding(Padding::Longest)?
            .with_truncation(Some(Truncation::at(max_length)))
    }

    /// Sets the padding policy. The pad token is the file's, else `[PAD]`,
    /// else id 0.
    pub fn with_padding(mut self, padding: Padding) -> Result<Self> {
        let strategy = match padding {
            Padding::None => {
                self.inner.with_padding(None);
                return Ok(self);
            }
            Padding::Longest => PaddingStrategy::BatchLongest,
            Padding::Fixed(0) => {
                return Err(Error::Config("padding length must be positive".into()));
            }
            Padding::Fixed(n) => PaddingStrategy::Fixed(n),
        };
        let pad_token = self
            .inner
            .get_padding()
            .map(|p| p.pad_token.clone())
            .unwrap_or_else(|| "[PAD]".into());
        let pad_id = self.inner.token_to_id(&pad_token).unwrap_or(0);
        self.inner.with_padding(Some(PaddingParams {
            strategy,
            pad_id,
            pad_token,
            ..Default::default()
        }));
        Ok(self)
    }

    /// Sets (or, with `None`, removes) the truncation policy.
    pub fn with_truncation(mut self, truncation: Option<Truncation>) -> Result<Self> {
        let params = match truncation {
            None => None,
            Some(t) if t.max_length == 0 => {
                return Err(Error::Config("max_length must be positive".into()));
            }
            Some(t) => Some(TruncationParams {
                max_length: t.max_length,
                strategy: t.strategy,
                direction: match t.side {
                    Side::Right => TruncationDirection::Right,
                    Side::Left => TruncationDirection::Left,
                },
                stride: 0,
            }),
        };
        self.inner
            .with_truncation(params)
            .map_err(|e| Error::Config(format!("truncation: {e}")))?;
        Ok(self)
    }

    /// The padding policy in force.
    pub fn padding(&self) -> Padding {
        match self.inner.get_padding().map(|p| p.strategy.clone()) {
            None => Padding::None,
            Some(PaddingStrategy::BatchLongest) => Padding::Longest,
            Some(PaddingStrategy::Fixed(n)) => Padding::Fixed(n),
        }
    }

    /// The truncation policy in force.
    pub fn truncation(&self) -> Option<Truncation> {
        self.inner.get_truncation().map(|t| Truncation {
            max_length: t.max_length,
            side: match t.direction {
                TruncationDirection::Right => Side::Right,
                TruncationDirection::Left => Side::Left,
            },
            strategy: t.strategy,
        })
    }

    /// The truncation length, if any (the longest sequence a model sees).
    pub fn max_length(&self) -> Option<usize> {
        self.inner.get_truncation().map(|t| t.max_length)
    }

    /// Writes the tokenizer (with its policy) as `tokenizer.json`.
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

    /// The underlying Hugging Face tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Encodes texts with special tokens under the tokenizer's policy.
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<EncodedBatch> {
        let inputs: Vec<EncodeInput> = texts.iter().map(|t| t.as_ref().into()).collect();
        self.encode(inputs)
    }

    /// Encodes text pairs (question/context, caption/ocr, ...) as one
    /// sequence each, with type id 1 on the second text.
    pub fn encode_pairs<A: AsRef<str>, B: AsRef<str>>(
        &self,
        pairs: &[(A, B)],
    ) -> Result<EncodedBatch> {
        let inputs: Vec<EncodeInput> = pairs
            .iter()
            .map(|(a, b)| (a.as_ref(), b.as_ref()).into())
            .collect();
        self.encode(inputs)
    }

    fn encode(&self, inputs: Vec<EncodeInput>) -> Result<EncodedBatch> {
        // `encode_batch_char_offsets` would give char offsets; byte offsets
        // slice the Rust string directly, so keep `encode_batch`.
        let encodings = self
            .inner
            .encode_batch(inputs, true)
            .map_err(|e| tk_error("encoding", e))?;
        Ok(EncodedBatch::from_encodings(&encodings))
    }
}

fn special_tokens() -> Vec<AddedToken> {
    SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect()
}

fn add_bert_processing(inner: &mut Tokenizer) -> Result<()> {
    let id = |token: &str| {
        inner
            .token_to_id(token)
            .ok_or_else(|| Error::Invalid(format!("{token} missing from the trained vocabulary")))
    };
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    inner.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), sep),
        ("[CLS]".into(), cls),
    )));
    Ok(())
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
    fn pairs_get_segment_ids_and_fixed_padding() {
        let tokenizer = TextTokenizer::train_wordpiece(corpus().into_iter(), 200, 16)
            .unwrap()
            .with_padding(Padding::Fixed(12))
            .unwrap();
        let batch = tokenizer.encode_pairs(&[("a red circle", "blue")]).unwrap();
        // [CLS] a red circle [SEP] blue [SEP] + 5 x [PAD]
        assert_eq!(batch.ids[0].len(), 12);
        assert_eq!(batch.type_ids[0][..7], [0, 0, 0, 0, 0, 1, 1]);
        assert_eq!(batch.special_tokens_mask[0][..7], [1, 0, 0, 0, 1, 0, 1]);
        assert_eq!(batch.offsets[0][2], (2, 5)); // "red"
    }

    #[test]
    fn unpadded_rows_keep_their_lengths_and_refuse_to_become_tensors() {
        let tokenizer = TextTokenizer::train_wordpiece(corpus().into_iter(), 200, 16)
            .unwrap()
            .with_padding(Padding::None)
            .unwrap();
        let batch = tokenizer.encode_batch(&["a red square", "blue"]).unwrap();
        assert_eq!((batch.ids[0].len(), batch.ids[1].len()), (5, 3));
        assert!(batch.to_tensors(&Device::flex()).is_err());
    }

    #[test]
    fn byte_level_bpe_encodes_any_text_without_unknowns() {
        let tokenizer = TextTokenizer::train_bpe(corpus().into_iter(), 300, 64).unwrap();
        let text = "Ünïcødé 東京 😀 text";
        let batch = tokenizer.encode_batch(&[text]).unwrap();
        let decoded = tokenizer.inner().decode(&batch.ids[0], true).unwrap();
        assert_eq!(decoded, text);
    }

    #[test]
    fn zero_lengths_are_config_errors() {
        let tokenizer = TextTokenizer::train_wordpiece(corpus().into_iter(), 200, 16).unwrap();
        assert!(tokenizer.clone().with_padding(Padding::Fixed(0)).is_err());
        assert!(tokenizer.with_truncation(Some(Truncation::at(0))).is_err());
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
