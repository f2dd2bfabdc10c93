//! The per-process runtime: one logic thread driving a `mio::Poll`, plus IO worker threads that
//! own the sockets. With the client crate (bots, tools) and the process glue of `oxworld-host`,
//! the only code of a server process that spawns threads, touches sockets or reads the clock;
//! the logic it drives is an [`App`] (`oxworld_net::app`), which does none of these.
//!
//! Logic thread: owns the listeners and the signal source, accepts connections and hands each
//! to a worker, receives [`Event`]s from the workers over one bounded channel (woken by a
//! `mio::Waker`), calls the [`App`], and after every batch of ready events sends what the app
//! wrote into its [`Outbox`] to the workers: one command per worker per loop iteration, so
//! writes that became ready together are coalesced without any timer.
//!
//! Worker thread: its own `mio::Poll` over its sockets; reads until a short read or
//! `WouldBlock`, cuts frames with [`Deframer`], forwards each frame; writes the coalesced
//! batches, keeps what the socket does not take and flushes it on `WRITABLE`. A worker never
//! blocks on anything but its poll: when the channel to the logic thread is full it parks
//! events in a local backlog and stops reading until the backlog drains (backpressure reaches
//! the peer through TCP). The logic thread may block briefly on a full worker command channel,
//! which the worker always drains; so neither side can deadlock the other.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TryRecvError, bounded};
use log::{info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use oxworld_net::app::{App, ConnId, ConnOpts, Event, Outbox, Output, Signal};
use rustc_hash::FxHashMap;

/// Events a worker may send before the logic thread drains them; past this the worker parks
/// events locally and stops reading its sockets.
const EVENT_CHANNEL_CAP: usize = 65_536;
/// Commands queued towards one worker; the logic thread sends one per iteration, so this is
/// only reached if a worker stalls.
const CMD_CHANNEL_CAP: usize = 1024;
/// Worker backlog length past which a connection's reads are paused.
const BACKLOG_PAUSE: usize = 4096;
/// Bytes read from a socket per `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// Events the logic thread handles before it runs a tick and flushes writes, so a flood on
/// one connection cannot delay everyone's writes indefinitely.
const MAX_EVENTS_PER_ITERATION: usize = 8192;
/// Longest the logic thread sleeps without a deadline from the app.
const MAX_POLL_SLEEP: Duration = Duration::from_millis(500);
/// Longest a worker sleeps in its poll (its commands and wake-ups come sooner; this only bounds
/// a missed wake-up).
const WORKER_POLL_EVERY: Duration = Duration::from_millis(250);
/// How long a client connection may take to complete its channel's handshake (PROTOCOL.md
/// 2.4) before its worker closes it; until then the app does not know it exists.
const CLIENT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping worker keeps trying to flush queued output.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(500);

const WAKER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);

/// Lets a helper thread (see [`Runtime::spawn_helper`]) wake the logic thread with
/// [`Event::Wake`]. Cheap to clone; many notifications before the app runs coalesce.
#[derive(Clone)]
pub struct Notifier {
    pending: Arc<std::sync::atomic::AtomicBool>,
    tx: Sender<Event>,
    bell: Arc<Bell>,
}

impl Notifier {
    /// Makes the logic thread deliver [`Event::Wake`] soon. Call after pushing results into
    /// the channel the app reads.
    pub fn notify(&self) {
        use std::sync::atomic::Ordering;
        if !self.pending.swap(true, Ordering::SeqCst) {
            // Blocks only while the event channel is full; the logic thread never waits on a
            // helper, so this cannot deadlock. An error means the loop is gone.
            if self.tx.send(Event::Wake).is_ok() {
                let _ = self.bell.ring();
            }
        }
    }
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Notifier")
    }
}

