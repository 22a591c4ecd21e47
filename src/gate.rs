//! The release gate: rules on a report's numbers (and on a baseline report's), each with a verdict
//! that carries the numbers behind it. Format and examples: `docs/GATE.md`.
//!
//! ```toml
//! [[rule]]
//! metric = "robust_accuracy"   # clean_accuracy | robust_accuracy | drop | regression | check
//! attack = "pgd"               # an attack that ran, or "worst" (the default)
//! norm = "linf"
//! eps = 0.3
//! min = 0.80
//! wilson = true                # judge the lower end of the Wilson 95% interval
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::report::{fmt_eps, Report, Status};
use crate::{Error, Result};

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// A parsed gate file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// Defaults for every rule.
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(rename = "rule", default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Apply the Wilson margin to every accuracy rule.
    #[serde(default)]
    pub wilson: bool,
    /// Confidence of the Wilson interval (default 0.95).
    pub confidence: Option<f64>,
}

/// What a rule measures.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    CleanAccuracy,
    RobustAccuracy,
    /// Clean minus robust accuracy.
    Drop,
    /// The change of a metric against the baseline report.
    Regression,
    /// An integrity check's verdict.
    Check,
}

/// One rule of a gate file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Shown in verdicts and JUnit; default: derived from the rule.
    pub name: Option<String>,
    pub metric: Metric,
    /// An attack that ran, or `worst` (every attack at once; the default).
    pub attack: Option<String>,
    /// Default: the report's norm.
    pub norm: Option<String>,
    /// Required for robust_accuracy and drop; regression rules without it cover every ε.
    pub eps: Option<f64>,
    /// Lower bound (a fraction for accuracies).
    pub min: Option<f64>,
    /// Upper bound (a fraction for accuracies).
    pub max: Option<f64>,
    /// Drop: the largest drop in percentage points.
    pub max_points: Option<f64>,
    /// Drop: the largest drop relative to clean accuracy (0.2 = a fifth of the clean accuracy).
    pub max_relative: Option<f64>,
    /// Regression: the metric compared with the baseline (`robust_accuracy` or `clean_accuracy`).
    pub of: Option<Metric>,
    /// Regression: the largest decrease in percentage points.
    pub max_decrease_points: Option<f64>,
    /// Regression: the largest decrease relative to the baseline's value.
    pub max_decrease_relative: Option<f64>,
    /// Judge accuracies on the lower (for `min`) or upper (for `max`) end of the Wilson interval.
    pub wilson: Option<bool>,
    /// Check: the check's name (docs/CHECKS.md), or `all`.
    pub check: Option<String>,
    /// Check: whether WARN passes (default true).
    pub allow_warn: Option<bool>,
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

/// One rule's verdict with the numbers behind it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuleVerdict {
    pub name: String,
    pub metric: Metric,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    pub passed: bool,
    /// The measured value (a fraction for accuracies, points for drops and regressions).
    #[serde(default)]
    pub value: Option<f64>,
    /// The value held against the threshold (the Wilson bound when the margin applies).
    #[serde(default)]
    pub compared: Option<f64>,
    /// `>=` or `<=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    #[serde(default)]
    pub threshold: Option<f64>,
    /// The unit of `compared` and `threshold`: `fraction` (accuracies), `points` (percentage
    /// points) or `relative` (a fraction of the clean or baseline value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The baseline's value, for regression rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// One line with the numbers, e.g. `robust accuracy 0.412 (Wilson lower 0.345, n=200) < min 0.80`.
    pub message: String,
}

