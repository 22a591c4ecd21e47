//! A feed-forward stack of layers: the architecture behind safetensors models.

mod onnx;

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};

use crate::classifier::autograd_loss_and_grad;
use crate::conv::{self, ConvParams};
use crate::engine::{Engine, Params};
use crate::ops::{self, Window};
use crate::{cpu_ops, linear};
use crate::{objective, Bounds, Classifier, Goal, Loss, LossGrad, ModelError, Result};

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
    /// The rank of each layer's input.
    ranks: Vec<usize>,
    /// The compiled plan of the model's ONNX form (CPU, f32, weights not being trained), or why
    /// the model runs layer by layer.
    engine: std::result::Result<Arc<Engine>, String>,
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
        let mut model = Sequential {
            normalize,
            layers,
            input,
            classes,
            bounds,
            device: device.clone(),
            dtype,
            parameters,
            ranks: Vec::new(),
            engine: Err(String::new()),
        };
        // A fixed, irregular probe in [0, 1): checks the shapes.
        let len = input.iter().product::<usize>();
        let probe: Vec<f64> = (0..len).map(|i| (i as f64 * 0.618_033_988_749_895).fract()).collect();
        let probe = Tensor::from_vec(probe, (1, input[0], input[1], input[2]), device)?.to_dtype(dtype)?;
        let mut ranks = Vec::with_capacity(model.layers.len());
        let out = model.run_layers(&model.normalized(&probe)?, |h| ranks.push(h.rank()))?;
        if out.dims() != [1, classes] {
            return Err(ModelError::Invalid(format!(
                "the last layer produces shape {:?} per sample, but the spec declares {classes} classes",
                &out.dims()[1..]
            )));
        }
        model.ranks = ranks;
        model.engine = model.compile().map(Arc::new);
        Ok(model)
    }

    /// Compiles the model's ONNX form and checks the plan against the layer-by-layer forward
    /// pass; any refusal or disagreement leaves the model running layer by layer.
    fn compile(&self) -> std::result::Result<Engine, String> {
        let trained = self.layers.iter().any(|l| match l {
            Layer::Conv2d { weight, .. } | Layer::Linear { weight, .. } => weight.is_variable(),
            Layer::BatchNorm2d { scale, .. } => scale.is_variable(),
            _ => false,
        });
        if trained {
            return Err("its weights are being trained".into());
        }
        if self.dtype != DType::F32 {
            return Err(format!("the model computes in {:?}", self.dtype));
        }
        if !self.device.is_cpu() {
            return Err("compiled kernels run on the CPU".into());
        }
        let graph =
            crate::onnx::Graph::from_proto(self.to_onnx().map_err(|e| e.to_string())?, "spec".as_ref(), &Device::Cpu)
                .map_err(|e| e.to_string())?;
        let engine = crate::onnx::lower::compile(&graph, onnx::INPUT, onnx::OUTPUT, &self.input)?;
        let [c, h, w] = self.input;
        let n = c * h * w;
        let values: Vec<f32> = (0..3 * n).map(|i| ((i * 104729 + 7) % 997) as f32 / 997.0).collect();
        let x = Tensor::from_vec(values.clone(), (3, c, h, w), &self.device).map_err(|e| e.to_string())?;
        let reference = self
            .normalized(&x)
            .and_then(|h| self.run_layers(&h, |_| {}))
            .and_then(|y| Ok(y.flatten_all()?.to_vec1::<f32>()?))
            .map_err(|e| e.to_string())?;
        let compiled = engine.forward(3, &values);
        let scale = reference.iter().fold(1f32, |m, v| m.max(v.abs()));
        let worst = reference.iter().zip(&compiled).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        if worst.is_nan() || compiled.len() != reference.len() || worst > 1e-4 * scale {
            return Err(format!("the plan's logits differ from the layers' by {worst:e}"));
        }
        Ok(engine)
    }

    /// Which executor runs the model: the compiled plan with its kernels, or layer by layer and why.
    pub fn executor(&self) -> std::result::Result<&Engine, &str> {
        self.engine.as_deref().map_err(|s| s.as_str())
    }

    /// The compiled plan, when it can take `x`.
    fn plan(&self, x: &Tensor) -> Option<&Engine> {
        self.engine.as_deref().ok().filter(|e| e.takes(x))
    }

    /// Runs the layers one by one, calling `seen` with each layer's input.
    fn run_layers(&self, x: &Tensor, mut seen: impl FnMut(&Tensor)) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            seen(&h);
            h = layer.forward(&h).map_err(|e| self.layer_error(i, &h, e))?;
        }
        Ok(h)
    }

    fn layer_error(&self, i: usize, input: &Tensor, e: candle_core::Error) -> ModelError {
        ModelError::Layer {
            layer: i,
            op: self.layers[i].op_name().into(),
            message: format!("input shape {:?}: {e}", input.dims()),
        }
    }

    fn normalized(&self, x: &Tensor) -> Result<Tensor> {
        let x = if x.dtype() == self.dtype { x.clone() } else { x.to_dtype(self.dtype)? };
        Ok(match &self.normalize {
            Some((mean, std)) => x.broadcast_sub(mean)?.broadcast_div(std)?,
            None => x,
        })
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

impl Sequential {
    /// Whether the hand-written backward pass applies (CPU, f32/f64).
    fn manual_backward(&self) -> bool {
        self.device.is_cpu() && matches!(self.dtype, DType::F32 | DType::F64)
    }

    /// Forward pass keeping every layer's input, then the backward pass layer by layer: the hot
    /// layers use the CPU kernels' input-gradient ops directly, the others a local vector-Jacobian
    /// product through candle's autograd. No graph spans the network, and nothing is computed for
    /// the weights.
    fn manual_loss_and_grad(&self, x: &Tensor, goal: &Goal, loss: Loss) -> Result<LossGrad> {
        let x = self.normalized(&x.detach())?;
        let mut acts = vec![x];
        for (i, layer) in self.layers.iter().enumerate() {
            let h = acts.last().expect("input pushed");
            let y = layer.forward(h).map_err(|e| self.layer_error(i, h, e))?;
            acts.push(y);
        }
        let logits = acts.pop().expect("at least the input");
        let z = Var::from_tensor(&logits)?;
        let per_sample = objective(z.as_tensor(), goal, loss)?;
        let mut g = per_sample.sum_all()?.backward()?.get(z.as_tensor()).ok_or(ModelError::GradientMissing)?.clone();
        let mut out = logits.clone();
        for (layer, h) in self.layers.iter().zip(&acts).rev() {
            g = layer.input_grad(h, &out, &g)?;
            out = h.clone();
        }
        if let Some((_, std)) = &self.normalize {
            g = g.broadcast_div(std)?;
        }
        Ok(LossGrad { loss: per_sample.detach(), logits, grad: g })
    }
}

impl Layer {
    /// d loss / d input from d loss / d output `dy`, given the layer's input `x` and output `y`.
    fn input_grad(&self, x: &Tensor, y: &Tensor, dy: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Layer::Conv2d { weight, stride, padding, dilation, groups, .. } => {
                let p = ConvParams { stride: *stride, padding: *padding, dilation: *dilation, groups: *groups };
                conv::conv2d_input_grad(dy, weight, p, x.dims4()?.into())
            }
            Layer::Linear { weight, .. } if x.rank() == 2 => linear::linear_input_grad(dy, weight),
            Layer::Relu => cpu_ops::relu_grad(y, dy),
            Layer::MaxPool2d(w) => cpu_ops::max_pool2d_grad(x, dy, *w),
            Layer::BatchNorm2d { scale, .. } => dy.broadcast_mul(scale),
            Layer::Flatten => dy.reshape(x.shape()),
            Layer::Dropout => Ok(dy.clone()),
            _ => {
                // A local vector-Jacobian product through candle's autograd.
                let v = Var::from_tensor(x)?;
                let out = self.forward(v.as_tensor())?;
                let grads = (out * dy)?.sum_all()?.backward()?;
                match grads.get(v.as_tensor()) {
                    Some(g) => Ok(g.clone()),
                    None => x.zeros_like(),
                }
            }
        }
    }
}

