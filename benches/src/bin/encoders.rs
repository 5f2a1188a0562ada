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
//! - a ResNet-18 training step (224×224, batch 8: forward, cross-entropy
//!   over 1,000 classes, backward, Adam) vs torchvision's `resnet18` with
//!   `torch.optim.Adam`, on the device's autodiff twin;
//! - ResNet-18 (224×224, batch 8) vs torchvision, random weights (the same
//!   work as pretrained ones);
//! - a ViT-Tiny-sized ViT (192 wide, 12 layers, 3 heads, patch 16, 224×224,
//!   batch 8) vs transformers' `ViTModel`.
//!
//! The two sides alternate round by round (`--rounds`, default 3): rates
//! are of median times, ratios the median of the rounds' ratios with
//! their range.
//!
//! Usage: encoders --shared DIR [--python PYTHON] [--reps N] [--rounds N]
//! [--device cpu|wgpu|wgpu:N] [--precision f32|f16]

use std::path::Path;
use std::time::Duration;

use burn::prelude::*;
use polymodal::device::{Precision, device_with_precision};
use polymodal::train::FusedAdamConfig;
use polymodal_benches::report::{
    Align, Goal, Provenance, Report, Table, device_slug, reports_dir, slug, spread_cell,
};
use polymodal_benches::resnet_step::ResNetClassifier;
use polymodal_benches::{
    Measured, Options, Rounds, adapter_name, best_of, error, python_reference, timing,
};
use polymodal_core::cpu::on_pool;
use polymodal_core::weights::HfTransformer;
use polymodal_core::{Encoder, Init};
use polymodal_image::{ResNet, ResNetConfig, Vit, VitConfig};
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

/// What a row measures and how its throughput is counted.
struct Row {
    what: String,
    unit: &'static str,
    /// Items per pass.
    items: usize,
    /// The row's name in `encoders_reference.py`'s output.
    reference: &'static str,
    goal: Option<Goal>,
}

/// The benchmark (also the GPU kit's `gpu` binary's applet of this name).
pub(crate) fn main() {
    polymodal_benches::main_of("encoders", run);
}

/// The models and inputs every round runs.
struct Models {
    sentences: SentenceEncoder,
    texts: Vec<String>,
    images: Tensor<4>,
    resnet: ResNet,
    vit: Vit,
    /// The training step's model (taken out and put back by each pass),
    /// its images and labels, on the autodiff device.
    train: std::cell::RefCell<Option<ResNetClassifier>>,
    train_images: Tensor<4>,
    train_labels: Tensor<1, Int>,
}

/// polymodal's time for each row, best of `reps` passes; each pass reads
/// its result back (a GPU queue is asynchronous).
fn ours(models: &Models, reps: usize, device: &Device) -> Result<[Duration; 5], String> {
    let texts = &models.texts;
    let one = best_of(reps, || {
        for text in texts {
            models
                .sentences
                .embed(&[text], device)
                .map_err(error)?
                .into_data();
        }
        Ok(())
    })?;
    let batched = best_of(reps, || {
        let out = models.sentences.embed(texts, device).map_err(error)?;
        out.into_data();
        Ok(())
    })?;
    let resnet = best_of(reps, || {
        let out = models.resnet.encode(&models.images).map_err(error)?;
        out.pooled.into_data();
        Ok(())
    })?;
    let vit = best_of(reps, || {
        let out = models.vit.forward(models.images.clone()).map_err(error)?;
        out.last_hidden_state.into_data();
        Ok(())
    })?;
    // The trainer's Adam (`polymodal train` uses it too).
    let mut optimizer = FusedAdamConfig::new().init();
    let train = best_of(reps, || {
        let model = models.train.borrow_mut().take().ok_or("no model")?;
        // On a thread of the CPU pool, as `Trainer::train` runs each step.
        let (images, labels) = (&models.train_images, &models.train_labels);
        let model = on_pool(|| model.step(&mut optimizer, images, labels))?;
        // Reading a weight back waits for the step on an asynchronous device.
        model.head.bias.as_ref().map(|b| b.val().into_data());
        *models.train.borrow_mut() = Some(model);
        Ok(())
    })?;
    Ok([one, batched, resnet, vit, train])
}

