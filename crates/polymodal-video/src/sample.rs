//! Frame sampling strategies. Sparse samples seek instead of decoding the
//! frames in between. The settings are plain data; decoding them
//! ([`sample_frames`]) needs the `ffmpeg` feature.

#[cfg(feature = "ffmpeg")]
use std::path::Path;

#[cfg(feature = "ffmpeg")]
use image::RgbImage;
use serde::{Deserialize, Serialize};

use polymodal_core::{Error, Result};

#[cfg(feature = "ffmpeg")]
use crate::reader::{VideoFrame, VideoReader};

/// Which frames to take from a clip.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Strategy {
    /// `count` frames at the centres of `count` equal slices of the window.
    Uniform {
        /// How many frames.
        count: usize,
    },
    /// Every `step`-th decoded frame, from the window's first.
    EveryNth {
        /// Distance between kept frames, in frames.
        step: usize,
    },
    /// The frames shown at `fps` evenly spaced instants.
    Fps {
        /// Instants per second.
        fps: f64,
    },
    /// Every frame.
    All,
}

/// A strategy applied to a time window of the clip.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Which frames.
    pub strategy: Strategy,
    /// Window start, seconds.
    pub start_secs: f64,
    /// Window end, seconds (`None`: the end of the clip).
    pub end_secs: Option<f64>,
}

impl Sampling {
    /// `count` uniform frames over the whole clip.
    pub fn uniform(count: usize) -> Self {
        Self::whole(Strategy::Uniform { count })
    }

    /// A strategy over the whole clip.
    pub fn whole(strategy: Strategy) -> Self {
        Self {
            strategy,
            start_secs: 0.0,
            end_secs: None,
        }
    }

    /// The same strategy on `[start, end)` seconds.
    pub fn within(self, start_secs: f64, end_secs: f64) -> Self {
        Self {
            start_secs,
            end_secs: Some(end_secs),
            ..self
        }
    }

    #[cfg_attr(not(feature = "ffmpeg"), allow(dead_code))]
    fn validate(&self) -> Result<()> {
        let bad = match self.strategy {
            Strategy::Uniform { count: 0 } => Some("uniform sampling needs count > 0".to_string()),
            Strategy::Uniform { count } if count > MAX_SAMPLED_FRAMES => Some(format!(
                "uniform sampling of {count} frames (at most {MAX_SAMPLED_FRAMES})"
            )),
            Strategy::EveryNth { step: 0 } => Some("every-nth sampling needs step > 0".into()),
            Strategy::Fps { fps } if !(fps.is_finite() && fps > 0.0) => {
                Some(format!("fps sampling needs a positive rate, got {fps}"))
            }
            _ => None,
        }
        .or_else(|| {
            let end_ok = self
                .end_secs
                .is_none_or(|e| e.is_finite() && e > self.start_secs);
            (!self.start_secs.is_finite() || self.start_secs < 0.0 || !end_ok).then(|| {
                format!(
                    "bad time window {} .. {:?} s",
                    self.start_secs, self.end_secs
                )
            })
        });
        bad.map_or(Ok(()), |b| {
            Err(Error::Config(format!("frame sampling: {b}")))
        })
    }
}

/// The most frames one sampling request may take from instants (uniform
/// and fps sampling): a bound on memory that neither an absurd rate nor a
/// header claiming an absurd duration gets past.
pub const MAX_SAMPLED_FRAMES: usize = 100_000;

/// Seek rather than decode forward when the next wanted frame is further
/// ahead than this (seconds); below it decoding through is cheaper.
#[cfg(feature = "ffmpeg")]
const SEEK_GAP_SECS: f64 = 1.0;

