//! What changed between two reports (`gauntlet diff`): accuracies, checks, gate rules, provenance.

use super::format::{fmt_eps, pct, short_hash};
use super::provenance::FileHash;
use super::{GateOutcome, Report};

fn change(old: f64, new: f64) -> String {
    format!("{:>8} → {:>8}  ({:+.2} pp)", pct(old), pct(new), (new - old) * 100.0)
}

/// The text `gauntlet diff` prints.
pub fn render(old: &Report, new: &Report, gates: Option<&(GateOutcome, GateOutcome)>) -> String {
    let mut s = String::new();
    s += &format!("clean accuracy             {}\n", change(old.clean_accuracy, new.clean_accuracy));
    if old.norm != new.norm {
        s += &format!("norm: {} → {} (robust accuracies are not comparable)\n", old.norm, new.norm);
    }
    if old.samples != new.samples {
        s += &format!("samples: {} → {}\n", old.samples, new.samples);
    }
    s += "robust accuracy:\n";
    let mut rows: Vec<(String, f64, Option<f64>, Option<f64>)> = Vec::new();
    let mut push = |key: String, eps: f64, o: Option<f64>, n: Option<f64>| {
        if let Some(r) = rows.iter_mut().find(|r| r.0 == key && (r.1 - eps).abs() < 1e-12) {
            r.2 = r.2.or(o);
            r.3 = r.3.or(n);
        } else {
            rows.push((key, eps, o, n));
        }
    };
    for r in &old.results {
        let n = new.results.iter().find(|x| x.attack == r.attack && (x.eps - r.eps).abs() < 1e-12);
        push(r.attack.clone(), r.eps, Some(r.robust_accuracy), n.map(|x| x.robust_accuracy));
    }
    for r in &new.results {
        push(r.attack.clone(), r.eps, None, Some(r.robust_accuracy));
    }
    for w in &old.worst_case {
        let n = new.worst_case.iter().find(|x| (x.eps - w.eps).abs() < 1e-12);
        push("worst".into(), w.eps, Some(w.robust_accuracy), n.map(|x| x.robust_accuracy));
    }
    for w in &new.worst_case {
        push("worst".into(), w.eps, None, Some(w.robust_accuracy));
    }
    for (attack, eps, o, n) in &rows {
        let key = format!("  {attack} {} {}", new.norm, fmt_eps(*eps));
        s += &match (o, n) {
            (Some(o), Some(n)) => format!("{key:<27}{}\n", change(*o, *n)),
            (Some(o), None) => format!("{key:<27}{:>8} → (not run)\n", pct(*o)),
            (None, Some(n)) => format!("{key:<27}(not run) → {:>8}\n", pct(*n)),
            (None, None) => String::new(),
        };
    }
    let mut check_lines = Vec::new();
    for c in &new.checks {
        match old.checks.iter().find(|o| o.name == c.name) {
            Some(o) if o.status != c.status => {
                check_lines.push(format!("  {}: {} → {} ({})", c.name, o.status.name(), c.status.name(), c.detail))
            }
            Some(_) => {}
            None => check_lines.push(format!("  {}: (not run) → {}", c.name, c.status.name())),
        }
    }
    for o in &old.checks {
        if !new.checks.iter().any(|c| c.name == o.name) {
            check_lines.push(format!("  {}: {} → (not run)", o.name, o.status.name()));
        }
    }
    if check_lines.is_empty() {
        s += "integrity checks: unchanged\n";
    } else {
        s += "integrity checks:\n";
        s += &(check_lines.join("\n") + "\n");
    }
    if let Some((go, gn)) = gates {
        s += &format!(
            "gate ({}): {} → {}\n",
            gn.file,
            if go.passed { "PASS" } else { "FAIL" },
            if gn.passed { "PASS" } else { "FAIL" }
        );
        for v in &gn.rules {
            let before = go.rules.iter().find(|o| o.name == v.name);
            let verdict = |p: bool| if p { "PASS" } else { "FAIL" };
            let mark = match before {
                Some(b) if b.passed && !v.passed => "  newly failing",
                Some(b) if !b.passed && v.passed => "  newly passing",
                _ => "",
            };
            s += &format!(
                "  {} → {}  {}: {}{mark}\n",
                before.map_or("-", |b| verdict(b.passed)),
                verdict(v.passed),
                v.name,
                v.message
            );
        }
        for o in &go.rules {
            if !gn.rules.iter().any(|v| v.name == o.name) {
                s += &format!(
                    "  {} → -  {}: only in the earlier report\n",
                    if o.passed { "PASS" } else { "FAIL" },
                    o.name
                );
            }
        }
    }
    match (&old.provenance, &new.provenance) {
        (Some(po), Some(pn)) => {
            let same = |a: &[FileHash], b: &[FileHash]| {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.sha256 == y.sha256)
            };
            s += &format!(
                "provenance: model files {}, dataset files {}, configuration {}",
                if same(&po.model_files, &pn.model_files) { "same" } else { "CHANGED" },
                if same(&po.dataset_files, &pn.dataset_files) { "same" } else { "CHANGED" },
                if po.config_sha256 == pn.config_sha256 {
                    "same".to_string()
                } else {
                    config_change(&po.config, &pn.config)
                },
            );
            if po.tool_version != pn.tool_version || po.git_commit != pn.git_commit {
                s += &format!(
                    ", tool {}{} → {}{}",
                    po.tool_version,
                    po.git_commit.as_deref().map(|c| format!(" ({})", short_hash(c))).unwrap_or_default(),
                    pn.tool_version,
                    pn.git_commit.as_deref().map(|c| format!(" ({})", short_hash(c))).unwrap_or_default()
                );
            }
            s += "\n";
        }
        _ => s += "provenance: not recorded in both reports\n",
    }
    s
}

/// `CHANGED (eps, attacks)`: the configuration keys whose values differ.
fn config_change(a: &serde_json::Value, b: &serde_json::Value) -> String {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return "CHANGED".into() };
    let mut keys: Vec<&str> = a.keys().chain(b.keys()).map(String::as_str).collect();
    keys.sort();
    keys.dedup();
    let differ: Vec<&str> = keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).collect();
    format!("CHANGED ({})", differ.join(", "))
}
