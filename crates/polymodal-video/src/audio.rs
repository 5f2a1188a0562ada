//! The audio track of a video file, decoded by FFmpeg (any codec and channel
//! count it knows, e.g. 5.1 AAC, which symphonia does not decode), then mixed
//! and resampled by `polymodal-audio`.

use std::path::{Path, PathBuf};

use video_rs::ffmpeg::format::{self, Sample, sample::Type};
use video_rs::ffmpeg::{self, codec, frame, media};

use polymodal_audio::{AudioClip, ClipBuilder, LoadOptions, SampleSource};
use polymodal_core::{Error, Result};

use crate::reader::open_input;

/// Decodes the best audio track of a media file (video or audio container)
/// as `options` say: window, mono, sample rate. The window is read by
/// seeking; decoded audio is converted chunk by chunk.
pub fn load_audio_track(path: impl AsRef<Path>, options: &LoadOptions) -> Result<AudioClip> {
    let mut stream = AudioTrackStream::open(path.as_ref(), options)?;
    let mut samples = Vec::new();
    while let Some(chunk) = stream.next_samples()? {
        samples.extend(chunk);
    }
    if samples.is_empty() {
        return Err(stream.fail("no audio samples in the requested window".into()));
    }
    Ok(AudioClip {
        samples,
        sample_rate: options.sample_rate.unwrap_or(stream.rate),
        channels: if options.mono { 1 } else { stream.channels },
    })
}

/// The best audio track of a media file, decoded by FFmpeg and converted as
/// [`LoadOptions`] say, packet by packet: a film's soundtrack read without
/// holding it whole (what [`load_audio_track`] collects).
pub struct AudioTrackStream {
    path: PathBuf,
    input: format::context::Input,
    decoder: ffmpeg::decoder::Audio,
    index: usize,
    time_base: ffmpeg::Rational,
    start_ts: i64,
    /// The first sample frame wanted (the offset), counted from the start.
    first_frame: i64,
    rate: u32,
    channels: usize,
    clip: ClipBuilder,
    decoded: frame::Audio,
    errors: usize,
    /// No more packets to read (the end, or the window is complete).
    ended: bool,
    /// The converted samples were all handed out.
    drained: bool,
}

impl std::fmt::Debug for AudioTrackStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioTrackStream")
            .field("path", &self.path)
            .field("rate", &self.rate)
            .field("channels", &self.channels)
            .finish()
    }
}

impl AudioTrackStream {
    /// Opens `path`'s best audio track for reading as `options` say.
    pub fn open(path: &Path, options: &LoadOptions) -> Result<Self> {
        let fail = |reason: String| Error::decode(path, "audio track", reason);
        options.validate()?;
        let offset_secs = options.offset_secs;
        let mut input = open_input(path, "audio track")?;
        let stream = input
            .streams()
            .best(media::Type::Audio)
            .ok_or_else(|| fail("no audio track".into()))?;
        let (index, time_base) = (stream.index(), stream.time_base());
        let start_ts = match stream.start_time() {
            ffmpeg::ffi::AV_NOPTS_VALUE => 0,
            ts => ts,
        };
        let context = codec::context::Context::from_parameters(stream.parameters())
            .map_err(|e| fail(e.to_string()))?;
        let mut decoder = context.decoder();
        decoder.set_packet_time_base(time_base);
        let mut decoder = decoder.audio().map_err(|e| fail(e.to_string()))?;
        let (rate, channels) = (decoder.rate(), decoder.channels() as usize);
        if rate == 0 || channels == 0 {
            return Err(fail(format!("bad stream: {rate} Hz, {channels} channels")));
        }
        if offset_secs > 0.0 {
            let target = (offset_secs * 1e6) as i64;
            input
                .seek(target, ..target)
                .map_err(|e| fail(format!("seek to {offset_secs} s: {e}")))?;
            decoder.flush();
        }
        Ok(Self {
            path: path.to_path_buf(),
            input,
            decoder,
            index,
            time_base,
            start_ts,
            // Whole frames, truncated, as librosa counts them.
            first_frame: (offset_secs * f64::from(rate)) as i64,
            rate,
            channels,
            clip: ClipBuilder::new(options, rate, channels)?,
            decoded: frame::Audio::empty(),
            errors: 0,
            ended: false,
            drained: false,
        })
    }

    fn fail(&self, reason: String) -> Error {
        Error::decode(&self.path, "audio track", reason)
    }

