//! Shapes and data movement: Flatten, Reshape, Transpose, Squeeze, Unsqueeze, Concat, Split,
//! Slice, Gather, Expand, Tile, Pad, Identity, Dropout, Constant, ConstantOfShape, Shape, Size,
//! Cast, Range.

use candle_core::{DType, Tensor};

use crate::onnx::node::{to_i64s, Ctx};
use crate::onnx::proto::data_type as dt;
use crate::onnx::tensor::dtype_of;
use crate::Result;

type Out = Result<Vec<Tensor>>;

fn ids(v: Vec<u32>, t: &Tensor) -> Result<Tensor> {
    let n = v.len();
    Ok(Tensor::from_vec(v, n, t.device())?)
}

/// Selects indices `idx` along `axis` (an empty selection gives an empty axis).
fn take(x: &Tensor, axis: usize, idx: Vec<u32>) -> Result<Tensor> {
    if idx.is_empty() {
        let mut shape = x.dims().to_vec();
        shape[axis] = 0;
        return Ok(Tensor::zeros(shape, x.dtype(), x.device())?);
    }
    // candle's index_select reads only contiguous sources.
    Ok(x.contiguous()?.index_select(&ids(idx, x)?, axis)?)
}

pub fn flatten(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let r = x.rank() as i64;
    let axis = ctx.int("axis", 1);
    let axis = if axis < 0 { axis + r } else { axis };
    if axis < 0 || axis > r {
        return Err(ctx.err(format!("axis {axis} is out of range for rank {r}")));
    }
    let outer: usize = x.dims()[..axis as usize].iter().product();
    let inner: usize = x.dims()[axis as usize..].iter().product();
    Ok(vec![x.reshape((outer, inner))?])
}

pub fn reshape(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let target = if ctx.opset < 5 { ctx.ints("shape") } else { ctx.ints_input(inputs, 1)? };
    let Some(target) = target else { return Err(ctx.err("the target shape is missing")) };
    let allow_zero = ctx.int("allowzero", 0) != 0;
    let mut shape = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                shape.push(1);
            }
            0 if !allow_zero => {
                let Some(&v) = x.dims().get(i) else {
                    return Err(ctx.err(format!("target shape {target:?} copies dimension {i} of {:?}", x.dims())));
                };
                shape.push(v);
            }
            d if d >= 0 => shape.push(d as usize),
            _ => return Err(ctx.err(format!("invalid target shape {target:?}"))),
        }
    }
    if let Some(i) = infer {
        let known: usize = shape.iter().product();
        if known == 0 || x.elem_count() % known != 0 {
            return Err(ctx.err(format!("cannot reshape {:?} to {target:?}", x.dims())));
        }
        shape[i] = x.elem_count() / known;
    }
    if shape.iter().product::<usize>() != x.elem_count() {
        return Err(ctx.err(format!("cannot reshape {:?} ({} values) to {target:?}", x.dims(), x.elem_count())));
    }
    Ok(vec![x.reshape(shape)?])
}

pub fn transpose(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let perm: Vec<usize> = match ctx.ints("perm") {
        Some(p) => p.iter().map(|&a| ctx.axis(a, x.rank())).collect::<Result<_>>()?,
        None => (0..x.rank()).rev().collect(),
    };
    Ok(vec![x.permute(perm)?])
}

