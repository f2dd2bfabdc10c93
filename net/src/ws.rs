//! WebSocket as a record transport (PROTOCOL.md 2.2), sans-IO: `tungstenite` runs over an
//! in-memory pipe, so socket bytes go in and bytes to write come out, and the worker's TCP
//! code (reads, writes, queue limits) serves WebSocket connections unchanged.
//!
//! [`WsServer`] parses the HTTP request itself (`httparse`): an upgrade on `/` with an allowed
//! `Origin` becomes a WebSocket; a plain `GET` is answered from `web_root` (or 404) and the
//! connection closed. [`WsClient`] is the other end, for the Rust client and bots. Each binary
//! message is one record of the client channel.

use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

/// Largest HTTP request head accepted (request line and headers).
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Largest file served from `web_root` (a page and its scripts, not a download site).
pub const MAX_STATIC_FILE: u64 = 16 << 20;
/// tungstenite's read chunk per connection (its default is 128 KiB; most records are tiny).
const READ_BUFFER: usize = 4 * 1024;

/// How a gate's WebSocket listener behaves.
#[derive(Debug, Clone, Default)]
pub struct WsSettings {
    /// Browser origins allowed; empty: any. Requests without `Origin` are always accepted.
    pub allowed_origins: Vec<String>,
    /// Directory plain `GET`s are served from; `None`: 404.
    pub web_root: Option<PathBuf>,
    /// Largest message (record) accepted.
    pub max_record: usize,
    /// What a plain `GET /oxworld.json` answers (the gate's connection details for a page it
    /// served: its public key, whether it encrypts); `None`: 404.
    pub site_info: Option<String>,
}

/// The path of [`WsSettings::site_info`].
pub const SITE_INFO_PATH: &str = "/oxworld.json";

/// Why a WebSocket connection ended.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WsError {
    /// The HTTP request or response was not acceptable (answered with this status).
    #[error("http {0}: {1}")]
    Http(u16, String),
    /// The WebSocket protocol was broken (bad frame, text message, too large...).
    #[error("websocket: {0}")]
    Protocol(String),
    /// The peer closed the WebSocket.
    #[error("closed by the peer")]
    Closed,
}

/// What the connection should do after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsStatus {
    /// Keep going.
    Open,
    /// Write what was produced, then close (an HTTP response was served).
    Done,
}

/// The in-memory socket tungstenite reads from and writes to.
#[derive(Debug, Default)]
struct Pipe {
    input: Vec<u8>,
    pos: usize,
    output: Vec<u8>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = &self.input[self.pos..];
        if left.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = left.len().min(buf.len());
        buf[..n].copy_from_slice(&left[..n]);
        self.pos += n;
        if self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
            if self.input.capacity() > 4 * READ_BUFFER {
                self.input = Vec::new();
            }
        }
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn config(max_record: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(usize::MAX)
        .max_message_size(Some(max_record))
        .max_frame_size(Some(max_record))
}

/// Reads every complete message tungstenite has; binary ones are records.
fn read_messages(ws: &mut WebSocket<Pipe>, records: &mut Vec<Vec<u8>>) -> Result<(), WsError> {
    loop {
        match ws.read() {
            Ok(Message::Binary(b)) => records.push(b.to_vec()),
            Ok(Message::Text(_)) => {
                let _ = ws.close(Some(tungstenite::protocol::CloseFrame {
                    code: tungstenite::protocol::frame::coding::CloseCode::Unsupported,
                    reason: "binary messages only".into(),
                }));
                let _ = ws.flush();
                return Err(WsError::Protocol("a text message (binary only)".into()));
            }
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
            Ok(Message::Close(_)) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                // Queued pongs and close replies.
                return match ws.flush() {
                    Ok(()) => Ok(()),
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                    Err(tungstenite::Error::ConnectionClosed) => Err(WsError::Closed),
                    Err(e) => Err(WsError::Protocol(e.to_string())),
                };
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Err(WsError::Closed);
            }
            Err(tungstenite::Error::Capacity(e)) => {
                let _ = ws.close(Some(tungstenite::protocol::CloseFrame {
                    code: tungstenite::protocol::frame::coding::CloseCode::Size,
                    reason: "message too big".into(),
                }));
                let _ = ws.flush();
                return Err(WsError::Protocol(e.to_string()));
            }
            Err(e) => return Err(WsError::Protocol(e.to_string())),
        }
    }
}

fn send_record(ws: &mut WebSocket<Pipe>, record: &[u8], out: &mut Vec<u8>) -> Result<(), WsError> {
    let r = ws.send(Message::Binary(record.to_vec().into()));
    out.append(&mut ws.get_mut().output);
    match r {
        Ok(()) => Ok(()),
        Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => Err(WsError::Closed),
        Err(e) => Err(WsError::Protocol(e.to_string())),
    }
}

