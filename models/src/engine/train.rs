//! The executor's training mode: the gradient of a loss with respect to the weights and biases
//! of the convolutions and dense kernels, in the same forward and backward pass that attacks
//! use for the input gradient, and new weights set in place (repacked for the products).
//!
//! Weights travel in PyTorch's layout — convolution (O, C/groups, kh, kw), dense (out, in) —
//! one [`Params`] per kernel with weights, in plan order. A plan in which a batch norm was
//! folded into a convolution holds the folded weights; the trainer refuses such models.

use super::{Engine, Op, Step};

/// The weights and bias of one kernel (or their gradients), in PyTorch's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Step {
    /// The weight gradients of a kernel with weights, from its input, output and output gradient.
    pub(crate) fn weight_grad(&self, n: usize, x: &[f32], y: &[f32], dy: &[f32]) -> Option<Params> {
        match &self.op {
            Op::Conv(k) => {
                let (weight, bias) = k.weight_grad(n, x, y, dy);
                Some(Params { weight, bias })
            }
            Op::Dense(k) => {
                let (w, bias) = k.weight_grad(n, x, y, dy);
                Some(Params { weight: transpose(&w, k.k, k.m), bias })
            }
            _ => None,
        }
    }
}

/// The (c × r) transpose of a row-major (r × c) matrix.
fn transpose(w: &[f32], r: usize, c: usize) -> Vec<f32> {
    (0..r * c).map(|i| w[(i % r) * c + i / r]).collect()
}

impl Engine {
    /// The steps with weights, in plan order.
    fn weighted(&self) -> Vec<usize> {
        (0..self.steps.len()).filter(|&k| matches!(self.steps[k].op, Op::Conv(_) | Op::Dense(_))).collect()
    }

    /// The weights of every convolution and dense kernel, in plan order.
    pub fn parameters(&self) -> Vec<Params> {
        self.weighted()
            .into_iter()
            .map(|k| match &self.steps[k].op {
                Op::Conv(c) => Params { weight: c.w.clone(), bias: c.bias.clone() },
                Op::Dense(d) => Params { weight: transpose(&d.w, d.k, d.m), bias: d.bias.clone() },
                _ => unreachable!("weighted steps are convolutions and dense kernels"),
            })
            .collect()
    }

    /// Replaces the weights of every convolution and dense kernel (as [`Engine::parameters`]
    /// lists them).
    pub fn set_parameters(&mut self, params: &[Params]) -> Result<(), String> {
        let weighted = self.weighted();
        if params.len() != weighted.len() {
            return Err(format!(
                "{} weight sets for a plan with {} kernels with weights",
                params.len(),
                weighted.len()
            ));
        }
        for (&k, p) in weighted.iter().zip(params) {
            let nodes = self.steps[k].nodes.join(", ");
            let wrong =
                |what: &str, got: usize, want: usize| format!("{nodes}: {what} of {got} values, expected {want}");
            match &mut self.steps[k].op {
                Op::Conv(c) => {
                    if p.weight.len() != c.w.len() || p.bias.len() != c.bias.len() {
                        return Err(wrong("weights and bias", p.weight.len() + p.bias.len(), c.w.len() + c.bias.len()));
                    }
                    c.set_weights(&p.weight, &p.bias);
                }
                Op::Dense(d) => {
                    if p.weight.len() != d.w.len() || p.bias.len() != d.bias.len() {
                        return Err(wrong("weights and bias", p.weight.len() + p.bias.len(), d.w.len() + d.bias.len()));
                    }
                    let w = transpose(&p.weight, d.m, d.k);
                    d.set_weights(&w, &p.bias);
                }
                _ => unreachable!("weighted steps are convolutions and dense kernels"),
            }
        }
        Ok(())
    }

    /// Whether every kernel with weights gets a gradient (lies on a path from the input).
    pub fn trainable(&self) -> Result<(), String> {
        match self.weighted().into_iter().find(|&k| !self.needs_grad[self.steps[k].output]) {
            Some(k) => Err(format!("{} does not depend on the input", self.steps[k].nodes.join(", "))),
            None if self.weighted().is_empty() => Err("the plan has no weights".into()),
            None => Ok(()),
        }
    }

    /// The forward pass of `n` samples, then `dlogits` (the gradient of the loss with respect to
    /// the n × output_len logits) back through the plan: the logits, and the gradients of every
    /// kernel's weights and bias (as [`Engine::parameters`] lists them).
    pub fn parameter_grads(
        &self,
        n: usize,
        x: &[f32],
        dlogits: impl FnOnce(&[f32]) -> Vec<f32>,
    ) -> Result<(Vec<f32>, Vec<Params>), String> {
        self.trainable()?;
        let mut grads: Vec<Option<Params>> = vec![None; self.steps.len()];
        let (logits, _) = self.pass(n, x, dlogits, None, Some(&mut grads));
        let grads = self.weighted().into_iter().map(|k| grads[k].take().expect("every weighted step has a gradient"));
        Ok((logits, grads.collect()))
    }
}
