//! What a run measured: per action a count, errors and a latency histogram; counters of things
//! that are not round trips (a scenario's moves, shots...); the run's first errors (bot,
//! action, what was expected); live counters for the progress bar and `--strict`; and the
//! outputs: the text summary, the JSON line and the `--report` directory (CSV per
//! action and an SVG plot of the latency percentiles).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use hdrhistogram::Histogram;

/// Actions that are counted but are not latencies.
const NOT_TIMED: [&str; 2] = ["reconnect", "aoi"];
/// Error messages kept for the summary.
const MAX_SAMPLES: usize = 10;
/// Percentiles written to the CSV and plotted.
const PERCENTILES: [f64; 12] = [0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0];

fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min, 3 significant digits; bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

/// A small xorshift generator for the bots' choices and timings: they only need to be spread,
/// not secret, and a seed per thread makes runs repeatable.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Sends `method(args)` to `target` from bot `i`.
pub(crate) fn call(
    net: &mut oxworld_client::botnet::BotNet,
    i: usize,
    target: oxworld_net::Id,
    method: &str,
    args: Vec<oxworld_net::Value>,
    events: &mut Vec<oxworld_client::botnet::BotEvent>,
) {
    let msg = oxworld_net::client_proto::ClientMsg::Call { target, method: oxworld_net::method_id(method), args };
    net.send(i, &msg, events);
}

/// One action's figures.
pub(crate) struct Action {
    pub(crate) count: u64,
    pub(crate) errors: u64,
    pub(crate) hist: Histogram<u64>,
}

impl Default for Action {
    fn default() -> Self {
        Action { count: 0, errors: 0, hist: histogram() }
    }
}

/// Counters shared by the bot threads and the main thread while running.
pub(crate) struct Live {
    pub(crate) done: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) recent: Mutex<Histogram<u64>>,
    /// Set on the first error under `--strict`: every bot thread stops.
    pub(crate) stop: AtomicBool,
    pub(crate) strict: bool,
    /// Bots reconnect after a disconnect (`--reconnect`) instead of counting it as an error.
    pub(crate) reconnect: bool,
    /// Bot threads whose bots are all in and sending, and those done sending: the steady
    /// phase over which CPU is measured runs from all of the first to all of the second.
    pub(crate) sending: AtomicU64,
    pub(crate) sent: AtomicU64,
    /// When each `--kill` happened, in order (bots measure their recovery from these).
    pub(crate) kills: Mutex<Vec<(std::time::Instant, u64)>>,
    /// The chaos run (`--chaos`): trouble after a kill counts against it, not in `errors`.
    pub(crate) chaos: bool,
    pub(crate) n_kills: std::sync::atomic::AtomicUsize,
}

