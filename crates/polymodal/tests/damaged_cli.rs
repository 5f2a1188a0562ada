//! Damaged real-world videos through the whole command line: `train`,
//! `eval`, `predict` and `embed` give a result or an error naming the file,
//! never a panic. The damage is the kind found in the wild: faststart MP4s
//! cut short (their index promises frames the file no longer holds), AVIs
//! with broken frames and AVI headers that lie about the duration (see
//! tests/tests/damaged_video.rs for the decoder-level checks). A file with
//! fewer decodable frames than the model samples gives that many frames all
//! the same: instants past its last frame show that frame. The video tests
//! need the `video` feature (on by default).

// Without `video` the helpers of the video tests go unused.
#![cfg_attr(not(feature = "video"), allow(dead_code, unused_imports))]

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use polymodal::Modality;
use polymodal::demo::demo_features;

use common::{polymodal, scratch, write_untrained_model};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/damaged")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The damaged videos, by name, and whether each still holds a frame.
fn damaged_videos(dir: &Path) -> Vec<(PathBuf, bool)> {
    let mp4 = fixture("faststart-h264.mp4");
    let avi = fixture("mjpeg.avi");
    let mut broken_avi = avi.clone();
    let chunks: Vec<usize> = avi
        .windows(4)
        .enumerate()
        .filter(|(_, w)| w == b"00dc")
        .map(|(at, _)| at)
        .collect();
    for &at in chunks.iter().step_by(3) {
        let middle = (at + 8 + avi.len().min(at + 1200)) / 2;
        for b in &mut broken_avi[middle..(middle + 48).min(avi.len())] {
            *b ^= 0x5A;
        }
    }
    let mut lying_avi = avi.clone();
    let avih = avi.windows(4).position(|w| w == b"avih").unwrap() + 8;
    lying_avi[avih + 16..avih + 20].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let strh = avi.windows(4).position(|w| w == b"strh").unwrap() + 8;
    lying_avi[strh + 32..strh + 36].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let files: [(&str, &[u8], bool); 6] = [
        ("cut-30.mp4", &mp4[..mp4.len() * 30 / 100], true),
        ("cut-60.mp4", &mp4[..mp4.len() * 60 / 100], true),
        ("cut-90.mp4", &mp4[..mp4.len() * 90 / 100], true),
        // The index and nothing after it: no frame to decode.
        ("cut-5.mp4", &mp4[..mp4.len() * 5 / 100], false),
        ("broken-frames.avi", &broken_avi, true),
        ("lying-duration.avi", &lying_avi, true),
    ];
    files
        .into_iter()
        .map(|(name, bytes, decodable)| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            (path, decodable)
        })
        .collect()
}

/// Fails the test when `out` is a panic (Rust's exit code 101, or a panic
/// message), and returns whether the command succeeded.
fn no_panic(out: &Output, what: &str) -> bool {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(101) && !stderr.contains("panicked"),
        "{what}: panicked\n{stderr}"
    );
    out.status.success()
}

/// Checks a command on `video`: success when the file holds a frame, else
/// an error naming it.
fn expect(out: &Output, video: &Path, decodable: bool, what: &str) {
    let ok = no_panic(out, what);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let name = video.file_name().unwrap().to_str().unwrap();
    if decodable {
        assert!(ok, "{what}: {stderr}");
    } else {
        assert!(!ok && stderr.contains(name), "{what}: {stderr}");
    }
}

/// A WAV of `samples` mono samples at `rate` Hz (a quiet ramp).
fn write_wav(path: &Path, rate: u32, samples: usize) {
    let ramp: Vec<f32> = (0..samples)
        .map(|i| ((i % 200) as f32 - 100.0) / 1000.0)
        .collect();
    polymodal::audio::write_wav_pcm16(path, &ramp, rate, 1).unwrap();
}

