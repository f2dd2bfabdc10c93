//! Process control for the `oxworld` CLI: which processes a config describes, where their pid,
//! log and status files live, starting them detached and waiting until their status records
//! say they are ready, status, hot swaps, stop and kill. Only processes recorded in this run
//! directory's pid files are ever signalled.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use oxworld_client::{BlockingClient, Dial, Transport};
use oxworld_core::engine::status::ProcState;
use oxworld_core::host::status::{self, StatusRecord};
use oxworld_net::config::Config;

/// The three process kinds, in start order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Routes messages.
    Dispatcher,
    /// Runs the game binary.
    Game,
    /// Holds client connections.
    Gate,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Dispatcher => "dispatcher",
            Kind::Game => "game",
            Kind::Gate => "gate",
        }
    }
}

/// One configured process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    /// Its kind.
    pub kind: Kind,
    /// Its id within the kind.
    pub id: u16,
}

impl Proc {
    /// `dispatcher1`, `game2`, ...
    pub fn name(&self) -> String {
        format!("{}{}", self.kind.as_str(), self.id)
    }
}

/// Where everything of one cluster lives.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The config file.
    pub config: PathBuf,
    /// Pid and log files.
    pub run_dir: PathBuf,
    /// Directory holding `oxworld-dispatcher`, `oxworld-gate` and the game binary.
    pub bin_dir: PathBuf,
    /// File name of the game binary.
    pub game_bin: String,
    /// The game's directory (absolute), passed to gates: a relative `web_root` resolves
    /// against it.
    pub game_dir: Option<PathBuf>,
    /// The host this command acts for (`--host`): only the processes whose section names it,
    /// or with none, only those that name no host.
    pub host: Option<String>,
}

impl Layout {
    fn pid_file(&self, p: Proc) -> PathBuf {
        self.run_dir.join(format!("{}.pid", p.name()))
    }

    /// Log file (stdout and stderr) of `p`.
    pub fn log_file(&self, p: Proc) -> PathBuf {
        self.run_dir.join(format!("{}.log", p.name()))
    }

    /// Status record of `p` (written by the process itself, see `oxworld_core::host::status`).
    pub fn status_file(&self, p: Proc) -> PathBuf {
        self.run_dir.join(format!("{}.status", p.name()))
    }

    /// The last status record `p` wrote, if any.
    pub fn record(&self, p: Proc) -> Option<StatusRecord> {
        status::read(&self.status_file(p))
    }

    fn exe_name(&self, kind: Kind) -> &str {
        match kind {
            Kind::Dispatcher => "oxworld-dispatcher",
            Kind::Game => &self.game_bin,
            Kind::Gate => "oxworld-gate",
        }
    }
}

/// Every process of `cfg` on `host` (`None`: those naming no host), in start order
/// (dispatchers, games, gates).
pub fn procs(cfg: &Config, host: Option<&str>) -> Vec<Proc> {
    let on = |h: &Option<String>| h.as_deref() == host;
    let d = cfg.dispatchers.iter().filter(|d| on(&d.host)).map(|d| Proc { kind: Kind::Dispatcher, id: d.id });
    let g = cfg.games.iter().filter(|g| on(&g.host)).map(|g| Proc { kind: Kind::Game, id: g.id });
    let t = cfg.gates.iter().filter(|g| on(&g.host)).map(|g| Proc { kind: Kind::Gate, id: g.id });
    d.chain(g).chain(t).collect()
}

/// The recorded pid of `p` if that process is alive and still runs the expected binary (a
/// recycled pid running something else does not count).
pub fn running_pid(layout: &Layout, p: Proc) -> Option<i32> {
    let pid: i32 = fs::read_to_string(layout.pid_file(p)).ok()?.trim().parse().ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let exe = Path::new(std::str::from_utf8(args.first()?).ok()?).file_name()?.to_str()?.to_owned();
    // Ours if it runs the expected binary, or if it was started for this very process of this
    // run directory (its status file): a game started with another `--game-bin` is still
    // found by `stop`, `status` and `reload` without it, and a reused pid is not taken.
    let status = layout.status_file(p);
    let started_here =
        args.windows(2).any(|w| w[0] == b"--status-file" && Path::new(OsStr::from_bytes(w[1])) == status);
    let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
        .unwrap_or(false);
    ((exe == layout.exe_name(p.kind) || started_here) && !zombie).then_some(pid)
}

