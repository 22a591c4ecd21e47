//! `gauntlet bench`: the same evaluation on several models, then a leaderboard ranked by worst-case
//! robust accuracy at the largest ε (RobustBench's convention).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::report::dir::{check_dir, REPORT_JSON};
use crate::report::write::write_atomic;
use crate::report::{html, markdown, Report};

use crate::eval::Progress;

use crate::cli::progress::Bar;
use crate::cli::{BenchArgs, ExitStatus};

/// One row of `leaderboard.json`.
#[derive(Debug, Serialize)]
struct Entry<'a> {
    rank: usize,
    model: &'a str,
    report: String,
    clean_accuracy: f64,
    /// Worst-case robust accuracy per ε.
    worst_case: Vec<Point>,
    time_s: f64,
}

#[derive(Debug, Serialize)]
struct Point {
    eps: f64,
    robust_accuracy: f64,
}

/// A short, unique name per model: the file stem, or the shipped model's name (`mnist-robust`
/// for `builtin:mnist-robust`).
fn names(models: &[PathBuf]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in models {
        let base = match crate::models::zoo::find(m) {
            Some(entry) => entry.name.to_string(),
            None => m.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into()),
        };
        let base: String =
            base.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        let mut name = base.clone();
        let mut k = 2;
        while out.contains(&name) {
            name = format!("{base}-{k}");
            k += 1;
        }
        out.push(name);
    }
    out
}

/// The worst-case robust accuracy at the largest ε, the ranking key.
pub fn rank_key(r: &Report) -> f64 {
    r.worst_case.last().map_or(r.clean_accuracy, |w| w.robust_accuracy)
}

/// Sorts labelled reports best first: worst-case robust accuracy at the largest ε, then clean accuracy.
pub fn ranked<'a>(entries: &[(String, &'a Report)]) -> Vec<(String, &'a Report)> {
    let mut v: Vec<(String, &Report)> = entries.to_vec();
    v.sort_by(|a, b| rank_key(b.1).total_cmp(&rank_key(a.1)).then(b.1.clean_accuracy.total_cmp(&a.1.clean_accuracy)));
    v
}

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitStatus> {
    let dir: &Path = &args.report_dir;
    check_dir(dir)?;
    // Resolve every model's configuration first, so a bad flag or path fails before hours of work.
    let labels = names(&args.models);
    let mut configs = Vec::new();
    for m in &args.models {
        let c = args.eval.run_config(Some(m.clone()), 8)?;
        if c.model.as_deref().is_some_and(crate::models::zoo::needs_dataset) && c.dataset.is_none() {
            anyhow::bail!("--dataset is required with a model other than the shipped one ({})", m.display());
        }
        if let Some(p) = c.model.as_ref().filter(|p| crate::models::zoo::find(p).is_none()) {
            if !p.is_file() {
                anyhow::bail!("{}: no such model file", p.display());
            }
        }
        configs.push(c);
    }
    let mut reports = Vec::new();
    for (c, label) in configs.into_iter().zip(&labels) {
        let bar = Bar::new(args.eval.quiet);
        bar.stage(&format!("evaluating {label}"));
        let mut out = c.evaluate(&bar)?;
        for note in &out.notes {
            eprintln!("note: {note}");
        }
        out.write_dir(&dir.join(label), false)?;
        reports.push(out.report);
    }
    let entries: Vec<(String, &Report)> = labels.iter().cloned().zip(reports.iter()).collect();
    let board = ranked(&entries);
    let md = markdown::leaderboard(&board);
    write_atomic(&dir.join("leaderboard.md"), md.as_bytes())?;
    write_atomic(&dir.join("leaderboard.html"), html::leaderboard(&board).as_bytes())?;
    let json: Vec<Entry> = board
        .iter()
        .enumerate()
        .map(|(i, (label, r))| Entry {
            rank: i + 1,
            model: &r.model.source,
            report: format!("{label}/{REPORT_JSON}"),
            clean_accuracy: r.clean_accuracy,
            worst_case: r.worst_case.iter().map(|w| Point { eps: w.eps, robust_accuracy: w.robust_accuracy }).collect(),
            time_s: r.run.time_s,
        })
        .collect();
    write_atomic(
        &dir.join("leaderboard.json"),
        (serde_json::to_string_pretty(&json).expect("entries serialize") + "\n").as_bytes(),
    )?;
    print!("{md}");
    Ok(ExitStatus::Ok)
}
