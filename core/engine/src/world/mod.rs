//! The entity world of one game as a sans-IO state machine: internal messages and time in,
//! internal messages (tagged with the dispatcher they must go through) out. This file holds
//! the world's state and its entry points (`handle`, `tick`, local work); each job lives in a
//! module of its own:
//!
//! - `ctx`: [`Ctx`], what entity code acts through;
//! - `sends`: output, attribute flushes and client fan-out (one payload per audience);
//! - `lifecycle`: creating, running and destroying entities;
//! - `view`: what each client sees (spaces, neighbours, positions, client binding);
//! - `migration`: moving entities between games, and the one way an entity becomes an
//!   [`EntityImage`] and back (migration and freezes share it);
//! - `services`: sharded service entities;
//! - [`persist`]: storage from game code; [`freeze`]: hot-swap freezes and restores.
//!
//! Entity code never runs re-entrantly: a method or hook that calls a local entity, creates one
//! or destroys one queues a [`LocalOp`] that the world runs after the current handler returns,
//! within a per-tick budget.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use log::{debug, warn};
use oxworld_net::client_proto::{ErrorCode, Pos};
use oxworld_net::msg::{Call, Caller, ClientMove, EntityCreated, EntityDestroyed, FromGame, HEADER_LEN, ToGame};
use oxworld_net::value::{decode_args, encode_args};
use oxworld_net::wire::Reader;
use oxworld_net::{Id, IdGen, IdSeed, Value};
use rustc_hash::FxHashMap;
use thiserror::Error;

use crate::attr::Attrs;
use crate::cron::CronSpec;
use crate::entity::{EntityObj, Registry, RegistryError};
use crate::ratelimit::Doubling;
use crate::space::Spaces;
use crate::timer::{TIMERS_PER_TICK, Timers};

mod calls;
mod ctx;
pub mod freeze;
pub mod jobs;
mod lifecycle;
pub mod local;
mod migration;
pub mod persist;
mod report;
mod resume;
mod sends;
mod services;
mod view;

pub use calls::{Clock, DEFAULT_SLOW_CALL};
pub use ctx::Ctx;
pub use freeze::{Frozen, RestoreError, RestoreReport, decode_records};
pub use local::{EntityView, SpaceView};
pub use persist::{SAVE_SLICES, StoreCallError};

/// Local operations (local calls, posts, creates, destroys, space changes) the world runs per
/// loop iteration, all events and timers of the iteration together: leftover work waits for the
/// next iteration while the loop serves sockets and timers, so an entity that keeps calling
/// itself cannot stall the game (GoWorld's post queue drains without a bound). Reset by
/// [`World::tick`], which the game runs once per iteration.
pub const LOCAL_OPS_PER_ITERATION: usize = 10_000;

/// Local operations queued at most; past it a new one is refused (dropped, counted and logged
/// with the entity type and method that queued it): an entity that queues two for each one it
/// runs cannot grow memory without limit.
pub const MAX_LOCAL_QUEUE: usize = 1_000_000;

/// Local operations a freeze may still run after the `on_freeze` hooks (work they queued);
/// anything beyond is lost, and logged.
pub const FREEZE_DRAIN_OPS: usize = 1_000_000;

/// The client bound to an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientRef {
    /// Gate holding the connection.
    pub gate: u16,
    /// Client id.
    pub client: Id,
    /// The resume token of the connection it came by (`Session`), nil when none.
    pub token: Id,
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
    /// The delay or interval does not fit the clock's range.
    #[error("a timer of {0:?} is too long")]
    TooLong(Duration),
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
    /// A space type given to `create_entity_*` (GoWorld would make an ordinary entity here and
    /// a space of kind 0 elsewhere): spaces are made with `create_space_*`.
    #[error("entity type {0:?} is a space type: create spaces with create_space_locally / _on_game / _anywhere")]
    SpaceType(String),
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
    /// Local operations refused because [`MAX_LOCAL_QUEUE`] were queued.
    pub local_refused: u64,
    /// Messages refused before sending because they would exceed the internal frame limit
    /// (`max_internal_frame_bytes`): calls (the caller is told), client messages (dropped,
    /// logged), migrations (cancelled, the entity stays and is told).
    pub oversized: u64,
    /// Entity handlers, hooks and timers that panicked (caught; the game went on).
    pub panics: u64,
    /// Entities destroyed without saving after a panic ([`PanicPolicy::Quarantine`]).
    pub quarantined: u64,
}

