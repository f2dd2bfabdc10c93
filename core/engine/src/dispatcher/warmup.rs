//! What a dispatcher does for end-to-end delivery: forward acknowledgements, settle what it
//! cannot deliver, and hold routed traffic while it warms up after a (re)start.
//!
//! WARM-UP. A dispatcher that just started knows no routes and no gates: the games tell it
//! their entities (`Announce`, the last batch flagged) as they link, and the gates link, while
//! games and gates already send again what its previous process lost. Routed frames (calls,
//! creates, loads, migrations, logins, and messages for clients) that arrive before every
//! configured game has finished announcing and every configured gate has linked are held in
//! arrival order, then routed. Warm-up also ends `game_lost_after_ms` after the first event
//! (a process that is down does not keep the others waiting) or when the held frames pass
//! [`MAX_WARMUP_BYTES`].

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use log::{info, warn};
use oxworld_net::app::Outbox;
use oxworld_net::msg::{Acks, Header, Message};

use super::{DispatcherApp, Peer};

/// Bytes of routed traffic held during a warm-up; past this it ends at once.
pub(super) const MAX_WARMUP_BYTES: usize = 64 << 20;

/// A dispatcher's warm-up (see the module docs).
pub(super) struct Warmup {
    /// When it ends at the latest (set by the first event).
    until: Option<Instant>,
    announced: BTreeSet<u16>,
    held: VecDeque<(Peer, Vec<u8>)>,
    bytes: usize,
}

impl Warmup {
    pub(super) fn new() -> Warmup {
        Warmup { until: None, announced: BTreeSet::new(), held: VecDeque::new(), bytes: 0 }
    }
}

impl DispatcherApp {
    /// Starts the warm-up clock at the first event.
    pub(super) fn warmup_clock(&mut self, now: Instant) {
        if let Some(w) = &mut self.warmup
            && w.until.is_none()
        {
            w.until = Some(now + self.game_lost_after);
        }
    }

    /// When the warm-up ends at the latest.
    pub(super) fn warmup_deadline(&self) -> Option<Instant> {
        self.warmup.as_ref().and_then(|w| w.until)
    }

    /// Holds `frame` from `peer` if warming up; gives it back otherwise.
    pub(super) fn warming(&mut self, peer: Peer, frame: Vec<u8>, out: &mut Outbox) -> Option<Vec<u8>> {
        let Some(w) = self.warmup.as_mut() else { return Some(frame) };
        w.bytes += frame.len();
        w.held.push_back((peer, frame));
        if w.bytes > MAX_WARMUP_BYTES {
            warn!("dispatcher{}: more than {MAX_WARMUP_BYTES} bytes held while warming up; routing now", self.id);
            self.end_warmup(out);
        }
        None
    }

    /// Game `g` finished announcing its entities.
    pub(super) fn announced(&mut self, g: u16, out: &mut Outbox) {
        let Some(w) = self.warmup.as_mut() else { return };
        w.announced.insert(g);
        self.warmup_check(out);
    }

    /// Ends the warm-up once every game announced and every gate linked.
    pub(super) fn warmup_check(&mut self, out: &mut Outbox) {
        let Some(w) = self.warmup.as_ref() else { return };
        if (1..=self.n_games).all(|g| w.announced.contains(&g))
            && (1..=self.n_gates).all(|g| self.gates.contains_key(&g))
        {
            self.end_warmup(out);
        }
    }

    /// Ends the warm-up if its time is up.
    pub(super) fn warmup_tick(&mut self, now: Instant, out: &mut Outbox) {
        if self.warmup_deadline().is_some_and(|until| now >= until) {
            self.end_warmup(out);
        }
    }

    /// Routes what was held, in arrival order.
    fn end_warmup(&mut self, out: &mut Outbox) {
        let Some(w) = self.warmup.take() else { return };
        info!(
            "dispatcher{}: warmed up ({} of {} games announced, {} of {} gates linked); routing {} held message(s)",
            self.id,
            w.announced.len(),
            self.n_games,
            self.gates.len(),
            self.n_gates,
            w.held.len()
        );
        for (peer, frame) in w.held {
            let Ok((h, _)) = Header::parse(&frame) else { continue };
            match peer {
                Peer::Game(g) => self.on_game_frame(g, h, frame, out),
                Peer::Gate(g) => self.on_gate_frame(g, h, frame, out),
                Peer::Pending | Peer::Parked(_) => {}
            }
        }
    }

    /// The connection of the game or gate `origin` names, if linked.
    pub(super) fn conn_of_origin(&self, origin: u16) -> Option<oxworld_net::app::ConnId> {
        if origin & 0x8000 != 0 {
            self.gates.get(&(origin & 0x7fff)).copied()
        } else {
            self.games.get(&origin).copied()
        }
    }

    /// A numbered frame this dispatcher will not deliver (and answered or logged itself): its
    /// origin stops keeping it.
    pub(super) fn settle(&mut self, frame: &[u8], out: &mut Outbox) {
        let Ok((h, _)) = Header::parse(frame) else { return };
        if h.seq == 0 || !h.kind.end_to_end() {
            return;
        }
        if let Some(c) = self.conn_of_origin(h.origin) {
            let acks = Acks { origin: h.origin, runs: vec![(h.seq, 1)] };
            out.send_with(c, |b| acks.encode(0, b));
        }
    }
}
