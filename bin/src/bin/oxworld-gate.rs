//! The gate binary: holds client connections (`--config`, `--id`, `--log`).

fn main() -> std::process::ExitCode {
    oxworld_core::proc::exit_code(oxworld_core::run_gate())
}
