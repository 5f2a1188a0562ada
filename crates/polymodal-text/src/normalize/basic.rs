//! Whisper's basic normaliser, for any language: lower case, no bracketed
//! or parenthesised words, symbols and punctuation as spaces.

use std::sync::LazyLock;

use regex::Regex;
use unicode_general_category::{GeneralCategory, get_general_category};
use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

/// Words between `<…>` or `[…]` (a tag such as `[laughs]`).
pub(super) static BRACKETED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[<\[][^>\]]*[>\]]").expect("valid"));
/// Words between parentheses (`(inaudible)`).
pub(super) static PARENTHESISED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\(([^)]+?)\)").expect("valid"));
pub(super) static WHITESPACE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\s+").expect("valid"));

/// Letters that NFKD does not split into a base letter and a mark.
const ADDITIONAL_DIACRITICS: [(char, &str); 16] = [
    ('œ', "oe"),
    ('Œ', "OE"),
    ('ø', "o"),
    ('Ø', "O"),
    ('æ', "ae"),
    ('Æ', "AE"),
    ('ß', "ss"),
    ('ẞ', "SS"),
    ('đ', "d"),
    ('Đ', "D"),
    ('ð', "d"),
    ('Ð', "D"),
    ('þ', "th"),
    ('Þ', "th"),
    ('ł', "l"),
    ('Ł', "L"),
];

/// Whether `c` is a mark, a symbol or punctuation (Unicode categories M*,
/// S*, P*).
fn is_mark_symbol_or_punctuation(c: char) -> bool {
    use GeneralCategory::*;
    matches!(
        get_general_category(c),
        NonspacingMark
            | SpacingMark
            | EnclosingMark
            | MathSymbol
            | CurrencySymbol
            | ModifierSymbol
            | OtherSymbol
            | ConnectorPunctuation
            | DashPunctuation
            | OpenPunctuation
            | ClosePunctuation
            | InitialPunctuation
            | FinalPunctuation
            | OtherPunctuation
    )
}

/// After NFKD: diacritics (non-spacing marks) dropped, the letters of
/// [`ADDITIONAL_DIACRITICS`] spelt out, other marks, symbols and
/// punctuation as spaces, except the characters in `keep`.
pub fn remove_symbols_and_diacritics(text: &str, keep: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.nfkd() {
        if keep.contains(c) {
            out.push(c);
        } else if let Some((_, spelt)) = ADDITIONAL_DIACRITICS.iter().find(|(d, _)| *d == c) {
            out.push_str(spelt);
        } else if get_general_category(c) == GeneralCategory::NonspacingMark {
        } else if is_mark_symbol_or_punctuation(c) {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// After NFKC: marks, symbols and punctuation as spaces, diacritics kept.
pub fn remove_symbols(text: &str) -> String {
    text.nfkc()
        .map(|c| {
            if is_mark_symbol_or_punctuation(c) {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// OpenAI Whisper's `BasicTextNormalizer`: lower case, words in brackets and
/// parentheses removed, marks, symbols and punctuation as spaces (with the
/// diacritics too when asked), runs of whitespace as one space. Leading and
/// trailing spaces stay, as in the reference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BasicTextNormalizer {
    /// Drop diacritics as well (`é` → `e`).
    pub remove_diacritics: bool,
    /// Put a space between the grapheme clusters (for scripts written
    /// without spaces between words).
    pub split_letters: bool,
}

impl BasicTextNormalizer {
    /// The normalised `text`.
    pub fn normalize(&self, text: &str) -> String {
        let text = text.to_lowercase();
        let text = BRACKETED.replace_all(&text, "");
        let text = PARENTHESISED.replace_all(&text, "");
        let text = if self.remove_diacritics {
            remove_symbols_and_diacritics(&text, "")
        } else {
            remove_symbols(&text)
        }
        .to_lowercase();
        let text = if self.split_letters {
            text.graphemes(true).collect::<Vec<_>>().join(" ")
        } else {
            text
        };
        WHITESPACE.replace_all(&text, " ").into_owned()
    }
}
