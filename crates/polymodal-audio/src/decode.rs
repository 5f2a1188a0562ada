//! Audio decoding with symphonia: WAV (integer and float PCM), FLAC, MP3, Ogg
//! Vorbis and AAC (mono/stereo LC) in MP4/M4A, read packet by packet so long
//! files stream with bounded memory.

use std::fs::File;
use std::io::ErrorKind;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::units::{Time, TimeBase};

use polymodal_core::{Error, Result};

use crate::resample::Resampler;

/// Decoded audio: interleaved f32 samples in `[-1, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioClip {
    /// Interleaved samples (`frame * channels + channel`).
    pub samples: Vec<f32>,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Number of channels.
    pub channels: usize,
}

impl AudioClip {
    /// Number of sample frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1)
    }

    /// Duration in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.frames() as f64 / self.sample_rate as f64
    }

    /// The average of the channels (librosa's `to_mono`).
    pub fn to_mono(&self) -> Vec<f32> {
        downmix(&self.samples, self.channels)
    }

    /// The clip at another sample rate (windowed-sinc, see [`Resampler`]).
    pub fn resample(&self, sample_rate: u32) -> Result<AudioClip> {
        Ok(AudioClip {
            samples: crate::resample(&self.samples, self.channels, self.sample_rate, sample_rate)?,
            sample_rate,
            channels: self.channels,
        })
    }
}

/// The average of the channels of interleaved `samples` (librosa's `to_mono`).
pub fn downmix(samples: &[f32], channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return samples.to_vec();
    }
    samples
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect()
}

/// What [`load`] returns: a window of a file, optionally mixed to mono and
/// resampled, like `librosa.load(path, sr=..., mono=..., offset=..., duration=...)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadOptions {
    /// Resample to this rate (`None` keeps the file's).
    pub sample_rate: Option<u32>,
    /// Average the channels into one.
    pub mono: bool,
    /// Start this many seconds into the file (seeking, not decoding, to it).
    pub offset_secs: f64,
    /// Read at most this many seconds (`None`: to the end).
    pub duration_secs: Option<f64>,
}

impl LoadOptions {
    /// Checks the window: a finite offset of at least 0 s, a finite duration
    /// above 0 s, and a sample rate above 0 Hz; the error names the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Config(format!("audio load: {what}")));
        let offset = self.offset_secs;
        if !offset.is_finite() || offset < 0.0 {
            return bad(format!(
                "offset_secs must be a finite number >= 0, got {offset}"
            ));
        }
        if let Some(duration) = self.duration_secs
            && !(duration.is_finite() && duration > 0.0)
        {
            return bad(format!(
                "duration_secs must be a finite number > 0 (or none: to the end), got {duration}"
            ));
        }
        if self.sample_rate == Some(0) {
            return bad("sample_rate must be above 0 Hz".into());
        }
        Ok(())
    }

    /// Mono at `sample_rate`, the whole file (the usual model input).
    pub fn mono_at(sample_rate: u32) -> Self {
        Self {
            sample_rate: Some(sample_rate),
            mono: true,
            ..Self::default()
        }
    }
}

/// Decodes a whole audio file at its own rate and channel count, naming the
/// file in errors.
pub fn decode_file(path: impl AsRef<Path>) -> Result<AudioClip> {
    load(path, &LoadOptions::default())
}

/// Decodes audio held in memory; `extension` is a hint (`"wav"`, `"mp3"`, ...).
pub fn decode_bytes(bytes: Vec<u8>, extension: Option<&str>) -> Result<AudioClip> {
    let reader = AudioReader::from_source(Box::new(std::io::Cursor::new(bytes)), extension)
        .map_err(|reason| Error::decode("<memory>", "audio", reason))?;
    read_window(reader, &LoadOptions::default())
}

/// Decodes (part of) an audio file, converting as `options` says. Only the
/// requested window is decoded and converted, chunk by chunk, so taking 30 s
/// of a two-hour recording reads about 30 s of it.
pub fn load(path: impl AsRef<Path>, options: &LoadOptions) -> Result<AudioClip> {
    read_window(AudioReader::open(path)?, options)
}

