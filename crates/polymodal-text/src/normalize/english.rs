//! Whisper's English normaliser: what OpenAI's `EnglishTextNormalizer`
//! does before a word error rate is computed, so that `Mr.`/`mister`,
//! `won't`/`will not`, `twenty one`/`21` and `colour`/`color` count as the
//! same words.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use super::basic::{BRACKETED, PARENTHESISED, WHITESPACE, remove_symbols_and_diacritics};
use super::numbers::standardize_numbers;

/// British spellings and their American forms, from OpenAI Whisper
/// (`whisper/normalizers/english.json`, MIT licence, Copyright (c) 2022
/// OpenAI), itself from <https://www.tysto.com/uk-us-spelling-list.html>.
static SPELLINGS: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    serde_json::from_str(include_str!("english.json")).expect("the bundled spelling list")
});

/// Hesitations, dropped.
static HESITATIONS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(hmm|mm|mhm|mmm|uh|um)\b").expect("valid"));
static SPACE_APOSTROPHE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+'").expect("valid"));
static DIGIT_COMMA_DIGIT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(\d),(\d)").expect("valid"));
static PERIOD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\.([^0-9]|$)").expect("valid"));
static LONE_PREFIX_SYMBOL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[.$¢€£]([^0-9])").expect("valid"));
static LONE_PERCENT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"([^0-9])%").expect("valid"));

/// Contractions, titles and perfect tenses, in the reference's order.
const REPLACERS: &[(&str, &str)] = &[
    // common contractions
    (r"\bwon't\b", "will not"),
    (r"\bcan't\b", "can not"),
    (r"\blet's\b", "let us"),
    (r"\bain't\b", "aint"),
    (r"\by'all\b", "you all"),
    (r"\bwanna\b", "want to"),
    (r"\bgotta\b", "got to"),
    (r"\bgonna\b", "going to"),
    (r"\bi'ma\b", "i am going to"),
    (r"\bimma\b", "i am going to"),
    (r"\bwoulda\b", "would have"),
    (r"\bcoulda\b", "could have"),
    (r"\bshoulda\b", "should have"),
    (r"\bma'am\b", "madam"),
    // titles and other prefixes
    (r"\bmr\b", "mister "),
    (r"\bmrs\b", "missus "),
    (r"\bst\b", "saint "),
    (r"\bdr\b", "doctor "),
    (r"\bprof\b", "professor "),
    (r"\bcapt\b", "captain "),
    (r"\bgov\b", "governor "),
    (r"\bald\b", "alderman "),
    (r"\bgen\b", "general "),
    (r"\bsen\b", "senator "),
    (r"\brep\b", "representative "),
    (r"\bpres\b", "president "),
    (r"\brev\b", "reverend "),
    (r"\bhon\b", "honorable "),
    (r"\basst\b", "assistant "),
    (r"\bassoc\b", "associate "),
    (r"\blt\b", "lieutenant "),
    (r"\bcol\b", "colonel "),
    (r"\bjr\b", "junior "),
    (r"\bsr\b", "senior "),
    (r"\besq\b", "esquire "),
    // perfect tenses (`'s done` is ambiguous)
    (r"'d been\b", " had been"),
    (r"'s been\b", " has been"),
    (r"'d gone\b", " had gone"),
    (r"'s gone\b", " has gone"),
    (r"'d done\b", " had done"),
    (r"'s got\b", " has got"),
    // general contractions
    (r"n't\b", " not"),
    (r"'re\b", " are"),
    (r"'s\b", " is"),
    (r"'d\b", " would"),
    (r"'ll\b", " will"),
    (r"'t\b", " not"),
    (r"'ve\b", " have"),
    (r"'m\b", " am"),
];

static COMPILED_REPLACERS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    REPLACERS
        .iter()
        .map(|(pattern, with)| (Regex::new(pattern).expect("valid"), *with))
        .collect()
});

/// OpenAI Whisper's `EnglishTextNormalizer`: lower case; bracketed and
/// parenthesised words and hesitations (`um`, `hmm`) removed; contractions
/// and titles spelt out (`won't` → `will not`, `mr` → `mister`); symbols
/// and diacritics removed but for the numeric ones; spelled-out numbers as
/// digits ([`super::numbers`]); British spellings as American; one space
/// between words. Its outputs are checked against the reference's on
/// tricky strings (`tests/fixtures/parity/normalizer.json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnglishTextNormalizer;

impl EnglishTextNormalizer {
    /// The normalised `text`.
    pub fn normalize(&self, text: &str) -> String {
        let mut s = text.to_lowercase();
        s = BRACKETED.replace_all(&s, "").into_owned();
        s = PARENTHESISED.replace_all(&s, "").into_owned();
        s = HESITATIONS.replace_all(&s, "").into_owned();
        s = SPACE_APOSTROPHE.replace_all(&s, "'").into_owned();
        for (pattern, with) in COMPILED_REPLACERS.iter() {
            s = pattern.replace_all(&s, *with).into_owned();
        }
        s = DIGIT_COMMA_DIGIT.replace_all(&s, "${1}${2}").into_owned();
        s = PERIOD.replace_all(&s, " ${1}").into_owned();
        s = remove_symbols_and_diacritics(&s, ".%$¢€£");
        s = standardize_numbers(&s);
        s = s
            .split_whitespace()
            .map(|word| SPELLINGS.get(word).map_or(word, String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        // Prefix and suffix symbols that no number stands next to.
        s = LONE_PREFIX_SYMBOL.replace_all(&s, " ${1}").into_owned();
        s = LONE_PERCENT.replace_all(&s, "${1} ").into_owned();
        WHITESPACE.replace_all(&s, " ").into_owned()
    }
}
