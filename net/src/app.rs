//! The interface between a process's logic and the runtime that drives it: the closed set of
//! [`Event`]s that can trigger work, the [`App`] trait a process's logic implements, and the
//! [`Outbox`] it writes its output into. Sans-IO: nothing here touches a socket, a thread or the
//! clock, so apps are tested by feeding events and reading the outbox (`oxworld-runtime` drives
//! them over real sockets).

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::frame::{Deframer, FrameError, begin_frame, finish_frame};
/// Identifies one connection of this process, accepted or dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnOpts {
    /// Largest frame payload accepted from the peer.
    pub max_frame: usize,
    /// Bytes queued towards the peer before the connection is closed as too slow.
    pub max_queued: usize,
}

/// Why a connection closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed its end.
    PeerClosed,
    /// A socket error.
    Io(String),
    /// The peer sent a frame the deframer refused.
    Frame(FrameError),
    /// More than `max_queued` bytes were waiting for a slow peer.
    QueueFull(usize),
    /// The app asked for it.
    Requested(String),
    /// An outgoing connection could not be established.
    ConnectFailed(String),
    /// The listener is at its connection limit.
    TooManyConnections,
    /// The peer broke the client channel (hello, handshake, a record: PROTOCOL.md section 2)
    /// or the transport's own protocol (WebSocket, KCP).
    Protocol(String),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => write!(f, "peer closed the connection"),
            CloseReason::Io(e) => write!(f, "socket error: {e}"),
            CloseReason::Frame(e) => write!(f, "bad frame: {e}"),
            CloseReason::QueueFull(n) => {
                write!(f, "outgoing queue over its limit ({n} bytes queued)")
            }
            CloseReason::Requested(r) => write!(f, "closed by this process: {r}"),
            CloseReason::ConnectFailed(e) => write!(f, "connect failed: {e}"),
            CloseReason::TooManyConnections => write!(f, "too many connections"),
            CloseReason::Protocol(e) => write!(f, "protocol error: {e}"),
        }
    }
}

/// A signal delivered to the logic thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: stop gracefully.
    Terminate,
    /// SIGHUP.
    Hangup,
}

/// Everything that can trigger work in a process's logic.
#[derive(Debug)]
pub enum Event {
    /// A listener accepted a connection.
    Accepted {
        /// The new connection.
        conn: ConnId,
        /// Index of the listener in [`RuntimeConfig::listeners`].
        listener: usize,
        /// Remote address.
        peer: SocketAddr,
        /// A client connection whose hello offered to resume a session (its first message is
        /// `Resume`); false for internal connections.
        resume: bool,
        /// A client connection whose hello said it knows sessions (revision 2.2: it gets
        /// `Session` after `Welcome`); false for internal connections.
        session: bool,
    },
    /// A connection requested with [`Outbox::connect`] is established.
    Connected {
        /// The connection.
        conn: ConnId,
    },
    /// One frame payload arrived.
    Frame {
        /// From where.
        conn: ConnId,
        /// The payload (without the length prefix).
        data: Vec<u8>,
        /// When the IO worker handed it to the loop (`None` for frames an app or test made up,
        /// which count as arriving at `now`). `now - at` is how long it waited for the loop: the
        /// residence time that a traced call adds per hop.
        at: Option<Instant>,
    },
    /// A connection is gone (also sent for connections the app closed itself).
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// A signal arrived.
    Signal(Signal),
    /// A helper thread of the process (the runtime's `spawn_helper`) asked to be heard: the
    /// app drains whatever channel it shares with that thread. Wake-ups coalesce: one
    /// `Wake` may stand for many notifications, none is lost.
    Wake,
}

/// The logic of one process, driven by the runtime. Implementations never block and never
/// read the clock: `now` is passed in.
pub trait App {
    /// Handles one event, writing any consequences into `out`.
    fn handle(&mut self, now: Instant, event: Event, out: &mut Outbox);
    /// Runs after each batch of events and whenever [`App::next_deadline`] passes.
    fn tick(&mut self, now: Instant, out: &mut Outbox);
    /// When the app next wants [`App::tick`] without any event.
    fn next_deadline(&self) -> Option<Instant>;
    /// True once the app has finished; the runtime flushes pending output and returns.
    fn done(&self) -> bool;
}

/// Where an [`App`] writes its output; drained by the runtime after every loop iteration.
/// Frames for one connection written during one iteration are coalesced into one buffer.
#[derive(Debug, Default)]
pub struct Outbox {
    next_id: u64,
    writes: Vec<(ConnId, Vec<u8>)>,
    /// Connection ids are ours (sequential), so a fast non-keyed hash is safe here.
    write_index: FxHashMap<ConnId, usize>,
    closes: Vec<(ConnId, String)>,
    connects: Vec<(ConnId, SocketAddr, ConnOpts)>,
    limits: Vec<(ConnId, usize)>,
    /// Frames queued since the last [`Outbox::take_sent_frames`] (for the loop's counters).
    sent_frames: u64,
}

