//! Convolution with its epilogue (bias, folded batch norm, residual add, activation): im2col +
//! matrix product per sample and group, the matrix product alone for 1×1 convolutions, a direct
//! kernel for depthwise ones.

use rayon::prelude::*;

use super::{chunks_opt, few, scratch_a, scratch_b, Act};
use crate::conv::{col2im, im2col, Dims};

/// Which loop nest runs the convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    General,
    /// 1×1, stride 1, no padding, one group: the product of the kernel and the input.
    Pointwise,
    /// One input and one output channel per group.
    Depthwise,
}

pub(crate) struct Conv {
    /// The sizes for one sample.
    pub(crate) d: Dims,
    /// (O, C/groups · kh · kw)
    pub(crate) w: Vec<f32>,
    pub(crate) bias: Vec<f32>,
    pub(crate) act: Act,
    /// A second input of the output's shape is added before the activation.
    pub(crate) residual: bool,
    pub(crate) form: Form,
}

fn gemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    acc: bool,
    lhs: (&[f32], isize, isize),
    rhs: (&[f32], isize, isize),
    par: gemm::Parallelism,
) {
    crate::kernel::gemm(m, n, k, dst, acc, lhs, rhs, par)
}

impl Conv {
    pub(crate) fn new(d: Dims, w: Vec<f32>, bias: Option<Vec<f32>>) -> Conv {
        let p = d.p;
        let form = if d.kh == 1 && d.kw == 1 && p.stride == 1 && p.padding == 0 && p.groups == 1 {
            Form::Pointwise
        } else if p.groups == d.c && d.o == d.c {
            Form::Depthwise
        } else {
            Form::General
        };
        let bias = bias.unwrap_or_else(|| vec![0.0; d.o]);
        Conv { d, w, bias, act: Act::None, residual: false, form }
    }

    /// Folds `y·s + t` per output channel (a batch norm after the convolution) into the weights.
    pub(crate) fn fold_affine(&mut self, s: &[f32], t: &[f32]) {
        let ck = self.d.ck();
        for o in 0..self.d.o {
            self.w[o * ck..(o + 1) * ck].iter_mut().for_each(|v| *v *= s[o]);
            self.bias[o] = self.bias[o] * s[o] + t[o];
        }
    }

    pub(crate) fn describe(&self) -> String {
        let d = &self.d;
        format!(
            "conv {}x{} {}→{} s{} p{} g{} {:?}{}{}",
            d.kh,
            d.kw,
            d.c,
            d.o,
            d.p.stride,
            d.p.padding,
            d.p.groups,
            self.form,
            if self.residual { "+add" } else { "" },
            self.act.name()
        )
    }

    pub(crate) fn flops(&self) -> f64 {
        2.0 * (self.d.o * self.d.ck() * self.d.ohw()) as f64
    }

    fn sample(&self, xs: &[f32], ys: &mut [f32], par: gemm::Parallelism) {
        let d = &self.d;
        let (ck, og, ohw) = (d.ck(), d.og(), d.ohw());
        match self.form {
            Form::Pointwise => {
                gemm(d.o, ohw, d.c, ys, false, (&self.w, d.c as isize, 1), (xs, ohw as isize, 1), par);
            }
            Form::Depthwise => self.depthwise(xs, ys),
            Form::General => scratch_b(ck * ohw, |col| {
                for g in 0..d.p.groups {
                    im2col(d, xs, g, col);
                    let kg = &self.w[g * og * ck..][..og * ck];
                    gemm(
                        og,
                        ohw,
                        ck,
                        &mut ys[g * og * ohw..],
                        false,
                        (kg, ck as isize, 1),
                        (col, ohw as isize, 1),
                        par,
                    );
                }
            }),
        }
    }

    fn depthwise(&self, xs: &[f32], ys: &mut [f32]) {
        let d = &self.d;
        let (h, w, oh, ow, s, dil, pad) = (d.h, d.w, d.oh, d.ow, d.p.stride, d.p.dilation, d.p.padding);
        for c in 0..d.c {
            let plane = &xs[c * h * w..][..h * w];
            let out = &mut ys[c * oh * ow..][..oh * ow];
            out.fill(0.0);
            let k = &self.w[c * d.kh * d.kw..][..d.kh * d.kw];
            for i in 0..d.kh {
                let (ylo, yhi) = d.valid(i, h, oh);
                for j in 0..d.kw {
                    let (xlo, xhi) = d.valid(j, w, ow);
                    if xhi == xlo {
                        continue;
                    }
                    let wv = k[i * d.kw + j];
                    let ix0 = xlo * s + j * dil - pad;
                    for oy in ylo..yhi {
                        let iy = oy * s + i * dil - pad;
                        let src = &plane[iy * w..][..w];
                        let dst = &mut out[oy * ow + xlo..oy * ow + xhi];
                        if s == 1 {
                            dst.iter_mut().zip(&src[ix0..ix0 + (xhi - xlo)]).for_each(|(a, &b)| *a += wv * b);
                        } else {
                            dst.iter_mut().enumerate().for_each(|(t, a)| *a += wv * src[ix0 + t * s]);
                        }
                    }
                }
            }
        }
    }

