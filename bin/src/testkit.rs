//! Real clusters for integration tests: dispatchers, games and one gate as processes on free
//! loopback ports, with a generated config and a run, store and freeze directory of their own
//! under the temp dir, started through `launcher` like `oxworld start` (waiting on each
//! process's status record), stopped in order with every exit code checked, killed on drop.
//!
//! Tests never run cargo: the README's test command builds every binary first (`cargo test
//! --workspace` builds each package's binaries before its integration tests). [`fresh_bin`]
//! finds a binary next to the test's game and refuses one older than any source it was built
//! from (cargo's own dep-info lists them), so a stale binary never tests old code.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use oxworld_net::config::Config;

use crate::launcher::{self, Kind, Layout, Proc, Timeouts};

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

/// The binary `name` in `dir`, checked to be at least as new as every file cargo's dep-info
/// (`<name>.d`) says it was built from. Fails with what to run when it is missing or stale.
pub fn fresh_bin(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let bin = dir.join(name);
    let build = "build the workspace first: `cargo build --workspace --all-targets` (bash .ci/run does)";
    let built = fs::metadata(&bin)
        .and_then(|m| m.modified())
        .with_context(|| format!("{} is missing; {build}", bin.display()))?;
    let deps = fs::read_to_string(dir.join(format!("{name}.d")))
        .with_context(|| format!("no dep-info next to {}; {build}", bin.display()))?;
    if let Some(newer) = dep_files(&deps).into_iter().find(|f| modified(f).is_some_and(|t| t > built)) {
        bail!("{} is older than {}; {build}", bin.display(), newer.display());
    }
    Ok(bin)
}

fn modified(p: &Path) -> Option<SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The files a Makefile-style dep-info names as prerequisites (`target: dep dep\ ...`), the
/// first rule only; `\ ` escapes a space in a path.
fn dep_files(text: &str) -> Vec<PathBuf> {
    let Some(line) = text.lines().next() else { return Vec::new() };
    let Some((_, deps)) = line.split_once(": ") else { return Vec::new() };
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = deps.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                cur.push(' ');
                chars.next();
            }
            ' ' => {
                if !cur.is_empty() {
                    out.push(PathBuf::from(std::mem::take(&mut cur)));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(PathBuf::from(cur));
    }
    out
}

/// The shape of a test cluster.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    /// Dispatchers.
    pub dispatchers: usize,
    /// Games (all running the test's game binary).
    pub games: usize,
    /// Gates (gate1 gets the WebSocket and KCP listeners and `gate`'s lines too).
    pub gates: usize,
    /// Extra lines for the `[gate1]` section (e.g. `max_client_frame_bytes = 4096`).
    pub gate: &'a str,
    /// Extra lines for the `[storage]` section (e.g. `save_interval_s = 1`).
    pub storage: &'a str,
    /// Extra config appended at the end (whole sections).
    pub extra: &'a str,
    /// The game's directory, for a relative `web_root` (as `oxworld start <game-dir>`).
    pub game_dir: Option<PathBuf>,
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Spec { dispatchers: 1, games: 1, gates: 1, gate: "", storage: "", extra: "", game_dir: None }
    }
}

/// One test cluster; every process is killed when it is dropped.
pub struct TestCluster {
    /// Where everything is.
    pub layout: Layout,
    /// Its config.
    pub cfg: Config,
    /// How clients reach the gate: TCP, with the gate's key (tests run encrypted, as
    /// production does, unless their spec sets `encrypt = false`).
    pub gate: oxworld_client::Dial,
    /// The gate's TCP address.
    pub gate_addr: SocketAddr,
    /// The test's directory (config, run/, store/, freeze/).
    pub dir: PathBuf,
}

impl TestCluster {
    /// Starts `dispatchers` dispatchers and `games` games running `game_exe` (the binary of a
    /// game crate, built by cargo for the test) and one gate; `extra_ini` is appended to the
    /// config.
    pub fn start(
        name: &str,
        game_exe: &Path,
        dispatchers: usize,
        games: usize,
        extra_ini: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with(name, game_exe, &Spec { dispatchers, games, extra: extra_ini, ..Spec::default() })
    }

