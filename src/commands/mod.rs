//! The command line's top: [`main`] parses and dispatches; one file per subcommand, each turning
//! its arguments into library calls and printing the result.

use std::sync::Mutex;

use crate::cli::{Command, ExitStatus};

mod attacks;
mod bench;
mod diff;
mod inspect;
mod merge;
mod run;
mod train;
mod verify;

/// The last command's error, as printed, and whether it was a missing file (for callers that
/// turn it into an exception: the Python package).
static LAST_ERROR: Mutex<Option<(String, bool)>> = Mutex::new(None);

/// The whole command line: parse `args` (the program name first), run the command, and return
/// the status to exit with. The `gauntlet` binary and the Python package both call this.
pub fn main<I, T>(args: I) -> ExitStatus
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match crate::cli::parse(args) {
        Ok(cli) => dispatch(cli.command),
        Err((status, line)) => {
            *LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner()) = line.map(|l| (l, false));
            status
        }
    }
}

/// The error the last command printed (one line) and whether it named a missing file; `None`
/// when it succeeded.
pub fn last_error() -> Option<(String, bool)> {
    LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner()).take()
}

fn missing_file(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound))
        || text.contains("No such file")
        || text.contains("does not exist")
}

/// Runs a command; an error is printed as one line and exits with status 2.
pub fn dispatch(command: Command) -> ExitStatus {
    *LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner()) = None;
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
        if let Some(crate::Error::TrainingInterrupted { checkpoint, .. }) = e.downcast_ref::<crate::Error>() {
            eprintln!("{e}");
            *LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner()) = Some((e.to_string(), false));
            if checkpoint.is_some() {
                eprintln!("resume with: {}", resume_command());
            }
            return ExitStatus::Interrupted;
        }
        if let Some(crate::Error::Interrupted { checkpoint, .. }) = e.downcast_ref::<crate::Error>() {
            eprintln!("{e}");
            *LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner()) = Some((e.to_string(), false));
            match checkpoint {
                Some(_) => eprintln!("resume with: {}", resume_command()),
                None => {
                    eprintln!("nothing was kept: runs with --report-dir DIR keep finished batches and can be resumed")
                }
            }
            return ExitStatus::Interrupted;
        }
        let line = format!("{e:#}").replace('\n', " ");
        if !crate::cli::silent() {
            eprintln!("error: {line}");
        }
        *LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner()) = Some((line, missing_file(&e)));
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
