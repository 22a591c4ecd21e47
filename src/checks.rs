//! Integrity checks: signs that an evaluation overstates robustness (Carlini et al. 2019, "On
//! Evaluating Adversarial Robustness"; Athalye et al. 2018, "Obfuscated Gradients Give a False Sense
//! of Security"). Each check gives PASS, WARN or FAIL with the numbers behind it; the rules and
//! their sources are in `docs/CHECKS.md`.
//!
//! Checks that need more attacks run them on a subset of the data (the first `samples`
//! clean-correct samples, or the first `samples` still-robust ones), through the same evaluator
//! that produced the main numbers, with the seed shifted so that random starts differ.

use candle_core::{DType, Device, Tensor};
use gauntlet_attacks::{Norm, Registry, ThreatModel};
use gauntlet_datasets::ImageSet;
use gauntlet_models::{predictions, Classifier, Goal, Loss};

use crate::eval::{self, batch_tensor, EvalConfig, Evaluation, Silent, TargetMode};
use crate::report::{fmt_eps, Check, Status};
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
    data: &ImageSet,
    cfg: &EvalConfig,
    ev: &Evaluation,
    registry: &Registry,
    samples: usize,
) -> Result<Vec<Check>> {
    let ctx = Ctx { model, data, cfg, ev, registry, samples: samples.max(1) };
    let correct: Vec<usize> = (0..ev.samples()).filter(|&i| ev.correct(i)).collect();
    let subset: Vec<usize> = correct.iter().copied().take(ctx.samples).collect();
    let mut checks =
        vec![outputs_are_logits(&ctx, &subset)?, gradients(&ctx, &subset)?, within_budget(ev), eps_monotone(ev)];
    checks.push(iterative_vs_single_step(&ctx, &subset)?);
    checks.push(unbounded_budget(&ctx, &subset)?);
    checks.push(more_iterations(&ctx)?);
    checks.push(gradient_free_vs_gradient(&ctx)?);
    Ok(checks)
}

struct Ctx<'a> {
    model: &'a dyn Classifier,
    data: &'a ImageSet,
    cfg: &'a EvalConfig,
    ev: &'a Evaluation,
    registry: &'a Registry,
    samples: usize,
}