/// One line of `status`.
#[derive(Debug, Clone)]
pub struct ProcStatus {
    /// The process.
    pub proc: Proc,
    /// Its pid while running.
    pub pid: Option<i32>,
    /// What its status record says: its state, or `stalled` if the record is more than 3 s old
    /// while the process runs (its logic loop is not turning), or `no status` without one.
    pub state: String,
    /// Its last status record (the one that matches the running pid, or the last one left).
    pub record: Option<StatusRecord>,
}

impl ProcStatus {
    /// True if the process runs and its loop is not stalled.
    pub fn healthy(&self) -> bool {
        self.pid.is_some() && self.state != "stalled" && self.state != "no status"
    }
}

/// Unix milliseconds now.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Status of every configured process.
pub fn status(layout: &Layout, cfg: &Config) -> Vec<ProcStatus> {
    let now = unix_ms();
    procs(cfg, layout.host.as_deref())
        .into_iter()
        .map(|p| {
            let pid = running_pid(layout, p);
            let rec = layout.record(p).filter(|r| pid.is_none_or(|pid| r.pid as i32 == pid));
            let state = match (&rec, pid) {
                (Some(r), Some(_)) if r.is_stale(now) => "stalled".to_owned(),
                (Some(r), Some(_)) => r.state.clone(),
                (None, Some(_)) => "no status".to_owned(),
                // A freeze waiting for its restore, or why it failed, is worth saying.
                (Some(r), None) if r.proc_state().is_some_and(|s| s.holds_a_freeze() || s == ProcState::Failed) => {
                    format!("not running ({})", r.state)
                }
                (_, None) => "not running".to_owned(),
            };
            ProcStatus { proc: p, pid, state, record: rec }
        })
        .collect()
}

/// How long `start` waits for each kind to become ready.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Per dispatcher.
    pub dispatcher: Duration,
    /// Per game.
    pub game: Duration,
    /// Per gate (including the boot-entity probe).
    pub gate: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { dispatcher: Duration::from_secs(10), game: Duration::from_secs(30), gate: Duration::from_secs(30) }
    }
}

