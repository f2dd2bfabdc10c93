//! Status records: what a running process says about itself, for `oxworld start`, `status` and
//! `reload` to read instead of scraping logs. One JSON object per process in the file named by
//! `--status-file` (the CLI passes `run/<name>.status`), rewritten by the logic loop every
//! second and at every change of state, atomically (a temporary file renamed over it): a reader
//! never sees half a record, and a record whose `updated_ms` is more than [`STALLED_AFTER_MS`]
//! old means the loop is stalled (or the process is gone).
//!
//! ```json
//! {"name":"game1","kind":"game","pid":4242,"state":"ready","started_ms":1765000000000,
//!  "updated_ms":1765000004000,"swap":{"entities":10000,"at_ms":1765000003000,"freeze_ms":90,
//!  "restore_ms":40,"released":12,"failed":0,"pause_ms":130}}
//! ```
//! `state` is one of the names of [`ProcState`]; `swap` (games, after a hot swap) and `reason`
//! (`failed`, `restore-failed`) appear only when they apply.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::warn;
use oxworld_engine::metrics::Metrics;
use oxworld_engine::status::{ProcState, Report, SwapReport};
use oxworld_net::app::{App, Event, Outbox};
use serde::{Deserialize, Serialize};

/// This machine's host name (empty if it cannot be read).
fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
}

/// How often the logic loop rewrites its record.
pub const WRITE_EVERY: Duration = Duration::from_secs(1);
/// A record older than this is `stalled` to its readers: the loop has not run for 3 s.
pub const STALLED_AFTER_MS: u64 = 3_000;

/// One process's status record (the boundary type of the status file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// `dispatcher1`, `game2`, `gate1`, ...
    pub name: String,
    /// `dispatcher`, `game` or `gate`.
    pub kind: String,
    /// Its process id.
    pub pid: u32,
    /// A [`ProcState`] name.
    pub state: String,
    /// Unix milliseconds when the process started.
    pub started_ms: u64,
    /// Unix milliseconds of this write.
    pub updated_ms: u64,
    /// A game's last hot swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<SwapStatus>,
    /// Why the process failed or could not restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The machine it runs on (its host name).
    #[serde(default)]
    pub host: String,
    /// Its Prometheus endpoint, when `metrics_addr` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_addr: Option<String>,
    /// How busy it was over the last second (from the second record on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadStatus>,
}

/// What a process measured of itself over the last second (from its loop's own counters and
/// `/proc/self`), so `oxworld status` works with metrics off.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LoadStatus {
    /// CPU of the whole process (all threads), percent of one core.
    pub cpu_pct: f64,
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// Events the logic loop handled per second (frames in, connections, wake-ups).
    pub msgs_in_per_s: f64,
    /// Frames the logic loop sent per second.
    pub msgs_out_per_s: f64,
    /// Share of the time the logic loop was busy, percent.
    pub busy_pct: f64,
    /// What it holds: `clients` (gates), `entities` (games), `routes` (dispatchers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holds: Option<(String, u64)>,
}

/// Measures [`LoadStatus`] between two writes.
struct LoadSampler {
    stats: std::sync::Arc<oxworld_runtime::loopstats::LoopStats>,
    process: prometheus::process_collector::ProcessCollector,
    last: Option<(Instant, oxworld_runtime::loopstats::LoopSnapshot, f64)>,
}

impl LoadSampler {
    /// The process's CPU seconds and resident bytes, from its collector.
    fn cpu_and_rss(&self) -> (f64, f64) {
        use prometheus::core::Collector as _;
        let mut cpu = 0.0;
        let mut rss = 0.0;
        for f in self.process.collect() {
            let v = f.get_metric().first().map(|m| {
                if f.get_field_type() == prometheus::proto::MetricType::COUNTER {
                    m.get_counter().get_value()
                } else {
                    m.get_gauge().get_value()
                }
            });
            match (f.name(), v) {
                ("process_cpu_seconds_total", Some(v)) => cpu = v,
                ("process_resident_memory_bytes", Some(v)) => rss = v,
                _ => {}
            }
        }
        (cpu, rss)
    }

    /// The load since the last call (`None` the first time).
    fn sample(&mut self, now: Instant) -> Option<LoadStatus> {
        let snap = self.stats.snapshot();
        let (cpu, rss) = self.cpu_and_rss();
        let prev = self.last.replace((now, snap.clone(), cpu))?;
        let secs = now.saturating_duration_since(prev.0).as_secs_f64();
        if secs < 0.1 {
            self.last = Some(prev);
            return None;
        }
        let per_s = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        Some(LoadStatus {
            cpu_pct: ((cpu - prev.2).max(0.0) / secs * 1000.0).round() / 10.0,
            rss_kib: (rss / 1024.0) as u64,
            msgs_in_per_s: (per_s(snap.events_in, prev.1.events_in) * 10.0).round() / 10.0,
            msgs_out_per_s: (per_s(snap.frames_out, prev.1.frames_out) * 10.0).round() / 10.0,
            busy_pct: (per_s(snap.busy_ns, prev.1.busy_ns) / 1e7 * 10.0).round() / 10.0,
            holds: None,
        })
    }
}

