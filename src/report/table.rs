//! The human-readable table printed on stdout.

use super::format::{fmt_eps, pct};
use super::{AttackResult, Protocol, Report, Stats};

impl Report {
    /// The human-readable table.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
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
                r.norm.to_string(),
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
                w.norm.to_string(),
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
        for attack in self.attacks() {
            let mine: Vec<&AttackResult> = self.results.iter().filter(|x| x.attack == attack).collect();
            let fe: u64 = mine.iter().map(|x| x.forward_equivalents).sum();
            let attacked: usize = mine.iter().map(|x| x.attacked).sum();
            let secs: f64 = mine.iter().map(|x| x.time_s).sum();
            s += &format!(
                "{}: {fe} forward-equivalents, {attacked} sample-attacks in {secs:.1}s ({:.0} samples/s, {:.0} forward-equivalents/s)\n",
                attack,
                attacked as f64 / secs.max(1e-9),
                fe as f64 / secs.max(1e-9)
            );
        }
        if self.attacks().len() > 1 {
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
        if !self.certified.is_empty() {
            s += "\ncertified (proven lower bound ≤ true robust accuracy ≤ the attacks' upper bound):\n";
            for c in &self.certified {
                s += &format!(
                    "  {} {} eps {}: certified {} ({}/{}) | attacks {} | gap {:.2} pp | open {} | {:.1}s\n",
                    c.method,
                    c.norm,
                    fmt_eps(c.eps),
                    pct(c.certified_accuracy),
                    c.certified,
                    self.samples,
                    pct(c.robust_accuracy),
                    c.gap * 100.0,
                    c.open,
                    c.time_s
                );
            }
        }
        if !self.checks.is_empty() {
            s += "\nintegrity checks:\n";
            for c in &self.checks {
                s += &format!("  {} {}: {}\n", c.status.name(), c.name, c.detail);
            }
        }
        s += &format!("\nrobust = correct and unbroken / all {} samples; success = broken / clean-correct; drop in percentage points\n", self.samples);
        if self.protocol == Protocol::Cascade {
            s += "cascade: each attack ran on the samples the earlier ones left robust; its robust column is after it and all earlier attacks\n";
        }
        s += &format!("time {:.1}s on {} ({} threads)\n", self.run.time_s, self.run.device, self.run.threads);
        s
    }
}
