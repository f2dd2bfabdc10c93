//! The supervisor behind `oxworld start --supervise`: a detached process that restarts, within
//! a second, any process of its host that exits without being asked, backing off when one
//! keeps crashing, and logs each restart.
//!
//! Coordination: `start`, `reload` and the supervisor decide and spawn only while holding the
//! run directory's launch lock ([`launcher::launch_lock`]); the supervisor only tries it, so it
//! never starts a game a reload is between freezing and restoring. A game found down with a
//! freeze nobody restored (its status record says `frozen`, `restoring` or `restore-failed`,
//! and no reload holds the lock) is started with `--restore`, as `oxworld start` would.
//! `oxworld stop` and `oxworld kill` end the supervisor first.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use oxworld_core::engine::status::ProcState;
use oxworld_net::config::Config;

use crate::launcher::{self, Layout, Proc};

/// How often the supervisor looks.
pub const POLL: Duration = Duration::from_millis(100);
/// A process that ran at least this long before exiting restarts at once.
pub const STABLE: Duration = Duration::from_secs(10);
/// The first back-off after a quick crash; it doubles with each further one.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// When to restart one process: at once after it ran [`STABLE`], else after a back-off that
/// doubles with each quick crash. Pure: time is a parameter.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    last_start: Option<Instant>,
    quick: u32,
    due: Option<Instant>,
}

impl Backoff {
    /// The process was found down at `now`: when it should start (the same answer until
    /// [`Backoff::started`]).
    pub fn due(&mut self, now: Instant) -> Instant {
        if let Some(d) = self.due {
            return d;
        }
        let quick = self.last_start.is_some_and(|t| now.saturating_duration_since(t) < STABLE);
        self.quick = if quick { self.quick.saturating_add(1) } else { 0 };
        let delay = match self.quick {
            0 => Duration::ZERO,
            n => FIRST_BACKOFF.saturating_mul(1u32 << (n - 1).min(16)).min(MAX_BACKOFF),
        };
        let due = now + delay;
        self.due = Some(due);
        due
    }

    /// It was started at `now`.
    pub fn started(&mut self, now: Instant) {
        self.last_start = Some(now);
        self.due = None;
    }

    /// Quick crashes in a row so far.
    pub fn quick_crashes(&self) -> u32 {
        self.quick
    }
}

/// The supervisor's pid file: one per host in a run directory.
pub fn pid_file(layout: &Layout) -> PathBuf {
    match &layout.host {
        Some(h) => layout.run_dir.join(format!("supervisor-{h}.pid")),
        None => layout.run_dir.join("supervisor.pid"),
    }
}

/// The supervisor's log file.
pub fn log_file(layout: &Layout) -> PathBuf {
    pid_file(layout).with_extension("log")
}

/// The pid of this run directory's (and host's) supervisor, if it runs.
pub fn running(layout: &Layout) -> Option<i32> {
    let pid: i32 = fs::read_to_string(pid_file(layout)).ok()?.trim().parse().ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let ours = args.iter().any(|a| *a == b"supervise")
        && args.windows(2).any(|w| w[0] == b"--run-dir" && w[1] == layout.run_dir.as_os_str().as_encoded_bytes());
    (ours && launcher::alive(pid)).then_some(pid)
}