fn axes_of(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Result<Option<Vec<i64>>> {
    if ctx.opset < 13 {
        Ok(ctx.ints("axes"))
    } else {
        ctx.ints_input(inputs, 1)
    }
}

pub fn squeeze(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let mut axes: Vec<usize> = match axes_of(ctx, inputs)? {
        Some(a) => a.iter().map(|&a| ctx.axis(a, x.rank())).collect::<Result<_>>()?,
        None => (0..x.rank()).filter(|&a| x.dims()[a] == 1).collect(),
    };
    axes.sort_unstable();
    let mut shape = x.dims().to_vec();
    for &a in axes.iter().rev() {
        if shape[a] != 1 {
            return Err(ctx.err(format!("cannot squeeze axis {a} of size {}", shape[a])));
        }
        shape.remove(a);
    }
    Ok(vec![x.reshape(shape)?])
}

pub fn unsqueeze(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let Some(axes) = axes_of(ctx, inputs)? else { return Err(ctx.err("axes are missing")) };
    let out_rank = x.rank() + axes.len();
    let mut axes: Vec<usize> = axes.iter().map(|&a| ctx.axis(a, out_rank)).collect::<Result<_>>()?;
    axes.sort_unstable();
    let mut shape = x.dims().to_vec();
    for &a in &axes {
        shape.insert(a, 1);
    }
    Ok(vec![x.reshape(shape)?])
}

pub fn concat(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let parts: Vec<&Tensor> = inputs.iter().flatten().collect();
    let rank = parts.first().ok_or_else(|| ctx.err("no inputs"))?.rank();
    let axis = ctx.axis(ctx.int("axis", 0), rank)?;
    let parts: Vec<Tensor> = parts.into_iter().filter(|t| t.rank() == rank).cloned().collect();
    Ok(vec![Tensor::cat(&parts, axis)?])
}

pub fn split(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let axis = ctx.axis(ctx.int("axis", 0), x.rank())?;
    let n = x.dims()[axis];
    let outputs = ctx.node.outputs.len();
    let sizes: Vec<usize> = match if ctx.opset < 13 { ctx.ints("split") } else { ctx.ints_input(inputs, 1)? } {
        Some(s) => s.iter().map(|&v| v.max(0) as usize).collect(),
        None => {
            let parts = if ctx.has("num_outputs") { ctx.int("num_outputs", 1) as usize } else { outputs };
            let chunk = n.div_ceil(parts.max(1));
            (0..parts).map(|i| chunk.min(n.saturating_sub(i * chunk))).collect()
        }
    };
    if sizes.iter().sum::<usize>() != n {
        return Err(ctx.err(format!("split sizes {sizes:?} do not add up to {n}")));
    }
    let mut start = 0;
    let mut out = Vec::with_capacity(sizes.len());
    for s in sizes {
        out.push(x.narrow(axis, start, s)?);
        start += s;
    }
    Ok(out)
}

pub fn slice(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let (starts, ends, axes, steps) = if ctx.opset < 10 {
        (ctx.ints("starts"), ctx.ints("ends"), ctx.ints("axes"), None)
    } else {
        (ctx.ints_input(inputs, 1)?, ctx.ints_input(inputs, 2)?, ctx.ints_input(inputs, 3)?, ctx.ints_input(inputs, 4)?)
    };
    let (Some(starts), Some(ends)) = (starts, ends) else { return Err(ctx.err("starts and ends are required")) };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    let mut y = x.clone();
    for (((&start, &end), &axis), &step) in starts.iter().zip(&ends).zip(&axes).zip(&steps) {
        let a = ctx.axis(axis, x.rank())?;
        let dim = x.dims()[a] as i64;
        if step == 0 {
            return Err(ctx.err("a step of 0"));
        }
        let fix = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (s, e) = (fix(start), fix(end));
        let idx: Vec<u32> = if step > 0 {
            let (s, e) = (s.clamp(0, dim), e.clamp(0, dim));
            if step == 1 {
                y = y.narrow(a, s as usize, (e - s).max(0) as usize)?;
                continue;
            }
            (s..e).step_by(step as usize).map(|i| i as u32).collect()
        } else {
            let (s, e) = (s.clamp(0, dim - 1), e.clamp(-1, dim - 1));
            let mut v = Vec::new();
            let mut i = s;
            while i > e {
                v.push(i as u32);
                i += step;
            }
            v
        };
        y = take(&y, a, idx)?;
    }
    Ok(vec![y])
}

pub fn gather(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let (x, indices) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?);
    let axis = ctx.axis(ctx.int("axis", 0), x.rank())?;
    let dim = x.dims()[axis] as i64;
    let idx: Vec<u32> = to_i64s(indices)?
        .into_iter()
        .map(|i| {
            let j = if i < 0 { i + dim } else { i };
            if j < 0 || j >= dim {
                Err(ctx.err(format!("index {i} is out of range for axis {axis} of size {dim}")))
            } else {
                Ok(j as u32)
            }
        })
        .collect::<Result<_>>()?;
    let picked = take(x, axis, idx)?;
    let mut shape = x.dims()[..axis].to_vec();
    shape.extend_from_slice(indices.dims());
    shape.extend_from_slice(&x.dims()[axis + 1..]);
    Ok(vec![picked.reshape(shape)?])
}

