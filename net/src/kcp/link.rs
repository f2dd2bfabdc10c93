//! The KCP transport's connect exchange (PROTOCOL.md 2.9), sans-IO: control datagrams with
//! conversation id 0, a stateless cookie (as a DTLS/QUIC retry) so a spoofed source address
//! can neither create gate state nor make the gate send more bytes than it received, the
//! gate-assigned conversation id, and `BYE`.
//!
//! [`KcpAcceptor`] is the gate's stateless half (the runtime keeps the sessions);
//! [`KcpClient`] is a client's whole connection: the exchange, then a [`Kcp`] carrying one
//! record per message.

use std::net::SocketAddr;

use snow::resolvers::{CryptoResolver, DefaultResolver};

use super::{Kcp, KcpParams};

/// Control datagram types (byte 4 of a datagram whose first 4 bytes are 0).
pub const HELLO: u8 = 1;
/// Gate -> client: the cookie for a `HELLO`.
pub const COOKIE: u8 = 2;
/// Client -> gate: `HELLO`'s nonce with the cookie.
pub const CONNECT: u8 = 3;
/// Gate -> client: the conversation id.
pub const ACCEPT: u8 = 4;
/// Either way: the conversation is over.
pub const BYE: u8 = 5;
/// Gate -> client: no session (the gate is full), with a reason.
pub const REFUSED: u8 = 6;
/// `HELLO` and `CONNECT` are padded to at least this many bytes; every answer is shorter, so
/// the gate never sends more than it received.
pub const MIN_CLIENT_CONTROL: usize = 64;
/// Cookie bytes: `u32` issue time (gate seconds) and a 16-byte HMAC-SHA256 prefix.
pub const COOKIE_LEN: usize = 20;
/// Seconds a cookie stays valid.
pub const COOKIE_LIFETIME_S: u32 = 30;
/// Longest refusal reason.
const MAX_REASON: usize = 40;

/// What a control datagram asks of the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Send these bytes back to the sender (a `COOKIE`); keep no state.
    Reply(Vec<u8>),
    /// A valid `CONNECT`: open a session for the sender (or resend its `ACCEPT`).
    Connect {
        /// The client's nonce, echoed in `ACCEPT`.
        nonce: [u8; 8],
    },
    /// The sender ends conversation `conv`.
    Bye {
        /// Its conversation id.
        conv: u32,
    },
    /// Ignore it (malformed, too short to answer, a bad or stale cookie).
    Drop,
}

/// The gate's stateless half of the exchange.
pub struct KcpAcceptor {
    key: [u8; 32],
    hmac: Box<dyn snow::types::Hash>,
}

impl std::fmt::Debug for KcpAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KcpAcceptor")
    }
}