impl Outbox {
    /// An empty outbox whose first allocated connection id is 1.
    pub fn new() -> Self {
        Self { next_id: 1, ..Default::default() }
    }

    /// A fresh connection id (the runtime numbers accepted connections with it too, so ids
    /// never collide).
    pub fn alloc_id(&mut self) -> ConnId {
        let id = ConnId(self.next_id);
        self.next_id += 1;
        id
    }

    fn buf(&mut self, conn: ConnId) -> &mut Vec<u8> {
        let i = match self.write_index.get(&conn) {
            Some(&i) => i,
            None => {
                self.writes.push((conn, Vec::new()));
                self.write_index.insert(conn, self.writes.len() - 1);
                self.writes.len() - 1
            }
        };
        &mut self.writes[i].1
    }

    /// Queues one frame carrying `payload`.
    pub fn send(&mut self, conn: ConnId, payload: &[u8]) {
        self.send_with(conn, |b| b.extend_from_slice(payload));
    }

    /// Queues one frame whose payload `encode` appends in place (no intermediate buffer).
    pub fn send_with(&mut self, conn: ConnId, encode: impl FnOnce(&mut Vec<u8>)) {
        self.sent_frames += 1;
        let buf = self.buf(conn);
        let at = begin_frame(buf);
        encode(buf);
        finish_frame(buf, at);
    }

    /// Closes `conn` after what was queued for it so far has been written (best effort).
    pub fn close(&mut self, conn: ConnId, reason: impl Into<String>) {
        self.closes.push((conn, reason.into()));
    }

    /// Changes the largest frame accepted from `conn` (applied by the runtime before this
    /// iteration's writes, so a reply sent now is only seen by a peer that may already use it).
    pub fn set_max_frame(&mut self, conn: ConnId, max_frame: usize) {
        self.limits.push((conn, max_frame));
    }

    /// Takes the queued frame-limit changes (for tests of apps).
    pub fn take_limits(&mut self) -> Vec<(ConnId, usize)> {
        std::mem::take(&mut self.limits)
    }

    /// Dials `addr`; [`Event::Connected`] or [`Event::Closed`] follows for the returned id.
    pub fn connect(&mut self, addr: SocketAddr, opts: ConnOpts) -> ConnId {
        let id = self.alloc_id();
        self.connects.push((id, addr, opts));
        id
    }

    /// Takes the queued frames per connection, decoded back into payloads (for tests of apps).
    pub fn take_frames(&mut self) -> Vec<(ConnId, Vec<Vec<u8>>)> {
        self.write_index.clear();
        std::mem::take(&mut self.writes)
            .into_iter()
            .map(|(c, bytes)| {
                let mut d = Deframer::new(usize::MAX);
                d.push(&bytes);
                let mut frames = Vec::new();
                while let Ok(Some(f)) = d.next_frame() {
                    frames.push(f.to_vec());
                }
                (c, frames)
            })
            .collect()
    }

    /// Takes the queued close requests (for tests of apps).
    pub fn take_closes(&mut self) -> Vec<(ConnId, String)> {
        std::mem::take(&mut self.closes)
    }

    /// Takes the queued connect requests (for tests of apps).
    pub fn take_connects(&mut self) -> Vec<(ConnId, SocketAddr, ConnOpts)> {
        std::mem::take(&mut self.connects)
    }

    /// Frames queued since the last call (the runtime's messages-out counter).
    pub fn take_sent_frames(&mut self) -> u64 {
        std::mem::take(&mut self.sent_frames)
    }

    /// Moves everything queued into `into` (the runtime, once per loop iteration), keeping
    /// this outbox's buffers for reuse.
    pub fn drain_into(&mut self, into: &mut Output) {
        into.connects.append(&mut self.connects);
        into.limits.append(&mut self.limits);
        into.writes.append(&mut self.writes);
        self.write_index.clear();
        into.closes.append(&mut self.closes);
    }
}

/// What an [`Outbox`] held at the end of one loop iteration, in the order the runtime applies
/// it: dials, frame-limit changes, then the coalesced writes (one buffer of frames per connection), then closes (each
/// after that connection's writes).
#[derive(Debug, Default)]
pub struct Output {
    /// Connections to dial.
    pub connects: Vec<(ConnId, SocketAddr, ConnOpts)>,
    /// Frame-limit changes, applied before the writes.
    pub limits: Vec<(ConnId, usize)>,
    /// Framed bytes per connection.
    pub writes: Vec<(ConnId, Vec<u8>)>,
    /// Connections to close, with the reason.
    pub closes: Vec<(ConnId, String)>,
}
