//! The entity world of one game as a sans-IO state machine: internal messages and time in,
//! internal messages (tagged with the dispatcher they must go through) out.
//!
//! Entity code never runs re-entrantly: a method or hook that calls a local entity, creates one
//! or destroys one queues a [`LocalOp`] that the world runs after the current handler returns,
//! within a per-tick budget.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use log::{debug, warn};
use oxworld_net::attr_op::AttrOp;
use oxworld_net::client_proto::{ErrorCode, Pos, ServerMsg};
use oxworld_net::msg::{Caller, Msg};
use oxworld_net::value::{decode_args, encode_args};
use oxworld_net::wire::Reader;
use oxworld_net::{Id, IdGen, Value, method_id};
use rustc_hash::FxHashMap;
use thiserror::Error;

use crate::attr::{AttrSchema, Attrs, Audience, MapMut, filter_ops, touches_persistent};
use crate::cron::CronSpec;
use crate::entity::{Args, CallError, EntityObj, Expose, Registry, RegistryError};
use crate::migrate::{CronImage, EntityImage, TimerImage};
use crate::space::{Sight, Spaces};
use crate::timer::{TIMERS_PER_TICK, Timer, TimerId, Timers};

pub mod freeze;
pub mod persist;
pub use freeze::{Frozen, RestoreError, RestoreReport};
pub use persist::StoreCallError;

/// Local operations run per [`World::tick`] before yielding to IO, so an entity that keeps
/// calling itself cannot starve the process (GoWorld's post queue drains without a bound).
pub const LOCAL_OPS_PER_TICK: usize = 100_000;

/// The client bound to an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientRef {
    /// Gate holding the connection.
    pub gate: u16,
    /// Client id.
    pub client: Id,
}

/// Why an entity could not enter a space.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpaceError {
    /// No such space on this game (entering a space on another game needs migration).
    #[error("space {0} is not on this game")]
    NotLocal(Id),
    /// Spaces do not enter spaces.
    #[error("a space cannot enter a space")]
    SpaceCannotEnter,
    /// A migration of this entity is already under way.
    #[error("the entity is already moving to another game")]
    Migrating,
}

/// `data` of a create message, or an empty argument list.
fn args_or_empty(data: &[u8]) -> Vec<u8> {
    if data.is_empty() { 0u32.to_le_bytes().to_vec() } else { data.to_vec() }
}

/// How often a game looks for service shards without a provider.
pub const SERVICE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// A registration not confirmed within this is retried.
pub const SERVICE_REGISTER_TIMEOUT: Duration = Duration::from_secs(5);
/// Checks a shard may stay missing before every game, not just its designated creator, tries.
pub const SERVICE_FALLBACK_CHECKS: u32 = 3;

/// Default of `position_sync_interval_ms`.
pub const DEFAULT_POSITION_SYNC: Duration = Duration::from_millis(100);

/// Id of game `game`'s nil space: the bytes `oxw-nil-space!` followed by the game id
/// (big-endian), the same across restarts.
pub fn nil_space_id(game: u16) -> Id {
    let mut b = [0u8; 16];
    b[..14].copy_from_slice(b"oxw-nil-space!");
    b[14..].copy_from_slice(&game.to_be_bytes());
    Id(b)
}

/// Why a crontab entry could not be added.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CronAddError {
    /// The schedule does not parse.
    #[error(transparent)]
    Spec(#[from] crate::cron::CronError),
    /// The entity's type has no such method.
    #[error("no method {0:?} on this entity type")]
    UnknownMethod(String),
}

/// Why a timer could not be added.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimerError {
    /// The entity's type has no such method.
    #[error("no method {0:?} on this entity type")]
    UnknownMethod(String),
}

/// Why an entity could not be created.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CreateError {
    /// No type registered under that name.
    #[error("unknown entity type {0:?}")]
    UnknownType(String),
    /// The target game is not online.
    #[error("game {0} is not online")]
    GameOffline(u16),
}

/// Counters a game exposes in its logs (and later its metrics).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Calls handled.
    pub calls: u64,
    /// Calls between entities that found no target (logged and counted, never silent).
    pub undeliverable: u64,
    /// Client calls refused (unknown method, not exposed, bad arguments, failure).
    pub refused_client_calls: u64,
    /// Entities sent to other games.
    pub migrated_out: u64,
    /// Entities received from other games.
    pub migrated_in: u64,
}

pub(crate) enum LocalOp {
    Call { target: Id, method: u32, args: Vec<Value>, caller: Caller },
    Create { ty: usize, id: Id },
    Destroy(Id),
    EnterSpace { entity: Id, space: Id, pos: Pos },
    GiveClient { from: Id, to: Id },
    CreateSpace { id: Id, kind: i64 },
}

/// One crontab entry of an entity.
pub(crate) struct CronEntry {
    entity: Id,
    spec: CronSpec,
    /// The schedule as written, for migration and freezing.
    text: String,
    method: u32,
    args: Vec<Value>,
}

/// Everything of the world except the entities themselves: what entity code may touch
/// through [`Ctx`] while its own entity is checked out.
pub(crate) struct WorldCore {
    game_id: u16,
    n_dispatchers: usize,
    ids: IdGen,
    clock_base: (Instant, u64),
    now: Instant,
    out: Vec<(usize, Msg)>,
    local: VecDeque<LocalOp>,
    online_games: BTreeSet<u16>,
    stats: Stats,
    local_ids: rustc_hash::FxHashSet<Id>,
    timers: Timers,
    spaces: Spaces,
    /// Entity -> its client, for everything that reaches other entities' clients.
    clients: FxHashMap<Id, ClientRef>,
    nil_space: Id,
    sync_interval: Duration,
    next_sync: Instant,
    /// Entities on their way to a space on another game: (space, position, target game once
    /// known).
    migrations: FxHashMap<Id, (Id, Pos, u16)>,
    /// Mirror of the service registry: (name, shard) -> (provider, its game).
    services: BTreeMap<(String, u16), (Id, u16)>,
    /// Shards this game created and registered, not yet confirmed: (provider, since).
    pending_services: FxHashMap<(String, u16), (Id, Instant)>,
    /// How many checks each missing shard has been missing for.
    missing_checks: FxHashMap<(String, u16), u32>,
    next_service_check: Instant,
    service_rr: usize,
    /// Crontab entries.
    cron: Vec<CronEntry>,
    /// The last UTC minute whose crontab entries ran.
    cron_minute: u64,
    /// Storage operations under way, entities being loaded, the save schedule.
    store: persist::StoreState,
}

impl WorldCore {
    fn unix_ms(&self) -> u64 {
        let (start, base) = self.clock_base;
        base + u64::try_from(self.now.saturating_duration_since(start).as_millis()).unwrap_or(0)
    }

    /// Sends the attribute changes recorded so far to the clients that may see them.
    fn flush_attrs(&mut self, id: Id, attrs: &mut Attrs, schema: &AttrSchema, client: Option<ClientRef>) {
        if !attrs.has_ops() {
            return;
        }
        let ops = attrs.take_ops();
        if touches_persistent(&ops, schema) {
            attrs.mark_persistent_dirty();
        }
        if let Some(c) = client {
            let visible: Vec<AttrOp> = filter_ops(&ops, schema, Audience::Own).cloned().collect();
            if !visible.is_empty() {
                self.send_to_client(id, c, &ServerMsg::AttrOps { id, ops: visible });
            }
        }
        let watchers = self.spaces.watchers(id);
        if !watchers.is_empty() {
            let visible: Vec<AttrOp> = filter_ops(&ops, schema, Audience::Others).cloned().collect();
            if !visible.is_empty() {
                let msg = ServerMsg::AttrOps { id, ops: visible };
                for w in watchers {
                    if let Some(&c) = self.clients.get(&w) {
                        // Routed through the watcher: its client's stream stays in order.
                        self.send_to_client(w, c, &msg);
                    }
                }
            }
        }
    }

    fn send_idx(&mut self, d: usize, msg: Msg) {
        self.out.push((d % self.n_dispatchers, msg));
    }

    fn send(&mut self, route: Id, msg: Msg) {
        self.out.push((route.dispatcher_index(self.n_dispatchers), msg));
    }

    fn send_to_client(&mut self, route: Id, c: ClientRef, msg: &ServerMsg) {
        let mut payload = Vec::new();
        msg.encode(&mut payload);
        self.send(route, Msg::ToClient { gate: c.gate, client: c.client, payload });
    }
}

struct Slot {
    ty: usize,
    obj: Option<Box<dyn EntityObj>>,
    client: Option<ClientRef>,
    attrs: Attrs,
}

/// What an entity method or hook gets to act on the world.
pub struct Ctx<'a> {
    core: &'a mut WorldCore,
    reg: &'a Registry,
    id: Id,
    caller: Caller,
    client: &'a mut Option<ClientRef>,
    destroy: &'a mut bool,
    attrs: &'a mut Attrs,
    schema: &'a AttrSchema,
    ty: usize,
}

