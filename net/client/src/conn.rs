//! The client side of the client protocol as a sans-IO state machine ([`ClientConn`]) that
//! tests, bots and tools share: bytes and time in, messages and bytes out.
//!
//! Drive order (quinn's shape): feed what the socket read to [`ClientConn::handle_bytes`];
//! take messages with [`ClientConn::poll_event`]; call [`ClientConn::handle_timeout`] when
//! [`ClientConn::poll_timeout`] passes (or on every turn of the loop: it is cheap); write what
//! [`ClientConn::take_output`] returns. The connection sends `Heartbeat`s by itself, a third of
//! the gate's idle timeout (from `Welcome`) after the last thing it sent.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::time::{Duration, Instant};

use thiserror::Error;

use oxworld_net::channel::{ChannelError, ClientChannel, ClientSettings, MAX_RECORD};
use oxworld_net::client_proto::{ClientMsg, Pos, ServerMsg};
use oxworld_net::frame::{Deframer, FrameError};
use oxworld_net::id::{Id, method_id};
use oxworld_net::value::Value;
use oxworld_net::wire::DecodeError;

/// Why the client's view of the connection broke.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server sent an impossible frame.
    #[error("frame: {0}")]
    Frame(#[from] FrameError),
    /// The server sent an undecodable message.
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    /// Socket trouble.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// The KCP layer broke (no answer, refused, dead link, ended by the gate).
    #[error("kcp: {0}")]
    Kcp(oxworld_net::kcp::link::KcpLinkError),
    /// The WebSocket layer broke (refused upgrade, protocol error, closed).
    #[error("websocket: {0}")]
    Ws(#[from] oxworld_net::ws::WsError),
    /// The channel broke: the gate refused the hello or the handshake, or a record was bad.
    #[error("channel: {0}")]
    Channel(#[from] ChannelError),
    /// An attribute change did not fit the client's copy (client and server out of step).
    #[error("attribute replica: {0}")]
    Replica(oxworld_net::attr_op::ApplyError),
    /// Nothing arrived in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// The server closed the connection (with the reason it gave, if it gave one).
    #[error("the server closed the connection{}", .0.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed(Option<String>),
}

/// Client protocol state: the channel (hello, handshake, records), the entities known to this
/// client, its player entity, queued output.
#[derive(Debug)]
pub struct ClientConn {
    channel: ClientChannel,
    /// Cuts the TCP byte stream into records.
    deframer: Deframer,
    /// Length-prefixed records to send (the hello first).
    out: Vec<u8>,
    /// Scratch for encoding one message.
    msg: Vec<u8>,
    events: VecDeque<ServerMsg>,
    client_id: Option<Id>,
    player: Option<Id>,
    /// The resume token of this connection (`Session`).
    token: Option<Id>,
    entities: HashMap<Id, Replica>,
    /// A replica update that did not apply (client and server out of step), reported by the
    /// next `handle_bytes` or `take_error`.
    failed: Option<ClientError>,
    /// A third of the gate's idle timeout, once welcomed.
    heartbeat_every: Option<Duration>,
    /// When the next heartbeat is due (set by the first `handle_timeout` after the welcome).
    next_heartbeat: Option<Instant>,
    /// Something was queued since the last `handle_timeout` (it counts as a heartbeat).
    sent_since_check: bool,
    /// What the server said before it closes the connection (an error on no entity).
    farewell: Option<String>,
}

/// What resumes a session after its connection is lost (PROTOCOL.md, "Resuming a session"):
/// the lost connection's client id, its player entity and its last token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// The client id of the lost connection (its `Welcome`).
    pub client: Id,
    /// Its player entity.
    pub player: Id,
    /// Its resume token (its `Session`).
    pub token: Id,
}

/// The shortest heartbeat interval, whatever the gate's timeout.
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

/// The client's copy of one entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    /// Registered type name.
    pub type_name: String,
    /// Attributes visible to this client, kept up to date by `AttrOps`.
    pub attrs: Value,
    /// Last known position, kept up to date by `Positions`.
    pub pos: Pos,
}

