//! One struct per internal message kind, with its fields in order and which of them live in
//! the header (`route`, `aux`); the encoding is the header, then the other fields with speedy.
//! The module above lists the kinds and which way each travels.

use speedy::{Readable, Writable};

use super::{Caller, FilterOp, Header, Kind, Message, ProcKind};
use crate::id::Id;

message! {
    /// Game or gate -> dispatcher, first on every connection.
    Hello {
        /// [`INTERNAL_PROTOCOL_VERSION`].
        version: u32,
        /// Sender's kind.
        kind: ProcKind,
        /// Sender's id within its kind (1-based).
        id: u16,
        /// The cluster secret from the config.
        secret: String,
        /// Which run of the process this is (random per process start; 0 for gates): a game
        /// that links again with the same one had a broken link, with another one it is a new
        /// process and the old one's entities are gone.
        incarnation: u64,
        /// The process restored a freeze (`--restore`): it continues the world of the process
        /// that froze. A new process that did not restore does not, even during a hot swap.
        restored: bool,
    }
}

message! {
    /// Dispatcher -> game or gate: the handshake is accepted.
    HelloAck aux dispatcher {
        /// Dispatcher id (header `aux`).
        @skip dispatcher: u16,
        /// Games currently connected to this dispatcher (to games; empty to gates).
        games: Vec<u16>,
    }
}

message! {
    /// Dispatcher -> game or gate: the handshake is refused; the connection closes after this.
    Refused {
        /// Why.
        reason: String,
    }
}

message! {
    /// Game -> dispatcher, after `Hello`: entities it already hosts whose dispatcher is the
    /// receiver (after a reconnect or a restore), in batches of [`ANNOUNCE_BATCH`]; at least
    /// one batch, the last one flagged.
    Announce flag last = super::FLAG_LAST_ANNOUNCE {
        /// The last batch of this link's announcement (header flag
        /// [`super::FLAG_LAST_ANNOUNCE`]).
        @skip last: bool,
        /// The entities.
        entities: Vec<Id>,
    }
}

message! {
    /// A method call, routed by `target` (game -> dispatcher -> game, or gate -> dispatcher
    /// -> game for client calls).
    Call route target {
        /// Entity to call (header `route`).
        @skip target: Id,
        /// Method id.
        method: u32,
        /// Who calls.
        caller: Caller,
        /// Encoded argument list (`value::encode_args`).
        args: Vec<u8>,
    }
}

message! {
    /// A call could not be delivered; routed to the calling entity `to`.
    CallFailed route to {
        /// The caller (header `route`).
        @skip to: Id,
        /// The entity that was called.
        target: Id,
        /// Method id.
        method: u32,
        /// Why.
        reason: String,
    }
}

message! {
    /// Gate -> dispatcher(owner) -> game: the client of `owner` is gone.
    ClientDisconnected route owner aux gate {
        /// Entity owning the client (header `route`).
        @skip owner: Id,
        /// Gate (header `aux`).
        @skip gate: u16,
        /// Client.
        client: Id,
        /// The connection was lost (a socket error, a client too slow or silent, the gate
        /// stopping), not closed by the client: the session may resume (`client_resume_s`).
        resumable: bool,
    }
}

message! {
    /// Gate -> dispatcher(id) -> game: the client moved its own entity `id`.
    ClientMove route id aux gate {
        /// Its player entity (header `route`).
        @skip id: Id,
        /// Gate (header `aux`).
        @skip gate: u16,
        /// The client.
        client: Id,
        /// x, y, z, yaw.
        pos: [f32; 4],
    }
}

message! {
    /// Game -> dispatcher(id) -> `game`: create an entity of `type_name` with id `id` there
    /// (`game` 0: the dispatcher picks the least-loaded live game and patches `aux`).
    CreateEntity route id aux game {
        /// New entity id (header `route`).
        @skip id: Id,
        /// Target game, 0 = anywhere (header `aux`).
        @skip game: u16,
        /// Registered type name.
        type_name: String,
        /// A space's kind: `Some` exactly when `type_name` is the space type.
        space_kind: Option<i64>,
    }
}

