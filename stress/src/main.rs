//! `oxworld-stress`: load bots against a running cluster; reports what it measured.
//!
//! Scenarios (each in its own module): `echo` (against `demo/echo`), `chat`
//! (`demo/chatroom`), `migrate`, `testgame` and `crowd` (`demo/testgame`), `arena`
//! (`demo/arena`). Every scenario records, per action, a count, errors and a latency histogram,
//! some also counters (arena: moves, shots, hits...) (`report`). While running, a progress line
//! shows actions/s, errors and p99 (on a terminal, without `--json`); at the end a summary, with
//! `--json` one JSON object as the last stdout line, with `--report DIR` CSVs and an SVG plot.
//! Exit code: 0 without errors, 1 with errors, 2 if the run could not happen. `--strict` stops
//! the run at the first error and prints it (which bot, which action, what was expected).

mod arena;
mod chaos;
mod chat;
mod crowd;
mod echo;
mod floor;
mod migrate;
mod relay;
mod report;
mod testgame;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use oxworld_net::config::Config;
use report::{Live, Report};

/// How long unanswered calls may still be answered after the sending deadline.
pub(crate) const ANSWER_GRACE: Duration = Duration::from_secs(5);
/// Wait before a bot reconnects (`--reconnect`).
pub(crate) const RECONNECT_DELAY: Duration = Duration::from_millis(200);
/// How long a bot may take to get its boot entity.
pub(crate) const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Load bots for an oxworld cluster.
#[derive(Debug, Parser)]
#[command(name = "oxworld-stress", version)]
struct Cli {
    /// Scenario to run (`echo`, `chat`, `migrate`, `testgame`, `crowd`, `arena`).
    #[arg(long, default_value = "echo")]
    scenario: String,
    /// Number of bots.
    #[arg(long, default_value_t = 50)]
    bots: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Actions per second per bot (echo: calls; migrate: hops; testgame: on average; chat,
    /// crowd and arena ignore it).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Cluster config (the gates' addresses are read from it).
    #[arg(long, default_value = "conf/oxworld.ini")]
    config: PathBuf,
    /// Threads sharing the bots.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print one JSON object as the last line of stdout (and no progress line).
    #[arg(long)]
    json: bool,
    /// Stop at the first error or action timeout and print it.
    #[arg(long)]
    strict: bool,
    /// Reconnect (and log in again) after a disconnect instead of counting it as an error;
    /// in `testgame`, a bot whose player was lost with its game (`PlayerLost`) logs in again
    /// too, counted in `relogins`, and the action it was waiting for is not an error.
    #[arg(long)]
    reconnect: bool,
    /// `testgame`: SIGKILL process NAME (its pid file in --run-dir, e.g. `game1`) SECS seconds
    /// into the steady phase (`--kill game1@20`; repeatable). The JSON line gets `kills`: per
    /// kill, how long each bot took to its first successful action started after it.
    #[arg(long, value_name = "NAME@SECS")]
    kill: Vec<String>,
    /// `testgame` with `--reconnect`: the chaos run. SIGKILLs `game1`, `gate1` and
    /// `dispatcher1` (their pid files in --run-dir) at 2/9, 4/9 and 6/9 of the steady phase
    /// (20, 40 and 60 s of `--duration 90`). The JSON line gets `chaos`, one object per kill
    /// (bots affected, their recovery, the errors that kill caused); `errors` counts only what
    /// no kill explains.
    #[arg(long)]
    chaos: bool,
    /// Write per-action latency percentiles as CSV and an SVG plot into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Client transport: `tcp`, `ws` (WebSocket) or `kcp` (the gate's `ws_advertise_addr` / `kcp_advertise_addr`).
    /// Encryption and compression follow the gate's config (`encrypt`, its key file).
    #[arg(long, default_value = "tcp")]
    transport: oxworld_client::Transport,
    /// Put a lossy link between the bots and the gate: percent of UDP datagrams dropped (KCP
    /// only: a user-space relay cannot drop TCP segments).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// One-way delay of that link in ms (every transport).
    #[arg(long, default_value_t = 0)]
    delay: u64,
    /// Each packet's delay varies uniformly by this much either way, in ms (UDP reorders).
    #[arg(long, default_value_t = 0)]
    jitter: u64,
    /// testgame: bots do not move (by default each sends `Move` on half of its 100 ms ticks,
    /// as GoWorld's test_client does).
    #[arg(long)]
    no_move: bool,
    /// After the run, measure the floor: the CPU one small loopback TCP write costs this
    /// machine (3 s at the gate's delivery rate), printed beside the gate's cost per delivered
    /// message (which needs the gates' `metrics_addr`).
    #[arg(long)]
    floor: bool,
    /// Run directory of the cluster (`oxworld start --run-dir`): report CPU% and RSS of every
    /// process with a pid file there, and of the bots themselves.
    #[arg(long)]
    run_dir: Option<PathBuf>,
}

/// CPU time (ticks) and RSS (KiB) of one process, read from /proc.
fn proc_sample(pid: &str) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit(')').next()?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command: state is [0], utime [11], stime [12].
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    Some((ticks, rss))
}

