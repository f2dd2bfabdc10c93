//! `oxworld-stress`: load bots against a running cluster; reports what it measured.
//!
//! Scenario `echo`: every bot connects to a gate from the config (round robin), waits for its
//! boot entity, then calls `echo` `--rate` times per second and checks that every reply
//! carries what it sent, in order. Calls unanswered 5 s after the sending deadline, failed
//! connects and disconnects count as errors; the exit code is non-zero if there were any.
//!
//! Scenario `chat` (against `demo/chatroom`): see `chat.rs`. Scenario `migrate` (against
//! `demo/testgame`): see `migrate.rs`.

mod chat;
mod migrate;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use oxworld_net::botnet::{BotEvent, BotNet};
use oxworld_net::client_proto::{ClientMsg, ServerMsg};
use oxworld_net::config::Config;
use oxworld_net::{Id, Value, method_id};

/// How long unanswered calls may still be answered after the sending deadline.
pub(crate) const ANSWER_GRACE: Duration = Duration::from_secs(5);
/// How long a bot may take to get its boot entity.
pub(crate) const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Load bots for an oxworld cluster.
#[derive(Debug, Parser)]
#[command(name = "oxworld-stress", version)]
struct Cli {
    /// Scenario to run (`echo`, `chat`, `migrate`).
    #[arg(long, default_value = "echo")]
    scenario: String,
    /// Number of bots.
    #[arg(long, default_value_t = 50)]
    bots: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Calls per second per bot.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Cluster config (the gates' addresses are read from it).
    #[arg(long, default_value = "conf/oxworld.ini")]
    config: PathBuf,
    /// Threads sharing the bots.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    json: bool,
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

#[derive(Default)]
struct Bot {
    player: Option<Id>,
    seq: i64,
    outstanding: VecDeque<(i64, Instant)>,
    closed: bool,
}

pub(crate) struct Report {
    pub(crate) calls: u64,
    pub(crate) replies: u64,
    /// Chat: lines of other bots received.
    pub(crate) deliveries: u64,
    pub(crate) errors: u64,
    samples: Vec<String>,
    pub(crate) hist: Histogram<u64>,
}

impl Report {
    pub(crate) fn new() -> anyhow::Result<Self> {
        Ok(Report {
            calls: 0,
            replies: 0,
            deliveries: 0,
            errors: 0,
            samples: Vec::new(),
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).context("histogram")?,
        })
    }

    pub(crate) fn error(&mut self, what: String) {
        self.errors += 1;
        if self.samples.len() < 10 {
            self.samples.push(what);
        }
    }

    fn merge(&mut self, o: Report) -> anyhow::Result<()> {
        self.calls += o.calls;
        self.replies += o.replies;
        self.deliveries += o.deliveries;
        self.errors += o.errors;
        self.samples.extend(o.samples.into_iter().take(10usize.saturating_sub(self.samples.len())));
        self.hist.add(o.hist).context("merging histograms")?;
        Ok(())
    }
}

const PAYLOAD: &str = "oxworld-echo-payload";

fn run_echo(gates: &[SocketAddr], first: usize, count: usize, duration: Duration, rate: f64) -> anyhow::Result<Report> {
    let mut net = BotNet::new()?;
    let mut rep = Report::new()?;
    let mut bots: Vec<Bot> = Vec::with_capacity(count);
    let start = Instant::now();
    let send_until = start + duration;
    let hard_end = send_until + ANSWER_GRACE;
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut schedule: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut events = Vec::new();
    for i in 0..count {
        let addr = gates[(first + i) % gates.len()];
        match net.connect(addr) {
            Ok(b) => debug_assert_eq!(b, i),
            Err(e) => bail!("bot {}: connect to {addr}: {e}", first + i),
        }
        bots.push(Bot::default());
        // Spread the first calls over one interval so the bots do not fire in lockstep.
        let offset = interval.mul_f64(i as f64 / count.max(1) as f64);
        schedule.push(Reverse((start + offset, i)));
    }
    let echo = method_id("echo");
    loop {
        let now = Instant::now();
        if now >= hard_end {
            break;
        }
        if now >= send_until && bots.iter().all(|b| b.closed || b.outstanding.is_empty()) {
            break;
        }
        while let Some(&Reverse((due, i))) = schedule.peek() {
            if due > now || now >= send_until {
                break;
            }
            schedule.pop();
            let b = &mut bots[i];
            if b.closed {
                continue;
            }
            if let Some(player) = b.player {
                b.seq += 1;
                b.outstanding.push_back((b.seq, now));
                rep.calls += 1;
                let msg = ClientMsg::Call {
                    target: player,
                    method: echo,
                    args: vec![Value::from(PAYLOAD), Value::Int(b.seq)],
                };
                net.send(i, &msg, &mut events);
            } else if now.duration_since(start) > LOGIN_TIMEOUT {
                rep.error(format!("bot {}: no boot entity after {LOGIN_TIMEOUT:?}", first + i));
                b.closed = true;
                net.close(i);
                continue;
            }
            let next = (due + interval).max(now);
            schedule.push(Reverse((next, i)));
        }
        let wake = schedule.peek().map(|Reverse((t, _))| *t).unwrap_or(hard_end).min(hard_end);
        let timeout = wake.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
        net.poll(timeout, &mut events)?;
        let now = Instant::now();
        for ev in events.drain(..) {
            match ev {
                BotEvent::Connected(_) => {}
                BotEvent::Message(i, ServerMsg::CreateEntity { is_player: true, id, .. }) => bots[i].player = Some(id),
                BotEvent::Message(i, ServerMsg::Call { method, args, .. }) if method == "echo_reply" => {
                    let b = &mut bots[i];
                    let Some((seq, sent)) = b.outstanding.pop_front() else {
                        rep.error(format!("bot {}: reply without a call", first + i));
                        continue;
                    };
                    if args != [Value::from(PAYLOAD), Value::Int(seq)] {
                        rep.error(format!("bot {}: call {seq} answered with {args:?}", first + i));
                        continue;
                    }
                    rep.replies += 1;
                    let us = u64::try_from(now.duration_since(sent).as_micros()).unwrap_or(u64::MAX).max(1);
                    rep.hist.saturating_record(us);
                }
                BotEvent::Message(i, ServerMsg::Error { code, message, .. }) => {
                    rep.error(format!("bot {}: server error {code}: {message}", first + i));
                }
                BotEvent::Message(..) => {}
                BotEvent::Closed(i, reason) => {
                    bots[i].closed = true;
                    rep.error(format!("bot {}: disconnected: {reason}", first + i));
                }
            }
        }
    }
    for (i, b) in bots.iter().enumerate() {
        if !b.outstanding.is_empty() {
            rep.error(format!("bot {}: {} calls unanswered", first + i, b.outstanding.len()));
            rep.errors += b.outstanding.len() as u64 - 1;
        }
        if b.player.is_none() && !b.closed {
            rep.error(format!("bot {}: never got its boot entity", first + i));
        }
    }
    Ok(rep)
}

fn run(cli: &Cli) -> anyhow::Result<Report> {
    if !["echo", "chat", "migrate"].contains(&cli.scenario.as_str()) {
        bail!("unknown scenario {:?} (available: echo, chat, migrate)", cli.scenario);
    }
    let cfg = Config::load(&cli.config)?;
    let gates: Vec<SocketAddr> = cfg.gates.iter().map(|g| g.listen_addr).collect();
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
        handles.push(std::thread::Builder::new().name(format!("bots{t}")).spawn(move || match scenario.as_str() {
            "chat" => chat::run_chat(&gates, first, count, duration),
            "migrate" => migrate::run_migrate(&gates, first, count, duration, rate),
            _ => run_echo(&gates, first, count, duration, rate),
        })?);
    }
    let mut total = Report::new()?;
    for h in handles {
        let r = h.join().map_err(|_| anyhow::anyhow!("a bot thread panicked"))??;
        total.merge(r)?;
    }
    Ok(total)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let watch = watched(&cli.run_dir);
    let before: Vec<Option<(u64, u64)>> = watch.iter().map(|(_, pid)| proc_sample(pid)).collect();
    let t0 = Instant::now();
    let result = run(&cli);
    let wall = t0.elapsed().as_secs_f64();
    let usage: Vec<(String, f64, u64)> = watch
        .iter()
        .zip(&before)
        .filter_map(|((name, pid), b)| {
            let (t0, _) = (*b)?;
            let (t1, rss) = proc_sample(pid)?;
            // Linux reports CPU time in clock ticks of 1/100 s on every mainstream configuration.
            let cpu = (t1.saturating_sub(t0)) as f64 / 100.0 / wall.max(0.001) * 100.0;
            Some((name.clone(), cpu, rss))
        })
        .collect();
    let rep = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("oxworld-stress: {e:#}");
            return ExitCode::from(2);
        }
    };
    let h = &rep.hist;
    let (mean, p50, p99, max) = if h.is_empty() {
        (0, 0, 0, 0)
    } else {
        (h.mean().round() as u64, h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max())
    };
    let per_s = rep.replies as f64 / cli.duration.max(1) as f64;
    let deliveries_s = rep.deliveries as f64 / cli.duration.max(1) as f64;
    let rate = if cli.scenario == "chat" { "1 line per 1-3 s".to_owned() } else { format!("{}/s", cli.rate) };
    println!(
        "scenario {} | {} bots x {rate} for {} s | calls {} replies {} errors {} | {:.0} replies/s {:.0} deliveries/s | mean {} us p50 {} us p99 {} us max {} us",
        cli.scenario,
        cli.bots,
        cli.duration,
        rep.calls,
        rep.replies,
        rep.errors,
        per_s,
        deliveries_s,
        mean,
        p50,
        p99,
        max
    );
    for (name, cpu, rss) in &usage {
        println!("  {name:<12} cpu {cpu:5.1} %  rss {:6.1} MiB", *rss as f64 / 1024.0);
    }
    for s in &rep.samples {
        println!("  error: {s}");
    }
    if cli.json {
        let procs: Vec<String> = usage
            .iter()
            .map(|(n, cpu, rss)| format!("\"{n}\":{{\"cpu_pct\":{},\"rss_kib\":{rss}}}", cpu.round() as u64))
            .collect();
        println!(
            "{{\"scenario\":\"{}\",\"bots\":{},\"duration_s\":{},\"calls\":{},\"replies\":{},\"deliveries\":{},\"errors\":{},\"mean_us\":{},\"p50_us\":{},\"p99_us\":{},\"max_us\":{},\"procs\":{{{}}}}}",
            cli.scenario,
            cli.bots,
            cli.duration,
            rep.calls,
            rep.replies,
            rep.deliveries,
            rep.errors,
            mean,
            p50,
            p99,
            max,
            procs.join(",")
        );
    }
    if rep.errors > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
