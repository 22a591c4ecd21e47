//! 2-D convolution on the CPU as a candle custom op, built for attacks.
//!
//! Forward: per sample, im2col into a small buffer and one `gemm` per group; samples in parallel.
//! Backward: the input gradient by `gemm` with the transposed kernel and col2im; the kernel
//! gradient only when the kernel itself is tracked (training) — an attack never pays for it.
//! candle's own conv2d backward always computes the kernel gradient and goes through a slow
//! `conv_transpose2d`. Other devices and dtypes use candle's conv2d.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::kernel::{binary, Elem};

/// Stride, padding, dilation (equal on both axes) and groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvParams {
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

/// Every size the kernels need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) o: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
    pub(crate) p: ConvParams,
}

impl Dims {
    pub(crate) fn new(x: &[usize], k: &[usize], p: ConvParams) -> Result<Dims> {
        let (&[n, c, h, w], &[o, cg, kh, kw]) = (x, k) else {
            candle_core::bail!("conv2d expects a 4-D input and a 4-D kernel, got {x:?} and {k:?}")
        };
        if p.groups == 0 || c % p.groups != 0 || o % p.groups != 0 || cg != c / p.groups {
            candle_core::bail!("conv2d: input channels {c}, kernel {k:?} and groups {} do not fit", p.groups)
        }
        let out = |size: usize, k: usize| {
            let span = p.dilation * (k - 1) + 1;
            (size + 2 * p.padding).checked_sub(span).map(|v| v / p.stride + 1)
        };
        let (Some(oh), Some(ow)) = (out(h, kh), out(w, kw)) else {
            candle_core::bail!(
                "conv2d: kernel {kh}×{kw} (dilation {}) larger than the padded input {h}×{w}",
                p.dilation
            )
        };
        Ok(Dims { n, c, h, w, o, kh, kw, oh, ow, p })
    }
    pub(crate) fn cg(&self) -> usize {
        self.c / self.p.groups
    }
    pub(crate) fn og(&self) -> usize {
        self.o / self.p.groups
    }
    /// Rows of one group's column matrix.
    pub(crate) fn ck(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    pub(crate) fn ohw(&self) -> usize {
        self.oh * self.ow
    }
    pub(crate) fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }
    pub(crate) fn out_len(&self) -> usize {
        self.o * self.ohw()
    }
    /// Output positions `lo..hi` along an axis whose input index `o·stride + k·dilation − padding`
    /// falls inside `0..size`.
    #[inline]
    pub(crate) fn valid(&self, k: usize, size: usize, out: usize) -> (usize, usize) {
        let (s, off) = (self.p.stride, k * self.p.dilation);
        let lo = if self.p.padding > off { (self.p.padding - off).div_ceil(s) } else { 0 };
        let hi = if size + self.p.padding > off { ((size - 1 + self.p.padding - off) / s + 1).min(out) } else { 0 };
        (lo.min(hi), hi)
    }
}

/// One sample's one group: col (ck × ohw) from x (C × H × W).
pub(crate) fn im2col<T: Elem>(d: &Dims, x: &[T], g: usize, col: &mut [T]) {
    im2col_ld(d, x, g, col, d.ohw())
}

/// [`im2col`] into rows `ld` apart (the columns of several samples side by side).
pub(crate) fn im2col_ld<T: Elem>(d: &Dims, x: &[T], g: usize, col: &mut [T], ld: usize) {
    let ohw = d.ohw();
    im2col_rows(d, x, g, |r, fill| fill(&mut col[r * ld..][..ohw]));
}

