//! Per-sample preprocessing cost of the demo's pipeline stages.

use criterion::{Criterion, criterion_group, criterion_main};
use polymodal_audio::{MelConfig, MelSpectrogram};
use polymodal_image::ImagePreprocess;

fn mel(c: &mut Criterion) {
    let mel = MelSpectrogram::new(MelConfig::librosa(16_000, 400, 160, 80)).expect("valid config");
    let signal: Vec<f32> = (0..16_000 * 10).map(|i| (i as f32 * 0.01).sin()).collect();
    c.bench_function("log-mel 10 s @ 16 kHz (400/160/80)", |b| {
        b.iter(|| mel.compute(&signal).expect("finite"))
    });
}

fn image(c: &mut Criterion) {
    let photo = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let pre = ImagePreprocess::clip(224);
    c.bench_function("clip preprocess 640x480 -> 224x224", |b| {
        b.iter(|| pre.apply(&photo).unwrap())
    });
}

criterion_group!(benches, mel, image);
criterion_main!(benches);
