//! Elementwise kernels: activations, a per-channel affine map (an inference batch norm that no
//! convolution absorbed), broadcasting arithmetic, and a per-sample constant.

use rayon::prelude::*;

use super::Act;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// An elementwise function of one data input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum UnaryFn {
    Act(Act),
    Sigmoid,
    /// max(0, min(1, αx + β))
    HardSigmoid(f32, f32),
    HardSwish,
    Erf,
    Tanh,
    Neg,
    /// x·Φ(x) (exact GELU)
    Gelu,
}

impl UnaryFn {
    #[inline(always)]
    fn value(self, x: f32) -> f32 {
        match self {
            UnaryFn::Act(a) => a.apply(x),
            UnaryFn::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            UnaryFn::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            UnaryFn::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            UnaryFn::Erf => libm::erff(x),
            UnaryFn::Tanh => x.tanh(),
            UnaryFn::Neg => -x,
            UnaryFn::Gelu => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
        }
    }

    /// d f / d x at input `x` with output `y`.
    #[inline(always)]
    fn slope(self, x: f32, y: f32) -> f32 {
        match self {
            UnaryFn::Act(Act::Relu) => (x > 0.0) as u8 as f32,
            UnaryFn::Act(Act::Clip(lo, hi)) => (x > lo && x < hi) as u8 as f32,
            UnaryFn::Act(a) => a.slope(y),
            UnaryFn::Sigmoid => y * (1.0 - y),
            UnaryFn::HardSigmoid(a, b) => {
                let t = a * x + b;
                if t > 0.0 && t < 1.0 {
                    a
                } else {
                    0.0
                }
            }
            UnaryFn::HardSwish => {
                if x < -3.0 {
                    0.0
                } else if x > 3.0 {
                    1.0
                } else {
                    x / 3.0 + 0.5
                }
            }
            UnaryFn::Erf => std::f32::consts::FRAC_2_SQRT_PI * (-x * x).exp(),
            UnaryFn::Tanh => 1.0 - y * y,
            UnaryFn::Neg => -1.0,
            UnaryFn::Gelu => {
                // Φ(x) + x·φ(x)
                let cdf = 0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2));
                cdf + x * (-0.5 * x * x).exp() * 0.398_942_3
            }
        }
    }
}

pub(crate) struct Unary {
    pub(crate) f: UnaryFn,
    /// Elements per sample.
    pub(crate) len: usize,
}

impl Unary {
    pub(crate) fn forward(&self, n: usize, x: &[&[f32]], y: &mut [f32]) {
        let total = n * self.len;
        let f = self.f;
        y[..total].par_chunks_mut(CHUNK).zip(x[0][..total].par_chunks(CHUNK)).for_each(|(y, x)| {
            if f == UnaryFn::Gelu {
                return super::fastmath::gelu_forward(x, y);
            }
            y.iter_mut().zip(x).for_each(|(y, &x)| *y = f.value(x));
        });
    }

    pub(crate) fn backward(&self, n: usize, x: &[&[f32]], y: &[f32], dy: &[f32], dx: &mut [Option<&mut [f32]>]) {
        let Some(dx) = dx[0].as_deref_mut() else { return };
        let total = n * self.len;
        let f = self.f;
        dx[..total]
            .par_chunks_mut(CHUNK)
            .zip(x[0][..total].par_chunks(CHUNK))
            .zip(y[..total].par_chunks(CHUNK).zip(dy[..total].par_chunks(CHUNK)))
            .for_each(|((dx, x), (y, dy))| {
                if f == UnaryFn::Gelu {
                    return super::fastmath::gelu_backward(x, dy, dx);
                }
                for i in 0..dx.len() {
                    dx[i] += dy[i] * f.slope(x[i], y[i]);
                }
            });
    }
}

/// y = act(x·scale[c] + shift[c]) for a sample laid out as (C, inner).
pub(crate) struct ChannelAffine {
    pub(crate) scale: Vec<f32>,
    pub(crate) shift: Vec<f32>,
    pub(crate) inner: usize,
    pub(crate) act: Act,
}

