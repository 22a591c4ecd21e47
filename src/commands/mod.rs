//! One file per subcommand; each turns its arguments into library calls and prints the result.

use crate::cli::{Command, ExitStatus};

mod attacks;
mod bench;
mod diff;
mod inspect;
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
        Command::Inspect(args) => inspect::run(&args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
        ExitStatus::Usage
    })
}
