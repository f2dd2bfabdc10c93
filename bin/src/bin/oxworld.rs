//! The `oxworld` command: build, start, inspect, stop and kill a cluster described by a config.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use oxworld_bin::launcher::{self, Layout, Timeouts};
use oxworld_net::config::Config;

/// Runs an oxworld cluster from a config file.
#[derive(Debug, Parser)]
#[command(name = "oxworld", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// Game crate directory, e.g. `demo/echo` (its binary is named after the directory).
    game_dir: PathBuf,
    /// Cluster config.
    #[arg(long, default_value = "conf/oxworld.ini")]
    config: PathBuf,
    /// Where pid and log files go.
    #[arg(long, default_value = "run")]
    run_dir: PathBuf,
    /// Where the binaries are (default: the cargo target's release directory).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The game binary's name, when it is not the game directory's name (e.g. a benchmark
    /// build: `--game-bin chatroom-filled`).
    #[arg(long)]
    game_bin: Option<String>,
    /// Act on the processes whose config section names this `host` only (without it: those
    /// naming none, i.e. a one-machine cluster).
    #[arg(long)]
    host: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build every binary of the workspace, the game's among them (cargo, release).
    Build(Common),
    /// Build (unless --no-build) and start whatever is not running; wait until ready.
    Start {
        #[command(flatten)]
        common: Common,
        /// Use the binaries as they are.
        #[arg(long)]
        no_build: bool,
        /// Then leave a supervisor running that restarts, within a second, any process of
        /// this host that exits without being asked (back-off when one keeps crashing; log
        /// in the run dir's supervisor.log). `stop` and `kill` end it first.
        #[arg(long)]
        supervise: bool,
    },
    /// The supervisor itself (started by `start --supervise`).
    #[command(hide = true)]
    Supervise(Common),
    /// One line per process: kind and id, host, state (from its status record; `stalled` if its
    /// logic loop has not written one for 3 s, `down` if it does not run), uptime, clients or
    /// entities, messages per second in and out, loop busy %, CPU %, RSS. Exits 0 only if every
    /// configured process runs and none is stalled (with --watch: when interrupted).
    Status {
        #[command(flatten)]
        common: Common,
        /// The same as a JSON array, one object per process.
        #[arg(long)]
        json: bool,
        /// Refresh every second (a `top` for the cluster), until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// Stop gracefully: gates, then games, then dispatchers.
    Stop {
        #[command(flatten)]
        common: Common,
        /// Seconds to wait after SIGTERM before SIGKILL, per kind.
        #[arg(long, default_value_t = 10)]
        grace: u64,
    },
    /// SIGKILL every process now.
    Kill(Common),
    /// Write the key file of every encrypting gate of the config that has none (owner-only
    /// permissions), and print each gate's public key (hex), which clients pin.
    Keygen {
        /// Cluster config.
        #[arg(long, default_value = "conf/oxworld.ini")]
        config: PathBuf,
        /// Only print the public keys of the existing key files.
        #[arg(long)]
        public: bool,
    },
    /// Convert a GoWorld config (goworld.ini) into ours: the converted config on standard
    /// output, and on standard error what became of each GoWorld key (mapped, or dropped and
    /// why).
    ImportConfig {
        /// The GoWorld config file.
        goworld_ini: PathBuf,
    },
    /// Hot-swap every game in turn: freeze (SIGHUP), start the binary in the bin dir with
    /// --restore, wait until its traffic is released. Exits 0 only if every game restored
    /// and no held message failed.
    Reload {
        #[command(flatten)]
        common: Common,
        /// Build the game first (by default the binaries are used as they are).
        #[arg(long)]
        build: bool,
        /// Seconds each game may take to freeze, and then to restore.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

fn layout(c: &Common) -> anyhow::Result<(Layout, Config)> {
    let cfg = Config::load(&c.config)?;
    let game_bin = match &c.game_bin {
        Some(b) => b.clone(),
        None => c
            .game_dir
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no directory name", c.game_dir.display()))?
            .to_owned(),
    };
    let bin_dir = match &c.bin_dir {
        Some(d) => d.clone(),
        None => {
            let target =
                std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
            target.join("release")
        }
    };
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    if let Some(h) = &c.host
        && !cfg.hosts().contains(h)
    {
        anyhow::bail!("--host {h}: no process of {} names that host (hosts: {:?})", c.config.display(), cfg.hosts());
    }
    let layout = Layout {
        config: abs(&c.config),
        run_dir: abs(&c.run_dir),
        bin_dir: abs(&bin_dir),
        game_bin,
        game_dir: Some(abs(&c.game_dir)),
        host: c.host.clone(),
    };
    Ok((layout, cfg))
}

/// One process in `oxworld status` (and its `--json`).
#[derive(Debug, serde::Serialize)]
struct StatusRow {
    name: String,
    kind: String,
    host: String,
    state: String,
    pid: Option<i32>,
    uptime_s: Option<u64>,
    metrics_addr: Option<String>,
    clients: Option<u64>,
    entities: Option<u64>,
    routes: Option<u64>,
    msgs_in_per_s: Option<f64>,
    msgs_out_per_s: Option<f64>,
    busy_pct: Option<f64>,
    cpu_pct: Option<f64>,
    rss_kib: Option<u64>,
}

impl StatusRow {
    fn of(s: &launcher::ProcStatus, cfg: &Config) -> StatusRow {
        let running = s.pid.is_some();
        let rec = s.record.as_ref();
        // Figures of a process that does not run are not shown (they are its last words).
        let load = rec.and_then(|r| r.load.as_ref()).filter(|_| running);
        let holds = |what: &str| load.and_then(|l| l.holds.as_ref()).filter(|(k, _)| k == what).map(|(_, n)| *n);
        let state = if running { s.state.clone() } else { "down".to_owned() };
        let configured = match s.proc.kind {
            launcher::Kind::Dispatcher => cfg.dispatcher(s.proc.id).and_then(|d| d.metrics_addr),
            launcher::Kind::Game => cfg.game(s.proc.id).and_then(|g| g.metrics_addr),
            launcher::Kind::Gate => cfg.gate(s.proc.id).and_then(|g| g.metrics_addr),
        };
        StatusRow {
            name: s.proc.name(),
            kind: s.proc.name().trim_end_matches(char::is_numeric).to_owned(),
            host: rec.map(|r| r.host.clone()).unwrap_or_default(),
            state,
            pid: s.pid,
            uptime_s: rec.filter(|_| running).map(|r| launcher::unix_ms().saturating_sub(r.started_ms) / 1000),
            metrics_addr: rec.and_then(|r| r.metrics_addr.clone()).or(configured.map(|a| a.to_string())),
            clients: holds("clients"),
            entities: holds("entities"),
            routes: holds("routes"),
            msgs_in_per_s: load.map(|l| l.msgs_in_per_s),
            msgs_out_per_s: load.map(|l| l.msgs_out_per_s),
            busy_pct: load.map(|l| l.busy_pct),
            cpu_pct: load.map(|l| l.cpu_pct),
            rss_kib: load.map(|l| l.rss_kib),
        }
    }
}

fn print_table(rows: &[StatusRow]) {
    let num = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
    println!(
        "{:<12} {:<12} {:<16} {:>8} {:>16} {:>9} {:>9} {:>6} {:>6} {:>9}",
        "process", "host", "state", "uptime", "holds", "in/s", "out/s", "busy%", "cpu%", "rss MiB"
    );
    for r in rows {
        let uptime = r.uptime_s.map(|s| format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)).unwrap_or("-".into());
        let holds = [("clients", r.clients), ("entities", r.entities), ("routes", r.routes)]
            .into_iter()
            .find_map(|(k, v)| v.map(|n| format!("{n} {k}")))
            .unwrap_or_else(|| "-".into());
        let rss = r.rss_kib.map(|k| format!("{:.1}", k as f64 / 1024.0)).unwrap_or_else(|| "-".into());
        println!(
            "{:<12} {:<12} {:<16} {:>8} {:>16} {:>9} {:>9} {:>6} {:>6} {:>9}",
            r.name,
            r.host,
            r.state,
            uptime,
            holds,
            num(r.msgs_in_per_s),
            num(r.msgs_out_per_s),
            num(r.busy_pct),
            num(r.cpu_pct),
            rss
        );
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Build(c) => {
            launcher::build(&c.game_dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Start { common, no_build, supervise } => {
            if !no_build {
                launcher::build(&common.game_dir)?;
            }
            let (layout, cfg) = layout(&common)?;
            let started = launcher::start(&layout, &cfg, Timeouts::default())?;
            if launcher::procs(&cfg, layout.host.as_deref()).is_empty() {
                println!("nothing to start here: every process of the config names a host (use --host)");
            } else if started.is_empty() {
                println!("everything was already running");
            } else {
                println!("started {}", started.join(", "));
            }
            if supervise {
                let pid = oxworld_bin::supervisor::spawn(&layout)?;
                println!(
                    "supervisor running (pid {pid}); log: {}",
                    oxworld_bin::supervisor::log_file(&layout).display()
                );
            }
            let here = launcher::procs(&cfg, layout.host.as_deref());
            let gates: Vec<&oxworld_net::config::GateConfig> = cfg
                .gates
                .iter()
                .filter(|g| here.iter().any(|p| p.kind == launcher::Kind::Gate && p.id == g.id))
                .collect();
            let addrs: Vec<String> = gates.iter().map(|g| g.advertise_addr.to_string()).collect();
            println!(
                "ready; clients connect to {}",
                if addrs.is_empty() { "(no gate on this host)".into() } else { addrs.join(", ") }
            );
            for g in gates {
                let page = g.web_root_in(layout.game_dir.as_deref()).filter(|d| d.join("index.html").is_file());
                if let (Some(ws), Some(_)) = (g.ws_advertise_addr, page) {
                    println!("gate{}: open http://{ws}/ in a browser", g.id);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { common, json, watch } => {
            let (layout, cfg) = layout(&common)?;
            loop {
                let st = launcher::status(&layout, &cfg);
                let rows: Vec<StatusRow> = st.iter().map(|s| StatusRow::of(s, &cfg)).collect();
                if watch {
                    // Clear the screen and go home, as `top` does.
                    print!("\x1b[2J\x1b[H");
                }
                if json {
                    println!("{}", serde_json::to_string(&rows)?);
                } else {
                    print_table(&rows);
                    if let Some(pid) = oxworld_bin::supervisor::running(&layout) {
                        println!("supervised (supervisor pid {pid})");
                    }
                }
                if !watch {
                    let healthy = st.iter().all(launcher::ProcStatus::healthy);
                    return Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE });
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Cmd::Stop { common, grace } => {
            let (layout, cfg) = layout(&common)?;
            if let Some(pid) = oxworld_bin::supervisor::end(&layout) {
                println!("ended the supervisor (pid {pid})");
            }
            let stopped = launcher::stop(&layout, &cfg, Duration::from_secs(grace));
            if stopped.is_empty() {
                println!("nothing was running");
            } else {
                println!("stopped {}", stopped.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Reload { common, build, timeout } => {
            if build {
                launcher::build(&common.game_dir)?;
            }
            let (layout, cfg) = layout(&common)?;
            let reports = launcher::reload(&layout, &cfg, Duration::from_secs(timeout))?;
            let mut failed = 0;
            for r in &reports {
                let pause = r.pause_ms.map(|p| format!("{p} ms")).unwrap_or_else(|| "unknown".into());
                println!(
                    "game{}: {} entities; freeze {} ms, restore {} ms, pause {pause}; {} held messages released, {} failed",
                    r.game, r.entities, r.freeze_ms, r.restore_ms, r.released, r.failed
                );
                failed += r.failed;
            }
            if failed > 0 {
                eprintln!(
                    "oxworld: {failed} held messages were answered with an error because a game was away longer than \
                     freeze_hold_timeout_s / freeze_hold_max_bytes allow"
                );
                return Ok(ExitCode::FAILURE);
            }
            println!("reloaded {} games", reports.len());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Keygen { config, public } => {
            let cfg = Config::load(&config)?;
            if !public {
                for k in launcher::ensure_gate_keys(&cfg)? {
                    eprintln!("wrote {}", k.display());
                }
            }
            for g in &cfg.gates {
                if !g.encrypt {
                    println!("gate{}: encrypt = false (no key)", g.id);
                    continue;
                }
                let key = oxworld_net::channel::read_key_file(&g.key_file).map_err(anyhow::Error::msg)?;
                println!("gate{}: {}  ({})", g.id, oxworld_net::channel::hex(&key.public()), g.key_file.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::ImportConfig { goworld_ini } => {
            let text =
                std::fs::read_to_string(&goworld_ini).with_context(|| format!("reading {}", goworld_ini.display()))?;
            let out = oxworld_bin::import_config::convert(&text);
            for n in &out.notes {
                eprintln!("{n}");
            }
            print!("{}", out.config);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Supervise(c) => {
            let (layout, cfg) = layout(&c)?;
            oxworld_bin::supervisor::run(&layout, &cfg)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Kill(c) => {
            let (layout, cfg) = layout(&c)?;
            if let Some(pid) = oxworld_bin::supervisor::end(&layout) {
                println!("ended the supervisor (pid {pid})");
            }
            let killed = launcher::kill_all(&layout, &cfg);
            println!("killed {}", if killed.is_empty() { "nothing".to_owned() } else { killed.join(", ") });
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("oxworld: {e:#}");
            ExitCode::from(2)
        }
    }
}
