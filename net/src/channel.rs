//! The client channel of protocol version 2, sans-IO: the hello exchange, the Noise NK
//! handshake (`Noise_NK_25519_ChaChaPoly_SHA256`, through `snow`), and the record layer every
//! client transport (TCP, WebSocket, KCP) carries: fragmenting, lz4, ChaCha20-Poly1305.
//!
//! A transport carries **records**: one length-prefixed frame on TCP, one binary message on
//! WebSocket, one KCP message on KCP. The first record each way is the hello
//! ([`ClientChannel::start`], the server's reply); every later one is a sealed fragment of an
//! application message (PROTOCOL.md section 2). Both ends write what they send as
//! length-prefixed records into a caller's `Vec<u8>`, whatever the transport: the TCP glue
//! writes it as is, the message transports split it at the prefixes (their own, trusted).
//!
//! No clock, no socket, no RNG of its own: the ephemeral keys come from a seed the caller
//! passes in (the runtime draws one per connection from the OS), so tests are deterministic.

use std::sync::Arc;

#[cfg(test)]
use chacha20::ChaCha12Rng;
#[cfg(test)]
use chacha20::rand_core::SeedableRng as _;
#[cfg(test)]
use snow::types::Random;
use thiserror::Error;

use crate::frame::{begin_frame, finish_frame};

/// The hello's first three bytes.
pub const MAGIC: [u8; 3] = *b"OXW";
/// The channel's version (the client protocol's version).
pub const VERSION: u8 = 2;
/// The Noise protocol name of mode 1.
pub const NOISE_PARAMS: &str = "Noise_NK_25519_ChaChaPoly_SHA256";
/// Noise prologue: these bytes, then the client hello's 6-byte header. Binds the negotiation
/// (version, mode, offered features) into the handshake, so nobody can strip a feature.
pub const PROLOGUE_PREFIX: &[u8] = b"oxworld client channel v2";
/// Bytes of the hello header (`magic`, version, mode, features / status).
pub const HELLO_HEADER: usize = 6;
/// Largest record on any transport: the Noise message limit.
pub const MAX_RECORD: usize = 65_535;
/// Poly1305 tag bytes at the end of an encrypted record.
pub const TAG_LEN: usize = 16;
/// Largest piece of a message in one record: a record's plaintext is the flags byte and this.
pub const MAX_FRAGMENT: usize = MAX_RECORD - TAG_LEN - 1;
/// Noise NK message lengths: `e, es` with an empty payload; `e, ee` with the 1-byte features.
pub const NOISE_MSG1_LEN: usize = 32 + TAG_LEN;
/// See [`NOISE_MSG1_LEN`].
pub const NOISE_MSG2_LEN: usize = 32 + 1 + TAG_LEN;
/// Default size from which a message is offered to lz4.
pub const DEFAULT_COMPRESS_THRESHOLD: usize = 512;

/// Feature bits of the hello: lz4 on application messages.
pub const FEATURE_LZ4: u8 = 0x01;
/// Feature bit of the hello: the client knows sessions (revision 2.2): the gate sends it
/// `Session` (its resume token) after `Welcome`.
pub const FEATURE_SESSION: u8 = 0x02;
/// Feature bit of the hello: the client resumes a session (its first message is `Resume`;
/// the gate places no boot entity before it). Revision 2.2.
pub const FEATURE_RESUME: u8 = 0x04;
/// Record flag: the message's bytes are `u32 LE original length` + an lz4 block.
pub const FLAG_LZ4: u8 = 0x01;
/// Record flag: more fragments of this message follow.
pub const FLAG_MORE: u8 = 0x02;

/// Security of a channel: the hello's mode byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Records in the clear (measurements, trusted networks).
    Plain = 0,
    /// Noise NK handshake, then every record encrypted and authenticated.
    NoiseNk = 1,
}

impl Mode {
    fn from_byte(b: u8) -> Option<Mode> {
        match b {
            0 => Some(Mode::Plain),
            1 => Some(Mode::NoiseNk),
            _ => None,
        }
    }
}

