//! What happens between pixel space and a model's own input: channel order, normalization and
//! memory layout. Attacks and ε always live in pixel space — (N, C, H, W), RGB, values in
//! `[0, 1]` — and the gradient flows back through these steps to the pixels.

use candle_core::{Device, Tensor};

use crate::{Bounds, Classifier, Goal, Loss, LossGrad, Result};

/// Layout of the tensor the model itself takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// (N, C, H, W), PyTorch's layout.
    #[default]
    Nchw,
    /// (N, H, W, C), TensorFlow's layout.
    Nhwc,
}

/// Order of the colour channels the model expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelOrder {
    #[default]
    Rgb,
    Bgr,
}

/// The steps applied, in this order, to pixel-space input before the model sees it:
/// channel reversal, `(x − mean) / std` per channel, then the layout change.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Preprocess {
    /// Per-channel mean (one value for all channels, or one per channel); empty: none.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation (as `mean`); empty: none.
    pub std: Vec<f32>,
    pub channel_order: ChannelOrder,
    pub layout: Layout,
}

impl Preprocess {
    /// Whether every step is the identity.
    pub fn is_identity(&self) -> bool {
        self.mean.is_empty()
            && self.std.is_empty()
            && self.channel_order == ChannelOrder::Rgb
            && self.layout == Layout::Nchw
    }

    /// Checks the values against the number of channels of the pixel-space input.
    pub fn validate(&self, channels: usize) -> Result<()> {
        for (name, v) in [("mean", &self.mean), ("std", &self.std)] {
            if !(v.is_empty() || v.len() == 1 || v.len() == channels) {
                return Err(crate::ModelError::Invalid(format!(
                    "--{name} has {} values but the input has {channels} channels; give one value or one per channel",
                    v.len()
                )));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(crate::ModelError::Invalid(format!("--{name} has a value that is not a finite number")));
            }
        }
        if self.std.iter().any(|&s| s <= 0.0) {
            return Err(crate::ModelError::Invalid("--std values must be positive".into()));
        }
        Ok(())
    }

    /// Pixel-space (N, C, H, W) → the model's input; differentiable.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let (_, c, _, _) = x.dims4()?;
        let mut x = x.clone();
        if self.channel_order == ChannelOrder::Bgr && c > 1 {
            let idx = Tensor::from_vec((0..c as u32).rev().collect::<Vec<_>>(), c, x.device())?;
            x = x.index_select(&idx, 1)?;
        }
        let (device, dtype) = (x.device().clone(), x.dtype());
        let per_channel = |v: &[f32]| -> Result<Tensor> {
            let v: Vec<f32> = if v.len() == 1 { vec![v[0]; c] } else { v.to_vec() };
            Ok(Tensor::from_vec(v, (1, c, 1, 1), &device)?.to_dtype(dtype)?)
        };
        if !self.mean.is_empty() {
            x = x.broadcast_sub(&per_channel(&self.mean)?)?;
        }
        if !self.std.is_empty() {
            x = x.broadcast_div(&per_channel(&self.std)?)?;
        }
        if self.layout == Layout::Nhwc {
            x = x.permute((0, 2, 3, 1))?;
        }
        Ok(x)
    }

    /// The pixel-space (C, H, W) of a model whose own input, without the batch axis, is `model`.
    pub fn pixel_shape(&self, model: [usize; 3]) -> [usize; 3] {
        match self.layout {
            Layout::Nchw => model,
            Layout::Nhwc => [model[2], model[0], model[1]],
        }
    }

    /// One line for reports: what is applied inside the model.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.channel_order == ChannelOrder::Bgr {
            parts.push("RGB→BGR".to_string());
        }
        if !self.mean.is_empty() {
            parts.push(format!("mean {:?}", self.mean));
        }
        if !self.std.is_empty() {
            parts.push(format!("std {:?}", self.std));
        }
        if self.layout == Layout::Nhwc {
            parts.push("NCHW→NHWC".to_string());
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// A classifier behind a [`Preprocess`]: takes pixel-space input and hands the inner model its own.
pub struct Preprocessed<C: Classifier> {
    pub inner: C,
    pub pre: Preprocess,
}

impl<C: Classifier> Preprocessed<C> {
    pub fn new(inner: C, pre: Preprocess) -> Result<Self> {
        let shape = pre.pixel_shape(inner.input_shape());
        pre.validate(shape[0])?;
        Ok(Preprocessed { inner, pre })
    }
}

impl<C: Classifier> Classifier for Preprocessed<C> {
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.inner.logits(&self.pre.apply(x)?)
    }

    fn input_shape(&self) -> [usize; 3] {
        self.pre.pixel_shape(self.inner.input_shape())
    }

    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }

    fn bounds(&self) -> Bounds {
        Bounds::default()
    }

    fn device(&self) -> &Device {
        self.inner.device()
    }

    fn parameter_count(&self) -> usize {
        self.inner.parameter_count()
    }

    fn gradient_issue(&self) -> Option<String> {
        self.inner.gradient_issue()
    }

    fn notes(&self) -> Vec<String> {
        self.inner.notes()
    }

    fn executor(&self) -> String {
        self.inner.executor()
    }

    fn bound_net(&self) -> Result<crate::bounds::BoundNet> {
        Ok(self.inner.bound_net()?.behind(&self.pre, self.input_shape()))
    }

    fn loss_and_grad(&self, x: &Tensor, goal: &Goal, loss: Loss) -> Result<LossGrad> {
        if self.pre.is_identity() {
            return self.inner.loss_and_grad(x, goal, loss);
        }
        crate::autograd_loss_and_grad(self, x, goal, loss)
    }
}

impl<C: Classifier + ?Sized> Classifier for Box<C> {
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        (**self).logits(x)
    }

    fn input_shape(&self) -> [usize; 3] {
        (**self).input_shape()
    }

    fn num_classes(&self) -> usize {
        (**self).num_classes()
    }

    fn bounds(&self) -> Bounds {
        (**self).bounds()
    }

    fn device(&self) -> &Device {
        (**self).device()
    }

    fn parameter_count(&self) -> usize {
        (**self).parameter_count()
    }

    fn gradient_issue(&self) -> Option<String> {
        (**self).gradient_issue()
    }

    fn notes(&self) -> Vec<String> {
        (**self).notes()
    }

    fn executor(&self) -> String {
        (**self).executor()
    }

    fn bound_net(&self) -> Result<crate::bounds::BoundNet> {
        (**self).bound_net()
    }

    fn loss_and_grad(&self, x: &Tensor, goal: &Goal, loss: Loss) -> Result<LossGrad> {
        (**self).loss_and_grad(x, goal, loss)
    }
}
