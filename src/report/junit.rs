//! JUnit XML for CI test reporters (Jenkins, GitLab, GitHub Actions test-report actions).
//!
//! Each gate rule becomes a test case of the suite `gauntlet.gate` and each integrity check one of
//! `gauntlet.checks`: a failing rule or a FAIL check is a `<failure>` whose message carries the
//! numbers; a WARN check passes with its detail in the suite's `<system-out>`. A report with neither a gate nor
//! checks gives one suite with a single passing test case, `evaluation`, holding the summary.
//! Certified rows (`--certify`) become passing test cases of `gauntlet.certified`, one per method
//! and ε, with the numbers in the suite's `<system-out>`.
//! The layout follows the common JUnit schema (`tests/junit/junit.xsd`).

use std::fmt::Write;

use super::format::{fmt_eps, pct};
use super::{Check, GateOutcome, Report, RuleVerdict, Status};

/// Optional extras of the XML.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Each suite's `hostname` attribute (default `localhost`, as Ant's schema asks when unknown).
    pub hostname: Option<String>,
}

/// The report as JUnit XML (no hostname).
pub fn render(report: &Report) -> String {
    render_with(report, &Options::default())
}

/// The report as JUnit XML, with options.
pub fn render_with(report: &Report, options: &Options) -> String {
    let mut suites = Vec::new();
    if let Some(gate) = &report.gate {
        suites.push(gate_suite(gate));
    }
    if !report.checks.is_empty() {
        suites.push(checks_suite(&report.checks));
    }
    if suites.is_empty() {
        suites.push(Suite {
            name: "gauntlet",
            properties: Vec::new(),
            cases: vec![Case {
                name: "evaluation".into(),
                classname: "gauntlet",
                time: report.run.time_s,
                failure: None,
                out: Some(summary(report)),
            }],
            time: report.run.time_s,
        });
    }
    if !report.certified.is_empty() {
        suites.push(certified_suite(report));
    }
    // Every suite carries the report's identity (reporters show suites on their own).
    for s in &mut suites {
        s.properties.splice(0..0, properties(report));
    }
    // Ant's schema wants a timestamp without a time zone: the time is UTC.
    let timestamp = report
        .provenance
        .as_ref()
        .map(|p| p.started_at.trim_end_matches('Z').to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| super::provenance::now().trim_end_matches('Z').to_string());
    let hostname = options.hostname.clone().unwrap_or_else(|| "localhost".into());
    // The layout satisfies both the Ant/windyroad schema (no attributes on <testsuites>; package,
    // id, timestamp, hostname, properties, system-out and system-err on every suite; nothing but a
    // failure inside a test case) and Jenkins' and GitLab's readers.
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for (id, s) in suites.iter().enumerate() {
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" package=\"gauntlet\" id=\"{id}\" timestamp=\"{}\" hostname=\"{}\" tests=\"{}\" \
             failures=\"{}\" errors=\"0\" skipped=\"0\" time=\"{}\">",
            attr(s.name),
            attr(&timestamp),
            attr(&hostname),
            s.cases.len(),
            s.failures(),
            seconds(s.time)
        );
        if s.properties.is_empty() {
            x += "    <properties/>\n";
        } else {
            x += "    <properties>\n";
            for (k, v) in &s.properties {
                let _ = writeln!(x, "      <property name=\"{}\" value=\"{}\"/>", attr(k), attr(v));
            }
            x += "    </properties>\n";
        }
        for c in &s.cases {
            let _ = write!(
                x,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\"",
                attr(&c.name),
                attr(c.classname),
                seconds(c.time)
            );
            let Some(f) = &c.failure else {
                x += "/>\n";
                continue;
            };
            let _ = writeln!(
                x,
                ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
                attr(&f.message),
                attr(f.kind),
                text(&f.body)
            );
        }
        // What passing cases have to say goes to the suite's output, one line per case.
        let out: Vec<String> =
            s.cases.iter().filter_map(|c| c.out.as_ref().map(|o| format!("{}: {o}", c.name))).collect();
        let _ = writeln!(x, "    <system-out>{}</system-out>\n    <system-err/>", text(&out.join("\n")));
        x += "  </testsuite>\n";
    }
    x += "</testsuites>\n";
    x
}

