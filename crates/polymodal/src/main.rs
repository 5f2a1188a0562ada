//! The `polymodal` command line: one module per command under `cli/`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_wayland_probe();
    // Training and inference on the CPU reuse freed tensor buffers.
    polymodal::core::cpu::tune_allocator();
    match cli::Cli::parse().run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Keeps the driver stack quiet on servers. When wgpu finds no hardware
/// Vulkan adapter (CI's lavapipe is a CPU one) it goes on to probe OpenGL
/// through EGL, whose Wayland client prints "XDG_RUNTIME_DIR is invalid or
/// not set" on every probe when neither that variable nor `WAYLAND_DISPLAY`
/// is set, as on servers and in CI. Without either there is no Wayland
/// session to find, so `WAYLAND_DISPLAY` is pointed at a path that cannot
/// exist: libwayland takes an absolute path as the socket itself, fails to
/// connect without a word, and wgpu goes on as before.
fn quiet_wayland_probe() {
    let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR")
        .is_some_and(|dir| std::path::Path::new(&dir).is_absolute());
    let wayland_display = std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty());
    if runtime_dir || wayland_display {
        return;
    }
    // SAFETY: the first statement of `main`, before any other thread
    // exists that could read the environment concurrently.
    unsafe { std::env::set_var("WAYLAND_DISPLAY", "/dev/null/no-wayland-session") };
}
