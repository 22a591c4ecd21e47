//! Fused CPU kernels for the runs of layers that dominate a CNN's cost in an attack:
//! conv2d → [batch norm] → [bias] → [ReLU] → [max pool], and linear → [bias] → [ReLU].
//!
//! One pass per sample does what the layer-by-layer path does in five: the convolution output is
//! formed in a per-thread buffer that stays in cache, the bias is its starting value, and ReLU and
//! pooling read it once to write the (four times smaller) pooled output. ReLU and max pooling
//! commute (both monotone), so a window's value is `max(0, max window)` and its gradient goes to
//! the window's first maximum when that is positive — exactly what ReLU (gradient 0 at 0) followed
//! by PyTorch's first-maximum routing gives. The forward pass keeps only those switch positions for
//! the backward pass, not the convolution output. Batch norm in inference mode is folded into the
//! kernel and bias once, when the model is loaded.
//!
//! Only the input gradient exists here: the fused steps are used when no weight is being trained.

use candle_core::{DType, Device, Layout, Result, Storage, StorageRef, Tensor, WithDType};
use rayon::prelude::*;

use crate::conv::{col2im, gemm, im2col, ConvParams, Dims};
use crate::cpu_ops::{each_window, PoolDims};
use crate::kernel::Elem;
use crate::ops::Window;

/// A switch that routes no gradient (the window's maximum was not positive under ReLU).
const NO_SWITCH: u32 = u32::MAX;

/// The positions, within each channel's convolution output, that max pooling selected.
pub(crate) type Switches = Vec<u32>;

/// Read access to a contiguous CPU tensor's elements.
struct CpuView<'a>(StorageRef<'a>, &'a Layout);

impl CpuView<'_> {
    fn of(t: &Tensor) -> CpuView<'_> {
        let (s, l) = t.storage_and_layout();
        CpuView(s, l)
    }
    fn slice<T: WithDType>(&self) -> Result<&[T]> {
        let Storage::Cpu(cpu) = &*self.0 else { candle_core::bail!("fused kernels run on the CPU") };
        let Some((a, b)) = self.1.contiguous_offsets() else {
            candle_core::bail!("fused kernels expect contiguous tensors")
        };
        Ok(&T::cpu_storage_as_slice(cpu)?[a..b])
    }
}

/// ReLU's active side; NaN counts as inactive, as in the ReLU op.
#[inline]
fn positive<T: Elem>(v: T) -> bool {
    v > T::default()
}

fn relu_in_place<T: Elem>(v: &mut [T]) {
    v.iter_mut().filter(|v| !positive(**v)).for_each(|v| *v = T::default());
}

fn unsupported(dtype: DType) -> candle_core::Error {
    candle_core::Error::Msg(format!("fused kernels support f32 and f64, not {dtype:?}"))
}

/// conv2d with an optional bias, ReLU and max pooling, as one step.
#[derive(Debug, Clone)]
pub(crate) struct ConvBlock {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub conv: ConvParams,
    pub relu: bool,
    pub pool: Option<Window>,
}

impl ConvBlock {
    fn dims(&self, x: &[usize]) -> Result<(Dims, Option<PoolDims>)> {
        let d = Dims::new(x, self.weight.dims(), self.conv)?;
        let pool = match self.pool {
            Some(win) => {
                let Some((oh, ow)) = win.output(d.oh, d.ow) else {
                    candle_core::bail!("pooling window {:?} does not fit an input of {}×{}", win.kernel, d.oh, d.ow)
                };
                Some(PoolDims { h: d.oh, w: d.ow, oh, ow })
            }
            None => None,
        };
        Ok((d, pool))
    }

