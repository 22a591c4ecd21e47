//! The compiled executor: a model lowered once, at load time, into a fixed list of CPU kernels
//! over preallocated buffers, with a hand-written input-gradient pass. This module knows plans,
//! kernels and optimisation passes, not file formats: [`crate::onnx::lower`] builds the plan of
//! an ONNX graph.
//!
//! Compilation (of an ONNX graph) probes the graph on two batch sizes through the node-by-node executor
//! ([`crate::onnx::Graph`]) to learn every value's shape as a function of the batch size and which
//! values depend on the input; shape arithmetic (Shape → Gather → Concat → Reshape) and constant
//! sub-graphs disappear, and layout operators become index maps. Optimisation passes then fold
//! batch norms into the convolutions before them and move biases, residual adds and activations
//! into the producing kernel's epilogue ([`fuse`]). A graph with an operator or a form the kernels
//! do not cover is not compiled; the model then runs node by node through candle, which is also
//! the reference this executor is tested against.
//!
//! Every value keeps one sample's elements together and the batch first, so a buffer sized for
//! the largest batch serves every smaller one: after the first pass at that size, forward and
//! backward passes allocate nothing.

pub(crate) mod fuse;
pub(crate) mod kernels;
mod train;

pub use train::Params;

use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};

use crate::{objective, Goal, Loss, LossGrad, ModelError, Result};

use kernels::conv::Conv;
use kernels::dense::{BatchMatMul, Dense};
use kernels::elementwise::{Binary, ChannelAffine, Repeat, Unary};
use kernels::gather::Gather;
use kernels::norm::{LayerNorm, Softmax};
use kernels::pool::{AvgPool, MaxPool, MeanLast};

/// One kernel of the plan.
pub(crate) enum Op {
    Conv(Conv),
    Dense(Dense),
    BatchMatMul(BatchMatMul),
    Unary(Unary),
    Affine(ChannelAffine),
    Binary(Binary),
    Gather(Gather),
    Softmax(Softmax),
    LayerNorm(LayerNorm),
    MeanLast(MeanLast),
    MaxPool(MaxPool),
    AvgPool(AvgPool),
    Repeat(Repeat),
}

/// A kernel with its buffers: data inputs and one output, by buffer index.
pub(crate) struct Step {
    pub(crate) op: Op,
    pub(crate) inputs: Vec<usize>,
    pub(crate) output: usize,
    /// The ONNX nodes it runs (for messages and `inspect`).
    pub(crate) nodes: Vec<String>,
    /// Rows per sample for the row-wise kernels (softmax, layer norm).
    pub(crate) rows: usize,
}

impl Step {
    pub(crate) fn forward(&self, n: usize, x: &[&[f32]], y: &mut [f32]) {
        let rows = n * self.rows;
        match &self.op {
            Op::Conv(k) => k.forward(n, x, y),
            Op::Dense(k) => k.forward(n, x, y),
            Op::BatchMatMul(k) => k.forward(n, x, y),
            Op::Unary(k) => k.forward(n, x, y),
            Op::Affine(k) => k.forward(n, x, y),
            Op::Binary(k) => k.forward(n, x, y),
            Op::Gather(k) => k.forward(n, x, y),
            Op::Softmax(k) => k.forward(rows, x, y),
            Op::LayerNorm(k) => k.forward(rows, x, y),
            Op::MeanLast(k) => k.forward(n, x, y),
            Op::MaxPool(k) => k.forward(n, x, y),
            Op::AvgPool(k) => k.forward(n, x, y),
            Op::Repeat(k) => k.forward(n, y),
        }
    }

