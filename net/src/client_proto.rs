//! The client protocol's messages (gate <-> client), encode and decode side by side.
//!
//! Each frame payload is one message: a type byte, then the fields in the order listed on each
//! variant. PROTOCOL.md is the normative description; the tests below pin it.

use crate::attr_op::{AttrOp, decode_ops, encode_ops};
use crate::id::Id;
use crate::value::{Value, decode_args, encode_args};
use crate::wire::{DecodeError, Reader, put_bytes};

/// Version carried in [`ServerMsg::Welcome`]; bumped on any incompatible change.
pub const CLIENT_PROTOCOL_VERSION: u16 = 2;

const C_CALL: u8 = 0x01;
const C_HEARTBEAT: u8 = 0x02;
const C_MOVE: u8 = 0x03;
const C_RESUME: u8 = 0x04;

const S_WELCOME: u8 = 0x81;
const S_CREATE: u8 = 0x82;
const S_DESTROY: u8 = 0x83;
const S_CALL: u8 = 0x84;

/// Where the entity id lies in an encoded `ServerMsg::Call` (see [`ServerMsg::call_template`]).
pub const CALL_ID_RANGE: std::ops::Range<usize> = 1..17;
const S_ERROR: u8 = 0x85;
const S_ATTRS: u8 = 0x86;
const S_POSITIONS: u8 = 0x87;
const S_PLAYER_LOST: u8 = 0x88;
const S_SESSION: u8 = 0x89;
const S_RESUMED: u8 = 0x8a;

/// Position (x, y, z) and yaw (degrees) of an entity; four little-endian `f32` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pos {
    /// X.
    pub x: f32,
    /// Y (height; AOI ignores it).
    pub y: f32,
    /// Z.
    pub z: f32,
    /// Facing, in degrees.
    pub yaw: f32,
}

impl Pos {
    /// A position with yaw 0.
    pub const fn at(x: f32, y: f32, z: f32) -> Pos {
        Pos { x, y, z, yaw: 0.0 }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        for f in [self.x, self.y, self.z, self.yaw] {
            out.extend_from_slice(&f.to_le_bytes());
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Pos, DecodeError> {
        let mut f = [0f32; 4];
        for v in &mut f {
            *v = f32::from_le_bytes(r.array("position")?);
        }
        Ok(Pos { x: f[0], y: f[1], z: f[2], yaw: f[3] })
    }
}

/// A message from a client to its gate.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMsg {
    /// Call `method` (its [`crate::id::method_id`]) on entity `target` with `args`.
    Call {
        /// Entity to call.
        target: Id,
        /// `fnv1a32` of the method name.
        method: u32,
        /// Arguments.
        args: Vec<Value>,
    },
    /// Keep-alive; any message refreshes the idle timer, this one carries nothing else.
    Heartbeat,
    /// Client-driven movement of the client's own entity (accepted only for the client's
    /// player entity, and only if the game enabled client movement for it).
    Move {
        /// The entity (must be the client's player).
        id: Id,
        /// New position and yaw.
        pos: Pos,
    },
    /// Resume a session whose connection was lost: the first message on a connection whose
    /// hello offered feature bit 1 (`resume`) and whose gate accepted it. `client` is the
    /// client id of the lost connection (its `Welcome`), `player` its player entity, `token`
    /// the last `Session` token it got. Added in revision 2.2.
    Resume {
        /// The lost connection's client id.
        client: Id,
        /// Its player entity.
        player: Id,
        /// Its resume token.
        token: Id,
    },
}

impl ClientMsg {
    /// Appends the encoding (without the frame prefix).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ClientMsg::Call { target, method, args } => {
                out.push(C_CALL);
                out.extend_from_slice(&target.0);
                out.extend_from_slice(&method.to_le_bytes());
                encode_args(args, out);
            }
            ClientMsg::Heartbeat => out.push(C_HEARTBEAT),
            ClientMsg::Move { id, pos } => {
                out.push(C_MOVE);
                out.extend_from_slice(&id.0);
                pos.encode(out);
            }
            ClientMsg::Resume { client, player, token } => {
                out.push(C_RESUME);
                out.extend_from_slice(&client.0);
                out.extend_from_slice(&player.0);
                out.extend_from_slice(&token.0);
            }
        }
    }

    /// Decodes one whole frame payload; trailing bytes are an error.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let msg = match r.u8("message type")? {
            C_CALL => ClientMsg::Call {
                target: Id(r.array("target id")?),
                method: r.u32("method id")?,
                args: decode_args(&mut r)?,
            },
            C_HEARTBEAT => ClientMsg::Heartbeat,
            C_MOVE => ClientMsg::Move { id: Id(r.array("entity id")?), pos: Pos::decode(&mut r)? },
            C_RESUME => ClientMsg::Resume {
                client: Id(r.array("client id")?),
                player: Id(r.array("player id")?),
                token: Id(r.array("resume token")?),
            },
            t => return Err(DecodeError::UnknownType(t)),
        };
        r.finish()?;
        Ok(msg)
    }
}

