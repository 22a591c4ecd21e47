//! DepthToSpace, SpaceToDepth, Trilu, GatherElements, TopK, Hardmax, CastLike, EyeLike, OneHot,
//! NonZero.

use candle_core::{DType, Tensor};

use crate::onnx::node::{to_i64s, Ctx};
use crate::onnx::tensor::dtype_of;
use crate::Result;

type Out = Result<Vec<Tensor>>;

fn blocksize(ctx: &Ctx, x: &Tensor) -> Result<(usize, (usize, usize, usize, usize))> {
    let b = ctx.int("blocksize", 0);
    if b <= 0 {
        return Err(ctx.err(format!("blocksize {b} must be positive")));
    }
    Ok((b as usize, x.dims4()?))
}

pub fn depth_to_space(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let (b, (n, c, h, w)) = blocksize(ctx, x)?;
    if c % (b * b) != 0 {
        return Err(ctx.err(format!("{c} channels are not a multiple of blocksize² = {}", b * b)));
    }
    let y = match ctx.string("mode", "DCR").as_str() {
        "DCR" => x.reshape(vec![n, b, b, c / (b * b), h, w])?.permute(vec![0, 3, 4, 1, 5, 2])?,
        "CRD" => x.reshape(vec![n, c / (b * b), b, b, h, w])?.permute(vec![0, 1, 4, 2, 5, 3])?,
        other => return Err(ctx.err(format!("mode {other:?} is not DCR or CRD"))),
    };
    Ok(vec![y.reshape((n, c / (b * b), h * b, w * b))?])
}

pub fn space_to_depth(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let (b, (n, c, h, w)) = blocksize(ctx, x)?;
    if h % b != 0 || w % b != 0 {
        return Err(ctx.err(format!("{h}×{w} is not a multiple of blocksize {b}")));
    }
    let y = x.reshape(vec![n, c, h / b, b, w / b, b])?.permute(vec![0, 3, 5, 1, 2, 4])?;
    Ok(vec![y.reshape((n, c * b * b, h / b, w / b))?])
}

pub fn trilu(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    if x.rank() < 2 {
        return Err(ctx.err("the input needs at least 2 dimensions"));
    }
    let k = ctx.scalar_input(inputs, 1)?.unwrap_or(0.0) as i64;
    let upper = ctx.int("upper", 1) != 0;
    let (rows, cols) = (x.dims()[x.rank() - 2], x.dims()[x.rank() - 1]);
    let keep: Vec<u8> = (0..rows as i64)
        .flat_map(|i| (0..cols as i64).map(move |j| if upper { j - i >= k } else { j - i <= k } as u8))
        .collect();
    let mask = Tensor::from_vec(keep, (rows, cols), x.device())?.broadcast_as(x.dims())?;
    Ok(vec![mask.where_cond(x, &x.zeros_like()?)?])
}

/// Indices of an index input, negative ones counted from the end of an axis of size `dim`.
fn indices_u32(ctx: &Ctx, t: &Tensor, dim: usize) -> Result<Tensor> {
    let v: Vec<u32> = to_i64s(t)?
        .into_iter()
        .map(|i| {
            let j = if i < 0 { i + dim as i64 } else { i };
            if j < 0 || j >= dim as i64 {
                Err(ctx.err(format!("index {i} is out of range for an axis of size {dim}")))
            } else {
                Ok(j as u32)
            }
        })
        .collect::<Result<_>>()?;
    Ok(Tensor::from_vec(v, t.dims(), t.device())?)
}

pub fn gather_elements(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let (x, idx) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?);
    if idx.rank() != x.rank() {
        return Err(ctx.err(format!("indices {:?} and data {:?} differ in rank", idx.dims(), x.dims())));
    }
    let axis = ctx.axis(ctx.int("axis", 0), x.rank())?;
    let ids = indices_u32(ctx, idx, x.dims()[axis])?;
    // Off the axis the indices address the data directly: cut the data to their extent.
    let mut data = x.clone();
    for (a, (&d, &i)) in x.dims().iter().zip(idx.dims()).enumerate() {
        if a != axis && i != d {
            if i > d {
                return Err(ctx.err(format!("indices {:?} exceed data {:?}", idx.dims(), x.dims())));
            }
            data = data.narrow(a, 0, i)?;
        }
    }
    Ok(vec![data.contiguous()?.gather(&ids, axis)?])
}

