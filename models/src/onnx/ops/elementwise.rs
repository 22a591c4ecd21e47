//! Elementwise arithmetic, comparisons and selection, with NumPy (multidirectional)
//! broadcasting.

use candle_core::{DType, Tensor};

use crate::onnx::node::Ctx;
use crate::Result;

type Out = Result<Vec<Tensor>>;

/// The NumPy broadcast of two shapes.
pub(super) fn broadcast_shape(ctx: &Ctx, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(ctx.err(format!("shapes {a:?} and {b:?} do not broadcast"))),
        };
    }
    Ok(out)
}

/// Both operands broadcast to their common shape (contiguous views are not needed).
pub(super) fn broadcast_pair(ctx: &Ctx, a: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor)> {
    let shape = broadcast_shape(ctx, a.dims(), b.dims())?;
    Ok((a.broadcast_as(shape.as_slice())?, b.broadcast_as(shape.as_slice())?))
}

fn binary(ctx: &Ctx, inputs: &[Option<Tensor>], f: fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>) -> Out {
    let (a, b) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?);
    if a.dtype() != b.dtype() {
        return Err(ctx.err(format!("operand types differ: {:?} and {:?}", a.dtype(), b.dtype())));
    }
    let (a, b) = broadcast_pair(ctx, a, b)?;
    Ok(vec![f(&a, &b)?])
}

pub fn add(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    binary(ctx, inputs, |a, b| a + b)
}

pub fn sub(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    binary(ctx, inputs, |a, b| a - b)
}

pub fn mul(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    binary(ctx, inputs, |a, b| a * b)
}

pub fn div(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    binary(ctx, inputs, |a, b| a / b)
}

pub fn pow(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let (x, y) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?);
    let dtype = x.dtype();
    let xf = if dtype.is_float() { x.clone() } else { x.to_dtype(DType::F64)? };
    // A constant one-value exponent takes the cheap, exact paths; an exponent that carries a
    // gradient goes through the general formula so that it gets one.
    let out = if y.elem_count() == 1 && !y.track_op() {
        let e = y.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?[0];
        let shape = broadcast_shape(ctx, x.dims(), y.dims())?;
        let r = if e == 1.0 {
            xf.clone()
        } else if e == 2.0 {
            xf.sqr()?
        } else if e == 0.5 {
            xf.sqrt()?
        } else {
            xf.powf(e)?
        };
        r.broadcast_as(shape.as_slice())?.contiguous()?
    } else {
        let yf = y.to_dtype(xf.dtype())?;
        let (b, e) = broadcast_pair(ctx, &xf, &yf)?;
        // |b|^e with the sign of b restored where e is an odd integer.
        let mag = (e.clone() * b.abs()?.log()?)?.exp()?;
        let ev = e.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        if ev.iter().all(|v| v.fract() == 0.0) {
            let odd: Vec<f64> = ev.iter().map(|v| if (*v as i64) % 2 != 0 { 1.0 } else { 0.0 }).collect();
            let odd = Tensor::from_vec(odd, b.dims(), b.device())?.to_dtype(b.dtype())?;
            let negative = b.lt(0.0)?.to_dtype(b.dtype())?;
            // sign = 1 − 2·negative·odd
            let sign = ((negative * odd)? * -2.0)?.affine(1.0, 1.0)?;
            (mag * sign)?
        } else {
            mag
        }
    };
    Ok(vec![if dtype.is_float() { out } else { out.round()?.to_dtype(dtype)? }])
}

fn unary(ctx: &Ctx, inputs: &[Option<Tensor>], f: fn(&Tensor) -> candle_core::Result<Tensor>) -> Out {
    Ok(vec![f(ctx.input(inputs, 0)?)?])
}

pub fn sqrt(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    unary(ctx, inputs, Tensor::sqrt)
}

pub fn neg(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    if x.dtype() == DType::I64 {
        return Ok(vec![x.zeros_like()?.sub(x)?]);
    }
    Ok(vec![x.neg()?])
}

pub fn abs(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    if !x.dtype().is_float() {
        return Ok(vec![map_f64(x, f64::abs)?]);
    }
    Ok(vec![x.abs()?])
}

