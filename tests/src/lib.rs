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