/// The status byte of the server hello. Anything but `Ok` is followed by a UTF-8 reason, and
/// the gate closes the connection after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Handshake accepted.
    Ok = 0,
    /// The hello was not one (bad magic, too short, unknown mode).
    Malformed = 1,
    /// The client's version is not this gate's.
    Version = 2,
    /// The gate runs another mode (the mode byte of the reply says which).
    ModeRefused = 3,
    /// The Noise message did not authenticate: the client used another server key.
    HandshakeFailed = 4,
}

impl Status {
    fn from_byte(b: u8) -> Status {
        match b {
            0 => Status::Ok,
            2 => Status::Version,
            3 => Status::ModeRefused,
            4 => Status::HandshakeFailed,
            _ => Status::Malformed,
        }
    }
}

/// Why a channel broke. Fatal for the connection.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelError {
    /// The peer's hello was not valid.
    #[error("bad hello: {0}")]
    Hello(&'static str),
    /// The server refused the client's hello.
    #[error("the gate refused the connection ({status:?}): {reason}")]
    Refused {
        /// The status it sent.
        status: Status,
        /// Its explanation.
        reason: String,
    },
    /// The Noise handshake failed (wrong server key, tampering).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// A record failed authentication.
    #[error("a record failed authentication")]
    Auth,
    /// A record was malformed (flags, size, lz4 data).
    #[error("bad record: {0}")]
    Record(&'static str),
    /// A message is larger than the channel's maximum.
    #[error("message of at least {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Bytes seen so far.
        len: usize,
        /// The maximum.
        max: usize,
    },
}

/// What a gate's client listener runs.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Required mode; a client hello with another mode is refused.
    pub mode: Mode,
    /// The gate's static key (needed for [`Mode::NoiseNk`]).
    pub key: Option<StaticKey>,
    /// Messages of at least this many bytes are offered to lz4 when the client accepts it;
    /// 0 turns compression off (the gate then never accepts the feature).
    pub compress_threshold: usize,
    /// Largest application message accepted from the client (`max_client_frame_bytes`).
    pub max_message: usize,
}

/// What a client asks for.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The mode to use; must match the gate's.
    pub mode: Mode,
    /// The gate's public key (needed for [`Mode::NoiseNk`]).
    pub server_key: Option<[u8; 32]>,
    /// Offer lz4, and compress own messages of at least this many bytes (0: do not offer).
    pub compress_threshold: usize,
    /// Largest application message accepted from the gate.
    pub max_message: usize,
}

/// Message sealing and opening once the handshake is done, shared by both ends.
struct Codec {
    cipher: Option<snow::TransportState>,
    /// Compress own messages of at least this many bytes (0: never).
    compress_threshold: usize,
    /// The peer may send compressed messages.
    lz4_in: bool,
    max_message: usize,
    reasm: Vec<u8>,
    reasm_lz4: Option<bool>,
    plain: Vec<u8>,
    packed: Vec<u8>,
}

impl Codec {
    fn new(cipher: Option<snow::TransportState>, lz4: bool, threshold: usize, max_message: usize) -> Codec {
        Codec {
            cipher,
            compress_threshold: if lz4 { threshold } else { 0 },
            lz4_in: lz4,
            max_message,
            reasm: Vec::new(),
            reasm_lz4: None,
            plain: Vec::new(),
            packed: Vec::new(),
        }
    }

    /// Appends `msg` as length-prefixed records to `wire`.
    fn seal(&mut self, msg: &[u8], wire: &mut Vec<u8>) -> Result<(), ChannelError> {
        let mut packed = std::mem::take(&mut self.packed);
        let mut flags = 0;
        let mut body = msg;
        if self.compress_threshold > 0 && msg.len() >= self.compress_threshold && msg.len() <= u32::MAX as usize {
            packed.clear();
            packed.extend_from_slice(&(msg.len() as u32).to_le_bytes());
            packed.resize(4 + lz4_flex::block::get_maximum_output_size(msg.len()), 0);
            if let Ok(n) = lz4_flex::block::compress_into(msg, &mut packed[4..]) {
                packed.truncate(4 + n);
                if packed.len() < msg.len() {
                    flags = FLAG_LZ4;
                    body = &packed;
                }
            }
        }
        let mut chunks = body.chunks(MAX_FRAGMENT).peekable();
        let result = loop {
            let chunk = chunks.next().unwrap_or_default();
            let more = chunks.peek().is_some();
            let f = flags | if more { FLAG_MORE } else { 0 };
            if let Err(e) = self.seal_record(f, chunk, wire) {
                break Err(e);
            }
            if !more {
                break Ok(());
            }
        };
        self.packed = packed;
        result
    }

