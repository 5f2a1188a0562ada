//! `polymodal devices`: where models can run.

use polymodal::Result;

/// Prints the CPU and every wgpu adapter, with the precisions each supports.
pub fn run() -> Result<()> {
    let names = polymodal::wgpu::adapter_names();
    println!("cpu\tBurn Flex (CPU)");
    if names.is_empty() {
        println!("(no wgpu adapter found)");
    }
    for (i, name) in names.iter().enumerate() {
        // Whether `--precision f16` works there.
        let f16 = if polymodal::wgpu::adapter_supports_f16(i) {
            "f32, f16"
        } else {
            "f32"
        };
        println!("wgpu:{i}\t{name}\t{f16}");
    }
    Ok(())
}
