//! Shared pieces of the CPU custom ops: the element types, contiguous access, dtype dispatch.

use candle_core::{Layout, Result};

/// The float types the CPU kernels run on.
pub(crate) trait Elem:
    Copy + Send + Sync + Default + PartialOrd + std::ops::Add<Output = Self> + std::ops::AddAssign + 'static
{
    const ONE: Self;
    const NEG_INF: Self;
}

impl Elem for f32 {
    const ONE: f32 = 1.0;
    const NEG_INF: f32 = f32::NEG_INFINITY;
}

impl Elem for f64 {
    const ONE: f64 = 1.0;
    const NEG_INF: f64 = f64::NEG_INFINITY;
}

/// dst (m×n, row-major) = [dst +] lhs·rhs. `lhs` and `rhs` are (data, row stride, column stride).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    accumulate: bool,
    lhs: (&[T], isize, isize),
    rhs: (&[T], isize, isize),
    parallelism: gemm::Parallelism,
) {
    assert!(dst.len() >= m * n, "gemm: destination too small");
    // SAFETY: the callers pass slices whose extents cover m×k (lhs) and k×n (rhs) under the given
    // strides (checked in debug builds below); dst covers m×n and does not alias the sources.
    debug_assert!(m == 0 || k == 0 || lhs.0.len() as isize > (m as isize - 1) * lhs.1 + (k as isize - 1) * lhs.2);
    debug_assert!(k == 0 || n == 0 || rhs.0.len() as isize > (k as isize - 1) * rhs.1 + (n as isize - 1) * rhs.2);
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.0.as_ptr(),
            lhs.2,
            lhs.1,
            rhs.0.as_ptr(),
            rhs.2,
            rhs.1,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// Rows per call of [`gemm_rows`]: every row of a batch goes through a product of this many rows.
pub(crate) const ROW_BLOCK: usize = 64;

/// dst (m×n) = [dst +] lhs·rhs where the m rows of `lhs` are samples: computed in blocks of
/// exactly [`ROW_BLOCK`] rows (the last one padded with zero rows), so that each sample's
/// result has the same bits whatever the batch it came in. (The matrix kernels choose their
/// blocking, and so their order of summation, from the matrix sizes: a product over the whole
/// batch would give a sample other last bits in a batch of another size.) Blocks run in
/// parallel; `lhs` is (data, row stride, column stride).
pub(crate) fn gemm_rows<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    accumulate: bool,
    lhs: (&[T], isize, isize),
    rhs: (&[T], isize, isize),
) {
    use rayon::prelude::*;
    assert!(dst.len() >= m * n, "gemm: destination too small");
    let (data, rs, cs) = lhs;
    let block = |b: usize, out: &mut [T], parallelism: gemm::Parallelism| {
        let first = b * ROW_BLOCK;
        let rows = out.len() / n.max(1);
        if rows == ROW_BLOCK && n > 0 {
            let start = (first as isize * rs) as usize;
            gemm(ROW_BLOCK, n, k, out, accumulate, (&data[start..], rs, cs), rhs, parallelism);
            return;
        }
        let mut a = vec![T::default(); ROW_BLOCK * k];
        for r in 0..rows {
            for c in 0..k {
                a[r * k + c] = data[((first + r) as isize * rs + c as isize * cs) as usize];
            }
        }
        let mut y = vec![T::default(); ROW_BLOCK * n];
        if accumulate {
            y[..out.len()].copy_from_slice(out);
        }
        gemm(ROW_BLOCK, n, k, &mut y, accumulate, (&a, k as isize, 1), rhs, parallelism);
        out.copy_from_slice(&y[..out.len()]);
    };
    let chunks = dst[..m * n].chunks_mut((ROW_BLOCK * n).max(1));
    let threads = rayon::current_num_threads();
    if m.div_ceil(ROW_BLOCK) >= threads {
        // Enough blocks to keep every thread busy: one block per task.
        chunks
            .collect::<Vec<_>>()
            .into_par_iter()
            .enumerate()
            .for_each(|(b, out)| block(b, out, gemm::Parallelism::None));
    } else {
        // Few blocks: each uses every thread (the split across threads does not change the sums).
        let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
        chunks.enumerate().for_each(|(b, out)| block(b, out, parallelism));
    }
}

/// The contiguous contents of a storage under its layout.
pub(crate) fn slice<'a, T>(s: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s[a..b]),
        None => candle_core::bail!("custom op expects contiguous tensors"),
    }
}

/// Runs `$body` on the f32 or f64 contents of one storage and wraps the result.
macro_rules! unary {
    ($s:expr, $l:expr, |$a:ident| $body:expr) => {
        match $s {
            candle_core::CpuStorage::F32(v) => {
                let $a = $crate::kernel::slice(v, $l)?;
                candle_core::CpuStorage::F32($body)
            }
            candle_core::CpuStorage::F64(v) => {
                let $a = $crate::kernel::slice(v, $l)?;
                candle_core::CpuStorage::F64($body)
            }
            _ => candle_core::bail!("custom op supports f32 and f64"),
        }
    };
}

/// Runs `$body` on the f32 or f64 contents of two storages of one dtype and wraps the result.
macro_rules! binary {
    ($s1:expr, $l1:expr, $s2:expr, $l2:expr, |$a:ident, $b:ident| $body:expr) => {
        match ($s1, $s2) {
            (candle_core::CpuStorage::F32(x), candle_core::CpuStorage::F32(y)) => {
                let ($a, $b) = ($crate::kernel::slice(x, $l1)?, $crate::kernel::slice(y, $l2)?);
                candle_core::CpuStorage::F32($body)
            }
            (candle_core::CpuStorage::F64(x), candle_core::CpuStorage::F64(y)) => {
                let ($a, $b) = ($crate::kernel::slice(x, $l1)?, $crate::kernel::slice(y, $l2)?);
                candle_core::CpuStorage::F64($body)
            }
            _ => candle_core::bail!("custom op supports f32 and f64 of one dtype"),
        }
    };
}

pub(crate) use {binary, unary};

/// The element-wise sum of per-thread partial results, each `len` long (zeros when there are none).
pub(crate) fn sum_parts(parts: Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    let mut it = parts.into_iter();
    let mut sum = it.next().unwrap_or_else(|| vec![0.0; len]);
    for p in it {
        sum.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
    }
    sum
}
