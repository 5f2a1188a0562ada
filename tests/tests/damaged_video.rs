//! Real-world damage to videos, beyond the byte-level corpus of
//! `damaged_media.rs`: faststart MP4s cut short (their index promises frames
//! the file no longer holds), AVIs with broken frames, and headers that lie
//! about the duration. Sampling must return exactly the frames asked for,
//! each one the file really holds, or an error naming the file; never a
//! panic, never a short list (which once reached Burn's tensor constructor).
//! The originals are made by `scripts/make_damaged_fixtures.py`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use image::RgbImage;
use polymodal::video::{
    MAX_SAMPLED_FRAMES, Sampling, Strategy, VideoReader, decode_all, sample_frames,
};
use polymodal_tests::scratch_dir;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/damaged")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `sample_frames` with panics turned into a test failure naming the case.
fn sample(path: &Path, sampling: &Sampling, case: &str) -> polymodal::Result<Vec<RgbImage>> {
    catch_unwind(AssertUnwindSafe(|| sample_frames(path, sampling)))
        .unwrap_or_else(|_| panic!("{case}: sampling panicked"))
        .map(|frames| frames.into_iter().map(|f| f.image).collect())
}

/// Checks a sampling result: an error names the file; frames are as many
/// as `expected` and each is one of `decodable` (what decoding the whole
/// file gives). Returns the frames, if any.
fn check(
    result: polymodal::Result<Vec<RgbImage>>,
    expected: usize,
    decodable: &[RgbImage],
    path: &Path,
    case: &str,
) -> Option<Vec<RgbImage>> {
    match result {
        Ok(frames) => {
            assert_eq!(frames.len(), expected, "{case}: frames returned");
            for (k, frame) in frames.iter().enumerate() {
                assert!(
                    decodable.contains(frame),
                    "{case}: frame {k} is not a frame the file holds"
                );
            }
            Some(frames)
        }
        Err(e) => {
            let name = path.file_name().unwrap().to_str().unwrap();
            assert!(e.to_string().contains(name), "{case}: {e}");
            None
        }
    }
}

