//! The `polymodal` binary: exit codes and messages.
//!
//! Most tests run on the demo dataset, which has videos: they need the
//! `video` feature (on by default), and the wgpu test also `wgpu`.

// Without `video` the helpers of the dataset tests go unused.
#![cfg_attr(not(feature = "video"), allow(dead_code, unused_imports))]

#[allow(dead_code)]
mod common;

use std::path::Path;
use std::process::Command;

use burn::prelude::*;
use polymodal::Modality;

use common::{generate, polymodal, scratch, shared_with_model, write_untrained_model};

/// Small images and short audio clips, so the CLI tests train in seconds.
const SMALL_FEATURES: &str = "[features.image]\nwidth = 32\nheight = 32\n\
     normalize = { mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }\n\
     [features.audio]\nclip_samples = 4000\n\
     mel = { sample_rate = 8000, n_fft = 256, hop_length = 128, n_mels = 32 }\n";

/// Writes `experiment` (plus [`SMALL_FEATURES`]) into `dir` and runs
/// `polymodal train` on it, requiring success; returns the file and stdout.
fn train(dir: &Path, experiment: &str) -> (std::path::PathBuf, String) {
    train_with(dir, experiment, &[])
}

/// `polymodal train` on `experiment` (plus the small features) with
/// `extra` arguments; fails the test unless it succeeds.
fn train_with(dir: &Path, experiment: &str, extra: &[&str]) -> (std::path::PathBuf, String) {
    let config = dir.join("experiment.toml");
    std::fs::write(&config, format!("{experiment}{SMALL_FEATURES}")).unwrap();
    let out = polymodal(&[&["train", "--config", config.to_str().unwrap()], extra].concat());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    (config, stdout)
}

/// The class probabilities `polymodal predict` prints for `args`.
fn predict(args: &[&str]) -> Vec<f32> {
    let out = polymodal(&[&["predict"], args].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap().parse::<f32>().unwrap())
        .collect()
}

/// `--model MODEL --image … --audio …` for the first test sample of the
/// generated dataset in `data`.
fn first_test_sample(model: &Path, data: &Path) -> [String; 6] {
    let path = |p: &Path| p.to_str().unwrap().to_string();
    [
        "--model".into(),
        path(model),
        "--image".into(),
        path(&data.join("image/test-0000.png")),
        "--audio".into(),
        path(&data.join("audio/test-0000.wav")),
    ]
}

/// An untrained image+audio model folder over the demo's classes.
fn write_model(dir: &Path) {
    let classes = [
        "circle-high",
        "circle-low",
        "square-high",
        "square-low",
        "triangle-high",
        "triangle-low",
    ];
    write_untrained_model(dir, &[Modality::Image, Modality::Audio], &classes);
}