impl ClientConn {
    /// A fresh connection whose first output is the channel's hello; `seed` feeds the
    /// handshake's ephemeral key (take it from the OS: [`crate::os_seed`]).
    pub fn new(settings: ClientSettings, seed: [u8; 32]) -> Self {
        let mut c = ClientConn { channel: ClientChannel::new(settings, seed), ..ClientConn::new_unstarted() };
        c.channel.offer_session();
        if let Err(e) = c.channel.start(&mut c.out) {
            c.failed = Some(ClientError::Channel(e));
        }
        c
    }

    /// A connection that resumes `session` (its first message is `Resume`, its hello offers
    /// it). On success `Resumed` comes, then the player's view as at a login; on refusal an
    /// `Error` with code `ResumeRefused`, then a boot entity (a login). Send nothing else until
    /// one of them came.
    pub fn resuming(settings: ClientSettings, seed: [u8; 32], session: Session) -> Self {
        let mut channel = ClientChannel::new(settings, seed);
        channel.offer_session();
        channel.offer_resume();
        let mut c = ClientConn { channel, ..ClientConn::new_unstarted() };
        if let Err(e) = c.channel.start(&mut c.out) {
            c.failed = Some(ClientError::Channel(e));
        }
        c.send(&ClientMsg::Resume { client: session.client, player: session.player, token: session.token });
        c
    }

    fn new_unstarted() -> Self {
        let settings = ClientSettings {
            mode: oxworld_net::channel::Mode::Plain,
            server_key: None,
            compress_threshold: 0,
            max_message: MAX_RECORD,
        };
        ClientConn {
            channel: ClientChannel::new(settings, [0; 32]),
            deframer: Deframer::new(MAX_RECORD),
            out: Vec::new(),
            msg: Vec::new(),
            events: VecDeque::new(),
            client_id: None,
            player: None,
            token: None,
            entities: HashMap::new(),
            failed: None,
            heartbeat_every: None,
            next_heartbeat: None,
            sent_since_check: false,
            farewell: None,
        }
    }

    /// What resumes this connection's session if it is lost: known once it was welcomed, got
    /// its token and has a player.
    pub fn session(&self) -> Option<Session> {
        Some(Session { client: self.client_id?, player: self.player?, token: self.token? })
    }

