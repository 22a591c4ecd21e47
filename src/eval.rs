//! The evaluator: the only place that decides what counts.
//!
//! A clean pass classifies every sample once. Each attack then runs on the clean-correct samples
//! for every ε in ascending order; a sample it broke at a smaller ε stays broken at every larger
//! one (the ε-balls are nested, so the same perturbation is admissible) and is not attacked again.
//! Whatever an attack returns is re-projected onto the ε-ball and the pixel bounds in f64, checked
//! against ‖δ‖ ≤ ε·(1 + 1e-6) and the bounds, and re-classified in a separate forward pass; only
//! then is a sample counted broken.

use std::time::Instant;

use candle_core::{Device, Tensor};
use gauntlet_attacks::{distances, Attack, AttackBatch, Cost, Norm, ThreatModel};
use gauntlet_datasets::ImageSet;
use gauntlet_models::{predictions, Classifier, Goal};

use crate::{Error, Result};

/// What to run.
#[derive(Debug)]
pub struct EvalConfig {
    pub attacks: Vec<Box<dyn Attack>>,
    pub norm: Norm,
    /// Budgets; sorted ascending and de-duplicated by the evaluator.
    pub eps: Vec<f64>,
    pub seed: u64,
    pub batch_size: usize,
    /// Target class per sample for targeted attacks; `None` for untargeted.
    pub targets: Option<Vec<u32>>,
}

/// Receives progress events; every method has a no-op default.
pub trait Progress {
    fn start(&self, _total: u64) {}
    fn advance(&self, _done: u64, _message: &str) {}
    fn finish(&self) {}
}

/// Progress that goes nowhere.
pub struct Silent;
impl Progress for Silent {}

/// How a sample was first broken by one attack.
#[derive(Debug, Clone, PartialEq)]
pub struct Broken {
    /// Index into the sorted ε list of the smallest budget at which it broke.
    pub eps_index: usize,
    pub adv_pred: u32,
    pub linf: f64,
    pub l2: f64,
    /// The attack iteration that produced the adversarial example, if the attack reports it.
    pub step: Option<u32>,
}

/// Per attack × ε bookkeeping.
#[derive(Debug, Clone, Default)]
pub struct CellStats {
    /// Samples handed to the attack at this ε.
    pub attacked: usize,
    pub cost: Cost,
    pub seconds: f64,
    /// Rows the attack returned that, after re-projection and re-classification, were not adversarial
    /// although the attack reported success.
    pub unconfirmed: usize,
}

/// Per-attack results.
#[derive(Debug, Clone)]
pub struct AttackRecord {
    pub name: String,
    pub params: String,
    /// One entry per sample.
    pub broken: Vec<Option<Broken>>,
    /// One entry per ε.
    pub cells: Vec<CellStats>,
}

/// Everything the evaluation measured; reports are derived from this.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub norm: Norm,
    pub eps: Vec<f64>,
    pub labels: Vec<u32>,
    pub clean_pred: Vec<u32>,
    pub targets: Option<Vec<u32>>,
    pub attacks: Vec<AttackRecord>,
    pub clean_seconds: f64,
    pub total_seconds: f64,
}

impl Evaluation {
    pub fn samples(&self) -> usize {
        self.labels.len()
    }

    pub fn correct(&self, i: usize) -> bool {
        self.clean_pred[i] == self.labels[i]
    }

    /// Whether sample `i` resists attack `a` at the ε with index `k` (clean-correct and unbroken).
    pub fn robust(&self, a: usize, i: usize, k: usize) -> bool {
        self.correct(i) && self.attacks[a].broken[i].as_ref().is_none_or(|b| b.eps_index > k)
    }

    /// Whether sample `i` resists every attack at ε index `k`.
    pub fn robust_all(&self, i: usize, k: usize) -> bool {
        (0..self.attacks.len()).all(|a| self.robust(a, i, k))
    }
}

/// Sorts and de-duplicates budgets; rejects non-positive or non-finite ones.
pub fn normalize_eps(eps: &[f64]) -> Result<Vec<f64>> {
    if eps.is_empty() {
        return Err(Error::Usage("no ε given".into()));
    }
    if let Some(bad) = eps.iter().find(|e| !(e.is_finite() && **e > 0.0)) {
        return Err(Error::Usage(format!("ε = {bad} is not a positive number")));
    }
    let mut v = eps.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.dedup();
    Ok(v)
}

/// Stacks the images `idx` of the dataset into a (n, C, H, W) tensor on `device`.
pub fn batch_tensor(data: &ImageSet, idx: &[usize], device: &Device) -> Result<Tensor> {
    let per = data.per_image();
    let mut v = Vec::with_capacity(idx.len() * per);
    for &i in idx {
        v.extend_from_slice(data.image(i));
    }
    let [c, h, w] = data.shape;
    Ok(Tensor::from_vec(v, (idx.len(), c, h, w), &Device::Cpu)?.to_device(device)?)
}

