//! Following slow client calls at the gate: which calls are sampled for tracing, what their
//! traced replies tell (per-hop histograms), and the rate-limited log line of a slow one.
//! The trace slot itself is `oxworld_net::msg::trace`; the game's part is `world::calls`.

use std::time::{Duration, Instant};

use log::info;
use oxworld_net::Id;
use oxworld_net::msg::trace::{Hop, Trace};
use oxworld_net::ratelog::RateLog;

use crate::metrics::{Hist, MetricSet};

/// A gate's sampling and what its traced replies measured.
pub(crate) struct GateTracer {
    gate: u16,
    /// One call in `every` is sampled (0: none).
    every: u32,
    countdown: u32,
    slow: Duration,
    log: RateLog,
    /// Sampled calls: time at each hop, and end to end.
    hops: [Hist; 6],
    total: Hist,
    sampled: u64,
    slow_calls: u64,
}

impl GateTracer {
    pub(crate) fn new(gate: u16, every: u32, slow: Duration) -> Self {
        GateTracer {
            gate,
            every,
            countdown: every,
            slow,
            log: RateLog::per_second(),
            hops: Default::default(),
            total: Hist::default(),
            sampled: 0,
            slow_calls: 0,
        }
    }

    /// A client call is about to be forwarded after waiting `waited` in this gate: the trace
    /// it carries, if it is the one in `every` sampled.
    pub(crate) fn sample(&mut self, waited: Duration) -> Option<Trace> {
        if self.every == 0 {
            return None;
        }
        self.countdown = self.countdown.saturating_sub(1);
        if self.countdown > 0 {
            return None;
        }
        self.countdown = self.every;
        self.sampled += 1;
        let mut t = Trace::sampled();
        t.add(Hop::GateIn, waited);
        Some(t)
    }

    /// A traced reply for `client` waited `waited` in this gate and was handed to its
    /// connection: records a sampled call's hops and logs a slow one. Returns true if slow.
    pub(crate) fn on_reply(&mut self, now: Instant, mut t: Trace, waited: Duration, client: Option<Id>) -> bool {
        t.add(Hop::GateOut, waited);
        let total = t.total();
        if t.is_sampled() {
            for (h, hist) in Hop::ALL.iter().zip(&mut self.hops) {
                hist.observe(t.get(*h).as_secs_f64());
            }
            self.total.observe(total.as_secs_f64());
        }
        if total < self.slow {
            return false;
        }
        self.slow_calls += 1;
        if let Some(left_out) = self.log.allow(now) {
            let who = client.map(|c| c.to_string()).unwrap_or_else(|| "?".to_owned());
            info!(
                "gate{}: slow call from client {who}: {:.1} ms from gate in to reply out ({}) ({left_out} similar left \
                 out)",
                self.gate,
                total.as_secs_f64() * 1000.0,
                t.describe()
            );
        }
        true
    }

    pub(crate) fn metrics(&self, m: &mut MetricSet) {
        m.counter("traced_calls_total", "Client calls sampled for tracing (1 in trace_sample)", &[], self.sampled);
        m.counter(
            "slow_calls_total",
            "Traced client calls whose reply took longer than slow_call_ms (logged, rate-limited)",
            &[],
            self.slow_calls,
        );
        for (h, hist) in Hop::ALL.iter().zip(&self.hops) {
            m.histogram("call_hop_seconds", "Sampled client calls: time spent at each hop", &[("hop", h.name())], hist);
        }
        m.histogram("traced_call_seconds", "Sampled client calls: gate in to reply out", &[], &self.total);
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use super::*;

    #[test]
    fn one_call_in_every_is_sampled_and_none_when_off() {
        let mut t = GateTracer::new(1, 3, Duration::from_millis(100));
        let picks: Vec<bool> = (0..9).map(|_| t.sample(Duration::ZERO).is_some()).collect();
        assert_eq!(picks, [false, false, true, false, false, true, false, false, true]);
        let first = GateTracer::new(1, 1, Duration::from_millis(100)).sample(Duration::from_micros(7)).expect("every");
        assert!(first.is_sampled() && first.get(Hop::GateIn) == Duration::from_micros(7));
        let mut off = GateTracer::new(1, 0, Duration::from_millis(100));
        assert!((0..1000).all(|_| off.sample(Duration::ZERO).is_none()));
    }

    #[test]
    fn replies_fill_the_hop_histograms_and_only_slow_ones_count_as_slow() {
        let now = Instant::now();
        let mut t = GateTracer::new(1, 1, Duration::from_millis(100));
        let mut fast = t.sample(Duration::from_micros(30)).expect("sampled");
        fast.add(Hop::Handler, Duration::from_millis(1));
        assert!(!t.on_reply(now, fast, Duration::from_micros(20), None));
        let mut slow = t.sample(Duration::ZERO).expect("sampled");
        slow.add(Hop::GameQueue, Duration::from_millis(150));
        assert!(t.on_reply(now, slow, Duration::ZERO, Some(Id([1; 16]))));
        // Slow at the game but not sampled by the gate: counted slow, not in the histograms.
        let mut unsampled = Trace::default();
        unsampled.add(Hop::Handler, Duration::from_millis(300));
        assert!(t.on_reply(now, unsampled, Duration::ZERO, None));
        let mut m = MetricSet::default();
        t.metrics(&mut m);
        let fam = |n: &str| m.families.iter().find(|f| f.name == n).unwrap_or_else(|| panic!("{n}")).clone();
        assert_eq!(fam("oxworld_slow_calls_total").samples[0].value, crate::metrics::SampleValue::Num(2.0));
        let hops = fam("oxworld_call_hop_seconds");
        assert_eq!(hops.samples.len(), 6);
        for s in &hops.samples {
            let crate::metrics::SampleValue::Hist { count, .. } = s.value else { panic!("{s:?}") };
            assert_eq!(count, 2, "{s:?}");
        }
    }
}
