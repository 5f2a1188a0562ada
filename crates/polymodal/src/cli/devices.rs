//! `polymodal devices`: where models can run.

use polymodal::Result;

/// Prints the CPU and every wgpu adapter, with the precisions each supports.
#[cfg(feature = "wgpu")]
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

/// Built without the `wgpu` feature: the CPU, and that wgpu is not built in.
#[cfg(not(feature = "wgpu"))]
pub fn run() -> Result<()> {
    println!("cpu\tBurn Flex (CPU)");
    println!("(wgpu is not built in: polymodal was built without its `wgpu` feature)");
    Ok(())
}
