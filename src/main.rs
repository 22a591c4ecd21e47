//! The `gauntlet` binary: the command line of the library (`gauntlet::commands::main`), its
//! status as the exit code.

fn main() {
    std::process::exit(gauntlet::commands::main(std::env::args_os()).code());
}
