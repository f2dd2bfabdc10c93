//! The internal protocol between dispatchers, games and gates: a fixed [`Header`] that a
//! dispatcher routes by without decoding anything else, then a body encoded with `speedy`.
//! One struct per message [`Kind`], and one closed enum per direction ([`FromGate`],
//! [`FromGame`], [`ToGame`], [`ToGate`]), so every process matches exhaustively on what it can
//! receive and a kind sent the wrong way is a decode error, not a runtime surprise.
//!
//! Frame layout (inside the `u32` length prefix), all integers little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | `kind` ([`Kind`]) |
//! | 1 | 1 | `flags` (bit 0 [`FLAG_TRACED`]; bit 1 [`FLAG_MUST_EXIST`] on `LoadEntity`; bit 2 [`FLAG_LAST_ANNOUNCE`] on `Announce`; other bits 0) |
//! | 2 | 2 | `aux`: the game, gate or dispatcher a message names (see each kind), else 0 |
//! | 4 | 16 | `route`: the entity id the message is about (its routing key), else zeros |
//! | 20 | 2 | `origin`: the sender, [`origin_of`] (games `id`, gates `0x8000 \| id`) |
//! | 22 | 2 | reserved, 0 |
//! | 24 | 8 | `seq`: the origin's sequence number on this dispatcher link, 0 = unnumbered ([`Kind::end_to_end`]) |
//! | 32 | 8 | `ack`: on a numbered frame, the origin's low-water mark: every `seq` below it on this link is settled (acknowledged or given up), else 0 |
//! | 40 | 8 | `trace`: per-hop residence times when [`FLAG_TRACED`] ([`trace`]), else 0 |
//! | 48 | .. | body: the kind's fields after `route` and `aux`, speedy-encoded |
//!
//! A dispatcher parses the header of every frame and decodes the body only of what is
//! addressed to itself; calls, creates, migrations and client messages pass through as the
//! bytes that arrived (a create "anywhere" gets its `aux` patched in place). Every internal
//! connection starts with [`Hello`] from the connecting side; the dispatcher answers
//! [`HelloAck`] or [`Refused`] (then closes). A game then announces the entities it already
//! hosts in [`Announce`] batches, so `Hello` stays small whatever the game's size; the last
//! batch (possibly empty) carries [`FLAG_LAST_ANNOUNCE`].
//!
//! END TO END. What a game or gate sends through a dispatcher to another game or gate
//! ([`Kind::end_to_end`]) is numbered per dispatcher link (`seq`) and kept by its origin until
//! the destination acknowledges it with [`Acks`] (sent back through the same dispatcher,
//! `aux` = the origin) or the dispatcher settles it (it could not deliver it and answered the
//! sender). After a link comes back (a dispatcher restart) the origin sends again what is not
//! settled, in order; a destination drops a frame whose `(origin, link, seq)` it has seen or
//! which is below the origin's low-water mark, and acknowledges it again.

use std::fmt;

use speedy::{LittleEndian, Readable, Writable};
use thiserror::Error;

use crate::id::Id;

/// Version of the internal protocol; a peer with another version is refused.
pub const INTERNAL_PROTOCOL_VERSION: u32 = 5;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 48;
/// Header flag: the `trace` slot holds a [`trace::Trace`] (set on sampled or slow client calls
/// and their replies only).
pub const FLAG_TRACED: u8 = 1;
/// Header flag of `LoadEntity`: fail when nothing is stored instead of creating the entity.
pub const FLAG_MUST_EXIST: u8 = 2;
/// Header flag of `Announce`: the last batch of this link's announcement (the dispatcher
/// knows every entity of the game from then on).
pub const FLAG_LAST_ANNOUNCE: u8 = 4;
/// Entities per [`Announce`] message (16 bytes each: 32 KiB, under [`HANDSHAKE_MAX_FRAME`]).
pub const ANNOUNCE_BATCH: usize = 2048;
/// Largest frame a dispatcher accepts from a connection that has not completed the handshake
/// (`Hello` and the `Announce` batches sent with it are all a peer sends before `HelloAck`).
pub const HANDSHAKE_MAX_FRAME: usize = 64 << 10;

/// The `origin` of a game (`id`) or a gate (`0x8000 | id`).
pub const fn origin_of(kind: ProcKind, id: u16) -> u16 {
    match kind {
        ProcKind::Gate => 0x8000 | (id & 0x7fff),
        _ => id & 0x7fff,
    }
}

