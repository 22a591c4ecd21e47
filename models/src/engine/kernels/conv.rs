//! Convolution with its epilogue (bias, folded batch norm, residual add, activation): im2col +
//! matrix product per sample and group, the matrix product alone for 1×1 convolutions, a direct
//! kernel for depthwise ones.

use rayon::prelude::*;

use super::sgemm::NR;
use super::sgemm::{self, gemm_packed, gemm_packed_par, pack_a, pack_b_at, packed_b_len};
use super::{chunks_opt, few, scratch_a, scratch_b, Act};
use crate::conv::{col2im, col2im_ld, im2col, im2col_rows, Dims};
use crate::kernel::sum_parts;

/// Row `r` (of `row.len()` columns from `col0`) of a packed B of depth `k`.
fn pack_row(row: &[f32], packed: &mut [f32], k: usize, r: usize, col0: usize) {
    let mut c = 0;
    while c < row.len() {
        let col = col0 + c;
        let (p, lane) = (col / NR, col % NR);
        let len = (NR - lane).min(row.len() - c);
        packed[p * k * NR + r * NR + lane..][..len].copy_from_slice(&row[c..c + len]);
        c += len;
    }
}

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
    /// The weights packed for [`sgemm`], per group: forward (og × ck) and transposed (ck × og).
    packed: Option<(PerGroup, PerGroup)>,
    /// Depthwise: the kernel taps that touch the input, with their output rows and columns.
    taps: Vec<Tap>,
}

/// One packed matrix per group.
type PerGroup = Vec<Vec<f32>>;

/// A task's gradient buffers: the input's and the residual's, where wanted.
type Grads<'a> = (Option<&'a mut [f32]>, Option<&'a mut [f32]>);

/// One tap (i, j) of a depthwise kernel: output rows `ylo..yhi` and columns `xlo..xhi` read the
/// input, from row `oy·stride + iy0` and column `ix0` + (ox − xlo)·stride.
#[derive(Debug, Clone, Copy)]
struct Tap {
    k: usize,
    ylo: usize,
    yhi: usize,
    xlo: usize,
    xhi: usize,
    iy0: isize,
    ix0: usize,
}

