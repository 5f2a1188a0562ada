//! Audio decoding with symphonia: any enabled container/codec to f32 samples.

use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

use polymodal_core::{Error, Result};

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

    /// The average of the channels.
    pub fn to_mono(&self) -> Vec<f32> {
        if self.channels == 1 {
            return self.samples.clone();
        }
        self.samples
            .chunks_exact(self.channels)
            .map(|frame| frame.iter().sum::<f32>() / self.channels as f32)
            .collect()
    }
}

/// Decodes an audio file (WAV or FLAC in this build), naming the file in errors.
pub fn decode_file(path: impl AsRef<Path>) -> Result<AudioClip> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let extension = path.extension().and_then(|e| e.to_str());
    decode_source(Box::new(file), extension).map_err(|reason| Error::decode(path, "audio", reason))
}

/// Decodes audio held in memory; `extension` is a hint (`"wav"`, `"flac"`).
pub fn decode_bytes(bytes: Vec<u8>, extension: Option<&str>) -> Result<AudioClip> {
    decode_source(Box::new(std::io::Cursor::new(bytes)), extension)
        .map_err(|reason| Error::decode("<memory>", "audio", reason))
}

fn decode_source(
    source: Box<dyn MediaSource>,
    extension: Option<&str>,
) -> Result<AudioClip, String> {
    let stream = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    if let Some(extension) = extension {
        hint.with_extension(extension);
    }
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            stream,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(describe)?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or("no audio track")?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or("the track has no audio codec parameters")?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(describe)?;
    let mut sample_rate = params.sample_rate.unwrap_or(0);
    let mut channels = params.channels.as_ref().map_or(0, |c| c.count());
    let (mut samples, mut chunk) = (Vec::new(), Vec::new());
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A file cut short ends at its last whole packet: that is what it holds.
            Err(SymphoniaError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(describe(e)),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buffer = decoder.decode(&packet).map_err(describe)?;
        sample_rate = buffer.spec().rate();
        channels = buffer.spec().channels().count();
        buffer.copy_to_vec_interleaved(&mut chunk);
        samples.extend_from_slice(&chunk);
    }
    if samples.is_empty() {
        return Err("no audio samples".into());
    }
    if sample_rate == 0 || channels == 0 {
        return Err("unknown sample rate or channel count".into());
    }
    Ok(AudioClip {
        samples,
        sample_rate,
        channels,
    })
}

fn describe(error: SymphoniaError) -> String {
    match error {
        SymphoniaError::Unsupported(what) => format!("unsupported format or codec ({what})"),
        other => other.to_string(),
    }
}
