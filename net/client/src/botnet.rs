//! Many client connections on one thread: a `mio` driver around [`ClientConn`] for load bots.
//! The caller runs the loop: [`BotNet::poll`] returns what happened, [`BotNet::send`] queues
//! and writes at once; no thread per bot.

use std::io::{self, Read, Write};
use std::time::Duration;

use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};

use oxworld_net::client_proto::{ClientMsg, ServerMsg};

use crate::conn::{ClientConn, Session};
use crate::dial::{Dial, Transport};
use crate::link::{DatagramLink, StreamLink};

/// What happened to one bot's connection.
#[derive(Debug)]
pub enum BotEvent {
    /// The TCP connection is established.
    Connected(usize),
    /// A server message arrived.
    Message(usize, ServerMsg),
    /// The connection is gone (or never came up), with a reason.
    Closed(usize, String),
}

enum SlotIo {
    Stream(TcpStream, StreamLink),
    Kcp(UdpSocket, DatagramLink),
}

struct Slot {
    io: SlotIo,
    conn: ClientConn,
    out: Vec<u8>,
    connected: bool,
    open: bool,
}

/// A set of bot connections driven by one `mio::Poll`.
pub struct BotNet {
    poll: Poll,
    events: Events,
    slots: Vec<Slot>,
    buf: Vec<u8>,
    /// Bots to reconnect, when, and the session each resumes (if any).
    later: Vec<(usize, std::rc::Rc<Dial>, std::time::Instant, Option<Session>)>,
    /// When the bots' heartbeats are checked next (one pass over them a second).
    next_heartbeats: std::time::Instant,
    /// When the KCP bots' timers run next (every `KCP_TICK`), if there are any.
    next_kcp: Option<std::time::Instant>,
}

/// How often KCP bots run their timers (the gate's default `kcp_interval_ms`).
const KCP_TICK: Duration = Duration::from_millis(10);

/// How often a `BotNet` lets its bots send the heartbeats due (a third of the gate's idle
/// timeout is far longer).
const HEARTBEAT_CHECK: Duration = Duration::from_secs(1);

impl BotNet {
    /// An empty set.
    pub fn new() -> io::Result<Self> {
        Ok(BotNet {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            slots: Vec::new(),
            buf: vec![0; 64 * 1024],
            later: Vec::new(),
            next_heartbeats: std::time::Instant::now(),
            next_kcp: None,
        })
    }

    /// Starts connecting a new bot as `dial` says; returns its index.
    pub fn connect(&mut self, dial: &Dial) -> io::Result<usize> {
        let i = self.slots.len();
        let slot = self.open_slot(i, dial, None)?;
        self.slots.push(slot);
        Ok(i)
    }

    fn open_slot(&mut self, i: usize, dial: &Dial, session: Option<Session>) -> io::Result<Slot> {
        let mut conn = match session {
            Some(s) => dial.resume_conn(s),
            None => dial.new_conn(),
        };
        if dial.transport == Transport::Kcp {
            let any: std::net::SocketAddr =
                if dial.addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
            let mut socket = UdpSocket::bind(any)?;
            socket.connect(dial.addr)?;
            self.poll.registry().register(&mut socket, Token(i), Interest::READABLE)?;
            let mut link = DatagramLink::new(std::time::Instant::now());
            link.outgoing(&mut conn);
            for d in link.transmits() {
                let _ = socket.send(&d);
            }
            self.next_kcp.get_or_insert_with(std::time::Instant::now);
            return Ok(Slot { io: SlotIo::Kcp(socket, link), conn, out: Vec::new(), connected: true, open: true });
        }
        let mut stream = TcpStream::connect(dial.addr)?;
        self.poll.registry().register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        // The upgrade request (WebSocket) and the channel's hello go out as soon as the socket
        // is connected.
        let mut out = Vec::new();
        let mut link = StreamLink::new(dial, &mut out).map_err(io::Error::other)?;
        link.outgoing(&mut conn, &mut out).map_err(io::Error::other)?;
        Ok(Slot { io: SlotIo::Stream(stream, link), conn, out, connected: false, open: true })
    }

    /// Closes bot `i` now and reconnects it as `dial` says after `delay` (a back-off, so a
    /// gate that is down is not hammered); a failed attempt shows up as `Closed` again.
    pub fn reconnect_after(&mut self, i: usize, dial: &Dial, delay: Duration) {
        self.close(i);
        self.later.push((i, std::rc::Rc::new(dial.clone()), std::time::Instant::now() + delay, None));
    }

