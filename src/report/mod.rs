//! The report: every serialized type (schema in `docs/REPORT.md`) and one module per output
//! format. Renderers read only these types (plus the per-sample records and kept examples), so the
//! formats cannot disagree. Nothing here imports the evaluator, the checks or the gate.

use serde::{Deserialize, Serialize};

pub use gauntlet_attacks::Norm;

pub mod adversarial;
pub mod diff;
pub mod dir;
pub mod format;
pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod plots;
pub mod provenance;
pub mod samples;
mod table;
mod verdict;
pub mod write;

pub use format::fmt_eps;
pub use provenance::Provenance;
pub use verdict::{GateOutcome, Metric, Op, RuleVerdict, Unit};

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
    pub norm: Norm,
    pub bounds: [f32; 2],
    pub goal: GoalKind,
    /// How targets were chosen (`given`, `random`, `least-likely`, `top-K`); absent if untargeted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_mode: Option<String>,
    /// `independent` (each attack on every sample) or `cascade` (each attack on the samples the
    /// earlier ones left robust; robust accuracy after each attack is cumulative).
    #[serde(default)]
    pub protocol: Protocol,
    pub eps: Vec<f64>,
    pub clean_accuracy: f64,
    pub clean_correct: usize,
    pub results: Vec<AttackResult>,
    pub worst_case: Vec<WorstCase>,
    /// Robustness radii found by minimal-norm attacks.
    #[serde(default)]
    pub minimal_norm: Vec<RadiusSummary>,
    /// Certified robust accuracy (`--certify`): per method and ε, what bound propagation proved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certified: Vec<CertifiedRow>,
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

/// What one certification method proved at one ε: a lower bound on the robust accuracy, beside
/// the attacks' upper bound.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CertifiedRow {
    /// `ibp` or `crown`.
    pub method: String,
    pub norm: Norm,
    pub eps: f64,
    /// Samples proven robust (correctly classified everywhere in the ball) / all samples.
    pub certified_accuracy: f64,
    pub certified: usize,
    /// Misclassified, or broken by a verified adversarial example of an attack.
    pub broken: usize,
    /// Neither proven nor broken.
    pub open: usize,
    /// The worst case over the attacks at this ε (the upper bound).
    pub robust_accuracy: f64,
    /// robust_accuracy − certified_accuracy: how far the truth may lie from either.
    pub gap: f64,
    pub time_s: f64,
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
    pub norm: Norm,
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

/// Whether the attacks tried to reach given target classes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GoalKind {
    Untargeted,
    Targeted,
}

impl GoalKind {
    pub fn name(self) -> &'static str {
        match self {
            GoalKind::Untargeted => "untargeted",
            GoalKind::Targeted => "targeted",
        }
    }
}

impl std::fmt::Display for GoalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the attacks were combined.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Every attack on every clean-correct sample.
    #[default]
    Independent,
    /// Each attack on the samples the earlier ones left robust (AutoAttack's protocol).
    Cascade,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Independent => "independent",
            Protocol::Cascade => "cascade",
        }
    }
}

/// Each sample's smallest successful perturbation, as found by one minimal-norm attack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RadiusSummary {
    pub attack: String,
    pub norm: Norm,
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
    /// Mean, median and maximum of the values (sorted in place); `None` when there are none.
    pub fn of(values: &mut [f64]) -> Option<Stats> {
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
    pub norm: Norm,
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
    /// Attack names in the order they ran.
    pub fn attacks(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for r in &self.results {
            if !names.contains(&r.attack.as_str()) {
                names.push(&r.attack);
            }
        }
        names
    }

    /// The worst status among the checks, if any ran.
    pub fn worst_check(&self) -> Option<Status> {
        self.checks.iter().map(|c| c.status).max()
    }

    /// The failed integrity checks' names.
    pub fn failed_checks(&self) -> Vec<&str> {
        self.checks.iter().filter(|c| c.status == Status::Fail).map(|c| c.name.as_str()).collect()
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