message! {
    /// Game -> dispatcher of `id`: load a persistent entity from storage unless it already
    /// lives somewhere (`game` 0 = least-loaded live game). The dispatcher records the route at
    /// once, so a second load of the same id while the first runs is a no-op, and forwards it
    /// with `game` set to the chosen game, which reads storage and creates it.
    LoadEntity route id aux game flag must_exist = super::FLAG_MUST_EXIST {
        /// Entity id (header `route`).
        @skip id: Id,
        /// Target game, 0 for anywhere (header `aux`).
        @skip game: u16,
        /// Fail when nothing is stored under `id` instead of creating a fresh entity (header
        /// flag [`super::FLAG_MUST_EXIST`]; a flag, not a body field, so games of the previous
        /// version still decode it during a rolling swap).
        @skip must_exist: bool,
        /// Registered type name.
        type_name: String,
    }
}

message! {
    /// Game -> dispatcher(entity) -> `game`: the entity itself; the dispatcher re-routes it to
    /// `game`, forwards this, then releases the held messages in order.
    RealMigrate route entity aux game {
        /// The entity (header `route`).
        @skip entity: Id,
        /// Destination game (header `aux`).
        @skip game: u16,
        /// The entity, encoded (an engine `EntityImage`).
        data: Vec<u8>,
        /// What the sending game received through this dispatcher, per origin: `(origin,
        /// low-water mark, sequence numbers seen above it)`. The receiving game drops these too
        /// if they come again (sent again after a dispatcher restart, now routed to the
        /// entity's new game), so a call runs once wherever its entity went meanwhile.
        delivered: Vec<(u16, u64, Vec<u64>)>,
    }
}

message! {
    /// Dispatcher -> game: create the boot entity `boot` for `client` of `gate`.
    CreateBoot route boot aux gate {
        /// Boot entity id (header `route`).
        @skip boot: Id,
        /// Gate (header `aux`).
        @skip gate: u16,
        /// Client.
        client: Id,
        /// The client's resume token (bound to the client with it).
        token: Id,
    }
}

message! {
    /// Gate -> dispatcher(boot): a client connected; the dispatcher picks a game for its boot
    /// entity.
    ClientConnected route boot aux gate {
        /// Id the boot entity will have (header `route`).
        @skip boot: Id,
        /// Gate (header `aux`).
        @skip gate: u16,
        /// Client.
        client: Id,
        /// The client's resume token (the gate's `Session`).
        token: Id,
    }
}

message! {
    /// Gate -> dispatcher(entity) -> game: a client that lost its connection asks for its
    /// player `entity` back (`ClientMsg::Resume`). The game checks that `entity` is bound to
    /// `old_client` with `token`, then binds it to `client` of `gate` with `new_token`, or
    /// answers [`ResumeRefused`].
    ResumeClient route entity aux gate {
        /// The player entity (header `route`).
        @skip entity: Id,
        /// The gate the client is on now (header `aux`).
        @skip gate: u16,
        /// Its client id there.
        client: Id,
        /// The client id of the lost connection.
        old_client: Id,
        /// The token the lost connection was given.
        token: Id,
        /// The token of the new connection.
        new_token: Id,
    }
}

message! {
    /// Game (or dispatcher) -> gate: a [`ResumeClient`] failed; the gate tells the client
    /// (`Error ResumeRefused`) and places a boot entity for it (a login).
    ResumeRefused aux gate {
        /// Gate holding the client (header `aux`).
        @skip gate: u16,
        /// The client.
        client: Id,
        /// The player it asked for.
        entity: Id,
        /// Why.
        reason: String,
    }
}