/// Processes to watch: (name, pid) from `*.pid` files, plus the bots (`self`).
fn watched(run_dir: &Option<PathBuf>) -> Vec<(String, String)> {
    let mut v = vec![("bots".to_owned(), "self".to_owned())];
    let Some(dir) = run_dir else { return v };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return v;
    };
    let mut procs: Vec<(String, String)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(".pid")?.to_owned();
            let pid = std::fs::read_to_string(e.path()).ok()?.trim().to_owned();
            Some((name, pid))
        })
        .collect();
    procs.sort();
    v.extend(procs);
    v
}

/// What a [`CpuWindow`] measured.
struct Usage {
    /// `steady` when both ends of the steady phase were seen, else `whole`.
    phase: &'static str,
    /// Seconds measured.
    secs: f64,
    /// (name, CPU %, RSS KiB) of each watched process.
    procs: Vec<(String, f64, u64)>,
    /// Messages the gates delivered to clients meanwhile (when their metrics are on).
    delivered: Option<f64>,
}

/// Samples of every watched process at one instant, and the messages the gates had delivered.
type Samples = (Instant, Vec<Option<(u64, u64)>>, Option<f64>);

/// The sum of every sample of counter `name` at a metrics endpoint (a plain HTTP GET).
fn scrape(addr: std::net::SocketAddr, name: &str) -> Option<f64> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let sum = text
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(' ') || r.starts_with('{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    Some(sum)
}

/// CPU of the watched processes over the steady phase: from the moment every bot thread's bots
/// are in and sending (logins, and their password hashes, excluded) to the moment every thread
/// stopped sending. Scenarios that do not mark their phases (echo, migrate, crowd), or a run
/// cut short, are measured from the start or to the end of the run instead. A process that
/// exited meanwhile (a game replaced by a hot swap) is left out.
struct CpuWindow {
    watch: Vec<(String, String)>,
    /// The gates' metrics endpoints (for messages delivered over the window).
    gates: Vec<std::net::SocketAddr>,
    whole: Samples,
    from: Option<Samples>,
    to: Option<Samples>,
}

impl CpuWindow {
    fn new(watch: Vec<(String, String)>, gates: Vec<std::net::SocketAddr>) -> Self {
        let whole = Self::sample(&watch, &gates);
        CpuWindow { watch, gates, whole, from: None, to: None }
    }

    fn sample(watch: &[(String, String)], gates: &[std::net::SocketAddr]) -> Samples {
        let delivered = (!gates.is_empty())
            .then(|| gates.iter().map(|g| scrape(*g, "oxworld_client_msgs_out_total")).sum::<Option<f64>>())
            .flatten();
        (Instant::now(), watch.iter().map(|(_, pid)| proc_sample(pid)).collect(), delivered)
    }

    /// Takes the phase's samples when the bot threads reach them.
    fn poll(&mut self, live: &Live, threads: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.from.is_none() && live.sending.load(Relaxed) >= threads as u64 {
            self.from = Some(Self::sample(&self.watch, &self.gates));
        }
        if self.from.is_some() && self.to.is_none() && live.sent.load(Relaxed) >= threads as u64 {
            self.to = Some(Self::sample(&self.watch, &self.gates));
        }
    }

