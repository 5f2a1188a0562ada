//! Device names on the command line: `cpu`, `wgpu`, `wgpu:N`.

use burn::prelude::*;

use polymodal_core::{Error, Result};

/// The environment variable that picks the device when `--device` is not given.
pub const DEVICE_ENV: &str = "POLYMODAL_DEVICE";

/// Parses `cpu` (Burn's Flex backend), `wgpu` (the default adapter) or
/// `wgpu:N` (the N-th adapter of `polymodal devices`).
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::flex()),
        "wgpu" => polymodal_wgpu::wgpu_device(DeviceKind::DefaultDevice),
        _ => match name.strip_prefix("wgpu:").map(str::parse::<usize>) {
            Some(Ok(index)) => polymodal_wgpu::wgpu_adapter(index),
            _ => Err(Error::Device(format!(
                "unknown device `{name}` (expected cpu, wgpu or wgpu:N)"
            ))),
        },
    }
}

/// The device named by `flag`, else by `POLYMODAL_DEVICE`, else the CPU.
pub fn device_from(flag: Option<&str>) -> Result<Device> {
    let from_env = std::env::var(DEVICE_ENV).ok();
    parse_device(flag.or(from_env.as_deref()).unwrap_or("cpu"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(parse_device("cpu").is_ok());
        for bad in ["gpu", "wgpu:x", "wgpu:99999"] {
            assert!(matches!(parse_device(bad), Err(Error::Device(_))), "{bad}");
        }
    }
}