fn addr_bytes(a: SocketAddr) -> Vec<u8> {
    let mut v = match a.ip() {
        std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
        std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    v.extend_from_slice(&a.port().to_le_bytes());
    v
}

impl KcpAcceptor {
    /// An acceptor whose cookies are keyed by `key` (secret, random per process).
    pub fn new(key: [u8; 32]) -> Option<KcpAcceptor> {
        let hmac = DefaultResolver.resolve_hash(&snow::params::HashChoice::SHA256)?;
        Some(KcpAcceptor { key, hmac })
    }

    fn cookie(&mut self, peer: SocketAddr, nonce: &[u8; 8], issued: u32) -> [u8; COOKIE_LEN] {
        let mut data = addr_bytes(peer);
        data.extend_from_slice(nonce);
        data.extend_from_slice(&issued.to_le_bytes());
        let mut mac = [0u8; 32];
        self.hmac.hmac(&self.key, &data, &mut mac);
        let mut c = [0u8; COOKIE_LEN];
        c[..4].copy_from_slice(&issued.to_le_bytes());
        c[4..].copy_from_slice(&mac[..16]);
        c
    }

    /// One control datagram (conversation id 0) from `peer` at gate time `now_s` (seconds).
    pub fn handle(&mut self, now_s: u32, peer: SocketAddr, d: &[u8]) -> Control {
        if d.len() < 5 || d[..4] != [0; 4] {
            return Control::Drop;
        }
        match d[4] {
            HELLO if d.len() >= MIN_CLIENT_CONTROL => {
                let Some(nonce) = d.get(5..13).and_then(|n| <[u8; 8]>::try_from(n).ok()) else {
                    return Control::Drop;
                };
                let cookie = self.cookie(peer, &nonce, now_s);
                let mut r = vec![0, 0, 0, 0, COOKIE];
                r.extend_from_slice(&nonce);
                r.extend_from_slice(&cookie);
                Control::Reply(r)
            }
            CONNECT if d.len() >= MIN_CLIENT_CONTROL => {
                let (Some(nonce), Some(cookie)) = (
                    d.get(5..13).and_then(|n| <[u8; 8]>::try_from(n).ok()),
                    d.get(13..13 + COOKIE_LEN).and_then(|c| <[u8; COOKIE_LEN]>::try_from(c).ok()),
                ) else {
                    return Control::Drop;
                };
                let issued = u32::from_le_bytes([cookie[0], cookie[1], cookie[2], cookie[3]]);
                let age = now_s.wrapping_sub(issued);
                if age > COOKIE_LIFETIME_S {
                    return Control::Drop;
                }
                let want = self.cookie(peer, &nonce, issued);
                // Constant-time enough: the comparison's time does not depend on where the
                // bytes differ.
                let same = want.iter().zip(&cookie).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
                if same { Control::Connect { nonce } } else { Control::Drop }
            }
            BYE if d.len() >= 9 => Control::Bye { conv: u32::from_le_bytes([d[5], d[6], d[7], d[8]]) },
            _ => Control::Drop,
        }
    }
}

/// The gate's `ACCEPT` for `nonce`: the conversation is `conv`.
pub fn accept(nonce: [u8; 8], conv: u32) -> Vec<u8> {
    let mut r = vec![0, 0, 0, 0, ACCEPT];
    r.extend_from_slice(&nonce);
    r.extend_from_slice(&conv.to_le_bytes());
    r
}

/// A `REFUSED` for `nonce` with a short reason.
pub fn refuse(nonce: [u8; 8], reason: &str) -> Vec<u8> {
    let mut r = vec![0, 0, 0, 0, REFUSED];
    r.extend_from_slice(&nonce);
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    r.extend_from_slice(&reason.as_bytes()[..end]);
    r
}

/// A `BYE` for `conv`.
pub fn bye(conv: u32) -> Vec<u8> {
    let mut r = vec![0, 0, 0, 0, BYE];
    r.extend_from_slice(&conv.to_le_bytes());
    r
}

fn padded(mut v: Vec<u8>) -> Vec<u8> {
    v.resize(MIN_CLIENT_CONTROL, 0);
    v
}

/// Why a client's KCP connection failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KcpLinkError {
    /// No answer to `HELLO` / `CONNECT` after every retry.
    #[error("the gate did not answer the KCP connect exchange")]
    NoAnswer,
    /// The gate refused (it is full).
    #[error("the gate refused the KCP connection: {0}")]
    Refused(String),
    /// The gate ended the conversation.
    #[error("the gate ended the KCP conversation")]
    Bye,
    /// The gate stopped acknowledging.
    #[error("the gate stopped acknowledging (dead link)")]
    Dead,
    /// A message that is not a record (too large).
    #[error("a KCP message larger than a record")]
    TooLarge,
}

enum ClientState {
    Hello,
    Connect([u8; COOKIE_LEN]),
    Open(Box<Kcp>),
    Closed,
}

/// Interval between `HELLO` / `CONNECT` retries.
const RETRY_MS: u32 = 300;
/// Tries before giving up.
const TRIES: u32 = 10;

/// A client's KCP connection: drive with [`KcpClient::handle_datagram`],
/// [`KcpClient::update`], [`KcpClient::send_record`], and send what
/// [`KcpClient::poll_transmit`] gives.
pub struct KcpClient {
    params: KcpParams,
    nonce: [u8; 8],
    state: ClientState,
    next_try: u32,
    tries: u32,
    out: Vec<Vec<u8>>,
    pending: Vec<Vec<u8>>,
    failed: Option<KcpLinkError>,
}

impl std::fmt::Debug for KcpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KcpClient(open: {})", self.is_open())
    }
}

impl KcpClient {
    /// Starts the exchange at `now` (ms); `nonce` is 8 random bytes.
    pub fn new(params: KcpParams, nonce: [u8; 8], now: u32) -> KcpClient {
        let mut c = KcpClient {
            params,
            nonce,
            state: ClientState::Hello,
            next_try: now,
            tries: 0,
            out: Vec::new(),
            pending: Vec::new(),
            failed: None,
        };
        c.update(now);
        c
    }

    /// True once the gate assigned the conversation.
    pub fn is_open(&self) -> bool {
        matches!(self.state, ClientState::Open(_))
    }

    /// The conversation id, once open.
    pub fn conv(&self) -> Option<u32> {
        match &self.state {
            ClientState::Open(k) => Some(k.conv()),
            _ => None,
        }
    }