/// Training: the weights of the convolutions and dense layers, in layer order, through the
/// compiled plan's training mode.
impl Sequential {
    /// The compiled plan, or why the model cannot be trained on it.
    fn trainable_plan(&self) -> Result<&Engine> {
        let engine = self.engine.as_deref().map_err(|why| {
            ModelError::Invalid(format!("the model cannot be trained on the compiled executor: {why}"))
        })?;
        if self.layers.iter().any(|l| matches!(l, Layer::BatchNorm2d { .. })) {
            return Err(ModelError::Invalid("batch norm layers cannot be trained".into()));
        }
        engine.trainable().map_err(ModelError::Invalid)?;
        Ok(engine)
    }

    /// The weights and biases of the convolution and linear layers, in layer order (a layer
    /// without a bias has zeros).
    pub fn parameters(&self) -> Result<Vec<Params>> {
        Ok(self.trainable_plan()?.parameters())
    }

    /// Per convolution and linear layer, in layer order, whether it has a bias (a layer without
    /// one keeps zeros: its bias gradient is to be ignored).
    pub fn has_bias(&self) -> Vec<bool> {
        self.layers
            .iter()
            .filter_map(|l| match l {
                Layer::Conv2d { bias, .. } | Layer::Linear { bias, .. } => Some(bias.is_some()),
                _ => None,
            })
            .collect()
    }

