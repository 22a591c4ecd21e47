//! Device selection, resolved once: `cpu`, `cuda[:N]` (strict) or `auto` (falls back to CPU).

use candle_core::{Device, DeviceLocation};

use crate::{ModelError, Result};

/// Resolves a device name. Returns the device and, for `auto` falling back, a warning.
pub fn resolve(name: &str) -> Result<(Device, Option<String>)> {
    let name = name.trim().to_ascii_lowercase();
    match name.as_str() {
        "cpu" => Ok((Device::Cpu, None)),
        "auto" => match cuda(0) {
            Ok(d) => Ok((d, None)),
            Err(e) => Ok((Device::Cpu, Some(format!("no CUDA device ({e}); running on the CPU")))),
        },
        _ => {
            let ordinal = match name.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest.strip_prefix(':').and_then(|r| r.parse().ok()).ok_or_else(|| {
                    ModelError::Device(format!("`{name}` is not a device; use cpu, cuda, cuda:N or auto"))
                })?,
                None => {
                    return Err(ModelError::Device(format!("`{name}` is not a device; use cpu, cuda, cuda:N or auto")))
                }
            };
            cuda(ordinal).map(|d| (d, None))
        }
    }
}

fn cuda(ordinal: usize) -> Result<Device> {
    if !candle_core::utils::cuda_is_available() {
        return Err(ModelError::Device(
            "this build has no CUDA support; build it with scripts/build-cuda.sh (`--features cuda`) or use --device cpu".into(),
        ));
    }
    Device::new_cuda(ordinal).map_err(|e| ModelError::Device(format!("cuda:{ordinal}: {e}")))
}

/// The device as `--device` names it: `cpu`, `cuda:N` (or `metal:N`).
pub fn name(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cpu => "cpu".into(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}
