//! The one error type of `gauntlet-models`.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a classifier.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },

    #[error("{path}: {message}")]
    Spec { path: PathBuf, message: String },

    #[error("{path}: pickled PyTorch checkpoints are refused (unpickling can run arbitrary code); convert it once with `python -c \"import torch; from safetensors.torch import save_file; save_file({{k: v.contiguous() for k, v in torch.load('{file}', map_location='cpu').items()}}, 'model.safetensors')\"` and point a model spec (.toml) at the result")]
    Pickle { path: PathBuf, file: String },

    #[error("{path}: unsupported model format; pass a model spec (.toml) that names a safetensors weights file")]
    UnsupportedFormat { path: PathBuf },

    #[error(
        "weights file {path}: tensor `{name}` is missing (needed by layer {layer} `{op}`); the file holds: {available}"
    )]
    MissingTensor { path: PathBuf, name: String, layer: usize, op: String, available: String },

    #[error("layer {layer} `{op}`: {message}")]
    Layer { layer: usize, op: String, message: String },

    #[error("{path}: {message}")]
    Onnx { path: PathBuf, message: String },

    #[error("{path}: {count} unsupported ONNX operator(s): {list}; supported operators are listed by `gauntlet inspect --operators` and docs/ONNX.md")]
    UnsupportedOps { path: PathBuf, count: usize, list: String },

    #[error("node `{node}` ({op}): {message}")]
    Node { node: String, op: String, message: String },

    /// A node whose attributes, inputs or data types ask for something the executor does not do.
    #[error("node `{node}` ({op}): not supported: {message}")]
    NodeUnsupported { node: String, op: String, message: String },

    #[error("the input gradient is missing: the model graph does not propagate gradients to its input")]
    GradientMissing,

    #[error("{0}")]
    Invalid(String),

    /// Certified bounds cannot be computed for the model.
    #[error("certified bounds: {0}")]
    Bounds(String),

    #[error("device: {0}")]
    Device(String),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
