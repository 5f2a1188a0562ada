//! The demo's results: a Markdown table and an SVG bar chart.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde::Serialize;

use polymodal_core::{Error, Result};

/// The family a model belongs to (see `docs/fusion.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// One modality.
    Unimodal,
    /// Feature-level (early) fusion.
    Early,
    /// Model-level (late) fusion.
    Late,
    /// Joint learning.
    Joint,
}

impl Family {
    fn label(self) -> &'static str {
        match self {
            Self::Unimodal => "unimodal",
            Self::Early => "early (feature-level)",
            Self::Late => "late (model-level)",
            Self::Joint => "joint",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Self::Unimodal => "#9e9e9e",
            Self::Early => "#1f77b4",
            Self::Late => "#ff7f0e",
            Self::Joint => "#2ca02c",
        }
    }
}

/// One row of the results.
#[derive(Debug, Clone, Serialize)]
pub struct ModelResult {
    /// Model name.
    pub name: String,
    /// Family.
    pub family: Family,
    /// Modalities it reads.
    pub modalities: Vec<String>,
    /// Test accuracy.
    pub accuracy: f32,
    /// Parameters (for late fusion: of all its base models).
    pub parameters: usize,
    /// Training time in seconds (for late fusion: its base models plus fitting the weights).
    pub train_seconds: f64,
}

/// All results and the verdict.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// Rows, unimodal first.
    pub results: Vec<ModelResult>,
    /// Test samples.
    pub test_samples: usize,
}

impl DemoReport {
    /// The best unimodal accuracy.
    pub fn best_unimodal(&self) -> f32 {
        self.results
            .iter()
            .filter(|r| r.family == Family::Unimodal)
            .map(|r| r.accuracy)
            .fold(0.0, f32::max)
    }

    /// The fused models (every family but unimodal).
    pub fn fused(&self) -> impl Iterator<Item = &ModelResult> {
        self.results.iter().filter(|r| r.family != Family::Unimodal)
    }

    /// Whether every fusion method beats the best unimodal model.
    pub fn fusion_wins(&self) -> bool {
        let best = self.best_unimodal();
        self.fused().count() > 0 && self.fused().all(|r| r.accuracy > best)
    }

    /// The sentence that states the verdict.
    pub fn verdict(&self) -> String {
        let best = self.best_unimodal();
        let worst_fused = self
            .fused()
            .map(|r| r.accuracy)
            .fold(f32::INFINITY, f32::min);
        if self.fusion_wins() {
            format!(
                "Every fusion method beats the best unimodal model: lowest fused accuracy {:.3} > best unimodal {:.3}.",
                worst_fused, best
            )
        } else {
            format!(
                "NOT every fusion method beats the best unimodal model: lowest fused accuracy {:.3} <= best unimodal {:.3}.",
                worst_fused, best
            )
        }
    }

    /// How a demo run ends: `Ok` when every fusion method beats the best
    /// unimodal model, else an error with the verdict and the fused models
    /// at or below it. `polymodal demo` returns it, so a failed comparison
    /// exits non-zero (and fails `cargo xtask demo`) after the table is
    /// printed.
    pub fn outcome(&self) -> Result<()> {
        if self.fusion_wins() {
            return Ok(());
        }
        let best = self.best_unimodal();
        // Not "accuracy <= best": a NaN accuracy does not beat it either.
        let behind: Vec<String> = self
            .fused()
            .filter(|r| r.accuracy.partial_cmp(&best) != Some(Ordering::Greater))
            .map(|r| format!("{} {:.3}", r.name, r.accuracy))
            .collect();
        let detail = if behind.is_empty() {
            "no fusion method was trained".to_string()
        } else {
            format!("at or below it: {}", behind.join(", "))
        };
        Err(Error::Invalid(format!(
            "demo check failed: {} ({detail})",
            self.verdict()
        )))
    }

