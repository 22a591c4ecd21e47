//! A packed single-precision matrix product with AVX-512 micro-kernels (selected at run time;
//! where the CPU lacks AVX-512 the callers use the `gemm` crate instead).
//!
//! C (m × n, row-major) [+]= A (m × k) · B (k × n), both operands packed: A in panels of [`MR`]
//! rows (for each k, MR consecutive values), B in panels of [`NR`] columns (for each k, NR
//! consecutive values), zero-padded at the edges. A constant operand (a layer's weights) is
//! packed once, at compile time.
//!
//! Each element of C is summed over k in one fixed order — blocks of [`KC`] in turn, each in
//! increasing k — whatever m and n are, so a sample's result does not depend on the other
//! columns it is computed with (a batch of any size gives the same bits).

/// Rows of A per micro-kernel.
pub(crate) const MR: usize = 8;
/// Columns of B per micro-kernel (two AVX-512 vectors).
pub(crate) const NR: usize = 32;
/// Depth per block: a B micro-panel (KC × NR) stays in L1.
pub(crate) const KC: usize = 256;

/// Whether this CPU runs the micro-kernels (and `GAUNTLET_NO_AVX512` is not set: it makes the
/// compiled executor take the portable path, for testing that path on an AVX-512 machine).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static AVX512: OnceLock<bool> = OnceLock::new();
        *AVX512.get_or_init(|| {
            std::env::var_os("GAUNTLET_NO_AVX512").is_none() && std::arch::is_x86_feature_detected!("avx512f")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A packed as MR-row panels: `src` is (m × k) with (row stride, column stride).
pub(crate) fn pack_a(src: &[f32], rs: usize, cs: usize, m: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0.0; m.div_ceil(MR) * k * MR];
    pack_a_into(src, rs, cs, m, k, &mut out);
    out
}

/// [`pack_a`] into `out` (at least `m.div_ceil(MR) · k · MR` long); padding rows are zeroed.
pub(crate) fn pack_a_into(src: &[f32], rs: usize, cs: usize, m: usize, k: usize, out: &mut [f32]) {
    let panels = m.div_ceil(MR);
    out[..panels * k * MR].fill(0.0);
    for p in 0..panels {
        let dst = &mut out[p * k * MR..][..k * MR];
        for r in 0..MR.min(m - p * MR) {
            let row = p * MR + r;
            for kk in 0..k {
                dst[kk * MR + r] = src[row * rs + kk * cs];
            }
        }
    }
}

/// Length of B packed as NR-column panels.
pub(crate) fn packed_b_len(k: usize, n: usize) -> usize {
    n.div_ceil(NR) * k * NR
}

#[cfg(test)]
/// B packed into `out` as NR-column panels: `src` is (k × n) with (row stride, column stride).
pub(crate) fn pack_b(src: &[f32], rs: usize, cs: usize, k: usize, n: usize, out: &mut [f32]) {
    let panels = n.div_ceil(NR);
    for p in 0..panels {
        let dst = &mut out[p * k * NR..][..k * NR];
        let cols = NR.min(n - p * NR);
        for kk in 0..k {
            let d = &mut dst[kk * NR..][..NR];
            if cs == 1 {
                d[..cols].copy_from_slice(&src[kk * rs + p * NR..][..cols]);
            } else {
                for (c, v) in d[..cols].iter_mut().enumerate() {
                    *v = src[kk * rs + (p * NR + c) * cs];
                }
            }
            d[cols..].fill(0.0);
        }
    }
}

/// Columns `col0..col0 + cols` of a packed B (of depth k) from `src` (k × cols, row stride `rs`,
/// contiguous columns). Lanes of the last panel beyond the matrix are left as they are: they
/// only reach columns of C that are never stored.
pub(crate) fn pack_b_at(src: &[f32], rs: usize, k: usize, cols: usize, out: &mut [f32], col0: usize) {
    let mut c = 0;
    while c < cols {
        let col = col0 + c;
        let (p, lane) = (col / NR, col % NR);
        let len = (NR - lane).min(cols - c);
        let panel = &mut out[p * k * NR..][..k * NR];
        for kk in 0..k {
            panel[kk * NR + lane..][..len].copy_from_slice(&src[kk * rs + c..][..len]);
        }
        c += len;
    }
}

/// C (m × n, row stride `ldc`) [+]= A·B from packed operands (A with `k` depth, B likewise).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_packed(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, acc: bool) {
    assert!(available(), "AVX-512 micro-kernels on a CPU without AVX-512");
    assert!(a.len() >= m.div_ceil(MR) * k * MR && b.len() >= n.div_ceil(NR) * k * NR);
    assert!(m == 0 || n == 0 || c.len() >= (m - 1) * ldc + n);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F is present (checked above); the slices cover every access (asserted).
    unsafe {
        x86::gemm(m, n, k, a, b, c.as_mut_ptr(), ldc, acc)
    }
}

/// A raw pointer that tasks writing disjoint parts of one buffer may share.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: only used to hand disjoint column ranges of one C to parallel tasks.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

