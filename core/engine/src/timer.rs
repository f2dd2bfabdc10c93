//! Entity timers: one-shot and repeating, each calling a method of its entity by numeric id.
//! One heap per world; cancelled or finished timers are dropped from the table, and heap
//! entries whose timer is gone are skipped when they come due (generation by unique id).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use oxworld_net::{Id, Value};
use rustc_hash::FxHashMap;

/// Timers fired per tick before yielding to IO (the rest fire on the next tick).
pub const TIMERS_PER_TICK: usize = 100_000;

/// Shortest repeat interval; shorter requests are raised to it (and say so in the docs of
/// `Ctx::add_repeat_timer`) so one timer cannot spin the loop.
pub const MIN_REPEAT: Duration = Duration::from_millis(1);

/// Handle of one timer, unique within its world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub u64);

/// A live timer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Timer {
    pub(crate) entity: Id,
    pub(crate) method: u32,
    pub(crate) args: Vec<Value>,
    pub(crate) deadline: Instant,
    pub(crate) repeat: Option<Duration>,
}

/// All timers of one world.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    next: u64,
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    table: FxHashMap<u64, Timer>,
    /// Timer ids of each entity, so dropping an entity's timers costs its own timers only.
    owned: FxHashMap<Id, Vec<u64>>,
}

impl Timers {
    /// Timers whose handles start after `first` (games use disjoint ranges, so a migrated
    /// timer usually keeps its handle).
    pub(crate) fn starting_at(first: u64) -> Self {
        Timers { next: first, ..Default::default() }
    }

    pub(crate) fn add(&mut self, t: Timer) -> TimerId {
        self.next += 1;
        let id = self.next;
        self.insert(id, t);
        TimerId(id)
    }

    fn insert(&mut self, id: u64, t: Timer) {
        self.heap.push(Reverse((t.deadline, id)));
        self.owned.entry(t.entity).or_default().push(id);
        self.table.insert(id, t);
    }

    fn unlink(&mut self, entity: Id, id: u64) {
        if let Some(v) = self.owned.get_mut(&entity) {
            v.retain(|x| *x != id);
            if v.is_empty() {
                self.owned.remove(&entity);
            }
        }
    }

    /// Adds `t` under the handle it had before a freeze or a migration when that handle is
    /// free here, else under a new one; later handles never reuse it.
    pub(crate) fn add_with_id(&mut self, want: Option<u64>, t: Timer) -> TimerId {
        match want {
            Some(id) if id != 0 && !self.table.contains_key(&id) => {
                self.next = self.next.max(id);
                self.insert(id, t);
                TimerId(id)
            }
            _ => self.add(t),
        }
    }

    /// The live timers of `entity` with their handles, in creation order.
    pub(crate) fn of_entity(&self, entity: Id) -> Vec<(TimerId, &Timer)> {
        let mut v: Vec<(TimerId, &Timer)> = self
            .owned
            .get(&entity)
            .into_iter()
            .flatten()
            .filter_map(|id| self.table.get(id).map(|t| (TimerId(*id), t)))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }

    /// Cancels `id` if it belongs to `entity`; true if it was live.
    pub(crate) fn cancel(&mut self, entity: Id, id: TimerId) -> bool {
        match self.table.get(&id.0) {
            Some(t) if t.entity == entity => {
                self.unlink(entity, id.0);
                self.table.remove(&id.0).is_some()
            }
            _ => false,
        }
    }

    /// Drops every timer of `entity`.
    pub(crate) fn remove_entity(&mut self, entity: Id) {
        for id in self.owned.remove(&entity).unwrap_or_default() {
            self.table.remove(&id);
        }
    }

