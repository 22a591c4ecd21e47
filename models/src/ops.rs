//! Differentiable building blocks whose candle counterparts have a wrong or missing backward.
//!
//! candle's `max_pool2d` backward scales the upstream gradient by the fraction of maxima in each
//! window instead of routing it to the maximum, and has no backward when kernel ≠ stride; its
//! `avg_pool2d` backward assumes kernel = stride. The pools here are written with `narrow`,
//! `reshape` and reductions, whose backward passes are right (ties share the gradient, which is
//! harmless for attacks), and `sigmoid` with elementary ops so that it always has a gradient.

use candle_core::{Result, Tensor};

/// 2-D pooling window: kernel, stride and symmetric zero/−∞ padding, per spatial axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl Window {
    pub fn square(kernel: usize, stride: usize, padding: usize) -> Self {
        Window { kernel: [kernel; 2], stride: [stride; 2], padding: [padding; 2] }
    }

    /// Output size of a spatial extent `h, w` (floor mode).
    pub fn output(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let out = |n: usize, a: usize| {
            let padded = n + 2 * self.padding[a];
            (padded >= self.kernel[a] && self.stride[a] > 0).then(|| (padded - self.kernel[a]) / self.stride[a] + 1)
        };
        Some((out(h, 0)?, out(w, 1)?))
    }
}

#[derive(Clone, Copy)]
enum Reduce {
    Max,
    Mean,
}

/// Max pooling over (N, C, H, W) with a correct input gradient; padding counts as −∞.
pub fn max_pool2d(x: &Tensor, w: Window) -> Result<Tensor> {
    pool(x, w, Reduce::Max)
}

/// Average pooling over (N, C, H, W); zero padding is included in the average (PyTorch's default).
pub fn avg_pool2d(x: &Tensor, w: Window) -> Result<Tensor> {
    pool(x, w, Reduce::Mean)
}

fn pool(x: &Tensor, w: Window, reduce: Reduce) -> Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let Some((oh, ow)) = w.output(h, wd) else {
        candle_core::bail!("pooling window {:?} does not fit an input of {h}×{wd}", w.kernel)
    };
    let fill = match reduce {
        Reduce::Max => f64::NEG_INFINITY,
        Reduce::Mean => 0.0,
    };
    let [kh, kw] = w.kernel;
    let [sh, sw] = w.stride;
    // Pad so that every offset's strided slice of length s·o fits: extent ≥ (k − 1) + s·o.
    let need_h = (kh - 1 + sh * oh).max(h + 2 * w.padding[0]);
    let need_w = (kw - 1 + sw * ow).max(wd + 2 * w.padding[1]);
    let x = pad2d(x, w.padding[0], need_h - h - w.padding[0], w.padding[1], need_w - wd - w.padding[1], fill)?;
    if kh == sh && kw == sw {
        // Non-overlapping windows: one reshape, two reductions.
        let x = x.narrow(2, 0, oh * kh)?.narrow(3, 0, ow * kw)?.reshape((n, c, oh, kh, ow, kw))?;
        return match reduce {
            Reduce::Max => x.max(5)?.max(3),
            Reduce::Mean => x.mean(5)?.mean(3),
        };
    }
    let mut taps = Vec::with_capacity(kh * kw);
    for i in 0..kh {
        let rows = x.narrow(2, i, sh * oh)?.reshape((n, c, oh, sh, need_w))?.narrow(3, 0, 1)?.squeeze(3)?;
        for j in 0..kw {
            let tap = rows.narrow(3, j, sw * ow)?.reshape((n, c, oh, ow, sw))?.narrow(4, 0, 1)?.squeeze(4)?;
            taps.push(tap);
        }
    }
    let stacked = Tensor::stack(&taps, 4)?;
    match reduce {
        Reduce::Max => stacked.max(4),
        Reduce::Mean => stacked.mean(4),
    }
}

/// Pads the two spatial axes of (N, C, H, W) with a constant.
pub fn pad2d(x: &Tensor, top: usize, bottom: usize, left: usize, right: usize, value: f64) -> Result<Tensor> {
    let mut x = x.clone();
    for (dim, before, after) in [(2, top, bottom), (3, left, right)] {
        if before + after == 0 {
            continue;
        }
        let mut parts = Vec::with_capacity(3);
        let mut shape = x.dims().to_vec();
        if before > 0 {
            shape[dim] = before;
            parts.push(Tensor::full(value, shape.as_slice(), x.device())?.to_dtype(x.dtype())?);
        }
        parts.push(x.clone());
        if after > 0 {
            shape[dim] = after;
            parts.push(Tensor::full(value, shape.as_slice(), x.device())?.to_dtype(x.dtype())?);
        }
        x = Tensor::cat(&parts, dim)?;
    }
    Ok(x)
}

/// Logistic sigmoid from elementary ops (always differentiable).
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

/// Leaky ReLU: x for x > 0, slope·x otherwise.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    let zeros = x.zeros_like()?;
    x.maximum(&zeros)? + (x.minimum(&zeros)? * slope)?
}