enum ServerState {
    Request(Vec<u8>),
    Open(Box<WebSocket<Pipe>>),
    Done,
}

/// The gate's end of one WebSocket connection.
pub struct WsServer {
    settings: Arc<WsSettings>,
    state: ServerState,
}

impl std::fmt::Debug for WsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WsServer(open: {})", self.is_open())
    }
}

impl WsServer {
    /// A connection waiting for its HTTP request.
    pub fn new(settings: Arc<WsSettings>) -> WsServer {
        WsServer { settings, state: ServerState::Request(Vec::new()) }
    }

    /// True once upgraded.
    pub fn is_open(&self) -> bool {
        matches!(self.state, ServerState::Open(_))
    }

    /// Bytes from the socket. Complete records go to `records`, bytes to write to `out`.
    pub fn handle_bytes(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        records: &mut Vec<Vec<u8>>,
    ) -> Result<WsStatus, WsError> {
        match &mut self.state {
            ServerState::Done => Ok(WsStatus::Done),
            ServerState::Open(ws) => {
                ws.get_mut().input.extend_from_slice(data);
                let r = read_messages(ws, records);
                out.append(&mut ws.get_mut().output);
                r.map(|()| WsStatus::Open)
            }
            ServerState::Request(head) => {
                head.extend_from_slice(data);
                let head = std::mem::take(head);
                match self.request(&head, out) {
                    Ok(None) => {
                        if head.len() > MAX_REQUEST_HEAD {
                            self.state = ServerState::Done;
                            return Err(respond_error(out, 431, "request head too large"));
                        }
                        self.state = ServerState::Request(head);
                        Ok(WsStatus::Open)
                    }
                    Ok(Some(Upgrade { rest })) => {
                        let mut ws = WebSocket::from_partially_read(
                            Pipe::default(),
                            rest,
                            Role::Server,
                            Some(config(self.settings.max_record)),
                        );
                        let r = read_messages(&mut ws, records);
                        out.append(&mut ws.get_mut().output);
                        self.state = ServerState::Open(Box::new(ws));
                        r.map(|()| WsStatus::Open)
                    }
                    Err(Served) => {
                        self.state = ServerState::Done;
                        Ok(WsStatus::Done)
                    }
                }
            }
        }
    }

    /// Sends one record as a binary message (only once upgraded; before that it is dropped:
    /// the channel holds everything until its handshake, which needs the upgrade).
    pub fn send_record(&mut self, record: &[u8], out: &mut Vec<u8>) -> Result<(), WsError> {
        match &mut self.state {
            ServerState::Open(ws) => send_record(ws, record, out),
            _ => Ok(()),
        }
    }

    /// Parses the request head; `Ok(None)`: incomplete. `Err(Served)`: a response (file or
    /// error) was written and the connection ends.
    fn request(&self, head: &[u8], out: &mut Vec<u8>) -> Result<Option<Upgrade>, Served> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let len = match req.parse(head) {
            Ok(httparse::Status::Partial) => return Ok(None),
            Ok(httparse::Status::Complete(n)) => n,
            Err(e) => {
                respond_error(out, 400, &format!("bad request: {e}"));
                return Err(Served);
            }
        };
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .map(str::trim)
        };
        if req.method != Some("GET") {
            respond_error(out, 405, "only GET");
            return Err(Served);
        }
        let path = req.path.unwrap_or("/");
        let upgrade = header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        if !upgrade {
            match &self.settings.site_info {
                Some(info) if path.split(['?', '#']).next() == Some(SITE_INFO_PATH) => {
                    respond(out, "application/json", info.as_bytes());
                }
                _ => serve_static(self.settings.web_root.as_deref(), path, out),
            }
            return Err(Served);
        }
        if path.split('?').next() != Some("/") {
            respond_error(out, 404, "WebSocket clients connect to /");
            return Err(Served);
        }
        if let Some(origin) = header("origin")
            && !self.settings.allowed_origins.is_empty()
            && !self.settings.allowed_origins.iter().any(|o| o == origin)
        {
            respond_error(out, 403, &format!("origin {origin} is not allowed"));
            return Err(Served);
        }
        if header("sec-websocket-version") != Some("13") {
            out.extend_from_slice(
                b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return Err(Served);
        }
        let Some(key) = header("sec-websocket-key").filter(|k| !k.is_empty()) else {
            respond_error(out, 400, "no Sec-WebSocket-Key");
            return Err(Served);
        };
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        out.extend_from_slice(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: \
                 {accept}\r\n\r\n"
            )
            .as_bytes(),
        );
        Ok(Some(Upgrade { rest: head[len..].to_vec() }))
    }
}

struct Upgrade {
    rest: Vec<u8>,
}

struct Served;