    /// A Markdown table with the verdict under it.
    pub fn markdown(&self) -> String {
        let best = self.best_unimodal();
        let mut out = String::from(
            "| model | family | modalities | test accuracy | vs best unimodal | parameters | training time |\n|---|---|---|---:|---:|---:|---:|\n",
        );
        for r in &self.results {
            let delta = if r.family == Family::Unimodal {
                String::from("")
            } else {
                format!("{:+.3}", r.accuracy - best)
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.3} | {} | {} | {:.1} s |",
                r.name,
                r.family.label(),
                r.modalities.join(" + "),
                r.accuracy,
                delta,
                r.parameters,
                r.train_seconds
            );
        }
        let _ = write!(
            out,
            "\n{} (test set: {} samples)\n",
            self.verdict(),
            self.test_samples
        );
        out
    }

    /// A horizontal bar chart of test accuracy, coloured by family, with a
    /// dashed line at the best unimodal accuracy.
    pub fn svg(&self) -> String {
        let (left, bar, gap, width) = (230.0, 22.0, 8.0, 420.0);
        let height = 60.0 + self.results.len() as f64 * (bar + gap) + 40.0;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"13\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"10\" y=\"24\" font-size=\"16\" font-weight=\"bold\">Test accuracy on the embedded dataset ({n} samples)</text>\n",
            w = left + width + 80.0,
            n = self.test_samples
        );
        for (i, r) in self.results.iter().enumerate() {
            let y = 45.0 + i as f64 * (bar + gap);
            let length = width * r.accuracy as f64;
            let _ = write!(
                svg,
                "<text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{name}</text>\n\
                 <rect x=\"{left}\" y=\"{y}\" width=\"{length:.1}\" height=\"{bar}\" fill=\"{colour}\"/>\n\
                 <text x=\"{vx:.1}\" y=\"{ty}\">{acc:.3}</text>\n",
                tx = left - 8.0,
                ty = y + bar * 0.7,
                name = r.name,
                colour = r.family.colour(),
                vx = left + length + 5.0,
                acc = r.accuracy
            );
        }
        let x = left + width * self.best_unimodal() as f64;
        let bottom = 45.0 + self.results.len() as f64 * (bar + gap);
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"38\" x2=\"{x:.1}\" y2=\"{bottom}\" stroke=\"black\" stroke-dasharray=\"4 3\"/>\n\
             <text x=\"{x:.1}\" y=\"{ly}\" text-anchor=\"middle\">best unimodal</text>\n",
            ly = bottom + 16.0
        );
        for (i, family) in [Family::Unimodal, Family::Early, Family::Late, Family::Joint]
            .into_iter()
            .enumerate()
        {
            let lx = 10.0 + i as f64 * 160.0;
            let ly = bottom + 30.0;
            let _ = writeln!(
                svg,
                "<rect x=\"{lx}\" y=\"{ry}\" width=\"12\" height=\"12\" fill=\"{c}\"/><text x=\"{tx}\" y=\"{ly}\">{l}</text>",
                ry = ly - 10.0,
                c = family.colour(),
                tx = lx + 16.0,
                l = family.label()
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, family: Family, accuracy: f32) -> ModelResult {
        ModelResult {
            name: name.into(),
            family,
            modalities: vec!["image".into()],
            accuracy,
            parameters: 10,
            train_seconds: 1.0,
        }
    }

    #[test]
    fn verdict_compares_every_fused_model_with_the_best_unimodal() {
        let mut report = DemoReport {
            results: vec![
                row("image", Family::Unimodal, 0.5),
                row("audio", Family::Unimodal, 0.4),
                row("concat", Family::Early, 0.9),
            ],
            test_samples: 10,
        };
        assert!(report.fusion_wins());
        assert!(
            report
                .markdown()
                .contains("| concat | early (feature-level) | image | 0.900 | +0.400 |")
        );
        assert!(report.outcome().is_ok());
        report.results.push(row("late", Family::Late, 0.5));
        assert!(!report.fusion_wins());
        assert!(report.verdict().starts_with("NOT"));
        assert!(report.svg().contains("best unimodal"));
    }

    /// The exit status of `polymodal demo` comes from `outcome`: a fused
    /// model that only ties the best unimodal one (or has no accuracy at
    /// all) is a failure whose message says which model and by how much.
    #[test]
    fn a_fused_model_not_above_the_best_unimodal_fails_the_demo() {
        let mut report = DemoReport {
            results: vec![
                row("image", Family::Unimodal, 0.5),
                row("concat", Family::Early, 0.9),
                row("late", Family::Late, 0.5),
                row("joint", Family::Joint, f32::NAN),
            ],
            test_samples: 10,
        };
        let message = report.outcome().unwrap_err().to_string();
        assert!(
            message.contains(
                "demo check failed: NOT every fusion method beats the best unimodal model"
            ) && message.contains("best unimodal 0.500")
                && message.contains("at or below it: late 0.500, joint NaN")
                && !message.contains("concat"),
            "{message}"
        );
        // Unimodal models alone prove nothing about fusion.
        report.results.retain(|r| r.family == Family::Unimodal);
        let message = report.outcome().unwrap_err().to_string();
        assert!(
            message.contains("no fusion method was trained"),
            "{message}"
        );
    }
}