/// One listening socket.
#[derive(Debug, Clone)]
pub struct ListenSpec {
    /// Address to bind.
    pub addr: SocketAddr,
    /// Limits of each accepted connection.
    pub opts: ConnOpts,
    /// Connections accepted at once; more are closed right after accept.
    pub max_conns: usize,
    /// Client channel (PROTOCOL.md section 2) every accepted connection runs on its worker:
    /// the hello, the handshake, decryption and decompression on the way in, sealing on the
    /// way out. `None` for internal links: frames go to the app as they are.
    pub channel: Option<Arc<oxworld_net::channel::ServerSettings>>,
    /// WebSocket framing (with `channel`): records are binary messages, and plain GETs are
    /// answered from the settings' `web_root`.
    pub ws: Option<Arc<oxworld_net::ws::WsSettings>>,
    /// A KCP listener over UDP instead of TCP (with `channel`), run by one IO worker.
    pub kcp: Option<KcpListen>,
}

/// How to build a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Process name used for thread names and logs (e.g. `gate1`).
    pub name: String,
    /// IO worker threads (at least 1).
    pub io_threads: usize,
    /// Listeners, in the order [`Event::Accepted::listener`] refers to.
    pub listeners: Vec<ListenSpec>,
}

enum Cmd {
    Adopt {
        conn: ConnId,
        stream: TcpStream,
        opts: ConnOpts,
        channel: Option<Arc<oxworld_net::channel::ServerSettings>>,
        ws: Option<Arc<oxworld_net::ws::WsSettings>>,
        /// Listener index and peer, for the `Accepted` the worker sends after the handshake.
        announce: (usize, SocketAddr),
    },
    AdoptUdp {
        listener: usize,
        socket: mio::net::UdpSocket,
        spec: (Arc<oxworld_net::channel::ServerSettings>, KcpListen, ConnOpts, usize),
    },
    Connect {
        conn: ConnId,
        addr: SocketAddr,
        opts: ConnOpts,
    },
    SetMaxFrame(ConnId, usize),
    Write(Vec<(ConnId, Vec<u8>)>),
    Close(ConnId, String),
    Shutdown,
}

struct WorkerHandle {
    tx: Sender<Cmd>,
    bell: Arc<Bell>,
    join: Option<JoinHandle<io::Result<()>>>,
}

/// The logic thread's side of the runtime. Built (and its listeners bound) by
/// [`Runtime::new`], driven by [`Runtime::run`].
pub struct Runtime {
    name: String,
    /// What the logic loop measures about itself (read by metrics and status threads).
    loop_stats: Arc<loopstats::LoopStats>,
    poll: Poll,
    listeners: Vec<(Option<TcpListener>, ListenSpec, usize)>,
    /// Bound addresses of the listeners (TCP and UDP), in order.
    bound: Vec<SocketAddr>,
    accepted: FxHashMap<ConnId, usize>,
    signals: signal_hook_mio::v1_0::Signals,
    workers: Vec<WorkerHandle>,
    events_rx: Receiver<Event>,
    events_tx: Sender<Event>,
    wake_pending: Arc<std::sync::atomic::AtomicBool>,
    refuse_log: oxworld_net::ratelog::RateLog,
    bell: Arc<Bell>,
    out: Outbox,
    output: Output,
    start: Instant,
    start_unix_ms: u64,
}