    pub(crate) fn backward(&self, n: usize, x: &[&[f32]], y: &[f32], dy: &[f32], dx: &mut [Option<&mut [f32]>]) {
        let rows = n * self.rows;
        match &self.op {
            Op::Conv(k) => k.backward(n, y, dy, dx),
            Op::Dense(k) => k.backward(n, y, dy, dx),
            Op::BatchMatMul(k) => k.backward(n, x, dy, dx),
            Op::Unary(k) => k.backward(n, x, y, dy, dx),
            Op::Affine(k) => k.backward(n, y, dy, dx),
            Op::Binary(k) => k.backward(n, x, dy, dx),
            Op::Gather(k) => k.backward(n, dy, dx),
            Op::Softmax(k) => k.backward(rows, y, dy, dx),
            Op::LayerNorm(k) => k.backward(rows, x, dy, dx),
            Op::MeanLast(k) => k.backward(n, dy, dx),
            Op::MaxPool(k) => k.backward(n, x, dy, dx),
            Op::AvgPool(k) => k.backward(n, dy, dx),
            Op::Repeat(_) => {}
        }
    }

    pub(crate) fn describe(&self) -> String {
        match &self.op {
            Op::Conv(k) => k.describe(),
            Op::Dense(k) => k.describe(),
            Op::BatchMatMul(k) => k.describe(),
            Op::Unary(k) => format!("{:?}", k.f),
            Op::Affine(k) => format!("channel affine{}", k.act.name()),
            Op::Binary(k) => format!("{:?}", k.op),
            Op::Gather(_) => "index map".into(),
            Op::Softmax(_) => "softmax".into(),
            Op::LayerNorm(_) => "layer norm".into(),
            Op::MeanLast(_) => "mean".into(),
            Op::MaxPool(_) => "max pool".into(),
            Op::AvgPool(_) => "average pool".into(),
            Op::Repeat(_) => "per-sample constant".into(),
        }
    }

    /// Multiply-adds ×2 of one sample's forward pass (products only).
    pub(crate) fn flops(&self) -> f64 {
        match &self.op {
            Op::Conv(k) => k.flops(),
            Op::Dense(k) => k.flops(),
            Op::BatchMatMul(k) => k.flops(),
            _ => 0.0,
        }
    }
}

/// Buffers for a batch of up to `cap` samples.
#[derive(Default)]
struct Workspace {
    cap: usize,
    values: Vec<Vec<f32>>,
    grads: Vec<Vec<f32>>,
}

/// A compiled graph.
pub struct Engine {
    pub(crate) steps: Vec<Step>,
    /// Elements per sample of each buffer.
    pub(crate) lens: Vec<usize>,
    /// Whether a buffer carries a gradient (it depends on the input).
    pub(crate) needs_grad: Vec<bool>,
    pub(crate) input: usize,
    pub(crate) output: usize,
    workspace: Mutex<Workspace>,
}

impl Engine {
    pub(crate) fn new(
        steps: Vec<Step>,
        lens: Vec<usize>,
        needs_grad: Vec<bool>,
        input: usize,
        output: usize,
    ) -> Engine {
        let mut steps = steps;
        for step in &mut steps {
            match &mut step.op {
                Op::Conv(c) => c.prepare(),
                Op::Dense(d) => d.prepare(),
                _ => {}
            }
        }
        Engine { steps, lens, needs_grad, input, output, workspace: Mutex::new(Workspace::default()) }
    }

    /// Elements per sample of the output.
    pub fn output_len(&self) -> usize {
        self.lens[self.output]
    }

    /// One line per kernel, for `inspect`.
    pub fn describe(&self) -> Vec<String> {
        self.steps.iter().map(|s| format!("{} ({})", s.describe(), s.nodes.join(", "))).collect()
    }

    /// One line for `inspect`: the number of kernels and the work per image.
    pub fn summary(&self) -> String {
        format!("compiled: {} kernels, {:.3} GFLOP per image in products", self.steps.len(), self.flops() / 1e9)
    }

    /// Floating-point operations of one sample's forward pass in its products.
    pub fn flops(&self) -> f64 {
        self.steps.iter().map(Step::flops).sum()
    }