/// Decodes the frames `sampling` asks for.
#[cfg(feature = "ffmpeg")]
pub fn sample_frames(path: impl AsRef<Path>, sampling: &Sampling) -> Result<Vec<VideoFrame>> {
    sampling.validate()?;
    let path = path.as_ref();
    let mut reader = VideoReader::open(path)?;
    let start = sampling.start_secs;
    // Instants are placed within the declared duration; decoding through
    // goes on to the last frame (which may lie past it in VFR files).
    let end = sampling
        .end_secs
        .or(reader.info().duration_secs)
        .unwrap_or(f64::INFINITY);
    let clip_end = reader
        .info()
        .duration_secs
        .unwrap_or(f64::INFINITY)
        .min(end);
    if start >= clip_end {
        return Err(Error::decode(
            path,
            "video",
            format!(
                "the time window starts at {start} s, not before the clip's end ({clip_end} s)"
            ),
        ));
    }
    let window_end = sampling.end_secs.unwrap_or(f64::INFINITY);
    let frames = match sampling.strategy {
        Strategy::Uniform { count } if end.is_finite() => {
            let span = end - start;
            let instants: Vec<f64> = (0..count)
                .map(|k| start + (k as f64 + 0.5) * span / count as f64)
                .collect();
            frames_at(&mut reader, &instants)?
        }
        // Unknown duration: decode the window, then pick by index.
        Strategy::Uniform { count } => {
            let all = decode_window(&mut reader, start, window_end, 1)?;
            // No frame at all is reported below as an error, not indexed.
            match all.len() {
                0 => Vec::new(),
                n => uniform_indices(n, count)
                    .into_iter()
                    .map(|i| all[i].clone())
                    .collect(),
            }
        }
        Strategy::Fps { fps } => {
            let last = if end.is_finite() {
                end
            } else {
                reader_end(&mut reader)?
            };
            let wanted = ((last - start) * fps).ceil().max(1.0);
            // `as` saturates, so compare as floats: no count can overflow.
            if wanted > MAX_SAMPLED_FRAMES as f64 {
                return Err(Error::decode(
                    path,
                    "video",
                    format!(
                        "fps sampling at {fps}/s over {:.1} s would take {wanted} frames \
                         (at most {MAX_SAMPLED_FRAMES})",
                        last - start
                    ),
                ));
            }
            let count = wanted as usize;
            let instants: Vec<f64> = (0..count).map(|i| start + i as f64 / fps).collect();
            frames_at(&mut reader, &instants)?
        }
        Strategy::EveryNth { step } => decode_window(&mut reader, start, window_end, step)?,
        Strategy::All => decode_window(&mut reader, start, window_end, 1)?,
    };
    if frames.is_empty() {
        return Err(Error::decode(
            path,
            "video",
            "no frames in the requested window",
        ));
    }
    Ok(frames)
}

/// The duration, decoding to the end when the container does not say.
#[cfg(feature = "ffmpeg")]
fn reader_end(reader: &mut VideoReader) -> Result<f64> {
    if let Some(d) = reader.info().duration_secs {
        return Ok(d);
    }
    let mut last = 0.0;
    let mut image = RgbImage::new(0, 0);
    while let Some(t) = reader.next_frame_into(&mut image)? {
        last = t;
    }
    reader.seek(0.0)?;
    Ok(last + 1.0 / reader.info().fps.max(1.0))
}

#[cfg(feature = "ffmpeg")]
fn decode_window(
    reader: &mut VideoReader,
    start: f64,
    end: f64,
    step: usize,
) -> Result<Vec<VideoFrame>> {
    if start > 0.0 {
        reader.seek(start)?;
    }
    let mut frames = Vec::new();
    let mut index = 0;
    while let Some(frame) = reader.next_frame()? {
        if frame.time_secs >= end {
            break;
        }
        if index % step == 0 {
            frames.push(frame);
        }
        index += 1;
    }
    Ok(frames)
}

