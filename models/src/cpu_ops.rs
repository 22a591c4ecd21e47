//! Single-pass CPU custom ops for the layers between convolutions: channel bias, ReLU and max
//! pooling. Each has a backward that touches only what an attack needs. On other devices the
//! candle-op versions in [`crate::ops`] run; the tests check the two against each other.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};

use rayon::prelude::*;

use crate::kernel::{binary, unary, Elem};
use crate::ops::{self, Window};

const CHUNK: usize = 1 << 14;

fn fast(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

// ---- channel bias: y[n, c, ...] = x[n, c, ...] + b[c] ----

struct BiasAdd;

fn bias_add<T: Elem>(x: &[T], b: &[T], inner: usize) -> Vec<T> {
    let c = b.len();
    let mut y = x.to_vec();
    y.par_chunks_mut(c * inner).for_each(|s| {
        for (ch, plane) in s.chunks_mut(inner).enumerate() {
            let v = b[ch];
            plane.iter_mut().for_each(|e| *e += v);
        }
    });
    y
}

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "gauntlet-bias-add"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = l1.dims();
        let inner: usize = dims[2..].iter().product();
        let out = binary!(s1, l1, s2, l2, |x, b| bias_add(x, b, inner));
        Ok((out, l1.shape().clone()))
    }
    fn bwd(&self, x: &Tensor, b: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = x.track_op().then(|| dy.clone());
        let db = if b.track_op() {
            let mut g = dy.sum(0)?;
            while g.rank() > 1 {
                g = g.sum(g.rank() - 1)?;
            }
            Some(g)
        } else {
            None
        };
        Ok((dx, db))
    }
}

/// Adds a per-channel bias (C,) to (N, C, …).
pub fn add_channel_bias(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    if fast(x) && x.dtype() == b.dtype() && x.rank() >= 2 && b.dims() == [x.dim(1)?] {
        return x.contiguous()?.apply_op2(&b.contiguous()?, BiasAdd);
    }
    let mut shape = vec![1usize; x.rank()];
    shape[1] = b.elem_count();
    x.broadcast_add(&b.reshape(shape)?)
}

// ---- ReLU, gradient 0 at 0 ----

struct Relu;
struct ReluGrad;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "gauntlet-relu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn f<T: Elem>(x: &[T]) -> Vec<T> {
            let mut y = x.to_vec();
            y.par_chunks_mut(CHUNK)
                .for_each(|c| c.iter_mut().for_each(|v| *v = if *v > T::default() { *v } else { T::default() }));
            y
        }
        Ok((unary!(s, l, |x| f(x)), l.shape().clone()))
    }
    fn bwd(&self, _x: &Tensor, res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(res.apply_op2_no_bwd(&dy.contiguous()?, &ReluGrad)?))
    }
}

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "gauntlet-relu-grad"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        fn f<T: Elem>(y: &[T], dy: &[T]) -> Vec<T> {
            let mut dx = dy.to_vec();
            dx.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK)).for_each(|(d, y)| {
                d.iter_mut().zip(y).for_each(|(d, &y)| {
                    if y.partial_cmp(&T::default()) != Some(std::cmp::Ordering::Greater) {
                        *d = T::default()
                    }
                })
            });
            dx
        }
        Ok((binary!(s1, l1, s2, l2, |y, dy| f(y, dy)), l1.shape().clone()))
    }
}

/// The input gradient of [`relu`] from its output `y`, without building a graph.
pub fn relu_grad(y: &Tensor, dy: &Tensor) -> Result<Tensor> {
    y.contiguous()?.apply_op2_no_bwd(&dy.contiguous()?, &ReluGrad)
}

/// ReLU with PyTorch's gradient convention (0 at 0).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if fast(x) {
        return x.contiguous()?.apply_op1(Relu);
    }
    ops::relu(x)
}

// ---- max pooling, gradient to the first maximum of each window ----

struct MaxPool(Window);
struct MaxPoolGrad(Window);

pub(crate) struct PoolDims {
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
}