    /// The block's output, and the pooling switches the backward pass needs (empty without pooling).
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Switches)> {
        match x.dtype() {
            DType::F32 => self.forward_as::<f32>(x),
            DType::F64 => self.forward_as::<f64>(x),
            dt => Err(unsupported(dt)),
        }
    }

    fn forward_as<T: Elem + WithDType>(&self, x: &Tensor) -> Result<(Tensor, Switches)> {
        let x = x.contiguous()?;
        let (d, pd) = self.dims(x.dims())?;
        let (xv, kv) = (CpuView::of(&x), CpuView::of(&self.weight));
        let bv = self.bias.as_ref().map(CpuView::of);
        let bias = bv.as_ref().map(|b| b.slice::<T>()).transpose()?;
        let pool = self.pool.zip(pd);
        let (y, switches) = conv_block(&d, xv.slice::<T>()?, kv.slice::<T>()?, bias, self.relu, pool.as_ref());
        let (oh, ow) = pool.map_or((d.oh, d.ow), |(_, p)| (p.oh, p.ow));
        Ok((Tensor::from_vec(y, (d.n, d.o, oh, ow), &Device::Cpu)?, switches))
    }

    /// d loss / d input from d loss / d output `dy`, given the input's dims, the block's output `y`
    /// and the switches from [`ConvBlock::forward`].
    pub fn input_grad(&self, x: &[usize], y: &Tensor, switches: &[u32], dy: &Tensor) -> Result<Tensor> {
        match dy.dtype() {
            DType::F32 => self.input_grad_as::<f32>(x, y, switches, dy),
            DType::F64 => self.input_grad_as::<f64>(x, y, switches, dy),
            dt => Err(unsupported(dt)),
        }
    }

    fn input_grad_as<T: Elem + WithDType>(&self, x: &[usize], y: &Tensor, sw: &[u32], dy: &Tensor) -> Result<Tensor> {
        let (d, pd) = self.dims(x)?;
        let (dy, y) = (dy.contiguous()?, y.contiguous()?);
        let (dyv, yv, kv) = (CpuView::of(&dy), CpuView::of(&y), CpuView::of(&self.weight));
        let pool = self.pool.zip(pd);
        let dx =
            conv_block_grad(&d, kv.slice::<T>()?, self.relu, pool.as_ref(), yv.slice::<T>()?, sw, dyv.slice::<T>()?);
        Tensor::from_vec(dx, x, &Device::Cpu)
    }
}

/// Per-thread scratch: one im2col matrix and one convolution output of one sample.
fn scratch<T: Elem>(d: &Dims, conv_out: bool) -> (Vec<T>, Vec<T>) {
    (vec![T::default(); d.ck() * d.ohw()], vec![T::default(); if conv_out { d.out_len() } else { 0 }])
}

fn conv_block<T: Elem>(
    d: &Dims,
    x: &[T],
    k: &[T],
    bias: Option<&[T]>,
    relu: bool,
    pool: Option<&(Window, PoolDims)>,
) -> (Vec<T>, Switches) {
    let (ck, og, ohw) = (d.ck(), d.og(), d.ohw());
    let plane = pool.map_or(ohw, |(_, p)| p.oh * p.ow);
    let out_len = d.o * plane;
    let mut y = vec![T::default(); d.n * out_len];
    let mut switches = vec![0u32; if pool.is_some() { d.n * out_len } else { 0 }];
    // z (O × OH·OW) = conv(x) for one sample; the bias is added where z is read next (a per-channel
    // constant moves neither a window's maximum nor its position).
    let convolve = |z: &mut [T], xs: &[T], col: &mut [T]| {
        for g in 0..d.p.groups {
            im2col(d, xs, g, col);
            let kg = &k[g * og * ck..][..og * ck];
            gemm(og, ohw, ck, &mut z[g * og * ohw..], false, (kg, ck as isize, 1), (col, ohw as isize, 1));
        }
    };
    let bias_of = |ch: usize| bias.map_or(T::default(), |b| b[ch]);
    let sample = |(col, buf): &mut (Vec<T>, Vec<T>), ys: &mut [T], xs: &[T], sws: Option<&mut [u32]>| match (pool, sws)
    {
        (Some((win, pd)), Some(sws)) => {
            convolve(buf, xs, col);
            for ch in 0..d.o {
                let (zc, b) = (&buf[ch * ohw..][..ohw], bias_of(ch));
                let yc = &mut ys[ch * plane..][..plane];
                let sc = &mut sws[ch * plane..][..plane];
                each_window(zc, pd, *win, |o, i| {
                    let v = if i == usize::MAX { T::NEG_INF } else { zc[i] + b };
                    (yc[o], sc[o]) = if relu && !positive(v) {
                        (T::default(), NO_SWITCH)
                    } else {
                        (v, if i == usize::MAX { NO_SWITCH } else { i as u32 })
                    };
                });
            }
        }
        _ => {
            convolve(ys, xs, col);
            for (ch, yc) in ys.chunks_mut(ohw).enumerate() {
                let b = bias_of(ch);
                if relu {
                    yc.iter_mut().for_each(|v| *v = if positive(*v + b) { *v + b } else { T::default() });
                } else if bias.is_some() {
                    yc.iter_mut().for_each(|v| *v += b);
                }
            }
        }
    };
    let init = || scratch::<T>(d, pool.is_some());
    if pool.is_some() {
        y.par_chunks_mut(out_len)
            .zip(switches.par_chunks_mut(out_len))
            .zip(x.par_chunks(d.in_len()))
            .for_each_init(init, |s, ((ys, sws), xs)| sample(s, ys, xs, Some(sws)));
    } else {
        y.par_chunks_mut(out_len)
            .zip(x.par_chunks(d.in_len()))
            .for_each_init(init, |s, (ys, xs)| sample(s, ys, xs, None));
    }
    (y, switches)
}