/// [`gemm_packed`] with the column panels split among the threads (each element is summed in
/// the same order either way).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_packed_par(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    acc: bool,
) {
    use rayon::prelude::*;
    let (threads, np) = (rayon::current_num_threads(), n.div_ceil(NR));
    if threads <= 1 || np < 2 {
        return gemm_packed(m, n, k, a, b, c, ldc, acc);
    }
    assert!(available(), "AVX-512 micro-kernels on a CPU without AVX-512");
    assert!(a.len() >= m.div_ceil(MR) * k * MR && b.len() >= np * k * NR);
    assert!(m == 0 || c.len() >= (m - 1) * ldc + n);
    let per = np.div_ceil(threads);
    let cp = Shared(c.as_mut_ptr());
    (0..np).step_by(per).collect::<Vec<_>>().into_par_iter().for_each(move |q0| {
        let cp = cp;
        let q1 = (q0 + per).min(np);
        let col0 = q0 * NR;
        let cols = (q1 * NR).min(n) - col0;
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in gemm_packed; each task writes only columns col0..col0 + cols of C.
        unsafe {
            x86::gemm(m, cols, k, a, &b[q0 * k * NR..], cp.0.add(col0), ldc, acc)
        }
    });
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{KC, MR, NR};

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn gemm(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: *mut f32, ldc: usize, acc: bool) {
        let (mp, np) = (m.div_ceil(MR), n.div_ceil(NR));
        let mut k0 = 0;
        while k0 < k || (k == 0 && k0 == 0) {
            let kc = KC.min(k - k0);
            let first = k0 == 0;
            for q in 0..np {
                let bp = b.as_ptr().add(q * k * NR + k0 * NR);
                let cols = NR.min(n - q * NR);
                for p in 0..mp {
                    let ap = a.as_ptr().add(p * k * MR + k0 * MR);
                    let rows = MR.min(m - p * MR);
                    let cp = c.add(p * MR * ldc + q * NR);
                    kernel(kc, ap, bp, cp, ldc, acc || !first, rows, cols);
                }
            }
            if k == 0 {
                break;
            }
            k0 += kc;
        }
    }

    /// C[rows × cols] (row stride ldc) [+]= Σ_k a[k][0..MR] ⊗ b[k][0..NR].
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel(
        k: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        acc: bool,
        rows: usize,
        cols: usize,
    ) {
        let mut s = [[_mm512_setzero_ps(); 2]; MR];
        for kk in 0..k {
            let b0 = _mm512_loadu_ps(b.add(kk * NR));
            let b1 = _mm512_loadu_ps(b.add(kk * NR + 16));
            let ak = a.add(kk * MR);
            for (r, sr) in s.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*ak.add(r));
                sr[0] = _mm512_fmadd_ps(av, b0, sr[0]);
                sr[1] = _mm512_fmadd_ps(av, b1, sr[1]);
            }
        }
        let m0: __mmask16 = if cols >= 16 { 0xFFFF } else { ((1u32 << cols) - 1) as u16 };
        let m1: __mmask16 = if cols >= 32 {
            0xFFFF
        } else if cols > 16 {
            ((1u32 << (cols - 16)) - 1) as u16
        } else {
            0
        };
        for (r, sr) in s.iter().enumerate().take(rows) {
            let p = c.add(r * ldc);
            let (mut v0, mut v1) = (sr[0], sr[1]);
            if acc {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, p));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, p.add(16)));
            }
            _mm512_mask_storeu_ps(p, m0, v0);
            _mm512_mask_storeu_ps(p.add(16), m1, v1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f64> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|t| a[i * k + t] as f64 * b[t * n + j] as f64).sum();
            }
        }
        c
    }

    #[test]
    fn products_at_every_edge_match_a_float64_reference() {
        if !available() {
            return;
        }
        for &(m, n, k) in &[(1, 1, 1), (8, 32, 256), (13, 45, 300), (64, 16, 576), (3, 100, 7), (17, 33, 513)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
            let pa = pack_a(&a, k, 1, m, k);
            let mut pb = vec![0.0; packed_b_len(k, n)];
            pack_b(&b, n, 1, k, n, &mut pb);
            let mut c = vec![1.0f32; m * n];
            gemm_packed(m, n, k, &pa, &pb, &mut c, n, true);
            let want = reference(m, n, k, &a, &b);
            for (x, w) in c.iter().zip(&want) {
                assert!((*x as f64 - (w + 1.0)).abs() < 1e-4 * (k as f64).sqrt(), "{m}×{n}×{k}: {x} vs {}", w + 1.0);
            }
        }
    }

    #[test]
    fn a_column_has_the_same_bits_whatever_the_columns_beside_it() {
        if !available() {
            return;
        }
        let (m, k) = (24, 700);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1009) as f32).sin()).collect();
        let column = |n: usize| -> Vec<f32> {
            let b: Vec<f32> = (0..k * n).map(|i| (((i / n) * 31 + (i % n) * 17) as f32).cos()).collect();
            let pa = pack_a(&a, k, 1, m, k);
            let mut pb = vec![0.0; packed_b_len(k, n)];
            pack_b(&b, n, 1, k, n, &mut pb);
            let mut c = vec![0.0; m * n];
            gemm_packed(m, n, k, &pa, &pb, &mut c, n, false);
            (0..m).map(|i| c[i * n]).collect()
        };
        assert_eq!(column(1), column(40));
        assert_eq!(column(1), column(300));
    }
}
