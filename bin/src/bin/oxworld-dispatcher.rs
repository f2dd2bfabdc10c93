//! The dispatcher binary: routes messages between games and gates (`--config`, `--id`, `--log`).

fn main() -> std::process::ExitCode {
    oxworld_core::proc::exit_code(oxworld_core::run_dispatcher())
}