/// Visits every window: `f(output index, input index of the first maximum)`.
#[inline(always)]
pub(crate) fn each_window<T: Elem>(x: &[T], d: &PoolDims, win: Window, mut f: impl FnMut(usize, usize)) {
    let [kh, kw] = win.kernel;
    let [sh, sw] = win.stride;
    if win == Window::square(2, 2, 0) {
        // The common 2×2 / stride 2 case, without branches on the data: selects instead of jumps,
        // since which element of a window is largest is close to random.
        for oy in 0..d.oh {
            let (r0, r1) = (&x[2 * oy * d.w..][..2 * d.ow], &x[(2 * oy + 1) * d.w..][..2 * d.ow]);
            let base = 2 * oy * d.w;
            for ox in 0..d.ow {
                let (a, b, c, e) = (r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]);
                let (mut best, mut at) = (a, 0);
                (best, at) = if b > best { (b, 1) } else { (best, at) };
                (best, at) = if c > best { (c, d.w) } else { (best, at) };
                at = if e > best { d.w + 1 } else { at };
                f(oy * d.ow + ox, base + 2 * ox + at);
            }
        }
        return;
    }
    if win.padding == [0, 0] {
        // Every window lies inside the input (floor mode): no bounds checks.
        for oy in 0..d.oh {
            for ox in 0..d.ow {
                let base = oy * sh * d.w + ox * sw;
                let (mut best, mut at) = (x[base], base);
                for i in 0..kh {
                    let row = base + i * d.w;
                    for (j, &v) in x[row..row + kw].iter().enumerate() {
                        if v > best {
                            best = v;
                            at = row + j;
                        }
                    }
                }
                f(oy * d.ow + ox, at);
            }
        }
        return;
    }
    let [ph, pw] = win.padding;
    for oy in 0..d.oh {
        for ox in 0..d.ow {
            let (mut best, mut at) = (T::NEG_INF, usize::MAX);
            for i in 0..kh {
                let iy = (oy * sh + i) as isize - ph as isize;
                if iy < 0 || iy as usize >= d.h {
                    continue;
                }
                for j in 0..kw {
                    let ix = (ox * sw + j) as isize - pw as isize;
                    if ix < 0 || ix as usize >= d.w {
                        continue;
                    }
                    let idx = iy as usize * d.w + ix as usize;
                    if at == usize::MAX || x[idx] > best {
                        best = x[idx];
                        at = idx;
                    }
                }
            }
            f(oy * d.ow + ox, at);
        }
    }
}

fn pool_dims(l: &Layout, win: Window) -> Result<(usize, PoolDims)> {
    let &[n, c, h, w] = l.dims() else { candle_core::bail!("max pooling expects (N, C, H, W), got {:?}", l.dims()) };
    let Some((oh, ow)) = win.output(h, w) else {
        candle_core::bail!("pooling window {:?} does not fit an input of {h}×{w}", win.kernel)
    };
    Ok((n * c, PoolDims { h, w, oh, ow }))
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "gauntlet-max-pool2d"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (planes, d) = pool_dims(l, self.0)?;
        fn f<T: Elem>(x: &[T], planes: usize, d: &PoolDims, win: Window) -> Vec<T> {
            let mut y = vec![T::default(); planes * d.oh * d.ow];
            y.par_chunks_mut(d.oh * d.ow).zip(x.par_chunks(d.h * d.w)).for_each(|(y, x)| {
                each_window(x, d, win, |o, i| y[o] = x[i]);
            });
            y
        }
        let out = unary!(s, l, |x| f(x, planes, &d, self.0));
        let dims = l.dims();
        Ok((out, Shape::from((dims[0], dims[1], d.oh, d.ow))))
    }
    fn bwd(&self, x: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&dy.contiguous()?, &MaxPoolGrad(self.0))?))
    }
}

impl CustomOp2 for MaxPoolGrad {
    fn name(&self) -> &'static str {
        "gauntlet-max-pool2d-grad"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, d) = pool_dims(l1, self.0)?;
        fn f<T: Elem>(x: &[T], dy: &[T], d: &PoolDims, win: Window) -> Vec<T> {
            let mut dx = vec![T::default(); x.len()];
            dx.par_chunks_mut(d.h * d.w).zip(x.par_chunks(d.h * d.w)).zip(dy.par_chunks(d.oh * d.ow)).for_each(
                |((dx, x), dy)| {
                    each_window(x, d, win, |o, i| {
                        if i != usize::MAX {
                            dx[i] += dy[o]
                        }
                    });
                },
            );
            dx
        }
        Ok((binary!(s1, l1, s2, l2, |x, dy| f(x, dy, &d, self.0)), l1.shape().clone()))
    }
}

/// The input gradient of [`max_pool2d`] at input `x`, without building a graph.
pub fn max_pool2d_grad(x: &Tensor, dy: &Tensor, win: Window) -> Result<Tensor> {
    x.contiguous()?.apply_op2_no_bwd(&dy.contiguous()?, &MaxPoolGrad(win))
}

/// Max pooling (padding counts as −∞) whose gradient goes to the first maximum of each window.
pub fn max_pool2d(x: &Tensor, win: Window) -> Result<Tensor> {
    if fast(x) {
        return x.contiguous()?.apply_op1(MaxPool(win));
    }
    ops::max_pool2d(x, win)
}
