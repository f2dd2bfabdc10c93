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

use oxworld_net::client_proto::{ClientMsg, Pos, ServerMsg};
use oxworld_net::frame::{Deframer, FrameError, begin_frame, finish_frame};
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

/// Client protocol state: entities known to this client, its player entity, queued output.
#[derive(Debug)]
pub struct ClientConn {
    deframer: Deframer,
    out: Vec<u8>,
    events: VecDeque<ServerMsg>,
    client_id: Option<Id>,
    player: Option<Id>,
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
    /// A fresh connection state accepting server frames up to `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        ClientConn {
            deframer: Deframer::new(max_frame),
            out: Vec::new(),
            events: VecDeque::new(),
            client_id: None,
            player: None,
            entities: HashMap::new(),
            failed: None,
            heartbeat_every: None,
            next_heartbeat: None,
            sent_since_check: false,
            farewell: None,
        }
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

    /// Feeds bytes read from the socket; decoded messages become events.
    pub fn handle_bytes(&mut self, data: &[u8]) -> Result<(), ClientError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.deframer.push(data);
        while let Some(frame) = self.deframer.next_frame()? {
            self.events.push_back(ServerMsg::decode(frame)?);
        }
        Ok(())
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
        self.sent_since_check = true;
        let at = begin_frame(&mut self.out);
        msg.encode(&mut self.out);
        finish_frame(&mut self.out, at);
    }

    /// Takes the bytes to write to the socket.
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
    use oxworld_net::client_proto::ErrorCode;
    use oxworld_net::frame::encode_frame;

    use super::*;

    #[test]
    fn tracks_player_and_entities() {
        let mut c = ClientConn::new(1024);
        let mut wire = Vec::new();
        for m in [
            ServerMsg::Welcome { version: 1, client: Id([1; 16]), idle_timeout_ms: 1000 },
            ServerMsg::CreateEntity {
                is_player: true,
                id: Id([2; 16]),
                type_name: "A".into(),
                attrs: Value::Nil,
                pos: Default::default(),
            },
        ] {
            let mut p = Vec::new();
            m.encode(&mut p);
            encode_frame(&p, &mut wire);
        }
        // Split mid-frame.
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
        c.call(Id([2; 16]), "echo", vec![]);
        assert!(c.wants_write());
        let out = c.take_output();
        assert_eq!(
            ClientMsg::decode(&out[4..]).ok(),
            Some(ClientMsg::Call { target: Id([2; 16]), method: method_id("echo"), args: vec![] })
        );
    }

    fn welcome(c: &mut ClientConn, idle_timeout_ms: u32) {
        let mut p = Vec::new();
        ServerMsg::Welcome { version: 1, client: Id([1; 16]), idle_timeout_ms }.encode(&mut p);
        let mut wire = Vec::new();
        encode_frame(&p, &mut wire);
        c.handle_bytes(&wire).expect("welcome");
        assert!(matches!(c.poll_event(), Some(ServerMsg::Welcome { .. })));
    }

    /// Heartbeats go out a third of the idle timeout after the last thing sent, and only then.
    #[test]
    fn heartbeats_fill_the_silences() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut c = ClientConn::new(1024);
        c.handle_timeout(t0);
        assert_eq!(c.poll_timeout(), None, "no schedule before the welcome");
        welcome(&mut c, 3000);
        c.handle_timeout(t0);
        assert_eq!(c.poll_timeout(), Some(ms(1000)));
        c.handle_timeout(ms(999));
        assert!(!c.wants_write());
        c.handle_timeout(ms(1000));
        let out = c.take_output();
        assert_eq!(ClientMsg::decode(&out[4..]), Ok(ClientMsg::Heartbeat));
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
        let mut quiet = ClientConn::new(1024);
        welcome(&mut quiet, 0);
        quiet.handle_timeout(ms(100_000));
        assert!(!quiet.wants_write() && quiet.poll_timeout().is_none());
    }

    #[test]
    fn the_reason_of_a_close_is_kept() {
        let mut c = ClientConn::new(1024);
        let mut p = Vec::new();
        ServerMsg::error(ErrorCode::Idle, Id::NIL, 0, "no message for 60000 ms").encode(&mut p);
        let mut wire = Vec::new();
        encode_frame(&p, &mut wire);
        c.handle_bytes(&wire).expect("frame");
        assert!(c.poll_event().is_some());
        assert_eq!(c.farewell(), Some("no message for 60000 ms"));
        let e = ClientError::Closed(c.farewell().map(str::to_owned));
        assert_eq!(e.to_string(), "the server closed the connection: no message for 60000 ms");
    }

    #[test]
    fn garbage_from_server_is_an_error() {
        let mut c = ClientConn::new(16);
        assert!(matches!(c.handle_bytes(&[1, 0, 0, 0, 0x77]), Err(ClientError::Decode(_))));
        let mut c = ClientConn::new(16);
        assert!(matches!(c.handle_bytes(&[0xff, 0xff, 0, 0]), Err(ClientError::Frame(_))));
    }
}
