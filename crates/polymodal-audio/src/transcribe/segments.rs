//! One window's tokens cut into timed segments, and how far the next window
//! starts: the sequential long-form algorithm of OpenAI's `transcribe`, as
//! transformers' `_retrieve_segment` writes it.

use std::ops::Range;

/// Seconds per timestamp token (`<|0.02|>` follows `<|0.00|>`).
pub const TIME_PRECISION: f64 = 0.02;

/// Feature frames per timestamp step: the encoder's two convolutions halve
/// the 100 frames per second once.
const INPUT_STRIDE: usize = 2;

/// Seconds per feature frame.
const FRAME_SECS: f64 = 0.01;

/// A span of a window's tokens and its times in seconds from the start of
/// the input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Span {
    pub start: f64,
    pub end: f64,
    pub tokens: Range<usize>,
}

/// Cuts `tokens` (generated for the window starting at feature frame
/// `seek`, `frames` frames of input long, `<|endoftext|>` removed) at their
/// timestamp pairs. Returns the spans, and by how many frames to move the
/// window: to the last complete segment's end, or past the window when the
/// text ends on a single timestamp (nothing more was said) or has no pair.
pub(crate) fn split(tokens: &[u32], begin: u32, seek: usize, frames: usize) -> (Vec<Span>, usize) {
    let offset = seek as f64 * TIME_PRECISION / INPUT_STRIDE as f64;
    let at = |i: usize| offset + f64::from(tokens[i] - begin) * TIME_PRECISION;
    let is_timestamp: Vec<bool> = tokens.iter().map(|&t| t >= begin).collect();
    let single_ending =
        is_timestamp.len() >= 2 && is_timestamp[is_timestamp.len() - 2..] == [false, true];
    let mut cuts: Vec<usize> = (0..tokens.len().saturating_sub(1))
        .filter(|&i| is_timestamp[i] && is_timestamp[i + 1])
        .map(|i| i + 1)
        .collect();
    if cuts.is_empty() {
        // One segment for the whole window, ending at its last timestamp
        // (unless that is <|0.00|>) or at the end of the window.
        let end = match (0..tokens.len()).rev().find(|&i| is_timestamp[i]) {
            Some(i) if tokens[i] != begin => at(i),
            _ => offset + (frames as f64 * FRAME_SECS / TIME_PRECISION).trunc() * TIME_PRECISION,
        };
        let span = Span {
            start: offset,
            end,
            tokens: 0..tokens.len(),
        };
        return (vec![span], frames);
    }
    if single_ending {
        cuts.push(tokens.len());
    } else if let Some(last) = cuts.last_mut() {
        // The last segment keeps its closing timestamp.
        *last += 1;
    }
    let mut spans = Vec::with_capacity(cuts.len());
    let mut from = 0;
    for (k, &to) in cuts.iter().enumerate() {
        let last = k + 1 == cuts.len();
        let end = if !last || single_ending {
            to - 1
        } else {
            to - 2
        };
        spans.push(Span {
            start: at(from),
            end: at(end),
            tokens: from..to,
        });
        from = to;
    }
    let advance = if single_ending {
        frames
    } else {
        // Whatever follows the last complete segment is decoded again in
        // the next window, which starts where that segment ends.
        (tokens[from - 2] - begin) as usize * INPUT_STRIDE
    };
    (spans, advance)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u32 = 100;

    #[test]
    fn a_single_timestamp_ending_moves_past_the_window() {
        // <|0.00|> a b <|1.00|> <|1.00|> c <|2.50|>
        let tokens = [B, 1, 2, B + 50, B + 50, 3, B + 125];
        let (spans, advance) = split(&tokens, B, 3000, 3000);
        assert_eq!(advance, 3000);
        let expected = [(30.0, 31.0, 0..4), (31.0, 32.5, 4..7)];
        assert_eq!(spans.len(), 2);
        for (span, (start, end, range)) in spans.iter().zip(expected) {
            assert!((span.start - start).abs() < 1e-9 && (span.end - end).abs() < 1e-9);
            assert_eq!(span.tokens, range);
        }
    }

    #[test]
    fn an_unfinished_segment_is_decoded_again_from_the_last_pair() {
        // <|0.00|> a <|4.00|> <|4.00|> b (cut off by the window's end)
        let tokens = [B, 1, B + 200, B + 200, 2];
        let (spans, advance) = split(&tokens, B, 0, 3000);
        assert_eq!(advance, 400);
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].tokens, 0..4);
        assert!((spans[0].end - 4.0).abs() < 1e-9);
    }

    #[test]
    fn text_without_a_pair_is_one_segment() {
        let (spans, advance) = split(&[B, 1, 2, B + 60], B, 0, 1234);
        assert_eq!(advance, 1234);
        assert!((spans[0].end - 1.2).abs() < 1e-9);
        // No timestamp after <|0.00|>: the segment lasts the window.
        let (spans, _) = split(&[B, 1, 2], B, 0, 1234);
        assert!((spans[0].end - 12.34).abs() < 1e-9);
    }
}