    fn workspace(&self, n: usize) -> std::sync::MutexGuard<'_, Workspace> {
        let mut ws = self.workspace.lock().unwrap_or_else(|e| e.into_inner());
        if ws.cap < n {
            ws.cap = n;
            ws.values = self.lens.iter().map(|&l| vec![0.0; l * n]).collect();
            ws.grads = self
                .lens
                .iter()
                .zip(&self.needs_grad)
                .map(|(&l, &g)| if g { vec![0.0; l * n] } else { Vec::new() })
                .collect();
        }
        ws
    }

    fn run_forward(&self, ws: &mut Workspace, n: usize, x: &[f32], mut times: Option<&mut [(f64, f64)]>) {
        let il = self.lens[self.input];
        ws.values[self.input][..n * il].copy_from_slice(&x[..n * il]);
        for (k, step) in self.steps.iter().enumerate() {
            let start = times.is_some().then(std::time::Instant::now);
            let mut out = std::mem::take(&mut ws.values[step.output]);
            {
                let ins: Vec<&[f32]> = step.inputs.iter().map(|&i| &ws.values[i][..n * self.lens[i]]).collect();
                step.forward(n, &ins, &mut out[..n * self.lens[step.output]]);
            }
            ws.values[step.output] = out;
            if let (Some(t), Some(start)) = (times.as_deref_mut(), start) {
                t[k].0 += start.elapsed().as_secs_f64();
            }
        }
    }

    /// Logits (n × output_len) for `n` samples laid out one after another in `x`.
    pub fn forward(&self, n: usize, x: &[f32]) -> Vec<f32> {
        let mut ws = self.workspace(n);
        self.run_forward(&mut ws, n, x, None);
        ws.values[self.output][..n * self.output_len()].to_vec()
    }

    /// The forward pass, then `dlogits` → d/dx, returned as the logits and the input gradient.
    pub fn forward_backward(
        &self,
        n: usize,
        x: &[f32],
        dlogits: impl FnOnce(&[f32]) -> Vec<f32>,
    ) -> (Vec<f32>, Vec<f32>) {
        self.pass(n, x, dlogits, None, None)
    }

    /// One forward + input-gradient pass (gradient of the sum of the logits) with the time spent
    /// in each kernel: (kernel, forward seconds, backward seconds), in plan order.
    pub fn profile(&self, n: usize, x: &[f32]) -> Vec<(String, f64, f64)> {
        let mut times = vec![(0.0, 0.0); self.steps.len()];
        self.pass(n, x, |z| vec![1.0; z.len()], Some(&mut times), None);
        self.describe().into_iter().zip(times).map(|(d, (f, b))| (d, f, b)).collect()
    }

    fn pass(
        &self,
        n: usize,
        x: &[f32],
        dlogits: impl FnOnce(&[f32]) -> Vec<f32>,
        mut times: Option<&mut [(f64, f64)]>,
        mut weight_grads: Option<&mut Vec<Option<Params>>>,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut ws = self.workspace(n);
        self.run_forward(&mut ws, n, x, times.as_deref_mut());
        let ol = self.output_len();
        let logits = ws.values[self.output][..n * ol].to_vec();
        let seed = dlogits(&logits);
        for (g, (&l, &need)) in ws.grads.iter_mut().zip(self.lens.iter().zip(&self.needs_grad)) {
            if need {
                g[..n * l].fill(0.0);
            }
        }
        ws.grads[self.output][..n * ol].copy_from_slice(&seed);
        let ws = &mut *ws;
        for (k, step) in self.steps.iter().enumerate().rev() {
            if !self.needs_grad[step.output] {
                continue;
            }
            let start = times.is_some().then(std::time::Instant::now);
            let dy = std::mem::take(&mut ws.grads[step.output]);
            // The gradient buffers of the inputs, taken out (an input named twice gets a
            // temporary buffer for its second use).
            let mut taken: Vec<Option<Vec<f32>>> = Vec::with_capacity(step.inputs.len());
            let mut dup: Vec<bool> = Vec::with_capacity(step.inputs.len());
            for (k, &i) in step.inputs.iter().enumerate() {
                let repeated = step.inputs[..k].contains(&i);
                dup.push(repeated);
                taken.push(match (self.needs_grad[i], repeated) {
                    (false, _) => None,
                    (true, false) => Some(std::mem::take(&mut ws.grads[i])),
                    (true, true) => Some(vec![0.0; n * self.lens[i]]),
                });
            }
            {
                let ins: Vec<&[f32]> = step.inputs.iter().map(|&i| &ws.values[i][..n * self.lens[i]]).collect();
                let mut outs: Vec<Option<&mut [f32]>> = taken
                    .iter_mut()
                    .zip(&step.inputs)
                    .map(|(t, &i)| t.as_mut().map(|v| &mut v[..n * self.lens[i]]))
                    .collect();
                let ol = self.lens[step.output];
                let (y, g) = (&ws.values[step.output][..n * ol], &dy[..n * ol]);
                if let Some(wg) = weight_grads.as_deref_mut() {
                    wg[k] = step.weight_grad(n, ins[0], y, g);
                }
                step.backward(n, &ins, y, g, &mut outs);
            }
            ws.grads[step.output] = dy;
            for ((t, &i), repeated) in taken.into_iter().zip(&step.inputs).zip(dup) {
                let Some(t) = t else { continue };
                if repeated {
                    ws.grads[i][..t.len()].iter_mut().zip(&t).for_each(|(a, b)| *a += b);
                } else {
                    ws.grads[i] = t;
                }
            }
            if let (Some(t), Some(start)) = (times.as_deref_mut(), start) {
                t[k].1 += start.elapsed().as_secs_f64();
            }
        }
        let il = self.lens[self.input];
        (logits, ws.grads[self.input][..n * il].to_vec())
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Engine({} kernels, {} buffers)", self.steps.len(), self.lens.len())
    }
}