impl Ctx<'_> {
    /// Runs `attacks` (registry specs) on the samples `idx` through the evaluator.
    fn evaluate(&self, idx: &[usize], attacks: &[String], norm: Norm, eps: &[f64]) -> Result<Evaluation> {
        let attacks = attacks.iter().map(|s| self.registry.create(s)).collect::<std::result::Result<Vec<_>, _>>()?;
        let targets = match &self.cfg.targets {
            Some(TargetMode::Given(t)) => Some(TargetMode::Given(idx.iter().map(|&i| t[i]).collect())),
            other => other.clone(),
        };
        let cfg = EvalConfig {
            attacks,
            norm,
            eps: eps.to_vec(),
            seed: self.cfg.seed.wrapping_add(0x5eed),
            batch_size: self.cfg.batch_size,
            targets,
            cascade: false,
        };
        eval::evaluate(self.model, &self.data.select(idx), &cfg, &Silent)
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

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn logits_rows(ctx: &Ctx<'_>, idx: &[usize]) -> Result<Vec<Vec<f32>>> {
    let mut rows = Vec::with_capacity(idx.len());
    for chunk in idx.chunks(ctx.cfg.batch_size.max(1)) {
        let x = batch_tensor(ctx.data, chunk, ctx.model.device())?;
        rows.extend(ctx.model.logits(&x)?.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.to_vec2::<f32>()?);
    }
    Ok(rows)
}

/// Softmax outputs make cross-entropy flat where the model is confident: the attack sees no slope.
fn outputs_are_logits(ctx: &Ctx<'_>, idx: &[usize]) -> Result<Check> {
    const NAME: &str = "outputs_are_logits";
    let rows = logits_rows(ctx, idx)?;
    if rows.is_empty() {
        return Ok(check(NAME, Status::Pass, "no clean-correct samples to look at".into()));
    }
    if rows.iter().flatten().any(|v| !v.is_finite()) {
        return Ok(check(NAME, Status::Fail, "the model's outputs contain NaN or infinite values".into()));
    }
    let prob = rows
        .iter()
        .filter(|r| r.iter().all(|&v| (-1e-6..=1.0 + 1e-6).contains(&v)) && (r.iter().sum::<f32>() - 1.0).abs() < 1e-3)
        .count();
    let logprob = rows
        .iter()
        .filter(|r| {
            let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = m + r.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
            r.iter().all(|&v| v <= 1e-6) && lse.abs() < 1e-3
        })
        .count();
    let (lo, hi) = rows.iter().flatten().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let n = rows.len();
    Ok(if prob * 10 >= n * 9 {
        check(
            NAME,
            Status::Fail,
            format!(
                "{prob} of {n} output rows are probabilities (in [0, 1], summing to 1): the model ends in a softmax, \
                 which flattens the loss and masks gradients; evaluate the logits (remove the final softmax)"
            ),
        )
    } else if logprob * 10 >= n * 9 {
        check(
            NAME,
            Status::Pass,
            format!("outputs are log-probabilities ({logprob} of {n} rows), equivalent to logits for the losses used"),
        )
    } else {
        check(
            NAME,
            Status::Pass,
            format!("outputs are logits: {prob} of {n} rows look like probabilities; range [{lo:.3}, {hi:.3}]"),
        )
    })
}

/// Gradients present, finite, non-zero and deterministic.
fn gradients(ctx: &Ctx<'_>, idx: &[usize]) -> Result<Check> {
    const NAME: &str = "gradients";
    if idx.is_empty() {
        return Ok(check(NAME, Status::Pass, "no clean-correct samples to look at".into()));
    }
    let chunk = &idx[..idx.len().min(ctx.cfg.batch_size.max(1))];
    let x = batch_tensor(ctx.data, chunk, ctx.model.device())?;
    let goal = Goal::untargeted(chunk.iter().map(|&i| ctx.data.labels[i]).collect());
    type Rows = Vec<Vec<f32>>;
    let pass = |x: &Tensor| -> std::result::Result<(Rows, Rows), String> {
        let lg = ctx.model.loss_and_grad(x, &goal, Loss::CrossEntropy).map_err(|e| e.to_string())?;
        let rows = |t: &Tensor| -> std::result::Result<Vec<Vec<f32>>, String> {
            t.to_device(&Device::Cpu)
                .and_then(|t| t.to_dtype(DType::F32))
                .and_then(|t| t.flatten_from(1))
                .and_then(|t| t.to_vec2::<f32>())
                .map_err(|e| e.to_string())
        };
        Ok((rows(&lg.logits)?, rows(&lg.grad)?))
    };
    let (first, second) = match (pass(&x), pass(&x)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            return Ok(check(
                NAME,
                Status::Fail,
                format!(
                    "no input gradient ({e}); gradient attacks cannot run, use a gradient-free attack such as square"
                ),
            ))
        }
    };
    let n = chunk.len();
    let nonfinite = first.1.iter().filter(|g| g.iter().any(|v| !v.is_finite())).count();
    let zero = first.1.iter().filter(|g| g.iter().all(|&v| v == 0.0)).count();
    let max_rel = |a: &[Vec<f32>], b: &[Vec<f32>]| -> f64 {
        let scale = a.iter().flatten().fold(0f64, |m, &v| m.max(f64::from(v.abs()))).max(1e-30);
        a.iter().flatten().zip(b.iter().flatten()).fold(0f64, |m, (&u, &v)| m.max(f64::from((u - v).abs()))) / scale
    };
    let plain = logits_rows(ctx, chunk)?;
    let logit_diff = max_rel(&first.0, &second.0).max(max_rel(&first.0, &plain));
    let grad_diff = max_rel(&first.1, &second.1);
    let mean_norm =
        first.1.iter().map(|g| g.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt()).sum::<f64>() / n as f64;
    let numbers = format!(
        "{n} samples: {zero} with an all-zero gradient, {nonfinite} non-finite, mean ‖∇‖₂ {mean_norm:.3e}; \
         same input twice: logits differ by {logit_diff:.1e}, gradients by {grad_diff:.1e} (relative)"
    );
    let status = if nonfinite > 0 || zero as f64 >= rules::ZERO_GRADIENT_FAIL * n as f64 || logit_diff > 1e-5 {
        Status::Fail
    } else if zero > 0 || grad_diff > 1e-4 {
        Status::Warn
    } else {
        Status::Pass
    };
    Ok(check(NAME, status, numbers))
}

