//! QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear (8-bit).
//!
//! Integers decode to i64 (`int8`) or u8 (`uint8`); the zero point's type picks the output
//! type: u8 → [0, 255], i64 → `int8` [−128, 127]. The values are computed on the host; the
//! outputs carry no gradient (quantization masks it).

use candle_core::{DType, Tensor};

use crate::onnx::node::Ctx;
use crate::onnx::proto::data_type as dt;
use crate::Result;

type Out = Result<Vec<Tensor>>;

fn f64s(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// Scale and zero point per element of `x`: one value, or one per index of `axis`.
fn per_element(ctx: &Ctx, x: &Tensor, p: &[f64]) -> Result<Vec<f64>> {
    if p.len() == 1 {
        return Ok(vec![p[0]; x.elem_count()]);
    }
    let axis = ctx.axis(ctx.int("axis", 1), x.rank())?;
    let n = x.dims().get(axis).copied().unwrap_or(0);
    if p.len() != n {
        return Err(ctx.unsupported(format!("{} quantization parameters for axis {axis} of {:?}", p.len(), x.dims())));
    }
    let inner: usize = x.dims()[axis + 1..].iter().product();
    Ok((0..x.elem_count()).map(|i| p[(i / inner) % n]).collect())
}

fn check_blocked(ctx: &Ctx) -> Result<()> {
    if ctx.int("block_size", 0) != 0 {
        return Err(ctx.unsupported("blocked quantization (block_size)"));
    }
    Ok(())
}

pub fn quantize_linear(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    check_blocked(ctx)?;
    let (x, scale) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?);
    let zp = ctx.opt(inputs, 2);
    let signed = match (ctx.int("output_dtype", 0) as i32, zp.map(Tensor::dtype)) {
        (dt::INT8, _) => true,
        (dt::UINT8, _) => false,
        (0, Some(DType::I64)) => true,
        (0, Some(DType::U8) | None) => false,
        (other, _) => return Err(ctx.unsupported(format!("quantization to {}", dt::name(other)))),
    };
    let (lo, hi) = if signed { (-128.0, 127.0) } else { (0.0, 255.0) };
    let s = per_element(ctx, x, &f64s(scale)?)?;
    let z = match zp {
        Some(z) => per_element(ctx, x, &f64s(z)?)?,
        None => vec![0.0; x.elem_count()],
    };
    if z.iter().any(|&v| v < lo || v > hi) {
        return Err(ctx.unsupported("a zero point outside the 8-bit range (16- or 32-bit quantization)"));
    }
    // Rounding half to even in the input's precision, as the reference does.
    let f32_math = x.dtype() == DType::F32;
    let y: Vec<f64> = f64s(x)?
        .iter()
        .zip(s.iter().zip(&z))
        .map(|(&v, (&s, &z))| {
            let q = if f32_math { (v as f32 / s as f32) as f64 } else { v / s };
            (q.round_ties_even() + z).clamp(lo, hi)
        })
        .collect();
    let out = Tensor::from_vec(y, x.dims(), x.device())?;
    Ok(vec![out.to_dtype(if signed { DType::I64 } else { DType::U8 })?])
}

pub fn dequantize_linear(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    check_blocked(ctx)?;
    let (x, scale) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?);
    let s = per_element(ctx, x, &f64s(scale)?)?;
    let z = match ctx.opt(inputs, 2) {
        Some(z) => per_element(ctx, x, &f64s(z)?)?,
        None => vec![0.0; x.elem_count()],
    };
    let y: Vec<f64> = f64s(x)?.iter().zip(s.iter().zip(&z)).map(|(&v, (&s, &z))| (v - z) * s).collect();
    let dtype = if scale.dtype().is_float() { scale.dtype() } else { DType::F32 };
    Ok(vec![Tensor::from_vec(y, x.dims(), x.device())?.to_dtype(dtype)?])
}

/// uint8 quantization with the scale and zero point that cover [min(x, 0), max(x, 0)], in f32.
pub fn dynamic_quantize_linear(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let v: Vec<f32> = x.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let max = v.iter().fold(0f32, |m, &a| m.max(a));
    let min = v.iter().fold(0f32, |m, &a| m.min(a));
    let scale = (max - min) / 255.0;
    let zp = if scale == 0.0 { 0.0 } else { (-min / scale).round_ties_even().clamp(0.0, 255.0) };
    let y: Vec<u8> = v
        .iter()
        .map(|&a| if scale == 0.0 { zp } else { ((a / scale).round_ties_even() + zp).clamp(0.0, 255.0) } as u8)
        .collect();
    let d = x.device();
    Ok(vec![Tensor::from_vec(y, x.dims(), d)?, Tensor::new(scale, d)?, Tensor::new(zp as u8, d)?])
}
