//! Internal messages between dispatchers, games and gates: one closed enum, encoded with
//! `speedy`, encode and decode side by side.
//!
//! Every internal connection starts with [`Msg::Hello`] from the connecting side; the
//! dispatcher answers [`Msg::HelloAck`] or [`Msg::Refused`] (then closes). Anything else
//! before the handshake is a protocol error that closes the connection.

use speedy::{Readable, Writable};
use thiserror::Error;

use crate::id::Id;

/// Version of the internal protocol; a peer with another version is refused.
pub const INTERNAL_PROTOCOL_VERSION: u32 = 2;

/// Which kind of process is on the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Readable, Writable)]
pub enum ProcKind {
    /// Routes messages.
    Dispatcher,
    /// Runs entities.
    Game,
    /// Holds client connections.
    Gate,
}

/// Who sent an entity call; decides what the callee's method exposure allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Readable, Writable)]
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

/// One internal message.
#[derive(Debug, Clone, PartialEq, Readable, Writable)]
pub enum Msg {
    /// First message of a game or gate on a dispatcher connection.
    Hello {
        /// [`INTERNAL_PROTOCOL_VERSION`].
        version: u32,
        /// Sender's kind.
        kind: ProcKind,
        /// Sender's id within its kind (1-based).
        id: u16,
        /// The cluster secret from the config.
        secret: String,
        /// Games: entities it already hosts whose dispatcher is the receiver (after a
        /// reconnect or restore), so routes are rebuilt.
        entities: Vec<Id>,
    },
    /// Dispatcher's answer to an accepted [`Msg::Hello`].
    HelloAck {
        /// Dispatcher id.
        dispatcher: u16,
        /// Games currently connected to this dispatcher (games only).
        games: Vec<u16>,
    },
    /// Dispatcher refuses the handshake; the connection closes after this.
    Refused {
        /// Why.
        reason: String,
    },
    /// Dispatcher -> games: a game joined.
    GameUp {
        /// Game id.
        game: u16,
    },
    /// Dispatcher -> games: a game left (its entities are unreachable through this dispatcher).
    GameDown {
        /// Game id.
        game: u16,
    },
    /// Dispatcher -> games: a gate left; every client it held is gone.
    GateDown {
        /// Gate id.
        gate: u16,
    },
    /// Gate -> dispatcher(boot): a client connected; dispatcher picks a game for its boot entity.
    ClientConnected {
        /// Gate.
        gate: u16,
        /// Client.
        client: Id,
        /// Id the boot entity will have.
        boot: Id,
    },
    /// Dispatcher -> game: create the boot entity `boot` for `client`.
    CreateBoot {
        /// Gate.
        gate: u16,
        /// Client.
        client: Id,
        /// Boot entity id.
        boot: Id,
    },
    /// Gate -> dispatcher(owner) -> game: the client of `owner` is gone.
    ClientDisconnected {
        /// Gate.
        gate: u16,
        /// Client.
        client: Id,
        /// Entity owning the client.
        owner: Id,
    },
    /// Game -> dispatcher(id) -> `game`: create an entity of `type_name` with id `id` there.
    CreateEntity {
        /// Target game; 0 = anywhere (the dispatcher picks the least-loaded live game).
        game: u16,
        /// New entity id.
        id: Id,
        /// Registered type name.
        type_name: String,
        /// Creation data (encoded values), empty for none.
        data: Vec<u8>,
    },
    /// Game -> dispatcher(id): entity `id` now lives on the sender.
    EntityCreated {
        /// Entity.
        id: Id,
    },
    /// Game -> dispatcher(id): entity `id` is gone.
    EntityDestroyed {
        /// Entity.
        id: Id,
    },
    /// A method call routed by `target` (game -> dispatcher -> game, or gate -> dispatcher ->
    /// game for client calls).
    Call {
        /// Entity to call.
        target: Id,
        /// Method id.
        method: u32,
        /// Encoded argument list (`value::encode_args`).
        args: Vec<u8>,
        /// Who calls.
        caller: Caller,
    },
    /// Gate -> dispatcher(id) -> game: the client moved its own entity `id`.
    ClientMove {
        /// The client.
        client: Id,
        /// Its player entity.
        id: Id,
        /// x, y, z, yaw.
        pos: [f32; 4],
    },
    /// Game -> dispatcher(space): on which game is `space`? (for migrating `entity` there)
    QuerySpace {
        /// The space.
        space: Id,
        /// The entity that wants to enter it.
        entity: Id,
    },
    /// Dispatcher -> asking game: `space` is on `game` (0: unknown).
    SpaceGame {
        /// The space.
        space: Id,
        /// The entity that wants to enter it.
        entity: Id,
        /// Its game, 0 if unknown.
        game: u16,
    },
    /// Game -> dispatcher(entity): hold every message for `entity` until it has moved.
    MigrateRequest {
        /// The entity.
        entity: Id,
    },
    /// Dispatcher -> game: messages for `entity` are now held; send it.
    MigrateAck {
        /// The entity.
        entity: Id,
    },
    /// Game -> dispatcher(entity) -> `game`: the entity itself; the dispatcher re-routes it to
    /// `game`, forwards this, then releases the held messages in order.
    RealMigrate {
        /// The entity.
        entity: Id,
        /// Destination game.
        game: u16,
        /// The entity, encoded (see `core::migrate`).
        data: Vec<u8>,
    },
    /// Game -> dispatcher(entity): the migration is off; release held messages to where the
    /// entity is.
    CancelMigrate {
        /// The entity.
        entity: Id,
    },
    /// Game -> dispatcher(service key): shard `shard` of service `name` is `entity` (on the
    /// sender). The first live registration wins; every game hears the outcome as
    /// `ServiceUpdate`.
    ServiceRegister {
        /// Service name.
        name: String,
        /// Shard index.
        shard: u16,
        /// The entity providing it.
        entity: Id,
    },
    /// Dispatcher -> games: shard `shard` of service `name` is now `entity` on `game`
    /// (`Id::NIL`: no provider; it will be re-created).
    ServiceUpdate {
        /// Service name.
        name: String,
        /// Shard index.
        shard: u16,
        /// Provider, or `Id::NIL`.
        entity: Id,
        /// Its game (0 with `Id::NIL`).
        game: u16,
    },
    /// Game -> dispatcher(owner) -> gate: set filter property `key` of `client` to `value`
    /// (an empty value removes it).
    SetFilterProp {
        /// Gate holding the client.
        gate: u16,
        /// The client.
        client: Id,
        /// Property name.
        key: String,
        /// Property value.
        value: String,
    },
    /// Game -> dispatcher 1 -> every gate: call `method` on the player entity of every client
    /// whose property `key` compares to `value` by `op` (0 =, 1 !=, 2 <, 3 >, 4 <=, 5 >=); an
    /// empty `key` selects every client. Numbers compare as numbers when both sides parse.
    FilteredCall {
        /// Property name.
        key: String,
        /// Comparison.
        op: u8,
        /// Value compared against.
        value: String,
        /// Client method.
        method: String,
        /// Encoded argument list.
        args: Vec<u8>,
    },
    /// Game -> every dispatcher, every second: its load (live entities), for "anywhere"
    /// placement.
    GameLoad {
        /// Live entities on the game.
        load: u32,
    },
    /// Game -> dispatcher -> gate: deliver an encoded client message (`ServerMsg`).
    ToClient {
        /// Gate holding the client.
        gate: u16,
        /// Client.
        client: Id,
        /// One encoded `ServerMsg`.
        payload: Vec<u8>,
    },
    /// Game -> dispatcher of `id`: load a persistent entity from storage unless it already
    /// lives somewhere (`game` 0 = least-loaded live game). The dispatcher records the route
    /// at once, so a second load of the same id while the first runs is a no-op; it forwards
    /// the message with `game` set to the chosen game, which reads storage and creates it.
    LoadEntity {
        /// Target game, 0 for anywhere.
        game: u16,
        /// Entity id.
        id: Id,
        /// Registered type name.
        type_name: String,
    },
    /// Game -> each dispatcher: the game is about to freeze for a hot swap; hold everything
    /// for it, in order, until it connects again.
    FreezeGame,
    /// Dispatcher -> game: from now on traffic for the game is held (nothing more will come
    /// on this connection).
    FreezeAck {
        /// Dispatcher id.
        dispatcher: u16,
    },
    /// Dispatcher -> a game that connected while its traffic was held: what happened to it.
    Thawed {
        /// Dispatcher id.
        dispatcher: u16,
        /// Held messages delivered (they follow this message, in order).
        released: u64,
        /// Held messages that could not wait (time or memory bound); each call among them was
        /// answered with an error to its sender.
        failed: u64,
    },
    /// A call could not be delivered; routed to the calling entity (`to`).
    CallFailed {
        /// The caller.
        to: Id,
        /// The entity that was called.
        target: Id,
        /// Method id.
        method: u32,
        /// Why.
        reason: String,
    },
}