fn respond_error(out: &mut Vec<u8>, code: u16, why: &str) -> WsError {
    let text = match code {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {code} {text}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: \
             close\r\n\r\n{why}\n",
            why.len() + 1
        )
        .as_bytes(),
    );
    WsError::Http(code, why.to_owned())
}

/// Answers a plain GET from `root`: `/` is `index.html`; nothing outside `root`; 404 otherwise.
fn serve_static(root: Option<&Path>, path: &str, out: &mut Vec<u8>) {
    let Some(root) = root else {
        respond_error(out, 404, "no web_root is configured");
        return;
    };
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let rel = if path.ends_with('/') { format!("{path}index.html") } else { path.to_owned() };
    let rel = Path::new(rel.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        respond_error(out, 404, "not found");
        return;
    }
    let file = root.join(rel);
    let body = match std::fs::metadata(&file) {
        Ok(m) if m.is_file() && m.len() <= MAX_STATIC_FILE => std::fs::read(&file).ok(),
        _ => None,
    };
    let Some(body) = body else {
        respond_error(out, 404, "not found");
        return;
    };
    let ctype = content_type(&file);
    respond(out, ctype, &body);
}

/// A `200 OK` with `body`.
fn respond(out: &mut Vec<u8>, ctype: &str, body: &[u8]) {
    out.extend_from_slice(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: \
             close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
}

/// The `Content-Type` of a served file, by its extension.
fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

enum ClientState {
    /// Waiting for the 101; the expected `Sec-WebSocket-Accept`.
    Response {
        head: Vec<u8>,
        accept: String,
    },
    Open(Box<WebSocket<Pipe>>),
}

/// The client's end: writes the upgrade request at once, then carries records.
pub struct WsClient {
    state: ClientState,
    max_record: usize,
    /// Records sent before the upgrade completed.
    pending: Vec<Vec<u8>>,
}

impl std::fmt::Debug for WsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WsClient(open: {})", matches!(self.state, ClientState::Open(_)))
    }
}

impl WsClient {
    /// Starts the upgrade to `host` (the `Host` header, e.g. `127.0.0.1:14100`); `key` is 16
    /// random bytes. The request goes into `out`.
    pub fn new(host: &str, key: [u8; 16], max_record: usize, out: &mut Vec<u8>) -> WsClient {
        let key = base64(&key);
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        out.extend_from_slice(
            format!(
                "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: \
                 {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        );
        WsClient { state: ClientState::Response { head: Vec::new(), accept }, max_record, pending: Vec::new() }
    }

    /// Bytes from the socket; records out, bytes to write into `out`.
    pub fn handle_bytes(&mut self, data: &[u8], out: &mut Vec<u8>, records: &mut Vec<Vec<u8>>) -> Result<(), WsError> {
        match &mut self.state {
            ClientState::Open(ws) => {
                ws.get_mut().input.extend_from_slice(data);
                let r = read_messages(ws, records);
                out.append(&mut ws.get_mut().output);
                r
            }
            ClientState::Response { head, accept } => {
                head.extend_from_slice(data);
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut resp = httparse::Response::new(&mut headers);
                let len = match resp.parse(head) {
                    Ok(httparse::Status::Partial) if head.len() <= MAX_REQUEST_HEAD => return Ok(()),
                    Ok(httparse::Status::Partial) => return Err(WsError::Http(0, "response head too large".into())),
                    Ok(httparse::Status::Complete(n)) => n,
                    Err(e) => return Err(WsError::Http(0, format!("bad response: {e}"))),
                };
                let code = resp.code.unwrap_or(0);
                if code != 101 {
                    let body = String::from_utf8_lossy(&head[len..]).trim().to_owned();
                    return Err(WsError::Http(code, body));
                }
                let got = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
                    .and_then(|h| std::str::from_utf8(h.value).ok());
                if got.map(str::trim) != Some(accept.as_str()) {
                    return Err(WsError::Http(101, "wrong Sec-WebSocket-Accept".into()));
                }
                let rest = head[len..].to_vec();
                let mut ws =
                    WebSocket::from_partially_read(Pipe::default(), rest, Role::Client, Some(config(self.max_record)));
                for r in std::mem::take(&mut self.pending) {
                    send_record(&mut ws, &r, out)?;
                }
                let r = read_messages(&mut ws, records);
                out.append(&mut ws.get_mut().output);
                self.state = ClientState::Open(Box::new(ws));
                r
            }
        }
    }

    /// Sends one record (queued until the upgrade completes).
    pub fn send_record(&mut self, record: &[u8], out: &mut Vec<u8>) -> Result<(), WsError> {
        match &mut self.state {
            ClientState::Open(ws) => send_record(ws, record, out),
            ClientState::Response { .. } => {
                self.pending.push(record.to_vec());
                Ok(())
            }
        }
    }
}

/// Standard base64 with padding (the WebSocket key).
fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let b = [c[0], c.get(1).copied().unwrap_or(0), c.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests;
