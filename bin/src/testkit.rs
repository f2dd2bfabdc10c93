//! A real cluster for integration tests: dispatchers, games and one gate as processes on free
//! loopback ports, with a generated config and a run, store and freeze directory of its own
//! under the temp dir, started and stopped through `launcher` like `oxworld start`, killed on
//! drop. Games run the binary a test names (its `CARGO_BIN_EXE_*`).

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use oxworld_net::config::Config;

use crate::launcher::{self, Layout, Timeouts};

/// A free loopback port (bound and released; fine for tests on one machine).
pub fn free_port() -> u16 {
    free_ports(1).first().copied().unwrap_or(0)
}

/// `n` distinct free loopback ports: all are held open until every one is picked, so the kernel
/// cannot hand the same port out twice (separate `free_port` calls can collide).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n).filter_map(|_| TcpListener::bind("127.0.0.1:0").ok()).collect();
    held.iter().filter_map(|l| l.local_addr().ok()).map(|a| a.port()).collect()
}

/// Builds `package`'s binaries into `bin_dir` (release if that is a release directory) through
/// cargo, every time: a no-op when they are fresh, and a stale binary would test old code.
pub fn cargo_build(package: &str, bin_dir: &Path) -> anyhow::Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "-p", package, "--bins"]);
    if bin_dir.ends_with("release") {
        cmd.arg("--release");
    }
    anyhow::ensure!(cmd.stdout(Stdio::null()).status()?.success(), "building {package} failed");
    Ok(())
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
    /// config. Builds the dispatcher, gate and CLI next to `game_exe` through cargo first (a no-op
    /// when they are fresh).
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
        let ports = free_ports(dispatchers + 1);
        anyhow::ensure!(ports.len() == dispatchers + 1, "no free loopback ports");
        let gate_port = ports[0];
        let mut ini = format!(
            "[deployment]\ndesired_dispatchers = {dispatchers}\ndesired_games = {games}\ndesired_gates = 1\nsecret = test\n\
             [gate1]\nlisten_addr = 127.0.0.1:{gate_port}\nheartbeat_timeout_s = 60\n\
             [storage]\ndir = {}\nfreeze_dir = {}\n",
            dir.join("store").display(),
            dir.join("freeze").display()
        );
        for (d, port) in ports.iter().enumerate().skip(1) {
            ini.push_str(&format!("[dispatcher{d}]\nlisten_addr = 127.0.0.1:{port}\n"));
        }
        ini.push_str(extra_ini);
        let config = dir.join("oxworld.ini");
        fs::write(&config, ini)?;
        let cfg = Config::load(&config)?;
        let bin_dir = game_exe.parent().map(Path::to_path_buf).unwrap_or_default();
        cargo_build("oxworld-bin", &bin_dir)?;
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