/// What happens to an entity whose code panicked (`[game_common] on_panic`). Either way the
/// panic is caught at the handler's boundary, logged (rate-limited) with the entity's type, id
/// and method, the caller gets an error, and the game goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PanicPolicy {
    /// Its state may be half-changed: destroy it without saving (its last save stands) and
    /// without hooks, and kick its client with a message saying so (the default).
    #[default]
    Quarantine,
    /// Keep it as the panic left it (changes made before the panic stay).
    Keep,
}

/// The internal frame limit until [`World::set_max_frame`] (the config's default).
const DEFAULT_MAX_FRAME: usize = 32 << 20;

/// Bytes of an internal message besides its variable part (header, ids, lengths; generous).
const MSG_OVERHEAD: usize = HEADER_LEN + 256;

pub(crate) enum LocalOp {
    Call {
        target: Id,
        method: u32,
        args: Vec<Value>,
        caller: Caller,
    },
    Create {
        ty: usize,
        id: Id,
    },
    Destroy(Id),
    EnterSpace {
        entity: Id,
        space: Id,
        pos: Pos,
    },
    GiveClient {
        from: Id,
        to: Id,
    },
    CreateSpace {
        id: Id,
        kind: i64,
    },
    /// Lets go of `entity`'s client, telling it `reason` (the gate then closes it).
    Kick {
        entity: Id,
        reason: String,
    },
    /// A call `to` made could not be sent: runs its `on_call_failed`.
    CallFailed {
        to: Id,
        target: Id,
        method: u32,
        reason: String,
    },
}

/// One crontab entry of an entity.
pub(crate) struct CronEntry {
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
    out: Vec<(usize, FromGame)>,
    /// Largest internal frame the dispatchers accept; bigger messages are refused here.
    max_frame: usize,
    /// Oversized messages are logged at most once a second.
    oversized_log: oxworld_net::ratelog::RateLog,
    local: VecDeque<LocalOp>,
    /// Local operations this iteration may still run.
    budget: usize,
    /// This iteration already ran out of budget (counted once per iteration).
    over_this_iteration: bool,
    /// Iterations that ran out of budget, and local operations refused for a full queue (for
    /// warnings whose threshold doubles, so a runaway entity cannot flood the log).
    over_budget: Doubling,
    queue_full: Doubling,
    online_games: BTreeSet<u16>,
    /// Gates that completed their handshake with a dispatcher (and did not go down).
    online_gates: BTreeSet<u16>,
    /// Dispatcher links that completed their handshake at least once.
    linked: BTreeSet<usize>,
    /// Games and gates of the config (`None`: never ready, e.g. in unit tests).
    deployment: Option<(u16, u16)>,
    /// `on_game_ready` ran (or this world was restored: it ran before the swap).
    ready_fired: bool,
    stats: Stats,
    local_ids: rustc_hash::FxHashSet<Id>,
    /// Types whose `on_freeze` / `on_restored` is the trait's empty default, learned from the
    /// first entity of the type whose hook ran: a freeze or restore skips the rest of them.
    default_swap_hooks: rustc_hash::FxHashSet<(usize, freeze::SwapHook)>,
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
    /// Crontab entries by entity (ordered, so entries due together run in a fixed order).
    cron: BTreeMap<Id, Vec<CronEntry>>,
    /// The last UTC minute whose crontab entries ran.
    cron_minute: u64,
    /// Storage operations under way, entities being loaded, the save schedule.
    store: persist::StoreState,
    /// Off-loop jobs queued or running.
    jobs: jobs::JobState,
    /// Name of the method running (for panic reports); `None` while a hook runs.
    running: Option<&'static str>,
    /// When each outgoing migration was asked for (for the migration time histogram).
    migration_started: FxHashMap<Id, Instant>,
    /// From `enter_space` to the entity sent to the other game.
    migration_time: crate::metrics::Hist,
    /// Calls run and their handler time, per type and method; traces of client calls.
    calls: calls::CallTiming,
    /// Calls answered with an error, per error code (index = code).
    call_errors: [u64; 16],
    panic_policy: PanicPolicy,
    panic_log: oxworld_net::ratelog::RateLog,
    /// Clients that went away, waiting to resume (see `resume`).
    resume: resume::Resume,
}

/// One live entity: its type, its object (checked out while its code runs), its client and
/// its attributes.
struct Slot {
    ty: usize,
    obj: Option<Box<dyn EntityObj>>,
    client: Option<ClientRef>,
    attrs: Attrs,
}

