//! The compiled executor's kernels: each computes its forward pass and accumulates the
//! vector-Jacobian product for its data inputs (the input gradient only: weights are constants).
//!
//! Every kernel works on `n` samples whose values lie one after another (a sample's part of a
//! value is contiguous), so each sample's result depends on that sample alone and the same
//! buffers serve any batch up to their capacity.

use std::cell::RefCell;

pub(crate) mod conv;
pub(crate) mod dense;
pub(crate) mod elementwise;
pub(crate) mod fastmath;
pub(crate) mod gather;
pub(crate) mod norm;
pub(crate) mod pool;
pub(crate) mod sgemm;

/// An activation applied in a kernel's epilogue, whose derivative is read off its output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Act {
    None,
    Relu,
    /// Clip to [lo, hi] (ReLU6 is Clip(0, 6)).
    Clip(f32, f32),
    /// LeakyReLU with a positive slope below zero.
    Leaky(f32),
}

impl Act {
    #[inline(always)]
    pub(crate) fn apply(self, v: f32) -> f32 {
        match self {
            Act::None => v,
            Act::Relu => {
                if v > 0.0 {
                    v
                } else {
                    0.0
                }
            }
            Act::Clip(lo, hi) => v.max(lo).min(hi),
            Act::Leaky(a) => {
                if v > 0.0 {
                    v
                } else {
                    v * a
                }
            }
        }
    }

    /// d act / d pre-activation, from the output `y`.
    #[inline(always)]
    pub(crate) fn slope(self, y: f32) -> f32 {
        match self {
            Act::None => 1.0,
            Act::Relu => (y > 0.0) as u8 as f32,
            Act::Clip(lo, hi) => (y > lo && y < hi) as u8 as f32,
            Act::Leaky(a) => {
                if y > 0.0 {
                    1.0
                } else {
                    a
                }
            }
        }
    }

    pub(crate) fn name(self) -> String {
        match self {
            Act::None => String::new(),
            Act::Relu => "+relu".into(),
            Act::Clip(lo, hi) => format!("+clip({lo},{hi})"),
            Act::Leaky(a) => format!("+leaky({a})"),
        }
    }
}

thread_local! {
    static SCRATCH_A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static SCRATCH_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

type Scratch = std::thread::LocalKey<RefCell<Vec<f32>>>;

/// Runs `f` on `len` values of a per-thread buffer kept between calls (contents unspecified).
/// Should the buffer be in use already on this thread (a kernel running inside another's
/// parallel section), `f` gets a fresh one.
fn with_scratch<R>(key: &'static Scratch, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    key.with(|s| match s.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < len {
                v.resize(len, 0.0);
            }
            f(&mut v[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// A per-thread buffer of `len` values.
pub(crate) fn scratch_a<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_scratch(&SCRATCH_A, len, f)
}

/// A second per-thread buffer, for kernels that need two at once.
pub(crate) fn scratch_b<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_scratch(&SCRATCH_B, len, f)
}

/// Whether a batch of `n` samples is too small to keep every thread busy, so that kernels
/// run the samples one after another and parallelize inside each.
pub(crate) fn few(n: usize) -> bool {
    n < rayon::current_num_threads()
}

/// Splits an optional gradient buffer into per-sample chunks (or `n` Nones).
pub(crate) fn chunks_opt(d: Option<&mut [f32]>, len: usize, n: usize) -> Vec<Option<&mut [f32]>> {
    match d {
        Some(d) => d.chunks_mut(len.max(1)).take(n).map(Some).collect(),
        None => (0..n).map(|_| None).collect(),
    }
}
