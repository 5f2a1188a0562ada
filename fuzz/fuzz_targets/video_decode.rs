//! Any bytes, as a file, through FFmpeg's demuxers and decoders: frames,
//! sampling with seeks, and the audio track.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polymodal_video::{Sampling, VideoReader, load_audio_track, sample_frames};

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("polymodal-fuzz-{}.bin", std::process::id()));
    std::fs::write(&path, data).expect("temp file");
    if let Ok(mut reader) = VideoReader::open(&path) {
        for _ in 0..64 {
            match reader.next_frame() {
                Ok(Some(frame)) => assert!(frame.image.width() > 0),
                _ => break,
            }
        }
        let _ = sample_frames(&path, &Sampling::uniform(3));
    }
    let _ = load_audio_track(&path, &Default::default());
});