    /// Like [`BotNet::reconnect_after`], resuming `session` on the new connection (see
    /// [`ClientConn::resuming`]).
    pub fn resume_after(&mut self, i: usize, dial: &Dial, delay: Duration, session: Session) {
        self.close(i);
        self.later.push((i, std::rc::Rc::new(dial.clone()), std::time::Instant::now() + delay, Some(session)));
    }

    /// Replaces bot `i`'s connection (closed or not) with a new one, with a fresh protocol
    /// state; the index stays the same.
    pub fn reconnect(&mut self, i: usize, dial: &Dial) -> io::Result<()> {
        self.reopen(i, dial, None)
    }

    fn reopen(&mut self, i: usize, dial: &Dial, session: Option<Session>) -> io::Result<()> {
        self.close(i);
        let slot = self.open_slot(i, dial, session)?;
        if let Some(s) = self.slots.get_mut(i) {
            *s = slot;
        }
        Ok(())
    }

    /// The protocol state of bot `i`.
    pub fn conn(&self, i: usize) -> &ClientConn {
        &self.slots[i].conn
    }

    /// True while bot `i`'s connection is open.
    pub fn is_open(&self, i: usize) -> bool {
        self.slots.get(i).is_some_and(|s| s.open)
    }

    /// Queues `msg` for bot `i` and writes what the socket takes now.
    pub fn send(&mut self, i: usize, msg: &ClientMsg, events: &mut Vec<BotEvent>) {
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        if !s.open {
            return;
        }
        s.conn.send(msg);
        self.push_out(i, events);
    }

    /// Closes bot `i`.
    pub fn close(&mut self, i: usize) {
        if let Some(s) = self.slots.get_mut(i)
            && s.open
        {
            s.open = false;
            match &mut s.io {
                SlotIo::Stream(stream, _) => {
                    let _ = self.poll.registry().deregister(stream);
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                }
                SlotIo::Kcp(socket, link) => {
                    if let Some(bye) = link.close() {
                        let _ = socket.send(&bye);
                    }
                    let _ = self.poll.registry().deregister(socket);
                }
            }
        }
    }

    fn fail(&mut self, i: usize, reason: String, events: &mut Vec<BotEvent>) {
        if self.is_open(i) {
            self.close(i);
            events.push(BotEvent::Closed(i, reason));
        }
    }

    /// Moves what bot `i`'s protocol state queued to its transport and writes it.
    fn push_out(&mut self, i: usize, events: &mut Vec<BotEvent>) {
        let s = &mut self.slots[i];
        match &mut s.io {
            SlotIo::Stream(_, link) => {
                if let Err(e) = link.outgoing(&mut s.conn, &mut s.out) {
                    return self.fail(i, format!("send: {e}"), events);
                }
            }
            SlotIo::Kcp(socket, link) => {
                link.outgoing(&mut s.conn);
                for d in link.transmits() {
                    let _ = socket.send(&d);
                }
                return;
            }
        }
        self.flush(i, events);
    }

    fn flush(&mut self, i: usize, events: &mut Vec<BotEvent>) {
        let s = &mut self.slots[i];
        if !s.connected || s.out.is_empty() {
            return;
        }
        let SlotIo::Stream(stream, _) = &mut s.io else {
            return;
        };
        let mut written = 0;
        while written < s.out.len() {
            match stream.write(&s.out[written..]) {
                Ok(0) => return self.fail(i, "write returned 0".into(), events),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(i, format!("write: {e}"), events),
            }
        }
        s.out.drain(..written);
    }

