//! The `gauntlet` binary: the command line of the library (`gauntlet::cli`), its status as the
//! exit code.

fn main() {
    std::process::exit(gauntlet::cli::main(std::env::args_os()).code());
}