    /// What the window measured.
    fn usage(&self) -> Usage {
        let phase = if self.from.is_some() && self.to.is_some() { "steady" } else { "whole" };
        let begin = self.from.as_ref().unwrap_or(&self.whole);
        let end = self.to.clone().unwrap_or_else(|| Self::sample(&self.watch, &self.gates));
        let delivered = end.2.zip(begin.2).map(|(e, b)| e - b);
        let secs = end.0.duration_since(begin.0).as_secs_f64().max(0.001);
        let usage = self
            .watch
            .iter()
            .zip(begin.1.iter().zip(&end.1))
            .filter_map(|((name, _), (b, e))| {
                let ((t0, _), (t1, rss)) = ((*b)?, (*e)?);
                // Linux reports CPU time in clock ticks of 1/100 s on every mainstream configuration.
                Some((name.clone(), t1.saturating_sub(t0) as f64 / 100.0 / secs * 100.0, rss))
            })
            .collect();
        Usage { phase, secs, procs: usage, delivered }
    }
}

/// One `--kill NAME@SECS`.
#[derive(Debug, Clone, PartialEq)]
struct Kill {
    process: String,
    at: Duration,
}

impl Kill {
    fn parse(s: &str) -> anyhow::Result<Kill> {
        let (name, secs) = s.split_once('@').with_context(|| format!("--kill {s:?}: expected NAME@SECS"))?;
        let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let secs: f64 = secs.parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0 && ok).with_context(|| {
            format!("--kill {s:?}: expected a process name (game1, gate1, ...) @ seconds into the steady phase")
        })?;
        Ok(Kill { process: name.to_owned(), at: Duration::from_secs_f64(secs) })
    }
}

/// SIGKILLs the process whose pid file is `<dir>/<name>.pid` and tells the bots when.
fn kill_now(dir: &std::path::Path, name: &str, live: &Live) -> anyhow::Result<()> {
    let file = dir.join(format!("{name}.pid"));
    let pid: i32 = std::fs::read_to_string(&file)
        .with_context(|| format!("--kill {name}: reading {}", file.display()))?
        .trim()
        .parse()
        .with_context(|| format!("--kill {name}: {} holds no pid", file.display()))?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
        .with_context(|| format!("--kill {name}: pid {pid}"))?;
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    live.killed(Instant::now(), unix_ms);
    eprintln!("oxworld-stress: killed {name} (pid {pid})");
    Ok(())
}

/// The kills of the run: `--kill`s, or the chaos run's.
fn kill_plan(cli: &Cli) -> anyhow::Result<Vec<Kill>> {
    if cli.chaos {
        if !cli.kill.is_empty() {
            bail!("--chaos makes its own kills: no --kill with it");
        }
        if !cli.reconnect {
            bail!("--chaos needs --reconnect (bots log in again or resume after a loss)");
        }
        return Ok(chaos::plan(Duration::from_secs(cli.duration))
            .into_iter()
            .map(|(process, at)| Kill { process, at })
            .collect());
    }
    cli.kill.iter().map(|k| Kill::parse(k)).collect()
}