/// The live entities of one game by id.
type Entities = FxHashMap<Id, Slot>;

/// The space type used when a game registers none.
struct BuiltinSpace;

impl crate::entity::Entity for BuiltinSpace {}

/// The entities of one game and everything they act on.
pub struct World {
    core: WorldCore,
    reg: Registry,
    entities: Entities,
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
        seed: impl Into<IdSeed>,
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
        seed: impl Into<IdSeed>,
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
                max_frame: DEFAULT_MAX_FRAME,
                oversized_log: oxworld_net::ratelog::RateLog::per_second(),
                local: VecDeque::new(),
                budget: LOCAL_OPS_PER_ITERATION,
                over_this_iteration: false,
                over_budget: Doubling::default(),
                queue_full: Doubling::default(),
                online_games: BTreeSet::from([game_id]),
                online_gates: BTreeSet::new(),
                linked: BTreeSet::new(),
                deployment: None,
                ready_fired: false,
                stats: Stats::default(),
                local_ids: Default::default(),
                default_swap_hooks: Default::default(),
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
                cron: BTreeMap::new(),
                cron_minute: clock_base.1 / 60_000,
                store: persist::StoreState {
                    save_interval: persist::DEFAULT_SAVE_INTERVAL,
                    next_save: Some(clock_base.0 + persist::save_slice_period(persist::DEFAULT_SAVE_INTERVAL)),
                    ..Default::default()
                },
                jobs: jobs::JobState::default(),
                running: None,
                migration_started: FxHashMap::default(),
                migration_time: crate::metrics::Hist::default(),
                calls: calls::CallTiming::new(reg.types.iter().map(|t| t.methods.len())),
                call_errors: [0; 16],
                panic_policy: PanicPolicy::default(),
                panic_log: oxworld_net::ratelog::RateLog::per_second(),
                resume: resume::Resume::default(),
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

    /// Sets what happens to an entity whose code panicked (`on_panic`).
    pub fn set_panic_policy(&mut self, policy: PanicPolicy) {
        self.core.panic_policy = policy;
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

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.core.stats
    }

    /// Number of live entities.
    pub fn entity_count(&self) -> usize {
        self.entities.len()
    }

    /// The attributes of entity `id` if it lives here (all of them, as one map).
    pub fn attrs_of(&self, id: Id) -> Option<&Value> {
        self.entities.get(&id).map(|s| s.attrs.value())
    }

    /// True if entity `id` lives on this game.
    pub fn has_entity(&self, id: Id) -> bool {
        self.entities.contains_key(&id)
    }

    /// Ids of local entities routed through dispatcher index `d` (announced to it after the
    /// handshake, so it can rebuild their routes).
    pub fn entities_for_dispatcher(&self, d: usize) -> Vec<Id> {
        self.entities.keys().filter(|id| id.dispatcher_index(self.core.n_dispatchers) == d).copied().collect()
    }

    /// Adds to the set of online games (from the handshake answer of dispatcher index `d`,
    /// whose link is now up).
    pub fn set_online_games(&mut self, games: &[u16]) {
        self.core.online_games.extend(games.iter().copied());
        self.core.online_games.insert(self.core.game_id);
    }

