//! Training progress on the console.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use polymodal::demo::Reporter;
use polymodal::train::Progress;

/// Progress on a terminal: one bar per model. Elsewhere (logs, pipes): one
/// line per epoch.
pub struct ConsoleReporter {
    bar: Option<(String, ProgressBar)>,
    terminal: bool,
}

impl ConsoleReporter {
    /// A reporter for standard output.
    pub fn new() -> Self {
        Self {
            bar: None,
            terminal: std::io::stdout().is_terminal(),
        }
    }

    /// Clears the bar, so that what is printed next starts on a clean line.
    pub fn finish(&mut self) {
        if let Some((_, bar)) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// The bar for `model`, replacing another model's.
    fn bar_for(&mut self, model: &str, steps: u64) -> &ProgressBar {
        if self.bar.as_ref().is_none_or(|(name, _)| name != model) {
            self.finish();
            let bar = ProgressBar::new(steps).with_prefix(model.to_string());
            bar.set_style(
                ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} steps {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            self.bar = Some((model.to_string(), bar));
        }
        &self.bar.as_ref().expect("set above").1
    }
}

impl Reporter for ConsoleReporter {
    fn line(&mut self, text: &str) {
        match &self.bar {
            Some((_, bar)) => bar.println(text),
            None => println!("{text}"),
        }
    }

    fn progress(&mut self, model: &str, event: &Progress) {
        match event {
            Progress::Step {
                epoch,
                epochs,
                step,
                steps,
            } if self.terminal => {
                let bar = self.bar_for(model, (epochs * steps) as u64);
                bar.set_position(((epoch - 1) * steps + step) as u64);
            }
            Progress::Step { .. } => {}
            Progress::Epoch(report) => {
                let text = format!(
                    "{model}: epoch {} loss {:.3} valid accuracy {:.3} ({:.1} s)",
                    report.epoch,
                    report.train_loss,
                    report.valid_accuracy,
                    report.elapsed.as_secs_f64()
                );
                match &self.bar {
                    Some((_, bar)) => bar.set_message(text),
                    None => println!("{text}"),
                }
            }
            Progress::Resumed { epoch } => {
                self.line(&format!("{model}: resuming after epoch {epoch}"));
            }
        }
    }
}