/// An internal message that could not be decoded; fatal for that connection.
#[derive(Debug, Error)]
#[error("malformed internal message: {0}")]
pub struct MsgDecodeError(#[from] speedy::Error);

impl Msg {
    /// Appends the encoding (without the frame prefix).
    ///
    /// # Panics
    /// Never in practice: speedy only fails writing to a `Vec` on allocation failure.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.write_to_stream(&mut *out).expect("writing to a Vec cannot fail");
    }

    /// Decodes one whole frame payload; trailing bytes are an error (speedy ignores them
    /// otherwise).
    pub fn decode(payload: &[u8]) -> Result<Self, MsgDecodeError> {
        let (msg, used) = Msg::read_with_length_from_buffer(payload);
        let msg = msg?;
        if used != payload.len() {
            return Err(MsgDecodeError(speedy::Error::custom(format!("{} trailing bytes", payload.len() - used))));
        }
        Ok(msg)
    }

    /// Short name for logs and counters.
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Hello { .. } => "Hello",
            Msg::HelloAck { .. } => "HelloAck",
            Msg::Refused { .. } => "Refused",
            Msg::GameUp { .. } => "GameUp",
            Msg::GameDown { .. } => "GameDown",
            Msg::GateDown { .. } => "GateDown",
            Msg::ClientConnected { .. } => "ClientConnected",
            Msg::CreateBoot { .. } => "CreateBoot",
            Msg::ClientDisconnected { .. } => "ClientDisconnected",
            Msg::CreateEntity { .. } => "CreateEntity",
            Msg::EntityCreated { .. } => "EntityCreated",
            Msg::EntityDestroyed { .. } => "EntityDestroyed",
            Msg::Call { .. } => "Call",
            Msg::ClientMove { .. } => "ClientMove",
            Msg::GameLoad { .. } => "GameLoad",
            Msg::SetFilterProp { .. } => "SetFilterProp",
            Msg::FilteredCall { .. } => "FilteredCall",
            Msg::ServiceRegister { .. } => "ServiceRegister",
            Msg::ServiceUpdate { .. } => "ServiceUpdate",
            Msg::QuerySpace { .. } => "QuerySpace",
            Msg::SpaceGame { .. } => "SpaceGame",
            Msg::MigrateRequest { .. } => "MigrateRequest",
            Msg::MigrateAck { .. } => "MigrateAck",
            Msg::RealMigrate { .. } => "RealMigrate",
            Msg::CancelMigrate { .. } => "CancelMigrate",
            Msg::ToClient { .. } => "ToClient",
            Msg::LoadEntity { .. } => "LoadEntity",
            Msg::FreezeGame => "FreezeGame",
            Msg::FreezeAck { .. } => "FreezeAck",
            Msg::Thawed { .. } => "Thawed",
            Msg::CallFailed { .. } => "CallFailed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Msg> {
        let a = Id([1; 16]);
        let b = Id([2; 16]);
        vec![
            Msg::Hello {
                version: INTERNAL_PROTOCOL_VERSION,
                kind: ProcKind::Game,
                id: 2,
                secret: "s".into(),
                entities: vec![a, b],
            },
            Msg::HelloAck { dispatcher: 1, games: vec![1, 2] },
            Msg::Refused { reason: "bad secret".into() },
            Msg::GameUp { game: 3 },
            Msg::GameDown { game: 3 },
            Msg::GateDown { gate: 2 },
            Msg::ClientConnected { gate: 1, client: a, boot: b },
            Msg::CreateBoot { gate: 1, client: a, boot: b },
            Msg::ClientDisconnected { gate: 1, client: a, owner: b },
            Msg::CreateEntity { game: 2, id: a, type_name: "Relay".into(), data: vec![1, 2] },
            Msg::EntityCreated { id: a },
            Msg::EntityDestroyed { id: a },
            Msg::Call { target: a, method: 7, args: vec![0, 0, 0, 0], caller: Caller::Server(b) },
            Msg::Call { target: a, method: 7, args: vec![], caller: Caller::Client { gate: 1, client: b } },
            Msg::ClientMove { client: a, id: b, pos: [1.0, 2.0, 3.0, 90.0] },
            Msg::GameLoad { load: 12 },
            Msg::SetFilterProp { gate: 1, client: a, key: "level".into(), value: "10".into() },
            Msg::FilteredCall {
                key: "level".into(),
                op: 5,
                value: "5".into(),
                method: "hi".into(),
                args: vec![0, 0, 0, 0],
            },
            Msg::ServiceRegister { name: "Online".into(), shard: 1, entity: a },
            Msg::ServiceUpdate { name: "Online".into(), shard: 1, entity: a, game: 2 },
            Msg::QuerySpace { space: a, entity: b },
            Msg::SpaceGame { space: a, entity: b, game: 2 },
            Msg::MigrateRequest { entity: a },
            Msg::MigrateAck { entity: a },
            Msg::RealMigrate { entity: a, game: 2, data: vec![8, 0, 0, 0, 0] },
            Msg::CancelMigrate { entity: a },
            Msg::ToClient { gate: 1, client: a, payload: vec![0x83; 17] },
            Msg::LoadEntity { game: 0, id: a, type_name: "Avatar".into() },
            Msg::FreezeGame,
            Msg::FreezeAck { dispatcher: 2 },
            Msg::Thawed { dispatcher: 1, released: 10, failed: 0 },
            Msg::CallFailed { to: a, target: b, method: 9, reason: "game frozen too long".into() },
        ]
    }

    #[test]
    fn roundtrip_every_variant() {
        for m in samples() {
            let mut out = Vec::new();
            m.encode(&mut out);
            assert_eq!(Msg::decode(&out).expect("roundtrip"), m);
        }
    }

    #[test]
    fn truncated_and_trailing_input_are_errors() {
        for m in samples() {
            let mut out = Vec::new();
            m.encode(&mut out);
            for cut in 0..out.len() {
                assert!(Msg::decode(&out[..cut]).is_err(), "{} cut at {cut}", m.name());
            }
            out.push(0);
            assert!(Msg::decode(&out).is_err(), "{} with a trailing byte", m.name());
        }
    }

    #[test]
    fn hostile_lengths_and_tags() {
        // Unknown variant tag.
        assert!(Msg::decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
        // Hello with a secret claiming 4 GiB.
        let mut out = Vec::new();
        out.extend_from_slice(&0u32.to_le_bytes()); // Hello
        out.extend_from_slice(&1u32.to_le_bytes()); // version
        out.extend_from_slice(&1u32.to_le_bytes()); // kind = Game
        out.extend_from_slice(&1u16.to_le_bytes()); // id
        out.extend_from_slice(&u32::MAX.to_le_bytes()); // secret length
        assert!(Msg::decode(&out).is_err());
    }
}
