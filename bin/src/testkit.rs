//! A real cluster for integration tests: dispatchers, games and one gate as processes on free
//! loopback ports, with a generated config and a run, store and freeze directory of its own
//! under the temp dir, started and stopped through `launcher` like `oxworld start`, killed on
//! drop. Games run the binary a test names (its `CARGO_BIN_EXE_*`).

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

use oxworld_net::config::Config;

use crate::launcher::{self, Layout, Timeouts};

/// A free loopback port (bound and released; fine for tests on one machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// One test cluster; every process is killed when it is dropped.
pub struct TestCluster {
    /// Where everything is.
    pub layout: Layout,
    /// Its config.
    pub cfg: Config,
    /// The gate's client address.
    pub gate: SocketAddr,
    /// The test's directory (config, run/, store/, freeze/).
    pub dir: PathBuf,
}

impl TestCluster {
    /// Starts `dispatchers` dispatchers and `games` games running `game_exe` (the binary of a
    /// game crate, built by cargo for the test) and one gate; `extra_ini` is appended to the
    /// config. Builds the dispatcher, gate and CLI next to `game_exe` if they are missing (run
    /// `cargo build --workspace --bins` first when they may be stale).
    pub fn start(
        name: &str,
        game_exe: &Path,
        dispatchers: usize,
        games: usize,
        extra_ini: &str,
    ) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("oxworld-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let gate_port = free_port();
        let mut ini = format!(
            "[deployment]\ndesired_dispatchers = {dispatchers}\ndesired_games = {games}\ndesired_gates = 1\nsecret = test\n\
             [gate1]\nlisten_addr = 127.0.0.1:{gate_port}\nheartbeat_timeout_s = 60\n\
             [storage]\ndir = {}\nfreeze_dir = {}\n",
            dir.join("store").display(),
            dir.join("freeze").display()
        );
        for d in 1..=dispatchers {
            ini.push_str(&format!("[dispatcher{d}]\nlisten_addr = 127.0.0.1:{}\n", free_port()));
        }
        ini.push_str(extra_ini);
        let config = dir.join("oxworld.ini");
        fs::write(&config, ini)?;
        let cfg = Config::load(&config)?;
        let bin_dir = game_exe.parent().map(Path::to_path_buf).unwrap_or_default();
        // Always through cargo (a no-op when fresh): a stale gate or dispatcher binary would
        // test old code.
        {
            let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cmd.args(["build", "-p", "oxworld-bin", "--bins"]);
            if bin_dir.ends_with("release") {
                cmd.arg("--release");
            }
            anyhow::ensure!(cmd.status()?.success(), "building oxworld-bin failed");
        }
        let game_bin = game_exe.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let layout = Layout { config, run_dir: dir.join("run"), bin_dir, game_bin };
        let c = TestCluster { layout, cfg, gate: SocketAddr::from(([127, 0, 0, 1], gate_port)), dir };
        launcher::start(&c.layout, &c.cfg, Timeouts::default())?;
        Ok(c)
    }

    /// Runs the `oxworld` CLI against this cluster: `oxworld <args> <game dir> --config ..
    /// --run-dir .. --bin-dir ..`.
    pub fn cli(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        Command::new(self.layout.bin_dir.join("oxworld"))
            .args(args)
            .arg(&self.layout.game_bin)
            .arg("--config")
            .arg(&self.layout.config)
            .arg("--run-dir")
            .arg(&self.layout.run_dir)
            .arg("--bin-dir")
            .arg(&self.layout.bin_dir)
            .output()
    }

    /// Pid of game `id`, from its pid file.
    pub fn game_pid(&self, id: u16) -> Option<i32> {
        fs::read_to_string(self.layout.run_dir.join(format!("game{id}.pid"))).ok()?.trim().parse().ok()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        launcher::kill_all(&self.layout, &self.cfg);
    }
}
