//! Differentiable building blocks whose candle counterparts have a wrong or missing backward.
//!
//! candle's `max_pool2d` backward scales the upstream gradient by the fraction of maxima in each
//! window instead of routing it to the maximum, and has no backward when kernel ≠ stride; its
//! `avg_pool2d` backward assumes kernel = stride; its `max` reduction gives every tied element the
//! whole gradient; its ReLU passes the gradient at 0. The ops here follow PyTorch exactly: max
//! pooling routes the gradient to the first maximum of each window (in row-major window order),
//! ReLU has gradient 0 at 0. Ties matter: on MNIST, flat background makes many windows tie, and a
//! gradient copied to every tied element changes the sign pattern that FGSM and PGD step along.

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
    // Windows as the last axis, (N, C, OH, OW, kh·kw), taps in row-major window order.
    let windows = if kh == sh && kw == sw {
        // Non-overlapping windows: one reshape and a permutation.
        x.narrow(2, 0, oh * kh)?
            .narrow(3, 0, ow * kw)?
            .reshape((n, c, oh, kh, ow, kw))?
            .permute((0, 1, 2, 4, 3, 5))?
            .reshape((n, c, oh, ow, kh * kw))?
    } else {
        strided_taps(&x, [kh, kw], [sh, sw], [oh, ow])?
    };
    match reduce {
        Reduce::Mean => windows.mean(4),
        Reduce::Max => {
            // Route the gradient to the first maximum only, as PyTorch does.
            let first = windows.detach().argmax_keepdim(4)?;
            windows.gather(&first, 4)?.squeeze(4)
        }
    }
}

/// Every window tap of a padded (N, C, H, W) tensor, stacked as (N, C, OH, OW, kh·kw).
fn strided_taps(x: &Tensor, [kh, kw]: [usize; 2], [sh, sw]: [usize; 2], [oh, ow]: [usize; 2]) -> Result<Tensor> {
    let (n, c, _, need_w) = x.dims4()?;
    let mut taps = Vec::with_capacity(kh * kw);
    for i in 0..kh {
        let rows = x.narrow(2, i, sh * oh)?.reshape((n, c, oh, sh, need_w))?.narrow(3, 0, 1)?.squeeze(3)?;
        for j in 0..kw {
            let tap = rows.narrow(3, j, sw * ow)?.reshape((n, c, oh, ow, sw))?.narrow(4, 0, 1)?.squeeze(4)?;
            taps.push(tap);
        }
    }
    Tensor::stack(&taps, 4)
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

/// ReLU with PyTorch's gradient convention (0 at 0).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    x.gt(0.0)?.where_cond(x, &x.zeros_like()?)
}

/// Leaky ReLU: x for x > 0, slope·x otherwise.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    let zeros = x.zeros_like()?;
    x.maximum(&zeros)? + (x.minimum(&zeros)? * slope)?
}
