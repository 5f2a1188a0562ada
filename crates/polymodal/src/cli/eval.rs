//! `polymodal eval`, `polymodal predict`: a trained model folder on new data.

use std::path::PathBuf;

use polymodal::Result;

use super::args::{InferenceDevice, SampleFiles};

/// Accuracy of a trained model folder on a JSONL or CSV manifest.
#[derive(clap::Args)]
pub struct Eval {
    /// Model folder (model.bpk, model.json).
    #[arg(long)]
    model: PathBuf,
    /// JSONL or CSV manifest.
    #[arg(long)]
    manifest: PathBuf,
    #[command(flatten)]
    device: InferenceDevice,
}

impl Eval {
    /// Prints the accuracy.
    pub fn run(self) -> Result<()> {
        let device = self.device.device()?;
        let (accuracy, card) = polymodal::evaluate_dir(&self.model, &self.manifest, &device)?;
        println!(
            "accuracy {accuracy:.4} ({} classes, modalities {:?})",
            card.classes.len(),
            card.classifier.modalities
        );
        Ok(())
    }
}

/// Class probabilities of one sample given as files.
#[derive(clap::Args)]
pub struct Predict {
    /// Model folder.
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    files: SampleFiles,
    #[command(flatten)]
    device: InferenceDevice,
}

impl Predict {
    /// Prints one `class<TAB>probability` line per class.
    pub fn run(self) -> Result<()> {
        let device = self.device.device()?;
        let files = self.files.list()?;
        for (class, probability) in polymodal::predict_files(&self.model, &files, &device)? {
            println!("{class}\t{probability:.4}");
        }
        Ok(())
    }
}