    /// Starts the cluster `spec` describes, the games running `game_exe`; the dispatcher, gate
    /// and CLI binaries are taken from the same directory ([`fresh_bin`]).
    pub fn start_with(name: &str, game_exe: &Path, spec: &Spec<'_>) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("oxworld-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        // The gate's TCP, WebSocket and KCP (UDP) ports, then one per dispatcher.
        let gates = spec.gates.max(1);
        let ports = free_ports(spec.dispatchers + 3 + gates - 1);
        anyhow::ensure!(ports.len() == spec.dispatchers + 3 + gates - 1, "no free loopback ports");
        let (ports, more_gates) = ports.split_at(spec.dispatchers + 3);
        let gate_port = ports[0];
        let ws_port = ports[1];
        let kcp_port = ports[2];
        let mut ini = format!(
            "[deployment]\ndesired_dispatchers = {}\ndesired_games = {}\ndesired_gates = {gates}\nsecret = test\n\
             [gate1]\nlisten_addr = 127.0.0.1:{gate_port}\nws_addr = 127.0.0.1:{ws_port}\nkcp_addr = 127.0.0.1:{kcp_port}\n{}\n\
             [storage]\ndir = {}\nfreeze_dir = {}\n{}\n",
            spec.dispatchers,
            spec.games,
            spec.gate,
            dir.join("store").display(),
            dir.join("freeze").display(),
            spec.storage
        );
        for (d, port) in ports.iter().enumerate().skip(3).map(|(i, p)| (i - 2, p)) {
            ini.push_str(&format!("[dispatcher{d}]\nlisten_addr = 127.0.0.1:{port}\n"));
        }
        for (g, port) in more_gates.iter().enumerate() {
            ini.push_str(&format!("[gate{}]\nlisten_addr = 127.0.0.1:{port}\n", g + 2));
        }
        ini.push_str(spec.extra);
        let config = dir.join("oxworld.ini");
        fs::write(&config, ini)?;
        let cfg = Config::load(&config)?;
        let bin_dir = game_exe.parent().map(Path::to_path_buf).unwrap_or_default();
        for b in ["oxworld-dispatcher", "oxworld-gate", "oxworld"] {
            fresh_bin(&bin_dir, b)?;
        }
        let game_bin = game_exe.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let layout =
            Layout { config, run_dir: dir.join("run"), bin_dir, game_bin, game_dir: spec.game_dir.clone(), host: None };
        let gate_addr = SocketAddr::from(([127, 0, 0, 1], gate_port));
        let mut c = TestCluster { layout, cfg, gate: oxworld_client::Dial::plain_tcp(gate_addr), gate_addr, dir };
        // Dropped (and killed) if the start fails.
        launcher::start(&c.layout, &c.cfg, Timeouts::default())?;
        let gc = c.cfg.gate(1).ok_or_else(|| anyhow::anyhow!("no gate1"))?;
        c.gate = oxworld_client::Dial::for_gate(gc, oxworld_client::Transport::Tcp).map_err(anyhow::Error::msg)?;
        Ok(c)
    }

    /// How clients reach the gate over `transport`.
    pub fn dial(&self, transport: oxworld_client::Transport) -> oxworld_client::Dial {
        let mut d = self.gate.clone();
        d.transport = transport;
        if let Some(g) = self.cfg.gate(1) {
            d.addr = match transport {
                oxworld_client::Transport::Tcp => g.advertise_addr,
                oxworld_client::Transport::Ws => g.ws_advertise_addr.unwrap_or(g.advertise_addr),
                oxworld_client::Transport::Kcp => g.kcp_advertise_addr.unwrap_or(g.advertise_addr),
            };
        }
        d
    }

    /// Runs the `oxworld` CLI against this cluster: `oxworld <args> <game dir> --config ..
    /// --run-dir .. --bin-dir ..`.
    pub fn cli(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        self.cli_command(args, &self.layout.bin_dir).output()
    }

    /// The `oxworld` command [`TestCluster::cli`] runs, with the binaries of `bin_dir` (as an
    /// operator deploys a new build somewhere and reloads with it).
    pub fn cli_command(&self, args: &[&str], bin_dir: &Path) -> Command {
        let mut cmd = Command::new(self.layout.bin_dir.join("oxworld"));
        cmd.args(args)
            .arg(&self.layout.game_bin)
            .arg("--config")
            .arg(&self.layout.config)
            .arg("--run-dir")
            .arg(&self.layout.run_dir)
            .arg("--bin-dir")
            .arg(bin_dir);
        cmd
    }

