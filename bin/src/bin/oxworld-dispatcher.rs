//! The dispatcher binary: routes messages between games and gates (`--config`, `--id`, `--log`,
//! `--status-file`).

fn main() -> std::process::ExitCode {
    oxworld_core::host::main(|args| oxworld_core::host::run_dispatcher(&args))
}
