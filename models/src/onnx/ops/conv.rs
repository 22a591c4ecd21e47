//! Conv and ConvTranspose (1-D and 2-D), on the convolution kernel of [`crate::conv`].

use candle_core::{DType, Tensor};

use crate::conv::ConvParams;
use crate::onnx::node::Ctx;
use crate::Result;

type Out = Result<Vec<Tensor>>;

/// Spatial attributes of a convolution or pooling node, for two spatial axes.
pub(super) struct Spatial {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// [top, left, bottom, right]
    pub pads: [usize; 4],
}

/// Reads `attr` (one value per spatial axis) as two axes; 1-D nodes get a leading 1.
pub(super) fn pair(ctx: &Ctx, attr: &str, spatial: usize, default: usize) -> Result<[usize; 2]> {
    match ctx.ints(attr) {
        None => Ok([default; 2]),
        Some(v) if v.len() == spatial && v.iter().all(|&x| x >= 0) => {
            Ok(if spatial == 1 { [default, v[0] as usize] } else { [v[0] as usize, v[1] as usize] })
        }
        Some(v) => Err(ctx.err(format!("attribute {attr} = {v:?} does not fit {spatial} spatial axes"))),
    }
}

/// Kernel, strides, dilations and the resolved pads (incl. `auto_pad`) for input extent `input`.
pub(super) fn spatial(ctx: &Ctx, spatial_rank: usize, kernel: [usize; 2], input: [usize; 2]) -> Result<Spatial> {
    let stride = pair(ctx, "strides", spatial_rank, 1)?;
    let dilation = pair(ctx, "dilations", spatial_rank, 1)?;
    let stride = if spatial_rank == 1 { [1, stride[1]] } else { stride };
    let dilation = if spatial_rank == 1 { [1, dilation[1]] } else { dilation };
    let pads = match ctx.string("auto_pad", "NOTSET").as_str() {
        "NOTSET" => match ctx.ints("pads") {
            None => [0; 4],
            Some(p) if p.len() == 2 * spatial_rank && p.iter().all(|&x| x >= 0) => {
                if spatial_rank == 1 {
                    [0, p[0] as usize, 0, p[1] as usize]
                } else {
                    [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize]
                }
            }
            Some(p) => return Err(ctx.err(format!("pads = {p:?} do not fit {spatial_rank} spatial axes"))),
        },
        "VALID" => [0; 4],
        mode @ ("SAME_UPPER" | "SAME_LOWER") => {
            let mut pads = [0; 4];
            for a in 0..2 {
                let out = input[a].div_ceil(stride[a]);
                let span = dilation[a] * (kernel[a] - 1) + 1;
                let total = ((out - 1) * stride[a] + span).saturating_sub(input[a]);
                let small = total / 2;
                let (begin, end) = if mode == "SAME_UPPER" { (small, total - small) } else { (total - small, small) };
                pads[a] = begin;
                pads[a + 2] = end;
            }
            pads
        }
        other => return Err(ctx.err(format!("auto_pad = {other:?} is not an ONNX value"))),
    };
    Ok(Spatial { kernel, stride, dilation, pads })
}

/// The input as (N, C, H, W) and whether it was 1-D (N, C, L).
pub(super) fn as_4d(ctx: &Ctx, x: &Tensor) -> Result<(Tensor, bool)> {
    match x.rank() {
        3 => Ok((x.unsqueeze(2)?, true)),
        4 => Ok((x.clone(), false)),
        r => Err(
            ctx.unsupported(format!("{}-D input (only 1-D and 2-D spatial inputs are supported)", r.saturating_sub(2)))
        ),
    }
}

/// Inserts `d − 1` zeros between the taps of a kernel (O, I, kh, kw) along both axes.
fn dilate_kernel(k: &Tensor, d: [usize; 2]) -> Result<Tensor> {
    let mut k = k.clone();
    for (axis, step) in [(2usize, d[0]), (3, d[1])] {
        k = insert_zeros(&k, axis, step)?;
    }
    Ok(k)
}

