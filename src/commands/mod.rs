//! One file per subcommand; each turns its arguments into library calls and prints the result.

use crate::cli::{Command, ExitStatus};

mod attacks;
mod bench;
mod diff;
mod inspect;
mod merge;
mod run;
mod train;
mod verify;

/// Runs a command; an error is printed as one line and exits with status 2.
pub fn dispatch(command: Command) -> ExitStatus {
    let result = match command {
        Command::Run(args) => run::run(args),
        Command::Train(args) => train::run(&args),
        Command::Attacks => attacks::run(),
        Command::Bench(args) => bench::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Diff(args) => diff::run(&args),
        Command::Merge(args) => merge::run(&args),
        Command::Inspect(args) => inspect::run(&args),
    };
    result.unwrap_or_else(|e| {
        if let Some(gauntlet::Error::Interrupted { checkpoint, .. }) = e.downcast_ref::<gauntlet::Error>() {
            eprintln!("{e}");
            match checkpoint {
                Some(_) => eprintln!("resume with: {}", resume_command()),
                None => {
                    eprintln!("nothing was kept: runs with --report-dir DIR keep finished batches and can be resumed")
                }
            }
            return ExitStatus::Interrupted;
        }
        eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
        ExitStatus::Usage
    })
}

/// This process's command line with `--resume` added (when it is not there yet).
fn resume_command() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--resume") {
        args.push("--resume".into());
    }
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\{}".contains(c)) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
