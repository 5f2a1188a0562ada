//! Helpers shared by the end-to-end tests.

use std::path::PathBuf;

/// The shared data folder: `$POLYMODAL_SHARED`, else `../shared` next to the
/// workspace. `None` (with a message on stderr naming the setting) when it is
/// absent, so tests that need it skip.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("POLYMODAL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    if dir.join("README.md").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: shared data not found at {} (set POLYMODAL_SHARED to the shared/ folder)",
            dir.display()
        );
        None
    }
}

/// A fresh empty folder under the system temp dir, unique to this test.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("polymodal-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A parity fixture: named tensors in a safetensors file under
/// `tests/fixtures/parity/`, written by a script in `scripts/parity/`.
pub struct Fixture {
    name: String,
    bytes: Vec<u8>,
}

impl Fixture {
    /// Reads `tests/fixtures/parity/<name>`.
    pub fn load(name: &str) -> Self {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/parity")
            .join(name);
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (see scripts/parity/)", path.display()));
        Self {
            name: name.to_string(),
            bytes,
        }
    }

    fn view(&self, tensor: &str) -> safetensors::tensor::TensorView<'_> {
        let file = safetensors::SafeTensors::deserialize(&self.bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", self.name));
        file.tensor(tensor)
            .unwrap_or_else(|e| panic!("{}: {tensor}: {e}", self.name))
    }

    /// An f32 tensor: its values (row-major) and shape.
    pub fn f32(&self, tensor: &str) -> (Vec<f32>, Vec<usize>) {
        let view = self.view(tensor);
        assert_eq!(view.dtype(), safetensors::Dtype::F32, "{tensor}");
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (values, view.shape().to_vec())
    }

    /// An i64 tensor's values.
    pub fn i64(&self, tensor: &str) -> Vec<i64> {
        let view = self.view(tensor);
        assert_eq!(view.dtype(), safetensors::Dtype::I64, "{tensor}");
        view.data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    /// A u8 tensor's bytes (strings are stored this way).
    pub fn bytes(&self, tensor: &str) -> Vec<u8> {
        let view = self.view(tensor);
        assert_eq!(view.dtype(), safetensors::Dtype::U8, "{tensor}");
        view.data().to_vec()
    }

    /// Names of the tensors in the file.
    pub fn names(&self) -> Vec<String> {
        let file = safetensors::SafeTensors::deserialize(&self.bytes).expect("valid fixture");
        let mut names: Vec<String> = file.names().into_iter().map(String::from).collect();
        names.sort();
        names
    }
}

/// The largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