    /// Seals every message of a buffer of length-prefixed messages, in order.
    fn seal_all(&mut self, prefixed: &[u8], wire: &mut Vec<u8>) -> Result<(), ChannelError> {
        let mut at = 0;
        while let Some((m, next)) = next_prefixed(prefixed, at) {
            self.seal(m, wire)?;
            at = next;
        }
        Ok(())
    }

    fn seal_record(&mut self, flags: u8, chunk: &[u8], wire: &mut Vec<u8>) -> Result<(), ChannelError> {
        let at = begin_frame(wire);
        match self.cipher.as_mut() {
            None => {
                wire.push(flags);
                wire.extend_from_slice(chunk);
            }
            Some(cipher) => {
                self.plain.clear();
                self.plain.push(flags);
                self.plain.extend_from_slice(chunk);
                let start = wire.len();
                wire.resize(start + self.plain.len() + TAG_LEN, 0);
                match cipher.write_message(&self.plain, &mut wire[start..]) {
                    Ok(n) => wire.truncate(start + n),
                    Err(e) => {
                        wire.truncate(at);
                        return Err(ChannelError::Handshake(format!("encrypt: {e}")));
                    }
                }
            }
        }
        finish_frame(wire, at);
        Ok(())
    }

    /// One record in; a whole message out once its last fragment is in.
    fn open(&mut self, record: &[u8]) -> Result<Option<Vec<u8>>, ChannelError> {
        let mut plain = std::mem::take(&mut self.plain);
        let r = self.open_into(record, &mut plain);
        self.plain = plain;
        r
    }

    fn open_into(&mut self, record: &[u8], plain: &mut Vec<u8>) -> Result<Option<Vec<u8>>, ChannelError> {
        let pt: &[u8] = match self.cipher.as_mut() {
            None => record,
            Some(cipher) => {
                if record.len() <= TAG_LEN || record.len() > MAX_RECORD {
                    return Err(ChannelError::Record("encrypted record of impossible length"));
                }
                plain.clear();
                plain.resize(record.len() - TAG_LEN, 0);
                let n = cipher.read_message(record, plain).map_err(|_| ChannelError::Auth)?;
                plain.truncate(n);
                plain
            }
        };
        let Some((&flags, data)) = pt.split_first() else {
            return Err(ChannelError::Record("empty record"));
        };
        if flags & !(FLAG_LZ4 | FLAG_MORE) != 0 {
            return Err(ChannelError::Record("unknown flag bits"));
        }
        if data.len() > MAX_FRAGMENT {
            return Err(ChannelError::Record("record larger than the maximum"));
        }
        let lz4 = flags & FLAG_LZ4 != 0;
        if lz4 && !self.lz4_in {
            return Err(ChannelError::Record("compressed record without the lz4 feature"));
        }
        if let Some(first) = self.reasm_lz4
            && first != lz4
        {
            return Err(ChannelError::Record("fragments disagree on compression"));
        }
        // Compressed data is smaller than its original (the sender checks), plus the length.
        let limit = self.max_message + if lz4 { 4 } else { 0 };
        let total = self.reasm.len() + data.len();
        if total > limit {
            return Err(ChannelError::TooLarge { len: total, max: self.max_message });
        }
        if flags & FLAG_MORE != 0 {
            self.reasm.extend_from_slice(data);
            self.reasm_lz4 = Some(lz4);
            return Ok(None);
        }
        let whole = if self.reasm.is_empty() {
            data.to_vec()
        } else {
            self.reasm.extend_from_slice(data);
            self.reasm_lz4 = None;
            std::mem::take(&mut self.reasm)
        };
        if !lz4 {
            if whole.is_empty() {
                return Err(ChannelError::Record("empty message"));
            }
            return Ok(Some(whole));
        }
        let Some((len, block)) = whole.split_first_chunk::<4>() else {
            return Err(ChannelError::Record("compressed message without its length"));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > self.max_message {
            return Err(ChannelError::TooLarge { len, max: self.max_message });
        }
        if len == 0 {
            return Err(ChannelError::Record("empty message"));
        }
        // Bounded above, so this allocation is at most the channel's maximum.
        let mut out = vec![0u8; len];
        match lz4_flex::block::decompress_into(block, &mut out) {
            Ok(n) if n == len => Ok(Some(out)),
            _ => Err(ChannelError::Record("lz4 data does not decode to its stated length")),
        }
    }
}

enum ServerState {
    AwaitHello,
    Open(Box<Codec>),
    Failed,
}

/// The gate's end of one client channel.
///
/// Drive order: feed every record from the transport to [`ServerChannel::handle_record`]
/// (it writes the handshake reply into `wire` and hands out whole messages); seal outgoing
/// application messages with [`ServerChannel::send`] (queued until the handshake is done).
/// On an error, write what is in `wire` (a refusal) and close.
pub struct ServerChannel {
    settings: Arc<ServerSettings>,
    seed: [u8; 32],
    state: ServerState,
    /// Application messages sent before the handshake completed (length-prefixed).
    pending: Vec<u8>,
    /// The client's hello offered [`FEATURE_RESUME`] (accepted).
    resume: bool,
    /// The client's hello offered [`FEATURE_SESSION`] or [`FEATURE_RESUME`] (accepted).
    session: bool,
}

impl std::fmt::Debug for ServerChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerChannel(open: {})", self.is_open())
    }
}

