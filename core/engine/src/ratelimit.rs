//! Per-client rate limits at the gate: a token bucket for calls and one for moves, and the
//! rule that disconnects a client that keeps going after being refused; and [`Doubling`], the
//! count-and-log-rarely rule for warnings one runaway can repeat. Sans-IO (time is a
//! parameter), configured by `[gate]` keys `call_rate_per_s`, `call_burst`, `move_rate_per_s`,
//! `move_burst` and `rate_limit_disconnect`.

use std::time::{Duration, Instant};

use oxworld_net::config::GateConfig;

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket { rate: f64::from(rate.max(1)), burst, tokens: burst, last: now }
    }

    /// Takes one token if there is one (refilling for the time since the last call first).
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What to do with one client message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: forward it.
    Pass,
    /// Past the limit: drop it and tell the client (`RateLimited`).
    Refuse,
    /// Past the limit and refused more than `rate_limit_disconnect` times within one second:
    /// disconnect the client.
    Disconnect,
}

/// The kinds of client messages that are limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// `Call`.
    Call,
    /// `Move`.
    Move,
}

/// One client's buckets and its count of refusals in the current one-second window.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    calls: TokenBucket,
    moves: TokenBucket,
    window_start: Instant,
    refused_in_window: u32,
    disconnect_after: u32,
}

impl ClientLimits {
    /// Full buckets for a client accepted at `now`.
    pub fn new(cfg: &GateConfig, now: Instant) -> Self {
        ClientLimits {
            calls: TokenBucket::new(cfg.call_rate, cfg.call_burst, now),
            moves: TokenBucket::new(cfg.move_rate, cfg.move_burst, now),
            window_start: now,
            refused_in_window: 0,
            disconnect_after: cfg.rate_limit_disconnect,
        }
    }

    /// Whether a message of `kind` arriving at `now` passes.
    pub fn admit(&mut self, kind: Limited, now: Instant) -> Verdict {
        let bucket = match kind {
            Limited::Call => &mut self.calls,
            Limited::Move => &mut self.moves,
        };
        if bucket.take(now) {
            return Verdict::Pass;
        }
        if now.saturating_duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.refused_in_window = 0;
        }
        self.refused_in_window += 1;
        if self.refused_in_window > self.disconnect_after { Verdict::Disconnect } else { Verdict::Refuse }
    }
}

/// Counts events and says when to log one: at the 1st, 2nd, 4th, 8th... (a threshold that
/// doubles), so a condition that repeats fast is reported with its count, never line by line.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Doubling {
    count: u64,
    next: u64,
}

impl Doubling {
    /// Events counted so far.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Counts one more; the count if this one should be logged.
    pub(crate) fn hit(&mut self) -> Option<u64> {
        self.count += 1;
        if self.count >= self.next.max(1) {
            self.next = self.count.saturating_mul(2);
            Some(self.count)
        } else {
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use std::path::Path;

    use oxworld_net::config::Config;

    use super::*;

    fn gate(extra: &str) -> GateConfig {
        let text = format!(
            "[deployment]\ndesired_dispatchers=1\ndesired_games=1\ndesired_gates=1\nsecret=k\n[gate_common]\n{extra}"
        );
        Config::parse(Path::new("t.ini"), &text).expect("config").gates[0].clone()
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t = Instant::now();
        let mut b = TokenBucket::new(10, 5, t);
        assert_eq!((0..8).filter(|_| b.take(t)).count(), 5, "the burst");
        assert!(!b.take(t + Duration::from_millis(50)), "half a token");
        assert!(b.take(t + Duration::from_millis(100)), "one token per 100 ms");
        assert!(!b.take(t + Duration::from_millis(100)));
        // A long pause refills up to the burst, no more.
        let later = t + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| b.take(later)).count(), 5);
        // Time going backwards (never from the runtime) takes nothing.
        assert!(!b.take(t));
    }

    #[test]
    fn a_client_past_its_limit_is_refused_then_disconnected() {
        let t = Instant::now();
        let cfg =
            gate("call_rate_per_s=100\ncall_burst=10\nmove_rate_per_s=5\nmove_burst=2\nrate_limit_disconnect=3\n");
        let mut l = ClientLimits::new(&cfg, t);
        let calls: Vec<Verdict> = (0..15).map(|_| l.admit(Limited::Call, t)).collect();
        assert!(calls[..10].iter().all(|v| *v == Verdict::Pass));
        assert_eq!(
            &calls[10..],
            &[Verdict::Refuse, Verdict::Refuse, Verdict::Refuse, Verdict::Disconnect, Verdict::Disconnect]
        );
        // Moves have their own bucket; a new second starts a new refusal window.
        let t2 = t + Duration::from_secs(1);
        assert_eq!(l.admit(Limited::Move, t2), Verdict::Pass);
        assert_eq!(l.admit(Limited::Move, t2), Verdict::Pass);
        assert_eq!(l.admit(Limited::Move, t2), Verdict::Refuse, "the move bucket is empty");
        assert_eq!(l.admit(Limited::Call, t2), Verdict::Pass, "calls refilled");
    }

    /// The defaults are far above what the benchmarks send: echo's 400 calls/s per bot and
    /// the crowd's 10 moves/s per bot pass for a minute of simulated time.
    #[test]
    fn the_defaults_pass_every_benchmark_load() {
        let t = Instant::now();
        let mut l = ClientLimits::new(&gate(""), t);
        for i in 0..(400 * 60) {
            assert_eq!(l.admit(Limited::Call, t + Duration::from_micros(2500 * i)), Verdict::Pass);
        }
        for i in 0..(10 * 60) {
            assert_eq!(l.admit(Limited::Move, t + Duration::from_millis(100 * i)), Verdict::Pass);
        }
    }
}
