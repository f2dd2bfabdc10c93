//! A blocking client over one connection ([`BlockingClient`]: TCP, WebSocket or KCP), driving a
//! [`ClientConn`]: for tests, probes and simple tools such as the chat client.

use std::io::{self, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use oxworld_net::client_proto::ServerMsg;
use oxworld_net::{Id, Value};

use crate::conn::{ClientConn, ClientError};
use crate::dial::{Dial, Transport};
use crate::link::{DatagramLink, StreamLink};

enum Sock {
    Stream(TcpStream, StreamLink),
    Datagram(UdpSocket, DatagramLink),
}

/// A blocking client over TCP, WebSocket or KCP, for tests and simple tools.
pub struct BlockingClient {
    sock: Sock,
    conn: ClientConn,
    out: Vec<u8>,
}

impl BlockingClient {
    /// Connects to a gate and sends the channel's hello (the handshake completes with the
    /// first [`BlockingClient::next`]).
    pub fn connect(dial: &Dial, timeout: Duration) -> Result<Self, ClientError> {
        Self::open(dial, timeout, None)
    }

    /// Connects to a gate and resumes `session` there (see [`ClientConn::resuming`]).
    pub fn resume(dial: &Dial, timeout: Duration, session: crate::Session) -> Result<Self, ClientError> {
        Self::open(dial, timeout, Some(session))
    }

    fn open(dial: &Dial, timeout: Duration, session: Option<crate::Session>) -> Result<Self, ClientError> {
        let new_conn = || match session {
            Some(s) => dial.resume_conn(s),
            None => dial.new_conn(),
        };
        let sock = if dial.transport == Transport::Kcp {
            let any: std::net::SocketAddr =
                if dial.addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
            let udp = UdpSocket::bind(any)?;
            udp.connect(dial.addr)?;
            Sock::Datagram(udp, DatagramLink::new(Instant::now()))
        } else {
            let stream = TcpStream::connect_timeout(&dial.addr, timeout)?;
            stream.set_nodelay(true)?;
            let mut out = Vec::new();
            let link = StreamLink::new(dial, &mut out)?;
            stream.set_nodelay(true)?;
            let mut c = BlockingClient { sock: Sock::Stream(stream, link), conn: new_conn(), out };
            c.flush()?;
            return Ok(c);
        };
        let mut c = BlockingClient { sock, conn: new_conn(), out: Vec::new() };
        c.flush()?;
        Ok(c)
    }

    /// The protocol state.
    pub fn conn(&mut self) -> &mut ClientConn {
        &mut self.conn
    }

    /// Writes raw bytes (for tests of hostile input): on a stream, bytes; on KCP, one datagram.
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        match &mut self.sock {
            Sock::Stream(s, _) => s.write_all(bytes)?,
            Sock::Datagram(u, _) => {
                u.send(bytes)?;
            }
        }
        Ok(())
    }

    /// Sends queued output.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        match &mut self.sock {
            Sock::Stream(s, link) => {
                link.outgoing(&mut self.conn, &mut self.out)?;
                s.write_all(&self.out)?;
                self.out.clear();
            }
            Sock::Datagram(u, link) => {
                link.outgoing(&mut self.conn);
                link.update(Instant::now())?;
                for d in link.transmits() {
                    let _ = u.send(&d);
                }
            }
        }
        Ok(())
    }

    /// Calls `method` on `target` and flushes.
    pub fn call(&mut self, target: Id, method: &str, args: Vec<Value>) -> Result<(), ClientError> {
        self.conn.call(target, method, args);
        self.flush()
    }

    /// Waits up to `timeout` for the next server message, sending heartbeats meanwhile.
    pub fn next(&mut self, timeout: Duration) -> Result<ServerMsg, ClientError> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(m) = self.conn.poll_event() {
                if let Some(e) = self.conn.take_error() {
                    return Err(e);
                }
                return Ok(m);
            }
            let now = Instant::now();
            self.conn.handle_timeout(now);
            if self.conn.wants_write() {
                self.flush()?;
            }
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() {
                return Err(ClientError::Timeout("a server message".into()));
            }
            let mut wait = self.conn.poll_timeout().map_or(left, |t| left.min(t.saturating_duration_since(now)));
            if let Sock::Datagram(_, link) = &self.sock {
                wait = wait.min(link.check(now));
            }
            let got = match &mut self.sock {
                Sock::Stream(s, _) => {
                    s.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
                    s.read(&mut buf)
                }
                Sock::Datagram(u, _) => {
                    u.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
                    match u.recv(&mut buf) {
                        // An empty datagram is not the end of anything.
                        Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
                        r => r,
                    }
                }
            };
            match got {
                Ok(0) => return Err(ClientError::Closed(self.conn.farewell().map(str::to_owned))),
                Ok(n) => match &mut self.sock {
                    Sock::Stream(s, link) => {
                        link.incoming(&buf[..n], &mut self.conn, &mut self.out)?;
                        if !self.out.is_empty() {
                            s.write_all(&self.out)?;
                            self.out.clear();
                        }
                    }
                    Sock::Datagram(u, link) => {
                        let r = link.incoming(&buf[..n], &mut self.conn, Instant::now());
                        for d in link.transmits() {
                            let _ = u.send(&d);
                        }
                        if let Err(ClientError::Kcp(oxworld_net::kcp::link::KcpLinkError::Bye)) = r {
                            return Err(ClientError::Closed(self.conn.farewell().map(str::to_owned)));
                        }
                        r?;
                    }
                },
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(ClientError::Closed(self.conn.farewell().map(str::to_owned)));
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    // ICMP port unreachable on a connected UDP socket: nobody listens (yet).
                    if matches!(self.sock, Sock::Stream(..)) {
                        return Err(e.into());
                    }
                }
                Err(e) => return Err(e.into()),
            }
            if let Sock::Datagram(u, link) = &mut self.sock {
                link.update(Instant::now())?;
                for d in link.transmits() {
                    let _ = u.send(&d);
                }
            }
        }
    }

    /// Waits for the player entity (the boot entity) and returns its id.
    pub fn wait_player(&mut self, timeout: Duration) -> Result<Id, ClientError> {
        let deadline = Instant::now() + timeout;
        while self.conn.player().is_none() {
            self.next(deadline.saturating_duration_since(Instant::now()))?;
        }
        self.conn.player().ok_or_else(|| ClientError::Timeout("the player entity".into()))
    }

    /// True if the server closed the connection within `timeout` (skipping other messages).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next(deadline.saturating_duration_since(Instant::now())) {
                Ok(_) => continue,
                Err(ClientError::Timeout(_)) => return false,
                Err(_) => return true,
            }
        }
    }
}

impl Drop for BlockingClient {
    /// On KCP there is no FIN: a `BYE` tells the gate at once.
    fn drop(&mut self) {
        if let Sock::Datagram(u, link) = &mut self.sock
            && let Some(bye) = link.close()
        {
            let _ = u.send(&bye);
        }
    }
}
