//! What an attack sees of a model: logits and input gradients in pixel space.

use candle_core::{DType, Device, Tensor, Var, D};

use crate::{ModelError, Result};

/// The box that valid inputs live in, in pixel space (usually `[0, 1]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub lo: f32,
    pub hi: f32,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds { lo: 0.0, hi: 1.0 }
    }
}

/// What the attacker wants for each sample of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    /// True labels (untargeted) or target labels (targeted), one per sample.
    pub classes: Vec<u32>,
    pub targeted: bool,
    /// For an untargeted goal, a class per sample that [`Loss::DlrTargeted`] pulls towards
    /// (APGD-T): success is still any wrong prediction.
    pub guide: Option<Vec<u32>>,
    /// For [`Loss::Kl`], the class probabilities the divergence is measured from, one row of K
    /// per sample (TRADES: the model's own prediction on the clean input).
    pub reference: Option<Vec<f32>>,
}

impl Goal {
    pub fn untargeted(labels: Vec<u32>) -> Self {
        Goal { classes: labels, targeted: false, guide: None, reference: None }
    }

    pub fn targeted(targets: Vec<u32>) -> Self {
        Goal { classes: targets, targeted: true, guide: None, reference: None }
    }

    /// Whether prediction `pred` of sample `i` achieves the attacker's goal.
    pub fn achieved(&self, i: usize, pred: u32) -> bool {
        if self.targeted {
            pred == self.classes[i]
        } else {
            pred != self.classes[i]
        }
    }

    /// The goal restricted to the rows `keep` (in that order).
    pub fn select(&self, keep: &[usize]) -> Goal {
        let pick = |v: &[u32]| keep.iter().map(|&i| v[i]).collect::<Vec<u32>>();
        let k = self.reference.as_ref().map_or(0, |r| r.len() / self.classes.len().max(1));
        let rows = |r: &Vec<f32>| keep.iter().flat_map(|&i| r[i * k..(i + 1) * k].iter().copied()).collect();
        Goal {
            classes: pick(&self.classes),
            targeted: self.targeted,
            guide: self.guide.as_deref().map(pick),
            reference: self.reference.as_ref().map(rows),
        }
    }

    pub fn len(&self) -> usize {
        self.classes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
}

/// The per-sample objective an attack ascends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Loss {
    /// Cross-entropy of the logits; negated for targeted goals.
    #[default]
    CrossEntropy,
    /// Carlini–Wagner margin: `max_{i≠y} z_i − z_y` (untargeted) or `z_t − max_{i≠t} z_i` (targeted).
    Margin,
    /// Difference of logits ratio (Croce & Hein 2020), untargeted:
    /// `−(z_y − max_{i≠y} z_i) / (z_π1 − z_π3 + 1e-12)`, π sorting the logits in decreasing order.
    Dlr,
    /// Targeted DLR towards the goal's `guide` class t:
    /// `−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e-12)`.
    DlrTargeted,
    /// Kullback–Leibler divergence KL(p ‖ softmax(z)) from the goal's `reference` probabilities
    /// p (TRADES' inner maximisation, Zhang et al. 2019); untargeted goals only.
    Kl,
}

impl Loss {
    /// The loss's name in attack parameters and reports.
    pub fn name(self) -> &'static str {
        match self {
            Loss::CrossEntropy => "ce",
            Loss::Margin => "margin",
            Loss::Dlr => "dlr",
            Loss::DlrTargeted => "dlr-targeted",
            Loss::Kl => "kl",
        }
    }
}

/// One forward + input-gradient pass.
#[derive(Debug, Clone)]
pub struct LossGrad {
    /// Per-sample loss, shape (N,).
    pub loss: Tensor,
    /// Logits at the same inputs, shape (N, K).
    pub logits: Tensor,
    /// d loss_i / d x_i, shape (N, C, H, W).
    pub grad: Tensor,
}

/// A differentiable image classifier. Object-safe; candle's runtime `Device` does the dispatch.
pub trait Classifier: Send + Sync {
    /// Logits (N, K) for inputs (N, C, H, W) in pixel space `bounds()`; normalization happens inside.
    fn logits(&self, x: &Tensor) -> Result<Tensor>;