/// The rows of one sample's one group's column matrix, one at a time: `each(r, fill)` is called
/// for row r in order, and `fill(row)` writes its `ohw` values into `row`.
pub(crate) fn im2col_rows<T: Elem>(d: &Dims, x: &[T], g: usize, mut each: impl FnMut(usize, &dyn Fn(&mut [T]))) {
    let (cg, s) = (d.cg(), d.p.stride);
    for cc in 0..cg {
        let plane = &x[(g * cg + cc) * d.h * d.w..][..d.h * d.w];
        for i in 0..d.kh {
            let (ylo, yhi) = d.valid(i, d.h, d.oh);
            for j in 0..d.kw {
                let (xlo, xhi) = d.valid(j, d.w, d.ow);
                let fill = |row: &mut [T]| {
                    row[..ylo * d.ow].fill(T::default());
                    row[yhi * d.ow..].fill(T::default());
                    for oy in ylo..yhi {
                        let iy = oy * s + i * d.p.dilation - d.p.padding;
                        let src = &plane[iy * d.w..][..d.w];
                        let dst = &mut row[oy * d.ow..][..d.ow];
                        dst[..xlo].fill(T::default());
                        dst[xhi..].fill(T::default());
                        if xhi == xlo {
                            continue;
                        }
                        let ix0 = (xlo * s + j * d.p.dilation) - d.p.padding;
                        if s == 1 {
                            dst[xlo..xhi].copy_from_slice(&src[ix0..ix0 + (xhi - xlo)]);
                        } else {
                            for (n, v) in dst[xlo..xhi].iter_mut().enumerate() {
                                *v = src[ix0 + n * s];
                            }
                        }
                    }
                };
                each((cc * d.kh + i) * d.kw + j, &fill);
            }
        }
    }
}

/// Adds col (ck × ohw) back into dx (C × H × W) for group g.
pub(crate) fn col2im<T: Elem>(d: &Dims, col: &[T], g: usize, dx: &mut [T]) {
    col2im_ld(d, col, d.ohw(), g, dx)
}

/// [`col2im`] from rows `ld` apart.
pub(crate) fn col2im_ld<T: Elem>(d: &Dims, col: &[T], ld: usize, g: usize, dx: &mut [T]) {
    let (cg, ohw, s) = (d.cg(), d.ohw(), d.p.stride);
    for cc in 0..cg {
        let plane = &mut dx[(g * cg + cc) * d.h * d.w..][..d.h * d.w];
        for i in 0..d.kh {
            let (ylo, yhi) = d.valid(i, d.h, d.oh);
            for j in 0..d.kw {
                let (xlo, xhi) = d.valid(j, d.w, d.ow);
                let row = &col[((cc * d.kh + i) * d.kw + j) * ld..][..ohw];
                if xhi == xlo {
                    continue;
                }
                for oy in ylo..yhi {
                    let iy = oy * s + i * d.p.dilation - d.p.padding;
                    let dst = &mut plane[iy * d.w..][..d.w];
                    let src = &row[oy * d.ow + xlo..oy * d.ow + xhi];
                    let ix0 = (xlo * s + j * d.p.dilation) - d.p.padding;
                    if s == 1 {
                        dst[ix0..ix0 + src.len()].iter_mut().zip(src).for_each(|(a, &b)| *a += b);
                    } else {
                        for (n, &v) in src.iter().enumerate() {
                            dst[ix0 + n * s] += v;
                        }
                    }
                }
            }
        }
    }
}

/// dst (m×n, row-major) = [dst +] lhs·rhs on this thread (samples run in parallel instead).
pub(crate) fn gemm<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    accumulate: bool,
    lhs: (&[T], isize, isize),
    rhs: (&[T], isize, isize),
) {
    crate::kernel::gemm(m, n, k, dst, accumulate, lhs, rhs, gemm::Parallelism::None)
}

fn forward<T: Elem>(d: &Dims, x: &[T], k: &[T]) -> Vec<T> {
    let mut out = vec![T::default(); d.n * d.out_len()];
    let (ck, og, ohw) = (d.ck(), d.og(), d.ohw());
    out.par_chunks_mut(d.out_len()).zip(x.par_chunks(d.in_len())).for_each_init(
        || vec![T::default(); ck * ohw],
        |col, (y, xs)| {
            for g in 0..d.p.groups {
                im2col(d, xs, g, col);
                let kg = &k[g * og * ck..][..og * ck];
                gemm(og, ohw, ck, &mut y[g * og * ohw..], false, (kg, ck as isize, 1), (col, ohw as isize, 1));
            }
        },
    );
    out
}

