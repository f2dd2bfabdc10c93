//! The gate binary: holds client connections (`--config`, `--id`, `--log`, `--status-file`).

fn main() -> std::process::ExitCode {
    oxworld_core::host::main(|args| oxworld_core::host::run_gate(&args))
}