/// The run directory's launch lock: `start`, `reload` and the supervisor decide what to
/// spawn only while holding it, so two of them never start the same process. With `wait`
/// false, `None` if someone else holds it.
pub fn launch_lock(layout: &Layout, wait: bool) -> anyhow::Result<Option<fs::File>> {
    fs::create_dir_all(&layout.run_dir).with_context(|| format!("creating {}", layout.run_dir.display()))?;
    let path = layout.run_dir.join("launch.lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    if wait {
        f.lock().with_context(|| format!("locking {}", path.display()))?;
        return Ok(Some(f));
    }
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

/// Starts every configured process that is not running, in order, waiting for each to be
/// ready; returns the names of the processes it started.
pub fn start(layout: &Layout, cfg: &Config, t: Timeouts) -> anyhow::Result<Vec<String>> {
    let _lock = launch_lock(layout, true)?;
    for k in ensure_gate_keys(cfg)? {
        log::info!("created the gate key {}", k.display());
    }
    let mut started = Vec::new();
    for p in procs(cfg, layout.host.as_deref()) {
        if running_pid(layout, p).is_some() {
            continue;
        }
        if p.kind == Kind::Game && frozen_state(layout, p).is_some() {
            // A freeze nobody restored yet (a reload whose restore failed, or an interrupted
            // one): bring that world back instead of starting empty.
            let pid = spawn(layout, p, &["--restore"])?;
            wait_restored(layout, cfg, p, pid, t.game)?;
            started.push(format!("{} (restored from its freeze)", p.name()));
            continue;
        }
        let pid = spawn(layout, p, &[])?;
        let timeout = match p.kind {
            Kind::Dispatcher => t.dispatcher,
            Kind::Game => t.game,
            Kind::Gate => t.gate,
        };
        wait_ready(layout, cfg, p, pid, timeout)?;
        started.push(p.name());
    }
    Ok(started)
}

/// Starts `p` detached (its binary from the bin dir, `extra` arguments after the usual ones)
/// and records its pid; does not wait for it.
pub fn spawn(layout: &Layout, p: Proc, extra: &[&str]) -> anyhow::Result<i32> {
    use std::os::unix::process::CommandExt as _;
    let exe = layout.bin_dir.join(layout.exe_name(p.kind));
    if !exe.exists() {
        bail!("{}: binary {} not found (build first, or pass --bin-dir)", p.name(), exe.display());
    }
    let log_path = layout.log_file(p);
    if log_path.exists() {
        let _ = fs::rename(&log_path, layout.run_dir.join(format!("{}.prev.log", p.name())));
    }
    let log = fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let game_dir: Vec<&std::ffi::OsStr> = match (&layout.game_dir, p.kind) {
        (Some(d), Kind::Gate) => vec!["--game-dir".as_ref(), d.as_os_str()],
        _ => Vec::new(),
    };
    let child = Command::new(&exe)
        .arg("--config")
        .arg(&layout.config)
        .arg("--id")
        .arg(p.id.to_string())
        .arg("--status-file")
        .arg(layout.status_file(p))
        .args(extra)
        .args(game_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let pid = i32::try_from(child.id()).context("pid out of range")?;
    fs::write(layout.pid_file(p), format!("{pid}\n"))?;
    // The child is detached: it outlives this CLI; the pid file is how we find it again.
    drop(child);
    Ok(pid)
}

/// True if `pid` runs (a zombie does not).
pub fn alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    // A child of this CLI that exited stays a zombie until reaped; treat it as dead.
    !fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

fn log_tail(layout: &Layout, p: Proc) -> String {
    let text = fs::read_to_string(layout.log_file(p)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// The record `p` (pid `pid`) wrote, if it is that process's.
fn own_record(layout: &Layout, p: Proc, pid: i32) -> Option<StatusRecord> {
    layout.record(p).filter(|r| i64::from(r.pid) == i64::from(pid))
}

/// Why a process that died during start-up died: its record's reason, else its log's tail.
fn death_note(layout: &Layout, p: Proc, pid: i32) -> String {
    let reason = own_record(layout, p, pid).and_then(|r| r.reason).map(|r| format!("{r}\n")).unwrap_or_default();
    format!("{reason}last log lines:\n{}", log_tail(layout, p))
}

fn wait_ready(layout: &Layout, cfg: &Config, p: Proc, pid: i32, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if !alive(pid) {
            bail!("{} (pid {pid}) exited during start-up; {}", p.name(), death_note(layout, p, pid));
        }
        let ready = own_record(layout, p, pid).and_then(|r| r.proc_state()) == Some(ProcState::Ready);
        // A gate is ready for clients when, besides its links, a client gets its boot entity.
        let ready = ready && (p.kind != Kind::Gate || cfg.gate(p.id).is_some_and(probe_boot));
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let state = own_record(layout, p, pid).map(|r| r.state).unwrap_or_else(|| "no status record".into());
            bail!(
                "{} (pid {pid}) not ready after {timeout:?} (state: {state}); last log lines:\n{}",
                p.name(),
                log_tail(layout, p)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True if a client connecting to gate `gc` over TCP (through the same channel as every
/// client: handshake, encryption) receives its boot entity.
pub fn probe_boot(gc: &oxworld_net::config::GateConfig) -> bool {
    let Ok(dial) = Dial::for_gate(gc, Transport::Tcp) else {
        return false;
    };
    BlockingClient::connect(&dial, Duration::from_millis(500))
        .and_then(|mut c| c.wait_player(Duration::from_secs(2)))
        .is_ok()
}

/// Creates the key file of every encrypting gate that has none (owner-only permissions);
/// returns the files it wrote.
pub fn ensure_gate_keys(cfg: &Config) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for g in cfg.gates.iter().filter(|g| g.encrypt) {
        if g.key_file.exists() || written.contains(&g.key_file) {
            continue;
        }
        let key = oxworld_net::channel::StaticKey::from_secret(oxworld_client::os_seed());
        oxworld_net::channel::write_key_file(&g.key_file, &key).map_err(anyhow::Error::msg)?;
        written.push(g.key_file.clone());
    }
    Ok(written)
}

/// What reloading one game did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// The game.
    pub game: u16,
    /// Entities frozen and restored.
    pub entities: u64,
    /// Time from SIGHUP-side freeze start to the freeze written (game's own measure).
    pub freeze_ms: u64,
    /// Time from the new process start to every dispatcher's traffic released.
    pub restore_ms: u64,
    /// Time the dispatchers held the game's traffic (the pause clients see), if known.
    pub pause_ms: Option<u64>,
    /// Held messages delivered after the restore.
    pub released: u64,
    /// Held messages that failed (answered with an error) because the restart was too slow.
    pub failed: u64,
}

/// The record of game `p` if it holds a freeze not restored yet (`frozen`, `restoring` or
/// `restore-failed`) and no process of it runs.
pub fn frozen_state(layout: &Layout, p: Proc) -> Option<StatusRecord> {
    if running_pid(layout, p).is_some() {
        return None;
    }
    layout.record(p).filter(|r| r.proc_state().is_some_and(ProcState::holds_a_freeze))
}

/// Waits until game `p` (pid `pid`, started with `--restore`) reports `ready`; fails with the
/// reason if it reports `restore-failed` or exits.
fn wait_restored(layout: &Layout, cfg: &Config, p: Proc, pid: i32, timeout: Duration) -> anyhow::Result<StatusRecord> {
    let deadline = Instant::now() + timeout;
    loop {
        let rec = own_record(layout, p, pid);
        match rec.as_ref().and_then(StatusRecord::proc_state) {
            Some(ProcState::Ready) => return rec.context("record"),
            Some(ProcState::RestoreFailed) => {
                let reason = rec.and_then(|r| r.reason).unwrap_or_default();
                bail!(
                    "{} could not restore: {reason}; its frozen data is kept in {}: fix the game and run `oxworld start` to try again",
                    p.name(),
                    cfg.storage.freeze_dir.display()
                );
            }
            _ => {}
        }
        if !alive(pid) {
            bail!(
                "{} (pid {pid}) exited while restoring; its frozen data is kept; {}",
                p.name(),
                death_note(layout, p, pid)
            );
        }
        if Instant::now() >= deadline {
            bail!("{} did not finish restoring within {timeout:?}; last log lines:\n{}", p.name(), log_tail(layout, p));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Hot-swaps every game of the cluster in turn, so the others keep serving: SIGHUP (the
/// game freezes into LMDB and exits), then the binary in the bin dir (new or not) is started
/// with `--restore` and must report `restored`. Stops at the first game that does not freeze
/// or restore, saying why (its frozen data is kept for another try). A game whose held
/// messages partly failed is restored but counted in its report's `failed`.
pub fn reload(layout: &Layout, cfg: &Config, timeout: Duration) -> anyhow::Result<Vec<ReloadReport>> {
    // Held throughout: a supervisor never starts a game between its freeze and its restore.
    let _lock = launch_lock(layout, true)?;
    let mut reports = Vec::new();
    for p in procs(cfg, layout.host.as_deref()).into_iter().filter(|p| p.kind == Kind::Game) {
        let Some(pid) = running_pid(layout, p) else {
            bail!("{} is not running; start the cluster first", p.name());
        };
        kill(Pid::from_raw(pid), Signal::SIGHUP).with_context(|| format!("signalling {}", p.name()))?;
        // Frozen and exited.
        let deadline = Instant::now() + timeout;
        let frozen = loop {
            if !alive(pid) {
                match own_record(layout, p, pid) {
                    Some(r) if r.proc_state() == Some(ProcState::Frozen) => break r,
                    _ => bail!("{} exited without writing its freeze; {}", p.name(), death_note(layout, p, pid)),
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not freeze within {timeout:?} (it stays up and keeps serving); last log lines:\n{}",
                    p.name(),
                    log_tail(layout, p)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let _ = fs::remove_file(layout.pid_file(p));
        let new_pid = spawn(layout, p, &["--restore"])?;
        let restored = wait_restored(layout, cfg, p, new_pid, timeout)?;
        let (f, r) = (frozen.swap.unwrap_or_default(), restored.swap.unwrap_or_default());
        reports.push(ReloadReport {
            game: p.id,
            entities: f.entities,
            freeze_ms: f.freeze_ms.unwrap_or(0),
            restore_ms: r.restore_ms.unwrap_or(0),
            pause_ms: r.pause_ms,
            released: r.released.unwrap_or(0),
            failed: r.failed.unwrap_or(0),
        });
    }
    Ok(reports)
}

/// Stops running processes gracefully, gates -> games -> dispatchers, escalating to SIGKILL
/// after `grace` per kind. Returns the names of the processes it stopped.
pub fn stop(layout: &Layout, cfg: &Config, grace: Duration) -> Vec<String> {
    let mut stopped = Vec::new();
    for kind in [Kind::Gate, Kind::Game, Kind::Dispatcher] {
        let group: Vec<(Proc, i32)> = procs(cfg, layout.host.as_deref())
            .into_iter()
            .filter(|p| p.kind == kind)
            .filter_map(|p| running_pid(layout, p).map(|pid| (p, pid)))
            .collect();
        for (_, pid) in &group {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while group.iter().any(|(_, pid)| alive(*pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for (p, pid) in group {
            if alive(pid) {
                eprintln!("{} (pid {pid}) ignored SIGTERM for {grace:?}; sending SIGKILL", p.name());
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = fs::remove_file(layout.pid_file(p));
            stopped.push(p.name());
        }
    }
    stopped
}

/// SIGKILLs every running process of the cluster at once.
pub fn kill_all(layout: &Layout, cfg: &Config) -> Vec<String> {
    let mut killed = Vec::new();
    for p in procs(cfg, layout.host.as_deref()) {
        if let Some(pid) = running_pid(layout, p) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = fs::remove_file(layout.pid_file(p));
            killed.push(p.name());
        }
    }
    killed
}

/// The package name in `<game_dir>/Cargo.toml`.
pub fn package_name(game_dir: &Path) -> anyhow::Result<String> {
    let manifest = game_dir.join("Cargo.toml");
    let text = fs::read_to_string(&manifest).with_context(|| format!("{} is not a game crate", game_dir.display()))?;
    let mut in_package = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(rest) = line.strip_prefix("name") {
            let v = rest.trim_start().trim_start_matches('=').trim().trim_matches('"');
            return Ok(v.to_owned());
        }
    }
    bail!("{}: no [package] name", manifest.display())
}

/// Builds every binary of the workspace with cargo (release), the game of `game_dir` among
/// them. Always the whole workspace: cargo resolves one feature set for it, so building a
/// subset first and the rest later would compile shared dependencies twice.
pub fn build(game_dir: &Path) -> anyhow::Result<()> {
    package_name(game_dir)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo).args(["build", "--release", "--workspace"]).status().context("running cargo")?;
    if !st.success() {
        bail!("cargo build failed ({st})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process is ours if it runs the expected binary or was started for this process's
    /// status file; anything else with that pid is not.
    #[test]
    fn a_game_started_under_another_binary_name_is_still_found() {
        let dir = std::env::temp_dir().join(format!("oxworld-running-pid-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let layout = Layout {
            config: dir.join("oxworld.ini"),
            run_dir: dir.clone(),
            bin_dir: dir.clone(),
            game_bin: "mygame".into(),
            game_dir: None,
            host: None,
        };
        let game1 = Proc { kind: Kind::Game, id: 1 };
        let status = layout.status_file(game1);
        // `sh` stands for a game binary with another name, started for game1's status file.
        let mut ours = Command::new("sh")
            .args(["-c", "sleep 30; true", "sh", "--status-file"])
            .arg(&status)
            .spawn()
            .expect("sh runs");
        let mut other = Command::new("sh").args(["-c", "sleep 30; true"]).spawn().expect("sh runs");
        let pid_of = |c: &std::process::Child| i32::try_from(c.id()).expect("pid");
        fs::write(layout.pid_file(game1), format!("{}\n", pid_of(&ours))).expect("pid file");
        // The shell needs a moment to show its arguments in /proc (a compound command keeps it
        // from exec-ing `sleep` in its place).
        let deadline = Instant::now() + Duration::from_secs(5);
        while running_pid(&layout, game1).is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(running_pid(&layout, game1), Some(pid_of(&ours)));
        fs::write(layout.pid_file(game1), format!("{}\n", pid_of(&other))).expect("pid file");
        assert_eq!(running_pid(&layout, game1), None, "a process of another binary and purpose is not ours");
        for c in [&mut ours, &mut other] {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
