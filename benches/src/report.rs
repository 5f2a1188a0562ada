//! Reports that write themselves: every benchmark binary writes its own
//! Markdown file under `docs/benchmarks/`, with where the figures come from
//! ([`Provenance`]: command, date, commit, machine, OS, Rust and the
//! reference tools' versions), its table ([`Table`]) and, for each row with a
//! goal ([`Goal`]), a verdict computed from the figures ([`Verdict`]). No
//! figure is typed by hand; rerunning the command rewrites the file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The environment variable `cargo xtask bench …` sets to the command line
/// that started the benchmark; without it the binary's own arguments are
/// reported.
pub const COMMAND_ENV: &str = "POLYMODAL_BENCH_COMMAND";

/// The commit a GPU kit was built from (`cargo xtask gpu-kit` writes it,
/// the kit's script sets it), for reports written where there is no git.
pub const KIT_COMMIT_ENV: &str = "POLYMODAL_KIT_COMMIT";

/// The `rustc --version` a GPU kit was built with (the kit's script sets
/// it), for reports written where there is no Rust toolchain.
pub const KIT_RUSTC_ENV: &str = "POLYMODAL_KIT_RUSTC";

/// A name for a machine other than this project's own, added to the file
/// names of CPU reports (`epoch-cpu-<name>.md`): the GPU runs set it so
/// that their CPU epoch, timed on the GPU machine's processor, does not
/// overwrite the report of the machine the CPU goals are judged on.
pub const MACHINE_ENV: &str = "POLYMODAL_REPORT_MACHINE";

/// The workspace root (the parent of the benches crate): from the
/// `CARGO_MANIFEST_DIR` that `cargo run` sets, else from where this crate
/// was built.
pub fn workspace_root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.join("src").join("report.rs").is_file())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest
        .parent()
        .expect("benches lives one level below the workspace root")
        .to_path_buf()
}

/// `docs/benchmarks/`, where every generated report goes.
pub fn reports_dir() -> PathBuf {
    workspace_root().join("docs").join("benchmarks")
}

/// Where a run's figures come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The command line that produced the figures.
    pub command: String,
    /// When, as `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
    /// The short commit hash, with `+ uncommitted changes` when the tree
    /// was not clean.
    pub commit: String,
    /// CPU model, core count and memory.
    pub machine: String,
    /// Distribution and kernel.
    pub os: String,
    /// `rustc --version`.
    pub rustc: String,
    /// Reference tools and their versions, in the order reported.
    #[serde(default)]
    pub tools: Vec<(String, String)>,
}

impl Provenance {
    /// Everything about this run that can be read from the machine now.
    pub fn capture() -> Self {
        Self {
            command: command_line(),
            date: utc_date(SystemTime::now()),
            commit: commit(),
            machine: machine(),
            os: os(),
            rustc: rustc_version(),
            tools: Vec::new(),
        }
    }

    /// Adds a reference tool and its version.
    pub fn tool(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.tools.push((name.into(), version.into()));
        self
    }

    /// Adds the versions a Python reference script printed (its `versions`
    /// list of `[name, version]` pairs), or why it did not run.
    pub fn python_tools(mut self, output: &Result<Value, String>) -> Self {
        self.tools.extend(python_versions(output));
        self
    }