impl Ctx<'_> {
    /// This entity's attributes, for reading and changing; changes reach the clients that may
    /// see them (by the attribute's flags) in order, before any later call to those clients.
    pub fn attrs(&mut self) -> MapMut<'_> {
        self.attrs.root()
    }

    /// This entity's attributes, read-only.
    pub fn attrs_ref(&self) -> &Attrs {
        self.attrs
    }

    fn flush_attrs(&mut self) {
        self.core.flush_attrs(self.id, self.attrs, self.schema, *self.client);
    }

    fn timer(
        &mut self,
        first: Duration,
        repeat: Option<Duration>,
        method: &str,
        args: Vec<Value>,
    ) -> Result<TimerId, TimerError> {
        let m = method_id(method);
        if !self.reg.types[self.ty].by_id.contains_key(&m) {
            return Err(TimerError::UnknownMethod(method.to_owned()));
        }
        let deadline = self.core.now + first;
        Ok(self.core.timers.add(Timer { entity: self.id, method: m, args, deadline, repeat }))
    }

    /// Calls `method` of this entity once, `after` from now. The method must exist on the
    /// entity's type (any exposure).
    pub fn add_timer(&mut self, after: Duration, method: &str, args: Vec<Value>) -> Result<TimerId, TimerError> {
        self.timer(after, None, method, args)
    }

    /// Calls `method` of this entity every `every` (at least [`crate::timer::MIN_REPEAT`]),
    /// first after one interval, until cancelled or the entity is destroyed.
    pub fn add_repeat_timer(&mut self, every: Duration, method: &str, args: Vec<Value>) -> Result<TimerId, TimerError> {
        let every = every.max(crate::timer::MIN_REPEAT);
        self.timer(every, Some(every), method, args)
    }

    /// Calls `method` of this entity after the current handler returns, in this same turn of
    /// the loop (GoWorld's `Post`, typed).
    pub fn post(&mut self, method: &str, args: Vec<Value>) {
        let caller = Caller::Server(self.id);
        self.core.local.push_back(LocalOp::Call { target: self.id, method: method_id(method), args, caller });
    }

    /// A game-wide timer: calls `method` of this game's nil space (an instance of the space
    /// type) once after `after`, or every `repeat` if given. Lives as long as the game.
    pub fn add_global_timer(
        &mut self,
        after: Duration,
        repeat: Option<Duration>,
        method: &str,
        args: Vec<Value>,
    ) -> Result<TimerId, TimerError> {
        let m = method_id(method);
        let space_ty = self.reg.space_type.ok_or_else(|| TimerError::UnknownMethod(method.to_owned()))?;
        if !self.reg.types[space_ty].by_id.contains_key(&m) {
            return Err(TimerError::UnknownMethod(method.to_owned()));
        }
        let repeat = repeat.map(|r| r.max(crate::timer::MIN_REPEAT));
        let deadline = self.core.now + after;
        Ok(self.core.timers.add(Timer { entity: self.core.nil_space, method: m, args, deadline, repeat }))
    }

    /// Calls `method` of this entity on a crontab schedule (`"*/5 * * * *"`: every five
    /// minutes, UTC), until the entity is destroyed. Schedules stay on this game (they are not
    /// carried by migration).
    pub fn add_cron(&mut self, spec: &str, method: &str, args: Vec<Value>) -> Result<(), CronAddError> {
        let s = CronSpec::parse(spec)?;
        let m = method_id(method);
        if !self.reg.types[self.ty].by_id.contains_key(&m) {
            return Err(CronAddError::UnknownMethod(method.to_owned()));
        }
        self.core.cron.push(CronEntry { entity: self.id, spec: s, text: spec.to_owned(), method: m, args });
        Ok(())
    }

    /// Cancels one of this entity's timers; false if it was not live.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.core.timers.cancel(self.id, id)
    }

    /// The space this entity is in (this game's nil space at first; `Id::NIL` for spaces).
    pub fn space(&self) -> Id {
        self.core.spaces.spatial(self.id).map(|s| s.space).unwrap_or(Id::NIL)
    }

    /// This game's nil space.
    pub fn nil_space(&self) -> Id {
        self.core.nil_space
    }

    /// Kind of space `space` if it is on this game.
    pub fn space_kind(&self, space: Id) -> Option<i64> {
        self.core.spaces.space(space).map(|s| s.kind)
    }

    /// Position and yaw.
    pub fn position(&self) -> Pos {
        self.core.spaces.spatial(self.id).map(|s| s.pos).unwrap_or_default()
    }

    /// Moves this entity (also in the nil space and without AOI). Neighbours are updated
    /// after the current handler; clients get the new position at the next position sync.
    pub fn set_position(&mut self, x: f32, y: f32, z: f32) {
        let yaw = self.position().yaw;
        self.core.spaces.move_to(self.id, Pos { x, y, z, yaw });
    }

    /// Turns this entity to `yaw` degrees.
    pub fn set_yaw(&mut self, yaw: f32) {
        let p = self.position();
        self.core.spaces.move_to(self.id, Pos { yaw, ..p });
    }

    /// Turns this entity towards point (x, z): yaw 0 faces +Z, 90 faces +X.
    pub fn face_to(&mut self, x: f32, z: f32) {
        let p = self.position();
        let (dx, dz) = (x - p.x, z - p.z);
        if dx != 0.0 || dz != 0.0 {
            self.set_yaw(dx.atan2(dz).to_degrees());
        }
    }

    /// Lets (or stops letting) this entity's own client move it.
    pub fn set_client_move(&mut self, on: bool) {
        if let Some(sp) = self.core.spaces.spatial_mut(self.id) {
            sp.client_move = on;
        }
    }

    /// Changes this entity's AOI view radius (entities of types declared with `aoi` only).
    pub fn set_aoi_radius(&mut self, radius: f32) {
        self.core.spaces.set_radius(self.id, radius.max(0.0));
    }

    /// Entities this entity sees (its AOI neighbours).
    pub fn neighbours(&self) -> Vec<Id> {
        self.core.spaces.seen(self.id)
    }

    /// Enters `space` at `pos` once the current handler returns: the client (if any) sees the
    /// old space and neighbours destroyed, then the new space and its neighbours created; the
    /// spaces' and the entity's hooks run. A space on another game makes the entity migrate
    /// there (see ARCHITECTURE.md, "Migration"); calls to it meanwhile are delivered after it
    /// arrives, in order.
    pub fn enter_space(&mut self, space: Id, pos: Pos) -> Result<(), SpaceError> {
        if self.core.spaces.is_space(self.id) {
            return Err(SpaceError::SpaceCannotEnter);
        }
        if self.core.migrations.contains_key(&self.id) {
            return Err(SpaceError::Migrating);
        }
        if self.core.spaces.is_space(space) {
            self.core.local.push_back(LocalOp::EnterSpace { entity: self.id, space, pos });
        } else {
            // Another game's space: find it, then migrate there (see `World::handle`).
            self.core.migrations.insert(self.id, (space, pos, 0));
            self.core.send(space, Msg::QuerySpace { space, entity: self.id });
        }
        Ok(())
    }

    /// Creates a space of kind `kind` on this game (an instance of the registered space
    /// type); it exists once the current handler returns.
    pub fn create_space_locally(&mut self, kind: i64) -> Id {
        let id = self.core.ids.next(self.core.unix_ms());
        self.core.local_ids.insert(id);
        self.core.local.push_back(LocalOp::CreateSpace { id, kind });
        id
    }

    /// The entities whose clients [`call_all_clients`](Self::call_all_clients) would reach now:
    /// this one if it has a client, and every entity with a client that sees it.
    pub fn clients_watching(&self) -> Vec<Id> {
        self.reached_clients().into_iter().map(|(id, _)| id).collect()
    }

    /// The own client, then the client of every entity that sees this one, with the entity
    /// each is reached through.
    fn reached_clients(&self) -> Vec<(Id, ClientRef)> {
        let own = (*self.client).map(|c| (self.id, c));
        let watchers = self.core.spaces.watchers(self.id);
        own.into_iter().chain(watchers.into_iter().filter_map(|w| self.core.clients.get(&w).map(|&c| (w, c)))).collect()
    }

    /// Calls `method` on the own client and on the client of every entity that sees this one.
    /// Returns how many clients it reached.
    pub fn call_all_clients(&mut self, method: &str, args: Vec<Value>) -> usize {
        self.flush_attrs();
        let msg = ServerMsg::Call { id: self.id, method: method.to_owned(), args };
        // Encoded once; every client gets the same bytes.
        let mut payload = Vec::new();
        msg.encode(&mut payload);
        let reached = self.reached_clients();
        for &(route, c) in &reached {
            self.core.send(route, Msg::ToClient { gate: c.gate, client: c.client, payload: payload.clone() });
        }
        reached.len()
    }

    /// This entity's id.
    pub fn id(&self) -> Id {
        self.id
    }

    /// A fresh entity id (unique cluster-wide), e.g. for a persistent entity to be loaded
    /// later with [`Ctx::load_entity_anywhere`].
    pub fn new_id(&mut self) -> Id {
        let ms = self.core.unix_ms();
        self.core.ids.next(ms)
    }

    /// This game's id.
    pub fn game_id(&self) -> u16 {
        self.core.game_id
    }

    /// Who made the current call (`Caller::Server(Id::NIL)` inside hooks).
    pub fn caller(&self) -> Caller {
        self.caller
    }

    /// The current time, as passed in by the runtime.
    pub fn now(&self) -> Instant {
        self.core.now
    }

    /// The client bound to this entity, if any.
    pub fn client(&self) -> Option<ClientRef> {
        *self.client
    }

    /// Games currently known to be online (this one included).
    pub fn online_games(&self) -> Vec<u16> {
        self.core.online_games.iter().copied().collect()
    }

    /// Calls `method` on entity `target`, wherever it lives (same API for local and remote).
    /// Local calls run after the current handler returns.
    pub fn call(&mut self, target: Id, method: &str, args: Vec<Value>) {
        self.call_id(target, method_id(method), args);
    }

    /// [`Ctx::call`] with a precomputed method id.
    pub fn call_id(&mut self, target: Id, method: u32, args: Vec<Value>) {
        let caller = Caller::Server(self.id);
        if self.core.local_ids.contains(&target) {
            self.core.local.push_back(LocalOp::Call { target, method, args, caller });
        } else {
            let mut enc = Vec::new();
            encode_args(&args, &mut enc);
            self.core.send(target, Msg::Call { target, method, args: enc, caller });
        }
    }

    /// Calls `method` on this entity's client; a no-op (logged at debug) without a client.
    pub fn call_client(&mut self, method: &str, args: Vec<Value>) {
        self.flush_attrs();
        match *self.client {
            Some(c) => {
                let msg = ServerMsg::Call { id: self.id, method: method.to_owned(), args };
                self.core.send_to_client(self.id, c, &msg);
            }
            None => debug!("{}: call_client({method}) without a client", self.id),
        }
    }

    /// Creates an entity of `type_name` on this game; it exists once the current handler
    /// returns. Returns its id at once.
    pub fn create_entity_locally(&mut self, type_name: &str) -> Result<Id, CreateError> {
        let ty = self.reg.type_index(type_name).ok_or_else(|| CreateError::UnknownType(type_name.to_owned()))?;
        let id = self.core.ids.next(self.core.unix_ms());
        self.core.local_ids.insert(id);
        self.core.local.push_back(LocalOp::Create { ty, id });
        Ok(id)
    }

    /// Creates an entity of `type_name` on game `game`; calls sent to the returned id right
    /// away are delivered after the creation, in order.
    pub fn create_entity_on_game(&mut self, game: u16, type_name: &str) -> Result<Id, CreateError> {
        if game == self.core.game_id {
            return self.create_entity_locally(type_name);
        }
        if self.reg.type_index(type_name).is_none() {
            return Err(CreateError::UnknownType(type_name.to_owned()));
        }
        if !self.core.online_games.contains(&game) {
            return Err(CreateError::GameOffline(game));
        }
        let id = self.core.ids.next(self.core.unix_ms());
        self.core.send(id, Msg::CreateEntity { game, id, type_name: type_name.to_owned(), data: Vec::new() });
        Ok(id)
    }

    /// Creates an entity of `type_name` on the least-loaded live game (chosen by the new
    /// entity's dispatcher from the loads games report every second).
    pub fn create_entity_anywhere(&mut self, type_name: &str) -> Result<Id, CreateError> {
        if self.reg.type_index(type_name).is_none() {
            return Err(CreateError::UnknownType(type_name.to_owned()));
        }
        let id = self.core.ids.next(self.core.unix_ms());
        self.core.send(id, Msg::CreateEntity { game: 0, id, type_name: type_name.to_owned(), data: Vec::new() });
        Ok(id)
    }

    /// Creates a space of kind `kind` on the least-loaded live game.
    pub fn create_space_anywhere(&mut self, kind: i64) -> Id {
        let id = self.core.ids.next(self.core.unix_ms());
        let type_name = self.reg.space_type.map(|t| self.reg.types[t].name).unwrap_or("__space__").to_owned();
        let mut data = Vec::new();
        encode_args(&[Value::Int(kind)], &mut data);
        self.core.send(id, Msg::CreateEntity { game: 0, id, type_name, data });
        id
    }

    /// Calls `method` on the nil space of every online game (this one included), exactly once
    /// each: one message per game through that nil space's dispatcher.
    pub fn call_nil_spaces(&mut self, method: &str, args: Vec<Value>) {
        let games: Vec<u16> = self.core.online_games.iter().copied().collect();
        for g in games {
            self.call(nil_space_id(g), method, args.clone());
        }
    }

    /// Hands this entity's client to local entity `other` once the current handler returns:
    /// the client first sees this entity's view destroyed (neighbours, space, the entity), then
    /// `other` created as its player with its space and neighbours. Hooks: this entity's
    /// `on_client_disconnected`, then `other`'s `on_client_connected`.
    pub fn give_client_to(&mut self, other: Id) {
        self.core.local.push_back(LocalOp::GiveClient { from: self.id, to: other });
    }

    /// Sets filter property `key` of this entity's client (empty `value` removes it); used by
    /// [`Ctx::call_filtered_clients`]. No-op without a client.
    pub fn set_client_filter_prop(&mut self, key: &str, value: &str) {
        if let Some(c) = *self.client {
            let msg =
                Msg::SetFilterProp { gate: c.gate, client: c.client, key: key.to_owned(), value: value.to_owned() };
            self.core.send(self.id, msg);
        }
    }

    /// Calls `method` (with `args`) on the player entity of every client, on every gate, whose
    /// filter property `key` satisfies `op value` (`"="`, `"!="`, `"<"`, `">"`, `"<="`, `">="`;
    /// numbers compare numerically); an empty `key` selects every client. Each gate gets it
    /// exactly once, however many dispatchers there are. Unknown `op`: nothing is sent.
    pub fn call_filtered_clients(&mut self, key: &str, op: &str, value: &str, method: &str, args: Vec<Value>) {
        let op = match op {
            "=" | "==" => 0,
            "!=" => 1,
            "<" => 2,
            ">" => 3,
            "<=" => 4,
            ">=" => 5,
            other => {
                warn!("call_filtered_clients: unknown operator {other:?}");
                return;
            }
        };
        let mut enc = Vec::new();
        encode_args(&args, &mut enc);
        let msg = Msg::FilteredCall {
            key: key.to_owned(),
            op,
            value: value.to_owned(),
            method: method.to_owned(),
            args: enc,
        };
        self.core.send_idx(0, msg);
    }

    /// Calls `method` on every connected client's player entity.
    pub fn call_all_clients_everywhere(&mut self, method: &str, args: Vec<Value>) {
        self.call_filtered_clients("", "=", "", method, args);
    }

    fn service(&self, name: &str, shard: u16) -> Option<Id> {
        self.core.services.get(&(name.to_owned(), shard)).map(|(e, _)| *e).filter(|e| !e.is_nil())
    }

    fn shards(&self, name: &str) -> u16 {
        self.reg.type_index(name).map(|t| self.reg.types[t].service_shards).unwrap_or(0)
    }

    /// Calls `method` on shard `shard` of service `name`; false (logged, counted) if that shard
    /// has no provider right now.
    pub fn call_service_shard_index(&mut self, name: &str, shard: u16, method: &str, args: Vec<Value>) -> bool {
        match self.service(name, shard) {
            Some(e) => {
                self.call(e, method, args);
                true
            }
            None => {
                self.core.stats.undeliverable += 1;
                warn!("service {name}#{shard} has no provider; {method} not delivered");
                false
            }
        }
    }

    /// Calls `method` on the shard of service `name` that owns `key` (`fnv1a32(key) % shards`).
    pub fn call_service_shard_key(&mut self, name: &str, key: &str, method: &str, args: Vec<Value>) -> bool {
        let n = self.shards(name).max(1);
        let shard = (oxworld_net::id::fnv1a32(key.as_bytes()) % u32::from(n)) as u16;
        self.call_service_shard_index(name, shard, method, args)
    }

    /// Calls `method` on one shard of service `name` (round robin over the shards).
    pub fn call_service_any(&mut self, name: &str, method: &str, args: Vec<Value>) -> bool {
        let n = self.shards(name).max(1);
        self.core.service_rr = self.core.service_rr.wrapping_add(1);
        let shard = (self.core.service_rr % usize::from(n)) as u16;
        self.call_service_shard_index(name, shard, method, args)
    }

    /// Calls `method` on every shard of service `name`; returns how many were reached.
    pub fn call_service_all(&mut self, name: &str, method: &str, args: Vec<Value>) -> usize {
        (0..self.shards(name)).filter(|&s| self.call_service_shard_index(name, s, method, args.clone())).count()
    }

    /// The current providers of service `name`, by shard (missing shards left out).
    pub fn service_providers(&self, name: &str) -> Vec<Id> {
        (0..self.shards(name)).filter_map(|s| self.service(name, s)).collect()
    }

    /// Destroys this entity once the current handler returns.
    pub fn destroy(&mut self) {
        *self.destroy = true;
    }
}

