//! The `weir` binary: everything lives in `weir_cli`.

fn main() -> std::process::ExitCode {
    weir_cli::main()
}
