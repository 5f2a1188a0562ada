//! The wgpu compute backend for polymodal: adapter discovery and fallible
//! device creation (Vulkan, Metal, DX12 or GL through wgpu, WGSL shaders),
//! and the project's own kernels.
//!
//! Burn's `Device::wgpu` is lazy and panics on first use when no adapter
//! exists; [`wgpu_device`] asks for the adapter up front and returns an error
//! instead, and hands out the same device on later calls.
//!
//! ```no_run
//! use burn::prelude::*;
//!
//! let device = polymodal_wgpu::wgpu_device(DeviceKind::DefaultDevice)?;
//! let x = Tensor::<2>::ones([2, 2], &device);
//! println!("{}", x.matmul(Tensor::ones([2, 2], &device)));
//! # Ok::<(), polymodal_core::Error>(())
//! ```
//!
//! It also holds what every polymodal kernel shares ([`extension`]); the
//! kernels live beside their users, each behind its crate's `wgpu` feature:
//! `polymodal_audio::kernel::LogMel`, `polymodal_image::kernel::FramePreprocess`
//! and `polymodal_fusion::kernel::gated_unit` (docs/kernels.md).

pub mod extension;

use std::sync::Mutex;

use burn::prelude::*;
use burn::tensor::DeviceType;

use polymodal_core::{Error, Result};

/// A wgpu device of `kind` (`DefaultDevice`, `DiscreteGpu(n)`, `Cpu`, ...),
/// or an error naming why none could be had.
pub fn wgpu_device(kind: DeviceKind) -> Result<Device> {
    static DEVICES: Mutex<Vec<(String, Result<Device, String>)>> = Mutex::new(Vec::new());
    let key = format!("{kind:?}");
    let mut devices = DEVICES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, device)) = devices.iter().find(|(k, _)| *k == key) {
        return device.clone().map_err(Error::Device);
    }
    // Burn's runtime may panic inside the driver stack; treat that as "no adapter".
    let attempt = std::panic::catch_unwind(|| Device::wgpu_options().device_kind(kind).init())
        .map_err(|_| "the wgpu runtime panicked while opening the adapter".to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|e| format!("no wgpu adapter for {key}: {e}"));
    devices.push((key, attempt.clone()));
    attempt.map_err(Error::Device)
}

/// The names of the wgpu adapters this machine offers, in `wgpu:N` order
/// (empty when there is none).
pub fn adapter_names() -> Vec<String> {
    std::panic::catch_unwind(|| Device::enumerate(DeviceType::Wgpu).into_vec())
        .unwrap_or_default()
        .iter()
        .map(|d| {
            d.identity()
                .map_or_else(|| format!("{d:?}"), |identity| identity.name)
        })
        .collect()
}

/// Whether the `index`-th adapter of [`adapter_names`] computes in f16
/// (WebGPU's `shader-f16`); `false` when there is no such adapter.
pub fn adapter_supports_f16(index: usize) -> bool {
    std::panic::catch_unwind(|| {
        Device::enumerate(DeviceType::Wgpu)
            .into_vec()
            .get(index)
            .is_some_and(|d| d.supports_dtype(burn::tensor::DType::F16))
    })
    .unwrap_or(false)
}

/// The `index`-th adapter of [`adapter_names`].
pub fn wgpu_adapter(index: usize) -> Result<Device> {
    let devices = std::panic::catch_unwind(|| Device::enumerate(DeviceType::Wgpu).into_vec())
        .unwrap_or_default();
    let count = devices.len();
    devices.into_iter().nth(index).ok_or_else(|| {
        Error::Device(format!(
            "wgpu:{index} does not exist ({count} wgpu adapters found)"
        ))
    })
}

/// The default wgpu device for a test suite: `None` (with a message) when
/// the machine has no adapter, a panic when `CI=true`, where an adapter
/// (Mesa's lavapipe) must exist.
pub fn wgpu_for_tests() -> Option<Device> {
    match wgpu_device(DeviceKind::DefaultDevice) {
        Ok(device) => Some(device),
        Err(e) => {
            polymodal_core::testing::skip(format!(
                "{e} (install mesa-vulkan-drivers for Mesa's lavapipe)"
            ));
            None
        }
    }
}
