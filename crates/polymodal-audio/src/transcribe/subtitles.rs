//! Timed segments as subtitles: SubRip (`.srt`) and WebVTT (`.vtt`), as
//! OpenAI's `whisper` command writes them.

use super::Segment;

/// A subtitle file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubtitleFormat {
    /// SubRip: numbered cues, `00:00:01,500` (hours always written).
    Srt,
    /// WebVTT: a `WEBVTT` header, `00:01.500` (hours only past the first).
    Vtt,
}

impl SubtitleFormat {
    fn timestamp(self, secs: f64) -> String {
        let millis = (secs.max(0.0) * 1000.0).round() as u64;
        let (hours, rest) = (millis / 3_600_000, millis % 3_600_000);
        let (minutes, rest) = (rest / 60_000, rest % 60_000);
        let (seconds, millis) = (rest / 1000, rest % 1000);
        match self {
            Self::Srt => format!("{hours:02}:{minutes:02}:{seconds:02},{millis:03}"),
            Self::Vtt if hours > 0 => {
                format!("{hours:02}:{minutes:02}:{seconds:02}.{millis:03}")
            }
            Self::Vtt => format!("{minutes:02}:{seconds:02}.{millis:03}"),
        }
    }
}

/// `segments` as subtitles in `format`: one cue per segment with text
/// (trimmed, and `-->` written `->` so it cannot end a cue's timing).
pub fn subtitles(format: SubtitleFormat, segments: &[Segment]) -> String {
    let mut text = String::new();
    if format == SubtitleFormat::Vtt {
        text.push_str("WEBVTT\n\n");
    }
    let spoken = segments.iter().filter(|s| !s.text.trim().is_empty());
    for (i, segment) in spoken.enumerate() {
        if format == SubtitleFormat::Srt {
            text.push_str(&format!("{}\n", i + 1));
        }
        text.push_str(&format!(
            "{} --> {}\n{}\n\n",
            format.timestamp(segment.start_secs),
            format.timestamp(segment.end_secs),
            segment.text.trim().replace("-->", "->"),
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(start_secs: f64, end_secs: f64, text: &str) -> Segment {
        Segment {
            start_secs,
            end_secs,
            text: text.into(),
            tokens: Vec::new(),
            temperature: 0.0,
            avg_logprob: -0.2,
            compression_ratio: 1.2,
            no_speech_prob: 0.01,
        }
    }

    fn written(format: SubtitleFormat) -> String {
        let segments = [
            segment(0.0, 7.18, " And Mr. John Dashwood"),
            segment(7.18, 8.0, " "),
            segment(3725.5, 3727.042, " a --> b"),
        ];
        subtitles(format, &segments)
    }

    #[test]
    fn srt_numbers_cues_and_always_writes_hours() {
        assert_eq!(
            written(SubtitleFormat::Srt),
            "1\n00:00:00,000 --> 00:00:07,180\nAnd Mr. John Dashwood\n\n\
             2\n01:02:05,500 --> 01:02:07,042\na -> b\n\n"
        );
    }

    #[test]
    fn vtt_has_a_header_and_hours_only_when_needed() {
        assert_eq!(
            written(SubtitleFormat::Vtt),
            "WEBVTT\n\n00:00.000 --> 00:07.180\nAnd Mr. John Dashwood\n\n\
             01:02:05.500 --> 01:02:07.042\na -> b\n\n"
        );
    }
}
