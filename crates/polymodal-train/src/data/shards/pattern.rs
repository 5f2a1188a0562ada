//! Shard lists written as brace patterns (`train-{000..099}.tar`,
//! `{en,fr}-{0..3}.tar`), as WebDataset and open_clip take them, and shard
//! ranges (`10..20`) that split a list into independent jobs.

use std::ops::Range;

use polymodal_core::{Error, Result};

/// The most names one pattern may stand for.
const MAX_NAMES: usize = 1_000_000;

/// One piece of a pattern: literal text, or the choices of a `{…}` group.
enum Piece {
    Text(String),
    Choices(Vec<String>),
}

/// The names `pattern` stands for, in order (the leftmost group varies
/// slowest). `{first..last}` counts from `first` to `last` (up or down),
/// zero-padded to the wider bound when either is written with a leading
/// zero (`{08..10}`: `08 09 10`); `{a,b}` is each choice. A pattern without
/// braces is itself. Nested or unclosed braces are an error naming the
/// pattern.
pub fn expand_pattern(pattern: &str) -> Result<Vec<String>> {
    let bad = |why: &str| Error::Config(format!("shard pattern `{pattern}`: {why}"));
    let mut pieces = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(bad("`}` without `{`"));
        }
        pieces.push(Piece::Text(rest[..open].to_string()));
        let inner_end = rest[open + 1..]
            .find(['{', '}'])
            .map(|i| open + 1 + i)
            .filter(|&i| rest.as_bytes()[i] == b'}')
            .ok_or_else(|| bad("a `{` without its `}` (groups do not nest)"))?;
        pieces.push(Piece::Choices(
            choices(&rest[open + 1..inner_end]).map_err(|why| bad(&why))?,
        ));
        rest = &rest[inner_end + 1..];
    }
    pieces.push(Piece::Text(rest.to_string()));
    let count = pieces.iter().try_fold(1usize, |n, piece| match piece {
        Piece::Text(_) => Some(n),
        Piece::Choices(c) => n.checked_mul(c.len()).filter(|&n| n <= MAX_NAMES),
    });
    if count.is_none() {
        return Err(bad(&format!("stands for more than {MAX_NAMES} names")));
    }
    let mut names = vec![String::new()];
    for piece in &pieces {
        names = match piece {
            Piece::Text(text) => names.into_iter().map(|n| n + text).collect(),
            Piece::Choices(choices) => names
                .iter()
                .flat_map(|n| choices.iter().map(move |c| format!("{n}{c}")))
                .collect(),
        };
    }
    Ok(names)
}

/// The choices of one group's inside: `a..b` or `x,y,…`.
fn choices(inside: &str) -> std::result::Result<Vec<String>, String> {
    if let Some((first, last)) = inside.split_once("..") {
        let number = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("`{{{inside}}}`: `{s}` is not a whole number"))
        };
        let (a, b) = (number(first)?, number(last)?);
        if a.abs_diff(b) >= MAX_NAMES as u64 {
            return Err(format!(
                "`{{{inside}}}` stands for more than {MAX_NAMES} names"
            ));
        }
        let padded = |s: &str| s.len() > 1 && s.starts_with('0');
        let width = if padded(first) || padded(last) {
            first.len().max(last.len())
        } else {
            0
        };
        let numbers: Vec<u64> = if a <= b {
            (a..=b).collect()
        } else {
            (b..=a).rev().collect()
        };
        return Ok(numbers.iter().map(|n| format!("{n:0width$}")).collect());
    }
    if inside.contains(',') {
        return Ok(inside.split(',').map(str::to_string).collect());
    }
    Err(format!(
        "`{{{inside}}}` is neither a range `{{a..b}}` nor a list `{{x,y}}`"
    ))
}

/// The shards `spec` selects out of `count`: `a..b` (from `a` up to, not
/// including, `b`), `a..` (to the end) or `a` (that one shard). An empty
/// or out-of-bounds range is an error.
pub fn shard_range(spec: &str, count: usize) -> Result<Range<usize>> {
    let bad = |why: String| Error::Config(format!("shard range `{spec}`: {why}"));
    let number = |s: &str| {
        s.trim()
            .parse::<usize>()
            .map_err(|_| bad(format!("`{s}` is not a whole number")))
    };
    let range = match spec.split_once("..") {
        Some((a, "")) => number(a)?..count,
        Some((a, b)) => number(a)?..number(b)?,
        None => {
            let a = number(spec)?;
            a..a.saturating_add(1)
        }
    };
    if range.is_empty() || range.end > count {
        return Err(bad(format!("selects no shard of the {count} given")));
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_lists_and_padding_expand_as_braceexpand_does() {
        assert_eq!(
            expand_pattern("d/train-{08..10}.tar").unwrap(),
            ["d/train-08.tar", "d/train-09.tar", "d/train-10.tar"]
        );
        assert_eq!(expand_pattern("{9..11}").unwrap(), ["9", "10", "11"]);
        assert_eq!(expand_pattern("{3..1}").unwrap(), ["3", "2", "1"]);
        assert_eq!(
            expand_pattern("{en,fr}-{0..1}.tar").unwrap(),
            ["en-0.tar", "en-1.tar", "fr-0.tar", "fr-1.tar"]
        );
        assert_eq!(expand_pattern("one.tar").unwrap(), ["one.tar"]);
        assert_eq!(expand_pattern("{000000..999999}").unwrap().len(), 1_000_000);
    }

    #[test]
    fn malformed_patterns_are_errors_naming_them() {
        for bad in [
            "a-{0..3.tar",
            "a-0..3}.tar",
            "a-{{0..3}}.tar",
            "a-{x..3}.tar",
            "a-{3}.tar",
            "{0..999999}{0..9}",
            "{0..18446744073709551615}",
        ] {
            let message = expand_pattern(bad).unwrap_err().to_string();
            assert!(message.contains(bad), "{message}");
        }
    }

    #[test]
    fn a_range_selects_shards_or_says_why_not() {
        assert_eq!(shard_range("2..5", 10).unwrap(), 2..5);
        assert_eq!(shard_range("7..", 10).unwrap(), 7..10);
        assert_eq!(shard_range("4", 10).unwrap(), 4..5);
        for bad in ["5..5", "8..12", "10", "a..3", "3..1"] {
            assert!(shard_range(bad, 10).is_err(), "{bad}");
        }
    }
}
