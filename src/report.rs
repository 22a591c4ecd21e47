//! The report: derived from an [`Evaluation`], rendered as a table or as versioned JSON
//! (schema in `docs/REPORT.md`).

use serde::{Deserialize, Serialize};

use crate::eval::Evaluation;
use crate::gate::GateOutcome;
use crate::provenance::Provenance;

/// Bumped on any incompatible change of the JSON layout.
pub const SCHEMA_VERSION: u32 = 2;

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
    /// How targets were chosen (`given`, `random`, `least-likely`, `top-K`); absent if untargeted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_mode: Option<String>,
    /// `independent` (each attack on every sample) or `cascade` (each attack on the samples the
    /// earlier ones left robust; robust accuracy after each attack is cumulative).
    #[serde(default = "independent")]
    pub protocol: String,
    pub eps: Vec<f64>,
    pub clean_accuracy: f64,
    pub clean_correct: usize,
    pub results: Vec<AttackResult>,
    pub worst_case: Vec<WorstCase>,
    /// Robustness radii found by minimal-norm attacks.
    #[serde(default)]
    pub minimal_norm: Vec<RadiusSummary>,
    /// Integrity checks of the evaluation (docs/CHECKS.md).
    #[serde(default)]
    pub checks: Vec<Check>,
    pub definitions: Definitions,
    pub notes: Vec<String>,
    /// How the run was executed; varies between runs and machines, unlike everything above.
    pub run: RunInfo,
    /// Which files, configuration and build these numbers speak for (absent in reports built by the
    /// library without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// The release gate's verdict, when a gate was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateOutcome>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub source: String,
    /// Pixel-space input shape (C, H, W), before any preprocessing.
    pub input: [usize; 3],
    pub classes: usize,
    pub parameters: usize,
    /// What the model applies to the pixel-space input before its first layer
    /// (`Preprocess::describe`: channel order, mean/std, layout), or `none`.
    #[serde(default = "none")]
    pub preprocessing: String,
}

fn none() -> String {
    "none".into()
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
    /// Attack outputs outside the ε-ball or the bounds, projected by the evaluator before re-classification.
    #[serde(default)]
    pub out_of_budget: usize,
    pub time_s: f64,
}

fn independent() -> String {
    "independent".into()
}

/// Each sample's smallest successful perturbation, as found by one minimal-norm attack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RadiusSummary {
    pub attack: String,
    pub norm: String,
    /// Clean-correct samples the attack ran on.
    pub samples: usize,
    /// Of those, the samples for which it found an adversarial example.
    pub found: usize,
    /// Quantiles of the radius over the clean-correct samples (a sample with none found counts as
    /// infinitely robust; a quantile that falls among those is null).
    pub quantiles: Vec<Quantile>,
    pub mean_found: Option<f64>,
    /// Robust accuracy (over all samples) at budget eps implied by the radii: clean-correct
    /// samples whose radius exceeds eps.
    pub curve: Vec<CurvePoint>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Quantile {
    pub q: f64,
    pub radius: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct CurvePoint {
    pub eps: f64,
    pub robust_accuracy: f64,
}

/// The verdict of one integrity check.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One integrity check: its name, verdict and the numbers behind it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
}

/// How many samples an attack was the first (in the order given) to break.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FirstBy {
    pub attack: String,
    pub broken: usize,
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
    /// Per attack, the samples it was the first to break at this eps (attacks in the order given).
    #[serde(default)]
    pub broken_first_by: Vec<FirstBy>,
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
                    norm: ev.norm.name().into(),
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
            norm: ev.norm.name().into(),
            bounds: meta.bounds,
            goal: if ev.targets.is_some() { "targeted" } else { "untargeted" }.into(),
            target_mode: ev.target_mode.clone(),
            protocol: if ev.cascade { "cascade" } else { "independent" }.into(),
            eps: ev.eps.clone(),
            clean_accuracy,
            clean_correct,
            results,
            worst_case,
            minimal_norm: radius_summaries(ev),
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

    fn attack_count(&self) -> usize {
        let mut names: Vec<&str> = self.results.iter().map(|r| r.attack.as_str()).collect();
        names.dedup();
        names.len()
    }

    /// The worst status among the checks, if any ran.
    pub fn worst_check(&self) -> Option<Status> {
        self.checks.iter().map(|c| c.status).max()
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
        if self.model.preprocessing != "none" {
            s += &format!("preprocessing: {} (inside the model; eps in pixel space)\n", self.model.preprocessing);
        }
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
        if self.attack_count() > 1 {
            s += "\nbroken first by (attacks in the order given):\n";
            for w in &self.worst_case {
                let parts: Vec<String> =
                    w.broken_first_by.iter().map(|f| format!("{} {}", f.attack, f.broken)).collect();
                s += &format!("  eps {}: {}\n", fmt_eps(w.eps), parts.join(", "));
            }
        }
        for m in &self.minimal_norm {
            let q: Vec<String> = m
                .quantiles
                .iter()
                .map(|q| format!("q{:.0} {}", q.q * 100.0, q.radius.map_or("-".into(), |r| format!("{r:.4}"))))
                .collect();
            s += &format!(
                "\n{} {} radius: found for {}/{} clean-correct samples; {}\n",
                m.attack,
                m.norm,
                m.found,
                m.samples,
                q.join(", ")
            );
        }
        if !self.checks.is_empty() {
            s += "\nintegrity checks:\n";
            for c in &self.checks {
                s += &format!("  {} {}: {}\n", c.status.name(), c.name, c.detail);
            }
        }
        s += &format!("\nrobust = correct and unbroken / all {} samples; success = broken / clean-correct; drop in percentage points\n", self.samples);
        if self.protocol == "cascade" {
            s += "cascade: each attack ran on the samples the earlier ones left robust; its robust column is after it and all earlier attacks\n";
        }
        s += &format!("time {:.1}s on {} ({} threads)\n", self.run.time_s, self.run.device, self.run.threads);
        s
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
                norm: ev.norm.name().into(),
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

/// ε as written in tables: at most 4 decimals, trailing zeros dropped.
pub fn fmt_eps(e: f64) -> String {
    let s = format!("{e:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}
