//! FGSM (Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015) and, for
//! the L2 norm, FGM: one steepest-ascent step of length ε from the clean input,
//! x′ = clip(x + ε·sign(∇ₓL)) (L∞) or clip(x + ε·∇ₓL/‖∇ₓL‖₂) (L2).
//!
//! Defaults follow torchattacks' `FGSM`: cross-entropy loss, no random start.
//! Parameters: `loss` = `ce` (default) | `margin`.

use gauntlet_models::{Classifier, Loss};

use crate::attack::{Attack, AttackBatch, AttackKind, AttackOutput, Cost};
use crate::params::{self, Declared, Fields, Params};
use crate::threat::ThreatModel;
use crate::Result;

#[derive(Debug, Clone, Default)]
pub struct Fgsm {
    pub loss: Loss,
}

impl Fgsm {
    pub const NAME: &'static str = "fgsm";

    pub fn from_params(p: Params) -> Result<Self> {
        params::parse(Self::default(), p)
    }
}

impl Declared for Fgsm {
    fn declare(&mut self, f: &mut Fields) -> Result<()> {
        f.loss(&mut self.loss)
    }
}

impl Attack for Fgsm {
    fn name(&self) -> &str {
        Self::NAME
    }

    declared_params!();

    fn kind(&self) -> AttackKind {
        AttackKind::SingleStep
    }

    fn run(&self, model: &dyn Classifier, batch: &AttackBatch<'_>, threat: &ThreatModel) -> Result<AttackOutput> {
        let lg = model.loss_and_grad(batch.x0, batch.goal, self.loss)?;
        let stepped = (batch.x0 + threat.ascent(&lg.grad, threat.eps)?)?;
        let x_adv = threat.project(batch.x0, &stepped)?;
        Ok(AttackOutput {
            x_adv,
            steps: vec![Some(1); batch.len()],
            reached: vec![false; batch.len()],
            cost: Cost { forwards: 0, gradients: batch.len() as u64 },
        })
    }
}