    /// What broke the connection, if something did.
    pub fn error(&self) -> Option<&KcpLinkError> {
        self.failed.as_ref()
    }

    fn control(&self, kind: u8) -> Vec<u8> {
        let mut v = vec![0, 0, 0, 0, kind];
        v.extend_from_slice(&self.nonce);
        if let ClientState::Connect(cookie) = &self.state {
            v.extend_from_slice(cookie);
        }
        padded(v)
    }

    /// Time passed: retries the exchange, or runs KCP's timers.
    pub fn update(&mut self, now: u32) {
        match &mut self.state {
            ClientState::Open(k) => {
                if k.is_idle() {
                    return;
                }
                k.update(now);
                if k.is_dead() {
                    self.fail(KcpLinkError::Dead);
                    return;
                }
                while let Some(d) = k.poll_transmit() {
                    self.out.push(d);
                }
            }
            ClientState::Closed => {}
            ClientState::Hello | ClientState::Connect(_) => {
                if super::diff(now, self.next_try) < 0 {
                    return;
                }
                if self.tries >= TRIES {
                    self.fail(KcpLinkError::NoAnswer);
                    return;
                }
                self.tries += 1;
                self.next_try = now.wrapping_add(RETRY_MS);
                let kind = if matches!(self.state, ClientState::Hello) { HELLO } else { CONNECT };
                let d = self.control(kind);
                self.out.push(d);
            }
        }
    }

    fn fail(&mut self, e: KcpLinkError) {
        self.state = ClientState::Closed;
        self.failed.get_or_insert(e);
    }

    /// One datagram from the gate at `now`; whole records go to `records`.
    pub fn handle_datagram(&mut self, now: u32, d: &[u8], records: &mut Vec<Vec<u8>>) {
        let Some(conv) = Kcp::conv_of(d) else { return };
        if conv == 0 {
            let nonce_ok = d.get(5..13) == Some(&self.nonce[..]);
            match (d.get(4).copied(), &self.state) {
                (Some(COOKIE), ClientState::Hello) if nonce_ok => {
                    if let Some(c) = d.get(13..13 + COOKIE_LEN).and_then(|c| <[u8; COOKIE_LEN]>::try_from(c).ok()) {
                        self.state = ClientState::Connect(c);
                        self.tries = 0;
                        self.next_try = now;
                        self.update(now);
                    }
                }
                (Some(ACCEPT), ClientState::Connect(_)) if nonce_ok => {
                    if let Some(c) = d.get(13..17) {
                        let conv = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                        let mut k = Kcp::new(conv, &self.params);
                        k.update(now);
                        for r in std::mem::take(&mut self.pending) {
                            let _ = k.send(&r);
                        }
                        k.flush();
                        while let Some(d) = k.poll_transmit() {
                            self.out.push(d);
                        }
                        self.state = ClientState::Open(Box::new(k));
                    }
                }
                (Some(REFUSED), ClientState::Hello | ClientState::Connect(_)) if nonce_ok => {
                    let why = String::from_utf8_lossy(d.get(13..).unwrap_or_default()).into_owned();
                    self.fail(KcpLinkError::Refused(why));
                }
                (Some(BYE), ClientState::Open(k)) if d.get(5..9) == Some(&k.conv().to_le_bytes()[..]) => {
                    self.fail(KcpLinkError::Bye);
                }
                _ => {}
            }
            return;
        }
        let ClientState::Open(k) = &mut self.state else { return };
        if conv != k.conv() {
            return;
        }
        k.set_current(now);
        if k.input(d).is_err() {
            return;
        }
        let mut too_large = false;
        while let Some(m) = k.recv() {
            if m.len() > crate::channel::MAX_RECORD {
                too_large = true;
                break;
            }
            records.push(m);
        }
        // Acknowledge at once rather than on the next tick.
        k.flush();
        while let Some(d) = k.poll_transmit() {
            self.out.push(d);
        }
        if too_large {
            self.fail(KcpLinkError::TooLarge);
        }
    }

    /// Sends one record at `now` (queued until the conversation is open).
    pub fn send_record(&mut self, record: &[u8], now: u32) {
        match &mut self.state {
            ClientState::Open(k) => {
                k.set_current(now);
                let _ = k.send(record);
                k.flush();
                while let Some(d) = k.poll_transmit() {
                    self.out.push(d);
                }
            }
            ClientState::Hello | ClientState::Connect(_) => self.pending.push(record.to_vec()),
            ClientState::Closed => {}
        }
    }

