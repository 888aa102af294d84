fn main() -> std::process::ExitCode {
    bones::cli::main()
}
