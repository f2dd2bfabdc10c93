//! The chaos run's bookkeeping (`--chaos`): the kills it makes, which kill each failure,
//! stall and lost value belongs to, which bots each kill affected, and how long each affected
//! bot took to work again.
//!
//! A bot is affected by a kill when, within the [`AFFECT_WINDOW`] after it, one of its actions
//! failed or took longer than [`STALL`], or it lost its player or its connection (whether an
//! action was pending or not). It works again at its first successful action that
//! started after the kill and after its last such trouble, or at the end of a stalled one. A failure of an action pending
//! within the window counts against the kill (`call_errors` when the server answered with an
//! error, `other_errors` otherwise), not in the run's `errors`.

use std::time::{Duration, Instant};

/// How long after a kill trouble counts against it.
pub(crate) const AFFECT_WINDOW: Duration = Duration::from_secs(5);
/// An action slower than this in the window is stalled (a calm run's p99 is tens of ms).
pub(crate) const STALL: Duration = Duration::from_millis(200);

/// The kills of a chaos run over `duration` seconds of steady phase: `game1`, `gate1` and
/// `dispatcher1` at 2/9, 4/9 and 6/9 of it (20, 40 and 60 s of a 90 s run).
pub(crate) fn plan(duration: Duration) -> Vec<(String, Duration)> {
    ["game1", "gate1", "dispatcher1"]
        .iter()
        .enumerate()
        .map(|(i, p)| ((*p).to_owned(), duration.mul_f64(2.0 * (i as f64 + 1.0) / 9.0)))
        .collect()
}

/// What one kill did to the bots (summed over bot threads).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct KillStat {
    pub(crate) affected: u64,
    /// Per affected bot that worked again: ms from the kill to its first success.
    pub(crate) recoveries: Vec<u64>,
    pub(crate) unrecovered: u64,
    pub(crate) call_errors: u64,
    pub(crate) lost_values: u64,
    pub(crate) other_errors: u64,
}

impl KillStat {
    pub(crate) fn merge(&mut self, o: &KillStat) {
        self.affected += o.affected;
        self.recoveries.extend(&o.recoveries);
        self.unrecovered += o.unrecovered;
        self.call_errors += o.call_errors;
        self.lost_values += o.lost_values;
        self.other_errors += o.other_errors;
    }
}

/// One bot's standing towards each kill.
#[derive(Debug, Default, Clone)]
pub(crate) struct BotChaos {
    /// Per kill: affected, the time of its last trouble, and when it worked again.
    per: Vec<(bool, Option<Instant>, Option<Instant>)>,
}

/// The kill (index) that trouble with an action pending from `since` to `now` belongs to: the
/// latest one at or before `now` whose window `since` does not start after.
pub(crate) fn kill_of(kills: &[Instant], since: Instant, now: Instant) -> Option<usize> {
    kills.iter().enumerate().rev().find(|(_, t)| **t <= now && since <= **t + AFFECT_WINDOW).map(|(k, _)| k)
}

impl BotChaos {
    fn slot(&mut self, k: usize) -> &mut (bool, Option<Instant>, Option<Instant>) {
        if self.per.len() <= k {
            self.per.resize(k + 1, (false, None, None));
        }
        &mut self.per[k]
    }

    /// An action pending from `since` ended at `now`: `ok` or not.
    pub(crate) fn outcome(&mut self, kills: &[Instant], since: Instant, now: Instant, ok: bool) {
        let stalled = now.saturating_duration_since(since) > STALL;
        if let Some(k) = kill_of(kills, since, now).filter(|_| !ok || stalled) {
            self.trouble(k, now);
        }
        if ok {
            for (k, t) in kills.iter().enumerate() {
                let s = self.slot(k);
                if s.0 && s.2.is_none() && since >= *t && s.1.is_none_or(|bad| since >= bad || bad == now) {
                    s.2 = Some(now);
                }
            }
        }
    }

    /// The bot's pending action was dropped at `now` (its player or connection lost).
    pub(crate) fn dropped(&mut self, kills: &[Instant], since: Instant, now: Instant) {
        if let Some(k) = kill_of(kills, since, now) {
            self.trouble(k, now);
        }
    }

    fn trouble(&mut self, k: usize, now: Instant) {
        let s = self.slot(k);
        s.0 = true;
        s.1 = Some(now);
        s.2 = None;
    }

