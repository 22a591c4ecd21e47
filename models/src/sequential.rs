//! A feed-forward stack of layers: the architecture behind safetensors models.

use candle_core::{DType, Device, Tensor};

use crate::conv::{self, ConvParams};
use crate::ops::{self, Window};
use crate::{cpu_ops, linear};
use crate::{Bounds, Classifier, ModelError, Result};

/// One layer with its weights already on the model's device.
#[derive(Debug, Clone)]
pub enum Layer {
    Conv2d {
        weight: Tensor,
        bias: Option<Tensor>,
        stride: usize,
        padding: usize,
        dilation: usize,
        groups: usize,
    },
    /// y = x·Wᵀ + b with W of shape (out, in).
    Linear {
        weight: Tensor,
        bias: Option<Tensor>,
    },
    /// Inference-mode batch norm folded into a per-channel affine map, shapes (1, C, 1, 1).
    BatchNorm2d {
        scale: Tensor,
        shift: Tensor,
    },
    Relu,
    LeakyRelu(f64),
    Tanh,
    Sigmoid,
    MaxPool2d(Window),
    AvgPool2d(Window),
    Flatten,
    /// Identity at inference.
    Dropout,
}

impl Layer {
    pub fn op_name(&self) -> &'static str {
        match self {
            Layer::Conv2d { .. } => "conv2d",
            Layer::Linear { .. } => "linear",
            Layer::BatchNorm2d { .. } => "batchnorm2d",
            Layer::Relu => "relu",
            Layer::LeakyRelu(_) => "leaky_relu",
            Layer::Tanh => "tanh",
            Layer::Sigmoid => "sigmoid",
            Layer::MaxPool2d(_) => "maxpool2d",
            Layer::AvgPool2d(_) => "avgpool2d",
            Layer::Flatten => "flatten",
            Layer::Dropout => "dropout",
        }
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Layer::Conv2d { weight, bias, stride, padding, dilation, groups } => {
                let params = ConvParams { stride: *stride, padding: *padding, dilation: *dilation, groups: *groups };
                let y = conv::conv2d(x, weight, params)?;
                match bias {
                    Some(b) => cpu_ops::add_channel_bias(&y, b),
                    None => Ok(y),
                }
            }
            Layer::Linear { weight, bias } => {
                let y = linear::linear(x, weight)?;
                match bias {
                    Some(b) => cpu_ops::add_channel_bias(&y, b),
                    None => Ok(y),
                }
            }
            Layer::BatchNorm2d { scale, shift } => x.broadcast_mul(scale)?.broadcast_add(shift),
            Layer::Relu => cpu_ops::relu(x),
            Layer::LeakyRelu(slope) => ops::leaky_relu(x, *slope),
            Layer::Tanh => x.tanh(),
            Layer::Sigmoid => ops::sigmoid(x),
            Layer::MaxPool2d(w) => cpu_ops::max_pool2d(x, *w),
            Layer::AvgPool2d(w) => ops::avg_pool2d(x, *w),
            Layer::Flatten => x.flatten_from(1),
            Layer::Dropout => Ok(x.clone()),
        }
    }
}

/// A sequential classifier: pixel-space input (N, C, H, W) → logits (N, K).
#[derive(Debug, Clone)]
pub struct Sequential {
    /// (x − mean) / std per channel, shapes (1, C, 1, 1), applied before the first layer.
    normalize: Option<(Tensor, Tensor)>,
    layers: Vec<Layer>,
    input: [usize; 3],
    classes: usize,
    bounds: Bounds,
    device: Device,
    dtype: DType,
    parameters: usize,
}

impl Sequential {
    /// Assembles a model and checks, with one dry forward pass, that its shapes line up.
    pub fn new(
        normalize: Option<(Tensor, Tensor)>,
        layers: Vec<Layer>,
        input: [usize; 3],
        classes: usize,
        bounds: Bounds,
        device: &Device,
    ) -> Result<Self> {
        let dtype = layers
            .iter()
            .find_map(|l| match l {
                Layer::Conv2d { weight, .. } | Layer::Linear { weight, .. } => Some(weight.dtype()),
                _ => None,
            })
            .unwrap_or(DType::F32);
        let parameters = layers
            .iter()
            .map(|l| match l {
                Layer::Conv2d { weight, bias, .. } | Layer::Linear { weight, bias } => {
                    weight.elem_count() + bias.as_ref().map_or(0, |b| b.elem_count())
                }
                Layer::BatchNorm2d { scale, .. } => 2 * scale.elem_count(),
                _ => 0,
            })
            .sum();
        let model = Sequential { normalize, layers, input, classes, bounds, device: device.clone(), dtype, parameters };
        let probe = Tensor::zeros((1, input[0], input[1], input[2]), dtype, device)?;
        let out = model.logits(&probe)?;
        if out.dims() != [1, classes] {
            return Err(ModelError::Invalid(format!(
                "the last layer produces shape {:?} per sample, but the spec declares {classes} classes",
                &out.dims()[1..]
            )));
        }
        Ok(model)
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of learned scalars (weights, biases, batch-norm affine terms).
    pub fn parameter_count(&self) -> usize {
        self.parameters
    }
}

impl Classifier for Sequential {
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = if x.dtype() == self.dtype { x.clone() } else { x.to_dtype(self.dtype)? };
        if let Some((mean, std)) = &self.normalize {
            h = h.broadcast_sub(mean)?.broadcast_div(std)?;
        }
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h).map_err(|e| ModelError::Layer {
                layer: i,
                op: layer.op_name().into(),
                message: format!("input shape {:?}: {e}", h.dims()),
            })?;
        }
        Ok(h)
    }

    fn input_shape(&self) -> [usize; 3] {
        self.input
    }

    fn num_classes(&self) -> usize {
        self.classes
    }

    fn bounds(&self) -> Bounds {
        self.bounds
    }

    fn device(&self) -> &Device {
        &self.device
    }
}