    /// `oxworld-stress` (from the bin dir, fresh) pointed at this cluster: its config and run
    /// dir (so it measures every process); the caller adds the scenario and the rest.
    pub fn stress_command(&self) -> anyhow::Result<Command> {
        let mut cmd = Command::new(fresh_bin(&self.layout.bin_dir, "oxworld-stress")?);
        cmd.arg("--config").arg(&self.layout.config).arg("--run-dir").arg(&self.layout.run_dir);
        Ok(cmd)
    }

    /// Pid of game `id`, from its pid file.
    pub fn game_pid(&self, id: u16) -> Option<i32> {
        self.pid_of(&format!("game{id}"))
    }

    /// Pid of process `name` (`gate2`, `dispatcher1`, ...), from its pid file.
    pub fn pid_of(&self, name: &str) -> Option<i32> {
        fs::read_to_string(self.layout.run_dir.join(format!("{name}.pid"))).ok()?.trim().parse().ok()
    }

    /// How clients reach gate `id` over TCP.
    pub fn dial_gate(&self, id: u16) -> anyhow::Result<oxworld_client::Dial> {
        let gc = self.cfg.gate(id).ok_or_else(|| anyhow::anyhow!("no gate{id}"))?;
        oxworld_client::Dial::for_gate(gc, oxworld_client::Transport::Tcp).map_err(anyhow::Error::msg)
    }

    /// Names of the configured processes that run now.
    pub fn running(&self) -> Vec<String> {
        launcher::procs(&self.cfg, None)
            .into_iter()
            .filter(|p| launcher::running_pid(&self.layout, *p).is_some())
            .map(|p| p.name())
            .collect()
    }

    /// Stops the cluster as `oxworld stop` does (SIGTERM to the gate, then the games, then the
    /// dispatchers) and fails unless every process exits with status 0 within 10 s. The
    /// processes are this test's children, so their exit codes are seen here.
    pub fn stop(self) -> anyhow::Result<()> {
        for kind in [Kind::Gate, Kind::Game, Kind::Dispatcher] {
            let group: Vec<(Proc, i32)> = launcher::procs(&self.cfg, None)
                .into_iter()
                .filter(|p| p.kind == kind)
                .filter_map(|p| launcher::running_pid(&self.layout, p).map(|pid| (p, pid)))
                .collect();
            for (_, pid) in &group {
                kill(Pid::from_raw(*pid), Signal::SIGTERM).context("SIGTERM")?;
            }
            for (p, pid) in group {
                match wait_exit(pid, Duration::from_secs(10))? {
                    WaitStatus::Exited(_, 0) => {}
                    other => bail!("{} ended with {other:?}; logs in {}", p.name(), self.layout.run_dir.display()),
                }
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

/// Waits up to `timeout` for child `pid` to exit; its final status.
fn wait_exit(pid: i32, timeout: Duration) -> anyhow::Result<WaitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)).context("waitpid")? {
            WaitStatus::StillAlive => {}
            done => return Ok(done),
        }
        if Instant::now() >= deadline {
            bail!("pid {pid} did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // A supervisor (`start --supervise`) first, or it would start them again.
        crate::supervisor::end(&self.layout);
        launcher::kill_all(&self.layout, &self.cfg);
        // Kept when the test failed: its logs are there.
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_lists_prerequisites() {
        let d = "/t/oxworld-gate: /w/core/src/lib.rs /w/a\\ b.rs /w/net/src/msg.rs\n\n/w/core/src/lib.rs:\n";
        assert_eq!(
            dep_files(d),
            vec![PathBuf::from("/w/core/src/lib.rs"), PathBuf::from("/w/a b.rs"), PathBuf::from("/w/net/src/msg.rs")]
        );
        assert!(dep_files("").is_empty() && dep_files("garbage").is_empty());
    }

    #[test]
    fn a_binary_older_than_its_sources_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let src = dir.path().join("main.rs");
        fs::write(&src, "fn main() {}").expect("write");
        let bin = dir.path().join("tool");
        fs::write(dir.path().join("tool.d"), format!("{}: {}\n", bin.display(), src.display())).expect("write");
        assert!(fresh_bin(dir.path(), "tool").is_err(), "missing binary");
        fs::write(&bin, "").expect("write");
        assert_eq!(fresh_bin(dir.path(), "tool").expect("fresh"), bin);
        let later = SystemTime::now() + Duration::from_secs(60);
        fs::File::options().write(true).open(&src).and_then(|f| f.set_modified(later)).expect("touch");
        let e = fresh_bin(dir.path(), "tool").expect_err("stale");
        assert!(e.to_string().contains("older than") && e.to_string().contains("main.rs"), "{e}");
    }
}