fn read_window(mut reader: AudioReader, options: &LoadOptions) -> Result<AudioClip> {
    options.validate()?;
    if options.offset_secs > 0.0 {
        reader.seek(options.offset_secs)?;
    }
    let mut clip = ClipBuilder::new(options, reader.sample_rate(), reader.channels())?;
    while let Some(chunk) = reader.next_chunk()? {
        if clip.push(chunk.samples)? {
            break;
        }
    }
    clip.finish()?.ok_or_else(|| {
        reader.error(match options.offset_secs {
            0.0 => "no audio samples".to_string(),
            offset => format!("no audio samples after {offset} s"),
        })
    })
}

/// Turns decoded chunks into the clip [`LoadOptions`] asks for, as they
/// come: stops at the duration, mixes to mono, resamples.
#[derive(Debug)]
pub struct ClipBuilder {
    channels: usize,
    mono: bool,
    /// Input frames still wanted (`None`: all).
    wanted: Option<usize>,
    resampler: Option<Resampler>,
    sample_rate: u32,
    samples: Vec<f32>,
}

impl ClipBuilder {
    /// A builder for a stream of `rate` Hz with `channels` interleaved channels.
    pub fn new(options: &LoadOptions, rate: u32, channels: usize) -> Result<Self> {
        options.validate()?;
        let out_channels = if options.mono { 1 } else { channels };
        let resampler = match options.sample_rate {
            Some(to) if to != rate => Some(Resampler::new(rate, to, out_channels)?),
            _ => None,
        };
        Ok(Self {
            channels,
            mono: options.mono,
            // Whole frames, truncated, as librosa counts them (`as`
            // saturates a huge duration: it then means "to the end").
            wanted: options.duration_secs.map(|d| (d * rate as f64) as usize),
            resampler,
            sample_rate: options.sample_rate.unwrap_or(rate),
            samples: Vec::new(),
        })
    }

    /// Adds interleaved samples; `true` once the duration is reached.
    pub fn push(&mut self, mut chunk: Vec<f32>) -> Result<bool> {
        if let Some(left) = self.wanted.as_mut() {
            chunk.truncate(left.saturating_mul(self.channels));
            *left -= chunk.len() / self.channels;
        }
        let chunk = if self.mono {
            downmix(&chunk, self.channels)
        } else {
            chunk
        };
        match self.resampler.as_mut() {
            Some(r) => r.process(&chunk, &mut self.samples)?,
            None => self.samples.extend_from_slice(&chunk),
        }
        Ok(self.wanted == Some(0))
    }

    /// The converted samples produced so far, taken out of the builder (a
    /// resampler keeps a few back until more input or the end comes).
    pub fn take(&mut self) -> Vec<f32> {
        std::mem::take(&mut self.samples)
    }

    /// Flushes the resampler at the end of the input and takes the rest.
    pub fn take_rest(&mut self) -> Result<Vec<f32>> {
        if let Some(r) = self.resampler.as_mut() {
            r.finish(&mut self.samples)?;
        }
        Ok(self.take())
    }

    /// The clip, or `None` when no sample was pushed.
    pub fn finish(mut self) -> Result<Option<AudioClip>> {
        if let Some(r) = self.resampler.as_mut() {
            r.finish(&mut self.samples)?;
        }
        let channels = if self.mono { 1 } else { self.channels };
        Ok((!self.samples.is_empty()).then_some(AudioClip {
            samples: self.samples,
            sample_rate: self.sample_rate,
            channels,
        }))
    }
}

/// Converted samples, chunk after chunk: what a long input is read as
/// when it should not be held whole in memory.
pub trait SampleSource {
    /// The next samples, or `None` at the end.
    fn next_samples(&mut self) -> Result<Option<Vec<f32>>>;
}

/// An audio file decoded and converted as [`LoadOptions`] say, one packet
/// at a time: the same samples as [`load`], without holding them all.
#[derive(Debug)]
pub struct SampleStream {
    reader: AudioReader,
    clip: ClipBuilder,
    ended: bool,
}