    /// Converts the decoder's pending frames; `true` once the window is
    /// complete.
    fn drain_frames(&mut self) -> Result<bool> {
        let mut chunk = Vec::new();
        while self.decoder.receive_frame(&mut self.decoded).is_ok() {
            chunk.clear();
            if !append_interleaved(&self.decoded, &mut chunk) {
                return Err(self.fail(format!(
                    "unsupported sample format {:?}",
                    self.decoded.format()
                )));
            }
            if self.decoded.channels() as usize != self.channels || self.decoded.rate() != self.rate
            {
                return Err(self.fail("the track changes format mid-way".into()));
            }
            // Drop what precedes the requested offset (the seek lands on a
            // packet). Timestamps come from the file (any i64) and `as`
            // saturates: no arithmetic on them may overflow.
            let ts = self
                .decoded
                .timestamp()
                .or(self.decoded.pts())
                .unwrap_or(0)
                .saturating_sub(self.start_ts);
            let frame_at =
                (ts as f64 * f64::from(self.time_base) * f64::from(self.rate)).round() as i64;
            let skip = self
                .first_frame
                .saturating_sub(frame_at)
                .clamp(0, (chunk.len() / self.channels) as i64) as usize;
            chunk.drain(..skip * self.channels);
            if self.clip.push(std::mem::take(&mut chunk))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Reads packets until some samples are converted or the track ends.
    fn read_more(&mut self) -> Result<()> {
        let mut packet = ffmpeg::Packet::empty();
        loop {
            match packet.read(&mut self.input) {
                Ok(()) => {}
                // A corrupt packet: the demuxer resyncs past it.
                Err(ffmpeg::Error::InvalidData) => continue,
                // The end, or an error FFmpeg keeps returning: the track
                // ends at its last good packet, as `load` ends a short file.
                Err(_) => {
                    let _ = self.decoder.send_eof();
                    self.drain_frames()?;
                    self.ended = true;
                    return Ok(());
                }
            }
            if packet.stream() != self.index {
                continue;
            }
            if self.decoder.send_packet(&packet).is_err() {
                self.errors += 1;
                if self.errors > 64 {
                    return Err(self.fail("too many damaged packets".into()));
                }
                continue;
            }
            if self.drain_frames()? {
                self.ended = true;
            }
            return Ok(());
        }
    }
}

impl SampleSource for AudioTrackStream {
    fn next_samples(&mut self) -> Result<Option<Vec<f32>>> {
        while !self.drained {
            if !self.ended {
                self.read_more()?;
            }
            let samples = if self.ended {
                self.drained = true;
                self.clip.take_rest()?
            } else {
                self.clip.take()
            };
            if !samples.is_empty() {
                return Ok(Some(samples));
            }
        }
        Ok(None)
    }
}

/// Appends a frame's samples as interleaved f32 in `[-1, 1]`; `false` for
/// a sample format this does not read.
fn append_interleaved(frame: &frame::Audio, out: &mut Vec<f32>) -> bool {
    let (channels, samples) = (frame.channels() as usize, frame.samples());
    if channels == 0 || samples == 0 {
        return true;
    }
    let format = frame.format();
    let planes_needed = if format.is_planar() { channels } else { 1 };
    if frame.planes() < planes_needed {
        return false;
    }
    fn planar<T: frame::audio::Sample + Copy>(
        frame: &frame::Audio,
        channels: usize,
        samples: usize,
        out: &mut Vec<f32>,
        convert: impl Fn(T) -> f32,
    ) {
        let planes: Vec<&[T]> = (0..channels).map(|c| frame.plane::<T>(c)).collect();
        out.reserve(samples * channels);
        for i in 0..samples {
            out.extend(planes.iter().map(|p| convert(p[i])));
        }
    }
    fn packed<T: frame::audio::Sample + Copy>(
        frame: &frame::Audio,
        channels: usize,
        samples: usize,
        out: &mut Vec<f32>,
        convert: impl Fn(T) -> f32,
    ) {
        out.extend(
            frame.plane::<T>(0)[..samples * channels]
                .iter()
                .map(|&s| convert(s)),
        );
    }
    let (c, n) = (channels, samples);
    match format {
        Sample::F32(Type::Planar) => planar::<f32>(frame, c, n, out, |s| s),
        Sample::F32(Type::Packed) => packed::<f32>(frame, c, n, out, |s| s),
        Sample::F64(Type::Planar) => planar::<f64>(frame, c, n, out, |s| s as f32),
        Sample::F64(Type::Packed) => packed::<f64>(frame, c, n, out, |s| s as f32),
        Sample::I16(Type::Planar) => planar::<i16>(frame, c, n, out, |s| s as f32 / 32768.0),
        Sample::I16(Type::Packed) => packed::<i16>(frame, c, n, out, |s| s as f32 / 32768.0),
        Sample::I32(Type::Planar) => {
            planar::<i32>(frame, c, n, out, |s| s as f32 / 2_147_483_648.0)
        }
        Sample::I32(Type::Packed) => {
            packed::<i32>(frame, c, n, out, |s| s as f32 / 2_147_483_648.0)
        }
        Sample::U8(Type::Planar) => planar::<u8>(frame, c, n, out, |s| (s as f32 - 128.0) / 128.0),
        Sample::U8(Type::Packed) => packed::<u8>(frame, c, n, out, |s| (s as f32 - 128.0) / 128.0),
        _ => return false,
    }
    true
}
