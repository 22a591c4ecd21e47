//! Integrity checks: signs that an evaluation overstates robustness (Carlini et al. 2019, "On
//! Evaluating Adversarial Robustness"; Athalye et al. 2018, "Obfuscated Gradients Give a False Sense
//! of Security"). Each check gives PASS, WARN or FAIL with the numbers behind it; the rules and
//! their sources are in `docs/CHECKS.md`.
//!
//! Checks that need more attacks run them on a subset of the data (the first `samples`
//! clean-correct samples, or the first `samples` still-robust ones), through the same evaluator
//! that produced the main numbers, with the seed shifted so that random starts differ.

use candle_core::{DType, Device};
use gauntlet_attacks::{Attack, AttackKind, Norm, Registry};
use gauntlet_datasets::Source;
use gauntlet_models::Classifier;

use crate::eval::{self, batch_tensor, EvalConfig, Evaluation, Silent, TargetMode};

mod attacks;
mod model;
mod sweep;
use crate::report::{Check, Status};
use crate::Result;

/// The check names, in report order.
pub const NAMES: &[&str] = &[
    "outputs_are_logits",
    "gradients",
    "within_budget",
    "eps_monotone",
    "iterative_vs_single_step",
    "unbounded_budget",
    "more_iterations",
    "gradient_free_vs_gradient",
];

/// Tolerances of the rules, in fractions of the samples involved.
pub mod rules {
    /// `gradients`: FAIL when at least this fraction of samples has an all-zero input gradient.
    pub const ZERO_GRADIENT_FAIL: f64 = 0.10;
    /// `iterative_vs_single_step`: FAIL when an iterative attack's robust accuracy exceeds the
    /// single-step attack's by more than this (fraction of all samples).
    pub const ITERATIVE_FAIL: f64 = 0.01;
    /// `iterative_vs_single_step`: WARN when the single-step attack alone breaks more than this
    /// fraction of the clean-correct samples.
    pub const SINGLE_ONLY_WARN: f64 = 0.01;
    /// `more_iterations`: robust-accuracy change (fraction of all samples) for WARN and FAIL; a
    /// change resting on a single sample is not counted.
    pub const MORE_ITERATIONS_WARN: f64 = 0.02;
    pub const MORE_ITERATIONS_FAIL: f64 = 0.05;
    /// `gradient_free_vs_gradient`: samples broken only by noise or gradient-free attacks, as a
    /// fraction of the clean-correct samples, for WARN and FAIL (one sample is always tolerated).
    pub const GRADIENT_FREE_WARN: f64 = 0.005;
    pub const GRADIENT_FREE_FAIL: f64 = 0.02;
    /// `gradient_free_vs_gradient`: random points drawn per sample and budget.
    pub const NOISE_DRAWS: usize = 16;
}

/// Runs every check. `samples` bounds the subset the extra attacks run on.
pub fn run(
    model: &dyn Classifier,
    data: &dyn Source,
    cfg: &EvalConfig,
    ev: &Evaluation,
    registry: &Registry,
    samples: usize,
) -> Result<Vec<Check>> {
    let ctx = Ctx { model, data, cfg, ev, registry, samples: samples.max(1) };
    let correct: Vec<usize> = (0..ev.samples()).filter(|&i| ev.correct(i)).collect();
    let subset: Vec<usize> = correct.iter().copied().take(ctx.samples).collect();
    Ok(vec![
        model::outputs_are_logits(&ctx, &subset)?,
        model::gradients(&ctx, &subset)?,
        sweep::within_budget(ev),
        sweep::eps_monotone(ev),
        attacks::iterative_vs_single_step(&ctx, &subset)?,
        attacks::unbounded_budget(&ctx, &subset)?,
        attacks::more_iterations(&ctx)?,
        attacks::gradient_free_vs_gradient(&ctx)?,
    ])
}

struct Ctx<'a> {
    model: &'a dyn Classifier,
    data: &'a dyn Source,
    cfg: &'a EvalConfig,
    ev: &'a Evaluation,
    registry: &'a Registry,
    samples: usize,
}

impl Ctx<'_> {
    /// Runs `attacks` on the samples `idx` through the evaluator.
    fn evaluate(&self, idx: &[usize], attacks: &[&dyn Attack], norm: Norm, eps: &[f64]) -> Result<Evaluation> {
        let targets = match &self.cfg.targets {
            Some(TargetMode::Given(t)) => Some(TargetMode::Given(idx.iter().map(|&i| t[i]).collect())),
            other => other.clone(),
        };
        let cfg = EvalConfig {
            attacks: Vec::new(),
            norm,
            eps: eps.to_vec(),
            seed: self.cfg.seed.wrapping_add(0x5eed),
            batch_size: self.cfg.batch_size,
            targets,
            cascade: false,
        };
        eval::sweep(self.model, &self.data.select(idx)?, 0, attacks, &cfg, &Silent, 0)
    }

    /// The gradient attacks of the main evaluation, in its order, whose kind is `kind`.
    fn of_kind(&self, kind: AttackKind) -> Vec<usize> {
        let attacks = &self.cfg.attacks;
        (0..attacks.len()).filter(|&a| attacks[a].kind() == kind && attacks[a].needs_gradients()).collect()
    }

    /// Index of the ε at which the worst case is most informative: robust count closest to half
    /// of the clean-correct samples.
    fn check_eps(&self) -> usize {
        let ev = self.ev;
        let correct = (0..ev.samples()).filter(|&i| ev.correct(i)).count() as f64;
        (0..ev.eps.len())
            .min_by(|&a, &b| {
                let d = |k: usize| {
                    let robust = (0..ev.samples()).filter(|&i| ev.robust_all(i, k)).count() as f64;
                    (robust - correct / 2.0).abs()
                };
                d(a).total_cmp(&d(b))
            })
            .unwrap_or(0)
    }
}

fn check(name: &str, status: Status, detail: String) -> Check {
    Check { name: name.into(), status, detail }
}

fn logits_rows(ctx: &Ctx<'_>, idx: &[usize]) -> Result<Vec<Vec<f32>>> {
    let mut rows = Vec::with_capacity(idx.len());
    for chunk in idx.chunks(ctx.cfg.batch_size.max(1)) {
        let data = ctx.data.select(chunk)?;
        let x = batch_tensor(&data, &(0..chunk.len()).collect::<Vec<_>>(), ctx.model.device())?;
        rows.extend(ctx.model.logits(&x)?.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.to_vec2::<f32>()?);
    }
    Ok(rows)
}
