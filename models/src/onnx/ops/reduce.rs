//! ReduceMean/Sum/Max/Min/L2 and ArgMax/ArgMin.

use candle_core::{DType, Tensor};

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
    let mut y = if kind == Kind::L2 { x.sqr()? } else { x.clone() };
    for &a in &axes {
        y = match kind {
            Kind::Mean => y.mean_keepdim(a)?,
            Kind::Sum | Kind::L2 => y.sum_keepdim(a)?,
            Kind::Max => y.max_keepdim(a)?,
            Kind::Min => y.min_keepdim(a)?,
        };
    }
    if kind == Kind::L2 {
        y = y.sqrt()?;
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