/// The logits, the per-sample objective and its gradient with respect to the logits, computed
/// through candle's autograd on the (n, k) logits alone.
fn seed(logits: &[f32], n: usize, goal: &Goal, loss: Loss) -> Result<(Tensor, Vec<f32>)> {
    let z = Tensor::from_slice(logits, (n, logits.len() / n.max(1)), &Device::Cpu)?;
    let var = candle_core::Var::from_tensor(&z)?;
    let per_sample = objective(var.as_tensor(), goal, loss)?;
    let grads = per_sample.sum_all()?.backward()?;
    let g = grads.get(var.as_tensor()).ok_or(ModelError::GradientMissing)?;
    Ok((per_sample.detach(), g.flatten_all()?.to_vec1::<f32>()?))
}

/// The models' side of the executor: tensors in, tensors out.
impl Engine {
    /// Whether the plan can take `x`: a CPU tensor that no autograd graph is tracking.
    pub fn takes(&self, x: &Tensor) -> bool {
        x.device().is_cpu() && !x.track_op()
    }

    /// Logits (n, k) of a batch (n, …), in `x`'s dtype.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.dims()[0];
        let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let y = self.forward(n, &xs);
        let k = y.len() / n.max(1);
        Ok(Tensor::from_vec(y, (n, k), x.device())?.to_dtype(x.dtype())?)
    }

    /// The per-sample objective, the logits and the input gradient of a batch.
    pub fn loss_and_grad(&self, x: &Tensor, goal: &Goal, loss: Loss) -> Result<LossGrad> {
        let n = x.dims()[0];
        let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut per_sample = None;
        let (logits, grad) = self.forward_backward(n, &xs, |z| match seed(z, n, goal, loss) {
            Ok((l, g)) => {
                per_sample = Some(Ok(l));
                g
            }
            Err(e) => {
                per_sample = Some(Err(e));
                vec![0.0; z.len()]
            }
        });
        let per_sample = per_sample.expect("the seed ran")?;
        let k = logits.len() / n.max(1);
        Ok(LossGrad {
            loss: per_sample.to_dtype(x.dtype())?,
            logits: Tensor::from_vec(logits, (n, k), x.device())?.to_dtype(x.dtype())?,
            grad: Tensor::from_vec(grad, x.dims(), x.device())?.to_dtype(x.dtype())?,
        })
    }
}
