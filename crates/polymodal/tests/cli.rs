//! The `polymodal` binary: exit codes and messages.

use std::path::Path;
use std::process::{Command, Output};

use burn::prelude::*;
use polymodal::demo::demo_features;
use polymodal::{ClassifierConfig, FusionKind, Modality};
use polymodal::{ModelCard, ModelDir};

fn polymodal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_polymodal"))
        .args(args)
        .output()
        .expect("run polymodal")
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("polymodal-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An untrained image+audio model folder: enough to exercise `eval`.
fn write_model(dir: &Path) {
    let config = ClassifierConfig {
        modalities: vec![Modality::Image, Modality::Audio],
        fusion: FusionKind::Concat,
        classes: 6,
        dim: 8,
        vocab_size: 0,
        max_tokens: 0,
        channels: 3,
        modality_dropout: 0.0,
        contrastive_weight: 1.0,
    };
    let classes = [
        "circle-high",
        "circle-low",
        "square-high",
        "square-low",
        "triangle-high",
        "triangle-low",
    ];
    let model_dir = ModelDir(dir.to_path_buf());
    let card = ModelCard {
        classifier: config.clone(),
        features: demo_features(),
        classes: classes.map(String::from).to_vec(),
    };
    model_dir.write_metadata(&card, None).unwrap();
    let model = config.init(&Device::flex()).unwrap();
    polymodal::train::save_checkpoint(&model, &model_dir.weights()).unwrap();
}

#[test]
fn eval_reports_accuracy_then_names_a_corrupt_file() {
    let dir = scratch("eval");
    let data = dir.join("data");
    let out = polymodal(&[
        "generate",
        "--out",
        data.to_str().unwrap(),
        "--per-class",
        "0",
        "0",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
}