/// Every counted adversarial example lies within its budget; attacks that returned points
/// outside it are named.
fn within_budget(ev: &Evaluation) -> Check {
    const NAME: &str = "within_budget";
    let mut counted = 0usize;
    let mut worst = 0f64;
    for rec in &ev.attacks {
        for b in rec.broken.iter().flatten() {
            counted += 1;
            worst = worst.max(b.norm / ev.eps[b.eps_index]);
        }
    }
    let offenders: Vec<String> = ev
        .attacks
        .iter()
        .filter_map(|rec| {
            let out: usize = rec.cells.iter().map(|c| c.out_of_budget).sum();
            let ratio = rec.cells.iter().map(|c| c.max_ratio).fold(0f64, f64::max);
            (out > 0).then(|| {
                format!("{} returned {out} points outside the ε-ball or bounds (up to {ratio:.3}·ε)", rec.name)
            })
        })
        .collect();
    let detail = format!(
        "{counted} adversarial examples re-projected and re-classified by the evaluator; largest ‖δ‖/ε {worst:.6}"
    );
    if worst > 1.0 + 1e-6 {
        check(NAME, Status::Fail, format!("{detail}: a counted perturbation exceeds its budget"))
    } else if !offenders.is_empty() {
        check(
            NAME,
            Status::Warn,
            format!("{detail}; {}; they were projected before being counted", offenders.join("; ")),
        )
    } else {
        check(NAME, Status::Pass, detail)
    }
}

/// Robust accuracy falls with ε, per attack and per sample.
fn eps_monotone(ev: &Evaluation) -> Check {
    const NAME: &str = "eps_monotone";
    let n = ev.samples();
    let curve = |f: &dyn Fn(usize, usize) -> bool| -> Vec<usize> {
        (0..ev.eps.len()).map(|k| (0..n).filter(|&i| f(i, k)).count()).collect()
    };
    let mut rising = Vec::new();
    let mut shown = Vec::new();
    for (a, rec) in ev.attacks.iter().enumerate() {
        let c = curve(&|i, k| ev.robust(a, i, k));
        if c.windows(2).any(|w| w[1] > w[0]) {
            rising.push(rec.name.clone());
        }
        shown.push(format!("{} {}", rec.name, c.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("→")));
    }
    // Per sample: robust at a larger ε implies robust at every smaller one.
    let per_sample =
        (0..n).filter(|&i| (1..ev.eps.len()).any(|k| ev.robust_all(i, k) && !ev.robust_all(i, k - 1))).count();
    let detail = format!(
        "robust samples by ε: {}; samples robust at some ε but broken at a smaller one: {per_sample}",
        shown.join(", ")
    );
    if rising.is_empty() && per_sample == 0 {
        check(NAME, Status::Pass, detail)
    } else {
        check(NAME, Status::Fail, format!("{detail}; rising: {}", rising.join(", ")))
    }
}

fn is_single_step(name: &str) -> bool {
    name == "fgsm"
}

/// Indices of iterative gradient attacks (not single-step, not minimal-norm) in the evaluation.
fn iterative(ev: &Evaluation) -> Vec<usize> {
    (0..ev.attacks.len())
        .filter(|&a| {
            ev.attacks[a].gradient_based && !is_single_step(&ev.attacks[a].name) && ev.attacks[a].radius.is_none()
        })
        .collect()
}

