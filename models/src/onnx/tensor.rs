//! ONNX `TensorProto` ↔ candle tensors. Floats stay float (f32) or double (f64); every integer
//! type becomes i64 and `bool`/`uint8` become u8, which is what the operators compute with.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::proto::{data_type as dt, TensorProto};

/// Why a tensor could not be decoded; the caller adds the file or node.
#[derive(Debug)]
pub enum DecodeError {
    /// A data type the executor does not compute with (string, float16, complex, …).
    Unsupported(String),
    Invalid(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Unsupported(m) | DecodeError::Invalid(m) => f.write_str(m),
        }
    }
}

impl From<candle_core::Error> for DecodeError {
    fn from(e: candle_core::Error) -> Self {
        DecodeError::Invalid(e.to_string())
    }
}

/// The candle dtype an ONNX element type computes in, or `None` when unsupported.
pub fn dtype_of(onnx: i32) -> Option<DType> {
    match onnx {
        dt::FLOAT => Some(DType::F32),
        dt::DOUBLE => Some(DType::F64),
        dt::INT8 | dt::INT16 | dt::INT32 | dt::INT64 | dt::UINT16 | dt::UINT32 => Some(DType::I64),
        dt::BOOL | dt::UINT8 => Some(DType::U8),
        _ => None,
    }
}

fn le_chunks<const N: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    raw.chunks_exact(N).map(|c| c.try_into().expect("chunk size"))
}

/// Decodes a tensor; external data is read relative to `base` (the model's folder).
pub fn decode(t: &TensorProto, base: Option<&Path>, device: &Device) -> Result<Tensor, DecodeError> {
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| DecodeError::Invalid(format!("negative dimension {d}"))))
        .collect::<Result<_, _>>()?;
    let n: usize = shape.iter().product();
    let external;
    let raw: &[u8] = if t.data_location == 1 {
        external = read_external(t, base)?;
        &external
    } else {
        &t.raw_data
    };
    let has_raw = !raw.is_empty() || t.data_location == 1;
    let bad_len =
        |got: usize| DecodeError::Invalid(format!("tensor `{}` has {got} values for shape {shape:?}", t.name));
    let tensor = match t.data_type {
        dt::FLOAT => {
            let v: Vec<f32> =
                if has_raw { le_chunks::<4>(raw).map(f32::from_le_bytes).collect() } else { t.float_data.clone() };
            (v.len() == n).then_some(()).ok_or_else(|| bad_len(v.len()))?;
            Tensor::from_vec(v, shape.as_slice(), device)?
        }
        dt::DOUBLE => {
            let v: Vec<f64> =
                if has_raw { le_chunks::<8>(raw).map(f64::from_le_bytes).collect() } else { t.double_data.clone() };
            (v.len() == n).then_some(()).ok_or_else(|| bad_len(v.len()))?;
            Tensor::from_vec(v, shape.as_slice(), device)?
        }
        dt::INT64 | dt::INT32 | dt::INT16 | dt::INT8 | dt::UINT16 | dt::UINT32 => {
            let v: Vec<i64> = if has_raw {
                match t.data_type {
                    dt::INT64 => le_chunks::<8>(raw).map(i64::from_le_bytes).collect(),
                    dt::INT32 => le_chunks::<4>(raw).map(|b| i32::from_le_bytes(b) as i64).collect(),
                    dt::UINT32 => le_chunks::<4>(raw).map(|b| u32::from_le_bytes(b) as i64).collect(),
                    dt::INT16 => le_chunks::<2>(raw).map(|b| i16::from_le_bytes(b) as i64).collect(),
                    dt::UINT16 => le_chunks::<2>(raw).map(|b| u16::from_le_bytes(b) as i64).collect(),
                    _ => raw.iter().map(|&b| b as i8 as i64).collect(),
                }
            } else if t.data_type == dt::INT64 {
                t.int64_data.clone()
            } else if t.data_type == dt::UINT32 {
                t.uint64_data.iter().map(|&v| v as i64).collect()
            } else {
                t.int32_data.iter().map(|&v| v as i64).collect()
            };
            (v.len() == n).then_some(()).ok_or_else(|| bad_len(v.len()))?;
            Tensor::from_vec(v, shape.as_slice(), device)?
        }
        dt::BOOL | dt::UINT8 => {
            let v: Vec<u8> = if has_raw {
                raw.iter().map(|&b| if t.data_type == dt::BOOL { (b != 0) as u8 } else { b }).collect()
            } else {
                t.int32_data.iter().map(|&v| v as u8).collect()
            };
            (v.len() == n).then_some(()).ok_or_else(|| bad_len(v.len()))?;
            Tensor::from_vec(v, shape.as_slice(), device)?
        }
        other => {
            return Err(DecodeError::Unsupported(format!(
                "tensor `{}` has data type {}, which the executor does not compute with",
                t.name,
                dt::name(other)
            )))
        }
    };
    Ok(tensor)
}

fn read_external(t: &TensorProto, base: Option<&Path>) -> Result<Vec<u8>, DecodeError> {
    let get = |k: &str| t.external_data.iter().find(|e| e.key == k).map(|e| e.value.as_str());
    let Some(location) = get("location") else {
        return Err(DecodeError::Invalid(format!("tensor `{}` is stored externally but names no location", t.name)));
    };
    let base = base.unwrap_or(Path::new("."));
    let path = base.join(location);
    let bytes = std::fs::read(&path).map_err(|e| {
        DecodeError::Invalid(format!(
            "tensor `{}`: cannot read its external data file {}: {e}; keep it beside the .onnx file",
            t.name,
            path.display()
        ))
    })?;
    let offset: usize = get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let length: usize = get("length").and_then(|v| v.parse().ok()).unwrap_or(bytes.len().saturating_sub(offset));
    bytes.get(offset..offset + length).map(|b| b.to_vec()).ok_or_else(|| {
        DecodeError::Invalid(format!(
            "tensor `{}`: external data {} is shorter than offset {offset} + length {length}",
            t.name,
            path.display()
        ))
    })
}

/// Reads a `.pb` file holding one `TensorProto` (the ONNX test-data format).
pub fn read_pb(path: &Path, device: &Device) -> Result<Tensor, DecodeError> {
    let bytes = std::fs::read(path).map_err(|e| DecodeError::Invalid(format!("{}: {e}", path.display())))?;
    let t = TensorProto::decode_bytes(&bytes)
        .map_err(|e| DecodeError::Invalid(format!("{}: not a TensorProto: {e}", path.display())))?;
    decode(&t, path.parent(), device)
}
