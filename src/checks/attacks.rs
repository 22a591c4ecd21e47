//! Checks that run more attacks: iterative at least as strong as one step, an unbounded budget
//! reaches chance level, more iterations change little, noise and gradient-free attacks do not
//! beat the gradient attacks.

use candle_core::{Device, Tensor};
use gauntlet_attacks::{Attack, AttackKind, Norm, ThreatModel};
use gauntlet_models::predictions;

use super::{check, rules, Ctx};
use crate::report::format::{fmt_eps, pct};
use crate::report::{Check, Status};
use crate::Result;

/// An iterative attack must be at least as strong as a single step of the same gradient.
pub(super) fn iterative_vs_single_step(ctx: &Ctx<'_>, subset: &[usize]) -> Result<Check> {
    const NAME: &str = "iterative_vs_single_step";
    let main = ctx.ev;
    let single = ctx.of_kind(AttackKind::SingleStep).first().copied();
    let iter = ctx.of_kind(AttackKind::Iterative);
    let (ev, s, its, scope) = match single {
        Some(s) if !iter.is_empty() && !main.cascade => (None, s, iter, format!("all {} samples", main.samples())),
        _ => {
            let (fgsm, pgd) = (ctx.registry.create("fgsm")?, ctx.registry.create("pgd")?);
            let ev = ctx.evaluate(subset, &[fgsm.as_ref(), pgd.as_ref()], main.norm, &main.eps)?;
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
pub(super) fn unbounded_budget(ctx: &Ctx<'_>, subset: &[usize]) -> Result<Check> {
    const NAME: &str = "unbounded_budget";
    if subset.is_empty() {
        return Ok(check(NAME, Status::Pass, "no clean-correct samples to attack".into()));
    }
    // The evaluation's own first iterative gradient attack, or PGD.
    let pgd;
    let attack: &dyn Attack = match ctx.of_kind(AttackKind::Iterative).first() {
        Some(&a) => ctx.cfg.attacks[a].as_ref(),
        None => {
            pgd = ctx.registry.create("pgd")?;
            pgd.as_ref()
        }
    };
    let spec = attack.name();
    let bounds = ctx.model.bounds();
    let eps = 0.5 * f64::from(bounds.hi - bounds.lo);
    let ev = match ctx.evaluate(subset, &[attack], Norm::Linf, &[eps]) {
        Ok(ev) => ev,
        Err(e) => return Ok(check(NAME, Status::Fail, format!("{spec} at L∞ ε {eps} could not run: {e}"))),
    };
    let n = ev.samples();
    let robust = (0..n).filter(|&i| ev.robust(0, i, 0)).count();
    let acc = robust as f64 / n as f64;
    let chance = 1.0 / ctx.model.num_classes() as f64;
    let detail = format!(
        "{} at L∞ ε {eps} on {n} clean-correct samples: robust accuracy {} ({robust} samples), chance level {}",
        spec,
        pct(acc),
        pct(chance)
    );
    Ok(if acc > chance {
        check(NAME, Status::Fail, format!("{detail}: the attack cannot break the model even with an unbounded budget"))
    } else {
        check(NAME, Status::Pass, detail)
    })
}

/// Doubling the iterations and adding a restart must change robust accuracy by little.
pub(super) fn more_iterations(ctx: &Ctx<'_>) -> Result<Check> {
    const NAME: &str = "more_iterations";
    let ev = ctx.ev;
    let n = ev.samples();
    let k = ctx.check_eps();
    // The strongest attack at that ε that has iterations to double.
    let candidates: Vec<(usize, Box<dyn Attack>)> = (0..ev.attacks.len())
        .filter(|&a| !ctx.cfg.attacks[a].minimal_norm())
        .filter_map(|a| ctx.cfg.attacks[a].strengthened().map(|s| (a, s)))
        .collect();
    let standalone = |a: usize| (0..n).filter(|&i| ev.correct(i) && !ev.broken_by(a, i, k)).count();
    let Some((_, stronger)) = candidates.iter().min_by_key(|(a, _)| standalone(*a)) else {
        return Ok(check(NAME, Status::Pass, "no iterative attack with steps, queries or restarts ran".into()));
    };
    let robust: Vec<usize> = (0..n).filter(|&i| ev.robust_all(i, k)).collect();
    let subset: Vec<usize> = robust.iter().copied().take(ctx.samples).collect();
    if subset.is_empty() {
        return Ok(check(NAME, Status::Pass, format!("no sample is robust at ε {}", fmt_eps(ev.eps[k]))));
    }
    let spec = format!("{}:{}", stronger.name(), stronger.params());
    let rerun = ctx.evaluate(&subset, &[stronger.as_ref()], ev.norm, &[ev.eps[k]])?;
    let newly = (0..subset.len()).filter(|&j| rerun.broken_by(0, j, 0)).count();
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
pub(super) fn gradient_free_vs_gradient(ctx: &Ctx<'_>) -> Result<Check> {
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
    let data = ctx.data.select(idx)?;
    let per = data.per_image();
    let [c, h, w] = data.shape;
    let mut broken = vec![false; idx.len()];
    for d in 0..rules::NOISE_DRAWS {
        for (chunk_no, chunk) in idx.chunks(ctx.cfg.batch_size.max(1)).enumerate() {
            let mut v = Vec::with_capacity(chunk.len() * per);
            let offset = chunk_no * ctx.cfg.batch_size.max(1);
            for (j, &i) in chunk.iter().enumerate() {
                let key = gauntlet_attacks::NoiseKey { seed: ctx.cfg.seed, stream: u64::MAX - 1, restart: d as u64 };
                let mut rng = key.rng(i as u64);
                let x0 = data.image(offset + j);
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
            for (j, &label) in data.labels[offset..offset + chunk.len()].iter().enumerate() {
                if preds[j] != label {
                    broken[offset + j] = true;
                }
            }
        }
    }
    Ok(broken.iter().filter(|&&b| b).count())
}
