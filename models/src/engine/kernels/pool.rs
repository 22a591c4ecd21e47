//! Pooling: the mean over trailing elements (GlobalAveragePool, ReduceMean over the spatial
//! axes) and 2-D max and average pooling windows.

use rayon::prelude::*;

/// Each group of `inner` consecutive elements becomes its mean (or sum).
pub(crate) struct MeanLast {
    pub(crate) inner: usize,
    /// Groups per sample.
    pub(crate) groups: usize,
    pub(crate) scale: f32,
}

impl MeanLast {
    pub(crate) fn forward(&self, n: usize, x: &[&[f32]], y: &mut [f32]) {
        let g = self.groups;
        y[..n * g].par_chunks_mut(g).zip(x[0].par_chunks(g * self.inner)).for_each(|(y, x)| {
            for (y, x) in y.iter_mut().zip(x.chunks(self.inner)) {
                *y = x.iter().sum::<f32>() * self.scale;
            }
        });
    }

    pub(crate) fn backward(&self, n: usize, dy: &[f32], dx: &mut [Option<&mut [f32]>]) {
        let Some(dx) = dx[0].as_deref_mut() else { return };
        let g = self.groups;
        dx[..n * g * self.inner].par_chunks_mut(g * self.inner).zip(dy.par_chunks(g)).for_each(|(dx, dy)| {
            for (dx, &d) in dx.chunks_mut(self.inner).zip(dy) {
                dx.iter_mut().for_each(|v| *v += d * self.scale);
            }
        });
    }
}

/// A 2-D pooling window over (C, H, W) per sample.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) k: [usize; 2],
    pub(crate) s: [usize; 2],
    /// [top, left]; the bottom and right pads only change the output size.
    pub(crate) pad: [usize; 2],
    pub(crate) oh: usize,
    pub(crate) ow: usize,
}

impl Window {
    /// The input rows and columns of output (oy, ox), clipped to the input.
    #[inline]
    pub(crate) fn span(&self, oy: usize, ox: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let y0 = (oy * self.s[0]) as isize - self.pad[0] as isize;
        let x0 = (ox * self.s[1]) as isize - self.pad[1] as isize;
        let ys = y0.max(0) as usize..((y0 + self.k[0] as isize).min(self.h as isize)).max(0) as usize;
        let xs = x0.max(0) as usize..((x0 + self.k[1] as isize).min(self.w as isize)).max(0) as usize;
        (ys, xs)
    }
    fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }
    fn out_len(&self) -> usize {
        self.c * self.oh * self.ow
    }
}

pub(crate) struct MaxPool {
    pub(crate) win: Window,
}

/// No element (a window wholly in the padding).
const NONE: usize = usize::MAX;

/// Whether `v` replaces the best so far: the first largest element wins (PyTorch's choice among
/// ties), and a NaN wins over any number.
#[inline(always)]
fn better(v: f32, best: f32) -> bool {
    v > best || v.is_nan()
}

impl MaxPool {
    /// Non-overlapping 2×2 windows without padding: the common CNN case, four compares each.
    fn pairs(&self) -> bool {
        let w = &self.win;
        w.k == [2, 2] && w.s == [2, 2] && w.pad == [0, 0] && w.oh * 2 <= w.h && w.ow * 2 <= w.w
    }

    /// For every output of one channel plane, the plane index of its window's maximum (or
    /// [`NONE`]), passed to `f(output index, input index)`.
    #[inline]
    fn each_arg(&self, plane: &[f32], mut f: impl FnMut(usize, usize)) {
        let w = &self.win;
        if self.pairs() {
            for oy in 0..w.oh {
                let (r0, r1) = (2 * oy * w.w, (2 * oy + 1) * w.w);
                for ox in 0..w.ow {
                    // Branch-free selects: which element wins is data, not control flow.
                    let (mut i, mut v) = (r0 + 2 * ox, plane[r0 + 2 * ox]);
                    for j in [r0 + 2 * ox + 1, r1 + 2 * ox, r1 + 2 * ox + 1] {
                        let b = better(plane[j], v);
                        i = if b { j } else { i };
                        v = if b { plane[j] } else { v };
                    }
                    f(oy * w.ow + ox, i);
                }
            }
            return;
        }
        let cols: Vec<std::ops::Range<usize>> = (0..w.ow).map(|ox| w.span(0, ox).1).collect();
        for oy in 0..w.oh {
            let ys = w.span(oy, 0).0;
            for (ox, xs) in cols.iter().enumerate() {
                let mut best = NONE;
                for iy in ys.clone() {
                    for i in iy * w.w + xs.start..iy * w.w + xs.end {
                        if best == NONE || better(plane[i], plane[best]) {
                            best = i;
                        }
                    }
                }
                f(oy * w.ow + ox, best);
            }
        }
    }