/// Runs the whole evaluation.
pub fn evaluate(
    model: &dyn Classifier,
    data: &ImageSet,
    cfg: &EvalConfig,
    progress: &dyn Progress,
) -> Result<Evaluation> {
    let started = Instant::now();
    let n = data.labels.len();
    let eps = normalize_eps(&cfg.eps)?;
    let batch = cfg.batch_size.max(1);
    if let Some(t) = &cfg.targets {
        if t.len() != n {
            return Err(Error::Usage(format!("{} target labels for {n} samples", t.len())));
        }
        if let Some(bad) = t.iter().find(|&&c| c as usize >= model.num_classes()) {
            return Err(Error::Usage(format!(
                "target class {bad} is out of range for {} classes",
                model.num_classes()
            )));
        }
    }
    let device = model.device().clone();

    // Clean pass.
    let clean_start = Instant::now();
    let all: Vec<usize> = (0..n).collect();
    let mut clean_pred = Vec::with_capacity(n);
    let correct_guess = n as u64 * (1 + (cfg.attacks.len() * eps.len()) as u64);
    progress.start(correct_guess);
    for chunk in all.chunks(batch) {
        let x = batch_tensor(data, chunk, &device)?;
        clean_pred.extend(predictions(&model.logits(&x)?)?);
        progress.advance(chunk.len() as u64, "clean");
    }
    let clean_seconds = clean_start.elapsed().as_secs_f64();
    let correct: Vec<usize> = (0..n).filter(|&i| clean_pred[i] == data.labels[i]).collect();
    // Progress was sized for all samples; only the clean-correct ones are attacked.
    progress.advance(((n - correct.len()) * cfg.attacks.len() * eps.len()) as u64, "clean");

    let mut records = Vec::with_capacity(cfg.attacks.len());
    for (a, attack) in cfg.attacks.iter().enumerate() {
        let mut broken: Vec<Option<Broken>> = vec![None; n];
        let mut cells = Vec::with_capacity(eps.len());
        for (k, &e) in eps.iter().enumerate() {
            let threat = ThreatModel::new(cfg.norm, e, model.bounds())?;
            let cell_start = Instant::now();
            let mut cell = CellStats::default();
            let todo: Vec<usize> = correct
                .iter()
                .copied()
                .filter(|&i| broken[i].is_none())
                .filter(|&i| cfg.targets.as_ref().is_none_or(|t| t[i] != data.labels[i]))
                .collect();
            progress.advance((correct.len() - todo.len()) as u64, attack.name());
            for chunk in todo.chunks(batch) {
                let goal = goal_for(chunk, &data.labels, cfg.targets.as_deref());
                let x0 = batch_tensor(data, chunk, &device)?;
                let ids: Vec<u64> = chunk.iter().map(|&i| i as u64).collect();
                let stream = ((a as u64) << 32) | k as u64;
                let out = attack.run(
                    model,
                    &AttackBatch { x0: &x0, goal: &goal, ids: &ids, seed: cfg.seed, stream },
                    &threat,
                )?;
                cell.cost += out.cost;
                cell.attacked += chunk.len();
                let verified = verify(model, data, chunk, &goal, &out.x_adv, &threat, &device)?;
                cell.cost.forwards += chunk.len() as u64;
                for (j, &i) in chunk.iter().enumerate() {
                    match &verified[j] {
                        Some((pred, linf, l2)) => {
                            broken[i] = Some(Broken {
                                eps_index: k,
                                adv_pred: *pred,
                                linf: *linf,
                                l2: *l2,
                                step: out.steps[j],
                            });
                        }
                        None => {
                            if out.reached[j] {
                                cell.unconfirmed += 1;
                            }
                        }
                    }
                }
                progress.advance(chunk.len() as u64, attack.name());
            }
            cell.seconds = cell_start.elapsed().as_secs_f64();
            cells.push(cell);
        }
        records.push(AttackRecord { name: attack.name().to_string(), params: attack.params(), broken, cells });
    }
    progress.finish();
    Ok(Evaluation {
        norm: cfg.norm,
        eps,
        labels: data.labels.clone(),
        clean_pred,
        targets: cfg.targets.clone(),
        attacks: records,
        clean_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
    })
}

fn goal_for(chunk: &[usize], labels: &[u32], targets: Option<&[u32]>) -> Goal {
    match targets {
        Some(t) => Goal::targeted(chunk.iter().map(|&i| t[i]).collect()),
        None => Goal::untargeted(chunk.iter().map(|&i| labels[i]).collect()),
    }
}

/// Re-projects, re-checks and re-classifies an attack's output. Per row: `Some((prediction, ‖δ‖∞,
/// ‖δ‖₂))` when the row is a valid adversarial example, `None` otherwise.
fn verify(
    model: &dyn Classifier,
    data: &ImageSet,
    chunk: &[usize],
    goal: &Goal,
    x_adv: &Tensor,
    threat: &ThreatModel,
    device: &Device,
) -> Result<Vec<Option<(u32, f64, f64)>>> {
    let per = data.per_image();
    let expected = [chunk.len(), data.shape[0], data.shape[1], data.shape[2]];
    if x_adv.dims() != expected {
        return Err(Error::Usage(format!(
            "an attack returned shape {:?} for a batch of shape {expected:?}",
            x_adv.dims()
        )));
    }
    let mut rows = x_adv.to_device(&Device::Cpu)?.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut within = vec![true; chunk.len()];
    for (j, &i) in chunk.iter().enumerate() {
        let x0 = data.image(i);
        let row = &mut rows[j * per..(j + 1) * per];
        threat.project_exact(x0, row);
        within[j] = threat.admits(x0, row);
    }
    let [c, h, w] = data.shape;
    let x = Tensor::from_slice(&rows, (chunk.len(), c, h, w), &Device::Cpu)?.to_device(device)?;
    let preds = predictions(&model.logits(&x)?)?;
    Ok(chunk
        .iter()
        .enumerate()
        .map(|(j, &i)| {
            if !within[j] || !goal.achieved(j, preds[j]) {
                return None;
            }
            let (linf, l2) = distances(data.image(i), &rows[j * per..(j + 1) * per]);
            Some((preds[j], linf, l2))
        })
        .collect())
}
