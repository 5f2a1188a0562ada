//! `polymodal demo` and `polymodal generate`: the embedded dataset.

use std::path::PathBuf;

use polymodal::Result;
use polymodal::demo::{self, DatasetSize, DemoOptions};

use super::args::TrainingDevice;
use super::console::ConsoleReporter;

/// Generate the embedded dataset, train every unimodal model and fusion method, report.
#[derive(clap::Args)]
pub struct Demo {
    /// Output folder.
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    /// Training epochs per model.
    #[arg(long)]
    epochs: Option<usize>,
    #[command(flatten)]
    device: TrainingDevice,
}

impl Demo {
    /// Runs the demo, prints its table and where the results are.
    pub fn run(self) -> Result<()> {
        let mut options = DemoOptions {
            device: self.device.device()?,
            ..DemoOptions::default()
        };
        if let Some(epochs) = self.epochs {
            options.train.epochs = epochs;
        }
        let mut reporter = ConsoleReporter::new();
        let report = demo::run(&self.out, &options, &mut reporter)?;
        reporter.finish();
        println!("\n{}", report.markdown());
        println!(
            "results: {}, chart: {}",
            self.out.join("results.md").display(),
            self.out.join("accuracy.svg").display()
        );
        // After the table: a failed comparison still shows every result.
        report.outcome()
    }
}

/// Write the embedded dataset (PNG, WAV, MP4, text, JSONL manifests).
#[derive(clap::Args)]
pub struct Generate {
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Samples per class in train / valid / test.
    #[arg(long, num_args = 3, value_names = ["TRAIN", "VALID", "TEST"], default_values_t = [80, 20, 30])]
    per_class: Vec<usize>,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

impl Generate {
    /// Writes the dataset and prints its manifests.
    pub fn run(self) -> Result<()> {
        let size = DatasetSize {
            train: self.per_class[0],
            valid: self.per_class[1],
            test: self.per_class[2],
        };
        let data = demo::synthetic::generate(&self.out, size, self.seed)?;
        println!(
            "wrote {}, {}, {}",
            data.train.display(),
            data.valid.display(),
            data.test.display()
        );
        Ok(())
    }
}