    /// Adds this bot's standing to `stats` (one per kill).
    pub(crate) fn add_to(&self, kills: &[Instant], stats: &mut Vec<KillStat>) {
        if stats.len() < kills.len() {
            stats.resize(kills.len(), KillStat::default());
        }
        for (k, (affected, _, back)) in self.per.iter().enumerate() {
            let (Some(st), Some(t)) = (stats.get_mut(k), kills.get(k)) else { continue };
            if !affected {
                continue;
            }
            st.affected += 1;
            match back {
                Some(at) => {
                    st.recoveries.push(u64::try_from(at.saturating_duration_since(*t).as_millis()).unwrap_or(0))
                }
                None => st.unrecovered += 1,
            }
        }
    }
}

/// The `chaos` list of the JSON line.
pub(crate) fn json(plan: &[(String, Duration)], stats: &[KillStat]) -> String {
    let items: Vec<String> = plan
        .iter()
        .enumerate()
        .map(|(k, (process, at))| {
            let st = stats.get(k).cloned().unwrap_or_default();
            let mut v = st.recoveries.clone();
            v.sort_unstable();
            let q = |q: f64| v.get(((v.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0);
            let kind = process.trim_end_matches(|c: char| c.is_ascii_digit());
            format!(
                "{{\"kind\":\"{kind}\",\"process\":\"{process}\",\"at_s\":{:.1},\"bots_affected\":{},\"recovered\":{},\"unrecovered\":{},\"recover_p50_ms\":{},\"recover_p99_ms\":{},\"recover_max_ms\":{},\"call_errors\":{},\"lost_values\":{},\"other_errors\":{}}}",
                at.as_secs_f64(),
                st.affected,
                v.len(),
                st.unrecovered,
                q(0.5),
                q(0.99),
                v.last().copied().unwrap_or(0),
                st.call_errors,
                st.lost_values,
                st.other_errors
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_scales_with_the_run() {
        let p = plan(Duration::from_secs(90));
        let at: Vec<(&str, u64)> = p.iter().map(|(n, t)| (n.as_str(), t.as_secs())).collect();
        assert_eq!(at, vec![("game1", 20), ("gate1", 40), ("dispatcher1", 60)]);
        assert_eq!(plan(Duration::from_secs(27))[2].1, Duration::from_secs(18));
    }

    #[test]
    fn trouble_belongs_to_the_kill_whose_window_it_overlaps_and_recovery_counts_from_it() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let kills = [t0 + s(10), t0 + s(20)];
        assert_eq!(kill_of(&kills, t0 + s(9), t0 + s(11)), Some(0), "pending across the kill");
        assert_eq!(kill_of(&kills, t0 + s(14), t0 + s(19)), Some(0), "started within the window");
        assert_eq!(kill_of(&kills, t0 + s(16), t0 + s(17)), None, "after the window");
        assert_eq!(kill_of(&kills, t0 + s(5), t0 + s(9)), None, "before the kill");
        let mut b = BotChaos::default();
        // A quick success across the first kill: not affected.
        b.outcome(&kills, t0 + s(10) - Duration::from_millis(50), t0 + s(10) + Duration::from_millis(50), true);
        // The second kill: a failure, then a success that started before it (not yet back),
        // then one after it.
        b.outcome(&kills, t0 + s(19), t0 + s(21), false);
        b.outcome(&kills, t0 + s(21) - Duration::from_millis(100), t0 + s(21) + Duration::from_millis(50), true);
        b.outcome(&kills, t0 + s(22), t0 + s(22) + Duration::from_millis(100), true);
        let mut stats = Vec::new();
        b.add_to(&kills, &mut stats);
        assert_eq!(stats[0], KillStat::default());
        assert_eq!((stats[1].affected, stats[1].recoveries.clone(), stats[1].unrecovered), (1, vec![2100], 0));
        // A stalled success is trouble, and the bot works again as it completes.
        let mut b = BotChaos::default();
        b.outcome(&kills, t0 + s(10), t0 + s(11), true);
        let mut stats = Vec::new();
        b.add_to(&kills, &mut stats);
        assert_eq!((stats[0].affected, stats[0].recoveries.clone()), (1, vec![1000]));
        // A bot dropped and never back is counted as not recovered.
        let mut b = BotChaos::default();
        b.dropped(&kills, t0 + s(10), t0 + s(11));
        let mut stats = Vec::new();
        b.add_to(&kills, &mut stats);
        assert_eq!((stats[0].affected, stats[0].unrecovered), (1, 1));
        let j = json(&plan(Duration::from_secs(90)), &stats);
        assert!(j.starts_with("[{\"kind\":\"game\",\"process\":\"game1\",\"at_s\":20.0,\"bots_affected\":1,"), "{j}");
        assert!(j.contains("{\"kind\":\"dispatcher\",\"process\":\"dispatcher1\""), "{j}");
    }
}