    /// Ends the conversation: a `BYE` to send.
    pub fn close(&mut self) -> Option<Vec<u8>> {
        let conv = self.conv()?;
        self.state = ClientState::Closed;
        Some(bye(conv))
    }

    /// Milliseconds until [`KcpClient::update`] has work.
    pub fn check(&self, now: u32) -> u32 {
        match &self.state {
            ClientState::Open(k) => k.check(now),
            ClientState::Closed => u32::MAX,
            _ => super::diff(self.next_try, now).max(0) as u32,
        }
    }

    /// Datagrams to send.
    pub fn take_transmits(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "10.0.0.1:5000".parse().expect("addr")
    }

    #[test]
    fn the_exchange_opens_a_conversation_and_carries_records() {
        let mut gate = KcpAcceptor::new([5; 32]).expect("sha256");
        let mut c = KcpClient::new(KcpParams::default(), [1; 8], 0);
        c.send_record(b"early record", 0);
        let hello = c.take_transmits();
        assert_eq!(hello.len(), 1);
        assert!(hello[0].len() >= MIN_CLIENT_CONTROL);
        let Control::Reply(cookie) = gate.handle(100, peer(), &hello[0]) else { panic!("cookie") };
        assert!(cookie.len() < hello[0].len(), "never more bytes than received");
        let mut records = Vec::new();
        c.handle_datagram(1, &cookie, &mut records);
        let connect = c.take_transmits();
        assert_eq!(gate.handle(101, peer(), &connect[0]), Control::Connect { nonce: [1; 8] });
        // The same CONNECT from another address is dropped: the cookie is bound to the sender.
        assert_eq!(gate.handle(101, "10.0.0.2:5000".parse().expect("addr"), &connect[0]), Control::Drop);
        // And a stale one too.
        assert_eq!(gate.handle(100 + COOKIE_LIFETIME_S + 1, peer(), &connect[0]), Control::Drop);
        c.handle_datagram(2, &accept([1; 8], 77), &mut records);
        assert_eq!(c.conv(), Some(77));
        // The early record went out as KCP data of conversation 77.
        let data = c.take_transmits();
        let mut server = Kcp::new(77, &KcpParams::default());
        server.update(2);
        for d in &data {
            server.input(d).expect("kcp data");
        }
        assert_eq!(server.recv(), Some(b"early record".to_vec()));
        server.send(b"reply").expect("send");
        server.flush();
        while let Some(d) = server.poll_transmit() {
            c.handle_datagram(3, &d, &mut records);
        }
        assert_eq!(records, vec![b"reply".to_vec()]);
        assert_eq!(c.close(), Some(bye(77)));
        assert_eq!(gate.handle(5, peer(), &bye(77)), Control::Bye { conv: 77 });
    }

    #[test]
    fn forged_and_short_control_datagrams_are_dropped() {
        let mut gate = KcpAcceptor::new([5; 32]).expect("sha256");
        let mut forged = vec![0, 0, 0, 0, CONNECT];
        forged.extend_from_slice(&[1; 8]);
        forged.extend_from_slice(&[0; COOKIE_LEN]);
        assert_eq!(gate.handle(1, peer(), &padded(forged)), Control::Drop);
        // A HELLO too short to answer without amplifying.
        let mut short = vec![0, 0, 0, 0, HELLO];
        short.extend_from_slice(&[1; 8]);
        assert_eq!(gate.handle(1, peer(), &short), Control::Drop);
        for d in [&[][..], &[0, 0, 0][..], &[0, 0, 0, 0, 99][..], &[1, 0, 0, 0, HELLO][..]] {
            assert_eq!(gate.handle(1, peer(), d), Control::Drop);
        }
    }

    #[test]
    fn a_silent_or_full_gate_is_reported() {
        let mut c = KcpClient::new(KcpParams::default(), [2; 8], 0);
        for t in 0..TRIES + 2 {
            c.update(t * RETRY_MS);
        }
        assert_eq!(c.error(), Some(&KcpLinkError::NoAnswer));
        let mut c = KcpClient::new(KcpParams::default(), [2; 8], 0);
        c.handle_datagram(1, &refuse([2; 8], "the gate is at max_clients"), &mut Vec::new());
        assert_eq!(c.error(), Some(&KcpLinkError::Refused("the gate is at max_clients".into())));
        // Someone else's refusal (another nonce) is ignored.
        let mut c = KcpClient::new(KcpParams::default(), [2; 8], 0);
        c.handle_datagram(1, &refuse([3; 8], "no"), &mut Vec::new());
        assert_eq!(c.error(), None);
    }
}