pub fn top_k(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let axis = ctx.axis(ctx.int("axis", -1), x.rank())?;
    let k = if ctx.opset < 10 { Some(ctx.int("k", 0) as f64) } else { ctx.scalar_input(inputs, 1)? };
    let Some(k) = k.filter(|&k| k >= 0.0) else { return Err(ctx.err("k is missing or negative")) };
    let k = k as usize;
    let n = x.dims()[axis];
    if k > n {
        return Err(ctx.err(format!("k = {k} exceeds the axis size {n}")));
    }
    let largest = ctx.int("largest", 1) != 0;
    // Sort every line along the axis on the host: moved to the last axis, one row per line.
    let last = x.rank() - 1;
    let moved = x.detach().transpose(axis, last)?.contiguous()?;
    let rows = moved.elem_count() / n.max(1);
    let v = moved.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let mut picked: Vec<i64> = Vec::with_capacity(rows * k);
    for r in 0..rows {
        let line = &v[r * n..(r + 1) * n];
        let mut order: Vec<usize> = (0..n).collect();
        // Stable: ties keep the lower index first, as ONNX asks.
        order.sort_by(|&a, &b| {
            let o = line[a].partial_cmp(&line[b]).unwrap_or(std::cmp::Ordering::Equal);
            if largest {
                o.reverse()
            } else {
                o
            }
        });
        picked.extend(order[..k].iter().map(|&i| i as i64));
    }
    let mut shape = moved.dims().to_vec();
    shape[last] = k;
    let idx = Tensor::from_vec(picked, shape, x.device())?.transpose(axis, last)?.contiguous()?;
    let values = x.contiguous()?.gather(&idx, axis)?;
    Ok(vec![values, idx])
}

pub fn hardmax(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?.detach();
    let (work, axis) = if ctx.opset < 13 {
        let axis = ctx.axis(ctx.int("axis", 1), x.rank())?;
        let outer: usize = x.dims()[..axis].iter().product();
        (x.reshape((outer, ()))?, 1)
    } else {
        let axis = ctx.axis(ctx.int("axis", -1), x.rank())?;
        (x.clone(), axis)
    };
    let n = work.dims()[axis];
    let first = work.contiguous()?.argmax_keepdim(axis)?;
    let mut iota_shape = vec![1; work.rank()];
    iota_shape[axis] = n;
    let iota = Tensor::arange(0u32, n as u32, x.device())?.reshape(iota_shape)?;
    let y = iota.broadcast_eq(&first)?.to_dtype(x.dtype())?;
    Ok(vec![y.reshape(x.dims())?])
}

/// Cast to the type of the second input; float → integer truncates toward zero.
pub fn cast_like(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let (x, like) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?);
    let target = like.dtype();
    let y = if x.dtype().is_float() && !target.is_float() {
        super::elementwise::map_f64(x, f64::trunc)?.to_dtype(target)?
    } else {
        x.to_dtype(target)?
    };
    Ok(vec![y])
}

pub fn eye_like(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let (rows, cols) = x.dims2()?;
    let dtype = if ctx.has("dtype") {
        let code = ctx.int("dtype", 0) as i32;
        dtype_of(code).ok_or_else(|| ctx.unsupported(format!("dtype {code}")))?
    } else {
        x.dtype()
    };
    let k = ctx.int("k", 0);
    let v: Vec<f64> = (0..rows as i64).flat_map(|i| (0..cols as i64).map(move |j| (j - i == k) as u8 as f64)).collect();
    Ok(vec![Tensor::from_vec(v, (rows, cols), ctx.device)?.to_dtype(dtype)?])
}

pub fn one_hot(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let idx = ctx.input(inputs, 0)?;
    let Some(depth) = ctx.scalar_input(inputs, 1)? else { return Err(ctx.err("depth is missing")) };
    let values = ctx.input(inputs, 2)?;
    let depth = depth as i64;
    if depth <= 0 {
        return Err(ctx.err(format!("depth {depth} must be positive")));
    }
    let vals = values.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let [off, on] = vals[..] else { return Err(ctx.err("values must hold [off, on]")) };
    let axis = ctx.axis(ctx.int("axis", -1), idx.rank() + 1)?;
    let ids = to_i64s(idx)?;
    let outer: usize = idx.dims()[..axis].iter().product();
    let inner: usize = idx.dims()[axis..].iter().product();
    let d = depth as usize;
    let mut out = vec![off; outer * d * inner];
    for o in 0..outer {
        for i in 0..inner {
            let v = ids[o * inner + i];
            let v = if v < 0 { v + depth } else { v };
            if (0..depth).contains(&v) {
                out[(o * d + v as usize) * inner + i] = on;
            }
        }
    }
    let mut shape = idx.dims().to_vec();
    shape.insert(axis, d);
    Ok(vec![Tensor::from_vec(out, shape, ctx.device)?.to_dtype(values.dtype())?])
}

pub fn non_zero(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let v = x.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let dims = x.dims();
    let hits: Vec<usize> = v.iter().enumerate().filter(|(_, &x)| x != 0.0).map(|(i, _)| i).collect();
    let rank = dims.len();
    let mut out = vec![0i64; rank * hits.len()];
    for (n, &flat) in hits.iter().enumerate() {
        let mut rest = flat;
        for a in (0..rank).rev() {
            out[a * hits.len() + n] = (rest % dims[a]) as i64;
            rest /= dims[a];
        }
    }
    Ok(vec![Tensor::from_vec(out, (rank, hits.len()), ctx.device)?])
}