/// The portable form of timers `(handle, timer)` of an entity of type `ty`.
fn timer_images<'t>(
    ty: &crate::entity::TypeDesc,
    timers: impl Iterator<Item = (TimerId, &'t Timer)>,
    now: Instant,
) -> Vec<TimerImage> {
    timers
        .filter_map(|(id, t)| {
            let name = ty.by_id.get(&t.method).map(|&i| ty.methods[i].name)?;
            Some(TimerImage {
                method: name.to_owned(),
                remaining: t.deadline.saturating_duration_since(now),
                repeat: t.repeat,
                args: t.args.clone(),
                id: Some(id.0),
            })
        })
        .collect()
}

/// The portable form of `entity`'s crontab entries (removed from `cron`).
fn take_cron(cron: &mut Vec<CronEntry>, ty: &crate::entity::TypeDesc, entity: Id) -> Vec<CronImage> {
    let mut out = Vec::new();
    cron.retain(|c| {
        if c.entity != entity {
            return true;
        }
        if let Some(&i) = ty.by_id.get(&c.method) {
            out.push(CronImage { spec: c.text.clone(), method: ty.methods[i].name.to_owned(), args: c.args.clone() });
        }
        false
    });
    out
}

/// The space type used when a game registers none.
struct BuiltinSpace;

impl crate::entity::Entity for BuiltinSpace {}

/// The entities of one game and everything they act on.
pub struct World {
    core: WorldCore,
    reg: Registry,
    entities: FxHashMap<Id, Slot>,
    boot_ty: usize,
}

impl World {
    /// A world for game `game_id` in a cluster of `n_dispatchers`. `boot_override` (config
    /// `boot_entity`) replaces the registry's boot type. `seed` seeds id generation;
    /// `clock_base` pairs a monotonic instant with the Unix milliseconds at that instant.
    pub fn new(
        reg: Registry,
        game_id: u16,
        n_dispatchers: usize,
        boot_override: Option<&str>,
        seed: u64,
        clock_base: (Instant, u64),
    ) -> Result<World, RegistryError> {
        let mut w = World::build(reg, game_id, n_dispatchers, boot_override, seed, clock_base)?;
        let nil_space = w.core.nil_space;
        w.create_space_now(nil_space, 0);
        Ok(w)
    }

    /// A world with no entities at all, not even its nil space (for [`World::new`] and
    /// restores).
    fn build(
        reg: Registry,
        game_id: u16,
        n_dispatchers: usize,
        boot_override: Option<&str>,
        seed: u64,
        clock_base: (Instant, u64),
    ) -> Result<World, RegistryError> {
        let mut reg = reg;
        let boot = boot_override.or(reg.boot_type).unwrap_or("Boot");
        reg.validate(boot)?;
        let boot_ty = reg.type_index(boot).ok_or_else(|| RegistryError::UnknownBootType(boot.to_owned()))?;
        if reg.space_type.is_none() {
            reg.space("__space__", || BuiltinSpace);
        }
        let nil_space = nil_space_id(game_id);
        let w = World {
            core: WorldCore {
                game_id,
                n_dispatchers: n_dispatchers.max(1),
                ids: IdGen::new(seed),
                clock_base,
                now: clock_base.0,
                out: Vec::new(),
                local: VecDeque::new(),
                online_games: BTreeSet::from([game_id]),
                stats: Stats::default(),
                local_ids: Default::default(),
                timers: Timers::starting_at(u64::from(game_id) << 40),
                spaces: Spaces::default(),
                clients: FxHashMap::default(),
                nil_space,
                sync_interval: DEFAULT_POSITION_SYNC,
                next_sync: clock_base.0,
                migrations: FxHashMap::default(),
                services: BTreeMap::new(),
                pending_services: FxHashMap::default(),
                missing_checks: FxHashMap::default(),
                next_service_check: clock_base.0 + SERVICE_CHECK_EVERY,
                service_rr: 0,
                cron: Vec::new(),
                cron_minute: clock_base.1 / 60_000,
                store: persist::StoreState {
                    save_interval: persist::DEFAULT_SAVE_INTERVAL,
                    next_save: Some(clock_base.0 + persist::DEFAULT_SAVE_INTERVAL),
                    ..Default::default()
                },
            },
            reg,
            entities: FxHashMap::default(),
            boot_ty,
        };
        Ok(w)
    }

    /// Sets how often moved entities' positions are sent to clients (`position_sync_interval_ms`).
    pub fn set_position_sync_interval(&mut self, every: Duration) {
        self.core.sync_interval = every.max(Duration::from_millis(5));
    }

    /// This game's nil space.
    pub fn nil_space(&self) -> Id {
        self.core.nil_space
    }

    /// Position of a local entity.
    pub fn position_of(&self, id: Id) -> Option<Pos> {
        self.core.spaces.spatial(id).map(|s| s.pos)
    }

    /// Space of a local entity.
    pub fn space_of(&self, id: Id) -> Option<Id> {
        self.core.spaces.spatial(id).map(|s| s.space)
    }

    fn create_space_now(&mut self, id: Id, kind: i64) {
        let Some(ty) = self.reg.space_type else { return };
        self.core.spaces.add_space(id, kind, id != self.core.nil_space);
        let slot = Slot { ty, obj: Some((self.reg.types[ty].factory)()), client: None, attrs: Attrs::default() };
        self.entities.insert(id, slot);
        self.core.local_ids.insert(id);
        self.core.send(id, Msg::EntityCreated { id });
        self.with_entity(id, Caller::Server(Id::NIL), |e, ctx| {
            e.on_created(ctx);
            Ok(())
        });
    }

    /// The create message for `target` as seen by a client that is not its own.
    fn create_msg(&self, target: Id, is_player: bool) -> Option<ServerMsg> {
        let slot = self.entities.get(&target)?;
        let ty = &self.reg.types[slot.ty];
        let audience = if is_player { Audience::Own } else { Audience::Others };
        let mut attrs = slot.attrs.snapshot(&ty.schema, audience);
        if let (Some(sp), Value::Map(m)) = (self.core.spaces.space(target), &mut attrs) {
            m.insert("_kind".to_owned(), Value::Int(sp.kind));
        }
        let pos = self.core.spaces.spatial(target).map(|s| s.pos).unwrap_or_default();
        Some(ServerMsg::CreateEntity { is_player, id: target, type_name: ty.name.to_owned(), attrs, pos })
    }

    /// Tells watchers' clients who appeared and disappeared, then runs `on_enter_aoi` /
    /// `on_leave_aoi` of watchers whose type asked for them (after the move, in order).
    fn dispatch_sights(&mut self, sights: &[Sight]) {
        for s in sights {
            let Some(&c) = self.core.clients.get(&s.watcher) else { continue };
            if s.enter {
                if let Some(msg) = self.create_msg(s.target, false) {
                    self.core.send_to_client(s.watcher, c, &msg);
                }
            } else {
                self.core.send_to_client(s.watcher, c, &ServerMsg::DestroyEntity { id: s.target });
            }
        }
        for s in sights {
            let hooked = self.entities.get(&s.watcher).is_some_and(|e| self.reg.types[e.ty].aoi_hooks);
            if hooked {
                let (target, enter) = (s.target, s.enter);
                self.with_entity(s.watcher, Caller::Server(Id::NIL), |e, ctx| {
                    if enter {
                        e.on_enter_aoi(ctx, target);
                    } else {
                        e.on_leave_aoi(ctx, target);
                    }
                    Ok(())
                });
            }
        }
    }

    /// Takes `entity` out of its space: clients lose sight, hooks run. Returns the old space.
    fn leave_space(&mut self, entity: Id) -> Option<Id> {
        let mut sights = Vec::new();
        let old = self.core.spaces.leave(entity, &mut sights)?;
        self.dispatch_sights(&sights);
        if old != self.core.nil_space
            && let Some(&c) = self.core.clients.get(&entity)
        {
            self.core.send_to_client(entity, c, &ServerMsg::DestroyEntity { id: old });
        }
        self.with_entity(old, Caller::Server(Id::NIL), |e, ctx| {
            e.on_entity_leave_space(ctx, entity);
            Ok(())
        });
        self.with_entity(entity, Caller::Server(Id::NIL), |e, ctx| {
            e.on_leave_space(ctx, old);
            Ok(())
        });
        Some(old)
    }

    /// Puts `entity` into local `space` at `pos`: its client sees the space, then neighbours.
    fn join_space(&mut self, entity: Id, space: Id, pos: Pos) {
        let Some(slot) = self.entities.get(&entity) else { return };
        let radius = self.reg.types[slot.ty].aoi_radius;
        let radius = self.core.spaces.spatial(entity).and_then(|s| s.radius).or(radius);
        if space != self.core.nil_space
            && let Some(&c) = self.core.clients.get(&entity)
            && let Some(msg) = self.create_msg(space, false)
        {
            self.core.send_to_client(entity, c, &msg);
        }
        let mut sights = Vec::new();
        self.core.spaces.join(entity, space, pos, radius, &mut sights);
        self.dispatch_sights(&sights);
        self.with_entity(space, Caller::Server(Id::NIL), |e, ctx| {
            e.on_entity_enter_space(ctx, entity);
            Ok(())
        });
        self.with_entity(entity, Caller::Server(Id::NIL), |e, ctx| {
            e.on_enter_space(ctx);
            Ok(())
        });
    }

    /// Sends `owner`'s client the destroys of everything it shows for `owner`, routed via
    /// `route` (so they stay ordered before what follows on that route), and unbinds it.
    fn release_client(&mut self, owner: Id, route: Id) -> Option<ClientRef> {
        let c = self.core.clients.remove(&owner)?;
        for n in self.core.spaces.seen(owner) {
            self.core.send_to_client(route, c, &ServerMsg::DestroyEntity { id: n });
        }
        if let Some(space) = self.space_of(owner)
            && space != self.core.nil_space
        {
            self.core.send_to_client(route, c, &ServerMsg::DestroyEntity { id: space });
        }
        self.core.send_to_client(route, c, &ServerMsg::DestroyEntity { id: owner });
        if let Some(s) = self.entities.get_mut(&owner) {
            s.client = None;
        }
        self.with_entity(owner, Caller::Server(Id::NIL), |e, ctx| {
            e.on_client_disconnected(ctx);
            Ok(())
        });
        Some(c)
    }

    fn give_client_now(&mut self, from: Id, to: Id) {
        if from == to || !self.entities.contains_key(&to) || !self.core.clients.contains_key(&from) {
            warn!("game{}: give_client_to from {from} to {to}: no client or no such local entity", self.core.game_id);
            return;
        }
        // A client already bound to `to` is released first (it sees `to` go away).
        self.release_client(to, to);
        let Some(c) = self.release_client(from, to) else { return };
        self.attach_client(to, c);
    }

    fn on_space_game(&mut self, space: Id, entity: Id, game: u16) {
        let Some(&(want, pos, _)) = self.core.migrations.get(&entity) else { return };
        if want != space {
            return;
        }
        if game == 0 || !self.entities.contains_key(&entity) {
            warn!("game{}: {entity} cannot enter {space}: no such space", self.core.game_id);
            self.core.migrations.remove(&entity);
        } else if game == self.core.game_id {
            self.core.migrations.remove(&entity);
            self.enter_space_now(entity, space, pos);
        } else {
            self.core.migrations.insert(entity, (space, pos, game));
            self.core.send(entity, Msg::MigrateRequest { entity });
        }
    }

    fn on_migrate_ack(&mut self, entity: Id) {
        match self.core.migrations.remove(&entity) {
            Some((space, pos, game)) if game != 0 && self.entities.contains_key(&entity) => {
                self.migrate_out(entity, game, space, pos);
            }
            _ => self.core.send(entity, Msg::CancelMigrate { entity }),
        }
    }

    /// Sends `entity` to `game`: its client keeps the entity but loses its space and
    /// neighbours; everything else travels in an [`EntityImage`].
    fn migrate_out(&mut self, entity: Id, game: u16, space: Id, pos: Pos) {
        self.leave_space(entity);
        self.with_entity(entity, Caller::Server(Id::NIL), |e, ctx| {
            e.on_migrate_out(ctx);
            Ok(())
        });
        let Some(slot) = self.entities.remove(&entity) else { return };
        let ty = &self.reg.types[slot.ty];
        let now = self.core.now;
        let taken = self.core.timers.take_entity(entity);
        let timers = timer_images(ty, taken.iter().map(|(i, t)| (*i, t)), now);
        let cron = take_cron(&mut self.core.cron, ty, entity);
        let spatial = self.core.spaces.spatial(entity).copied();
        let image = EntityImage {
            type_name: ty.name.to_owned(),
            attrs: slot.attrs.value().clone(),
            timers,
            client: self.core.clients.remove(&entity),
            pos: [pos.x, pos.y, pos.z, pos.yaw],
            space,
            state: slot.obj.as_ref().map(|o| o.save()).unwrap_or(Value::Nil),
            client_move: spatial.is_some_and(|s| s.client_move),
            radius: spatial.and_then(|s| s.radius),
            cron,
            space_kind: None,
        };
        self.core.local_ids.remove(&entity);
        self.core.spaces.forget(entity);
        self.core.stats.migrated_out += 1;
        self.core.send(entity, Msg::RealMigrate { entity, game, data: image.encode() });
    }