    fn depthwise_input_grad(&self, dz: &[f32], dxs: &mut [f32]) {
        let d = &self.d;
        let (h, w, oh, ow, s, dil, pad) = (d.h, d.w, d.oh, d.ow, d.p.stride, d.p.dilation, d.p.padding);
        for c in 0..d.c {
            let plane = &mut dxs[c * h * w..][..h * w];
            let g = &dz[c * oh * ow..][..oh * ow];
            let k = &self.w[c * d.kh * d.kw..][..d.kh * d.kw];
            for i in 0..d.kh {
                let (ylo, yhi) = d.valid(i, h, oh);
                for j in 0..d.kw {
                    let (xlo, xhi) = d.valid(j, w, ow);
                    if xhi == xlo {
                        continue;
                    }
                    let wv = k[i * d.kw + j];
                    let ix0 = xlo * s + j * dil - pad;
                    for oy in ylo..yhi {
                        let iy = oy * s + i * dil - pad;
                        let src = &g[oy * ow + xlo..oy * ow + xhi];
                        let dst = &mut plane[iy * w..][..w];
                        if s == 1 {
                            dst[ix0..ix0 + src.len()].iter_mut().zip(src).for_each(|(a, &b)| *a += wv * b);
                        } else {
                            src.iter().enumerate().for_each(|(t, &b)| dst[ix0 + t * s] += wv * b);
                        }
                    }
                }
            }
        }
    }

    fn epilogue(&self, ys: &mut [f32], rs: Option<&[f32]>) {
        let ohw = self.d.ohw();
        for (o, row) in ys.chunks_mut(ohw).enumerate() {
            let b = self.bias[o];
            match rs {
                Some(r) => row.iter_mut().zip(&r[o * ohw..][..ohw]).for_each(|(v, &r)| *v = self.act.apply(*v + b + r)),
                None => row.iter_mut().for_each(|v| *v = self.act.apply(*v + b)),
            }
        }
    }

    pub(crate) fn forward(&self, n: usize, x: &[&[f32]], y: &mut [f32]) {
        let (il, ol) = (self.d.in_len(), self.d.out_len());
        let r = self.residual.then(|| x[1]);
        let one = |s: usize, ys: &mut [f32], par| {
            self.sample(&x[0][s * il..][..il], ys, par);
            self.epilogue(ys, r.map(|r| &r[s * ol..][..ol]));
        };
        if few(n) {
            let par = gemm::Parallelism::Rayon(rayon::current_num_threads());
            y[..n * ol].chunks_mut(ol).enumerate().for_each(|(s, ys)| one(s, ys, par));
        } else {
            y[..n * ol].par_chunks_mut(ol).enumerate().for_each(|(s, ys)| one(s, ys, gemm::Parallelism::None));
        }
    }

    fn input_grad(&self, dz: &[f32], dxs: &mut [f32], par: gemm::Parallelism) {
        let d = &self.d;
        let (ck, og, ohw) = (d.ck(), d.og(), d.ohw());
        match self.form {
            Form::Pointwise => {
                gemm(d.c, ohw, d.o, dxs, true, (&self.w, 1, d.c as isize), (dz, ohw as isize, 1), par);
            }
            Form::Depthwise => self.depthwise_input_grad(dz, dxs),
            Form::General => scratch_b(ck * ohw, |col| {
                for g in 0..d.p.groups {
                    let kg = &self.w[g * og * ck..][..og * ck];
                    gemm(ck, ohw, og, col, false, (kg, 1, ck as isize), (&dz[g * og * ohw..], ohw as isize, 1), par);
                    col2im(d, col, g, dxs);
                }
            }),
        }
    }

    pub(crate) fn backward(&self, n: usize, y: &[f32], dy: &[f32], dx: &mut [Option<&mut [f32]>]) {
        let (il, ol) = (self.d.in_len(), self.d.out_len());
        let (first, rest) = dx.split_at_mut(1);
        let dxc = chunks_opt(first[0].as_deref_mut(), il, n);
        let drc = chunks_opt(if self.residual { rest[0].as_deref_mut() } else { None }, ol, n);
        let one = |s: usize, dxs: Option<&mut [f32]>, drs: Option<&mut [f32]>, par| {
            let (ys, dys) = (&y[s * ol..][..ol], &dy[s * ol..][..ol]);
            scratch_a(ol, |dz| {
                match self.act {
                    Act::None => dz.copy_from_slice(dys),
                    act => dz.iter_mut().zip(dys.iter().zip(ys)).for_each(|(z, (&g, &v))| *z = g * act.slope(v)),
                }
                if let Some(dr) = drs {
                    dr.iter_mut().zip(dz.iter()).for_each(|(a, &b)| *a += b);
                }
                if let Some(dxs) = dxs {
                    self.input_grad(dz, dxs, par);
                }
            })
        };
        let work: Vec<_> = dxc.into_iter().zip(drc).enumerate().collect();
        if few(n) {
            let par = gemm::Parallelism::Rayon(rayon::current_num_threads());
            work.into_iter().for_each(|(s, (a, b))| one(s, a, b, par));
        } else {
            work.into_par_iter().for_each(|(s, (a, b))| one(s, a, b, gemm::Parallelism::None));
        }
    }
}
