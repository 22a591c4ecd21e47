//! MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool.
//!
//! The common case (symmetric pads, floor mode, no dilation) takes the pooling kernels of
//! [`crate::cpu_ops`] / [`crate::ops`]; everything else (asymmetric pads, `ceil_mode`,
//! dilations, `count_include_pad = 0`) gathers the window taps explicitly and reduces them, with
//! the max-pool gradient routed to the first maximum of each window, as PyTorch does.

use candle_core::{DType, Tensor};

use super::conv::{as_4d, pair, spatial, Spatial};
use crate::onnx::node::Ctx;
use crate::ops::Window;
use crate::Result;

type Out = Result<Vec<Tensor>>;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Max,
    Avg { include_pad: bool },
}

fn pool(ctx: &Ctx, inputs: &[Option<Tensor>], mode: Mode) -> Out {
    let x = ctx.input(inputs, 0)?;
    if !matches!(x.dtype(), DType::F32 | DType::F64) {
        return Err(ctx.unsupported(format!("input type {:?}", x.dtype())));
    }
    if ctx.node.outputs.len() > 1 && ctx.node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(ctx.unsupported("the Indices output of MaxPool"));
    }
    let (x4, one_d) = as_4d(ctx, x)?;
    let rank = if one_d { 1 } else { 2 };
    let Some(k) = ctx.ints("kernel_shape") else { return Err(ctx.err("kernel_shape is required")) };
    let kernel = pair(ctx, "kernel_shape", rank, 1)?;
    let kernel = if one_d { [1, kernel[1]] } else { kernel };
    if k.len() != rank {
        return Err(ctx.err(format!("kernel_shape {k:?} does not fit the input")));
    }
    let (_, _, h, w) = x4.dims4()?;
    let s = spatial(ctx, rank, kernel, [h, w])?;
    let ceil = ctx.int("ceil_mode", 0) != 0;
    let y = pool2d(ctx, &x4, &s, ceil, mode)?;
    Ok(vec![if one_d { y.squeeze(2)? } else { y }])
}

fn out_size(input: usize, k: usize, s: usize, d: usize, pb: usize, pe: usize, ceil: bool) -> Option<usize> {
    let span = d * (k - 1) + 1;
    let numer = (input + pb + pe).checked_sub(span)?;
    let mut out = if ceil { numer.div_ceil(s) + 1 } else { numer / s + 1 };
    // The last window must start inside the input or the leading padding.
    if ceil && (out - 1) * s >= input + pb {
        out -= 1;
    }
    Some(out)
}

fn pool2d(ctx: &Ctx, x: &Tensor, s: &Spatial, ceil: bool, mode: Mode) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let [t, l, b, r] = s.pads;
    let (Some(oh), Some(ow)) = (
        out_size(h, s.kernel[0], s.stride[0], s.dilation[0], t, b, ceil),
        out_size(w, s.kernel[1], s.stride[1], s.dilation[1], l, r, ceil),
    ) else {
        return Err(ctx.err(format!("window {:?} does not fit an input of {h}×{w}", s.kernel)));
    };
    let simple = t == b && l == r && s.dilation == [1, 1] && !ceil;
    if simple {
        let win = Window { kernel: s.kernel, stride: s.stride, padding: [t, l] };
        match mode {
            Mode::Max => return Ok(crate::cpu_ops::max_pool2d(x, win)?),
            Mode::Avg { include_pad } if include_pad || (t == 0 && l == 0) => {
                return Ok(crate::ops::avg_pool2d(x, win)?)
            }
            Mode::Avg { .. } => {}
        }
    }
    // Pad to cover every window, including the partial ones of ceil mode.
    let need = |o: usize, k: usize, st: usize, d: usize| (o - 1) * st + d * (k - 1) + 1;
    let extra_b = need(oh, s.kernel[0], s.stride[0], s.dilation[0]).saturating_sub(h + t + b);
    let extra_r = need(ow, s.kernel[1], s.stride[1], s.dilation[1]).saturating_sub(w + l + r);
    let fill = if mode == Mode::Max { f64::NEG_INFINITY } else { 0.0 };
    let xp = crate::ops::pad2d(x, t, b + extra_b, l, r + extra_r, fill)?;
    let taps = |v: &Tensor| -> Result<Tensor> {
        let mut all = Vec::with_capacity(s.kernel[0] * s.kernel[1]);
        for i in 0..s.kernel[0] {
            let rows: Vec<u32> = (0..oh).map(|o| (o * s.stride[0] + i * s.dilation[0]) as u32).collect();
            let vr = v.index_select(&Tensor::from_vec(rows, oh, v.device())?, 2)?;
            for j in 0..s.kernel[1] {
                let cols: Vec<u32> = (0..ow).map(|o| (o * s.stride[1] + j * s.dilation[1]) as u32).collect();
                all.push(vr.index_select(&Tensor::from_vec(cols, ow, v.device())?, 3)?);
            }
        }
        Ok(Tensor::stack(&all, 4)?)
    };
    // candle's index_select reads only contiguous sources.
    let windows = taps(&xp.contiguous()?)?;
    match mode {
        Mode::Max => {
            let first = windows.detach().argmax_keepdim(4)?;
            Ok(windows.gather(&first, 4)?.squeeze(4)?)
        }
        Mode::Avg { include_pad } => {
            // Divisor: the window's cells inside the input, plus the explicit pads if counted;
            // never the cells added for ceil mode.
            let (n, c, _, _) = x.dims4()?;
            let ones = Tensor::ones((1, 1, h, w), x.dtype(), x.device())?;
            let pad_fill = if include_pad { 1.0 } else { 0.0 };
            let mask = crate::ops::pad2d(&ones, t, b, l, r, pad_fill)?;
            let mask = crate::ops::pad2d(&mask, 0, extra_b, 0, extra_r, 0.0)?;
            let count = taps(&mask)?.sum(4)?;
            let total = windows.sum(4)?;
            let _ = (n, c);
            Ok(total.broadcast_div(&count)?)
        }
    }
}

pub fn max_pool(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    if ctx.int("storage_order", 0) != 0 {
        return Err(ctx.unsupported("storage_order = 1"));
    }
    pool(ctx, inputs, Mode::Max)
}

pub fn average_pool(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    pool(ctx, inputs, Mode::Avg { include_pad: ctx.int("count_include_pad", 0) != 0 })
}

pub fn global_average_pool(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let mut y = x.clone();
    for axis in 2..x.rank() {
        y = y.mean_keepdim(axis)?;
    }
    Ok(vec![y])
}

pub fn global_max_pool(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let (n, c) = (x.dims()[0], x.dims()[1]);
    let flat = x.reshape((n, c, ()))?;
    let first = flat.detach().argmax_keepdim(2)?;
    let y = flat.gather(&first, 2)?;
    let mut shape = vec![n, c];
    shape.resize(x.rank(), 1);
    Ok(vec![y.reshape(shape)?])
}