#[allow(clippy::too_many_arguments)]
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
        let mut taps = Vec::new();
        for i in 0..d.kh {
            let (ylo, yhi) = d.valid(i, d.h, d.oh);
            for j in 0..d.kw {
                let (xlo, xhi) = d.valid(j, d.w, d.ow);
                if yhi > ylo && xhi > xlo {
                    let iy0 = (i * p.dilation) as isize - p.padding as isize;
                    let ix0 = xlo * p.stride + j * p.dilation - p.padding;
                    taps.push(Tap { k: i * d.kw + j, ylo, yhi, xlo, xhi, iy0, ix0 });
                }
            }
        }
        Conv { d, w, bias, act: Act::None, residual: false, form, packed: None, taps }
    }

    /// Packs the weights for the AVX-512 products, once the plan is final.
    pub(crate) fn prepare(&mut self) {
        if !sgemm::available() || self.form == Form::Depthwise {
            return;
        }
        let (ck, og) = (self.d.ck(), self.d.og());
        let groups = self.d.p.groups;
        let fwd = (0..groups).map(|g| pack_a(&self.w[g * og * ck..], ck, 1, og, ck)).collect();
        let bwd = (0..groups).map(|g| pack_a(&self.w[g * og * ck..], 1, ck, ck, og)).collect();
        self.packed = Some((fwd, bwd));
    }

    /// Samples whose columns go through one product: about 256 columns, so that the weights
    /// are read once for several samples where the images are small.
    fn group(&self) -> usize {
        (256 / self.d.ohw()).clamp(1, 64)
    }

    /// The forward pass of samples `first..` into `ys` (theirs, one after another) through the
    /// packed products; `par` splits each product's columns among the threads.
    fn forward_packed(&self, x: &[f32], r: Option<&[f32]>, first: usize, ys: &mut [f32], par: bool) {
        let d = &self.d;
        let (ck, og, ohw, il, ol) = (d.ck(), d.og(), d.ohw(), d.in_len(), d.out_len());
        let (fwd, _) = self.packed.as_ref().expect("packed");
        let cnt = ys.len() / ol;
        let ncol = cnt * ohw;
        let pl = packed_b_len(ck, ncol);
        // One sample: the product lands in its output directly.
        let direct = cnt == 1;
        scratch_a(pl + if direct { 0 } else { og * ncol }, |buf| {
            let (packed, c) = buf.split_at_mut(pl);
            for g in 0..d.p.groups {
                for s in 0..cnt {
                    let xs = &x[(first + s) * il..][..il];
                    if self.form == Form::Pointwise {
                        pack_b_at(xs, ohw, ck, ohw, packed, s * ohw);
                    } else {
                        // Each row of the column matrix straight into its panels.
                        scratch_b(ohw, |row| {
                            im2col_rows(d, xs, g, |r, fill| {
                                fill(row);
                                pack_row(row, packed, ck, r, s * ohw);
                            })
                        });
                    }
                }
                let product = |dst: &mut [f32]| {
                    if par {
                        gemm_packed_par(og, ncol, ck, &fwd[g], packed, dst, ncol, false);
                    } else {
                        gemm_packed(og, ncol, ck, &fwd[g], packed, dst, ncol, false);
                    }
                };
                if direct {
                    product(&mut ys[g * og * ohw..][..og * ohw]);
                    continue;
                }
                product(c);
                for s in 0..cnt {
                    for o in 0..og {
                        ys[s * ol + (g * og + o) * ohw..][..ohw].copy_from_slice(&c[o * ncol + s * ohw..][..ohw]);
                    }
                }
            }
        });
        for (s, y) in ys.chunks_mut(ol).enumerate() {
            self.epilogue(y, r.map(|r| &r[(first + s) * ol..][..ol]));
        }
    }

    /// The backward pass of samples `first..` through the packed products: `dxs` and `drs` are
    /// theirs (one after another).
    #[allow(clippy::too_many_arguments)]
    fn backward_packed(
        &self,
        y: &[f32],
        dy: &[f32],
        first: usize,
        cnt: usize,
        dxs: Option<&mut [f32]>,
        drs: Option<&mut [f32]>,
        par: bool,
    ) {
        let d = &self.d;
        let (ck, og, ohw, il, ol, o) = (d.ck(), d.og(), d.ohw(), d.in_len(), d.out_len(), d.o);
        let (_, bwd) = self.packed.as_ref().expect("packed");
        let ncol = cnt * ohw;
        let pl = packed_b_len(og, ncol);
        let groups = d.p.groups;
        // One image through a 1×1 convolution: the product accumulates into its gradient.
        let direct = cnt == 1 && self.form == Form::Pointwise;
        scratch_a(groups * pl + if direct { 0 } else { ck * ncol }, |buf| {
            let (packed, col) = buf.split_at_mut(groups * pl);
            let mut drs = drs;
            // The gradient before the activation, row by row straight into the packed panels
            // (one packed matrix per group), and into the residual's gradient.
            scratch_b(ohw, |row| {
                for s in 0..cnt {
                    let (ys, dys) = (&y[(first + s) * ol..][..ol], &dy[(first + s) * ol..][..ol]);
                    for c in 0..o {
                        let (yr, gr) = (&ys[c * ohw..][..ohw], &dys[c * ohw..][..ohw]);
                        match self.act {
                            Act::None => row.copy_from_slice(gr),
                            act => {
                                row.iter_mut().zip(gr.iter().zip(yr)).for_each(|(z, (&g, &v))| *z = g * act.slope(v))
                            }
                        }
                        if let Some(dr) = drs.as_deref_mut() {
                            dr[s * ol + c * ohw..][..ohw].iter_mut().zip(row.iter()).for_each(|(a, &b)| *a += b);
                        }
                        let (g, r) = (c / og, c % og);
                        pack_row(row, &mut packed[g * pl..][..pl], og, r, s * ohw);
                    }
                }
            });
            let Some(dx) = dxs else { return };
            for g in 0..groups {
                let pg = &packed[g * pl..][..pl];
                let product = |dst: &mut [f32], acc: bool| {
                    if par {
                        gemm_packed_par(ck, ncol, og, &bwd[g], pg, dst, ncol, acc);
                    } else {
                        gemm_packed(ck, ncol, og, &bwd[g], pg, dst, ncol, acc);
                    }
                };
                if direct {
                    product(&mut dx[..il], true);
                    continue;
                }
                product(col, false);
                for s in 0..cnt {
                    let dxs = &mut dx[s * il..][..il];
                    if self.form == Form::Pointwise {
                        for c in 0..ck {
                            dxs[c * ohw..][..ohw]
                                .iter_mut()
                                .zip(&col[c * ncol + s * ohw..][..ohw])
                                .for_each(|(a, &b)| *a += b);
                        }
                    } else {
                        col2im_ld(d, &col[s * ohw..], ncol, g, dxs);
                    }
                }
            }
        });
    }

    /// The gradients of the weights (O × C/groups·kh·kw) and of the bias from the layer's input
    /// `x`, output `y` and output gradient `dy` (training): per sample, dW += dZ · colᵀ with
    /// dZ the gradient before the activation. Samples go in fixed groups to the threads and the
    /// groups' sums are added in order, so the result does not depend on the thread count.
    pub(crate) fn weight_grad(&self, n: usize, x: &[f32], y: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let d = &self.d;
        let (ck, og, ohw, il, ol) = (d.ck(), d.og(), d.ohw(), d.in_len(), d.out_len());
        let wl = d.o * ck;
        let chunk = 16;
        let samples: Vec<usize> = (0..n).collect();
        let parts: Vec<Vec<f32>> = samples
            .par_chunks(chunk)
            .map(|ss| {
                // dW then db, in one vector.
                let mut acc = vec![0.0f32; wl + d.o];
                let mut dz = vec![0.0f32; ol];
                let mut col = vec![0.0f32; if self.form == Form::Pointwise { 0 } else { ck * ohw }];
                for &s in ss {
                    let (ys, dys) = (&y[s * ol..][..ol], &dy[s * ol..][..ol]);
                    match self.act {
                        Act::None => dz.copy_from_slice(dys),
                        act => dz.iter_mut().zip(dys.iter().zip(ys)).for_each(|(z, (&g, &v))| *z = g * act.slope(v)),
                    }
                    let (dw, db) = acc.split_at_mut(wl);
                    for (o, b) in db.iter_mut().enumerate() {
                        *b += dz[o * ohw..][..ohw].iter().sum::<f32>();
                    }
                    let xs = &x[s * il..][..il];
                    for g in 0..d.p.groups {
                        let cols: &[f32] = if self.form == Form::Pointwise {
                            xs
                        } else {
                            im2col(d, xs, g, &mut col);
                            &col
                        };
                        // dW_g (og × ck) += dZ_g (og × ohw) · colᵀ (ohw × ck)
                        gemm(
                            og,
                            ck,
                            ohw,
                            &mut dw[g * og * ck..][..og * ck],
                            true,
                            (&dz[g * og * ohw..], ohw as isize, 1),
                            (cols, 1, ohw as isize),
                            gemm::Parallelism::None,
                        );
                    }
                }
                acc
            })
            .collect();
        let mut sum = sum_parts(parts, wl + d.o);
        let db = sum.split_off(wl);
        (sum, db)
    }

    /// New weights (O × C/groups·kh·kw) and bias, repacked for the products.
    pub(crate) fn set_weights(&mut self, w: &[f32], bias: &[f32]) {
        self.w.copy_from_slice(w);
        self.bias.copy_from_slice(bias);
        self.packed = None;
        self.prepare();
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
        let (h, w, oh, ow, s) = (d.h, d.w, d.oh, d.ow, d.p.stride);
        let kk = d.kh * d.kw;
        for c in 0..d.c {
            let plane = &xs[c * h * w..][..h * w];
            let out = &mut ys[c * oh * ow..][..oh * ow];
            out.fill(0.0);
            let k = &self.w[c * kk..][..kk];
            for t in &self.taps {
                let wv = k[t.k];
                let n = t.xhi - t.xlo;
                for oy in t.ylo..t.yhi {
                    let iy = (oy * s) as isize + t.iy0;
                    let src = &plane[iy as usize * w..][..w];
                    let dst = &mut out[oy * ow + t.xlo..][..n];
                    if s == 1 {
                        dst.iter_mut().zip(&src[t.ix0..t.ix0 + n]).for_each(|(a, &b)| *a += wv * b);
                    } else {
                        dst.iter_mut().enumerate().for_each(|(u, a)| *a += wv * src[t.ix0 + u * s]);
                    }
                }
            }
        }
    }

    fn depthwise_input_grad(&self, dz: &[f32], dxs: &mut [f32]) {
        let d = &self.d;
        let (h, w, oh, ow, s) = (d.h, d.w, d.oh, d.ow, d.p.stride);
        let kk = d.kh * d.kw;
        for c in 0..d.c {
            let plane = &mut dxs[c * h * w..][..h * w];
            let g = &dz[c * oh * ow..][..oh * ow];
            let k = &self.w[c * kk..][..kk];
            for t in &self.taps {
                let wv = k[t.k];
                let n = t.xhi - t.xlo;
                for oy in t.ylo..t.yhi {
                    let iy = (oy * s) as isize + t.iy0;
                    let src = &g[oy * ow + t.xlo..][..n];
                    let dst = &mut plane[iy as usize * w..][..w];
                    if s == 1 {
                        dst[t.ix0..t.ix0 + n].iter_mut().zip(src).for_each(|(a, &b)| *a += wv * b);
                    } else {
                        src.iter().enumerate().for_each(|(u, &b)| dst[t.ix0 + u * s] += wv * b);
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
        if self.packed.is_some() {
            let g = self.group();
            let tasks = n.div_ceil(g);
            let par = tasks < rayon::current_num_threads();
            let work = |(t, ys): (usize, &mut [f32])| self.forward_packed(x[0], r, t * g, ys, par);
            if par {
                y[..n * ol].chunks_mut(g * ol).enumerate().for_each(work);
            } else {
                y[..n * ol].par_chunks_mut(g * ol).enumerate().for_each(work);
            }
            return;
        }
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
        if self.packed.is_some() {
            let g = self.group();
            let tasks = n.div_ceil(g);
            let par = tasks < rayon::current_num_threads();
            let dxc = chunks_opt(first[0].as_deref_mut(), g * il, tasks);
            let drc = chunks_opt(if self.residual { rest[0].as_deref_mut() } else { None }, g * ol, tasks);
            let work: Vec<_> = dxc.into_iter().zip(drc).enumerate().collect();
            let one = |(t, (dxs, drs)): (usize, Grads)| {
                let cnt = g.min(n - t * g);
                self.backward_packed(y, dy, t * g, cnt, dxs, drs, par)
            };
            if par {
                work.into_iter().for_each(one);
            } else {
                work.into_par_iter().for_each(one);
            }
            return;
        }
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
