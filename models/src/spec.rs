//! The TOML model spec: a safetensors weights file plus an ordered list of layers.
//!
//! ```toml
//! weights = "lenet.safetensors"   # relative to the spec file
//! input = [1, 28, 28]
//! classes = 10
//! mean = [0.1307]                 # optional, per channel; normalization happens inside the model
//! std = [0.3081]
//! layers = [
//!   { op = "conv2d", weight = "conv1", padding = 1 }, { op = "relu" }, { op = "maxpool2d", kernel = 2 },
//!   { op = "flatten" }, { op = "linear", weight = "fc" },
//! ]
//! ```
//!
//! Weight names follow PyTorch's `state_dict`: layer `weight = "conv1"` reads `conv1.weight` and, if
//! present, `conv1.bias`; batch norm reads `weight`, `bias`, `running_mean`, `running_var`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::ops::Window;
use crate::{Bounds, Layer, ModelError, Result, Sequential};

fn one() -> usize {
    1
}
fn bn_eps() -> f64 {
    1e-5
}
fn default_slope() -> f64 {
    0.01
}
fn is_one(v: &usize) -> bool {
    *v == 1
}
fn is_zero(v: &usize) -> bool {
    *v == 0
}

/// A model spec as written in the TOML file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Safetensors file with the weights, relative to the spec file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    /// Input shape (C, H, W).
    pub input: [usize; 3],
    pub classes: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f32>>,
    /// Pixel-space bounds of valid inputs, default [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<[f32; 2]>,
    pub layers: Vec<LayerSpec>,
}

/// One layer of a spec. `out` and `kernel` are needed only to initialise a model for training;
/// when weights are loaded, shapes come from the weights (and are checked against these if given).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    Conv2d {
        weight: String,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        stride: usize,
        #[serde(default, skip_serializing_if = "is_zero")]
        padding: usize,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        dilation: usize,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        groups: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        out: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kernel: Option<usize>,
    },
    Linear {
        weight: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        out: Option<usize>,
    },
    Batchnorm2d {
        weight: String,
        #[serde(default = "bn_eps")]
        eps: f64,
    },
    Relu,
    LeakyRelu {
        #[serde(default = "default_slope")]
        slope: f64,
    },
    Tanh,
    Sigmoid,
    Maxpool2d {
        kernel: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<usize>,
        #[serde(default, skip_serializing_if = "is_zero")]
        padding: usize,
    },
    Avgpool2d {
        kernel: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<usize>,
        #[serde(default, skip_serializing_if = "is_zero")]
        padding: usize,
    },
    Flatten,
    Dropout {
        #[serde(default)]
        p: f64,
    },
}

impl LayerSpec {
    pub fn op_name(&self) -> &'static str {
        match self {
            LayerSpec::Conv2d { .. } => "conv2d",
            LayerSpec::Linear { .. } => "linear",
            LayerSpec::Batchnorm2d { .. } => "batchnorm2d",
            LayerSpec::Relu => "relu",
            LayerSpec::LeakyRelu { .. } => "leaky_relu",
            LayerSpec::Tanh => "tanh",
            LayerSpec::Sigmoid => "sigmoid",
            LayerSpec::Maxpool2d { .. } => "maxpool2d",
            LayerSpec::Avgpool2d { .. } => "avgpool2d",
            LayerSpec::Flatten => "flatten",
            LayerSpec::Dropout { .. } => "dropout",
        }
    }
}

