//! An IO worker thread: its own `mio::Poll` over the sockets it was handed, reading frames
//! until a short read or `WouldBlock`, writing the coalesced batches the logic thread sends,
//! closing slow connections, and parking events locally (and pausing reads) while the
//! logic thread's channel is full. See the crate docs for how it and the logic thread hand work
//! to each other.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use log::debug;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use oxworld_net::app::{CloseReason, ConnId, ConnOpts, Event};
use oxworld_net::channel::{MAX_RECORD, ServerChannel};
use oxworld_net::frame::Deframer;
use oxworld_net::ws::{WsServer, WsStatus};
use rustc_hash::FxHashMap;

use crate::bell::Bell;
use crate::kcp_io::KcpIo;
use crate::layers::ClientLayers;
use crate::{BACKLOG_PAUSE, CLIENT_HANDSHAKE_TIMEOUT, Cmd, READ_CHUNK, SHUTDOWN_FLUSH, WAKER, WORKER_POLL_EVERY};

struct Conn {
    id: ConnId,
    stream: TcpStream,
    deframer: Deframer,
    out: Vec<u8>,
    out_pos: usize,
    opts: ConnOpts,
    connecting: bool,
    paused: bool,
    /// The client side of a client connection: records in, messages out, and back.
    client: Option<ClientLayers>,
    /// Close once everything queued is written (a WebSocket port served a plain HTTP GET).
    close_after_flush: bool,
    /// Output was added by the commands being applied; written once they are all applied.
    dirty: bool,
}

pub(crate) struct Worker {
    poll: Poll,
    rx: Receiver<Cmd>,
    tx: Sender<Event>,
    main_bell: Arc<Bell>,
    bell: Arc<Bell>,
    conns: FxHashMap<usize, Conn>,
    backlog: VecDeque<Event>,
    paused: Vec<usize>,
    woke: bool,
    scratch: Vec<u8>,
    /// Seeds the channels' ephemeral keys (one draw per connection).
    rng: chacha20::ChaCha12Rng,
    /// KCP listeners handed to this worker, and their sessions.
    kcp: KcpIo,
    /// Scratch for events from the KCP side.
    kcp_events: Vec<Event>,
    /// When client connections are next checked for an overdue handshake.
    next_sweep: Instant,
    /// Connections with output added by the commands being applied (see `commands`).
    dirty: Vec<usize>,
}