    /// Sets the weights and biases of the convolution and linear layers (as
    /// [`Sequential::parameters`] lists them), in the plan and in the layers.
    pub fn set_parameters(&mut self, params: &[Params]) -> Result<()> {
        self.trainable_plan()?;
        let engine = self.engine.as_mut().map_err(|why| ModelError::Invalid(why.clone()))?;
        let engine = Arc::get_mut(engine)
            .ok_or_else(|| ModelError::Invalid("the model's plan is shared and cannot be changed".into()))?;
        engine.set_parameters(params).map_err(ModelError::Invalid)?;
        let mut given = params.iter();
        for layer in &mut self.layers {
            if let Layer::Conv2d { weight, bias, .. } | Layer::Linear { weight, bias } = layer {
                let p = given.next().expect("as many parameter sets as layers with weights");
                *weight = Tensor::from_slice(&p.weight, weight.shape(), weight.device())?;
                match bias {
                    Some(b) => *b = Tensor::from_slice(&p.bias, b.shape(), b.device())?,
                    None if p.bias.iter().any(|&v| v != 0.0) => {
                        return Err(ModelError::Invalid("a bias given for a layer without one".into()))
                    }
                    None => {}
                }
            }
        }
        Ok(())
    }

    /// The logits of a batch (n, C, H, W) and the gradients of the loss whose gradient with
    /// respect to the (n × classes) logits `dlogits` returns, for every layer's weights and bias.
    pub fn parameter_grads(
        &self,
        x: &Tensor,
        dlogits: impl FnOnce(&[f32]) -> Vec<f32>,
    ) -> Result<(Vec<f32>, Vec<Params>)> {
        let engine = self.trainable_plan()?;
        let n = x.dim(0)?;
        let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        engine.parameter_grads(n, &xs, dlogits).map_err(ModelError::Invalid)
    }
}

impl Classifier for Sequential {
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        // A tracked input (autograd through the model) takes the layer-by-layer path.
        match self.plan(x) {
            Some(engine) => engine.logits(x),
            None => self.run_layers(&self.normalized(x)?, |_| {}),
        }
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

    fn parameter_count(&self) -> usize {
        Sequential::parameter_count(self)
    }

    fn executor(&self) -> String {
        match &self.engine {
            Ok(e) => e.summary(),
            Err(why) => format!("layer by layer: {why}"),
        }
    }

    fn bound_net(&self) -> Result<crate::bounds::BoundNet> {
        let graph = crate::onnx::Graph::from_proto(self.to_onnx()?, "spec".as_ref(), &Device::Cpu)?;
        let engine = crate::onnx::lower::compile_unfused(&graph, onnx::INPUT, onnx::OUTPUT, &self.input)
            .map_err(ModelError::Bounds)?;
        crate::bounds::BoundNet::new(engine, self.classes).map_err(ModelError::Bounds)
    }

    fn loss_and_grad(&self, x: &Tensor, goal: &Goal, loss: Loss) -> Result<LossGrad> {
        if let Some(engine) = self.plan(x) {
            engine.loss_and_grad(x, goal, loss)
        } else if self.manual_backward() {
            self.manual_loss_and_grad(x, goal, loss)
        } else {
            autograd_loss_and_grad(self, x, goal, loss)
        }
    }
}
