//! The GPU kit's one binary (`cargo xtask gpu-kit`): the kernel, encoder
//! and epoch benchmarks and the adapter listing in one executable, since
//! one stripped binary fits the 64 MiB a GPU machine receives and three do
//! not (each would carry its own copy of Burn, CubeCL and wgpu).
//!
//! Called through links named `kernels`, `encoders`, `epoch` or `devices`,
//! as busybox is (each benchmark reads its arguments as its own binary
//! does). Built without FFmpeg: the machines it travels to have none.

#[allow(dead_code)]
#[path = "encoders.rs"]
mod encoders;
#[allow(dead_code)]
#[path = "epoch.rs"]
mod epoch;
#[allow(dead_code)]
#[path = "kernels.rs"]
mod kernels;

use std::path::Path;

/// What each name runs.
const APPLETS: [(&str, fn()); 4] = [
    ("kernels", kernels::main),
    ("encoders", encoders::main),
    ("epoch", epoch::main),
    ("devices", devices),
];

fn main() {
    let called = std::env::args().next().unwrap_or_default();
    let name = Path::new(&called)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match APPLETS.iter().find(|(applet, _)| *applet == name) {
        Some((_, run)) => run(),
        None => {
            let names: Vec<&str> = APPLETS.iter().map(|(n, _)| *n).collect();
            eprintln!(
                "gpu: call this binary through a link named one of {names:?} \
                 (the GPU kit's script makes them)"
            );
            std::process::exit(2);
        }
    }
}

/// `polymodal devices`' listing (what the kit's script reads to choose the
/// adapter and whether to run f16).
fn devices() {
    print!("{}", polymodal::device::device_listing());
}