    pub(crate) fn forward(&self, n: usize, x: &[&[f32]], y: &mut [f32]) {
        let w = self.win;
        let (il, ol, hw, ohw) = (w.in_len(), w.out_len(), w.h * w.w, w.oh * w.ow);
        let top = |a: f32, b: f32| if better(b, a) { b } else { a };
        y[..n * ol].par_chunks_mut(ol).zip(x[0].par_chunks(il)).for_each(|(y, x)| {
            for (y, plane) in y.chunks_mut(ohw).zip(x.chunks(hw)).take(w.c) {
                if self.pairs() {
                    // Only the values: the maximum of each 2×2 block, row pair by row pair.
                    for (oy, y) in y.chunks_mut(w.ow).enumerate() {
                        let (r0, r1) = (&plane[2 * oy * w.w..][..2 * w.ow], &plane[(2 * oy + 1) * w.w..][..2 * w.ow]);
                        for ((y, a), b) in y.iter_mut().zip(r0.chunks_exact(2)).zip(r1.chunks_exact(2)) {
                            *y = top(top(top(a[0], a[1]), b[0]), b[1]);
                        }
                    }
                    continue;
                }
                self.each_arg(plane, |o, i| y[o] = if i == NONE { f32::NEG_INFINITY } else { plane[i] });
            }
        });
    }

    pub(crate) fn backward(&self, n: usize, x: &[&[f32]], dy: &[f32], dx: &mut [Option<&mut [f32]>]) {
        let Some(dx) = dx[0].as_deref_mut() else { return };
        let w = self.win;
        let (il, ol, hw, ohw) = (w.in_len(), w.out_len(), w.h * w.w, w.oh * w.ow);
        dx[..n * il].par_chunks_mut(il).zip(x[0].par_chunks(il).zip(dy.par_chunks(ol))).for_each(|(dx, (x, g))| {
            for ((dx, plane), g) in dx.chunks_mut(hw).zip(x.chunks(hw)).zip(g.chunks(ohw)).take(w.c) {
                if self.pairs() {
                    // Every element of the 2×2 block gets the gradient or zero: no scattered writes.
                    for (oy, g) in g.chunks(w.ow).enumerate() {
                        let (r0, r1) = (&plane[2 * oy * w.w..][..2 * w.ow], &plane[(2 * oy + 1) * w.w..][..2 * w.ow]);
                        let (d0, d1) = dx[2 * oy * w.w..].split_at_mut(w.w);
                        let d1 = &mut d1[..2 * w.ow];
                        for ox in 0..w.ow {
                            let v = [r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]];
                            let (mut k, mut best) = (0, v[0]);
                            for (j, &x) in v.iter().enumerate().skip(1) {
                                let b = better(x, best);
                                k = if b { j } else { k };
                                best = if b { x } else { best };
                            }
                            let gv = g[ox];
                            d0[2 * ox] += if k == 0 { gv } else { 0.0 };
                            d0[2 * ox + 1] += if k == 1 { gv } else { 0.0 };
                            d1[2 * ox] += if k == 2 { gv } else { 0.0 };
                            d1[2 * ox + 1] += if k == 3 { gv } else { 0.0 };
                        }
                    }
                    continue;
                }
                self.each_arg(plane, |o, i| {
                    if i != NONE {
                        dx[i] += g[o];
                    }
                });
            }
        });
    }
}

pub(crate) struct AvgPool {
    pub(crate) win: Window,
    /// Divide by the whole window (padding included) rather than by its part inside the input.
    pub(crate) count_pad: bool,
}

impl AvgPool {
    #[inline]
    fn divisor(&self, ys: &std::ops::Range<usize>, xs: &std::ops::Range<usize>) -> f32 {
        if self.count_pad {
            (self.win.k[0] * self.win.k[1]) as f32
        } else {
            (ys.len() * xs.len()).max(1) as f32
        }
    }

    pub(crate) fn forward(&self, n: usize, x: &[&[f32]], y: &mut [f32]) {
        let w = self.win;
        let (il, ol, hw) = (w.in_len(), w.out_len(), w.h * w.w);
        y[..n * ol].par_chunks_mut(ol).zip(x[0].par_chunks(il)).for_each(|(y, x)| {
            for c in 0..w.c {
                let plane = &x[c * hw..][..hw];
                for oy in 0..w.oh {
                    for ox in 0..w.ow {
                        let (ys, xs) = w.span(oy, ox);
                        let div = self.divisor(&ys, &xs);
                        let mut sum = 0.0;
                        for iy in ys {
                            sum += plane[iy * w.w + xs.start..iy * w.w + xs.end].iter().sum::<f32>();
                        }
                        y[(c * w.oh + oy) * w.ow + ox] = sum / div;
                    }
                }
            }
        });
    }

    pub(crate) fn backward(&self, n: usize, dy: &[f32], dx: &mut [Option<&mut [f32]>]) {
        let Some(dx) = dx[0].as_deref_mut() else { return };
        let w = self.win;
        let (il, ol, hw) = (w.in_len(), w.out_len(), w.h * w.w);
        dx[..n * il].par_chunks_mut(il).zip(dy.par_chunks(ol)).for_each(|(dx, g)| {
            for c in 0..w.c {
                let plane = &mut dx[c * hw..][..hw];
                for oy in 0..w.oh {
                    for ox in 0..w.ow {
                        let (ys, xs) = w.span(oy, ox);
                        let v = g[(c * w.oh + oy) * w.ow + ox] / self.divisor(&ys, &xs);
                        for iy in ys {
                            plane[iy * w.w + xs.start..iy * w.w + xs.end].iter_mut().for_each(|d| *d += v);
                        }
                    }
                }
            }
        });
    }
}
