//! The interval pass: every buffer of the plan gets a lower and an upper bound per element, from
//! the input box forward; with CROWN, the pre-activations are tightened by back-substitution
//! before each activation reads them.

use super::backsub::Rows;
use super::{lower, Ball, BoundNet, Kind};
use crate::engine::kernels::pool::MaxPool;
use crate::engine::Op;
use crate::Bounds;

/// The perturbation set: the ball of radius `eps` around `x` (pixel space) inside `pixels`.
pub(super) struct InputSet<'a> {
    pub(super) x: &'a [f32],
    pub(super) eps: f32,
    pub(super) ball: Ball,
    pub(super) pixels: Bounds,
}

impl InputSet<'_> {
    /// The box: the ball's bounding box inside the pixel range (for L∞ the set itself).
    pub(super) fn bounds(&self, i: usize) -> (f32, f32) {
        let v = self.x[i];
        ((v - self.eps).max(self.pixels.lo), (v + self.eps).min(self.pixels.hi))
    }
}

/// Per buffer, n samples one after another.
pub(super) struct Intervals {
    pub(super) lo: Vec<Vec<f32>>,
    pub(super) hi: Vec<Vec<f32>>,
}

impl BoundNet {
    pub(super) fn intervals(&self, n: usize, set: &InputSet, crown: bool) -> Intervals {
        let e = &self.engine;
        let mut iv = Intervals { lo: vec![Vec::new(); e.lens.len()], hi: vec![Vec::new(); e.lens.len()] };
        // The input box, mapped into the plan's input (per element an increasing affine map).
        let (len, m) = (self.input_len(), &self.input);
        let (mut lo, mut hi) = (vec![0.0; n * len], vec![0.0; n * len]);
        for s in 0..n {
            for i in 0..len {
                let (a, b) = set.bounds(s * len + m.perm[i] as usize);
                let (a, b) = (m.scale[i] * a + m.shift[i], m.scale[i] * b + m.shift[i]);
                (lo[s * len + i], hi[s * len + i]) = (a.min(b), a.max(b));
            }
        }
        iv.lo[e.input] = lo;
        iv.hi[e.input] = hi;

        for (k, (step, kind)) in e.steps.iter().zip(&self.kinds).enumerate() {
            let ol = e.lens[step.output];
            let (mut lo, mut hi) = (vec![0.0; n * ol], vec![0.0; n * ol]);
            match kind {
                Kind::Linear { abs, .. } => {
                    let centres: Vec<Vec<f32>> = step
                        .inputs
                        .iter()
                        .map(|&i| iv.lo[i].iter().zip(&iv.hi[i]).map(|(a, b)| 0.5 * (a + b)).collect())
                        .collect();
                    let radii: Vec<Vec<f32>> = step
                        .inputs
                        .iter()
                        .map(|&i| iv.lo[i].iter().zip(&iv.hi[i]).map(|(a, b)| 0.5 * (b - a)).collect())
                        .collect();
                    let c: Vec<&[f32]> = centres.iter().map(|v| v.as_slice()).collect();
                    let r: Vec<&[f32]> = radii.iter().map(|v| v.as_slice()).collect();
                    step.forward(n, &c, &mut lo);
                    match abs {
                        super::Abs::Same => step.forward(n, &r, &mut hi),
                        super::Abs::Step(a) => a.forward(n, &r, &mut hi),
                        super::Abs::Zero => hi.fill(0.0),
                    }
                    for (l, h) in lo.iter_mut().zip(hi.iter_mut()) {
                        let (c, r) = (*l, *h);
                        // Outward by the rounding of the two products.
                        let slack = super::SLACK * (c.abs() + r);
                        (*l, *h) = (c - r - slack, c + r + slack);
                    }
                }
                Kind::Act { slope } => {
                    let b = step.inputs[0];
                    // Intervals are exact over an L∞ box up to one linear map; an L2 ball is not a box.
                    if crown && (set.ball == Ball::L2 || self.depth[b] > 1) {
                        self.refine(&mut iv, set, b, k, n);
                    }
                    let f = |v: f32| if v >= 0.0 { v } else { slope * v };
                    for (o, v) in lo.iter_mut().zip(&iv.lo[b]) {
                        *o = f(*v);
                    }
                    for (o, v) in hi.iter_mut().zip(&iv.hi[b]) {
                        *o = f(*v);
                    }
                }
                Kind::MaxPool => {
                    let Op::MaxPool(p) = &step.op else { unreachable!("a max pool step") };
                    let b = step.inputs[0];
                    pool_bounds(p, n, &iv.lo[b], &mut lo);
                    pool_bounds(p, n, &iv.hi[b], &mut hi);
                }
            }
            iv.lo[step.output] = lo;
            iv.hi[step.output] = hi;
        }
        iv
    }

    /// CROWN bounds for the unstable elements of buffer `b` (read by step `k`), intersected
    /// with the intervals it has.
    fn refine(&self, iv: &mut Intervals, set: &InputSet, b: usize, k: usize, n: usize) {
        let len = self.engine.lens[b];
        let mut rows = Rows::new(len);
        let mut at = Vec::new();
        for s in 0..n {
            for i in 0..len {
                let (l, u) = (iv.lo[b][s * len + i], iv.hi[b][s * len + i]);
                if l < 0.0 && u > 0.0 {
                    rows.push(s, &[(i, 1.0)]);
                    rows.push(s, &[(i, -1.0)]);
                    at.push(s * len + i);
                }
            }
        }
        if at.is_empty() {
            return;
        }
        let bounds = self.back_substitute(iv, set, b, k, &rows);
        for (pair, &e) in bounds.chunks(2).zip(&at) {
            let (l, u) = (lower(pair[0]), -lower(pair[1]));
            let lo = iv.lo[b][e].max(l);
            let hi = iv.hi[b][e].min(u);
            // Rounding can cross the two bounds by a hair: keep the interval non-empty.
            (iv.lo[b][e], iv.hi[b][e]) = (lo.min(hi), hi.max(lo));
        }
    }
}

/// Max pooling of a bound (max is increasing in every argument).
fn pool_bounds(p: &MaxPool, n: usize, x: &[f32], y: &mut [f32]) {
    p.forward(n, &[x], y);
}