impl ServerChannel {
    /// A channel waiting for the client's hello; `seed` feeds the ephemeral key.
    pub fn new(settings: Arc<ServerSettings>, seed: [u8; 32]) -> ServerChannel {
        ServerChannel {
            settings,
            seed,
            state: ServerState::AwaitHello,
            pending: Vec::new(),
            resume: false,
            session: false,
        }
    }

    /// True if the client knows sessions ([`FEATURE_SESSION`]; known once open).
    pub fn session(&self) -> bool {
        self.session
    }

    /// True if the client resumes a session ([`FEATURE_RESUME`]; known once open).
    pub fn resume(&self) -> bool {
        self.resume
    }

    /// True once the handshake is done.
    pub fn is_open(&self) -> bool {
        matches!(self.state, ServerState::Open(_))
    }

    /// Bytes of application messages waiting for the handshake.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Sets the largest message accepted from the client.
    pub fn set_max_message(&mut self, max: usize) {
        if let ServerState::Open(c) = &mut self.state {
            c.max_message = max;
        }
        let mut s = (*self.settings).clone();
        s.max_message = max;
        self.settings = Arc::new(s);
    }

    /// One record from the client. Records to send go into `wire`, whole messages to `msg`.
    pub fn handle_record(
        &mut self,
        record: &[u8],
        wire: &mut Vec<u8>,
        mut msg: impl FnMut(Vec<u8>),
    ) -> Result<(), ChannelError> {
        match &mut self.state {
            ServerState::Open(codec) => {
                if let Some(m) = codec.open(record)? {
                    msg(m);
                }
                Ok(())
            }
            ServerState::Failed => Err(ChannelError::Hello("the channel already failed")),
            ServerState::AwaitHello => match self.accept_hello(record, wire) {
                Ok(mut codec) => {
                    codec.seal_all(&std::mem::take(&mut self.pending), wire)?;
                    self.state = ServerState::Open(Box::new(codec));
                    Ok(())
                }
                Err((status, reason, err)) => {
                    self.state = ServerState::Failed;
                    self.pending = Vec::new();
                    write_server_hello(wire, status, self.settings.mode, reason.as_bytes());
                    Err(err)
                }
            },
        }
    }