impl ModelSpec {
    /// Reads and parses a spec file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ModelError::Io { path: path.into(), message: format!("cannot read the model spec: {e}") })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let spec: ModelSpec = toml::from_str(text).map_err(|e| ModelError::Spec {
            path: path.into(),
            message: format!("invalid model spec: {}", e.to_string().trim().replace('\n', " ")),
        })?;
        spec.check(path)?;
        Ok(spec)
    }

    fn check(&self, path: &Path) -> Result<()> {
        let bad = |message: String| Err(ModelError::Spec { path: path.into(), message });
        if self.input.contains(&0) {
            return bad(format!("input shape {:?} has a zero dimension", self.input));
        }
        if self.classes < 2 {
            return bad(format!("classes = {} but a classifier needs at least 2", self.classes));
        }
        if self.layers.is_empty() {
            return bad("the spec has no layers".into());
        }
        for (name, v) in [("mean", &self.mean), ("std", &self.std)] {
            if let Some(v) = v {
                if v.len() != self.input[0] && v.len() != 1 {
                    return bad(format!("{name} has {} values for {} input channels", v.len(), self.input[0]));
                }
                if v.iter().any(|x| !x.is_finite()) {
                    return bad(format!("{name} has a non-finite value"));
                }
            }
        }
        if self.std.as_ref().is_some_and(|s| s.iter().any(|&x| x <= 0.0)) {
            return bad("std values must be positive".into());
        }
        if let Some([lo, hi]) = self.bounds {
            if lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) {
                return bad(format!("bounds [{lo}, {hi}] are empty"));
            }
        }
        for (i, l) in self.layers.iter().enumerate() {
            let zero = match l {
                LayerSpec::Conv2d { stride, dilation, groups, .. } => *stride == 0 || *dilation == 0 || *groups == 0,
                LayerSpec::Maxpool2d { kernel, stride, .. } | LayerSpec::Avgpool2d { kernel, stride, .. } => {
                    *kernel == 0 || *stride == Some(0)
                }
                _ => false,
            };
            if zero {
                return bad(format!("layer {i} `{}`: kernel, stride, dilation and groups must be ≥ 1", l.op_name()));
            }
        }
        Ok(())
    }

    fn bounds(&self) -> Bounds {
        self.bounds.map(|[lo, hi]| Bounds { lo, hi }).unwrap_or_default()
    }

    fn normalize(&self, dtype: DType, device: &Device) -> Result<Option<(Tensor, Tensor)>> {
        if self.mean.is_none() && self.std.is_none() {
            return Ok(None);
        }
        let c = self.input[0];
        let expand = |v: &Option<Vec<f32>>, default: f32| -> Vec<f32> {
            match v {
                Some(v) if v.len() == 1 => vec![v[0]; c],
                Some(v) => v.clone(),
                None => vec![default; c],
            }
        };
        let mean = Tensor::from_vec(expand(&self.mean, 0.0), (1, c, 1, 1), device)?.to_dtype(dtype)?;
        let std = Tensor::from_vec(expand(&self.std, 1.0), (1, c, 1, 1), device)?.to_dtype(dtype)?;
        Ok(Some((mean, std)))
    }

    /// Builds the model from named tensors (PyTorch `state_dict` names), converted to `dtype` on `device`.
    pub fn build(
        &self,
        weights: &HashMap<String, Tensor>,
        source: &Path,
        dtype: DType,
        device: &Device,
    ) -> Result<Sequential> {
        let get = |layer: usize, op: &str, name: String| -> Result<Tensor> {
            match weights.get(&name) {
                Some(t) => Ok(t.to_dtype(dtype)?.to_device(device)?),
                None => {
                    let mut names: Vec<&str> = weights.keys().map(String::as_str).collect();
                    names.sort_unstable();
                    Err(ModelError::MissingTensor {
                        path: source.into(),
                        name,
                        layer,
                        op: op.into(),
                        available: names.join(", "),
                    })
                }
            }
        };
        let opt = |name: String| -> Result<Option<Tensor>> {
            weights.get(&name).map(|t| Ok(t.to_dtype(dtype)?.to_device(device)?)).transpose()
        };
        let layer_err = |i: usize, op: &str, message: String| ModelError::Layer { layer: i, op: op.into(), message };
        let mut layers = Vec::with_capacity(self.layers.len());
        for (i, spec) in self.layers.iter().enumerate() {
            let op = spec.op_name();
            let layer = match spec {
                LayerSpec::Conv2d { weight, stride, padding, dilation, groups, out, kernel } => {
                    let w = get(i, op, format!("{weight}.weight"))?;
                    let dims = w.dims().to_vec();
                    if dims.len() != 4 {
                        return Err(layer_err(
                            i,
                            op,
                            format!(
                                "`{weight}.weight` has shape {dims:?}, expected 4 dimensions (out, in/groups, kh, kw)"
                            ),
                        ));
                    }
                    if out.is_some_and(|o| o != dims[0]) || kernel.is_some_and(|k| k != dims[2] || k != dims[3]) {
                        return Err(layer_err(
                            i,
                            op,
                            format!("`{weight}.weight` has shape {dims:?}, which contradicts out/kernel in the spec"),
                        ));
                    }
                    if dims[2] != dims[3] {
                        return Err(layer_err(i, op, format!("`{weight}.weight` has a non-square kernel {}×{}; only square kernels are supported here", dims[2], dims[3])));
                    }
                    let bias = opt(format!("{weight}.bias"))?;
                    if bias.as_ref().is_some_and(|b| b.dims() != [dims[0]]) {
                        return Err(layer_err(i, op, format!("`{weight}.bias` does not have shape [{}]", dims[0])));
                    }
                    Layer::Conv2d {
                        weight: w,
                        bias,
                        stride: *stride,
                        padding: *padding,
                        dilation: *dilation,
                        groups: *groups,
                    }
                }
                LayerSpec::Linear { weight, out } => {
                    let w = get(i, op, format!("{weight}.weight"))?;
                    let dims = w.dims().to_vec();
                    if dims.len() != 2 || out.is_some_and(|o| o != dims[0]) {
                        return Err(layer_err(
                            i,
                            op,
                            format!("`{weight}.weight` has shape {dims:?}, expected (out, in)"),
                        ));
                    }
                    let bias = opt(format!("{weight}.bias"))?;
                    if bias.as_ref().is_some_and(|b| b.dims() != [dims[0]]) {
                        return Err(layer_err(i, op, format!("`{weight}.bias` does not have shape [{}]", dims[0])));
                    }
                    Layer::Linear { weight: w, bias }
                }
                LayerSpec::Batchnorm2d { weight, eps } => {
                    let mean = get(i, op, format!("{weight}.running_mean"))?;
                    let var = get(i, op, format!("{weight}.running_var"))?;
                    let c = mean.elem_count();
                    let gamma = opt(format!("{weight}.weight"))?.unwrap_or(Tensor::ones(c, dtype, device)?);
                    let beta = opt(format!("{weight}.bias"))?.unwrap_or(Tensor::zeros(c, dtype, device)?);
                    if [&var, &gamma, &beta].iter().any(|t| t.elem_count() != c) {
                        return Err(layer_err(
                            i,
                            op,
                            format!("the tensors of `{weight}` disagree on the channel count"),
                        ));
                    }
                    let scale = (gamma / (var + *eps)?.sqrt()?)?;
                    let shift = (beta - (&mean * &scale)?)?;
                    Layer::BatchNorm2d { scale: scale.reshape((1, c, 1, 1))?, shift: shift.reshape((1, c, 1, 1))? }
                }
                LayerSpec::Relu => Layer::Relu,
                LayerSpec::LeakyRelu { slope } => Layer::LeakyRelu(*slope),
                LayerSpec::Tanh => Layer::Tanh,
                LayerSpec::Sigmoid => Layer::Sigmoid,
                LayerSpec::Maxpool2d { kernel, stride, padding } => {
                    Layer::MaxPool2d(Window::square(*kernel, stride.unwrap_or(*kernel), *padding))
                }
                LayerSpec::Avgpool2d { kernel, stride, padding } => {
                    Layer::AvgPool2d(Window::square(*kernel, stride.unwrap_or(*kernel), *padding))
                }
                LayerSpec::Flatten => Layer::Flatten,
                LayerSpec::Dropout { .. } => Layer::Dropout,
            };
            layers.push(layer);
        }
        Sequential::new(self.normalize(dtype, device)?, layers, self.input, self.classes, self.bounds(), device)
    }

    /// Fresh weights for training, PyTorch's default initialisation (uniform ±1/√fan_in), seeded.
    /// Needs `out` (and `kernel` for conv) on every conv2d/linear layer.
    pub fn init_weights(&self, seed: u64) -> Result<HashMap<String, Tensor>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut weights = HashMap::new();
        let mut shape: Vec<usize> = self.input.to_vec();
        let mut uniform = |n: usize, bound: f32, dims: &[usize]| -> Result<Tensor> {
            let v: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
            Ok(Tensor::from_vec(v, dims, &Device::Cpu)?)
        };
        for (i, spec) in self.layers.iter().enumerate() {
            let op = spec.op_name();
            let need = |what: &str| ModelError::Layer {
                layer: i,
                op: op.into(),
                message: format!("needs `{what}` to initialise weights for training"),
            };
            match spec {
                LayerSpec::Conv2d { weight, stride, padding, dilation, groups, out, kernel } => {
                    let (o, k) = (out.ok_or_else(|| need("out"))?, kernel.ok_or_else(|| need("kernel"))?);
                    if shape.len() != 3 || !shape[0].is_multiple_of(*groups) || o % groups != 0 {
                        return Err(ModelError::Layer {
                            layer: i,
                            op: op.into(),
                            message: format!("cannot follow an output of shape {shape:?}"),
                        });
                    }
                    let cin = shape[0] / groups;
                    let bound = 1.0 / ((cin * k * k) as f32).sqrt();
                    weights.insert(format!("{weight}.weight"), uniform(o * cin * k * k, bound, &[o, cin, k, k])?);
                    weights.insert(format!("{weight}.bias"), uniform(o, bound, &[o])?);
                    let span = dilation * (k - 1) + 1;
                    let size = |n: usize| (n + 2 * padding).checked_sub(span).map(|v| v / stride + 1);
                    let (h, w) = size(shape[1]).zip(size(shape[2])).ok_or_else(|| ModelError::Layer {
                        layer: i,
                        op: op.into(),
                        message: "kernel larger than its input".into(),
                    })?;
                    shape = vec![o, h, w];
                }
                LayerSpec::Linear { weight, out } => {
                    let o = out.ok_or_else(|| need("out"))?;
                    let fan_in: usize = shape.iter().product();
                    let bound = 1.0 / (fan_in as f32).sqrt();
                    weights.insert(format!("{weight}.weight"), uniform(o * fan_in, bound, &[o, fan_in])?);
                    weights.insert(format!("{weight}.bias"), uniform(o, bound, &[o])?);
                    shape = vec![o];
                }
                LayerSpec::Maxpool2d { kernel, stride, padding } | LayerSpec::Avgpool2d { kernel, stride, padding } => {
                    let w = Window::square(*kernel, stride.unwrap_or(*kernel), *padding);
                    let (h, wd) =
                        (shape.len() == 3).then(|| w.output(shape[1], shape[2])).flatten().ok_or_else(|| {
                            ModelError::Layer {
                                layer: i,
                                op: op.into(),
                                message: format!("cannot pool an output of shape {shape:?}"),
                            }
                        })?;
                    shape = vec![shape[0], h, wd];
                }
                LayerSpec::Flatten => shape = vec![shape.iter().product()],
                LayerSpec::Batchnorm2d { .. } => {
                    return Err(ModelError::Layer {
                        layer: i,
                        op: op.into(),
                        message:
                            "batch norm cannot be trained by `gauntlet train`; train in PyTorch and load the weights"
                                .into(),
                    })
                }
                _ => {}
            }
        }
        Ok(weights)
    }
}

