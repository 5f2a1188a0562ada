//! One criterion bench per media path, on the committed fixtures (no shared
//! data needed). `cargo xtask bench media` compares the same paths with the
//! reference tools on the real shared files.

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use image::RgbImage;
use polymodal_audio::{LoadOptions, load};
use polymodal_image::{ImagePreprocess, load_rgb};
use polymodal_text::TextTokenizer;
use polymodal_video::{Sampling, VideoReader, sample_frames};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn video(c: &mut Criterion) {
    let path = fixture("media/seek-h264.mp4");
    c.bench_function("video: decode 120 frames 32x24 H.264 to RGB", |b| {
        b.iter(|| {
            let mut reader = VideoReader::open_with_threads(&path, 1).expect("opens");
            let mut image = RgbImage::new(0, 0);
            while reader
                .next_frame_into(&mut image)
                .expect("decodes")
                .is_some()
            {}
        })
    });
    c.bench_function("video: 4 uniform frames of 12 s (seeking)", |b| {
        b.iter(|| sample_frames(&path, &Sampling::uniform(4)).expect("samples"))
    });
}

fn audio(c: &mut Criterion) {
    let path = fixture("media/tone.mp3");
    c.bench_function("audio: MP3 decode + 16 kHz mono", |b| {
        b.iter(|| load(&path, &LoadOptions::mono_at(16_000)).expect("loads"))
    });
}

fn image(c: &mut Criterion) {
    let path = fixture("media/images/rgb.png");
    let clip = ImagePreprocess::clip(16);
    c.bench_function("image: PNG decode + CLIP preprocess", |b| {
        b.iter(|| {
            clip.apply(&load_rgb(&path).expect("decodes"))
                .expect("preprocesses")
        })
    });
}

fn text(c: &mut Criterion) {
    let tokenizer =
        TextTokenizer::from_file(fixture("parity/bpe-tokenizer.json"), 64).expect("loads");
    let sentences: Vec<String> = (0..256)
        .map(|i| format!("sentence {i}: crème brûlée, 東京, https://example.com/{i}"))
        .collect();
    c.bench_function("text: byte-level BPE, 256 sentences", |b| {
        b.iter(|| tokenizer.encode_batch(&sentences).expect("encodes"))
    });
}

criterion_group!(benches, video, audio, image, text);
criterion_main!(benches);
