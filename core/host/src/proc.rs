//! What every oxworld process shares at start-up: its command-line flags, logging, and the
//! one place that turns how a process ended into its exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use oxworld_net::config::Config;

/// Flags of a dispatcher, game or gate process.
#[derive(Debug, Clone, Parser)]
pub struct ProcArgs {
    /// Cluster config file.
    #[arg(long, default_value = "conf/oxworld.ini")]
    pub config: PathBuf,
    /// This process's id within its kind (1-based, as in the config's sections).
    #[arg(long)]
    pub id: u16,
    /// Log filter overriding the config's `log_level` (e.g. `debug`, `info,oxworld_engine=trace`).
    #[arg(long)]
    pub log: Option<String>,
    /// Games: rebuild the world from the freeze a SIGHUP wrote (hot swap) instead of
    /// starting empty. Fails, keeping the freeze, if it cannot be restored.
    #[arg(long)]
    pub restore: bool,
    /// Where to keep this process's status record (one JSON object, rewritten every second and
    /// at every change of state); `oxworld` passes `run/<name>.status`.
    #[arg(long)]
    pub status_file: Option<PathBuf>,
    /// Gates: the game directory `oxworld start` was given; a relative `web_root` resolves
    /// against it.
    #[arg(long)]
    pub game_dir: Option<PathBuf>,
}

impl ProcArgs {
    /// Parses flags from an argument list (program name first). Bad flags and `--help` come
    /// back as an error for [`main`] to print; nothing here exits the process.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        <Self as Parser>::try_parse_from(args)
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

/// Runs a process body with the flags of this process's command line and turns how it ended
/// into the exit code: 0 when it returns `Ok`, 1 with the error on one readable line (with its
/// causes) otherwise, 2 for bad flags; `--help` prints the usage and exits 0.
pub fn main(body: impl FnOnce(ProcArgs) -> anyhow::Result<()>) -> ExitCode {
    let args = match ProcArgs::try_parse_from(std::env::args_os()) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    match body(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_help_is_not_an_exit() {
        let a = ProcArgs::try_parse_from(["game", "--id", "2", "--restore", "--status-file", "run/game2.status"])
            .expect("valid flags");
        assert_eq!((a.id, a.restore), (2, true));
        assert_eq!(a.status_file, Some(PathBuf::from("run/game2.status")));
        let help = ProcArgs::try_parse_from(["game", "--help"]).expect_err("help is an early return");
        assert!(!help.use_stderr(), "help goes to stdout with success");
        let bad = ProcArgs::try_parse_from(["game", "--id", "x"]).expect_err("not a number");
        assert!(bad.use_stderr());
        assert!(ProcArgs::try_parse_from(["game"]).is_err(), "--id is required");
    }
}
