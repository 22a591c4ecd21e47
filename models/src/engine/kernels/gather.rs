//! Layout operators (Transpose, Slice, Gather, Concat, Split, Expand, Pad, …) as one kernel: each
//! output element of a sample copies one element of one input's sample, or is zero. The map is
//! derived at compile time by running the operator on element indices.

use rayon::prelude::*;

/// The output element reads nothing (padding).
pub(crate) const ZERO: u16 = u16::MAX;

pub(crate) struct Gather {
    /// Per output element of a sample: which input (or [`ZERO`]) …
    pub(crate) which: Vec<u16>,
    /// … and which element of that input's sample.
    pub(crate) index: Vec<u32>,
    /// Elements per sample of each input.
    pub(crate) in_lens: Vec<usize>,
}

impl Gather {
    fn len(&self) -> usize {
        self.which.len()
    }

    pub(crate) fn forward(&self, n: usize, x: &[&[f32]], y: &mut [f32]) {
        let len = self.len();
        y[..n * len].par_chunks_mut(len).enumerate().for_each(|(s, ys)| {
            if self.in_lens.len() == 1 {
                let l = self.in_lens[0];
                let xs = &x[0][s * l..][..l];
                for (e, y) in ys.iter_mut().enumerate() {
                    *y = if self.which[e] == ZERO { 0.0 } else { xs[self.index[e] as usize] };
                }
                return;
            }
            for (e, y) in ys.iter_mut().enumerate() {
                let w = self.which[e];
                *y = if w == ZERO {
                    0.0
                } else {
                    let l = self.in_lens[w as usize];
                    x[w as usize][s * l + self.index[e] as usize]
                };
            }
        });
    }

    pub(crate) fn backward(&self, n: usize, dy: &[f32], dx: &mut [Option<&mut [f32]>]) {
        let len = self.len();
        for (j, d) in dx.iter_mut().enumerate() {
            let Some(d) = d.as_deref_mut() else { continue };
            let l = self.in_lens[j];
            d[..n * l].par_chunks_mut(l).enumerate().for_each(|(s, ds)| {
                let g = &dy[s * len..][..len];
                for e in 0..len {
                    if self.which[e] as usize == j {
                        ds[self.index[e] as usize] += g[e];
                    }
                }
            });
        }
    }
}
