//! A game's or gate's links to every dispatcher: dial, handshake, redial after a loss, hold
//! outgoing messages (bounded) while a link is not up, and deliver end to end: number what
//! crosses a dispatcher to another game or gate, keep it until acknowledged, send it again
//! after the link comes back, and drop what arrives twice.
//!
//! LIFECYCLE per link: `Down` --(retry time)--> `Connecting` --Connected--> `Handshaking`
//! (Hello sent) --HelloAck--> `Ready`; any close goes back to `Down` with a retry after
//! [`RECONNECT_MIN`], doubling per failed attempt up to [`RECONNECT_DELAY`]; `Refused` is
//! fatal for the process (wrong secret, version or id).
//!
//! END TO END per link `d` (see `oxworld_net::msg`): a frame of an [`Kind::end_to_end`] kind
//! gets the next `seq` of the link and the link's low-water mark, and is kept in `unacked`
//! until an `Acks` for it arrives. When the link is up again after a loss, what was written to
//! an earlier connection and is still unacknowledged goes first, in `seq` order, then what was
//! held while it was down. Kept messages past `unacked_timeout_s` or `unacked_max_bytes` are
//! given up: the caller answers them with an error ([`Links::take_given_up`]). Received
//! numbered frames are remembered per `(link, origin)` above the origin's low-water mark;
//! a repeat is dropped, and every one is acknowledged once per loop iteration.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{info, warn};
use oxworld_net::Id;
use oxworld_net::app::{CloseReason, ConnId, ConnOpts, Outbox};
use oxworld_net::config::Config;
use oxworld_net::msg::{
    ANNOUNCE_BATCH, Acks, Announce, HEADER_LEN, Header, Hello, HelloAck, INTERNAL_PROTOCOL_VERSION, Kind, Message,
    ProcKind, Refused as RefusedMsg, origin_of,
};
use rustc_hash::FxHashMap;

/// Longest wait between attempts to reach a dispatcher.
pub(crate) const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// First wait after a link is lost (a restarted dispatcher is usually back within it).
pub(crate) const RECONNECT_MIN: Duration = Duration::from_millis(100);

/// The bounds on what a process keeps unacknowledged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unacked {
    /// Age past which a kept message is given up.
    pub(crate) timeout: Duration,
    /// Bytes past which the oldest are given up.
    pub(crate) max_bytes: usize,
}

/// A numbered frame kept until acknowledged.
struct Kept {
    frame: Vec<u8>,
    at: Instant,
    /// Written to this connection; `None` while held for a link that is down.
    on: Option<ConnId>,
}

/// What a link sends end to end.
#[derive(Default)]
struct Outgoing {
    next_seq: u64,
    kept: BTreeMap<u64, Kept>,
}

impl Outgoing {
    /// Every seq below this is settled.
    fn low(&self) -> u64 {
        self.kept.keys().next().copied().unwrap_or(self.next_seq)
    }
}

/// What one origin sent this process through one link.
#[derive(Default)]
struct Incoming {
    low: u64,
    seen: BTreeSet<u64>,
}

