//! Trigonometric and hyperbolic functions, ThresholdedRelu, Shrink, Mod, IsNaN, IsInf.
//!
//! The functions candle has (sin, cos) use its ops; the others take exact f64 values and carry
//! the input gradient as a first-order term, v + (x − x̄)·f′(x̄) with x̄ the detached input: the
//! term is zero in value and its gradient is exactly f′(x)·dy.

use candle_core::{DType, Tensor};

use super::elementwise::{broadcast_pair, map_f64};
use crate::onnx::node::Ctx;
use crate::Result;

type Out = Result<Vec<Tensor>>;

fn float_input<'t>(ctx: &Ctx, inputs: &'t [Option<Tensor>]) -> Result<&'t Tensor> {
    let x = ctx.input(inputs, 0)?;
    if !matches!(x.dtype(), DType::F32 | DType::F64) {
        return Err(ctx.unsupported(format!("input type {:?}", x.dtype())));
    }
    Ok(x)
}

/// f(x) with the gradient f′(x)·dy.
fn with_derivative(x: &Tensor, f: fn(f64) -> f64, df: fn(f64) -> f64) -> Result<Tensor> {
    let v = map_f64(x, f)?;
    if !x.track_op() {
        return Ok(v);
    }
    let d = map_f64(&x.detach(), df)?;
    Ok((v + (x - x.detach())?.mul(&d)?)?)
}

fn unary(ctx: &Ctx, inputs: &[Option<Tensor>], f: fn(f64) -> f64, df: fn(f64) -> f64) -> Out {
    Ok(vec![with_derivative(float_input(ctx, inputs)?, f, df)?])
}

pub fn sin(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    Ok(vec![float_input(ctx, inputs)?.sin()?])
}

pub fn cos(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    Ok(vec![float_input(ctx, inputs)?.cos()?])
}

pub fn tan(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    unary(ctx, inputs, f64::tan, |x| 1.0 + x.tan().powi(2))
}

pub fn asin(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    unary(ctx, inputs, f64::asin, |x| 1.0 / (1.0 - x * x).sqrt())
}

pub fn acos(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    unary(ctx, inputs, f64::acos, |x| -1.0 / (1.0 - x * x).sqrt())
}

pub fn atan(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    unary(ctx, inputs, f64::atan, |x| 1.0 / (1.0 + x * x))
}

pub fn sinh(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    unary(ctx, inputs, f64::sinh, f64::cosh)
}

pub fn cosh(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    unary(ctx, inputs, f64::cosh, f64::sinh)
}

pub fn asinh(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    unary(ctx, inputs, f64::asinh, |x| 1.0 / (x * x + 1.0).sqrt())
}

pub fn acosh(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    unary(ctx, inputs, f64::acosh, |x| 1.0 / (x * x - 1.0).sqrt())
}

pub fn atanh(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    unary(ctx, inputs, f64::atanh, |x| 1.0 / (1.0 - x * x))
}

pub fn thresholded_relu(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = float_input(ctx, inputs)?;
    let alpha = ctx.float("alpha", 1.0) as f64;
    Ok(vec![x.gt(alpha)?.where_cond(x, &x.zeros_like()?)?])
}

pub fn shrink(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let lambd = ctx.float("lambd", 0.5) as f64;
    let bias = ctx.float("bias", 0.0) as f64;
    if !x.dtype().is_float() {
        let y = map_f64(x, |v| {
            if v < -lambd {
                v + bias
            } else if v > lambd {
                v - bias
            } else {
                0.0
            }
        })?;
        return Ok(vec![y]);
    }
    let zero = x.zeros_like()?;
    let above = x.gt(lambd)?.where_cond(&(x - bias)?, &zero)?;
    Ok(vec![x.lt(-lambd)?.where_cond(&(x + bias)?, &above)?])
}

/// Mod: the sign of the divisor (Python) for integers, or of the dividend (C `fmod`) with
/// `fmod = 1`, which floats require. The float gradient is that of a − b·trunc(a / b).
pub fn modulo(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let (a, b) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?);
    let fmod = ctx.int("fmod", 0) != 0;
    let float = a.dtype().is_float();
    if float && !fmod {
        return Err(ctx.err("fmod must be 1 for floating-point inputs"));
    }
    let b = b.to_dtype(a.dtype())?;
    let (a, b) = broadcast_pair(ctx, a, &b)?;
    let values = |t: &Tensor| -> Result<Vec<f64>> { Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?) };
    let (av, bv) = (values(&a)?, values(&b)?);
    let r: Vec<f64> = if float {
        av.iter().zip(&bv).map(|(x, y)| x % y).collect()
    } else {
        let mut r = Vec::with_capacity(av.len());
        for (&x, &y) in av.iter().zip(&bv) {
            let (x, y) = (x as i64, y as i64);
            if y == 0 {
                return Err(ctx.err("integer division by zero"));
            }
            let mut m = x % y;
            if !fmod && m != 0 && (m < 0) != (y < 0) {
                m += y;
            }
            r.push(m as f64);
        }
        r
    };
    let v = Tensor::from_vec(r, a.dims(), a.device())?.to_dtype(a.dtype())?;
    if !float || !(a.track_op() || b.track_op()) {
        return Ok(vec![v]);
    }
    let q = map_f64(&(a.detach() / b.detach())?, f64::trunc)?;
    let da = (&a - a.detach())?;
    let db = (&b - b.detach())?;
    Ok(vec![((v + da)? - (db * q)?)?])
}

fn flags(x: &Tensor, pred: impl Fn(f64) -> bool) -> Result<Tensor> {
    let v: Vec<u8> =
        x.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?.into_iter().map(|v| pred(v) as u8).collect();
    Ok(Tensor::from_vec(v, x.dims(), x.device())?)
}

pub fn is_nan(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    Ok(vec![flags(ctx.input(inputs, 0)?, f64::is_nan)?])
}

pub fn is_inf(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let neg = ctx.int("detect_negative", 1) != 0;
    let pos = ctx.int("detect_positive", 1) != 0;
    Ok(vec![flags(ctx.input(inputs, 0)?, |v| v.is_infinite() && ((v > 0.0 && pos) || (v < 0.0 && neg)))?])
}