pub fn expand(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let Some(target) = ctx.ints_input(inputs, 1)? else { return Err(ctx.err("the shape input is missing")) };
    let target: Vec<usize> = target.iter().map(|&v| v.max(0) as usize).collect();
    let shape = super::elementwise::broadcast_shape(ctx, x.dims(), &target)?;
    Ok(vec![x.broadcast_as(shape)?.contiguous()?])
}

pub fn tile(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let Some(reps) = ctx.ints_input(inputs, 1)? else { return Err(ctx.err("repeats are missing")) };
    if reps.len() != x.rank() {
        return Err(ctx.err(format!("{} repeats for a rank-{} input", reps.len(), x.rank())));
    }
    let mut y = x.clone();
    for (a, &r) in reps.iter().enumerate() {
        if r != 1 {
            let parts = vec![y.clone(); r.max(0) as usize];
            y = if parts.is_empty() { take(&y, a, vec![])? } else { Tensor::cat(&parts, a)? };
        }
    }
    Ok(vec![y])
}

pub fn pad(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let mode = ctx.string("mode", "constant");
    let (pads, value) = if ctx.opset < 11 {
        (ctx.ints("pads"), ctx.float("value", 0.0) as f64)
    } else {
        (ctx.ints_input(inputs, 1)?, ctx.scalar_input(inputs, 2)?.unwrap_or(0.0))
    };
    let Some(pads) = pads else { return Err(ctx.err("pads are missing")) };
    let rank = x.rank();
    let axes: Vec<usize> = match ctx.ints_input(inputs, 3)? {
        Some(a) => a.iter().map(|&a| ctx.axis(a, rank)).collect::<Result<_>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(ctx.err(format!("{} pads for {} axes", pads.len(), axes.len())));
    }
    let mut y = x.clone();
    for (i, &a) in axes.iter().enumerate() {
        let (mut b, mut e) = (pads[i], pads[i + axes.len()]);
        // Negative pads crop.
        if b < 0 {
            let n = y.dims()[a];
            y = y.narrow(a, (-b) as usize, n - (-b) as usize)?;
            b = 0;
        }
        if e < 0 {
            let n = y.dims()[a];
            y = y.narrow(a, 0, n - (-e) as usize)?;
            e = 0;
        }
        if b == 0 && e == 0 {
            continue;
        }
        let n = y.dims()[a] as i64;
        y = match mode.as_str() {
            "constant" => {
                let mut parts = Vec::new();
                let mut shape = y.dims().to_vec();
                if b > 0 {
                    shape[a] = b as usize;
                    parts.push(Tensor::full(value, shape.as_slice(), y.device())?.to_dtype(y.dtype())?);
                }
                parts.push(y.clone());
                if e > 0 {
                    shape[a] = e as usize;
                    parts.push(Tensor::full(value, shape.as_slice(), y.device())?.to_dtype(y.dtype())?);
                }
                Tensor::cat(&parts, a)?
            }
            "reflect" | "edge" => {
                let reflect = mode == "reflect";
                if reflect && n < 2 {
                    return Err(ctx.err("reflect padding needs at least 2 values along the axis"));
                }
                let idx: Vec<u32> = (-b..n + e)
                    .map(|i| {
                        let j = if reflect {
                            let period = 2 * (n - 1);
                            let m = i.rem_euclid(period);
                            if m >= n {
                                period - m
                            } else {
                                m
                            }
                        } else {
                            i.clamp(0, n - 1)
                        };
                        j as u32
                    })
                    .collect();
                take(&y, a, idx)?
            }
            other => return Err(ctx.unsupported(format!("mode = {other:?}"))),
        };
    }
    Ok(vec![y])
}

