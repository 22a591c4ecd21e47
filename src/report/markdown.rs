//! GitHub-flavoured Markdown: a CI step summary of one report (`$GITHUB_STEP_SUMMARY`) and a
//! RobustBench-style leaderboard of several.

use std::fmt::Write;

use super::format::{fmt_eps, pct, same_eps, short_hash};
use super::{Metric, Norm, Report, RuleVerdict, Status, Unit};

/// Makes text safe inside a table cell: `|` and backslashes escaped, line breaks as `<br>`, other
/// control characters dropped, and `<` or `&` escaped where they would start an HTML tag or entity.
fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        match c {
            '\\' => out += "\\\\",
            '|' => out += "\\|",
            '\r' if next == Some('\n') => {}
            '\r' | '\n' => out += "<br>",
            '<' if next.is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?')) => out += "&lt;",
            '&' if next.is_some_and(|n| n.is_ascii_alphanumeric() || n == '#') => out += "&amp;",
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// Text as an inline code span inside a table cell (backticks cannot be escaped in a span: they
/// become quotes).
fn code(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| match c {
            '`' => '\'',
            '\n' | '\r' | '\t' => ' ',
            c => c,
        })
        .filter(|c| !c.is_control())
        .collect();
    format!("`{}`", clean.replace('|', "\\|"))
}

/// A hash shortened to 12 hex digits (with a `-dirty` or similar suffix kept).
fn short(hash: &str) -> String {
    let (h, rest) = hash.split_once('-').map_or((hash, None), |(h, r)| (h, Some(r)));
    let cut = short_hash(h);
    let dots = if cut.len() < h.len() { "…" } else { "" };
    match rest {
        Some(rest) => format!("{cut}{dots}-{rest}"),
        None => format!("{cut}{dots}"),
    }
}

fn row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

fn rule_line(aligns: &[&str]) -> String {
    format!("|{}|\n", aligns.join("|"))
}

/// The step summary of one report: gate verdict, rule table, clean and robust accuracy, integrity
/// checks and provenance.
pub fn summary(report: &Report) -> String {
    let mut s = String::new();
    match &report.gate {
        Some(g) if g.passed => {
            let _ = writeln!(s, "## ✅ PASS — Gauntlet release gate ({} rules passed)\n", g.rules.len());
        }
        Some(g) => {
            let failed = g.rules.iter().filter(|r| !r.passed).count();
            let _ = writeln!(s, "## ❌ FAIL — Gauntlet release gate ({failed} of {} rules failed)\n", g.rules.len());
        }
        None => s += "## Gauntlet robustness report — no gate\n\n",
    }
    let _ = writeln!(
        s,
        "Model {} ({} parameters) · data {} · {} samples · {} threat model, {} · {} protocol · seed {}\n",
        code(&report.model.source),
        report.model.parameters,
        code(&report.dataset.source),
        report.samples,
        report.norm,
        report.goal,
        report.protocol,
        report.seed
    );
    if report.model.preprocessing != "none" {
        let _ = writeln!(
            s,
            "Preprocessing inside the model: {} (ε is measured before it, in [0, 1] pixel space)\n",
            code(&report.model.preprocessing)
        );
    }
    if let Some(g) = &report.gate {
        s += "### Gate\n\n";
        let _ = write!(s, "Gate file {}", code(&g.file));
        if let Some(b) = &g.baseline {
            let _ = write!(s, ", baseline {}", code(b));
        }
        s += "\n\n";
        s += &row(&["rule", "value", "threshold", "verdict", "message"].map(String::from));
        s += &rule_line(&["---", "--:", "--:", ":-:", "---"]);
        for v in &g.rules {
            s += &row(&[
                cell(&v.name),
                cell(&rule_value(v)),
                cell(&rule_threshold(v)),
                if v.passed { "✅ pass" } else { "❌ fail" }.into(),
                cell(&v.message),
            ]);
        }
        s += "\n";
    }
    s += "### Accuracy\n\n";
    let _ = writeln!(
        s,
        "Clean accuracy: **{}** ({}/{})\n",
        pct(report.clean_accuracy),
        report.clean_correct,
        report.samples
    );
    if !report.results.is_empty() {
        let _ = writeln!(s, "Robust accuracy ({}, ε in pixel units):\n", report.norm);
        let mut header = vec!["attack".to_string()];
        header.extend(report.eps.iter().map(|&e| format!("ε={}", fmt_eps(e))));
        s += &row(&header);
        let mut aligns = vec!["---"];
        aligns.extend(report.eps.iter().map(|_| "--:"));
        s += &rule_line(&aligns);
        for attack in report.attacks() {
            let mut cells = vec![cell(attack)];
            for &e in &report.eps {
                let r = report.results.iter().find(|r| r.attack == attack && same_eps(r.eps, e));
                cells.push(r.map_or_else(|| "—".into(), |r| pct(r.robust_accuracy)));
            }
            s += &row(&cells);
        }
        let mut cells = vec!["**worst case**".to_string()];
        for &e in &report.eps {
            let w = report.worst_case.iter().find(|w| same_eps(w.eps, e));
            cells.push(w.map_or_else(|| "—".into(), |w| format!("**{}**", pct(w.robust_accuracy))));
        }
        s += &row(&cells);
        s += "\n";
    }
    if !report.certified.is_empty() {
        certified(&mut s, report);
    }
    s += "### Integrity checks\n\n";
    if report.checks.is_empty() {
        s += "The integrity checks did not run.\n\n";
    } else {
        s += &row(&["status", "check", "detail"].map(String::from));
        s += &rule_line(&[":-:", "---", "---"]);
        for c in &report.checks {
            let status = match c.status {
                Status::Pass => "✅ PASS",
                Status::Warn => "⚠️ WARN",
                Status::Fail => "❌ FAIL",
            };
            s += &row(&[status.into(), code(&c.name), cell(&c.detail)]);
        }
        s += "\n";
    }
    s += "### Provenance\n\n";
    match &report.provenance {
        None => {
            let _ = writeln!(s, "Not recorded. Tool {} {}.", report.tool.name, report.tool.version);
        }
        Some(p) => {
            s += &row(&["what", "value"].map(String::from));
            s += &rule_line(&["---", "---"]);
            for (kind, files) in [("model", &p.model_files), ("dataset", &p.dataset_files)] {
                for f in files {
                    s += &row(&[
                        format!("{kind} {}", code(&f.path)),
                        format!("sha256 {} ({} bytes)", code(&short(&f.sha256)), f.bytes),
                    ]);
                }
            }
            s += &row(&["config".into(), format!("sha256 {}", code(&short(&p.config_sha256)))]);
            s += &row(&["tool".into(), cell(&format!("{} {}", report.tool.name, p.tool_version))]);
            s += &row(&["git commit".into(), p.git_commit.as_deref().map_or_else(|| "—".into(), |c| code(&short(c)))]);
            s += &row(&["run".into(), cell(&format!("{} → {}", p.started_at, p.finished_at))]);
        }
    }
    s
}