impl SampleStream {
    /// Opens `path` for reading as `options` say (offset, duration, mono,
    /// sample rate).
    pub fn open(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Self> {
        let mut reader = AudioReader::open(path)?;
        options.validate()?;
        if options.offset_secs > 0.0 {
            reader.seek(options.offset_secs)?;
        }
        let clip = ClipBuilder::new(options, reader.sample_rate(), reader.channels())?;
        Ok(Self {
            reader,
            clip,
            ended: false,
        })
    }
}

impl SampleSource for SampleStream {
    fn next_samples(&mut self) -> Result<Option<Vec<f32>>> {
        while !self.ended {
            let done = match self.reader.next_chunk()? {
                Some(chunk) => self.clip.push(chunk.samples)?,
                None => true,
            };
            let samples = if done {
                self.ended = true;
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

/// Samples held in memory, handed out in pieces of `chunk` (tests, and
/// input that is already decoded).
#[derive(Debug)]
pub struct SliceSource<'a> {
    samples: &'a [f32],
    chunk: usize,
}

impl<'a> SliceSource<'a> {
    /// `samples` in pieces of `chunk` (at least 1).
    pub fn new(samples: &'a [f32], chunk: usize) -> Self {
        Self {
            samples,
            chunk: chunk.max(1),
        }
    }
}

impl SampleSource for SliceSource<'_> {
    fn next_samples(&mut self) -> Result<Option<Vec<f32>>> {
        if self.samples.is_empty() {
            return Ok(None);
        }
        let (head, rest) = self.samples.split_at(self.chunk.min(self.samples.len()));
        self.samples = rest;
        Ok(Some(head.to_vec()))
    }
}

/// Facts about an audio stream, known before decoding it.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Number of channels.
    pub channels: usize,
    /// Duration from the container, when it says.
    pub duration_secs: Option<f64>,
}

/// A decoder that hands out an audio file one packet at a time.
pub struct AudioReader {
    path: PathBuf,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    time_base: Option<TimeBase>,
    info: AudioInfo,
    /// Frames still to drop from the next packets after an accurate seek.
    skip_frames: usize,
    buffer: Vec<f32>,
}

impl std::fmt::Debug for AudioReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioReader")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish()
    }
}