#[cfg(feature = "video")]
#[test]
fn eval_reports_accuracy_then_names_a_corrupt_file() {
    let dir = scratch("eval");
    let data = generate(&dir, ["0", "0", "1"]);
    write_model(&dir.join("model"));
    let args = [
        "eval",
        "--model",
        dir.join("model").to_str().unwrap(),
        "--manifest",
        data.join("test.jsonl").to_str().unwrap(),
    ]
    .map(String::from);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = polymodal(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("accuracy "));

    let image = data.join("image/test-0003.png");
    std::fs::write(&image, b"\x89PNG\r\n\x1a\n truncated").unwrap();
    let out = polymodal(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.starts_with("error: ") && stderr.contains(&image.display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_arguments_are_readable_errors() {
    let out = polymodal(&[
        "eval",
        "--model",
        "/nonexistent/model",
        "--manifest",
        "/nonexistent/m.jsonl",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("/nonexistent/model/model.json"), "{stderr}");

    let out = polymodal(&[
        "eval",
        "--model",
        "m",
        "--manifest",
        "m.jsonl",
        "--device",
        "tpu",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown device `tpu`"));

    let out = polymodal(&["predict", "--model", "m"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least one of"));

    let out = polymodal(&["predict", "--model", "m", "--precision", "bf16"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown precision `bf16`"));

    // Training is f32 only, whatever the environment asks for.
    let out = Command::new(env!("CARGO_BIN_EXE_polymodal"))
        .args(["train", "--config", "/nonexistent/experiment.toml"])
        .env("POLYMODAL_PRECISION", "f16")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("training (train, demo) runs in f32"),
        "{stderr}"
    );
}

/// A demo run that fails exits with status 1 and says why on stderr. Here
/// its output folder cannot be made (a file stands where a folder should
/// be), which fails in the first step, before any training. (The other
/// failure, a fused model not above the best unimodal one, goes through
/// `DemoReport::outcome`, tested in `demo::report`.)
#[cfg(feature = "video")]
#[test]
fn a_failed_demo_exits_non_zero_and_says_why() {
    let dir = scratch("demo-fails");
    let blocker = dir.join("not-a-folder");
    std::fs::write(&blocker, "a file, not a folder").unwrap();
    let out_dir = blocker.join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_polymodal"))
        .args(["demo", "--epochs", "1", "--out", out_dir.to_str().unwrap()])
        // The defaults (CPU, f32) whatever the environment running the tests says.
        .env_remove("POLYMODAL_DEVICE")
        .env_remove("POLYMODAL_PRECISION")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(out_dir.to_str().unwrap()),
        "the message names the folder: {stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("demo finished"),
        "nothing trained"
    );
}

#[cfg(feature = "video")]
#[test]
fn train_from_a_toml_experiment_then_eval_predict_embed_and_resume() {
    let dir = scratch("train");
    let data = generate(&dir, ["4", "2", "2"]);
    // The generated manifests as one CSV (image + audio only) to read too.
    let lines = std::fs::read_to_string(data.join("train.jsonl")).unwrap();
    let mut csv = String::from("label,image,audio\n");
    for line in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        csv.push_str(&format!(
            "{},{},{}\n",
            v["label"].as_str().unwrap(),
            v["image"].as_str().unwrap(),
            v["audio"].as_str().unwrap()
        ));
    }
    std::fs::write(data.join("train.csv"), csv).unwrap();
    let experiment = "output = \"run\"\n\
         [data]\ntrain = \"data/train.csv\"\nvalid = \"data/valid.jsonl\"\ntest = \"data/test.jsonl\"\nlazy = true\ncache = \"cache\"\n\
         [model]\nmodalities = [\"image\", \"audio\"]\nfusion = \"gated\"\ndim = 8\nmodality_dropout = 0.2\nunimodal_weight = 0.5\n\
         [train]\nepochs = 2\nbatch_size = 8\nschedule = { kind = \"warmup-cosine\", warmup_steps = 2 }\n\
";
    let (config, stdout) = train(&dir, experiment);
    assert!(
        stdout.contains("epoch 2") && stdout.contains("test accuracy"),
        "{stdout}"
    );
    let run = dir.join("run");
    for file in ["model.json", "model.bpk", "metrics.csv", "loss.svg"] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    // The unimodal heads train and are saved with the model (eval,
    // predict and resume below load them).
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("model.json")).unwrap()).unwrap();
    assert_eq!(card["classifier"]["unimodal_weight"], 0.5, "{card}");
    assert!(
        std::fs::read_dir(dir.join("cache")).unwrap().count() > 0,
        "cache empty"
    );

    let files = first_test_sample(&run, &data);
    let files = files.each_ref().map(String::as_str);
    let probabilities: f32 = predict(&files).iter().sum();
    assert!((probabilities - 1.0).abs() < 1e-3, "{probabilities}");
    let out = polymodal(&[&["embed"], &files[..]].concat());
    let vector: Vec<f32> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(vector.len(), 16, "gated fusion of width 2 × dim");
    let out = polymodal(&[
        "eval",
        "--model",
        run.to_str().unwrap(),
        "--manifest",
        data.join("train.csv").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("accuracy "));

    // Resuming a finished run with a larger budget trains only the new epochs.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("epochs = 2", "epochs = 3")).unwrap();
    let out = polymodal(&["train", "--config", config.to_str().unwrap(), "--resume"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("resuming after epoch 2") && stdout.contains("epoch 3"),
        "{stdout}"
    );
    assert!(!stdout.contains("train: epoch 1 "), "{stdout}");

    // A typo in the file is an error naming the key.
    std::fs::write(&config, "[data]\ntrain = \"x.csv\"\n[train]\nepochz = 1\n").unwrap();
    let out = polymodal(&["train", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("epochz"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `polymodal shard` writes a manifest as tar shards and prints their
/// pattern; an experiment trains from it (validation and test from
/// manifests) and evaluates.
#[cfg(feature = "video")]
#[test]
fn shard_a_manifest_then_train_from_the_shards() {
    let dir = scratch("shard");
    let data = generate(&dir, ["4", "2", "2"]);
    let shards = dir.join("shards");
    let out = polymodal(&[
        "shard",
        data.join("train.jsonl").to_str().unwrap(),
        "--out",
        shards.to_str().unwrap(),
        "--per-shard",
        "5",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.ends_with("shard-{000000..000004}.tar"), "{stdout}");
    assert_eq!(std::fs::read_dir(&shards).unwrap().count(), 5);
    let experiment = format!(
        "output = \"run\"\n[data]\ntrain = \"{stdout}\"\nvalid = \"data/valid.jsonl\"\n\
         test = \"data/test.jsonl\"\nshuffle_buffer = 4\n\
         [model]\nmodalities = [\"image\", \"audio\"]\nfusion = \"concat\"\ndim = 8\n\
         [train]\nepochs = 2\nbatch_size = 8\n"
    );
    let (_, stdout) = train(&dir, &experiment);
    assert!(
        stdout.contains("epoch 2") && stdout.contains("test accuracy"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A multi-label manifest from the generated data: each sample pairs one
/// sample's image with the next one's audio and has both their classes.
fn multi_label_manifest(data: &Path, split: &str) -> std::path::PathBuf {
    let lines = std::fs::read_to_string(data.join(format!("{split}.jsonl"))).unwrap();
    let rows: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let next = &rows[(i + 1) % rows.len()];
        let line = serde_json::json!({
            "labels": [row["label"], next["label"]],
            "image": row["image"],
            "audio": next["audio"],
        });
        out.push_str(&format!("{line}\n"));
    }
    let path = data.join(format!("{split}-multi.jsonl"));
    std::fs::write(&path, out).unwrap();
    path
}

#[cfg(feature = "video")]
#[test]
fn train_and_predict_a_multi_label_model() {
    let dir = scratch("multi");
    let data = generate(&dir, ["3", "2", "2"]);
    for split in ["train", "valid", "test"] {
        multi_label_manifest(&data, split);
    }
    let experiment = "output = \"run\"\n\
         [data]\ntrain = \"data/train-multi.jsonl\"\nvalid = \"data/valid-multi.jsonl\"\ntest = \"data/test-multi.jsonl\"\n\
         [model]\nfusion = \"concat\"\ndim = 8\n\
         [train]\nepochs = 2\nbatch_size = 8\nlabel_smoothing = 0.1\n\
";
    let (_, stdout) = train(&dir, experiment);
    assert!(
        stdout.contains("multi-label") && stdout.contains("mAP"),
        "{stdout}"
    );
    let run = dir.join("run");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("model.json")).unwrap()).unwrap();
    assert_eq!(card["classifier"]["multi_label"], true);
    let out = polymodal(&[
        "predict",
        "--model",
        run.to_str().unwrap(),
        "--image",
        data.join("image/test-0000.png").to_str().unwrap(),
        "--audio",
        data.join("audio/test-0001.wav").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probabilities: Vec<f32> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap().parse::<f32>().unwrap())
        .collect();
    // One independent probability per class (six classes), not a softmax:
    // an untrained-ish model puts each near 1/2, so they sum to about 3.
    assert_eq!(probabilities.len(), 6);
    assert!(probabilities.iter().all(|p| (0.0..=1.0).contains(p)));
    let sum: f32 = probabilities.iter().sum();
    assert!((sum - 1.0).abs() > 0.05, "{probabilities:?}");
}

/// `polymodal embed` with a Hugging Face sentence-transformers folder prints
/// one normalised embedding per text, equal to the library's (which
/// tests/tests/parity_encoders.rs checks against sentence-transformers).
#[test]
fn embed_prints_sentence_embeddings_of_a_hugging_face_folder() {
    let Some(shared) = shared_with_model("all-MiniLM-L6-v2") else {
        return;
    };
    let model = shared.join("models/all-MiniLM-L6-v2");
    let texts = ["A man is eating food.", "Two dogs play in the snow."];
    let out = polymodal(&[&["embed", "--model", model.to_str().unwrap()], &texts[..]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Vec<f32>> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let device = Device::flex();
    let (encoder, _) = polymodal::text::SentenceEncoder::load(&model, &device).unwrap();
    let expected = encoder
        .embed(&texts, &device)
        .unwrap()
        .try_into_vec_as::<f32>()
        .unwrap();
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line.len(), 384);
        let norm: f32 = line.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        let diff = line
            .iter()
            .zip(&expected[i * 384..(i + 1) * 384])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // JSON prints f32 exactly (shortest round-trip form).
        assert_eq!(diff, 0.0, "text {i}");
    }
    // No texts: a readable error.
    let out = polymodal(&["embed", "--model", model.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("give the texts"));
}

/// `polymodal embed` with a Hugging Face image folder (the ViT fixture):
/// one vector for an image file, the same vectors for a manifest written to
/// safetensors with the sample ids; a text given to an image model is a
/// readable error.
/// The `embeddings` tensor of a safetensors file `polymodal embed` wrote:
/// its shape, values and the file's metadata.
fn read_embeddings(
    path: &Path,
) -> (
    Vec<usize>,
    Vec<f32>,
    std::collections::HashMap<String, String>,
) {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensor = file.tensor("embeddings").unwrap();
    let values = tensor
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = metadata.metadata().clone().unwrap();
    (tensor.shape().to_vec(), values, metadata)
}

#[test]
fn embed_images_and_a_manifest_with_a_hugging_face_image_folder() {
    let dir = scratch("embed-vit");
    let vit =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity/encoders/vit");
    let vit = vit.to_str().unwrap();
    let mut manifest = String::new();
    for i in 0..3u8 {
        let image = image::RgbImage::from_fn(24, 20, |x, y| {
            image::Rgb([x as u8 * 7, y as u8 * 5 + i * 50, 90])
        });
        let path = dir.join(format!("{i}.png"));
        image.save(&path).unwrap();
        manifest.push_str(&format!(
            "{{\"id\": \"img{i}\", \"image\": {path:?}, \"label\": \"x\"}}\n"
        ));
    }
    let manifest_path = dir.join("images.jsonl");
    std::fs::write(&manifest_path, manifest).unwrap();
    let one: Vec<f32> = serde_json::from_str(
        succeeds(&[
            "embed",
            "--model",
            vit,
            "--image",
            dir.join("1.png").to_str().unwrap(),
        ])
        .trim(),
    )
    .unwrap();
    let out = dir.join("images.safetensors");
    succeeds(&[
        "embed",
        "--model",
        vit,
        "--manifest",
        manifest_path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--batch",
        "2",
    ]);
    let (shape, values, metadata) = read_embeddings(&out);
    assert_eq!(shape, [3, one.len()]);
    assert_eq!(
        &values[one.len()..2 * one.len()],
        &one[..],
        "row 1 is image 1"
    );
    assert_eq!(metadata["ids"], r#"["img0","img1","img2"]"#);
    assert_eq!(metadata["modality"], "image");
    // The same images as shards of one sample, shards 1.. of them embedded
    // as one job: images 1 and 2, the same vectors.
    let shards = dir.join("shards");
    let pattern = succeeds(&[
        "shard",
        manifest_path.to_str().unwrap(),
        "--out",
        shards.to_str().unwrap(),
        "--per-shard",
        "1",
    ]);
    let part = dir.join("part.safetensors");
    succeeds(&[
        "embed",
        "--model",
        vit,
        "--shards",
        pattern.trim(),
        "--shard-range",
        "1..",
        "--out",
        part.to_str().unwrap(),
    ]);
    let (shape, from_shards, metadata) = read_embeddings(&part);
    assert_eq!(shape, [2, one.len()]);
    assert_eq!(from_shards, values[one.len()..], "rows 1 and 2");
    assert_eq!(metadata["ids"], r#"["img1","img2"]"#);
    assert!(
        metadata["shards"].contains("shard-000002.tar"),
        "{metadata:?}"
    );
    let out = polymodal(&[
        "embed",
        "--model",
        vit,
        "--text",
        manifest_path.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("image model"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A copy of the tiny CLIP fixture (weights and config, no tokenizer) in
/// `dir/clip`: no real CLIP checkpoint is available offline.
fn clip_folder(dir: &Path) -> std::path::PathBuf {
    let clip =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity/encoders/clip");
    let model = dir.join("clip");
    std::fs::create_dir_all(&model).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(clip.join(file), model.join(file)).unwrap();
    }
    model
}

/// `polymodal zero-shot` with a CLIP folder (the tiny CLIP fixture, with a
/// tokenizer trained here: no real CLIP checkpoint is available offline):
/// one JSON line per image with a probability per label, summing to 1; a
/// folder without a tokenizer is a readable error.
#[test]
fn zero_shot_classifies_images_with_a_clip_folder() {
    let dir = scratch("zero-shot");
    let model = clip_folder(&dir);
    let image = dir.join("a.png");
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 128]))
        .save(&image)
        .unwrap();
    let args = [
        "zero-shot",
        "--model",
        model.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--labels",
        "cat, dog ,red car",
        "--template",
        "a photo of a {}",
        "--template",
        "{}",
    ];
    let out = polymodal(&args);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokenizer.json"));
    let corpus = ["a photo of a cat", "a dog", "a red car"];
    polymodal::text::TextTokenizer::train_wordpiece(corpus.iter(), 60, 16)
        .unwrap()
        .save(model.join("tokenizer.json"))
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(succeeds(&args).trim()).unwrap();
    let row = line["probabilities"].as_object().unwrap();
    let labels: Vec<&str> = row.keys().map(String::as_str).collect();
    assert_eq!(labels.len(), 3);
    assert!(
        ["cat", "dog", "red car"].iter().all(|l| labels.contains(l)),
        "{labels:?}"
    );
    let sum: f64 = row.values().map(|p| p.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-5, "{sum}");
}

/// `polymodal retrieve` with a CLIP folder (the tiny fixture and a trained
/// tokenizer): a text query lists the best images, most similar first;
/// without a query, recall@k both ways over the samples' own pairs (at
/// k = 10 over six candidates every match is found).
#[test]
fn retrieve_lists_images_for_a_text_and_reports_recall() {
    let dir = scratch("retrieve");
    let model = clip_folder(&dir);
    let words = ["red", "green", "blue", "dark", "light", "grey"];
    polymodal::text::TextTokenizer::train_wordpiece(words.iter(), 60, 16)
        .unwrap()
        .save(model.join("tokenizer.json"))
        .unwrap();
    let mut manifest = String::new();
    for (i, word) in words.iter().enumerate() {
        let image = dir.join(format!("{i}.png"));
        let shade = (i * 40) as u8;
        image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([shade, x as u8 * 4, y as u8 * 4]))
            .save(&image)
            .unwrap();
        let text = dir.join(format!("{i}.txt"));
        std::fs::write(&text, word).unwrap();
        manifest.push_str(&format!(
            "{{\"id\": \"s{i}\", \"image\": {image:?}, \"text\": {text:?}, \"label\": \"x\"}}\n"
        ));
    }
    let manifest_path = dir.join("pairs.jsonl");
    std::fs::write(&manifest_path, manifest).unwrap();
    let (model, manifest_path) = (model.to_str().unwrap(), manifest_path.to_str().unwrap());
    let out = succeeds(&[
        "retrieve",
        "--model",
        model,
        "--manifest",
        manifest_path,
        "--query",
        "red",
        "--top",
        "4",
    ]);
    let scores: Vec<f64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["cosine"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(scores.len(), 4);
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let report: serde_json::Value = serde_json::from_str(
        succeeds(&["retrieve", "--model", model, "--manifest", manifest_path]).trim(),
    )
    .unwrap();
    assert_eq!(report["texts"], 6);
    for way in ["text_to_image", "image_to_text"] {
        let at = |k: usize| report[format!("{way}_recall@{k}")].as_f64().unwrap();
        assert!(at(1) <= at(5) && at(5) <= at(10), "{report}");
        assert_eq!(at(10), 1.0, "{report}");
    }
}

/// Whether a wgpu adapter exists (always required in CI, where lavapipe is).
#[cfg(feature = "wgpu")]
fn wgpu_or_skip() -> bool {
    let out = polymodal(&["devices"]);
    let listed = String::from_utf8_lossy(&out.stdout).contains("wgpu:0");
    if !listed {
        polymodal::core::testing::skip(format!(
            "no wgpu adapter (install mesa-vulkan-drivers): {}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    listed
}

#[cfg(all(feature = "video", feature = "wgpu"))]
#[test]
fn the_whole_pipeline_runs_on_wgpu() {
    if !wgpu_or_skip() {
        return;
    }
    // Joint fusion (attention across modalities) and gated fusion (through
    // polymodal-wgpu's fused gated-unit kernel) train on the device:
    // forward, backward, optimiser, checkpoints, evaluation.
    for fusion in ["single-stream", "gated"] {
        pipeline_on_wgpu(fusion);
    }
}

#[cfg(all(feature = "video", feature = "wgpu"))]
fn pipeline_on_wgpu(fusion: &str) {
    let dir = scratch(&format!("wgpu-{fusion}"));
    let data = generate(&dir, ["4", "2", "2"]);
    let experiment = format!(
        "output = \"run\"\n\
         [data]\ntrain = \"data/train.jsonl\"\nvalid = \"data/valid.jsonl\"\ntest = \"data/test.jsonl\"\n\
         [model]\nmodalities = [\"image\", \"audio\"]\nfusion = \"{fusion}\"\ndim = 8\n\
         [train]\nepochs = 2\nbatch_size = 8\n"
    );
    let (_, stdout) = train_with(&dir, &experiment, &["--device", "wgpu"]);
    assert!(
        stdout.contains("epoch 2") && stdout.contains("test accuracy"),
        "{fusion}: {stdout}"
    );
    let run = dir.join("run");
    assert!(run.join("model.bpk").is_file());
    let files = first_test_sample(&run, &data);
    let files = files.each_ref().map(String::as_str);
    // The model trained on wgpu predicts the same on wgpu and on the CPU.
    let probabilities = |device: &str| predict(&[&["--device", device], &files[..]].concat());
    let (gpu, cpu) = (probabilities("wgpu"), probabilities("cpu"));
    assert_eq!(gpu.len(), cpu.len());
    for (g, c) in gpu.iter().zip(&cpu) {
        assert!(
            (g - c).abs() < 1e-4,
            "{fusion}: wgpu {gpu:?} vs cpu {cpu:?}"
        );
    }
    // In half precision (weights cast on load, every layer in f16) within
    // f16's rounding: 11 significant bits, errors add up over the layers.
    // CI's lavapipe has f16; elsewhere the default adapter may not.
    let has_f16 = polymodal::wgpu::wgpu_device(DeviceKind::DefaultDevice)
        .is_ok_and(|d| d.supports_dtype(burn::tensor::DType::F16));
    if !has_f16 {
        // CI's lavapipe has f16: there the skip fails the test.
        polymodal::core::testing::skip("f16 prediction (the default wgpu adapter lacks f16)");
        return;
    }
    let half = predict(&[&["--device", "wgpu", "--precision", "f16"], &files[..]].concat());
    assert_eq!(half.len(), cpu.len());
    for (h, c) in half.iter().zip(&cpu) {
        assert!(
            (h - c).abs() < 1e-2,
            "{fusion}: wgpu f16 {half:?} vs cpu f32 {cpu:?}"
        );
    }
}

/// Pretrained encoders train on wgpu from a TOML experiment as on the CPU:
/// the ViT fixture fine-tuned in its top layer and the AST fixture frozen
/// (embedded once on the device), their folders deciding the features; the
/// model then predicts the same on both devices.
#[cfg(all(feature = "video", feature = "wgpu"))]
#[test]
fn pretrained_encoders_train_on_wgpu() {
    if !wgpu_or_skip() {
        return;
    }
    let dir = scratch("wgpu-pretrained");
    let data = generate(&dir, ["4", "2", "2"]);
    let fixture = |name: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/parity/encoders")
            .join(name)
    };
    let experiment = format!(
        "output = \"run\"\n\
         [data]\ntrain = \"data/train.jsonl\"\nvalid = \"data/valid.jsonl\"\ntest = \"data/test.jsonl\"\n\
         [model]\nmodalities = [\"image\", \"audio\"]\nfusion = \"concat\"\ndim = 8\n\
         [encoders.image]\npretrained = {:?}\nmode = \"fine-tune\"\nlayers = 1\n\
         [encoders.audio]\npretrained = {:?}\n\
         [train]\nepochs = 2\nbatch_size = 8\n",
        fixture("vit"),
        fixture("ast")
    );
    let config = dir.join("experiment.toml");
    std::fs::write(&config, experiment).unwrap();
    let stdout = succeeds(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--device",
        "wgpu",
    ]);
    assert!(
        stdout.contains("epoch 2") && stdout.contains("test accuracy"),
        "{stdout}"
    );
    let files = first_test_sample(&dir.join("run"), &data);
    let files = files.each_ref().map(String::as_str);
    let probabilities = |device: &str| predict(&[&["--device", device], &files[..]].concat());
    let (gpu, cpu) = (probabilities("wgpu"), probabilities("cpu"));
    assert_eq!(gpu.len(), cpu.len());
    for (g, c) in gpu.iter().zip(&cpu) {
        assert!((g - c).abs() < 1e-4, "wgpu {gpu:?} vs cpu {cpu:?}");
    }
}

/// Built without `wgpu`: `devices` lists the CPU and says wgpu is not built
/// in, and a wgpu device is an error saying so.
#[cfg(not(feature = "wgpu"))]
#[test]
fn without_wgpu_devices_lists_the_cpu_and_wgpu_is_an_error() {
    let out = polymodal(&["devices"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.starts_with("cpu\t"), "{stdout}");
    assert!(
        stdout.contains("wgpu is not built in") && !stdout.contains("wgpu:0"),
        "{stdout}"
    );
    for device in ["wgpu", "wgpu:0"] {
        let out = polymodal(&[
            "predict", "--model", "m", "--image", "x.png", "--device", device,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("no wgpu support"), "{stderr}");
    }
}

/// Built without `video`: the demo dataset (it has videos) cannot be
/// generated, and a sample with a video file is an error naming it; both
/// say why, without a panic.
#[cfg(not(feature = "video"))]
#[test]
fn without_video_videos_are_errors_naming_the_file() {
    let dir = scratch("no-video");
    let out = polymodal(&["generate", "--out", dir.join("data").to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`video` feature"), "{stderr}");

    let model = dir.join("model");
    write_untrained_model(&model, &[Modality::Image, Modality::Video], &["a", "b"]);
    let clip = dir.join("clip.mp4");
    std::fs::write(&clip, b"not decoded").unwrap();
    // The video is refused before any file is read.
    let out = polymodal(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--image",
        dir.join("no-such-image.png").to_str().unwrap(),
        "--video",
        clip.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(clip.to_str().unwrap()) && stderr.contains("`video` feature"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `polymodal transcribe` prints what was said in audio files and a video's
/// soundtrack (checked against transformers in tests/tests/whisper_decode.rs
/// and whisper_timestamps.rs), one JSON object per file with `--format
/// json`, subtitles with `--format srt|vtt` (to files with `--out`), and
/// refuses what it cannot do with a clear message.
#[test]
fn transcribe_prints_the_text_of_audio_and_video_files() {
    let Some(shared) = shared_with_model("whisper-tiny.en") else {
        return;
    };
    let model = shared.join("models/whisper-tiny.en");
    let model = model.to_str().unwrap();
    let speech = shared.join("data/speech/audioeval/en/quick_brown_fox.wav");
    let speech = speech.to_str().unwrap();
    assert_eq!(
        succeeds(&["transcribe", "--model", model, speech]),
        "The quick brown fox jumps over the lazy dog.\n"
    );
    assert_eq!(
        succeeds(&["transcribe", "--model", model, "--format", "srt", speech]),
        "1\n00:00:00,000 --> 00:00:02,600\nThe quick brown fox jumps over the lazy dog.\n\n"
    );

    #[cfg(feature = "video")]
    {
        // Whisper's silence rule drops the music's one window; decoded
        // plainly, it is faster-whisper's "Mmm.".
        let video = shared.join("data/media/video/bigbuckbunny.mp4");
        let video = video.to_str().unwrap();
        for (plain, text) in [(false, ""), (true, "Mmm.")] {
            let mut args = vec!["transcribe", "--model", model, "--format", "json"];
            if plain {
                args.push("--plain");
            }
            let out = succeeds(&[args.as_slice(), &[speech, video]].concat());
            let lines: Vec<serde_json::Value> = out
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(lines.len(), 2);
            assert_eq!(lines[1]["text"], text, "{out}");
            if plain {
                let segment = &lines[1]["segments"][0];
                assert_eq!(segment["start"], 0.0);
                assert!(segment["no_speech_prob"].as_f64().unwrap() > 0.6);
            }
        }
        // Subtitles for the video, its soundtrack streamed from the file:
        // faster-whisper's one segment, to the end of the 5-s track.
        let srt = succeeds(&[
            "transcribe",
            "--model",
            model,
            "--plain",
            "--format",
            "srt",
            video,
        ]);
        assert_eq!(srt, "1\n00:00:00,000 --> 00:00:05,000\nMmm.\n\n", "{srt}");
    }

    // Beam search hears the counting that greedy decoding writes as digits.
    let counting = shared.join("data/speech/audioeval/en/counting.wav");
    let counting = counting.to_str().unwrap();
    assert_eq!(
        succeeds(&["transcribe", "--model", model, "--beam", "5", counting]),
        "One, two, three, four, five, six, seven, eight, nine, 10.\n"
    );
    let out = polymodal(&["transcribe", "--model", model, "--beam", "0", counting]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least one beam"));

    // WebVTT files, one per input, in a folder.
    let dir = std::env::temp_dir().join(format!("polymodal-transcribe-{}", std::process::id()));
    let dir_arg = dir.to_str().unwrap();
    let args = [
        "transcribe",
        "--model",
        model,
        "--format",
        "vtt",
        "--out",
        dir_arg,
    ];
    succeeds(&[args.as_slice(), &[speech, counting]].concat());
    let vtt = std::fs::read_to_string(dir.join("quick_brown_fox.vtt")).unwrap();
    assert!(
        vtt.starts_with("WEBVTT\n\n00:00.000 --> 00:02.600\nThe quick brown fox"),
        "{vtt}"
    );
    assert!(dir.join("counting.vtt").exists());
    let _ = std::fs::remove_dir_all(&dir);
    let out = polymodal(&[
        "transcribe",
        "--model",
        model,
        "--format",
        "srt",
        speech,
        counting,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("need --out FOLDER"));

    let readme = shared.join("README.md");
    let out = polymodal(&["transcribe", "--model", model, readme.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot decode audio"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `polymodal index` transcribes a folder and a long recording and embeds
/// each segment; `polymodal search` finds the file and the time span where
/// a phrase was said, by meaning, not only by its words.
#[test]
fn search_finds_the_file_and_time_span_of_a_spoken_phrase() {
    let Some(shared) = shared_with_model("whisper-tiny.en") else {
        return;
    };
    let minilm = shared.join("models/all-MiniLM-L6-v2");
    if !minilm.join("config.json").is_file() {
        return;
    }
    let dir = scratch("speech-search");
    // A recording of 14 s: 2 s of silence, one utterance, 1 s, the fox
    // sentence (from 8.3 s to 11.19 s), 1 s, another utterance.
    let load = |name: &str| {
        let path = shared.join(name);
        polymodal::audio::load(&path, &polymodal::audio::LoadOptions::mono_at(16_000))
            .unwrap()
            .samples
    };
    let silence = |secs: f64| vec![0.0f32; (secs * 16_000.0) as usize];
    let recording = [
        silence(2.0),
        load("data/media/audio/librivox/sense_and_sensibility_01_austen_64kb-0890.wav"),
        silence(1.0),
        load("data/speech/audioeval/en/quick_brown_fox.wav"),
        silence(1.0),
        load("data/media/audio/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"),
    ]
    .concat();
    let long = dir.join("recording.wav");
    polymodal::audio::write_wav_pcm16(&long, &recording, 16_000, 1).unwrap();
    let index = dir.join("index");
    let english = shared.join("data/speech/audioeval/en");
    let whisper = shared.join("models/whisper-tiny.en");
    let args = [
        "index",
        "--whisper",
        whisper.to_str().unwrap(),
        "--text-model",
        minilm.to_str().unwrap(),
        "--out",
        index.to_str().unwrap(),
        english.to_str().unwrap(),
        long.to_str().unwrap(),
    ];
    let out = polymodal(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let search = |query: &str| -> Vec<serde_json::Value> {
        let args = [
            "search",
            index.to_str().unwrap(),
            query,
            "--json",
            "--top",
            "3",
        ];
        succeeds(&args)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // Other words, same meaning: the clip and the recording's span.
    let hits = search("a dog and a fox");
    let file = |hit: &serde_json::Value| hit["file"].as_str().unwrap().to_string();
    let best: Vec<String> = hits[..2].iter().map(file).collect();
    assert!(
        best.iter().any(|f| f.ends_with("quick_brown_fox.wav"))
            && best.iter().any(|f| f.ends_with("recording.wav")),
        "{hits:?}"
    );
    let span = hits
        .iter()
        .find(|h| file(h).ends_with("recording.wav"))
        .unwrap();
    let (start, end) = (
        span["start"].as_f64().unwrap(),
        span["end"].as_f64().unwrap(),
    );
    // The span holds the sentence (8.3 to 11.19 s) and little else: tiny.en
    // ends it at the next utterance's start.
    assert!(
        (7.8..=8.6).contains(&start) && (11.0..=12.8).contains(&end),
        "{span}"
    );
    assert!(file(&search("greeting the world")[0]).ends_with("hello_world.wav"));
    let hit = &search("how much money he could give them")[0];
    assert!(file(hit).ends_with("recording.wav"), "{hit}");
    assert!(hit["start"].as_f64().unwrap() > 11.0, "{hit}");

    // Plain text lines, and clear errors.
    let text = succeeds(&["search", index.to_str().unwrap(), "fox", "--top", "1"]);
    assert!(
        text.contains("quick_brown_fox.wav  0:00.00–0:02.60") || text.contains("recording.wav"),
        "{text}"
    );
    let out = polymodal(&["search", dir.join("nothing").to_str().unwrap(), "fox"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("index.json"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The standard output of a run that must succeed.
fn succeeds(args: &[&str]) -> String {
    let out = polymodal(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