impl Runtime {
    /// Binds the listeners, registers SIGTERM/SIGINT/SIGHUP and starts the IO workers.
    pub fn new(cfg: RuntimeConfig) -> io::Result<Runtime> {
        let poll = Poll::new()?;
        let main_bell = Arc::new(Bell::new(Waker::new(poll.registry(), WAKER)?));
        let mut listeners = Vec::new();
        let mut bound = Vec::new();
        let mut udps = Vec::new();
        for (i, spec) in cfg.listeners.iter().enumerate() {
            if let Some(k) = &spec.kcp {
                let socket = bind_udp(spec.addr, k)?;
                bound.push(socket.local_addr()?);
                udps.push((i, socket));
                listeners.push((None, spec.clone(), 0));
                continue;
            }
            let mut l = bind_listener(spec.addr)?;
            poll.registry().register(&mut l, Token(i), Interest::READABLE)?;
            bound.push(l.local_addr()?);
            listeners.push((Some(l), spec.clone(), 0));
        }
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook_mio::v1_0::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        poll.registry().register(&mut signals, SIGNALS, Interest::READABLE)?;
        let (events_tx, events_rx) = bounded(EVENT_CHANNEL_CAP);
        let mut workers = Vec::new();
        for w in 0..cfg.io_threads.max(1) {
            let wpoll = Poll::new()?;
            let bell = Arc::new(Bell::new(Waker::new(wpoll.registry(), WAKER)?));
            let (tx, rx) = bounded(CMD_CHANNEL_CAP);
            let worker = Worker::new(
                wpoll,
                rx,
                events_tx.clone(),
                main_bell.clone(),
                bell.clone(),
                os_seed().0,
                (w, cfg.io_threads.max(1)),
            );
            let join = std::thread::Builder::new().name(format!("{}-io{w}", cfg.name)).spawn(move || worker.run())?;
            workers.push(WorkerHandle { tx, bell, join: Some(join) });
        }
        for (i, socket) in udps {
            let spec = &cfg.listeners[i];
            let (Some(channel), Some(k)) = (spec.channel.clone(), spec.kcp.clone()) else {
                return Err(io::Error::other("a KCP listener needs a client channel"));
            };
            let w = &workers[i % workers.len()];
            w.tx.send(Cmd::AdoptUdp { listener: i, socket, spec: (channel, k, spec.opts, spec.max_conns) })
                .map_err(|_| dead_worker())?;
            w.bell.ring()?;
        }
        let (start, start_unix_ms) = unix_clock();
        Ok(Runtime {
            name: cfg.name,
            loop_stats: Arc::default(),
            poll,
            listeners,
            bound,
            accepted: FxHashMap::default(),
            signals,
            workers,
            events_rx,
            events_tx,
            wake_pending: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            refuse_log: oxworld_net::ratelog::RateLog::per_second(),
            bell: main_bell,
            out: Outbox::new(),
            output: Output::default(),
            start,
            start_unix_ms,
        })
    }

    /// The bound address of listener `i` (useful with port 0).
    pub fn local_addr(&self, i: usize) -> io::Result<SocketAddr> {
        self.bound.get(i).copied().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such listener"))
    }

