//! A game's or gate's links to every dispatcher: dial, handshake, redial after a loss, and hold
//! outgoing messages (bounded) while a link is not up.
//!
//! LIFECYCLE per link: `Down` --(retry time)--> `Connecting` --Connected--> `Handshaking`
//! (Hello sent) --HelloAck--> `Ready`; any close goes back to `Down` with a retry in
//! [`RECONNECT_DELAY`]; `Refused` is fatal for the process (wrong secret, version or id).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{info, warn};
use oxworld_net::Id;
use oxworld_net::app::{CloseReason, ConnId, ConnOpts, Outbox};
use oxworld_net::msg::{INTERNAL_PROTOCOL_VERSION, Msg, ProcKind};

/// Wait between attempts to reach a dispatcher.
pub(crate) const RECONNECT_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Down { retry_at: Instant },
    Connecting(ConnId),
    Handshaking(ConnId),
    Ready(ConnId),
}

/// What a frame on a dispatcher link meant.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// The handshake completed; `games` are the games that dispatcher knows.
    Up { games: Vec<u16> },
    /// A routed message.
    Msg(Msg),
}

/// Fatal handshake outcome.
#[derive(Debug, thiserror::Error)]
#[error("dispatcher {dispatcher} refused this process: {reason}")]
pub(crate) struct Refused {
    /// Dispatcher id.
    pub(crate) dispatcher: u16,
    /// Its reason.
    pub(crate) reason: String,
}

/// Links from one process to all dispatchers.
pub(crate) struct Links {
    name: String,
    kind: ProcKind,
    id: u16,
    secret: String,
    addrs: Vec<SocketAddr>,
    opts: ConnOpts,
    states: Vec<State>,
    pending: Vec<Vec<Vec<u8>>>,
    pending_bytes: usize,
    max_pending_bytes: usize,
    /// Messages dropped because a dispatcher stayed unreachable past the pending bound.
    pub(crate) dropped: u64,
    announced_ready: bool,
}

impl Links {
    pub(crate) fn new(
        name: String,
        kind: ProcKind,
        id: u16,
        secret: String,
        addrs: Vec<SocketAddr>,
        opts: ConnOpts,
        now: Instant,
    ) -> Self {
        let n = addrs.len();
        Links {
            name,
            kind,
            id,
            secret,
            addrs,
            opts,
            states: vec![State::Down { retry_at: now }; n],
            pending: vec![Vec::new(); n],
            pending_bytes: 0,
            max_pending_bytes: opts.max_queued,
            dropped: 0,
            announced_ready: false,
        }
    }

    /// Number of dispatchers.
    pub(crate) fn len(&self) -> usize {
        self.addrs.len()
    }

    /// True when every link completed its handshake.
    pub(crate) fn all_ready(&self) -> bool {
        self.states.iter().all(|s| matches!(s, State::Ready(_)))
    }

    /// Dials links whose retry time has come.
    pub(crate) fn tick(&mut self, now: Instant, out: &mut Outbox) {
        for (d, s) in self.states.iter_mut().enumerate() {
            if let State::Down { retry_at } = *s
                && now >= retry_at
            {
                *s = State::Connecting(out.connect(self.addrs[d], self.opts));
            }
        }
        if !self.announced_ready && self.all_ready() {
            self.announced_ready = true;
            info!("{}: connected to all {} dispatcher(s)", self.name, self.addrs.len());
        }
    }

