//! Device names on the command line (`cpu`, `wgpu`, `wgpu:N`) and the
//! precision models compute in (`f32`, `f16`).

use burn::prelude::*;
use burn::tensor::FloatDType;

use polymodal_core::{Error, Result};

/// The environment variable that picks the device when `--device` is not given.
pub const DEVICE_ENV: &str = "POLYMODAL_DEVICE";

/// The environment variable that picks the precision when `--precision` is
/// not given.
pub const PRECISION_ENV: &str = "POLYMODAL_PRECISION";

/// The float type a device computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// 32-bit floats: every device, training and inference.
    #[default]
    F32,
    /// 16-bit floats (IEEE half): inference on devices that support them
    /// (wgpu adapters with `shader-f16`; `polymodal devices` says which).
    /// Weights are cast on load; preprocessing and the project's kernels
    /// still compute in f32.
    F16,
}

impl std::str::FromStr for Precision {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            _ => Err(Error::Config(format!(
                "unknown precision `{name}` (expected f32 or f16)"
            ))),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
        })
    }
}

impl Precision {
    /// The precision named by `flag`, else by `POLYMODAL_PRECISION` (when
    /// set and not empty), else f32.
    pub fn from_flag(flag: Option<&str>) -> Result<Self> {
        let from_env = std::env::var(PRECISION_ENV).ok().filter(|v| !v.is_empty());
        flag.or(from_env.as_deref())
            .map_or(Ok(Self::F32), str::parse)
    }

    fn dtype(self) -> FloatDType {
        match self {
            Self::F32 => FloatDType::F32,
            Self::F16 => FloatDType::F16,
        }
    }

    /// Makes `device` create its float tensors (model weights included) in
    /// this precision. Must come before the first tensor on the device: the
    /// setting is per device and process, and fixed once a tensor exists.
    /// An error when the device cannot compute in it or was already used
    /// with another precision.
    pub fn configure(self, device: &mut Device) -> Result<()> {
        let dtype = self.dtype();
        if device.settings().float_dtype == dtype {
            return Ok(());
        }
        if !device.supports_dtype(dtype) {
            return Err(Error::Device(format!(
                "{device:?} cannot compute in {self} (see `polymodal devices`); use f32"
            )));
        }
        match device.configure(dtype) {
            Ok(()) => Ok(()),
            // Another thread configured it the same way first.
            Err(_) if device.settings().float_dtype == dtype => Ok(()),
            Err(e) => Err(Error::Device(format!(
                "cannot switch {device:?} to {self}: {e} (the precision is set before a device's first tensor)"
            ))),
        }
    }
}

/// Parses `cpu` (Burn's Flex backend), `wgpu` (the default adapter) or
/// `wgpu:N` (the N-th adapter of `polymodal devices`). Built without the
/// `wgpu` feature, a wgpu name is an error saying so.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::flex()),
        "wgpu" => wgpu_device(name, None),
        _ => match name.strip_prefix("wgpu:").map(str::parse::<usize>) {
            Some(Ok(index)) => wgpu_device(name, Some(index)),
            _ => Err(Error::Device(format!(
                "unknown device `{name}` (expected cpu, wgpu or wgpu:N)"
            ))),
        },
    }
}

/// The default adapter (`index` `None`) or the `index`-th one.
#[cfg(feature = "wgpu")]
fn wgpu_device(_name: &str, index: Option<usize>) -> Result<Device> {
    match index {
        None => polymodal_wgpu::wgpu_device(DeviceKind::DefaultDevice),
        Some(index) => polymodal_wgpu::wgpu_adapter(index),
    }
}

/// Without the `wgpu` feature: the error naming the device.
#[cfg(not(feature = "wgpu"))]
fn wgpu_device(name: &str, _index: Option<usize>) -> Result<Device> {
    Err(Error::Device(format!(
        "`{name}` asked for, but {NO_WGPU}; use cpu"
    )))
}

/// What a build without the `wgpu` feature says of wgpu devices.
pub const NO_WGPU: &str = "this build of polymodal has no wgpu support: it was built \
                           without the `wgpu` feature (on by default)";

/// The device named by `flag`, else by `POLYMODAL_DEVICE`, else the CPU.
pub fn device_from(flag: Option<&str>) -> Result<Device> {
    let from_env = std::env::var(DEVICE_ENV).ok();
    parse_device(flag.or(from_env.as_deref()).unwrap_or("cpu"))
}

/// [`device_from`], configured for `precision`.
pub fn device_with_precision(flag: Option<&str>, precision: Precision) -> Result<Device> {
    let mut device = device_from(flag)?;
    precision.configure(&mut device)?;
    Ok(device)
}

/// Every device models can run on, one per line: `cpu`, then each wgpu
/// adapter as `wgpu:N`, its name and the precisions it supports, separated
/// by tabs (what `polymodal devices` prints and scripts read).
pub fn device_listing() -> String {
    let mut listing = String::from("cpu\tBurn Flex (CPU)\n");
    #[cfg(feature = "wgpu")]
    {
        let names = polymodal_wgpu::adapter_names();
        if names.is_empty() {
            listing.push_str("(no wgpu adapter found)\n");
        }
        for (i, name) in names.iter().enumerate() {
            // Whether `--precision f16` works there.
            let precisions = if polymodal_wgpu::adapter_supports_f16(i) {
                "f32, f16"
            } else {
                "f32"
            };
            listing.push_str(&format!("wgpu:{i}\t{name}\t{precisions}\n"));
        }
    }
    #[cfg(not(feature = "wgpu"))]
    listing.push_str("(wgpu is not built in: polymodal was built without its `wgpu` feature)\n");
    listing
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
        // Without wgpu support every wgpu name says so.
        #[cfg(not(feature = "wgpu"))]
        for name in ["wgpu", "wgpu:0"] {
            let message = parse_device(name).unwrap_err().to_string();
            assert!(message.contains("no wgpu support"), "{message}");
        }
        assert_eq!("f16".parse::<Precision>().unwrap(), Precision::F16);
        for bad in ["F16", "half", "bf16", ""] {
            assert!(
                matches!(bad.parse::<Precision>(), Err(Error::Config(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_device_in_use_keeps_its_precision() {
        let mut device = Device::flex();
        // The first tensor fixes the CPU device at f32 for this process.
        let _ = Tensor::<1>::zeros([1], &device);
        let err = Precision::F16
            .configure(&mut device)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot switch") && err.contains("to f16"),
            "{err}"
        );
    }
}
