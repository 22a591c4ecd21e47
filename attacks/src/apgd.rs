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

use candle_core::{DType, Device, Tensor};
use gauntlet_models::{predictions, Classifier, Goal, Loss};
use rand::Rng;

use crate::attack::{Attack, AttackBatch, AttackOutput, Cost, Params};
use crate::pgd::{select, to_rows, Rows};
use crate::threat::{gaussian, NoiseKey, Norm, ThreatModel};
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

    pub fn from_params(loss: ApgdLoss, mut p: Params) -> Result<Self> {
        let steps = p.take_usize("steps")?.unwrap_or(100);
        let restarts = p.take_usize("restarts")?.unwrap_or(1);
        let rho = p.take_f64("rho")?.unwrap_or(0.75);
        let loss = match loss {
            ApgdLoss::Targeted { targets } => {
                ApgdLoss::Targeted { targets: p.take_usize("targets")?.unwrap_or(targets) }
            }
            l => l,
        };
        let name = Self::name_of(loss);
        let bad = |m: &str| AttackError::Param { attack: name.into(), message: m.into() };
        let mut known = vec!["steps", "restarts", "rho"];
        if let ApgdLoss::Targeted { targets } = loss {
            known.push("targets");
            if targets == 0 {
                return Err(bad("targets must be at least 1"));
            }
        }
        p.finish(&known)?;
        if steps == 0 || restarts == 0 {
            return Err(bad("steps and restarts must be at least 1"));
        }
        if !(rho > 0.0 && rho <= 1.0) {
            return Err(bad("rho must lie in (0, 1]"));
        }
        Ok(Apgd { loss, steps, restarts, rho })
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

impl Attack for Apgd {
    fn name(&self) -> &str {
        Self::name_of(self.loss)
    }

    fn params(&self) -> String {
        let mut s = format!("steps={},restarts={},rho={}", self.steps, self.restarts, self.rho);
        if let ApgdLoss::Targeted { targets } = self.loss {
            s += &format!(",targets={targets}");
        }
        s
    }

    fn run(&self, model: &dyn Classifier, batch: &AttackBatch<'_>, threat: &ThreatModel) -> Result<AttackOutput> {
        let n = batch.len();
        let mut found = Found { out: Rows::new(batch.x0)?, steps: vec![None; n], reached: vec![false; n] };
        let mut cost = Cost::default();
        let rounds: Vec<Option<usize>> = match self.loss {
            ApgdLoss::Targeted { targets } => {
                if batch.goal.targeted {
                    return Err(AttackError::Param {
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
            let todo: Vec<usize> = (0..n).filter(|&i| !found.reached[i]).collect();
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
            let key = |r: usize| batch.noise_key((round * self.restarts + r) as u64);
            let run = self.single_run(model, &x0, &goal, loss, &ids, key, threat, &mut cost)?;
            for (j, &i) in todo.iter().enumerate() {
                if let Some((step, row)) = &run[j] {
                    found.reached[i] = true;
                    found.steps[i] = Some(*step);
                    found.out.set(i, row);
                }
            }
        }
        Ok(AttackOutput { x_adv: found.out.into_tensor()?, steps: found.steps, reached: found.reached, cost })
    }
}

/// A row's first success: the iteration and the input.
type Success = Option<(u32, Vec<f32>)>;

struct Found {
    out: Rows,
    steps: Vec<Option<u32>>,
    reached: Vec<bool>,
}

/// The class of rank `k` (0 = the largest logit) of one row; ties keep the lower index first.
fn ranked(row: &[f64], k: usize) -> u32 {
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    idx.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]));
    idx[k]
}

/// Per-row state of the APGD loop, compacted as rows succeed.
struct State {
    /// Row → (sample within the run, restart copy).
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

/// Rows where `mask` holds take `a`, the others `b`.
fn where_rows(mask: &[bool], a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let m: Vec<u8> = mask.iter().map(|&v| u8::from(v)).collect();
    let mut shape = vec![1usize; a.rank()];
    shape[0] = m.len();
    let m = Tensor::from_vec(m, shape, a.device())?.broadcast_as(a.shape())?;
    Ok(m.where_cond(a, b)?)
}

/// A per-row scalar as a tensor broadcastable over rows of `like`.
fn per_row(v: &[f64], like: &Tensor) -> Result<Tensor> {
    let mut shape = vec![1usize; like.rank()];
    shape[0] = v.len();
    Ok(Tensor::from_vec(v.to_vec(), shape, &Device::Cpu)?.to_device(like.device())?.to_dtype(like.dtype())?)
}

impl Apgd {
    /// The random start on the ε-sphere of the reference implementation, per sample stream.
    fn start(&self, x0: &Tensor, ids: &[u64], key: NoiseKey, threat: &ThreatModel) -> Result<Tensor> {
        let n = x0.dim(0)?;
        let per = x0.elem_count() / n.max(1);
        let mut noise = Vec::with_capacity(n * per);
        for &id in ids {
            let mut rng = key.rng(id);
            let t: Vec<f64> = match threat.norm {
                Norm::Linf => (0..per).map(|_| rng.random_range(-1.0..1.0)).collect(),
                Norm::L2 => (0..per).map(|_| gaussian(&mut rng)).collect(),
            };
            let scale = match threat.norm {
                Norm::Linf => t.iter().fold(0f64, |m, v| m.max(v.abs())),
                Norm::L2 => t.iter().map(|v| v * v).sum::<f64>().sqrt(),
            } + 1e-12;
            noise.extend(t.iter().map(|v| (threat.eps * v / scale) as f32));
        }
        let noise = Tensor::from_vec(noise, x0.shape(), &Device::Cpu)?.to_device(x0.device())?.to_dtype(x0.dtype())?;
        Ok((x0 + noise)?.clamp(threat.bounds.lo, threat.bounds.hi)?)
    }

    /// One APGD run with `restarts` copies of every row; per row of `x0`, the step and the input
    /// of its first success.
    #[allow(clippy::too_many_arguments)]
    fn single_run(
        &self,
        model: &dyn Classifier,
        x0: &Tensor,
        goal: &Goal,
        loss: Loss,
        ids: &[u64],
        key: impl Fn(usize) -> NoiseKey,
        threat: &ThreatModel,
        cost: &mut Cost,
    ) -> Result<Vec<Success>> {
        let n = x0.dim(0)?;
        let mut result: Vec<Success> = vec![None; n];
        let rows: Vec<usize> = (0..self.restarts).flat_map(|_| 0..n).collect();
        let starts = (0..self.restarts).map(|r| self.start(x0, ids, key(r), threat)).collect::<Result<Vec<_>>>()?;
        let x = Tensor::cat(&starts, 0)?;
        let x0 = select(x0, &rows)?;
        let goal = goal.select(&rows);
        let (first, min_gap, decrement) = self.schedule();

        // The starting point: its loss, gradient and prediction.
        cost.gradients += rows.len() as u64;
        let lg = model.loss_and_grad(&x, &goal, loss)?;
        let loss0: Vec<f64> = lg.loss.to_dtype(DType::F64)?.to_vec1()?;
        let mut s = State {
            sample: rows,
            x0,
            x_old: x.clone(),
            x_best: x.clone(),
            grad_best: lg.grad.clone(),
            grad: lg.grad,
            x,
            goal,
            step: vec![2.0 * threat.eps; loss0.len()],
            loss_best_last: loss0.clone(),
            loss_best: loss0,
            reduced_last: vec![true; 0],
            history: Vec::new(),
        };
        s.reduced_last = vec![true; s.sample.len()];
        s.history = vec![vec![0.0; self.steps]; s.sample.len()];
        if !self.record(&mut s, &lg.logits, 0, &mut result)? {
            return Ok(result);
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
            let value: Vec<f64> = lg.loss.to_dtype(DType::F64)?.to_vec1()?;
            let better: Vec<bool> = value.iter().zip(&s.loss_best).map(|(v, b)| v > b).collect();
            s.x_best = where_rows(&better, &s.x, &s.x_best)?;
            s.grad_best = where_rows(&better, &s.grad, &s.grad_best)?;
            for (j, v) in value.iter().enumerate() {
                s.history[j][i] = *v;
                if better[j] {
                    s.loss_best[j] = *v;
                }
            }
            if !self.record(&mut s, &lg.logits, i as u32 + 1, &mut result)? {
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
        Ok(result)
    }

    /// Records rows that reached the goal at iteration `t` and drops every copy of their sample;
    /// false when no row is left.
    fn record(&self, s: &mut State, logits: &Tensor, t: u32, result: &mut [Success]) -> Result<bool> {
        let preds = predictions(logits)?;
        let hit: Vec<bool> = preds.iter().enumerate().map(|(j, &p)| s.goal.achieved(j, p)).collect();
        if hit.iter().any(|&h| h) {
            let rows = to_rows(&s.x)?;
            for (j, &i) in s.sample.iter().enumerate() {
                if hit[j] && result[i].is_none() {
                    result[i] = Some((t, rows[j].clone()));
                }
            }
            let keep: Vec<usize> = (0..s.sample.len()).filter(|&j| result[s.sample[j]].is_none()).collect();
            if keep.is_empty() {
                return Ok(false);
            }
            s.keep(&keep)?;
        }
        Ok(true)
    }
}