    /// Starts a named helper thread (storage, async jobs) running `body`. The body gets a
    /// [`Notifier`] to wake the logic thread with [`Event::Wake`] after it has pushed results
    /// into a channel the app owns. The caller joins the handle after [`Runtime::run`]
    /// returns, once it has dropped its end of that channel (so the helper can finish the
    /// work queued before and exit).
    pub fn spawn_helper<F, T>(&self, name: &str, body: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce(Notifier) -> T + Send + 'static,
        T: Send + 'static,
    {
        let n = Notifier { pending: self.wake_pending.clone(), tx: self.events_tx.clone(), bell: self.bell.clone() };
        std::thread::Builder::new().name(format!("{}-{name}", self.name)).spawn(move || body(n))
    }

    /// Wall-clock milliseconds since the Unix epoch at `now`, derived from the monotonic clock
    /// and one wall-clock reading at start (so ids stay monotonic if the wall clock jumps).
    pub fn unix_ms_base(&self) -> (Instant, u64) {
        (self.start, self.start_unix_ms)
    }

    /// The logic loop's own counters, to be read from other threads.
    pub fn loop_stats(&self) -> Arc<loopstats::LoopStats> {
        self.loop_stats.clone()
    }

    /// Runs `app` until [`App::done`]; then flushes output, stops and joins the workers.
    pub fn run<A: App>(mut self, app: &mut A) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        info!("{}: runtime started with {} io thread(s)", self.name, self.workers.len());
        let now = Instant::now();
        app.tick(now, &mut self.out);
        self.flush()?;
        while !app.done() {
            let now = Instant::now();
            let mut timeout = app
                .next_deadline()
                .map(|d| d.saturating_duration_since(now))
                .unwrap_or(MAX_POLL_SLEEP)
                .min(MAX_POLL_SLEEP);
            if !timeout.is_zero() && !self.bell.prepare_sleep(|| !self.events_rx.is_empty()) {
                timeout = Duration::ZERO;
            }
            let polled = self.poll.poll(&mut events, Some(timeout));
            self.bell.awake();
            match polled {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            let mut handled = 0u64;
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    SIGNALS => {
                        let sigs: Vec<i32> = self.signals.pending().collect();
                        for s in sigs {
                            let sig = if s == signal_hook::consts::SIGHUP { Signal::Hangup } else { Signal::Terminate };
                            app.handle(now, Event::Signal(sig), &mut self.out);
                        }
                    }
                    Token(i) => self.accept(i, now, app)?,
                }
            }
            for _ in 0..MAX_EVENTS_PER_ITERATION {
                match self.events_rx.try_recv() {
                    Ok(ev) => {
                        if let Event::Closed { conn, .. } = &ev
                            && let Some(l) = self.accepted.remove(conn)
                        {
                            self.listeners[l].2 -= 1;
                        }
                        if let Event::Wake = ev {
                            // Cleared before the app drains, so a result pushed after the
                            // drain rings again.
                            self.wake_pending.store(false, std::sync::atomic::Ordering::SeqCst);
                        }
                        handled += 1;
                        app.handle(now, ev, &mut self.out);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        return Err(io::Error::other("all io workers exited"));
                    }
                }
            }
            app.tick(now, &mut self.out);
            let frames = self.out.take_sent_frames();
            self.flush()?;
            self.loop_stats.record(Instant::now().saturating_duration_since(now), handled, frames);
        }
        self.flush()?;
        for w in &self.workers {
            let _ = w.tx.send(Cmd::Shutdown);
            let _ = w.bell.waker.wake();
        }
        let mut result = Ok(());
        for w in &mut self.workers {
            if let Some(j) = w.join.take() {
                match j.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => result = Err(e),
                    Err(_) => result = Err(io::Error::other("an io worker panicked")),
                }
            }
        }
        info!("{}: runtime stopped", self.name);
        result
    }

    fn accept<A: App>(&mut self, i: usize, now: Instant, app: &mut A) -> io::Result<()> {
        loop {
            let Some((Some(listener), spec, count)) = self.listeners.get_mut(i) else {
                return Ok(());
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    if *count >= spec.max_conns {
                        if let Some(left_out) = self.refuse_log.allow(now) {
                            warn!(
                                "{}: refusing {peer}: listener at its limit of {} connections ({left_out} similar \
                                 left out)",
                                self.name, spec.max_conns
                            );
                        }
                        drop(stream);
                        continue;
                    }
                    *count += 1;
                    let opts = spec.opts;
                    let channel = spec.channel.clone();
                    let ws = spec.ws.clone();
                    let _ = stream.set_nodelay(true);
                    let conn = self.out.alloc_id();
                    self.accepted.insert(conn, i);
                    // A client connection is announced by its worker once its channel's
                    // handshake is done: an unauthenticated socket costs the app nothing.
                    let announce_now = channel.is_none();
                    self.worker_for(conn)
                        .tx
                        .send(Cmd::Adopt { conn, stream, opts, channel, ws, announce: (i, peer) })
                        .map_err(|_| dead_worker())?;
                    self.worker_for(conn).bell.ring()?;
                    if announce_now {
                        app.handle(
                            now,
                            Event::Accepted { conn, listener: i, peer, resume: false, session: false },
                            &mut self.out,
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: log and retry on the next readiness event.
                    warn!("{}: accept failed: {e}", self.name);
                    return Ok(());
                }
            }
        }
    }

    fn worker_for(&self, conn: ConnId) -> &WorkerHandle {
        &self.workers[(conn.0 % self.workers.len() as u64) as usize]
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.drain_into(&mut self.output);
        let n = self.workers.len();
        let mut per_worker: Vec<Vec<Cmd>> = (0..n).map(|_| Vec::new()).collect();
        let idx = |c: ConnId| (c.0 % n as u64) as usize;
        for (conn, addr, opts) in self.output.connects.drain(..) {
            per_worker[idx(conn)].push(Cmd::Connect { conn, addr, opts });
        }
        for (conn, max) in self.output.limits.drain(..) {
            per_worker[idx(conn)].push(Cmd::SetMaxFrame(conn, max));
        }
        if !self.output.writes.is_empty() {
            let mut batches: Vec<Vec<(ConnId, Vec<u8>)>> = (0..n).map(|_| Vec::new()).collect();
            for (conn, bytes) in self.output.writes.drain(..) {
                batches[idx(conn)].push((conn, bytes));
            }
            for (w, b) in batches.into_iter().enumerate() {
                if !b.is_empty() {
                    per_worker[w].push(Cmd::Write(b));
                }
            }
        }
        for (conn, reason) in self.output.closes.drain(..) {
            per_worker[idx(conn)].push(Cmd::Close(conn, reason));
        }
        for (w, cmds) in per_worker.into_iter().enumerate() {
            if cmds.is_empty() {
                continue;
            }
            for c in cmds {
                self.workers[w].tx.send(c).map_err(|_| dead_worker())?;
            }
            self.workers[w].bell.ring()?;
        }
        Ok(())
    }
}