    /// The provenance as a Markdown list.
    pub fn markdown(&self) -> String {
        let tools = if self.tools.is_empty() {
            "none".to_string()
        } else {
            self.tools
                .iter()
                .map(|(name, version)| format!("{name} {version}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "- Command: `{}`\n- Date: {}\n- Commit: {}\n- Machine: {}\n- OS: {}\n- Rust: {}\n- Reference tools: {}\n",
            self.command, self.date, self.commit, self.machine, self.os, self.rustc, tools
        )
    }
}

/// The tools listed in a reference script's `versions`, or one entry saying
/// why there are none.
pub fn python_versions(output: &Result<Value, String>) -> Vec<(String, String)> {
    match output {
        Err(why) => vec![("Python reference".into(), format!("not run ({why})"))],
        Ok(value) => match value["versions"].as_array() {
            None => vec![("Python reference".into(), "versions not reported".into())],
            Some(pairs) => pairs
                .iter()
                .filter_map(|pair| {
                    let name = pair.get(0)?.as_str()?;
                    let version = pair.get(1)?.as_str()?;
                    Some((name.to_string(), version.to_string()))
                })
                .collect(),
        },
    }
}

/// `ffmpeg -version`'s first line without its copyright, e.g. `ffmpeg 5.1.9`.
pub fn ffmpeg_version() -> String {
    first_line("ffmpeg", &["-version"])
        .map(|line| {
            let line = line.split(" Copyright").next().unwrap_or(&line);
            line.replacen("ffmpeg version ", "", 1)
        })
        .unwrap_or_else(|| "not found".into())
}

fn first_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then_some(())?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}

/// `$POLYMODAL_BENCH_COMMAND`, else this process's own command line.
fn command_line() -> String {
    match std::env::var(COMMAND_ENV) {
        Ok(command) if !command.trim().is_empty() => command,
        _ => {
            let mut args = std::env::args();
            let program = args
                .next()
                .map(|p| {
                    Path::new(&p)
                        .file_name()
                        .map_or(p.clone(), |n| n.to_string_lossy().into_owned())
                })
                .unwrap_or_default();
            std::iter::once(program)
                .chain(args.map(|a| shell_word(&a)))
                .collect::<Vec<_>>()
                .join(" ")
        }
    }
}

/// `word` quoted for a POSIX shell when it needs to be.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The short commit hash, `+ uncommitted changes` when `git status
/// --porcelain` lists anything outside `docs/benchmarks/`: the reports the
/// benchmarks write there do not change what is measured, and counting
/// them would mark every report after the first of a session.
fn commit() -> String {
    let root = workspace_root();
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        // A copy of the tree without its history, as the GPU kit's machines
        // get: the commit the kit was built from, when it says so.
        None => match std::env::var(KIT_COMMIT_ENV) {
            Ok(commit) => format!("{commit} (as the GPU kit was built)"),
            Err(_) => "unknown (not a git checkout, or no git)".into(),
        },
        Some(hash) => {
            let dirty = git(&["status", "--porcelain", "--", ".", ":!docs/benchmarks"])
                .is_none_or(|s| !s.is_empty());
            describe_commit(&hash, dirty)
        }
    }
}

/// `rustc --version`; where there is no toolchain, the one the GPU kit was
/// built with when it says so.
fn rustc_version() -> String {
    first_line("rustc", &["--version"])
        .or_else(|| {
            std::env::var(KIT_RUSTC_ENV)
                .ok()
                .map(|v| format!("{v} (as the GPU kit was built)"))
        })
        .unwrap_or_else(|| "rustc: unknown".into())
}

/// `` `abc1234` ``, with ` + uncommitted changes` when the tree was dirty.
pub fn describe_commit(hash: &str, dirty: bool) -> String {
    if dirty {
        format!("`{hash}` + uncommitted changes")
    } else {
        format!("`{hash}`")
    }
}

/// CPU model, core count and memory, e.g. `Intel(R) Xeon(R) Processor @
/// 2.80GHz, 2 cores, 23.4 GiB memory`.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    describe_machine(&cpuinfo, &meminfo, cores)
}

/// [`machine`] from the text of `/proc/cpuinfo` and `/proc/meminfo`.
pub fn describe_machine(cpuinfo: &str, meminfo: &str, cores: usize) -> String {
    let field = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let cpu = field(cpuinfo, "model name").unwrap_or_else(|| "unknown CPU".into());
    let memory = field(meminfo, "MemTotal")
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or("unknown memory".into(), |kib| {
            format!("{:.1} GiB memory", kib / 1024.0 / 1024.0)
        });
    let plural = if cores == 1 { "core" } else { "cores" };
    format!("{cpu}, {cores} {plural}, {memory}")
}

