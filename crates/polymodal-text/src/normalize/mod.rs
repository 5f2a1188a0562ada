//! Text normalisers for scoring transcripts: Whisper's English and basic
//! normalisers, written from OpenAI's published rules, behind one enum.
//!
//! ```
//! use polymodal_text::TextNormalizer;
//!
//! let english = TextNormalizer::English;
//! assert_eq!(english.normalize("Mr. Smith won't pay $20 million."), "mister smith will not pay $20000000");
//! assert_eq!(english.normalize("twenty one colours"), "21 colors");
//! ```

mod basic;
mod english;
mod numbers;

pub use basic::{BasicTextNormalizer, remove_symbols, remove_symbols_and_diacritics};
pub use english::EnglishTextNormalizer;

/// Which normaliser texts go through before they are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextNormalizer {
    /// Whisper's English normaliser ([`EnglishTextNormalizer`]).
    English,
    /// Whisper's basic normaliser, for any language ([`BasicTextNormalizer`]).
    Basic(BasicTextNormalizer),
    /// The text as it is.
    None,
}

impl TextNormalizer {
    /// The names [`TextNormalizer::from_name`] takes.
    pub const NAMES: [&str; 3] = ["english", "basic", "none"];

    /// The normaliser named `name` (`english`, `basic` or `none`).
    pub fn from_name(name: &str) -> polymodal_core::Result<Self> {
        match name {
            "english" => Ok(Self::English),
            "basic" => Ok(Self::Basic(BasicTextNormalizer::default())),
            "none" => Ok(Self::None),
            other => Err(polymodal_core::Error::Config(format!(
                "no text normaliser `{other}` (normalisers: {})",
                Self::NAMES.join(", ")
            ))),
        }
    }

    /// The normalised `text`.
    pub fn normalize(&self, text: &str) -> String {
        match self {
            Self::English => EnglishTextNormalizer.normalize(text),
            Self::Basic(basic) => basic.normalize(text),
            Self::None => text.to_string(),
        }
    }
}
