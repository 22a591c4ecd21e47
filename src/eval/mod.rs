//! The evaluator: the only place that decides what counts.
//!
//! A clean pass classifies every sample once. Each attack then runs on the clean-correct samples
//! for every ε in ascending order; a sample it broke at a smaller ε stays broken at every larger
//! one (the ε-balls are nested, so the same perturbation is admissible) and is not attacked again.
//! Whatever an attack returns is re-projected onto the ε-ball and the pixel bounds in f64, checked
//! against ‖δ‖ ≤ ε·(1 + 1e-6) and the bounds, and re-classified in a separate forward pass; only
//! then is a sample counted broken.
//!
//! Two protocols: `independent` (every attack on every clean-correct sample; per-attack robust
//! accuracy) and `cascade` (AutoAttack's: each attack only on the samples every earlier attack left
//! robust at that ε; robust accuracy after each attack is cumulative). Minimal-norm attacks run once
//! per sample, whatever the budgets, and count a sample broken at every ε its perturbation fits in.
//! Targeted evaluations try each sample's targets in turn (one for given, random and least-likely
//! targets; k for top-k) and count the sample broken when any target is reached.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use candle_core::{DType, Device, Tensor};
use gauntlet_attacks::{Attack, AttackBatch, Cost, Norm, ThreatModel};
use gauntlet_datasets::ImageSet;
use gauntlet_models::{predictions, Bounds, Classifier, Goal};

use crate::{Error, Result};

pub mod certify;
mod merge;
mod records;
mod summary;
mod targets;
mod verify;

pub use targets::TargetMode;
use verify::verify;

/// What to run.
#[derive(Debug)]
pub struct EvalConfig {
    pub attacks: Vec<Box<dyn Attack>>,
    pub norm: Norm,
    /// Budgets; sorted ascending and de-duplicated by the evaluator.
    pub eps: Vec<f64>,
    pub seed: u64,
    pub batch_size: usize,
    /// Targeted attacks and how their targets are chosen; `None` for untargeted.
    pub targets: Option<TargetMode>,
    /// AutoAttack's protocol: each attack runs only on the samples the earlier ones left robust.
    pub cascade: bool,
}

/// Receives progress events; every method has a no-op default.
pub trait Progress {
    fn start(&self, _total: u64) {}
    fn advance(&self, _done: u64, _message: &str) {}
    fn finish(&self) {}
    /// A stage of the run begins (`running integrity checks`, `evaluating model-b`).
    fn stage(&self, _what: &str) {}
    /// Whether the user asked the run to stop; the evaluator then ends with
    /// [`Error::Interrupted`] before its next batch.
    fn cancelled(&self) -> bool {
        false
    }
}

/// Progress that goes nowhere.
pub struct Silent;
impl Progress for Silent {}

/// How a sample was first broken by one attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Broken {
    /// Index into the sorted ε list of the smallest budget at which it broke.
    pub eps_index: usize,
    pub adv_pred: u32,
    pub linf: f64,
    pub l2: f64,
    /// The attack iteration that produced the adversarial example, if the attack reports it.
    pub step: Option<u32>,
    /// The perturbation's size in the threat model's norm.
    pub norm: f64,
}

/// Per attack × ε bookkeeping.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CellStats {
    /// Samples handed to the attack at this ε.
    pub attacked: usize,
    pub cost: Cost,
    pub seconds: f64,
    /// Rows the attack returned that, after re-projection and re-classification, were not adversarial
    /// although the attack reported success.
    pub unconfirmed: usize,
    /// Rows the attack returned outside the ε-ball or the bounds (beyond rounding), which the
    /// evaluator had to project before re-classifying them.
    pub out_of_budget: usize,
    /// The largest ‖δ‖/ε among the rows the attack returned, before projection.
    pub max_ratio: f64,
}

/// Per-attack results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttackRecord {
    pub name: String,
    pub params: String,
    /// One entry per sample.
    pub broken: Vec<Option<Broken>>,
    /// One entry per ε. A minimal-norm attack runs once: its cost and time are in the first entry.
    pub cells: Vec<CellStats>,
    /// Whether the attack computes gradients (false for gradient-free attacks such as Square).
    pub gradient_based: bool,
    /// For a minimal-norm attack, per sample: the smallest successful perturbation's size in the
    /// threat model's norm (0 for clean-misclassified samples, `None` where none was found).
    pub radius: Option<Vec<Option<f64>>>,
    /// Verified adversarial inputs kept for reports (see [`evaluate_keeping`]), in sample order.
    pub examples: Vec<Kept>,
}