/// The game an `origin` names, if it names one (not a gate, not unset).
pub const fn game_of_origin(origin: u16) -> Option<u16> {
    if origin == 0 || origin & 0x8000 != 0 { None } else { Some(origin) }
}

macro_rules! kinds {
    ($($(#[$m:meta])* $name:ident = $n:literal,)*) => {
        /// What a frame carries: its header's first byte.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Kind {
            $($(#[$m])* $name = $n,)*
        }

        impl Kind {
            /// The kind for a wire byte, if defined.
            pub fn from_u8(b: u8) -> Option<Kind> {
                match b {
                    $($n => Some(Kind::$name),)*
                    _ => None,
                }
            }

            /// Its name, for logs and counters.
            pub fn name(self) -> &'static str {
                match self {
                    $(Kind::$name => stringify!($name),)*
                }
            }
        }
    };
}

kinds! {
    /// [`Hello`].
    Hello = 0x01,
    /// [`HelloAck`].
    HelloAck = 0x02,
    /// [`Refused`].
    Refused = 0x03,
    /// [`Announce`].
    Announce = 0x04,
    /// [`Call`].
    Call = 0x10,
    /// [`CallFailed`].
    CallFailed = 0x11,
    /// [`ClientDisconnected`].
    ClientDisconnected = 0x12,
    /// [`ClientMove`].
    ClientMove = 0x13,
    /// [`CreateEntity`].
    CreateEntity = 0x14,
    /// [`LoadEntity`].
    LoadEntity = 0x15,
    /// [`RealMigrate`].
    RealMigrate = 0x16,
    /// [`CreateBoot`].
    CreateBoot = 0x17,
    /// [`ClientConnected`].
    ClientConnected = 0x18,
    /// [`EntityCreated`].
    EntityCreated = 0x20,
    /// [`EntityDestroyed`].
    EntityDestroyed = 0x21,
    /// [`QuerySpace`].
    QuerySpace = 0x22,
    /// [`SpaceGame`].
    SpaceGame = 0x23,
    /// [`MigrateRequest`].
    MigrateRequest = 0x24,
    /// [`MigrateAck`].
    MigrateAck = 0x25,
    /// [`CancelMigrate`].
    CancelMigrate = 0x26,
    /// [`ServiceRegister`].
    ServiceRegister = 0x27,
    /// [`ServiceUpdate`].
    ServiceUpdate = 0x28,
    /// [`GameLoad`].
    GameLoad = 0x29,
    /// [`FreezeGame`].
    FreezeGame = 0x2a,
    /// [`FreezeAck`].
    FreezeAck = 0x2b,
    /// [`Thawed`].
    Thawed = 0x2c,
    /// [`GameUp`].
    GameUp = 0x2d,
    /// [`GameDown`].
    GameDown = 0x2e,
    /// [`GateDown`].
    GateDown = 0x2f,
    /// [`ToClients`].
    ToClients = 0x30,
    /// [`SetFilterProp`].
    SetFilterProp = 0x31,
    /// [`FilteredCall`].
    FilteredCall = 0x32,
    /// [`GateUp`].
    GateUp = 0x33,
    /// [`GameLost`].
    GameLost = 0x34,
    /// [`PlayerAt`].
    PlayerAt = 0x35,
    /// [`Acks`].
    Acks = 0x36,
    /// [`ResumeClient`].
    ResumeClient = 0x37,
    /// [`ResumeRefused`].
    ResumeRefused = 0x38,
}

impl Kind {
    /// True for what a game or gate sends through a dispatcher to one other game or gate:
    /// numbered, kept until acknowledged, sent again after a dispatcher restart (see the
    /// module docs). What is addressed to a dispatcher itself is rebuilt on a new link instead.
    pub fn end_to_end(self) -> bool {
        matches!(
            self,
            Kind::Call
                | Kind::CallFailed
                | Kind::ClientDisconnected
                | Kind::ClientMove
                | Kind::CreateEntity
                | Kind::LoadEntity
                | Kind::RealMigrate
                | Kind::ToClients
                | Kind::SetFilterProp
                | Kind::PlayerAt
                | Kind::ResumeClient
                | Kind::ResumeRefused
                | Kind::FilteredCall
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An internal frame that could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MsgDecodeError {
    /// Shorter than the fixed header.
    #[error("frame of {0} bytes is shorter than the {HEADER_LEN}-byte header")]
    Short(usize),
    /// A kind byte this protocol version does not define.
    #[error("unknown message kind {0:#04x}")]
    UnknownKind(u8),
    /// A kind that does not travel in this direction.
    #[error("{kind} is not a {direction} message")]
    Unexpected {
        /// The kind.
        kind: Kind,
        /// The direction's enum.
        direction: &'static str,
    },
    /// The body does not decode as its kind's fields.
    #[error("{kind} body: {reason}")]
    Body {
        /// The kind.
        kind: Kind,
        /// What is wrong.
        reason: String,
    },
}

/// The fixed header of every internal frame (see the module docs for the layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the frame carries.
    pub kind: Kind,
    /// Flags ([`FLAG_TRACED`]).
    pub flags: u8,
    /// The game, gate or dispatcher the message names, else 0.
    pub aux: u16,
    /// The entity the message is about (routing key), else [`Id::NIL`].
    pub route: Id,
    /// The sender ([`origin_of`]); 0 when not set.
    pub origin: u16,
    /// The origin's sequence number on this dispatcher link; 0 = unnumbered.
    pub seq: u64,
    /// On a numbered frame: the origin's low-water mark (every `seq` below is settled).
    pub ack: u64,
    /// The trace slot when [`FLAG_TRACED`] (a [`trace::Trace`]), else 0.
    pub trace: u64,
}

impl Header {
    /// A header of `kind` about `route`, naming `aux`; everything else zero.
    pub fn new(kind: Kind, route: Id, aux: u16) -> Header {
        Header { kind, flags: 0, aux, route, origin: 0, seq: 0, ack: 0, trace: 0 }
    }

    /// Appends the header's 48 bytes.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(self.kind as u8);
        out.push(self.flags);
        out.extend_from_slice(&self.aux.to_le_bytes());
        out.extend_from_slice(&self.route.0);
        out.extend_from_slice(&self.origin.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.ack.to_le_bytes());
        out.extend_from_slice(&self.trace.to_le_bytes());
    }

    /// Reads the header of `frame` without touching the body; returns it and the body.
    pub fn parse(frame: &[u8]) -> Result<(Header, &[u8]), MsgDecodeError> {
        let Some((h, body)) = frame.split_first_chunk::<HEADER_LEN>() else {
            return Err(MsgDecodeError::Short(frame.len()));
        };
        let kind = Kind::from_u8(h[0]).ok_or(MsgDecodeError::UnknownKind(h[0]))?;
        let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let mut route = [0u8; 16];
        route.copy_from_slice(&h[4..20]);
        let header = Header {
            kind,
            flags: h[1],
            aux: u16_at(2),
            route: Id(route),
            origin: u16_at(20),
            seq: u64_at(24),
            ack: u64_at(32),
            trace: u64_at(40),
        };
        Ok((header, body))
    }

    /// Rewrites the `seq` and `ack` fields of an encoded frame in place (the origin numbering
    /// what it sends end to end).
    pub fn patch_seq(frame: &mut [u8], seq: u64, ack: u64) {
        if let Some(b) = frame.get_mut(24..32) {
            b.copy_from_slice(&seq.to_le_bytes());
        }
        if let Some(b) = frame.get_mut(32..40) {
            b.copy_from_slice(&ack.to_le_bytes());
        }
    }

    /// Rewrites the `aux` field of an encoded frame in place (a dispatcher placing a create or
    /// load "anywhere" on the game it chose, without re-encoding the body).
    pub fn patch_aux(frame: &mut [u8], aux: u16) {
        if let Some(b) = frame.get_mut(2..4) {
            b.copy_from_slice(&aux.to_le_bytes());
        }
    }
}

/// One message kind: its body struct, and which of its fields live in the header. Fields that
/// live in the header are `#[speedy(skip)]` in the body and filled in by [`Message::take_header`].
pub trait Message: Sized + Writable<LittleEndian> + for<'a> Readable<'a, LittleEndian> {
    /// Its kind.
    const KIND: Kind;
    /// The header's `route` (the entity this message is about), if it has one.
    fn route(&self) -> Id {
        Id::NIL
    }
    /// The header's `aux`, if it has one.
    fn aux(&self) -> u16 {
        0
    }
    /// The header's `flags` a message sets itself (besides tracing).
    fn flags(&self) -> u8 {
        0
    }
    /// Takes the header's fields into the decoded body.
    fn take_header(&mut self, _h: &Header) {}

    /// Appends the whole frame (header from `origin`, then body).
    fn encode(&self, origin: u16, out: &mut Vec<u8>) {
        let mut h = Header::new(Self::KIND, self.route(), self.aux());
        h.origin = origin;
        h.flags = self.flags();
        h.write(out);
        // Writing to a Vec cannot fail (short of allocation failure, which aborts).
        let _ = self.write_to_stream(&mut *out);
    }

    /// The whole frame, as a fresh buffer.
    fn to_frame(&self, origin: u16) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 32);
        self.encode(origin, &mut out);
        out
    }

    /// Decodes a body whose header was already parsed; trailing bytes are an error (speedy
    /// would ignore them).
    fn decode_body(h: &Header, body: &[u8]) -> Result<Self, MsgDecodeError> {
        let bad = |reason: String| MsgDecodeError::Body { kind: Self::KIND, reason };
        let (msg, used) = Self::read_with_length_from_buffer(body);
        let mut msg = msg.map_err(|e| bad(e.to_string()))?;
        if used != body.len() {
            return Err(bad(format!("{} trailing bytes", body.len() - used)));
        }
        msg.take_header(h);
        Ok(msg)
    }

    /// Decodes a whole frame of this kind.
    fn decode(frame: &[u8]) -> Result<Self, MsgDecodeError> {
        let (h, body) = Header::parse(frame)?;
        if h.kind != Self::KIND {
            return Err(MsgDecodeError::Body { kind: h.kind, reason: format!("expected {}", Self::KIND) });
        }
        Self::decode_body(&h, body)
    }
}

/// Declares a message struct and its [`Message`] impl. `route` and `aux` name the fields that
/// live in the header.
macro_rules! message {
    (
        $(#[$m:meta])*
        $name:ident $(route $route:ident)? $(aux $aux:ident)? $(flag $flag:ident = $bit:path)? {
            $($(#[$fm:meta])* $(@$skip:ident)? $field:ident : $ty:ty,)*
        }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Default, Readable, Writable)]
        pub struct $name {
            $($(#[$fm])* $(#[speedy($skip)])? pub $field: $ty,)*
        }

        impl Message for $name {
            const KIND: Kind = Kind::$name;
            $(fn route(&self) -> Id {
                self.$route
            })?
            $(fn aux(&self) -> u16 {
                self.$aux
            })?
            $(fn flags(&self) -> u8 {
                if self.$flag { $bit } else { 0 }
            })?
            #[allow(unused_variables)]
            fn take_header(&mut self, h: &Header) {
                $(self.$route = h.route;)?
                $(self.$aux = h.aux;)?
                $(self.$flag = h.flags & $bit != 0;)?
            }
        }
    };
}

/// Which kind of process is on the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Readable, Writable)]
#[speedy(tag_type = u8)]
pub enum ProcKind {
    /// Routes messages.
    #[default]
    Dispatcher,
    /// Runs entities.
    Game,
    /// Holds client connections.
    Gate,
}

/// Who sent an entity call; decides what the callee's method exposure allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Readable, Writable)]
#[speedy(tag_type = u8)]
pub enum Caller {
    /// Another entity (or the game itself, `Id::NIL`).
    Server(Id),
    /// A client, through `gate`.
    Client {
        /// Gate holding the client.
        gate: u16,
        /// The client.
        client: Id,
    },
}

impl Default for Caller {
    fn default() -> Self {
        Caller::Server(Id::NIL)
    }
}

/// The comparison of a filtered client call: `property <op> value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Readable, Writable)]
#[speedy(tag_type = u8)]
pub enum FilterOp {
    /// `=` (or `==`).
    #[default]
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `>`.
    Gt,
    /// `<=`.
    Le,
    /// `>=`.
    Ge,
    /// `=` comparing as strings.
    StrEq,
    /// `!=` comparing as strings.
    StrNe,
    /// `<` comparing as strings.
    StrLt,
    /// `>` comparing as strings.
    StrGt,
    /// `<=` comparing as strings.
    StrLe,
    /// `>=` comparing as strings.
    StrGe,
}

impl FilterOp {
    /// Reads `"="`, `"=="`, `"!="`, `"<"`, `">"`, `"<="` or `">="`.
    pub fn parse(s: &str) -> Option<FilterOp> {
        Some(match s {
            "=" | "==" => FilterOp::Eq,
            "!=" => FilterOp::Ne,
            "<" => FilterOp::Lt,
            ">" => FilterOp::Gt,
            "<=" => FilterOp::Le,
            ">=" => FilterOp::Ge,
            _ => return None,
        })
    }

    /// The same comparison made on strings (byte order) even for numbers, as GoWorld does.
    pub fn as_string(self) -> FilterOp {
        match self {
            FilterOp::Eq | FilterOp::StrEq => FilterOp::StrEq,
            FilterOp::Ne | FilterOp::StrNe => FilterOp::StrNe,
            FilterOp::Lt | FilterOp::StrLt => FilterOp::StrLt,
            FilterOp::Gt | FilterOp::StrGt => FilterOp::StrGt,
            FilterOp::Le | FilterOp::StrLe => FilterOp::StrLe,
            FilterOp::Ge | FilterOp::StrGe => FilterOp::StrGe,
        }
    }

    /// `prop <op> value`: for `Eq`..`Ge` numerically when both parse as numbers, else by
    /// string order; for `StrEq`..`StrGe` always by string order.
    pub fn matches(self, prop: &str, value: &str) -> bool {
        use std::cmp::Ordering;
        let numeric = !matches!(
            self,
            FilterOp::StrEq | FilterOp::StrNe | FilterOp::StrLt | FilterOp::StrGt | FilterOp::StrLe | FilterOp::StrGe
        );
        let ord = match (prop.parse::<f64>(), value.parse::<f64>()) {
            (Ok(a), Ok(b)) if numeric => a.partial_cmp(&b).unwrap_or(Ordering::Less),
            _ => prop.cmp(value),
        };
        match self {
            FilterOp::Eq | FilterOp::StrEq => ord == Ordering::Equal,
            FilterOp::Ne | FilterOp::StrNe => ord != Ordering::Equal,
            FilterOp::Lt | FilterOp::StrLt => ord == Ordering::Less,
            FilterOp::Gt | FilterOp::StrGt => ord == Ordering::Greater,
            FilterOp::Le | FilterOp::StrLe => ord != Ordering::Greater,
            FilterOp::Ge | FilterOp::StrGe => ord != Ordering::Less,
        }
    }
}

mod messages;
pub mod trace;
pub use messages::*;

/// Declares the closed enum of the messages one direction carries, and the enum of their kinds
/// (for a receiver that routes by header and decodes only some bodies).
macro_rules! direction {
    ($(#[$m:meta])* $name:ident / $kinds:ident { $($var:ident,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $(
                #[doc = concat!("[`", stringify!($var), "`]")]
                $var($var),
            )*
        }

        #[doc = concat!("The kinds of [`", stringify!($name), "`], read from a header alone.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $kinds {
            $(
                #[doc = concat!("[`", stringify!($var), "`]")]
                $var,
            )*
        }

        impl $kinds {
            /// The kind of a parsed header, if it travels this way.
            pub fn of(h: &Header) -> Result<Self, MsgDecodeError> {
                Ok(match h.kind {
                    $(Kind::$var => $kinds::$var,)*
                    #[allow(unreachable_patterns)]
                    kind => return Err(MsgDecodeError::Unexpected { kind, direction: stringify!($name) }),
                })
            }
        }

        impl $name {
            /// Decodes a whole frame; a kind that does not travel this way is an error.
            pub fn decode(frame: &[u8]) -> Result<Self, MsgDecodeError> {
                let (h, body) = Header::parse(frame)?;
                Self::decode_parts(&h, body)
            }

            /// Decodes a body whose header was already parsed.
            pub fn decode_parts(h: &Header, body: &[u8]) -> Result<Self, MsgDecodeError> {
                Ok(match $kinds::of(h)? {
                    $($kinds::$var => $name::$var($var::decode_body(h, body)?),)*
                })
            }

            /// Appends the whole frame.
            pub fn encode(&self, origin: u16, out: &mut Vec<u8>) {
                match self {
                    $($name::$var(m) => m.encode(origin, out),)*
                }
            }

            /// The message's kind.
            pub fn kind(&self) -> Kind {
                match self {
                    $($name::$var(_) => Kind::$var,)*
                }
            }
        }

        $(impl From<$var> for $name {
            fn from(m: $var) -> Self {
                $name::$var(m)
            }
        })*
    };
}

direction! {
    /// What a gate sends a dispatcher.
    FromGate / FromGateKind {
        Hello,
        ClientConnected,
        Call,
        ClientDisconnected,
        ClientMove,
        Acks,
        ResumeClient,
    }
}

direction! {
    /// What a game sends a dispatcher.
    FromGame / FromGameKind {
        Hello,
        Announce,
        EntityCreated,
        EntityDestroyed,
        Call,
        CallFailed,
        CreateEntity,
        LoadEntity,
        QuerySpace,
        MigrateRequest,
        RealMigrate,
        CancelMigrate,
        ServiceRegister,
        GameLoad,
        FreezeGame,
        ToClients,
        SetFilterProp,
        PlayerAt,
        FilteredCall,
        Acks,
        ResumeRefused,
    }
}

direction! {
    /// What a dispatcher sends a game.
    ToGame / ToGameKind {
        HelloAck,
        Refused,
        Thawed,
        FreezeAck,
        GameUp,
        GameDown,
        GateUp,
        GateDown,
        CreateBoot,
        Call,
        CallFailed,
        ClientDisconnected,
        ClientMove,
        CreateEntity,
        LoadEntity,
        SpaceGame,
        MigrateAck,
        RealMigrate,
        ServiceUpdate,
        ResumeClient,
    }
}

direction! {
    /// What a dispatcher sends a gate.
    ToGate / ToGateKind {
        HelloAck,
        Refused,
        ToClients,
        SetFilterProp,
        FilteredCall,
        GameLost,
        PlayerAt,
        ResumeRefused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Id = Id([1; 16]);
    const B: Id = Id([2; 16]);
    const C: Id = Id([3; 16]);

    fn to_game() -> Vec<ToGame> {
        vec![
            HelloAck { dispatcher: 1, games: vec![1, 2] }.into(),
            Refused { reason: "bad secret".into() }.into(),
            Thawed { dispatcher: 1, released: 10, failed: 2 }.into(),
            FreezeAck { dispatcher: 2 }.into(),
            GameUp { game: 3 }.into(),
            GameDown { game: 3 }.into(),
            GateDown { gate: 2 }.into(),
            GateUp { gate: 2 }.into(),
            CreateBoot { boot: B, gate: 1, client: A, token: C }.into(),
            Call { target: A, method: 7, caller: Caller::Server(B), args: vec![0, 0, 0, 0] }.into(),
            Call { target: A, method: 7, caller: Caller::Client { gate: 1, client: B }, args: vec![] }.into(),
            CallFailed { to: A, target: B, method: 9, reason: "game frozen too long".into() }.into(),
            ClientDisconnected { owner: B, gate: 1, client: A, resumable: false }.into(),
            ClientMove { id: B, gate: 1, client: A, pos: [1.0, 2.0, 3.0, 90.0] }.into(),
            CreateEntity { id: A, game: 2, type_name: "Relay".into(), space_kind: None }.into(),
            CreateEntity { id: A, game: 0, type_name: "Arena".into(), space_kind: Some(-7) }.into(),
            LoadEntity { id: A, game: 0, type_name: "Avatar".into(), must_exist: false }.into(),
            LoadEntity { id: A, game: 2, type_name: "Avatar".into(), must_exist: true }.into(),
            SpaceGame { space: A, game: 2, entity: B }.into(),
            MigrateAck { entity: A }.into(),
            RealMigrate { entity: A, game: 2, data: vec![8, 0, 0, 0, 0], delivered: vec![(0x8001, 5, vec![6, 9])] }
                .into(),
            ServiceUpdate { entity: A, game: 2, name: "Online".into(), shard: 1 }.into(),
            ResumeClient { entity: A, gate: 2, client: B, old_client: C, token: B, new_token: C }.into(),
        ]
    }

    fn from_game() -> Vec<FromGame> {
        vec![
            Hello {
                version: INTERNAL_PROTOCOL_VERSION,
                kind: ProcKind::Game,
                id: 2,
                secret: "s".into(),
                incarnation: 7,
                restored: true,
            }
            .into(),
            Announce { last: true, entities: vec![A, B] }.into(),
            EntityCreated { id: A }.into(),
            EntityDestroyed { id: A }.into(),
            QuerySpace { space: A, entity: B }.into(),
            MigrateRequest { entity: A }.into(),
            CancelMigrate { entity: A }.into(),
            ServiceRegister { entity: A, name: "Online".into(), shard: 1 }.into(),
            GameLoad { load: 12 }.into(),
            FreezeGame {}.into(),
            ToClients { gate: 1, clients: vec![A, B], payload: vec![0x83; 17] }.into(),
            SetFilterProp { gate: 1, client: A, key: "level".into(), value: "10".into() }.into(),
            PlayerAt { gate: 1, client: A, entity: B }.into(),
            Acks { origin: 0x8001, runs: vec![(7, 3), (12, 1)] }.into(),
            ResumeRefused { gate: 1, client: A, entity: B, reason: "expired".into() }.into(),
            FilteredCall {
                gate: 2,
                key: "level".into(),
                op: FilterOp::Ge,
                value: "5".into(),
                method: "hi".into(),
                args: vec![0, 0, 0, 0],
            }
            .into(),
        ]
    }

    fn from_gate() -> Vec<FromGate> {
        vec![
            Hello {
                version: INTERNAL_PROTOCOL_VERSION,
                kind: ProcKind::Gate,
                id: 1,
                secret: "s".into(),
                incarnation: 0,
                restored: false,
            }
            .into(),
            ClientConnected { boot: B, gate: 1, client: A, token: C }.into(),
            Call { target: A, method: 7, caller: Caller::Client { gate: 1, client: B }, args: vec![1] }.into(),
            ClientDisconnected { owner: B, gate: 1, client: A, resumable: false }.into(),
            ClientMove { id: B, gate: 1, client: A, pos: [0.5; 4] }.into(),
            Acks { origin: 2, runs: vec![(u64::MAX - 1, 2)] }.into(),
            ResumeClient { entity: A, gate: 1, client: B, old_client: C, token: A, new_token: B }.into(),
        ]
    }

    fn to_gate() -> Vec<ToGate> {
        vec![
            HelloAck { dispatcher: 2, games: vec![] }.into(),
            Refused { reason: "no".into() }.into(),
            ToClients { gate: 1, clients: vec![A], payload: vec![1, 2, 3] }.into(),
            SetFilterProp { gate: 1, client: A, key: "k".into(), value: String::new() }.into(),
            FilteredCall {
                gate: 1,
                key: String::new(),
                op: FilterOp::Eq,
                value: String::new(),
                method: "m".into(),
                args: vec![],
            }
            .into(),
            GameLost { game: 2, incarnation: 9 }.into(),
            PlayerAt { gate: 1, client: A, entity: B }.into(),
            ResumeRefused { gate: 1, client: A, entity: B, reason: "no such entity".into() }.into(),
        ]
    }

    /// A decoder of one direction.
    type Decoder = fn(&[u8]) -> Result<(), MsgDecodeError>;

    /// Every frame of every direction: (bytes, a decoder for that direction).
    fn frames() -> Vec<(Vec<u8>, Decoder)> {
        let mut v: Vec<(Vec<u8>, Decoder)> = Vec::new();
        let enc = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = Vec::new();
            f(&mut b);
            b
        };
        for m in to_game() {
            v.push((enc(&|b| m.encode(0, b)), |f| ToGame::decode(f).map(drop)));
        }
        for m in from_game() {
            v.push((enc(&|b| m.encode(3, b)), |f| FromGame::decode(f).map(drop)));
        }
        for m in from_gate() {
            v.push((enc(&|b| m.encode(0x8001, b)), |f| FromGate::decode(f).map(drop)));
        }
        for m in to_gate() {
            v.push((enc(&|b| m.encode(0, b)), |f| ToGate::decode(f).map(drop)));
        }
        v
    }

    #[test]
    fn roundtrip_every_message_of_every_direction() {
        for m in to_game() {
            let mut b = Vec::new();
            m.encode(0, &mut b);
            assert_eq!(ToGame::decode(&b), Ok(m));
        }
        for m in from_game() {
            let mut b = Vec::new();
            m.encode(7, &mut b);
            assert_eq!(Header::parse(&b).expect("header").0.origin, 7);
            assert_eq!(FromGame::decode(&b), Ok(m));
        }
        for m in from_gate() {
            let mut b = Vec::new();
            m.encode(origin_of(ProcKind::Gate, 1), &mut b);
            assert_eq!(FromGate::decode(&b), Ok(m));
        }
        for m in to_gate() {
            let mut b = Vec::new();
            m.encode(0, &mut b);
            assert_eq!(ToGate::decode(&b), Ok(m));
        }
    }

    /// The header carries the routing fields at fixed offsets, so a dispatcher routes by them
    /// without the body; a create's `aux` is patched in place.
    #[test]
    fn header_layout_is_fixed_and_patchable() {
        let m = CreateEntity { id: A, game: 0, type_name: "Relay".into(), space_kind: None };
        let mut frame = m.to_frame(origin_of(ProcKind::Game, 3));
        assert_eq!(frame[0], Kind::CreateEntity as u8);
        assert_eq!(&frame[2..4], &[0, 0]);
        assert_eq!(&frame[4..20], &A.0);
        assert_eq!(&frame[20..22], &3u16.to_le_bytes());
        assert!(frame[22..48].iter().all(|b| *b == 0), "reserved slots are zero");
        Header::patch_aux(&mut frame, 2);
        let (h, _) = Header::parse(&frame).expect("header");
        assert_eq!((h.kind, h.aux, h.route), (Kind::CreateEntity, 2, A));
        assert_eq!(CreateEntity::decode(&frame).expect("body").game, 2);
        assert_eq!(origin_of(ProcKind::Gate, 2), 0x8002);
        assert_eq!(game_of_origin(origin_of(ProcKind::Game, 3)), Some(3));
        assert_eq!((game_of_origin(0x8002), game_of_origin(0)), (None, None));
    }

    #[test]
    fn truncated_and_trailing_input_are_errors() {
        for (frame, decode) in frames() {
            for cut in 0..frame.len() {
                assert!(decode(&frame[..cut]).is_err(), "kind {:#04x} cut at {cut}", frame[0]);
            }
            let mut long = frame.clone();
            long.push(0);
            assert!(decode(&long).is_err(), "kind {:#04x} with a trailing byte", frame[0]);
        }
    }

    #[test]
    fn kinds_travel_only_their_own_way() {
        let call_failed = CallFailed { to: A, target: B, method: 1, reason: String::new() }.to_frame(0);
        assert!(matches!(
            FromGate::decode(&call_failed),
            Err(MsgDecodeError::Unexpected { kind: Kind::CallFailed, direction: "FromGate" })
        ));
        let hello =
            Hello { version: 3, kind: ProcKind::Game, id: 1, secret: String::new(), incarnation: 0, restored: false }
                .to_frame(1);
        assert!(ToGame::decode(&hello).is_err(), "a game never receives Hello");
        assert!(ToGate::decode(&GameUp { game: 1 }.to_frame(0)).is_err());
    }

    #[test]
    fn hostile_headers_lengths_and_tags() {
        assert_eq!(Header::parse(&[0x10; 47]).map(drop), Err(MsgDecodeError::Short(47)));
        let mut unknown = vec![0u8; HEADER_LEN];
        unknown[0] = 0xee;
        assert_eq!(ToGame::decode(&unknown), Err(MsgDecodeError::UnknownKind(0xee)));
        // A Hello whose secret claims 4 GiB.
        let mut hello = Vec::new();
        Header::new(Kind::Hello, Id::NIL, 0).write(&mut hello);
        hello.extend_from_slice(&3u32.to_le_bytes());
        hello.push(1);
        hello.extend_from_slice(&1u16.to_le_bytes());
        hello.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(FromGame::decode(&hello).is_err());
        // An announce claiming 2^32 - 1 ids.
        let mut ann = Vec::new();
        Header::new(Kind::Announce, Id::NIL, 0).write(&mut ann);
        ann.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(FromGame::decode(&ann).is_err());
        // A caller or filter tag out of range.
        let mut call = Call { target: A, method: 1, caller: Caller::Server(B), args: vec![] }.to_frame(0);
        call[HEADER_LEN + 4] = 9;
        assert!(ToGame::decode(&call).is_err());
        let mut fc = FilteredCall::default().to_frame(0);
        fc[HEADER_LEN + 4] = 11;
        assert!(ToGate::decode(&fc).is_ok(), "filter op 11 is StrGe");
        fc[HEADER_LEN + 4] = 12;
        assert!(ToGate::decode(&fc).is_err(), "filter op 12 does not exist");
    }

    #[test]
    fn filter_ops_compare_numbers_as_numbers() {
        assert_eq!(FilterOp::parse(">="), Some(FilterOp::Ge));
        assert_eq!(FilterOp::parse("=="), Some(FilterOp::Eq));
        assert_eq!(FilterOp::parse("=>"), None);
        assert!(FilterOp::Gt.matches("10", "9"), "10 > 9 as numbers");
        assert!(!FilterOp::Gt.matches("10", "9x"), "'10' < '9x' as strings");
        assert!(FilterOp::Lt.matches("b", "c") && FilterOp::Eq.matches("a", "a") && FilterOp::Ne.matches("a", "b"));
        assert!(FilterOp::Le.matches("5", "5") && FilterOp::Ge.matches("5", "5"));
    }

    #[test]
    fn string_filter_ops_compare_as_goworld_does() {
        assert_eq!(FilterOp::Gt.as_string(), FilterOp::StrGt);
        assert_eq!(FilterOp::StrGt.as_string(), FilterOp::StrGt);
        assert!(!FilterOp::StrGt.matches("10", "9"), "'10' < '9' as strings");
        assert!(FilterOp::StrLt.matches("10", "9"));
        assert!(!FilterOp::StrEq.matches("1.0", "1"), "not equal as strings");
        assert!(FilterOp::Eq.matches("1.0", "1"), "equal as numbers");
        assert!(
            FilterOp::StrNe.matches("a", "b") && FilterOp::StrLe.matches("a", "a") && FilterOp::StrGe.matches("b", "a")
        );
    }
}
