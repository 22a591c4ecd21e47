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

use serde::Deserialize;

use crate::report::format::{fmt_eps, pct, same_eps};
use crate::report::{GateOutcome, Metric, Norm, Op, Report, RuleVerdict, Status, Unit};
use crate::{Error, Result};

pub mod rules;
mod wilson;

pub use rules::Rule;
use rules::{Bounds, Compared};
pub use wilson::wilson;

/// A parsed gate file.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub defaults: Defaults,
    pub rules: Vec<Rule>,
}

/// Defaults for every rule.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Apply the Wilson margin to every accuracy rule.
    #[serde(default)]
    pub wilson: bool,
    /// Confidence of the Wilson interval (default 0.95).
    pub confidence: Option<f64>,
}

/// The file as written: rules kept as tables (with their place in the text) until each is read on
/// its own, so that an error names the rule and its line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    rule: Vec<toml::Spanned<toml::Table>>,
}

impl Gate {
    /// Reads and checks a gate file; errors name the file and the rule.
    pub fn read(path: &Path) -> Result<Gate> {
        let err = |message: String| Error::Input { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read the gate file ({e})")))?;
        Gate::parse(&text).map_err(err)
    }

    /// Parses and checks a gate's text.
    pub fn parse(text: &str) -> std::result::Result<Gate, String> {
        let line_of = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
        let file: File = toml::from_str(text).map_err(|e| {
            let m = e.message().to_string();
            match e.span() {
                Some(span) => format!("line {}: {m}", line_of(span.start)),
                None => m,
            }
        })?;
        if file.rule.is_empty() {
            return Err("the gate has no [[rule]]".into());
        }
        if let Some(c) = file.defaults.confidence {
            if !(c > 0.0 && c < 1.0) {
                return Err(format!("confidence = {c}: use a value between 0 and 1, e.g. 0.95"));
            }
        }
        let mut rules = Vec::with_capacity(file.rule.len());
        for (i, spanned) in file.rule.into_iter().enumerate() {
            let start = spanned.span().start;
            let table = spanned.into_inner();
            // The line of `key` within this rule, or of the rule itself.
            let line = |key: Option<&str>| {
                let at = key
                    .and_then(|k| {
                        text[start..].match_indices(k).map(|(j, _)| start + j).find(|&j| {
                            let line_start = text[..j].rfind('\n').map_or(0, |p| p + 1);
                            text[line_start..j].trim().is_empty()
                        })
                    })
                    .unwrap_or(start);
                line_of(at)
            };
            let metric = table.get("metric").and_then(|m| m.as_str()).unwrap_or("").to_string();
            let rule = Rule::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
                let (key, message) = explain(e.message(), &metric, &table);
                format!("line {}: rule {}: {message}", line(key.as_deref()), i + 1)
            })?;
            rule.validate().map_err(|m| format!("rule {} ({}): {m}", i + 1, rule.label()))?;
            rules.push(rule);
        }
        Ok(Gate { defaults: file.defaults, rules })
    }

    /// Checks the rules against what the run will produce, before it starts: attack names, norm and
    /// ε must exist, and regression rules need a baseline.
    pub fn check_against(&self, attacks: &[String], norm: Norm, eps: &[f64], baseline: bool) -> Result<()> {
        for (i, r) in self.rules.iter().enumerate() {
            let err = |m: String| Err(Error::Config(format!("gate rule {} ({}): {m}", i + 1, r.label())));
            let scope = r.scope();
            if let Some(a) = scope.attack {
                if a != "worst" && !attacks.iter().any(|x| x == a) {
                    return err(format!("attack `{a}` does not run; running: {}, or use `worst`", attacks.join(", ")));
                }
            }
            if let Some(n) = scope.norm.filter(|&n| n != norm) {
                return err(format!("norm `{n}`, but the run uses {norm} (--norm)"));
            }
            if let Some(e) = scope.eps {
                if !eps.iter().any(|&x| same_eps(x, e)) {
                    let grid: Vec<String> = eps.iter().map(|&x| fmt_eps(x)).collect();
                    return err(format!("eps {e} is not among the budgets run ({}); add it to --eps", grid.join(",")));
                }
            }
            if matches!(r, Rule::Regression(_)) && !baseline {
                return err("a regression rule needs --baseline REPORT".into());
            }
        }
        Ok(())
    }

    /// Checks the certified-accuracy rules against the methods the run certifies with.
    pub fn check_certify(&self, methods: &[&str]) -> Result<()> {
        for (i, r) in self.rules.iter().enumerate() {
            let Rule::CertifiedAccuracy(c) = r else { continue };
            let err = |m: String| Err(Error::Config(format!("gate rule {} ({}): {m}", i + 1, r.label())));
            if methods.is_empty() {
                return err("certified accuracy needs --certify ibp|crown".into());
            }
            if let Some(m) = c.method.as_deref().filter(|m| *m != "best" && !methods.contains(m)) {
                return err(format!("method `{m}` does not run; --certify runs {}", methods.join(", ")));
            }
        }
        Ok(())
    }

    /// Judges every rule against the report (and the baseline for regression rules).
    pub fn evaluate(&self, file: &str, report: &Report, baseline: Option<(&str, &Report)>) -> GateOutcome {
        let conf = self.defaults.confidence.unwrap_or(0.95);
        let judge = Judge { report, baseline: baseline.map(|b| b.1), wilson: self.defaults.wilson, conf };
        let rules: Vec<RuleVerdict> = self.rules.iter().flat_map(|r| judge.rule(r)).collect();
        GateOutcome {
            file: file.to_string(),
            baseline: baseline.map(|b| b.0.to_string()),
            passed: rules.iter().all(|v| v.passed),
            rules,
        }
    }
}

