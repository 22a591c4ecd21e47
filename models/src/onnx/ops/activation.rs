//! Activations and (log-)softmax.

use candle_core::{DType, Tensor};

use crate::onnx::node::Ctx;
use crate::Result;

type Out = Result<Vec<Tensor>>;

fn x0<'t>(ctx: &Ctx, inputs: &'t [Option<Tensor>]) -> Result<&'t Tensor> {
    ctx.input(inputs, 0)
}

/// x where x > 0, otherwise `neg(x)` (computed on min(x, 0) so that it stays finite).
fn piecewise(x: &Tensor, neg: impl Fn(&Tensor) -> candle_core::Result<Tensor>) -> Result<Tensor> {
    let negative_part = neg(&x.minimum(0.0)?)?;
    Ok(x.gt(0.0)?.where_cond(x, &negative_part)?)
}

pub fn relu(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = x0(ctx, inputs)?;
    if !x.dtype().is_float() {
        return Ok(vec![x.maximum(&x.zeros_like()?)?]);
    }
    Ok(vec![crate::ops::relu(x)?])
}

pub fn leaky_relu(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let alpha = ctx.float("alpha", 0.01) as f64;
    Ok(vec![piecewise(x0(ctx, inputs)?, |m| m * alpha)?])
}

pub fn prelu(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let (x, slope) = (x0(ctx, inputs)?, ctx.input(inputs, 1)?);
    let shape = super::elementwise::broadcast_shape(ctx, x.dims(), slope.dims())?;
    let x = x.broadcast_as(shape.as_slice())?.contiguous()?;
    let slope = slope.broadcast_as(shape.as_slice())?;
    Ok(vec![piecewise(&x, |m| m * &slope)?])
}

pub fn elu(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let alpha = ctx.float("alpha", 1.0) as f64;
    Ok(vec![piecewise(x0(ctx, inputs)?, |m| (m.exp()? - 1.0)? * alpha)?])
}

pub fn selu(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let alpha = ctx.float("alpha", 1.673_263_2) as f64;
    let gamma = ctx.float("gamma", 1.050_701) as f64;
    Ok(vec![(piecewise(x0(ctx, inputs)?, |m| (m.exp()? - 1.0)? * alpha)? * gamma)?])
}

pub fn celu(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let alpha = ctx.float("alpha", 1.0) as f64;
    Ok(vec![piecewise(x0(ctx, inputs)?, |m| ((m / alpha)?.exp()? - 1.0)? * alpha)?])
}

pub fn sigmoid(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    Ok(vec![crate::ops::sigmoid(x0(ctx, inputs)?)?])
}

fn hard_sigmoid_of(x: &Tensor, alpha: f64, beta: f64) -> Result<Tensor> {
    Ok(x.affine(alpha, beta)?.clamp(0.0, 1.0)?)
}

pub fn hard_sigmoid(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let alpha = ctx.float("alpha", 0.2) as f64;
    let beta = ctx.float("beta", 0.5) as f64;
    Ok(vec![hard_sigmoid_of(x0(ctx, inputs)?, alpha, beta)?])
}

pub fn hard_swish(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = x0(ctx, inputs)?;
    Ok(vec![(x * hard_sigmoid_of(x, 1.0 / 6.0, 0.5)?)?])
}

pub fn tanh(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    Ok(vec![x0(ctx, inputs)?.tanh()?])
}

/// log(1 + eˣ) = max(x, 0) + log(1 + e^−|x|), finite for every x.
pub fn softplus(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = x0(ctx, inputs)?;
    let tail = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok(vec![(x.maximum(0.0)? + tail)?])
}

pub fn softsign(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = x0(ctx, inputs)?;
    Ok(vec![(x / (x.abs()? + 1.0)?)?])
}

pub fn clip(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = x0(ctx, inputs)?;
    let (lo, hi) = if ctx.opset < 11 {
        (Some(ctx.float("min", f32::MIN) as f64), Some(ctx.float("max", f32::MAX) as f64))
    } else {
        (ctx.scalar_input(inputs, 1)?, ctx.scalar_input(inputs, 2)?)
    };
    let bound =
        |v: f64| -> Result<Tensor> { Ok(Tensor::new(v, x.device())?.to_dtype(x.dtype())?.broadcast_as(x.dims())?) };
    let mut y = x.clone();
    if let Some(lo) = lo {
        y = y.maximum(&bound(lo)?)?;
    }
    if let Some(hi) = hi {
        y = y.minimum(&bound(hi)?)?;
    }
    Ok(vec![y])
}

pub fn gelu(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = x0(ctx, inputs)?;
    let y = match ctx.string("approximate", "none").as_str() {
        "none" => ((x * 0.5)? * ((x / std::f64::consts::SQRT_2)?.erf()? + 1.0)?)?,
        "tanh" => {
            let inner = ((x + (x.powf(3.0)? * 0.044715)?)? * (2.0 / std::f64::consts::PI).sqrt())?;
            ((x * 0.5)? * (inner.tanh()? + 1.0)?)?
        }
        other => return Err(ctx.unsupported(format!("approximate = {other:?}"))),
    };
    Ok(vec![y])
}

/// Softmax along `axis` from elementary ops: exp(x − max) / Σ exp(x − max), the shift kept out
/// of the graph (it cancels), so the gradient is exact and always present.
pub(crate) fn softmax_along(x: &Tensor, axis: usize) -> Result<Tensor> {
    let m = x.detach().max_keepdim(axis)?;
    let e = x.broadcast_sub(&m)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(axis)?)?)
}

fn log_softmax_along(x: &Tensor, axis: usize) -> Result<Tensor> {
    let m = x.detach().max_keepdim(axis)?;
    let shifted = x.broadcast_sub(&m)?;
    let lse = shifted.exp()?.sum_keepdim(axis)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

fn softmax_like(ctx: &Ctx, inputs: &[Option<Tensor>], f: fn(&Tensor, usize) -> Result<Tensor>) -> Out {
    let x = x0(ctx, inputs)?;
    if !matches!(x.dtype(), DType::F32 | DType::F64) {
        return Err(ctx.unsupported(format!("input type {:?}", x.dtype())));
    }
    let rank = x.rank();
    if ctx.opset < 13 {
        // Before opset 13 the input is coerced to 2-D at `axis` (default 1) and normalized
        // over everything from `axis` on.
        let axis = ctx.axis(ctx.int("axis", 1), rank)?;
        let outer: usize = x.dims()[..axis].iter().product();
        let inner: usize = x.dims()[axis..].iter().product();
        let y = f(&x.reshape((outer, inner))?, 1)?;
        return Ok(vec![y.reshape(x.dims())?]);
    }
    let axis = ctx.axis(ctx.int("axis", -1), rank)?;
    Ok(vec![f(x, axis)?])
}

pub fn softmax(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    softmax_like(ctx, inputs, softmax_along)
}

pub fn log_softmax(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    softmax_like(ctx, inputs, log_softmax_along)
}
