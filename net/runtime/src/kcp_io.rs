//! The KCP listeners of one IO worker: its UDP sockets, the connect exchange
//! ([`KcpAcceptor`]: stateless cookies), one [`Kcp`] conversation and client channel per
//! session, and the timers that drive them. Sessions are keyed by the peer's address (std
//! `HashMap`: the keys come from the network) and get connection ids from this worker's own
//! range, so the logic thread routes their writes back here.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chacha20::ChaCha12Rng;
use chacha20::rand_core::{Rng as _, SeedableRng as _};
use log::debug;
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use oxworld_net::app::{CloseReason, ConnId, ConnOpts, Event};
use oxworld_net::channel::{MAX_RECORD, ServerChannel, ServerSettings, next_prefixed};
use oxworld_net::kcp::link::{Control, KcpAcceptor, accept, bye, refuse};
use oxworld_net::kcp::{Kcp, KcpParams};
use rustc_hash::FxHashMap;

use crate::layers::ClientLayers;

/// Datagrams read from one socket per readiness event before others get a turn.
const DATAGRAM_BUDGET: usize = 4096;
/// How long a closed session keeps delivering what it still had to send before its `BYE`.
const LINGER: Duration = Duration::from_secs(2);
/// Tokens of UDP sockets count down from here (connection tokens are connection ids).
const UDP_TOKEN_TOP: usize = usize::MAX - 16;
/// Connection ids of KCP sessions start here, clear of the logic thread's sequential ids.
const KCP_ID_BASE: u64 = 1 << 62;

/// A KCP listener as the runtime hands it to a worker.
#[derive(Debug, Clone)]
pub struct KcpListen {
    /// KCP tuning.
    pub params: KcpParams,
    /// SO_RCVBUF of the socket.
    pub recv_buffer: usize,
    /// SO_SNDBUF of the socket.
    pub send_buffer: usize,
}

struct Udp {
    listener: usize,
    socket: UdpSocket,
    acceptor: KcpAcceptor,
    channel: Arc<ServerSettings>,
    params: KcpParams,
    opts: ConnOpts,
    max_conns: usize,
    by_addr: HashMap<SocketAddr, u64>,
}

struct Session {
    id: ConnId,
    udp: usize,
    peer: SocketAddr,
    nonce: [u8; 8],
    kcp: Kcp,
    layers: ClientLayers,
    opts: ConnOpts,
    /// Closed for the app at this time; lingers to deliver what is queued.
    closing: Option<Instant>,
}

/// Every KCP socket and session of one worker.
pub(crate) struct KcpIo {
    udps: Vec<Udp>,
    sessions: FxHashMap<u64, Session>,
    seq: u64,
    worker: u64,
    workers: u64,
    base: Instant,
    next_tick: Option<Instant>,
    buf: Vec<u8>,
    rng: ChaCha12Rng,
}

impl KcpIo {
    pub(crate) fn new(worker: usize, workers: usize, seed: [u8; 32]) -> KcpIo {
        KcpIo {
            udps: Vec::new(),
            sessions: FxHashMap::default(),
            seq: 0,
            worker: worker as u64,
            workers: workers.max(1) as u64,
            base: Instant::now(),
            next_tick: None,
            buf: vec![0; 65_536],
            rng: ChaCha12Rng::from_seed(seed),
        }
    }

