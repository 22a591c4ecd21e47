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
