//! `cargo xtask bench encoders`: encoder throughput against PyTorch on the
//! same machine in the same run, as ratios (polymodal throughput / PyTorch
//! throughput: above 1 means polymodal is faster). Inference only, every
//! core on both sides; on the CPU backend by default, or on a wgpu device
//! (PyTorch then on CUDA when it has a GPU, else on the CPU), in f32 or f16
//! (both sides). Written with the run's provenance and the goals' verdicts
//! to `docs/benchmarks/encoders-<device>-<precision>.md` (`<device>`: `cpu`,
//! or `wgpu-` and the adapter's name).
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
use std::time::Duration;

use burn::prelude::*;
use polymodal::device::{Precision, device_with_precision};
use polymodal_benches::report::{
    Align, Goal, Provenance, Report, Table, device_slug, ratio_cell, reports_dir, slug,
};
use polymodal_benches::{Options, adapter_name, best_of, error, python_reference, timing};
use polymodal_core::weights::HfTransformer;
use polymodal_core::{Encoder, Init};
use polymodal_image::{ResNetConfig, Vit, VitConfig};
use polymodal_text::SentenceEncoder;
use serde_json::{Value, json};

const IMAGE_BATCH: usize = 8;

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
        transformer: HfTransformer {
            hidden_size: 192,
            num_hidden_layers: 12,
            num_attention_heads: 3,
            intermediate_size: 768,
            hidden_act: "gelu".into(),
            layer_norm_eps: 1e-12,
        },
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
    goal: Option<Goal>,
}

fn main() {
    polymodal_benches::main_of("encoders", run);
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
    let vit = Vit::build(&vit_tiny(), &Init::random(), false, &device).map_err(error)?;
    let ours_vit = best_of(reps, || {
        let out = vit.forward(images.clone()).map_err(error)?;
        out.last_hidden_state.into_data();
        Ok(())
    })?;

    let spec = spec(&options, &minilm, &texts);
    let python = python_reference(&options.python, "encoders_reference.py", &spec);
    let reference = |name: &str| timing(&python, name);
    // The goal (polymodal throughput / PyTorch throughput) is set for the
    // CPU backend in f32, the configuration it was set for.
    let minilm_goal = (options.device == "cpu" && options.precision == "f32").then_some(Goal(1.0));
    let rows = [
        Row {
            what: "all-MiniLM-L6-v2 sentence embeddings, batch 1".into(),
            unit: "sentences/s",
            items: texts.len(),
            ours: one,
            reference: reference("minilm_1"),
            goal: minilm_goal,
        },
        Row {
            what: "all-MiniLM-L6-v2 sentence embeddings, batch 32".into(),
            unit: "sentences/s",
            items: texts.len(),
            ours: batched,
            reference: reference("minilm_32"),
            goal: minilm_goal,
        },
        Row {
            what: format!("ResNet-18, 224x224, batch {IMAGE_BATCH}"),
            unit: "images/s",
            items: IMAGE_BATCH,
            ours: ours_resnet,
            reference: reference("resnet18"),
            goal: None,
        },
        Row {
            what: format!("ViT-Tiny size (192 wide, 12 layers), 224x224, batch {IMAGE_BATCH}"),
            unit: "images/s",
            items: IMAGE_BATCH,
            ours: ours_vit,
            reference: reference("vit_tiny"),
            goal: None,
        },
    ];
    let mut table = Table::new(&[
        ("work", Align::Left),
        ("polymodal", Align::Right),
        ("PyTorch", Align::Right),
        ("reference", Align::Left),
        ("ratio", Align::Right),
    ]);
    for row in rows {
        let rate = |d: Duration| row.items as f64 / d.as_secs_f64();
        let ours = format!("{:.1} {}", rate(row.ours), row.unit);
        let (theirs, tool, ratio) = match row.reference {
            Ok((time, tool)) => (
                format!("{:.1} {}", rate(time), row.unit),
                tool,
                Some(rate(row.ours) / rate(time)),
            ),
            Err(why) => ("-".into(), why, None),
        };
        table.goal_row(
            vec![row.what, ours, theirs, tool, ratio_cell(ratio)],
            ratio,
            row.goal,
        );
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let adapter = adapter_name(&options.device, &device);
    let provenance = Provenance::capture().python_tools(&python);
    let mut report = Report::new(
        format!(
            "Encoders against PyTorch: {} in {}",
            adapter.as_deref().unwrap_or(&options.device),
            options.precision
        ),
        provenance,
    );
    report
        .text(format!(
            "polymodal on `{}`{} in {}. Best of {reps} passes each after a warm-up pass, \
             {threads} thread(s) on both sides; ratio = polymodal throughput / PyTorch \
             throughput (above 1: polymodal is faster), rounded down. Goals are set for the \
             CPU backend in f32 only. What each row measures: \
             [../benchmarks.md](../benchmarks.md#encoders-cargo-xtask-bench-encoders).",
            options.device,
            adapter
                .as_ref()
                .map_or(String::new(), |a| format!(" (adapter: {a})")),
            options.precision,
        ))
        .table(&table);
    let name = format!(
        "encoders-{}-{}.md",
        device_slug(&options.device, adapter.as_deref()),
        slug(&options.precision)
    );
    report.write(&reports_dir(), &name)?;
    Ok(())
}

fn spec(options: &Options, minilm: &Path, sentences: &[String]) -> Value {
    let (vit, sizes) = (vit_tiny(), vit_tiny().transformer);
    json!({
        "reps": options.reps,
        "gpu": options.device != "cpu", "precision": options.precision,
        "minilm": minilm, "sentences": sentences,
        "image_batch": IMAGE_BATCH,
        "vit": {
            "hidden_size": sizes.hidden_size, "num_hidden_layers": sizes.num_hidden_layers,
            "num_attention_heads": sizes.num_attention_heads,
            "intermediate_size": sizes.intermediate_size, "image_size": vit.image_size,
            "patch_size": vit.patch_size,
        },
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}