/// Reads a safetensors file into named CPU tensors.
pub fn read_weights(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path)
        .map_err(|e| ModelError::Io { path: path.into(), message: format!("cannot read the weights file: {e}") })?;
    weights_from_bytes(&bytes, path)
}

/// Parses safetensors bytes into named CPU tensors.
pub fn weights_from_bytes(bytes: &[u8], path: &Path) -> Result<HashMap<String, Tensor>> {
    let map = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| ModelError::Io { path: path.into(), message: format!("not a valid safetensors file ({e})") })?;
    for (name, t) in &map {
        let finite = t
            .to_dtype(DType::F64)
            .and_then(|t| t.flatten_all()?.to_vec1::<f64>())
            .map(|v| v.iter().all(|x| x.is_finite()));
        if matches!(finite, Ok(false)) {
            return Err(ModelError::Io {
                path: path.into(),
                message: format!("tensor `{name}` holds NaN or infinite values"),
            });
        }
    }
    Ok(map)
}

/// Opens a model file: a TOML spec naming safetensors weights. Pickled checkpoints are refused.
/// The files [`load_model`] reads for `path`: the spec and the weights it names.
pub fn model_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) {
        return crate::onnx::files(path);
    }
    let spec = ModelSpec::read(path)?;
    let mut files = vec![path.to_path_buf()];
    if let Some(weights) = spec.weights.as_deref() {
        files.push(path.parent().unwrap_or(Path::new(".")).join(weights));
    }
    Ok(files)
}

