//! CROWN's back-substitution: linear lower bounds Λ·v + c of values v of one buffer, carried
//! back step by step to the input and minimised over the input set. Linear steps pass Λ through
//! their input-gradient kernels (rows of Λ take the place of a batch); activations and max pools
//! pass it through their linear relaxations, the lower one where a coefficient is non-negative
//! and the upper one where it is negative.

use std::collections::HashMap;

use rayon::prelude::*;

use super::interval::{InputSet, Intervals};
use super::{Ball, BoundNet, Kind};
use crate::engine::kernels::pool::MaxPool;
use crate::engine::Op;

/// Rows of linear functions of one buffer, each for one sample, given by their few non-zero
/// coefficients.
pub(super) struct Rows {
    len: usize,
    samples: Vec<usize>,
    coefs: Vec<Vec<(usize, f32)>>,
}

impl Rows {
    pub(super) fn new(len: usize) -> Rows {
        Rows { len, samples: Vec::new(), coefs: Vec::new() }
    }

    pub(super) fn push(&mut self, sample: usize, coefs: &[(usize, f32)]) {
        self.samples.push(sample);
        self.coefs.push(coefs.to_vec());
    }
}

/// A table computed once for each sample that rows of the chunk belong to.
fn per_sample<T: Send>(samples: &[usize], f: impl Fn(usize) -> T + Sync) -> HashMap<usize, T> {
    let mut distinct = samples.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    distinct.into_par_iter().map(|s| (s, f(s))).collect()
}

/// A ReLU/LeakyReLU's relaxation per element: the multiplier of a non-negative coefficient
/// (the lower line through the origin), of a negative one (the upper chord's slope), and the
/// chord's offset per unit of negative coefficient.
struct ActRelaxation {
    pos: Vec<f32>,
    neg: Vec<f32>,
    off: Vec<f32>,
}

fn act_relaxation(lo: &[f32], hi: &[f32], a: f32) -> ActRelaxation {
    let n = lo.len();
    let mut t = ActRelaxation { pos: vec![0.0; n], neg: vec![0.0; n], off: vec![0.0; n] };
    for i in 0..n {
        let (l, u) = (lo[i], hi[i]);
        (t.pos[i], t.neg[i], t.off[i]) = if l >= 0.0 {
            (1.0, 1.0, 0.0)
        } else if u <= 0.0 {
            (a, a, 0.0)
        } else {
            // Below: the closer of the two pieces; above: the chord from (l, a·l) to (u, u).
            let below = if u >= -l { 1.0 } else { a };
            let chord = (u - a * l) / (u - l);
            (below, chord, a * l - chord * l)
        };
    }
    t
}

/// A max pool's relaxation per output: the window element with the largest lower bound (the
/// first on ties; `u32::MAX` for an empty window), and the constant upper bound used for a
/// negative coefficient (NaN where that element is above every other's upper bound, and so is
/// the maximum).
fn pool_relaxation(p: &MaxPool, lo: &[f32], hi: &[f32]) -> Vec<(u32, f32)> {
    let w = p.win;
    let (hw, ohw) = (w.h * w.w, w.oh * w.ow);
    let mut out = vec![(u32::MAX, f32::NAN); w.c * ohw];
    for ch in 0..w.c {
        for oy in 0..w.oh {
            for ox in 0..w.ow {
                let (ys, xs) = w.span(oy, ox);
                let cells = || ys.clone().flat_map(|iy| xs.clone().map(move |ix| ch * hw + iy * w.w + ix));
                let Some(best) = cells().reduce(|b, i| if lo[i] > lo[b] { i } else { b }) else { continue };
                let others = cells().filter(|&i| i != best).map(|i| hi[i]).fold(f32::NEG_INFINITY, f32::max);
                let high = cells().map(|i| hi[i]).fold(f32::NEG_INFINITY, f32::max);
                out[ch * ohw + oy * w.ow + ox] = (best as u32, if lo[best] >= others { f32::NAN } else { high });
            }
        }
    }
    out
}

/// Coefficients (floats) held at once by one chunk of rows, for each of its buffers.
const CHUNK_FLOATS: usize = 16 << 20;