#[cfg(feature = "video")]
#[test]
fn damaged_videos_through_eval_predict_embed_and_train() {
    let dir = scratch("videos");
    let model = dir.join("model");
    write_untrained_model(&model, &[Modality::Audio, Modality::Video], &["a", "b"]);
    let audio = dir.join("sound.wav");
    let rate = demo_features().audio.mel.sample_rate;
    write_wav(&audio, rate, demo_features().audio.clip_samples);
    let videos = damaged_videos(&dir);
    let model_arg = model.to_str().unwrap();
    let audio_arg = audio.to_str().unwrap();
    for (video, decodable) in &videos {
        let video_arg = video.to_str().unwrap();
        let name = video.file_name().unwrap().to_str().unwrap();
        for command in ["predict", "embed"] {
            let args = [command, "--model", model_arg, "--audio", audio_arg];
            let out = polymodal(&[&args[..], &["--video", video_arg]].concat());
            expect(&out, video, *decodable, &format!("{command} {name}"));
        }
        // A manifest of the file twice, one per class.
        let manifest = dir.join(format!("{name}.jsonl"));
        let line = |label: &str| {
            format!(
                "{{\"id\": \"{label}\", \"audio\": \"{audio_arg}\", \"video\": \"{video_arg}\", \"label\": \"{label}\"}}\n"
            )
        };
        std::fs::write(&manifest, format!("{}{}", line("a"), line("b"))).unwrap();
        let manifest_arg = manifest.to_str().unwrap();
        let out = polymodal(&["eval", "--model", model_arg, "--manifest", manifest_arg]);
        expect(&out, video, *decodable, &format!("eval {name}"));
        let run = dir.join(format!("run-{name}"));
        let experiment = dir.join(format!("{name}.toml"));
        std::fs::write(
            &experiment,
            format!(
                "output = \"{}\"\n\
                 [data]\ntrain = \"{manifest_arg}\"\nvalid = \"{manifest_arg}\"\ntest = \"{manifest_arg}\"\n\
                 [model]\nmodalities = [\"audio\", \"video\"]\nfusion = \"concat\"\ndim = 8\n\
                 [train]\nepochs = 1\nbatch_size = 2\n\
                 [features.video]\nframes = 4\npreprocess = {{ width = 16, height = 16 }}\n\
                 [features.audio]\nclip_samples = {clip}\n\
                 mel = {{ sample_rate = {rate}, n_fft = 256, hop_length = 128, n_mels = 16 }}\n",
                run.display(),
                clip = demo_features().audio.clip_samples,
            ),
        )
        .unwrap();
        let out = polymodal(&["train", "--config", experiment.to_str().unwrap()]);
        expect(&out, video, *decodable, &format!("train {name}"));
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Settings that would overflow or allocate without bound are errors
/// naming the setting, before any file is read.
#[test]
fn absurd_feature_settings_are_errors_naming_them() {
    let dir = scratch("settings");
    let audio = dir.join("sound.wav");
    write_wav(&audio, 16_000, 1600);
    let manifest = dir.join("m.jsonl");
    let audio_arg = audio.to_str().unwrap();
    std::fs::write(
        &manifest,
        format!(
            "{{\"id\": \"0\", \"audio\": \"{audio_arg}\", \"image\": \"x.png\", \"label\": \"a\"}}\n\
             {{\"id\": \"1\", \"audio\": \"{audio_arg}\", \"image\": \"x.png\", \"label\": \"b\"}}\n"
        ),
    )
    .unwrap();
    let manifest_arg = manifest.to_str().unwrap();
    for (setting, named) in [
        ("[features.image]\nwidth = 100000\nheight = 32\n", "width"),
        ("[features.image]\nwidth = 32\nheight = 0\n", "height"),
        (
            "[features.image]\nwidth = 32\nheight = 32\nnormalize = { mean = [0.5, 0.5, 0.5], std = [0.5, 0.0, 0.5] }\n",
            "normalize.std",
        ),
        ("[features.video]\nframes = 0\n", "features.video.frames"),
        (
            "[features.video]\nframes = 100000000\n",
            "features.video.frames",
        ),
        (
            "[features.audio]\nclip_samples = 0\n",
            "features.audio.clip_samples",
        ),
    ] {
        let experiment = dir.join("e.toml");
        std::fs::write(
            &experiment,
            format!(
                "output = \"{}\"\n[data]\ntrain = \"{manifest_arg}\"\n\
                 [model]\nmodalities = [\"audio\", \"image\"]\nfusion = \"concat\"\ndim = 8\n\
                 [train]\nepochs = 1\nbatch_size = 2\n{setting}",
                dir.join("run").display()
            ),
        )
        .unwrap();
        let out = polymodal(&["train", "--config", experiment.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!no_panic(&out, setting), "{setting}: accepted");
        assert!(stderr.contains(named), "{setting}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// `polymodal devices` (any wgpu command) on a server, where neither
/// `XDG_RUNTIME_DIR` nor `WAYLAND_DISPLAY` is set, prints no driver noise.
#[test]
fn devices_is_quiet_without_a_desktop_session() {
    let out = Command::new(env!("CARGO_BIN_EXE_polymodal"))
        .arg("devices")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("run polymodal devices");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
}
