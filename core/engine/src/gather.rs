//! Adaptive write gathering for a gate's clients (`client_flush_ms`): one write per period to a
//! client that gets a stream of messages, no wait for one that does not.

use std::time::Instant;

use oxworld_net::app::{ConnId, Outbox};
use rustc_hash::FxHashMap;

/// Adaptive write gathering for clients: at most one write per period to a client that gets a
/// stream of messages, none of the wait for one that does not.
///
/// Time is cut into periods of `period`. A client is *busy* after a period in which it got two
/// or more messages, and stays busy until a period in which it gets none. Messages to a client
/// that is not busy leave at once. A busy client's first message in a period leaves at once
/// (with whatever else the loop iteration writes to it); later ones are held, and everything
/// held leaves together when the period ends, which counts as that client's write for the next
/// period. So an occasional message, or a short burst of replies, is never delayed, and a chat
/// room or crowd costs one write per client per period. A client that just sent a call is
/// *expedited* for one period: what it is sent meanwhile (its reply, most likely) leaves at
/// once, after anything held for it, so a busy client's round trips are not slowed either.
/// `period` zero: everything at once.
pub(crate) struct Gather {
    period: std::time::Duration,
    /// Clients that got messages in this period or are busy.
    conns: FxHashMap<ConnId, GatherConn>,
    /// Messages held for the end of the period, per client, in order, with their bytes.
    pub(crate) held: FxHashMap<ConnId, (Vec<Vec<u8>>, usize)>,
    /// Bytes held for one client at most (half its `client_queue_limit`); past it what is
    /// held is written at once, where the connection's write queue enforces the limit.
    max_held: usize,
    /// End of the current period; `None` while no client is tracked.
    pub(crate) period_end: Option<Instant>,
    /// Loop iterations seen (one `tick` each): writes within one iteration are one write anyway.
    iteration: u64,
}

#[derive(Default)]
struct GatherConn {
    /// Messages this period.
    msgs: u32,
    busy: bool,
    /// Loop iteration of this period's write, if there was one.
    written: Option<u64>,
    /// Until when messages leave at once because the client sent a call.
    expedite_until: Option<Instant>,
}

impl Gather {
    pub(crate) fn new(period: std::time::Duration, max_held: usize) -> Self {
        Gather {
            period,
            conns: FxHashMap::default(),
            held: FxHashMap::default(),
            max_held,
            period_end: None,
            iteration: 0,
        }
    }

    /// True if a message for `conn` should go into this iteration's output; false if it must be
    /// [`hold`](Self::hold)ed for the end of the period.
    /// Anything held for `conn` is written first (into `out`) when the answer is true.
    pub(crate) fn now_or_hold(&mut self, conn: ConnId, now: Instant, out: &mut Outbox) -> bool {
        if self.period.is_zero() {
            return true;
        }
        self.period_end.get_or_insert(now + self.period);
        let st = self.conns.entry(conn).or_default();
        st.msgs = st.msgs.saturating_add(1);
        if st.expedite_until.is_some_and(|t| now < t) {
            if let Some((held, _)) = self.held.remove(&conn) {
                for m in held {
                    out.send(conn, &m);
                }
            }
            st.written = Some(self.iteration);
            return true;
        }
        if self.held.contains_key(&conn) {
            return false;
        }
        if !st.busy {
            return true;
        }
        match st.written {
            Some(it) => it == self.iteration,
            None => {
                st.written = Some(self.iteration);
                true
            }
        }
    }

    /// `conn` sent a call: for one period, what it is sent leaves at once.
    pub(crate) fn expedite(&mut self, conn: ConnId, now: Instant) {
        if self.period.is_zero() {
            return;
        }
        self.period_end.get_or_insert(now + self.period);
        self.conns.entry(conn).or_default().expedite_until = Some(now + self.period);
    }

    pub(crate) fn hold(&mut self, conn: ConnId, payload: Vec<u8>, out: &mut Outbox) {
        let (msgs, bytes) = self.held.entry(conn).or_default();
        *bytes += payload.len();
        msgs.push(payload);
        if *bytes > self.max_held
            && let Some((msgs, _)) = self.held.remove(&conn)
        {
            for m in msgs {
                out.send(conn, &m);
            }
        }
    }

    /// Writes what is held for `conn` now.
    pub(crate) fn flush_conn(&mut self, conn: ConnId, out: &mut Outbox) {
        if let Some((msgs, _)) = self.held.remove(&conn) {
            for m in msgs {
                out.send(conn, &m);
            }
        }
    }

    pub(crate) fn forget(&mut self, conn: ConnId) {
        self.held.remove(&conn);
        self.conns.remove(&conn);
    }

    /// Ends the period if it is over (or `force`): writes what was held, marks who is busy,
    /// starts the next period. Called before each event and once per loop iteration.
    pub(crate) fn roll(&mut self, now: Instant, force: bool, out: &mut Outbox) {
        if !(force || self.period_end.is_some_and(|t| now >= t)) {
            return;
        }
        for st in self.conns.values_mut() {
            st.busy = st.msgs >= 2 || (st.busy && st.msgs >= 1);
            st.msgs = 0;
            st.written = None;
        }
        for (conn, (msgs, _)) in self.held.drain() {
            for m in msgs {
                out.send(conn, &m);
            }
            if let Some(st) = self.conns.get_mut(&conn) {
                st.written = Some(self.iteration);
            }
        }
        self.conns.retain(|_, st| st.busy || st.expedite_until.is_some_and(|t| now < t));
        self.period_end = if self.conns.is_empty() { None } else { Some(now + self.period) };
    }

    /// End of a loop iteration.
    pub(crate) fn tick(&mut self, now: Instant, out: &mut Outbox) {
        self.roll(now, false, out);
        self.iteration += 1;
    }
}