pub fn identity(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    Ok(vec![ctx.input(inputs, 0)?.clone()])
}

pub fn dropout(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    if ctx.opset >= 12 {
        if let Some(training) = ctx.scalar_input(inputs, 2)? {
            if training != 0.0 {
                return Err(ctx.unsupported("training mode"));
            }
        }
    }
    let x = ctx.input(inputs, 0)?;
    let mut out = vec![x.clone()];
    if ctx.node.outputs.len() > 1 {
        out.push(Tensor::ones(x.dims(), DType::U8, x.device())?);
    }
    Ok(out)
}

pub fn constant(ctx: &Ctx, _inputs: &[Option<Tensor>]) -> Out {
    if let Some(t) = ctx.tensor("value")? {
        return Ok(vec![t]);
    }
    let d = ctx.device;
    if ctx.has("value_float") {
        return Ok(vec![Tensor::new(ctx.float("value_float", 0.0), d)?]);
    }
    if let Some(v) = ctx.floats("value_floats") {
        return Ok(vec![Tensor::new(v, d)?]);
    }
    if ctx.has("value_int") {
        return Ok(vec![Tensor::new(ctx.int("value_int", 0), d)?]);
    }
    if let Some(v) = ctx.ints("value_ints") {
        return Ok(vec![Tensor::new(v, d)?]);
    }
    Err(ctx.unsupported("a constant that is not a numeric tensor (sparse or string)"))
}

pub fn constant_of_shape(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let shape: Vec<usize> = ctx.ints_input(inputs, 0)?.unwrap_or_default().iter().map(|&v| v.max(0) as usize).collect();
    let value = match ctx.tensor("value")? {
        Some(v) => v.flatten_all()?,
        None => Tensor::zeros(1, DType::F32, ctx.device)?,
    };
    if shape.iter().product::<usize>() == 0 {
        return Ok(vec![Tensor::zeros(shape, value.dtype(), ctx.device)?]);
    }
    let ones: Vec<usize> = vec![1; shape.len()];
    let v = if shape.is_empty() { value.reshape(())? } else { value.reshape(ones)? };
    Ok(vec![v.broadcast_as(shape)?.contiguous()?])
}

pub fn shape(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let r = x.rank() as i64;
    let fix = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = fix(ctx.int("start", 0));
    let end = fix(ctx.int("end", r));
    let dims: Vec<i64> = x.dims()[start..end.max(start)].iter().map(|&d| d as i64).collect();
    Ok(vec![Tensor::new(dims, ctx.device)?])
}

pub fn size(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    Ok(vec![Tensor::new(ctx.input(inputs, 0)?.elem_count() as i64, ctx.device)?])
}

pub fn cast(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let to = ctx.int("to", 0) as i32;
    let Some(target) = dtype_of(to) else {
        return Err(ctx.unsupported(format!("cast to {}", dt::name(to))));
    };
    let y = if to == dt::BOOL {
        x.ne(&x.zeros_like()?)?
    } else if x.dtype().is_float() && target == DType::I64 {
        // Truncation toward zero, as C casts do.
        super::elementwise::map_f64(x, f64::trunc)?.to_dtype(DType::I64)?
    } else {
        x.to_dtype(target)?
    };
    Ok(vec![y])
}

pub fn range(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let start = ctx.input(inputs, 0)?;
    let (Some(s), Some(l), Some(d)) =
        (ctx.scalar_input(inputs, 0)?, ctx.scalar_input(inputs, 1)?, ctx.scalar_input(inputs, 2)?)
    else {
        return Err(ctx.err("start, limit and delta are required"));
    };
    if d == 0.0 {
        return Err(ctx.err("delta is 0"));
    }
    let n = ((l - s) / d).ceil().max(0.0) as usize;
    let v: Vec<f64> = (0..n).map(|i| s + i as f64 * d).collect();
    Ok(vec![Tensor::from_vec(v, n, ctx.device)?.to_dtype(start.dtype())?])
}
