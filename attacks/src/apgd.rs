//! APGD (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
//! parameter-free attacks", ICML 2020): PGD whose step size needs no tuning.
//!
//! From a random point on the ε-sphere (L∞: a uniform draw scaled so its largest coordinate is ε;
//! L2: a Gaussian direction of length ε), each iteration takes a step of size η (initially 2ε)
//! along the sign (L∞) or normalised (L2) gradient, projects, and mixes it with the previous move
//! (momentum 0.75; none at the first step). At checkpoints p₀ = 0, p₁ = 0.22,
//! pⱼ₊₁ = pⱼ + max(pⱼ − pⱼ₋₁ − 0.03, 0.06) (as fractions of the iterations), a sample's η is halved
//! and it restarts from its best point if fewer than ρ = 75% of the steps since the last checkpoint
//! raised its loss, or if η was not halved at the last checkpoint and the best loss did not improve.
//!
//! Three attacks share this loop: `apgd` (cross-entropy), `apgd-dlr` (the DLR loss, invariant to
//! shifting and scaling the logits) and `apgd-t` (targeted DLR towards each of the `targets` most
//! likely other classes in turn, on the samples still unbroken). All three succeed on any wrong
//! prediction. Like the reference implementation, a sample's first success is kept; here the sample
//! also leaves the batch there. Restarts run side by side in one batch, as in [`crate::Pgd`].
//!
//! Parameters: `steps` (100), `restarts` (1), `rho` (0.75), `targets` (apgd-t: 9, at most K − 1).

use candle_core::{DType, Tensor};
use gauntlet_models::{Classifier, Goal, Loss};

use crate::attack::{Attack, AttackBatch, AttackOutput, Cost};
use crate::params::{self, Declared, Fields, Params};
use crate::rows::{hits, per_row, select, to_f64, where_rows, Found};
use crate::threat::ThreatModel;
use crate::{AttackError, Result};

/// Which loss the iterations ascend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApgdLoss {
    CrossEntropy,
    Dlr,
    /// DLR towards the k-th most likely other class, for k = 1..=targets.
    Targeted {
        targets: usize,
    },
}

#[derive(Debug, Clone)]
pub struct Apgd {
    pub loss: ApgdLoss,
    pub steps: usize,
    pub restarts: usize,
    pub rho: f64,
}

impl Apgd {
    pub const NAME: &'static str = "apgd";
    pub const NAME_DLR: &'static str = "apgd-dlr";
    pub const NAME_T: &'static str = "apgd-t";

    pub fn from_params(loss: ApgdLoss, p: Params) -> Result<Self> {
        params::parse(Apgd { loss, steps: 100, restarts: 1, rho: 0.75 }, p)
    }

    fn name_of(loss: ApgdLoss) -> &'static str {
        match loss {
            ApgdLoss::CrossEntropy => Self::NAME,
            ApgdLoss::Dlr => Self::NAME_DLR,
            ApgdLoss::Targeted { .. } => Self::NAME_T,
        }
    }

    /// Iterations until the first checkpoint, the smallest gap and the gap's decrement.
    fn schedule(&self) -> (usize, usize, usize) {
        let n = self.steps as f64;
        let at = |f: f64| ((f * n) as usize).max(1);
        (at(0.22), at(0.06), at(0.03))
    }
}

impl Declared for Apgd {
    fn declare(&mut self, f: &mut Fields) -> Result<()> {
        f.iterations("steps", &mut self.steps)?;
        f.restarts(&mut self.restarts)?;
        f.number("rho", &mut self.rho)?;
        match &mut self.loss {
            ApgdLoss::Targeted { targets } => f.count("targets", targets),
            _ => Ok(()),
        }
    }

    fn rules(&self) -> Vec<(bool, &'static str)> {
        vec![
            (!matches!(self.loss, ApgdLoss::Targeted { targets: 0 }), "targets must be at least 1"),
            (self.steps >= 1 && self.restarts >= 1, "steps and restarts must be at least 1"),
            (self.rho > 0.0 && self.rho <= 1.0, "rho must lie in (0, 1]"),
        ]
    }
}

impl Attack for Apgd {
    fn name(&self) -> &str {
        Self::name_of(self.loss)
    }

    declared_params!();

