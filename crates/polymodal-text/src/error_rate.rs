//! Word and character error rates: the edits (substitutions, deletions,
//! insertions) that turn a reference into a hypothesis, over the number of
//! reference words or characters, as jiwer counts them. Normalise both
//! texts first ([`crate::TextNormalizer`]); over a corpus, add the counts
//! and take the rate of the sum.
//!
//! ```
//! use polymodal_text::ErrorCounts;
//!
//! let counts = ErrorCounts::words("the cat sat on the mat", "the cat sat on a mat");
//! assert_eq!((counts.substitutions, counts.reference_len), (1, 6));
//! assert_eq!(counts.rate(), Some(1.0 / 6.0));
//! ```

use std::ops::AddAssign;

/// The edits between a reference and a hypothesis, and the reference's
/// length (in words or characters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// Reference tokens replaced by another.
    pub substitutions: usize,
    /// Reference tokens missing from the hypothesis.
    pub deletions: usize,
    /// Hypothesis tokens not in the reference.
    pub insertions: usize,
    /// Tokens in the reference.
    pub reference_len: usize,
}

impl ErrorCounts {
    /// The edits between the whitespace-separated words of `reference`
    /// and of `hypothesis`.
    pub fn words(reference: &str, hypothesis: &str) -> Self {
        let reference: Vec<&str> = reference.split_whitespace().collect();
        let hypothesis: Vec<&str> = hypothesis.split_whitespace().collect();
        Self::between(&reference, &hypothesis)
    }

    /// The edits between the characters of `reference` and of
    /// `hypothesis`, spaces inside them included, leading and trailing
    /// whitespace not (as jiwer's `cer`).
    pub fn chars(reference: &str, hypothesis: &str) -> Self {
        let reference: Vec<char> = reference.trim().chars().collect();
        let hypothesis: Vec<char> = hypothesis.trim().chars().collect();
        Self::between(&reference, &hypothesis)
    }

    /// The fewest edits that turn `reference` into `hypothesis`
    /// (Levenshtein), split by kind; among alignments with as few edits, the
    /// one preferring substitutions, then deletions.
    pub fn between<T: PartialEq>(reference: &[T], hypothesis: &[T]) -> Self {
        // One row of the dynamic programme: the counts that turn the first
        // `i` reference tokens into the first `j` hypothesis tokens.
        let mut row: Vec<Self> = (0..=hypothesis.len())
            .map(|j| Self {
                insertions: j,
                ..Self::default()
            })
            .collect();
        for (i, r) in reference.iter().enumerate() {
            let mut diagonal = row[0];
            row[0] = Self {
                deletions: i + 1,
                ..Self::default()
            };
            for (j, h) in hypothesis.iter().enumerate() {
                let mut substitute = diagonal;
                substitute.substitutions += usize::from(r != h);
                let mut delete = row[j + 1];
                delete.deletions += 1;
                let mut insert = row[j];
                insert.insertions += 1;
                diagonal = row[j + 1];
                row[j + 1] = [substitute, delete, insert]
                    .into_iter()
                    .min_by_key(Self::edits)
                    .expect("three candidates");
            }
        }
        Self {
            reference_len: reference.len(),
            ..row[hypothesis.len()]
        }
    }

    /// Substitutions, deletions and insertions together.
    pub fn edits(&self) -> usize {
        self.substitutions + self.deletions + self.insertions
    }

    /// Edits per reference token; `None` for an empty reference.
    pub fn rate(&self) -> Option<f64> {
        (self.reference_len > 0).then(|| self.edits() as f64 / self.reference_len as f64)
    }
}

impl AddAssign for ErrorCounts {
    fn add_assign(&mut self, other: Self) {
        self.substitutions += other.substitutions;
        self.deletions += other.deletions;
        self.insertions += other.insertions;
        self.reference_len += other.reference_len;
    }
}

/// The word error rate of `hypothesis` against `reference` (no
/// normalisation); `None` when the reference has no word.
pub fn word_error_rate(reference: &str, hypothesis: &str) -> Option<f64> {
    ErrorCounts::words(reference, hypothesis).rate()
}

/// The character error rate of `hypothesis` against `reference`; `None`
/// when the reference is empty.
pub fn char_error_rate(reference: &str, hypothesis: &str) -> Option<f64> {
    ErrorCounts::chars(reference, hypothesis).rate()
}
