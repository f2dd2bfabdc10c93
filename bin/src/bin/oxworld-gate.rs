//! The gate binary: holds client connections (`--config`, `--id`, `--log`).

fn main() -> anyhow::Result<()> {
    oxworld_core::run_gate()
}