    /// Rebuilds an entity sent by another game and puts it into its target space.
    fn migrate_in(&mut self, entity: Id, data: &[u8]) {
        let image = match EntityImage::decode(data) {
            Ok(i) => i,
            Err(e) => {
                warn!("game{}: migrating {entity} lost: {e}", self.core.game_id);
                self.core.send(entity, Msg::EntityDestroyed { id: entity });
                return;
            }
        };
        let Some(ty) = self.reg.type_index(&image.type_name) else {
            warn!("game{}: migrating {entity} lost: unknown type {:?}", self.core.game_id, image.type_name);
            self.core.send(entity, Msg::EntityDestroyed { id: entity });
            return;
        };
        let mut obj = (self.reg.types[ty].factory)();
        obj.load(image.state);
        let mut attrs = Attrs::from_value(image.attrs);
        if self.reg.types[ty].persistent {
            // Saves sent by the old game may still be in flight; save again from here.
            attrs.mark_persistent_dirty();
        }
        let slot = Slot { ty, obj: Some(obj), client: image.client, attrs };
        self.entities.insert(entity, slot);
        self.core.local_ids.insert(entity);
        if let Some(c) = image.client {
            self.core.clients.insert(entity, c);
        }
        self.add_image_schedules(entity, ty, image.timers, image.cron);
        let [x, y, z, yaw] = image.pos;
        let pos = Pos { x, y, z, yaw };
        let radius = image.radius.or(self.reg.types[ty].aoi_radius);
        let mut sights = Vec::new();
        self.core.spaces.join(entity, self.core.nil_space, pos, radius, &mut sights);
        if let Some(sp) = self.core.spaces.spatial_mut(entity) {
            sp.client_move = image.client_move;
        }
        self.core.stats.migrated_in += 1;
        self.with_entity(entity, Caller::Server(Id::NIL), |e, ctx| {
            e.on_migrate_in(ctx);
            Ok(())
        });
        if self.core.spaces.is_space(image.space) && image.space != self.core.nil_space {
            // Out of the nil space silently (it has no AOI and no client view), into the target.
            self.core.spaces.leave(entity, &mut sights);
            self.join_space(entity, image.space, pos);
        } else if image.space == self.core.nil_space {
            // It came to this game's nil space: it is there already; run the enter hooks.
            let nil = self.core.nil_space;
            self.with_entity(nil, Caller::Server(Id::NIL), |e, ctx| {
                e.on_entity_enter_space(ctx, entity);
                Ok(())
            });
            self.with_entity(entity, Caller::Server(Id::NIL), |e, ctx| {
                e.on_enter_space(ctx);
                Ok(())
            });
        } else {
            warn!(
                "game{}: {entity} arrived but space {} is not here; it stays in the nil space",
                self.core.game_id, image.space
            );
        }
    }

    /// Re-arms the timers and crontab entries of an arrived or restored entity. Methods its
    /// type no longer has are dropped with a warning (a restore checks them first).
    fn add_image_schedules(&mut self, entity: Id, ty: usize, timers: Vec<TimerImage>, cron: Vec<CronImage>) {
        let now = self.core.now;
        for t in timers {
            let m = method_id(&t.method);
            if self.reg.types[ty].by_id.contains_key(&m) {
                let timer = Timer { entity, method: m, args: t.args, deadline: now + t.remaining, repeat: t.repeat };
                self.core.timers.add_with_id(t.id, timer);
            } else {
                warn!("game{}: {entity}: timer method {:?} no longer exists; dropped", self.core.game_id, t.method);
            }
        }
        for c in cron {
            let m = method_id(&c.method);
            match CronSpec::parse(&c.spec) {
                Ok(spec) if self.reg.types[ty].by_id.contains_key(&m) => {
                    self.core.cron.push(CronEntry { entity, spec, text: c.spec, method: m, args: c.args });
                }
                _ => warn!("game{}: {entity}: crontab entry {:?} {:?} dropped", self.core.game_id, c.spec, c.method),
            }
        }
    }

    fn enter_space_now(&mut self, entity: Id, space: Id, pos: Pos) {
        if !self.entities.contains_key(&entity) || !self.core.spaces.is_space(space) {
            warn!("game{}: {entity} cannot enter {space}: gone", self.core.game_id);
            return;
        }
        if self.core.spaces.spatial(entity).is_some_and(|s| s.space == space) {
            self.core.spaces.move_to(entity, pos);
            return;
        }
        self.leave_space(entity);
        self.join_space(entity, space, pos);
    }

    /// Applies pending moves (AOI) and, every sync interval, sends moved positions to the
    /// clients that see them.
    fn sync_spaces(&mut self, now: Instant) {
        let mut sights = Vec::new();
        self.core.spaces.flush(&mut sights);
        self.dispatch_sights(&sights);
        if now < self.core.next_sync {
            return;
        }
        self.core.next_sync = now + self.core.sync_interval;
        let moved = self.core.spaces.take_moved();
        if moved.is_empty() {
            return;
        }
        // Per recipient (the owner entity of a client): the entries it must get.
        let mut per: FxHashMap<Id, (ClientRef, Vec<(Id, Pos)>)> = FxHashMap::default();
        for (id, pos) in moved {
            let client_driven = self.core.spaces.spatial(id).is_some_and(|s| s.client_move);
            if !client_driven && let Some(&c) = self.core.clients.get(&id) {
                per.entry(id).or_insert_with(|| (c, Vec::new())).1.push((id, pos));
            }
            for w in self.core.spaces.watchers(id) {
                if let Some(&c) = self.core.clients.get(&w) {
                    per.entry(w).or_insert_with(|| (c, Vec::new())).1.push((id, pos));
                }
            }
        }
        for (owner, (c, entries)) in per {
            self.core.send_to_client(owner, c, &ServerMsg::Positions { entries });
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.core.stats
    }

    /// Number of live entities.
    pub fn entity_count(&self) -> usize {
        self.entities.len()
    }

    /// True if entity `id` lives here.
    pub fn has_entity(&self, id: Id) -> bool {
        self.entities.contains_key(&id)
    }

    /// Ids of local entities routed through dispatcher index `d` (sent in the handshake).
    pub fn entities_for_dispatcher(&self, d: usize) -> Vec<Id> {
        self.entities.keys().filter(|id| id.dispatcher_index(self.core.n_dispatchers) == d).copied().collect()
    }

    /// Replaces the set of online games (from a dispatcher's handshake answer).
    pub fn set_online_games(&mut self, games: &[u16]) {
        self.core.online_games.extend(games.iter().copied());
        self.core.online_games.insert(self.core.game_id);
    }

    /// Takes the messages to send, each with the index of the dispatcher it must go through.
    pub fn drain_output(&mut self) -> std::vec::Drain<'_, (usize, Msg)> {
        self.core.out.drain(..)
    }

    /// True while local work is queued (the runtime should tick again at once).
    pub fn has_local_work(&self) -> bool {
        !self.core.local.is_empty()
    }

    /// Handles one internal message from a dispatcher.
    pub fn handle(&mut self, now: Instant, msg: Msg) {
        self.core.now = now;
        match msg {
            Msg::CreateBoot { gate, client, boot } => {
                let c = ClientRef { gate, client };
                self.create(self.boot_ty, boot, Some(c));
            }
            Msg::CreateEntity { game, id, type_name, data } => {
                if game != self.core.game_id {
                    warn!("game{}: CreateEntity for game {game} delivered here; creating anyway", self.core.game_id);
                }
                match self.reg.type_index(&type_name) {
                    Some(ty) if Some(ty) == self.reg.space_type => {
                        let kind = decode_args(&mut Reader::new(&args_or_empty(&data)))
                            .ok()
                            .and_then(|a| a.first().and_then(Value::as_int))
                            .unwrap_or(0);
                        self.create_space_now(id, kind);
                    }
                    Some(ty) => self.create(ty, id, None),
                    None => {
                        warn!("game{}: cannot create {id}: unknown entity type {type_name:?}", self.core.game_id);
                        self.core.stats.undeliverable += 1;
                        self.core.send(id, Msg::EntityDestroyed { id });
                    }
                }
            }
            Msg::LoadEntity { id, type_name, .. } => self.start_load(id, &type_name),
            Msg::Call { target, method, args, caller } => {
                let mut r = Reader::new(&args);
                match decode_args(&mut r).and_then(|a| r.finish().map(|()| a)) {
                    Ok(a) => {
                        let mut a = Some(a);
                        if !self.queue_for_loading(target, method, &mut a, caller) {
                            self.run_call(target, method, a.unwrap_or_default(), caller);
                        }
                    }
                    Err(e) => self.refuse(
                        target,
                        method,
                        caller,
                        ErrorCode::BadArguments,
                        format!("undecodable arguments: {e}"),
                    ),
                }
            }
            Msg::ClientDisconnected { client, owner, .. } => {
                let matches = self.entities.get(&owner).is_some_and(|s| s.client.is_some_and(|c| c.client == client));
                if matches {
                    self.detach_client(owner);
                }
            }
            Msg::GateDown { gate } => {
                let ids: Vec<Id> = self
                    .entities
                    .iter()
                    .filter(|(_, s)| s.client.is_some_and(|c| c.gate == gate))
                    .map(|(id, _)| *id)
                    .collect();
                for id in ids {
                    self.detach_client(id);
                }
            }
            Msg::ClientMove { client, id, pos } => {
                let allowed = self.core.clients.get(&id).is_some_and(|c| c.client == client)
                    && self.core.spaces.spatial(id).is_some_and(|s| s.client_move);
                if allowed {
                    self.core.spaces.move_to(id, Pos { x: pos[0], y: pos[1], z: pos[2], yaw: pos[3] });
                } else {
                    debug!("game{}: client move of {id} refused", self.core.game_id);
                }
            }
            Msg::SpaceGame { space, entity, game } => self.on_space_game(space, entity, game),
            Msg::ServiceUpdate { name, shard, entity, game } => self.on_service_update(name, shard, entity, game),
            Msg::MigrateAck { entity } => self.on_migrate_ack(entity),
            Msg::RealMigrate { entity, data, .. } => self.migrate_in(entity, &data),
            Msg::CallFailed { to, target, method, reason } => {
                self.with_entity(to, Caller::Server(Id::NIL), |e, ctx| {
                    e.on_call_failed(ctx, target, method, &reason);
                    Ok(())
                });
            }
            Msg::GameUp { game } => {
                self.core.online_games.insert(game);
            }
            Msg::GameDown { game } => {
                if game != self.core.game_id {
                    self.core.online_games.remove(&game);
                }
            }
            other => warn!("game{}: unexpected {} from a dispatcher", self.core.game_id, other.name()),
        }
        self.run_local(LOCAL_OPS_PER_TICK);
    }

    /// Runs queued local work within the per-tick budget.
    pub fn tick(&mut self, now: Instant) {
        self.core.now = now;
        self.run_local(LOCAL_OPS_PER_TICK);
        for _ in 0..TIMERS_PER_TICK {
            let Some((entity, method, args)) = self.core.timers.pop_due(now) else { break };
            self.run_call(entity, method, args, Caller::Server(entity));
            self.run_local(LOCAL_OPS_PER_TICK);
        }
        self.sync_spaces(now);
        let minute = self.core.unix_ms() / 60_000;
        if minute > self.core.cron_minute {
            // A stalled loop runs the current minute's entries once, not every missed minute.
            self.core.cron_minute = minute;
            let due: Vec<(Id, u32, Vec<Value>)> = self
                .core
                .cron
                .iter()
                .filter(|c| c.spec.matches(minute))
                .map(|c| (c.entity, c.method, c.args.clone()))
                .collect();
            for (e, m, a) in due {
                self.run_call(e, m, a, Caller::Server(e));
                self.run_local(LOCAL_OPS_PER_TICK);
            }
        }
        if now >= self.core.next_service_check {
            self.core.next_service_check = now + SERVICE_CHECK_EVERY;
            self.check_services(now);
        }
        self.save_dirty(now);
    }

    fn on_service_update(&mut self, name: String, shard: u16, entity: Id, game: u16) {
        let key = (name, shard);
        if let Some((mine, _)) = self.core.pending_services.get(&key).copied()
            && !entity.is_nil()
        {
            self.core.pending_services.remove(&key);
            if mine != entity {
                // Another game registered this shard first: ours is redundant.
                self.destroy_entity(mine);
            }
        }
        if entity.is_nil() {
            self.core.services.remove(&key);
        } else {
            self.core.missing_checks.remove(&key);
            self.core.services.insert(key, (entity, game));
        }
    }

    /// Creates the service shards nobody provides. Each missing shard has one designated
    /// creator among the online games (`fnv1a32(name#shard) % games`); if that one has not
    /// delivered after a few checks, every game tries and the dispatcher keeps the first.
    fn check_services(&mut self, now: Instant) {
        let games: Vec<u16> = self.core.online_games.iter().copied().collect();
        let types: Vec<(usize, u16)> = self
            .reg
            .types
            .iter()
            .enumerate()
            .filter(|(_, t)| t.service_shards > 0)
            .map(|(i, t)| (i, t.service_shards))
            .collect();
        for (ty, shards) in types {
            let name = self.reg.types[ty].name;
            for shard in 0..shards {
                let key = (name.to_owned(), shard);
                if self.core.services.contains_key(&key) {
                    continue;
                }
                if let Some((_, since)) = self.core.pending_services.get(&key)
                    && now.duration_since(*since) < SERVICE_REGISTER_TIMEOUT
                {
                    continue;
                }
                let misses = self.core.missing_checks.entry(key.clone()).or_insert(0);
                *misses += 1;
                let reg_key = format!("{name}#{shard}");
                let h = oxworld_net::id::fnv1a32(reg_key.as_bytes()) as usize;
                let designated = games.get(h % games.len().max(1)).copied() == Some(self.core.game_id);
                if !designated && *misses < SERVICE_FALLBACK_CHECKS {
                    continue;
                }
                if let Some((old, _)) = self.core.pending_services.remove(&key) {
                    self.destroy_entity(old);
                }
                let id = self.core.ids.next(self.core.unix_ms());
                self.create(ty, id, None);
                self.core.send(id, Msg::EntityCreated { id });
                self.core.pending_services.insert(key, (id, now));
                let d = h % self.core.n_dispatchers;
                self.core.send_idx(d, Msg::ServiceRegister { name: name.to_owned(), shard, entity: id });
            }
        }
    }

