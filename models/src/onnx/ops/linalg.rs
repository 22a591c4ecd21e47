//! Gemm and MatMul.

use candle_core::Tensor;

use crate::onnx::node::Ctx;
use crate::Result;

type Out = Result<Vec<Tensor>>;

pub fn gemm(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let (a, b) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?);
    if a.rank() != 2 || b.rank() != 2 {
        return Err(ctx.err(format!("Gemm needs 2-D operands, got {:?} and {:?}", a.dims(), b.dims())));
    }
    let alpha = ctx.float("alpha", 1.0) as f64;
    let beta = ctx.float("beta", 1.0) as f64;
    let a = if ctx.int("transA", 0) != 0 { a.t()? } else { a.clone() };
    // A linear layer (B = W stored as (out, in)) takes the CPU kernel with the cheap backward.
    let mut y = if ctx.int("transB", 0) != 0 {
        crate::linear::linear(&a.contiguous()?, &b.contiguous()?)?
    } else {
        crate::linear::row_blocked_matmul(&a, b)?
    };
    if alpha != 1.0 {
        y = (y * alpha)?;
    }
    if let Some(c) = ctx.opt(inputs, 2) {
        let c = if beta != 1.0 { (c * beta)? } else { c.clone() };
        y = y.broadcast_add(&c)?;
    }
    Ok(vec![y])
}

pub fn matmul(ctx: &Ctx, inputs: &[Option<Tensor>]) -> Out {
    let (a, b) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?);
    if a.rank() == 0 || b.rank() == 0 {
        return Err(ctx.err("MatMul operands must have at least one dimension"));
    }
    let a1 = a.rank() == 1;
    let b1 = b.rank() == 1;
    let a = if a1 { a.unsqueeze(0)? } else { a.clone() };
    let b = if b1 { b.unsqueeze(1)? } else { b.clone() };
    let (m, k) = (a.dims()[a.rank() - 2], a.dims()[a.rank() - 1]);
    let (k2, n) = (b.dims()[b.rank() - 2], b.dims()[b.rank() - 1]);
    if k != k2 {
        return Err(ctx.err(format!("MatMul shapes {:?} and {:?} do not fit", a.dims(), b.dims())));
    }
    let a_batch = &a.dims()[..a.rank() - 2];
    let b_batch = &b.dims()[..b.rank() - 2];
    let mut y = if b.rank() == 2 {
        // Rows of every batch against one matrix: a single 2-D product.
        let rows: usize = a_batch.iter().product::<usize>() * m;
        let y = crate::linear::row_blocked_matmul(&a.contiguous()?.reshape((rows, k))?, &b)?;
        let mut shape = a_batch.to_vec();
        shape.extend([m, n]);
        y.reshape(shape)?
    } else {
        let batch = super::elementwise::broadcast_shape(ctx, a_batch, b_batch)?;
        let count: usize = batch.iter().product();
        let mut sa = batch.clone();
        sa.extend([m, k]);
        let mut sb = batch.clone();
        sb.extend([k, n]);
        let a3 = a.broadcast_as(sa)?.contiguous()?.reshape((count, m, k))?;
        let b3 = b.broadcast_as(sb)?.contiguous()?.reshape((count, k, n))?;
        let mut shape = batch;
        shape.extend([m, n]);
        a3.matmul(&b3)?.reshape(shape)?
    };
    if a1 {
        y = y.squeeze(y.rank() - 2)?;
    }
    if b1 {
        y = y.squeeze(y.rank() - 1)?;
    }
    Ok(vec![y])
}
