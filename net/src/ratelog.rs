//! Rate-limited logging for problems one peer can cause again and again (a bad handshake, a
//! client over its rate limit, a frame that does not decode): at most one line per interval,
//! each line saying how many similar ones were left out. Sans-IO: the caller passes the time.

use std::time::{Duration, Instant};

/// One kind of repeated problem. `allow` says whether to write a line now.
#[derive(Debug, Clone)]
pub struct RateLog {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLog {
    /// At most one line per `every`.
    pub const fn new(every: Duration) -> Self {
        RateLog { every, last: None, suppressed: 0 }
    }

    /// At most one line per second.
    pub const fn per_second() -> Self {
        Self::new(Duration::from_secs(1))
    }

    /// `Some(n)` if a line may be written at `now` (`n` similar lines were left out since the
    /// last one); `None` if this one is to be counted and left out.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_left_out() {
        let t = Instant::now();
        let mut l = RateLog::per_second();
        assert_eq!(l.allow(t), Some(0));
        for i in 1..1000 {
            assert_eq!(l.allow(t + Duration::from_micros(i)), None);
        }
        assert_eq!(l.allow(t + Duration::from_secs(1)), Some(999));
        assert_eq!(l.allow(t + Duration::from_millis(1500)), None);
        assert_eq!(l.allow(t + Duration::from_secs(3)), Some(1));
    }
}
