fn main() {
    std::process::exit(gauntlet::cli::main());
}