fn conv_block_grad<T: Elem>(
    d: &Dims,
    k: &[T],
    relu: bool,
    pool: Option<&(Window, PoolDims)>,
    y: &[T],
    switches: &[u32],
    dy: &[T],
) -> Vec<T> {
    let (ck, og, ohw) = (d.ck(), d.og(), d.ohw());
    let plane = pool.map_or(ohw, |(_, p)| p.oh * p.ow);
    let out_len = d.o * plane;
    let mut dx = vec![T::default(); d.n * d.in_len()];
    dx.par_chunks_mut(d.in_len()).zip(dy.par_chunks(out_len)).enumerate().for_each_init(
        || scratch::<T>(d, pool.is_some() || relu),
        |(col, buf), (s, (dxs, dys))| {
            let dz: &[T] = if pool.is_some() {
                buf.fill(T::default());
                let sws = &switches[s * out_len..][..out_len];
                for ch in 0..d.o {
                    let bc = &mut buf[ch * ohw..][..ohw];
                    for (&i, &g) in sws[ch * plane..][..plane].iter().zip(&dys[ch * plane..][..plane]) {
                        if i != NO_SWITCH {
                            bc[i as usize] += g;
                        }
                    }
                }
                buf
            } else if relu {
                let ys = &y[s * out_len..][..out_len];
                for ((b, &g), &v) in buf.iter_mut().zip(dys).zip(ys) {
                    *b = if v > T::default() { g } else { T::default() };
                }
                buf
            } else {
                dys
            };
            for g in 0..d.p.groups {
                let kg = &k[g * og * ck..][..og * ck];
                // col (ck × ohw) = kgᵀ (ck × og) · dz_g (og × ohw)
                gemm(ck, ohw, og, col, false, (kg, 1, ck as isize), (&dz[g * og * ohw..], ohw as isize, 1));
                col2im(d, col, g, dxs);
            }
        },
    );
    dx
}

/// linear with an optional bias and ReLU, as one step; input (N, in), weight (out, in).
#[derive(Debug, Clone)]
pub(crate) struct DenseBlock {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub relu: bool,
}

impl DenseBlock {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match x.dtype() {
            DType::F32 => self.forward_as::<f32>(x),
            DType::F64 => self.forward_as::<f64>(x),
            dt => Err(unsupported(dt)),
        }
    }

    fn forward_as<T: Elem + WithDType>(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        let ((n, i), (o, i2)) = (x.dims2()?, self.weight.dims2()?);
        if i != i2 {
            candle_core::bail!("linear: input has {i} features, the weight expects {i2}")
        }
        let (xv, wv) = (CpuView::of(&x), CpuView::of(&self.weight));
        let bv = self.bias.as_ref().map(CpuView::of);
        let mut y = vec![T::default(); n * o];
        if let Some(b) = &bv {
            let b = b.slice::<T>()?;
            y.chunks_mut(o).for_each(|r| r.copy_from_slice(b));
        }
        let (xs, ws) = (xv.slice::<T>()?, wv.slice::<T>()?);
        crate::kernel::gemm_rows(n, o, i, &mut y, bv.is_some(), (xs, i as isize, 1), (ws, 1, i as isize));
        if self.relu {
            relu_in_place(&mut y);
        }
        Tensor::from_vec(y, (n, o), &Device::Cpu)
    }

    /// d loss / d input from d loss / d output `dy` and the block's output `y`.
    pub fn input_grad(&self, y: &Tensor, dy: &Tensor) -> Result<Tensor> {
        match dy.dtype() {
            DType::F32 => self.input_grad_as::<f32>(y, dy),
            DType::F64 => self.input_grad_as::<f64>(y, dy),
            dt => Err(unsupported(dt)),
        }
    }

    fn input_grad_as<T: Elem + WithDType>(&self, y: &Tensor, dy: &Tensor) -> Result<Tensor> {
        let (dy, y) = (dy.contiguous()?, y.contiguous()?);
        let ((n, o), (_, i)) = (dy.dims2()?, self.weight.dims2()?);
        let (dyv, yv, wv) = (CpuView::of(&dy), CpuView::of(&y), CpuView::of(&self.weight));
        let masked: Vec<T>;
        let dz = if self.relu {
            let (dys, ys) = (dyv.slice::<T>()?, yv.slice::<T>()?);
            masked = dys.iter().zip(ys).map(|(&g, &v)| if v > T::default() { g } else { T::default() }).collect();
            &masked[..]
        } else {
            dyv.slice::<T>()?
        };
        let mut dx = vec![T::default(); n * i];
        let ws = wv.slice::<T>()?;
        crate::kernel::gemm_rows(n, i, o, &mut dx, false, (dz, o as isize, 1), (ws, i as isize, 1));
        Tensor::from_vec(dx, (n, i), &Device::Cpu)
    }
}