    /// The earliest deadline (possibly of a cancelled timer: a spurious wake-up at most).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((d, _))| *d)
    }

    /// The next timer due at `now`: (entity, method, args). Repeating timers are re-armed at
    /// their next multiple of the interval after `now`, so a stalled loop fires once, not a
    /// burst.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Id, u32, Vec<Value>)> {
        while let Some(&Reverse((deadline, id))) = self.heap.peek() {
            if deadline > now {
                return None;
            }
            self.heap.pop();
            let Some(t) = self.table.get_mut(&id) else { continue };
            if t.deadline != deadline {
                continue;
            }
            let fired = (t.entity, t.method, t.args.clone());
            match t.repeat {
                Some(every) => {
                    let behind = now.saturating_duration_since(t.deadline).as_nanos() / every.as_nanos().max(1);
                    let steps = u32::try_from(behind + 1).unwrap_or(u32::MAX);
                    // A repeat too long for the clock's range ends the timer instead of wrapping.
                    match every.checked_mul(steps).and_then(|d| t.deadline.checked_add(d)) {
                        Some(next) => {
                            t.deadline = next;
                            self.heap.push(Reverse((next, id)));
                        }
                        None => {
                            self.table.remove(&id);
                            self.unlink(fired.0, id);
                        }
                    }
                }
                None => {
                    self.table.remove(&id);
                    self.unlink(fired.0, id);
                }
            }
            return Some(fired);
        }
        None
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use super::*;

    fn timer(entity: u8, at: Instant, repeat: Option<Duration>) -> Timer {
        Timer { entity: Id([entity; 16]), method: 7, args: vec![], deadline: at, repeat }
    }

    #[test]
    fn order_cancel_and_repeat() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut ts = Timers::default();
        let a = ts.add(timer(1, t0 + ms(30), None));
        let _b = ts.add(timer(2, t0 + ms(10), Some(ms(10))));
        let c = ts.add(timer(3, t0 + ms(20), None));
        assert!(!ts.cancel(Id([1; 16]), c), "only the owner cancels");
        assert!(ts.cancel(Id([3; 16]), c));
        assert_eq!(ts.next_deadline(), Some(t0 + ms(10)));
        assert_eq!(ts.pop_due(t0 + ms(5)), None);
        let fired: Vec<u8> = std::iter::from_fn(|| ts.pop_due(t0 + ms(30))).map(|(e, _, _)| e.0[0]).collect();
        // Polled late at 30: b fires once (not for 10, 20 and 30) and re-arms at 40; c was
        // cancelled; a fires.
        assert_eq!(fired.iter().filter(|&&e| e == 2).count(), 1, "{fired:?}");
        assert_eq!(ts.next_deadline(), Some(t0 + ms(40)));
        assert_eq!(fired.iter().filter(|&&e| e == 1).count(), 1);
        assert!(!fired.contains(&3));
        assert!(!ts.table.contains_key(&a.0), "one-shot removed");
        assert_eq!(ts.len(), 1);
        // A stalled loop: the repeating timer fires once, then resumes on its grid.
        assert!(ts.pop_due(t0 + ms(95)).is_some());
        assert_eq!(ts.pop_due(t0 + ms(95)), None);
        assert_eq!(ts.next_deadline(), Some(t0 + ms(100)));
        ts.remove_entity(Id([2; 16]));
        assert_eq!(ts.pop_due(t0 + ms(200)), None);
    }

    /// The per-entity index follows every way a timer ends, so dropping an entity touches
    /// only its own timers and leaves nothing behind.
    #[test]
    fn per_entity_index_stays_exact() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut ts = Timers::default();
        let once = ts.add(timer(1, t0 + ms(1), None));
        let cancelled = ts.add(timer(1, t0 + ms(50), None));
        let _kept = ts.add(timer(1, t0 + ms(5), Some(ms(5))));
        let other = ts.add(timer(2, t0 + ms(5), Some(ms(5))));
        assert!(ts.cancel(Id([1; 16]), cancelled));
        assert_eq!(ts.pop_due(t0 + ms(1)).map(|(e, ..)| e), Some(Id([1; 16])));
        assert!(!ts.table.contains_key(&once.0));
        assert_eq!(ts.owned[&Id([1; 16])].len(), 1, "fired one-shot and cancelled timer unlinked");
        ts.remove_entity(Id([1; 16]));
        assert!(!ts.owned.contains_key(&Id([1; 16])));
        assert_eq!(ts.len(), 1);
        assert_eq!(ts.of_entity(Id([2; 16])).iter().map(|(h, _)| *h).collect::<Vec<_>>(), vec![other]);
        assert!(ts.of_entity(Id([1; 16])).is_empty());
        ts.remove_entity(Id([2; 16]));
        assert!(ts.owned.is_empty() && ts.table.is_empty());
    }
}
