//! Products: a data matrix times a constant weight (Gemm, MatMul with a constant right-hand
//! side) with bias and activation in the epilogue, and the batched product of two data values
//! (attention's q·kᵀ and p·v).

use rayon::prelude::*;

use super::sgemm::{self, gemm_packed, pack_a_into, pack_b_at, packed_b_len, MR};
use super::{chunks_opt, few, scratch_a, scratch_b, Act};
use crate::kernel::{gemm_rows, sum_parts};

pub(crate) struct Dense {
    /// Input features K and output features M.
    pub(crate) k: usize,
    pub(crate) m: usize,
    /// (K, M), row-major.
    pub(crate) w: Vec<f32>,
    pub(crate) bias: Vec<f32>,
    pub(crate) act: Act,
    /// Rows of the input per sample (1 for Gemm; the token count for a transformer's MatMul).
    pub(crate) rows: usize,
    /// W (K × M) and Wᵀ (M × K) packed as right-hand sides for [`sgemm`].
    pub(crate) packed: Option<(Vec<f32>, Vec<f32>)>,
}

/// Rows per task of the packed products.
const ROWS: usize = 8 * MR;

/// y (rows × n) [+]= x (rows × k) · B (packed), in blocks of [`ROWS`] rows in parallel.
fn rows_product(rows: usize, n: usize, k: usize, x: &[f32], b: &[f32], y: &mut [f32], acc: bool) {
    y[..rows * n].par_chunks_mut(ROWS * n).enumerate().for_each(|(t, yb)| {
        let r = yb.len() / n;
        scratch_b(r.div_ceil(MR) * MR * k, |pa| {
            pack_a_into(&x[t * ROWS * k..], k, 1, r, k, pa);
            gemm_packed(r, n, k, pa, b, yb, n, acc);
        });
    });
}

fn pack_b_full(src: &[f32], k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0; packed_b_len(k, n)];
    pack_b_at(src, n, k, n, &mut out, 0);
    out
}

impl Dense {
    pub(crate) fn new(k: usize, m: usize, w: Vec<f32>, bias: Vec<f32>, rows: usize) -> Dense {
        Dense { k, m, w, bias, act: Act::None, rows, packed: None }
    }

    /// Packs the weights for the AVX-512 products, once the plan is final.
    pub(crate) fn prepare(&mut self) {
        if !sgemm::available() {
            return;
        }
        let (k, m) = (self.k, self.m);
        let wt: Vec<f32> = (0..m * k).map(|i| self.w[(i % k) * m + i / k]).collect();
        self.packed = Some((pack_b_full(&self.w, k, m), pack_b_full(&wt, m, k)));
    }

    /// The gradients of the weights (K × M) and of the bias from the input `x`, output `y` and
    /// output gradient `dy` (training): dW = xᵀ · dZ, db = Σ dZ over the rows, dZ the gradient
    /// before the activation. Rows go in fixed groups to the threads and the groups' sums are
    /// added in order, so the result does not depend on the thread count.
    pub(crate) fn weight_grad(&self, n: usize, x: &[f32], y: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (k, m) = (self.k, self.m);
        let rows = n * self.rows;
        let chunk = 32;
        let starts: Vec<usize> = (0..rows).step_by(chunk).collect();
        let parts: Vec<Vec<f32>> = starts
            .into_par_iter()
            .map(|r0| {
                let r = chunk.min(rows - r0);
                let mut acc = vec![0.0f32; k * m + m];
                let mut dz = vec![0.0f32; r * m];
                let (ys, dys) = (&y[r0 * m..][..r * m], &dy[r0 * m..][..r * m]);
                match self.act {
                    Act::None => dz.copy_from_slice(dys),
                    act => dz.iter_mut().zip(dys.iter().zip(ys)).for_each(|(z, (&g, &v))| *z = g * act.slope(v)),
                }
                let (dw, db) = acc.split_at_mut(k * m);
                for row in dz.chunks(m) {
                    db.iter_mut().zip(row).for_each(|(b, &g)| *b += g);
                }
                // dW (k × m) = xᵀ (k × r) · dZ (r × m)
                let xs = &x[r0 * k..][..r * k];
                crate::kernel::gemm(
                    k,
                    m,
                    r,
                    dw,
                    false,
                    (xs, 1, k as isize),
                    (&dz, m as isize, 1),
                    gemm::Parallelism::None,
                );
                acc
            })
            .collect();
        let mut sum = sum_parts(parts, k * m + m);
        let db = sum.split_off(k * m);
        (sum, db)
    }

    /// New weights (K × M) and bias, repacked for the products.
    pub(crate) fn set_weights(&mut self, w: &[f32], bias: &[f32]) {
        self.w.copy_from_slice(w);
        self.bias.copy_from_slice(bias);
        self.packed = None;
        self.prepare();
    }

