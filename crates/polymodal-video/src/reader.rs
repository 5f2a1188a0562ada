//! A frame reader over FFmpeg (through video-rs's `ffmpeg-next`): container
//! metadata, frames as RGB with their timestamps, accurate seeking, and
//! buffers reused from frame to frame.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image::RgbImage;
use video_rs::ffmpeg::format::{self, Pixel};
use video_rs::ffmpeg::software::scaling;
use video_rs::ffmpeg::{self, Rational, codec, frame, media};

use polymodal_core::{Error, Result};

/// Stream facts read from the container.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Average frame rate (0 when the container does not say).
    pub fps: f64,
    /// Duration of the video stream (or, failing that, of the container).
    pub duration_secs: Option<f64>,
    /// Frame count: the container's, else estimated from duration and rate.
    pub frame_count: Option<u64>,
    /// Codec name (`h264`, `vp9`, `mjpeg`, ...).
    pub codec: String,
}

/// A decoded frame and its presentation time.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFrame {
    /// The picture.
    pub image: RgbImage,
    /// Presentation time in seconds from the start of the stream.
    pub time_secs: f64,
}

pub(crate) fn init() -> Result<(), String> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    // video-rs routes FFmpeg's log to `tracing`, which keeps stderr quiet.
    INIT.get_or_init(|| video_rs::init().map_err(|e| e.to_string()))
        .clone()
}

/// Opens a media file with FFmpeg, with errors naming the file.
pub(crate) fn open_input(path: &Path, what: &'static str) -> Result<format::context::Input> {
    let fail = |reason: String| Error::decode(path, what, reason);
    init().map_err(|e| fail(format!("FFmpeg init: {e}")))?;
    if !path.is_file() {
        let e = std::fs::metadata(path)
            .err()
            .unwrap_or_else(|| std::io::Error::other("not a file"));
        return Err(Error::io(path, e));
    }
    // ffmpeg-next panics on paths that are not UTF-8.
    if path.to_str().is_none() {
        return Err(fail("FFmpeg needs a UTF-8 path".into()));
    }
    format::input(path).map_err(|e| fail(e.to_string()))
}

/// Consecutive decoder errors tolerated before the file is declared corrupt.
const MAX_ERRORS: usize = 64;

/// Reads the frames of a video file one by one.
pub struct VideoReader {
    path: PathBuf,
    input: format::context::Input,
    stream: usize,
    decoder: ffmpeg::decoder::Video,
    time_base: Rational,
    start_ts: i64,
    info: VideoInfo,
    decoded: frame::Video,
    rgb: frame::Video,
    scaler: Option<(scaling::Context, (Pixel, u32, u32))>,
    /// Frames earlier than this (seconds) are dropped (after a seek).
    skip_before: f64,
    eof_sent: bool,
    finished: bool,
}

impl std::fmt::Debug for VideoReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoReader")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish()
    }
}