/// Places every element of `axis` `step` apart, zeros between: length (n − 1)·step + 1.
pub(super) fn insert_zeros(x: &Tensor, axis: usize, step: usize) -> Result<Tensor> {
    if step <= 1 {
        return Ok(x.clone());
    }
    let n = x.dims()[axis];
    let mut parts = vec![x.unsqueeze(axis + 1)?];
    let mut zshape = x.dims().to_vec();
    zshape.insert(axis + 1, step - 1);
    parts.push(Tensor::zeros(zshape, x.dtype(), x.device())?);
    let y = Tensor::cat(&parts, axis + 1)?;
    let mut shape = x.dims().to_vec();
    shape[axis] = n * step;
    Ok(y.reshape(shape)?.narrow(axis, 0, (n - 1) * step + 1)?)
}

/// Every `step`-th element of `axis`, from 0.
fn subsample(x: &Tensor, axis: usize, step: usize) -> Result<Tensor> {
    if step <= 1 {
        return Ok(x.clone());
    }
    let n = x.dims()[axis];
    let idx: Vec<u32> = (0..n as u32).step_by(step).collect();
    let len = idx.len();
    Ok(x.contiguous()?.index_select(&Tensor::from_vec(idx, len, x.device())?, axis)?)
}

/// 2-D convolution with per-axis stride/dilation and asymmetric pads.
pub(super) fn conv2d_general(x: &Tensor, k: &Tensor, s: &Spatial, groups: usize) -> Result<Tensor> {
    let (k, dilation) =
        if s.dilation[0] == s.dilation[1] { (k.clone(), s.dilation[0]) } else { (dilate_kernel(k, s.dilation)?, 1) };
    let [t, l, b, r] = s.pads;
    let (x, padding) =
        if t == b && l == r && t == l { (x.clone(), t) } else { (crate::ops::pad2d(x, t, b, l, r, 0.0)?, 0) };
    let stride = if s.stride[0] == s.stride[1] { s.stride[0] } else { 1 };
    let y = crate::conv::conv2d(&x, &k, ConvParams { stride, padding, dilation, groups })?;
    if stride == 1 && (s.stride[0] > 1 || s.stride[1] > 1) {
        return subsample(&subsample(&y, 2, s.stride[0])?, 3, s.stride[1]);
    }
    Ok(y)
}

fn float_check(ctx: &Ctx, x: &Tensor) -> Result<()> {
    if !matches!(x.dtype(), DType::F32 | DType::F64) {
        return Err(ctx.unsupported(format!("input type {:?}", x.dtype())));
    }
    Ok(())
}

pub fn conv(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let (x, w) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?);
    float_check(ctx, x)?;
    let (x4, one_d) = as_4d(ctx, x)?;
    let w4 = if one_d { w.unsqueeze(2)? } else { w.clone() };
    if w4.rank() != 4 {
        return Err(ctx.err(format!("kernel shape {:?} does not fit input {:?}", w.dims(), x.dims())));
    }
    let kernel = [w4.dims()[2], w4.dims()[3]];
    let (_, _, h, wd) = x4.dims4()?;
    let s = spatial(ctx, if one_d { 1 } else { 2 }, kernel, [h, wd])?;
    let groups = ctx.int("group", 1).max(1) as usize;
    let mut y = conv2d_general(&x4, &w4.to_dtype(x.dtype())?, &s, groups)?;
    if let Some(bias) = ctx.opt(inputs, 2) {
        y = y.broadcast_add(&bias.reshape((1, bias.elem_count(), 1, 1))?)?;
    }
    Ok(vec![if one_d { y.squeeze(2)? } else { y }])
}