/// The distribution (`/etc/os-release`) and the kernel release.
fn os() -> String {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let name = release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| std::env::consts::OS.to_string());
    match std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        Ok(kernel) => format!("{name}, kernel {}", kernel.trim()),
        Err(_) => name,
    }
}

/// `time` as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_date(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A file-name-safe form of `text`: lower case, runs of anything but ASCII
/// letters and digits as one `-`, parenthesised details dropped, at most 40
/// characters (`llvmpipe (LLVM 15.0.6, 256 bits)` → `llvmpipe`, `NVIDIA
/// H200` → `nvidia-h200`).
pub fn slug(text: &str) -> String {
    let text = text.split('(').next().unwrap_or(text);
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out: String = out.chars().take(40).collect();
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "unknown".into()
    } else {
        out
    }
}

/// How a device is named in a report's file name: `cpu`, or `wgpu-` and the
/// adapter's name (so that a run on lavapipe and one on a GPU, both `wgpu`
/// on the command line, keep their own files).
///
/// On the CPU, `$POLYMODAL_REPORT_MACHINE` ([`MACHINE_ENV`]) is added when
/// set: `cpu-nvidia-h200-machine`.
pub fn device_slug(flag: &str, adapter: Option<&str>) -> String {
    let machine = std::env::var(MACHINE_ENV).ok();
    device_slug_on(flag, adapter, machine.as_deref())
}

/// [`device_slug`] with the machine's name given.
pub fn device_slug_on(flag: &str, adapter: Option<&str>, machine: Option<&str>) -> String {
    match (flag, adapter) {
        ("cpu", _) => match machine.map(str::trim).filter(|m| !m.is_empty()) {
            Some(machine) => format!("cpu-{}", slug(machine)),
            None => "cpu".into(),
        },
        (_, Some(name)) => format!("wgpu-{}", slug(name)),
        (flag, None) => slug(flag),
    }
}

/// A goal for a ratio (above 1: polymodal is faster): met when the ratio is
/// at least this.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goal(pub f64);

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "≥ {:.1}x", self.0)
    }
}

/// Whether a row met its goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The ratio is at least the goal.
    Met,
    /// The ratio is below the goal.
    Missed,
    /// There is a goal but no ratio (the reference was skipped).
    NotMeasured,
    /// No goal is set for the row.
    NoGoal,
}

impl Verdict {
    /// The verdict of `ratio` against `goal`.
    pub fn of(ratio: Option<f64>, goal: Option<Goal>) -> Self {
        match (goal, ratio.filter(|r| r.is_finite())) {
            (None, _) => Self::NoGoal,
            (Some(_), None) => Self::NotMeasured,
            (Some(goal), Some(ratio)) if ratio >= goal.0 => Self::Met,
            (Some(_), Some(_)) => Self::Missed,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Met => "met",
            Self::Missed => "MISSED",
            Self::NotMeasured => "not measured",
            Self::NoGoal => "—",
        })
    }
}

/// A ratio as the tables show it, rounded down to two decimals, so that a
/// ratio shown at or above a goal has met it (`0.996` is `0.99x`, not `1.00x`).
pub fn ratio_cell(ratio: Option<f64>) -> String {
    match ratio.filter(|r| r.is_finite()) {
        Some(r) => format!("{:.2}x", (r * 100.0 + 1e-9).floor() / 100.0),
        None => "-".into(),
    }
}

/// The median and range of one row's ratios over interleaved rounds: a
/// machine whose speed drifts moves both sides of a round alike, so the
/// ratio of each round holds still where the times do not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The median ratio (of an even count, the mean of the middle two).
    pub median: f64,
    /// The lowest round's ratio.
    pub low: f64,
    /// The highest round's ratio.
    pub high: f64,
    /// Rounds measured.
    pub rounds: usize,
}

