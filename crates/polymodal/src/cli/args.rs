//! Arguments shared by several commands, flattened into each of them.

use std::path::PathBuf;

use burn::prelude::Device;

use polymodal::device::{PRECISION_ENV, Precision, device_from, device_with_precision};
use polymodal::{Error, Modality, Result};

/// `--device` for commands that train (`train`, `demo`): f32 only.
#[derive(clap::Args)]
pub struct TrainingDevice {
    /// cpu, wgpu or wgpu:N (default: $POLYMODAL_DEVICE or cpu).
    #[arg(long)]
    device: Option<String>,
}

impl TrainingDevice {
    /// The device, after checking that nothing asks for half precision:
    /// f16 training needs f32 master weights and loss scaling, which
    /// polymodal does not do.
    pub fn device(&self) -> Result<Device> {
        if Precision::from_flag(None)? == Precision::F16 {
            return Err(Error::Config(format!(
                "{PRECISION_ENV} = f16 is for inference (eval, predict, embed); training \
                 (train, demo) runs in f32"
            )));
        }
        device_from(self.device.as_deref())
    }
}

/// `--device` and `--precision` for commands that only run a model.
#[derive(clap::Args)]
pub struct InferenceDevice {
    /// cpu, wgpu or wgpu:N (default: $POLYMODAL_DEVICE or cpu).
    #[arg(long)]
    device: Option<String>,
    /// f32 or f16 (inference in half precision where the device supports
    /// it; default: $POLYMODAL_PRECISION or f32).
    #[arg(long)]
    precision: Option<String>,
}

impl InferenceDevice {
    /// The device, configured for the precision asked for.
    pub fn device(&self) -> Result<Device> {
        let precision = Precision::from_flag(self.precision.as_deref())?;
        device_with_precision(self.device.as_deref(), precision)
    }
}

/// One sample given as files, one per modality.
#[derive(clap::Args)]
pub struct SampleFiles {
    /// A text file.
    #[arg(long)]
    text: Option<PathBuf>,
    /// An image file.
    #[arg(long)]
    image: Option<PathBuf>,
    /// An audio file.
    #[arg(long)]
    audio: Option<PathBuf>,
    /// A video file.
    #[arg(long)]
    video: Option<PathBuf>,
}

impl SampleFiles {
    /// The files given, with their modality; at least one.
    pub fn list(self) -> Result<Vec<(Modality, PathBuf)>> {
        let files: Vec<(Modality, PathBuf)> = [
            (Modality::Text, self.text),
            (Modality::Image, self.image),
            (Modality::Audio, self.audio),
            (Modality::Video, self.video),
        ]
        .into_iter()
        .filter_map(|(m, p)| p.map(|p| (m, p)))
        .collect();
        if files.is_empty() {
            return Err(Error::Config(
                "give at least one of --text, --image, --audio, --video".into(),
            ));
        }
        Ok(files)
    }
}
