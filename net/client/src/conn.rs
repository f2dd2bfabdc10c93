//! The client side of the client protocol as a sans-IO state machine ([`ClientConn`]) that
//! tests, bots and tools share: bytes and time in, messages and bytes out.

use std::collections::{HashMap, VecDeque};
use std::io;

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
}

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
        }
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
            ServerMsg::Welcome { client, .. } => self.client_id = Some(*client),
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
    use super::*;
    use oxworld_net::frame::encode_frame;

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

    #[test]
    fn garbage_from_server_is_an_error() {
        let mut c = ClientConn::new(16);
        assert!(matches!(c.handle_bytes(&[1, 0, 0, 0, 0x77]), Err(ClientError::Decode(_))));
        let mut c = ClientConn::new(16);
        assert!(matches!(c.handle_bytes(&[0xff, 0xff, 0, 0]), Err(ClientError::Frame(_))));
    }
}