/// An iterative attack must be at least as strong as a single step of the same gradient.
fn iterative_vs_single_step(ctx: &Ctx<'_>, subset: &[usize]) -> Result<Check> {
    const NAME: &str = "iterative_vs_single_step";
    let main = ctx.ev;
    let single = main.attacks.iter().position(|r| is_single_step(&r.name));
    let iter = iterative(main);
    let (ev, s, its, scope) = match single {
        Some(s) if !iter.is_empty() && !main.cascade => (None, s, iter, format!("all {} samples", main.samples())),
        _ => {
            let ev = ctx.evaluate(subset, &["fgsm".into(), "pgd".into()], main.norm, &main.eps)?;
            (Some(ev), 0, vec![1], format!("fgsm and pgd on {} clean-correct samples", subset.len()))
        }
    };
    let ev = ev.as_ref().unwrap_or(main);
    let n = ev.samples();
    let correct = (0..n).filter(|&i| ev.correct(i)).count().max(1);
    let mut worst_gap = f64::NEG_INFINITY;
    let mut single_only = 0usize;
    let mut parts = Vec::new();
    for (k, &e) in ev.eps.iter().enumerate() {
        let acc = |a: usize| (0..n).filter(|&i| ev.correct(i) && !ev.broken_by(a, i, k)).count() as f64 / n as f64;
        let best = its.iter().map(|&a| acc(a)).fold(f64::INFINITY, f64::min);
        worst_gap = worst_gap.max(best - acc(s));
        let only = (0..n).filter(|&i| ev.broken_by(s, i, k) && its.iter().all(|&a| !ev.broken_by(a, i, k))).count();
        single_only = single_only.max(only);
        parts.push(format!(
            "ε {}: single-step {} vs iterative {} ({only} broken by the single step only)",
            fmt_eps(e),
            pct(acc(s)),
            pct(best)
        ));
    }
    let detail = format!("{scope}; {}", parts.join("; "));
    Ok(if worst_gap > rules::ITERATIVE_FAIL {
        check(NAME, Status::Fail, format!("{detail}: the iterative attack is weaker than one step"))
    } else if worst_gap > 0.0 || single_only as f64 > rules::SINGLE_ONLY_WARN * correct as f64 {
        check(NAME, Status::Warn, detail)
    } else {
        check(NAME, Status::Pass, detail)
    })
}

/// With L∞ ε = half the pixel range any image can be turned grey: robust accuracy must reach
/// chance level.
fn unbounded_budget(ctx: &Ctx<'_>, subset: &[usize]) -> Result<Check> {
    const NAME: &str = "unbounded_budget";
    let main = ctx.ev;
    if subset.is_empty() {
        return Ok(check(NAME, Status::Pass, "no clean-correct samples to attack".into()));
    }
    // The evaluation's own first iterative gradient attack, or PGD.
    let spec = iterative(main)
        .first()
        .map(|&a| format!("{}:{}", main.attacks[a].name, main.attacks[a].params))
        .unwrap_or_else(|| "pgd".into());
    let bounds = ctx.model.bounds();
    let eps = 0.5 * f64::from(bounds.hi - bounds.lo);
    let ev = match ctx.evaluate(subset, std::slice::from_ref(&spec), Norm::Linf, &[eps]) {
        Ok(ev) => ev,
        Err(e) => return Ok(check(NAME, Status::Fail, format!("{spec} at L∞ ε {eps} could not run: {e}"))),
    };
    let n = ev.samples();
    let robust = (0..n).filter(|&i| ev.robust(0, i, 0)).count();
    let acc = robust as f64 / n as f64;
    let chance = 1.0 / ctx.model.num_classes() as f64;
    let detail = format!(
        "{} at L∞ ε {eps} on {n} clean-correct samples: robust accuracy {} ({robust} samples), chance level {}",
        spec.split(':').next().unwrap_or(&spec),
        pct(acc),
        pct(chance)
    );
    Ok(if acc > chance {
        check(NAME, Status::Fail, format!("{detail}: the attack cannot break the model even with an unbounded budget"))
    } else {
        check(NAME, Status::Pass, detail)
    })
}

/// The spec of `name:params` with twice the iterations (steps, queries) and one more restart;
/// `None` when the parameters have neither.
fn strengthened(name: &str, params: &str) -> Option<String> {
    let mut changed = false;
    let parts: Vec<String> = params
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k @ ("steps" | "queries"), v)) => match v.parse::<usize>() {
                Ok(v) => {
                    changed = true;
                    format!("{k}={}", 2 * v)
                }
                Err(_) => p.to_string(),
            },
            Some((k @ "restarts", v)) => match v.parse::<usize>() {
                Ok(v) => {
                    changed = true;
                    format!("{k}={}", v + 1)
                }
                Err(_) => p.to_string(),
            },
            // The step size follows the number of steps where it is relative to it.
            _ => p.to_string(),
        })
        .collect();
    changed.then(|| format!("{name}:{}", parts.join(",")))
}