/// Something held while a link is down, in the order it was sent.
enum Held {
    Frame(Vec<u8>),
    Numbered(u64),
}

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
    /// Consecutive failed attempts per link (the redial back-off).
    attempts: Vec<u32>,
    pending: Vec<Vec<Held>>,
    pending_bytes: usize,
    outgoing: Vec<Outgoing>,
    kept_bytes: usize,
    unacked: Unacked,
    incoming: FxHashMap<(usize, u16), Incoming>,
    /// Acknowledgements to send at the next `tick`: `(link, origin) -> seqs`.
    acks_due: BTreeMap<(usize, u16), Vec<u64>>,
    given_up: Vec<Vec<u8>>,
    now: Instant,
    /// Numbered frames received twice and dropped.
    pub(crate) duplicates: u64,
    /// Numbered frames sent again after a link came back.
    pub(crate) resent: u64,
    /// Numbered frames given up.
    given_up_total: u64,
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
    /// The links of process `kind` `id` of `cfg` (its dispatchers, secret and bounds), at
    /// `now`, which is `unix_ms` by the wall clock.
    pub(crate) fn new(name: String, kind: ProcKind, id: u16, cfg: &Config, now: Instant, unix_ms: u64) -> Self {
        let addrs: Vec<SocketAddr> = cfg.dispatchers.iter().map(|d| d.advertise_addr).collect();
        let opts = ConnOpts { max_frame: cfg.max_internal_frame, max_queued: cfg.internal_queue_limit };
        let unacked = Unacked { timeout: cfg.unacked_timeout, max_bytes: cfg.unacked_max_bytes };
        let secret = cfg.secret.clone();
        let n = addrs.len();
        // Sequence numbers start at the process's start time times 2^20, so a new process of
        // the same origin numbers above its predecessor (unless it sent a million messages per
        // millisecond of its life) and the destinations forget the old one's.
        let first_seq = unix_ms.saturating_mul(1 << 20).max(1);
        Links {
            name,
            kind,
            id,
            origin: origin_of(kind, id),
            secret,
            addrs,
            opts,
            states: vec![State::Down { retry_at: now }; n],
            attempts: vec![0; n],
            pending: (0..n).map(|_| Vec::new()).collect(),
            pending_bytes: 0,
            outgoing: (0..n).map(|_| Outgoing { next_seq: first_seq, kept: BTreeMap::new() }).collect(),
            kept_bytes: 0,
            unacked,
            incoming: FxHashMap::default(),
            acks_due: BTreeMap::new(),
            given_up: Vec::new(),
            now,
            duplicates: 0,
            resent: 0,
            given_up_total: 0,
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

    /// Dials links whose retry time has come, sends the acknowledgements due and gives up
    /// kept messages past their bounds. Called once per loop iteration.
    pub(crate) fn tick(&mut self, now: Instant, out: &mut Outbox) {
        self.now = now;
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
        for ((d, origin), mut seqs) in std::mem::take(&mut self.acks_due) {
            if let Some(State::Ready(c)) = self.states.get(d) {
                let acks = Acks::of(origin, &mut seqs);
                out.send_with(*c, |b| acks.encode(self.origin, b));
            }
        }
        self.give_up_past_bounds(now);
    }

    fn give_up_past_bounds(&mut self, now: Instant) {
        loop {
            // The oldest kept message of all links (seqs rise with time on each link).
            let oldest = (0..self.outgoing.len())
                .filter_map(|d| self.outgoing[d].kept.first_key_value().map(|(s, k)| (k.at, d, *s)))
                .min();
            let Some((at, d, seq)) = oldest else { return };
            if now < at + self.unacked.timeout && self.kept_bytes <= self.unacked.max_bytes {
                return;
            }
            if let Some(k) = self.outgoing[d].kept.remove(&seq) {
                self.kept_bytes -= k.frame.len();
                warn!(
                    "{}: {} through dispatcher{} not acknowledged (kept {:?}, {} bytes kept); answered with an error",
                    self.name,
                    kind_name(&k.frame),
                    d + 1,
                    now.saturating_duration_since(k.at),
                    self.kept_bytes
                );
                self.given_up.push(k.frame);
                self.given_up_total += 1;
            }
        }
    }

    /// Numbered frames given up (past `unacked_timeout_s` or `unacked_max_bytes`): the caller
    /// answers each call among them with an error to its sender.
    pub(crate) fn take_given_up(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.given_up)
    }

    /// Numbered frames kept unacknowledged, and their bytes.
    pub(crate) fn kept(&self) -> (usize, usize) {
        (self.outgoing.iter().map(|o| o.kept.len()).sum(), self.kept_bytes)
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
        if self.kind != ProcKind::Game {
            return;
        }
        let entities = entities(d);
        let batches = entities.len().div_ceil(ANNOUNCE_BATCH).max(1);
        for i in 0..batches {
            let batch = entities.get(i * ANNOUNCE_BATCH..((i + 1) * ANNOUNCE_BATCH).min(entities.len())).unwrap_or(&[]);
            let ann = Announce { last: i + 1 == batches, entities: batch.to_vec() };
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
                self.attempts[d] = 0;
                // What an earlier connection may have lost goes first, in order; then what
                // was held while the link was down.
                let mut resent = 0;
                for k in self.outgoing[d].kept.values_mut() {
                    if k.on.is_some_and(|on| on != c) {
                        k.on = Some(c);
                        out.send(c, &k.frame);
                        resent += 1;
                    }
                }
                self.resent += resent;
                if resent > 0 {
                    info!("{}: sent {resent} unacknowledged message(s) again through dispatcher{}", self.name, d + 1);
                }
                for held in std::mem::take(&mut self.pending[d]) {
                    match held {
                        Held::Frame(frame) => {
                            self.pending_bytes -= frame.len();
                            out.send(c, &frame);
                        }
                        Held::Numbered(seq) => {
                            if let Some(k) = self.outgoing[d].kept.get_mut(&seq) {
                                k.on = Some(c);
                                out.send(c, &k.frame);
                            }
                        }
                    }
                }
                info!("{}: dispatcher{} link up", self.name, d + 1);
                Ok(Some((d, LinkEvent::Up { games: ack.games })))
            }
            (_, Kind::Refused) => {
                let reason = RefusedMsg::decode_body(&h, body).map(|r| r.reason).unwrap_or_else(|e| e.to_string());
                Err(Refused { dispatcher: (d + 1) as u16, reason })
            }
            (State::Ready(_), Kind::Acks) => {
                match Acks::decode_body(&h, body) {
                    Ok(acks) => self.acknowledged(d, &acks),
                    Err(e) => warn!("{}: dispatcher{} sent malformed Acks ({e}); dropped", self.name, d + 1),
                }
                Ok(None)
            }
            (State::Ready(_), _) if h.seq != 0 && h.kind.end_to_end() => {
                self.acks_due.entry((d, h.origin)).or_default().push(h.seq);
                let inc = self.incoming.entry((d, h.origin)).or_default();
                if h.ack > inc.low {
                    inc.low = h.ack;
                    while inc.seen.first().is_some_and(|&s| s < inc.low) {
                        inc.seen.pop_first();
                    }
                }
                if h.seq < inc.low || !inc.seen.insert(h.seq) {
                    self.duplicates += 1;
                    return Ok(None);
                }
                Ok(Some((d, LinkEvent::Frame(h, body))))
            }
            (State::Ready(_), _) => Ok(Some((d, LinkEvent::Frame(h, body)))),
            (_, kind) => {
                warn!("{}: dispatcher{} sent {kind} before the handshake; reconnecting", self.name, d + 1);
                out.close(conn, "message before handshake");
                Ok(None)
            }
        }
    }

    /// A connection closed; true if it was a dispatcher link (then redialled later: soon after
    /// a loss, backing off while attempts fail).
    pub(crate) fn on_closed(&mut self, conn: ConnId, reason: &CloseReason, now: Instant) -> bool {
        let Some(d) = self.index_of(conn) else {
            return false;
        };
        if matches!(self.states[d], State::Ready(_)) {
            warn!("{}: lost dispatcher{}: {reason}; redialling", self.name, d + 1);
        }
        let delay = RECONNECT_MIN.saturating_mul(1 << self.attempts[d].min(4)).min(RECONNECT_DELAY);
        self.attempts[d] = self.attempts[d].saturating_add(1);
        self.states[d] = State::Down { retry_at: now + delay };
        self.announced_ready = false;
        true
    }

    /// What this process received through link `d`, per origin: `(origin, low-water mark,
    /// seen above it)` (carried by a migrating entity, see `RealMigrate::delivered`).
    pub(crate) fn delivered_via(&self, d: usize) -> Vec<(u16, u64, Vec<u64>)> {
        self.incoming
            .iter()
            .filter(|((link, _), inc)| *link == d && !inc.seen.is_empty())
            .map(|((_, origin), inc)| (*origin, inc.low, inc.seen.iter().copied().collect()))
            .collect()
    }

    /// Another game received these through link `d` (its migrating entity's record): they
    /// count as seen here too. Sequence numbers are unique per origin and link, so a frame one
    /// game saw can only reach another by being sent again.
    pub(crate) fn merge_delivered(&mut self, d: usize, delivered: &[(u16, u64, Vec<u64>)]) {
        for (origin, low, seen) in delivered {
            let inc = self.incoming.entry((d, *origin)).or_default();
            inc.low = inc.low.max(*low);
            inc.seen.extend(seen.iter().copied().filter(|&s| s >= inc.low));
            while inc.seen.first().is_some_and(|&s| s < inc.low) {
                inc.seen.pop_first();
            }
        }
    }

    /// Acknowledged: no longer kept.
    fn acknowledged(&mut self, d: usize, acks: &Acks) {
        let kept = &mut self.outgoing[d].kept;
        for &(first, n) in &acks.runs {
            let end = first.saturating_add(u64::from(n));
            // Bounded by what is kept, whatever the run claims.
            let seqs: Vec<u64> = kept.range(first..end).map(|(s, _)| *s).collect();
            for s in seqs {
                if let Some(k) = kept.remove(&s) {
                    self.kept_bytes -= k.frame.len();
                }
            }
        }
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
    /// `d`, or holds it until that link is up. An end-to-end kind is numbered and kept until
    /// acknowledged.
    pub(crate) fn send_with(&mut self, d: usize, kind: Kind, encode: impl FnOnce(u16, &mut Vec<u8>), out: &mut Outbox) {
        let origin = self.origin;
        if d >= self.states.len() {
            warn!("{}: no dispatcher index {d}", self.name);
            return;
        }
        if kind.end_to_end() {
            let mut frame = Vec::with_capacity(HEADER_LEN + 64);
            encode(origin, &mut frame);
            let o = &mut self.outgoing[d];
            let seq = o.next_seq;
            let low = o.low();
            o.next_seq += 1;
            Header::patch_seq(&mut frame, seq, low);
            let on = match self.states[d] {
                State::Ready(c) => {
                    out.send(c, &frame);
                    Some(c)
                }
                _ => {
                    self.pending[d].push(Held::Numbered(seq));
                    None
                }
            };
            self.kept_bytes += frame.len();
            o.kept.insert(seq, Kept { frame, at: self.now, on });
            return;
        }
        match self.states[d] {
            State::Ready(c) => out.send_with(c, |b| encode(origin, b)),
            _ => {
                let mut frame = Vec::with_capacity(HEADER_LEN + 32);
                encode(origin, &mut frame);
                if self.pending_bytes + frame.len() > self.max_pending_bytes {
                    self.dropped += 1;
                    warn!("{}: dispatcher{} unreachable and hold queue full: dropped {kind}", self.name, d + 1);
                    return;
                }
                self.pending_bytes += frame.len();
                self.pending[d].push(Held::Frame(frame));
            }
        }
    }

    /// Sends one message through dispatcher index `d` (see [`Links::send_with`]).
    pub(crate) fn send<M: Message>(&mut self, d: usize, msg: &M, out: &mut Outbox) {
        self.send_with(d, M::KIND, |origin, b| msg.encode(origin, b), out);
    }
}

