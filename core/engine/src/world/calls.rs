//! Timing calls at the game: the handler time histogram by entity type and method, and the
//! trace of a sampled or slow client call carried into its reply (`oxworld_net::msg::trace`).
//!
//! The engine reads no clock itself: the host hands the world one ([`World::set_clock`]).
//! Without one (unit tests, benches) every handler takes zero time at the loop's `now`, so
//! results stay deterministic; a test that wants durations passes a stepping clock.

use std::time::{Duration, Instant};

use log::info;
use oxworld_net::Id;
use oxworld_net::msg::trace::{Hop, Trace};
use oxworld_net::msg::{Caller, FromGame};
use oxworld_net::ratelog::RateLog;

use super::{World, WorldCore};
use crate::metrics::Hist;

/// The clock a world times handlers with (the runtime's monotonic clock in a process).
pub type Clock = Box<dyn Fn() -> Instant + Send>;

/// Default of `slow_call_ms`.
pub const DEFAULT_SLOW_CALL: Duration = Duration::from_millis(100);

/// Call counts and timing of one world.
pub(crate) struct CallTiming {
    /// Per type, per method index: calls run and their handler time.
    pub(super) per_method: Vec<Vec<(u64, Hist)>>,
    clock: Option<Clock>,
    slow: Duration,
    /// When the message being handled reached this process, and its trace if it has one.
    arrival: Option<(Instant, Option<Trace>)>,
    /// Traces to write into outgoing messages: (index into the world's output, trace).
    traces: Vec<(usize, Trace)>,
    slow_log: RateLog,
    /// Client calls slower than `slow` at the game (queue and handler).
    pub(super) slow_calls: u64,
    /// Replies that left with a trace.
    pub(super) traced_replies: u64,
    /// Ticks that had AOI or position-sync work: how long it took.
    pub(super) aoi_step: Hist,
}

impl CallTiming {
    pub(super) fn new(methods_per_type: impl Iterator<Item = usize>) -> Self {
        CallTiming {
            per_method: methods_per_type.map(|n| vec![(0, Hist::default()); n]).collect(),
            clock: None,
            slow: DEFAULT_SLOW_CALL,
            arrival: None,
            traces: Vec::new(),
            slow_log: RateLog::per_second(),
            slow_calls: 0,
            traced_replies: 0,
            aoi_step: Hist::default(),
        }
    }
}

impl WorldCore {
    /// The time now: the host's clock, or the loop's `now` without one.
    pub(super) fn read_clock(&self) -> Instant {
        match &self.calls.clock {
            Some(c) => c().max(self.now),
            None => self.now,
        }
    }

    /// After a client call's handler: traces its reply when the gate sampled the call or it
    /// was slow here, and logs a slow call that sent its client nothing.
    #[allow(clippy::too_many_arguments)]
    fn trace_reply(
        &mut self,
        mark: usize,
        arrival: Option<(Instant, Option<Trace>)>,
        times: (Instant, Instant),
        caller: (u16, Id),
        target: Id,
        method: &str,
    ) {
        let (t0, t1) = times;
        let (at, trace) = arrival.unwrap_or((t0, None));
        let (queue, handler) = (t0.saturating_duration_since(at), t1.saturating_duration_since(t0));
        let slow = queue + handler >= self.calls.slow;
        if slow {
            self.calls.slow_calls += 1;
        }
        if trace.is_none() && !slow {
            return;
        }
        let mut t = trace.unwrap_or_default();
        t.add(Hop::GameQueue, queue);
        t.add(Hop::Handler, handler);
        let (gate, client) = caller;
        let reply = self.out.iter().enumerate().skip(mark).find_map(|(i, (_, m))| match m {
            FromGame::ToClients(tc) if tc.gate == gate && tc.clients.contains(&client) => Some(i),
            _ => None,
        });
        match reply {
            Some(i) => {
                self.calls.traced_replies += 1;
                self.calls.traces.push((i, t));
            }
            None if slow => {
                if let Some(left_out) = self.calls.slow_log.allow(self.now) {
                    info!(
                        "game{}: slow call {target}.{method} from client {client} (no reply to it): {} ({left_out} similar \
                         left out)",
                        self.game_id,
                        t.describe()
                    );
                }
            }
            None => {}
        }
    }
}

