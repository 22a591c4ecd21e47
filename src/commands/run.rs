//! `gauntlet run`: one evaluation, its outputs, and the release gate's verdict as the exit status.

use gauntlet::gate::Gate;
use gauntlet::report::dir::check_dir;
use gauntlet::report::write::write_atomic;
use gauntlet::report::Report;

use crate::cli::progress::Bar;
use crate::cli::{ExitStatus, Format, RunArgs};

pub fn run(args: RunArgs) -> anyhow::Result<ExitStatus> {
    // Examples are kept for the HTML report even without --save-adversarial.
    let keep = args.save_adversarial.unwrap_or(if args.report_dir.is_some() { 8 } else { 0 });
    let config = args.eval.run_config(args.model.clone(), keep)?;
    // Everything that can fail on bad input fails before the evaluation starts.
    let gate = match &args.gate {
        Some(path) => {
            let g = Gate::read(path)?;
            g.check_against(&config.attack_names(), config.norm, &config.eps, args.baseline.is_some())?;
            Some((g, path.display().to_string()))
        }
        None => None,
    };
    let baseline = match &args.baseline {
        Some(path) => Some((path.to_str().unwrap_or("baseline").to_string(), Report::read(path)?)),
        None => None,
    };
    if let Some(dir) = &args.report_dir {
        check_dir(dir)?;
    }
    let mut out = config.evaluate(&Bar::new(args.eval.quiet))?;
    for note in &out.notes {
        eprintln!("note: {note}");
    }
    if let Some((g, file)) = &gate {
        if let Some((name, b)) = &baseline {
            let data = |r: &Report| r.provenance.as_ref().map(|p| p.dataset_files.clone());
            if data(b) != data(&out.report) || b.samples != out.report.samples {
                eprintln!(
                    "warning: the baseline {name} was measured on other data; regression rules compare unlike numbers"
                );
            }
        }
        let base = baseline.as_ref().map(|(name, b)| (name.as_str(), b));
        out.report.gate = Some(g.evaluate(file, &out.report, base));
    }
    let report = &out.report;
    if let Some(path) = &args.output {
        let text = if path.extension().is_some_and(|e| e == "txt") { report.to_table() } else { report.to_json() };
        write_atomic(path, text.as_bytes())?;
    }
    if let Some(dir) = &args.report_dir {
        out.write_dir(dir, args.save_adversarial.is_some())?;
    }
    match args.format {
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
        if args.eval.strict {
            status = ExitStatus::Unreliable;
        }
    }
    if status != ExitStatus::Ok && args.exit_zero {
        eprintln!("--exit-zero: exiting 0 instead of {}", status.code());
        status = ExitStatus::Ok;
    }
    Ok(status)
}
