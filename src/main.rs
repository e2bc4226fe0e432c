fn main() {
    std::process::exit(deploywatch::cli::main());
}
