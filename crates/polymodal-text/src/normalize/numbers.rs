//! Spelled-out English numbers as digits, as Whisper's
//! `EnglishNumberNormalizer` writes them: `twenty one` → `21`, `one oh
//! one` → `101`, `five and a half` → `5.5`, `$20 million` → `$20000000`,
//! `fifty percent` → `50%`, ordinals and plurals keep their suffix
//! (`twenty first` → `21st`, `the sixties` → `the 60s`).
//!
//! The rules, quirks included, are the reference's, word for word; where
//! the reference computes with unbounded integers this port uses `u128`
//! and, past 3.4 × 10³⁸, treats the number as digits it cannot add to.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::{Captures, Regex};

const ONES: [&str; 19] = [
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [(&str, u128); 8] = [
    ("twenty", 20),
    ("thirty", 30),
    ("forty", 40),
    ("fifty", 50),
    ("sixty", 60),
    ("seventy", 70),
    ("eighty", 80),
    ("ninety", 90),
];
const MULTIPLIERS: [(&str, u32); 12] = [
    ("hundred", 2),
    ("thousand", 3),
    ("million", 6),
    ("billion", 9),
    ("trillion", 12),
    ("quadrillion", 15),
    ("quintillion", 18),
    ("sextillion", 21),
    ("septillion", 24),
    ("octillion", 27),
    ("nonillion", 30),
    ("decillion", 33),
];
const ZEROS: [&str; 3] = ["o", "oh", "zero"];
const PRECEDING_PREFIXERS: [(&str, &str); 4] = [
    ("minus", "-"),
    ("negative", "-"),
    ("plus", "+"),
    ("positive", "+"),
];
const FOLLOWING_PREFIXERS: [(&str, &str); 8] = [
    ("pound", "£"),
    ("pounds", "£"),
    ("euro", "€"),
    ("euros", "€"),
    ("dollar", "$"),
    ("dollars", "$"),
    ("cent", "¢"),
    ("cents", "¢"),
];
const SPECIALS: [&str; 4] = ["and", "double", "triple", "point"];

/// The word tables, built once.
struct Words {
    ones: HashMap<String, u128>,
    /// Plurals and ordinals of the ones: value and suffix.
    ones_suffixed: HashMap<String, (u128, &'static str)>,
    tens: HashMap<String, u128>,
    tens_suffixed: HashMap<String, (u128, &'static str)>,
    /// Power of ten of each multiplier.
    multipliers: HashMap<String, u32>,
    multipliers_suffixed: HashMap<String, (u32, &'static str)>,
    /// Every word that can be part of a number.
    all: std::collections::HashSet<String>,
}

static WORDS: LazyLock<Words> = LazyLock::new(|| {
    let ones: HashMap<String, u128> = ONES
        .iter()
        .zip(1..)
        .map(|(n, v)| (n.to_string(), v))
        .collect();
    let mut ones_suffixed = HashMap::new();
    for (name, &value) in &ones {
        let plural = if name == "six" {
            "sixes".to_string()
        } else {
            format!("{name}s")
        };
        ones_suffixed.insert(plural, (value, "s"));
    }
    for (name, value) in [
        ("zeroth", 0),
        ("first", 1),
        ("second", 2),
        ("third", 3),
        ("fifth", 5),
        ("twelfth", 12),
    ] {
        ones_suffixed.insert(name.to_string(), (value, "th"));
    }
    for (name, &value) in &ones {
        if value > 3 && value != 5 && value != 12 {
            // As the reference spells them: `eighth`, but also `nineth`.
            let suffix = if name.ends_with('t') { "h" } else { "th" };
            ones_suffixed.insert(format!("{name}{suffix}"), (value, "th"));
        }
    }
    // The reference's table gives `st`, `nd`, `rd` to first, second, third.
    for (name, suffix) in [("first", "st"), ("second", "nd"), ("third", "rd")] {
        ones_suffixed.get_mut(name).expect("inserted").1 = suffix;
    }
    let tens: HashMap<String, u128> = TENS.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    let mut tens_suffixed = HashMap::new();
    for (name, value) in TENS {
        tens_suffixed.insert(name.replace('y', "ies"), (value, "s"));
        tens_suffixed.insert(name.replace('y', "ieth"), (value, "th"));
    }
    let multipliers: HashMap<String, u32> = MULTIPLIERS
        .iter()
        .map(|(n, p)| (n.to_string(), *p))
        .collect();
    let mut multipliers_suffixed = HashMap::new();
    for (name, power) in MULTIPLIERS {
        multipliers_suffixed.insert(format!("{name}s"), (power, "s"));
        multipliers_suffixed.insert(format!("{name}th"), (power, "th"));
    }
    let mut all: std::collections::HashSet<String> = ZEROS.iter().map(|s| s.to_string()).collect();
    all.extend(ones.keys().cloned());
    all.extend(ones_suffixed.keys().cloned());
    all.extend(tens.keys().cloned());
    all.extend(tens_suffixed.keys().cloned());
    all.extend(multipliers.keys().cloned());
    all.extend(multipliers_suffixed.keys().cloned());
    all.extend(PRECEDING_PREFIXERS.iter().map(|(w, _)| w.to_string()));
    all.extend(FOLLOWING_PREFIXERS.iter().map(|(w, _)| w.to_string()));
    all.extend(["per", "percent"].map(String::from));
    all.extend(SPECIALS.map(String::from));
    Words {
        ones,
        ones_suffixed,
        tens,
        tens_suffixed,
        multipliers,
        multipliers_suffixed,
        all,
    }
});

static ARABIC: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\d+(\.\d+)?$").expect("valid"));
static AND_A_HALF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\band\s+a\s+half\b").expect("valid"));
static LETTER_DIGIT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([a-z])([0-9])").expect("valid"));
static DIGIT_LETTER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([0-9])([a-z])").expect("valid"));
static SUFFIX: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([0-9])\s+(st|nd|rd|th|s)\b").expect("valid"));
static CURRENCY_AND_CENTS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([€£$])([0-9]+) (?:and )?¢([0-9]{1,2})\b").expect("valid"));
// The reference's `.` here matches any character, not only a point.
static ZERO_CURRENCY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[€£$]0.([0-9]{1,2})\b").expect("valid"));
static ONE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b1(s?)\b").expect("valid"));

/// The number being read: an integer, or digits kept as text (decimals,
/// digit by digit readings such as `one oh one`).
#[derive(Debug, Clone)]
enum Value {
    Int(u128),
    Text(String),
}

impl Value {
    fn text(&self) -> String {
        match self {
            Value::Int(n) => n.to_string(),
            Value::Text(s) => s.clone(),
        }
    }

    /// Python's `str(value or "")`: empty for zero and for no value.
    fn or_empty(value: &Option<Value>) -> String {
        match value {
            None | Some(Value::Int(0)) => String::new(),
            Some(v) => v.text(),
        }
    }
}

/// `text` (digits, one optional point) times `10^power`, when that is a
/// whole number; `None` when `text` is not such a number or the product
/// is not whole (Python's `Fraction(text) * multiplier`).
fn times_power_of_ten(text: &str, power: u32) -> Option<Value> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let is_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if !is_digits(int) || !is_digits(frac) || int.len() + frac.len() == 0 {
        return None;
    }
    let frac = frac.trim_end_matches('0');
    let zeros = (power as usize).checked_sub(frac.len())?;
    let digits = format!("{int}{frac}{}", "0".repeat(zeros));
    let digits = digits.trim_start_matches('0');
    Some(int_value(if digits.is_empty() { "0" } else { digits }))
}

/// Digits as an integer value, or as text past `u128`.
fn int_value(digits: &str) -> Value {
    digits
        .parse::<u128>()
        .map_or_else(|_| Value::Text(digits.to_string()), Value::Int)
}

/// `before + residual × 10^power` of the reference's multiplier rule
/// (`value // 1000 * 1000 + value % 1000 * multiplier`).
fn multiply(value: u128, power: u32) -> Option<u128> {
    let before = value / 1000 * 1000;
    let residual = value % 1000;
    10u128
        .checked_pow(power)
        .and_then(|m| residual.checked_mul(m))
        .and_then(|r| r.checked_add(before))
}

/// The number reader over the words of one text.
#[derive(Default)]
struct Reader {
    prefix: Option<String>,
    value: Option<Value>,
    out: Vec<String>,
}

impl Reader {
    /// Writes `result` with the pending prefix and forgets the number.
    fn output(&mut self, result: String) {
        let result = match self.prefix.take() {
            Some(prefix) => prefix + &result,
            None => result,
        };
        self.value = None;
        self.out.push(result);
    }

    fn output_value(&mut self) {
        if let Some(value) = self.value.take() {
            self.output(value.text());
        }
    }

    /// `tens` joined to the number being read: added to a whole hundred,
    /// written after anything else.
    fn join_tens(&self, tens: u128) -> Value {
        match &self.value {
            None => Value::Int(tens),
            Some(Value::Int(v)) if v % 100 == 0 => v
                .checked_add(tens)
                .map_or_else(|| Value::Text(format!("{v}{tens}")), Value::Int),
            Some(value) => Value::Text(format!("{}{tens}", value.text())),
        }
    }

    /// The digit(s) `ones` joined to the number being read, as the
    /// reference does for a ones word (`suffix` empty) or a suffixed one.
    fn join_ones(&self, ones: u128, prev: Option<&str>, w: &Words) -> Value {
        let prev_in = |map: &HashMap<String, u128>| prev.is_some_and(|p| map.contains_key(p));
        let Some(value) = &self.value else {
            return Value::Int(ones);
        };
        let text = value.text();
        match value {
            Value::Int(n) if !prev_in(&w.ones) => {
                let round = if ones < 10 { 10 } else { 100 };
                match n.checked_add(ones) {
                    Some(sum) if n % round == 0 => Value::Int(sum),
                    _ => Value::Text(format!("{text}{ones}")),
                }
            }
            // After a tens word the digit replaces its zero.
            _ if prev_in(&w.tens) && ones < 10 && text.ends_with('0') => {
                Value::Text(format!("{}{ones}", &text[..text.len() - 1]))
            }
            _ => Value::Text(format!("{text}{ones}")),
        }
    }

    fn word(&mut self, prev: Option<&str>, current: &str, next: Option<&str>) -> bool {
        let w = &*WORDS;
        let next_is_numeric = next.is_some_and(|n| ARABIC.is_match(n));
        let first = current.chars().next().unwrap_or(' ');
        let has_prefix = "-+£€$¢".contains(first);
        let without_prefix = if has_prefix {
            &current[first.len_utf8()..]
        } else {
            current
        };
        let next_in = |set: &dyn Fn(&str) -> bool| next.is_some_and(set);
        if ARABIC.is_match(without_prefix) {
            if let Some(value) = &self.value {
                if let Value::Text(text) = value
                    && text.ends_with('.')
                {
                    // Decimals, and the parts of an address.
                    self.value = Some(Value::Text(format!("{text}{current}")));
                    return false;
                }
                self.output_value();
            }
            if has_prefix {
                self.prefix = Some(first.to_string());
            }
            // Whole numbers (`5.0` too) as integers, as `Fraction` reads them.
            self.value = Some(
                times_power_of_ten(without_prefix, 0)
                    .unwrap_or_else(|| Value::Text(without_prefix.to_string())),
            );
        } else if !w.all.contains(current) {
            self.output_value();
            self.output(current.to_string());
        } else if ZEROS.contains(&current) {
            self.value = Some(Value::Text(Value::or_empty(&self.value) + "0"));
        } else if let Some(&ones) = w.ones.get(current) {
            self.value = Some(self.join_ones(ones, prev, w));
        } else if let Some(&(ones, suffix)) = w.ones_suffixed.get(current) {
            let joined = self.join_ones(ones, prev, w).text();
            self.output(joined + suffix);
        } else if let Some(&tens) = w.tens.get(current) {
            self.value = Some(self.join_tens(tens));
        } else if let Some(&(tens, suffix)) = w.tens_suffixed.get(current) {
            let joined = self.join_tens(tens).text();
            self.output(joined + suffix);
        } else if let Some(&power) = w.multipliers.get(current) {
            let multiplier = int_value(&format!("1{}", "0".repeat(power as usize)));
            match self.value.clone() {
                None => self.value = Some(multiplier),
                Some(Value::Int(v)) if v != 0 => {
                    self.value = Some(match multiply(v, power) {
                        Some(product) => Value::Int(product),
                        None => {
                            self.output_value();
                            multiplier
                        }
                    });
                }
                Some(value) => match times_power_of_ten(&value.text(), power) {
                    Some(product) => self.value = Some(product),
                    None => {
                        self.output_value();
                        self.value = Some(multiplier);
                    }
                },
            }
        } else if let Some(&(power, suffix)) = w.multipliers_suffixed.get(current) {
            let multiplier = format!("1{}", "0".repeat(power as usize));
            match self.value.clone() {
                None => self.output(multiplier + suffix),
                Some(Value::Text(text)) => match times_power_of_ten(&text, power) {
                    Some(product) => self.output(product.text() + suffix),
                    None => {
                        self.output(text);
                        self.output(multiplier + suffix);
                    }
                },
                Some(Value::Int(v)) => match multiply(v, power) {
                    Some(product) => self.output(product.to_string() + suffix),
                    None => {
                        self.output(v.to_string());
                        self.output(multiplier + suffix);
                    }
                },
            }
            self.value = None;
        } else if let Some((_, sign)) = PRECEDING_PREFIXERS.iter().find(|(w, _)| *w == current) {
            self.output_value();
            if next_in(&|n| w.all.contains(n)) || next_is_numeric {
                self.prefix = Some(sign.to_string());
            } else {
                self.output(current.to_string());
            }
        } else if let Some((_, symbol)) = FOLLOWING_PREFIXERS.iter().find(|(w, _)| *w == current) {
            if self.value.is_some() {
                self.prefix = Some(symbol.to_string());
                self.output_value();
            } else {
                self.output(current.to_string());
            }
        } else if current == "per" || current == "percent" {
            match self.value.take() {
                Some(value) if current == "percent" => self.output(value.text() + "%"),
                Some(value) if next == Some("cent") => {
                    self.output(value.text() + "%");
                    return true;
                }
                Some(value) => {
                    self.output(value.text());
                    self.output(current.to_string());
                }
                None => self.output(current.to_string()),
            }
        } else {
            return self.special(prev, current, next, next_is_numeric);
        }
        false
    }

    /// `and`, `double`, `triple`, `point`; whether the next word is used up.
    fn special(
        &mut self,
        prev: Option<&str>,
        current: &str,
        next: Option<&str>,
        next_is_numeric: bool,
    ) -> bool {
        let w = &*WORDS;
        if !next.is_some_and(|n| w.all.contains(n)) && !next_is_numeric {
            // Only before a word that can be part of a number.
            self.output_value();
            self.output(current.to_string());
            return false;
        }
        match current {
            "and" => {
                // Ignored after hundreds, thousands, …
                if !prev.is_some_and(|p| w.multipliers.contains_key(p)) {
                    self.output_value();
                    self.output(current.to_string());
                }
            }
            "double" | "triple" => {
                let next = next.unwrap_or_default();
                if w.ones.contains_key(next) || ZEROS.contains(&next) {
                    let repeats = if current == "double" { 2 } else { 3 };
                    let ones = w.ones.get(next).copied().unwrap_or(0);
                    let digits = ones.to_string().repeat(repeats);
                    self.value = Some(Value::Text(Value::or_empty(&self.value) + &digits));
                    return true;
                }
                self.output_value();
                self.output(current.to_string());
            }
            _ => {
                // `point`
                let next = next.unwrap_or_default();
                let decimal =
                    w.ones.contains_key(next) || w.tens.contains_key(next) || ZEROS.contains(&next);
                if decimal || next_is_numeric {
                    self.value = Some(Value::Text(Value::or_empty(&self.value) + "."));
                }
            }
        }
        false
    }
}

/// `<number> and a half` as `<number> point five`; spaces between digits
/// and letters, but not before a suffix (`1960 s` → `1960s`).
fn preprocess(text: &str) -> String {
    let w = &*WORDS;
    let segments: Vec<&str> = AND_A_HALF.split(text).collect();
    let mut results: Vec<&str> = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        if segment.trim().is_empty() {
            continue;
        }
        results.push(segment);
        if i + 1 < segments.len() {
            let last = segment.split_whitespace().next_back().unwrap_or("");
            let numeric = w.ones.contains_key(last)
                || w.tens.contains_key(last)
                || ZEROS.contains(&last)
                || w.multipliers.contains_key(last);
            results.push(if numeric { "point five" } else { "and a half" });
        }
    }
    let text = results.join(" ");
    let text = LETTER_DIGIT.replace_all(&text, "${1} ${2}");
    let text = DIGIT_LETTER.replace_all(&text, "${1} ${2}");
    SUFFIX.replace_all(&text, "${1}${2}").into_owned()
}

/// Cents joined to their currency (`$2 and ¢7` → `$2.07`), and `1(s)`
/// written `one(s)`.
fn postprocess(text: &str) -> String {
    let text = CURRENCY_AND_CENTS.replace_all(text, |c: &Captures| {
        let cents: u32 = c[3].parse().expect("one or two digits");
        format!("{}{}.{cents:02}", &c[1], &c[2])
    });
    let text = ZERO_CURRENCY.replace_all(&text, |c: &Captures| {
        let cents: u32 = c[1].parse().expect("one or two digits");
        format!("¢{cents}")
    });
    ONE.replace_all(&text, "one${1}").into_owned()
}

/// Spelled-out numbers in `text` (lower case, symbols removed) as digits.
pub(super) fn standardize_numbers(text: &str) -> String {
    let text = preprocess(text);
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut reader = Reader::default();
    let mut skip = false;
    for (i, &current) in words.iter().enumerate() {
        if std::mem::take(&mut skip) {
            continue;
        }
        let prev = i.checked_sub(1).map(|j| words[j]);
        let next = words.get(i + 1).copied();
        skip = reader.word(prev, current, next);
    }
    reader.output_value();
    postprocess(&reader.out.join(" "))
}