impl Worker {
    pub(crate) fn new(
        poll: Poll,
        rx: Receiver<Cmd>,
        tx: Sender<Event>,
        main_bell: Arc<Bell>,
        bell: Arc<Bell>,
        seed: [u8; 32],
        (index, count): (usize, usize),
    ) -> Worker {
        use chacha20::rand_core::{Rng as _, SeedableRng as _};
        let mut rng = chacha20::ChaCha12Rng::from_seed(seed);
        let mut kcp_seed = [0u8; 32];
        rng.fill_bytes(&mut kcp_seed);
        Worker {
            poll,
            rx,
            tx,
            main_bell,
            bell,
            conns: FxHashMap::default(),
            backlog: VecDeque::new(),
            paused: Vec::new(),
            woke: false,
            scratch: vec![0; READ_CHUNK],
            rng,
            kcp: KcpIo::new(index, count, kcp_seed),
            kcp_events: Vec::new(),
            next_sweep: Instant::now(),
            dirty: Vec::new(),
        }
    }

    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let mut timeout = if self.backlog.is_empty() { WORKER_POLL_EVERY } else { Duration::from_millis(1) };
            if let Some(t) = self.kcp.timeout(Instant::now()) {
                timeout = timeout.min(t);
            }
            if !self.bell.prepare_sleep(|| !self.rx.is_empty()) {
                timeout = Duration::ZERO;
            }
            let polled = self.poll.poll(&mut events, Some(timeout));
            self.bell.awake();
            match polled {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                let Token(t) = ev.token();
                if ev.token() == WAKER {
                    continue;
                }
                if let Some(u) = self.kcp.udp_of(ev.token()) {
                    self.kcp.readable(u, Instant::now(), &mut self.kcp_events);
                    self.emit_kcp();
                    continue;
                }
                if ev.is_writable() {
                    self.on_writable(t);
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    // The peer's last bytes and its FIN can come in one edge: read to the end.
                    self.read(t, ev.is_read_closed() || ev.is_error());
                }
            }
            if self.commands()? {
                self.shutdown();
                return Ok(());
            }
            let now = Instant::now();
            self.kcp.tick(now, &mut self.kcp_events);
            self.emit_kcp();
            if now >= self.next_sweep {
                self.next_sweep = now + Duration::from_secs(1);
                let overdue: Vec<usize> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| {
                        c.client.as_ref().is_some_and(|l| l.handshake_overdue(now, CLIENT_HANDSHAKE_TIMEOUT))
                    })
                    .map(|(k, _)| *k)
                    .collect();
                for k in overdue {
                    self.close(k, CloseReason::Protocol("no completed handshake in time".into()));
                }
            }
            self.drain_backlog();
            if self.woke {
                self.woke = false;
                self.main_bell.ring()?;
            }
        }
    }

    /// Applies queued commands; true on shutdown.
    ///
    /// Every queued command is applied first, then each connection that got output is
    /// written once: when the logic loop produced several iterations' output while this
    /// worker was busy, a client's messages from all of them share one write. The batch grows
    /// with the load and costs no wait when there is none.
    fn commands(&mut self) -> io::Result<bool> {
        let r = self.apply_commands();
        // The list keeps its capacity from one drain to the next (no allocation per drain).
        let mut dirty = std::mem::take(&mut self.dirty);
        for &k in &dirty {
            if let Some(c) = self.conns.get_mut(&k) {
                c.dirty = false;
                self.flush_conn(k);
            }
        }
        dirty.clear();
        self.dirty = dirty;
        r
    }

    fn apply_commands(&mut self) -> io::Result<bool> {
        loop {
            let cmd = match self.rx.try_recv() {
                Ok(c) => c,
                Err(TryRecvError::Empty) => return Ok(false),
                Err(TryRecvError::Disconnected) => return Ok(true),
            };
            match cmd {
                Cmd::Adopt { conn, mut stream, opts, channel, ws, announce } => {
                    let k = conn.0 as usize;
                    self.poll.registry().register(&mut stream, Token(k), Interest::READABLE | Interest::WRITABLE)?;
                    let mut c = Conn::new(conn, stream, opts, false);
                    if let Some(settings) = channel {
                        c.client = Some(ClientLayers::new(
                            ServerChannel::new(settings, self.seed()),
                            ws.map(WsServer::new),
                            announce.0,
                            announce.1,
                        ));
                        c.deframer.set_max_frame(MAX_RECORD);
                    }
                    self.conns.insert(k, c);
                    // Data (even a FIN) may have arrived before registration; edge-triggered
                    // polls would miss it.
                    self.read(k, true);
                }
                Cmd::Connect { conn, addr, opts } => match TcpStream::connect(addr) {
                    Ok(mut stream) => {
                        let k = conn.0 as usize;
                        self.poll.registry().register(
                            &mut stream,
                            Token(k),
                            Interest::READABLE | Interest::WRITABLE,
                        )?;
                        self.conns.insert(k, Conn::new(conn, stream, opts, true));
                    }
                    Err(e) => self.emit(Event::Closed { conn, reason: CloseReason::ConnectFailed(e.to_string()) }),
                },
                Cmd::AdoptUdp { listener, socket, spec } => {
                    self.kcp.adopt(self.poll.registry(), listener, socket, spec)?;
                }
                Cmd::SetMaxFrame(conn, max) => {
                    if self.kcp.set_max(conn, max) {
                        continue;
                    }
                    if let Some(c) = self.conns.get_mut(&(conn.0 as usize)) {
                        match c.client.as_mut() {
                            Some(l) => l.channel.set_max_message(max),
                            None => c.deframer.set_max_frame(max),
                        }
                    }
                }
                Cmd::Write(batch) => {
                    for (conn, bytes) in batch {
                        if self.kcp.write(conn, &bytes, &mut self.kcp_events) {
                            self.emit_kcp();
                            continue;
                        }
                        let k = conn.0 as usize;
                        let Some(c) = self.conns.get_mut(&k) else {
                            continue;
                        };
                        if c.out_pos == c.out.len() {
                            c.out.clear();
                            c.out_pos = 0;
                        }
                        if let Some(l) = c.client.as_mut() {
                            // Our own app's frames: seal each message into records.
                            if let Err(reason) = l.seal(&bytes, &mut c.out) {
                                self.close(k, reason);
                                continue;
                            }
                        } else if c.out.is_empty() {
                            c.out = bytes;
                        } else {
                            c.out.extend_from_slice(&bytes);
                        }
                        if !std::mem::replace(&mut c.dirty, true) {
                            self.dirty.push(k);
                        }
                    }
                }
                Cmd::Close(conn, reason) => {
                    if self.kcp.close(conn, reason.clone(), &mut self.kcp_events) {
                        self.emit_kcp();
                        continue;
                    }
                    let k = conn.0 as usize;
                    self.flush_conn(k);
                    self.close(k, CloseReason::Requested(reason));
                }
                Cmd::Shutdown => return Ok(true),
            }
        }
    }

    fn emit_kcp(&mut self) {
        for ev in std::mem::take(&mut self.kcp_events) {
            self.emit(ev);
        }
    }

    fn shutdown(&mut self) {
        self.kcp.shutdown();
        let deadline = Instant::now() + SHUTDOWN_FLUSH;
        while Instant::now() < deadline {
            let keys: Vec<usize> =
                self.conns.iter().filter(|(_, c)| c.out_pos < c.out.len()).map(|(k, _)| *k).collect();
            if keys.is_empty() {
                break;
            }
            for k in keys {
                self.flush_conn(k);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        for (_, c) in self.conns.drain() {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn seed(&mut self) -> [u8; 32] {
        use chacha20::rand_core::Rng as _;
        let mut s = [0u8; 32];
        self.rng.fill_bytes(&mut s);
        s
    }

    fn emit(&mut self, ev: Event) {
        if !self.backlog.is_empty() {
            self.backlog.push_back(ev);
            return;
        }
        match self.tx.try_send(ev) {
            Ok(()) => self.woke = true,
            Err(TrySendError::Full(ev)) | Err(TrySendError::Disconnected(ev)) => self.backlog.push_back(ev),
        }
    }

    fn drain_backlog(&mut self) {
        while let Some(ev) = self.backlog.pop_front() {
            match self.tx.try_send(ev) {
                Ok(()) => self.woke = true,
                Err(TrySendError::Full(ev)) | Err(TrySendError::Disconnected(ev)) => {
                    self.backlog.push_front(ev);
                    return;
                }
            }
        }
        for k in std::mem::take(&mut self.paused) {
            if let Some(c) = self.conns.get_mut(&k) {
                c.paused = false;
                // Its edges while paused are gone: read until the socket says so.
                self.read(k, true);
            }
        }
    }

    fn on_writable(&mut self, k: usize) {
        let Some(c) = self.conns.get_mut(&k) else {
            return;
        };
        if c.connecting {
            match c.stream.take_error() {
                Ok(Some(e)) | Err(e) => {
                    self.close(k, CloseReason::ConnectFailed(e.to_string()));
                    return;
                }
                Ok(None) => {}
            }
            match c.stream.peer_addr() {
                Ok(_) => {
                    c.connecting = false;
                    let _ = c.stream.set_nodelay(true);
                    let id = c.id;
                    self.emit(Event::Connected { conn: id });
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    self.close(k, CloseReason::ConnectFailed(e.to_string()));
                    return;
                }
            }
        }
        self.flush_conn(k);
    }

    fn flush_conn(&mut self, k: usize) {
        let Some(c) = self.conns.get_mut(&k) else {
            return;
        };
        if c.connecting {
            return;
        }
        while c.out_pos < c.out.len() {
            match c.stream.write(&c.out[c.out_pos..]) {
                Ok(0) => {
                    self.close(k, CloseReason::Io("write returned 0".into()));
                    return;
                }
                Ok(n) => c.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.close(k, CloseReason::Io(e.to_string()));
                    return;
                }
            }
        }
        let queued = c.out.len() - c.out_pos + c.client.as_ref().map_or(0, |l| l.channel.pending_bytes());
        if queued == 0 && c.close_after_flush {
            self.close(k, CloseReason::Requested("HTTP request served".into()));
            return;
        }
        if queued == 0 {
            c.out.clear();
            c.out_pos = 0;
            if c.out.capacity() > 4 * READ_CHUNK {
                c.out = Vec::new();
            }
        } else if queued > c.opts.max_queued {
            self.close(k, CloseReason::QueueFull(queued));
        }
    }

    /// Reads what `k` has; `to_the_end`: until the socket would block or ends, even after a
    /// short read (when a FIN may already be in).
    fn read(&mut self, k: usize, to_the_end: bool) {
        loop {
            let Some(c) = self.conns.get_mut(&k) else {
                return;
            };
            if c.connecting || c.paused {
                return;
            }
            // Read into the worker's scratch buffer: per-connection buffers stay as small as
            // the largest partial frame, not one read chunk per idle client.
            let n = match c.stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.close(k, CloseReason::PeerClosed);
                    return;
                }
                Ok(n) => n,
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return,
                    io::ErrorKind::Interrupted => continue,
                    _ => {
                        self.close(k, CloseReason::Io(e.to_string()));
                        return;
                    }
                },
            };
            let id = c.id;
            let mut frames = Vec::new();
            let mut bad = None;
            let had_output = c.out.len();
            if let Some(l) = c.client.as_mut()
                && let Some(ws) = l.ws.as_mut()
            {
                let mut records = Vec::new();
                let status = ws.handle_bytes(&self.scratch[..n], &mut c.out, &mut records);
                // Records that came before a fault are still delivered, as on TCP.
                for r in records {
                    if bad.is_none()
                        && let Err(reason) = l.record(&r, &mut frames, &mut c.out)
                    {
                        bad = Some(reason);
                    }
                }
                match status {
                    Ok(WsStatus::Open) => {}
                    Ok(WsStatus::Done) => c.close_after_flush = true,
                    // A WebSocket close from the client is an ordinary goodbye.
                    Err(oxworld_net::ws::WsError::Closed) => {
                        bad.get_or_insert(CloseReason::PeerClosed);
                    }
                    Err(e) => {
                        bad.get_or_insert(CloseReason::Protocol(e.to_string()));
                    }
                }
            } else {
                c.deframer.push(&self.scratch[..n]);
                loop {
                    match c.deframer.next_frame() {
                        Ok(Some(f)) => match c.client.as_mut() {
                            None => frames.push(f.to_vec()),
                            Some(l) => {
                                if let Err(reason) = l.record(f, &mut frames, &mut c.out) {
                                    bad = Some(reason);
                                    break;
                                }
                            }
                        },
                        Ok(None) => break,
                        Err(e) => {
                            bad = Some(CloseReason::Frame(e));
                            break;
                        }
                    }
                }
                c.deframer.shrink_if_idle();
            }
            let replied = c.out.len() > had_output;
            if let Some(ev) = c.client.as_mut().and_then(|l| l.take_announcement(id)) {
                self.emit(ev);
            }
            let at = (!frames.is_empty()).then(Instant::now);
            for data in frames {
                self.emit(Event::Frame { conn: id, data, at });
            }
            if replied {
                // The handshake's answer (and what the app queued before it), or a refusal.
                self.flush_conn(k);
            }
            if let Some(reason) = bad {
                self.close(k, reason);
                return;
            }
            if self.backlog.len() > BACKLOG_PAUSE {
                if let Some(c) = self.conns.get_mut(&k) {
                    c.paused = true;
                    self.paused.push(k);
                }
                return;
            }
            if n < READ_CHUNK && !to_the_end {
                // A short read drained the socket; the next edge will bring more (a FIN with
                // the last bytes comes as `read_closed`, read to the end above).
                return;
            }
        }
    }

    fn close(&mut self, k: usize, reason: CloseReason) {
        let Some(mut c) = self.conns.remove(&k) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
        debug!("{}: closed: {reason}", c.id);
        self.emit(Event::Closed { conn: c.id, reason });
    }
}

impl Conn {
    fn new(id: ConnId, stream: TcpStream, opts: ConnOpts, connecting: bool) -> Conn {
        Conn {
            id,
            stream,
            deframer: Deframer::new(opts.max_frame),
            out: Vec::new(),
            out_pos: 0,
            opts,
            connecting,
            paused: false,
            client: None,
            close_after_flush: false,
            dirty: false,
        }
    }
}
