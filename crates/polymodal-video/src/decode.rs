//! Video decoding and encoding with video-rs (FFmpeg).

use std::path::Path;
use std::sync::OnceLock;

use image::RgbImage;
use video_rs::encode::{Encoder, Settings};
use video_rs::ffmpeg::format::Pixel;
use video_rs::frame::RawFrame;
use video_rs::{Decoder, Time};

use polymodal_core::{Error, Result};

/// Stream facts read from the container.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second (0 when the container does not say).
    pub fps: f32,
}

fn init() -> Result<(), String> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| video_rs::init().map_err(|e| e.to_string()))
        .clone()
}

fn open(path: &Path) -> Result<Decoder> {
    init().map_err(|e| Error::decode(path, "video", format!("FFmpeg init: {e}")))?;
    if !path.is_file() {
        let e = std::fs::metadata(path)
            .err()
            .unwrap_or_else(|| std::io::Error::other("not a file"));
        return Err(Error::io(path, e));
    }
    Decoder::new(path).map_err(|e| Error::decode(path, "video", e))
}

/// Reads the size and frame rate of a video.
pub fn probe(path: impl AsRef<Path>) -> Result<VideoInfo> {
    let decoder = open(path.as_ref())?;
    let (width, height) = decoder.size();
    Ok(VideoInfo {
        width,
        height,
        fps: decoder.frame_rate(),
    })
}

/// Decodes every frame of a video to RGB.
pub fn decode_all(path: impl AsRef<Path>) -> Result<Vec<RgbImage>> {
    let path = path.as_ref();
    let mut decoder = open(path)?;
    let mut frames = Vec::new();
    loop {
        match decoder.decode_raw() {
            Ok(frame) => frames.push(to_rgb_image(&frame)),
            // video-rs reports the end of the stream as an error.
            Err(video_rs::Error::ReadExhausted | video_rs::Error::DecodeExhausted) => break,
            Err(e) => return Err(Error::decode(path, "video", e)),
        }
    }
    if frames.is_empty() {
        return Err(Error::decode(path, "video", "the stream has no frames"));
    }
    Ok(frames)
}

/// Decodes a video and keeps `count` frames spread uniformly over it (the
/// centre of `count` equal segments; frames repeat when the clip is shorter).
pub fn sample_uniform(path: impl AsRef<Path>, count: usize) -> Result<Vec<RgbImage>> {
    if count == 0 {
        return Err(Error::Invalid("cannot sample zero frames".into()));
    }
    let frames = decode_all(path)?;
    Ok(uniform_indices(frames.len(), count)
        .into_iter()
        .map(|i| frames[i].clone())
        .collect())
}

/// Indices of `count` frames spread uniformly over `total` frames.
pub fn uniform_indices(total: usize, count: usize) -> Vec<usize> {
    (0..count)
        .map(|k| {
            (((k as f64 + 0.5) * total as f64 / count as f64) as usize).min(total.saturating_sub(1))
        })
        .collect()
}

fn to_rgb_image(frame: &RawFrame) -> RgbImage {
    let (width, height) = (frame.width() as usize, frame.height() as usize);
    let stride = frame.stride(0);
    let data = frame.data(0);
    let mut rgb = Vec::with_capacity(width * height * 3);
    for row in 0..height {
        rgb.extend_from_slice(&data[row * stride..row * stride + width * 3]);
    }
    RgbImage::from_raw(width as u32, height as u32, rgb).expect("buffer sized from the frame")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_indices_cover_the_clip() {
        assert_eq!(uniform_indices(16, 4), vec![2, 6, 10, 14]);
        assert_eq!(uniform_indices(2, 4), vec![0, 0, 1, 1]);
        assert_eq!(uniform_indices(1, 3), vec![0, 0, 0]);
    }
}
