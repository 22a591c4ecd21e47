//! `gauntlet diff`: what changed between two reports, rule by rule.

use crate::gate::Gate;
use crate::report::{diff, Report};

use crate::cli::{DiffArgs, ExitStatus};

/// Prints what changed between two reports. Always exits 0 (it describes; the gate judges).
pub fn run(args: &DiffArgs) -> anyhow::Result<ExitStatus> {
    let old = Report::read(&args.old)?;
    let new = Report::read(&args.new)?;
    let gates = match &args.gate {
        Some(path) => {
            let g = Gate::read(path)?;
            let file = path.display().to_string();
            let base = args.old.display().to_string();
            Some((g.evaluate(&file, &old, None), g.evaluate(&file, &new, Some((&base, &old)))))
        }
        None => old.gate.clone().zip(new.gate.clone()),
    };
    print!("{}", diff::render(&old, &new, gates.as_ref()));
    Ok(ExitStatus::Ok)
}
