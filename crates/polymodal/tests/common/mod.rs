//! Helpers shared by the test suites that run the `polymodal` binary. Each
//! suite uses some of them, hence `allow(dead_code)` where it includes them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::prelude::*;
use polymodal::demo::demo_features;
use polymodal::{ClassifierConfig, FusionKind, Modality, ModelCard, ModelDir};

/// Runs the binary with `args`.
pub fn polymodal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_polymodal"))
        .args(args)
        .output()
        .expect("run polymodal")
}

/// The shared folder (`$POLYMODAL_SHARED`, else `../shared` beside the
/// workspace) when it holds the model folder `models/<name>`; else `None`
/// after a skip message (a failure under `CI=true`).
#[allow(dead_code)]
pub fn shared_with_model(name: &str) -> Option<PathBuf> {
    let shared = std::env::var_os("POLYMODAL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let model = shared.join("models").join(name);
    if model.join("config.json").is_file() {
        return Some(shared);
    }
    polymodal::core::testing::skip(format!(
        "no {name} at {} (set POLYMODAL_SHARED)",
        model.display()
    ));
    None
}

/// A fresh empty folder under the system temp dir, unique to this process
/// and `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("polymodal-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Generates the demo dataset into `dir/data` with `per_class` samples per
/// class in train, valid and test.
pub fn generate(dir: &Path, per_class: [&str; 3]) -> PathBuf {
    let data = dir.join("data");
    let out = polymodal(
        &[
            &["generate", "--out", data.to_str().unwrap(), "--per-class"],
            &per_class[..],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    data
}

/// An untrained model folder (concat fusion, width 8, the demo's features)
/// over `modalities` and `classes`: enough to exercise `eval`, `predict`
/// and `embed`.
pub fn write_untrained_model(dir: &Path, modalities: &[Modality], classes: &[&str]) {
    let config =
        ClassifierConfig::new(modalities.to_vec(), FusionKind::Concat, classes.len()).with_dim(8);
    let model_dir = ModelDir(dir.to_path_buf());
    let card = ModelCard {
        classifier: config.clone(),
        features: demo_features(),
        classes: classes.iter().map(|c| c.to_string()).collect(),
    };
    model_dir.write_metadata(&card, None).unwrap();
    let model = config.init(&Device::flex()).unwrap();
    polymodal::train::save_checkpoint(&model, &model_dir.weights()).unwrap();
}
