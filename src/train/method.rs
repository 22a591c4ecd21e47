//! The training objectives: what inputs a batch trains on and the gradient of the loss with
//! respect to their logits. The adversarial ones find their inputs with the evaluator's own PGD
//! module ([`gauntlet_attacks::Pgd`]) run to its last iterate (`early_stop=false`).

use candle_core::Tensor;
use gauntlet_attacks::{Attack, AttackBatch, Norm, Pgd, StepSize, ThreatModel};
use gauntlet_models::{Classifier, Goal, Loss};
use serde::{Deserialize, Serialize};

use crate::Result;

/// How a batch is made harder before the model learns from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Cross-entropy on the clean inputs.
    Standard,
    /// PGD adversarial training (Madry et al. 2018): cross-entropy at the last PGD iterate from a
    /// random start.
    Pgd,
    /// Fast adversarial training (Wong et al. 2020): one signed step of α = 1.25·ε from a uniform
    /// random start.
    FgsmRs,
    /// TRADES (Zhang et al. 2019): cross-entropy on the clean input plus β·KL(p(x) ‖ p(x′)), x′
    /// maximising that divergence by PGD.
    Trades,
}

/// The training objective with its attack's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    pub method: Method,
    /// L∞ budget in pixel units (after the ramp).
    pub eps: f64,
    /// Attack steps (fgsm-rs: 1).
    pub steps: usize,
    /// Step size as a fraction of the current ε (so that it follows the ramp).
    pub rel_step: f64,
    /// TRADES' weight of the divergence term.
    pub beta: f64,
}

/// A batch ready for the weight update: the inputs, and how their logits are scored.
pub struct Prepared {
    /// (n, C, H, W), or (2n, C, H, W) for TRADES (clean rows, then adversarial ones).
    pub x: Tensor,
    /// TRADES: the clean probabilities the divergence is measured from.
    trades: bool,
}

impl Objective {
    /// The defaults of each method at budget ε: PGD 10 steps of 2.5·ε/10; FGSM-RS α = 1.25·ε;
    /// TRADES 10 steps of 2.5·ε/10 with β = 6.
    pub fn new(method: Method, eps: f64, steps: Option<usize>, step: Option<f64>, beta: Option<f64>) -> Objective {
        let steps = match method {
            Method::FgsmRs => 1,
            _ => steps.unwrap_or(10).max(1),
        };
        let default = if method == Method::FgsmRs { 1.25 } else { 2.5 / steps as f64 };
        let rel_step = match step {
            Some(a) if eps > 0.0 => a / eps,
            _ => default,
        };
        Objective { method, eps, steps, rel_step, beta: beta.unwrap_or(6.0) }
    }

    /// The attack that makes the training inputs, with the evaluator's PGD module.
    fn attack(&self) -> Pgd {
        Pgd {
            steps: self.steps,
            step: StepSize::Relative(self.rel_step),
            restarts: 1,
            random_start: true,
            loss: if self.method == Method::Trades { Loss::Kl } else { Loss::CrossEntropy },
            early_stop: false,
        }
    }

    /// The inputs batch `x0` (dataset indices `ids`) trains on at budget `eps` (ramped): the
    /// attack's random numbers come from the per-sample streams of (`seed`, `stream`).
    pub fn prepare(
        &self,
        model: &dyn Classifier,
        x0: &Tensor,
        labels: &[u32],
        ids: &[u64],
        (seed, stream): (u64, u64),
        eps: f64,
    ) -> Result<Prepared> {
        if self.method == Method::Standard || eps <= 0.0 {
            return Ok(Prepared { x: x0.clone(), trades: false });
        }
        let threat = ThreatModel::new(Norm::Linf, eps, model.bounds())?;
        let mut goal = Goal::untargeted(labels.to_vec());
        if self.method == Method::Trades {
            goal.reference = Some(softmax_rows(&model.logits(x0)?.flatten_all()?.to_vec1::<f32>()?, labels.len()));
        }
        let batch = AttackBatch { x0, goal: &goal, ids, seed, stream };
        let out = self.attack().run(model, &batch, &threat)?;
        // Re-projected, as the evaluator does: the model never trains outside the budget.
        let (clean, mut adv) = (x0.flatten_all()?.to_vec1::<f32>()?, out.x_adv.flatten_all()?.to_vec1::<f32>()?);
        let per = clean.len() / labels.len().max(1);
        for (c, a) in clean.chunks(per).zip(adv.chunks_mut(per)) {
            threat.project_exact(c, a);
        }
        let adv = Tensor::from_vec(adv, x0.shape(), x0.device())?;
        Ok(match self.method {
            Method::Trades => Prepared { x: Tensor::cat(&[x0, &adv], 0)?, trades: true },
            _ => Prepared { x: adv, trades: false },
        })
    }
}

