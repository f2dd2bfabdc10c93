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
use oxworld_net::msg::{
    ANNOUNCE_BATCH, Announce, HEADER_LEN, Header, Hello, HelloAck, INTERNAL_PROTOCOL_VERSION, Kind, Message, ProcKind,
    Refused as RefusedMsg, origin_of,
};

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
pub(crate) enum LinkEvent<'a> {
    /// The handshake completed; `games` are the games that dispatcher knows.
    Up { games: Vec<u16> },
    /// A message for the process (its header parsed, its body for the caller to decode with
    /// its direction's enum).
    Frame(Header, &'a [u8]),
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
    /// This process as the `origin` of its messages.
    origin: u16,
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
    /// Sent in every `Hello` (see `oxworld_net::msg::Hello`).
    incarnation: u64,
    /// Sent in every `Hello`: this process restored a freeze.
    restored: bool,
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
            origin: origin_of(kind, id),
            secret,
            addrs,
            opts,
            states: vec![State::Down { retry_at: now }; n],
            pending: vec![Vec::new(); n],
            pending_bytes: 0,
            max_pending_bytes: opts.max_queued,
            dropped: 0,
            announced_ready: false,
            incarnation: 0,
            restored: false,
        }
    }

    /// Which run of this process this is, sent in every `Hello` (games: random per start).
    pub(crate) fn set_incarnation(&mut self, incarnation: u64) {
        self.incarnation = incarnation;
    }

    /// This process restored a freeze (said in every `Hello`).
    pub(crate) fn set_restored(&mut self) {
        self.restored = true;
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

    /// A link connected: send the handshake, then announce `entities` (a game's, routed by
    /// this dispatcher) in batches, so the `Hello` stays small whatever the game's size.
    pub(crate) fn on_connected(&mut self, conn: ConnId, out: &mut Outbox, entities: impl FnOnce(usize) -> Vec<Id>) {
        let Some(d) = self.index_of(conn) else { return };
        self.states[d] = State::Handshaking(conn);
        let hello = Hello {
            version: INTERNAL_PROTOCOL_VERSION,
            kind: self.kind,
            id: self.id,
            secret: self.secret.clone(),
            incarnation: self.incarnation,
            restored: self.restored,
        };
        out.send_with(conn, |b| hello.encode(self.origin, b));
        for batch in entities(d).chunks(ANNOUNCE_BATCH) {
            let ann = Announce { entities: batch.to_vec() };
            out.send_with(conn, |b| ann.encode(self.origin, b));
        }
    }

    /// A frame arrived on a dispatcher link. `Ok(None)` for frames of other connections and
    /// for frames that closed the link (garbage, or anything but the handshake before it).
    pub(crate) fn on_frame<'a>(
        &mut self,
        conn: ConnId,
        data: &'a [u8],
        out: &mut Outbox,
    ) -> Result<Option<(usize, LinkEvent<'a>)>, Refused> {
        let Some(d) = self.index_of(conn) else {
            return Ok(None);
        };
        let (h, body) = match Header::parse(data) {
            Ok(hb) => hb,
            Err(e) => {
                warn!("{}: dispatcher{} sent a malformed frame ({e}); reconnecting", self.name, d + 1);
                out.close(conn, "malformed frame from dispatcher");
                return Ok(None);
            }
        };
        match (self.states[d], h.kind) {
            (State::Handshaking(c), Kind::HelloAck) => {
                let Ok(ack) = HelloAck::decode_body(&h, body) else {
                    warn!("{}: dispatcher{} sent a malformed HelloAck; reconnecting", self.name, d + 1);
                    out.close(conn, "malformed HelloAck");
                    return Ok(None);
                };
                self.states[d] = State::Ready(c);
                for frame in std::mem::take(&mut self.pending[d]) {
                    self.pending_bytes -= frame.len();
                    out.send(c, &frame);
                }
                info!("{}: dispatcher{} link up", self.name, d + 1);
                Ok(Some((d, LinkEvent::Up { games: ack.games })))
            }
            (_, Kind::Refused) => {
                let reason = RefusedMsg::decode_body(&h, body).map(|r| r.reason).unwrap_or_else(|e| e.to_string());
                Err(Refused { dispatcher: (d + 1) as u16, reason })
            }
            (State::Ready(_), _) => Ok(Some((d, LinkEvent::Frame(h, body)))),
            (_, kind) => {
                warn!("{}: dispatcher{} sent {kind} before the handshake; reconnecting", self.name, d + 1);
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

    /// Sends the frame `encode` writes (given this process's `origin`) through dispatcher index
    /// `d`, or holds it until that link is up.
    pub(crate) fn send_with(&mut self, d: usize, kind: Kind, encode: impl FnOnce(u16, &mut Vec<u8>), out: &mut Outbox) {
        let origin = self.origin;
        match self.states.get(d) {
            Some(State::Ready(c)) => out.send_with(*c, |b| encode(origin, b)),
            Some(_) => {
                let mut frame = Vec::with_capacity(HEADER_LEN + 32);
                encode(origin, &mut frame);
                if self.pending_bytes + frame.len() > self.max_pending_bytes {
                    self.dropped += 1;
                    warn!("{}: dispatcher{} unreachable and hold queue full: dropped {kind}", self.name, d + 1);
                    return;
                }
                self.pending_bytes += frame.len();
                self.pending[d].push(frame);
            }
            None => warn!("{}: no dispatcher index {d}", self.name),
        }
    }

    /// Sends one message through dispatcher index `d` (see [`Links::send_with`]).
    pub(crate) fn send<M: Message>(&mut self, d: usize, msg: &M, out: &mut Outbox) {
        self.send_with(d, M::KIND, |origin, b| msg.encode(origin, b), out);
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use oxworld_net::msg::{EntityCreated, FromGame, GameLoad};

    use super::*;

    const OPTS: ConnOpts = ConnOpts { max_frame: 1 << 20, max_queued: 200 };

    fn links(now: Instant) -> Links {
        let addrs = vec!["127.0.0.1:1".parse().expect("addr"), "127.0.0.1:2".parse().expect("addr")];
        Links::new("game1".into(), ProcKind::Game, 1, "s".into(), addrs, OPTS, now)
    }

    #[test]
    fn handshake_announces_in_batches_holds_then_flushes_and_redials() {
        let now = Instant::now();
        let mut l = links(now);
        let mut out = Outbox::new();
        l.tick(now, &mut out);
        let conns: Vec<ConnId> = out.take_connects().into_iter().map(|(c, _, _)| c).collect();
        assert_eq!(conns.len(), 2);
        // Held while not up.
        l.send(0, &GameLoad { load: 9 }, &mut out);
        assert!(out.take_frames().is_empty());
        let id = |i: u32| {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&(i + 1).to_le_bytes());
            Id(b)
        };
        let hosted: Vec<Id> = (0..ANNOUNCE_BATCH as u32 + 3).map(id).collect();
        let announced = hosted.clone();
        l.on_connected(conns[0], &mut out, move |_| announced);
        let frames = &out.take_frames()[0].1;
        assert!(matches!(FromGame::decode(&frames[0]), Ok(FromGame::Hello(Hello { kind: ProcKind::Game, id: 1, .. }))));
        assert!(frames[0].len() < 128, "a Hello is small whatever the game's size");
        let mut got = Vec::new();
        for f in &frames[1..] {
            let Ok(FromGame::Announce(a)) = FromGame::decode(f) else { panic!("announce batches follow") };
            assert!(a.entities.len() <= ANNOUNCE_BATCH);
            assert!(f.len() <= oxworld_net::msg::HANDSHAKE_MAX_FRAME, "what a game sends before HelloAck fits the cap");
            got.extend(a.entities);
        }
        assert_eq!((frames.len(), got), (3, hosted));
        // Wrong order: a routed message before the ack closes the link.
        let early = EntityCreated { id: Id([2; 16]) }.to_frame(0);
        let r = l.on_frame(conns[0], &early, &mut out);
        assert!(matches!(r, Ok(None)));
        assert_eq!(out.take_closes().len(), 1);
        assert!(l.on_closed(conns[0], &CloseReason::PeerClosed, now));
        assert_eq!(l.next_deadline(), Some(now + RECONNECT_DELAY));
        l.tick(now + RECONNECT_DELAY, &mut out);
        let c = out.take_connects()[0].0;
        l.on_connected(c, &mut out, |_| vec![]);
        assert_eq!(out.take_frames()[0].1.len(), 1, "nothing to announce: Hello alone");
        let ack = HelloAck { dispatcher: 1, games: vec![1, 2] }.to_frame(0);
        let r = l.on_frame(c, &ack, &mut out);
        assert!(matches!(r, Ok(Some((0, LinkEvent::Up { ref games }))) if *games == vec![1, 2]));
        let frames = out.take_frames();
        assert_eq!(FromGame::decode(&frames[0].1[0]), Ok(FromGame::GameLoad(GameLoad { load: 9 })));
        assert!(matches!(l.states[0], State::Ready(_)) && !l.all_ready());
        // Up: routed frames come back with their header parsed.
        let frame = EntityCreated { id: Id([3; 16]) }.to_frame(0);
        match l.on_frame(c, &frame, &mut out) {
            Ok(Some((0, LinkEvent::Frame(h, body)))) => assert!(h.route == Id([3; 16]) && body.is_empty()),
            other => panic!("{other:?}"),
        }
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
        let refused = RefusedMsg { reason: "bad secret".into() }.to_frame(0);
        let r = l.on_frame(c, &refused, &mut out);
        assert!(matches!(r, Err(Refused { dispatcher: 2, ref reason }) if reason == "bad secret"));
    }

    #[test]
    fn hold_queue_is_bounded() {
        let now = Instant::now();
        let mut l = links(now);
        let mut out = Outbox::new();
        for _ in 0..20 {
            l.send(1, &GameLoad { load: 1 }, &mut out);
        }
        assert!(l.dropped > 0);
        assert!(l.pending_bytes <= 200);
    }
}