pub fn exp(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    unary(ctx, inputs, Tensor::exp)
}

pub fn log(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    unary(ctx, inputs, Tensor::log)
}

pub fn reciprocal(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    unary(ctx, inputs, Tensor::recip)
}

pub fn erf(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    unary(ctx, inputs, Tensor::erf)
}

fn fold(
    ctx: &Ctx,
    inputs: &[Option<Tensor>],
    f: fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
) -> Result<Tensor> {
    let mut acc = ctx.input(inputs, 0)?.clone();
    for t in inputs.iter().skip(1).flatten() {
        let (a, b) = broadcast_pair(ctx, &acc, t)?;
        acc = f(&a, &b)?;
    }
    Ok(acc)
}

pub fn min(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    Ok(vec![fold(ctx, inputs, |a, b| a.minimum(b))?])
}

pub fn max(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    Ok(vec![fold(ctx, inputs, |a, b| a.maximum(b))?])
}

pub fn sum(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    Ok(vec![fold(ctx, inputs, |a, b| a + b)?])
}

pub fn mean(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let n = inputs.iter().flatten().count() as f64;
    Ok(vec![(fold(ctx, inputs, |a, b| a + b)? / n)?])
}

/// Applies `f` to every value on the CPU in f64 and returns a detached tensor of the same
/// dtype and device (for the piecewise-constant operators).
pub(super) fn map_f64(x: &Tensor, f: impl Fn(f64) -> f64) -> Result<Tensor> {
    let v: Vec<f64> = x.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?.into_iter().map(f).collect();
    Ok(Tensor::from_vec(v, x.dims(), x.device())?.to_dtype(x.dtype())?)
}

pub fn floor(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    Ok(vec![map_f64(ctx.input(inputs, 0)?, f64::floor)?])
}

pub fn ceil(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    Ok(vec![map_f64(ctx.input(inputs, 0)?, f64::ceil)?])
}

/// Round half to even, as ONNX (and NumPy) define it.
pub fn round(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    Ok(vec![map_f64(ctx.input(inputs, 0)?, f64::round_ties_even)?])
}

pub fn sign(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    Ok(vec![map_f64(ctx.input(inputs, 0)?, |v| {
        if v > 0.0 {
            1.0
        } else if v < 0.0 {
            -1.0
        } else {
            0.0
        }
    })?])
}

fn compare(ctx: &Ctx, inputs: &[Option<Tensor>], f: fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>) -> Out {
    let (a, b) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?);
    let b = if a.dtype() != b.dtype() { b.to_dtype(a.dtype())? } else { b.clone() };
    let (a, b) = broadcast_pair(ctx, &a.detach(), &b.detach())?;
    Ok(vec![f(&a.contiguous()?, &b.contiguous()?)?])
}

pub fn equal(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    compare(ctx, inputs, |a, b| a.eq(b))
}

pub fn less(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    compare(ctx, inputs, |a, b| a.lt(b))
}

pub fn greater(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    compare(ctx, inputs, |a, b| a.gt(b))
}

pub fn less_or_equal(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    compare(ctx, inputs, |a, b| a.le(b))
}

pub fn greater_or_equal(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    compare(ctx, inputs, |a, b| a.ge(b))
}

pub fn not(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    Ok(vec![ctx.input(inputs, 0)?.eq(0u8)?])
}

pub fn and(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    compare(ctx, inputs, |a, b| a.ne(0u8)? * b.ne(0u8)?)
}

pub fn or(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    compare(ctx, inputs, |a, b| a.ne(0u8)?.maximum(&b.ne(0u8)?))
}

pub fn xor(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    compare(ctx, inputs, |a, b| a.ne(0u8)?.ne(&b.ne(0u8)?))
}

pub fn where_op(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let (c, x, y) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?, ctx.input(inputs, 2)?);
    let shape = broadcast_shape(ctx, &broadcast_shape(ctx, c.dims(), x.dims())?, y.dims())?;
    let c = c.broadcast_as(shape.as_slice())?.contiguous()?;
    let x = x.broadcast_as(shape.as_slice())?.contiguous()?;
    let y = y.broadcast_as(shape.as_slice())?.contiguous()?;
    Ok(vec![c.where_cond(&x, &y)?])
}