/// One verified adversarial input kept for the reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    /// The sample, as an index into the evaluation's per-sample vectors.
    pub sample: usize,
    /// When it was first found: ε index and target round. The first `keep` found in this order
    /// (then by sample) are kept, so that an evaluation split into parts keeps the same ones.
    pub found: [usize; 2],
    pub pixels: Vec<f32>,
}

impl AttackRecord {
    /// Whether this attack broke sample `i` at the ε with index `k` or a smaller one.
    pub fn broken_at(&self, i: usize, k: usize) -> bool {
        self.broken[i].as_ref().is_some_and(|b| b.eps_index <= k)
    }
}

/// Everything the evaluation measured; reports are derived from this.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    /// The position of the first sample in the whole dataset (non-zero for a part of a run: a
    /// checkpointed batch or a shard); per-sample vectors start there.
    #[serde(default)]
    pub first: usize,
    pub norm: Norm,
    pub eps: Vec<f64>,
    pub labels: Vec<u32>,
    pub clean_pred: Vec<u32>,
    /// Per sample, the targets tried in turn (targeted evaluations only).
    pub targets: Option<Vec<Vec<u32>>>,
    pub target_mode: Option<String>,
    pub cascade: bool,
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

    /// Whether attack `a` broke sample `i` at the ε with index `k` or a smaller one.
    pub fn broken_by(&self, a: usize, i: usize, k: usize) -> bool {
        self.attacks[a].broken_at(i, k)
    }

    /// Whether sample `i` counts as robust in attack `a`'s row at ε index `k`: clean-correct and
    /// unbroken by `a` (independent protocol) or by `a` and every attack before it (cascade).
    pub fn robust(&self, a: usize, i: usize, k: usize) -> bool {
        let first = if self.cascade { 0 } else { a };
        self.correct(i) && (first..=a).all(|b| !self.broken_by(b, i, k))
    }

    /// The first attack, in the order given, that broke sample `i` at ε index `k` or below.
    pub fn first_breaker(&self, i: usize, k: usize) -> Option<usize> {
        (0..self.attacks.len()).find(|&a| self.broken_by(a, i, k))
    }

    /// Whether sample `i` resists every attack at ε index `k`.
    pub fn robust_all(&self, i: usize, k: usize) -> bool {
        (0..self.attacks.len()).all(|a| self.robust(a, i, k))
    }
}

