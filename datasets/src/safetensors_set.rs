//! A safetensors file with tensors `images` (N×C×H×W or N×H×W×C; uint8 or float in [0, 1]) and
//! `labels` (any integer type).

use std::path::Path;

use candle_core::{DType, Device};

use crate::npy::assemble;
use crate::{DataLayout, DatasetError, ImageSet, Result};

/// Opens a safetensors dataset; 4-D images are read as `layout` says.
pub fn open(path: &Path, layout: DataLayout) -> Result<ImageSet> {
    let bytes = std::fs::read(path).map_err(|e| DatasetError::Io { path: path.into(), message: e.to_string() })?;
    let fmt = |message: String| DatasetError::Format { path: path.into(), message };
    let map = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| fmt(format!("not a valid safetensors file ({e})")))?;
    let get = |name: &str| {
        map.get(name).ok_or_else(|| {
            let mut names: Vec<&str> = map.keys().map(String::as_str).collect();
            names.sort_unstable();
            fmt(format!("no `{name}` tensor (the file holds: {})", names.join(", ")))
        })
    };
    let images = get("images")?;
    let labels = get("labels")?;
    let conv = |e: candle_core::Error| fmt(e.to_string());
    let dims = images.dims().to_vec();
    let values: Vec<f32> = match images.dtype() {
        DType::U8 => images
            .flatten_all()
            .and_then(|t| t.to_vec1::<u8>())
            .map_err(conv)?
            .iter()
            .map(|&v| v as f32 / 255.0)
            .collect(),
        DType::F16 | DType::BF16 | DType::F32 | DType::F64 => {
            images.to_dtype(DType::F32).and_then(|t| t.flatten_all()?.to_vec1::<f32>()).map_err(conv)?
        }
        other => return Err(fmt(format!("`images` has dtype {other:?}; use uint8 or a float type"))),
    };
    if labels.rank() != 1 || labels.dtype().is_float() {
        return Err(fmt(format!(
            "`labels` must be a 1-D integer tensor, it is {:?} of shape {:?}",
            labels.dtype(),
            labels.dims()
        )));
    }
    let raw = labels.to_dtype(DType::I64).and_then(|t| t.to_vec1::<i64>()).map_err(conv)?;
    let labels = raw
        .iter()
        .map(|&l| u32::try_from(l).map_err(|_| fmt(format!("label {l} is not a class index"))))
        .collect::<Result<Vec<_>>>()?;
    assemble(path, (values, dims), labels, layout)
}
