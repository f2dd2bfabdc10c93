//! The Prometheus endpoint of a process (`[xN] metrics_addr`): a helper thread answers
//! `GET /metrics` with the latest [`MetricSet`] the logic loop published (once a second, see
//! [`Publisher`]), its loop's own counters and the process's CPU and memory, in the classic
//! text exposition format written by the `prometheus` crate. The loop never waits for it: it
//! swaps a snapshot under a `parking_lot` mutex once a second.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxworld_engine::metrics::{MetricKind, MetricSet, SampleValue};
use oxworld_runtime::loopstats::{ITERATION_BUCKETS_US, LoopStats};
use parking_lot::Mutex;
use prometheus::core::Collector as _;
use prometheus::proto;

/// How often the loop publishes its metrics.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// The latest metrics of the loop, shared with the endpoint thread.
#[derive(Debug, Default)]
pub struct Shared {
    set: Mutex<MetricSet>,
}

/// The loop's side: publishes a fresh set at most once per [`PUBLISH_EVERY`].
#[derive(Debug)]
pub struct Publisher {
    shared: Arc<Shared>,
    next: Option<Instant>,
}

impl Publisher {
    /// A publisher into `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Publisher { shared, next: None }
    }

    /// Calls `fill` for a new set and publishes it, if one is due at `now`.
    pub fn maybe_publish(&mut self, now: Instant, fill: impl FnOnce(&mut MetricSet)) {
        if self.next.is_some_and(|t| now < t) {
            return;
        }
        self.next = Some(now + PUBLISH_EVERY);
        let mut set = MetricSet::default();
        fill(&mut set);
        *self.shared.set.lock() = set;
    }

    /// When the next set is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next
    }
}

/// Serves `GET /metrics` on `addr` from a helper thread named after the process. Returns the
/// address bound (port 0 picks one).
pub fn serve(
    addr: SocketAddr,
    name: &str,
    shared: Arc<Shared>,
    loop_stats: Arc<LoopStats>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let process = prometheus::process_collector::ProcessCollector::for_self();
    let thread_name = format!("{name}-metrics");
    std::thread::Builder::new().name(thread_name).spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let body = exposition(&shared.set.lock().clone(), &loop_stats, &process);
            if let Err(e) = answer(stream, &body) {
                log::debug!("metrics: {e}");
            }
        }
    })?;
    Ok(bound)
}

/// Reads one request (bounded in size and time) and answers it.
fn answer(mut stream: TcpStream, body: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = if method == "GET" && path.split('?').next() == Some("/metrics") {
        ("200 OK", prometheus::TEXT_FORMAT, body)
    } else {
        ("404 Not Found", "text/plain; charset=utf-8", "metrics are at /metrics\n")
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}

/// The whole exposition: the app's set, the loop's counters, the process collector's.
pub fn exposition(
    set: &MetricSet,
    loop_stats: &LoopStats,
    process: &prometheus::process_collector::ProcessCollector,
) -> String {
    let mut families: Vec<proto::MetricFamily> = set.families.iter().map(family).collect();
    families.extend(loop_families(loop_stats));
    families.extend(process.collect());
    prometheus::TextEncoder::new().encode_to_string(&families).unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
}

fn family(f: &oxworld_engine::metrics::Family) -> proto::MetricFamily {
    let mut mf = proto::MetricFamily::default();
    mf.set_name(f.name.clone());
    mf.set_help(f.help.to_owned());
    mf.set_field_type(match f.kind {
        MetricKind::Counter => proto::MetricType::COUNTER,
        MetricKind::Gauge => proto::MetricType::GAUGE,
        MetricKind::Histogram => proto::MetricType::HISTOGRAM,
    });
    let metrics = f
        .samples
        .iter()
        .map(|s| {
            let mut m = proto::Metric::default();
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| {
                    let mut l = proto::LabelPair::default();
                    l.set_name((*k).to_owned());
                    l.set_value(v.clone());
                    l
                })
                .collect();
            m.set_label(labels);
            match (&s.value, f.kind) {
                (SampleValue::Num(v), MetricKind::Counter) => {
                    let mut c = proto::Counter::default();
                    c.set_value(*v);
                    m.set_counter(c);
                }
                (SampleValue::Num(v), _) => {
                    let mut g = proto::Gauge::default();
                    g.set_value(*v);
                    m.set_gauge(g);
                }
                (SampleValue::Hist { buckets, sum, count }, _) => m.set_histogram(histogram(buckets, *sum, *count)),
            }
            m
        })
        .collect();
    mf.set_metric(metrics);
    mf
}

