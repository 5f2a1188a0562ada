//! The audio track of a video file, decoded by FFmpeg (any codec and channel
//! count it knows, e.g. 5.1 AAC, which symphonia does not decode), then mixed
//! and resampled by `polymodal-audio`.

use std::path::Path;

use video_rs::ffmpeg::format::{Sample, sample::Type};
use video_rs::ffmpeg::{self, codec, frame, media};

use polymodal_audio::{AudioClip, ClipBuilder, LoadOptions};
use polymodal_core::{Error, Result};

use crate::reader::open_input;

/// Decodes the best audio track of a media file (video or audio container)
/// as `options` say: window, mono, sample rate. The window is read by
/// seeking; decoded audio is converted chunk by chunk.
pub fn load_audio_track(path: impl AsRef<Path>, options: &LoadOptions) -> Result<AudioClip> {
    let path = path.as_ref();
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
    let mut clip = ClipBuilder::new(options, rate, channels)?;
    // Whole frames, truncated, as librosa counts them.
    let first_frame = (offset_secs * rate as f64) as i64;
    let mut chunk = Vec::new();
    let mut decoded = frame::Audio::empty();
    let mut sink = |decoded: &frame::Audio| -> Result<bool> {
        chunk.clear();
        if !append_interleaved(decoded, &mut chunk) {
            return Err(fail(format!(
                "unsupported sample format {:?}",
                decoded.format()
            )));
        }
        if decoded.channels() as usize != channels || decoded.rate() != rate {
            return Err(fail("the track changes format mid-way".into()));
        }
        // Drop what precedes the requested offset (the seek lands on a packet).
        // Timestamps come from the file (any i64) and `as` saturates: no
        // arithmetic on them may overflow.
        let ts = decoded
            .timestamp()
            .or(decoded.pts())
            .unwrap_or(0)
            .saturating_sub(start_ts);
        let frame_at = (ts as f64 * f64::from(time_base) * rate as f64).round() as i64;
        let skip = first_frame
            .saturating_sub(frame_at)
            .clamp(0, (chunk.len() / channels) as i64) as usize;
        chunk.drain(..skip * channels);
        clip.push(std::mem::take(&mut chunk))
    };
    let mut errors = 0;
    let mut done = false;
    for (stream, packet) in input.packets() {
        if done {
            break;
        }
        if stream.index() != index {
            continue;
        }
        if decoder.send_packet(&packet).is_err() {
            errors += 1;
            if errors > 64 {
                return Err(fail("too many damaged packets".into()));
            }
            continue;
        }
        while decoder.receive_frame(&mut decoded).is_ok() {
            if sink(&decoded)? {
                done = true;
                break;
            }
        }
    }
    if !done {
        let _ = decoder.send_eof();
        while decoder.receive_frame(&mut decoded).is_ok() {
            if sink(&decoded)? {
                break;
            }
        }
    }
    clip.finish()?
        .ok_or_else(|| fail("no audio samples in the requested window".into()))
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
