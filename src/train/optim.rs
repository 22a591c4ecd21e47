//! Optimisers over the models' weights (plain `f32` vectors, one per tensor): SGD with momentum
//! as PyTorch defines it, and Adam with decoupled weight decay (AdamW).

use serde::{Deserialize, Serialize};

/// Which optimiser updates the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// v ← μ·v + g + λ·w; w ← w − η·v (PyTorch's `SGD(momentum=μ, weight_decay=λ)`).
    Sgd,
    /// Adam (β₁ 0.9, β₂ 0.999, ε 1e-8) with decoupled weight decay w ← w − η·λ·w (AdamW).
    Adam,
}

/// An optimiser's state: one or two moment vectors per tensor and the step count.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimizer {
    pub kind: OptimizerKind,
    pub momentum: f64,
    pub weight_decay: f64,
    /// First moments (SGD's velocity, Adam's m), one per tensor.
    pub m: Vec<Vec<f32>>,
    /// Adam's second moments (empty for SGD).
    pub v: Vec<Vec<f32>>,
    pub steps: u64,
}

impl Optimizer {
    /// A fresh optimiser for tensors of the given lengths.
    pub fn new(kind: OptimizerKind, momentum: f64, weight_decay: f64, lens: &[usize]) -> Optimizer {
        let zeros = || lens.iter().map(|&l| vec![0.0; l]).collect::<Vec<_>>();
        let v = if kind == OptimizerKind::Adam { zeros() } else { Vec::new() };
        Optimizer { kind, momentum, weight_decay, m: zeros(), v, steps: 0 }
    }

    /// One update of `params` by `grads` at learning rate `lr`; `decay[i]` says whether tensor i
    /// takes weight decay (weights do, biases do not).
    pub fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], decay: &[bool], lr: f64) {
        self.steps += 1;
        let t = self.steps as i32;
        for (i, (w, g)) in params.iter_mut().zip(grads).enumerate() {
            let wd = if decay[i] { self.weight_decay } else { 0.0 };
            match self.kind {
                OptimizerKind::Sgd => {
                    let mu = self.momentum;
                    for ((w, &g), m) in w.iter_mut().zip(g.iter()).zip(self.m[i].iter_mut()) {
                        let d = g as f64 + wd * *w as f64;
                        let v = if t == 1 { d } else { mu * *m as f64 + d };
                        *m = v as f32;
                        *w = (*w as f64 - lr * v) as f32;
                    }
                }
                OptimizerKind::Adam => {
                    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
                    let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                    let ms = self.m[i].iter_mut().zip(self.v[i].iter_mut());
                    for ((w, &g), (m, v)) in w.iter_mut().zip(g.iter()).zip(ms) {
                        let g = g as f64;
                        let mn = b1 * *m as f64 + (1.0 - b1) * g;
                        let vn = b2 * *v as f64 + (1.0 - b2) * g * g;
                        (*m, *v) = (mn as f32, vn as f32);
                        let wv = *w as f64 * (1.0 - lr * wd);
                        *w = (wv - lr * (mn / c1) / ((vn / c2).sqrt() + eps)) as f32;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both optimisers find the minimum of a convex quadratic.
    #[test]
    fn minimises_a_quadratic() {
        for kind in [OptimizerKind::Sgd, OptimizerKind::Adam] {
            let mut w = vec![3.0f32, -2.0];
            let mut opt = Optimizer::new(kind, 0.9, 0.0, &[2]);
            for _ in 0..2000 {
                let g: Vec<f32> = w.iter().map(|&v| 2.0 * (v - 1.0)).collect();
                opt.step(&mut [&mut w], &[&g], &[true], 0.01);
            }
            assert!(w.iter().all(|&v| (v - 1.0).abs() < 1e-3), "{kind:?}: {w:?}");
        }
    }

    /// SGD's first steps, by hand: v₁ = g + λw, w₁ = w − ηv₁; v₂ = μv₁ + g + λw₁.
    #[test]
    fn sgd_matches_pytorch_semantics() {
        let mut w = vec![1.0f32];
        let mut opt = Optimizer::new(OptimizerKind::Sgd, 0.5, 0.1, &[1]);
        opt.step(&mut [&mut w], &[&[2.0]], &[true], 0.1);
        assert!((w[0] - (1.0 - 0.1 * 2.1)).abs() < 1e-6);
        let w1 = w[0];
        opt.step(&mut [&mut w], &[&[2.0]], &[true], 0.1);
        let v2 = 0.5 * 2.1 + 2.0 + 0.1 * w1;
        assert!((w[0] - (w1 - 0.1 * v2)).abs() < 1e-6);
    }
}