/// A game's hot swap in a status record (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SwapStatus {
    /// Entities frozen (state `frozen`) or restored (after a restore).
    pub entities: u64,
    /// Unix ms when the dispatchers began holding the game's traffic (kept across restores,
    /// including failed ones, so the pause can be measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    /// From the freeze's start to the freeze written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_ms: Option<u64>,
    /// From the restoring process's start to every dispatcher's traffic released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_ms: Option<u64>,
    /// Held messages delivered after the restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<u64>,
    /// Held messages answered with an error (the game was away too long).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<u64>,
    /// How long clients waited: from `at_ms` to the traffic released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_ms: Option<u64>,
}

impl StatusRecord {
    /// The record's state, if it names one.
    pub fn proc_state(&self) -> Option<ProcState> {
        ProcState::parse(&self.state)
    }

    /// True if the record was last written more than [`STALLED_AFTER_MS`] before `now_ms`.
    pub fn is_stale(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.updated_ms) > STALLED_AFTER_MS
    }
}

/// Reads a status record; `None` if there is none or it is unreadable.
pub fn read(path: &Path) -> Option<StatusRecord> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes `rec` to `path` atomically (temporary file, then rename).
pub fn write(path: &Path, rec: &StatusRecord) -> std::io::Result<()> {
    let mut text = serde_json::to_string(rec).map_err(std::io::Error::other)?;
    text.push('\n');
    let tmp = path.with_extension("status.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Turns monotonic instants into Unix milliseconds: the runtime's one wall-clock reading at
/// start, paired with the instant it was taken.
#[derive(Debug, Clone, Copy)]
pub struct UnixClock {
    /// The instant of the reading.
    pub base: Instant,
    /// Unix milliseconds at `base`.
    pub base_ms: u64,
}

impl UnixClock {
    /// Unix milliseconds at `t`.
    pub fn ms(&self, t: Instant) -> u64 {
        self.base_ms + u64::try_from(t.saturating_duration_since(self.base).as_millis()).unwrap_or(0)
    }
}

/// Writes one process's record: every [`WRITE_EVERY`] and on every change of state.
pub struct StatusWriter {
    path: Option<PathBuf>,
    rec: StatusRecord,
    clock: UnixClock,
    last: Option<ProcState>,
    next_write: Option<Instant>,
    sampler: Option<LoadSampler>,
    holds: Option<(&'static str, u64)>,
}

impl StatusWriter {
    /// A writer for process `name` of `kind` (no file: `path` is `None`, nothing is written).
    pub fn new(path: Option<PathBuf>, name: &str, kind: &str, clock: UnixClock) -> Self {
        let rec = StatusRecord {
            name: name.to_owned(),
            kind: kind.to_owned(),
            pid: std::process::id(),
            state: ProcState::Starting.as_str().to_owned(),
            started_ms: clock.base_ms,
            updated_ms: clock.base_ms,
            swap: None,
            reason: None,
            host: hostname(),
            metrics_addr: None,
            load: None,
        };
        StatusWriter { path, rec, clock, last: None, next_write: None, sampler: None, holds: None }
    }

    /// Measures the process's load from `stats` (its loop's counters) into every record.
    pub fn sample_load(&mut self, stats: std::sync::Arc<oxworld_runtime::loopstats::LoopStats>) {
        let process = prometheus::process_collector::ProcessCollector::for_self();
        self.sampler = Some(LoadSampler { stats, process, last: None });
    }

    /// Names the process's metrics endpoint in its records.
    pub fn set_metrics_addr(&mut self, addr: std::net::SocketAddr) {
        self.rec.metrics_addr = Some(addr.to_string());
    }

    /// What the process holds (`clients`, `entities`, `routes`), for the next records.
    pub fn set_holds(&mut self, holds: Option<(&'static str, u64)>) {
        self.holds = holds;
    }

    /// The record as last written (or about to be).
    pub fn record(&self) -> &StatusRecord {
        &self.rec
    }

    /// Passes `r` on; an error is first written as state `failed` with its message (a process
    /// that cannot start says why in its record, not only in its log).
    pub fn fail_on_err<T>(&mut self, r: anyhow::Result<T>) -> anyhow::Result<T> {
        if let Err(e) = &r {
            self.write(Instant::now(), ProcState::Failed, Some(&format!("{e:#}")));
        }
        r
    }

    /// Sets the hot-swap fields written from now on.
    pub fn set_swap(&mut self, swap: Option<SwapStatus>) {
        self.rec.swap = swap;
    }

    /// Writes `state` now (with `reason`, if any).
    pub fn write(&mut self, now: Instant, state: ProcState, reason: Option<&str>) {
        if let Some(s) = &mut self.sampler
            && let Some(mut load) = s.sample(now)
        {
            load.holds = self.holds.map(|(k, n)| (k.to_owned(), n));
            self.rec.load = Some(load);
        }
        self.rec.state = state.as_str().to_owned();
        self.rec.updated_ms = self.clock.ms(now);
        self.rec.reason = reason.map(str::to_owned);
        self.last = Some(state);
        self.next_write = Some(now + WRITE_EVERY);
        if let Some(p) = &self.path
            && let Err(e) = write(p, &self.rec)
        {
            warn!("{}: cannot write status file {}: {e}", self.rec.name, p.display());
        }
    }

    /// Writes if the state changed or the last write is [`WRITE_EVERY`] old.
    pub fn maybe_write(&mut self, now: Instant, state: ProcState) {
        if self.last != Some(state) || self.next_write.is_none_or(|t| now >= t) {
            self.write(now, state, None);
        }
    }

    /// When the next periodic write is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.path.as_ref().and(self.next_write)
    }
}

/// Something to do when a process's state changes: `(from, to, now)`.
pub type OnChange = Box<dyn FnMut(ProcState, ProcState, Instant)>;

/// Turns a game's [`SwapReport`] into the record's fields.
pub type SwapFields = Box<dyn Fn(&SwapReport) -> SwapStatus>;

/// A process's logic with its status record kept up to date: every event and tick goes to the
/// app, then the record is written if its state changed or a second has passed. The runtime
/// drives this instead of the bare app.
pub struct Hosted<A> {
    /// The process's logic.
    pub app: A,
    /// Its status record.
    pub status: StatusWriter,
    on_change: Option<OnChange>,
    swap_fields: Option<SwapFields>,
    metrics: Option<crate::metrics::Publisher>,
}

impl<A: App + Report + Metrics> Hosted<A> {
    /// `app` reporting through `status`.
    pub fn new(app: A, status: StatusWriter) -> Self {
        Hosted { app, status, on_change: None, swap_fields: None, metrics: None }
    }

    /// Publishes the app's metrics through `p` once a second.
    pub fn publish_metrics(&mut self, p: crate::metrics::Publisher) {
        self.metrics = Some(p);
    }

    /// Runs `f` on every change of state (before the record is written).
    pub fn on_change(mut self, f: OnChange) -> Self {
        self.on_change = Some(f);
        self
    }

    /// Writes the app's hot-swap report into the record, through `f`.
    pub fn swap_fields(mut self, f: SwapFields) -> Self {
        self.swap_fields = Some(f);
        self
    }

    /// Writes the record now if due; runs the change hook first.
    fn report(&mut self, now: Instant) {
        let state = self.app.state();
        if let Some(prev) = self.status.last
            && prev != state
            && let Some(f) = &mut self.on_change
        {
            f(prev, state, now);
        }
        if let (Some(f), Some(swap)) = (&self.swap_fields, self.app.swap()) {
            self.status.set_swap(Some(f(&swap)));
        }
        self.status.set_holds(self.app.holds());
        self.status.maybe_write(now, state);
        if let Some(p) = &mut self.metrics {
            let app = &self.app;
            let swap = self.status.record().swap;
            p.maybe_publish(now, |m| {
                app.metrics(m);
                if let Some(s) = swap {
                    swap_metrics(&s, m);
                }
            });
        }
    }

    /// Writes the final record of a process whose loop ended: `stopped`, `frozen`, or `failed`
    /// with the app's reason.
    pub fn finish(&mut self, now: Instant, error: Option<&str>) {
        if let (Some(f), Some(swap)) = (&self.swap_fields, self.app.swap()) {
            self.status.set_swap(Some(f(&swap)));
        }
        let reason = error.or(self.app.fatal()).map(str::to_owned);
        match (self.app.state(), reason) {
            (_, Some(r)) => self.status.write(now, ProcState::Failed, Some(&r)),
            (ProcState::Frozen, None) => self.status.write(now, ProcState::Frozen, None),
            (_, None) => self.status.write(now, ProcState::Stopped, None),
        }
    }
}

/// A game's last hot swap as gauges (the restored process exports the whole swap: its
/// record keeps when the freeze began).
fn swap_metrics(s: &SwapStatus, m: &mut oxworld_engine::metrics::MetricSet) {
    m.gauge("swap_entities", "Entities frozen or restored by the last hot swap", &[], s.entities as f64);
    let secs = |v: Option<u64>| v.map(|ms| ms as f64 / 1000.0);
    let timed = [
        ("swap_freeze_seconds", "Last hot swap: from the freeze's start to the freeze written", secs(s.freeze_ms)),
        (
            "swap_restore_seconds",
            "Last hot swap: from the restoring process's start to its traffic released",
            secs(s.restore_ms),
        ),
        ("swap_pause_seconds", "Last hot swap: how long clients' calls waited (freeze to release)", secs(s.pause_ms)),
        ("swap_released", "Last hot swap: held messages delivered after the restore", s.released.map(|n| n as f64)),
        ("swap_failed", "Last hot swap: held messages answered with an error", s.failed.map(|n| n as f64)),
    ];
    for (name, help, v) in timed {
        if let Some(v) = v {
            m.gauge(name, help, &[], v);
        }
    }
}

impl<A: App + Report + Metrics> App for Hosted<A> {
    fn handle(&mut self, now: Instant, event: Event, out: &mut Outbox) {
        self.app.handle(now, event, out);
        if self.status.last != Some(self.app.state()) {
            self.report(now);
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox) {
        self.app.tick(now, out);
        self.report(now);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let metrics = self.metrics.as_ref().and_then(crate::metrics::Publisher::next_deadline);
        [self.app.next_deadline(), self.status.next_deadline(), metrics].into_iter().flatten().min()
    }

    fn done(&self) -> bool {
        self.app.done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Toy {
        state: ProcState,
        ticks: u32,
    }

    impl Metrics for Toy {
        fn metrics(&self, m: &mut oxworld_engine::metrics::MetricSet) {
            m.counter("toy_ticks_total", "ticks", &[], u64::from(self.ticks));
        }
    }

    impl App for Toy {
        fn handle(&mut self, _now: Instant, _event: Event, _out: &mut Outbox) {}
        fn tick(&mut self, _now: Instant, _out: &mut Outbox) {
            self.ticks += 1;
        }
        fn next_deadline(&self) -> Option<Instant> {
            None
        }
        fn done(&self) -> bool {
            false
        }
    }

    impl Report for Toy {
        fn state(&self) -> ProcState {
            self.state
        }
    }

    #[test]
    fn written_on_change_and_every_second_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("gate1.status");
        let t0 = Instant::now();
        let clock = UnixClock { base: t0, base_ms: 1_000_000 };
        let writer = StatusWriter::new(Some(path.clone()), "gate1", "gate", clock);
        let changes = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let seen = changes.clone();
        let mut h = Hosted::new(Toy { state: ProcState::Starting, ticks: 0 }, writer)
            .on_change(Box::new(move |a, b, _| seen.borrow_mut().push((a, b))));
        let mut out = Outbox::new();
        h.tick(t0, &mut out);
        let rec = read(&path).expect("written at the first tick");
        assert_eq!((rec.name.as_str(), rec.kind.as_str(), rec.state.as_str()), ("gate1", "gate", "starting"));
        assert_eq!(rec.pid, std::process::id());
        assert_eq!(h.next_deadline(), Some(t0 + WRITE_EVERY));
        h.app.state = ProcState::Ready;
        h.tick(t0 + Duration::from_millis(10), &mut out);
        let rec = read(&path).expect("rewritten on the change");
        assert_eq!((rec.proc_state(), rec.updated_ms), (Some(ProcState::Ready), 1_000_010));
        assert_eq!(*changes.borrow(), vec![(ProcState::Starting, ProcState::Ready)]);
        h.tick(t0 + Duration::from_millis(500), &mut out);
        assert_eq!(read(&path).expect("record").updated_ms, 1_000_010, "no change, under a second: not rewritten");
        h.tick(t0 + Duration::from_millis(1010), &mut out);
        let rec = read(&path).expect("record");
        assert_eq!(rec.updated_ms, 1_001_010, "rewritten after a second");
        assert!(!rec.is_stale(1_001_010 + STALLED_AFTER_MS) && rec.is_stale(1_001_011 + STALLED_AFTER_MS));
        h.finish(t0 + Duration::from_secs(2), Some("dispatcher 1 refused this process"));
        let rec = read(&path).expect("record");
        assert_eq!(rec.proc_state(), Some(ProcState::Failed));
        assert_eq!(rec.reason.as_deref(), Some("dispatcher 1 refused this process"));
    }

    #[test]
    fn garbage_and_missing_files_read_as_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("x.status");
        assert_eq!(read(&p), None);
        std::fs::write(&p, "{\"name\": 3").expect("write");
        assert_eq!(read(&p), None);
        std::fs::write(&p, "state=frozen entities=3").expect("write");
        assert_eq!(read(&p), None, "the old key=value format is not a record");
    }
}