/// The `kills` array of the JSON line.
fn kills_json(cli: &Cli, rep: &Report, live: &Live) -> String {
    let when: Vec<u64> = live.kills.lock().map(|k| k.iter().map(|(_, ms)| *ms).collect()).unwrap_or_default();
    let items: Vec<String> = kill_plan(cli)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            let mut v = rep.recoveries.get(&i).cloned().unwrap_or_default();
            v.sort_unstable();
            let at = |q: f64| v.get(((v.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0);
            format!(
                "{{\"process\":\"{}\",\"at_s\":{:.1},\"killed_at_unix_ms\":{},\"bots\":{},\"recovered\":{},\"recover_p50_ms\":{},\"recover_p99_ms\":{},\"recover_max_ms\":{}}}",
                k.process,
                k.at.as_secs_f64(),
                when.get(i).copied().unwrap_or(0),
                cli.bots,
                v.len(),
                at(0.5),
                at(0.99),
                v.last().copied().unwrap_or(0)
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

fn run(cli: &Cli, live: &Arc<Live>, cpu: &mut CpuWindow) -> anyhow::Result<Report> {
    if !["echo", "chat", "migrate", "testgame", "crowd", "arena"].contains(&cli.scenario.as_str()) {
        bail!("unknown scenario {:?} (available: echo, chat, migrate, testgame, crowd, arena)", cli.scenario);
    }
    let kills = kill_plan(cli)?;
    if !kills.is_empty() && cli.scenario != "testgame" {
        bail!("--kill and --chaos are for --scenario testgame");
    }
    let board = crowd::Board::default();
    let run_id = arena::run_id();
    let cfg = Config::load(&cli.config)?;
    let gates: Vec<oxworld_client::Dial> = cfg
        .gates
        .iter()
        .map(|g| oxworld_client::Dial::for_gate(g, cli.transport))
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    let mut gates = gates;
    if cli.loss > 0.0 || cli.delay > 0 || cli.jitter > 0 {
        if cli.loss > 0.0 && cli.transport != oxworld_client::Transport::Kcp {
            bail!("--loss needs --transport kcp (TCP's losses are repaired below any user-space relay)");
        }
        let link = relay::LinkCfg {
            loss_pct: cli.loss,
            delay: Duration::from_millis(cli.delay),
            jitter: Duration::from_millis(cli.jitter),
        };
        for d in &mut gates {
            d.addr = match cli.transport {
                oxworld_client::Transport::Kcp => relay::start_udp(d.addr, link)?,
                _ => relay::start_tcp(d.addr, link)?,
            };
        }
    }
    let threads = cli.threads.clamp(1, cli.bots.max(1));
    let per = cli.bots.div_ceil(threads);
    let duration = Duration::from_secs(cli.duration);
    let mut handles = Vec::new();
    for t in 0..threads {
        let first = t * per;
        let count = per.min(cli.bots.saturating_sub(first));
        let gates = gates.clone();
        let rate = cli.rate;
        let scenario = cli.scenario.clone();
        let live = live.clone();
        let total = cli.bots;
        let board = board.clone();
        let run_id = run_id.clone();
        let moves = !cli.no_move;
        let save_interval = cfg.storage.save_interval;
        handles.push(std::thread::Builder::new().name(format!("bots{t}")).spawn(move || match scenario.as_str() {
            "chat" => chat::run_chat(&gates, first, count, duration, live),
            "migrate" => migrate::run_migrate(&gates, first, count, duration, rate, live),
            "testgame" => {
                let opts = testgame::Opts { rate, total_bots: total, moves, save_interval };
                testgame::run_testgame(&gates, first, count, duration, opts, live)
            }
            "crowd" => crowd::run_crowd(&gates, first, count, total, duration, board, live),
            "arena" => arena::run_arena(&gates, first, count, duration, &run_id, live),
            _ => echo::run_echo(&gates, first, count, duration, rate, live),
        })?);
    }
    let bar = (!cli.json && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(Duration::from_millis(200));
        b
    });
    let start = Instant::now();
    let mut last = (start, 0u64);
    let mut steady_since: Option<Instant> = None;
    let mut kills = kills.iter();
    let mut next_kill = kills.next();
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
        if steady_since.is_none() && live.sending.load(std::sync::atomic::Ordering::Relaxed) >= threads as u64 {
            steady_since = Some(Instant::now());
        }
        if let (Some(k), Some(t0)) = (next_kill, steady_since)
            && t0.elapsed() >= k.at
        {
            let dir = cli.run_dir.as_deref().unwrap_or(std::path::Path::new("run"));
            kill_now(dir, &k.process, live)?;
            next_kill = kills.next();
        }
        cpu.poll(live, threads);
        if let Some(b) = &bar {
            let now = Instant::now();
            if now.duration_since(last.0) >= Duration::from_secs(1) {
                let done = live.done.load(std::sync::atomic::Ordering::Relaxed);
                let rate = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
                let p99 = live.recent.lock().map(|mut h| {
                    let v = if h.is_empty() { 0 } else { h.value_at_quantile(0.99) };
                    h.reset();
                    v
                });
                let errors = live.errors.load(std::sync::atomic::Ordering::Relaxed);
                b.set_message(format!(
                    "{} {:>4.0}s | {rate:>8.0} actions/s | errors {errors} | p99 {} us",
                    cli.scenario,
                    now.duration_since(start).as_secs_f64(),
                    p99.unwrap_or(0)
                ));
                last = (now, done);
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut total = Report::new(live.clone());
    for h in handles {
        let r = h.join().map_err(|_| anyhow::anyhow!("a bot thread panicked"))??;
        total.merge(r)?;
    }
    Ok(total)
}

/// `gate_deliveries`, `gate_us_per_delivery` and `raw_write_us`, those that were measured,
/// each followed by a comma.
fn delivery_json(delivered: Option<f64>, per_delivery: Option<f64>, floor: Option<floor::Floor>) -> String {
    let mut s = String::new();
    if let Some(d) = delivered {
        s.push_str(&format!("\"gate_deliveries\":{d:.0},"));
    }
    if let Some(us) = per_delivery {
        s.push_str(&format!("\"gate_us_per_delivery\":{us:.2},"));
    }
    if let Some(f) = floor {
        s.push_str(&format!("\"raw_write_us\":{:.2},", f.us_per_write));
    }
    s
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let metrics: Vec<std::net::SocketAddr> =
        Config::load(&cli.config).map(|c| c.gates.iter().filter_map(|g| g.metrics_addr).collect()).unwrap_or_default();
    let mut cpu = CpuWindow::new(watched(&cli.run_dir), metrics);
    let live = Live::new(cli.strict, cli.reconnect, cli.chaos);
    let result = run(&cli, &live, &mut cpu);
    if cli.delay > 0 || cli.jitter > 0 {
        // The relay still holds the bots' last packets (KCP BYEs among them): let them through.
        std::thread::sleep(Duration::from_millis(cli.delay + cli.jitter + 200));
    }
    let Usage { phase, secs: cpu_secs, procs: usage, delivered } = cpu.usage();
    // The gates' CPU per message they delivered, beside the floor (one raw loopback write).
    let gates_cpu: f64 = usage.iter().filter(|(n, _, _)| n.starts_with("gate")).map(|(_, c, _)| c).sum();
    let per_delivery =
        delivered.filter(|d| *d > 0.0 && gates_cpu > 0.0).map(|d| gates_cpu / 100.0 * cpu_secs * 1e6 / d);
    let floor = if cli.floor {
        let rate = delivered.map(|d| d / cpu_secs.max(0.001)).unwrap_or(0.0);
        match floor::measure(3.0, rate) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("oxworld-stress: floor: {e:#}");
                None
            }
        }
    } else {
        None
    };
    let rep = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("oxworld-stress: {e:#}");
            return ExitCode::from(2);
        }
    };
    let (mean, p50, p99, max) = report::summary(&rep.overall());
    let done: u64 = rep.actions.iter().filter(|(n, _)| !["reconnect", "aoi"].contains(n)).map(|(_, a)| a.count).sum();
    let per_s = done as f64 / cli.duration.max(1) as f64;
    let encrypted = Config::load(&cli.config).is_ok_and(|c| c.gates.iter().all(|g| g.encrypt));
    let mut line = format!(
        "scenario {} over {}{} | {} bots for {} s | {done} actions, {} errors | {per_s:.0} actions/s | mean {mean} us p50 {p50} us p99 {p99} us max {max} us",
        cli.scenario,
        cli.transport,
        if encrypted { ", encrypted" } else { ", unencrypted" },
        cli.bots,
        cli.duration,
        rep.errors
    );
    if cli.scenario == "echo" {
        line.push_str(&format!(" | calls {} replies {}", rep.calls, rep.replies));
    }
    if cli.scenario == "chat" {
        line.push_str(&format!(" | {:.0} deliveries/s", rep.deliveries as f64 / cli.duration.max(1) as f64));
    }
    if !rep.counts.is_empty() {
        let counts: Vec<String> = rep.counts.iter().map(|(name, n)| format!("{name} {n}")).collect();
        line.push_str(&format!(" | {}", counts.join(" ")));
    }
    println!("{line}");
    for l in report::action_lines(&rep) {
        println!("{l}");
    }
    if !usage.is_empty() {
        println!("  cpu over the {phase} phase ({cpu_secs:.1} s):");
    }
    for (name, cpu, rss) in &usage {
        println!("  {name:<12} cpu {cpu:5.1} %  rss {:6.1} MiB", *rss as f64 / 1024.0);
    }
    let servers_cpu: f64 = usage.iter().filter(|(n, _, _)| n != "bots").map(|(_, c, _)| c).sum();
    if usage.len() > 1 {
        println!("  servers      cpu {servers_cpu:5.1} %  (every process but the bots)");
    }
    if let (Some(d), Some(us)) = (delivered, per_delivery) {
        println!("  gates delivered {d:.0} messages to clients: {us:.2} us of gate CPU each");
    }
    if let Some(f) = floor {
        println!("  floor: one raw loopback write costs {:.2} us of CPU ({} writes)", f.us_per_write, f.writes);
    }
    if cli.strict && rep.errors > 0 {
        println!("strict: the run stopped at the first error:");
    }
    for s in &rep.samples {
        println!("  error: {s}");
    }
    for s in &rep.chaos_samples {
        println!("  {s}");
    }
    if let Some(dir) = &cli.report {
        match report::write_report(&rep, &cli.scenario, dir) {
            Ok(()) => println!("report written to {}", dir.display()),
            Err(e) => eprintln!("oxworld-stress: report: {e:#}"),
        }
    }
    if cli.json {
        let procs: Vec<String> =
            usage.iter().map(|(n, cpu, rss)| format!("\"{n}\":{{\"cpu_pct\":{cpu:.1},\"rss_kib\":{rss}}}")).collect();
        println!(
            "{{\"scenario\":\"{}\",\"transport\":\"{}\",\"encrypted\":{encrypted},\"link\":{{\"loss_pct\":{},\"delay_ms\":{},\"jitter_ms\":{}}},\"bots\":{},\"duration_s\":{},\"errors\":{},\"calls\":{},\"replies\":{},\"deliveries\":{},{}\"mean_us\":{mean},\"p50_us\":{p50},\"p99_us\":{p99},\"max_us\":{max},\"actions\":{},\"cpu_phase\":\"{phase}\",\"cpu_phase_s\":{cpu_secs:.1},\"servers_cpu_pct\":{servers_cpu:.1},{}\"kills\":{},\"chaos\":{},\"procs\":{{{}}}}}",
            cli.scenario,
            cli.transport,
            cli.loss,
            cli.delay,
            cli.jitter,
            cli.bots,
            cli.duration,
            rep.errors,
            rep.calls,
            rep.replies,
            rep.deliveries,
            report::counts_json(&rep),
            report::actions_json(&rep),
            delivery_json(delivered, per_delivery, floor),
            kills_json(&cli, &rep, &live),
            if cli.chaos {
                let plan: Vec<(String, Duration)> =
                    kill_plan(&cli).unwrap_or_default().into_iter().map(|k| (k.process, k.at)).collect();
                chaos::json(&plan, &rep.chaos)
            } else {
                "[]".to_owned()
            },
            procs.join(",")
        );
    }
    if rep.errors > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_specs_parse_and_bad_ones_are_refused() {
        assert_eq!(
            Kill::parse("game1@20").expect("valid"),
            Kill { process: "game1".into(), at: Duration::from_secs(20) }
        );
        assert_eq!(Kill::parse("gate2@0.5").expect("valid").at, Duration::from_millis(500));
        for bad in ["game1", "@3", "game1@", "game1@-1", "game1@nan", "../x@1", "game 1@2", "game1@inf"] {
            assert!(Kill::parse(bad).is_err(), "{bad}");
        }
    }
}