/// The certified accuracy per method and ε beside the attacks' robust accuracy.
fn certified(s: &mut String, report: &Report) {
    *s += "### Certified robustness\n\n";
    *s += "Certified accuracy is a proven lower bound on the true robust accuracy; the attacks' robust accuracy \
           is an upper bound. The gap is how far apart the two bounds lie.\n\n";
    *s += &row(&["method", "norm", "ε", "certified accuracy", "attacks' robust accuracy", "gap (pp)", "open", "time"]
        .map(String::from));
    *s += &rule_line(&["---", "---", "--:", "--:", "--:", "--:", "--:", "--:"]);
    for c in &report.certified {
        *s += &row(&[
            cell(&c.method),
            c.norm.to_string(),
            fmt_eps(c.eps),
            format!("**{}** ({}/{})", pct(c.certified_accuracy), c.certified, report.samples),
            pct(c.robust_accuracy),
            format!("{:.2}", c.gap * 100.0),
            c.open.to_string(),
            format!("{:.1} s", c.time_s),
        ]);
    }
    *s += "\n";
}

/// The measured value of a rule in its unit.
fn rule_value(v: &RuleVerdict) -> String {
    let Some(x) = v.value else { return "—".into() };
    match v.metric {
        Metric::CleanAccuracy | Metric::RobustAccuracy | Metric::CertifiedAccuracy => match v.compared {
            Some(c) if (c - x).abs() > 1e-12 => format!("{} (judged {})", pct(x), pct(c)),
            _ => pct(x),
        },
        Metric::Drop => format!("{x:.2} pp"),
        Metric::Regression => match v.baseline {
            Some(b) => format!("{} → {}", pct(b), pct(x)),
            None => pct(x),
        },
        Metric::Check => "—".into(),
    }
}

/// The bound a rule held its value against, in its unit.
fn rule_threshold(v: &RuleVerdict) -> String {
    let Some(t) = v.threshold else { return "—".into() };
    let op = v.op.map_or(String::new(), |o| format!("{} ", o.symbol()));
    match v.metric {
        Metric::CleanAccuracy | Metric::RobustAccuracy | Metric::CertifiedAccuracy => format!("{op}{}", pct(t)),
        Metric::Drop | Metric::Regression => match v.unit {
            Some(Unit::Points) => format!("{op}{t} pp"),
            Some(Unit::Relative) => format!("{op}{} relative", pct(t)),
            _ => format!("{op}{t}"),
        },
        Metric::Check => "—".into(),
    }
}

