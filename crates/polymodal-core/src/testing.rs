//! How the project's test suites treat a missing prerequisite (the shared
//! data folder, a wgpu adapter): outside CI a test skips with a message that
//! names what is missing; under `CI=true`, where everything must be present,
//! the same situation fails the test, so a green CI can never mean "skipped".
//! Also the comparison every parity test shares ([`max_abs_diff`]) and the
//! checks and folders every encoder registry's tests share
//! ([`check_kind_names`], [`check_scratch_kinds`], [`check_same_encoder`],
//! [`encoder_fixture`], [`config_folder`]).

use std::fmt::{Debug, Display};
use std::path::{Path, PathBuf};

use burn::prelude::*;
use std::str::FromStr;

use serde::{Serialize, de::DeserializeOwned};

use crate::registry::EncoderKind;
use crate::{Encoder, Modality};

/// Whether this process runs under CI (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A prerequisite of a test is missing: prints `SKIPPED: <reason>` and
/// returns so the test can end early, or panics with the reason under CI.
pub fn skip(reason: impl std::fmt::Display) {
    if in_ci() {
        panic!("CI=true: a test cannot be skipped: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
}

/// The largest |a − b| of two slices (`a` computed, `b` expected). Panics,
/// naming both lengths, when they differ: zipping would silently compare
/// only the shorter prefix.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(
        a.len(),
        b.len(),
        "lengths differ: {} values computed, {} expected",
        a.len(),
        b.len()
    );
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The names of a registry's kinds (`all`, in table order), as each
/// registry's tests check them: each kind's `name` parses back to it, is its
/// `Display` and its JSON string, and is used once; the names are `names`;
/// parsing `unknown` is an error whose message contains `error`.
///
/// # Panics
/// On the first check that fails, naming the kind.
pub fn check_kind_names<K>(
    all: &[K],
    name: fn(K) -> &'static str,
    names: &[&str],
    (unknown, error): (&str, &str),
) where
    K: Copy + PartialEq + Debug + Display + FromStr<Err = crate::Error>,
    K: Serialize + DeserializeOwned,
{
    for (i, &kind) in all.iter().enumerate() {
        assert_eq!(name(kind).parse::<K>().unwrap(), kind);
        assert_eq!(kind.to_string(), name(kind));
        let json = serde_json::to_string(&kind).unwrap();
        assert_eq!(json, format!("\"{}\"", name(kind)));
        assert_eq!(serde_json::from_str::<K>(&json).unwrap(), kind);
        assert!(
            !all[..i].iter().any(|&k| name(k) == name(kind)),
            "the name {kind} is used twice"
        );
    }
    let listed: Vec<&str> = all.iter().map(|&k| name(k)).collect();
    assert_eq!(listed, names);
    let message = unknown.parse::<K>().unwrap_err().to_string();
    assert!(message.contains(error), "{message}");
}

/// The checks every encoder registry's tests share for its kinds: each
/// from-scratch kind builds with `sizes`, reports its kind, and encodes
/// `input` (a batch of `batch`) to `dim`-wide vectors of `modality`, but
/// cannot load the pretrained model folder `folder`; each pretrained kind
/// cannot be built from sizes.
///
/// # Panics
/// On the first check that fails, naming the kind.
pub fn check_scratch_kinds<K: EncoderKind>(
    sizes: &K::Sizes,
    input: &<K::Any as Encoder>::Input,
    (batch, dim, modality): (usize, usize, Modality),
    folder: &Path,
) {
    let device = Device::flex();
    for &kind in K::all() {
        let built = kind.init(sizes, &device);
        if kind.is_pretrained() {
            let error = built.err().expect("a pretrained kind built").to_string();
            assert!(error.contains("is pretrained"), "{kind}: {error}");
            continue;
        }
        let encoder = built.unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(K::of(&encoder), kind);
        assert_eq!(
            (encoder.dim(), encoder.modality()),
            (dim, modality),
            "{kind}"
        );
        let embeddings = encoder.encode(input).unwrap();
        assert_eq!(embeddings.pooled.dims(), [batch, dim], "{kind}");
        let error = kind.load(folder, &device).err().expect("a folder loaded");
        assert!(
            error.to_string().contains("from scratch"),
            "{kind}: {error}"
        );
    }
}

/// Checks that `any` (an encoder loaded through a registry) is `direct` (the
/// same model loaded by its own loader): the same embeddings of `input`,
/// pooled and per token, to the bit.
///
/// # Panics
/// When an encoding fails or differs.
pub fn check_same_encoder<E, F>(direct: &E, any: &F, input: &E::Input)
where
    E: Encoder,
    F: Encoder<Input = E::Input>,
{
    let (a, b) = (direct.encode(input).unwrap(), any.encode(input).unwrap());
    let values = |t: Tensor<3>| t.try_into_vec_as::<f32>().unwrap();
    assert_eq!(values(a.pooled.unsqueeze()), values(b.pooled.unsqueeze()));
    assert_eq!(values(a.sequence), values(b.sequence));
}

/// The folder of the encoders' parity fixtures (`tests/fixtures/parity/
/// encoders/<name>`: small models in Hugging Face layout).
pub fn encoder_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/parity/encoders")
        .join(name)
}

/// A fresh, empty folder in the temporary directory, named after `label`
/// and this process, with `config` as its `config.json` (none when `None`).
///
/// # Panics
/// When the folder cannot be made.
pub fn config_folder(label: &str, config: Option<&str>) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("polymodal-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(config) = config {
        std::fs::write(dir.join("config.json"), config).unwrap();
    }
    dir
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    /// Runs [`skip_in_a_child`] in a child test process with `CI` set to
    /// `ci`: its exit status and standard error.
    fn child(ci: &str) -> (bool, String) {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "testing::tests::skip_in_a_child"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .env("CI", ci)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    #[ignore = "run as a child by a_skip_fails_under_ci_only"]
    fn skip_in_a_child() {
        super::skip("the child's prerequisite is missing");
    }

    #[test]
    fn a_skip_fails_under_ci_only() {
        let (passed, stderr) = child("true");
        assert!(!passed, "under CI=true a skip must fail: {stderr}");
        assert!(stderr.contains("cannot be skipped"), "{stderr}");
        let (passed, stderr) = child("false");
        assert!(passed, "outside CI a skip passes: {stderr}");
        assert!(
            stderr.contains("SKIPPED: the child's prerequisite is missing"),
            "{stderr}"
        );
    }
}