    /// Expected input shape (C, H, W).
    fn input_shape(&self) -> [usize; 3];

    /// Number of classes K.
    fn num_classes(&self) -> usize;

    fn bounds(&self) -> Bounds {
        Bounds::default()
    }

    fn device(&self) -> &Device;

    /// Why the input gradient cannot be trusted (a discrete operator on the path from input to
    /// logits), if it cannot: gradient attacks would overstate robustness.
    fn gradient_issue(&self) -> Option<String> {
        None
    }

    /// Number of trainable parameters (for reports); 0 when unknown.
    fn parameter_count(&self) -> usize {
        0
    }

    /// What loading found that the user should know (a final Softmax set aside, a batch size baked
    /// into the graph, …), for the caller to show; the library prints nothing.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Which executor runs the model, for `inspect`: the compiled plan, or why not.
    fn executor(&self) -> String {
        "candle operations".into()
    }

    /// The model for certified bounds in pixel space, or why it has none.
    fn bound_net(&self) -> Result<crate::bounds::BoundNet> {
        Err(ModelError::Bounds("this kind of model has no bound propagation".into()))
    }

    /// Per-sample loss and d loss / d x, signed so that ascending always helps the attacker.
    fn loss_and_grad(&self, x: &Tensor, goal: &Goal, loss: Loss) -> Result<LossGrad> {
        autograd_loss_and_grad(self, x, goal, loss)
    }
}

/// `loss_and_grad` through candle's autograd: the default for every classifier.
pub fn autograd_loss_and_grad<C: Classifier + ?Sized>(
    model: &C,
    x: &Tensor,
    goal: &Goal,
    loss: Loss,
) -> Result<LossGrad> {
    let var = Var::from_tensor(&x.detach())?;
    let logits = model.logits(var.as_tensor())?;
    let per_sample = objective(&logits, goal, loss)?;
    let grads = per_sample.sum_all()?.backward()?;
    let grad = grads.get(var.as_tensor()).ok_or(ModelError::GradientMissing)?.clone();
    Ok(LossGrad { loss: per_sample.detach(), logits: logits.detach(), grad })
}

/// Per-sample attack objective from logits (N, K): larger is better for the attacker.
pub fn objective(logits: &Tensor, goal: &Goal, loss: Loss) -> Result<Tensor> {
    let (n, k) = logits.dims2()?;
    if goal.len() != n {
        return Err(ModelError::Invalid(format!("goal has {} labels for a batch of {n}", goal.len())));
    }
    if let Some(&bad) = goal.classes.iter().find(|&&c| c as usize >= k) {
        return Err(ModelError::Invalid(format!("label {bad} is out of range for a model with {k} classes")));
    }
    let idx = Tensor::from_slice(&goal.classes, (n, 1), logits.device())?;
    let z_c = logits.gather(&idx, 1)?.squeeze(1)?;
    let value = match loss {
        Loss::CrossEntropy => {
            // cross-entropy = logsumexp(z) − z_c, with the shift by max(z) kept out of the graph
            // (it cancels mathematically; through candle's max it would leak into tied logits).
            let m = logits.max_keepdim(D::Minus1)?.detach();
            let lse = (logits.broadcast_sub(&m)?.exp()?.sum_keepdim(D::Minus1)?.log()? + &m)?.squeeze(D::Minus1)?;
            let ce = (lse - &z_c)?;
            if goal.targeted {
                ce.neg()?
            } else {
                ce
            }
        }
        Loss::Margin => {
            // The best other class: mask the goal class with a very negative value.
            let onehot =
                Tensor::from_vec(one_hot(&goal.classes, k), (n, k), logits.device())?.to_dtype(logits.dtype())?;
            let masked = (logits - (onehot * 1e9)?)?;
            let other = masked.max(D::Minus1)?;
            if goal.targeted {
                (z_c - other)?
            } else {
                (other - z_c)?
            }
        }
        Loss::Dlr | Loss::DlrTargeted => dlr(logits, goal, loss)?,
        Loss::Kl => kl(logits, goal)?,
    };
    Ok(value)
}