/// A RobustBench-style leaderboard of several reports: rank, model, clean accuracy, robust accuracy
/// per attack at each ε, the worst case per ε and the run time, sorted by the worst-case robust
/// accuracy at the largest ε (descending; ties by clean accuracy, then name).
pub fn leaderboard(entries: &[(String, &Report)]) -> String {
    // Columns: every (norm, ε) and every (attack, norm, ε) that occurs, in order of appearance,
    // ε ascending within a norm.
    let mut budgets: Vec<(Norm, f64)> = Vec::new();
    let mut cells: Vec<(String, Norm, f64)> = Vec::new();
    for (_, r) in entries {
        for w in &r.worst_case {
            if !budgets.iter().any(|(n, e)| *n == w.norm && same_eps(*e, w.eps)) {
                budgets.push((w.norm, w.eps));
            }
        }
        for res in &r.results {
            if !cells.iter().any(|(a, n, e)| *a == res.attack && *n == res.norm && same_eps(*e, res.eps)) {
                cells.push((res.attack.clone(), res.norm, res.eps));
            }
        }
    }
    let mut norms: Vec<Norm> = Vec::new();
    for (n, _) in &budgets {
        if !norms.contains(n) {
            norms.push(*n);
        }
    }
    let norm_order = |n: &Norm| norms.iter().position(|m| m == n).unwrap_or(usize::MAX);
    budgets.sort_by(|a, b| norm_order(&a.0).cmp(&norm_order(&b.0)).then(a.1.total_cmp(&b.1)));
    let attack_order: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for (a, _, _) in &cells {
            if !v.contains(a) {
                v.push(a.clone());
            }
        }
        v
    };
    cells.sort_by(|a, b| {
        let pos = |x: &str| attack_order.iter().position(|y| y == x);
        pos(&a.0).cmp(&pos(&b.0)).then(norm_order(&a.1).cmp(&norm_order(&b.1))).then(a.2.total_cmp(&b.2))
    });
    let mixed = norms.len() > 1;
    let eps_label =
        |n: &Norm, e: f64| if mixed { format!("{n} ε={}", fmt_eps(e)) } else { format!("ε={}", fmt_eps(e)) };
    // The ranking budget: the largest ε of the first norm.
    let key_budget = budgets.iter().rfind(|(n, _)| Some(n) == norms.first()).cloned();
    let worst = |r: &Report, n: &Norm, e: f64| {
        r.worst_case.iter().find(|w| w.norm == *n && same_eps(w.eps, e)).map(|w| w.robust_accuracy)
    };
    let mut order: Vec<(&String, &Report, Option<f64>)> =
        entries.iter().map(|(name, r)| (name, *r, key_budget.as_ref().and_then(|(n, e)| worst(r, n, *e)))).collect();
    order.sort_by(|a, b| {
        let key = |x: Option<f64>| x.unwrap_or(f64::NEG_INFINITY);
        key(b.2).total_cmp(&key(a.2)).then(b.1.clean_accuracy.total_cmp(&a.1.clean_accuracy)).then(a.0.cmp(b.0))
    });
    let mut header = vec!["rank".to_string(), "model".into(), "clean".into()];
    header.extend(cells.iter().map(|(a, n, e)| format!("{} {}", cell(a), eps_label(n, *e))));
    header.extend(budgets.iter().map(|(n, e)| format!("worst {}", eps_label(n, *e))));
    header.push("time".into());
    let mut s = String::new();
    if let Some((n, e)) = &key_budget {
        let _ = writeln!(s, "Ranked by worst-case robust accuracy at {n} ε={}.\n", fmt_eps(*e));
    }
    s += &row(&header);
    let mut aligns = vec!["--:", "---"];
    aligns.extend(std::iter::repeat_n("--:", header.len() - 2));
    s += &rule_line(&aligns);
    for (rank, (name, r, _)) in order.iter().enumerate() {
        let mut line = vec![(rank + 1).to_string(), cell(name), pct(r.clean_accuracy)];
        for (a, n, e) in &cells {
            let v = r.results.iter().find(|x| x.attack == *a && x.norm == *n && same_eps(x.eps, *e));
            line.push(v.map_or_else(|| "—".into(), |v| pct(v.robust_accuracy)));
        }
        for (n, e) in &budgets {
            line.push(worst(r, n, *e).map_or_else(|| "—".into(), |w| format!("**{}**", pct(w))));
        }
        line.push(format!("{:.1} s", r.run.time_s));
        s += &row(&line);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_escaped() {
        assert_eq!(cell("a|b\\c"), "a\\|b\\\\c");
        assert_eq!(cell("x\r\ny\nz\u{7}"), "x<br>y<br>z");
        assert_eq!(cell("p < q, <tag> </x> &amp; a & b"), "p < q, &lt;tag> &lt;/x> &amp;amp; a & b");
        assert_eq!(code("a|`b`\n"), "`a\\|'b' `");
        assert_eq!(short("0123456789abcdef-dirty"), "0123456789ab…-dirty");
        assert_eq!(short("abc"), "abc");
    }
}