pub fn conv_transpose(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let (x, w) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?);
    float_check(ctx, x)?;
    let (x4, one_d) = as_4d(ctx, x)?;
    let w4 = if one_d { w.unsqueeze(2)? } else { w.clone() };
    let rank = if one_d { 1 } else { 2 };
    let groups = ctx.int("group", 1).max(1) as usize;
    let (cin, cout_g, kh, kw) = w4.dims4()?;
    let (_, c, h, wd) = x4.dims4()?;
    if c != cin || cin % groups != 0 {
        return Err(ctx.err(format!("kernel {:?} does not fit input {:?} with group {groups}", w.dims(), x.dims())));
    }
    let stride = pair(ctx, "strides", rank, 1)?;
    let dilation = pair(ctx, "dilations", rank, 1)?;
    let out_pad = pair(ctx, "output_padding", rank, 0)?;
    let (stride, dilation, out_pad) =
        if one_d { ([1, stride[1]], [1, dilation[1]], [0, out_pad[1]]) } else { (stride, dilation, out_pad) };
    let kernel = [kh, kw];
    let input = [h, wd];
    let full = |a: usize| stride[a] * (input[a] - 1) + out_pad[a] + dilation[a] * (kernel[a] - 1) + 1;
    let auto_pad = ctx.string("auto_pad", "NOTSET");
    let output_shape = ctx.ints("output_shape").map(|v| {
        let v: Vec<usize> = v.iter().map(|&x| x.max(0) as usize).collect();
        let v = if v.len() > rank { v[v.len() - rank..].to_vec() } else { v };
        if one_d {
            [1, v[0]]
        } else {
            [v[0], v[1]]
        }
    });
    let mut pads = [0i64; 4];
    let target = output_shape.or_else(|| {
        matches!(auto_pad.as_str(), "SAME_UPPER" | "SAME_LOWER").then(|| [input[0] * stride[0], input[1] * stride[1]])
    });
    if let Some(target) = target {
        for a in 0..2 {
            // Negative when the requested output is larger: the output is then extended.
            let total = full(a) as i64 - target[a] as i64;
            let half = total.div_euclid(2);
            let (begin, end) = if auto_pad == "SAME_UPPER" { (half, total - half) } else { (total - half, half) };
            pads[a] = begin;
            pads[a + 2] = end;
        }
    } else if auto_pad == "NOTSET" {
        if let Some(p) = ctx.ints("pads") {
            let p: Vec<i64> = p.iter().map(|&v| v.max(0)).collect();
            pads = if one_d { [0, p[0], 0, p[1]] } else { [p[0], p[1], p[2], p[3]] };
        }
    }
    // Transposed convolution = zero-insertion by the stride, padding by the dilated kernel
    // extent less the pads, and a stride-1 convolution with the flipped, transposed kernel.
    let mut z = insert_zeros(&insert_zeros(&x4, 2, stride[0])?, 3, stride[1])?;
    for a in 0..2 {
        let span = dilation[a] * (kernel[a] - 1);
        let begin = span as i64 - pads[a];
        let end = span as i64 - pads[a + 2] + out_pad[a] as i64;
        z = pad_or_crop(&z, 2 + a, begin, end)?;
    }
    let g = groups;
    let wk = w4.reshape((g, cin / g, cout_g, kh, kw))?.transpose(1, 2)?.contiguous()?.reshape((
        g * cout_g,
        cin / g,
        kh,
        kw,
    ))?;
    let flip = |n: usize| Tensor::from_vec((0..n as u32).rev().collect::<Vec<_>>(), n, x.device());
    let wk = wk.contiguous()?.index_select(&flip(kh)?, 2)?.index_select(&flip(kw)?, 3)?.to_dtype(x.dtype())?;
    let s = Spatial { kernel, stride: [1, 1], dilation, pads: [0; 4] };
    let mut y = conv2d_general(&z, &wk, &s, g)?;
    if let Some(bias) = ctx.opt(inputs, 2) {
        y = y.broadcast_add(&bias.reshape((1, bias.elem_count(), 1, 1))?)?;
    }
    Ok(vec![if one_d { y.squeeze(2)? } else { y }])
}

/// Zero-pads (positive) or crops (negative) `axis` at both ends.
fn pad_or_crop(x: &Tensor, axis: usize, begin: i64, end: i64) -> Result<Tensor> {
    let mut x = x.clone();
    if begin < 0 {
        let n = x.dims()[axis];
        x = x.narrow(axis, (-begin) as usize, n - (-begin) as usize)?;
    }
    if end < 0 {
        let n = x.dims()[axis];
        x = x.narrow(axis, 0, n - (-end) as usize)?;
    }
    let (b, e) = (begin.max(0) as usize, end.max(0) as usize);
    if b + e > 0 {
        x = x.pad_with_zeros(axis, b, e)?;
    }
    Ok(x)
}
