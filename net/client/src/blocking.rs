//! A blocking client over one TCP connection ([`BlockingClient`]), driving a [`ClientConn`]: for
//! tests, probes and simple tools such as the chat client.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use oxworld_net::client_proto::ServerMsg;
use oxworld_net::{Id, Value};

use crate::conn::{ClientConn, ClientError};
use crate::dial::{Dial, Transport};
use crate::link::StreamLink;

/// A blocking client over TCP or WebSocket, for tests and simple tools.
pub struct BlockingClient {
    stream: TcpStream,
    conn: ClientConn,
    link: StreamLink,
    out: Vec<u8>,
}

impl BlockingClient {
    /// Connects to a gate and sends the channel's hello (the handshake completes with the
    /// first [`BlockingClient::next`]).
    pub fn connect(dial: &Dial, timeout: Duration) -> Result<Self, ClientError> {
        if dial.transport == Transport::Kcp {
            return Err(ClientError::Io(io::Error::other("the blocking client speaks tcp and ws, not kcp")));
        }
        let stream = TcpStream::connect_timeout(&dial.addr, timeout)?;
        stream.set_nodelay(true)?;
        let mut out = Vec::new();
        let link = StreamLink::new(dial, &mut out)?;
        let mut c = BlockingClient { stream, conn: dial.new_conn(), link, out };
        c.flush()?;
        Ok(c)
    }

    /// The protocol state.
    pub fn conn(&mut self) -> &mut ClientConn {
        &mut self.conn
    }

    /// Writes raw bytes (for tests of hostile input).
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Sends queued output.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.link.outgoing(&mut self.conn, &mut self.out)?;
        self.stream.write_all(&self.out)?;
        self.out.clear();
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
            let wait = self.conn.poll_timeout().map_or(left, |t| left.min(t.saturating_duration_since(now)));
            self.stream.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(ClientError::Closed(self.conn.farewell().map(str::to_owned))),
                Ok(n) => {
                    self.link.incoming(&buf[..n], &mut self.conn, &mut self.out)?;
                    if !self.out.is_empty() {
                        self.stream.write_all(&self.out)?;
                        self.out.clear();
                    }
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(ClientError::Closed(self.conn.farewell().map(str::to_owned)));
                }
                Err(e) => return Err(e.into()),
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
