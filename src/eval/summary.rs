//! The report's numbers, derived from an [`Evaluation`]: accuracies, perturbation sizes, the worst
//! case, minimal-norm radii and the notes that say how to read them.

use super::Evaluation;
use crate::report::{
    AttackResult, CurvePoint, Definitions, FirstBy, GoalKind, Meta, Perturbation, Protocol, Quantile, RadiusSummary,
    Report, Stats, Tool, WorstCase, ROBUST_ACCURACY_DEFINITION, SCHEMA_VERSION,
};

impl Report {
    /// The report of an evaluation: every number derived from it, nothing else.
    pub fn new(ev: &Evaluation, meta: Meta) -> Report {
        let n = ev.samples();
        let frac = |c: usize| if n == 0 { 0.0 } else { c as f64 / n as f64 };
        let clean_correct = (0..n).filter(|&i| ev.correct(i)).count();
        let clean_accuracy = frac(clean_correct);
        let pp = |acc: f64| (clean_accuracy - acc) * 100.0;
        let mut results = Vec::new();
        for (a, rec) in ev.attacks.iter().enumerate() {
            for (k, &eps) in ev.eps.iter().enumerate() {
                let robust = (0..n).filter(|&i| ev.robust(a, i, k)).count();
                let hits: Vec<_> = rec.broken.iter().flatten().filter(|b| b.eps_index <= k).collect();
                let perturbation = Stats::of(&mut hits.iter().map(|b| b.linf).collect::<Vec<_>>())
                    .zip(Stats::of(&mut hits.iter().map(|b| b.l2).collect::<Vec<_>>()))
                    .map(|(linf, l2)| Perturbation { linf, l2 });
                let cell = &rec.cells[k];
                results.push(AttackResult {
                    attack: rec.name.clone(),
                    params: rec.params.clone(),
                    norm: ev.norm,
                    eps,
                    robust_accuracy: frac(robust),
                    robust,
                    drop_pp: pp(frac(robust)),
                    attack_success_rate: if clean_correct == 0 {
                        0.0
                    } else {
                        hits.len() as f64 / clean_correct as f64
                    },
                    broken: hits.len(),
                    attacked: cell.attacked,
                    perturbation,
                    forward_passes: cell.cost.forwards,
                    gradient_passes: cell.cost.gradients,
                    forward_equivalents: cell.cost.forwards + 2 * cell.cost.gradients,
                    samples_per_second: if cell.seconds > 0.0 { cell.attacked as f64 / cell.seconds } else { 0.0 },
                    unconfirmed: cell.unconfirmed,
                    out_of_budget: cell.out_of_budget,
                    time_s: cell.seconds,
                });
            }
        }
        let worst_case = ev
            .eps
            .iter()
            .enumerate()
            .map(|(k, &eps)| {
                let robust = (0..n).filter(|&i| ev.robust_all(i, k)).count();
                let broken_first_by = ev
                    .attacks
                    .iter()
                    .enumerate()
                    .map(|(a, rec)| FirstBy {
                        attack: rec.name.clone(),
                        broken: (0..n).filter(|&i| ev.correct(i) && ev.first_breaker(i, k) == Some(a)).count(),
                    })
                    .collect();
                WorstCase {
                    norm: ev.norm,
                    eps,
                    robust_accuracy: frac(robust),
                    robust,
                    drop_pp: pp(frac(robust)),
                    broken_first_by,
                }
            })
            .collect();
        let mut notes = vec![
            "eps is measured in pixel space (inputs scaled to the bounds), before any normalization inside the model".to_string(),
            "eps values are swept in ascending order; a sample broken at a smaller eps counts as broken at every larger eps (the eps-balls are nested) and is not attacked again".to_string(),
            "every adversarial example was re-projected onto the eps-ball and the bounds, checked, and re-classified by the evaluator".to_string(),
            "worst_case counts a sample robust only if it resists every attack at that eps".to_string(),
        ];
        if meta.model.preprocessing != "none" {
            notes.insert(
                1,
                format!(
                    "the model applies preprocessing ({}) to the [0, 1] pixel-space input; eps and every perturbation size are measured before it, in pixel space",
                    meta.model.preprocessing
                ),
            );
        }
        if ev.targets.is_some() {
            notes.push("targeted: a sample counts as broken when it is classified as one of its targets (tried in turn); samples whose label equals their target are not attacked".into());
        }
        if ev.cascade {
            notes.push("cascade protocol: each attack ran only on the samples every earlier attack left robust at that eps; an attack's robust_accuracy is after it and all earlier attacks".into());
        }
        if ev.attacks.iter().any(|a| a.radius.is_some()) {
            notes.push("minimal-norm attacks ran once per sample; a sample counts as broken at every eps at least its smallest perturbation found".into());
        }
        let unconfirmed: usize = results.iter().map(|r| r.unconfirmed).sum();
        if unconfirmed > 0 {
            notes.push(format!("{unconfirmed} attack outputs reported as successful failed the evaluator's re-check and were not counted"));
        }
        Report {
            schema_version: SCHEMA_VERSION,
            tool: Tool { name: "gauntlet".into(), version: env!("CARGO_PKG_VERSION").into() },
            model: meta.model,
            dataset: meta.dataset,
            samples: n,
            seed: meta.seed,
            norm: ev.norm,
            bounds: meta.bounds,
            goal: if ev.targets.is_some() { GoalKind::Targeted } else { GoalKind::Untargeted },
            target_mode: ev.target_mode.clone(),
            protocol: if ev.cascade { Protocol::Cascade } else { Protocol::Independent },
            eps: ev.eps.clone(),
            clean_accuracy,
            clean_correct,
            results,
            worst_case,
            minimal_norm: radius_summaries(ev),
            certified: Vec::new(),
            checks: Vec::new(),
            definitions: Definitions {
                robust_accuracy: ROBUST_ACCURACY_DEFINITION.into(),
                eps: format!("maximum {} norm of the perturbation, in pixel units", ev.norm.name()),
            },
            notes,
            run: meta.run,
            provenance: None,
            gate: None,
        }
    }
}

