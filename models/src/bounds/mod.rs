//! Certified bounds on the logits over a perturbation ball: interval bound propagation (IBP,
//! Gowal et al. 2018) and CROWN (Zhang et al. 2018), over the compiled executor's plan.
//!
//! The plan is the one the executor runs, compiled without fusion so that every activation is a
//! step of its own ([`crate::onnx::lower::compile_unfused`]). Linear steps (convolution, dense,
//! per-channel affine, arithmetic with constants, layout maps, average pools) reuse the plan's
//! kernels three ways: the forward kernel maps interval centres, the same kernel over |weights|
//! maps radii, and the input-gradient kernel is the transpose that CROWN's back-substitution
//! needs, with the rows of the linear bounds in place of a batch. ReLU, LeakyReLU and max
//! pooling are the nonlinear steps; anything else is refused by name.
//!
//! What is proven: for every x' in the ball ∩ the pixel box, z_y(x') − z_j(x') ≥ the returned
//! margin bound. The arithmetic is float32 (the executor's kernels): every interval widens by a
//! relative [`SLACK`] per step, each CROWN bound and each margin gives up a relative
//! [`BOUND_SLACK`], and a sample counts as certified only when its margin bound exceeds
//! [`Certificate::tolerance`].

mod backsub;
mod interval;

use crate::engine::kernels::conv::Conv;
use crate::engine::kernels::dense::Dense;
use crate::engine::kernels::elementwise::{BinOp, Binary, ChannelAffine, Operand, UnaryFn};
use crate::engine::kernels::Act;
use crate::engine::{Engine, Op, Step};
use crate::preprocess::{ChannelOrder, Layout, Preprocess};
use crate::Bounds;

/// Relative widening of every interval per step, for the rounding of its float32 products.
pub const SLACK: f32 = 1e-6;

/// Relative slack given up by every CROWN bound and every margin bound.
pub const BOUND_SLACK: f32 = 1e-5;

/// The perturbation ball, intersected with the pixel box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ball {
    Linf,
    L2,
}

/// How the bounds are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Interval bound propagation: two interval passes' worth of work.
    Ibp,
    /// CROWN: linear bounds back-substituted to the input, one backward pass per layer of
    /// unstable activations (only their unstable neurons), intersected with IBP's.
    Crown,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Ibp => "ibp",
            Method::Crown => "crown",
        }
    }
}

/// What a step is to bound propagation.
enum Kind {
    /// An affine map: `abs` maps radii (None: the step's own kernel, whose weights are
    /// non-negative and which has no offset; `Some(None)`: radii become zero), `offset` is the
    /// step's output at zero input, one sample.
    Linear {
        abs: Abs,
        offset: Vec<f32>,
    },
    /// ReLU (slope 0) or LeakyReLU (its slope below zero, in (0, 1)).
    Act {
        slope: f32,
    },
    MaxPool,
}

enum Abs {
    Same,
    Zero,
    Step(Box<Step>),
}

/// Pixel space → the plan's input: `model[i] = scale[i] · pixel[perm[i]] + shift[i]`.
struct InputMap {
    scale: Vec<f32>,
    shift: Vec<f32>,
    perm: Vec<u32>,
}

/// A model ready for bound propagation.
pub struct BoundNet {
    engine: Engine,
    kinds: Vec<Kind>,
    input: InputMap,
    classes: usize,
    /// Per buffer: how many non-elementwise linear steps lie between it and the input, when no
    /// activation does (`usize::MAX` otherwise). Interval bounds are exact up to 1.
    depth: Vec<usize>,
}

/// Per sample: the lower bound of z_y − z_j for every class (∞ at the label), and the logit
/// intervals the method found.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub margins: Vec<f32>,
    pub logit_lower: Vec<f32>,
    pub logit_upper: Vec<f32>,
    /// The clean logits.
    pub clean: Vec<f32>,
}

impl Certificate {
    /// The smallest margin bound over the other classes.
    pub fn margin(&self) -> f32 {
        self.margins.iter().copied().fold(f32::INFINITY, f32::min)
    }

    /// What the margin bound must exceed: float32 rounding in the model's own forward pass, on
    /// the scale of its clean logits.
    pub fn tolerance(&self) -> f32 {
        1e-4 * (1.0 + self.clean.iter().fold(0f32, |m, v| m.max(v.abs())))
    }

    /// Provably robust: no point of the ball changes the prediction away from the label.
    pub fn certified(&self) -> bool {
        self.margin() > self.tolerance()
    }
}

fn refusal(step: &Step, why: &str) -> String {
    format!(
        "node `{}` ({}): {why}; certified bounds pass through Conv, Gemm/MatMul with constant weights, Relu, LeakyRelu, BatchNormalization, MaxPool, AveragePool/GlobalAveragePool, Flatten/Reshape and Add/Sub/Mul/Div with constants",
        step.nodes.join(", "),
        step.describe()
    )
}

