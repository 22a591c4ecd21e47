//! `gauntlet run`: one evaluation, its outputs, and the release gate's verdict as the exit status.

use crate::gate::Gate;
use crate::report::dir::check_dir;
use crate::report::write::write_atomic;
use crate::report::Report;
use crate::run::{Outcome, RunConfig, Shard};
use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::cli::progress::Bar;
use crate::cli::{ExitStatus, Format, RunArgs};

pub fn run(mut args: RunArgs) -> anyhow::Result<ExitStatus> {
    // Examples are kept for the HTML report even without --save-adversarial.
    let keep = args.save_adversarial.unwrap_or(if args.report_dir.is_some() { 8 } else { 0 });
    let mut config = args.eval.run_config(args.model.clone(), keep)?;
    let shard = Shard::resolve(args.shard.as_deref(), args.shards, |k| std::env::var(k).ok())?;
    if let Some((shard, from)) = shard {
        let Some(dir) = &args.report_dir else {
            bail!("--shard/--shards need --report-dir: `gauntlet merge` reads the shards' report folders");
        };
        if args.gate.is_some() {
            bail!("--gate judges a whole run, not shard {shard}: pass it to `gauntlet merge`");
        }
        if !config.certify.is_empty() {
            bail!("--certify runs on a whole run, not shard {shard}: certify without --shard");
        }
        let text = dir.to_string_lossy();
        if text.contains("{shard}") {
            args.report_dir = Some(PathBuf::from(text.replace("{shard}", &shard.index.to_string())));
        } else if let Some(var) = from {
            bail!(
                "--report-dir {text}: the shard index comes from {var}, so the folder must contain {{shard}} (e.g. results/shard-{{shard}}) to keep the shards apart"
            );
        }
        config.shard = Some(shard);
    }
    config.checkpoint = args.report_dir.clone();
    config.resume = args.resume;
    crate::cli::interrupt::install();
    // Everything that can fail on bad input fails before the evaluation starts.
    let verdict = Verdict::read(args.gate.as_deref(), args.baseline.as_deref(), &config)?;
    if let Some(dir) = &args.report_dir {
        check_dir(dir)?;
    }
    if let Some(path) = &args.output {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            bail!("{}: the folder does not exist", path.display());
        }
    }
    let out = config.evaluate(&Bar::new(args.eval.quiet))?;
    let outputs = Outputs {
        report_dir: args.report_dir.as_deref(),
        output: args.output.as_deref(),
        save_adversarial: args.save_adversarial.is_some(),
        format: args.format,
        strict: args.eval.strict,
        exit_zero: args.exit_zero,
    };
    finish(out, &verdict, &outputs)
}

/// The release gate and its baseline, read and checked against the configuration before any
/// work is done.
pub struct Verdict {
    gate: Option<(Gate, String)>,
    baseline: Option<(String, Report)>,
}

impl Verdict {
    pub fn read(gate: Option<&Path>, baseline: Option<&Path>, config: &RunConfig) -> anyhow::Result<Verdict> {
        let gate = match gate {
            Some(path) => {
                let g = Gate::read(path)?;
                g.check_against(&config.attack_names(), config.norm, &config.eps, baseline.is_some())?;
                g.check_certify(&config.certify.iter().map(|m| m.name()).collect::<Vec<_>>())?;
                Some((g, path.display().to_string()))
            }
            None => None,
        };
        let baseline = match baseline {
            Some(path) => Some((path.to_str().unwrap_or("baseline").to_string(), Report::read(path)?)),
            None => None,
        };
        Ok(Verdict { gate, baseline })
    }
}

/// Where a finished evaluation goes and how its exit status is decided.
pub struct Outputs<'a> {
    pub report_dir: Option<&'a Path>,
    pub output: Option<&'a Path>,
    pub save_adversarial: bool,
    pub format: Format,
    pub strict: bool,
    pub exit_zero: bool,
}

/// Judges a finished evaluation by the gate, writes its outputs and prints it; the exit status.
pub fn finish(mut out: Outcome, verdict: &Verdict, to: &Outputs<'_>) -> anyhow::Result<ExitStatus> {
    for note in &out.notes {
        eprintln!("note: {note}");
    }
    if let Some((g, file)) = &verdict.gate {
        if let Some((name, b)) = &verdict.baseline {
            let data = |r: &Report| r.provenance.as_ref().map(|p| p.dataset_files.clone());
            if data(b) != data(&out.report) || b.samples != out.report.samples {
                eprintln!(
                    "warning: the baseline {name} was measured on other data; regression rules compare unlike numbers"
                );
            }
        }
        let base = verdict.baseline.as_ref().map(|(name, b)| (name.as_str(), b));
        out.report.gate = Some(g.evaluate(file, &out.report, base));
    }
    if let Some(path) = to.output {
        let report = &out.report;
        let text = if path.extension().is_some_and(|e| e == "txt") { report.to_table() } else { report.to_json() };
        write_atomic(path, text.as_bytes())?;
    }
    if let Some(dir) = to.report_dir {
        out.write_dir(dir, to.save_adversarial)?;
    }
    let report = &out.report;
    match to.format {
        _ if crate::cli::silent() => {}
        Format::Table => print!("{}", report.to_table()),
        Format::Json => print!("{}", report.to_json()),
    }
    let mut status = ExitStatus::Ok;
    if let Some(g) = &report.gate {
        for v in &g.rules {
            eprintln!("{} {}: {}", v.status(), v.name, v.message);
        }
        let failed = g.failed().count();
        if failed == 0 {
            eprintln!("gate passed: {} rule(s)", g.rules.len());
        } else {
            eprintln!("gate FAILED: {failed} of {} rule(s)", g.rules.len());
            status = ExitStatus::Gate;
        }
    }
    let failed = report.failed_checks();
    if !failed.is_empty() {
        eprintln!("integrity check failed: {} (see docs/CHECKS.md)", failed.join(", "));
        if to.strict {
            status = ExitStatus::Unreliable;
        }
    }
    if status != ExitStatus::Ok && to.exit_zero {
        eprintln!("--exit-zero: exiting 0 instead of {}", status.code());
        status = ExitStatus::Ok;
    }
    Ok(status)
}
