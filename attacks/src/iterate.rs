//! The loop of the step attacks (PGD, MI-FGSM): step the rows still unbroken, x ← Π(x + α·d),
//! and let each sample leave the batch, with every copy of it, at its first success.

use candle_core::Tensor;
use gauntlet_models::{Classifier, Loss};

use crate::attack::{AttackBatch, AttackOutput, Cost};
use crate::rows::{hits, select, Found};
use crate::threat::ThreatModel;
use crate::Result;

/// How the step size α is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepSize {
    Absolute(f64),
    /// A fraction of ε.
    Relative(f64),
}

impl StepSize {
    /// α for the budget ε.
    pub fn alpha(self, eps: f64) -> f64 {
        match self {
            StepSize::Absolute(a) => a,
            StepSize::Relative(r) => r * eps,
        }
    }
}

/// `steps` projected ascent steps of size α on `loss`, then one last forward pass.
pub(crate) struct Steps {
    pub steps: usize,
    pub step: StepSize,
    pub loss: Loss,
    /// Whether the starting point may be the answer (false: only iterates count).
    pub keep_start: bool,
    /// Whether a sample leaves the batch at its first success (false: every sample takes every
    /// step and the last iterate is the answer, as adversarial training wants it).
    pub early_stop: bool,
}

impl Steps {
    /// Iterates from `x`, copies of the batch stacked (row r·n + i is a copy of sample i). Each
    /// step moves along `direction(∇, kept)` (the steepest-ascent step of the threat model's norm),
    /// where `kept` lists the rows still in the batch when some have just left (to narrow any
    /// state the direction keeps). A sample keeps the first iterate of any copy that reaches the
    /// goal, or else the last one (without `early_stop`, the last iterate of its first copy that
    /// reaches the goal there, or else of its last copy).
    pub(crate) fn run(
        &self,
        model: &dyn Classifier,
        batch: &AttackBatch<'_>,
        threat: &ThreatModel,
        mut x: Tensor,
        mut direction: impl FnMut(Tensor, Option<&[usize]>) -> Result<Tensor>,
    ) -> Result<AttackOutput> {
        let n = batch.len();
        let alpha = self.step.alpha(threat.eps);
        let mut found = Found::new(batch.x0)?;
        let mut cost = Cost::default();
        // The sample behind each row of the working batch.
        let mut sample: Vec<usize> = (0..x.dim(0)?).map(|j| j % n).collect();
        let mut x0 = select(batch.x0, &sample)?;
        let mut goal = batch.goal.select(&sample);
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
            let keep = if (t > 0 || self.keep_start) && (self.early_stop || last) {
                found.record(&sample, &x, &hits(&goal, &logits)?, t as u32, last)?
            } else {
                (0..sample.len()).collect()
            };
            let Some(grad) = grad else { break };
            if keep.is_empty() {
                break;
            }
            let narrowed = keep.len() < sample.len();
            let grad = if narrowed {
                x = select(&x, &keep)?;
                x0 = select(&x0, &keep)?;
                goal = goal.select(&keep);
                sample = keep.iter().map(|&j| sample[j]).collect();
                select(&grad, &keep)?
            } else {
                grad
            };
            let d = direction(grad, narrowed.then_some(&keep[..]))?;
            x = threat.project(&x0, &(&x + threat.ascent(&d, alpha)?)?)?;
        }
        AttackOutput::from_found(found, cost)
    }
}
