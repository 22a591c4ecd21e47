//! ReduceMean/Sum/Max/Min/L2/L1/SumSquare/LogSum/LogSumExp/Prod and ArgMax/ArgMin.

use candle_core::{DType, Tensor};

use super::elementwise::map_f64;
use crate::onnx::node::Ctx;
use crate::Result;

type Out = Result<Vec<Tensor>>;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Mean,
    Sum,
    Max,
    Min,
    L2,
    L1,
    SumSquare,
    LogSum,
    LogSumExp,
    Prod,
}

/// The product along `axis` (kept), as a chain of products of slices.
fn prod_keepdim(x: &Tensor, axis: usize) -> Result<Tensor> {
    let n = x.dims()[axis];
    if n == 0 {
        let mut shape = x.dims().to_vec();
        shape[axis] = 1;
        return Ok(Tensor::ones(shape, x.dtype(), x.device())?);
    }
    let mut y = x.narrow(axis, 0, 1)?;
    for i in 1..n {
        y = (y * x.narrow(axis, i, 1)?)?;
    }
    Ok(y)
}

fn reduce(ctx: &Ctx, inputs: &[Option<Tensor>], kind: Kind) -> Out {
    let x = ctx.input(inputs, 0)?;
    // Axes: an attribute before opset 13 (ReduceSum) or 18 (the others), an input from then on.
    let axes_from_input = if kind == Kind::Sum { ctx.opset >= 13 } else { ctx.opset >= 18 };
    let axes = if axes_from_input { ctx.ints_input(inputs, 1)? } else { ctx.ints("axes") };
    let keepdims = ctx.int("keepdims", 1) != 0;
    let axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => {
            let mut v = a.iter().map(|&a| ctx.axis(a, x.rank())).collect::<Result<Vec<_>>>()?;
            v.sort_unstable();
            v.dedup();
            v
        }
        _ if ctx.int("noop_with_empty_axes", 0) != 0 => return Ok(vec![x.clone()]),
        _ => (0..x.rank()).collect(),
    };
    let mut y = match kind {
        Kind::L2 | Kind::SumSquare => x.sqr()?,
        Kind::L1 => x.abs()?,
        _ => x.clone(),
    };
    // log Σ exp(x) = m + log Σ exp(x − m) with m the (detached) maximum, finite for large x.
    let mut shift = None;
    if kind == Kind::LogSumExp {
        let mut m = x.detach();
        for &a in &axes {
            m = m.max_keepdim(a)?;
        }
        // An all −∞ slice keeps its −∞ without producing NaN.
        let m = map_f64(&m, |v| if v.is_finite() { v } else { 0.0 })?;
        y = y.broadcast_sub(&m)?.exp()?;
        shift = Some(m);
    }
    for &a in &axes {
        y = match kind {
            Kind::Mean => y.mean_keepdim(a)?,
            Kind::Sum | Kind::L2 | Kind::L1 | Kind::SumSquare | Kind::LogSum | Kind::LogSumExp => y.sum_keepdim(a)?,
            Kind::Max => y.max_keepdim(a)?,
            Kind::Min => y.min_keepdim(a)?,
            Kind::Prod => prod_keepdim(&y, a)?,
        };
    }
    match kind {
        Kind::L2 => y = y.sqrt()?,
        Kind::LogSum => y = y.log()?,
        Kind::LogSumExp => y = (y.log()? + shift.expect("set above"))?,
        _ => {}
    }
    if !keepdims {
        for &a in axes.iter().rev() {
            y = y.squeeze(a)?;
        }
    }
    Ok(vec![y])
}

pub fn reduce_mean(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    reduce(ctx, inputs, Kind::Mean)
}

pub fn reduce_sum(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    reduce(ctx, inputs, Kind::Sum)
}

pub fn reduce_max(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    reduce(ctx, inputs, Kind::Max)
}

pub fn reduce_min(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    reduce(ctx, inputs, Kind::Min)
}

pub fn reduce_l2(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    reduce(ctx, inputs, Kind::L2)
}

pub fn reduce_l1(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    reduce(ctx, inputs, Kind::L1)
}

pub fn reduce_sum_square(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    reduce(ctx, inputs, Kind::SumSquare)
}

pub fn reduce_log_sum(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    reduce(ctx, inputs, Kind::LogSum)
}

pub fn reduce_log_sum_exp(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    reduce(ctx, inputs, Kind::LogSumExp)
}

pub fn reduce_prod(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    reduce(ctx, inputs, Kind::Prod)
}

fn arg(ctx: &Ctx, inputs: &[Option<Tensor>], max: bool) -> Out {
    let x = ctx.input(inputs, 0)?.detach();
    let axis = ctx.axis(ctx.int("axis", 0), x.rank())?;
    let keepdims = ctx.int("keepdims", 1) != 0;
    let last = ctx.int("select_last_index", 0) != 0;
    let n = x.dims()[axis];
    let x = if last {
        let rev = Tensor::from_vec((0..n as u32).rev().collect::<Vec<_>>(), n, x.device())?;
        x.contiguous()?.index_select(&rev, axis)?
    } else {
        x
    };
    let idx = if max { x.argmax_keepdim(axis)? } else { x.argmin_keepdim(axis)? };
    let mut idx = idx.to_dtype(DType::I64)?;
    if last {
        idx = idx.affine(-1.0, (n - 1) as f64)?;
    }
    Ok(vec![if keepdims { idx } else { idx.squeeze(axis)? }])
}

pub fn arg_max(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    arg(ctx, inputs, true)
}

pub fn arg_min(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    arg(ctx, inputs, false)
}
