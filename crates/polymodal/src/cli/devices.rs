//! `polymodal devices`: where models can run.

use polymodal::Result;

/// Prints the CPU and every wgpu adapter, with the precisions each supports
/// (or that wgpu is not built in).
pub fn run() -> Result<()> {
    print!("{}", polymodal::device::device_listing());
    Ok(())
}