/// Doubling the iterations and adding a restart must change robust accuracy by little.
fn more_iterations(ctx: &Ctx<'_>) -> Result<Check> {
    const NAME: &str = "more_iterations";
    let ev = ctx.ev;
    let n = ev.samples();
    let k = ctx.check_eps();
    // The strongest attack at that ε that has iterations to double.
    let candidates: Vec<(usize, String)> = (0..ev.attacks.len())
        .filter(|&a| ev.attacks[a].radius.is_none())
        .filter_map(|a| strengthened(&ev.attacks[a].name, &ev.attacks[a].params).map(|s| (a, s)))
        .collect();
    let standalone = |a: usize| (0..n).filter(|&i| ev.correct(i) && !ev.broken_by(a, i, k)).count();
    let Some((_, spec)) = candidates.iter().min_by_key(|(a, _)| standalone(*a)) else {
        return Ok(check(NAME, Status::Pass, "no iterative attack with steps, queries or restarts ran".into()));
    };
    let robust: Vec<usize> = (0..n).filter(|&i| ev.robust_all(i, k)).collect();
    let subset: Vec<usize> = robust.iter().copied().take(ctx.samples).collect();
    if subset.is_empty() {
        return Ok(check(NAME, Status::Pass, format!("no sample is robust at ε {}", fmt_eps(ev.eps[k]))));
    }
    let stronger = ctx.evaluate(&subset, std::slice::from_ref(spec), ev.norm, &[ev.eps[k]])?;
    let newly = (0..subset.len()).filter(|&j| stronger.broken_by(0, j, 0)).count();
    // Extrapolated to all robust samples when only a subset was re-attacked.
    let change = newly as f64 / subset.len() as f64 * robust.len() as f64 / n.max(1) as f64;
    let detail = format!(
        "{spec} at ε {} on {} of the {} samples robust to every attack: {newly} more broken, robust accuracy {} → {} (−{:.2} pp)",
        fmt_eps(ev.eps[k]),
        subset.len(),
        robust.len(),
        pct(robust.len() as f64 / n as f64),
        pct(robust.len() as f64 / n as f64 - change),
        change * 100.0
    );
    Ok(if newly <= 1 {
        check(NAME, Status::Pass, detail)
    } else if change > rules::MORE_ITERATIONS_FAIL {
        check(NAME, Status::Fail, format!("{detail}: the attacks have not converged"))
    } else if change > rules::MORE_ITERATIONS_WARN {
        check(NAME, Status::Warn, detail)
    } else {
        check(NAME, Status::Pass, detail)
    })
}