impl World {
    /// A fresh id (unique cluster-wide), as [`Ctx::new_id`] gives entities.
    pub fn fresh_id(&mut self) -> Id {
        let ms = self.core.unix_ms();
        self.core.ids.next(ms)
    }

    /// Gives the world a clock to time handlers with (the host passes the runtime's).
    pub fn set_clock(&mut self, clock: Clock) {
        self.core.calls.clock = Some(clock);
    }

    /// The time now by the host's clock (the loop's `now` without one): for reporting how long
    /// work inside one loop turn took.
    pub fn clock_now(&self) -> Instant {
        self.core.read_clock()
    }

    /// A client call slower than this at the game (waiting and running) has its reply traced
    /// and is counted (`slow_call_ms`).
    pub fn set_slow_call(&mut self, slow: Duration) {
        self.core.calls.slow = slow;
    }

    /// The message about to be [`World::handle`]d reached the process at `at` (its IO worker's
    /// stamp) with `trace` in its header.
    pub fn set_arrival(&mut self, at: Instant, trace: Option<Trace>) {
        self.core.calls.arrival = Some((at, trace));
    }

    pub(super) fn clear_arrival(&mut self) {
        self.core.calls.arrival = None;
    }

    pub(super) fn clear_traces(&mut self) {
        self.core.calls.traces.clear();
    }