struct Suite {
    name: &'static str,
    properties: Vec<(String, String)>,
    cases: Vec<Case>,
    time: f64,
}

impl Suite {
    fn failures(&self) -> usize {
        self.cases.iter().filter(|c| c.failure.is_some()).count()
    }
}

struct Case {
    name: String,
    classname: &'static str,
    time: f64,
    failure: Option<Failure>,
    out: Option<String>,
}

struct Failure {
    message: String,
    kind: &'static str,
    body: String,
}

fn gate_suite(gate: &GateOutcome) -> Suite {
    let mut properties = vec![("gate.file".to_string(), gate.file.clone())];
    if let Some(b) = &gate.baseline {
        properties.push(("gate.baseline".into(), b.clone()));
    }
    properties.push(("gate.passed".into(), gate.passed.to_string()));
    let cases = gate
        .rules
        .iter()
        .map(|v| Case {
            name: v.name.clone(),
            classname: "gauntlet.gate",
            time: 0.0,
            failure: (!v.passed).then(|| Failure {
                message: format!("{}: {}", v.name, v.message),
                kind: "gate",
                body: rule_details(v, gate),
            }),
            out: v.passed.then(|| v.message.clone()),
        })
        .collect();
    Suite { name: "gauntlet.gate", properties, cases, time: 0.0 }
}

/// The numbers behind a verdict, one `key: value` per line.
fn rule_details(v: &RuleVerdict, gate: &GateOutcome) -> String {
    let num = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |x| format!("{x}"));
    let mut lines = vec![format!("rule: {}", v.name), format!("metric: {}", v.metric.name())];
    if let Some(a) = &v.attack {
        lines.push(format!("attack: {a}"));
    }
    if let Some(n) = &v.norm {
        lines.push(format!("norm: {n}"));
    }
    if let Some(e) = v.eps {
        lines.push(format!("eps: {}", fmt_eps(e)));
    }
    lines.push(format!("value: {}", num(v.value)));
    lines.push(format!("compared: {}", num(v.compared)));
    lines.push(format!("threshold: {}{}", v.op.map_or(String::new(), |o| format!("{} ", o.text())), num(v.threshold)));
    lines.push(format!("baseline: {}", num(v.baseline)));
    if let Some(b) = &gate.baseline {
        lines.push(format!("baseline report: {b}"));
    }
    lines.push(format!("gate file: {}", gate.file));
    lines.push(format!("message: {}", v.message));
    lines.join("\n") + "\n"
}

fn checks_suite(checks: &[Check]) -> Suite {
    let cases = checks
        .iter()
        .map(|c| Case {
            name: c.name.clone(),
            classname: "gauntlet.checks",
            time: 0.0,
            failure: (c.status == Status::Fail).then(|| Failure {
                message: format!("{}: {}", c.name, c.detail),
                kind: "check",
                body: format!("check: {}\nstatus: FAIL\ndetail: {}\nsee docs/CHECKS.md\n", c.name, c.detail),
            }),
            out: (c.status != Status::Fail).then(|| format!("{}: {}", c.status.name(), c.detail)),
        })
        .collect();
    Suite { name: "gauntlet.checks", properties: Vec::new(), cases, time: 0.0 }
}

/// One passing test case per certified row: the proven lower bound beside the attacks' upper bound
/// is information, not a verdict.
fn certified_suite(r: &Report) -> Suite {
    let cases: Vec<Case> = r
        .certified
        .iter()
        .map(|c| Case {
            name: format!("{} {} eps {}", c.method, c.norm, fmt_eps(c.eps)),
            classname: "gauntlet.certified",
            time: c.time_s,
            failure: None,
            out: Some(format!(
                "certified accuracy {} ({}/{}), attacks' robust accuracy {}, gap {:.2} pp, {} broken, {} open",
                pct(c.certified_accuracy),
                c.certified,
                r.samples,
                pct(c.robust_accuracy),
                c.gap * 100.0,
                c.broken,
                c.open
            )),
        })
        .collect();
    let time = cases.iter().map(|c| c.time).sum();
    Suite { name: "gauntlet.certified", properties: Vec::new(), cases, time }
}

