//! MI-FGSM (Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018): iterative FGSM
//! whose direction accumulates the L1-normalised gradients,
//! gᵗ⁺¹ = μ·gᵗ + ∇ₓL/‖∇ₓL‖₁,  xᵗ⁺¹ = Π_{B(x, ε) ∩ bounds}(xᵗ + α·step(gᵗ⁺¹)),
//! with step = sign (L∞) or g/‖g‖₂ (L2), from the clean input (no random start).
//!
//! Defaults follow the paper: `steps=10`, decay μ = 1.0 (`decay`), α = ε/steps (`rel_step` as a
//! fraction of ε, or `step` absolute), `loss=ce`. As in [`crate::Pgd`], each sample keeps its first
//! successful iterate and leaves the batch there.

use candle_core::Tensor;
use gauntlet_models::{predictions, Classifier, Loss};

use crate::attack::{loss_name, Attack, AttackBatch, AttackOutput, Cost, Params};
use crate::pgd::{select, to_rows, Rows, StepSize};
use crate::threat::ThreatModel;
use crate::{AttackError, Result};

#[derive(Debug, Clone)]
pub struct MiFgsm {
    pub steps: usize,
    pub step: StepSize,
    pub decay: f64,
    pub loss: Loss,
}

impl MiFgsm {
    pub const NAME: &'static str = "mi-fgsm";
    const KEYS: &'static [&'static str] = &["steps", "step", "rel_step", "decay", "loss"];

    pub fn from_params(mut p: Params) -> Result<Self> {
        let steps = p.take_usize("steps")?.unwrap_or(10);
        let abs = p.take_f64("step")?;
        let rel = p.take_f64("rel_step")?;
        let decay = p.take_f64("decay")?.unwrap_or(1.0);
        let loss = p.take_loss()?.unwrap_or_default();
        p.finish(Self::KEYS)?;
        let bad = |m: &str| Err(AttackError::Param { attack: Self::NAME.into(), message: m.into() });
        if steps == 0 {
            return bad("steps must be at least 1");
        }
        if decay < 0.0 {
            return bad("decay must not be negative");
        }
        let step = match (abs, rel) {
            (Some(_), Some(_)) => return bad("give either step (absolute) or rel_step (fraction of ε), not both"),
            (Some(a), None) => StepSize::Absolute(a),
            (None, Some(r)) => StepSize::Relative(r),
            (None, None) => StepSize::Relative(1.0 / steps as f64),
        };
        if matches!(step, StepSize::Absolute(v) | StepSize::Relative(v) if v <= 0.0) {
            return bad("the step size must be positive");
        }
        Ok(MiFgsm { steps, step, decay, loss })
    }
}

impl Attack for MiFgsm {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn params(&self) -> String {
        let step = match self.step {
            StepSize::Absolute(a) => format!("step={a}"),
            StepSize::Relative(r) => format!("rel_step={r}"),
        };
        format!("steps={},{step},decay={},loss={}", self.steps, self.decay, loss_name(self.loss))
    }

    fn run(&self, model: &dyn Classifier, batch: &AttackBatch<'_>, threat: &ThreatModel) -> Result<AttackOutput> {
        let n = batch.len();
        let alpha = match self.step {
            StepSize::Absolute(a) => a,
            StepSize::Relative(r) => r * threat.eps,
        };
        let mut out = Rows::new(batch.x0)?;
        let mut steps = vec![None; n];
        let mut reached = vec![false; n];
        let mut cost = Cost::default();
        let mut sample: Vec<usize> = (0..n).collect();
        let mut x0 = batch.x0.clone();
        let mut goal = batch.goal.clone();
        let mut x = batch.x0.clone();
        let mut momentum = x.zeros_like()?;
        for t in 0..=self.steps {
            let last = t == self.steps;
            let (logits, grad) = if last {
                cost.forwards += sample.len() as u64;
                (model.logits(&x)?, None)
            } else {
                cost.gradients += sample.len() as u64;
                let lg = model.loss_and_grad(&x, &goal, self.loss)?;
                (lg.logits, Some(lg.grad))
            };
            let preds = predictions(&logits)?;
            let hit: Vec<bool> = preds.iter().enumerate().map(|(j, &p)| goal.achieved(j, p)).collect();
            // The clean input is never kept: only iterates count as the attack's answer.
            if t > 0 && (last || hit.iter().any(|&h| h)) {
                let rows = to_rows(&x)?;
                for (j, &i) in sample.iter().enumerate() {
                    if hit[j] || last {
                        reached[i] = hit[j];
                        steps[i] = Some(t as u32);
                        out.set(i, &rows[j]);
                    }
                }
            }
            let Some(grad) = grad else { break };
            let keep: Vec<usize> = (0..sample.len()).filter(|&j| !(t > 0 && hit[j])).collect();
            if keep.is_empty() {
                break;
            }
            let (grad, prev) = if keep.len() < sample.len() {
                x = select(&x, &keep)?;
                x0 = select(&x0, &keep)?;
                goal = goal.select(&keep);
                sample = keep.iter().map(|&j| sample[j]).collect();
                (select(&grad, &keep)?, select(&momentum, &keep)?)
            } else {
                (grad, momentum)
            };
            let l1 = grad.abs()?.flatten_from(1)?.sum_keepdim(1)?;
            let l1 = (l1 + 1e-12)?.reshape(rank_shape(&grad)?)?;
            momentum = ((prev * self.decay)? + grad.broadcast_div(&l1)?)?;
            x = threat.project(&x0, &(&x + threat.ascent(&momentum, alpha)?)?)?;
        }
        Ok(AttackOutput { x_adv: out.into_tensor()?, steps, reached, cost })
    }
}

/// (N, 1, …, 1) for a per-row value broadcast over `t`.
fn rank_shape(t: &Tensor) -> Result<Vec<usize>> {
    let mut shape = vec![1usize; t.rank()];
    shape[0] = t.dim(0)?;
    Ok(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_follow_the_paper_and_reject_nonsense() {
        let a = MiFgsm::from_params(Params::default()).unwrap();
        assert_eq!((a.steps, a.decay), (10, 1.0));
        assert_eq!(a.step, StepSize::Relative(0.1));
        assert_eq!(a.params(), "steps=10,rel_step=0.1,decay=1,loss=ce");
        assert!(MiFgsm::from_params(Params::parse("mi-fgsm", "steps=0").unwrap()).is_err());
        assert!(MiFgsm::from_params(Params::parse("mi-fgsm", "decay=-1").unwrap()).is_err());
        assert!(MiFgsm::from_params(Params::parse("mi-fgsm", "step=0.1,rel_step=0.1").unwrap()).is_err());
    }
}