fn histogram(buckets: &[(f64, u64)], sum: f64, count: u64) -> proto::Histogram {
    let mut h = proto::Histogram::default();
    h.set_sample_count(count);
    h.set_sample_sum(sum);
    h.set_bucket(
        buckets
            .iter()
            .map(|(upper, c)| {
                let mut b = proto::Bucket::default();
                b.set_upper_bound(*upper);
                b.set_cumulative_count(*c);
                b
            })
            .collect(),
    );
    h
}

/// The logic loop's counters as families.
fn loop_families(stats: &LoopStats) -> Vec<proto::MetricFamily> {
    let s = stats.snapshot();
    let mut set = MetricSet::default();
    set.counter("loop_iterations_total", "Iterations of the logic loop", &[], s.iterations);
    set.gauge(
        "loop_busy_seconds_total",
        "Seconds the logic loop spent handling events (not waiting)",
        &[],
        s.busy_ns as f64 / 1e9,
    );
    set.counter("loop_events_total", "Events the logic loop handled (frames, connections, wake-ups)", &[], s.events_in);
    set.counter("loop_frames_out_total", "Frames the logic loop queued for sending", &[], s.frames_out);
    let mut out: Vec<proto::MetricFamily> = set.families.iter().map(family).collect();
    // The busy time only grows: a counter by meaning, kept as one.
    if let Some(f) = out.get_mut(1) {
        f.set_field_type(proto::MetricType::COUNTER);
        let v = s.busy_ns as f64 / 1e9;
        let mut c = proto::Counter::default();
        c.set_value(v);
        let mut m = proto::Metric::default();
        m.set_counter(c);
        f.set_metric(vec![m]);
    }
    let mut cumulative = 0;
    let buckets: Vec<(f64, u64)> = ITERATION_BUCKETS_US
        .iter()
        .zip(&s.buckets)
        .map(|(us, n)| {
            cumulative += n;
            (*us as f64 / 1e6, cumulative)
        })
        .collect();
    let mut mf = proto::MetricFamily::default();
    mf.set_name("oxworld_loop_iteration_seconds".to_owned());
    mf.set_help("Time one logic loop iteration was busy".to_owned());
    mf.set_field_type(proto::MetricType::HISTOGRAM);
    let mut m = proto::Metric::default();
    m.set_histogram(histogram(&buckets, s.busy_ns as f64 / 1e9, s.iterations));
    mf.set_metric(vec![m]);
    out.push(mf);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_the_apps_loops_and_process_families() {
        let mut set = MetricSet::default();
        set.counter("entity_calls_total", "calls", &[("type", "Avatar"), ("method", "say")], 7);
        set.gauge("clients", "clients", &[], 3.0);
        let mut h = oxworld_engine::metrics::Hist::default();
        h.observe(0.002);
        set.histogram("call_seconds", "latency", &[], &h);
        let stats = LoopStats::default();
        stats.record(Duration::from_micros(30), 2, 1);
        let text = exposition(&set, &stats, &prometheus::process_collector::ProcessCollector::for_self());
        assert!(text.contains("# TYPE oxworld_entity_calls_total counter"), "{text}");
        assert!(text.contains("oxworld_entity_calls_total{type=\"Avatar\",method=\"say\"} 7"), "{text}");
        assert!(text.contains("oxworld_call_seconds_bucket{le=\"0.0025\"} 1"), "{text}");
        assert!(text.contains("oxworld_loop_iteration_seconds_count 1"), "{text}");
        assert!(text.contains("# TYPE oxworld_loop_busy_seconds_total counter"), "{text}");
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }
}