/// The report's identity as suite properties.
fn properties(r: &Report) -> Vec<(String, String)> {
    let mut p = vec![
        ("model".to_string(), r.model.source.clone()),
        ("dataset".into(), r.dataset.source.clone()),
        ("samples".into(), r.samples.to_string()),
        ("norm".into(), r.norm.to_string()),
        ("eps".into(), r.eps.iter().map(|&e| fmt_eps(e)).collect::<Vec<_>>().join(",")),
        ("goal".into(), r.goal.name().into()),
        ("protocol".into(), r.protocol.name().into()),
        ("seed".into(), r.seed.to_string()),
        ("clean_accuracy".into(), format!("{}", r.clean_accuracy)),
        ("tool".into(), format!("{} {}", r.tool.name, r.tool.version)),
    ];
    if let Some(prov) = &r.provenance {
        p.push(("config_sha256".into(), prov.config_sha256.clone()));
        for (kind, files) in [("model_file", &prov.model_files), ("dataset_file", &prov.dataset_files)] {
            for f in files {
                p.push((format!("{kind}.sha256"), format!("{} {}", f.sha256, f.path)));
            }
        }
        if let Some(c) = &prov.git_commit {
            p.push(("git_commit".into(), c.clone()));
        }
    }
    p
}

/// The plain summary of an evaluation without gate or checks.
fn summary(r: &Report) -> String {
    let mut s = format!(
        "clean accuracy {} ({}/{}) on {} ({} samples)\n",
        pct(r.clean_accuracy),
        r.clean_correct,
        r.samples,
        r.dataset.source,
        r.samples
    );
    for res in &r.results {
        let _ = writeln!(
            s,
            "{} {} eps {}: robust accuracy {}",
            res.attack,
            res.norm,
            fmt_eps(res.eps),
            pct(res.robust_accuracy)
        );
    }
    for w in &r.worst_case {
        let _ = writeln!(s, "worst case {} eps {}: robust accuracy {}", w.norm, fmt_eps(w.eps), pct(w.robust_accuracy));
    }
    s
}

/// Seconds as JUnit writes them: a plain decimal, never negative or non-finite.
fn seconds(t: f64) -> String {
    format!("{:.3}", if t.is_finite() && t > 0.0 { t } else { 0.0 })
}

/// Whether XML 1.0 allows the character at all (Char production; Rust chars are never surrogates).
fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Escapes element text; drops characters XML 1.0 cannot carry.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|&c| allowed(c)) {
        match c {
            '&' => out += "&amp;",
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            // A bare CR would be normalised to LF by the parser.
            '\r' => out += "&#13;",
            _ => out.push(c),
        }
    }
    out
}

/// Escapes an attribute value (double-quoted); tabs and line breaks are kept as character
/// references, which attribute-value normalisation would otherwise turn into spaces.
fn attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|&c| allowed(c)) {
        match c {
            '&' => out += "&amp;",
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            '"' => out += "&quot;",
            '\'' => out += "&apos;",
            '\t' => out += "&#9;",
            '\n' => out += "&#10;",
            '\r' => out += "&#13;",
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_strips() {
        assert_eq!(text("a<b & c>d\u{1}\u{FFFE}é"), "a&lt;b &amp; c&gt;dé");
        assert_eq!(attr("\"x\" 'y'\n\t\u{0}"), "&quot;x&quot; &apos;y&apos;&#10;&#9;");
        assert_eq!(text("]]>"), "]]&gt;");
        assert_eq!(seconds(f64::NAN), "0.000");
        assert_eq!(seconds(1.23456), "1.235");
    }
}