/// 256 bits from the operating system's randomness, the secret key of a process's id
/// generator (client and entity ids).
///
/// # Panics
/// If the OS has no randomness to give: ids would become guessable, so the process stops at
/// start-up rather than run that way.
pub fn os_seed() -> oxworld_net::IdSeed {
    let mut seed = [0u8; 32];
    #[allow(clippy::expect_used)] // start-up only; see Panics
    getrandom::fill(&mut seed).expect("the OS random generator works");
    oxworld_net::IdSeed(seed)
}

/// The monotonic clock's current reading, for code outside the runtime that must take one (a
/// benchmark's base instant); process logic gets `now` from the runtime instead.
pub fn clock_now() -> Instant {
    Instant::now()
}

/// The monotonic clock and the wall clock read together: `(instant, Unix milliseconds at that
/// instant)`. Later instants convert to Unix time from this pair, so they stay monotonic if the
/// wall clock jumps.
pub fn unix_clock() -> (Instant, u64) {
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (Instant::now(), u64::try_from(unix.as_millis()).unwrap_or(u64::MAX))
}

/// Pending connections the kernel queues per listener before dropping SYNs (capped by
/// `net.core.somaxconn`). mio's default of 128 overflows when a thousand clients connect at once.
const LISTEN_BACKLOG: i32 = 4096;

fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

fn bind_udp(addr: SocketAddr, k: &KcpListen) -> io::Result<mio::net::UdpSocket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    // Best effort: the kernel caps them at net.core.rmem_max / wmem_max.
    let _ = socket.set_recv_buffer_size(k.recv_buffer);
    let _ = socket.set_send_buffer_size(k.send_buffer);
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(mio::net::UdpSocket::from_std(socket.into()))
}

fn dead_worker() -> io::Error {
    io::Error::other("an io worker exited")
}

mod bell;
mod kcp_io;
mod layers;
pub mod loopstats;
mod worker;

pub use kcp_io::KcpListen;

use bell::Bell;
use worker::Worker;

#[cfg(test)]
mod tests {
    use oxworld_net::app::CloseReason;
    use oxworld_net::frame::encode_frame;

    use super::*;

    const OPTS: ConnOpts = ConnOpts { max_frame: 1024, max_queued: 1 << 20 };

    /// Echoes every frame back and records what happened; stops after `stop_after` closes.
    struct EchoApp {
        log: Vec<String>,
        closes: usize,
        stop_after: usize,
        dial: Option<SocketAddr>,
    }

    impl App for EchoApp {
        fn handle(&mut self, _now: Instant, ev: Event, out: &mut Outbox) {
            match ev {
                Event::Frame { conn, data, .. } => {
                    self.log.push(format!("frame {}", String::from_utf8_lossy(&data)));
                    out.send(conn, &data);
                }
                Event::Closed { reason, .. } => {
                    self.log.push(format!("closed {reason}"));
                    self.closes += 1;
                }
                Event::Accepted { .. } => self.log.push("accepted".into()),
                Event::Connected { conn } => {
                    self.log.push("connected".into());
                    out.send(conn, b"from-dialer");
                    out.close(conn, "done");
                }
                Event::Signal(_) | Event::Wake => {}
            }
        }
        fn tick(&mut self, _now: Instant, out: &mut Outbox) {
            if let Some(addr) = self.dial.take() {
                out.connect(addr, OPTS);
            }
        }
        fn next_deadline(&self) -> Option<Instant> {
            None
        }
        fn done(&self) -> bool {
            self.closes >= self.stop_after
        }
    }