fn input_grad<T: Elem>(d: &Dims, dy: &[T], k: &[T]) -> Vec<T> {
    let mut dx = vec![T::default(); d.n * d.in_len()];
    let (ck, og, ohw) = (d.ck(), d.og(), d.ohw());
    dx.par_chunks_mut(d.in_len()).zip(dy.par_chunks(d.out_len())).for_each_init(
        || vec![T::default(); ck * ohw],
        |col, (dxs, dys)| {
            for g in 0..d.p.groups {
                let kg = &k[g * og * ck..][..og * ck];
                // col (ck × ohw) = kgᵀ (ck × og) · dy_g (og × ohw)
                gemm(ck, ohw, og, col, false, (kg, 1, ck as isize), (&dys[g * og * ohw..], ohw as isize, 1));
                col2im(d, col, g, dxs);
            }
        },
    );
    dx
}

fn kernel_grad<T: Elem>(d: &Dims, x: &[T], dy: &[T]) -> Vec<T> {
    let (ck, og, ohw) = (d.ck(), d.og(), d.ohw());
    let klen = d.o * ck;
    x.par_chunks(d.in_len())
        .zip(dy.par_chunks(d.out_len()))
        .fold(
            || (vec![T::default(); klen], vec![T::default(); ck * ohw]),
            |(mut dk, mut col), (xs, dys)| {
                for g in 0..d.p.groups {
                    im2col(d, xs, g, &mut col);
                    // dk_g (og × ck) += dy_g (og × ohw) · colᵀ (ohw × ck)
                    gemm(
                        og,
                        ck,
                        ohw,
                        &mut dk[g * og * ck..],
                        true,
                        (&dys[g * og * ohw..], ohw as isize, 1),
                        (&col, 1, ohw as isize),
                    );
                }
                (dk, col)
            },
        )
        .map(|(dk, _)| dk)
        .reduce(
            || vec![T::default(); klen],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        )
}

struct Conv(ConvParams);
struct ConvInputGrad {
    p: ConvParams,
    input: [usize; 4],
}
struct ConvKernelGrad {
    p: ConvParams,
    kernel: [usize; 4],
}

impl CustomOp2 for Conv {
    fn name(&self) -> &'static str {
        "gauntlet-conv2d"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = Dims::new(l1.dims(), l2.dims(), self.0)?;
        let out = binary!(s1, l1, s2, l2, |x, k| forward(&d, x, k));
        Ok((out, Shape::from((d.n, d.o, d.oh, d.ow))))
    }
    fn bwd(&self, x: &Tensor, k: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let input: [usize; 4] = x.dims4()?.into();
        let dx = x.track_op().then(|| dy.apply_op2_no_bwd(k, &ConvInputGrad { p: self.0, input })).transpose()?;
        let kernel: [usize; 4] = k.dims4()?.into();
        let dk = k.track_op().then(|| x.apply_op2_no_bwd(&dy, &ConvKernelGrad { p: self.0, kernel })).transpose()?;
        Ok((dx, dk))
    }
}

impl CustomOp2 for ConvInputGrad {
    fn name(&self) -> &'static str {
        "gauntlet-conv2d-input-grad"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = Dims::new(&self.input, l2.dims(), self.p)?;
        let dx = binary!(s1, l1, s2, l2, |dy, k| input_grad(&d, dy, k));
        Ok((dx, Shape::from(self.input.to_vec())))
    }
}

impl CustomOp2 for ConvKernelGrad {
    fn name(&self) -> &'static str {
        "gauntlet-conv2d-kernel-grad"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = Dims::new(l1.dims(), &self.kernel, self.p)?;
        let dk = binary!(s1, l1, s2, l2, |x, dy| kernel_grad(&d, x, dy));
        Ok((dk, Shape::from(self.kernel.to_vec())))
    }
}

/// The input gradient of [`conv2d`] for an input of shape `input`, without building a graph.
pub fn conv2d_input_grad(dy: &Tensor, kernel: &Tensor, p: ConvParams, input: [usize; 4]) -> Result<Tensor> {
    dy.contiguous()?.apply_op2_no_bwd(&kernel.contiguous()?, &ConvInputGrad { p, input })
}

/// Convolution of (N, C, H, W) with a kernel (O, C/groups, kh, kw); the fast path on CPU f32/f64.
pub fn conv2d(x: &Tensor, kernel: &Tensor, p: ConvParams) -> Result<Tensor> {
    let fast = x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) && x.dtype() == kernel.dtype();
    if !fast {
        return x.conv2d(kernel, p.padding, p.stride, p.dilation, p.groups);
    }
    x.contiguous()?.apply_op2(&kernel.contiguous()?, Conv(p))
}
