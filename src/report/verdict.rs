//! The release gate's outcome as the report records it: one verdict per rule, with its numbers.

use serde::{Deserialize, Serialize};

use super::Norm;

/// What a rule measures.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    CleanAccuracy,
    RobustAccuracy,
    /// The proven lower bound on the robust accuracy.
    CertifiedAccuracy,
    /// Clean minus robust accuracy.
    Drop,
    /// The change of a metric against the baseline report.
    Regression,
    /// An integrity check's verdict.
    Check,
}

impl Metric {
    /// The name used in gate files, reports and JUnit.
    pub fn name(self) -> &'static str {
        match self {
            Metric::CleanAccuracy => "clean_accuracy",
            Metric::RobustAccuracy => "robust_accuracy",
            Metric::CertifiedAccuracy => "certified_accuracy",
            Metric::Drop => "drop",
            Metric::Regression => "regression",
            Metric::Check => "check",
        }
    }

    /// Whether the metric is an accuracy (a fraction judged against `min`/`max`).
    pub fn is_accuracy(self) -> bool {
        matches!(self, Metric::CleanAccuracy | Metric::RobustAccuracy | Metric::CertifiedAccuracy)
    }
}

/// How a value was held against its threshold.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub enum Op {
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "<=")]
    AtMost,
}

impl Op {
    /// `>=` or `<=`.
    pub fn text(self) -> &'static str {
        match self {
            Op::AtLeast => ">=",
            Op::AtMost => "<=",
        }
    }

    /// `≥` or `≤`.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::AtLeast => "≥",
            Op::AtMost => "≤",
        }
    }

    /// Whether `value` satisfies the bound `threshold` (with a rounding allowance `tol`).
    pub fn holds(self, value: f64, threshold: f64, tol: f64) -> bool {
        match self {
            Op::AtLeast => value >= threshold - tol,
            Op::AtMost => value <= threshold + tol,
        }
    }
}

/// The unit of a verdict's `compared` value and threshold.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Accuracies, as fractions.
    Fraction,
    /// Percentage points.
    Points,
    /// A fraction of the clean or the baseline value.
    Relative,
}

/// The gate's result, as recorded in the report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GateOutcome {
    /// The gate file.
    pub file: String,
    /// The baseline report, if one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    pub passed: bool,
    pub rules: Vec<RuleVerdict>,
}

impl GateOutcome {
    /// The rules that failed.
    pub fn failed(&self) -> impl Iterator<Item = &RuleVerdict> {
        self.rules.iter().filter(|v| !v.passed)
    }
}

/// One rule's verdict with the numbers behind it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuleVerdict {
    pub name: String,
    pub metric: Metric,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm: Option<Norm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    pub passed: bool,
    /// The measured value (a fraction for accuracies, points for drops and regressions).
    #[serde(default)]
    pub value: Option<f64>,
    /// The value held against the threshold (the Wilson bound when the margin applies).
    #[serde(default)]
    pub compared: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<Op>,
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Unit>,
    /// The baseline's value, for regression rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// One line with the numbers, e.g. `robust accuracy 0.412 (Wilson lower 0.345, n=200) < min 0.80`.
    pub message: String,
}

impl RuleVerdict {
    /// `PASS` or `FAIL`.
    pub fn status(&self) -> &'static str {
        if self.passed {
            "PASS"
        } else {
            "FAIL"
        }
    }
}
