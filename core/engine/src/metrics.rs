//! Metrics as plain data, sans-IO: each app describes its counters, gauges and histograms in a
//! [`MetricSet`] (names, help, labels, values) when asked (once a second, by the host), and
//! the host's metrics thread turns the latest set into the Prometheus exposition format. The
//! hot path only bumps plain integers; nothing here is shared between threads.

/// What a family measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (a `_total`).
    Counter,
    /// A level.
    Gauge,
    /// Observations in buckets.
    Histogram,
}

/// One value of a family.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleValue {
    /// A counter's or gauge's value.
    Num(f64),
    /// A histogram: `(upper bound, cumulative count)` per bucket (without `+Inf`), the sum of
    /// observations and their count.
    Hist {
        /// Upper bounds and cumulative counts.
        buckets: Vec<(f64, u64)>,
        /// Sum of the observations.
        sum: f64,
        /// Number of observations.
        count: u64,
    },
}

/// One labelled value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Label names and values.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: SampleValue,
}

/// A metric family: a name (with the `oxworld_` prefix), its help and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Full name.
    pub name: String,
    /// One line of help.
    pub help: &'static str,
    /// Kind.
    pub kind: MetricKind,
    /// Samples.
    pub samples: Vec<Sample>,
}

/// Everything one process exports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricSet {
    /// Families, in the order they were added.
    pub families: Vec<Family>,
}

impl MetricSet {
    fn family(&mut self, name: &str, help: &'static str, kind: MetricKind) -> &mut Vec<Sample> {
        let name = format!("oxworld_{name}");
        let at = match self.families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.families.push(Family { name, help, kind, samples: Vec::new() });
                self.families.len() - 1
            }
        };
        &mut self.families[at].samples
    }

    /// Adds a counter sample (`name` without `oxworld_`, ending in `_total`).
    pub fn counter(&mut self, name: &str, help: &'static str, labels: &[(&'static str, &str)], v: u64) {
        let labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.family(name, help, MetricKind::Counter).push(Sample { labels, value: SampleValue::Num(v as f64) });
    }

    /// Adds a gauge sample.
    pub fn gauge(&mut self, name: &str, help: &'static str, labels: &[(&'static str, &str)], v: f64) {
        let labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.family(name, help, MetricKind::Gauge).push(Sample { labels, value: SampleValue::Num(v) });
    }

    /// Adds a histogram sample.
    pub fn histogram(&mut self, name: &str, help: &'static str, labels: &[(&'static str, &str)], h: &Hist) {
        let labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        let mut cumulative = 0;
        let buckets = h
            .bounds
            .iter()
            .zip(&h.counts)
            .map(|(b, c)| {
                cumulative += c;
                (*b, cumulative)
            })
            .collect();
        let value = SampleValue::Hist { buckets, sum: h.sum, count: h.count };
        self.family(name, help, MetricKind::Histogram).push(Sample { labels, value });
    }
}

/// Latency buckets in seconds: 50 µs to 10 s.
pub const LATENCY_BOUNDS_S: [f64; 16] =
    [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A fixed-bucket histogram the hot path updates without allocating.
#[derive(Debug, Clone, PartialEq)]
pub struct Hist {
    bounds: &'static [f64],
    /// Per bucket, then one past the last bound.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Hist {
    /// Empty, with `bounds` (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Hist { bounds, counts: vec![0; bounds.len() + 1], sum: 0.0, count: 0 }
    }

    /// Records one observation of `secs`.
    pub fn observe(&mut self, secs: f64) {
        let i = self.bounds.iter().position(|b| secs <= *b).unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += secs;
        self.count += 1;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl Default for Hist {
    fn default() -> Self {
        Hist::new(&LATENCY_BOUNDS_S)
    }
}

/// Internal frames and their bytes by message kind, one direction (dispatchers and games).
#[derive(Debug, Clone, PartialEq)]
pub struct KindCounts {
    frames: [u64; 256],
    bytes: [u64; 256],
}

impl Default for KindCounts {
    fn default() -> Self {
        KindCounts { frames: [0; 256], bytes: [0; 256] }
    }
}

impl KindCounts {
    /// Counts one frame of `kind` (the header's first byte) and `len` bytes.
    pub fn add(&mut self, kind: u8, len: usize) {
        self.frames[kind as usize] += 1;
        self.bytes[kind as usize] += len as u64;
    }

    /// Exports `frames_in_total` and `frame_bytes_in_total` by kind (`_out_` when `outgoing`).
    pub fn export(&self, m: &mut MetricSet, outgoing: bool) {
        let (frames, bytes, fh, bh) = if outgoing {
            (
                "frames_out_total",
                "frame_bytes_out_total",
                "Frames sent to linked peers, by message kind",
                "Bytes of frames sent to linked peers, by message kind",
            )
        } else {
            (
                "frames_in_total",
                "frame_bytes_in_total",
                "Frames received from linked peers, by message kind",
                "Bytes of frames received from linked peers, by message kind",
            )
        };
        for (kind, (n, b)) in self.frames.iter().zip(&self.bytes).enumerate().filter(|(_, (n, _))| **n > 0) {
            let name = oxworld_net::msg::Kind::from_u8(kind as u8).map(|k| k.name()).unwrap_or("unknown");
            m.counter(frames, fh, &[("kind", name)], *n);
            m.counter(bytes, bh, &[("kind", name)], *b);
        }
    }
}

/// Something that exports metrics (each app).
pub trait Metrics {
    /// Appends this process's metrics.
    fn metrics(&self, out: &mut MetricSet);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_collect_their_samples_and_histograms_are_cumulative() {
        let mut m = MetricSet::default();
        m.counter("calls_total", "calls", &[("type", "A")], 3);
        m.counter("calls_total", "calls", &[("type", "B")], 4);
        let mut h = Hist::new(&[0.001, 0.01]);
        for s in [0.0005, 0.002, 0.003, 5.0] {
            h.observe(s);
        }
        m.histogram("lat_seconds", "latency", &[], &h);
        assert_eq!(m.families.len(), 2);
        assert_eq!(m.families[0].name, "oxworld_calls_total");
        assert_eq!(m.families[0].samples.len(), 2);
        let SampleValue::Hist { buckets, count, .. } = &m.families[1].samples[0].value else { panic!() };
        assert_eq!(buckets, &vec![(0.001, 1), (0.01, 3)]);
        assert_eq!(*count, 4, "the +Inf bucket is the count");
    }
}