/// Sorts and de-duplicates budgets; rejects non-positive or non-finite ones.
pub fn normalize_eps(eps: &[f64]) -> Result<Vec<f64>> {
    if eps.is_empty() {
        return Err(Error::Config("no ε given".into()));
    }
    if let Some(bad) = eps.iter().find(|e| !(e.is_finite() && **e > 0.0)) {
        return Err(Error::Config(format!("ε = {bad} is not a positive number")));
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
    evaluate_keeping(model, data, cfg, progress, 0)
}

/// Runs the whole evaluation and keeps, per attack, the verified adversarial inputs of up to `keep`
/// broken samples (the first broken in discovery order: smallest ε first).
pub fn evaluate_keeping(
    model: &dyn Classifier,
    data: &ImageSet,
    cfg: &EvalConfig,
    progress: &dyn Progress,
    keep: usize,
) -> Result<Evaluation> {
    let attacks: Vec<&dyn Attack> = cfg.attacks.iter().map(|a| a.as_ref()).collect();
    progress.start(work(data.labels.len(), &attacks, cfg)?);
    let ev = sweep(model, data, 0, &attacks, cfg, progress, keep)?;
    progress.finish();
    Ok(ev)
}

/// The progress units of an evaluation of `n` samples: one per sample for the clean pass and
/// one per sample, attack, ε and target round.
pub fn work(n: usize, attacks: &[&dyn Attack], cfg: &EvalConfig) -> Result<u64> {
    let eps = normalize_eps(&cfg.eps)?;
    let cells = attacks.iter().map(|a| if a.minimal_norm() { 1 } else { eps.len() }).sum::<usize>();
    Ok(n as u64 * (1 + (cells * rounds_guess(cfg)) as u64))
}

/// Target rounds per sample as known before the clean pass (the progress bar's estimate).
fn rounds_guess(cfg: &EvalConfig) -> usize {
    match &cfg.targets {
        Some(TargetMode::Top(k)) => *k,
        _ => 1,
    }
}

/// The evaluation of `attacks` (in place of `cfg.attacks`) with the rest of `cfg`, on `data`,
/// whose first sample is sample `first` of the whole dataset: random streams and given targets
/// are those of the whole dataset's samples, so that any split of a dataset into parts gives each
/// sample the result it gets in one evaluation. Reports progress but neither starts nor finishes it.
pub(crate) fn sweep(
    model: &dyn Classifier,
    data: &ImageSet,
    first: usize,
    attacks: &[&dyn Attack],
    cfg: &EvalConfig,
    progress: &dyn Progress,
    keep: usize,
) -> Result<Evaluation> {
    let started = Instant::now();
    let n = data.labels.len();
    let eps = normalize_eps(&cfg.eps)?;
    let batch = cfg.batch_size.max(1);
    let classes = model.num_classes();
    if let Some(mode) = &cfg.targets {
        mode.check(first + n, classes)?;
    }
    let device = model.device().clone();

    // Clean pass.
    let clean_start = Instant::now();
    let all: Vec<usize> = (0..n).collect();
    let mut clean_pred = Vec::with_capacity(n);
    let mut clean_logits: Vec<Vec<f32>> = Vec::new();
    let keep_logits = matches!(cfg.targets, Some(TargetMode::LeastLikely | TargetMode::Top(_)));
    let rounds_guess = rounds_guess(cfg);
    let cells_guess = attacks.iter().map(|a| if a.minimal_norm() { 1 } else { eps.len() }).sum::<usize>();
    for chunk in all.chunks(batch) {
        if progress.cancelled() {
            return Err(Error::Interrupted { done: 0, total: 0, checkpoint: None });
        }
        let x = batch_tensor(data, chunk, &device)?;
        let logits = model.logits(&x)?;
        let rows = logits.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        if let Some(j) = rows.iter().position(|r| r.iter().any(|v| !v.is_finite())) {
            return Err(Error::NonFiniteOutput { sample: first + chunk[j] });
        }
        clean_pred.extend(predictions(&logits)?);
        if keep_logits {
            clean_logits.extend(rows);
        }
        progress.advance(chunk.len() as u64, "clean");
    }
    let clean_seconds = clean_start.elapsed().as_secs_f64();
    let correct: Vec<usize> = (0..n).filter(|&i| clean_pred[i] == data.labels[i]).collect();
    let targets = cfg.targets.as_ref().map(|m| m.resolve(&data.labels, first, &clean_logits, classes, cfg.seed));
    let rounds = targets.as_ref().map_or(1, |t| t.iter().map(Vec::len).max().unwrap_or(0));
    // Progress was sized for all samples; only the clean-correct ones are attacked.
    progress.advance(((n - correct.len()) * cells_guess * rounds_guess) as u64, "clean");

    let mut records: Vec<AttackRecord> = Vec::with_capacity(attacks.len());
    for (a, &attack) in attacks.iter().enumerate() {
        let mut broken: Vec<Option<Broken>> = vec![None; n];
        let mut examples: Vec<Kept> = Vec::new();
        let mut cells = vec![CellStats::default(); eps.len()];
        let minimal = attack.minimal_norm();
        let mut radius: Vec<Option<f64>> = (0..n).map(|i| (!correct.contains(&i)).then_some(0.0)).collect();
        // A minimal-norm attack runs once, with the largest budget the bounds allow.
        let sweep: Vec<usize> = if minimal { vec![0] } else { (0..eps.len()).collect() };
        for &k in &sweep {
            let threat = if minimal {
                unbounded(cfg.norm, model.bounds(), data.per_image())?
            } else {
                ThreatModel::new(cfg.norm, eps[k], model.bounds())?
            };
            let cell_start = Instant::now();
            let mut cell = CellStats::default();
            for r in 0..rounds {
                let todo: Vec<usize> = correct
                    .iter()
                    .copied()
                    .filter(|&i| if minimal { true } else { broken[i].is_none() })
                    .filter(|&i| minimal || !cfg.cascade || !records.iter().any(|rec| rec.broken_at(i, k)))
                    .filter(|&i| targets.as_ref().is_none_or(|t| t[i].get(r).is_some_and(|&c| c != data.labels[i])))
                    .collect();
                let expected = if r < rounds_guess { correct.len() } else { 0 };
                progress.advance(expected.saturating_sub(todo.len()) as u64, attack.name());
                for chunk in todo.chunks(batch) {
                    if progress.cancelled() {
                        return Err(Error::Interrupted { done: 0, total: 0, checkpoint: None });
                    }
                    let goal = match &targets {
                        Some(t) => Goal::targeted(chunk.iter().map(|&i| t[i][r]).collect()),
                        None => Goal::untargeted(chunk.iter().map(|&i| data.labels[i]).collect()),
                    };
                    let x0 = batch_tensor(data, chunk, &device)?;
                    let ids: Vec<u64> = chunk.iter().map(|&i| (first + i) as u64).collect();
                    let stream = ((a as u64) << 32) | ((r as u64) << 20) | k as u64;
                    let out = attack.run(
                        model,
                        &AttackBatch { x0: &x0, goal: &goal, ids: &ids, seed: cfg.seed, stream },
                        &threat,
                    )?;
                    cell.cost += out.cost;
                    cell.attacked += chunk.len();
                    let (verified, rows) =
                        verify(model, attack.name(), data, chunk, &goal, &out.x_adv, &threat, &mut cell)?;
                    cell.cost.forwards += chunk.len() as u64;
                    for (j, &i) in chunk.iter().enumerate() {
                        let Some((pred, linf, l2)) = verified[j] else {
                            if out.reached[j] {
                                cell.unconfirmed += 1;
                            }
                            continue;
                        };
                        let size = match cfg.norm {
                            Norm::Linf => linf,
                            Norm::L2 => l2,
                        };
                        let at = if minimal {
                            if radius[i].is_none_or(|r| size < r) {
                                radius[i] = Some(size);
                            } else {
                                continue;
                            }
                            match eps.iter().position(|&e| size <= e * (1.0 + 1e-6)) {
                                Some(at) => at,
                                None => continue,
                            }
                        } else {
                            k
                        };
                        broken[i] =
                            Some(Broken { eps_index: at, adv_pred: pred, linf, l2, step: out.steps[j], norm: size });
                        if keep > 0 {
                            let per = data.per_image();
                            let row = rows[j * per..(j + 1) * per].to_vec();
                            if let Some(e) = examples.iter_mut().find(|e| e.sample == i) {
                                e.pixels = row;
                            } else if examples.len() < keep {
                                examples.push(Kept { sample: i, found: [k, r], pixels: row });
                            }
                        }
                    }
                    progress.advance(chunk.len() as u64, attack.name());
                }
            }
            cell.seconds = cell_start.elapsed().as_secs_f64();
            cells[k] = cell;
        }
        if minimal {
            let first = cells[0].attacked;
            for c in cells.iter_mut().skip(1) {
                c.attacked = first;
            }
        }
        records.push(AttackRecord {
            name: attack.name().to_string(),
            params: attack.params(),
            broken,
            cells,
            gradient_based: attack.needs_gradients(),
            radius: minimal.then_some(radius),
            examples: {
                examples.sort_by_key(|e| e.sample);
                examples
            },
        });
    }
    Ok(Evaluation {
        first,
        norm: cfg.norm,
        eps,
        labels: data.labels.clone(),
        clean_pred,
        targets,
        target_mode: cfg.targets.as_ref().map(TargetMode::name),
        cascade: cfg.cascade,
        attacks: records,
        clean_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The largest perturbation the bounds allow: L∞ hi − lo, L2 (hi − lo)·√dim.
pub fn unbounded(norm: Norm, bounds: Bounds, per_image: usize) -> Result<ThreatModel> {
    let range = f64::from(bounds.hi - bounds.lo);
    let eps = match norm {
        Norm::Linf => range,
        Norm::L2 => range * (per_image as f64).sqrt(),
    };
    Ok(ThreatModel::new(norm, eps, bounds)?)
}