    /// When [`World::tick`] should next run (timers, position sync, service checks).
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut sync = self.core.next_sync.min(self.core.next_service_check);
        if let Some(save) = self.core.store.next_save {
            sync = sync.min(save);
        }
        if !self.core.cron.is_empty() {
            let (start, base) = self.core.clock_base;
            let next_minute_ms = (self.core.cron_minute + 1) * 60_000;
            sync = sync.min(start + Duration::from_millis(next_minute_ms.saturating_sub(base)));
        }
        let sync = Some(sync);
        match (self.core.timers.next_deadline(), sync) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The load this game reports for placement: its live entities.
    pub fn load(&self) -> u32 {
        u32::try_from(self.entities.len()).unwrap_or(u32::MAX)
    }

    /// Number of live timers.
    pub fn timer_count(&self) -> usize {
        self.core.timers.len()
    }

    /// Destroys every entity (graceful stop).
    pub fn shutdown(&mut self, now: Instant) {
        self.core.now = now;
        self.run_local(LOCAL_OPS_PER_TICK);
        let ids: Vec<Id> = self.entities.keys().copied().collect();
        for id in ids {
            self.destroy_entity(id);
        }
    }

    fn run_local(&mut self, budget: usize) {
        for _ in 0..budget {
            let Some(op) = self.core.local.pop_front() else {
                return;
            };
            match op {
                LocalOp::Call { target, method, args, caller } => {
                    let mut a = Some(args);
                    if self.entities.contains_key(&target) {
                        self.run_call(target, method, a.unwrap_or_default(), caller);
                    } else if self.queue_for_loading(target, method, &mut a, caller) {
                        // Runs once the entity is loaded.
                    } else {
                        let args = a.unwrap_or_default();
                        // It left this game (migrated) after the call was queued: follow it.
                        let mut enc = Vec::new();
                        encode_args(&args, &mut enc);
                        self.core.send(target, Msg::Call { target, method, args: enc, caller });
                    }
                }
                LocalOp::Create { ty, id } => {
                    self.create(ty, id, None);
                    self.core.send(id, Msg::EntityCreated { id });
                }
                LocalOp::Destroy(id) => self.destroy_entity(id),
                LocalOp::EnterSpace { entity, space, pos } => self.enter_space_now(entity, space, pos),
                LocalOp::CreateSpace { id, kind } => self.create_space_now(id, kind),
                LocalOp::GiveClient { from, to } => self.give_client_now(from, to),
            }
        }
        if !self.core.local.is_empty() {
            warn!(
                "game{}: local work over the per-tick budget; {} ops deferred",
                self.core.game_id,
                self.core.local.len()
            );
        }
    }

    fn create(&mut self, ty: usize, id: Id, client: Option<ClientRef>) {
        self.create_with(ty, id, client, Attrs::default());
    }

    /// Creates an entity with `attrs` already set (loaded entities); persistent types are
    /// saved right after `on_created`, so `exists` sees them.
    fn create_with(&mut self, ty: usize, id: Id, client: Option<ClientRef>, attrs: Attrs) {
        if self.entities.contains_key(&id) {
            warn!("game{}: entity {id} already exists; create ignored", self.core.game_id);
            return;
        }
        let obj = (self.reg.types[ty].factory)();
        let slot = Slot { ty, obj: Some(obj), client: None, attrs };
        self.entities.insert(id, slot);
        self.core.local_ids.insert(id);
        let radius = self.reg.types[ty].aoi_radius;
        let mut sights = Vec::new();
        self.core.spaces.join(id, self.core.nil_space, Pos::default(), radius, &mut sights);
        self.with_entity(id, Caller::Server(Id::NIL), |e, ctx| {
            e.on_created(ctx);
            Ok(())
        });
        self.save_entity(id);
        if let Some(c) = client {
            self.attach_client(id, c);
        }
    }

    /// Binds `c` to entity `id`: the client gets the entity (with the attributes it may see),
    /// then `on_client_connected` runs.
    fn attach_client(&mut self, id: Id, c: ClientRef) {
        let Some(slot) = self.entities.get_mut(&id) else {
            return;
        };
        slot.client = Some(c);
        self.core.clients.insert(id, c);
        if let Some(msg) = self.create_msg(id, true) {
            self.core.send_to_client(id, c, &msg);
        }
        if let Some(space) = self.space_of(id)
            && space != self.core.nil_space
            && let Some(msg) = self.create_msg(space, false)
        {
            self.core.send_to_client(id, c, &msg);
        }
        for n in self.core.spaces.seen(id) {
            if let Some(msg) = self.create_msg(n, false) {
                self.core.send_to_client(id, c, &msg);
            }
        }
        self.with_entity(id, Caller::Server(Id::NIL), |e, ctx| {
            e.on_client_connected(ctx);
            Ok(())
        });
    }

    fn detach_client(&mut self, id: Id) {
        if let Some(s) = self.entities.get_mut(&id) {
            s.client = None;
        }
        self.core.clients.remove(&id);
        self.with_entity(id, Caller::Server(Id::NIL), |e, ctx| {
            e.on_client_disconnected(ctx);
            Ok(())
        });
    }

    fn destroy_entity(&mut self, id: Id) {
        if !self.entities.contains_key(&id) {
            return;
        }
        if let Some(members) = self.core.spaces.space(id).map(|s| s.members.iter().copied().collect::<Vec<Id>>()) {
            for m in members {
                self.destroy_entity(m);
            }
            self.core.spaces.remove_space(id);
        } else {
            self.leave_space(id);
            self.core.spaces.forget(id);
        }
        let Some(mut slot) = self.entities.remove(&id) else {
            return;
        };
        self.core.clients.remove(&id);
        self.core.local_ids.remove(&id);
        self.core.timers.remove_entity(id);
        self.core.cron.retain(|c| c.entity != id);
        if let Some(mut obj) = slot.obj.take() {
            let mut destroy = true;
            let schema = &self.reg.types[slot.ty].schema;
            let mut ctx = Ctx {
                core: &mut self.core,
                reg: &self.reg,
                id,
                caller: Caller::Server(Id::NIL),
                client: &mut slot.client,
                destroy: &mut destroy,
                attrs: &mut slot.attrs,
                schema,
                ty: slot.ty,
            };
            obj.on_destroy(&mut ctx);
            ctx.flush_attrs();
            ctx.save();
        }
        if let Some(c) = slot.client {
            self.core.send_to_client(id, c, &ServerMsg::DestroyEntity { id });
        }
        self.core.send(id, Msg::EntityDestroyed { id });
    }