/// Coefficient buffers reused from step to step and chunk to chunk: a fresh allocation of this
/// size costs more in page faults than the arithmetic done in it.
#[derive(Default)]
struct Pool(Vec<Vec<f32>>);

impl Pool {
    /// A zeroed buffer of `len` floats.
    fn zeroed(&mut self, len: usize) -> Vec<f32> {
        let mut v = match self.0.iter().position(|b| b.capacity() >= len) {
            Some(i) => self.0.swap_remove(i),
            None => Vec::with_capacity(len),
        };
        v.clear();
        v.resize(len, 0.0);
        v
    }

    fn give(&mut self, v: Vec<f32>) {
        self.0.push(v);
    }
}

impl BoundNet {
    /// The lower bound of every row over the input set, the buffer `target` being computed by
    /// the steps before `upto`.
    pub(super) fn back_substitute(
        &self,
        iv: &Intervals,
        set: &InputSet,
        target: usize,
        upto: usize,
        rows: &Rows,
    ) -> Vec<f32> {
        let widest = self.engine.lens.iter().copied().max().unwrap_or(1).max(1);
        let per_chunk = (CHUNK_FLOATS / widest).clamp(8, 4096);
        let mut out = Vec::with_capacity(rows.samples.len());
        let mut pool = Pool::default();
        // What the input-gradient kernels read of the forward pass (nothing, for linear steps).
        let zeros = vec![0.0f32; per_chunk.min(rows.samples.len()) * widest];
        for start in (0..rows.samples.len()).step_by(per_chunk) {
            let end = (start + per_chunk).min(rows.samples.len());
            out.extend(self.chunk(iv, set, target, upto, rows, start..end, &mut pool, &zeros));
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn chunk(
        &self,
        iv: &Intervals,
        set: &InputSet,
        target: usize,
        upto: usize,
        rows: &Rows,
        range: std::ops::Range<usize>,
        pool: &mut Pool,
        zeros: &[f32],
    ) -> Vec<f32> {
        let e = &self.engine;
        let r = range.len();
        let samples = &rows.samples[range.clone()];
        let mut lam: Vec<Option<Vec<f32>>> = vec![None; e.lens.len()];
        let mut first = pool.zeroed(r * rows.len);
        for (row, coefs) in rows.coefs[range].iter().enumerate() {
            for &(i, v) in coefs {
                first[row * rows.len + i] += v;
            }
        }
        lam[target] = Some(first);
        let mut konst = vec![0.0f64; r];

        for k in (0..upto).rev() {
            let step = &e.steps[k];
            let Some(ly) = lam[step.output].take() else { continue };
            let ol = e.lens[step.output];
            match &self.kinds[k] {
                Kind::Linear { offset, .. } => {
                    konst.par_iter_mut().zip(ly.par_chunks(ol)).for_each(|(c, l)| {
                        *c += l.iter().zip(offset).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>();
                    });
                    if step.inputs.is_empty() {
                        pool.give(ly);
                        continue;
                    }
                    // The inputs' coefficients, accumulated into (an input named twice gets a
                    // temporary for its second use).
                    let mut taken: Vec<(usize, bool, Vec<f32>)> = Vec::with_capacity(step.inputs.len());
                    for (p, &i) in step.inputs.iter().enumerate() {
                        let repeated = step.inputs[..p].contains(&i);
                        let buf = if repeated { None } else { lam[i].take() };
                        taken.push((i, repeated, buf.unwrap_or_else(|| pool.zeroed(r * e.lens[i]))));
                    }
                    {
                        let xs: Vec<&[f32]> = step.inputs.iter().map(|&i| &zeros[..r * e.lens[i]]).collect();
                        let mut outs: Vec<Option<&mut [f32]>> =
                            taken.iter_mut().map(|(_, _, v)| Some(v.as_mut_slice())).collect();
                        step.backward(r, &xs, &zeros[..r * ol], &ly, &mut outs);
                    }
                    for (i, repeated, v) in taken {
                        if repeated {
                            let acc = lam[i].get_or_insert_with(|| vec![0.0; r * e.lens[i]]);
                            acc.iter_mut().zip(&v).for_each(|(a, b)| *a += b);
                            pool.give(v);
                        } else {
                            lam[i] = Some(v);
                        }
                    }
                    pool.give(ly);
                }
                Kind::Act { slope } => {
                    let b = step.inputs[0];
                    let len = e.lens[b];
                    let mut lx = lam[b].take().unwrap_or_else(|| pool.zeroed(r * len));
                    let tables = per_sample(samples, |s| {
                        act_relaxation(&iv.lo[b][s * len..][..len], &iv.hi[b][s * len..][..len], *slope)
                    });
                    lx.par_chunks_mut(len).zip(ly.par_chunks(len)).zip(konst.par_iter_mut()).zip(samples).for_each(
                        |(((lx, ly), c), s)| {
                            let t = &tables[s];
                            let mut add = 0.0f64;
                            for (k, (lx, ly)) in lx.chunks_mut(256).zip(ly.chunks(256)).enumerate() {
                                let at = k * 256;
                                let (pos, neg, off) = (&t.pos[at..], &t.neg[at..], &t.off[at..]);
                                let mut part = 0.0f32;
                                for i in 0..lx.len() {
                                    let g = ly[i];
                                    lx[i] += g * if g >= 0.0 { pos[i] } else { neg[i] };
                                    part += g.min(0.0) * off[i];
                                }
                                add += part as f64;
                            }
                            *c += add;
                        },
                    );
                    lam[b] = Some(lx);
                    pool.give(ly);
                }
                Kind::MaxPool => {
                    let Op::MaxPool(p) = &step.op else { unreachable!("a max pool step") };
                    let b = step.inputs[0];
                    let len = e.lens[b];
                    let mut lx = lam[b].take().unwrap_or_else(|| pool.zeroed(r * len));
                    let tables = per_sample(samples, |s| {
                        pool_relaxation(p, &iv.lo[b][s * len..][..len], &iv.hi[b][s * len..][..len])
                    });
                    lx.par_chunks_mut(len).zip(ly.par_chunks(ol)).zip(konst.par_iter_mut()).zip(samples).for_each(
                        |(((lx, ly), c), s)| {
                            for (&g, &(best, high)) in ly.iter().zip(&tables[s]) {
                                if g == 0.0 || best == u32::MAX {
                                    continue;
                                }
                                if g > 0.0 || high.is_nan() {
                                    lx[best as usize] += g;
                                } else {
                                    *c += g as f64 * high as f64;
                                }
                            }
                        },
                    );
                    lam[b] = Some(lx);
                    pool.give(ly);
                }
            }
        }
        let lin = lam[e.input].take().unwrap_or_else(|| pool.zeroed(r * e.lens[e.input]));
        let out = self.concretize(&lin, &konst, samples, set);
        pool.give(lin);
        lam.into_iter().flatten().for_each(|v| pool.give(v));
        out
    }

    /// min over the input set of Λ·x + c for every row (Λ over the plan's input).
    fn concretize(&self, lin: &[f32], konst: &[f64], samples: &[usize], set: &InputSet) -> Vec<f32> {
        let (m, len) = (&self.input, self.input_len());
        lin.par_chunks(len)
            .zip(konst)
            .zip(samples)
            .map(|((lm, &c), &s)| {
                // Into pixel space.
                let mut lp = vec![0.0f64; len];
                let mut c = c;
                for i in 0..len {
                    let g = lm[i] as f64;
                    lp[m.perm[i] as usize] += g * m.scale[i] as f64;
                    c += g * m.shift[i] as f64;
                }
                let mut boxed = c;
                let (mut centre, mut norm) = (c, 0.0f64);
                for (p, &g) in lp.iter().enumerate() {
                    let (l, u) = set.bounds(s * len + p);
                    boxed += (g * l as f64).min(g * u as f64);
                    centre += g * set.x[s * len + p] as f64;
                    norm += g * g;
                }
                let bound = match set.ball {
                    Ball::Linf => boxed,
                    Ball::L2 => boxed.max(centre - set.eps as f64 * norm.sqrt()),
                };
                bound as f32
            })
            .collect()
    }
}
