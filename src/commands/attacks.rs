//! `gauntlet attacks`: the registered attacks, one line each.

use crate::attacks::Registry;

use crate::cli::ExitStatus;

pub fn run() -> anyhow::Result<ExitStatus> {
    for (name, summary) in Registry::default().summaries() {
        println!("{name:<10} {summary}");
    }
    Ok(ExitStatus::Ok)
}
