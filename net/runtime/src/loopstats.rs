//! What the logic loop measures about itself, exactly and cheaply (one clock read and a few
//! relaxed atomic adds per iteration), for metrics and status records read from other
//! threads: iterations, busy time, an iteration-time histogram, messages in and out.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (microseconds) of the iteration-time histogram's buckets; a last bucket
/// holds everything above.
pub const ITERATION_BUCKETS_US: [u64; 14] =
    [10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000];

/// Counters of one process's logic loop, written by the loop only.
#[derive(Debug, Default)]
pub struct LoopStats {
    /// Loop iterations.
    pub iterations: AtomicU64,
    /// Nanoseconds spent handling events and ticks (from the end of a poll to the end of the
    /// iteration's flush).
    pub busy_ns: AtomicU64,
    /// Events handed to the app (frames, connections, closes, signals, wake-ups).
    pub events_in: AtomicU64,
    /// Frames the app queued for sending.
    pub frames_out: AtomicU64,
    /// Iterations per bucket of [`ITERATION_BUCKETS_US`], then one for longer ones.
    pub buckets: [AtomicU64; ITERATION_BUCKETS_US.len() + 1],
}

impl LoopStats {
    /// Records one iteration that was busy for `busy`, handled `events` and queued `frames`.
    pub fn record(&self, busy: Duration, events: u64, frames: u64) {
        let ns = u64::try_from(busy.as_nanos()).unwrap_or(u64::MAX);
        self.iterations.fetch_add(1, Relaxed);
        self.busy_ns.fetch_add(ns, Relaxed);
        self.events_in.fetch_add(events, Relaxed);
        self.frames_out.fetch_add(frames, Relaxed);
        let us = ns / 1_000;
        let i = ITERATION_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(ITERATION_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Relaxed);
    }

    /// A consistent-enough copy (each counter read once, relaxed).
    pub fn snapshot(&self) -> LoopSnapshot {
        LoopSnapshot {
            iterations: self.iterations.load(Relaxed),
            busy_ns: self.busy_ns.load(Relaxed),
            events_in: self.events_in.load(Relaxed),
            frames_out: self.frames_out.load(Relaxed),
            buckets: self.buckets.iter().map(|b| b.load(Relaxed)).collect(),
        }
    }
}

/// A copy of [`LoopStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoopSnapshot {
    /// Loop iterations.
    pub iterations: u64,
    /// Busy nanoseconds.
    pub busy_ns: u64,
    /// Events handled.
    pub events_in: u64,
    /// Frames queued.
    pub frames_out: u64,
    /// Iterations per bucket (see [`ITERATION_BUCKETS_US`]).
    pub buckets: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterations_land_in_their_buckets() {
        let s = LoopStats::default();
        s.record(Duration::from_micros(7), 3, 2);
        s.record(Duration::from_micros(10), 1, 0);
        s.record(Duration::from_micros(11), 0, 1);
        s.record(Duration::from_secs(5), 0, 0);
        let snap = s.snapshot();
        assert_eq!((snap.iterations, snap.events_in, snap.frames_out), (4, 4, 3));
        assert_eq!(snap.buckets[0], 2, "7 and 10 us: at most 10");
        assert_eq!(snap.buckets[1], 1, "11 us");
        assert_eq!(snap.buckets[ITERATION_BUCKETS_US.len()], 1, "beyond the last bound");
        assert_eq!(snap.busy_ns, 5_000_028_000);
    }
}