    /// Waits up to `timeout` for IO and appends what happened to `events`.
    pub fn poll(&mut self, timeout: Duration, events: &mut Vec<BotEvent>) -> io::Result<()> {
        let now = std::time::Instant::now();
        let mut timeout = timeout.min(self.next_heartbeats.saturating_duration_since(now));
        if now >= self.next_heartbeats {
            self.next_heartbeats = now + HEARTBEAT_CHECK;
            for i in 0..self.slots.len() {
                if self.slots[i].open && self.slots[i].connected {
                    self.slots[i].conn.handle_timeout(now);
                    if self.slots[i].conn.wants_write() {
                        self.push_out(i, events);
                    }
                }
            }
        }
        if let Some(due) = self.next_kcp {
            if now >= due {
                self.kcp_timers(now, events);
                self.next_kcp = Some(now + KCP_TICK);
            }
            timeout = timeout.min(self.next_kcp.map_or(timeout, |t| t.saturating_duration_since(now)));
        }
        if !self.later.is_empty() {
            let due: Vec<(usize, std::rc::Rc<Dial>, Option<Session>)> =
                self.later.iter().filter(|(_, _, t, _)| *t <= now).map(|(i, d, _, s)| (*i, d.clone(), *s)).collect();
            self.later.retain(|(_, _, t, _)| *t > now);
            for (i, dial, session) in due {
                if let Err(e) = self.reopen(i, &dial, session) {
                    events.push(BotEvent::Closed(i, format!("reconnect: {e}")));
                }
            }
            if let Some(next) = self.later.iter().map(|(_, _, t, _)| *t).min() {
                timeout = timeout.min(next.saturating_duration_since(now));
            }
        }
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let ready: Vec<(usize, bool, bool)> = self
            .events
            .iter()
            .map(|e| (e.token().0, e.is_readable() || e.is_read_closed() || e.is_error(), e.is_writable()))
            .collect();
        for (i, readable, writable) in ready {
            if !self.is_open(i) {
                continue;
            }
            if let SlotIo::Kcp(..) = self.slots[i].io {
                if readable {
                    self.read_datagrams(i, events);
                }
                continue;
            }
            if writable && !self.slots[i].connected {
                let s = &mut self.slots[i];
                let SlotIo::Stream(stream, _) = &mut s.io else { continue };
                match stream.take_error() {
                    Ok(Some(e)) | Err(e) => {
                        self.fail(i, format!("connect: {e}"), events);
                        continue;
                    }
                    Ok(None) => {}
                }
                match stream.peer_addr() {
                    Ok(_) => {
                        s.connected = true;
                        let _ = stream.set_nodelay(true);
                        events.push(BotEvent::Connected(i));
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => continue,
                    Err(e) => {
                        self.fail(i, format!("connect: {e}"), events);
                        continue;
                    }
                }
            }
            if writable {
                self.flush(i, events);
            }
            if readable && self.slots[i].connected {
                self.read(i, events);
            }
        }
        Ok(())
    }

    /// Runs every KCP bot's timers: exchange retries, retransmissions, dead links.
    fn kcp_timers(&mut self, now: std::time::Instant, events: &mut Vec<BotEvent>) {
        for i in 0..self.slots.len() {
            let s = &mut self.slots[i];
            if !s.open {
                continue;
            }
            let SlotIo::Kcp(socket, link) = &mut s.io else { continue };
            let r = link.update(now);
            for d in link.transmits() {
                let _ = socket.send(&d);
            }
            if let Err(e) = r {
                self.fail(i, format!("kcp: {e}"), events);
            }
        }
    }

    fn read_datagrams(&mut self, i: usize, events: &mut Vec<BotEvent>) {
        loop {
            let s = &mut self.slots[i];
            let SlotIo::Kcp(socket, link) = &mut s.io else { return };
            match socket.recv(&mut self.buf) {
                Ok(n) => {
                    let r = link.incoming(&self.buf[..n], &mut s.conn, std::time::Instant::now());
                    for d in link.transmits() {
                        let _ = socket.send(&d);
                    }
                    while let Some(m) = s.conn.poll_event() {
                        events.push(BotEvent::Message(i, m));
                    }
                    if let Err(e) = r {
                        let why = s.conn.farewell().map(|r| format!(": {r}")).unwrap_or_default();
                        return self.fail(i, format!("{e}{why}"), events);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // ICMP port unreachable: the gate is not there (yet); KCP retries.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return self.fail(i, format!("read: {e}"), events),
            }
        }
    }

    fn read(&mut self, i: usize, events: &mut Vec<BotEvent>) {
        loop {
            let s = &mut self.slots[i];
            let SlotIo::Stream(stream, link) = &mut s.io else { return };
            match stream.read(&mut self.buf) {
                Ok(0) => {
                    let why = s.conn.farewell().map(|r| format!(": {r}")).unwrap_or_default();
                    return self.fail(i, format!("server closed the connection{why}"), events);
                }
                Ok(n) => {
                    let had = s.out.len();
                    if let Err(e) = link.incoming(&self.buf[..n], &mut s.conn, &mut s.out) {
                        return self.fail(i, format!("protocol: {e}"), events);
                    }
                    while let Some(m) = s.conn.poll_event() {
                        events.push(BotEvent::Message(i, m));
                    }
                    if s.out.len() > had {
                        // The handshake done (what the bot queued before it is sealed now),
                        // or a pong.
                        self.flush(i, events);
                        if !self.is_open(i) {
                            return;
                        }
                    }
                    if n < self.buf.len() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(i, format!("read: {e}"), events),
            }
        }
    }
}

impl Drop for BotNet {
    /// KCP has no FIN: every open KCP bot tells the gate with a `BYE`, so its session (and
    /// the player's login) ends now rather than at the gate's idle timeout.
    fn drop(&mut self) {
        for i in 0..self.slots.len() {
            self.close(i);
        }
    }
}
