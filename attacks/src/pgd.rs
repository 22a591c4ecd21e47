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
//! `rel_step` (a fraction of ε) is given; `restarts=1`; `random_start=true`; `loss=ce`.

use candle_core::{Device, Tensor};
use gauntlet_models::{predictions, Classifier, Loss};

use crate::attack::{loss_name, Attack, AttackBatch, AttackOutput, Cost, Params};
use crate::threat::ThreatModel;
use crate::{AttackError, Result};

/// How the step size α is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepSize {
    Absolute(f64),
    /// A fraction of ε.
    Relative(f64),
}

#[derive(Debug, Clone)]
pub struct Pgd {
    pub steps: usize,
    pub step: StepSize,
    pub restarts: usize,
    pub random_start: bool,
    pub loss: Loss,
}

impl Pgd {
    pub const NAME: &'static str = "pgd";
    const KEYS: &'static [&'static str] = &["steps", "step", "rel_step", "restarts", "random_start", "loss"];

    pub fn from_params(mut p: Params) -> Result<Self> {
        let steps = p.take_usize("steps")?.unwrap_or(40);
        let abs = p.take_f64("step")?;
        let rel = p.take_f64("rel_step")?;
        let restarts = p.take_usize("restarts")?.unwrap_or(1);
        let random_start = p.take_bool("random_start")?.unwrap_or(true);
        let loss = p.take_loss()?.unwrap_or_default();
        p.finish(Self::KEYS)?;
        let bad = |m: &str| Err(AttackError::Param { attack: Self::NAME.into(), message: m.into() });
        if steps == 0 || restarts == 0 {
            return bad("steps and restarts must be at least 1");
        }
        let step = match (abs, rel) {
            (Some(_), Some(_)) => return bad("give either step (absolute) or rel_step (fraction of ε), not both"),
            (Some(a), None) => StepSize::Absolute(a),
            (None, Some(r)) => StepSize::Relative(r),
            (None, None) => StepSize::Relative(2.5 / steps as f64),
        };
        if matches!(step, StepSize::Absolute(v) | StepSize::Relative(v) if v <= 0.0) {
            return bad("the step size must be positive");
        }
        Ok(Pgd { steps, step, restarts, random_start, loss })
    }

    fn alpha(&self, eps: f64) -> f64 {
        match self.step {
            StepSize::Absolute(a) => a,
            StepSize::Relative(r) => r * eps,
        }
    }
}

impl Attack for Pgd {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn params(&self) -> String {
        let step = match self.step {
            StepSize::Absolute(a) => format!("step={a}"),
            StepSize::Relative(r) => format!("rel_step={r}"),
        };
        format!(
            "steps={},{step},restarts={},random_start={},loss={}",
            self.steps,
            self.restarts,
            self.random_start,
            loss_name(self.loss)
        )
    }

    /// All restarts of all samples run as one batch (row `r·n + i` is restart r of sample i). A
    /// sample leaves the batch, with every copy of it, at the first step where any copy succeeds;
    /// each copy's trajectory depends only on its own random start, so the set of broken samples
    /// is the same as running the restarts one after another.
    fn run(&self, model: &dyn Classifier, batch: &AttackBatch<'_>, threat: &ThreatModel) -> Result<AttackOutput> {
        let n = batch.len();
        let alpha = self.alpha(threat.eps);
        let mut out = Rows::new(batch.x0)?;
        let mut steps = vec![None; n];
        let mut reached = vec![false; n];
        let mut cost = Cost::default();
        let copies = if self.random_start { self.restarts } else { 1 };
        // The sample behind each row of the working batch.
        let mut sample: Vec<usize> = (0..copies).flat_map(|_| 0..n).collect();
        let all: Vec<usize> = sample.clone();
        let mut x0 = select(batch.x0, &all)?;
        let mut goal = batch.goal.select(&all);
        let mut x = if self.random_start {
            let starts = (0..copies)
                .map(|r| threat.random_start(batch.x0, batch.ids, batch.noise_key(r as u64)))
                .collect::<Result<Vec<_>>>()?;
            Tensor::cat(&starts, 0)?
        } else {
            x0.clone()
        };
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
            if last || hit.iter().any(|&h| h) {
                let rows = to_rows(&x)?;
                for (j, &i) in sample.iter().enumerate() {
                    if reached[i] {
                        continue; // an earlier copy of this sample succeeded at this step
                    }
                    if hit[j] || last {
                        reached[i] = hit[j];
                        steps[i] = Some(t as u32);
                        out.set(i, &rows[j]);
                    }
                }
            }
            let Some(grad) = grad else { break };
            let keep: Vec<usize> = (0..sample.len()).filter(|&j| !reached[sample[j]]).collect();
            if keep.is_empty() {
                break;
            }
            let grad = if keep.len() < sample.len() {
                x = select(&x, &keep)?;
                x0 = select(&x0, &keep)?;
                goal = goal.select(&keep);
                sample = keep.iter().map(|&j| sample[j]).collect();
                select(&grad, &keep)?
            } else {
                grad
            };
            x = threat.project(&x0, &(&x + threat.ascent(&grad, alpha)?)?)?;
        }
        Ok(AttackOutput { x_adv: out.into_tensor()?, steps, reached, cost })
    }
}

/// Rows `idx` of a batch tensor.
pub(crate) fn select(t: &Tensor, idx: &[usize]) -> Result<Tensor> {
    let idx: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
    let len = idx.len();
    let idx = Tensor::from_vec(idx, len, t.device())?;
    Ok(t.index_select(&idx, 0)?)
}

/// A batch tensor's rows as f32 vectors on the CPU.
pub(crate) fn to_rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(t.to_device(&Device::Cpu)?.to_dtype(candle_core::DType::F32)?.flatten_from(1)?.to_vec2::<f32>()?)
}

/// The result batch, assembled on the CPU row by row.
pub(crate) struct Rows {
    data: Vec<f32>,
    per: usize,
    shape: candle_core::Shape,
    device: Device,
}

impl Rows {
    /// Starts as a copy of `init`.
    pub(crate) fn new(init: &Tensor) -> Result<Self> {
        let n = init.dim(0)?;
        let per = init.elem_count() / n.max(1);
        let data = init.to_device(&Device::Cpu)?.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1()?;
        Ok(Rows { data, per, shape: init.shape().clone(), device: init.device().clone() })
    }

    pub(crate) fn set(&mut self, i: usize, row: &[f32]) {
        self.data[i * self.per..(i + 1) * self.per].copy_from_slice(row);
    }

    pub(crate) fn into_tensor(self) -> Result<Tensor> {
        Ok(Tensor::from_vec(self.data, self.shape, &Device::Cpu)?.to_device(&self.device)?)
    }
}
