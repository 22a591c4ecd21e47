//! The rules of a gate file, one variant per metric. Each variant's struct lists exactly the keys
//! that apply to it (`deny_unknown_fields`), so serde refuses a key used with the wrong metric.

use serde::{Deserialize, Deserializer};

use crate::report::format::fmt_eps;
use crate::report::{Metric, Norm};

/// One `[[rule]]` of a gate file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "metric", rename_all = "snake_case")]
pub enum Rule {
    CleanAccuracy(Accuracy),
    RobustAccuracy(Robust),
    /// The proven lower bound on the robust accuracy (`run --certify`).
    CertifiedAccuracy(Certified),
    /// Clean minus robust accuracy.
    Drop(Drop),
    /// The change of a metric against the baseline report.
    Regression(Regression),
    /// An integrity check's verdict.
    Check(CheckRule),
}

/// `clean_accuracy`: bounds on the clean accuracy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Accuracy {
    /// Shown in verdicts and JUnit; default: derived from the rule.
    pub name: Option<String>,
    /// Lower bound (a fraction).
    pub min: Option<f64>,
    /// Upper bound (a fraction).
    pub max: Option<f64>,
    /// Judge on the lower (for `min`) or upper (for `max`) end of the Wilson interval.
    pub wilson: Option<bool>,
}

/// Lower and upper bounds on an accuracy, as an accuracy rule gives them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub wilson: Option<bool>,
}

/// `robust_accuracy`: bounds on an attack's (or the worst case's) robust accuracy at one ε.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Robust {
    pub name: Option<String>,
    /// An attack that ran, or `worst` (every attack at once; the default).
    pub attack: Option<String>,
    /// Default: the report's norm.
    #[serde(default, deserialize_with = "norm")]
    pub norm: Option<Norm>,
    pub eps: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub wilson: Option<bool>,
}

/// `certified_accuracy`: bounds on the certified accuracy at one ε, of one method or of the
/// tightest (`best`, the default).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Certified {
    pub name: Option<String>,
    /// `ibp`, `crown` or `best`.
    pub method: Option<String>,
    #[serde(default, deserialize_with = "norm")]
    pub norm: Option<Norm>,
    pub eps: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub wilson: Option<bool>,
}

/// `drop`: the largest fall from clean to robust accuracy at one ε.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Drop {
    pub name: Option<String>,
    pub attack: Option<String>,
    #[serde(default, deserialize_with = "norm")]
    pub norm: Option<Norm>,
    pub eps: f64,
    /// In percentage points.
    pub max_points: Option<f64>,
    /// Relative to the clean accuracy (0.2 = a fifth of it).
    pub max_relative: Option<f64>,
}

/// What a regression rule compares with the baseline.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compared {
    #[default]
    RobustAccuracy,
    CleanAccuracy,
}

/// `regression`: the largest decrease against the baseline report.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Regression {
    pub name: Option<String>,
    #[serde(default)]
    pub of: Compared,
    pub attack: Option<String>,
    #[serde(default, deserialize_with = "norm")]
    pub norm: Option<Norm>,
    /// Without it, every ε of the report is judged.
    pub eps: Option<f64>,
    pub max_decrease_points: Option<f64>,
    pub max_decrease_relative: Option<f64>,
}

/// `check`: an integrity check's verdict (or every check's).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CheckRule {
    pub name: Option<String>,
    /// The check's name (docs/CHECKS.md), or `all` (the default).
    pub check: Option<String>,
    /// Whether WARN passes (default true).
    pub allow_warn: Option<bool>,
}

/// `linf` or `l2`, any case.
fn norm<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Norm>, D::Error> {
    let text = String::deserialize(d)?;
    match text.to_ascii_lowercase().as_str() {
        "linf" => Ok(Some(Norm::Linf)),
        "l2" => Ok(Some(Norm::L2)),
        _ => Err(serde::de::Error::custom(format!("norm = \"{text}\": use \"linf\" or \"l2\""))),
    }
}

/// The keys each metric takes, for error messages.
pub fn keys(metric: &str) -> &'static str {
    match metric {
        "clean_accuracy" => "name, min, max, wilson",
        "robust_accuracy" => "name, attack, norm, eps, min, max, wilson",
        "certified_accuracy" => "name, method, norm, eps, min, max, wilson",
        "drop" => "name, attack, norm, eps, max_points, max_relative",
        "regression" => "name, of, attack, norm, eps, max_decrease_points, max_decrease_relative",
        "check" => "name, check, allow_warn",
        _ => "",
    }
}

/// Where a rule looks in a report: attack, norm, ε.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scope<'a> {
    pub attack: Option<&'a str>,
    pub norm: Option<Norm>,
    pub eps: Option<f64>,
}

impl Rule {
    pub fn metric(&self) -> Metric {
        match self {
            Rule::CleanAccuracy(_) => Metric::CleanAccuracy,
            Rule::RobustAccuracy(_) => Metric::RobustAccuracy,
            Rule::CertifiedAccuracy(_) => Metric::CertifiedAccuracy,
            Rule::Drop(_) => Metric::Drop,
            Rule::Regression(_) => Metric::Regression,
            Rule::Check(_) => Metric::Check,
        }
    }

