//! PGD (Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018):
//! projected steepest ascent from a random start in the ε-ball,
//! xᵗ⁺¹ = Π_{B(x, ε) ∩ bounds}(xᵗ + α·step(∇ₓL)), in L∞ (sign step) or L2 (normalised step).
//!
//! Unlike torchattacks, which returns the last iterate, each sample keeps the first iterate that
//! reaches the goal, and leaves the batch there. Restarts run side by side in one batch, each from
//! its own random start; a sample leaves with all its copies when any of them succeeds.
//!
//! Defaults (the MNIST challenge configuration of Madry et al. for ε = 0.3 is `steps=40,step=0.01`):
//! `steps=40`; step size α = 2.5·ε/steps (Madry et al.'s rule) unless `step` (absolute) or
//! `rel_step` (a fraction of ε) is given; `restarts=1`; `random_start=true`; `loss=ce`;
//! `early_stop=true` (`false`: every sample takes all steps and the last iterate is returned,
//! as adversarial training uses it).

use candle_core::Tensor;
use gauntlet_models::{Classifier, Loss};

use crate::attack::{Attack, AttackBatch, AttackOutput};
pub use crate::iterate::StepSize;
use crate::iterate::Steps;
use crate::params::{self, Declared, Fields, Params};
use crate::threat::ThreatModel;
use crate::Result;

#[derive(Debug, Clone)]
pub struct Pgd {
    pub steps: usize,
    pub step: StepSize,
    pub restarts: usize,
    pub random_start: bool,
    pub loss: Loss,
    /// Whether a sample stops at its first successful iterate (the evaluator's setting); without
    /// it every sample takes all steps and keeps the last iterate (Madry et al.'s training attack).
    pub early_stop: bool,
}

impl Pgd {
    pub const NAME: &'static str = "pgd";

    pub fn from_params(p: Params) -> Result<Self> {
        let (step, loss) = (StepSize::Relative(0.0), Loss::default());
        params::parse(Pgd { steps: 40, step, restarts: 1, random_start: true, loss, early_stop: true }, p)
    }
}

impl Declared for Pgd {
    fn declare(&mut self, f: &mut Fields) -> Result<()> {
        f.iterations("steps", &mut self.steps)?;
        f.step(&mut self.step, 2.5 / self.steps as f64)?;
        f.restarts(&mut self.restarts)?;
        f.flag("random_start", &mut self.random_start)?;
        f.loss(&mut self.loss)?;
        f.flag("early_stop", &mut self.early_stop)
    }

    fn rules(&self) -> Vec<(bool, &'static str)> {
        vec![(self.steps >= 1 && self.restarts >= 1, "steps and restarts must be at least 1")]
    }
}

impl Attack for Pgd {
    fn name(&self) -> &str {
        Self::NAME
    }

    declared_params!();

    /// All restarts of all samples run as one batch (row `r·n + i` is restart r of sample i). A
    /// sample leaves the batch, with every copy of it, at the first step where any copy succeeds;
    /// each copy's trajectory depends only on its own random start, so the set of broken samples
    /// is the same as running the restarts one after another.
    fn run(&self, model: &dyn Classifier, batch: &AttackBatch<'_>, threat: &ThreatModel) -> Result<AttackOutput> {
        let x = if self.random_start {
            let starts = (0..self.restarts)
                .map(|r| threat.random_start(batch.x0, batch.ids, batch.noise_key(r as u64)))
                .collect::<Result<Vec<_>>>()?;
            Tensor::cat(&starts, 0)?
        } else {
            batch.x0.clone()
        };
        let steps = Steps {
            steps: self.steps,
            step: self.step,
            loss: self.loss,
            keep_start: true,
            early_stop: self.early_stop,
        };
        steps.run(model, batch, threat, x, |grad, _| Ok(grad))
    }
}
