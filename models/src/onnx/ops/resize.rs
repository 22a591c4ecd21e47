//! Resize and Upsample: nearest and (bi)linear, every coordinate mapping but
//! `tf_crop_and_resize`. Each resized axis is an `index_select` (nearest) or a weighted sum of
//! two (linear), so the gradient flows to the input.

use candle_core::{DType, Tensor};

use crate::onnx::node::Ctx;
use crate::Result;

type Out = Result<Vec<Tensor>>;

#[derive(Clone, Copy, PartialEq)]
enum Interp {
    Nearest,
    Linear,
}

fn resize_axis(
    ctx: &Ctx,
    x: &Tensor,
    axis: usize,
    out: usize,
    scale: f64,
    interp: Interp,
    (coord, nearest): (&str, &str),
) -> Result<Tensor> {
    let n = x.dims()[axis];
    // candle's index_select reads only contiguous sources.
    let x = &x.contiguous()?;
    let original = |i: usize| -> Result<f64> {
        let i = i as f64;
        Ok(match coord {
            "half_pixel" => (i + 0.5) / scale - 0.5,
            "pytorch_half_pixel" => {
                if out > 1 {
                    (i + 0.5) / scale - 0.5
                } else {
                    0.0
                }
            }
            "align_corners" => {
                if out == 1 {
                    0.0
                } else {
                    // The resized length before flooring, as the ONNX reference computes it.
                    i * (n as f64 - 1.0) / (n as f64 * scale - 1.0)
                }
            }
            "asymmetric" => i / scale,
            "tf_half_pixel_for_nearest" => (i + 0.5) / scale,
            other => return Err(ctx.unsupported(format!("coordinate_transformation_mode = {other:?}"))),
        })
    };
    let last = n as i64 - 1;
    let clamp = |v: i64| v.clamp(0, last) as u32;
    let ids = |v: Vec<u32>| Tensor::from_vec(v, out, x.device());
    match interp {
        Interp::Nearest => {
            let mut idx = Vec::with_capacity(out);
            for i in 0..out {
                let c = original(i)?;
                let j = match nearest {
                    "round_prefer_floor" => {
                        if c.fract() == 0.5 {
                            c.floor()
                        } else {
                            c.round()
                        }
                    }
                    "round_prefer_ceil" => c.round(),
                    "floor" => c.floor(),
                    "ceil" => c.ceil(),
                    other => return Err(ctx.unsupported(format!("nearest_mode = {other:?}"))),
                };
                idx.push(clamp(j as i64));
            }
            Ok(x.index_select(&ids(idx)?, axis)?)
        }
        Interp::Linear => {
            let (mut i0, mut i1, mut w1) = (Vec::with_capacity(out), Vec::with_capacity(out), Vec::with_capacity(out));
            for i in 0..out {
                let c = original(i)?.clamp(0.0, last as f64);
                let f = c.floor();
                i0.push(clamp(f as i64));
                i1.push(clamp(f as i64 + 1));
                w1.push(c - f);
            }
            let mut wshape = vec![1; x.rank()];
            wshape[axis] = out;
            let w1 = Tensor::from_vec(w1, wshape.as_slice(), x.device())?.to_dtype(x.dtype())?;
            let w0 = w1.affine(-1.0, 1.0)?;
            let a = x.index_select(&ids(i0)?, axis)?;
            let b = x.index_select(&ids(i1)?, axis)?;
            Ok((a.broadcast_mul(&w0)? + b.broadcast_mul(&w1)?)?)
        }
    }
}

fn run(ctx: &Ctx, x: &Tensor, sizes: Vec<usize>, scales: Vec<f64>, interp: Interp, coord: &str, nearest: &str) -> Out {
    if !matches!(x.dtype(), DType::F32 | DType::F64) && interp == Interp::Linear {
        return Err(ctx.unsupported(format!("linear resize of {:?}", x.dtype())));
    }
    let mut y = x.clone();
    for axis in 0..x.rank() {
        if sizes[axis] == x.dims()[axis] && scales[axis] == 1.0 {
            continue;
        }
        y = resize_axis(ctx, &y, axis, sizes[axis], scales[axis], interp, (coord, nearest))?;
    }
    Ok(vec![y])
}

fn mode(ctx: &Ctx) -> Result<Interp> {
    match ctx.string("mode", "nearest").as_str() {
        "nearest" => Ok(Interp::Nearest),
        "linear" | "bilinear" => Ok(Interp::Linear),
        other => Err(ctx.unsupported(format!("mode = {other:?}"))),
    }
}

pub fn resize(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let interp = mode(ctx)?;
    for (attr, ok) in [("antialias", 0), ("exclude_outside", 0)] {
        if ctx.int(attr, 0) != ok {
            return Err(ctx.unsupported(format!("{attr} = {}", ctx.int(attr, 0))));
        }
    }
    if ctx.has("axes") || ctx.string("keep_aspect_ratio_policy", "stretch") != "stretch" {
        return Err(ctx.unsupported("axes or keep_aspect_ratio_policy"));
    }
    let rank = x.rank();
    let (scales_in, sizes_in) =
        if ctx.opset < 11 { (ctx.opt(inputs, 1), None) } else { (ctx.opt(inputs, 2), ctx.opt(inputs, 3)) };
    let scales_in = scales_in.filter(|t| t.elem_count() > 0);
    let sizes_in = sizes_in.filter(|t| t.elem_count() > 0);
    let (sizes, scales): (Vec<usize>, Vec<f64>) = match (scales_in, sizes_in) {
        (_, Some(sizes)) => {
            let s: Vec<usize> = crate::onnx::node::to_i64s(sizes)?.iter().map(|&v| v.max(0) as usize).collect();
            let sc = s.iter().zip(x.dims()).map(|(&o, &i)| o as f64 / i as f64).collect();
            (s, sc)
        }
        (Some(scales), None) => {
            let sc = scales.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
            let s = sc.iter().zip(x.dims()).map(|(&f, &i)| (i as f64 * f).floor() as usize).collect();
            (s, sc)
        }
        (None, None) => return Err(ctx.err("neither scales nor sizes is given")),
    };
    if sizes.len() != rank || scales.len() != rank {
        return Err(ctx.err(format!("{} sizes/scales for a rank-{rank} input", sizes.len())));
    }
    let default_coord = if ctx.opset < 11 { "asymmetric" } else { "half_pixel" };
    let coord = ctx.string("coordinate_transformation_mode", default_coord);
    let nearest = if ctx.opset < 11 { "floor".to_string() } else { ctx.string("nearest_mode", "round_prefer_floor") };
    run(ctx, x, sizes, scales, interp, &coord, &nearest)
}

pub fn upsample(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let x = ctx.input(inputs, 0)?;
    let interp = mode(ctx)?;
    let scales: Vec<f64> = if ctx.opset < 9 {
        ctx.floats("scales").unwrap_or_default().iter().map(|&v| v as f64).collect()
    } else {
        ctx.input(inputs, 1)?.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?
    };
    if scales.len() != x.rank() {
        return Err(ctx.err(format!("{} scales for a rank-{} input", scales.len(), x.rank())));
    }
    let sizes = scales.iter().zip(x.dims()).map(|(&f, &i)| (i as f64 * f).floor() as usize).collect();
    run(ctx, x, sizes, scales, interp, "asymmetric", "floor")
}
