//! The layers between a client connection's socket bytes and the app's messages: the
//! transport's record framing (length prefixes on TCP, WebSocket messages) and the client
//! channel (PROTOCOL.md section 2). KCP sessions use the channel part (`kcp_io`).

use oxworld_net::app::CloseReason;
use oxworld_net::channel::{ServerChannel, next_prefixed};
use oxworld_net::ws::WsServer;

/// What runs between a client's socket bytes and the app's messages: the transport's record
/// framing (length prefixes on TCP, WebSocket messages) and the client channel.
pub(crate) struct ClientLayers {
    pub(crate) channel: ServerChannel,
    pub(crate) ws: Option<WsServer>,
    /// The channel's output (length-prefixed records) before transport framing.
    pub(crate) wire: Vec<u8>,
    /// Listener and peer to announce to the app (`Event::Accepted`) once the channel opens;
    /// `None` once announced.
    pub(crate) announce: Option<(usize, std::net::SocketAddr)>,
    /// When the connection was accepted (the handshake must finish in time).
    pub(crate) since: std::time::Instant,
}

impl ClientLayers {
    /// Layers for a connection accepted on `listener` from `peer`.
    pub(crate) fn new(
        channel: ServerChannel,
        ws: Option<WsServer>,
        listener: usize,
        peer: std::net::SocketAddr,
    ) -> Self {
        ClientLayers {
            channel,
            ws,
            wire: Vec::new(),
            announce: Some((listener, peer)),
            since: std::time::Instant::now(),
        }
    }

    /// The `Accepted` event, once, right after the handshake completes.
    pub(crate) fn take_announcement(&mut self, conn: oxworld_net::app::ConnId) -> Option<oxworld_net::app::Event> {
        if !self.channel.is_open() {
            return None;
        }
        let (listener, peer) = self.announce.take()?;
        let (resume, session) = (self.channel.resume(), self.channel.session());
        Some(oxworld_net::app::Event::Accepted { conn, listener, peer, resume, session })
    }

    /// True if the handshake is still not done after `timeout`.
    pub(crate) fn handshake_overdue(&self, now: std::time::Instant, timeout: std::time::Duration) -> bool {
        !self.channel.is_open() && now.saturating_duration_since(self.since) > timeout
    }

    /// Moves what the channel produced into `out`, framed for the transport.
    pub(crate) fn frame_wire(&mut self, out: &mut Vec<u8>) -> Result<(), CloseReason> {
        match self.ws.as_mut() {
            None => out.append(&mut self.wire),
            Some(ws) => {
                let mut at = 0;
                while let Some((r, next)) = next_prefixed(&self.wire, at) {
                    ws.send_record(r, out).map_err(|e| CloseReason::Protocol(e.to_string()))?;
                    at = next;
                }
                self.wire.clear();
            }
        }
        Ok(())
    }

    /// One record from the client: whole messages to `frames`, replies to `out`.
    pub(crate) fn record(
        &mut self,
        record: &[u8],
        frames: &mut Vec<Vec<u8>>,
        out: &mut Vec<u8>,
    ) -> Result<(), CloseReason> {
        let r = self.channel.handle_record(record, &mut self.wire, |m| frames.push(m));
        // A refusal is written before the close.
        self.frame_wire(out)?;
        r.map_err(|e| CloseReason::Protocol(e.to_string()))
    }

    /// Seals each of the app's length-prefixed messages in `bytes` into `out`.
    pub(crate) fn seal(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), CloseReason> {
        self.channel.send_all(bytes, &mut self.wire).map_err(|e| CloseReason::Protocol(e.to_string()))?;
        self.frame_wire(out)
    }
}