    /// The bounds of an accuracy rule.
    pub fn bounds(&self) -> Option<Bounds> {
        match self {
            Rule::CleanAccuracy(r) => Some(Bounds { min: r.min, max: r.max, wilson: r.wilson }),
            Rule::RobustAccuracy(r) => Some(Bounds { min: r.min, max: r.max, wilson: r.wilson }),
            Rule::CertifiedAccuracy(r) => Some(Bounds { min: r.min, max: r.max, wilson: r.wilson }),
            _ => None,
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            Rule::CleanAccuracy(r) => r.name.as_deref(),
            Rule::RobustAccuracy(r) => r.name.as_deref(),
            Rule::CertifiedAccuracy(r) => r.name.as_deref(),
            Rule::Drop(r) => r.name.as_deref(),
            Rule::Regression(r) => r.name.as_deref(),
            Rule::Check(r) => r.name.as_deref(),
        }
    }

    /// The attack, norm and ε the rule names (`None` where it does not apply or is left open).
    pub fn scope(&self) -> Scope<'_> {
        let none = Scope { attack: None, norm: None, eps: None };
        match self {
            Rule::CleanAccuracy(_) | Rule::Check(_) => none,
            Rule::RobustAccuracy(r) => Scope { attack: r.attack.as_deref(), norm: r.norm, eps: Some(r.eps) },
            Rule::CertifiedAccuracy(r) => Scope { attack: None, norm: r.norm, eps: Some(r.eps) },
            Rule::Drop(r) => Scope { attack: r.attack.as_deref(), norm: r.norm, eps: Some(r.eps) },
            Rule::Regression(r) => Scope { attack: r.attack.as_deref(), norm: r.norm, eps: r.eps },
        }
    }

    /// A short description for messages: `robust_accuracy[pgd, linf, eps=0.3]`.
    pub fn label(&self) -> String {
        if let Some(n) = self.name() {
            return n.to_string();
        }
        let mut parts = Vec::new();
        let scoped = match self {
            Rule::Regression(r) => {
                parts.push(Metric::from(r.of).name().to_string());
                r.of == Compared::RobustAccuracy
            }
            Rule::Check(r) => {
                parts.push(r.check.clone().unwrap_or_else(|| "all".into()));
                false
            }
            Rule::CleanAccuracy(_) => false,
            Rule::CertifiedAccuracy(r) => {
                parts.push(r.method.clone().unwrap_or_else(|| "best".into()));
                if let Some(n) = r.norm {
                    parts.push(n.to_string());
                }
                parts.push(format!("eps={}", fmt_eps(r.eps)));
                false
            }
            Rule::RobustAccuracy(_) | Rule::Drop(_) => true,
        };
        if scoped {
            let s = self.scope();
            parts.push(s.attack.unwrap_or("worst").to_string());
            if let Some(n) = s.norm {
                parts.push(n.to_string());
            }
            if let Some(e) = s.eps {
                parts.push(format!("eps={}", fmt_eps(e)));
            }
        }
        let metric = self.metric().name();
        if parts.is_empty() {
            metric.to_string()
        } else {
            format!("{metric}[{}]", parts.join(", "))
        }
    }

    /// What serde cannot say: values in range, and at least one threshold per rule.
    pub fn validate(&self) -> Result<(), String> {
        let nonneg = |name: &str, v: Option<f64>| match v {
            Some(x) if !(x.is_finite() && x >= 0.0) => Err(format!("{name} = {x}: use a number ≥ 0")),
            _ => Ok(()),
        };
        let either = |a: Option<f64>, b: Option<f64>, hint: &str| match (a, b) {
            (None, None) => Err(hint.to_string()),
            _ => Ok(()),
        };
        if let Some(e) = self.scope().eps {
            if !(e.is_finite() && e > 0.0) {
                return Err(format!("eps = {e}: use a positive number"));
            }
        }
        match self {
            Rule::CleanAccuracy(_) | Rule::RobustAccuracy(_) => self.bounds().map_or(Ok(()), |b| b.validate()),
            Rule::CertifiedAccuracy(r) => {
                if let Some(m) = r.method.as_deref().filter(|m| !matches!(*m, "ibp" | "crown" | "best")) {
                    return Err(format!("method = \"{m}\": use \"ibp\", \"crown\" or \"best\""));
                }
                self.bounds().map_or(Ok(()), |b| b.validate())
            }
            Rule::Drop(r) => {
                either(
                    r.max_points,
                    r.max_relative,
                    "give `max_points` (percentage points) or `max_relative` (a fraction)",
                )?;
                nonneg("max_points", r.max_points)?;
                nonneg("max_relative", r.max_relative)
            }
            Rule::Regression(r) => {
                if r.of == Compared::CleanAccuracy && (r.attack.is_some() || r.eps.is_some()) {
                    return Err("`attack` and `eps` do not apply to a clean-accuracy regression".into());
                }
                either(
                    r.max_decrease_points,
                    r.max_decrease_relative,
                    "give `max_decrease_points` or `max_decrease_relative`",
                )?;
                nonneg("max_decrease_points", r.max_decrease_points)?;
                nonneg("max_decrease_relative", r.max_decrease_relative)
            }
            Rule::Check(_) => Ok(()),
        }
    }
}

impl Bounds {
    fn validate(&self) -> Result<(), String> {
        if self.min.is_none() && self.max.is_none() {
            return Err("give `min` (or `max`), e.g. min = 0.8".into());
        }
        for (name, v) in [("min", self.min), ("max", self.max)] {
            if let Some(x) = v.filter(|x| !(0.0..=1.0).contains(x)) {
                return Err(format!("{name} = {x}: accuracies are fractions between 0 and 1 (0.8, not 80)"));
            }
        }
        Ok(())
    }
}

impl From<Compared> for Metric {
    fn from(c: Compared) -> Metric {
        match c {
            Compared::RobustAccuracy => Metric::RobustAccuracy,
            Compared::CleanAccuracy => Metric::CleanAccuracy,
        }
    }
}
