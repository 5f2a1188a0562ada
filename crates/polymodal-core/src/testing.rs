//! How the project's test suites treat a missing prerequisite (the shared
//! data folder, a wgpu adapter): outside CI a test skips with a message that
//! names what is missing; under `CI=true`, where everything must be present,
//! the same situation fails the test, so a green CI can never mean "skipped".
//! Also the comparison every parity test shares ([`max_abs_diff`]).

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
