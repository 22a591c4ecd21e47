//! The `gauntlet` binary: parse the command line, run the command, exit with its status.

mod cli;
mod commands;

fn main() {
    let status = match cli::parse() {
        Ok(cli) => commands::dispatch(cli.command),
        Err(status) => status,
    };
    std::process::exit(status.code());
}