    /// Sets the largest internal frame the dispatchers accept (`max_internal_frame_bytes`);
    /// messages that would be bigger are refused before they are sent.
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.core.max_frame = max_frame;
    }

    /// Takes the messages to send, each with the index of the dispatcher it must go through.
    pub fn drain_output(&mut self) -> std::vec::Drain<'_, (usize, FromGame)> {
        self.clear_traces();
        self.core.out.drain(..)
    }

    /// True while local work is queued (the runtime should tick again at once).
    pub fn has_local_work(&self) -> bool {
        !self.core.local.is_empty()
    }

    /// Handles one internal message from a dispatcher. The handshake and hot-swap messages
    /// (`HelloAck`, `Refused`, `FreezeAck`, `Thawed`) belong to the game process, which never
    /// passes them here.
    pub fn handle(&mut self, now: Instant, msg: impl Into<ToGame>) {
        self.core.now = now;
        match msg.into() {
            ToGame::CreateBoot(m) => {
                let c = ClientRef { gate: m.gate, client: m.client, token: m.token };
                self.create(self.boot_ty, m.boot, Some(c));
                // Its dispatcher stops holding the placement (it would place it again if this
                // game were lost before).
                self.core.send(m.boot, EntityCreated { id: m.boot });
            }
            ToGame::CreateEntity(m) => self.on_create_entity(m.id, m.game, &m.type_name, m.space_kind),
            ToGame::LoadEntity(m) => self.start_load(m.id, &m.type_name, m.must_exist),
            ToGame::Call(Call { target, method, caller, args }) => {
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
            ToGame::ClientDisconnected(m) => self.client_disconnected(m.owner, m.client, m.resumable),
            ToGame::ResumeClient(m) => self.resume_client(m),
            ToGame::GateUp(m) => {
                self.core.online_gates.insert(m.gate);
                self.check_ready();
            }
            ToGame::GateDown(m) => self.gate_down(m.gate),
            ToGame::ClientMove(ClientMove { id, client, pos, .. }) => {
                let allowed = self.core.clients.get(&id).is_some_and(|c| c.client == client)
                    && self.core.spaces.spatial(id).is_some_and(|s| s.client_move);
                if allowed {
                    self.core.spaces.move_to(id, Pos { x: pos[0], y: pos[1], z: pos[2], yaw: pos[3] });
                } else {
                    debug!("game{}: client move of {id} refused", self.core.game_id);
                }
            }
            ToGame::SpaceGame(m) => self.on_space_game(m.space, m.entity, m.game),
            ToGame::ServiceUpdate(m) => self.on_service_update(m.name, m.shard, m.entity, m.game),
            ToGame::MigrateAck(m) => self.on_migrate_ack(m.entity),
            ToGame::RealMigrate(m) => self.migrate_in(m.entity, &m.data),
            ToGame::CallFailed(m) => {
                let (target, method, reason) = (m.target, m.method, m.reason);
                self.with_entity(m.to, Caller::Server(Id::NIL), |e, ctx| {
                    e.on_call_failed(ctx, target, method, &reason);
                    Ok(())
                });
            }
            ToGame::GameUp(m) => {
                self.core.online_games.insert(m.game);
                self.check_ready();
            }
            ToGame::GameDown(m) => {
                if m.game != self.core.game_id {
                    self.core.online_games.remove(&m.game);
                }
            }
            ToGame::HelloAck(_) | ToGame::Refused(_) | ToGame::FreezeAck(_) | ToGame::Thawed(_) => {
                debug!("game{}: handshake or hot-swap message reached the world; ignored", self.core.game_id);
            }
        }
        self.clear_arrival();
        self.run_local();
    }

    /// A dispatcher asks this game to create entity `id` (a space exactly when `space_kind` is
    /// set and `type_name` is the space type).
    fn on_create_entity(&mut self, id: Id, game: u16, type_name: &str, space_kind: Option<i64>) {
        if game != self.core.game_id {
            warn!("game{}: CreateEntity for game {game} delivered here; creating anyway", self.core.game_id);
        }
        let ty = self.reg.type_index(type_name);
        let is_space_type = ty.is_some() && ty == self.reg.space_type;
        match (ty, space_kind) {
            (Some(_), Some(kind)) if is_space_type => self.create_space_now(id, kind),
            (Some(ty), None) if !is_space_type => self.create(ty, id, None),
            _ => {
                let why = match ty {
                    None => format!("unknown entity type {type_name:?}"),
                    Some(_) if is_space_type => format!("space type {type_name:?} created without a kind"),
                    Some(_) => format!("{type_name:?} is not the space type but was given a space kind"),
                };
                warn!("game{}: cannot create {id}: {why}", self.core.game_id);
                self.core.stats.undeliverable += 1;
                self.core.send(id, EntityDestroyed { id });
            }
        }
    }

    /// Starts a new loop iteration (a fresh budget of local operations), then runs queued local
    /// work, due timers, the AOI and position sync, crontab entries, service checks and saves.
    pub fn tick(&mut self, now: Instant) {
        self.core.now = now;
        self.core.budget = LOCAL_OPS_PER_ITERATION;
        self.core.over_this_iteration = false;
        if !self.core.resume_is_empty() {
            self.expire_away(now);
        }
        self.run_local();
        for _ in 0..TIMERS_PER_TICK {
            let Some((entity, method, args)) = self.core.timers.pop_due(now) else { break };
            self.run_call(entity, method, args, Caller::Server(entity));
            self.run_local();
        }
        let t0 = self.core.read_clock();
        if self.sync_spaces(now) {
            let t = self.core.read_clock().saturating_duration_since(t0);
            self.core.calls.aoi_step.observe(t.as_secs_f64());
        }
        let minute = self.core.unix_ms() / 60_000;
        if minute > self.core.cron_minute {
            // A stalled loop runs the current minute's entries once, not every missed minute.
            self.core.cron_minute = minute;
            let due: Vec<(Id, u32, Vec<Value>)> = self
                .core
                .cron
                .iter()
                .flat_map(|(e, cs)| cs.iter().map(move |c| (*e, c)))
                .filter(|(_, c)| c.spec.matches(minute))
                .map(|(e, c)| (e, c.method, c.args.clone()))
                .collect();
            for (e, m, a) in due {
                self.run_call(e, m, a, Caller::Server(e));
                self.run_local();
            }
        }
        if now >= self.core.next_service_check {
            self.core.next_service_check = now + SERVICE_CHECK_EVERY;
            self.check_services(now);
        }
        self.save_dirty(now);
    }

    /// When [`World::tick`] should next run (timers, position sync, service checks).
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut sync = self.core.next_sync.min(self.core.next_service_check);
        if let Some(save) = self.core.store.next_save {
            sync = sync.min(save);
        }
        if let Some(away) = self.away_deadline() {
            sync = sync.min(away);
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
        self.run_local();
        let ids: Vec<Id> = self.entities.keys().copied().collect();
        for id in ids {
            self.destroy_entity(id);
        }
    }

    /// Runs queued local work at `now`, while this iteration's budget lasts.
    pub fn run_local_now(&mut self, now: Instant) {
        self.core.now = now;
        self.run_local();
    }

    /// Runs queued local work while this iteration's budget lasts.
    pub(crate) fn run_local(&mut self) {
        while self.core.budget > 0 {
            let Some(op) = self.core.local.pop_front() else {
                return;
            };
            self.core.budget -= 1;
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
                        self.core.send(target, Call { target, method, caller, args: enc });
                    }
                }
                LocalOp::Create { ty, id } => {
                    self.create(ty, id, None);
                    self.core.send(id, EntityCreated { id });
                }
                LocalOp::Destroy(id) => self.destroy_entity(id),
                LocalOp::CallFailed { to, target, method, reason } => {
                    self.with_entity(to, Caller::Server(Id::NIL), |e, ctx| {
                        e.on_call_failed(ctx, target, method, &reason);
                        Ok(())
                    });
                }
                LocalOp::EnterSpace { entity, space, pos } => self.enter_space_now(entity, space, pos),
                LocalOp::CreateSpace { id, kind } => self.create_space_now(id, kind),
                LocalOp::GiveClient { from, to } => self.give_client_now(from, to),
                LocalOp::Kick { entity, reason } => self.kick_now(entity, &reason),
            }
        }
        if self.core.local.is_empty() || std::mem::replace(&mut self.core.over_this_iteration, true) {
            return;
        }
        if let Some(next) = self.core.local.front()
            && let Some(n) = self.core.over_budget.hit()
        {
            let what = self.describe_op(next);
            warn!(
                "game{}: local work over the budget of {LOCAL_OPS_PER_ITERATION} per loop iteration ({n} times so \
                 far); {} ops wait for the next iteration, the next being {what}",
                self.core.game_id,
                self.core.local.len()
            );
        }
    }

    /// A local operation in words, for logs: the entity type and method of a call.
    fn describe_op(&self, op: &LocalOp) -> String {
        match op {
            LocalOp::Call { target, method, .. } => {
                let ty = self.entities.get(target).map(|s| &self.reg.types[s.ty]);
                match ty {
                    Some(t) => {
                        let name = t.by_id.get(method).map(|&i| t.methods[i].name).unwrap_or("?");
                        format!("a call of {}.{name}", t.name)
                    }
                    None => format!("a call of method {method:#010x} on {target}"),
                }
            }
            LocalOp::Create { ty, .. } => format!("a create of {}", self.reg.types[*ty].name),
            LocalOp::Destroy(id) => format!("a destroy of {id}"),
            LocalOp::CallFailed { to, .. } => format!("a failed call of {to}"),
            LocalOp::EnterSpace { entity, .. } => format!("{entity} entering a space"),
            LocalOp::GiveClient { from, .. } => format!("{from} handing its client over"),
            LocalOp::CreateSpace { .. } => "a space creation".to_owned(),
            LocalOp::Kick { entity, .. } => format!("{entity} kicking its client"),
        }
    }
}

#[cfg(test)]
mod local_tests;
#[cfg(test)]
mod panic_tests;
#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one arbitrary base instant from the clock
mod sim;
#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one arbitrary base instant from the clock
mod tests;