    fn run(&self, model: &dyn Classifier, batch: &AttackBatch<'_>, threat: &ThreatModel) -> Result<AttackOutput> {
        let mut found = Found::new(batch.x0)?;
        let mut cost = Cost::default();
        let rounds: Vec<Option<usize>> = match self.loss {
            ApgdLoss::Targeted { targets } => {
                if batch.goal.targeted {
                    return Err(AttackError::Unsupported {
                        attack: Self::NAME_T.into(),
                        message: "apgd-t is untargeted (it succeeds on any wrong class); use apgd for a targeted goal"
                            .into(),
                    });
                }
                (1..=targets.min(model.num_classes().saturating_sub(1))).map(Some).collect()
            }
            _ => vec![None],
        };
        for (round, target_rank) in rounds.into_iter().enumerate() {
            let todo: Vec<usize> = (0..batch.len()).filter(|&i| !found.reached[i]).collect();
            if todo.is_empty() {
                break;
            }
            let x0 = select(batch.x0, &todo)?;
            let mut goal = batch.goal.select(&todo);
            let loss = match target_rank {
                Some(k) => {
                    // The k-th most likely class other than the top one, at the clean input.
                    cost.forwards += todo.len() as u64;
                    let logits = model.logits(&x0)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
                    goal.guide = Some(logits.iter().map(|r| ranked(r, k)).collect());
                    Loss::DlrTargeted
                }
                None if self.loss == ApgdLoss::Dlr => Loss::Dlr,
                None => Loss::CrossEntropy,
            };
            let ids: Vec<u64> = todo.iter().map(|&i| batch.ids[i]).collect();
            let sub = AttackBatch { x0: &x0, goal: &goal, ids: &ids, ..*batch };
            self.single_run(model, &sub, &todo, loss, round, threat, &mut found, &mut cost)?;
        }
        AttackOutput::from_found(found, cost)
    }
}

/// The class of rank `k` (0 = the largest logit) of one row; ties keep the lower index first.
fn ranked(row: &[f64], k: usize) -> u32 {
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    idx.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]));
    idx[k]
}

/// Per-row state of the APGD loop, compacted as rows succeed.
struct State {
    /// Row → its sample in the batch (each restart a copy).
    sample: Vec<usize>,
    x0: Tensor,
    goal: Goal,
    x: Tensor,
    x_old: Tensor,
    grad: Tensor,
    x_best: Tensor,
    grad_best: Tensor,
    step: Vec<f64>,
    loss_best: Vec<f64>,
    loss_best_last: Vec<f64>,
    reduced_last: Vec<bool>,
    /// Loss at every iteration (zeros until written; index −1 reads the last slot, as the
    /// reference implementation's negative indexing does at the first checkpoint).
    history: Vec<Vec<f64>>,
}

impl State {
    fn keep(&mut self, keep: &[usize]) -> Result<()> {
        let pick = |v: &[f64]| keep.iter().map(|&j| v[j]).collect::<Vec<f64>>();
        self.sample = keep.iter().map(|&j| self.sample[j]).collect();
        for t in [&mut self.x0, &mut self.x, &mut self.x_old, &mut self.grad, &mut self.x_best, &mut self.grad_best] {
            *t = select(t, keep)?;
        }
        self.goal = self.goal.select(keep);
        self.step = pick(&self.step);
        self.loss_best = pick(&self.loss_best);
        self.loss_best_last = pick(&self.loss_best_last);
        self.reduced_last = keep.iter().map(|&j| self.reduced_last[j]).collect();
        self.history = keep.iter().map(|&j| std::mem::take(&mut self.history[j])).collect();
        Ok(())
    }
}