impl Links {
    /// Exports the end-to-end counters (kept, given up, sent again, duplicates dropped).
    pub(crate) fn metrics(&self, m: &mut crate::metrics::MetricSet) {
        let (n, bytes) = self.kept();
        m.gauge("unacked_messages", "Numbered messages kept until their destination acknowledges them", &[], n as f64);
        m.gauge("unacked_bytes", "Bytes of numbered messages kept unacknowledged", &[], bytes as f64);
        m.counter("unacked_given_up_total", "Numbered messages given up past the bounds", &[], self.given_up_total);
        m.counter("resent_total", "Numbered messages sent again after a dispatcher link came back", &[], self.resent);
        m.counter("duplicates_dropped_total", "Numbered messages received twice and dropped", &[], self.duplicates);
    }
}

/// The kind of an encoded frame, for logs.
fn kind_name(frame: &[u8]) -> &'static str {
    Header::parse(frame).map(|(h, _)| h.kind.name()).unwrap_or("a frame")
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use oxworld_net::msg::{Call, Caller, EntityCreated, FromGame, GameLoad};

    use super::*;

    /// Game 1's links to two dispatchers; 200 bytes held per down link, kept messages given up
    /// past 10 s or 4096 bytes.
    fn links(now: Instant) -> Links {
        let text = "[deployment]\ndesired_dispatchers=2\ndesired_games=1\ndesired_gates=1\nsecret=s\n\
                    [dispatcher1]\nlisten_addr=127.0.0.1:1\n[dispatcher2]\nlisten_addr=127.0.0.1:2\n";
        let cfg = Config::parse(std::path::Path::new("t.ini"), text).expect("config");
        let mut l = Links::new("game1".into(), ProcKind::Game, 1, &cfg, now, 1);
        l.max_pending_bytes = 200;
        l.unacked = Unacked { timeout: Duration::from_secs(10), max_bytes: 4096 };
        l
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
        for (i, f) in frames[1..].iter().enumerate() {
            let Ok(FromGame::Announce(a)) = FromGame::decode(f) else { panic!("announce batches follow") };
            assert_eq!(a.last, i == 1, "only the last batch is flagged");
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
        assert_eq!(l.next_deadline(), Some(now + RECONNECT_MIN), "the first redial comes soon");
        l.tick(now + RECONNECT_MIN, &mut out);
        let c = out.take_connects()[0].0;
        l.on_connected(c, &mut out, |_| vec![]);
        let frames = &out.take_frames()[0].1;
        assert_eq!(frames.len(), 2, "nothing to announce: Hello and one empty last batch");
        assert!(
            matches!(FromGame::decode(&frames[1]), Ok(FromGame::Announce(Announce { last: true, ref entities })) if entities.is_empty())
        );
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

    /// Links 0 and 1 up (dispatchers 1 and 2); their connection ids.
    fn up(l: &mut Links, now: Instant, out: &mut Outbox) -> Vec<ConnId> {
        l.tick(now, out);
        let conns: Vec<ConnId> = out.take_connects().into_iter().map(|(c, _, _)| c).collect();
        for (d, &c) in conns.iter().enumerate() {
            l.on_connected(c, out, |_| vec![]);
            let ack = HelloAck { dispatcher: d as u16 + 1, games: vec![] }.to_frame(0);
            assert!(matches!(l.on_frame(c, &ack, out), Ok(Some((_, LinkEvent::Up { .. })))));
        }
        out.take_frames();
        conns
    }

    fn call(n: u8) -> Call {
        Call { target: Id([9; 16]), method: u32::from(n), args: vec![], caller: Caller::Server(Id([1; 16])) }
    }

    fn sent_headers(out: &mut Outbox) -> Vec<Header> {
        out.take_frames().into_iter().flat_map(|(_, fs)| fs).map(|f| Header::parse(&f).expect("frame").0).collect()
    }

    #[test]
    fn what_crosses_a_dispatcher_is_numbered_kept_until_acked_and_sent_again_in_order() {
        let now = Instant::now();
        let mut l = links(now);
        let mut out = Outbox::new();
        let conns = up(&mut l, now, &mut out);
        for n in 1..=3 {
            l.send(0, &call(n), &mut out);
        }
        l.send(0, &GameLoad { load: 1 }, &mut out);
        let hs = sent_headers(&mut out);
        let seqs: Vec<u64> = hs.iter().map(|h| h.seq).collect();
        let first = 1 << 20;
        assert_eq!(seqs, vec![first, first + 1, first + 2, 0], "calls numbered from the start time; control not");
        assert!(hs[..3].iter().all(|h| h.ack == first), "low-water: nothing acknowledged yet");
        assert_eq!(l.kept().0, 3);
        // The destination acknowledges the second one only.
        let acks = Acks::of(0, &mut [first + 1]).to_frame(2);
        assert!(matches!(l.on_frame(conns[0], &acks, &mut out), Ok(None)));
        assert_eq!(l.kept().0, 2);
        // A hostile run claiming four billion seqs costs what is kept, not four billion steps.
        let wide = Acks { origin: 0, runs: vec![(first + 100, u32::MAX)] }.to_frame(2);
        assert!(matches!(l.on_frame(conns[0], &wide, &mut out), Ok(None)));
        // The link is lost; a call sent meanwhile is held; the new link gets the unacknowledged
        // ones first, in order, then the held one.
        assert!(l.on_closed(conns[0], &CloseReason::PeerClosed, now));
        l.send(0, &call(4), &mut out);
        assert!(out.take_frames().is_empty());
        l.tick(now + RECONNECT_MIN, &mut out);
        let c = out.take_connects()[0].0;
        l.on_connected(c, &mut out, |_| vec![]);
        out.take_frames();
        let ack = HelloAck { dispatcher: 1, games: vec![] }.to_frame(0);
        assert!(matches!(l.on_frame(c, &ack, &mut out), Ok(Some((0, LinkEvent::Up { .. })))));
        let again: Vec<(u64, u32)> = out
            .take_frames()
            .into_iter()
            .flat_map(|(_, fs)| fs)
            .map(|f| match FromGame::decode(&f) {
                Ok(FromGame::Call(c)) => (Header::parse(&f).expect("header").0.seq, c.method),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(again, vec![(first, 1), (first + 2, 3), (first + 3, 4)]);
        assert_eq!(l.resent, 2);
    }

    #[test]
    fn a_destination_drops_repeats_and_acknowledges_everything_once_per_tick() {
        let now = Instant::now();
        let mut l = links(now);
        let mut out = Outbox::new();
        let conns = up(&mut l, now, &mut out);
        let numbered = |seq: u64, low: u64| {
            let mut f = call(1).to_frame(0x8003);
            Header::patch_seq(&mut f, seq, low);
            f
        };
        let delivered = |l: &mut Links, out: &mut Outbox, f: &[u8]| match l.on_frame(conns[1], f, out) {
            Ok(Some((1, LinkEvent::Frame(..)))) => true,
            Ok(None) => false,
            other => panic!("{other:?}"),
        };
        assert!(delivered(&mut l, &mut out, &numbered(10, 10)));
        assert!(delivered(&mut l, &mut out, &numbered(12, 10)));
        assert!(!delivered(&mut l, &mut out, &numbered(10, 10)), "a repeat is dropped");
        assert!(delivered(&mut l, &mut out, &numbered(11, 10)), "a gap is filled");
        assert!(!delivered(&mut l, &mut out, &numbered(9, 10)), "below the low-water mark: settled already");
        assert!(delivered(&mut l, &mut out, &numbered(20, 13)));
        assert_eq!(l.duplicates, 2);
        assert!(l.incoming[&(1, 0x8003)].seen.iter().all(|&s| s >= 13), "pruned below the mark");
        // Unnumbered frames are not remembered.
        let plain = call(2).to_frame(0x8003);
        assert!(delivered(&mut l, &mut out, &plain) && delivered(&mut l, &mut out, &plain));
        l.tick(now, &mut out);
        let frames = out.take_frames();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].0, conns[1], "acknowledged through the link they came by");
        let Ok(FromGame::Acks(a)) = FromGame::decode(&frames[0].1[0]) else { panic!("acks") };
        assert_eq!(a.origin, 0x8003);
        assert_eq!(a.runs, vec![(9, 4), (20, 1)], "every arrival, repeats included, as runs");
        l.tick(now, &mut out);
        assert!(out.take_frames().is_empty(), "acknowledged once");
    }

    #[test]
    fn kept_messages_past_their_bounds_are_given_up() {
        let now = Instant::now();
        let mut l = links(now);
        let mut out = Outbox::new();
        up(&mut l, now, &mut out);
        l.send(1, &call(1), &mut out);
        l.tick(now + Duration::from_secs(5), &mut out);
        l.send(1, &call(2), &mut out);
        l.tick(now + Duration::from_secs(10), &mut out);
        let gone: Vec<u32> = l.take_given_up().iter().map(|f| Call::decode(f).expect("call").method).collect();
        assert_eq!(gone, vec![1], "the first is past the 10 s timeout, the second is not");
        // Past the bytes (4096 in these tests): the oldest go first.
        for n in 3..200 {
            l.send(1, &call(n), &mut out);
        }
        l.tick(now + Duration::from_secs(10), &mut out);
        let gone: Vec<u32> = l.take_given_up().iter().map(|f| Call::decode(f).expect("call").method).collect();
        assert!(gone.len() > 50 && gone[0] == 2 && gone.windows(2).all(|w| w[0] < w[1]), "{gone:?}");
        assert!(l.kept().1 <= 4096);
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