    /// When [`ClientConn::handle_timeout`] has work (a heartbeat due), if it knows yet.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_heartbeat
    }

    /// Time passed: queues a `Heartbeat` if nothing was sent for a third of the gate's idle
    /// timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(every) = self.heartbeat_every else { return };
        if std::mem::take(&mut self.sent_since_check) {
            self.next_heartbeat = Some(now + every);
            return;
        }
        match self.next_heartbeat {
            Some(due) if now < due => {}
            Some(_) => {
                self.send(&ClientMsg::Heartbeat);
                self.sent_since_check = false;
                self.next_heartbeat = Some(now + every);
            }
            None => self.next_heartbeat = Some(now + every),
        }
    }

    /// Why the server is closing the connection, if it said so before closing (an idle
    /// timeout, a malformed message, a gate stopping).
    pub fn farewell(&self) -> Option<&str> {
        self.farewell.as_deref()
    }

    /// Feeds bytes read from a TCP socket (length-prefixed records); decoded messages become
    /// events.
    pub fn handle_bytes(&mut self, data: &[u8]) -> Result<(), ClientError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.deframer.push(data);
        while let Some(record) = self.deframer.next_frame()? {
            let mut msgs = Vec::new();
            self.channel.handle_record(record, &mut self.out, |m| msgs.push(m))?;
            for m in msgs {
                self.events.push_back(ServerMsg::decode(&m)?);
            }
        }
        Ok(())
    }

    /// Feeds one record from a message transport (a WebSocket message, a KCP message).
    pub fn handle_record(&mut self, record: &[u8]) -> Result<(), ClientError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let mut msgs = Vec::new();
        self.channel.handle_record(record, &mut self.out, |m| msgs.push(m))?;
        for m in msgs {
            self.events.push_back(ServerMsg::decode(&m)?);
        }
        Ok(())
    }

    /// True once the gate accepted the channel's handshake.
    pub fn is_open(&self) -> bool {
        self.channel.is_open()
    }

    /// True if the channel is encrypted.
    pub fn encrypted(&self) -> bool {
        self.channel.mode() == oxworld_net::channel::Mode::NoiseNk
    }

    /// True if the gate agreed to lz4.
    pub fn compression(&self) -> bool {
        self.channel.compression()
    }

    /// The next message from the server. The client's state (player, entities, replicas) is
    /// updated as each message is taken, so while handling a message it shows the world as of
    /// that message, not of later ones that arrived in the same read.
    pub fn poll_event(&mut self) -> Option<ServerMsg> {
        let msg = self.events.pop_front()?;
        match &msg {
            ServerMsg::Welcome { client, idle_timeout_ms, .. } => {
                self.client_id = Some(*client);
                self.heartbeat_every = (*idle_timeout_ms > 0)
                    .then(|| (Duration::from_millis(u64::from(*idle_timeout_ms)) / 3).max(MIN_HEARTBEAT));
            }
            ServerMsg::Error { target, message, .. } if target.is_nil() => self.farewell = Some(message.clone()),
            ServerMsg::Error { code, message, .. } if *code == oxworld_net::client_proto::ErrorCode::Kicked as u16 => {
                self.farewell = Some(message.clone());
            }
            ServerMsg::CreateEntity { is_player, id, type_name, attrs, pos } => {
                let replica = Replica { type_name: type_name.clone(), attrs: attrs.clone(), pos: *pos };
                self.entities.insert(*id, replica);
                if *is_player {
                    self.player = Some(*id);
                }
            }
            ServerMsg::DestroyEntity { id } => {
                self.entities.remove(id);
                if self.player == Some(*id) {
                    self.player = None;
                }
            }
            // The player died with its game: everything known is forgotten, as at the gate; the
            // new boot entity's create follows (the caller logs in again).
            ServerMsg::PlayerLost { .. } => {
                self.entities.clear();
                self.player = None;
            }
            ServerMsg::Session { token } => self.token = Some(*token),
            // Resumed: the view follows as creates, starting with the player's.
            ServerMsg::Resumed { player, .. } => {
                self.entities.clear();
                self.player = Some(*player);
            }
            ServerMsg::Error { code, .. } if *code == oxworld_net::client_proto::ErrorCode::ResumeRefused as u16 => {
                self.entities.clear();
                self.player = None;
            }
            ServerMsg::Positions { entries } => {
                for (id, pos) in entries {
                    if let Some(r) = self.entities.get_mut(id) {
                        r.pos = *pos;
                    }
                }
            }
            ServerMsg::AttrOps { id, ops } => {
                if let Some(r) = self.entities.get_mut(id) {
                    for op in ops {
                        if let Err(e) = op.apply(&mut r.attrs) {
                            self.failed.get_or_insert(ClientError::Replica(e));
                        }
                    }
                }
            }
            _ => {}
        }
        Some(msg)
    }

    /// A replica update that failed since the last call (the client is out of step).
    pub fn take_error(&mut self) -> Option<ClientError> {
        self.failed.take()
    }

    /// Queues a call of `method` on entity `target`.
    pub fn call(&mut self, target: Id, method: &str, args: Vec<Value>) {
        self.send(&ClientMsg::Call { target, method: method_id(method), args });
    }

    /// Queues any client message.
    pub fn send(&mut self, msg: &ClientMsg) {
        let mut m = std::mem::take(&mut self.msg);
        m.clear();
        msg.encode(&mut m);
        self.send_raw(&m);
        self.msg = m;
    }

    /// Queues an arbitrary message payload (tests of hostile input: the channel carries it
    /// like any message).
    pub fn send_raw(&mut self, payload: &[u8]) {
        self.sent_since_check = true;
        if let Err(e) = self.channel.send(payload, &mut self.out) {
            self.failed.get_or_insert(ClientError::Channel(e));
        }
    }

    /// Takes the bytes to write to a TCP socket: length-prefixed records (message transports
    /// split them with [`oxworld_net::channel::next_prefixed`]).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// True while output is queued.
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// This connection's client id, once welcomed.
    pub fn client_id(&self) -> Option<Id> {
        self.client_id
    }

    /// The entity this client owns, once created.
    pub fn player(&self) -> Option<Id> {
        self.player
    }

    /// Type name of a known entity.
    pub fn entity_type(&self, id: Id) -> Option<&str> {
        self.entities.get(&id).map(|r| r.type_name.as_str())
    }

    /// The client's copy of a known entity.
    pub fn entity(&self, id: Id) -> Option<&Replica> {
        self.entities.get(&id)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use oxworld_net::channel::{Mode, ServerChannel, ServerSettings, next_prefixed};
    use oxworld_net::client_proto::ErrorCode;

    use super::*;

    /// A client and the gate's end of its channel, handshake done (plain mode: the channel's
    /// own tests cover encryption).
    fn pair() -> (ClientConn, ServerChannel) {
        let settings = ClientSettings { mode: Mode::Plain, server_key: None, compress_threshold: 0, max_message: 1024 };
        let mut c = ClientConn::new(settings, [1; 32]);
        let mut s = ServerChannel::new(
            Arc::new(ServerSettings { mode: Mode::Plain, key: None, compress_threshold: 0, max_message: 1024 }),
            [2; 32],
        );
        let hello = c.take_output();
        let mut reply = Vec::new();
        let (r, _) = next_prefixed(&hello, 0).expect("hello record");
        s.handle_record(r, &mut reply, |_| {}).expect("hello accepted");
        c.handle_bytes(&reply).expect("server hello");
        assert!(c.is_open());
        (c, s)
    }

    /// What the server would send: `msgs` as records.
    fn wire_of(s: &mut ServerChannel, msgs: &[ServerMsg]) -> Vec<u8> {
        let mut wire = Vec::new();
        for m in msgs {
            let mut p = Vec::new();
            m.encode(&mut p);
            s.send(&p, &mut wire).expect("seal");
        }
        wire
    }

    /// The messages the client queued, as the gate sees them.
    fn sent(c: &mut ClientConn, s: &mut ServerChannel) -> Vec<ClientMsg> {
        let out = c.take_output();
        let mut msgs = Vec::new();
        let mut at = 0;
        while let Some((r, next)) = next_prefixed(&out, at) {
            s.handle_record(r, &mut Vec::new(), |m| msgs.push(ClientMsg::decode(&m).expect("decodes")))
                .expect("record");
            at = next;
        }
        msgs
    }

    fn player_create(id: Id, type_name: &str) -> ServerMsg {
        ServerMsg::CreateEntity {
            is_player: true,
            id,
            type_name: type_name.into(),
            attrs: Value::Nil,
            pos: Default::default(),
        }
    }

    #[test]
    fn tracks_player_and_entities() {
        let (mut c, mut s) = pair();
        let wire = wire_of(
            &mut s,
            &[
                ServerMsg::Welcome { version: 2, client: Id([1; 16]), idle_timeout_ms: 1000 },
                ServerMsg::CreateEntity {
                    is_player: true,
                    id: Id([2; 16]),
                    type_name: "A".into(),
                    attrs: Value::Nil,
                    pos: Default::default(),
                },
            ],
        );
        // Split mid-record.
        c.handle_bytes(&wire[..10]).expect("partial");
        assert!(c.poll_event().is_none());
        c.handle_bytes(&wire[10..]).expect("rest");
        // State follows the messages as they are taken, not as they arrive.
        assert_eq!(c.client_id(), None);
        assert!(matches!(c.poll_event(), Some(ServerMsg::Welcome { .. })));
        assert_eq!(c.client_id(), Some(Id([1; 16])));
        assert_eq!(c.player(), None, "the create is not taken yet");
        assert!(matches!(c.poll_event(), Some(ServerMsg::CreateEntity { .. })));
        assert_eq!(c.player(), Some(Id([2; 16])));
        assert_eq!(c.entity_type(Id([2; 16])), Some("A"));
        // Lost with its game: forgotten until the new boot entity's create.
        let wire = wire_of(
            &mut s,
            &[
                ServerMsg::PlayerLost { entity: Id([2; 16]), game: 1, message: "gone".into() },
                player_create(Id([3; 16]), "Boot"),
            ],
        );
        c.handle_bytes(&wire).expect("bytes");
        assert!(matches!(c.poll_event(), Some(ServerMsg::PlayerLost { .. })));
        assert_eq!((c.player(), c.entity_type(Id([2; 16]))), (None, None));
        assert!(matches!(c.poll_event(), Some(ServerMsg::CreateEntity { .. })));
        assert_eq!(c.player(), Some(Id([3; 16])));
        let wire = wire_of(&mut s, &[player_create(Id([2; 16]), "A")]);
        c.handle_bytes(&wire).expect("bytes");
        assert!(c.poll_event().is_some());
        c.call(Id([2; 16]), "echo", vec![]);
        assert!(c.wants_write());
        assert_eq!(
            sent(&mut c, &mut s),
            vec![ClientMsg::Call { target: Id([2; 16]), method: method_id("echo"), args: vec![] }]
        );
    }

    fn welcome(c: &mut ClientConn, s: &mut ServerChannel, idle_timeout_ms: u32) {
        let wire = wire_of(s, &[ServerMsg::Welcome { version: 2, client: Id([1; 16]), idle_timeout_ms }]);
        c.handle_bytes(&wire).expect("welcome");
        assert!(matches!(c.poll_event(), Some(ServerMsg::Welcome { .. })));
    }

    /// Heartbeats go out a third of the idle timeout after the last thing sent, and only then.
    #[test]
    fn heartbeats_fill_the_silences() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let (mut c, mut s) = pair();
        c.handle_timeout(t0);
        assert_eq!(c.poll_timeout(), None, "no schedule before the welcome");
        welcome(&mut c, &mut s, 3000);
        c.handle_timeout(t0);
        assert_eq!(c.poll_timeout(), Some(ms(1000)));
        c.handle_timeout(ms(999));
        assert!(!c.wants_write());
        c.handle_timeout(ms(1000));
        assert_eq!(sent(&mut c, &mut s), vec![ClientMsg::Heartbeat]);
        assert_eq!(c.poll_timeout(), Some(ms(2000)));
        // A call counts: the next heartbeat waits a full interval after it is noticed.
        c.call(Id([2; 16]), "echo", vec![]);
        let _ = c.take_output();
        c.handle_timeout(ms(1500));
        c.handle_timeout(ms(2000));
        assert!(!c.wants_write(), "sent at 1.5 s, so not due before 2.5 s");
        c.handle_timeout(ms(2500));
        assert!(c.wants_write());
        // A gate without an idle timeout gets none.
        let (mut quiet, mut qs) = pair();
        welcome(&mut quiet, &mut qs, 0);
        quiet.handle_timeout(ms(100_000));
        assert!(!quiet.wants_write() && quiet.poll_timeout().is_none());
    }

    #[test]
    fn the_reason_of_a_close_is_kept() {
        let (mut c, mut s) = pair();
        let wire = wire_of(&mut s, &[ServerMsg::error(ErrorCode::Idle, Id::NIL, 0, "no message for 60000 ms")]);
        c.handle_bytes(&wire).expect("record");
        assert!(c.poll_event().is_some());
        assert_eq!(c.farewell(), Some("no message for 60000 ms"));
        let e = ClientError::Closed(c.farewell().map(str::to_owned));
        assert_eq!(e.to_string(), "the server closed the connection: no message for 60000 ms");
        let player = Id([7; 16]);
        let wire = wire_of(&mut s, &[ServerMsg::error(ErrorCode::Kicked, player, 0, "see you tomorrow")]);
        c.handle_bytes(&wire).expect("record");
        assert!(c.poll_event().is_some());
        assert_eq!(c.farewell(), Some("see you tomorrow"), "a kick is the server's last word too");
    }

    #[test]
    fn garbage_from_server_is_an_error() {
        // An undecodable message inside a valid record.
        let (mut c, _) = pair();
        assert!(matches!(c.handle_bytes(&[2, 0, 0, 0, 0, 0x77]), Err(ClientError::Decode(_))));
        // A record past the maximum.
        let (mut c, _) = pair();
        assert!(matches!(c.handle_bytes(&[0xff, 0xff, 0xff, 0]), Err(ClientError::Frame(_))));
        // A record with unknown flags.
        let (mut c, _) = pair();
        assert!(matches!(c.handle_bytes(&[2, 0, 0, 0, 0x40, 0x81]), Err(ClientError::Channel(_))));
        // A server hello that is not one.
        let settings = ClientSettings { mode: Mode::Plain, server_key: None, compress_threshold: 0, max_message: 16 };
        let mut c = ClientConn::new(settings, [1; 32]);
        assert!(matches!(c.handle_bytes(&[3, 0, 0, 0, b'H', b'T', b'T']), Err(ClientError::Channel(_))));
    }
}
