//! Whole-file helpers over [`VideoReader`], and H.264 encoding with video-rs.

use std::path::Path;

use image::RgbImage;
use video_rs::Time;
use video_rs::encode::{Encoder, Settings};
use video_rs::ffmpeg::format::Pixel;
use video_rs::frame::RawFrame;

use polymodal_core::{Error, Result};

use crate::reader::{VideoInfo, VideoReader, init};
use crate::sample::{Sampling, Strategy, sample_frames};

/// Reads a video's metadata (size, rate, duration, frame count, codec).
pub fn probe(path: impl AsRef<Path>) -> Result<VideoInfo> {
    Ok(VideoReader::open(path)?.info().clone())
}

/// Decodes every frame of a video to RGB.
pub fn decode_all(path: impl AsRef<Path>) -> Result<Vec<RgbImage>> {
    Ok(sample_frames(path, &Sampling::whole(Strategy::All))?
        .into_iter()
        .map(|f| f.image)
        .collect())
}

/// `count` frames spread uniformly over a video (the frames shown at the
/// centres of `count` equal slices of its duration; seeks when they are far
/// apart).
pub fn sample_uniform(path: impl AsRef<Path>, count: usize) -> Result<Vec<RgbImage>> {
    Ok(sample_frames(path, &Sampling::uniform(count))?
        .into_iter()
        .map(|f| f.image)
        .collect())
}

/// Encodes RGB frames as an H.264 MP4 at `fps` frames per second. Every frame
/// must have the same even width and height.
pub fn encode_mp4(path: impl AsRef<Path>, frames: &[RgbImage], fps: f64) -> Result<()> {
    let path = path.as_ref();
    let fail = |reason: String| {
        Error::Invalid(format!("{}: cannot encode video: {reason}", path.display()))
    };
    init().map_err(fail)?;
    let (width, height) = frames
        .first()
        .ok_or_else(|| fail("no frames".into()))?
        .dimensions();
    if width % 2 != 0 || height % 2 != 0 || frames.iter().any(|f| f.dimensions() != (width, height))
    {
        return Err(fail(format!(
            "frames must share one even size, first is {width}x{height}"
        )));
    }
    let settings = Settings::preset_h264_yuv420p(width as usize, height as usize, false);
    let mut encoder = Encoder::new(path, settings).map_err(|e| fail(e.to_string()))?;
    for (i, image) in frames.iter().enumerate() {
        let mut frame = RawFrame::new(Pixel::RGB24, width, height);
        let stride = frame.stride(0);
        let row_bytes = width as usize * 3;
        let data = frame.data_mut(0);
        for (row, src) in image.as_raw().chunks_exact(row_bytes).enumerate() {
            data[row * stride..row * stride + row_bytes].copy_from_slice(src);
        }
        let pts = Time::from_secs_f64(i as f64 / fps).with_time_base(encoder.time_base());
        frame.set_pts(pts.into_value());
        encoder.encode_raw(frame).map_err(|e| fail(e.to_string()))?;
    }
    encoder.finish().map_err(|e| fail(e.to_string()))
}
