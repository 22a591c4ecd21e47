//! CROWN's back-substitution: linear lower bounds Λ·v + c of values v of one buffer, carried
//! back step by step to the input and minimised over the input set. Linear steps pass Λ through
//! their input-gradient kernels (rows of Λ take the place of a batch); activations and max pools
//! pass it through their linear relaxations, the lower one where a coefficient is non-negative
//! and the upper one where it is negative.

use rayon::prelude::*;

use super::interval::{InputSet, Intervals};
use super::{Ball, BoundNet, Kind};
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
                    let (lo, hi) = (&iv.lo[b], &iv.hi[b]);
                    let a = *slope;
                    lx.par_chunks_mut(len).zip(ly.par_chunks(len)).zip(konst.par_iter_mut()).zip(samples).for_each(
                        |(((lx, ly), c), &s)| {
                            let (lo, hi) = (&lo[s * len..][..len], &hi[s * len..][..len]);
                            let mut add = 0.0f64;
                            for i in 0..len {
                                let (g, l, u) = (ly[i], lo[i], hi[i]);
                                if g == 0.0 {
                                    continue;
                                }
                                lx[i] += if l >= 0.0 {
                                    g
                                } else if u <= 0.0 {
                                    a * g
                                } else if g > 0.0 {
                                    // Below: a line through the origin, the closer of the two pieces.
                                    if u >= -l {
                                        g
                                    } else {
                                        a * g
                                    }
                                } else {
                                    // Above: the chord from (l, a·l) to (u, u).
                                    let sl = (u - a * l) / (u - l);
                                    add += g as f64 * (a as f64 * l as f64 - sl as f64 * l as f64);
                                    g * sl
                                };
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
                    let w = p.win;
                    let mut lx = lam[b].take().unwrap_or_else(|| pool.zeroed(r * len));
                    let (lo, hi) = (&iv.lo[b], &iv.hi[b]);
                    lx.par_chunks_mut(len).zip(ly.par_chunks(ol)).zip(konst.par_iter_mut()).zip(samples).for_each(
                        |(((lx, ly), c), &s)| {
                            let (lo, hi) = (&lo[s * len..][..len], &hi[s * len..][..len]);
                            let (hw, ohw) = (w.h * w.w, w.oh * w.ow);
                            for ch in 0..w.c {
                                for oy in 0..w.oh {
                                    for ox in 0..w.ow {
                                        let g = ly[ch * ohw + oy * w.ow + ox];
                                        if g == 0.0 {
                                            continue;
                                        }
                                        let (ys, xs) = w.span(oy, ox);
                                        // The element with the largest lower bound (the first on ties).
                                        let (mut best, mut top) = (usize::MAX, f32::NEG_INFINITY);
                                        let mut high = f32::NEG_INFINITY;
                                        for iy in ys.clone() {
                                            for ix in xs.clone() {
                                                let i = ch * hw + iy * w.w + ix;
                                                if best == usize::MAX || lo[i] > top {
                                                    (best, top) = (i, lo[i]);
                                                }
                                                high = high.max(hi[i]);
                                            }
                                        }
                                        if best == usize::MAX {
                                            continue;
                                        }
                                        // Exact when that element is above every other's upper bound.
                                        let mut others = f32::NEG_INFINITY;
                                        for iy in ys.clone() {
                                            for ix in xs.clone() {
                                                let i = ch * hw + iy * w.w + ix;
                                                if i != best {
                                                    others = others.max(hi[i]);
                                                }
                                            }
                                        }
                                        if g > 0.0 || top >= others {
                                            lx[best] += g;
                                        } else {
                                            *c += g as f64 * high as f64;
                                        }
                                    }
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