    /// A client connection reaches the app only once its channel's handshake is done: a
    /// socket that never says its hello costs the app nothing. The app's messages are sealed
    /// by the worker and the client's are opened there.
    #[test]
    fn client_connections_are_announced_after_their_handshake_only() {
        use std::io::{Read as _, Write as _};

        use oxworld_net::channel::{
            ClientChannel, ClientSettings, MAX_RECORD, Mode, ServerSettings, StaticKey, next_prefixed,
        };
        use oxworld_net::frame::Deframer;

        let key = StaticKey::from_secret([4; 32]);
        let settings = Arc::new(ServerSettings {
            mode: Mode::NoiseNk,
            key: Some(key.clone()),
            compress_threshold: 64,
            max_message: 4096,
        });
        let rt = Runtime::new(RuntimeConfig {
            name: "test".into(),
            io_threads: 1,
            listeners: vec![ListenSpec {
                addr: "127.0.0.1:0".parse().expect("addr"),
                opts: OPTS,
                max_conns: 8,
                channel: Some(settings),
                ws: None,
                kcp: None,
            }],
        })
        .expect("runtime");
        let addr = rt.local_addr(0).expect("bound");
        let mut app = EchoApp { log: Vec::new(), closes: 0, stop_after: 2, dial: None };
        let client = std::thread::spawn(move || -> io::Result<Vec<Vec<u8>>> {
            let silent = std::net::TcpStream::connect(addr)?;
            let mut s = std::net::TcpStream::connect(addr)?;
            let mut ch = ClientChannel::new(
                ClientSettings {
                    mode: Mode::NoiseNk,
                    server_key: Some(key.public()),
                    compress_threshold: 64,
                    max_message: 1 << 20,
                },
                [1; 32],
            );
            let mut wire = Vec::new();
            ch.start(&mut wire).map_err(io::Error::other)?;
            ch.send(b"ping", &mut wire).map_err(io::Error::other)?;
            ch.send(&[b'z'; 3000], &mut wire).map_err(io::Error::other)?;
            s.write_all(&wire)?;
            let mut d = Deframer::new(MAX_RECORD);
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while got.len() < 2 {
                let n = s.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                d.push(&buf[..n]);
                while let Some(r) = d.next_frame().map_err(io::Error::other)? {
                    let mut back = Vec::new();
                    ch.handle_record(r, &mut back, |m| got.push(m)).map_err(io::Error::other)?;
                    // After the server hello: the two messages queued before it, sealed.
                    if next_prefixed(&back, 0).is_some() {
                        s.write_all(&back)?;
                    }
                }
            }
            drop(s);
            drop(silent);
            Ok(got)
        });
        rt.run(&mut app).expect("runtime ran");
        let got = client.join().expect("client thread").expect("client io");
        assert_eq!(got, vec![b"ping".to_vec(), vec![b'z'; 3000]], "echoed through the channel, lz4 included");
        let accepted = app.log.iter().filter(|l| *l == "accepted").count();
        assert_eq!(accepted, 1, "only the connection that did its handshake: {:?}", app.log);
        assert_eq!(app.log[0], "accepted", "announced before its first message: {:?}", app.log);
    }

    fn start(io_threads: usize) -> (Runtime, SocketAddr) {
        let rt = Runtime::new(RuntimeConfig {
            name: "test".into(),
            io_threads,
            listeners: vec![ListenSpec {
                addr: "127.0.0.1:0".parse().expect("addr"),
                opts: OPTS,
                max_conns: 8,
                channel: None,
                ws: None,
                kcp: None,
            }],
        })
        .expect("runtime");
        let addr = rt.local_addr(0).expect("bound");
        (rt, addr)
    }