    /// Takes the messages to send like [`World::drain_output`], each with the trace its
    /// header must carry, if any.
    pub fn drain_output_traced(&mut self) -> impl Iterator<Item = (usize, FromGame, Option<Trace>)> + '_ {
        let mut traces = std::mem::take(&mut self.core.calls.traces).into_iter().peekable();
        self.core.out.drain(..).enumerate().map(move |(i, (d, m))| {
            let t = traces.next_if(|(j, _)| *j == i).map(|(_, t)| t);
            (d, m, t)
        })
    }

    /// Runs one call (see `run_call_untimed`), timing its handler and tracing a client call's
    /// reply.
    pub(super) fn run_call(&mut self, target: Id, method: u32, args: Vec<oxworld_net::Value>, caller: Caller) {
        let arrival = self.core.calls.arrival.take();
        let mark = self.core.out.len();
        let t0 = self.core.read_clock();
        let ran = self.run_call_untimed(target, method, args, caller);
        let t1 = self.core.read_clock();
        let mut name = "?";
        if let Some((ty, mi)) = ran {
            name = self.reg.types[ty].methods[mi].name;
            if let Some((_, h)) = self.core.calls.per_method.get_mut(ty).and_then(|t| t.get_mut(mi)) {
                h.observe(t1.saturating_duration_since(t0).as_secs_f64());
            }
        }
        if let Caller::Client { gate, client } = caller {
            self.core.trace_reply(mark, arrival, (t0, t1), (gate, client), target, name);
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use oxworld_net::method_id;
    use oxworld_net::msg::{Call, ToClients};
    use oxworld_net::value::encode_args;

    use super::*;
    use crate::metrics::{Family, MetricSet, Metrics, SampleValue};
    use crate::world::tests::{BOOT, CLIENT, booted};

    /// A clock that moves `step` forward every time it is read.
    fn stepping(base: Instant, step: Duration) -> Clock {
        let reads = Arc::new(AtomicU32::new(0));
        Box::new(move || base + step * reads.fetch_add(1, Ordering::Relaxed))
    }

    fn echo(w: &mut World, now: Instant) {
        let mut args = Vec::new();
        encode_args(&[oxworld_net::Value::Int(1)], &mut args);
        let caller = Caller::Client { gate: 1, client: CLIENT };
        w.handle(now, Call { target: BOOT, method: method_id("echo"), caller, args });
    }

    fn family(w: &World, name: &str) -> Family {
        let mut m = MetricSet::default();
        w.metrics(&mut m);
        m.families.into_iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn handlers_are_timed_by_type_and_method_with_the_hosts_clock() {
        let mut w = booted();
        let now = Instant::now();
        w.set_clock(stepping(now, Duration::from_millis(3)));
        for _ in 0..4 {
            echo(&mut w, now);
        }
        let f = family(&w, "oxworld_entity_call_seconds");
        let s = f.samples.iter().find(|s| s.labels.contains(&("method", "echo".to_owned()))).expect("echo timed");
        assert!(s.labels.contains(&("type", "Boot".to_owned())), "{s:?}");
        let SampleValue::Hist { buckets, count, .. } = &s.value else { panic!("a histogram: {s:?}") };
        assert_eq!(*count, 4);
        // Each handler spans one step of the clock: 3 ms, above 2.5 ms and within 5 ms.
        assert!(buckets.contains(&(0.0025, 0)) && buckets.contains(&(0.005, 4)), "{buckets:?}");
        // Fast calls the gate did not sample: nothing traced.
        assert!(w.drain_output_traced().all(|(_, _, t)| t.is_none()));
    }

    #[test]
    fn a_sampled_call_carries_its_trace_into_the_reply_to_its_client() {
        let mut w = booted();
        let now = Instant::now();
        w.set_clock(stepping(now, Duration::from_millis(2)));
        let mut sampled = Trace::sampled();
        sampled.add(Hop::GateIn, Duration::from_micros(40));
        w.set_arrival(now - Duration::from_millis(5), Some(sampled));
        echo(&mut w, now);
        let out: Vec<_> = w.drain_output_traced().collect();
        let traced: Vec<_> = out.iter().filter(|(_, _, t)| t.is_some()).collect();
        assert_eq!(traced.len(), 1, "{out:?}");
        let (_, msg, t) = traced[0];
        assert!(matches!(msg, FromGame::ToClients(ToClients { .. })), "the reply to the client: {msg:?}");
        let t = t.expect("traced");
        assert!(t.is_sampled());
        assert_eq!(t.get(Hop::GateIn), Duration::from_micros(40), "upstream hops are kept");
        // Arrived 5 ms before `now`; the handler began at the clock's first read (`now`) and
        // ended at its second (2 ms later).
        assert!(
            t.get(Hop::GameQueue) >= Duration::from_micros(4500) && t.get(Hop::GameQueue) <= Duration::from_millis(5)
        );
        assert!(t.get(Hop::Handler) >= Duration::from_micros(1750) && t.get(Hop::Handler) <= Duration::from_millis(2));
        // The arrival belongs to that call only.
        echo(&mut w, now);
        assert!(w.drain_output_traced().all(|(_, _, t)| t.is_none()));
    }

    #[test]
    fn a_call_slow_at_the_game_is_traced_without_sampling_and_counted() {
        let mut w = booted();
        let now = Instant::now();
        w.set_slow_call(Duration::from_millis(50));
        w.set_clock(stepping(now, Duration::from_millis(80)));
        echo(&mut w, now);
        let out: Vec<_> = w.drain_output_traced().collect();
        let t = out.iter().find_map(|(_, _, t)| *t).expect("the slow call's reply is traced");
        assert!(!t.is_sampled(), "the gate did not sample it");
        assert!(t.get(Hop::Handler) >= Duration::from_millis(70));
        assert!(t.describe().contains("gate_in not sampled"));
        let f = family(&w, "oxworld_slow_calls_total");
        assert_eq!(f.samples[0].value, SampleValue::Num(1.0));
    }
}
