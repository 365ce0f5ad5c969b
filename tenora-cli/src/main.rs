//! The `tenora` binary: a thin wrapper over the `tenora_cli` library.

fn main() -> std::process::ExitCode {
    tenora_cli::main()
}
