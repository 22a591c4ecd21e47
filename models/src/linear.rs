//! Fully connected layer on the CPU as a candle custom op: y = x·Wᵀ. The backward computes the
//! input gradient, and the weight gradient only when the weight is tracked (training).

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

use crate::kernel::{binary, gemm, gemm_rows, Elem};

struct Linear;
struct LinearInputGrad;
struct LinearWeightGrad;

pub(crate) fn threads() -> gemm::Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    }
}

fn dims2(l: &Layout) -> Result<(usize, usize)> {
    match l.dims() {
        &[a, b] => Ok((a, b)),
        d => candle_core::bail!("linear expects 2-D tensors, got {d:?}"),
    }
}

/// y (n×o) = x (n×i) · Wᵀ, W (o×i).
fn forward<T: Elem>(x: &[T], w: &[T], n: usize, i: usize, o: usize) -> Vec<T> {
    let mut y = vec![T::default(); n * o];
    gemm_rows(n, o, i, &mut y, false, (x, i as isize, 1), (w, 1, i as isize));
    y
}

/// dx (n×i) = dy (n×o) · W (o×i).
fn input_grad<T: Elem>(dy: &[T], w: &[T], n: usize, i: usize, o: usize) -> Vec<T> {
    let mut dx = vec![T::default(); n * i];
    gemm_rows(n, i, o, &mut dx, false, (dy, o as isize, 1), (w, i as isize, 1));
    dx
}

/// dW (o×i) = dyᵀ (o×n) · x (n×i).
fn weight_grad<T: Elem>(x: &[T], dy: &[T], n: usize, i: usize, o: usize) -> Vec<T> {
    let mut dw = vec![T::default(); o * i];
    gemm(o, i, n, &mut dw, false, (dy, 1, o as isize), (x, i as isize, 1), threads());
    dw
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "gauntlet-linear"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let ((n, i), (o, i2)) = (dims2(l1)?, dims2(l2)?);
        if i != i2 {
            candle_core::bail!("linear: input has {i} features, the weight expects {i2}")
        }
        Ok((binary!(s1, l1, s2, l2, |x, w| forward(x, w, n, i, o)), Shape::from((n, o))))
    }
    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = x.track_op().then(|| dy.apply_op2_no_bwd(w, &LinearInputGrad)).transpose()?;
        let dw = w.track_op().then(|| x.apply_op2_no_bwd(&dy, &LinearWeightGrad)).transpose()?;
        Ok((dx, dw))
    }
}

impl CustomOp2 for LinearInputGrad {
    fn name(&self) -> &'static str {
        "gauntlet-linear-input-grad"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let ((n, o), (_, i)) = (dims2(l1)?, dims2(l2)?);
        Ok((binary!(s1, l1, s2, l2, |dy, w| input_grad(dy, w, n, i, o)), Shape::from((n, i))))
    }
}

impl CustomOp2 for LinearWeightGrad {
    fn name(&self) -> &'static str {
        "gauntlet-linear-weight-grad"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let ((n, i), (_, o)) = (dims2(l1)?, dims2(l2)?);
        Ok((binary!(s1, l1, s2, l2, |x, dy| weight_grad(x, dy, n, i, o)), Shape::from((o, i))))
    }
}

/// The input gradient of [`linear`], without building a graph.
pub fn linear_input_grad(dy: &Tensor, w: &Tensor) -> Result<Tensor> {
    dy.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &LinearInputGrad)
}

/// a (rows, k) · b (k, n) where the rows are samples (or belong to samples): computed in blocks
/// of [`ROW_BLOCK`](crate::kernel::ROW_BLOCK) rows, the last padded with zeros, so that every
/// row's result has the same bits whatever the number of rows (see [`crate::kernel::gemm_rows`]).
pub fn row_blocked_matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    use crate::kernel::ROW_BLOCK;
    let (rows, k) = a.dims2()?;
    let n = b.dim(1)?;
    let blocks = rows.div_ceil(ROW_BLOCK).max(1);
    let pad = blocks * ROW_BLOCK - rows;
    let a = if pad > 0 { a.pad_with_zeros(0, 0, pad)? } else { a.clone() };
    let y = a.contiguous()?.reshape((blocks, ROW_BLOCK, k))?.broadcast_matmul(&b.contiguous()?)?;
    y.reshape((blocks * ROW_BLOCK, n))?.narrow(0, 0, rows)
}

/// x (N, in) · Wᵀ for W (out, in); the fast path on CPU f32/f64, candle's matmul elsewhere.
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let fast = x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) && x.dtype() == w.dtype();
    if !fast || x.rank() != 2 {
        return x.matmul(&w.t()?);
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, Linear)
}