    fn accept_hello(&mut self, hello: &[u8], wire: &mut Vec<u8>) -> Result<Codec, (Status, String, ChannelError)> {
        let refuse = |s: Status, why: &'static str| (s, why.to_string(), ChannelError::Hello(why));
        let Some((header, rest)) = hello.split_first_chunk::<HELLO_HEADER>() else {
            return Err(refuse(Status::Malformed, "hello shorter than its header"));
        };
        if header[..3] != MAGIC {
            return Err(refuse(Status::Malformed, "not an oxworld hello (bad magic)"));
        }
        if header[3] != VERSION {
            return Err(refuse(Status::Version, "this gate speaks client protocol version 2 only"));
        }
        let Some(mode) = Mode::from_byte(header[4]) else {
            return Err(refuse(Status::Malformed, "unknown mode"));
        };
        if mode != self.settings.mode {
            let why = match self.settings.mode {
                Mode::NoiseNk => "this gate requires encryption (mode 1)",
                Mode::Plain => "this gate runs unencrypted (mode 0)",
            };
            return Err(refuse(Status::ModeRefused, why));
        }
        let lz4 = header[5] & FEATURE_LZ4 != 0 && self.settings.compress_threshold > 0;
        self.resume = header[5] & FEATURE_RESUME != 0;
        self.session = header[5] & (FEATURE_SESSION | FEATURE_RESUME) != 0;
        let features = if lz4 { FEATURE_LZ4 } else { 0 } | (header[5] & (FEATURE_SESSION | FEATURE_RESUME));
        let s = &self.settings;
        match mode {
            Mode::Plain => {
                write_server_hello(wire, Status::Ok, mode, &[features]);
                Ok(Codec::new(None, lz4, s.compress_threshold, s.max_message))
            }
            Mode::NoiseNk => {
                if rest.len() != NOISE_MSG1_LEN {
                    return Err(refuse(Status::Malformed, "noise message 1 must be 48 bytes"));
                }
                let Some(key) = s.key.as_ref() else {
                    return Err(refuse(Status::HandshakeFailed, "the gate has no key"));
                };
                let fail = |e: snow::Error| {
                    (Status::HandshakeFailed, "the handshake did not authenticate (wrong server key?)".to_string(), {
                        ChannelError::Handshake(e.to_string())
                    })
                };
                let mut hs = builder(self.seed, header)
                    .local_private_key(key.secret())
                    .and_then(|b| b.build_responder())
                    .map_err(fail)?;
                let mut payload = [0u8; NOISE_MSG1_LEN];
                hs.read_message(rest, &mut payload).map_err(fail)?;
                let mut reply = [0u8; NOISE_MSG2_LEN];
                let n = hs.write_message(&[features], &mut reply).map_err(fail)?;
                let transport = hs.into_transport_mode().map_err(fail)?;
                let at = begin_frame(wire);
                wire.extend_from_slice(&[MAGIC[0], MAGIC[1], MAGIC[2], VERSION, Status::Ok as u8, mode as u8]);
                wire.extend_from_slice(&reply[..n]);
                finish_frame(wire, at);
                Ok(Codec::new(Some(transport), lz4, s.compress_threshold, s.max_message))
            }
        }
    }

    /// Seals each message of `prefixed` (length-prefixed messages, as an app's outbox writes
    /// them) into `wire`, or queues them until the handshake is done.
    pub fn send_all(&mut self, prefixed: &[u8], wire: &mut Vec<u8>) -> Result<(), ChannelError> {
        match &mut self.state {
            ServerState::Open(codec) => codec.seal_all(prefixed, wire),
            ServerState::AwaitHello => {
                self.pending.extend_from_slice(prefixed);
                Ok(())
            }
            ServerState::Failed => Ok(()),
        }
    }

    /// Seals one application message into `wire`, or queues it until the handshake is done.
    pub fn send(&mut self, msg: &[u8], wire: &mut Vec<u8>) -> Result<(), ChannelError> {
        match &mut self.state {
            ServerState::Open(codec) => codec.seal(msg, wire),
            ServerState::AwaitHello => {
                let at = begin_frame(&mut self.pending);
                self.pending.extend_from_slice(msg);
                finish_frame(&mut self.pending, at);
                Ok(())
            }
            ServerState::Failed => Ok(()),
        }
    }
}

enum ClientState {
    Start,
    AwaitReply(Option<Box<snow::HandshakeState>>),
    Open(Box<Codec>),
    Failed,
}

