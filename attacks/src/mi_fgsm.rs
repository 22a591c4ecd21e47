//! MI-FGSM (Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018): iterative FGSM
//! whose direction accumulates the L1-normalised gradients,
//! gᵗ⁺¹ = μ·gᵗ + ∇ₓL/‖∇ₓL‖₁,  xᵗ⁺¹ = Π_{B(x, ε) ∩ bounds}(xᵗ + α·step(gᵗ⁺¹)),
//! with step = sign (L∞) or g/‖g‖₂ (L2), from the clean input (no random start).
//!
//! Defaults follow the paper: `steps=10`, decay μ = 1.0 (`decay`), α = ε/steps (`rel_step` as a
//! fraction of ε, or `step` absolute), `loss=ce`. As in [`crate::Pgd`], each sample keeps its first
//! successful iterate and leaves the batch there.

use gauntlet_models::{Classifier, Loss};

use crate::attack::{Attack, AttackBatch, AttackOutput};
use crate::iterate::{StepSize, Steps};
use crate::params::{self, Declared, Fields, Params};
use crate::rows::{row_shape, select};
use crate::threat::ThreatModel;
use crate::Result;

#[derive(Debug, Clone)]
pub struct MiFgsm {
    pub steps: usize,
    pub step: StepSize,
    pub decay: f64,
    pub loss: Loss,
}

impl MiFgsm {
    pub const NAME: &'static str = "mi-fgsm";

    pub fn from_params(p: Params) -> Result<Self> {
        params::parse(MiFgsm { steps: 10, step: StepSize::Relative(0.0), decay: 1.0, loss: Loss::default() }, p)
    }
}

impl Declared for MiFgsm {
    fn declare(&mut self, f: &mut Fields) -> Result<()> {
        f.iterations("steps", &mut self.steps)?;
        f.step(&mut self.step, 1.0 / self.steps as f64)?;
        f.number("decay", &mut self.decay)?;
        f.loss(&mut self.loss)
    }

    fn rules(&self) -> Vec<(bool, &'static str)> {
        vec![(self.steps >= 1, "steps must be at least 1"), (self.decay >= 0.0, "decay must not be negative")]
    }
}

impl Attack for MiFgsm {
    fn name(&self) -> &str {
        Self::NAME
    }

    declared_params!();

    fn run(&self, model: &dyn Classifier, batch: &AttackBatch<'_>, threat: &ThreatModel) -> Result<AttackOutput> {
        let mut momentum = batch.x0.zeros_like()?;
        let steps = Steps { steps: self.steps, step: self.step, loss: self.loss, keep_start: false, early_stop: true };
        steps.run(model, batch, threat, batch.x0.clone(), |grad, kept| {
            let prev = match kept {
                Some(kept) => select(&momentum, kept)?,
                None => momentum.clone(),
            };
            let l1 = grad.abs()?.flatten_from(1)?.sum_keepdim(1)?;
            let l1 = (l1 + 1e-12)?.reshape(row_shape(grad.dim(0)?, &grad))?;
            momentum = ((prev * self.decay)? + grad.broadcast_div(&l1)?)?;
            Ok(momentum.clone())
        })
    }
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
        assert_eq!(a.strengthened().unwrap().params(), "steps=20,rel_step=0.1,decay=1,loss=ce");
    }
}