impl ChannelAffine {
    fn len(&self) -> usize {
        self.scale.len() * self.inner
    }

    pub(crate) fn forward(&self, n: usize, x: &[&[f32]], y: &mut [f32]) {
        let len = self.len();
        y[..n * len].par_chunks_mut(len).zip(x[0].par_chunks(len)).for_each(|(y, x)| {
            for (c, (y, x)) in y.chunks_mut(self.inner).zip(x.chunks(self.inner)).enumerate() {
                let (s, t) = (self.scale[c], self.shift[c]);
                y.iter_mut().zip(x).for_each(|(y, &x)| *y = self.act.apply(x * s + t));
            }
        });
    }

    pub(crate) fn backward(&self, n: usize, y: &[f32], dy: &[f32], dx: &mut [Option<&mut [f32]>]) {
        let Some(dx) = dx[0].as_deref_mut() else { return };
        let len = self.len();
        dx[..n * len].par_chunks_mut(len).zip(y.par_chunks(len).zip(dy.par_chunks(len))).for_each(|(dx, (y, dy))| {
            for c in 0..self.scale.len() {
                let s = self.scale[c];
                let r = c * self.inner..(c + 1) * self.inner;
                dx[r.clone()]
                    .iter_mut()
                    .zip(&y[r.clone()])
                    .zip(&dy[r])
                    .for_each(|((d, &y), &g)| *d += g * self.act.slope(y) * s);
            }
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// Where a binary kernel's operand comes from.
pub(crate) enum Operand {
    /// A data input; `map[e]` is the element of the input's sample read by output element e
    /// (None: the same element).
    Data(Option<Vec<u32>>),
    /// A constant, expanded to one sample of the output.
    Const(Vec<f32>),
}

pub(crate) struct Binary {
    pub(crate) op: BinOp,
    pub(crate) a: Operand,
    pub(crate) b: Operand,
    /// Elements per sample of the output and of the data inputs (in input order).
    pub(crate) len: usize,
    pub(crate) in_lens: Vec<usize>,
}

#[inline(always)]
fn fetch(o: &Operand, x: Option<&[f32]>, e: usize) -> f32 {
    match o {
        Operand::Data(None) => x.expect("data input")[e],
        Operand::Data(Some(m)) => x.expect("data input")[m[e] as usize],
        Operand::Const(c) => c[e],
    }
}

/// `y[e] = a[e] ∘ b[e]` over slices, one loop per operation.
#[inline(always)]
fn zip_op(op: BinOp, y: &mut [f32], a: &[f32], b: &[f32]) {
    let it = y.iter_mut().zip(a.iter().zip(b));
    match op {
        BinOp::Add => it.for_each(|(y, (&a, &b))| *y = a + b),
        BinOp::Sub => it.for_each(|(y, (&a, &b))| *y = a - b),
        BinOp::Mul => it.for_each(|(y, (&a, &b))| *y = a * b),
        BinOp::Div => it.for_each(|(y, (&a, &b))| *y = a / b),
    }
}

impl Binary {
    /// The operand of `slot` for one sample as a slice of the output's length, when it needs no
    /// index map.
    fn direct<'a>(&'a self, slot: usize, xs: Option<&'a [f32]>) -> Option<&'a [f32]> {
        match if slot == 0 { &self.a } else { &self.b } {
            Operand::Data(None) => xs,
            Operand::Const(c) => Some(c),
            Operand::Data(Some(_)) => None,
        }
    }

    pub(crate) fn forward(&self, n: usize, x: &[&[f32]], y: &mut [f32]) {
        let len = self.len;
        let (mut next, mut inputs) = (0, [None, None]);
        for (slot, o) in [&self.a, &self.b].into_iter().enumerate() {
            if let Operand::Data(_) = o {
                inputs[slot] = Some((x[next], self.in_lens[next]));
                next += 1;
            }
        }
        y[..n * len].par_chunks_mut(len).enumerate().for_each(|(s, ys)| {
            let xa = inputs[0].map(|(v, l)| &v[s * l..][..l]);
            let xb = inputs[1].map(|(v, l)| &v[s * l..][..l]);
            if let (Some(a), Some(b)) = (self.direct(0, xa), self.direct(1, xb)) {
                return zip_op(self.op, ys, a, b);
            }
            for (e, y) in ys.iter_mut().enumerate() {
                let (a, b) = (fetch(&self.a, xa, e), fetch(&self.b, xb, e));
                *y = match self.op {
                    BinOp::Add => a + b,
                    BinOp::Sub => a - b,
                    BinOp::Mul => a * b,
                    BinOp::Div => a / b,
                };
            }
        });
    }

    pub(crate) fn backward(&self, n: usize, x: &[&[f32]], dy: &[f32], dx: &mut [Option<&mut [f32]>]) {
        let len = self.len;
        // (operand slot, data input index) for each data operand.
        let mut data = Vec::with_capacity(2);
        let mut next = 0;
        for (slot, o) in [&self.a, &self.b].into_iter().enumerate() {
            if let Operand::Data(_) = o {
                data.push((slot, next));
                next += 1;
            }
        }
        let operand = |slot: usize| if slot == 0 { &self.a } else { &self.b };
        let input_of = |slot: usize| data.iter().find(|(s, _)| *s == slot).map(|&(_, i)| i);
        for &(slot, i) in &data {
            let Some(d) = dx[i].as_deref_mut() else { continue };
            let il = self.in_lens[i];
            let other = 1 - slot;
            let other_input = input_of(other);
            let map = match operand(slot) {
                Operand::Data(m) => m.as_deref(),
                Operand::Const(_) => unreachable!(),
            };
            let this_input = x[i];
            d[..n * il].par_chunks_mut(il).enumerate().for_each(|(s, ds)| {
                let g = &dy[s * len..][..len];
                let xo = other_input.map(|j| &x[j][s * self.in_lens[j]..][..self.in_lens[j]]);
                let xs = &this_input[s * il..][..il];
                let o = operand(other);
                if let (None, Some(ov)) = (map, self.direct(other, xo)) {
                    // Same shape as the output, the other operand a slice.
                    let it = ds.iter_mut().zip(g);
                    match (self.op, slot) {
                        (BinOp::Add, _) | (BinOp::Sub, 0) => it.for_each(|(d, &g)| *d += g),
                        (BinOp::Sub, _) => it.for_each(|(d, &g)| *d -= g),
                        (BinOp::Mul, _) => it.zip(ov).for_each(|((d, &g), &b)| *d += g * b),
                        (BinOp::Div, 0) => it.zip(ov).for_each(|((d, &g), &b)| *d += g / b),
                        (BinOp::Div, _) => {
                            it.zip(ov.iter().zip(xs)).for_each(|((d, &g), (&a, &b))| *d -= g * a / (b * b))
                        }
                    }
                    return;
                }
                for e in 0..len {
                    let t = match map {
                        None => e,
                        Some(m) => m[e] as usize,
                    };
                    let v = match self.op {
                        BinOp::Add => g[e],
                        BinOp::Sub => {
                            if slot == 0 {
                                g[e]
                            } else {
                                -g[e]
                            }
                        }
                        BinOp::Mul => g[e] * fetch(o, xo, e),
                        BinOp::Div => {
                            let b = if slot == 1 { xs[t] } else { fetch(o, xo, e) };
                            if slot == 0 {
                                g[e] / b
                            } else {
                                let a = fetch(o, xo, e);
                                -g[e] * a / (b * b)
                            }
                        }
                    };
                    ds[t] += v;
                }
            });
        }
    }
}

/// The same values for every sample (a constant expanded to the batch, e.g. a class token).
pub(crate) struct Repeat {
    pub(crate) chunk: Vec<f32>,
}

impl Repeat {
    pub(crate) fn forward(&self, n: usize, y: &mut [f32]) {
        let len = self.chunk.len();
        y[..n * len].chunks_mut(len).for_each(|y| y.copy_from_slice(&self.chunk));
    }
}