    fn ms(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.base).as_millis() as u32
    }

    /// The UDP socket index of a poll token, if it is one of ours.
    pub(crate) fn udp_of(&self, token: Token) -> Option<usize> {
        let i = UDP_TOKEN_TOP.checked_sub(token.0)?;
        (i < self.udps.len()).then_some(i)
    }

    pub(crate) fn adopt(
        &mut self,
        registry: &Registry,
        listener: usize,
        mut socket: UdpSocket,
        spec: (Arc<ServerSettings>, KcpListen, ConnOpts, usize),
    ) -> io::Result<()> {
        let (channel, listen, opts, max_conns) = spec;
        let i = self.udps.len();
        registry.register(&mut socket, Token(UDP_TOKEN_TOP - i), Interest::READABLE)?;
        let mut key = [0u8; 32];
        self.rng.fill_bytes(&mut key);
        let acceptor = KcpAcceptor::new(key).ok_or_else(|| io::Error::other("no SHA-256 for KCP cookies"))?;
        self.udps.push(Udp {
            listener,
            socket,
            acceptor,
            channel,
            params: listen.params,
            opts,
            max_conns,
            by_addr: HashMap::new(),
        });
        Ok(())
    }

    /// Reads what socket `u` has (bounded), feeding sessions; events for the app go to `events`.
    pub(crate) fn readable(&mut self, u: usize, now: Instant, events: &mut Vec<Event>) {
        let ms = self.ms(now);
        // The receive buffer is taken out for the loop so datagrams are handled in place.
        let mut buf = std::mem::take(&mut self.buf);
        for _ in 0..DATAGRAM_BUDGET {
            let Some(udp) = self.udps.get(u) else { break };
            let (n, peer) = match udp.socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors from earlier sends surface here: not this socket's end.
                Err(e) => {
                    debug!("kcp recv: {e}");
                    continue;
                }
            };
            self.datagram(u, peer, &buf[..n], ms, events);
        }
        self.buf = buf;
    }

    fn datagram(&mut self, u: usize, peer: SocketAddr, d: &[u8], ms: u32, events: &mut Vec<Event>) {
        let Some(conv) = Kcp::conv_of(d) else { return };
        if conv == 0 {
            let secs = ms / 1000;
            let Some(udp) = self.udps.get_mut(u) else { return };
            match udp.acceptor.handle(secs, peer, d) {
                Control::Reply(r) => send(&udp.socket, &r, peer),
                Control::Connect { nonce } => self.connect(u, peer, nonce, ms),
                Control::Bye { conv } => {
                    if let Some(&k) = udp.by_addr.get(&peer)
                        && self.sessions.get(&k).is_some_and(|s| s.kcp.conv() == conv)
                    {
                        // No BYE back: the client already knows.
                        if let Some(s) = self.sessions.get(&k)
                            && s.closing.is_none()
                        {
                            events.push(Event::Closed { conn: s.id, reason: CloseReason::PeerClosed });
                        }
                        self.forget(k);
                    }
                }
                Control::Drop => {}
            }
            return;
        }
        let Some(udp) = self.udps.get(u) else { return };
        let Some(&k) = udp.by_addr.get(&peer) else {
            // A conversation this gate does not have (it restarted, or the session ended):
            // tell the client, but only for a whole segment, so the answer (9 bytes) is always
            // smaller than what an unverified address sent.
            if d.len() >= oxworld_net::kcp::OVERHEAD {
                send(&udp.socket, &bye(conv), peer);
            }
            return;
        };
        let Some(s) = self.sessions.get_mut(&k) else { return };
        if s.kcp.conv() != conv {
            return;
        }
        s.kcp.set_current(ms);
        if s.kcp.input(d).is_err() {
            return;
        }
        let mut frames = Vec::new();
        let mut bad = None;
        while let Some(m) = s.kcp.recv() {
            if s.closing.is_some() {
                continue;
            }
            if m.len() > MAX_RECORD {
                bad = Some(CloseReason::Protocol("a KCP message larger than a record".into()));
                break;
            }
            let r = s.layers.channel.handle_record(&m, &mut s.layers.wire, |msg| frames.push(msg));
            if let Err(e) = r {
                bad = Some(CloseReason::Protocol(e.to_string()));
                break;
            }
        }
        queue_wire(s);
        // Acknowledge (and answer the handshake) at once rather than on the next tick.
        s.kcp.flush();
        transmit(&self.udps, s);
        if !s.kcp.is_idle() {
            let interval = Duration::from_millis(u64::from(s.kcp.interval()));
            soon(&mut self.next_tick, interval);
        }
        let id = s.id;
        if let Some(ev) = s.layers.take_announcement(id) {
            events.push(ev);
        }
        let at = (!frames.is_empty()).then(Instant::now);
        for data in frames {
            events.push(Event::Frame { conn: id, data, at });
        }
        if let Some(reason) = bad {
            self.end(k, reason, events, true);
        }
    }

    fn connect(&mut self, u: usize, peer: SocketAddr, nonce: [u8; 8], ms: u32) {
        let Some(udp) = self.udps.get(u) else { return };
        if let Some(k) = udp.by_addr.get(&peer) {
            // A retried CONNECT (our ACCEPT was lost): the same answer again.
            if let Some(s) = self.sessions.get(k)
                && s.nonce == nonce
            {
                send(&udp.socket, &accept(nonce, s.kcp.conv()), peer);
            }
            return;
        }
        if udp.by_addr.len() >= udp.max_conns {
            send(&udp.socket, &refuse(nonce, "the gate is at max_clients"), peer);
            return;
        }
        let conv = loop {
            let c = self.rng.next_u32();
            if c != 0 {
                break c;
            }
        };
        let mut kcp = Kcp::new(conv, &udp.params);
        kcp.update(ms);
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let layers = ClientLayers::new(ServerChannel::new(udp.channel.clone(), seed), None, udp.listener, peer);
        let key = KCP_ID_BASE + self.seq * self.workers + self.worker;
        self.seq += 1;
        let id = ConnId(key);
        send(&udp.socket, &accept(nonce, conv), peer);
        let opts = udp.opts;
        self.sessions.insert(key, Session { id, udp: u, peer, nonce, kcp, layers, opts, closing: None });
        if let Some(udp) = self.udps.get_mut(u) {
            udp.by_addr.insert(peer, key);
        }
        // The app hears of it once the channel's handshake is done.
        self.next_tick.get_or_insert_with(Instant::now);
    }

    /// The app's messages for session `conn` (length-prefixed); false if not ours.
    pub(crate) fn write(&mut self, conn: ConnId, bytes: &[u8], events: &mut Vec<Event>) -> bool {
        let ms = self.ms(Instant::now());
        let Some(s) = self.sessions.get_mut(&conn.0) else { return false };
        // An idle session's clock is not kept up to date by the tick.
        s.kcp.set_current(ms);
        if s.closing.is_some() {
            return true;
        }
        if let Err(e) = seal(s, bytes) {
            self.end(conn.0, e, events, true);
            return true;
        }
        s.kcp.flush();
        transmit(&self.udps, s);
        let interval = Duration::from_millis(u64::from(s.kcp.interval()));
        soon(&mut self.next_tick, interval);
        let queued = s.kcp.queued_bytes() + s.layers.channel.pending_bytes();
        if queued > s.opts.max_queued {
            self.end(conn.0, CloseReason::QueueFull(queued), events, true);
        }
        true
    }

    /// The app closes `conn`: it lingers to deliver what is queued; false if not ours.
    pub(crate) fn close(&mut self, conn: ConnId, reason: String, events: &mut Vec<Event>) -> bool {
        if !self.sessions.contains_key(&conn.0) {
            return false;
        }
        self.end(conn.0, CloseReason::Requested(reason), events, true);
        true
    }

    /// Sets the largest message accepted on `conn`; false if not ours.
    pub(crate) fn set_max(&mut self, conn: ConnId, max: usize) -> bool {
        let Some(s) = self.sessions.get_mut(&conn.0) else { return false };
        s.layers.channel.set_max_message(max);
        true
    }

    /// Reports the close to the app now; with `linger`, the session keeps sending what it
    /// has queued (up to [`LINGER`]) before its `BYE`.
    fn end(&mut self, k: u64, reason: CloseReason, events: &mut Vec<Event>, linger: bool) {
        let Some(s) = self.sessions.get_mut(&k) else { return };
        if s.closing.is_none() {
            debug!("{}: closed: {reason}", s.id);
            events.push(Event::Closed { conn: s.id, reason });
            s.closing = Some(Instant::now());
        }
        if !linger || s.kcp.wait_snd() == 0 {
            self.remove(k);
        }
    }

    /// Drops a session the client ended itself (no `BYE` back).
    fn forget(&mut self, k: u64) {
        if let Some(s) = self.sessions.remove(&k)
            && let Some(udp) = self.udps.get_mut(s.udp)
        {
            udp.by_addr.remove(&s.peer);
        }
    }

    fn remove(&mut self, k: u64) {
        if let Some(s) = self.sessions.remove(&k)
            && let Some(udp) = self.udps.get_mut(s.udp)
        {
            send(&udp.socket, &bye(s.kcp.conv()), s.peer);
            udp.by_addr.remove(&s.peer);
        }
    }

    /// How long the worker may sleep before [`KcpIo::tick`] has work.
    pub(crate) fn timeout(&self, now: Instant) -> Option<Duration> {
        self.next_tick.map(|t| t.saturating_duration_since(now))
    }

    /// Runs every session's timers when due: retransmissions, dead peers, lingering closes.
    pub(crate) fn tick(&mut self, now: Instant, events: &mut Vec<Event>) {
        let Some(due) = self.next_tick else { return };
        if now < due {
            return;
        }
        let ms = self.ms(now);
        let mut interval = u32::MAX;
        let mut dead = Vec::new();
        let mut done = Vec::new();
        for (k, s) in &mut self.sessions {
            if s.kcp.is_idle() && s.closing.is_none() {
                if s.layers.handshake_overdue(now, crate::CLIENT_HANDSHAKE_TIMEOUT) {
                    dead.push(*k);
                }
                continue;
            }
            s.kcp.update(ms);
            transmit(&self.udps, s);
            interval = interval.min(s.kcp.check(ms).max(1));
            if let Some(since) = s.closing {
                if s.kcp.wait_snd() == 0 || now.duration_since(since) > LINGER || s.kcp.is_dead() {
                    done.push(*k);
                }
            } else if s.kcp.is_dead() || s.layers.handshake_overdue(now, crate::CLIENT_HANDSHAKE_TIMEOUT) {
                dead.push(*k);
            }
        }
        for k in dead {
            self.end(
                k,
                CloseReason::Protocol(
                    "the client stopped acknowledging (KCP dead link) or never finished its handshake".into(),
                ),
                events,
                false,
            );
        }
        for k in done {
            self.remove(k);
        }
        self.next_tick = if self.sessions.is_empty() {
            None
        } else {
            Some(now + Duration::from_millis(u64::from(interval.min(100))))
        };
    }

    /// Drops every session (the worker stops), telling each client.
    pub(crate) fn shutdown(&mut self) {
        let keys: Vec<u64> = self.sessions.keys().copied().collect();
        for k in keys {
            if let Some(s) = self.sessions.get_mut(&k) {
                s.kcp.flush();
                transmit(&self.udps, s);
            }
            self.remove(k);
        }
    }
}