    pub(crate) fn describe(&self) -> String {
        format!("dense {}→{} ×{} rows{}", self.k, self.m, self.rows, self.act.name())
    }

    pub(crate) fn flops(&self) -> f64 {
        2.0 * (self.rows * self.k * self.m) as f64
    }

    pub(crate) fn forward(&self, n: usize, x: &[&[f32]], y: &mut [f32]) {
        let rows = n * self.rows;
        let m = self.m;
        let y = &mut y[..rows * m];
        match &self.packed {
            Some((w, _)) => rows_product(rows, m, self.k, x[0], w, y, false),
            None => gemm_rows(rows, m, self.k, y, false, (x[0], self.k as isize, 1), (&self.w, m as isize, 1)),
        }
        let act = self.act;
        y.par_chunks_mut(m * 64).for_each(|block| {
            for row in block.chunks_mut(m) {
                row.iter_mut().zip(&self.bias).for_each(|(v, &b)| *v = act.apply(*v + b));
            }
        });
    }

    pub(crate) fn backward(&self, n: usize, y: &[f32], dy: &[f32], dx: &mut [Option<&mut [f32]>]) {
        let Some(dx) = dx[0].as_deref_mut() else { return };
        let rows = n * self.rows;
        let len = rows * self.m;
        let grad = |dz: &[f32], dx: &mut [f32]| match &self.packed {
            Some((_, wt)) => rows_product(rows, self.k, self.m, dz, wt, dx, true),
            None => gemm_rows(rows, self.k, self.m, dx, true, (dz, self.m as isize, 1), (&self.w, 1, self.m as isize)),
        };
        if self.act == Act::None {
            grad(&dy[..len], dx);
        } else {
            scratch_a(len, |dz| {
                dz.iter_mut().zip(dy.iter().zip(y)).for_each(|(z, (&g, &v))| *z = g * self.act.slope(v));
                grad(dz, dx)
            });
        }
    }
}

/// A (…, M, K) · B (…, K, N) for two data values with the same leading dimensions.
pub(crate) struct BatchMatMul {
    pub(crate) m: usize,
    pub(crate) k: usize,
    pub(crate) n: usize,
    /// Products per sample.
    pub(crate) items: usize,
}

fn gemm1(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    acc: bool,
    lhs: (&[f32], isize, isize),
    rhs: (&[f32], isize, isize),
) {
    crate::kernel::gemm(m, n, k, dst, acc, lhs, rhs, gemm::Parallelism::None)
}

impl BatchMatMul {
    pub(crate) fn describe(&self) -> String {
        format!("batched matmul {}×{}·{}×{} ×{}", self.m, self.k, self.k, self.n, self.items)
    }

    pub(crate) fn flops(&self) -> f64 {
        2.0 * (self.items * self.m * self.k * self.n) as f64
    }

    pub(crate) fn forward(&self, n: usize, x: &[&[f32]], y: &mut [f32]) {
        let (m, k, nn) = (self.m, self.k, self.n);
        let (a, b) = (x[0], x[1]);
        let total = n * self.items;
        y[..total * m * nn].par_chunks_mut(m * nn).enumerate().for_each(|(i, yi)| {
            let ai = &a[i * m * k..][..m * k];
            let bi = &b[i * k * nn..][..k * nn];
            gemm1(m, nn, k, yi, false, (ai, k as isize, 1), (bi, nn as isize, 1));
        });
    }

    pub(crate) fn backward(&self, n: usize, x: &[&[f32]], dy: &[f32], dx: &mut [Option<&mut [f32]>]) {
        let (m, k, nn) = (self.m, self.k, self.n);
        let (a, b) = (x[0], x[1]);
        let total = n * self.items;
        let (da, db) = dx.split_at_mut(1);
        let dac = chunks_opt(da[0].as_deref_mut(), m * k, total);
        let dbc = chunks_opt(db[0].as_deref_mut(), k * nn, total);
        let one = |i: usize, da: Option<&mut [f32]>, db: Option<&mut [f32]>| {
            let g = &dy[i * m * nn..][..m * nn];
            if let Some(da) = da {
                // dA (m×k) += dY (m×n) · Bᵀ (n×k)
                gemm1(m, k, nn, da, true, (g, nn as isize, 1), (&b[i * k * nn..], 1, nn as isize));
            }
            if let Some(db) = db {
                // dB (k×n) += Aᵀ (k×m) · dY (m×n)
                gemm1(k, nn, m, db, true, (&a[i * m * k..], 1, k as isize), (g, nn as isize, 1));
            }
        };
        let work: Vec<_> = dac.into_iter().zip(dbc).enumerate().collect();
        if few(total) {
            work.into_iter().for_each(|(i, (p, q))| one(i, p, q));
        } else {
            work.into_par_iter().for_each(|(i, (p, q))| one(i, p, q));
        }
    }
}