impl Spread {
    /// The spread of `ratios` (non-finite ones left out); `None` when none
    /// is left.
    pub fn of(ratios: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = ratios.iter().copied().filter(|r| r.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Self {
            median,
            low: sorted[0],
            high: sorted[n - 1],
            rounds: n,
        })
    }

    /// `1.52x (1.31–1.77x)`: the median, then the range when there was more
    /// than one round, each rounded down as [`ratio_cell`] does.
    pub fn cell(&self) -> String {
        let median = ratio_cell(Some(self.median));
        if self.rounds < 2 {
            return median;
        }
        let low = ratio_cell(Some(self.low));
        let high = ratio_cell(Some(self.high));
        format!("{median} ({}–{high})", low.trim_end_matches('x'))
    }
}

/// A spread as the tables show it; `-` without one.
pub fn spread_cell(spread: Option<Spread>) -> String {
    spread.map_or("-".into(), |s| s.cell())
}

/// Column alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Flush left (words).
    Left,
    /// Flush right (figures).
    Right,
}

/// One row: its cells, the ratio its goal is judged on and the goal.
#[derive(Debug, Clone)]
struct Row {
    cells: Vec<String>,
    label: String,
    ratio: Option<f64>,
    goal: Option<Goal>,
}

/// A Markdown table whose rows may carry goals: when any does, a goal
/// column and a verdict column are added.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Row>,
}

impl Table {
    /// A table with these columns.
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Self {
            columns: columns
                .iter()
                .map(|(name, align)| (name.to_string(), *align))
                .collect(),
            rows: Vec::new(),
        }
    }

    /// The usual comparison: work, polymodal's time, the reference's, the
    /// reference tool, the ratio.
    pub fn against_reference() -> Self {
        Self::new(&[
            ("work", Align::Left),
            ("polymodal", Align::Right),
            ("reference", Align::Right),
            ("reference tool", Align::Left),
            ("ratio", Align::Right),
        ])
    }

    /// Adds an [`Table::against_reference`] row from interleaved rounds:
    /// the median times (`time` formats them; `-` for a reference that was
    /// not measured), the tool, and the rounds' ratio with its range,
    /// judged against `goal` on its median.
    pub fn rounds_row(
        &mut self,
        what: String,
        rounds: &crate::Rounds,
        tool: String,
        goal: Option<Goal>,
        time: impl Fn(std::time::Duration) -> String,
    ) {
        let spread = rounds.ratio();
        let theirs = if rounds.theirs.is_empty() {
            "-".into()
        } else {
            time(rounds.theirs_median())
        };
        self.goal_row(
            vec![
                what,
                time(rounds.ours_median()),
                theirs,
                tool,
                spread_cell(spread),
            ],
            spread.map(|s| s.median),
            goal,
        );
    }

    /// Adds a row without a goal.
    pub fn row(&mut self, cells: Vec<String>) {
        self.goal_row(cells, None, None);
    }

    /// Adds a row whose `ratio` is judged against `goal`.
    pub fn goal_row(&mut self, cells: Vec<String>, ratio: Option<f64>, goal: Option<Goal>) {
        assert_eq!(cells.len(), self.columns.len(), "one cell per column");
        let label = cells.first().cloned().unwrap_or_default();
        self.rows.push(Row {
            cells,
            label,
            ratio,
            goal,
        });
    }

    /// Whether any row has a goal.
    pub fn has_goals(&self) -> bool {
        self.rows.iter().any(|r| r.goal.is_some())
    }

    /// Each row's verdict, in order.
    pub fn verdicts(&self) -> Vec<Verdict> {
        self.rows
            .iter()
            .map(|r| Verdict::of(r.ratio, r.goal))
            .collect()
    }

    /// The table in Markdown (`|` in a cell escaped).
    pub fn markdown(&self) -> String {
        let goals = self.has_goals();
        let mut header: Vec<(String, Align)> = self.columns.clone();
        if goals {
            header.push(("goal".into(), Align::Right));
            header.push(("verdict".into(), Align::Left));
        }
        let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
        let mut md = line(header.iter().map(|(name, _)| escape(name)).collect());
        md.push_str(&line(
            header
                .iter()
                .map(|(_, align)| match align {
                    Align::Left => "---".to_string(),
                    Align::Right => "---:".to_string(),
                })
                .collect(),
        ));
        for row in &self.rows {
            let mut cells: Vec<String> = row.cells.iter().map(|c| escape(c)).collect();
            if goals {
                cells.push(row.goal.map_or("—".into(), |g| g.to_string()));
                let verdict = Verdict::of(row.ratio, row.goal);
                cells.push(match verdict {
                    Verdict::Missed => "**MISSED**".into(),
                    other => other.to_string(),
                });
            }
            md.push_str(&line(cells));
        }
        md
    }

    /// One sentence on the goals: how many were met, which were missed or
    /// not measured; `None` without goals.
    pub fn summary(&self) -> Option<String> {
        if !self.has_goals() {
            return None;
        }
        let with = |wanted: Verdict| -> Vec<&str> {
            self.rows
                .iter()
                .filter(|r| Verdict::of(r.ratio, r.goal) == wanted)
                .map(|r| r.label.as_str())
                .collect()
        };
        let (met, missed, unmeasured) = (
            with(Verdict::Met),
            with(Verdict::Missed),
            with(Verdict::NotMeasured),
        );
        let mut parts = vec![format!("{} met", met.len())];
        if !missed.is_empty() {
            parts.push(format!("{} MISSED ({})", missed.len(), missed.join("; ")));
        }
        if !unmeasured.is_empty() {
            parts.push(format!(
                "{} not measured ({})",
                unmeasured.len(),
                unmeasured.join("; ")
            ));
        }
        Some(format!("Goals: {}.", parts.join(", ")))
    }
}