message! {
    /// Game -> dispatcher(id): entity `id` now lives on the sender.
    EntityCreated route id {
        /// Entity (header `route`).
        @skip id: Id,
    }
}

message! {
    /// Game -> dispatcher(id): entity `id` is gone.
    EntityDestroyed route id {
        /// Entity (header `route`).
        @skip id: Id,
    }
}

message! {
    /// Game -> dispatcher(space): on which game is `space`? (for migrating `entity` there)
    QuerySpace route space {
        /// The space (header `route`).
        @skip space: Id,
        /// The entity that wants to enter it.
        entity: Id,
    }
}

message! {
    /// Dispatcher -> asking game: `space` is on `game` (0: unknown).
    SpaceGame route space aux game {
        /// The space (header `route`).
        @skip space: Id,
        /// Its game, 0 if unknown (header `aux`).
        @skip game: u16,
        /// The entity that wants to enter it.
        entity: Id,
    }
}

message! {
    /// Game -> dispatcher(entity): hold every message for `entity` until it has moved.
    MigrateRequest route entity {
        /// The entity (header `route`).
        @skip entity: Id,
    }
}

message! {
    /// Dispatcher -> game: messages for `entity` are now held; send it.
    MigrateAck route entity {
        /// The entity (header `route`).
        @skip entity: Id,
    }
}

message! {
    /// Game -> dispatcher(entity): the migration is off; release held messages to where the
    /// entity is.
    CancelMigrate route entity {
        /// The entity (header `route`).
        @skip entity: Id,
    }
}

message! {
    /// Game -> dispatcher(service key): shard `shard` of service `name` is `entity` (on the
    /// sender). The first live registration wins; every game hears the outcome as
    /// [`ServiceUpdate`].
    ServiceRegister route entity {
        /// The entity providing it (header `route`).
        @skip entity: Id,
        /// Service name.
        name: String,
        /// Shard index.
        shard: u16,
    }
}

message! {
    /// Dispatcher -> games: shard `shard` of service `name` is now `entity` on `game`
    /// (`Id::NIL`: no provider; it will be re-created).
    ServiceUpdate route entity aux game {
        /// Provider, or `Id::NIL` (header `route`).
        @skip entity: Id,
        /// Its game, 0 with `Id::NIL` (header `aux`).
        @skip game: u16,
        /// Service name.
        name: String,
        /// Shard index.
        shard: u16,
    }
}

message! {
    /// Game -> every dispatcher, every second: its load (live entities), for "anywhere"
    /// placement.
    GameLoad {
        /// Live entities on the game.
        load: u32,
    }
}

message! {
    /// Game -> each dispatcher: the game is about to freeze for a hot swap; hold everything
    /// for it, in order, until it connects again.
    FreezeGame {}
}

message! {
    /// Dispatcher -> game: from now on traffic for the game is held (nothing more will come on
    /// this connection).
    FreezeAck aux dispatcher {
        /// Dispatcher id (header `aux`).
        @skip dispatcher: u16,
    }
}

message! {
    /// Dispatcher -> a game that connected: what happened to its traffic while it was away
    /// (always sent after `HelloAck`, zeros for a game that was not frozen).
    Thawed aux dispatcher {
        /// Dispatcher id (header `aux`).
        @skip dispatcher: u16,
        /// Held messages delivered (they follow this message, in order).
        released: u64,
        /// Held messages that could not wait (time or memory bound); each call among them was
        /// answered with an error to its sender.
        failed: u64,
    }
}

message! {
    /// Dispatcher -> games: a game joined.
    GameUp aux game {
        /// Game id (header `aux`).
        @skip game: u16,
    }
}

message! {
    /// Dispatcher -> games: a game left (its entities are unreachable through this dispatcher).
    GameDown aux game {
        /// Game id (header `aux`).
        @skip game: u16,
    }
}

