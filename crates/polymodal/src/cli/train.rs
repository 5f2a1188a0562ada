//! `polymodal train`: an experiment described by a TOML file.

use std::path::PathBuf;

use polymodal::Result;
use polymodal::demo::Reporter;
use polymodal::experiment::{self, Experiment, ExperimentReport};

use super::args::TrainingDevice;
use super::console::ConsoleReporter;

/// Train a model described by a TOML experiment file.
#[derive(clap::Args)]
pub struct Train {
    /// The experiment (see `polymodal::experiment`).
    #[arg(long)]
    config: PathBuf,
    /// Continue the run saved in the output folder.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    device: TrainingDevice,
}

impl Train {
    /// Trains, then prints the best epoch, the test results and the model folder.
    pub fn run(self) -> Result<()> {
        let device = self.device.device()?;
        let experiment = Experiment::from_file(&self.config)?;
        let mut reporter = ConsoleReporter::new();
        let report = experiment::run(&experiment, &device, self.resume, &mut |event| {
            reporter.progress("train", &event)
        })?;
        reporter.finish();
        print_summary(&report);
        Ok(())
    }
}

fn print_summary(report: &ExperimentReport) {
    let best = &report.train.epochs[report.train.best_epoch - 1];
    println!(
        "best epoch {} of {}{}: validation accuracy {:.4}, macro-F1 {:.4}",
        report.train.best_epoch,
        report.train.epochs.len(),
        if report.train.stopped_early {
            " (stopped early)"
        } else {
            ""
        },
        best.valid_accuracy,
        best.valid_macro_f1
    );
    match report.test.as_ref().map(|t| (t, &t.multi_label)) {
        Some((_, Some(m))) => println!(
            "test (multi-label, threshold 0.5): subset accuracy {:.4}, micro-F1 {:.4}, \
             macro-F1 {:.4}, mAP {:.4}",
            m.subset_accuracy(),
            m.micro_f1(),
            m.macro_f1(),
            m.mean_average_precision()
        ),
        Some((test, None)) => println!(
            "test accuracy {:.4}, macro-F1 {:.4}, loss {:.4}",
            test.accuracy, test.macro_f1, test.loss
        ),
        None => {}
    }
    println!("model folder: {}", report.model_dir.display());
}