impl Live {
    pub(crate) fn new(strict: bool, reconnect: bool, chaos: bool) -> Arc<Live> {
        Arc::new(Live {
            done: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            recent: Mutex::new(histogram()),
            stop: AtomicBool::new(false),
            strict,
            reconnect,
            sending: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            kills: Mutex::new(Vec::new()),
            chaos,
            n_kills: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Records a kill that happened at `at` (`unix_ms` by the wall clock).
    pub(crate) fn killed(&self, at: std::time::Instant, unix_ms: u64) {
        if let Ok(mut k) = self.kills.lock() {
            k.push((at, unix_ms));
            self.n_kills.store(k.len(), Ordering::Release);
        }
    }

    /// When each kill so far happened.
    pub(crate) fn kill_times(&self) -> Vec<std::time::Instant> {
        if self.n_kills.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        self.kills.lock().map(|k| k.iter().map(|(t, _)| *t).collect()).unwrap_or_default()
    }

    /// When the last kill at or before `now` happened, if any.
    pub(crate) fn last_kill(&self, now: std::time::Instant) -> Option<std::time::Instant> {
        if self.n_kills.load(Ordering::Acquire) == 0 {
            return None;
        }
        let k = self.kills.lock().ok()?;
        k.iter().rev().map(|(t, _)| *t).find(|t| *t <= now)
    }

    /// Kills from index `from` on that happened at or before `started` (an action started
    /// then is the first one after them), with their times.
    pub(crate) fn kills_before(&self, from: usize, started: std::time::Instant) -> Vec<(usize, std::time::Instant)> {
        if self.n_kills.load(Ordering::Acquire) <= from {
            return Vec::new();
        }
        let Ok(k) = self.kills.lock() else { return Vec::new() };
        k.iter().enumerate().skip(from).take_while(|(_, (t, _))| *t <= started).map(|(i, (t, _))| (i, *t)).collect()
    }

    /// This bot thread's bots are all in and it starts sending (once per thread).
    pub(crate) fn began_sending(&self) {
        self.sending.fetch_add(1, Ordering::Relaxed);
    }

    /// This bot thread stopped sending (once per thread, after [`Live::began_sending`]).
    pub(crate) fn done_sending(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// What one bot thread (then the whole run) measured.
pub(crate) struct Report {
    /// Echo: calls sent and replies checked (kept in the JSON for compatibility).
    pub(crate) calls: u64,
    pub(crate) replies: u64,
    /// Chat: lines of other bots received.
    pub(crate) deliveries: u64,
    /// Scenario counters that are not round trips (arena: moves, shots, hits...), written as
    /// top-level fields of the JSON line.
    pub(crate) counts: BTreeMap<&'static str, u64>,
    pub(crate) errors: u64,
    pub(crate) samples: Vec<String>,
    pub(crate) actions: BTreeMap<&'static str, Action>,
    /// Per `--kill` (by index): each bot's time from the kill to its first successful action
    /// started after it, in ms.
    pub(crate) recoveries: BTreeMap<usize, Vec<u64>>,
    /// The chaos run: per kill, what it did (see `chaos`).
    pub(crate) chaos: Vec<crate::chaos::KillStat>,
    /// The first failures the chaos run put down to a kill.
    pub(crate) chaos_samples: Vec<String>,
    live: Arc<Live>,
}

impl Report {
    pub(crate) fn new(live: Arc<Live>) -> Self {
        Report {
            calls: 0,
            replies: 0,
            deliveries: 0,
            counts: BTreeMap::new(),
            errors: 0,
            samples: Vec::new(),
            actions: BTreeMap::new(),
            recoveries: BTreeMap::new(),
            chaos: Vec::new(),
            chaos_samples: Vec::new(),
            live,
        }
    }

    /// A bot whose next unrecovered kill is `*next` finished an action started at `started`
    /// successfully at `now`: it has recovered from every kill before `started`.
    pub(crate) fn recovered(&mut self, next: &mut usize, started: std::time::Instant, now: std::time::Instant) {
        for (k, at) in self.live.kills_before(*next, started) {
            let ms = u64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(u64::MAX);
            self.recoveries.entry(k).or_default().push(ms);
            *next = k + 1;
        }
    }

    /// Adds `n` to counter `name` (0 makes it appear in the outputs).
    pub(crate) fn count(&mut self, name: &'static str, n: u64) {
        *self.counts.entry(name).or_default() += n;
    }

    /// The shared live counters.
    pub(crate) fn live(&self) -> &Live {
        &self.live
    }

    /// Action `name` succeeded after `us` microseconds.
    pub(crate) fn ok(&mut self, name: &'static str, us: u64) {
        let a = self.actions.entry(name).or_default();
        a.count += 1;
        a.hist.saturating_record(us.max(1));
        self.live.done.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut h) = self.live.recent.lock() {
            h.saturating_record(us.max(1));
        }
    }

    /// Action `name` failed: `what` says which bot, and what was expected.
    pub(crate) fn fail(&mut self, name: &'static str, what: String) {
        let a = self.actions.entry(name).or_default();
        a.count += 1;
        a.errors += 1;
        self.error(what);
    }

    /// In the chaos run, the kill (index) trouble with an action pending from `since` to `now`
    /// belongs to.
    pub(crate) fn chaos_kill(&self, since: std::time::Instant, now: std::time::Instant) -> Option<usize> {
        if !self.live.chaos {
            return None;
        }
        crate::chaos::kill_of(&self.live.kill_times(), since, now)
    }

    /// The stats of kill `k` (created on first use).
    pub(crate) fn kill_stat(&mut self, k: usize) -> &mut crate::chaos::KillStat {
        if self.chaos.len() <= k {
            self.chaos.resize(k + 1, Default::default());
        }
        &mut self.chaos[k]
    }

    /// Action `name`, pending from `since`, failed at `now`: against the kill it belongs to in
    /// the chaos run (`call` when the server answered with an error), else an error.
    pub(crate) fn fail_after(
        &mut self,
        name: &'static str,
        what: String,
        since: std::time::Instant,
        now: std::time::Instant,
        call: bool,
    ) {
        match self.chaos_kill(since, now) {
            Some(k) => {
                let st = self.kill_stat(k);
                if call {
                    st.call_errors += 1;
                } else {
                    st.other_errors += 1;
                }
                self.actions.entry(name).or_default().count += 1;
                if self.chaos_samples.len() < MAX_SAMPLES {
                    self.chaos_samples.push(format!("after kill {}: {what}", k + 1));
                }
            }
            None => self.fail(name, what),
        }
    }

    /// An error outside any action (a disconnect, a refused login).
    pub(crate) fn error(&mut self, what: String) {
        self.errors += 1;
        self.live.errors.fetch_add(1, Ordering::Relaxed);
        if self.live.strict {
            self.live.stop.store(true, Ordering::Relaxed);
        }
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(what);
        }
    }

    pub(crate) fn merge(&mut self, o: Report) -> anyhow::Result<()> {
        self.calls += o.calls;
        self.replies += o.replies;
        self.deliveries += o.deliveries;
        for (name, n) in o.counts {
            self.count(name, n);
        }
        self.errors += o.errors;
        self.samples.extend(o.samples.into_iter().take(MAX_SAMPLES.saturating_sub(self.samples.len())));
        let room = MAX_SAMPLES.saturating_sub(self.chaos_samples.len());
        self.chaos_samples.extend(o.chaos_samples.into_iter().take(room));
        for (k, v) in o.recoveries {
            self.recoveries.entry(k).or_default().extend(v);
        }
        if self.chaos.len() < o.chaos.len() {
            self.chaos.resize(o.chaos.len(), Default::default());
        }
        for (mine, theirs) in self.chaos.iter_mut().zip(&o.chaos) {
            mine.merge(theirs);
        }
        for (name, a) in o.actions {
            let mine = self.actions.entry(name).or_default();
            mine.count += a.count;
            mine.errors += a.errors;
            mine.hist.add(a.hist).context("merging histograms")?;
        }
        Ok(())
    }

    /// All actions' latencies together (not counting events that are not round trips:
    /// reconnects and AOI checks).
    pub(crate) fn overall(&self) -> Histogram<u64> {
        let mut h = histogram();
        for (name, a) in &self.actions {
            if !NOT_TIMED.contains(name) {
                let _ = h.add(&a.hist);
            }
        }
        h
    }
}

/// (mean, p50, p99, max) in µs, zeros when empty.
pub(crate) fn summary(h: &Histogram<u64>) -> (u64, u64, u64, u64) {
    if h.is_empty() {
        (0, 0, 0, 0)
    } else {
        (h.mean().round() as u64, h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max())
    }
}

/// The `actions` object of the JSON line.
pub(crate) fn actions_json(rep: &Report) -> String {
    let items: Vec<String> = rep
        .actions
        .iter()
        .map(|(name, a)| {
            let (mean, p50, p99, max) = summary(&a.hist);
            format!(
                "\"{name}\":{{\"count\":{},\"errors\":{},\"mean_us\":{mean},\"p50_us\":{p50},\"p99_us\":{p99},\"max_us\":{max}}}",
                a.count, a.errors
            )
        })
        .collect();
    format!("{{{}}}", items.join(","))
}

/// The counters as JSON fields, each followed by a comma (nothing without counters).
pub(crate) fn counts_json(rep: &Report) -> String {
    let items: Vec<String> = rep.counts.iter().map(|(name, n)| format!("\"{name}\":{n},")).collect();
    items.concat()
}

/// Text lines: one per action.
pub(crate) fn action_lines(rep: &Report) -> Vec<String> {
    rep.actions
        .iter()
        .map(|(name, a)| {
            let (mean, p50, p99, max) = summary(&a.hist);
            format!(
                "  {name:<12} {:>8} done {:>6} errors | mean {:>8} us p50 {:>8} us p99 {:>8} us max {:>8} us",
                a.count, a.errors, mean, p50, p99, max
            )
        })
        .collect()
}

/// Writes `<dir>/<action>.csv` (percentile, latency in µs) for every action and
/// `<dir>/latency.svg`, a plot of every action's percentiles.
pub(crate) fn write_report(rep: &Report, scenario: &str, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, a) in &rep.actions {
        let mut csv = String::from("percentile,latency_us\n");
        for p in PERCENTILES {
            let v = if a.hist.is_empty() { 0 } else { a.hist.value_at_percentile(p) };
            let _ = writeln!(csv, "{p},{v}");
        }
        let path = dir.join(format!("{name}.csv"));
        std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?;
    }
    let path = dir.join("latency.svg");
    plot(rep, scenario, &path).with_context(|| format!("writing {}", path.display()))
}

/// Latency by percentile, one line per action; the x axis spreads the tail (it is
/// `-log10(1 - p/100)`: 90 %, 99 %, 99.9 % ... equally spaced), the y axis is logarithmic.
fn plot(rep: &Report, scenario: &str, path: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let xs: Vec<f64> = PERCENTILES.iter().map(|p| -(1.0 - (p / 100.0).min(0.99999)).log10()).collect();
    let max_us = rep.actions.values().filter(|a| !a.hist.is_empty()).map(|a| a.hist.max()).max().unwrap_or(1).max(10);
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let title = format!("oxworld-stress {scenario}: latency by percentile");
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..5.2f64, (1f64..(max_us as f64 * 2.0)).log_scale())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_labels(7)
        .x_label_formatter(&|x| {
            let p = 100.0 * (1.0 - 10f64.powf(-x));
            let t = format!("{p:.3}");
            format!("{}%", t.trim_end_matches('0').trim_end_matches('.'))
        })
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (i, (name, a)) in rep.actions.iter().enumerate() {
        if a.hist.is_empty() {
            continue;
        }
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> =
            PERCENTILES.iter().zip(&xs).map(|(p, x)| (*x, a.hist.value_at_percentile(*p).max(1) as f64)).collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(name.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
