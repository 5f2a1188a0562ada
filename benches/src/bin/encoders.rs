//! `cargo xtask bench encoders`: encoder throughput against PyTorch on the
//! same machine in the same run, as ratios (polymodal throughput / PyTorch
//! throughput: above 1 means polymodal is faster). Inference only, every
//! core on both sides; on the CPU backend by default, or on a wgpu device
//! (PyTorch then on CUDA when it has a GPU, else on the CPU), in f32 or f16
//! (both sides).
//!
//! - all-MiniLM-L6-v2 sentence embeddings (tokenise + encode + pool +
//!   normalise) at batch 1 and 32, vs sentence-transformers;
//! - ResNet-18 (224×224, batch 8) vs torchvision, random weights (the same
//!   work as pretrained ones);
//! - a ViT-Tiny-sized ViT (192 wide, 12 layers, 3 heads, patch 16, 224×224,
//!   batch 8) vs transformers' `ViTModel`.
//!
//! Usage: encoders --shared DIR [--python PYTHON] [--reps N] [--device cpu|wgpu|wgpu:N]
//! [--precision f32|f16]

use std::path::Path;
use std::time::{Duration, Instant};

use burn::prelude::*;
use polymodal::device::{Precision, device_with_precision};
use polymodal_benches::{Options, python_reference, timing};
use polymodal_core::{Encoder, Init};
use polymodal_image::{ResNetConfig, Vit, VitConfig};
use polymodal_text::SentenceEncoder;
use serde_json::{Value, json};

const IMAGE_BATCH: usize = 8;

/// The fastest of `reps` timed passes, after one untimed warm-up pass.
fn best_of(reps: usize, mut work: impl FnMut() -> Result<(), String>) -> Result<Duration, String> {
    work()?;
    let mut best = Duration::MAX;
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        work()?;
        best = best.min(start.elapsed());
    }
    Ok(best)
}

fn error(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Sentences of varied length (the same list goes to Python).
fn sentences() -> Vec<String> {
    let words = "multimodal models learn from text images audio and video together \
                 while a fusion layer combines what each encoder has seen into one vector";
    let words: Vec<&str> = words.split(' ').collect();
    (0..32)
        .map(|i| {
            let n = 6 + (i * 7) % 20;
            (0..n)
                .map(|j| words[(i * 3 + j) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn vit_tiny() -> VitConfig {
    VitConfig {
        hidden_size: 192,
        num_hidden_layers: 12,
        num_attention_heads: 3,
        intermediate_size: 768,
        hidden_act: "gelu".into(),
        layer_norm_eps: 1e-12,
        image_size: 224,
        patch_size: 16,
        num_channels: 3,
    }
}

struct Row {
    what: String,
    unit: &'static str,
    /// Items per pass and our best pass.
    items: usize,
    ours: Duration,
    reference: Result<(Duration, String), String>,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let options = Options::from_args()?;
    let reps = options.reps;
    let precision: Precision = options.precision.parse().map_err(error)?;
    let device = device_with_precision(Some(&options.device), precision).map_err(error)?;
    let minilm = options.shared.join("models/all-MiniLM-L6-v2");
    let (encoder, _) = SentenceEncoder::load(&minilm, &device).map_err(error)?;
    let texts = sentences();
    let one = best_of(reps, || {
        for text in &texts {
            encoder.embed(&[text], &device).map_err(error)?.into_data();
        }
        Ok(())
    })?;
    // Each pass reads its result back: a GPU queue is asynchronous.
    let batched = best_of(reps, || {
        let out = encoder.embed(&texts, &device).map_err(error)?;
        out.into_data();
        Ok(())
    })?;

    let images = Tensor::<4>::random(
        [IMAGE_BATCH, 3, 224, 224],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let resnet = ResNetConfig::resnet18().init(&device).map_err(error)?;
    let ours_resnet = best_of(reps, || {
        let out = resnet.encode(&images).map_err(error)?;
        out.pooled.into_data();
        Ok(())
    })?;
    let vit = Vit::build(&vit_tiny(), Init::Random, false, &device).map_err(error)?;
    let ours_vit = best_of(reps, || {
        let out = vit.forward(images.clone()).map_err(error)?;
        out.last_hidden_state.into_data();
        Ok(())
    })?;

    let spec = spec(&options, &minilm, &texts);
    let python = python_reference(&options.python, "encoders_reference.py", &spec);
    let reference = |name: &str| timing(&python, name);
    let rows = [
        Row {
            what: "all-MiniLM-L6-v2 sentence embeddings, batch 1".into(),
            unit: "sentences/s",
            items: texts.len(),
            ours: one,
            reference: reference("minilm_1"),
        },
        Row {
            what: "all-MiniLM-L6-v2 sentence embeddings, batch 32".into(),
            unit: "sentences/s",
            items: texts.len(),
            ours: batched,
            reference: reference("minilm_32"),
        },
        Row {
            what: format!("ResNet-18, 224x224, batch {IMAGE_BATCH}"),
            unit: "images/s",
            items: IMAGE_BATCH,
            ours: ours_resnet,
            reference: reference("resnet18"),
        },
        Row {
            what: format!("ViT-Tiny size (192 wide, 12 layers), 224x224, batch {IMAGE_BATCH}"),
            unit: "images/s",
            items: IMAGE_BATCH,
            ours: ours_vit,
            reference: reference("vit_tiny"),
        },
    ];
    println!("{} in {}\n", options.device, options.precision);
    println!("| work | polymodal | PyTorch | reference | ratio |");
    println!("| --- | ---: | ---: | --- | ---: |");
    for row in rows {
        let rate = |d: Duration| row.items as f64 / d.as_secs_f64();
        match &row.reference {
            Ok((time, tool)) => println!(
                "| {} | {:.1} {} | {:.1} {} | {tool} | {:.2}x |",
                row.what,
                rate(row.ours),
                row.unit,
                rate(*time),
                row.unit,
                rate(row.ours) / rate(*time)
            ),
            Err(why) => println!(
                "| {} | {:.1} {} | - | {why} | - |",
                row.what,
                rate(row.ours),
                row.unit
            ),
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "\nBest of {reps} passes each after a warm-up pass, {threads} thread(s) on both sides; \
         ratio = polymodal throughput / PyTorch throughput."
    );
    Ok(())
}

fn spec(options: &Options, minilm: &Path, sentences: &[String]) -> Value {
    let vit = vit_tiny();
    json!({
        "reps": options.reps,
        "gpu": options.device != "cpu", "precision": options.precision,
        "minilm": minilm, "sentences": sentences,
        "image_batch": IMAGE_BATCH,
        "vit": {
            "hidden_size": vit.hidden_size, "num_hidden_layers": vit.num_hidden_layers,
            "num_attention_heads": vit.num_attention_heads,
            "intermediate_size": vit.intermediate_size, "image_size": vit.image_size,
            "patch_size": vit.patch_size,
        },
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}
