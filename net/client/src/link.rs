//! The transport framing between a client's socket and its [`ClientConn`]: nothing on TCP
//! (the connection's records are already length-prefixed), WebSocket messages on `ws`
//! ([`oxworld_net::ws::WsClient`]). Shared by the blocking client and the bots.

use oxworld_net::channel::next_prefixed;
use oxworld_net::ws::WsClient;

use crate::conn::{ClientConn, ClientError};
use crate::dial::{Dial, Transport};

/// Framing state of one stream connection.
#[derive(Debug)]
pub(crate) struct StreamLink {
    ws: Option<WsClient>,
    records: Vec<Vec<u8>>,
}

impl StreamLink {
    /// The framing for `dial`; a WebSocket writes its upgrade request into `out` first.
    pub(crate) fn new(dial: &Dial, out: &mut Vec<u8>) -> Result<StreamLink, ClientError> {
        let ws = match dial.transport {
            Transport::Tcp => None,
            Transport::Ws => {
                let mut key = [0u8; 16];
                key.copy_from_slice(&crate::os_seed()[..16]);
                Some(WsClient::new(&dial.addr.to_string(), key, oxworld_net::channel::MAX_RECORD, out))
            }
            Transport::Kcp => {
                return Err(ClientError::Io(std::io::Error::other("KCP is a datagram transport, not a stream")));
            }
        };
        Ok(StreamLink { ws, records: Vec::new() })
    }

    /// Moves what `conn` queued into `out`, framed for the transport.
    pub(crate) fn outgoing(&mut self, conn: &mut ClientConn, out: &mut Vec<u8>) -> Result<(), ClientError> {
        let bytes = conn.take_output();
        match self.ws.as_mut() {
            None => {
                if out.is_empty() {
                    *out = bytes;
                } else {
                    out.extend_from_slice(&bytes);
                }
            }
            Some(ws) => {
                let mut at = 0;
                while let Some((r, next)) = next_prefixed(&bytes, at) {
                    ws.send_record(r, out)?;
                    at = next;
                }
            }
        }
        Ok(())
    }

    /// Feeds bytes from the socket to `conn`; transport replies (pongs) and what the channel
    /// answers go into `out`.
    pub(crate) fn incoming(
        &mut self,
        data: &[u8],
        conn: &mut ClientConn,
        out: &mut Vec<u8>,
    ) -> Result<(), ClientError> {
        match self.ws.as_mut() {
            None => conn.handle_bytes(data)?,
            Some(ws) => {
                self.records.clear();
                ws.handle_bytes(data, out, &mut self.records)?;
                for r in &self.records {
                    conn.handle_record(r)?;
                }
            }
        }
        if conn.wants_write() {
            self.outgoing(conn, out)?;
        }
        Ok(())
    }
}

/// The KCP side of a client connection: the connect exchange and the conversation
/// ([`oxworld_net::kcp::link::KcpClient`]), with a clock base for its millisecond time.
#[derive(Debug)]
pub(crate) struct DatagramLink {
    kcp: oxworld_net::kcp::link::KcpClient,
    base: std::time::Instant,
    records: Vec<Vec<u8>>,
}

impl DatagramLink {
    /// Starts the connect exchange at `now`.
    pub(crate) fn new(now: std::time::Instant) -> DatagramLink {
        let mut nonce = [0u8; 8];
        nonce.copy_from_slice(&crate::os_seed()[..8]);
        let kcp = oxworld_net::kcp::link::KcpClient::new(oxworld_net::kcp::KcpParams::default(), nonce, 0);
        DatagramLink { kcp, base: now, records: Vec::new() }
    }

    fn ms(&self, now: std::time::Instant) -> u32 {
        now.saturating_duration_since(self.base).as_millis() as u32
    }

    /// Moves what `conn` queued into the conversation.
    pub(crate) fn outgoing(&mut self, conn: &mut ClientConn) {
        let bytes = conn.take_output();
        let ms = self.ms(std::time::Instant::now());
        let mut at = 0;
        while let Some((r, next)) = next_prefixed(&bytes, at) {
            self.kcp.send_record(r, ms);
            at = next;
        }
    }

    /// One datagram from the gate.
    pub(crate) fn incoming(
        &mut self,
        d: &[u8],
        conn: &mut ClientConn,
        now: std::time::Instant,
    ) -> Result<(), ClientError> {
        self.records.clear();
        let ms = self.ms(now);
        self.kcp.handle_datagram(ms, d, &mut self.records);
        for r in &self.records {
            conn.handle_record(r)?;
        }
        if conn.wants_write() {
            self.outgoing(conn);
        }
        self.error()
    }

    /// Runs the exchange's retries and KCP's timers.
    pub(crate) fn update(&mut self, now: std::time::Instant) -> Result<(), ClientError> {
        let ms = self.ms(now);
        self.kcp.update(ms);
        self.error()
    }

    fn error(&self) -> Result<(), ClientError> {
        match self.kcp.error() {
            Some(e) => Err(ClientError::Kcp(e.clone())),
            None => Ok(()),
        }
    }

    /// Datagrams to send.
    pub(crate) fn transmits(&mut self) -> Vec<Vec<u8>> {
        self.kcp.take_transmits()
    }

    /// How long until [`DatagramLink::update`] has work.
    pub(crate) fn check(&self, now: std::time::Instant) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(self.kcp.check(self.ms(now)).min(1000)))
    }

    /// Ends the conversation: a `BYE` to send, if it was open.
    pub(crate) fn close(&mut self) -> Option<Vec<u8>> {
        self.kcp.close()
    }
}
