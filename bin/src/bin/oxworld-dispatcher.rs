//! The dispatcher binary: routes messages between games and gates (`--config`, `--id`, `--log`).

fn main() -> anyhow::Result<()> {
    oxworld_core::run_dispatcher()
}