/// The frame shown at each of the (increasing) `instants`: the last frame
/// whose time is not after it. Instants past the end get the last decodable
/// frame, so the result has one frame per instant, or none at all when the
/// file has no decodable frame.
#[cfg(feature = "ffmpeg")]
fn frames_at(reader: &mut VideoReader, instants: &[f64]) -> Result<Vec<VideoFrame>> {
    let mut out = Vec::with_capacity(instants.len());
    // `current` is the newest decoded frame, `next` the one after it.
    let mut current: Option<VideoFrame> = None;
    let mut next = RgbImage::new(0, 0);
    let mut next_time: Option<f64> = None;
    let mut at_end = false;
    for &instant in instants {
        let behind = current
            .as_ref()
            .is_none_or(|c| instant - c.time_secs > SEEK_GAP_SECS);
        // A container that cannot seek (no index) is decoded through instead.
        if behind && instant > SEEK_GAP_SECS && !at_end && reader.seek(instant).is_ok() {
            let before = current.take().map_or(0.0, |c| c.time_secs);
            next_time = reader.next_frame_into(&mut next)?;
            if next_time.is_none() {
                // The index promised frames the file does not hold (a cut
                // file, a header longer than the stream): the seek landed
                // past the last decodable frame. Find that frame by decoding
                // on from where the last one was found.
                current = last_frame_from(reader, before)?;
                at_end = true;
            }
        }
        loop {
            if next_time.is_none() && !at_end {
                next_time = reader.next_frame_into(&mut next)?;
                at_end = next_time.is_none();
            }
            match next_time {
                // The pending frame is already shown at `instant`: advance.
                Some(t) if t <= instant || current.is_none() => {
                    let image = std::mem::replace(&mut next, RgbImage::new(0, 0));
                    let previous = current.replace(VideoFrame {
                        image,
                        time_secs: t,
                    });
                    if let Some(previous) = previous {
                        next = previous.image; // reuse its buffer
                    }
                    next_time = None;
                }
                _ => break,
            }
        }
        match &current {
            Some(frame) => out.push(frame.clone()),
            None => break,
        }
    }
    Ok(out)
}

/// The last frame decodable from `secs` on (`None` when there is none).
#[cfg(feature = "ffmpeg")]
fn last_frame_from(reader: &mut VideoReader, secs: f64) -> Result<Option<VideoFrame>> {
    reader.seek(secs)?;
    let mut last: Option<VideoFrame> = None;
    let mut image = RgbImage::new(0, 0);
    while let Some(time_secs) = reader.next_frame_into(&mut image)? {
        // Swap buffers: the previous last frame's becomes the next target.
        let previous = last.replace(VideoFrame {
            image: std::mem::replace(&mut image, RgbImage::new(0, 0)),
            time_secs,
        });
        if let Some(previous) = previous {
            image = previous.image;
        }
    }
    Ok(last)
}

/// Indices of `count` frames spread uniformly over `total` frames.
pub fn uniform_indices(total: usize, count: usize) -> Vec<usize> {
    (0..count)
        .map(|k| {
            (((k as f64 + 0.5) * total as f64 / count as f64) as usize).min(total.saturating_sub(1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_indices_cover_the_clip() {
        assert_eq!(uniform_indices(16, 4), vec![2, 6, 10, 14]);
        assert_eq!(uniform_indices(2, 4), vec![0, 0, 1, 1]);
        assert_eq!(uniform_indices(1, 3), vec![0, 0, 0]);
    }

    #[test]
    fn bad_samplings_are_config_errors() {
        for sampling in [
            Sampling::uniform(0),
            Sampling::whole(Strategy::EveryNth { step: 0 }),
            Sampling::whole(Strategy::Fps { fps: 0.0 }),
            Sampling::whole(Strategy::Fps { fps: f64::NAN }),
            Sampling::uniform(3).within(2.0, 1.0),
            Sampling::uniform(3).within(-1.0, 1.0),
        ] {
            assert!(sampling.validate().is_err(), "{sampling:?}");
        }
        assert!(Sampling::uniform(3).within(1.0, 2.0).validate().is_ok());
    }
}