    /// Runs `f` on entity `id` with a [`Ctx`]; handles a destroy it requested.
    fn with_entity(
        &mut self,
        id: Id,
        caller: Caller,
        f: impl FnOnce(&mut dyn EntityObj, &mut Ctx<'_>) -> Result<(), CallError>,
    ) -> Option<Result<(), CallError>> {
        let slot = self.entities.get_mut(&id)?;
        let mut obj = slot.obj.take()?;
        let mut client = slot.client;
        let mut attrs = std::mem::take(&mut slot.attrs);
        let ty = slot.ty;
        let schema = &self.reg.types[ty].schema;
        let mut destroy = false;
        let mut ctx = Ctx {
            core: &mut self.core,
            reg: &self.reg,
            id,
            caller,
            client: &mut client,
            destroy: &mut destroy,
            attrs: &mut attrs,
            schema,
            ty,
        };
        let r = f(obj.as_mut(), &mut ctx);
        ctx.flush_attrs();
        if let Some(slot) = self.entities.get_mut(&id) {
            slot.obj = Some(obj);
            slot.client = client;
            slot.attrs = attrs;
        }
        if destroy {
            self.core.local.push_back(LocalOp::Destroy(id));
        }
        Some(r)
    }

    fn run_call(&mut self, target: Id, method: u32, args: Vec<Value>, caller: Caller) {
        self.core.stats.calls += 1;
        let Some(slot) = self.entities.get(&target) else {
            self.refuse(target, method, caller, ErrorCode::UnknownEntity, format!("no entity {target} on this game"));
            return;
        };
        let ty = &self.reg.types[slot.ty];
        let Some(&mi) = ty.by_id.get(&method) else {
            let msg = format!("{} has no method with id {method:#010x}", ty.name);
            self.refuse(target, method, caller, ErrorCode::UnknownMethod, msg);
            return;
        };
        let m = &ty.methods[mi];
        if let Caller::Client { client, .. } = caller {
            let own = slot.client.is_some_and(|c| c.client == client);
            let allowed = match m.expose {
                Expose::Server => false,
                Expose::OwnClient => own,
                Expose::AnyClient => true,
            };
            if !allowed {
                let msg = format!("{}.{} is not exposed to this client", ty.name, m.name);
                self.refuse(target, method, caller, ErrorCode::NotExposed, msg);
                return;
            }
        }
        let (ty_idx, name) = (slot.ty, m.name);
        let r = self.with_entity(target, caller, |e, ctx| {
            let reg = ctx.reg;
            (reg.types[ty_idx].methods[mi].handler)(e.as_any_mut(), ctx, Args(args))
        });
        match r {
            Some(Ok(())) | None => {}
            Some(Err(e)) => {
                let code = match e {
                    CallError::BadArguments(_) => ErrorCode::BadArguments,
                    _ => ErrorCode::Failed,
                };
                let tn = self.reg.types[ty_idx].name;
                self.refuse(target, method, caller, code, format!("{tn}.{name}: {e}"));
            }
        }
    }

    /// Reports a call that could not be served: to the client that made it, or to the log and
    /// the undeliverable counter for server callers.
    fn refuse(&mut self, target: Id, method: u32, caller: Caller, code: ErrorCode, message: String) {
        match caller {
            Caller::Client { gate, client } => {
                self.core.stats.refused_client_calls += 1;
                debug!("game{}: refused client call: {message}", self.core.game_id);
                let msg = ServerMsg::error(code, target, method, message);
                self.core.send_to_client(target, ClientRef { gate, client }, &msg);
            }
            Caller::Server(from) => {
                self.core.stats.undeliverable += 1;
                warn!("game{}: call {method:#010x} from {from} to {target} failed: {message}", self.core.game_id);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use oxworld_net::client_proto::ServerMsg;

    use super::*;
    use crate::entity::{Entity, id_value};

    #[derive(Default)]
    struct Boot {
        created: bool,
        peer: Option<Id>,
    }

    impl Entity for Boot {
        fn on_created(&mut self, ctx: &mut Ctx<'_>) {
            self.created = true;
            ctx.attrs().set("level", 1i64);
            ctx.attrs().set("secret", "s");
        }
        fn on_client_disconnected(&mut self, ctx: &mut Ctx<'_>) {
            ctx.destroy();
        }
    }

    impl Boot {
        fn echo(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
            ctx.call_client("echo_reply", args.into_vec());
            Ok(())
        }
        fn secret(&mut self, _ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
            Ok(())
        }
        fn mine(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
            let n = args.int(0)?;
            ctx.call_client("mine_reply", vec![Value::Int(n)]);
            Ok(())
        }
        fn spawn_local(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
            let id = ctx.create_entity_locally("Helper").map_err(|e| CallError::Failed(e.to_string()))?;
            self.peer = Some(id);
            ctx.call(id, "ping", vec![id_value(ctx.id())]);
            Ok(())
        }
        fn grow(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
            let mut a = ctx.attrs();
            a.set("level", 2i64);
            a.set("secret", "t");
            let mut bag = a.list_at("bag").map_err(|e| CallError::Failed(e.to_string()))?;
            bag.append(Value::Map(Default::default()));
            bag.map_at(0).map_err(|e| CallError::Failed(e.to_string()))?.set("item", "sword");
            ctx.call_client("grown", vec![]);
            ctx.attrs().set("level", 3i64);
            Ok(())
        }
        fn start_ticking(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
            let t = ctx
                .add_repeat_timer(Duration::from_millis(100), "tock", vec![Value::Int(7)])
                .map_err(|e| CallError::Failed(e.to_string()))?;
            ctx.attrs().set("timer", Value::Int(t.0 as i64));
            ctx.add_timer(Duration::from_millis(250), "stop_ticking", vec![])
                .map_err(|e| CallError::Failed(e.to_string()))?;
            assert!(ctx.add_timer(Duration::ZERO, "no_such", vec![]).is_err());
            Ok(())
        }
        fn tock(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
            ctx.call_client("tock", args.into_vec());
            Ok(())
        }
        fn stop_ticking(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
            let t = crate::timer::TimerId(ctx.attrs().int("timer") as u64);
            assert!(ctx.cancel_timer(t));
            ctx.call_client("stopped", vec![]);
            Ok(())
        }
        fn pong(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
            ctx.call_client("pong", vec![Value::Int(args.int(0)?)]);
            Ok(())
        }
    }

    /// A player in spaces: aoi radius 10, an all_clients attribute, space hooks recorded.
    #[derive(Default)]
    struct Player;
    impl Entity for Player {
        fn on_enter_space(&mut self, ctx: &mut Ctx<'_>) {
            let kind = ctx.space_kind(ctx.space()).unwrap_or(-1);
            ctx.attrs().set("entered_kind", kind);
        }
        fn on_client_disconnected(&mut self, ctx: &mut Ctx<'_>) {
            ctx.destroy();
        }
    }
    impl Player {
        fn go(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
            let space = args.id(0)?;
            let x = args.get(1)?.as_float().unwrap_or(0.0) as f32;
            ctx.enter_space(space, Pos::at(x, 0.0, 0.0)).map_err(|e| CallError::Failed(e.to_string()))
        }
        fn walk(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
            let x = args.get(0)?.as_float().unwrap_or(0.0) as f32;
            ctx.set_position(x, 0.0, 0.0);
            Ok(())
        }
        fn shout(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
            ctx.attrs().set("mood", "loud");
            // The args name whom the call reaches (`clients_watching`), for the test to check.
            let watching = ctx.clients_watching().into_iter().map(id_value).collect();
            let n = ctx.call_all_clients("shout", watching);
            assert_eq!(n, ctx.clients_watching().len());
            Ok(())
        }
    }

    /// A space that counts who entered.
    #[derive(Default)]
    struct Arena;
    impl Entity for Arena {
        fn on_entity_enter_space(&mut self, ctx: &mut Ctx<'_>, _entity: Id) {
            let n = ctx.attrs().int("entered");
            ctx.attrs().set("entered", n + 1);
        }
    }

    /// Records AOI enters and leaves it is told about (`aoi_hooks`).
    #[derive(Default)]
    struct Sentry;
    impl Entity for Sentry {
        fn on_enter_aoi(&mut self, ctx: &mut Ctx<'_>, other: Id) {
            let mut a = ctx.attrs();
            if let Ok(mut l) = a.list_at("log") {
                l.append(Value::from(format!("+{}", other.0[0]).as_str()));
            }
        }
        fn on_leave_aoi(&mut self, ctx: &mut Ctx<'_>, other: Id) {
            let mut a = ctx.attrs();
            if let Ok(mut l) = a.list_at("log") {
                l.append(Value::from(format!("-{}", other.0[0]).as_str()));
            }
        }
    }

    struct Helper;
    impl Entity for Helper {}
    impl Helper {
        fn ping(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
            ctx.call(args.id(0)?, "pong", vec![Value::Int(i64::from(ctx.game_id()))]);
            Ok(())
        }
    }

    fn world() -> World {
        let mut reg = Registry::new();
        reg.entity("Boot", Boot::default)
            .method("echo", Expose::AnyClient, Boot::echo)
            .method("secret", Expose::Server, Boot::secret)
            .method("mine", Expose::OwnClient, Boot::mine)
            .method("spawn_local", Expose::OwnClient, Boot::spawn_local)
            .method("pong", Expose::Server, Boot::pong)
            .method("grow", Expose::OwnClient, Boot::grow)
            .method("start_ticking", Expose::OwnClient, Boot::start_ticking)
            .method("tock", Expose::Server, Boot::tock)
            .method("stop_ticking", Expose::Server, Boot::stop_ticking)
            .attr("level", crate::attr::AttrFlags::ALL_CLIENTS)
            .attr("bag", crate::attr::AttrFlags::CLIENT);
        reg.entity("Helper", || Helper).method("ping", Expose::Server, Helper::ping);
        reg.entity("Player", Player::default)
            .aoi(10.0)
            .attr("mood", crate::attr::AttrFlags::ALL_CLIENTS)
            .attr("entered_kind", crate::attr::AttrFlags::CLIENT)
            .method("go", Expose::OwnClient, Player::go)
            .method("walk", Expose::OwnClient, Player::walk)
            .method("shout", Expose::OwnClient, Player::shout);
        reg.space("Arena", Arena::default).attr("entered", crate::attr::AttrFlags::ALL_CLIENTS);
        reg.entity("Sentry", Sentry::default).aoi(10.0).aoi_hooks();
        reg.boot("Boot");
        let now = Instant::now();
        World::new(reg, 1, 2, None, 42, (now, 1_700_000_000_000)).expect("valid registry")
    }

    const GATE: u16 = 1;
    const CLIENT: Id = Id([0xc1; 16]);
    const BOOT: Id = Id([0xb0; 16]);

    /// Client messages the world produced, decoded.
    fn client_msgs(w: &mut World) -> Vec<ServerMsg> {
        w.drain_output()
            .filter_map(|(_, m)| match m {
                Msg::ToClient { payload, .. } => Some(ServerMsg::decode(&payload).expect("valid client msg")),
                _ => None,
            })
            .collect()
    }

    fn client_call(w: &mut World, client: Id, target: Id, method: &str, args: Vec<Value>) {
        let mut enc = Vec::new();
        encode_args(&args, &mut enc);
        let caller = Caller::Client { gate: GATE, client };
        w.handle(Instant::now(), Msg::Call { target, method: method_id(method), args: enc, caller });
    }

    fn booted() -> World {
        let mut w = world();
        w.handle(Instant::now(), Msg::CreateBoot { gate: GATE, client: CLIENT, boot: BOOT });
        let msgs = client_msgs(&mut w);
        assert!(matches!(&msgs[..], [ServerMsg::CreateEntity { is_player: true, id, .. }] if *id == BOOT), "{msgs:?}");
        w
    }

    #[test]
    fn attributes_reach_the_own_client_in_order() {
        let mut w = world();
        w.handle(Instant::now(), Msg::CreateBoot { gate: GATE, client: CLIENT, boot: BOOT });
        let created = client_msgs(&mut w);
        let want_attrs = Value::Map([("level".to_owned(), Value::Int(1))].into());
        assert!(
            matches!(&created[..], [ServerMsg::CreateEntity { attrs, .. }] if *attrs == want_attrs),
            "create carries the visible attributes set in on_created, not the server-only one: {created:?}"
        );
        client_call(&mut w, CLIENT, BOOT, "grow", vec![]);
        let msgs = client_msgs(&mut w);
        // Changes before the client call arrive before it; the later change after it.
        assert!(matches!(&msgs[0], ServerMsg::AttrOps { ops, .. } if ops.len() == 4), "{msgs:?}");
        assert!(matches!(&msgs[1], ServerMsg::Call { method, .. } if method == "grown"));
        assert!(matches!(&msgs[2], ServerMsg::AttrOps { ops, .. } if ops.len() == 1));
        let mut replica = want_attrs;
        for m in &msgs {
            if let ServerMsg::AttrOps { ops, .. } = m {
                for op in ops {
                    op.apply(&mut replica).expect("applies");
                }
            }
        }
        let bag = Value::List(vec![Value::Map([("item".to_owned(), Value::from("sword"))].into())]);
        assert_eq!(replica, Value::Map([("bag".to_owned(), bag), ("level".to_owned(), Value::Int(3))].into()));
    }

    #[test]
    fn timers_fire_by_injected_time_and_cancel() {
        let mut w = booted();
        let t0 = Instant::now();
        let enc = {
            let mut b = Vec::new();
            encode_args(&[], &mut b);
            b
        };
        let caller = Caller::Client { gate: GATE, client: CLIENT };
        w.handle(t0, Msg::Call { target: BOOT, method: method_id("start_ticking"), args: enc, caller });
        client_msgs(&mut w);
        assert_eq!(w.timer_count(), 2);
        assert_eq!(w.core.timers.next_deadline(), Some(t0 + Duration::from_millis(100)));
        let mut seen = Vec::new();
        for step in 1..=6u64 {
            w.tick(t0 + Duration::from_millis(50 * step));
            for m in client_msgs(&mut w) {
                if let ServerMsg::Call { method, .. } = m {
                    seen.push((50 * step, method));
                }
            }
        }
        let want: Vec<(u64, String)> = vec![(100, "tock".into()), (200, "tock".into()), (250, "stopped".into())];
        assert_eq!(seen, want);
        assert_eq!(w.timer_count(), 0);
        // Destroying an entity drops its timers.
        let mut w = booted();
        let caller = Caller::Client { gate: GATE, client: CLIENT };
        let mut b = Vec::new();
        encode_args(&[], &mut b);
        w.handle(t0, Msg::Call { target: BOOT, method: method_id("start_ticking"), args: b, caller });
        w.handle(t0, Msg::ClientDisconnected { gate: GATE, client: CLIENT, owner: BOOT });
        assert_eq!(w.timer_count(), 0);
    }

    /// Client messages per client id.
    fn per_client(w: &mut World) -> std::collections::HashMap<Id, Vec<ServerMsg>> {
        let mut m: std::collections::HashMap<Id, Vec<ServerMsg>> = Default::default();
        for (_, msg) in w.drain_output() {
            if let Msg::ToClient { client, payload, .. } = msg {
                m.entry(client).or_default().push(ServerMsg::decode(&payload).expect("valid"));
            }
        }
        m
    }

    fn args(v: Vec<Value>) -> Vec<u8> {
        let mut b = Vec::new();
        encode_args(&v, &mut b);
        b
    }

    #[test]
    fn spaces_aoi_and_client_views() {
        let mut reg_world = world();
        let w = &mut reg_world;
        let t0 = Instant::now();
        // Two players (boot override: Player) on clients A and B.
        let (ca, cb) = (Id([0xa0; 16]), Id([0xb0; 16]));
        let (pa, pb) = (Id([0x0a; 16]), Id([0x0b; 16]));
        let ty = w.reg.type_index("Player").expect("registered");
        w.create(ty, pa, Some(ClientRef { gate: GATE, client: ca }));
        w.create(ty, pb, Some(ClientRef { gate: GATE, client: cb }));
        assert_eq!(w.space_of(pa), Some(w.nil_space()));
        per_client(w);
        // A space of kind 7, created by entity code (a local op), then both enter it.
        let space = {
            let mut ctx_space = Id::NIL;
            w.with_entity(pa, Caller::Server(Id::NIL), |_, ctx| {
                ctx_space = ctx.create_space_locally(7);
                Ok(())
            });
            w.run_local(10);
            ctx_space
        };
        let call = |w: &mut World, client: Id, target: Id, m: &str, a: Vec<Value>| {
            let caller = Caller::Client { gate: GATE, client };
            w.handle(t0, Msg::Call { target, method: method_id(m), args: args(a), caller });
        };
        call(w, ca, pa, "go", vec![id_value(space), Value::Float(0.0)]);
        let msgs = per_client(w);
        let a_msgs = &msgs[&ca];
        assert!(
            matches!(&a_msgs[0], ServerMsg::CreateEntity { id, is_player: false, attrs, .. }
            if *id == space && matches!(attrs, Value::Map(m) if m.get("_kind") == Some(&Value::Int(7)))),
            "{a_msgs:?}"
        );
        call(w, cb, pb, "go", vec![id_value(space), Value::Float(5.0)]);
        let msgs = per_client(w);
        // B sees the space then A; A sees B appear (both radius 10, distance 5).
        let b_ids: Vec<Id> = msgs[&cb]
            .iter()
            .filter_map(|m| match m {
                ServerMsg::CreateEntity { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(b_ids, vec![space, pa], "{:?}", msgs[&cb]);
        assert!(msgs[&ca].iter().any(|m| matches!(m, ServerMsg::CreateEntity { id, .. } if *id == pb)));
        // all_clients attributes and call_all_clients reach the neighbour's client.
        call(w, ca, pa, "shout", vec![]);
        let msgs = per_client(w);
        assert!(msgs[&cb].iter().any(|m| matches!(m, ServerMsg::AttrOps { id, .. } if *id == pa)), "{:?}", msgs[&cb]);
        let shout = ServerMsg::Call { id: pa, method: "shout".into(), args: vec![id_value(pa), id_value(pb)] };
        assert!(msgs[&cb].contains(&shout), "{:?}", msgs[&cb]);
        assert!(msgs[&ca].contains(&shout), "the own client too");
        // Walking out of range: leave after the tick (not inside the handler).
        call(w, cb, pb, "walk", vec![Value::Float(50.0)]);
        assert!(per_client(w).values().flatten().all(|m| !matches!(m, ServerMsg::DestroyEntity { .. })));
        w.tick(t0 + Duration::from_millis(200));
        let msgs = per_client(w);
        assert!(msgs[&ca].contains(&ServerMsg::DestroyEntity { id: pb }), "{msgs:?}");
        assert!(msgs[&cb].contains(&ServerMsg::DestroyEntity { id: pa }));
        // B's own client gets its position at the sync.
        assert!(msgs[&cb].iter().any(|m| matches!(m, ServerMsg::Positions { entries } if entries[0].0 == pb)));
        // Out of range, a call to all clients reaches A's own only.
        call(w, ca, pa, "shout", vec![]);
        let msgs = per_client(w);
        assert!(msgs[&ca].contains(&ServerMsg::Call { id: pa, method: "shout".into(), args: vec![id_value(pa)] }));
        assert!(msgs.get(&cb).is_none_or(|m| m.iter().all(|m| !matches!(m, ServerMsg::Call { .. }))));
        // Destroying the space destroys its entities; clients see neighbours, space, self go.
        call(w, cb, pb, "walk", vec![Value::Float(1.0)]);
        w.tick(t0 + Duration::from_millis(400));
        per_client(w);
        w.destroy_entity(space);
        assert!(!w.has_entity(pa) && !w.has_entity(pb) && !w.has_entity(space));
        let msgs = per_client(w);
        let a_destroys: Vec<Id> = msgs[&ca]
            .iter()
            .filter_map(|m| match m {
                ServerMsg::DestroyEntity { id } => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(a_destroys.last(), Some(&pa), "own entity last: {a_destroys:?}");
        assert!(a_destroys.contains(&space));
    }

    /// Types registered with `aoi_hooks` hear who enters and leaves their area of interest,
    /// after the move and in order; others do not.
    #[test]
    fn aoi_hooks_report_enters_and_leaves() {
        let mut w = world();
        let t0 = Instant::now();
        let (sentry, pa, pb) = (Id([0x5e; 16]), Id([0x0a; 16]), Id([0x0b; 16]));
        w.create(w.reg.type_index("Sentry").expect("registered"), sentry, None);
        let player = w.reg.type_index("Player").expect("registered");
        w.create(player, pa, Some(ClientRef { gate: GATE, client: Id([0xa0; 16]) }));
        w.create(player, pb, None);
        let space = {
            let mut id = Id::NIL;
            w.with_entity(pa, Caller::Server(Id::NIL), |_, ctx| {
                id = ctx.create_space_locally(1);
                Ok(())
            });
            w.run_local(10);
            id
        };
        for (e, x) in [(sentry, 0.0), (pa, 5.0), (pb, 50.0)] {
            w.enter_space_now(e, space, Pos::at(x, 0.0, 0.0));
        }
        w.tick(t0);
        let log = |w: &World| w.entities[&sentry].attrs.get("log").cloned();
        assert_eq!(log(&w), Some(Value::List(vec![Value::from("+10")])), "only the one in range");
        w.with_entity(pb, Caller::Server(Id::NIL), |_, ctx| {
            ctx.set_position(3.0, 0.0, 0.0);
            Ok(())
        });
        w.with_entity(pa, Caller::Server(Id::NIL), |_, ctx| {
            ctx.set_position(90.0, 0.0, 0.0);
            Ok(())
        });
        w.tick(t0);
        let got = log(&w);
        let Some(Value::List(l)) = got else { panic!("{got:?}") };
        assert_eq!(l.len(), 3);
        assert!(l[1..].contains(&Value::from("+11")) && l[1..].contains(&Value::from("-10")), "{l:?}");
        // Players (no aoi_hooks) were not called: their attributes have no log.
        assert!(w.entities[&pa].attrs.get("log").is_none());
    }

    #[test]
    fn set_position_works_without_aoi_and_client_moves_need_permission() {
        let mut w = booted();
        let t0 = Instant::now();
        w.handle(t0, Msg::ClientMove { client: CLIENT, id: BOOT, pos: [3.0, 0.0, 4.0, 0.0] });
        assert_eq!(w.position_of(BOOT), Some(Pos::default()), "client movement not enabled");
        w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
            ctx.set_client_move(true);
            ctx.set_position(1.0, 2.0, 3.0);
            ctx.face_to(1.0, 10.0);
            Ok(())
        });
        assert_eq!(w.position_of(BOOT), Some(Pos { x: 1.0, y: 2.0, z: 3.0, yaw: 0.0 }));
        w.handle(t0, Msg::ClientMove { client: Id([9; 16]), id: BOOT, pos: [3.0, 0.0, 4.0, 0.0] });
        assert_eq!(w.position_of(BOOT).map(|p| p.x), Some(1.0), "another client's move is refused");
        w.handle(t0, Msg::ClientMove { client: CLIENT, id: BOOT, pos: [3.0, 0.0, 4.0, 90.0] });
        assert_eq!(w.position_of(BOOT), Some(Pos { x: 3.0, y: 0.0, z: 4.0, yaw: 90.0 }));
    }

    #[test]
    fn post_cron_and_global_timers() {
        let mut w = booted();
        let t0 = w.core.clock_base.0;
        // The clock base is 1_700_000_000_000 ms = minute 28_333_333 + 20 s.
        w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
            ctx.post("tock", vec![Value::Int(0)]);
            ctx.add_cron("* * * * *", "tock", vec![Value::Int(1)]).expect("cron");
            assert!(ctx.add_cron("61 * * * *", "tock", vec![]).is_err());
            assert!(ctx.add_cron("* * * * *", "nope", vec![]).is_err());
            assert!(ctx.add_global_timer(Duration::from_millis(5), None, "no_such_space_method", vec![]).is_err());
            Ok(())
        });
        w.run_local(10);
        let tocks = |w: &mut World| -> Vec<Value> {
            client_msgs(w)
                .into_iter()
                .filter_map(|m| match m {
                    ServerMsg::Call { method, args, .. } if method == "tock" => Some(args[0].clone()),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(tocks(&mut w), vec![Value::Int(0)], "post runs after the handler");
        w.tick(t0 + Duration::from_secs(30));
        assert!(tocks(&mut w).is_empty(), "same minute: nothing");
        w.tick(t0 + Duration::from_secs(41));
        assert_eq!(tocks(&mut w), vec![Value::Int(1)], "the next minute fires once");
        w.tick(t0 + Duration::from_secs(42));
        assert!(tocks(&mut w).is_empty());
        w.tick(t0 + Duration::from_secs(600));
        assert_eq!(tocks(&mut w), vec![Value::Int(1)], "after a stall: once, not nine times");
    }

    #[test]
    fn give_client_to_destroys_old_view_before_creating_new_one_on_one_route() {
        let mut w = booted();
        let mut helper = Id::NIL;
        w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
            helper = ctx.create_entity_locally("Helper").map_err(|e| CallError::Failed(e.to_string()))?;
            Ok(())
        });
        w.run_local(10);
        w.drain_output().for_each(drop);
        w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
            ctx.give_client_to(helper);
            Ok(())
        });
        w.run_local(10);
        let out: Vec<(usize, Msg)> = w.drain_output().collect();
        let route = helper.dispatcher_index(2);
        let msgs: Vec<ServerMsg> = out
            .iter()
            .filter_map(|(d, m)| match m {
                Msg::ToClient { payload, .. } => {
                    assert_eq!(*d, route, "the whole hand-over travels on the new owner's route");
                    ServerMsg::decode(payload).ok()
                }
                _ => None,
            })
            .collect();
        assert!(matches!(&msgs[0], ServerMsg::DestroyEntity { id } if *id == BOOT), "{msgs:?}");
        assert!(matches!(&msgs[1], ServerMsg::CreateEntity { id, is_player: true, .. } if *id == helper), "{msgs:?}");
        // The old owner lost its client (its on_client_disconnected destroyed it).
        assert!(!w.has_entity(BOOT));
        assert!(w.has_entity(helper));
    }

    #[test]
    fn call_nil_spaces_reaches_each_game_once() {
        let mut w = booted();
        w.set_online_games(&[1, 2, 3]);
        let calls_before = w.stats().calls;
        w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
            ctx.call_nil_spaces("hello", vec![]);
            Ok(())
        });
        w.run_local(10);
        let remote: Vec<Id> = w
            .drain_output()
            .filter_map(|(d, m)| match m {
                Msg::Call { target, .. } => {
                    assert_eq!(d, target.dispatcher_index(2));
                    Some(target)
                }
                _ => None,
            })
            .collect();
        assert_eq!(remote, vec![nil_space_id(2), nil_space_id(3)]);
        assert_eq!(w.stats().calls, calls_before + 1, "the local nil space got it once");
    }

    #[test]
    fn create_space_anywhere_is_created_as_a_space() {
        let mut w = world();
        let mut data = Vec::new();
        encode_args(&[Value::Int(5)], &mut data);
        let id = Id([0x55; 16]);
        w.handle(Instant::now(), Msg::CreateEntity { game: 1, id, type_name: "Arena".into(), data });
        assert!(w.has_entity(id));
        assert_eq!(w.core.spaces.space(id).map(|s| s.kind), Some(5));
    }

    #[test]
    fn echo_from_any_client() {
        let mut w = booted();
        client_call(&mut w, Id([7; 16]), BOOT, "echo", vec![Value::from("hi")]);
        let want = ServerMsg::Call { id: BOOT, method: "echo_reply".into(), args: vec![Value::from("hi")] };
        assert_eq!(client_msgs(&mut w), vec![want]);
    }

    fn error_code(msgs: &[ServerMsg]) -> Option<u16> {
        match msgs {
            [ServerMsg::Error { code, .. }] => Some(*code),
            _ => None,
        }
    }

    #[test]
    fn exposure_is_enforced() {
        let mut w = booted();
        client_call(&mut w, CLIENT, BOOT, "secret", vec![]);
        assert_eq!(error_code(&client_msgs(&mut w)), Some(ErrorCode::NotExposed as u16));
        client_call(&mut w, Id([7; 16]), BOOT, "mine", vec![Value::Int(1)]);
        assert_eq!(error_code(&client_msgs(&mut w)), Some(ErrorCode::NotExposed as u16));
        client_call(&mut w, CLIENT, BOOT, "mine", vec![Value::Int(1)]);
        assert!(matches!(&client_msgs(&mut w)[..], [ServerMsg::Call { method, .. }] if method == "mine_reply"));
        assert_eq!(w.stats().refused_client_calls, 2);
    }

    #[test]
    fn unknown_method_bad_args_unknown_entity() {
        let mut w = booted();
        client_call(&mut w, CLIENT, BOOT, "nope", vec![]);
        assert_eq!(error_code(&client_msgs(&mut w)), Some(ErrorCode::UnknownMethod as u16));
        client_call(&mut w, CLIENT, BOOT, "mine", vec![Value::from("not an int")]);
        assert_eq!(error_code(&client_msgs(&mut w)), Some(ErrorCode::BadArguments as u16));
        client_call(&mut w, CLIENT, Id([9; 16]), "echo", vec![]);
        assert_eq!(error_code(&client_msgs(&mut w)), Some(ErrorCode::UnknownEntity as u16));
        // Garbage argument bytes.
        let caller = Caller::Client { gate: GATE, client: CLIENT };
        w.handle(Instant::now(), Msg::Call { target: BOOT, method: method_id("echo"), args: vec![1, 2], caller });
        assert_eq!(error_code(&client_msgs(&mut w)), Some(ErrorCode::BadArguments as u16));
        // The entity is still there and works.
        client_call(&mut w, CLIENT, BOOT, "echo", vec![]);
        assert_eq!(client_msgs(&mut w).len(), 1);
    }

    #[test]
    fn server_call_to_missing_entity_is_counted() {
        let mut w = booted();
        w.handle(
            Instant::now(),
            Msg::Call { target: Id([5; 16]), method: 1, args: vec![0, 0, 0, 0], caller: Caller::Server(BOOT) },
        );
        assert_eq!(w.stats().undeliverable, 1);
    }

    #[test]
    fn local_create_and_call_roundtrip() {
        let mut w = booted();
        client_call(&mut w, CLIENT, BOOT, "spawn_local", vec![]);
        assert_eq!(w.entity_count(), 3, "nil space, boot and the new helper");
        let out: Vec<(usize, Msg)> = w.drain_output().collect();
        assert!(out.iter().any(|(_, m)| matches!(m, Msg::EntityCreated { .. })), "{out:?}");
        let pong = out.iter().find_map(|(_, m)| match m {
            Msg::ToClient { payload, .. } => ServerMsg::decode(payload).ok(),
            _ => None,
        });
        assert_eq!(pong, Some(ServerMsg::Call { id: BOOT, method: "pong".into(), args: vec![Value::Int(1)] }));
    }

    #[test]
    fn disconnect_destroys_once() {
        let mut w = booted();
        w.handle(Instant::now(), Msg::ClientDisconnected { gate: GATE, client: CLIENT, owner: BOOT });
        assert!(!w.has_entity(BOOT));
        let out: Vec<(usize, Msg)> = w.drain_output().collect();
        let destroyed = out.iter().filter(|(_, m)| matches!(m, Msg::EntityDestroyed { .. })).count();
        assert_eq!(destroyed, 1, "{out:?}");
        // A stale disconnect for another client id changes nothing.
        let mut w = booted();
        w.handle(Instant::now(), Msg::ClientDisconnected { gate: GATE, client: Id([1; 16]), owner: BOOT });
        assert!(w.has_entity(BOOT));
    }

    #[test]
    fn remote_calls_go_to_the_targets_dispatcher() {
        let mut w = booted();
        let remote = Id([0x42; 16]);
        w.handle(
            Instant::now(),
            Msg::Call {
                target: BOOT,
                method: method_id("pong"),
                args: vec![0, 0, 0, 0],
                caller: Caller::Server(remote),
            },
        );
        // pong with no args fails: counted as undeliverable (server caller).
        assert_eq!(w.stats().undeliverable, 1);
        w.drain_output().for_each(drop);
        let reg_id = BOOT;
        let _ = reg_id;
        let mut enc = Vec::new();
        encode_args(&[id_value(BOOT)], &mut enc);
        // A Helper created by a remote game calls back through the dispatcher of BOOT.
        w.handle(Instant::now(), Msg::CreateEntity { game: 1, id: remote, type_name: "Helper".into(), data: vec![] });
        w.handle(
            Instant::now(),
            Msg::Call { target: remote, method: method_id("ping"), args: enc, caller: Caller::Server(BOOT) },
        );
        // ping calls BOOT which is local: it runs at once and answers the client.
        let msgs = client_msgs(&mut w);
        assert_eq!(msgs, vec![ServerMsg::Call { id: BOOT, method: "pong".into(), args: vec![Value::Int(1)] }]);
    }
}

/// A deterministic in-memory cluster: one dispatcher, two games, a gate stand-in, wired through
/// the real `DispatcherApp` and `World` state machines (STYLE P10). Used to check migration
/// under a stream of calls without sockets or sleeps.
#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one arbitrary base instant from the clock
mod sim {
    use std::path::Path;

    use oxworld_net::app::{App, ConnId, Event, Outbox};
    use oxworld_net::config::Config;
    use oxworld_net::msg::{INTERNAL_PROTOCOL_VERSION, ProcKind};

    use super::*;
    use crate::dispatcher::DispatcherApp;
    use crate::entity::{Entity, id_value};

    const G1: ConnId = ConnId(1);
    const G2: ConnId = ConnId(2);
    const GATE: ConnId = ConnId(3);

    /// Counts calls and checks they arrive in order, exactly once; hops between spaces.
    #[derive(Default)]
    struct Walker {
        next: i64,
    }

    impl Entity for Walker {
        fn save(&self) -> Value {
            Value::Int(self.next)
        }
        fn load(&mut self, state: Value) {
            self.next = state.as_int().unwrap_or(0);
        }
    }

    impl Walker {
        fn count(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
            let seq = args.int(0)?;
            if seq != self.next + 1 {
                let bad = ctx.attrs().int("bad");
                ctx.attrs().set("bad", bad + 1);
            }
            self.next = seq;
            ctx.attrs().set("count", seq);
            ctx.call_client("counted", vec![Value::Int(seq), Value::Int(i64::from(ctx.game_id()))]);
            Ok(())
        }
        fn hop(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
            let space = args.id(0)?;
            ctx.enter_space(space, Pos::at(1.0, 0.0, 1.0)).map_err(|e| CallError::Failed(e.to_string()))
        }
        fn tick(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
            let t = ctx.attrs().int("ticks");
            ctx.attrs().set("ticks", t + 1);
            Ok(())
        }
    }

    /// A sharded service that counts pings.
    #[derive(Default)]
    struct Online;
    impl Entity for Online {}
    impl Online {
        fn ping(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
            let n = ctx.attrs().int("pings");
            ctx.attrs().set("pings", n + 1);
            Ok(())
        }
        fn spread(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
            let reached = ctx.call_service_all("Online", "ping", vec![]);
            ctx.attrs().set("reached", reached as i64);
            for k in ["alice", "bob", "carol"] {
                ctx.call_service_shard_key("Online", k, "ping", vec![]);
            }
            Ok(())
        }
    }

    fn registry() -> Registry {
        let mut reg = Registry::new();
        reg.service("Online", Online::default, 3).method("ping", Expose::Server, Online::ping).method(
            "spread",
            Expose::Server,
            Online::spread,
        );
        reg.entity("Walker", Walker::default)
            .aoi(10.0)
            .attr("count", crate::attr::AttrFlags::CLIENT)
            .method("count", Expose::OwnClient, Walker::count)
            .method("hop", Expose::Server, Walker::hop)
            .method("tick", Expose::Server, Walker::tick);
        reg.boot("Walker");
        reg
    }

    struct Sim {
        now: Instant,
        d: DispatcherApp,
        out: Outbox,
        worlds: [World; 2],
        /// What the gate delivered to the client, decoded.
        client: Vec<ServerMsg>,
        /// Games whose process "died": no longer ticked or heard.
        dead: [bool; 2],
    }

    fn enc(m: &Msg) -> Vec<u8> {
        let mut b = Vec::new();
        m.encode(&mut b);
        b
    }

    impl Sim {
        fn new() -> Sim {
            let cfg = Config::parse(
                Path::new("sim.ini"),
                "[deployment]\ndesired_dispatchers=1\ndesired_games=2\ndesired_gates=1\nsecret=s\n",
            )
            .expect("config");
            let now = Instant::now();
            let mut d = DispatcherApp::new(&cfg, 1);
            let mut out = Outbox::new();
            let peer = "127.0.0.1:1".parse().expect("addr");
            for (conn, kind, id) in [(G1, ProcKind::Game, 1), (G2, ProcKind::Game, 2), (GATE, ProcKind::Gate, 1)] {
                d.handle(now, Event::Accepted { conn, listener: 0, peer }, &mut out);
                let hello =
                    Msg::Hello { version: INTERNAL_PROTOCOL_VERSION, kind, id, secret: "s".into(), entities: vec![] };
                d.handle(now, Event::Frame { conn, data: enc(&hello) }, &mut out);
            }
            out.take_frames();
            let mk =
                |g: u16| World::new(registry(), g, 1, None, u64::from(g), (now, 1_700_000_000_000)).expect("world");
            let mut worlds = [mk(1), mk(2)];
            for w in &mut worlds {
                w.set_online_games(&[1, 2]);
            }
            let mut sim = Sim { now, d, out, worlds, client: Vec::new(), dead: [false; 2] };
            sim.settle();
            sim
        }

        /// Moves messages until nothing is in flight.
        fn settle(&mut self) {
            for _ in 0..10_000 {
                let mut moved = false;
                for (i, conn) in [(0usize, G1), (1, G2)] {
                    let msgs: Vec<Msg> = self.worlds[i].drain_output().map(|(_, m)| m).collect();
                    if self.dead[i] {
                        continue;
                    }
                    for m in msgs {
                        moved = true;
                        self.d.handle(self.now, Event::Frame { conn, data: enc(&m) }, &mut self.out);
                    }
                }
                for (conn, frames) in self.out.take_frames() {
                    for f in frames {
                        moved = true;
                        let m = Msg::decode(&f).expect("dispatcher output decodes");
                        match conn {
                            G1 => self.worlds[0].handle(self.now, m),
                            G2 => self.worlds[1].handle(self.now, m),
                            GATE => {
                                if let Msg::ToClient { payload, .. } = m {
                                    self.client.push(ServerMsg::decode(&payload).expect("client msg"));
                                }
                            }
                            other => panic!("unexpected connection {other}"),
                        }
                    }
                }
                if !moved {
                    return;
                }
            }
            panic!("the simulated cluster did not settle");
        }

        fn advance(&mut self, by: Duration) {
            self.now += by;
            for (i, w) in self.worlds.iter_mut().enumerate() {
                if !self.dead[i] {
                    w.tick(self.now);
                }
            }
            self.settle();
        }

        fn kill(&mut self, game: usize) {
            self.dead[game] = true;
            let conn = [G1, G2][game];
            let reason = oxworld_net::app::CloseReason::PeerClosed;
            self.d.handle(self.now, Event::Closed { conn, reason }, &mut self.out);
            self.settle();
        }

        /// Service providers (shard -> game) as the live games' mirrors see them; panics if
        /// they disagree.
        fn providers(&self) -> Vec<u16> {
            let mut seen = None;
            for (i, w) in self.worlds.iter().enumerate() {
                if self.dead[i] {
                    continue;
                }
                let v: Vec<u16> =
                    (0..3).filter_map(|s| w.core.services.get(&("Online".to_owned(), s)).map(|(_, g)| *g)).collect();
                if let Some(prev) = &seen {
                    assert_eq!(prev, &v, "mirrors agree");
                }
                seen = Some(v);
            }
            seen.unwrap_or_default()
        }

        fn online_instances(&self) -> usize {
            self.worlds
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.dead[*i])
                .map(|(_, w)| w.entities.values().filter(|s| w.reg.types[s.ty].name == "Online").count())
                .sum()
        }

        /// The client (gate 1, CLIENT) calls `method` on `target`.
        fn client_call(&mut self, target: Id, method: &str, args: Vec<Value>) {
            let mut a = Vec::new();
            encode_args(&args, &mut a);
            let caller = Caller::Client { gate: 1, client: CLIENT };
            let m = Msg::Call { target, method: method_id(method), args: a, caller };
            self.d.handle(self.now, Event::Frame { conn: GATE, data: enc(&m) }, &mut self.out);
        }

        fn server_call(&mut self, target: Id, method: &str, args: Vec<Value>) {
            let mut a = Vec::new();
            encode_args(&args, &mut a);
            let m = Msg::Call { target, method: method_id(method), args: a, caller: Caller::Server(Id::NIL) };
            self.d.handle(self.now, Event::Frame { conn: G1, data: enc(&m) }, &mut self.out);
        }

        fn holder(&self, id: Id) -> Vec<u16> {
            (0..2).filter(|&i| self.worlds[i].has_entity(id)).map(|i| i as u16 + 1).collect()
        }
    }

    const CLIENT: Id = Id([0xc1; 16]);
    const WALKER: Id = Id([0x77; 16]);

    #[test]
    fn services_are_created_once_reached_by_shard_and_recreated_when_their_game_dies() {
        let mut sim = Sim::new();
        for _ in 0..3 {
            sim.advance(Duration::from_secs(1));
        }
        let p = sim.providers();
        assert_eq!(p.len(), 3, "every shard has a provider: {p:?}");
        assert_eq!(sim.online_instances(), 3, "exactly one instance per shard");
        // Reach them: all shards, and by key.
        let any = sim.worlds[0].core.services[&("Online".to_owned(), 0)].0;
        sim.server_call(any, "spread", vec![]);
        sim.settle();
        let pings: i64 = sim
            .worlds
            .iter()
            .flat_map(|w| {
                w.entities
                    .values()
                    .filter(|s| w.reg.types[s.ty].name == "Online")
                    .map(|s| s.attrs.get("pings").and_then(Value::as_int).unwrap_or(0))
            })
            .sum();
        assert_eq!(pings, 3 + 3, "call_service_all reached 3 shards, shard_key calls 3 more");
        // Game 2 dies: its shards come back on game 1.
        let on_two = p.iter().filter(|&&g| g == 2).count();
        sim.kill(1);
        for _ in 0..(SERVICE_FALLBACK_CHECKS + 2) {
            sim.advance(Duration::from_secs(1));
        }
        assert_eq!(sim.providers(), vec![1, 1, 1], "all shards on the surviving game (game 2 had {on_two})");
        assert_eq!(sim.online_instances(), 3);
    }

    #[test]
    fn migration_back_and_forth_under_a_stream_of_calls_loses_nothing() {
        let mut sim = Sim::new();
        // A space on each game; the walker boots on game 1 with a client.
        let spaces = [Id([0x51; 16]), Id([0x52; 16])];
        for (i, s) in spaces.iter().enumerate() {
            sim.worlds[i].create_space_now(*s, i as i64 + 1);
        }
        let m = Msg::ClientConnected { gate: 1, client: CLIENT, boot: WALKER };
        sim.d.handle(sim.now, Event::Frame { conn: GATE, data: enc(&m) }, &mut sim.out);
        sim.settle();
        assert_eq!(sim.holder(WALKER), vec![1]);
        // A repeating timer that must survive every hop.
        sim.worlds[0]
            .with_entity(WALKER, Caller::Server(Id::NIL), |_, ctx| {
                ctx.add_repeat_timer(Duration::from_millis(10), "tick", vec![])
                    .map(|_| ())
                    .map_err(|e| CallError::Failed(e.to_string()))
            })
            .expect("walker exists")
            .expect("timer added");
        let mut seq = 0;
        for hop in 0..10 {
            // Calls before, interleaved with and after the hop request, all in flight at once.
            for _ in 0..5 {
                seq += 1;
                sim.client_call(WALKER, "count", vec![Value::Int(seq)]);
            }
            sim.server_call(WALKER, "hop", vec![id_value(spaces[(hop + 1) % 2])]);
            for _ in 0..5 {
                seq += 1;
                sim.client_call(WALKER, "count", vec![Value::Int(seq)]);
            }
            sim.settle();
            for _ in 0..3 {
                seq += 1;
                sim.client_call(WALKER, "count", vec![Value::Int(seq)]);
            }
            sim.advance(Duration::from_millis(10));
            assert_eq!(sim.holder(WALKER), vec![((hop + 1) % 2) as u16 + 1], "hop {hop}");
        }
        let counted: Vec<i64> = sim
            .client
            .iter()
            .filter_map(|m| match m {
                ServerMsg::Call { method, args, .. } if method == "counted" => args[0].as_int(),
                _ => None,
            })
            .collect();
        assert_eq!(counted, (1..=seq).collect::<Vec<_>>(), "every call exactly once, in order");
        let games: std::collections::BTreeSet<i64> = sim
            .client
            .iter()
            .filter_map(|m| match m {
                ServerMsg::Call { method, args, .. } if method == "counted" => args[1].as_int(),
                _ => None,
            })
            .collect();
        assert_eq!(games.len(), 2, "answered by both games");
        assert!(
            !sim.client.iter().any(|m| matches!(m, ServerMsg::DestroyEntity { id } if *id == WALKER)),
            "the client never saw its player destroyed"
        );
        let w = &sim.worlds[sim.holder(WALKER)[0] as usize - 1];
        let attrs = w.entities.get(&WALKER).map(|s| s.attrs.value().clone()).expect("walker");
        let Value::Map(m) = attrs else { panic!("attrs are a map") };
        assert_eq!(m.get("bad"), None, "no call out of order");
        assert_eq!(m.get("count"), Some(&Value::Int(seq)), "attributes travelled");
        assert!(m.get("ticks").and_then(Value::as_int).unwrap_or(0) >= 5, "the timer kept firing across games: {m:?}");
        assert_eq!(w.space_of(WALKER), Some(spaces[sim.holder(WALKER)[0] as usize - 1]));
        assert_eq!(w.core.clients.get(&WALKER).map(|c| c.client), Some(CLIENT), "client binding travelled");
        assert_eq!(sim.d.route_of(WALKER), Some(sim.holder(WALKER)[0]));
        assert_eq!(sim.d.stats().undeliverable, 0);
    }
}
