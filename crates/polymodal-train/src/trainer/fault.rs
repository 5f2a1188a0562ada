//! A testing hook that stops the process in the middle of a checkpoint
//! write, so that a test can kill it exactly there (a kill at a random
//! moment would almost never land inside a write).
//!
//! `POLYMODAL_FAULT_INJECT=<file name>:<n>[:renamed]`: at the `n`-th (from 1)
//! write in this process of a run-folder file named `<file name>` (such as
//! `state.json`, `model.bpk`, `epoch-2.optim.bpk`, `metrics.csv`), the
//! process writes the first half of the bytes to the temporary file and
//! flushes them (with `:renamed`: writes the whole file and renames it into
//! place), prints `polymodal: fault injection: paused …` to stderr and
//! sleeps, for the test to kill it with SIGKILL. Should no kill come, it
//! aborts after ten minutes. Unset, it costs one look-up per write.

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use polymodal_core::{Error, Result};

/// The environment variable.
pub const VARIABLE: &str = "POLYMODAL_FAULT_INJECT";

/// Where in a write the process stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Half of the temporary file written.
    Partial,
    /// The file complete and renamed into place.
    Renamed,
}

/// A parsed `POLYMODAL_FAULT_INJECT`.
#[derive(Debug, PartialEq, Eq)]
pub struct Point {
    /// The file name (no folder) whose write stops.
    pub file: String,
    /// Which write of that file in this process (from 1).
    pub occurrence: usize,
    /// Where in the write.
    pub stage: Stage,
}

/// Parses `<file name>:<n>[:renamed]`.
pub fn parse(spec: &str) -> Result<Point> {
    let bad = || {
        Error::Config(format!(
            "{VARIABLE}={spec:?}: expected <file name>:<n>[:renamed], e.g. state.json:2"
        ))
    };
    let mut parts = spec.split(':');
    let file = parts.next().filter(|f| !f.is_empty()).ok_or_else(bad)?;
    let occurrence = parts
        .next()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .ok_or_else(bad)?;
    let stage = match parts.next() {
        None => Stage::Partial,
        Some("renamed") => Stage::Renamed,
        Some(_) => return Err(bad()),
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(Point {
        file: file.to_string(),
        occurrence,
        stage,
    })
}

/// Counts a write to `path`; the stage to stop at if this is the one.
pub fn next(path: &Path) -> Result<Option<Stage>> {
    // Read once: the variable is set when the process starts.
    static POINT: OnceLock<std::result::Result<Option<Point>, String>> = OnceLock::new();
    static WRITES: AtomicUsize = AtomicUsize::new(0);
    let point = POINT.get_or_init(|| match std::env::var(VARIABLE) {
        Ok(spec) => parse(&spec).map(Some).map_err(|e| e.to_string()),
        Err(_) => Ok(None),
    });
    let point = match point {
        Ok(Some(point)) => point,
        Ok(None) => return Ok(None),
        Err(message) => return Err(Error::Config(message.clone())),
    };
    if path.file_name().and_then(|n| n.to_str()) != Some(point.file.as_str()) {
        return Ok(None);
    }
    let count = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
    Ok((count == point.occurrence).then_some(point.stage))
}

/// Announces the stop on stderr and waits to be killed.
pub fn pause(stage: Stage, path: &Path) -> ! {
    let what = match stage {
        Stage::Partial => "half-written",
        Stage::Renamed => "renamed",
    };
    eprintln!(
        "polymodal: fault injection: paused with {} {what}",
        path.display()
    );
    std::thread::sleep(Duration::from_secs(600));
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use crate::trainer::fault;

    #[test]
    fn fault_injection_points_parse() {
        assert_eq!(
            fault::parse("state.json:2").unwrap(),
            fault::Point {
                file: "state.json".into(),
                occurrence: 2,
                stage: fault::Stage::Partial,
            }
        );
        assert_eq!(
            fault::parse("model.bpk:1:renamed").unwrap().stage,
            fault::Stage::Renamed
        );
        for bad in [
            "",
            "state.json",
            "state.json:0",
            "state.json:x",
            "a:1:later",
            "a:1:renamed:2",
        ] {
            let message = fault::parse(bad).unwrap_err().to_string();
            assert!(message.contains(fault::VARIABLE), "{message}");
        }
    }
}
