//! Checks of the evaluation's own numbers: every counted example within its budget, robust
//! accuracy monotone in ε.

use super::check;
use crate::eval::Evaluation;
use crate::report::{Check, Status};

/// Every counted adversarial example lies within its budget; attacks that returned points
/// outside it are named.
pub(super) fn within_budget(ev: &Evaluation) -> Check {
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
pub(super) fn eps_monotone(ev: &Evaluation) -> Check {
    const NAME: &str = "eps_monotone";
    let n = ev.samples();
    // Budget indices by value: the sweep's order is not trusted to be ascending.
    let mut order: Vec<usize> = (0..ev.eps.len()).collect();
    order.sort_by(|&a, &b| ev.eps[a].total_cmp(&ev.eps[b]));
    let curve = |f: &dyn Fn(usize, usize) -> bool| -> Vec<usize> {
        order.iter().map(|&k| (0..n).filter(|&i| f(i, k)).count()).collect()
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
        (0..n).filter(|&i| order.windows(2).any(|w| ev.robust_all(i, w[1]) && !ev.robust_all(i, w[0]))).count();
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