/// Error codes carried by [`ServerMsg::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No entity with that id exists in the cluster (or its game is gone).
    UnknownEntity = 1,
    /// The entity's type has no method with that id.
    UnknownMethod = 2,
    /// The method exists but is not exposed to this client.
    NotExposed = 3,
    /// The arguments do not match the method's parameters.
    BadArguments = 4,
    /// This client was never told about the target entity, so it may not address it.
    NotAddressable = 5,
    /// The message could not be decoded; the gate closes the connection after sending this.
    Malformed = 6,
    /// No game is available to serve the request.
    Unavailable = 7,
    /// The method ran and returned an error.
    Failed = 8,
    /// Nothing arrived from the client for `idle_timeout_ms` (see `Welcome`); the gate closes
    /// the connection after sending this.
    Idle = 9,
    /// The client sent calls (or moves) faster than the gate's rate limit
    /// (`call_rate_per_s`/`call_burst`, `move_rate_per_s`/`move_burst`); this one was dropped.
    /// A client that keeps going (more than `rate_limit_disconnect` refusals in one second)
    /// is disconnected after a last error with this code.
    RateLimited = 10,
    /// A `Move` whose position is not finite (NaN or infinite); it was dropped.
    InvalidPosition = 11,
    /// The server let go of this client: its entity kicked it (the message says why) or was
    /// shut down after an internal error. The gate closes the connection after sending this.
    Kicked = 12,
    /// A `Resume` was refused: no such session (its window passed, or the token is not the
    /// last one that client got, or it was used already). A boot entity follows: log in.
    ResumeRefused = 13,
}

impl ErrorCode {
    /// The code for a wire number, if defined.
    pub fn from_u16(n: u16) -> Option<Self> {
        Some(match n {
            1 => Self::UnknownEntity,
            2 => Self::UnknownMethod,
            3 => Self::NotExposed,
            4 => Self::BadArguments,
            5 => Self::NotAddressable,
            6 => Self::Malformed,
            7 => Self::Unavailable,
            8 => Self::Failed,
            9 => Self::Idle,
            10 => Self::RateLimited,
            11 => Self::InvalidPosition,
            12 => Self::Kicked,
            13 => Self::ResumeRefused,
            _ => return None,
        })
    }
}

/// A message from the gate to a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMsg {
    /// First message on every connection.
    Welcome {
        /// [`CLIENT_PROTOCOL_VERSION`].
        version: u16,
        /// This connection's client id.
        client: Id,
        /// The gate drops a client that sends nothing for this long.
        idle_timeout_ms: u32,
    },
    /// An entity now exists for this client. `is_player` marks the entity this client owns.
    CreateEntity {
        /// True for the client's own (owner) entity.
        is_player: bool,
        /// The entity.
        id: Id,
        /// Its registered type name.
        type_name: String,
        /// Its client-visible attributes (a map).
        attrs: Value,
        /// Its position and yaw.
        pos: Pos,
    },
    /// The entity is gone for this client.
    DestroyEntity {
        /// The entity.
        id: Id,
    },
    /// The server calls `method` of entity `id` on the client.
    Call {
        /// The entity.
        id: Id,
        /// Method name.
        method: String,
        /// Arguments.
        args: Vec<Value>,
    },
    /// New positions of entities this client knows (sent every position sync interval for the
    /// entities that moved). Entries for unknown entities must be ignored.
    Positions {
        /// (entity, position) pairs.
        entries: Vec<(Id, Pos)>,
    },
    /// Changes to the attributes of entity `id`, to apply in order to the client's copy.
    AttrOps {
        /// The entity.
        id: Id,
        /// Operations, oldest first.
        ops: Vec<AttrOp>,
    },
    /// A request of this client failed.
    Error {
        /// Wire number of an [`ErrorCode`] (unknown numbers must be accepted by clients).
        code: u16,
        /// Entity the failed call targeted (nil if none).
        target: Id,
        /// Method id the failed call named (0 if none).
        method: u32,
        /// Human-readable reason.
        message: String,
    },
    /// The client's player entity is gone with the game that ran it (that game crashed or was
    /// killed). The client forgets every entity it was told about; the gate gives it a fresh
    /// boot entity, whose `CreateEntity(is_player)` follows (a new login). Added in revision
    /// 2.1 of protocol 2 (PROTOCOL.md, "Revisions").
    PlayerLost {
        /// The lost player entity.
        entity: Id,
        /// The game it ran on.
        game: u16,
        /// Human-readable reason.
        message: String,
    },
    /// Sent right after `Welcome`: the token that resumes this session (with the client id of
    /// the `Welcome`) if the connection is lost. Each connection gets its own; a resumed
    /// session goes on with the token of the connection that resumed it. Revision 2.2.
    Session {
        /// The resume token (128 random bits).
        token: Id,
    },
    /// The `Resume` succeeded: `player` is this client's player again. The client forgets
    /// every entity it knew; `CreateEntity` of the player (`is_player`), its space and what it
    /// sees follow, then the server calls sent to it while it was away (in order). `dropped`
    /// counts those that were not kept (over the bound, or sent to every client around).
    /// Revision 2.2.
    Resumed {
        /// The player entity.
        player: Id,
        /// Messages for it that were dropped while it was away.
        dropped: u32,
    },
}