fn abs_vec(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

fn operand_abs(o: &Operand) -> Operand {
    match o {
        Operand::Data(m) => Operand::Data(m.clone()),
        Operand::Const(c) => Operand::Const(abs_vec(c)),
    }
}

/// What `step` is to bound propagation, or why bounds cannot pass through it.
fn kind_of(step: &Step) -> Result<Kind, String> {
    let abs_step = |op: Op| {
        let mut s = Step { op, inputs: step.inputs.clone(), output: step.output, nodes: vec![], rows: step.rows };
        if let Op::Conv(c) = &mut s.op {
            c.prepare();
        }
        if let Op::Dense(d) = &mut s.op {
            d.prepare();
        }
        Abs::Step(Box::new(s))
    };
    let linear = |abs: Abs| Ok(Kind::Linear { abs, offset: Vec::new() });
    match &step.op {
        Op::Conv(c) if c.act == Act::None && !c.residual => {
            linear(abs_step(Op::Conv(Conv::new(c.d, abs_vec(&c.w), None))))
        }
        Op::Dense(d) if d.act == Act::None => {
            linear(abs_step(Op::Dense(Dense::new(d.k, d.m, abs_vec(&d.w), vec![0.0; d.m], d.rows))))
        }
        Op::Affine(a) if a.act == Act::None => linear(abs_step(Op::Affine(ChannelAffine {
            scale: abs_vec(&a.scale),
            shift: vec![0.0; a.shift.len()],
            inner: a.inner,
            act: Act::None,
        }))),
        Op::Binary(b) => {
            let data = |o: &Operand| matches!(o, Operand::Data(_));
            let op = match (b.op, data(&b.a), data(&b.b)) {
                (BinOp::Add | BinOp::Sub, _, _) => BinOp::Add,
                (BinOp::Mul, true, false) | (BinOp::Mul, false, true) => BinOp::Mul,
                (BinOp::Div, true, false) => BinOp::Div,
                _ => return Err(refusal(step, "a product or quotient of two computed values")),
            };
            // Radii add under Add and Sub; a constant operand of Add or Sub adds nothing.
            let zero = |o: &Operand| match o {
                Operand::Const(c) if op == BinOp::Add => Operand::Const(vec![0.0; c.len()]),
                o => operand_abs(o),
            };
            linear(abs_step(Op::Binary(Binary {
                op,
                a: zero(&b.a),
                b: zero(&b.b),
                len: b.len,
                in_lens: b.in_lens.clone(),
            })))
        }
        Op::Gather(_) | Op::AvgPool(_) => linear(Abs::Same),
        Op::MeanLast(m) if m.scale >= 0.0 => linear(Abs::Same),
        Op::Repeat(_) => linear(Abs::Zero),
        Op::Unary(u) => match u.f {
            UnaryFn::Act(Act::Relu) => Ok(Kind::Act { slope: 0.0 }),
            UnaryFn::Act(Act::Leaky(a)) if a > 0.0 && a < 1.0 => Ok(Kind::Act { slope: a }),
            _ => Err(refusal(step, "an activation without a linear relaxation here")),
        },
        Op::MaxPool(_) => Ok(Kind::MaxPool),
        _ => Err(refusal(step, "no bound propagation rule")),
    }
}

impl BoundNet {
    /// Bound propagation over an unfused plan whose input is the model's own input
    /// (`input_len` elements per sample) and whose output is `classes` logits.
    pub(crate) fn new(engine: Engine, classes: usize) -> Result<BoundNet, String> {
        if engine.output_len() != classes {
            return Err(format!("the plan gives {} logits per sample, not {classes}", engine.output_len()));
        }
        let mut kinds = Vec::with_capacity(engine.steps.len());
        for step in &engine.steps {
            let mut kind = kind_of(step)?;
            if let Kind::Linear { offset, .. } = &mut kind {
                // The step at zero input: its bias, broadcast to one sample of its output.
                let zeros: Vec<Vec<f32>> = step.inputs.iter().map(|&i| vec![0.0; engine.lens[i]]).collect();
                let ins: Vec<&[f32]> = zeros.iter().map(|v| v.as_slice()).collect();
                let mut y = vec![0.0; engine.lens[step.output]];
                step.forward(1, &ins, &mut y);
                *offset = y;
            }
            kinds.push(kind);
        }
        let mut depth = vec![usize::MAX; engine.lens.len()];
        depth[engine.input] = 0;
        for (step, kind) in engine.steps.iter().zip(&kinds) {
            let deepest = step.inputs.iter().map(|&i| depth[i]).max().unwrap_or(0);
            depth[step.output] = match (kind, &step.op) {
                (Kind::Linear { .. }, _) if deepest == usize::MAX => usize::MAX,
                (Kind::Linear { .. }, Op::Affine(_) | Op::Repeat(_)) => deepest,
                (Kind::Linear { .. }, Op::Binary(b))
                    if matches!(
                        (&b.a, &b.b),
                        (Operand::Data(None), Operand::Const(_)) | (Operand::Const(_), Operand::Data(None))
                    ) =>
                {
                    deepest
                }
                (Kind::Linear { .. }, _) => deepest + 1,
                _ => usize::MAX,
            };
        }
        let len = engine.lens[engine.input];
        let input = InputMap { scale: vec![1.0; len], shift: vec![0.0; len], perm: (0..len as u32).collect() };
        Ok(BoundNet { engine, kinds, input, classes, depth })
    }

    /// The same bounds in pixel space, with `pre` between the pixels and the plan's input
    /// (pixel shape `pixel`, (C, H, W)).
    pub(crate) fn behind(mut self, pre: &Preprocess, pixel: [usize; 3]) -> BoundNet {
        let [c, h, w] = pixel;
        let per = |v: &[f32], ch: usize, default: f32| match v.len() {
            0 => default,
            1 => v[0],
            _ => v[ch],
        };
        let len = c * h * w;
        let (mut scale, mut shift, mut perm) = (vec![0.0; len], vec![0.0; len], vec![0u32; len]);
        for i in 0..len {
            // The plan reads element j of the model input, at (channel, row, column) …
            let j = self.input.perm[i] as usize;
            let (ch, y, x) = match pre.layout {
                Layout::Nchw => (j / (h * w), j / w % h, j % w),
                Layout::Nhwc => (j % c, j / (w * c), j / c % w),
            };
            // … which reads pixel channel `src` (reversed for BGR), normalized.
            let src = if pre.channel_order == ChannelOrder::Bgr { c - 1 - ch } else { ch };
            let (m, s) = (per(&pre.mean, ch, 0.0), per(&pre.std, ch, 1.0));
            let (a, b) = (self.input.scale[i], self.input.shift[i]);
            // a · ((p − m)/s) + b.
            scale[i] = a / s;
            shift[i] = b - a * m / s;
            perm[i] = ((src * h + y) * w + x) as u32;
        }
        self.input = InputMap { scale, shift, perm };
        self
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Elements per sample of the pixel input.
    pub fn input_len(&self) -> usize {
        self.input.perm.len()
    }

    /// Certificates for `n` samples `x` (pixel space, one after another) with labels `labels`
    /// over the ball of radius `eps` intersected with `pixels`.
    pub fn certify(
        &self,
        x: &[f32],
        labels: &[u32],
        eps: f32,
        ball: Ball,
        method: Method,
        pixels: Bounds,
    ) -> Vec<Certificate> {
        let n = labels.len();
        let set = interval::InputSet { x, eps, ball, pixels };
        let clean = self.engine.forward(n, &self.model_input(x, n));
        let iv = self.intervals(n, &set, method == Method::Crown);
        let k = self.classes;
        let out = self.engine.output;
        let mut certs: Vec<Certificate> = (0..n)
            .map(|s| {
                let (lo, hi) = (&iv.lo[out][s * k..][..k], &iv.hi[out][s * k..][..k]);
                let y = labels[s] as usize;
                let margins = (0..k).map(|j| if j == y { f32::INFINITY } else { lower(lo[y] - hi[j]) }).collect();
                Certificate {
                    margins,
                    logit_lower: lo.to_vec(),
                    logit_upper: hi.to_vec(),
                    clean: clean[s * k..][..k].to_vec(),
                }
            })
            .collect();
        if method == Method::Crown {
            // Specification rows e_y − e_j on the logits.
            let mut rows = backsub::Rows::new(k);
            for (s, &y) in labels.iter().enumerate() {
                for j in (0..k).filter(|&j| j != y as usize) {
                    rows.push(s, &[(y as usize, 1.0), (j, -1.0)]);
                }
            }
            let bounds = self.back_substitute(&iv, &set, out, self.engine.steps.len(), &rows);
            let mut it = bounds.into_iter();
            for (s, &y) in labels.iter().enumerate() {
                for j in (0..k).filter(|&j| j != y as usize) {
                    let b = it.next().expect("one bound per row");
                    certs[s].margins[j] = certs[s].margins[j].max(lower(b));
                }
            }
        }
        certs
    }

    /// The plan's input for pixel values `x`.
    fn model_input(&self, x: &[f32], n: usize) -> Vec<f32> {
        let (m, len) = (&self.input, self.input_len());
        let mut out = vec![0.0; n * len];
        for s in 0..n {
            let px = &x[s * len..][..len];
            for i in 0..len {
                out[s * len + i] = m.scale[i] * px[m.perm[i] as usize] + m.shift[i];
            }
        }
        out
    }
}

/// A float32 lower bound made safe against the rounding of the arithmetic that produced it.
fn lower(v: f32) -> f32 {
    v - BOUND_SLACK * (1.0 + v.abs())
}