message! {
    /// Dispatcher -> gates: game `game`'s process is gone (it linked again as a new process,
    /// or did not link again within `game_lost_after_ms`, or its hot swap's hold ran out). The
    /// gate tells each client whose player entity ran there (`PlayerLost`) and gives it a
    /// fresh boot entity.
    GameLost aux game {
        /// Game id (header `aux`).
        @skip game: u16,
        /// The incarnation that is gone (every dispatcher reports the same one: the gate acts
        /// once per incarnation).
        incarnation: u64,
    }
}

message! {
    /// Game -> dispatcher(entity) -> gate: client `client`'s player entity `entity` now runs on
    /// the sending game (sent when it arrives by migration, which the client never sees), so
    /// the gate knows which game's loss would be its player's.
    PlayerAt aux gate {
        /// Gate holding the client (header `aux`).
        @skip gate: u16,
        /// The client.
        client: Id,
        /// Its player entity.
        entity: Id,
    }
}

message! {
    /// Game or gate -> dispatcher -> game or gate `origin`: the sender received (and handled,
    /// or dropped as a duplicate) these numbered frames of `origin` through this dispatcher.
    /// A dispatcher sends it too, for a frame it could not deliver and answered itself.
    Acks aux origin {
        /// The origin acknowledged ([`super::origin_of`]; header `aux`).
        @skip origin: u16,
        /// Runs of sequence numbers: `(first, count)`.
        runs: Vec<(u64, u32)>,
    }
}

impl Acks {
    /// Acks for `seqs` (any order), as runs.
    pub fn of(origin: u16, seqs: &mut [u64]) -> Acks {
        seqs.sort_unstable();
        let mut runs: Vec<(u64, u32)> = Vec::new();
        for &s in seqs.iter() {
            match runs.last_mut() {
                Some((first, n)) if *first + u64::from(*n) == s && *n < u32::MAX => *n += 1,
                Some((first, n)) if *first + u64::from(*n) > s => {}
                _ => runs.push((s, 1)),
            }
        }
        Acks { origin, runs }
    }
}

message! {
    /// Dispatcher -> games: a gate completed its handshake (also sent to a game for every gate
    /// already linked, right after its `HelloAck`), for the deployment-ready hook.
    GateUp aux gate {
        /// Gate id (header `aux`).
        @skip gate: u16,
    }
}

message! {
    /// Dispatcher -> games: a gate left; every client it held is gone.
    GateDown aux gate {
        /// Gate id (header `aux`).
        @skip gate: u16,
    }
}

message! {
    /// Game -> dispatcher -> gate: deliver one encoded client message (`ServerMsg`) to each
    /// of `clients`. Sent through the dispatcher of the entity that owns each client (a game
    /// groups a fan-out by that dispatcher and gate), so every client's stream stays in order
    /// and a payload for many clients crosses the cluster once.
    ToClients aux gate {
        /// Gate holding the clients (header `aux`).
        @skip gate: u16,
        /// The clients.
        clients: Vec<Id>,
        /// One encoded `ServerMsg`.
        payload: Vec<u8>,
    }
}

message! {
    /// Game -> dispatcher(owner) -> gate: set filter property `key` of `client` to `value`
    /// (an empty value removes it).
    SetFilterProp aux gate {
        /// Gate holding the client (header `aux`).
        @skip gate: u16,
        /// The client.
        client: Id,
        /// Property name.
        key: String,
        /// Property value.
        value: String,
    }
}

message! {
    /// Game -> dispatcher 1 -> gate `gate` (one message per online gate, so each is numbered
    /// and delivered exactly once end to end): call `method` on the player entity of every
    /// client of that gate whose property `key` satisfies `op value`; an empty `key` selects
    /// every client.
    FilteredCall aux gate {
        /// The gate (header `aux`).
        @skip gate: u16,
        /// Property name.
        key: String,
        /// Comparison.
        op: FilterOp,
        /// Value compared against.
        value: String,
        /// Client method.
        method: String,
        /// Encoded argument list.
        args: Vec<u8>,
    }
}