/// A serde message in the gate's words, and the key it is about.
fn explain(message: &str, metric: &str, table: &toml::Table) -> (Option<String>, String) {
    let quoted = |m: &str| m.split('`').nth(1).map(str::to_string);
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let key = quoted(rest);
        let name = key.clone().unwrap_or_default();
        return (key, format!("`{name}` does not apply to metric {metric} (its keys: {})", rules::keys(metric)));
    }
    if message.starts_with("unknown variant ") {
        return (Some("metric".into()), message.replacen("unknown variant", "unknown metric", 1));
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        let key = quoted(rest).unwrap_or_default();
        if key == "metric" {
            let given: Vec<&str> = table.keys().map(String::as_str).collect();
            return (
                given.first().map(|k| k.to_string()),
                format!(
                    "missing `metric` (one of clean_accuracy, robust_accuracy, certified_accuracy, drop, regression, check); keys given: {}",
                    given.join(", ")
                ),
            );
        }
        return (None, format!("{metric} needs `{key}`"));
    }
    (None, message.to_string())
}

/// An accuracy and its counts, as read from a report.
#[derive(Debug, Clone, Copy)]
struct Measured {
    value: f64,
    count: usize,
    of: usize,
}

impl Measured {
    fn clean(r: &Report) -> Measured {
        Measured { value: r.clean_accuracy, count: r.clean_correct, of: r.samples }
    }

    /// Certified accuracy of a method (or the tightest, `best`) at ε, with its counts.
    fn certified(r: &Report, method: &str, norm: Norm, eps: f64) -> Option<Measured> {
        r.certified
            .iter()
            .filter(|c| c.norm == norm && same_eps(c.eps, eps) && (method == "best" || c.method == method))
            .max_by(|a, b| a.certified_accuracy.total_cmp(&b.certified_accuracy))
            .map(|c| Measured { value: c.certified_accuracy, count: c.certified, of: r.samples })
    }

    /// Robust accuracy of an attack (or `worst`) at ε, with its counts.
    fn robust(r: &Report, attack: &str, norm: Norm, eps: f64) -> Option<Measured> {
        if r.norm != norm {
            return None;
        }
        let found = if attack == "worst" {
            r.worst_case.iter().find(|w| same_eps(w.eps, eps)).map(|w| (w.robust_accuracy, w.robust))
        } else {
            r.results.iter().find(|x| x.attack == attack && same_eps(x.eps, eps)).map(|x| (x.robust_accuracy, x.robust))
        };
        found.map(|(value, count)| Measured { value, count, of: r.samples })
    }
}

/// The limits on a decrease (a drop from clean, or a regression against the baseline) and how the
/// verdict's message names them.
struct Limits<'a> {
    points: Option<f64>,
    relative: Option<f64>,
    /// Key names and message words: (`max_points`, ``), (`max_relative`, `relative `), separator.
    names: [(&'a str, &'a str); 2],
    separator: &'a str,
}

struct Judge<'a> {
    report: &'a Report,
    baseline: Option<&'a Report>,
    wilson: bool,
    conf: f64,
}