fn run() -> Result<(), String> {
    let options = Options::from_args()?;
    let reps = options.reps;
    let precision: Precision = options.precision.parse().map_err(error)?;
    let device = device_with_precision(Some(&options.device), precision).map_err(error)?;
    let minilm = options.shared.join("models/all-MiniLM-L6-v2");
    let training = device.clone().autodiff();
    let models = Models {
        sentences: SentenceEncoder::load(&minilm, &device).map_err(error)?.0,
        texts: sentences(),
        images: Tensor::<4>::random(
            [IMAGE_BATCH, 3, 224, 224],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        ),
        resnet: ResNetConfig::resnet18().init(&device).map_err(error)?,
        vit: Vit::build(&vit_tiny(), &Init::random(), false, &device).map_err(error)?,
        train: std::cell::RefCell::new(Some(ResNetClassifier::new(&training)?)),
        train_images: Tensor::<4>::random(
            [IMAGE_BATCH, 3, 224, 224],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &training,
        ),
        // One label per image, spread over the 1,000 classes.
        train_labels: Tensor::<1, Int>::arange_step(0..(IMAGE_BATCH * 100) as i64, 100, &training),
    };
    // The goal (polymodal throughput / PyTorch throughput) is set for the
    // CPU backend in f32, the configuration it was set for.
    let minilm_goal = (options.device == "cpu" && options.precision == "f32").then_some(Goal(1.0));
    // ResNet-18's forward pass and training step carry the same goal there.
    let resnet_goal = minilm_goal;
    let texts = models.texts.len();
    let rows = [
        Row {
            what: "all-MiniLM-L6-v2 sentence embeddings, batch 1".into(),
            unit: "sentences/s",
            items: texts,
            reference: "minilm_1",
            goal: minilm_goal,
        },
        Row {
            what: "all-MiniLM-L6-v2 sentence embeddings, batch 32".into(),
            unit: "sentences/s",
            items: texts,
            reference: "minilm_32",
            goal: minilm_goal,
        },
        Row {
            what: format!("ResNet-18, 224x224, batch {IMAGE_BATCH}"),
            unit: "images/s",
            items: IMAGE_BATCH,
            reference: "resnet18",
            goal: resnet_goal,
        },
        Row {
            what: format!("ViT-Tiny size (192 wide, 12 layers), 224x224, batch {IMAGE_BATCH}"),
            unit: "images/s",
            items: IMAGE_BATCH,
            reference: "vit_tiny",
            goal: None,
        },
        Row {
            what: format!(
                "ResNet-18 training step (forward, backward, Adam), 224x224, batch {IMAGE_BATCH}"
            ),
            unit: "images/s",
            items: IMAGE_BATCH,
            reference: "resnet18_train",
            goal: resnet_goal,
        },
    ];
    // Round by round: polymodal, then PyTorch.
    let spec = spec(&options, &minilm, &models.texts);
    let mut rounds = vec![Rounds::default(); rows.len()];
    let mut tools: Vec<Measured> = vec![Err("not run".into()); rows.len()];
    let mut python = Err("not run".into());
    for _ in 0..options.rounds.max(1) {
        let times = ours(&models, reps, &device)?;
        python = python_reference(&options.python, "encoders_reference.py", &spec);
        for (i, (row, time)) in rows.iter().zip(times).enumerate() {
            rounds[i].ours.push(time);
            tools[i] = timing(&python, row.reference);
            if let Ok((theirs, _)) = &tools[i] {
                rounds[i].theirs.push(*theirs);
            }
        }
    }
    let mut table = Table::new(&[
        ("work", Align::Left),
        ("polymodal", Align::Right),
        ("PyTorch", Align::Right),
        ("reference", Align::Left),
        ("ratio", Align::Right),
    ]);
    for ((row, rounds), tool) in rows.into_iter().zip(&rounds).zip(tools) {
        // Throughputs of the same items: their ratio is the times' inverse ratio.
        let rate = |d: Duration| format!("{:.1} {}", row.items as f64 / d.as_secs_f64(), row.unit);
        let (theirs, tool) = match tool {
            Ok((_, tool)) => (rate(rounds.theirs_median()), tool),
            Err(why) => ("-".into(), why),
        };
        let spread = rounds.ratio();
        table.goal_row(
            vec![
                row.what,
                rate(rounds.ours_median()),
                theirs,
                tool,
                spread_cell(spread),
            ],
            spread.map(|s| s.median),
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
            "polymodal on `{}`{} in {}. {} rounds, each timing polymodal and then PyTorch, each \
             side best of {reps} passes after a warm-up pass, {threads} thread(s) on both sides; \
             throughputs are of the median times over the rounds, ratio = polymodal throughput / \
             PyTorch throughput of each round (above 1: polymodal is faster), its median and in \
             brackets its range, rounded down; a goal is judged on the median. Goals are set for \
             the CPU backend in f32 only. What each row measures: \
             [../benchmarks.md](../benchmarks.md#encoders-cargo-xtask-bench-encoders).",
            options.device,
            adapter
                .as_ref()
                .map_or(String::new(), |a| format!(" (adapter: {a})")),
            options.precision,
            options.rounds.max(1),
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