impl Gate {
    /// Reads and checks a gate file; errors name the file and the rule.
    pub fn read(path: &Path) -> Result<Gate> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Usage(format!("{}: cannot read the gate file ({e})", path.display())))?;
        Gate::parse(&text).map_err(|m| Error::Usage(format!("{}: {m}", path.display())))
    }

    /// Parses and checks a gate's text.
    pub fn parse(text: &str) -> std::result::Result<Gate, String> {
        let gate: Gate = toml::from_str(text).map_err(|e| {
            let m = e.message().to_string();
            match e.span() {
                Some(span) => format!("line {}: {m}", text[..span.start].matches('\n').count() + 1),
                None => m,
            }
        })?;
        if gate.rules.is_empty() {
            return Err("the gate has no [[rule]]".into());
        }
        if let Some(c) = gate.defaults.confidence {
            if !(c > 0.0 && c < 1.0) {
                return Err(format!("confidence = {c}: use a value between 0 and 1, e.g. 0.95"));
            }
        }
        for (i, r) in gate.rules.iter().enumerate() {
            r.validate().map_err(|m| format!("rule {} ({}): {m}", i + 1, r.label()))?;
        }
        Ok(gate)
    }

    /// Checks the rules against what the run will produce, before it starts: attack names, norm and
    /// ε must exist, and regression rules need a baseline.
    pub fn check_against(&self, attacks: &[String], norm: &str, eps: &[f64], baseline: bool) -> Result<()> {
        for (i, r) in self.rules.iter().enumerate() {
            let err = |m: String| Err(Error::Usage(format!("gate rule {} ({}): {m}", i + 1, r.label())));
            if let Some(a) = &r.attack {
                if a != "worst" && !attacks.contains(a) {
                    return err(format!("attack `{a}` does not run; running: {}, or use `worst`", attacks.join(", ")));
                }
            }
            if let Some(n) = &r.norm {
                if !n.eq_ignore_ascii_case(norm) {
                    return err(format!("norm `{n}`, but the run uses {norm} (--norm)"));
                }
            }
            if let Some(e) = r.eps {
                if !eps.iter().any(|&x| same_eps(x, e)) {
                    let grid: Vec<String> = eps.iter().map(|&x| fmt_eps(x)).collect();
                    return err(format!("eps {e} is not among the budgets run ({}); add it to --eps", grid.join(",")));
                }
            }
            if r.metric == Metric::Regression && !baseline {
                return err("a regression rule needs --baseline REPORT".into());
            }
        }
        Ok(())
    }

    /// Judges every rule against the report (and the baseline for regression rules).
    pub fn evaluate(&self, file: &str, report: &Report, baseline: Option<(&str, &Report)>) -> GateOutcome {
        let conf = self.defaults.confidence.unwrap_or(0.95);
        let mut rules = Vec::new();
        for r in &self.rules {
            rules.extend(r.judge(report, baseline.map(|b| b.1), self.defaults.wilson, conf));
        }
        GateOutcome {
            file: file.to_string(),
            baseline: baseline.map(|b| b.0.to_string()),
            passed: rules.iter().all(|v| v.passed),
            rules,
        }
    }
}

fn same_eps(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
}