impl Judge<'_> {
    /// Judges one rule; regression rules without `eps` yield one verdict per ε.
    fn rule(&self, rule: &Rule) -> Vec<RuleVerdict> {
        let r = self.report;
        let scope = rule.scope();
        let norm = scope.norm.unwrap_or(r.norm);
        let attack = scope.attack.unwrap_or("worst");
        match rule {
            Rule::CleanAccuracy(_) => {
                vec![self.bounds(rule, None, "clean accuracy", Some(Measured::clean(r)))]
            }
            Rule::RobustAccuracy(x) => {
                let m = Measured::robust(r, attack, norm, x.eps);
                vec![self.bounds(rule, Some(x.eps), &format!("robust accuracy ({attack})"), m)]
            }
            Rule::CertifiedAccuracy(x) => {
                let method = x.method.as_deref().unwrap_or("best");
                let m = Measured::certified(r, method, norm, x.eps);
                vec![self.bounds(rule, Some(x.eps), &format!("certified accuracy ({method})"), m)]
            }
            Rule::Drop(x) => {
                let mut v = verdict(rule, rule.label(), Some(x.eps));
                let Some(m) = Measured::robust(r, attack, norm, x.eps) else {
                    v.message =
                        format!("robust accuracy ({attack}, {norm}, eps {}): not in the report", fmt_eps(x.eps));
                    return vec![v];
                };
                let relative =
                    if r.clean_accuracy > 0.0 { (r.clean_accuracy - m.value) / r.clean_accuracy } else { 0.0 };
                let points = (r.clean_accuracy - m.value) * 100.0;
                v.value = Some(points);
                let head = format!(
                    "drop {points:.2} pp (clean {} → robust {}, relative {:.1}%)",
                    pct(r.clean_accuracy),
                    pct(m.value),
                    relative * 100.0
                );
                let limits = Limits {
                    points: x.max_points,
                    relative: x.max_relative,
                    names: [("max_points", ""), ("max_relative", "relative ")],
                    separator: " ",
                };
                decrease(&mut v, head, points, relative, &limits);
                vec![v]
            }
            Rule::Regression(x) => self.regression(rule, x, attack, norm),
            Rule::Check(x) => vec![self.check(rule, x)],
        }
    }

    fn bounds(&self, rule: &Rule, eps: Option<f64>, what: &str, m: Option<Measured>) -> RuleVerdict {
        let b: Bounds = rule.bounds().expect("an accuracy rule");
        let use_wilson = b.wilson.unwrap_or(self.wilson);
        let mut v = verdict(rule, rule.label(), eps);
        let Some(m) = m else {
            v.message = format!("{what}: not in the report");
            return v;
        };
        v.value = Some(m.value);
        let (lo, hi) = wilson(m.count, m.of, self.conf);
        let mut parts = Vec::new();
        let mut passed = true;
        for (op, bound) in [(Op::AtLeast, b.min), (Op::AtMost, b.max)] {
            let Some(t) = bound else { continue };
            let compared = match (use_wilson, op) {
                (false, _) => m.value,
                (true, Op::AtLeast) => lo,
                (true, Op::AtMost) => hi,
            };
            let ok = op.holds(compared, t, 1e-12);
            let side = if op == Op::AtLeast { "lower" } else { "upper" };
            let shown = if use_wilson {
                format!(
                    "{what} {} ({}/{}; Wilson {:.0}% {side} {})",
                    pct(m.value),
                    m.count,
                    m.of,
                    self.conf * 100.0,
                    pct(compared)
                )
            } else {
                format!("{what} {} ({}/{})", pct(m.value), m.count, m.of)
            };
            let rel = match (ok, op) {
                (true, Op::AtLeast) => "≥ min",
                (false, Op::AtLeast) => "< min",
                (true, Op::AtMost) => "≤ max",
                (false, Op::AtMost) => "> max",
            };
            parts.push(format!("{shown} {rel} {}", pct(t)));
            passed &= ok;
            if v.op.is_none() || !ok {
                v.compared = Some(compared);
                v.op = Some(op);
                v.threshold = Some(t);
                v.unit = Some(Unit::Fraction);
            }
        }
        v.passed = passed;
        v.message = parts.join("; ");
        v
    }

    fn regression(&self, rule: &Rule, x: &rules::Regression, attack: &str, norm: Norm) -> Vec<RuleVerdict> {
        let Some(base) = self.baseline else {
            let mut v = verdict(rule, rule.label(), x.eps);
            v.message = "no baseline report given (--baseline)".into();
            return vec![v];
        };
        let limits = Limits {
            points: x.max_decrease_points,
            relative: x.max_decrease_relative,
            names: [("max_decrease_points", "decrease "), ("max_decrease_relative", "relative decrease ")],
            separator: "; ",
        };
        let change = |label: String, eps: Option<f64>, what: &str, now: Option<Measured>, then: Option<Measured>| {
            let mut v = verdict(rule, label, eps);
            let (Some(now), Some(then)) = (now, then) else {
                let missing = if now.is_none() { "not in the report" } else { "not in the baseline report" };
                v.message = format!("{what}: {missing}");
                return v;
            };
            let points = (then.value - now.value) * 100.0;
            let relative = if then.value > 0.0 { (then.value - now.value) / then.value } else { 0.0 };
            v.value = Some(now.value);
            v.baseline = Some(then.value);
            let head = format!(
                "{what} {} → {} ({:+.2} pp, {:+.1}%)",
                pct(then.value),
                pct(now.value),
                -points,
                -relative * 100.0
            );
            decrease(&mut v, head, points, relative, &limits);
            v
        };
        if x.of == Compared::CleanAccuracy {
            let (now, then) = (Measured::clean(self.report), Measured::clean(base));
            return vec![change(rule.label(), None, "clean accuracy", Some(now), Some(then))];
        }
        let grid: Vec<f64> = x.eps.map_or_else(|| self.report.eps.clone(), |e| vec![e]);
        grid.into_iter()
            .map(|eps| {
                let label =
                    if x.eps.is_some() { rule.label() } else { format!("{} eps={}", rule.label(), fmt_eps(eps)) };
                let what = format!("robust accuracy ({attack}, eps {})", fmt_eps(eps));
                let now = Measured::robust(self.report, attack, norm, eps);
                change(label, Some(eps), &what, now, Measured::robust(base, attack, norm, eps))
            })
            .collect()
    }

    fn check(&self, rule: &Rule, x: &rules::CheckRule) -> RuleVerdict {
        let checks = &self.report.checks;
        let want = x.check.as_deref().unwrap_or("all");
        let allow_warn = x.allow_warn.unwrap_or(true);
        let mut v = verdict(rule, rule.label(), None);
        let selected: Vec<_> = checks.iter().filter(|c| want == "all" || c.name == want).collect();
        if selected.is_empty() {
            v.message = if checks.is_empty() {
                "the integrity checks did not run (--no-checks?)".into()
            } else {
                let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
                format!("no check `{want}` in the report (checks: {})", names.join(", "))
            };
            return v;
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
        v
    }
}