    /// Earliest retry time of a down link.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.states
            .iter()
            .filter_map(|s| match s {
                State::Down { retry_at } => Some(*retry_at),
                _ => None,
            })
            .min()
    }

    fn index_of(&self, conn: ConnId) -> Option<usize> {
        self.states.iter().position(|s| match s {
            State::Connecting(c) | State::Handshaking(c) | State::Ready(c) => *c == conn,
            State::Down { .. } => false,
        })
    }

    /// True if `conn` is one of the dispatcher links.
    pub(crate) fn owns(&self, conn: ConnId) -> bool {
        self.index_of(conn).is_some()
    }

    /// A link connected: send the handshake, announcing `entities` (for games).
    pub(crate) fn on_connected(&mut self, conn: ConnId, out: &mut Outbox, entities: impl FnOnce(usize) -> Vec<Id>) {
        let Some(d) = self.index_of(conn) else { return };
        self.states[d] = State::Handshaking(conn);
        let hello = Msg::Hello {
            version: INTERNAL_PROTOCOL_VERSION,
            kind: self.kind,
            id: self.id,
            secret: self.secret.clone(),
            entities: entities(d),
        };
        out.send_with(conn, |b| hello.encode(b));
    }

    /// A frame arrived on a dispatcher link. `Ok(None)` for frames of other connections.
    pub(crate) fn on_frame(
        &mut self,
        conn: ConnId,
        data: &[u8],
        out: &mut Outbox,
    ) -> Result<Option<(usize, LinkEvent)>, Refused> {
        let Some(d) = self.index_of(conn) else {
            return Ok(None);
        };
        let msg = match Msg::decode(data) {
            Ok(m) => m,
            Err(e) => {
                warn!("{}: dispatcher{} sent a malformed message ({e}); reconnecting", self.name, d + 1);
                out.close(conn, "malformed message from dispatcher");
                return Ok(None);
            }
        };
        match (self.states[d], msg) {
            (State::Handshaking(c), Msg::HelloAck { games, .. }) => {
                self.states[d] = State::Ready(c);
                for payload in std::mem::take(&mut self.pending[d]) {
                    self.pending_bytes -= payload.len();
                    out.send(c, &payload);
                }
                info!("{}: dispatcher{} link up", self.name, d + 1);
                Ok(Some((d, LinkEvent::Up { games })))
            }
            (_, Msg::Refused { reason }) => Err(Refused { dispatcher: (d + 1) as u16, reason }),
            (State::Ready(_), m) => Ok(Some((d, LinkEvent::Msg(m)))),
            (_, m) => {
                warn!("{}: dispatcher{} sent {} before the handshake; reconnecting", self.name, d + 1, m.name());
                out.close(conn, "message before handshake");
                Ok(None)
            }
        }
    }

    /// A connection closed; true if it was a dispatcher link (then redialled later).
    pub(crate) fn on_closed(&mut self, conn: ConnId, reason: &CloseReason, now: Instant) -> bool {
        let Some(d) = self.index_of(conn) else {
            return false;
        };
        if matches!(self.states[d], State::Ready(_)) {
            warn!("{}: lost dispatcher{}: {reason}; redialling", self.name, d + 1);
        }
        self.states[d] = State::Down { retry_at: now + RECONNECT_DELAY };
        self.announced_ready = false;
        true
    }

    /// Closes every link and dials again at once: each dispatcher gets a fresh Hello (used to
    /// thaw the dispatchers after a freeze that could not be written).
    pub(crate) fn redial_all(&mut self, now: Instant, out: &mut Outbox) {
        for s in &mut self.states {
            if let State::Connecting(c) | State::Handshaking(c) | State::Ready(c) = *s {
                out.close(c, "redialling");
            }
            *s = State::Down { retry_at: now };
        }
        self.announced_ready = false;
    }

    /// Sends `msg` through dispatcher index `d`, or holds it until that link is up.
    pub(crate) fn send(&mut self, d: usize, msg: &Msg, out: &mut Outbox) {
        match self.states.get(d) {
            Some(State::Ready(c)) => out.send_with(*c, |b| msg.encode(b)),
            Some(_) => {
                let mut payload = Vec::new();
                msg.encode(&mut payload);
                if self.pending_bytes + payload.len() > self.max_pending_bytes {
                    self.dropped += 1;
                    warn!("{}: dispatcher{} unreachable and hold queue full: dropped {}", self.name, d + 1, msg.name());
                    return;
                }
                self.pending_bytes += payload.len();
                self.pending[d].push(payload);
            }
            None => warn!("{}: no dispatcher index {d}", self.name),
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use super::*;

    const OPTS: ConnOpts = ConnOpts { max_frame: 1 << 20, max_queued: 64, idle_timeout: None };

    fn links(now: Instant) -> Links {
        let addrs = vec!["127.0.0.1:1".parse().expect("addr"), "127.0.0.1:2".parse().expect("addr")];
        Links::new("game1".into(), ProcKind::Game, 1, "s".into(), addrs, OPTS, now)
    }

    fn encode(m: &Msg) -> Vec<u8> {
        let mut b = Vec::new();
        m.encode(&mut b);
        b
    }

    #[test]
    fn handshake_holds_then_flushes_and_redials() {
        let now = Instant::now();
        let mut l = links(now);
        let mut out = Outbox::new();
        l.tick(now, &mut out);
        let conns: Vec<ConnId> = out.take_connects().into_iter().map(|(c, _, _)| c).collect();
        assert_eq!(conns.len(), 2);
        // Held while not up.
        l.send(0, &Msg::GameUp { game: 9 }, &mut out);
        assert!(out.take_frames().is_empty());
        l.on_connected(conns[0], &mut out, |_| vec![Id([1; 16])]);
        let frames = out.take_frames();
        assert!(matches!(Msg::decode(&frames[0].1[0]), Ok(Msg::Hello { kind: ProcKind::Game, id: 1, .. })));
        // Wrong order: a routed message before the ack closes the link.
        let r = l.on_frame(conns[0], &encode(&Msg::GameUp { game: 2 }), &mut out);
        assert!(matches!(r, Ok(None)));
        assert_eq!(out.take_closes().len(), 1);
        assert!(l.on_closed(conns[0], &CloseReason::PeerClosed, now));
        assert_eq!(l.next_deadline(), Some(now + RECONNECT_DELAY));
        l.tick(now + RECONNECT_DELAY, &mut out);
        let c = out.take_connects()[0].0;
        l.on_connected(c, &mut out, |_| vec![]);
        out.take_frames();
        let r = l.on_frame(c, &encode(&Msg::HelloAck { dispatcher: 1, games: vec![1, 2] }), &mut out);
        assert!(matches!(r, Ok(Some((0, LinkEvent::Up { .. })))));
        let frames = out.take_frames();
        assert_eq!(Msg::decode(&frames[0].1[0]).expect("held msg"), Msg::GameUp { game: 9 });
        assert!(matches!(l.states[0], State::Ready(_)) && !l.all_ready());
    }

    #[test]
    fn refused_is_fatal_and_garbage_reconnects() {
        let now = Instant::now();
        let mut l = links(now);
        let mut out = Outbox::new();
        l.tick(now, &mut out);
        let c = out.take_connects()[1].0;
        l.on_connected(c, &mut out, |_| vec![]);
        assert!(matches!(l.on_frame(c, &[0xff; 9], &mut out), Ok(None)));
        assert_eq!(out.take_closes().len(), 1);
        let r = l.on_frame(c, &encode(&Msg::Refused { reason: "bad secret".into() }), &mut out);
        assert!(matches!(r, Err(Refused { dispatcher: 2, .. })));
    }

    #[test]
    fn hold_queue_is_bounded() {
        let now = Instant::now();
        let mut l = links(now);
        let mut out = Outbox::new();
        for _ in 0..20 {
            l.send(1, &Msg::GameUp { game: 1 }, &mut out);
        }
        assert!(l.dropped > 0);
        assert!(l.pending_bytes <= 64);
    }
}