impl Apgd {
    /// Round `round` of APGD on `sub`, the samples `todo` of the batch, with `restarts` copies
    /// of each; records each sample's first success in `found`.
    #[allow(clippy::too_many_arguments)]
    fn single_run(
        &self,
        model: &dyn Classifier,
        sub: &AttackBatch<'_>,
        todo: &[usize],
        loss: Loss,
        round: usize,
        threat: &ThreatModel,
        found: &mut Found,
        cost: &mut Cost,
    ) -> Result<()> {
        let rows: Vec<usize> = (0..self.restarts).flat_map(|_| 0..todo.len()).collect();
        let starts = (0..self.restarts)
            .map(|r| threat.random_on_sphere(sub.x0, sub.ids, sub.noise_key((round * self.restarts + r) as u64)))
            .collect::<Result<Vec<_>>>()?;
        let x = Tensor::cat(&starts, 0)?;
        let x0 = select(sub.x0, &rows)?;
        let goal = sub.goal.select(&rows);
        let (first, min_gap, decrement) = self.schedule();

        // The starting point: its loss, gradient and prediction.
        cost.gradients += rows.len() as u64;
        let lg = model.loss_and_grad(&x, &goal, loss)?;
        let loss0 = to_f64(&lg.loss)?;
        let mut s = State {
            sample: rows.iter().map(|&j| todo[j]).collect(),
            x0,
            x_old: x.clone(),
            x_best: x.clone(),
            grad_best: lg.grad.clone(),
            grad: lg.grad,
            x,
            goal,
            step: vec![2.0 * threat.eps; rows.len()],
            loss_best_last: loss0.clone(),
            loss_best: loss0,
            reduced_last: vec![true; rows.len()],
            history: vec![vec![0.0; self.steps]; rows.len()],
        };
        if !record(&mut s, &lg.logits, 0, found)? {
            return Ok(());
        }
        let (mut k, mut since) = (first, 0usize);
        for i in 0..self.steps {
            // The step, with momentum; x_old is the previous iterate.
            let a = if i > 0 { 0.75 } else { 1.0 };
            let moved = (&s.x - &s.x_old)?;
            s.x_old = s.x.clone();
            let eta = per_row(&s.step, &s.x)?;
            let z = threat.project(&s.x0, &(&s.x + threat.ascent(&s.grad, 1.0)?.broadcast_mul(&eta)?)?)?;
            let mixed = ((&s.x + ((z - &s.x)? * a)?)? + (moved * (1.0 - a))?)?;
            s.x = threat.project(&s.x0, &mixed)?;

            cost.gradients += s.sample.len() as u64;
            let lg = model.loss_and_grad(&s.x, &s.goal, loss)?;
            s.grad = lg.grad;
            let value = to_f64(&lg.loss)?;
            let better: Vec<bool> = value.iter().zip(&s.loss_best).map(|(v, b)| v > b).collect();
            s.x_best = where_rows(&better, &s.x, &s.x_best)?;
            s.grad_best = where_rows(&better, &s.grad, &s.grad_best)?;
            for (j, v) in value.iter().enumerate() {
                s.history[j][i] = *v;
                if better[j] {
                    s.loss_best[j] = *v;
                }
            }
            if !record(&mut s, &lg.logits, i as u32 + 1, found)? {
                break;
            }

            since += 1;
            if since == k {
                let reduce: Vec<bool> = (0..s.sample.len())
                    .map(|j| {
                        let h = &s.history[j];
                        let at = |t: isize| h[t.rem_euclid(self.steps as isize) as usize];
                        let raised =
                            (0..k as isize).filter(|&c| at(i as isize - c) > at(i as isize - c - 1)).count() as f64;
                        let oscillating = raised <= k as f64 * self.rho;
                        let stalled = !s.reduced_last[j] && s.loss_best_last[j] >= s.loss_best[j];
                        oscillating || stalled
                    })
                    .collect();
                s.reduced_last = reduce.clone();
                s.loss_best_last = s.loss_best.clone();
                if reduce.iter().any(|&r| r) {
                    for (j, &r) in reduce.iter().enumerate() {
                        if r {
                            s.step[j] /= 2.0;
                        }
                    }
                    s.x = where_rows(&reduce, &s.x_best, &s.x)?;
                    s.grad = where_rows(&reduce, &s.grad_best, &s.grad)?;
                }
                since = 0;
                k = k.saturating_sub(decrement).max(min_gap);
            }
        }
        Ok(())
    }
}

/// Records the rows that reached the goal at iteration `t` and drops every copy of their sample;
/// false when no row is left.
fn record(s: &mut State, logits: &Tensor, t: u32, found: &mut Found) -> Result<bool> {
    let keep = found.record(&s.sample, &s.x, &hits(&s.goal, logits)?, t, false)?;
    if keep.len() < s.sample.len() {
        if keep.is_empty() {
            return Ok(false);
        }
        s.keep(&keep)?;
    }
    Ok(true)
}