    #[test]
    fn echo_over_real_sockets_then_oversized_frame_closes_only_that_conn() {
        let (rt, addr) = start(2);
        let mut app = EchoApp { log: Vec::new(), closes: 0, stop_after: 2, dial: None };
        let client = std::thread::spawn(move || -> io::Result<Vec<u8>> {
            use std::io::{Read as _, Write as _};
            let mut good = std::net::TcpStream::connect(addr)?;
            let mut bad = std::net::TcpStream::connect(addr)?;
            let mut wire = Vec::new();
            encode_frame(b"one", &mut wire);
            encode_frame(b"two", &mut wire);
            // Dribble the two frames a byte at a time.
            for b in &wire {
                good.write_all(&[*b])?;
            }
            let mut got = vec![0u8; wire.len()];
            good.read_exact(&mut got)?;
            bad.write_all(&u32::MAX.to_le_bytes())?;
            let mut sink = Vec::new();
            let _ = bad.read_to_end(&mut sink); // the runtime closes it
            // The good connection still works after the bad one was dropped.
            good.write_all(&wire[..7])?;
            let mut again = vec![0u8; 7];
            good.read_exact(&mut again)?;
            drop(good);
            Ok(got)
        });
        rt.run(&mut app).expect("runtime ran");
        let got = client.join().expect("client thread").expect("client io");
        let mut want = Vec::new();
        encode_frame(b"one", &mut want);
        encode_frame(b"two", &mut want);
        assert_eq!(got, want);
        assert!(app.log.iter().any(|l| l.contains("bad frame")), "{:?}", app.log);
        assert_eq!(app.log.iter().filter(|l| l.starts_with("frame")).count(), 3, "{:?}", app.log);
    }