/// The client's end of a channel: the same drive order as [`ServerChannel`], after
/// [`ClientChannel::start`] has written the hello.
pub struct ClientChannel {
    settings: ClientSettings,
    seed: [u8; 32],
    state: ClientState,
    pending: Vec<u8>,
    lz4: bool,
    /// Offer [`FEATURE_RESUME`] in the hello.
    resume: bool,
    /// Offer [`FEATURE_SESSION`] in the hello.
    session: bool,
}

impl std::fmt::Debug for ClientChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientChannel(open: {})", self.is_open())
    }
}

impl ClientChannel {
    /// A channel to a gate; `seed` feeds the ephemeral key.
    pub fn new(settings: ClientSettings, seed: [u8; 32]) -> ClientChannel {
        ClientChannel {
            settings,
            seed,
            state: ClientState::Start,
            pending: Vec::new(),
            lz4: false,
            resume: false,
            session: false,
        }
    }

    /// Offers [`FEATURE_SESSION`] in the hello (call before [`ClientChannel::start`]): the
    /// client knows revision 2.2's `Session` and `Resumed`.
    pub fn offer_session(&mut self) {
        self.session = true;
    }

    /// Offers [`FEATURE_RESUME`] in the hello (call before [`ClientChannel::start`]): the
    /// client's first message will be `Resume`.
    pub fn offer_resume(&mut self) {
        self.resume = true;
    }

    /// Once open: the gate accepted [`FEATURE_RESUME`] (the client must send `Resume` first).
    pub fn resume_accepted(&self) -> bool {
        self.is_open() && self.resume
    }

    /// True once the gate accepted the handshake.
    pub fn is_open(&self) -> bool {
        matches!(self.state, ClientState::Open(_))
    }

    /// True if the gate agreed to lz4 (known once open).
    pub fn compression(&self) -> bool {
        self.lz4
    }

    /// The mode this channel runs.
    pub fn mode(&self) -> Mode {
        self.settings.mode
    }

    /// Writes the hello (the first record); call once.
    pub fn start(&mut self, wire: &mut Vec<u8>) -> Result<(), ChannelError> {
        if !matches!(self.state, ClientState::Start) {
            return Ok(());
        }
        let features = if self.settings.compress_threshold > 0 { FEATURE_LZ4 } else { 0 }
            | if self.resume { FEATURE_RESUME } else { 0 }
            | if self.session { FEATURE_SESSION } else { 0 };
        let header = [MAGIC[0], MAGIC[1], MAGIC[2], VERSION, self.settings.mode as u8, features];
        let at = begin_frame(wire);
        wire.extend_from_slice(&header);
        let hs = match self.settings.mode {
            Mode::Plain => None,
            Mode::NoiseNk => {
                let Some(key) = self.settings.server_key else {
                    wire.truncate(at);
                    return Err(ChannelError::Handshake("mode 1 needs the gate's public key".into()));
                };
                let fail = |e: snow::Error| ChannelError::Handshake(e.to_string());
                let mut hs = builder(self.seed, &header)
                    .remote_public_key(&key)
                    .and_then(|b| b.build_initiator())
                    .map_err(fail)?;
                let mut m1 = [0u8; NOISE_MSG1_LEN];
                let n = hs.write_message(&[], &mut m1).map_err(fail)?;
                wire.extend_from_slice(&m1[..n]);
                Some(Box::new(hs))
            }
        };
        finish_frame(wire, at);
        self.state = ClientState::AwaitReply(hs);
        Ok(())
    }

    /// One record from the gate. Records to send go into `wire`, whole messages to `msg`.
    pub fn handle_record(
        &mut self,
        record: &[u8],
        wire: &mut Vec<u8>,
        mut msg: impl FnMut(Vec<u8>),
    ) -> Result<(), ChannelError> {
        match &mut self.state {
            ClientState::Open(codec) => {
                if let Some(m) = codec.open(record)? {
                    msg(m);
                }
                Ok(())
            }
            ClientState::Start | ClientState::Failed => Err(ChannelError::Hello("a record before the hello")),
            ClientState::AwaitReply(hs) => {
                let hs = hs.take();
                match self.finish(hs, record) {
                    Ok(mut codec) => {
                        codec.seal_all(&std::mem::take(&mut self.pending), wire)?;
                        self.state = ClientState::Open(Box::new(codec));
                        Ok(())
                    }
                    Err(e) => {
                        self.state = ClientState::Failed;
                        Err(e)
                    }
                }
            }
        }
    }

