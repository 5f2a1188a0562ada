//! Which token may come next: the suppression rules of
//! `generation_config.json` and Whisper's timestamp rules, applied on the
//! host to one row of scores at a time, in the order transformers applies
//! its logits processors (begin-suppressed, suppressed, then timestamps).

/// The rules for one decoding: suppressed tokens, and the timestamp rules
/// when timestamps are predicted.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    /// Never generated.
    pub suppress: Vec<u32>,
    /// Not generated first.
    pub begin_suppress: Vec<u32>,
    /// Present when the prompt asks for timestamps.
    pub timestamps: Option<TimestampRules>,
}

/// Whisper's timestamp rules (OpenAI's `ApplyTimestampRules`, transformers'
/// `WhisperTimeStampLogitsProcessor`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimestampRules {
    /// `<|0.00|>`: this token and every one after it is a timestamp.
    pub begin: u32,
    /// `<|notimestamps|>`, never generated in this mode.
    pub no_timestamps: u32,
    /// `<|endoftext|>`: the text tokens are the ones below it.
    pub eos: u32,
    /// The latest timestamp allowed first, counted from `<|0.00|>`
    /// (`max_initial_timestamp_index`; none when the configuration has none).
    pub max_initial: Option<u32>,
}

impl Rules {
    /// Rules out, in `scores` (one row over the vocabulary), what may not
    /// follow the `generated` tokens (those after the prompt).
    pub fn apply(&self, generated: &[u32], scores: &mut [f32]) {
        let first = generated.is_empty();
        let suppressed = self
            .suppress
            .iter()
            .chain(self.begin_suppress.iter().filter(|_| first));
        for &token in suppressed {
            if let Some(score) = scores.get_mut(token as usize) {
                *score = f32::NEG_INFINITY;
            }
        }
        if let Some(timestamps) = &self.timestamps {
            timestamps.apply(generated, scores);
        }
    }
}

impl TimestampRules {
    fn is_timestamp(&self, token: u32) -> bool {
        token >= self.begin
    }

    fn apply(&self, generated: &[u32], scores: &mut [f32]) {
        let vocab = scores.len();
        let begin = (self.begin as usize).min(vocab);
        let rule_out = |scores: &mut [f32], range: std::ops::Range<usize>| {
            let range = range.start.min(vocab)..range.end.min(vocab);
            scores[range].fill(f32::NEG_INFINITY);
        };
        if let Some(score) = scores.get_mut(self.no_timestamps as usize) {
            *score = f32::NEG_INFINITY;
        }
        // Timestamps come in pairs (start of one segment, end of the one
        // before), except the last one before <|endoftext|>.
        let n = generated.len();
        let last_was_timestamp = n >= 1 && self.is_timestamp(generated[n - 1]);
        let penultimate_was_timestamp = n < 2 || self.is_timestamp(generated[n - 2]);
        if last_was_timestamp {
            if penultimate_was_timestamp {
                rule_out(scores, begin..vocab);
            } else {
                rule_out(scores, 0..self.eos as usize);
            }
        }
        // Time does not go back: no timestamp below the latest one (nor the
        // latest again, unless it closes a pair).
        if let Some(&latest) = generated.iter().rev().find(|&&t| self.is_timestamp(t)) {
            let floor = if last_was_timestamp && !penultimate_was_timestamp {
                latest
            } else {
                latest + 1
            };
            rule_out(scores, begin..floor as usize);
        }
        if generated.is_empty() {
            // The text starts with a timestamp, and not too late.
            rule_out(scores, 0..begin);
            if let Some(max) = self.max_initial {
                rule_out(scores, begin + max as usize + 1..vocab);
            }
        }
        // When all timestamps together are likelier than any one text
        // token, the next token is a timestamp.
        let total = log_sum_exp(scores);
        let timestamps = log_sum_exp(&scores[begin..]) - total;
        let best_text = scores[..begin]
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max)
            - total;
        if timestamps > best_text {
            rule_out(scores, 0..begin);
        }
    }
}

pub(crate) use polymodal_core::cpu::log_sum_exp;

/// `scores` as log-probabilities, in place.
pub(crate) fn log_softmax(scores: &mut [f32]) {
    let total = log_sum_exp(scores);
    scores.iter_mut().for_each(|s| *s -= total);
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: u32 = 10;

    fn rules() -> Rules {
        Rules {
            suppress: vec![1],
            begin_suppress: vec![2],
            timestamps: Some(TimestampRules {
                begin: BEGIN,
                no_timestamps: 9,
                eos: 7,
                max_initial: Some(2),
            }),
        }
    }

    fn allowed(generated: &[u32], scores: &[f32]) -> Vec<usize> {
        let mut scores = scores.to_vec();
        rules().apply(generated, &mut scores);
        (0..scores.len())
            .filter(|&i| scores[i] > f32::NEG_INFINITY)
            .collect()
    }

    #[test]
    fn the_first_token_is_an_early_timestamp() {
        // Text is far likelier, but the first token must be <|0.00|>..<|0.04|>.
        let mut scores = vec![0.0; 16];
        scores[3] = 10.0;
        assert_eq!(allowed(&[], &scores), vec![10, 11, 12]);
    }

    #[test]
    fn timestamps_come_in_pairs_and_never_go_back() {
        let mut scores = vec![0.0; 16];
        scores[3] = 10.0;
        // After the opening timestamp: anything but a timestamp.
        assert_eq!(allowed(&[11], &scores), vec![0, 2, 3, 4, 5, 6, 7, 8]);
        // After text: text, or a timestamp later than the opening one.
        assert_eq!(
            allowed(&[11, 3], &scores),
            vec![0, 2, 3, 4, 5, 6, 7, 8, 12, 13, 14, 15]
        );
        // After text and a closing timestamp: a timestamp (the same one may
        // open the next segment), or <|endoftext|> and the tokens after it.
        scores[7] = 5.0;
        assert_eq!(allowed(&[11, 3, 13], &scores), vec![7, 8, 13, 14, 15]);
    }

    #[test]
    fn likely_timestamps_together_win_over_text() {
        // Four timestamps at 0 together (ln 4 ≈ 1.39) outweigh one text
        // token at 1.2, not one at 2.
        let mut scores = vec![f32::NEG_INFINITY; 16];
        scores[3] = 1.2;
        scores[10..].fill(0.0);
        assert_eq!(allowed(&[11, 3], &scores), vec![12, 13, 14, 15]);
        scores[3] = 2.0;
        assert_eq!(allowed(&[11, 3], &scores), vec![3, 12, 13, 14, 15]);
    }
}