/// KL(p ‖ softmax(z)) = Σ p·(log p − log_softmax(z)) per row, p the goal's reference (0·log 0 = 0).
fn kl(logits: &Tensor, goal: &Goal) -> Result<Tensor> {
    let (n, k) = logits.dims2()?;
    let p = goal.reference.as_ref().filter(|r| r.len() == n * k).ok_or_else(|| {
        ModelError::Invalid(format!("the kl loss needs reference probabilities of {k} classes for each of {n} samples"))
    })?;
    if goal.targeted {
        return Err(ModelError::Invalid("the kl loss is for untargeted goals".into()));
    }
    let plogp: Vec<f32> = p.chunks(k).map(|r| r.iter().filter(|&&v| v > 0.0).map(|&v| v * v.ln()).sum()).collect();
    let pt = Tensor::from_slice(p, (n, k), logits.device())?.to_dtype(logits.dtype())?;
    let plogp = Tensor::from_vec(plogp, n, logits.device())?.to_dtype(logits.dtype())?;
    let m = logits.max_keepdim(D::Minus1)?.detach();
    let lse = (logits.broadcast_sub(&m)?.exp()?.sum_keepdim(D::Minus1)?.log()? + &m)?;
    let log_q = logits.broadcast_sub(&lse)?;
    Ok((plogp - (pt * log_q)?.sum(D::Minus1)?)?)
}

/// The DLR losses. Sorting is done on the CPU and the logits are picked with `gather`, so the
/// gradient reaches exactly one element per picked rank, as with PyTorch's `sort`.
fn dlr(logits: &Tensor, goal: &Goal, loss: Loss) -> Result<Tensor> {
    let (n, k) = logits.dims2()?;
    let need = if loss == Loss::DlrTargeted { 4 } else { 3 };
    if k < need {
        return Err(ModelError::Invalid(format!(
            "the {} loss needs at least {need} classes, the model has {k}",
            loss.name()
        )));
    }
    if goal.targeted {
        return Err(ModelError::Invalid(format!("the {} loss is for untargeted goals", loss.name())));
    }
    let rows = logits.detach().to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let order: Vec<Vec<u32>> = rows
        .iter()
        .map(|r| {
            let mut idx: Vec<u32> = (0..k as u32).collect();
            // Decreasing; ties keep the lower index first.
            idx.sort_by(|&a, &b| r[b as usize].total_cmp(&r[a as usize]));
            idx
        })
        .collect();
    let pick = |cols: Vec<u32>| -> Result<Tensor> {
        let idx = Tensor::from_vec(cols, (n, 1), logits.device())?;
        Ok(logits.gather(&idx, 1)?.squeeze(1)?)
    };
    let rank = |r: usize| pick(order.iter().map(|o| o[r]).collect());
    let y = &goal.classes;
    let z_y = pick(y.clone())?;
    let value = if loss == Loss::Dlr {
        let other = pick(order.iter().zip(y).map(|(o, &c)| if o[0] == c { o[1] } else { o[0] }).collect())?;
        let denom = ((rank(0)? - rank(2)?)? + 1e-12)?;
        ((z_y - other)? / denom)?.neg()?
    } else {
        let Some(t) = &goal.guide else {
            return Err(ModelError::Invalid("the dlr-targeted loss needs a guide class per sample".into()));
        };
        let z_t = pick(t.clone())?;
        let denom = ((rank(0)? - ((rank(2)? + rank(3)?)? * 0.5)?)? + 1e-12)?;
        ((z_y - z_t)? / denom)?.neg()?
    };
    Ok(value)
}

fn one_hot(classes: &[u32], k: usize) -> Vec<f32> {
    let mut v = vec![0f32; classes.len() * k];
    for (i, &c) in classes.iter().enumerate() {
        v[i * k + c as usize] = 1.0;
    }
    v
}

/// Arg-max of each row of logits (N, K), on the CPU.
pub fn predictions(logits: &Tensor) -> Result<Vec<u32>> {
    Ok(logits.to_dtype(DType::F32)?.argmax(D::Minus1)?.to_dtype(DType::U32)?.to_vec1::<u32>()?)
}