    /// A peer that writes its last frame and closes at once (a frozen game exiting) sends
    /// data and FIN in one edge: the frame and the close both reach the app, every time.
    #[test]
    fn last_bytes_and_close_in_one_edge_are_both_seen() {
        const PEERS: usize = 8; // the listener's max_conns
        let (rt, addr) = start(1);
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let mut app = EchoApp { log: Vec::new(), closes: 0, stop_after: PEERS, dial: None };
            let r = rt.run(&mut app);
            let _ = done_tx.send((r.is_ok(), app.log));
        });
        // Whether a peer's bytes and FIN reach its worker before or after it is registered
        // (the adopt read or an edge), both must be seen.
        let peers: Vec<std::net::TcpStream> =
            (0..PEERS).map(|_| std::net::TcpStream::connect(addr).expect("connect")).collect();
        for mut p in peers {
            use std::io::Write as _;
            let mut wire = Vec::new();
            encode_frame(b"last", &mut wire);
            p.write_all(&wire).expect("write");
            drop(p);
        }
        let (ok, log) = done_rx.recv_timeout(Duration::from_secs(20)).expect("every close was seen");
        assert!(ok);
        assert_eq!(log.iter().filter(|l| *l == "frame last").count(), PEERS, "{log:?}");
    }

    #[test]
    fn dial_and_connect_failure() {
        let (rt, addr) = start(1);
        // Dial ourselves: one accepted conn + one dialled conn; the dialler sends and closes.
        let mut app = EchoApp { log: Vec::new(), closes: 2, stop_after: 4, dial: Some(addr) };
        rt.run(&mut app).expect("runtime ran");
        assert!(app.log.contains(&"connected".to_string()), "{:?}", app.log);
        assert!(app.log.contains(&"frame from-dialer".to_string()), "{:?}", app.log);

        let free = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port");
        let (rt, _) = start(1);
        let mut app = EchoApp { log: Vec::new(), closes: 0, stop_after: 1, dial: Some(free) };
        rt.run(&mut app).expect("runtime ran");
        assert!(app.log.iter().any(|l| l.contains("connect failed")), "{:?}", app.log);
    }

    /// Records close reasons; on accept, floods the peer with `flood` bytes.
    struct LimitApp {
        flood: usize,
        reasons: Vec<CloseReason>,
    }

    impl App for LimitApp {
        fn handle(&mut self, _now: Instant, ev: Event, out: &mut Outbox) {
            match ev {
                Event::Accepted { conn, .. } => {
                    let chunk = vec![7u8; 60 * 1024];
                    for _ in 0..self.flood / chunk.len() {
                        out.send(conn, &chunk);
                    }
                }
                Event::Closed { reason, .. } => self.reasons.push(reason),
                _ => {}
            }
        }
        fn tick(&mut self, _now: Instant, _out: &mut Outbox) {}
        fn next_deadline(&self) -> Option<Instant> {
            None
        }
        fn done(&self) -> bool {
            !self.reasons.is_empty()
        }
    }

    fn limit_runtime(opts: ConnOpts) -> (Runtime, SocketAddr) {
        let rt = Runtime::new(RuntimeConfig {
            name: "limits".into(),
            io_threads: 1,
            listeners: vec![ListenSpec {
                addr: "127.0.0.1:0".parse().expect("addr"),
                opts,
                max_conns: 8,
                channel: None,
                ws: None,
                kcp: None,
            }],
        })
        .expect("runtime");
        let addr = rt.local_addr(0).expect("bound");
        (rt, addr)
    }

    #[test]
    fn slow_reader_is_dropped_when_its_queue_passes_the_limit() {
        let opts = ConnOpts { max_frame: 64, max_queued: 256 * 1024 };
        let (rt, addr) = limit_runtime(opts);
        let mut app = LimitApp { flood: 64 << 20, reasons: Vec::new() };
        // Connect and never read.
        let s = std::net::TcpStream::connect(addr).expect("connect");
        rt.run(&mut app).expect("runtime ran");
        assert!(matches!(app.reasons[..], [CloseReason::QueueFull(n)] if n > 256 * 1024), "{:?}", app.reasons);
        drop(s);
    }

    #[test]
    fn outbox_coalesces_per_connection() {
        let mut out = Outbox::new();
        out.send(ConnId(1), b"a");
        out.send(ConnId(2), b"b");
        out.send_with(ConnId(1), |b| b.extend_from_slice(b"cc"));
        let frames = out.take_frames();
        assert_eq!(frames, vec![(ConnId(1), vec![b"a".to_vec(), b"cc".to_vec()]), (ConnId(2), vec![b"b".to_vec()])]);
        assert!(out.take_frames().is_empty());
    }

    /// A helper thread's results all reach the app, through coalesced `Wake` events, and the
    /// helper exits once the app drops its channel.
    #[test]
    fn helper_thread_wakes_the_loop_and_nothing_is_lost() {
        struct Drain {
            rx: Receiver<u32>,
            got: Vec<u32>,
            wakes: usize,
            want: usize,
        }
        impl App for Drain {
            fn handle(&mut self, _now: Instant, event: Event, _out: &mut Outbox) {
                if let Event::Wake = event {
                    self.wakes += 1;
                    self.got.extend(self.rx.try_iter());
                }
            }
            fn tick(&mut self, _now: Instant, _out: &mut Outbox) {}
            fn next_deadline(&self) -> Option<Instant> {
                None
            }
            fn done(&self) -> bool {
                self.got.len() >= self.want
            }
        }
        let rt =
            Runtime::new(RuntimeConfig { name: "helper".into(), io_threads: 1, listeners: vec![] }).expect("runtime");
        let (tx, rx) = crossbeam_channel::unbounded();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let join = rt
            .spawn_helper("jobs", move |n| {
                for i in 0..10_000u32 {
                    tx.send(i).expect("app alive");
                    n.notify();
                }
                // Waits for the app to finish, as a store worker waits for its queue to close.
                let _ = stop_rx.recv();
                7
            })
            .expect("spawn");
        let mut app = Drain { rx, got: Vec::new(), wakes: 0, want: 10_000 };
        rt.run(&mut app).expect("run");
        drop(stop_tx);
        assert_eq!(join.join().expect("helper"), 7);
        assert_eq!(app.got, (0..10_000).collect::<Vec<u32>>());
        assert!(app.wakes >= 1 && app.wakes <= 10_000, "{} wakes", app.wakes);
    }
}