    fn finish(&mut self, hs: Option<Box<snow::HandshakeState>>, reply: &[u8]) -> Result<Codec, ChannelError> {
        let Some((header, rest)) = reply.split_first_chunk::<HELLO_HEADER>() else {
            return Err(ChannelError::Hello("server hello shorter than its header"));
        };
        if header[..3] != MAGIC || header[3] != VERSION {
            return Err(ChannelError::Hello("not an oxworld version 2 server hello"));
        }
        let status = Status::from_byte(header[4]);
        if status != Status::Ok {
            return Err(ChannelError::Refused { status, reason: String::from_utf8_lossy(rest).into_owned() });
        }
        if header[5] != self.settings.mode as u8 {
            return Err(ChannelError::Hello("the server hello's mode is not the one asked for"));
        }
        let s = &self.settings;
        let (cipher, features) = match hs {
            None => {
                let [features] = rest else {
                    return Err(ChannelError::Hello("plain server hello must carry exactly the features byte"));
                };
                (None, *features)
            }
            Some(mut hs) => {
                let mut payload = [0u8; NOISE_MSG2_LEN];
                let n = hs.read_message(rest, &mut payload).map_err(|e| ChannelError::Handshake(e.to_string()))?;
                let [features] = payload[..n] else {
                    return Err(ChannelError::Hello("noise message 2 must carry exactly the features byte"));
                };
                (Some(hs.into_transport_mode().map_err(|e| ChannelError::Handshake(e.to_string()))?), features)
            }
        };
        if features & !(FEATURE_LZ4 | FEATURE_RESUME | FEATURE_SESSION) != 0
            || (features & FEATURE_LZ4 != 0 && s.compress_threshold == 0)
            || (features & FEATURE_RESUME != 0 && !self.resume)
            || (features & FEATURE_SESSION != 0 && !self.session)
        {
            return Err(ChannelError::Hello("the gate accepted a feature that was not offered"));
        }
        // A gate that does not resume sessions places a boot entity as for a new client.
        self.resume = features & FEATURE_RESUME != 0;
        self.lz4 = features & FEATURE_LZ4 != 0;
        Ok(Codec::new(cipher, self.lz4, s.compress_threshold, s.max_message))
    }

    /// Seals one application message into `wire`, or queues it until the handshake is done.
    pub fn send(&mut self, msg: &[u8], wire: &mut Vec<u8>) -> Result<(), ChannelError> {
        match &mut self.state {
            ClientState::Open(codec) => codec.seal(msg, wire),
            ClientState::Start | ClientState::AwaitReply(_) => {
                let at = begin_frame(&mut self.pending);
                self.pending.extend_from_slice(msg);
                finish_frame(&mut self.pending, at);
                Ok(())
            }
            ClientState::Failed => Ok(()),
        }
    }
}

/// The server hello: header, then the features byte (plain) or the reason text (refusal).
fn write_server_hello(wire: &mut Vec<u8>, status: Status, mode: Mode, rest: &[u8]) {
    let at = begin_frame(wire);
    wire.extend_from_slice(&[MAGIC[0], MAGIC[1], MAGIC[2], VERSION, status as u8, mode as u8]);
    wire.extend_from_slice(rest);
    finish_frame(wire, at);
}

/// The length-prefixed item at `at` of our own buffer, and where the next starts.
pub fn next_prefixed(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let len = u32::from_le_bytes(*buf.get(at..)?.first_chunk::<4>()?) as usize;
    let start = at + 4;
    let item = buf.get(start..start + len)?;
    Some((item, start + len))
}

mod key;
mod noise;

pub use key::{StaticKey, hex, parse_key_hex, read_key_file, write_key_file};
#[cfg(test)]
use noise::SeededRandom;
use noise::builder;

#[cfg(test)]
mod tests;