#[test]
fn cut_faststart_mp4s_sample_every_frame_asked_for() {
    let dir = scratch_dir("cut-faststart");
    let bytes = fixture("faststart-h264.mp4");
    let full = decode_all(dir_write(&dir, "whole.mp4", &bytes)).unwrap();
    assert_eq!(full.len(), 60, "the original: 6 s at 10 fps");
    let mut sampled_cut_files = 0;
    for percent in [10, 25, 40, 50, 60, 75, 90, 99] {
        let cut = bytes.len() * percent / 100;
        let path = dir_write(&dir, &format!("cut-{percent}.mp4"), &bytes[..cut]);
        let decodable = decode_all(&path).unwrap_or_default();
        // Uniform instants 0.75 s apart or more: later ones seek, and the
        // seeks past the cut find nothing to decode.
        for count in [2, 3, 8] {
            let case = format!("cut at {percent}% ({cut} bytes), {count} uniform frames");
            let result = sample(&path, &Sampling::uniform(count), &case);
            let Some(frames) = check(result, count, &decodable, &path, &case) else {
                continue;
            };
            sampled_cut_files += 1;
            // An instant past the last frame left (10 fps, from 0 s) shows
            // that frame, as a player would.
            let last_instant = (count as f64 - 0.5) * 6.0 / count as f64;
            if last_instant >= decodable.len() as f64 / 10.0 {
                assert_eq!(frames.last(), decodable.last(), "{case}");
            }
        }
        let case = format!("cut at {percent}%, 2 frames a second");
        let fps = Sampling::whole(Strategy::Fps { fps: 2.0 });
        check(sample(&path, &fps, &case), 12, &decodable, &path, &case);
    }
    assert!(
        sampled_cut_files >= 12,
        "most cuts keep decodable frames: {sampled_cut_files} samplings succeeded"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn dir_write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The payload offset and length of every box named `name` (ISO BMFF),
/// searching the box tree through the containers that lead to it.
fn find_boxes(bytes: &[u8], name: &[u8; 4]) -> Vec<(usize, usize)> {
    const CONTAINERS: [&[u8; 4]; 4] = [b"moov", b"trak", b"mdia", b"minf"];
    let mut found = Vec::new();
    let mut stack = vec![(0usize, bytes.len())];
    while let Some((mut at, end)) = stack.pop() {
        while at + 8 <= end {
            let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let kind: &[u8; 4] = bytes[at + 4..at + 8].try_into().unwrap();
            if size < 8 || at + size > end {
                break;
            }
            if kind == name {
                found.push((at + 8, size - 8));
            } else if CONTAINERS.contains(&kind) {
                stack.push((at + 8, at + size));
            }
            at += size;
        }
    }
    found
}

#[test]
fn mp4_headers_that_lie_about_the_duration() {
    let dir = scratch_dir("lying-mp4");
    let bytes = fixture("faststart-h264.mp4");
    let decodable = decode_all(dir_write(&dir, "whole.mp4", &bytes)).unwrap();
    // mvhd and mdhd (version 0) hold the duration at payload offset 16,
    // tkhd at 20: claim 1000 times as long (100 minutes). FFmpeg takes the
    // stream's duration from the sample table, the container's from mvhd.
    let mut lying = bytes.clone();
    let mut patched = 0;
    for (name, offset) in [(b"mvhd", 16), (b"mdhd", 16), (b"tkhd", 20)] {
        for (at, _) in find_boxes(&bytes, name) {
            assert_eq!(bytes[at], 0, "version 0 {}", String::from_utf8_lossy(name));
            let field = at + offset..at + offset + 4;
            let value = u32::from_be_bytes(bytes[field.clone()].try_into().unwrap());
            lying[field].copy_from_slice(&(value * 1000).to_be_bytes());
            patched += 1;
        }
    }
    assert_eq!(patched, 3);
    let path = dir_write(&dir, "lying.mp4", &lying);
    for count in [1, 4, 16] {
        let case = format!("{count} uniform frames of a 6 s MP4 claiming 6000 s");
        let result = sample(&path, &Sampling::uniform(count), &case);
        assert!(check(result, count, &decodable, &path, &case).is_some());
    }
    let case = "2 frames a second of the lying MP4";
    let fps = Sampling::whole(Strategy::Fps { fps: 2.0 });
    check(sample(&path, &fps, case), 12, &decodable, &path, case).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn avis_with_broken_frames_and_lying_headers() {
    let dir = scratch_dir("broken-avi");
    let bytes = fixture("mjpeg.avi");
    let decodable = decode_all(dir_write(&dir, "whole.avi", &bytes)).unwrap();
    assert_eq!(decodable.len(), 60);
    // Each frame is a `00dc` chunk holding a JPEG: break the entropy-coded
    // data of every third frame, and cut the last chunk short.
    let chunks: Vec<usize> = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| w == b"00dc")
        .map(|(at, _)| at)
        .collect();
    assert!(chunks.len() >= 60, "{} frame chunks", chunks.len());
    let mut broken = bytes.clone();
    for &at in chunks.iter().step_by(3) {
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let data = at + 8..(at + 8 + size).min(bytes.len());
        // Past the JPEG headers, into the scan data.
        let start = data.start + data.len() * 2 / 3;
        for b in &mut broken[start..(start + 64).min(data.end)] {
            *b ^= 0x5A;
        }
    }
    let path = dir_write(&dir, "broken.avi", &broken);
    let damaged = decode_all(&path).unwrap_or_default();
    for count in [3, 8, 30] {
        let case = format!("{count} uniform frames of an AVI with broken frames");
        let result = sample(&path, &Sampling::uniform(count), &case);
        let mut known = decodable.clone();
        known.extend(damaged.iter().cloned());
        check(result, count, &known, &path, &case);
    }
    // The header claims 2^31 - 1 frames (avih dwTotalFrames, strh dwLength).
    let mut lying = bytes.clone();
    let avih = bytes.windows(4).position(|w| w == b"avih").unwrap() + 8;
    lying[avih + 16..avih + 20].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let strh = bytes.windows(4).position(|w| w == b"strh").unwrap() + 8;
    lying[strh + 32..strh + 36].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let path = dir_write(&dir, "lying.avi", &lying);
    let info = VideoReader::open(&path).unwrap().info().clone();
    assert!(
        info.duration_secs.unwrap() > 1e8,
        "the header claims {:?} s",
        info.duration_secs
    );
    // Uniform instants spread over 6.8 years: every one past the real end
    // shows the last frame the file holds.
    for count in [1, 8] {
        let case = format!("{count} uniform frames of an AVI claiming 2^31 frames");
        let result = sample(&path, &Sampling::uniform(count), &case);
        let frames = check(result, count, &decodable, &path, &case).unwrap();
        assert_eq!(frames.last(), decodable.last(), "{case}");
    }
    // Two frames a second over the claimed duration would be 4.3e8
    // frames: an error naming the file and the limit, before anything is
    // allocated from the header's word alone.
    let fps = Sampling::whole(Strategy::Fps { fps: 2.0 });
    let error = sample(&path, &fps, "fps").unwrap_err().to_string();
    assert!(
        error.contains("lying.avi") && error.contains(&MAX_SAMPLED_FRAMES.to_string()),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Numbers a user gives (seek times, windows, rates, counts) never overflow
/// integer arithmetic: they give an error naming them, or a result.
#[test]
fn absurd_seek_times_windows_and_counts_are_errors() {
    let dir = scratch_dir("absurd-numbers");
    let path = dir_write(&dir, "video.mp4", &fixture("faststart-h264.mp4"));
    let mut reader = VideoReader::open(&path).unwrap();
    for secs in [1e300, f64::MAX, 9.3e12] {
        let seeked = catch_unwind(AssertUnwindSafe(|| {
            reader.seek(secs)?;
            reader.next_frame()
        }));
        // Past the end: an error, or no frame.
        assert!(
            matches!(seeked, Ok(Err(_)) | Ok(Ok(None))),
            "seek to {secs} s: {seeked:?}"
        );
    }
    for secs in [f64::INFINITY, f64::NAN, -1.0] {
        assert!(reader.seek(secs).is_err(), "seek to {secs}");
    }
    let samplings = [
        Sampling::uniform(3).within(1e300, f64::MAX),
        Sampling::uniform(3).within(7.0, 8.0),
        Sampling::uniform(MAX_SAMPLED_FRAMES + 1),
        Sampling::whole(Strategy::Fps { fps: f64::MAX }),
        Sampling::whole(Strategy::Fps { fps: f64::INFINITY }),
        Sampling::uniform(2).within(0.0, f64::INFINITY),
    ];
    for sampling in samplings {
        let case = format!("{sampling:?}");
        let result = sample(&path, &sampling, &case);
        assert!(result.is_err(), "{case}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