/// A verdict that has not passed yet, with the rule's scope filled in.
fn verdict(rule: &Rule, name: String, eps: Option<f64>) -> RuleVerdict {
    let scope = rule.scope();
    let metric = rule.metric();
    RuleVerdict {
        name,
        metric,
        attack: scope
            .attack
            .map(str::to_string)
            .or_else(|| matches!(metric, Metric::RobustAccuracy | Metric::Drop).then(|| "worst".to_string())),
        norm: scope.norm,
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

/// Judges a decrease in points and relative terms against the limits given.
fn decrease(v: &mut RuleVerdict, head: String, points: f64, relative: f64, limits: &Limits<'_>) {
    let [(points_key, points_word), (relative_key, relative_word)] = limits.names;
    let mut ok = true;
    let mut parts = vec![head];
    if let Some(t) = limits.points {
        let pass = points <= t + 1e-9;
        ok &= pass;
        parts.push(format!("{points_word}{} {points_key} {t}", if pass { "≤" } else { ">" }));
        v.compared = Some(points);
        v.threshold = Some(t);
        v.unit = Some(Unit::Points);
    }
    if let Some(t) = limits.relative {
        let pass = relative <= t + 1e-12;
        ok &= pass;
        parts.push(format!("{relative_word}{} {relative_key} {t}", if pass { "≤" } else { ">" }));
        if !pass || v.threshold.is_none() {
            v.compared = Some(relative);
            v.threshold = Some(t);
            v.unit = Some(Unit::Relative);
        }
    }
    v.op = Some(Op::AtMost);
    v.passed = ok;
    v.message = parts.join(limits.separator);
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn keys_are_checked_per_metric_and_lines_point_at_them() {
        let text = "[[rule]]\nmetric = \"clean_accuracy\"\nmin = 0.5\n\n[[rule]]\nmetric = \"check\"\neps = 0.1\n";
        let e = Gate::parse(text).unwrap_err();
        assert!(e.starts_with("line 7: rule 2: `eps` does not apply to metric check"), "{e}");
        let e = Gate::parse("[[rule]]\nmetrc = \"clean_accuracy\"\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("metrc") && e.contains("missing `metric`"), "{e}");
        let e = Gate::parse("[[rule]]\nmetric = \"regression\"\nof = \"drop\"\nmax_decrease_points = 1\n").unwrap_err();
        assert!(e.contains("rule 1") && e.contains("drop"), "{e}");
        let e = Gate::parse("[[rule]]\nmetric = \"drop\"\neps = 0.1\nnorm = \"l1\"\nmax_points = 3\n").unwrap_err();
        assert!(e.contains("use \"linf\" or \"l2\""), "{e}");
        let g = Gate::parse("[[rule]]\nmetric = \"drop\"\neps = 0.1\nnorm = \"LINF\"\nmax_points = 3\n").unwrap();
        assert_eq!(g.rules[0].scope().norm, Some(Norm::Linf));
        assert_eq!(g.rules[0].label(), "drop[worst, linf, eps=0.1]");
    }
}
