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
    fn span(&self, oy: usize, ox: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
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

impl MaxPool {
    /// The first largest element of the window (PyTorch's choice among ties), as a plane index.
    #[inline]
    fn arg(&self, plane: &[f32], oy: usize, ox: usize) -> Option<usize> {
        let (ys, xs) = self.win.span(oy, ox);
        let mut best: Option<(usize, f32)> = None;
        for iy in ys {
            for ix in xs.clone() {
                let v = plane[iy * self.win.w + ix];
                if best.is_none_or(|(_, b)| v > b || v.is_nan()) {
                    best = Some((iy * self.win.w + ix, v));
                }
            }
        }
        best.map(|(i, _)| i)
    }

    pub(crate) fn forward(&self, n: usize, x: &[&[f32]], y: &mut [f32]) {
        let w = self.win;
        let (il, ol, hw) = (w.in_len(), w.out_len(), w.h * w.w);
        y[..n * ol].par_chunks_mut(ol).zip(x[0].par_chunks(il)).for_each(|(y, x)| {
            for c in 0..w.c {
                let plane = &x[c * hw..][..hw];
                for oy in 0..w.oh {
                    for ox in 0..w.ow {
                        y[(c * w.oh + oy) * w.ow + ox] =
                            self.arg(plane, oy, ox).map_or(f32::NEG_INFINITY, |i| plane[i]);
                    }
                }
            }
        });
    }

    pub(crate) fn backward(&self, n: usize, x: &[&[f32]], dy: &[f32], dx: &mut [Option<&mut [f32]>]) {
        let Some(dx) = dx[0].as_deref_mut() else { return };
        let w = self.win;
        let (il, ol, hw) = (w.in_len(), w.out_len(), w.h * w.w);
        dx[..n * il].par_chunks_mut(il).zip(x[0].par_chunks(il).zip(dy.par_chunks(ol))).for_each(|(dx, (x, g))| {
            for c in 0..w.c {
                let plane = &x[c * hw..][..hw];
                for oy in 0..w.oh {
                    for ox in 0..w.ow {
                        if let Some(i) = self.arg(plane, oy, ox) {
                            dx[c * hw + i] += g[(c * w.oh + oy) * w.ow + ox];
                        }
                    }
                }
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