/// Brings the next tick to within `interval` (a session just got work: its retransmission
/// timers must run on time even if every other session is idle).
fn soon(next_tick: &mut Option<Instant>, interval: Duration) {
    let due = Instant::now() + interval;
    if next_tick.is_none_or(|t| t > due) {
        *next_tick = Some(due);
    }
}

/// Seals the app's length-prefixed messages into records and queues them on the conversation.
fn seal(s: &mut Session, bytes: &[u8]) -> Result<(), CloseReason> {
    s.layers.channel.send_all(bytes, &mut s.layers.wire).map_err(|e| CloseReason::Protocol(e.to_string()))?;
    queue_wire(s);
    Ok(())
}

/// Moves the channel's records into the conversation, one KCP message each.
fn queue_wire(s: &mut Session) {
    let wire = std::mem::take(&mut s.layers.wire);
    let mut at = 0;
    while let Some((r, next)) = next_prefixed(&wire, at) {
        // Records are at most 65 535 bytes, far below KCP's 127 fragments.
        let _ = s.kcp.send(r);
        at = next;
    }
    s.layers.wire = wire;
    s.layers.wire.clear();
}

fn transmit(udps: &[Udp], s: &mut Session) {
    let Some(udp) = udps.get(s.udp) else { return };
    while let Some(d) = s.kcp.poll_transmit() {
        send(&udp.socket, &d, s.peer);
    }
}

/// Sends one datagram; a full socket buffer is loss, which KCP repairs.
fn send(socket: &UdpSocket, d: &[u8], peer: SocketAddr) {
    if let Err(e) = socket.send_to(d, peer)
        && e.kind() != io::ErrorKind::WouldBlock
    {
        debug!("kcp send to {peer}: {e}");
    }
}