/// Starts the supervisor (this same executable, `oxworld supervise ...`) detached, unless
/// one runs; returns its pid once it holds the supervisor lock and wrote its pid file.
pub fn spawn(layout: &Layout) -> anyhow::Result<i32> {
    use std::os::unix::process::CommandExt as _;
    if let Some(pid) = running(layout) {
        return Ok(pid);
    }
    let exe = std::env::current_exe().context("finding the oxworld executable")?;
    let log = fs::OpenOptions::new().create(true).append(true).open(log_file(layout))?;
    let mut cmd = Command::new(exe);
    cmd.arg("supervise")
        .arg(layout.game_dir.clone().unwrap_or_else(|| PathBuf::from(".")))
        .arg("--config")
        .arg(&layout.config)
        .arg("--run-dir")
        .arg(&layout.run_dir)
        .arg("--bin-dir")
        .arg(&layout.bin_dir)
        .arg("--game-bin")
        .arg(&layout.game_bin);
    if let Some(h) = &layout.host {
        cmd.arg("--host").arg(h);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the supervisor")?;
    let child_pid = i32::try_from(child.id()).context("pid out of range")?;
    drop(child);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(pid) = running(layout) {
            return Ok(pid);
        }
        if !launcher::alive(child_pid) {
            anyhow::bail!("the supervisor exited at once; see {}", log_file(layout).display());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("the supervisor (pid {child_pid}) did not start within 5 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The supervisor's lock file: held by the one supervisor of a run directory and host.
fn lock_file(layout: &Layout) -> PathBuf {
    pid_file(layout).with_extension("lock")
}

/// Ends the supervisor (SIGTERM, then SIGKILL after 5 s) and waits until it is gone; returns
/// its pid if one ran.
pub fn end(layout: &Layout) -> Option<i32> {
    let pid = running(layout)?;
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while launcher::alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if launcher::alive(pid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = fs::remove_file(pid_file(layout));
    Some(pid)
}

fn stamp() -> String {
    let ms = launcher::unix_ms();
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The supervisor's loop, until SIGTERM or SIGINT: every [`POLL`], each process of the host
/// that does not run is started again when its back-off allows.
pub fn run(layout: &Layout, cfg: &Config) -> anyhow::Result<()> {
    // One supervisor per run directory and host: the lock's holder, which names itself in the
    // pid file (so `stop` and `kill` always find the one that runs).
    fs::create_dir_all(&layout.run_dir)?;
    let lock = fs::OpenOptions::new().create(true).truncate(false).write(true).open(lock_file(layout))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            println!("{} another supervisor runs for {}; this one ends", stamp(), layout.run_dir.display());
            return Ok(());
        }
        Err(fs::TryLockError::Error(e)) => return Err(e).context("locking the supervisor lock"),
    }
    fs::write(pid_file(layout), format!("{}\n", std::process::id()))?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let procs = launcher::procs(cfg, layout.host.as_deref());
    let mut backoff: Vec<(Proc, Backoff)> = procs.iter().map(|p| (*p, Backoff::default())).collect();
    println!("{} supervisor (pid {}) watching {} processes", stamp(), std::process::id(), procs.len());
    // Said once per wait: a process is down while a start or reload holds the launch lock.
    let mut told_waiting = false;
    while !stop.load(Ordering::Relaxed) {
        // Reap what this supervisor started and that has exited.
        while let Ok(s) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            if s.pid().is_none() {
                break;
            }
        }
        let down: Vec<String> = backoff
            .iter()
            .filter(|(p, _)| launcher::running_pid(layout, *p).is_none())
            .map(|(p, _)| p.name())
            .collect();
        if !down.is_empty() {
            if let Some(_lock) = launcher::launch_lock(layout, false)? {
                told_waiting = false;
                tick(layout, &mut backoff, &stop);
            } else if !std::mem::replace(&mut told_waiting, true) {
                // Busy: a start or reload is deciding; look again next time.
                println!(
                    "{} {} down; a start or reload holds the launch lock: waiting for it",
                    stamp(),
                    down.join(", ")
                );
            }
        }
        std::thread::sleep(POLL);
    }
    println!("{} supervisor stopping", stamp());
    let _ = fs::remove_file(pid_file(layout));
    drop(lock);
    Ok(())
}

fn tick(layout: &Layout, backoff: &mut [(Proc, Backoff)], stop: &AtomicBool) {
    let now = Instant::now();
    for (p, b) in backoff.iter_mut() {
        if stop.load(Ordering::Relaxed) || launcher::running_pid(layout, *p).is_some() {
            continue;
        }
        let due = b.due(now);
        if due > now {
            continue;
        }
        let last = layout.record(*p);
        let frozen = last.as_ref().and_then(|r| r.proc_state()).is_some_and(ProcState::holds_a_freeze);
        let was = last.map(|r| format!("its last state: {}", r.state)).unwrap_or_else(|| "no status record".into());
        let extra: &[&str] = if frozen { &["--restore"] } else { &[] };
        match launcher::spawn(layout, *p, extra) {
            Ok(pid) => {
                b.started(now);
                let how = if frozen { " from its freeze" } else { "" };
                println!(
                    "{} restarted {}{how} (pid {pid}); it had exited without being asked ({was}); quick crashes in a row: {}",
                    stamp(),
                    p.name(),
                    b.quick_crashes()
                );
            }
            Err(e) => {
                b.started(now);
                println!("{} could not restart {}: {e:#}", stamp(), p.name());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stable_process_restarts_at_once_and_a_crashing_one_backs_off() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert_eq!(b.due(t0), t0, "first exit: at once");
        assert_eq!(b.due(t0 + Duration::from_millis(50)), t0, "the same answer until started");
        b.started(t0);
        // Crashes again within STABLE: 0.5 s, 1 s, 2 s, ... up to 30 s.
        let mut t = t0;
        for want in [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000] {
            t += Duration::from_millis(100);
            let due = b.due(t);
            assert_eq!(due - t, Duration::from_millis(want));
            t = due;
            b.started(t);
        }
        assert_eq!(b.quick_crashes(), 8);
        // Ran long enough: at once again, and the count starts over.
        let later = t + STABLE;
        assert_eq!(b.due(later), later);
        assert_eq!(b.quick_crashes(), 0);
    }
}