/// Random noise and gradient-free attacks must not break samples the gradient attacks left robust.
fn gradient_free_vs_gradient(ctx: &Ctx<'_>) -> Result<Check> {
    const NAME: &str = "gradient_free_vs_gradient";
    let ev = ctx.ev;
    let n = ev.samples();
    let correct = (0..n).filter(|&i| ev.correct(i)).count();
    let grad: Vec<usize> = (0..ev.attacks.len()).filter(|&a| ev.attacks[a].gradient_based).collect();
    let free: Vec<usize> = (0..ev.attacks.len()).filter(|&a| !ev.attacks[a].gradient_based).collect();
    if grad.is_empty() {
        return Ok(check(NAME, Status::Pass, "no gradient attack ran".into()));
    }
    let grad_robust = |i: usize, k: usize| ev.correct(i) && grad.iter().all(|&a| !ev.broken_by(a, i, k));
    let mut worst = 0usize;
    let mut parts = Vec::new();
    let mut ks = vec![ctx.check_eps(), ev.eps.len() - 1];
    ks.dedup();
    for k in 0..ev.eps.len() {
        let by_free = (0..n).filter(|&i| grad_robust(i, k) && free.iter().any(|&a| ev.broken_by(a, i, k))).count();
        let mut by_noise = 0;
        let mut tried = 0;
        if ks.contains(&k) {
            let idx: Vec<usize> = (0..n).filter(|&i| grad_robust(i, k)).take(ctx.samples).collect();
            tried = idx.len();
            by_noise = noise_breaks(ctx, &idx, ev.eps[k])?;
        }
        worst = worst.max(by_free + by_noise);
        if !free.is_empty() || ks.contains(&k) {
            let mut p = format!("ε {}:", fmt_eps(ev.eps[k]));
            if !free.is_empty() {
                p += &format!(" {by_free} broken only by gradient-free attacks");
            }
            if ks.contains(&k) {
                if !free.is_empty() {
                    p += ",";
                }
                p += &format!(" {by_noise} of {tried} broken by random noise ({} draws)", rules::NOISE_DRAWS);
            }
            parts.push(p);
        }
    }
    let detail = format!("samples robust to every gradient attack — {}", parts.join("; "));
    let tol = |f: f64| (f * correct as f64).max(1.0);
    Ok(if worst as f64 > tol(rules::GRADIENT_FREE_FAIL) {
        check(NAME, Status::Fail, format!("{detail}: the gradient attacks are blocked (masked gradients?)"))
    } else if worst as f64 > tol(rules::GRADIENT_FREE_WARN) {
        check(NAME, Status::Warn, detail)
    } else {
        check(NAME, Status::Pass, detail)
    })
}

/// How many of the samples `idx` some random point of the ε-ball misclassifies (L∞: random
/// corners of the cube; L2: random points on the sphere).
fn noise_breaks(ctx: &Ctx<'_>, idx: &[usize], eps: f64) -> Result<usize> {
    use rand::Rng;
    let threat = ThreatModel::new(ctx.ev.norm, eps, ctx.model.bounds())?;
    let per = ctx.data.per_image();
    let [c, h, w] = ctx.data.shape;
    let mut broken = vec![false; idx.len()];
    for d in 0..rules::NOISE_DRAWS {
        for (chunk_no, chunk) in idx.chunks(ctx.cfg.batch_size.max(1)).enumerate() {
            let mut v = Vec::with_capacity(chunk.len() * per);
            for &i in chunk {
                let key = gauntlet_attacks::NoiseKey { seed: ctx.cfg.seed, stream: u64::MAX - 1, restart: d as u64 };
                let mut rng = key.rng(i as u64);
                let x0 = ctx.data.image(i);
                let mut row: Vec<f32> = match threat.norm {
                    Norm::Linf => {
                        x0.iter().map(|&x| x + if rng.random::<bool>() { eps as f32 } else { -eps as f32 }).collect()
                    }
                    Norm::L2 => {
                        let dir: Vec<f64> = (0..per).map(|_| rng.random::<f64>() - 0.5).collect();
                        let len = dir.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
                        x0.iter().zip(&dir).map(|(&x, &u)| x + (u / len * eps) as f32).collect()
                    }
                };
                threat.project_exact(x0, &mut row);
                v.extend(row);
            }
            let x = Tensor::from_vec(v, (chunk.len(), c, h, w), &Device::Cpu)?.to_device(ctx.model.device())?;
            let preds = predictions(&ctx.model.logits(&x)?)?;
            let offset = chunk_no * ctx.cfg.batch_size.max(1);
            for (j, &i) in chunk.iter().enumerate() {
                if preds[j] != ctx.data.labels[i] {
                    broken[offset + j] = true;
                }
            }
        }
    }
    Ok(broken.iter().filter(|&&b| b).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strengthening_doubles_iterations_and_adds_a_restart() {
        assert_eq!(
            strengthened("pgd", "steps=40,rel_step=0.0625,restarts=1,random_start=true,loss=ce").as_deref(),
            Some("pgd:steps=80,rel_step=0.0625,restarts=2,random_start=true,loss=ce")
        );
        assert_eq!(
            strengthened("square", "queries=5000,p_init=0.8").as_deref(),
            Some("square:queries=10000,p_init=0.8")
        );
        assert_eq!(strengthened("fgsm", "loss=ce"), None);
    }
}