impl AudioReader {
    /// Opens a file; the container is recognised from its content (the
    /// extension is only a hint).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let extension = path.extension().and_then(|e| e.to_str());
        let mut reader = Self::from_source(Box::new(file), extension)
            .map_err(|reason| Error::decode(path, "audio", reason))?;
        reader.path = path.to_path_buf();
        Ok(reader)
    }

    fn from_source(source: Box<dyn MediaSource>, extension: Option<&str>) -> Result<Self, String> {
        let stream = MediaSourceStream::new(source, Default::default());
        let mut hint = Hint::new();
        if let Some(extension) = extension {
            hint.with_extension(extension);
        }
        let format = guard(|| {
            symphonia::default::get_probe().probe(
                &hint,
                stream,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
        })?;
        let track = format
            .default_track(TrackType::Audio)
            .ok_or("no audio track")?;
        let (track_id, time_base) = (track.id, track.time_base);
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or("the track has no audio codec parameters")?
            .clone();
        let duration_secs = match (time_base, track.duration) {
            (Some(tb), Some(d)) => tb.calc_duration(d).map(|t| t.as_secs_f64()),
            _ => None,
        };
        let decoder = guard(|| {
            symphonia::default::get_codecs()
                .make_audio_decoder(&params, &AudioDecoderOptions::default())
        })?;
        let sample_rate = params.sample_rate.ok_or("unknown sample rate")?;
        let channels = params.channels.as_ref().map_or(0, |c| c.count());
        if sample_rate == 0 || channels == 0 {
            return Err("unknown sample rate or channel count".into());
        }
        if channels > MAX_CHANNELS {
            return Err(format!("implausible channel count {channels}"));
        }
        Ok(Self {
            path: PathBuf::from("<memory>"),
            format,
            decoder,
            track_id,
            time_base,
            info: AudioInfo {
                sample_rate,
                channels,
                duration_secs,
            },
            skip_frames: 0,
            buffer: Vec::new(),
        })
    }

    /// Rate, channels and duration as the container declares them.
    pub fn info(&self) -> &AudioInfo {
        &self.info
    }

    /// Sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.info.sample_rate
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.info.channels
    }

    fn error(&self, reason: impl ToString) -> Error {
        Error::decode(&self.path, "audio", reason)
    }

    /// Moves to `secs` into the stream: the next chunk starts there, to the
    /// sample (the container seeks to a packet, the rest is decoded and dropped).
    pub fn seek(&mut self, secs: f64) -> Result<()> {
        let time = Time::try_from_secs_f64(secs)
            .ok_or_else(|| Error::Config(format!("cannot seek to {secs} s")))?;
        let (format, track_id) = (&mut self.format, self.track_id);
        let seeked = guard(|| {
            format.seek(
                SeekMode::Accurate,
                SeekTo::Time {
                    time,
                    track_id: Some(track_id),
                },
            )
        })
        .map_err(|e| self.error(format!("seek to {secs} s: {e}")))?;
        self.decoder.reset();
        // Both timestamps come from the file: any i64 is possible.
        let gap = seeked
            .required_ts
            .get()
            .saturating_sub(seeked.actual_ts.get());
        let gap_secs = match self.time_base {
            Some(tb) => tb
                .calc_time(symphonia::core::units::Timestamp::new(gap.max(0)))
                .map_or(0.0, |t| t.as_secs_f64()),
            None => 0.0,
        };
        self.skip_frames = (gap_secs * self.info.sample_rate as f64).round() as usize;
        Ok(())
    }

    /// Decodes the next packet of the track: interleaved samples, or `None`
    /// at the end. A file cut short ends at its last whole packet.
    pub fn next_chunk(&mut self) -> Result<Option<AudioClip>> {
        loop {
            let format = &mut self.format;
            let next = catch_unwind(AssertUnwindSafe(|| format.next_packet()))
                .map_err(|_| self.error(PANIC_MESSAGE))?;
            let packet = match next {
                Ok(Some(packet)) => packet,
                Ok(None) => return Ok(None),
                Err(SymphoniaError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => {
                    return Ok(None);
                }
                Err(e) => return Err(self.error(describe(e))),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let (decoder, buffer) = (&mut self.decoder, &mut self.buffer);
            let decoded = catch_unwind(AssertUnwindSafe(|| {
                decoder.decode(&packet).map(|decoded| {
                    decoded.copy_to_vec_interleaved(buffer);
                    (decoded.spec().rate(), decoded.spec().channels().count())
                })
            }))
            .map_err(|_| self.error(PANIC_MESSAGE))?;
            let (rate, channels) = decoded.map_err(|e| self.error(describe(e)))?;
            if (rate, channels) != (self.info.sample_rate, self.info.channels) {
                return Err(self.error(format!(
                    "the stream changes format mid-way ({} Hz x {} to {rate} Hz x {channels})",
                    self.info.sample_rate, self.info.channels
                )));
            }
            let skip = self
                .skip_frames
                .saturating_mul(channels)
                .min(self.buffer.len());
            self.skip_frames -= skip / channels;
            if skip == self.buffer.len() {
                continue;
            }
            return Ok(Some(AudioClip {
                samples: self.buffer[skip..].to_vec(),
                sample_rate: rate,
                channels,
            }));
        }
    }
}

/// More channels than any real recording has: a corrupt header.
const MAX_CHANNELS: usize = 64;

const PANIC_MESSAGE: &str = "the decoder failed on malformed data (it panicked)";

/// Runs a symphonia call, turning its panics on malformed input (it has
/// some, e.g. a shift overflow on WAV headers with thousands of channels)
/// into errors.
fn guard<T>(call: impl FnOnce() -> Result<T, SymphoniaError>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(call))
        .map_err(|_| PANIC_MESSAGE.to_string())?
        .map_err(describe)
}

fn describe(error: SymphoniaError) -> String {
    match error {
        SymphoniaError::Unsupported(what) => format!("unsupported format or codec ({what})"),
        other => other.to_string(),
    }
}
