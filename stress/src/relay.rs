//! A lossy, slow link between the bots and a gate, in user space (netem is not available
//! here): `--loss PCT --delay MS --jitter MS`. UDP datagrams (KCP) are dropped with the given
//! probability and delayed by `delay ± jitter` each, so they also reorder; TCP streams
//! (tcp, ws) are delayed the same way but never dropped or reordered (a user-space relay
//! cannot drop TCP segments: the kernel retransmits below it).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};

/// How the link misbehaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkCfg {
    /// Datagrams dropped, in percent (UDP only).
    pub(crate) loss_pct: f64,
    /// One-way delay.
    pub(crate) delay: Duration,
    /// Each packet's delay is uniform in `delay ± jitter`.
    pub(crate) jitter: Duration,
}

struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl LinkCfg {
    fn due(&self, now: Instant, rng: &mut Rng) -> Instant {
        let j = self.jitter.as_secs_f64() * (2.0 * rng.unit() - 1.0);
        let d = (self.delay.as_secs_f64() + j).max(0.0);
        now + Duration::from_secs_f64(d)
    }
}

/// Packets waiting for their time: (due, sequence, peer index, upward?, bytes).
type Queue = BinaryHeap<Reverse<(Instant, u64, usize, bool, Vec<u8>)>>;

const FRONT: Token = Token(usize::MAX);

/// Starts a UDP relay to `target`; returns the address bots should use.
pub(crate) fn start_udp(target: SocketAddr, cfg: LinkCfg) -> io::Result<SocketAddr> {
    let mut front = UdpSocket::bind("127.0.0.1:0".parse().map_err(io::Error::other)?)?;
    let addr = front.local_addr()?;
    let poll = Poll::new()?;
    poll.registry().register(&mut front, FRONT, Interest::READABLE)?;
    std::thread::Builder::new().name("relay-udp".into()).spawn(move || {
        let mut poll = poll;
        let mut events = Events::with_capacity(1024);
        let mut peers: Vec<(SocketAddr, UdpSocket)> = Vec::new();
        let mut by_addr: HashMap<SocketAddr, usize> = HashMap::new();
        let mut queue: Queue = BinaryHeap::new();
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut seq = 0u64;
        let mut buf = vec![0u8; 65_536];
        loop {
            let now = Instant::now();
            let timeout =
                queue.peek().map_or(Duration::from_millis(100), |Reverse(p)| p.0.saturating_duration_since(now));
            if poll.poll(&mut events, Some(timeout)).is_err() {
                continue;
            }
            let now = Instant::now();
            for ev in events.iter() {
                if ev.token() == FRONT {
                    while let Ok((n, from)) = front.recv_from(&mut buf) {
                        let i = match by_addr.get(&from) {
                            Some(i) => *i,
                            None => {
                                let Ok(mut up) = UdpSocket::bind("127.0.0.1:0".parse().expect("addr")) else {
                                    continue;
                                };
                                if up.connect(target).is_err() {
                                    continue;
                                }
                                let i = peers.len();
                                if poll.registry().register(&mut up, Token(i), Interest::READABLE).is_err() {
                                    continue;
                                }
                                peers.push((from, up));
                                by_addr.insert(from, i);
                                i
                            }
                        };
                        if rng.unit() * 100.0 >= cfg.loss_pct {
                            seq += 1;
                            queue.push(Reverse((cfg.due(now, &mut rng), seq, i, true, buf[..n].to_vec())));
                        }
                    }
                } else if let Some((_, up)) = peers.get(ev.token().0) {
                    while let Ok(n) = up.recv(&mut buf) {
                        if rng.unit() * 100.0 >= cfg.loss_pct {
                            seq += 1;
                            queue.push(Reverse((cfg.due(now, &mut rng), seq, ev.token().0, false, buf[..n].to_vec())));
                        }
                    }
                }
            }
            while queue.peek().is_some_and(|Reverse(p)| p.0 <= now) {
                let Some(Reverse((_, _, i, up, data))) = queue.pop() else { break };
                if let Some((from, sock)) = peers.get(i) {
                    let _ = if up { sock.send(&data) } else { front.send_to(&data, *from) };
                }
            }
        }
    })?;
    Ok(addr)
}

