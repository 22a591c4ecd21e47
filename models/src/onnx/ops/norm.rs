//! BatchNormalization (inference), InstanceNormalization, LayerNormalization,
//! GroupNormalization.

use candle_core::Tensor;

use crate::onnx::node::Ctx;
use crate::Result;

type Out = Result<Vec<Tensor>>;

/// A per-channel vector shaped to broadcast over (N, C, …) of rank `rank`.
fn channel(v: &Tensor, rank: usize) -> Result<Tensor> {
    let mut shape = vec![1, v.elem_count()];
    shape.resize(rank.max(2), 1);
    Ok(v.reshape(shape)?)
}

pub fn batch_normalization(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    if ctx.int("training_mode", 0) != 0 || ctx.node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(ctx.unsupported("training mode (running statistics outputs)"));
    }
    let x = ctx.input(inputs, 0)?;
    let [scale, bias, mean, var] =
        [1, 2, 3, 4].map(|i| ctx.input(inputs, i).and_then(|t| channel(&t.to_dtype(x.dtype())?, x.rank())));
    let eps = ctx.float("epsilon", 1e-5) as f64;
    let inv = (var? + eps)?.sqrt()?.recip()?;
    let a = (scale? * inv)?;
    let b = (bias? - (mean? * &a)?)?;
    Ok(vec![x.broadcast_mul(&a)?.broadcast_add(&b)?])
}

/// (x − mean) / sqrt(var + eps) over `axes` (biased variance), with the mean and 1/σ.
fn normalize(x: &Tensor, axes: &[usize], eps: f64) -> Result<(Tensor, Tensor, Tensor)> {
    let mut mean = x.clone();
    for &a in axes {
        mean = mean.mean_keepdim(a)?;
    }
    let centered = x.broadcast_sub(&mean)?;
    let mut var = centered.sqr()?;
    for &a in axes {
        var = var.mean_keepdim(a)?;
    }
    let inv_std = (var + eps)?.sqrt()?.recip()?;
    Ok((centered.broadcast_mul(&inv_std)?, mean, inv_std))
}

pub fn instance_normalization(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let (x, scale, bias) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?, ctx.input(inputs, 2)?);
    let axes: Vec<usize> = (2..x.rank()).collect();
    let (y, _, _) = normalize(x, &axes, ctx.float("epsilon", 1e-5) as f64)?;
    Ok(vec![y.broadcast_mul(&channel(scale, x.rank())?)?.broadcast_add(&channel(bias, x.rank())?)?])
}

pub fn layer_normalization(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    if ctx.int("stash_type", 1) != 1 {
        return Err(ctx.unsupported("stash_type other than float"));
    }
    let axis = ctx.axis(ctx.int("axis", -1), x.rank())?;
    let axes: Vec<usize> = (axis..x.rank()).collect();
    let (mut y, mean, inv_std) = normalize(x, &axes, ctx.float("epsilon", 1e-5) as f64)?;
    y = y.broadcast_mul(ctx.input(inputs, 1)?)?;
    if let Some(b) = ctx.opt(inputs, 2) {
        y = y.broadcast_add(b)?;
    }
    Ok(vec![y, mean, inv_std])
}

pub fn group_normalization(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let (x, scale, bias) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?, ctx.input(inputs, 2)?);
    let groups = ctx.int("num_groups", 0);
    let (n, c) = (x.dims()[0], x.dims()[1]);
    if groups <= 0 || c % groups as usize != 0 {
        return Err(ctx.err(format!("num_groups {groups} does not divide {c} channels")));
    }
    let g = groups as usize;
    let grouped = x.reshape((n, g, ()))?;
    let (y, _, _) = normalize(&grouped, &[2], ctx.float("epsilon", 1e-5) as f64)?;
    let y = y.reshape(x.dims())?;
    // Opset 18 gives scale and bias per group, opset 21 per channel.
    let per_channel = |v: &Tensor| -> Result<Tensor> {
        if v.elem_count() == c {
            return channel(v, x.rank());
        }
        let v = v.reshape((g, 1))?.broadcast_as((g, c / g))?.reshape(c)?;
        channel(&v, x.rank())
    };
    Ok(vec![y.broadcast_mul(&per_channel(scale)?)?.broadcast_add(&per_channel(bias)?)?])
}

/// Local response normalization across channels: x / (bias + α/size · Σ x²)^β over a window of
/// `size` channels (⌊(size−1)/2⌋ before, ⌈(size−1)/2⌉ after).
pub fn lrn(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let size = ctx.int("size", 0);
    if size <= 0 || x.rank() < 3 {
        return Err(ctx.err(format!("size {size} must be positive and the input (N, C, …)")));
    }
    let size = size as usize;
    let (alpha, beta, bias) =
        (ctx.float("alpha", 1e-4) as f64, ctx.float("beta", 0.75) as f64, ctx.float("bias", 1.0) as f64);
    let c = x.dims()[1];
    let before = (size - 1) / 2;
    let sq = x.sqr()?.pad_with_zeros(1, before, size - 1 - before)?;
    let mut window = sq.narrow(1, 0, c)?;
    for i in 1..size {
        window = (window + sq.narrow(1, i, c)?)?;
    }
    let denom = window.affine(alpha / size as f64, bias)?.powf(beta)?;
    Ok(vec![(x / denom)?])
}

/// (x − mean) / (σ + 1e-9) over `axes` (default N, H, W), as the ONNX function defines it.
pub fn mean_variance_normalization(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let axes = ctx.ints("axes").unwrap_or_else(|| vec![0, 2, 3]);
    let axes: Vec<usize> = axes.iter().map(|&a| ctx.axis(a, x.rank())).collect::<Result<_>>()?;
    let mut mean = x.clone();
    for &a in &axes {
        mean = mean.mean_keepdim(a)?;
    }
    let centered = x.broadcast_sub(&mean)?;
    let mut var = centered.sqr()?;
    for &a in &axes {
        var = var.mean_keepdim(a)?;
    }
    Ok(vec![centered.broadcast_div(&(var.sqrt()? + 1e-9)?)?])
}