impl Prepared {
    /// The batch loss (a mean over samples) and its gradient with respect to the logits `z`
    /// (rows of `k`) of [`Prepared::x`].
    pub fn loss_grad(&self, z: &[f32], labels: &[u32], beta: f64) -> (f64, Vec<f32>) {
        let n = labels.len();
        let k = z.len() / if self.trades { 2 * n } else { n }.max(1);
        let (ce, mut g) = cross_entropy(&z[..n * k], labels);
        if !self.trades {
            return (ce, g);
        }
        let (kl, g_clean, g_adv) = divergence(&z[..n * k], &z[n * k..], n);
        g.iter_mut().zip(&g_clean).for_each(|(a, &b)| *a += (beta * b as f64) as f32);
        g.extend(g_adv.iter().map(|&v| (beta * v as f64) as f32));
        (ce + beta * kl, g)
    }
}

/// Row-wise softmax in f64, returned as f32.
pub fn softmax_rows(z: &[f32], n: usize) -> Vec<f32> {
    let k = z.len() / n.max(1);
    z.chunks(k).flat_map(|r| softmax(r).into_iter().map(|v| v as f32)).collect()
}

fn softmax(r: &[f32]) -> Vec<f64> {
    let m = r.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let e: Vec<f64> = r.iter().map(|&v| (v as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Mean cross-entropy of rows `z` against `labels`, and its gradient (softmax − one-hot) / n.
pub fn cross_entropy(z: &[f32], labels: &[u32]) -> (f64, Vec<f32>) {
    let n = labels.len();
    let k = z.len() / n.max(1);
    let mut loss = 0.0;
    let mut g = Vec::with_capacity(z.len());
    for (r, &y) in z.chunks(k).zip(labels) {
        let p = softmax(r);
        loss -= p[y as usize].max(f64::MIN_POSITIVE).ln();
        g.extend(p.iter().enumerate().map(|(j, &v)| ((v - (j == y as usize) as u8 as f64) / n as f64) as f32));
    }
    (loss / n as f64, g)
}

/// Mean KL(p ‖ q) of p = softmax(clean), q = softmax(adv) over n rows, and its gradients with
/// respect to both: ∂/∂z_clean = p·(log p − log q − KL), ∂/∂z_adv = q − p (each over n).
pub fn divergence(clean: &[f32], adv: &[f32], n: usize) -> (f64, Vec<f32>, Vec<f32>) {
    let k = clean.len() / n.max(1);
    let (mut total, mut gc, mut ga) = (0.0, Vec::with_capacity(clean.len()), Vec::with_capacity(adv.len()));
    for (rc, ra) in clean.chunks(k).zip(adv.chunks(k)) {
        let (p, q) = (softmax(rc), softmax(ra));
        let log = |v: f64| v.max(f64::MIN_POSITIVE).ln();
        let terms: Vec<f64> = p.iter().zip(&q).map(|(&a, &b)| if a > 0.0 { log(a) - log(b) } else { 0.0 }).collect();
        let kl: f64 = p.iter().zip(&terms).map(|(a, t)| a * t).sum();
        total += kl;
        gc.extend(p.iter().zip(&terms).map(|(a, t)| (a * (t - kl) / n as f64) as f32));
        ga.extend(q.iter().zip(&p).map(|(b, a)| ((b - a) / n as f64) as f32));
    }
    (total / n as f64, gc, ga)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central finite differences in f64 of a function of the logits.
    fn numeric(f: impl Fn(&[f32]) -> f64, z: &[f32]) -> Vec<f64> {
        (0..z.len())
            .map(|i| {
                let h = 1e-3f32;
                let (mut a, mut b) = (z.to_vec(), z.to_vec());
                a[i] += h;
                b[i] -= h;
                (f(&a) - f(&b)) / (2.0 * h as f64)
            })
            .collect()
    }

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        let z = [0.3f32, -1.2, 2.0, 0.5, 0.1, -0.4];
        let labels = [2u32, 0];
        let (_, g) = cross_entropy(&z, &labels);
        let num = numeric(|z| cross_entropy(z, &labels).0, &z);
        for (a, b) in g.iter().zip(&num) {
            assert!((*a as f64 - b).abs() < 1e-4, "{g:?} vs {num:?}");
        }
    }

    #[test]
    fn trades_gradient_matches_finite_differences_on_both_halves() {
        let z = [0.3f32, -1.2, 2.0, 0.5, 0.1, -0.4, 1.0, 0.2, -0.7, -0.3, 0.9, 0.0];
        let labels = [2u32, 0];
        let p =
            Prepared { x: Tensor::zeros(1, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap(), trades: true };
        let beta = 6.0;
        let (_, g) = p.loss_grad(&z, &labels, beta);
        let num = numeric(|z| p.loss_grad(z, &labels, beta).0, &z);
        for (a, b) in g.iter().zip(&num) {
            assert!((*a as f64 - b).abs() < 2e-4, "{g:?} vs {num:?}");
        }
        // The divergence of a distribution from itself is zero.
        assert!(divergence(&z[..6], &z[..6], 2).0.abs() < 1e-12);
    }
}