impl ServerMsg {
    /// Builds an [`ServerMsg::Error`].
    pub fn error(code: ErrorCode, target: Id, method: u32, message: impl Into<String>) -> Self {
        ServerMsg::Error { code: code as u16, target, method, message: message.into() }
    }

    /// The encoding of `ServerMsg::Call { id: NIL, method, args }` built from arguments that
    /// are already encoded (`value::encode_args`); the id sits at [`CALL_ID_RANGE`] so one call
    /// fanned out to many clients is encoded once and only the id patched per client.
    pub fn call_template(method: &str, encoded_args: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 16 + 4 + method.len() + encoded_args.len());
        out.push(S_CALL);
        out.extend_from_slice(&Id::NIL.0);
        put_bytes(&mut out, method.as_bytes());
        out.extend_from_slice(encoded_args);
        out
    }

    /// Appends the encoding (without the frame prefix).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ServerMsg::Welcome { version, client, idle_timeout_ms } => {
                out.push(S_WELCOME);
                out.extend_from_slice(&version.to_le_bytes());
                out.extend_from_slice(&client.0);
                out.extend_from_slice(&idle_timeout_ms.to_le_bytes());
            }
            ServerMsg::CreateEntity { is_player, id, type_name, attrs, pos } => {
                out.push(S_CREATE);
                out.push(u8::from(*is_player));
                out.extend_from_slice(&id.0);
                put_bytes(out, type_name.as_bytes());
                attrs.encode(out);
                pos.encode(out);
            }
            ServerMsg::Positions { entries } => {
                out.push(S_POSITIONS);
                crate::wire::put_len(out, entries.len());
                for (id, pos) in entries {
                    out.extend_from_slice(&id.0);
                    pos.encode(out);
                }
            }
            ServerMsg::DestroyEntity { id } => {
                out.push(S_DESTROY);
                out.extend_from_slice(&id.0);
            }
            ServerMsg::Call { id, method, args } => {
                out.push(S_CALL);
                out.extend_from_slice(&id.0);
                put_bytes(out, method.as_bytes());
                encode_args(args, out);
            }
            ServerMsg::AttrOps { id, ops } => {
                out.push(S_ATTRS);
                out.extend_from_slice(&id.0);
                encode_ops(ops, out);
            }
            ServerMsg::Error { code, target, method, message } => {
                out.push(S_ERROR);
                out.extend_from_slice(&code.to_le_bytes());
                out.extend_from_slice(&target.0);
                out.extend_from_slice(&method.to_le_bytes());
                put_bytes(out, message.as_bytes());
            }
            ServerMsg::PlayerLost { entity, game, message } => {
                out.push(S_PLAYER_LOST);
                out.extend_from_slice(&entity.0);
                out.extend_from_slice(&game.to_le_bytes());
                put_bytes(out, message.as_bytes());
            }
            ServerMsg::Session { token } => {
                out.push(S_SESSION);
                out.extend_from_slice(&token.0);
            }
            ServerMsg::Resumed { player, dropped } => {
                out.push(S_RESUMED);
                out.extend_from_slice(&player.0);
                out.extend_from_slice(&dropped.to_le_bytes());
            }
        }
    }

    /// Decodes one whole frame payload; trailing bytes are an error.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let msg = match r.u8("message type")? {
            S_WELCOME => ServerMsg::Welcome {
                version: r.u16("version")?,
                client: Id(r.array("client id")?),
                idle_timeout_ms: r.u32("idle timeout")?,
            },
            S_CREATE => ServerMsg::CreateEntity {
                is_player: match r.u8("is_player")? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::Invalid("is_player")),
                },
                id: Id(r.array("entity id")?),
                type_name: r.str("type name")?.to_owned(),
                attrs: Value::decode(&mut r)?,
                pos: Pos::decode(&mut r)?,
            },
            S_POSITIONS => {
                // Each entry is a 16-byte id and four f32.
                let n = r.count("position count", 32)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    entries.push((Id(r.array("entity id")?), Pos::decode(&mut r)?));
                }
                ServerMsg::Positions { entries }
            }
            S_DESTROY => ServerMsg::DestroyEntity { id: Id(r.array("entity id")?) },
            S_CALL => ServerMsg::Call {
                id: Id(r.array("entity id")?),
                method: r.str("method")?.to_owned(),
                args: decode_args(&mut r)?,
            },
            S_ATTRS => ServerMsg::AttrOps { id: Id(r.array("entity id")?), ops: decode_ops(&mut r)? },
            S_ERROR => ServerMsg::Error {
                code: r.u16("error code")?,
                target: Id(r.array("target id")?),
                method: r.u32("method id")?,
                message: r.str("message")?.to_owned(),
            },
            S_PLAYER_LOST => ServerMsg::PlayerLost {
                entity: Id(r.array("entity id")?),
                game: r.u16("game")?,
                message: r.str("message")?.to_owned(),
            },
            S_SESSION => ServerMsg::Session { token: Id(r.array("resume token")?) },
            S_RESUMED => ServerMsg::Resumed { player: Id(r.array("player id")?), dropped: r.u32("dropped")? },
            t => return Err(DecodeError::UnknownType(t)),
        };
        r.finish()?;
        Ok(msg)
    }

    /// For a gate: true if an encoded message is an `Error` with code `Kicked` (after which
    /// the gate closes the connection).
    pub fn is_kick(payload: &[u8]) -> bool {
        payload.first() == Some(&S_ERROR) && payload.get(1..3) == Some(&(ErrorCode::Kicked as u16).to_le_bytes()[..])
    }

    /// True if an encoded message is a server `Call` (what a game keeps for a client that is
    /// away, to deliver when it resumes).
    pub fn is_call(payload: &[u8]) -> bool {
        payload.first() == Some(&S_CALL)
    }

    /// For a gate: true if an encoded message is an `Error` (which travels from the failed
    /// call's target, not from the client's player).
    pub fn is_error(payload: &[u8]) -> bool {
        payload.first() == Some(&S_ERROR)
    }

    /// Peeks at an encoded server message: `Some((is_create, is_player, id))` for create and
    /// destroy messages, so the gate can track what a client may address without decoding.
    pub fn peek_entity(payload: &[u8]) -> Option<(bool, bool, Id)> {
        match *payload.first()? {
            S_CREATE => {
                let b = payload.get(1..18)?;
                let mut id = [0u8; 16];
                id.copy_from_slice(&b[1..]);
                Some((true, b[0] == 1, Id(id)))
            }
            S_DESTROY => {
                let mut id = [0u8; 16];
                id.copy_from_slice(payload.get(1..17)?);
                Some((false, false, Id(id)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::method_id;

    fn client_samples() -> Vec<ClientMsg> {
        vec![
            ClientMsg::Call { target: Id([3; 16]), method: method_id("echo"), args: vec![Value::from("hi")] },
            ClientMsg::Heartbeat,
            ClientMsg::Move { id: Id([4; 16]), pos: Pos { x: 1.0, y: 2.0, z: 3.0, yaw: 45.0 } },
            ClientMsg::Resume { client: Id([5; 16]), player: Id([6; 16]), token: Id([7; 16]) },
        ]
    }

    fn server_samples() -> Vec<ServerMsg> {
        vec![
            ServerMsg::Welcome { version: 1, client: Id([1; 16]), idle_timeout_ms: 30_000 },
            ServerMsg::CreateEntity {
                is_player: true,
                id: Id([2; 16]),
                type_name: "Account".into(),
                attrs: Value::Map(Default::default()),
                pos: Pos { x: 1.5, y: 0.0, z: -2.0, yaw: 90.0 },
            },
            ServerMsg::DestroyEntity { id: Id([2; 16]) },
            ServerMsg::Call { id: Id([2; 16]), method: "echo_reply".into(), args: vec![Value::Int(1)] },
            ServerMsg::error(ErrorCode::NotExposed, Id([2; 16]), 9, "nope"),
            ServerMsg::PlayerLost { entity: Id([5; 16]), game: 2, message: "game2 is gone".into() },
            ServerMsg::Session { token: Id([8; 16]) },
            ServerMsg::Resumed { player: Id([9; 16]), dropped: 3 },
            ServerMsg::Positions {
                entries: vec![(Id([2; 16]), Pos::at(1.0, 2.0, 3.0)), (Id([3; 16]), Pos::default())],
            },
            ServerMsg::AttrOps {
                id: Id([2; 16]),
                ops: vec![crate::attr_op::AttrOp::MapSet { path: vec![], key: "hp".into(), value: Value::Int(3) }],
            },
        ]
    }

    #[test]
    fn client_roundtrip_and_truncation() {
        for m in client_samples() {
            let mut out = Vec::new();
            m.encode(&mut out);
            assert_eq!(ClientMsg::decode(&out), Ok(m.clone()));
            for cut in 0..out.len() {
                assert!(ClientMsg::decode(&out[..cut]).is_err(), "{m:?} cut at {cut}");
            }
            out.push(0);
            assert_eq!(ClientMsg::decode(&out), Err(DecodeError::Trailing(1)));
        }
    }

    #[test]
    fn server_roundtrip_and_truncation() {
        for m in server_samples() {
            let mut out = Vec::new();
            m.encode(&mut out);
            assert_eq!(ServerMsg::decode(&out), Ok(m.clone()));
            for cut in 0..out.len() {
                assert!(ServerMsg::decode(&out[..cut]).is_err(), "{m:?} cut at {cut}");
            }
        }
    }

    /// PROTOCOL.md section 7's `PlayerLost` example.
    #[test]
    fn exact_bytes_of_a_player_lost() {
        let entity = Id::parse_hex("00112233445566778899aabbccddeeff").expect("id");
        let mut out = Vec::new();
        ServerMsg::PlayerLost { entity, game: 2, message: "gone".into() }.encode(&mut out);
        let mut want = vec![0x88];
        want.extend_from_slice(&entity.0);
        want.extend_from_slice(&[0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x67, 0x6f, 0x6e, 0x65]);
        assert_eq!(out, want);
    }

    /// PROTOCOL.md sections 6 and 7: the resume exchange's bytes.
    #[test]
    fn exact_bytes_of_the_resume_exchange() {
        let (a, b, c) = (Id([0xaa; 16]), Id([0xbb; 16]), Id([0xcc; 16]));
        let mut out = Vec::new();
        ClientMsg::Resume { client: a, player: b, token: c }.encode(&mut out);
        let want: Vec<u8> = [vec![0x04], vec![0xaa; 16], vec![0xbb; 16], vec![0xcc; 16]].concat();
        assert_eq!(out, want);
        out.clear();
        ServerMsg::Session { token: c }.encode(&mut out);
        assert_eq!(out, [vec![0x89], vec![0xcc; 16]].concat());
        out.clear();
        ServerMsg::Resumed { player: b, dropped: 2 }.encode(&mut out);
        assert_eq!(out, [vec![0x8a], vec![0xbb; 16], vec![2, 0, 0, 0]].concat());
    }

    #[test]
    fn exact_bytes_of_a_call() {
        let mut out = Vec::new();
        ClientMsg::Call { target: Id([0xab; 16]), method: 0x0102_0304, args: vec![Value::Int(5)] }.encode(&mut out);
        let mut want = vec![0x01];
        want.extend_from_slice(&[0xab; 16]);
        want.extend_from_slice(&[0x04, 0x03, 0x02, 0x01]);
        want.extend_from_slice(&[1, 0, 0, 0, 3, 5, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(out, want);
    }

    /// The worked example of PROTOCOL.md section 11, byte for byte (frame prefix included).
    #[test]
    fn protocol_md_worked_example() {
        fn hex(s: &str) -> Vec<u8> {
            s.split_whitespace().map(|b| u8::from_str_radix(b, 16).expect("hex byte")).collect()
        }
        /// What the gate's channel puts on a TCP connection in mode 0 for one message (PROTOCOL.md
        /// 11 shows these bytes): the record's length, flags 0, the message.
        fn framed(encode: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
            use crate::channel::{Mode, ServerChannel, ServerSettings};
            let settings = ServerSettings { mode: Mode::Plain, key: None, compress_threshold: 0, max_message: 1 << 20 };
            let mut ch = ServerChannel::new(std::sync::Arc::new(settings), [0; 32]);
            ch.handle_record(b"OXW\x02\x00\x00", &mut Vec::new(), |_| {}).expect("a plain hello");
            let mut msg = Vec::new();
            encode(&mut msg);
            let mut out = Vec::new();
            ch.send(&msg, &mut out).expect("seal");
            out
        }
        let id = Id::parse_hex("00112233445566778899aabbccddeeff").expect("id");
        assert_eq!(method_id("echo"), 0xd49d_d484);
        let call = framed(|b| {
            ClientMsg::Call { target: id, method: method_id("echo"), args: vec![Value::from("hi")] }.encode(b)
        });
        assert_eq!(
            call,
            hex(
                "21 00 00 00 00 01 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff 84 d4 9d d4 01 00 00 00 05 02 00 00 00 68 69"
            )
        );
        let reply =
            framed(|b| ServerMsg::Call { id, method: "echo_reply".into(), args: vec![Value::from("hi")] }.encode(b));
        assert_eq!(
            reply,
            hex(
                "2b 00 00 00 00 84 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff 0a 00 00 00 65 63 68 6f 5f 72 65 70 6c 79 01 00 00 00 05 02 00 00 00 68 69"
            )
        );
        let create = framed(|b| {
            ServerMsg::CreateEntity {
                is_player: true,
                id,
                type_name: "Account".into(),
                attrs: Value::Map(Default::default()),
                pos: Pos::default(),
            }
            .encode(b)
        });
        assert_eq!(
            create,
            hex(
                "33 00 00 00 00 82 01 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff 07 00 00 00 41 63 63 6f 75 6e 74 08 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"
            )
        );
        assert_eq!(framed(|b| ClientMsg::Heartbeat.encode(b)), hex("02 00 00 00 00 02"));
    }

    #[test]
    fn unknown_types_and_garbage() {
        assert_eq!(ClientMsg::decode(&[0x7f]), Err(DecodeError::UnknownType(0x7f)));
        assert_eq!(ServerMsg::decode(&[0x00]), Err(DecodeError::UnknownType(0x00)));
        assert!(ClientMsg::decode(&[]).is_err());
        let mut bad_bool = vec![S_CREATE, 7];
        bad_bool.extend_from_slice(&[0; 40]);
        assert_eq!(ServerMsg::decode(&bad_bool), Err(DecodeError::Invalid("is_player")));
    }

    #[test]
    fn peek_create_destroy() {
        for m in server_samples() {
            let mut out = Vec::new();
            m.encode(&mut out);
            let want = match &m {
                ServerMsg::CreateEntity { is_player, id, .. } => Some((true, *is_player, *id)),
                ServerMsg::DestroyEntity { id } => Some((false, false, *id)),
                _ => None,
            };
            assert_eq!(ServerMsg::peek_entity(&out), want);
        }
        assert_eq!(ServerMsg::peek_entity(&[S_CREATE, 1, 2]), None);
    }

    /// A call template with its id patched decodes as the call it stands for.
    #[test]
    fn call_template_patches_into_the_call() {
        let args = vec![Value::from("hi"), Value::Int(3)];
        let mut enc = Vec::new();
        encode_args(&args, &mut enc);
        let mut t = ServerMsg::call_template("on_say", &enc);
        let id = Id([0x42; 16]);
        t[CALL_ID_RANGE].copy_from_slice(&id.0);
        assert_eq!(ServerMsg::decode(&t), Ok(ServerMsg::Call { id, method: "on_say".into(), args: args.clone() }));
        let mut direct = Vec::new();
        ServerMsg::Call { id, method: "on_say".into(), args }.encode(&mut direct);
        assert_eq!(t, direct);
    }
}
