//! Softmax and layer normalization over the last axis.

use rayon::prelude::*;

/// Softmax over rows of `len` values.
pub(crate) struct Softmax {
    pub(crate) len: usize,
}

impl Softmax {
    pub(crate) fn forward(&self, rows: usize, x: &[&[f32]], y: &mut [f32]) {
        let l = self.len;
        y[..rows * l].par_chunks_mut(l).zip(x[0].par_chunks(l)).for_each(|(y, x)| {
            let m = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let sum = super::fastmath::exp_shifted(x, m, y);
            let inv = 1.0 / sum;
            y.iter_mut().for_each(|v| *v *= inv);
        });
    }

    pub(crate) fn backward(&self, rows: usize, y: &[f32], dy: &[f32], dx: &mut [Option<&mut [f32]>]) {
        let Some(dx) = dx[0].as_deref_mut() else { return };
        let l = self.len;
        dx[..rows * l].par_chunks_mut(l).zip(y.par_chunks(l).zip(dy.par_chunks(l))).for_each(|(dx, (y, g))| {
            let dot: f32 = y.iter().zip(g).map(|(a, b)| a * b).sum();
            dx.iter_mut().zip(y.iter().zip(g)).for_each(|(d, (&y, &g))| *d += y * (g - dot));
        });
    }
}

/// (x − mean) / sqrt(var + ε) · γ + β over rows of `len` values.
pub(crate) struct LayerNorm {
    pub(crate) len: usize,
    pub(crate) gamma: Vec<f32>,
    pub(crate) beta: Vec<f32>,
    pub(crate) eps: f32,
}

impl LayerNorm {
    fn stats(&self, x: &[f32]) -> (f32, f32) {
        let l = self.len as f32;
        let mean = x.iter().sum::<f32>() / l;
        let var = x.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / l;
        (mean, 1.0 / (var + self.eps).sqrt())
    }

    pub(crate) fn forward(&self, rows: usize, x: &[&[f32]], y: &mut [f32]) {
        let l = self.len;
        y[..rows * l].par_chunks_mut(l).zip(x[0].par_chunks(l)).for_each(|(y, x)| {
            let (mean, rstd) = self.stats(x);
            for i in 0..l {
                y[i] = (x[i] - mean) * rstd * self.gamma[i] + self.beta[i];
            }
        });
    }

    pub(crate) fn backward(&self, rows: usize, x: &[&[f32]], dy: &[f32], dx: &mut [Option<&mut [f32]>]) {
        let Some(dx) = dx[0].as_deref_mut() else { return };
        let l = self.len;
        dx[..rows * l].par_chunks_mut(l).zip(x[0].par_chunks(l).zip(dy.par_chunks(l))).for_each(|(dx, (x, g))| {
            let (mean, rstd) = self.stats(x);
            let (mut sg, mut sgx) = (0.0f32, 0.0f32);
            for i in 0..l {
                let gh = g[i] * self.gamma[i];
                sg += gh;
                sgx += gh * (x[i] - mean) * rstd;
            }
            let (mg, mgx) = (sg / l as f32, sgx / l as f32);
            for i in 0..l {
                let xh = (x[i] - mean) * rstd;
                dx[i] += rstd * (g[i] * self.gamma[i] - mg - xh * mgx);
            }
        });
    }
}
