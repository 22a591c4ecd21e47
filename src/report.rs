//! The report: derived from an [`Evaluation`], rendered as a table or as versioned JSON
//! (schema in `docs/REPORT.md`).

use serde::{Deserialize, Serialize};

use crate::eval::Evaluation;

/// Bumped on any incompatible change of the JSON layout.
pub const SCHEMA_VERSION: u32 = 1;

pub const ROBUST_ACCURACY_DEFINITION: &str =
    "robust_accuracy = samples classified correctly and not broken by the attack at this eps (or any smaller eps), divided by all samples (AutoAttack's definition)";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub schema_version: u32,
    pub tool: Tool,
    pub model: ModelInfo,
    pub dataset: DatasetInfo,
    pub samples: usize,
    pub seed: u64,
    pub norm: String,
    pub bounds: [f32; 2],
    /// `untargeted` or `targeted`.
    pub goal: String,
    pub eps: Vec<f64>,
    pub clean_accuracy: f64,
    pub clean_correct: usize,
    pub results: Vec<AttackResult>,
    pub worst_case: Vec<WorstCase>,
    pub definitions: Definitions,
    pub notes: Vec<String>,
    /// How the run was executed; varies between runs and machines, unlike everything above.
    pub run: RunInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub source: String,
    pub input: [usize; 3],
    pub classes: usize,
    pub parameters: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatasetInfo {
    pub source: String,
    pub samples: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttackResult {
    /// The attack's name as given on the command line.
    pub attack: String,
    pub params: String,
    pub norm: String,
    pub eps: f64,
    pub robust_accuracy: f64,
    pub robust: usize,
    /// Clean accuracy minus robust accuracy, in percentage points.
    pub drop_pp: f64,
    /// Broken samples over clean-correct samples.
    pub attack_success_rate: f64,
    /// Samples broken at this eps or a smaller one.
    pub broken: usize,
    /// Samples the attack was run on at this eps (clean-correct and not broken at a smaller eps).
    pub attacked: usize,
    /// Sizes of the perturbations that succeeded (all broken samples up to this eps); null if none.
    pub perturbation: Option<Perturbation>,
    pub forward_passes: u64,
    pub gradient_passes: u64,
    /// `forward_passes + 2 × gradient_passes`: the work in units of one forward pass (an
    /// input-gradient pass costs about a forward and a backward of the same size).
    pub forward_equivalents: u64,
    /// Samples attacked at this eps per second of wall time.
    pub samples_per_second: f64,
    /// Attack outputs the attack reported as successful that failed the evaluator's re-check.
    pub unconfirmed: usize,
    pub time_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Perturbation {
    pub linf: Stats,
    pub l2: Stats,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub mean: f64,
    pub median: f64,
    pub max: f64,
}

impl Stats {
    fn of(values: &mut [f64]) -> Option<Stats> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(|a, b| a.total_cmp(b));
        let n = values.len();
        let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 };
        Some(Stats { mean: values.iter().sum::<f64>() / n as f64, median, max: values[n - 1] })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorstCase {
    pub norm: String,
    pub eps: f64,
    pub robust_accuracy: f64,
    pub robust: usize,
    pub drop_pp: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Definitions {
    pub robust_accuracy: String,
    pub eps: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    pub device: String,
    pub threads: usize,
    pub batch_size: usize,
    pub time_s: f64,
    pub clean_time_s: f64,
}

/// Where the numbers came from, for the report header.
#[derive(Debug, Clone)]
pub struct Meta {
    pub model: ModelInfo,
    pub dataset: DatasetInfo,
    pub seed: u64,
    pub bounds: [f32; 2],
    pub run: RunInfo,
}

impl Report {
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
                    norm: ev.norm.name().into(),
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
                WorstCase {
                    norm: ev.norm.name().into(),
                    eps,
                    robust_accuracy: frac(robust),
                    robust,
                    drop_pp: pp(frac(robust)),
                }
            })
            .collect();
        let mut notes = vec![
            "eps is measured in pixel space (inputs scaled to the bounds), before any normalization inside the model".to_string(),
            "eps values are swept in ascending order; a sample broken at a smaller eps counts as broken at every larger eps (the eps-balls are nested) and is not attacked again".to_string(),
            "every adversarial example was re-projected onto the eps-ball and the bounds, checked, and re-classified by the evaluator".to_string(),
            "worst_case counts a sample robust only if it resists every attack at that eps".to_string(),
        ];
        if ev.targets.is_some() {
            notes.push("targeted: a sample counts as broken when it is classified as its target; samples whose label equals their target are not attacked".into());
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
            norm: ev.norm.name().into(),
            bounds: meta.bounds,
            goal: if ev.targets.is_some() { "targeted" } else { "untargeted" }.into(),
            eps: ev.eps.clone(),
            clean_accuracy,
            clean_correct,
            results,
            worst_case,
            definitions: Definitions {
                robust_accuracy: ROBUST_ACCURACY_DEFINITION.into(),
                eps: format!("maximum {} norm of the perturbation, in pixel units", ev.norm.name()),
            },
            notes,
            run: meta.run,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes") + "\n"
    }

    /// The human-readable table.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let pct = |v: f64| format!("{:.2}%", v * 100.0);
        s += &format!(
            "model {} ({} parameters) | data {} ({} samples) | seed {}\n",
            self.model.source, self.model.parameters, self.dataset.source, self.samples, self.seed
        );
        s += &format!("clean accuracy: {} ({}/{})\n\n", pct(self.clean_accuracy), self.clean_correct, self.samples);
        let header =
            ["attack", "norm", "eps", "robust", "drop pp", "success", "L∞ mean/med/max", "L2 mean/med/max", "time"];
        let mut rows: Vec<[String; 9]> = Vec::new();
        let triple = |s: &Stats| format!("{:.3}/{:.3}/{:.3}", s.mean, s.median, s.max);
        for r in &self.results {
            let (li, l2) = match &r.perturbation {
                Some(p) => (triple(&p.linf), triple(&p.l2)),
                None => ("-".into(), "-".into()),
            };
            rows.push([
                r.attack.clone(),
                r.norm.clone(),
                fmt_eps(r.eps),
                pct(r.robust_accuracy),
                format!("{:.2}", r.drop_pp),
                pct(r.attack_success_rate),
                li,
                l2,
                format!("{:.1}s", r.time_s),
            ]);
        }
        for w in &self.worst_case {
            rows.push([
                "worst".into(),
                w.norm.clone(),
                fmt_eps(w.eps),
                pct(w.robust_accuracy),
                format!("{:.2}", w.drop_pp),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        let mut width = header.map(|h| h.chars().count());
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut l = String::new();
            for (i, c) in cells.iter().enumerate() {
                let pad = width[i] - c.chars().count();
                if i < 3 {
                    l += &format!("{c}{}  ", " ".repeat(pad));
                } else {
                    l += &format!("{}{c}  ", " ".repeat(pad));
                }
            }
            l.trim_end().to_string() + "\n"
        };
        s += &line(&header.map(String::from));
        for r in &rows {
            s += &line(r);
        }
        s += "\n";
        let mut seen: Vec<&str> = Vec::new();
        for r in &self.results {
            if seen.contains(&r.attack.as_str()) {
                continue;
            }
            seen.push(&r.attack);
            let mine: Vec<&AttackResult> = self.results.iter().filter(|x| x.attack == r.attack).collect();
            let fe: u64 = mine.iter().map(|x| x.forward_equivalents).sum();
            let attacked: usize = mine.iter().map(|x| x.attacked).sum();
            let secs: f64 = mine.iter().map(|x| x.time_s).sum();
            s += &format!(
                "{}: {fe} forward-equivalents, {attacked} sample-attacks in {secs:.1}s ({:.0} samples/s, {:.0} forward-equivalents/s)\n",
                r.attack,
                attacked as f64 / secs.max(1e-9),
                fe as f64 / secs.max(1e-9)
            );
        }
        s += &format!("\nrobust = correct and unbroken / all {} samples; success = broken / clean-correct; drop in percentage points\n", self.samples);
        s += &format!("time {:.1}s on {} ({} threads)\n", self.run.time_s, self.run.device, self.run.threads);
        s
    }
}

fn fmt_eps(e: f64) -> String {
    let s = format!("{e:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}