struct Pipe {
    client: TcpStream,
    server: TcpStream,
    /// Bytes waiting for a socket that would block: (to the server, to the client).
    pending: (Vec<u8>, Vec<u8>),
    /// Latest due time per direction, so a stream never reorders.
    last_due: (Instant, Instant),
}

/// Starts a TCP relay to `target` (delay only); returns the address bots should use.
pub(crate) fn start_tcp(target: SocketAddr, cfg: LinkCfg) -> io::Result<SocketAddr> {
    let mut listener = TcpListener::bind("127.0.0.1:0".parse().map_err(io::Error::other)?)?;
    let addr = listener.local_addr()?;
    let poll = Poll::new()?;
    poll.registry().register(&mut listener, FRONT, Interest::READABLE)?;
    std::thread::Builder::new().name("relay-tcp".into()).spawn(move || {
        let mut poll = poll;
        let mut events = Events::with_capacity(1024);
        let mut pipes: Vec<Option<Pipe>> = Vec::new();
        let mut queue: Queue = BinaryHeap::new();
        let mut rng = Rng(0x0bad_5eed_1234_5678);
        let mut seq = 0u64;
        let mut buf = vec![0u8; 65_536];
        loop {
            let now = Instant::now();
            let timeout =
                queue.peek().map_or(Duration::from_millis(20), |Reverse(p)| p.0.saturating_duration_since(now));
            if poll.poll(&mut events, Some(timeout.min(Duration::from_millis(20)))).is_err() {
                continue;
            }
            let now = Instant::now();
            for ev in events.iter() {
                if ev.token() == FRONT {
                    while let Ok((mut client, _)) = listener.accept() {
                        let Ok(std_server) = std::net::TcpStream::connect(target) else { continue };
                        let _ = std_server.set_nodelay(true);
                        let _ = std_server.set_nonblocking(true);
                        let mut server = TcpStream::from_std(std_server);
                        let _ = client.set_nodelay(true);
                        let i = pipes.len();
                        // Tokens: 2i for the client side, 2i + 1 for the server side.
                        let r = poll.registry();
                        if r.register(&mut client, Token(2 * i), Interest::READABLE).is_err()
                            || r.register(&mut server, Token(2 * i + 1), Interest::READABLE).is_err()
                        {
                            continue;
                        }
                        pipes.push(Some(Pipe {
                            client,
                            server,
                            pending: (Vec::new(), Vec::new()),
                            last_due: (now, now),
                        }));
                    }
                    continue;
                }
                let (i, from_client) = (ev.token().0 / 2, ev.token().0 % 2 == 0);
                let Some(Some(p)) = pipes.get_mut(i) else { continue };
                loop {
                    let r = if from_client { p.client.read(&mut buf) } else { p.server.read(&mut buf) };
                    match r {
                        Ok(0) => {
                            pipes[i] = None;
                            break;
                        }
                        Ok(n) => {
                            let last = if from_client { &mut p.last_due.0 } else { &mut p.last_due.1 };
                            let due = cfg.due(now, &mut rng).max(*last);
                            *last = due;
                            seq += 1;
                            queue.push(Reverse((due, seq, i, from_client, buf[..n].to_vec())));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            pipes[i] = None;
                            break;
                        }
                    }
                }
            }
            while queue.peek().is_some_and(|Reverse(p)| p.0 <= now) {
                let Some(Reverse((_, _, i, up, data))) = queue.pop() else { break };
                if let Some(Some(p)) = pipes.get_mut(i) {
                    if up { p.pending.0.extend_from_slice(&data) } else { p.pending.1.extend_from_slice(&data) }
                }
            }
            for slot in &mut pipes {
                let Some(p) = slot else { continue };
                let ok = drain(&mut p.server, &mut p.pending.0) && drain(&mut p.client, &mut p.pending.1);
                if !ok {
                    *slot = None;
                }
            }
        }
    })?;
    Ok(addr)
}

/// Writes what the socket takes; false if it failed.
fn drain(s: &mut TcpStream, pending: &mut Vec<u8>) -> bool {
    while !pending.is_empty() {
        match s.write(pending) {
            Ok(0) => return false,
            Ok(n) => {
                pending.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}