/// Quantiles and the accuracy curve of every minimal-norm attack's radii.
fn radius_summaries(ev: &Evaluation) -> Vec<RadiusSummary> {
    let n = ev.samples();
    let correct: Vec<usize> = (0..n).filter(|&i| ev.correct(i)).collect();
    ev.attacks
        .iter()
        .filter_map(|rec| {
            let radius = rec.radius.as_ref()?;
            // Sorted radii of the clean-correct samples, +∞ where none was found.
            let mut r: Vec<f64> = correct.iter().map(|&i| radius[i].unwrap_or(f64::INFINITY)).collect();
            r.sort_by(|a, b| a.total_cmp(b));
            let found: Vec<f64> = r.iter().copied().filter(|v| v.is_finite()).collect();
            let quantiles = [0.1, 0.25, 0.5, 0.75, 0.9]
                .iter()
                .map(|&q| Quantile { q, radius: quantile(&r, q).filter(|v| v.is_finite()) })
                .collect();
            let top = found.last().copied().unwrap_or(0.0).max(ev.eps.last().copied().unwrap_or(0.0));
            let mut grid: Vec<f64> = (0..=20).map(|j| top * j as f64 / 20.0).collect();
            grid.extend(ev.eps.iter().copied());
            grid.sort_by(|a, b| a.total_cmp(b));
            grid.dedup();
            let curve = grid
                .iter()
                .map(|&e| CurvePoint {
                    eps: e,
                    robust_accuracy: if n == 0 {
                        0.0
                    } else {
                        r.iter().filter(|&&v| v > e * (1.0 + 1e-6)).count() as f64 / n as f64
                    },
                })
                .collect();
            Some(RadiusSummary {
                attack: rec.name.clone(),
                norm: ev.norm,
                samples: correct.len(),
                found: found.len(),
                quantiles,
                mean_found: (!found.is_empty()).then(|| found.iter().sum::<f64>() / found.len() as f64),
                curve,
            })
        })
        .collect()
}

/// The q-quantile of sorted values (linear interpolation between neighbours).
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    if sorted[hi].is_infinite() {
        return Some(sorted[hi]);
    }
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}