fn escape(cell: &str) -> String {
    cell.replace('|', "\\|").replace('\n', " ")
}

/// A generated report: title, provenance, then paragraphs and tables.
#[derive(Debug, Clone)]
pub struct Report {
    title: String,
    provenance: Provenance,
    blocks: Vec<String>,
}

impl Report {
    /// A report of `title` on figures from `provenance`.
    pub fn new(title: impl Into<String>, provenance: Provenance) -> Self {
        Self {
            title: title.into(),
            provenance,
            blocks: Vec::new(),
        }
    }

    /// Adds a paragraph (or any Markdown block).
    pub fn text(&mut self, block: impl Into<String>) -> &mut Self {
        self.blocks.push(block.into().trim_end().to_string());
        self
    }

    /// Adds a table, and the goals' summary under it when it has goals.
    pub fn table(&mut self, table: &Table) -> &mut Self {
        self.blocks.push(table.markdown().trim_end().to_string());
        if let Some(summary) = table.summary() {
            self.blocks.push(summary);
        }
        self
    }

    /// The whole report in Markdown.
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "# {}\n\n<!-- Generated by `{}`: do not edit by hand, rerun the command. -->\n\n{}",
            self.title,
            self.provenance.command,
            self.provenance.markdown()
        );
        for block in &self.blocks {
            md.push('\n');
            md.push_str(block);
            md.push('\n');
        }
        md
    }

    /// Writes the report to `dir/name` and prints it; returns the path.
    pub fn write(&self, dir: &Path, name: &str) -> Result<PathBuf, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(name);
        let markdown = self.markdown();
        std::fs::write(&path, &markdown).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("{markdown}");
        println!("(written to {})", path.display());
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_spread_is_the_median_and_range_of_the_rounds() {
        let odd = Spread::of(&[1.4, 0.9, 1.2]).unwrap();
        assert_eq!(
            (odd.median, odd.low, odd.high, odd.rounds),
            (1.2, 0.9, 1.4, 3)
        );
        assert_eq!(odd.cell(), "1.20x (0.90–1.40x)");
        let even = Spread::of(&[2.0, 1.0, f64::NAN, 4.0, 3.0]).unwrap();
        assert_eq!((even.median, even.rounds), (2.5, 4));
        assert_eq!(Spread::of(&[0.996]).unwrap().cell(), "0.99x");
        assert_eq!(spread_cell(Spread::of(&[f64::INFINITY])), "-");
    }

    fn provenance() -> Provenance {
        Provenance {
            command: "cargo xtask bench media --reps 3".into(),
            date: "2026-12-01 10:00 UTC".into(),
            commit: describe_commit("abc1234", true),
            machine: "Test CPU, 2 cores, 4.0 GiB memory".into(),
            os: "Debian GNU/Linux 12 (bookworm), kernel 6.1.0".into(),
            rustc: "rustc 1.95.0".into(),
            tools: vec![("Python".into(), "3.11.7".into())],
        }
        .tool("ffmpeg", "5.1.9")
    }

    #[test]
    fn the_report_starts_with_its_provenance() {
        let mut table = Table::new(&[("work", Align::Left), ("ratio", Align::Right)]);
        table.goal_row(
            vec!["audio".into(), ratio_cell(Some(3.5))],
            Some(3.5),
            Some(Goal(3.0)),
        );
        let mut report = Report::new("Media", provenance());
        report.text("Best of 3.").table(&table);
        let md = report.markdown();
        assert!(md.starts_with("# Media\n"), "{md}");
        for expected in [
            "- Command: `cargo xtask bench media --reps 3`",
            "- Date: 2026-12-01 10:00 UTC",
            "- Commit: `abc1234` + uncommitted changes",
            "- Machine: Test CPU, 2 cores, 4.0 GiB memory",
            "- OS: Debian GNU/Linux 12 (bookworm), kernel 6.1.0",
            "- Rust: rustc 1.95.0",
            "- Reference tools: Python 3.11.7, ffmpeg 5.1.9",
            "do not edit by hand",
            "Best of 3.",
            "| audio | 3.50x | ≥ 3.0x | met |",
            "Goals: 1 met.",
        ] {
            assert!(md.contains(expected), "{expected:?} missing from\n{md}");
        }
        let dir = std::env::temp_dir().join(format!("polymodal-report-{}", std::process::id()));
        let path = report.write(&dir, "media.md").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), md);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_ratio_below_its_goal_is_missed() {
        assert_eq!(Verdict::of(Some(2.99), Some(Goal(3.0))), Verdict::Missed);
        assert_eq!(Verdict::of(Some(3.0), Some(Goal(3.0))), Verdict::Met);
        assert_eq!(Verdict::of(Some(4.0), Some(Goal(3.0))), Verdict::Met);
        assert_eq!(Verdict::of(None, Some(Goal(1.0))), Verdict::NotMeasured);
        assert_eq!(
            Verdict::of(Some(f64::NAN), Some(Goal(1.0))),
            Verdict::NotMeasured
        );
        assert_eq!(Verdict::of(Some(0.1), None), Verdict::NoGoal);
        assert_eq!(Verdict::Missed.to_string(), "MISSED");
        assert_eq!(Verdict::Met.to_string(), "met");

        let mut table = Table::new(&[("work", Align::Left), ("ratio", Align::Right)]);
        for (name, ratio, goal) in [
            ("video", Some(0.89), Some(Goal(1.0))),
            ("image", Some(1.68), Some(Goal(1.5))),
            ("text", None, Some(Goal(1.0))),
            ("resnet", Some(0.55), None),
        ] {
            table.goal_row(vec![name.into(), ratio_cell(ratio)], ratio, goal);
        }
        let md = table.markdown();
        assert!(
            md.contains("| video | 0.89x | ≥ 1.0x | **MISSED** |"),
            "{md}"
        );
        assert!(md.contains("| image | 1.68x | ≥ 1.5x | met |"), "{md}");
        assert!(md.contains("| text | - | ≥ 1.0x | not measured |"), "{md}");
        assert!(md.contains("| resnet | 0.55x | — | — |"), "{md}");
        assert_eq!(
            table.summary().unwrap(),
            "Goals: 1 met, 1 MISSED (video), 1 not measured (text)."
        );
        assert_eq!(
            table.verdicts(),
            [
                Verdict::Missed,
                Verdict::Met,
                Verdict::NotMeasured,
                Verdict::NoGoal
            ]
        );
    }

    #[test]
    fn a_shown_ratio_never_rounds_up_to_its_goal() {
        assert_eq!(ratio_cell(Some(0.996)), "0.99x");
        assert_eq!(Verdict::of(Some(0.996), Some(Goal(1.0))), Verdict::Missed);
        assert_eq!(ratio_cell(Some(1.0)), "1.00x");
        assert_eq!(ratio_cell(Some(1.16)), "1.16x");
        assert_eq!(ratio_cell(None), "-");
    }

    #[test]
    fn tables_render_alignment_and_escape_cells() {
        let mut table = Table::new(&[("kernel", Align::Left), ("time", Align::Right)]);
        table.row(vec!["a | b".into(), "1.00 ms".into()]);
        assert!(!table.has_goals());
        assert_eq!(table.summary(), None);
        assert_eq!(
            table.markdown(),
            "| kernel | time |\n| --- | ---: |\n| a \\| b | 1.00 ms |\n"
        );
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        let at = |s: u64| utc_date(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01 00:00 UTC");
        assert_eq!(at(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(
            at(1_704_067_200 + 3600 * 13 + 60 * 7),
            "2024-01-01 13:07 UTC"
        );
        assert_eq!(at(1_798_675_200), "2026-12-31 00:00 UTC");
    }

    #[test]
    fn machines_commits_and_slugs() {
        let cpuinfo = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor @ 2.80GHz\n";
        let meminfo = "MemTotal:       24563444 kB\nMemFree: 1 kB\n";
        assert_eq!(
            describe_machine(cpuinfo, meminfo, 2),
            "Intel(R) Xeon(R) Processor @ 2.80GHz, 2 cores, 23.4 GiB memory"
        );
        assert_eq!(
            describe_machine("", "", 1),
            "unknown CPU, 1 core, unknown memory"
        );
        assert_eq!(describe_commit("abc1234", false), "`abc1234`");
        assert_eq!(slug("llvmpipe (LLVM 15.0.6, 256 bits)"), "llvmpipe");
        assert_eq!(slug("NVIDIA H200"), "nvidia-h200");
        assert_eq!(device_slug_on("cpu", None, None), "cpu");
        assert_eq!(device_slug_on("cpu", None, Some(" ")), "cpu");
        assert_eq!(
            device_slug_on("cpu", None, Some("NVIDIA H200 machine")),
            "cpu-nvidia-h200-machine"
        );
        assert_eq!(
            device_slug_on("wgpu:1", Some("NVIDIA H200"), Some("NVIDIA H200 machine")),
            "wgpu-nvidia-h200"
        );
        assert_eq!(device_slug_on("wgpu:1", None, None), "wgpu-1");
        assert_eq!(shell_word("--reps"), "--reps");
        assert_eq!(shell_word("a b"), "'a b'");
    }

    #[test]
    fn python_versions_are_read_or_explained() {
        let out = Ok(serde_json::json!({
            "audio": {"seconds": 1.0},
            "versions": [["Python", "3.11.7"], ["librosa", "0.11.0"]],
        }));
        assert_eq!(
            python_versions(&out),
            vec![
                ("Python".to_string(), "3.11.7".to_string()),
                ("librosa".to_string(), "0.11.0".to_string())
            ]
        );
        let failed = python_versions(&Err("skipped: cannot run python9".into()));
        assert_eq!(failed[0].1, "not run (skipped: cannot run python9)");
    }
}
