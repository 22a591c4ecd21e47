//! One entry point for every model format: a model spec (.toml + safetensors) or an ONNX file,
//! behind the pixel-space [`Preprocess`] the user asked for.

use std::path::Path;

use candle_core::{DType, Device};

use crate::preprocess::{Preprocess, Preprocessed};
use crate::{Classifier, Result};

/// How to load a model: which graph input and output to use, and what lies between pixels and it.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// ONNX: the graph input that takes the image (default: the only non-initializer input).
    pub input_name: Option<String>,
    /// ONNX: the graph output that holds the class scores (default: the only output).
    pub output_name: Option<String>,
    /// ONNX: the model's own input shape without the batch axis, where the graph leaves it open.
    pub input_shape: Option<[usize; 3]>,
    /// ONNX: keep a final Softmax instead of reading the logits before it.
    pub keep_softmax: bool,
    /// ONNX: run the graph node by node through candle (the reference executor) instead of the
    /// compiled plan.
    pub node_by_node: bool,
    pub preprocess: Preprocess,
}

/// Loads the model at `path` (format from the extension).
pub fn load_classifier(path: &Path, dtype: DType, device: &Device, opts: &LoadOptions) -> Result<Box<dyn Classifier>> {
    let is_onnx = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    let inner: Box<dyn Classifier> = if is_onnx {
        Box::new(crate::onnx::OnnxModel::load(path, device, opts)?)
    } else {
        Box::new(crate::spec::load_model(path, dtype, device)?)
    };
    if opts.preprocess.is_identity() {
        return Ok(inner);
    }
    Ok(Box::new(Preprocessed::new(inner, opts.preprocess.clone())?))
}