impl VideoReader {
    /// Opens a file with FFmpeg's automatic decoder threading.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_threads(path, 0)
    }

    /// Opens a file decoding with `threads` threads (0: FFmpeg chooses).
    pub fn open_with_threads(path: impl AsRef<Path>, threads: usize) -> Result<Self> {
        let path = path.as_ref();
        let fail = |reason: String| Error::decode(path, "video", reason);
        let input = open_input(path, "video")?;
        let stream = input
            .streams()
            .best(media::Type::Video)
            .ok_or_else(|| fail("no video stream".into()))?;
        let (index, time_base) = (stream.index(), stream.time_base());
        let parameters = stream.parameters();
        let codec_name = parameters.id().name().to_string();
        let start_ts = match stream.start_time() {
            ffmpeg::ffi::AV_NOPTS_VALUE => 0,
            ts => ts,
        };
        let fps = rate(stream.avg_frame_rate())
            .or(rate(stream.rate()))
            .unwrap_or(0.0);
        // AV_NOPTS_VALUE (unknown) is i64::MIN, so "positive" means known.
        let duration_secs = match (stream.duration(), input.duration()) {
            (ts, _) if ts > 0 => Some(ts as f64 * f64::from(time_base)),
            (_, us) if us > 0 => Some(us as f64 / 1e6),
            _ => None,
        };
        let frame_count = match stream.frames() {
            n if n > 0 => Some(n as u64),
            _ => duration_secs
                .map(|d| (d * fps).round() as u64)
                .filter(|&n| n > 0),
        };
        let mut context = codec::context::Context::from_parameters(parameters)
            .map_err(|e| fail(e.to_string()))?;
        // FFmpeg 5.1 aborts the process (an av_assert0 in decode.c) when a
        // damaged WebP is decoded with frame threads, as the ffmpeg CLI does
        // on the same file (found by `cargo xtask fuzz`); one thread turns
        // that into a decode error, and a still image gains nothing from
        // frame threads.
        let threads = if codec_name == "webp" { 1 } else { threads };
        context.set_threading(ffmpeg::threading::Config {
            kind: ffmpeg::threading::Type::Frame,
            count: threads,
            ..Default::default()
        });
        let mut decoder = context.decoder();
        decoder.set_packet_time_base(time_base);
        let decoder = decoder
            .video()
            .map_err(|e| fail(format!("no decoder for {codec_name}: {e}")))?;
        let (width, height) = (decoder.width(), decoder.height());
        if width == 0 || height == 0 {
            return Err(fail(format!("bad frame size {width}x{height}")));
        }
        Ok(Self {
            path: path.to_path_buf(),
            input,
            stream: index,
            decoder,
            time_base,
            start_ts,
            info: VideoInfo {
                width,
                height,
                fps,
                duration_secs,
                frame_count,
                codec: codec_name,
            },
            decoded: frame::Video::empty(),
            rgb: frame::Video::empty(),
            scaler: None,
            skip_before: f64::NEG_INFINITY,
            eof_sent: false,
            finished: false,
        })
    }

    /// Metadata from the container.
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    fn fail(&self, reason: impl ToString) -> Error {
        Error::decode(&self.path, "video", reason)
    }

    /// Moves so that the next frame is the one shown at `secs`: seeks to the
    /// keyframe at or before it, then decodes and drops the frames before it.
    pub fn seek(&mut self, secs: f64) -> Result<()> {
        if !secs.is_finite() || secs < 0.0 {
            return Err(Error::Config(format!("cannot seek to {secs} s")));
        }
        let container_start = match unsafe { (*self.input.as_ptr()).start_time } {
            ffmpeg::ffi::AV_NOPTS_VALUE => 0,
            us => us,
        };
        // `as` saturates a huge `secs`; the sum must not overflow either.
        let target = container_start.saturating_add((secs * 1e6) as i64);
        self.input
            .seek(target, ..target)
            .map_err(|e| self.fail(format!("seek to {secs} s: {e}")))?;
        self.decoder.flush();
        self.skip_before = secs;
        self.eof_sent = false;
        self.finished = false;
        Ok(())
    }

    /// The next frame, or `None` at the end of the stream.
    pub fn next_frame(&mut self) -> Result<Option<VideoFrame>> {
        let mut image = RgbImage::new(0, 0);
        Ok(self
            .next_frame_into(&mut image)?
            .map(|time_secs| VideoFrame { image, time_secs }))
    }

    /// Decodes the next frame into `image` (reusing its buffer when the size
    /// matches) and returns its time in seconds, or `None` at the end.
    pub fn next_frame_into(&mut self, image: &mut RgbImage) -> Result<Option<f64>> {
        loop {
            let Some(time) = self.next_decoded()? else {
                return Ok(None);
            };
            // Tolerate timestamps rounded below the seek target by half a frame.
            let slack = if self.info.fps > 0.0 {
                0.5 / self.info.fps
            } else {
                0.0
            };
            if time + slack < self.skip_before {
                continue;
            }
            self.skip_before = f64::NEG_INFINITY;
            self.convert(image)?;
            return Ok(Some(time));
        }
    }

    /// Receives the next decoded frame into `self.decoded`, feeding packets
    /// as needed; returns its time.
    fn next_decoded(&mut self) -> Result<Option<f64>> {
        let mut errors = 0;
        loop {
            if self.finished {
                return Ok(None);
            }
            match self.decoder.receive_frame(&mut self.decoded) {
                Ok(()) => {
                    let ts = self.decoded.timestamp().or(self.decoded.pts()).unwrap_or(0);
                    return Ok(Some(
                        // Timestamps come from the file: any i64 is possible.
                        ts.saturating_sub(self.start_ts) as f64 * f64::from(self.time_base),
                    ));
                }
                Err(ffmpeg::Error::Eof) => {
                    self.finished = true;
                    return Ok(None);
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => {
                    self.feed()?;
                }
                Err(e) => {
                    // A damaged frame: FFmpeg drops it and goes on, so do we.
                    errors += 1;
                    if errors > MAX_ERRORS {
                        return Err(self.fail(e));
                    }
                }
            }
        }
    }

    /// Sends the next packet of our stream (or the end-of-stream marker).
    fn feed(&mut self) -> Result<()> {
        let mut errors = 0;
        loop {
            if self.eof_sent {
                // The decoder asked for input after EOF: nothing more will come.
                self.finished = true;
                return Ok(());
            }
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => {
                    // A late error from frame threads is reported by receive_frame.
                    let _ = self.decoder.send_eof();
                    self.eof_sent = true;
                    return Ok(());
                }
                Err(e) => {
                    errors += 1;
                    if errors > MAX_ERRORS {
                        return Err(self.fail(e));
                    }
                    continue;
                }
            }
            if packet.stream() != self.stream {
                continue;
            }
            match self.decoder.send_packet(&packet) {
                Ok(()) => return Ok(()),
                Err(_) if errors < MAX_ERRORS => errors += 1,
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// Converts `self.decoded` to RGB into `image`.
    fn convert(&mut self, image: &mut RgbImage) -> Result<()> {
        let key = (
            self.decoded.format(),
            self.decoded.width(),
            self.decoded.height(),
        );
        if key.1 == 0 || key.2 == 0 {
            return Err(self.fail("the decoder returned an empty frame"));
        }
        if self.scaler.as_ref().is_none_or(|(_, k)| *k != key) {
            // Sizes may change mid-stream: rebuild for the new input.
            let scaler = scaling::Context::get(
                key.0,
                key.1,
                key.2,
                Pixel::RGB24,
                key.1,
                key.2,
                scaling::Flags::BILINEAR,
            )
            .map_err(|e| self.fail(format!("colour conversion from {:?}: {e}", key.0)))?;
            self.scaler = Some((scaler, key));
            self.rgb = frame::Video::empty();
        }
        let (scaler, _) = self.scaler.as_mut().expect("set above");
        scaler
            .run(&self.decoded, &mut self.rgb)
            .map_err(|e| Error::decode(&self.path, "video", e))?;
        let (width, height) = (key.1, key.2);
        if image.dimensions() != (width, height) {
            *image = RgbImage::new(width, height);
        }
        let (stride, data) = (self.rgb.stride(0), self.rgb.data(0));
        let row = width as usize * 3;
        for (y, out) in image.chunks_exact_mut(row).enumerate() {
            out.copy_from_slice(&data[y * stride..y * stride + row]);
        }
        Ok(())
    }
}

fn rate(r: Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0).then(|| f64::from(r))
}