pub fn load_model(path: &Path, dtype: DType, device: &Device) -> Result<Sequential> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "pt" | "pth" | "pkl" | "pickle" | "ckpt" | "bin" => {
            let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            return Err(ModelError::Pickle { path: path.into(), file });
        }
        "safetensors" => {
            return Err(ModelError::Spec {
                path: path.into(),
                message: "a safetensors file holds weights but no architecture; pass a model spec (.toml) whose `weights` names this file".into(),
            })
        }
        "onnx" => {
            return Err(ModelError::Spec { path: path.into(), message: "ONNX models are not supported by this version; use a model spec (.toml) with safetensors weights".into() })
        }
        "toml" => {}
        _ => return Err(ModelError::UnsupportedFormat { path: path.into() }),
    }
    if !path.is_file() {
        return Err(ModelError::Io { path: path.into(), message: "no such file".into() });
    }
    let spec = ModelSpec::read(path)?;
    let Some(weights) = spec.weights.as_deref() else {
        return Err(ModelError::Spec { path: path.into(), message: "the spec names no `weights` file".into() });
    };
    let weights_path: PathBuf = path.parent().unwrap_or(Path::new(".")).join(weights);
    let tensors = read_weights(&weights_path)?;
    spec.build(&tensors, &weights_path, dtype, device).map_err(|e| match e {
        e @ (ModelError::Io { .. } | ModelError::MissingTensor { .. }) => e,
        other => ModelError::Spec { path: path.into(), message: other.to_string() },
    })
}