/// z for a two-sided interval of the given confidence (inverse normal CDF by bisection on erf).
fn z_for(confidence: f64) -> f64 {
    if (confidence - 0.95).abs() < 1e-12 {
        return Z95;
    }
    let target = 1.0 - (1.0 - confidence) / 2.0;
    let (mut lo, mut hi) = (0.0f64, 10.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if normal_cdf(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

fn normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// erf by its Taylor series (|x| ≤ 3) or the continued fraction of erfc; accurate to ~1e-13.
fn erf(x: f64) -> f64 {
    if x < 0.0 {
        return -erf(-x);
    }
    if x <= 3.0 {
        let mut sum = x;
        let mut term = x;
        let x2 = x * x;
        for n in 1..200 {
            term *= -x2 / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        return sum * 2.0 / std::f64::consts::PI.sqrt();
    }
    // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + …)))).
    let mut f = x;
    for k in (1..60).rev() {
        f = x + (k as f64 / 2.0) / f;
    }
    1.0 - (-x * x).exp() / (std::f64::consts::PI.sqrt() * f)
}

/// The Wilson score interval of k successes in n trials.
pub fn wilson(k: usize, n: usize, confidence: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = z_for(confidence);
    let (nf, p) = (n as f64, k as f64 / n as f64);
    let denom = 1.0 + z * z / nf;
    let centre = p + z * z / (2.0 * nf);
    let half = z * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt();
    (((centre - half) / denom).max(0.0), ((centre + half) / denom).min(1.0))
}

/// An accuracy and its counts, as read from a report.
#[derive(Debug, Clone, Copy)]
struct Measured {
    value: f64,
    count: usize,
    of: usize,
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

impl Rule {
    fn metric_name(m: Metric) -> &'static str {
        match m {
            Metric::CleanAccuracy => "clean_accuracy",
            Metric::RobustAccuracy => "robust_accuracy",
            Metric::Drop => "drop",
            Metric::Regression => "regression",
            Metric::Check => "check",
        }
    }

    /// A short description for messages: `robust_accuracy[pgd, linf, eps=0.3]`.
    pub fn label(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let mut parts = Vec::new();
        if self.metric == Metric::Regression {
            parts.push(Self::metric_name(self.of.unwrap_or(Metric::RobustAccuracy)).to_string());
        }
        if self.metric == Metric::Check {
            parts.push(self.check.clone().unwrap_or_else(|| "all".into()));
        }
        if matches!(self.metric, Metric::RobustAccuracy | Metric::Drop)
            || (self.metric == Metric::Regression && self.of != Some(Metric::CleanAccuracy))
        {
            parts.push(self.attack.clone().unwrap_or_else(|| "worst".into()));
            if let Some(n) = &self.norm {
                parts.push(n.to_ascii_lowercase());
            }
            if let Some(e) = self.eps {
                parts.push(format!("eps={}", fmt_eps(e)));
            }
        }
        let metric = Self::metric_name(self.metric);
        if parts.is_empty() {
            metric.to_string()
        } else {
            format!("{metric}[{}]", parts.join(", "))
        }
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let fraction = |name: &str, v: Option<f64>| match v {
            Some(x) if !(0.0..=1.0).contains(&x) => {
                Err(format!("{name} = {x}: accuracies are fractions between 0 and 1 (0.8, not 80)"))
            }
            _ => Ok(()),
        };
        let nonneg = |name: &str, v: Option<f64>| match v {
            Some(x) if !(x.is_finite() && x >= 0.0) => Err(format!("{name} = {x}: use a number ≥ 0")),
            _ => Ok(()),
        };
        let only = |allowed: &[&str]| -> std::result::Result<(), String> {
            let given = [
                ("attack", self.attack.is_some()),
                ("norm", self.norm.is_some()),
                ("eps", self.eps.is_some()),
                ("min", self.min.is_some()),
                ("max", self.max.is_some()),
                ("max_points", self.max_points.is_some()),
                ("max_relative", self.max_relative.is_some()),
                ("of", self.of.is_some()),
                ("max_decrease_points", self.max_decrease_points.is_some()),
                ("max_decrease_relative", self.max_decrease_relative.is_some()),
                ("wilson", self.wilson.is_some()),
                ("check", self.check.is_some()),
                ("allow_warn", self.allow_warn.is_some()),
            ];
            for (key, set) in given {
                if set && !allowed.contains(&key) {
                    return Err(format!("`{key}` does not apply to metric {}", Self::metric_name(self.metric)));
                }
            }
            Ok(())
        };
        if let Some(e) = self.eps {
            if !(e.is_finite() && e > 0.0) {
                return Err(format!("eps = {e}: use a positive number"));
            }
        }
        if let Some(n) = &self.norm {
            if !matches!(n.to_ascii_lowercase().as_str(), "linf" | "l2") {
                return Err(format!("norm = \"{n}\": use \"linf\" or \"l2\""));
            }
        }
        match self.metric {
            Metric::CleanAccuracy | Metric::RobustAccuracy => {
                if self.metric == Metric::CleanAccuracy {
                    only(&["min", "max", "wilson"])?;
                } else {
                    only(&["attack", "norm", "eps", "min", "max", "wilson"])?;
                    if self.eps.is_none() {
                        return Err("robust_accuracy needs `eps`".into());
                    }
                }
                if self.min.is_none() && self.max.is_none() {
                    return Err("give `min` (or `max`), e.g. min = 0.8".into());
                }
                fraction("min", self.min)?;
                fraction("max", self.max)?;
            }
            Metric::Drop => {
                only(&["attack", "norm", "eps", "max_points", "max_relative"])?;
                if self.eps.is_none() {
                    return Err("drop needs `eps`".into());
                }
                if self.max_points.is_none() && self.max_relative.is_none() {
                    return Err("give `max_points` (percentage points) or `max_relative` (a fraction)".into());
                }
                nonneg("max_points", self.max_points)?;
                nonneg("max_relative", self.max_relative)?;
            }
            Metric::Regression => {
                only(&["attack", "norm", "eps", "of", "max_decrease_points", "max_decrease_relative"])?;
                match self.of {
                    None | Some(Metric::RobustAccuracy) | Some(Metric::CleanAccuracy) => {}
                    Some(other) => {
                        return Err(format!(
                            "of = \"{}\": use \"robust_accuracy\" or \"clean_accuracy\"",
                            Self::metric_name(other)
                        ))
                    }
                }
                if self.of == Some(Metric::CleanAccuracy) && (self.attack.is_some() || self.eps.is_some()) {
                    return Err("`attack` and `eps` do not apply to a clean-accuracy regression".into());
                }
                if self.max_decrease_points.is_none() && self.max_decrease_relative.is_none() {
                    return Err("give `max_decrease_points` or `max_decrease_relative`".into());
                }
                nonneg("max_decrease_points", self.max_decrease_points)?;
                nonneg("max_decrease_relative", self.max_decrease_relative)?;
            }
            Metric::Check => {
                only(&["check", "allow_warn"])?;
            }
        }
        Ok(())
    }

    fn verdict(&self, label: String, eps: Option<f64>) -> RuleVerdict {
        RuleVerdict {
            name: label,
            metric: self.metric,
            attack: self
                .attack
                .clone()
                .or_else(|| matches!(self.metric, Metric::RobustAccuracy | Metric::Drop).then(|| "worst".to_string())),
            norm: self.norm.as_ref().map(|n| n.to_ascii_lowercase()),
            eps,
            passed: false,
            value: None,
            compared: None,
            op: None,
            threshold: None,
            unit: None,
            baseline: None,
            message: String::new(),
        }
    }

    /// Judges this rule; regression rules without `eps` yield one verdict per ε.
    fn judge(&self, report: &Report, baseline: Option<&Report>, wilson_default: bool, conf: f64) -> Vec<RuleVerdict> {
        let use_wilson = self.wilson.unwrap_or(wilson_default);
        let norm = self.norm.clone().unwrap_or_else(|| report.norm.clone());
        let attack = self.attack.clone().unwrap_or_else(|| "worst".into());
        match self.metric {
            Metric::CleanAccuracy => {
                let m = Measured { value: report.clean_accuracy, count: report.clean_correct, of: report.samples };
                vec![self.bounds_verdict(self.label(), None, "clean accuracy", Some(m), use_wilson, conf)]
            }
            Metric::RobustAccuracy => {
                let m = robust(report, &attack, &norm, self.eps.unwrap_or_default());
                let what = format!("robust accuracy ({attack})");
                vec![self.bounds_verdict(self.label(), self.eps, &what, m, use_wilson, conf)]
            }
            Metric::Drop => vec![self.drop_verdict(report, &attack, &norm)],
            Metric::Regression => self.regression_verdicts(report, baseline, &attack, &norm),
            Metric::Check => self.check_verdicts(report),
        }
    }

    fn bounds_verdict(
        &self,
        label: String,
        eps: Option<f64>,
        what: &str,
        m: Option<Measured>,
        use_wilson: bool,
        conf: f64,
    ) -> RuleVerdict {
        let mut v = self.verdict(label, eps);
        let Some(m) = m else {
            v.message = format!("{what}: not in the report");
            return v;
        };
        v.value = Some(m.value);
        let (lo, hi) = wilson(m.count, m.of, conf);
        let mut fails = Vec::new();
        let mut parts = Vec::new();
        for (op, bound) in [(">=", self.min), ("<=", self.max)] {
            let Some(t) = bound else { continue };
            let compared = match (use_wilson, op) {
                (false, _) => m.value,
                (true, ">=") => lo,
                (true, _) => hi,
            };
            let ok = if op == ">=" { compared >= t - 1e-12 } else { compared <= t + 1e-12 };
            let side = if op == ">=" { "lower" } else { "upper" };
            let shown = if use_wilson {
                format!(
                    "{what} {} ({}/{}; Wilson {:.0}% {side} {})",
                    pct(m.value),
                    m.count,
                    m.of,
                    conf * 100.0,
                    pct(compared)
                )
            } else {
                format!("{what} {} ({}/{})", pct(m.value), m.count, m.of)
            };
            let rel = match (ok, op) {
                (true, ">=") => "≥ min",
                (false, ">=") => "< min",
                (true, _) => "≤ max",
                (false, _) => "> max",
            };
            parts.push(format!("{shown} {rel} {}", pct(t)));
            if !ok {
                fails.push(());
            }
            if v.op.is_none() || !ok {
                v.compared = Some(compared);
                v.op = Some(op.into());
                v.threshold = Some(t);
                v.unit = Some("fraction".into());
            }
        }
        v.passed = fails.is_empty();
        v.message = parts.join("; ");
        v
    }

    fn drop_verdict(&self, report: &Report, attack: &str, norm: &str) -> RuleVerdict {
        let eps = self.eps.unwrap_or_default();
        let mut v = self.verdict(self.label(), self.eps);
        let Some(m) = robust(report, attack, norm, eps) else {
            v.message = format!("robust accuracy ({attack}, {norm}, eps {}): not in the report", fmt_eps(eps));
            return v;
        };
        let points = (report.clean_accuracy - m.value) * 100.0;
        let relative =
            if report.clean_accuracy > 0.0 { (report.clean_accuracy - m.value) / report.clean_accuracy } else { 0.0 };
        v.value = Some(points);
        let head = format!(
            "drop {points:.2} pp (clean {} → robust {}, relative {:.1}%)",
            pct(report.clean_accuracy),
            pct(m.value),
            relative * 100.0
        );
        let mut ok = true;
        let mut parts = vec![head];
        if let Some(t) = self.max_points {
            let pass = points <= t + 1e-9;
            ok &= pass;
            parts.push(format!("{} max_points {t}", if pass { "≤" } else { ">" }));
            v.compared = Some(points);
            v.threshold = Some(t);
            v.unit = Some("points".into());
        }
        if let Some(t) = self.max_relative {
            let pass = relative <= t + 1e-12;
            ok &= pass;
            parts.push(format!("relative {} max_relative {t}", if pass { "≤" } else { ">" }));
            if !pass || v.threshold.is_none() {
                v.compared = Some(relative);
                v.threshold = Some(t);
                v.unit = Some("relative".into());
            }
        }
        v.op = Some("<=".into());
        v.passed = ok;
        v.message = parts.join(" ");
        v
    }

    fn regression_verdicts(
        &self,
        report: &Report,
        baseline: Option<&Report>,
        attack: &str,
        norm: &str,
    ) -> Vec<RuleVerdict> {
        let Some(base) = baseline else {
            let mut v = self.verdict(self.label(), self.eps);
            v.message = "no baseline report given (--baseline)".into();
            return vec![v];
        };
        if self.of == Some(Metric::CleanAccuracy) {
            let now = Measured { value: report.clean_accuracy, count: report.clean_correct, of: report.samples };
            let then = Measured { value: base.clean_accuracy, count: base.clean_correct, of: base.samples };
            return vec![self.change_verdict(self.label(), None, "clean accuracy", Some(now), Some(then))];
        }
        let grid: Vec<f64> = match self.eps {
            Some(e) => vec![e],
            None => report.eps.clone(),
        };
        grid.into_iter()
            .map(|eps| {
                let label =
                    if self.eps.is_some() { self.label() } else { format!("{} eps={}", self.label(), fmt_eps(eps)) };
                let what = format!("robust accuracy ({attack}, eps {})", fmt_eps(eps));
                self.change_verdict(
                    label,
                    Some(eps),
                    &what,
                    robust(report, attack, norm, eps),
                    robust(base, attack, norm, eps),
                )
            })
            .collect()
    }

    fn change_verdict(
        &self,
        label: String,
        eps: Option<f64>,
        what: &str,
        now: Option<Measured>,
        then: Option<Measured>,
    ) -> RuleVerdict {
        let mut v = self.verdict(label, eps);
        let (Some(now), Some(then)) = (now, then) else {
            v.message =
                format!("{what}: {}", if now.is_none() { "not in the report" } else { "not in the baseline report" });
            return v;
        };
        let points = (then.value - now.value) * 100.0;
        let relative = if then.value > 0.0 { (then.value - now.value) / then.value } else { 0.0 };
        v.value = Some(now.value);
        v.baseline = Some(then.value);
        v.op = Some("<=".into());
        let mut ok = true;
        let mut parts = vec![format!(
            "{what} {} → {} ({:+.2} pp, {:+.1}%)",
            pct(then.value),
            pct(now.value),
            -points,
            -relative * 100.0
        )];
        if let Some(t) = self.max_decrease_points {
            let pass = points <= t + 1e-9;
            ok &= pass;
            parts.push(format!("decrease {} max_decrease_points {t}", if pass { "≤" } else { ">" }));
            v.compared = Some(points);
            v.threshold = Some(t);
            v.unit = Some("points".into());
        }
        if let Some(t) = self.max_decrease_relative {
            let pass = relative <= t + 1e-12;
            ok &= pass;
            parts.push(format!("relative decrease {} max_decrease_relative {t}", if pass { "≤" } else { ">" }));
            if !pass || v.threshold.is_none() {
                v.compared = Some(relative);
                v.threshold = Some(t);
                v.unit = Some("relative".into());
            }
        }
        v.passed = ok;
        v.message = parts.join("; ");
        v
    }

    fn check_verdicts(&self, report: &Report) -> Vec<RuleVerdict> {
        let want = self.check.clone().unwrap_or_else(|| "all".into());
        let allow_warn = self.allow_warn.unwrap_or(true);
        let mut v = self.verdict(self.label(), None);
        let selected: Vec<_> = report.checks.iter().filter(|c| want == "all" || c.name == want).collect();
        if selected.is_empty() {
            v.message = if report.checks.is_empty() {
                "the integrity checks did not run (--no-checks?)".into()
            } else {
                let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
                format!("no check `{want}` in the report (checks: {})", names.join(", "))
            };
            return vec![v];
        }
        let bad: Vec<String> = selected
            .iter()
            .filter(|c| c.status == Status::Fail || (c.status == Status::Warn && !allow_warn))
            .map(|c| format!("{} {}: {}", c.status.name(), c.name, c.detail))
            .collect();
        v.passed = bad.is_empty();
        v.message = if bad.is_empty() {
            format!("{} check(s) passed{}", selected.len(), if allow_warn { " (WARN allowed)" } else { "" })
        } else {
            bad.join("; ")
        };
        vec![v]
    }
}

/// Robust accuracy of an attack (or `worst`) at ε, with its counts.
fn robust(report: &Report, attack: &str, norm: &str, eps: f64) -> Option<Measured> {
    if !report.norm.eq_ignore_ascii_case(norm) {
        return None;
    }
    if attack == "worst" {
        report.worst_case.iter().find(|w| same_eps(w.eps, eps)).map(|w| Measured {
            value: w.robust_accuracy,
            count: w.robust,
            of: report.samples,
        })
    } else {
        report.results.iter().find(|r| r.attack == attack && same_eps(r.eps, eps)).map(|r| Measured {
            value: r.robust_accuracy,
            count: r.robust,
            of: report.samples,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_published_values() {
        // Wilson 95% interval of 81/263 (Wikipedia, "Binomial proportion confidence interval").
        let (lo, hi) = wilson(81, 263, 0.95);
        assert!((lo - 0.2553).abs() < 5e-4 && (hi - 0.3662).abs() < 5e-4, "{lo} {hi}");
        // All successes: the upper end is 1 and the lower end n/(n+z²).
        let (lo, hi) = wilson(200, 200, 0.95);
        assert!((lo - 200.0 / (200.0 + Z95 * Z95)).abs() < 1e-12 && hi == 1.0);
    }

    #[test]
    fn z_by_bisection_matches_tables() {
        assert!((z_for(0.9) - 1.644_853_626_951).abs() < 1e-9);
        assert!((z_for(0.99) - 2.575_829_303_549).abs() < 1e-9);
    }

    #[test]
    fn bad_rules_are_named() {
        let e = Gate::parse("[[rule]]\nmetric = \"robust_accuracy\"\nmin = 0.8\n").unwrap_err();
        assert!(e.contains("rule 1") && e.contains("needs `eps`"), "{e}");
        let e = Gate::parse("[[rule]]\nmetric = \"clean_accuracy\"\nmin = 80\n").unwrap_err();
        assert!(e.contains("fractions"), "{e}");
        let e = Gate::parse("[[rule]]\nmetric = \"robust\"\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = Gate::parse("[[rule]]\nmetric = \"drop\"\neps = 0.1\nmin = 0.3\n").unwrap_err();
        assert!(e.contains("`min` does not apply"), "{e}");
    }
}
