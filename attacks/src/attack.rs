//! The plug-in surface: the [`Attack`] trait, what it receives and what it returns.

use std::fmt::Debug;

use candle_core::Tensor;
use gauntlet_models::{Classifier, Goal};

use crate::rows::Found;
use crate::threat::{NoiseKey, ThreatModel};
use crate::Result;

/// A batch handed to an attack. All rows are samples the model classifies correctly (or, for a
/// targeted goal, not yet as the target).
#[derive(Debug, Clone, Copy)]
pub struct AttackBatch<'a> {
    /// Clean inputs (n, C, H, W) on the model's device.
    pub x0: &'a Tensor,
    pub goal: &'a Goal,
    /// Dataset indices of the rows: they key each sample's random stream.
    pub ids: &'a [u64],
    /// Seed and stream (attack × budget) of the random numbers; add the restart to get a key.
    pub seed: u64,
    pub stream: u64,
}

impl AttackBatch<'_> {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn noise_key(&self, restart: u64) -> NoiseKey {
        NoiseKey { seed: self.seed, stream: self.stream, restart }
    }
}

/// Work done, counted in single-sample passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cost {
    /// Forward-only passes.
    pub forwards: u64,
    /// Forward + input-gradient passes.
    pub gradients: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        self.forwards += o.forwards;
        self.gradients += o.gradients;
    }
}

/// What an attack returns. Nothing here is trusted: the evaluator re-projects, re-checks and
/// re-classifies every row.
#[derive(Debug, Clone)]
pub struct AttackOutput {
    /// Candidate adversarial inputs (n, C, H, W), any device.
    pub x_adv: Tensor,
    /// Per row, the iteration that produced it (1 for single-step attacks), if known.
    pub steps: Vec<Option<u32>>,
    /// Per row, whether the attack itself saw the goal reached (false when it does not check).
    pub reached: Vec<bool>,
    pub cost: Cost,
}

/// What sort of search an attack runs; the evaluator and the integrity checks go by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttackKind {
    /// One gradient step (FGSM): nothing to iterate or strengthen.
    SingleStep,
    /// Gradient steps within the budget ε (PGD, MI-FGSM, APGD).
    Iterative,
    /// Each sample's smallest adversarial perturbation, whatever the budget (FMN); see
    /// [`Attack::minimal_norm`].
    MinimalNorm,
    /// Reads only the logits, no gradients (Square).
    GradientFree,
}

impl AttackKind {
    pub fn needs_gradients(self) -> bool {
        self != AttackKind::GradientFree
    }

    pub fn minimal_norm(self) -> bool {
        self == AttackKind::MinimalNorm
    }
}

impl AttackOutput {
    /// The answers an attack has found, with the work it spent.
    pub(crate) fn from_found(found: Found, cost: Cost) -> Result<AttackOutput> {
        Ok(AttackOutput { x_adv: found.out.into_tensor()?, steps: found.steps, reached: found.reached, cost })
    }
}

/// An adversarial attack. The model is passed in, not owned; the threat model fixes norm and ε.
pub trait Attack: Send + Sync + Debug {
    /// The registry name, as typed on the command line and written in reports.
    fn name(&self) -> &str;

    /// The resolved parameters, `key=value` comma-separated, for reports.
    fn params(&self) -> String;

    /// What sort of search this is; an iterative gradient attack unless said otherwise.
    fn kind(&self) -> AttackKind {
        AttackKind::Iterative
    }

    fn needs_gradients(&self) -> bool {
        self.kind().needs_gradients()
    }

    /// A minimal-norm attack searches for each sample's smallest adversarial perturbation instead
    /// of working within a budget. The evaluator runs it once per sample, with a threat model whose
    /// ε is the largest perturbation the bounds allow (L∞: hi − lo; L2: (hi − lo)·√dim), and counts a
    /// sample broken at every budget its perturbation fits in. It returns, per row, the smallest
    /// adversarial input it found (or the clean input when it found none).
    fn minimal_norm(&self) -> bool {
        self.kind().minimal_norm()
    }

    /// The same attack with twice the iterations (steps, or queries) and one more restart where it
    /// has restarts; a step size relative to ε stays relative. `None` for an attack without
    /// iterations.
    fn strengthened(&self) -> Option<Box<dyn Attack>> {
        None
    }

    fn run(&self, model: &dyn Classifier, batch: &AttackBatch<'_>, threat: &ThreatModel) -> Result<AttackOutput>;
}
