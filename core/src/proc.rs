//! What every oxworld process shares at start-up: command-line flags and logging.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use oxworld_net::config::Config;

/// Flags of a dispatcher, game or gate process.
#[derive(Debug, Parser)]
pub struct ProcArgs {
    /// Cluster config file.
    #[arg(long, default_value = "conf/oxworld.ini")]
    pub config: PathBuf,
    /// This process's id within its kind (1-based, as in the config's sections).
    #[arg(long)]
    pub id: u16,
    /// Log filter overriding the config's `log_level` (e.g. `debug`, `info,oxworld_core=trace`).
    #[arg(long)]
    pub log: Option<String>,
    /// Games: rebuild the world from the freeze a SIGHUP wrote (hot swap) instead of
    /// starting empty. Fails, keeping the freeze, if it cannot be restored.
    #[arg(long)]
    pub restore: bool,
}

impl ProcArgs {
    /// Parses the process's command line (exits with usage on bad flags).
    pub fn parse_args() -> Self {
        Self::parse()
    }

    /// Loads and validates the config named by `--config`.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        Config::load(&self.config).with_context(|| format!("loading {}", self.config.display()))
    }
}

/// Logs to stderr with millisecond timestamps; `RUST_LOG` wins over `level` when set.
pub fn init_logging(level: &str) {
    let env = env_logger::Env::default().default_filter_or(level);
    let _ = env_logger::Builder::from_env(env).format_timestamp_millis().try_init();
}

/// Turns a process's result into its exit code, printing an error as one readable line
/// (with its causes) instead of a debug dump.
pub fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
