//! Entity storage and KVDB as seen from game code: persistent entities saved on create, every
//! save interval (when a persistent attribute changed) and on destroy; loaded on demand
//! (`load_entity_anywhere` / `load_entity_on_game`, never a second copy); `exists`,
//! `list_entity_ids` and the KVDB operations. Sans-IO like the rest of the world: operations
//! are queued as [`StoreOp`]s with a ticket, the game process runs them on its store thread,
//! and hands the results back with [`World::store_done`]. Replies are calls to a method of the
//! entity that asked (by name), so they follow it if it migrated and need no closure state.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use log::{debug, warn};
use oxworld_net::client_proto::ErrorCode;
use oxworld_net::msg::{CallFailed, Caller, EntityCreated, EntityDestroyed, LoadEntity};
use oxworld_net::{Id, Value, method_id};
use thiserror::Error;

use super::{Ctx, LocalOp, World};
use crate::attr::{AttrSchema, Attrs};
use crate::entity::id_value;
use crate::store::{StoreError, StoreOp, StoreReply};

/// Default time between saves of changed persistent entities (`save_interval_s`).
pub const DEFAULT_SAVE_INTERVAL: Duration = Duration::from_secs(60);
/// The periodic save runs in this many slices per interval, each saving the changed entities
/// whose id falls in it: every changed entity is still saved within one interval, and the
/// game loop pauses for a tenth of the work at a time.
pub const SAVE_SLICES: u32 = 10;

/// The slice of [`SAVE_SLICES`] entity `id` is saved in.
fn save_slice_of(id: Id) -> u32 {
    id.0.iter().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(*b))) % SAVE_SLICES
}

/// Time between two slices of the periodic save.
pub(crate) fn save_slice_period(interval: Duration) -> Duration {
    interval / SAVE_SLICES
}

/// Storage operations game code may have in flight at once (reads, writes, loads; saves are
/// bounded apart: at most one per entity). Past it, a stalled store (Redis down) cannot grow
/// memory: new requests fail at once with `Unavailable`.
pub const MAX_STORE_IN_FLIGHT: usize = 100_000;

/// Calls held for one entity being loaded; past it they are refused with `Unavailable`.
pub const MAX_QUEUED_PER_LOAD: usize = 10_000;

/// Version of the stored form of a persistent entity.
pub const STORED_ENTITY_VERSION: i64 = 1;

/// A storage request entity code could not make.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreCallError {
    /// The reply method is not a method of the calling entity's type.
    #[error("reply method {0:?} is not a method of this entity type")]
    UnknownMethod(String),
    /// The entity type is not registered, or not persistent.
    #[error("entity type {0:?} is not a registered persistent type")]
    NotPersistent(String),
}

/// What to do with the result of one queued operation.
#[derive(Debug)]
pub(crate) enum Waiter {
    /// Call `method` of `entity` with `echo` followed by the result (if `has_value`) and the
    /// error or nil.
    Reply { entity: Id, method: Option<u32>, echo: Vec<Value>, has_value: bool },
    /// A load: build the entity.
    Load { id: Id },
    /// A save: log failures.
    Save { id: Id },
}

/// An entity being loaded, and the calls that reached it meanwhile (in order).
pub(crate) struct Loading {
    pub(crate) ty: usize,
    pub(crate) queued: Vec<(u32, Vec<Value>, Caller)>,
    /// Nothing stored is an error (not a fresh entity).
    pub(crate) must_exist: bool,
}

/// Storage state of one world.
#[derive(Default)]
pub(crate) struct StoreState {
    pub(crate) next_ticket: u64,
    pub(crate) outgoing: Vec<(u64, StoreOp)>,
    pub(crate) waiting: rustc_hash::FxHashMap<u64, Waiter>,
    pub(crate) loading: rustc_hash::FxHashMap<Id, Loading>,
    pub(crate) save_interval: Duration,
    pub(crate) next_save: Option<Instant>,
    /// The slice the next periodic save pass saves.
    pub(crate) save_slice: u32,
    /// Entities with a save in flight (a periodic save skips them: they stay dirty).
    pub(crate) saving: rustc_hash::FxHashSet<Id>,
    /// Persistent entities whose persistent attributes may have changed since their last save,
    /// by save slice (the periodic save looks at the due slice's only, not at every entity).
    pub(crate) dirty: Vec<rustc_hash::FxHashSet<Id>>,
    /// Tickets refused for [`MAX_STORE_IN_FLIGHT`]: answered `Unavailable` on the next pump.
    pub(crate) refused: Vec<u64>,
    /// Operations handed to the store: when, and which kind (for the latency histogram).
    pub(crate) since: rustc_hash::FxHashMap<u64, (Instant, &'static str)>,
    /// From hand-out to result, by operation kind.
    pub(crate) latency: BTreeMap<&'static str, crate::metrics::Hist>,
}

impl StoreState {
    /// Entity `id`'s persistent attributes changed: the periodic save looks at it.
    pub(crate) fn mark_dirty(&mut self, id: Id) {
        if self.dirty.is_empty() {
            self.dirty = vec![Default::default(); SAVE_SLICES as usize];
        }
        if let Some(set) = self.dirty.get_mut(save_slice_of(id) as usize) {
            set.insert(id);
        }
    }

    /// Takes the entities marked in `slice`.
    fn take_dirty(&mut self, slice: u32) -> rustc_hash::FxHashSet<Id> {
        self.dirty.get_mut(slice as usize).map(std::mem::take).unwrap_or_default()
    }

    pub(crate) fn queue(&mut self, op: StoreOp, waiter: Waiter) {
        self.next_ticket += 1;
        match &waiter {
            Waiter::Save { id } => {
                self.saving.insert(*id);
            }
            _ if self.waiting.len().saturating_sub(self.saving.len()) >= MAX_STORE_IN_FLIGHT => {
                self.refused.push(self.next_ticket);
                self.waiting.insert(self.next_ticket, waiter);
                return;
            }
            _ => {}
        }
        self.outgoing.push((self.next_ticket, op));
        self.waiting.insert(self.next_ticket, waiter);
    }
}

/// The stored form of a persistent entity: its persistent attributes, versioned.
pub(crate) fn encode_stored(attrs: &Attrs, schema: &AttrSchema) -> Vec<u8> {
    // The map {"attrs": <persistent attributes>, "v": version}, keys in order, written in place.
    let mut out = Vec::with_capacity(256);
    oxworld_net::value::encode_map_head(&mut out, 2);
    oxworld_net::wire::put_bytes(&mut out, b"attrs");
    attrs.encode_persistent(schema, &mut out);
    oxworld_net::wire::put_bytes(&mut out, b"v");
    Value::Int(STORED_ENTITY_VERSION).encode(&mut out);
    out
}

/// Reads what [`encode_stored`] wrote.
pub fn decode_stored(bytes: &[u8]) -> Result<Value, String> {
    let mut r = oxworld_net::wire::Reader::new(bytes);
    let v = Value::decode(&mut r).map_err(|e| e.to_string())?;
    r.finish().map_err(|e| e.to_string())?;
    let Value::Map(mut m) = v else { return Err("not a map".into()) };
    match m.get("v").and_then(Value::as_int) {
        Some(STORED_ENTITY_VERSION) => {}
        other => return Err(format!("stored entity version {other:?} is not supported")),
    }
    match m.remove("attrs") {
        Some(a @ Value::Map(_)) => Ok(a),
        _ => Err("no attribute map".into()),
    }
}

fn err_value(e: &StoreError) -> Value {
    Value::from(e.to_string().as_str())
}

impl Ctx<'_> {
    pub(super) fn reply_method(&self, reply: &str) -> Result<u32, StoreCallError> {
        let m = method_id(reply);
        if self.reg.types[self.ty].by_id.contains_key(&m) {
            Ok(m)
        } else {
            Err(StoreCallError::UnknownMethod(reply.to_owned()))
        }
    }

    fn store_op(&mut self, op: StoreOp, reply: Option<&str>, echo: Vec<Value>) -> Result<(), StoreCallError> {
        let method = reply.map(|r| self.reply_method(r)).transpose()?;
        let has_value = !matches!(op, StoreOp::KvPut { .. });
        self.core.store.queue(op, Waiter::Reply { entity: self.id, method, echo, has_value });
        Ok(())
    }

    /// Reads KVDB `key`; calls `reply(key, value or nil, error or nil)` on this entity.
    pub fn kvdb_get(&mut self, key: &str, reply: &str) -> Result<(), StoreCallError> {
        self.store_op(StoreOp::KvGet { key: key.to_owned() }, Some(reply), vec![Value::from(key)])
    }

    /// Writes KVDB `key`; calls `reply(key, error or nil)` on this entity if given, once the
    /// write is durable.
    pub fn kvdb_put(&mut self, key: &str, value: &str, reply: Option<&str>) -> Result<(), StoreCallError> {
        let op = StoreOp::KvPut { key: key.to_owned(), value: value.to_owned() };
        self.store_op(op, reply, vec![Value::from(key)])
    }

    /// Atomically: stores `value` under `key` unless the key exists. Calls
    /// `reply(key, the existing value or nil if ours was stored, error or nil)`.
    pub fn kvdb_get_or_put(&mut self, key: &str, value: &str, reply: &str) -> Result<(), StoreCallError> {
        let op = StoreOp::KvGetOrPut { key: key.to_owned(), value: value.to_owned() };
        self.store_op(op, Some(reply), vec![Value::from(key)])
    }

    /// Keys in `[begin, end)` in order (an empty `end`: to the last key). Calls
    /// `reply([[key, value], ...], error or nil)`.
    pub fn kvdb_get_range(&mut self, begin: &str, end: &str, reply: &str) -> Result<(), StoreCallError> {
        let op = StoreOp::KvRange { begin: begin.to_owned(), end: end.to_owned() };
        self.store_op(op, Some(reply), vec![])
    }

    fn persistent_type(&self, type_name: &str) -> Result<(), StoreCallError> {
        match self.reg.type_index(type_name) {
            Some(t) if self.reg.types[t].persistent => Ok(()),
            _ => Err(StoreCallError::NotPersistent(type_name.to_owned())),
        }
    }

    /// Whether a persistent entity `id` of `type_name` is stored. Calls
    /// `reply(type_name, id, exists, error or nil)`.
    pub fn exists(&mut self, type_name: &str, id: Id, reply: &str) -> Result<(), StoreCallError> {
        self.persistent_type(type_name)?;
        let op = StoreOp::Exists { type_name: type_name.to_owned(), id };
        self.store_op(op, Some(reply), vec![Value::from(type_name), id_value(id)])
    }

    /// Ids of every stored entity of `type_name`. Calls `reply(type_name, [id, ...], error or
    /// nil)`.
    pub fn list_entity_ids(&mut self, type_name: &str, reply: &str) -> Result<(), StoreCallError> {
        self.persistent_type(type_name)?;
        let op = StoreOp::List { type_name: type_name.to_owned() };
        self.store_op(op, Some(reply), vec![Value::from(type_name)])
    }

    /// Makes stored persistent entity `id` live somewhere: if it already lives on a game,
    /// nothing happens (never a second copy); otherwise the least-loaded game loads it from
    /// storage. Calls to `id` sent meanwhile wait for it. If nothing is stored under `id` (a
    /// mistyped id), no entity is made: every call that waited for it fails, and each calling
    /// entity's `on_call_failed` says "nothing stored" (clients get `UnknownEntity`). To make
    /// a fresh entity when nothing is stored, use [`Ctx::load_or_create_entity_anywhere`].
    pub fn load_entity_anywhere(&mut self, type_name: &str, id: Id) -> Result<(), StoreCallError> {
        self.load_entity_on_game(0, type_name, id)
    }

    /// As [`Ctx::load_entity_anywhere`], on game `game` (0: anywhere).
    pub fn load_entity_on_game(&mut self, game: u16, type_name: &str, id: Id) -> Result<(), StoreCallError> {
        self.load(game, type_name, id, true)
    }

    /// As [`Ctx::load_entity_anywhere`], but a fresh entity (empty attributes) is created
    /// when nothing is stored under `id`: the explicit form of "load my avatar, or make it".
    pub fn load_or_create_entity_anywhere(&mut self, type_name: &str, id: Id) -> Result<(), StoreCallError> {
        self.load(0, type_name, id, false)
    }

    /// As [`Ctx::load_or_create_entity_anywhere`], on game `game` (0: anywhere).
    pub fn load_or_create_entity_on_game(&mut self, game: u16, type_name: &str, id: Id) -> Result<(), StoreCallError> {
        self.load(game, type_name, id, false)
    }

    fn load(&mut self, game: u16, type_name: &str, id: Id, must_exist: bool) -> Result<(), StoreCallError> {
        self.persistent_type(type_name)?;
        self.core.send(id, LoadEntity { id, game, type_name: type_name.to_owned(), must_exist });
        Ok(())
    }

    /// Saves this entity's persistent attributes now (persistent types only; others: no-op).
    pub fn save(&mut self) {
        if self.reg.types[self.ty].persistent {
            let type_name = self.reg.types[self.ty].name.to_owned();
            let data = encode_stored(self.attrs, self.schema);
            self.attrs.clear_persistent_dirty();
            self.core.store.queue(StoreOp::Save { type_name, id: self.id, data }, Waiter::Save { id: self.id });
        }
    }
}

impl World {
    /// Sets how often changed persistent entities are saved (`save_interval_s`).
    pub fn set_save_interval(&mut self, every: Duration) {
        self.core.store.save_interval = every.max(Duration::from_millis(10));
        self.core.store.next_save = Some(self.core.now + save_slice_period(self.core.store.save_interval));
    }

    /// Takes the storage operations to run, each with its ticket for [`World::store_done`].
    /// Requests refused because [`MAX_STORE_IN_FLIGHT`] are under way are answered here, with
    /// `Unavailable`, before anything is handed out.
    pub fn take_store_ops(&mut self) -> Vec<(u64, StoreOp)> {
        let refused = std::mem::take(&mut self.core.store.refused);
        if !refused.is_empty() {
            warn!(
                "game{}: {} storage requests refused: {MAX_STORE_IN_FLIGHT} already in flight (is the store stalled?)",
                self.core.game_id,
                refused.len()
            );
        }
        for ticket in refused {
            let err = StoreError::unavailable("too many storage operations in flight");
            self.store_done(self.core.now, ticket, Err(err));
        }
        let ops = std::mem::take(&mut self.core.store.outgoing);
        let now = self.core.now;
        for (ticket, op) in &ops {
            self.core.store.since.insert(*ticket, (now, op.name()));
        }
        ops
    }

    /// True while storage operations are queued or running (a freeze waits for them: their
    /// replies are not frozen).
    pub fn has_pending_io(&self) -> bool {
        !self.core.store.outgoing.is_empty() || !self.core.store.waiting.is_empty() || self.core.jobs.pending()
    }

    /// The result of the operation with `ticket`.
    pub fn store_done(&mut self, now: Instant, ticket: u64, result: Result<StoreReply, StoreError>) {
        self.core.now = now;
        if let Some((t0, name)) = self.core.store.since.remove(&ticket) {
            let secs = now.saturating_duration_since(t0).as_secs_f64();
            self.core.store.latency.entry(name).or_default().observe(secs);
        }
        let Some(waiter) = self.core.store.waiting.remove(&ticket) else {
            warn!("game{}: storage result for unknown ticket {ticket}", self.core.game_id);
            return;
        };
        match waiter {
            Waiter::Reply { entity, method, mut echo, has_value } => {
                let Some(method) = method else {
                    if let Err(e) = result {
                        warn!("game{}: storage write for {entity} failed: {e}", self.core.game_id);
                    }
                    return;
                };
                match result {
                    Ok(reply) => {
                        match reply {
                            StoreReply::Done if !has_value => {}
                            StoreReply::Done => echo.push(Value::Nil),
                            StoreReply::Value(v) => echo.push(v.map(|s| Value::from(s.as_str())).unwrap_or(Value::Nil)),
                            StoreReply::Exists(b) => echo.push(Value::Bool(b)),
                            StoreReply::Ids(ids) => echo.push(Value::List(ids.into_iter().map(id_value).collect())),
                            StoreReply::Range(kvs) => echo.push(Value::List(
                                kvs.into_iter()
                                    .map(|(k, v)| Value::List(vec![Value::from(k.as_str()), Value::from(v.as_str())]))
                                    .collect(),
                            )),
                            StoreReply::Data(_) => echo.push(Value::Nil),
                        }
                        echo.push(Value::Nil);
                    }
                    Err(e) => {
                        if has_value {
                            echo.push(Value::Nil);
                        }
                        echo.push(err_value(&e));
                    }
                }
                let caller = Caller::Server(entity);
                self.core.local.push_back(LocalOp::Call { target: entity, method, args: echo, caller });
            }
            Waiter::Save { id } => {
                self.core.store.saving.remove(&id);
                if let Err(e) = result {
                    // The data stays dirty in memory: the next interval tries again.
                    warn!("game{}: saving {id} failed: {e}", self.core.game_id);
                    if let Some(s) = self.entities.get_mut(&id) {
                        s.attrs.mark_persistent_dirty();
                        self.core.store.mark_dirty(id);
                    }
                }
            }
            Waiter::Load { id } => self.finish_load(id, result),
        }
        self.run_local();
    }

    /// A dispatcher asks this game to load `id`.
    pub(crate) fn start_load(&mut self, id: Id, type_name: &str, must_exist: bool) {
        if self.entities.contains_key(&id) || self.core.store.loading.contains_key(&id) {
            debug!("game{}: {type_name} {id} is already here or loading", self.core.game_id);
            return;
        }
        let ty = match self.reg.type_index(type_name) {
            Some(t) if self.reg.types[t].persistent => t,
            _ => {
                warn!("game{}: cannot load {id}: {type_name:?} is not a persistent type here", self.core.game_id);
                self.core.send(id, EntityDestroyed { id });
                return;
            }
        };
        self.core.store.loading.insert(id, Loading { ty, queued: Vec::new(), must_exist });
        self.core.store.queue(StoreOp::Load { type_name: type_name.to_owned(), id }, Waiter::Load { id });
    }

    /// Holds a call to an entity being loaded; false if `target` is not loading.
    pub(crate) fn queue_for_loading(
        &mut self,
        target: Id,
        method: u32,
        args: &mut Option<Vec<Value>>,
        caller: Caller,
    ) -> bool {
        match self.core.store.loading.get_mut(&target) {
            Some(l) if l.queued.len() >= MAX_QUEUED_PER_LOAD => {
                args.take();
                let why = format!("more than {MAX_QUEUED_PER_LOAD} calls wait for {target} to load");
                self.refuse(target, method, caller, ErrorCode::Unavailable, why);
                true
            }
            Some(l) => {
                if let Some(a) = args.take() {
                    l.queued.push((method, a, caller));
                }
                true
            }
            None => false,
        }
    }

    fn finish_load(&mut self, id: Id, result: Result<StoreReply, StoreError>) {
        let Some(loading) = self.core.store.loading.remove(&id) else { return };
        let attrs = match result {
            Ok(StoreReply::Data(Some(bytes))) => {
                decode_stored(&bytes).map_err(|e| format!("stored data unreadable: {e}"))
            }
            Ok(StoreReply::Data(None)) if loading.must_exist => {
                Err(format!("nothing stored for {} {id}", self.reg.types[loading.ty].name))
            }
            Ok(StoreReply::Data(None)) => Ok(Value::Map(BTreeMap::new())),
            Ok(other) => Err(format!("unexpected storage reply {other:?}")),
            Err(e) => Err(e.to_string()),
        };
        match attrs {
            Ok(attrs) => {
                self.create_with(loading.ty, id, None, Attrs::from_value(attrs));
                self.core.send(id, EntityCreated { id });
                for (method, args, caller) in loading.queued {
                    self.run_call(id, method, args, caller);
                }
            }
            Err(reason) => {
                warn!("game{}: loading {id} failed: {reason}", self.core.game_id);
                let code = if loading.must_exist { ErrorCode::UnknownEntity } else { ErrorCode::Unavailable };
                for (method, _, caller) in loading.queued {
                    let why = format!("loading {id} failed: {reason}");
                    match caller {
                        // The calling entity is told (its `on_call_failed`), wherever it is.
                        Caller::Server(from) if from != Id::NIL => {
                            self.core.stats.undeliverable += 1;
                            if self.entities.contains_key(&from) {
                                let op = LocalOp::CallFailed { to: from, target: id, method, reason: why };
                                self.core.local.push_back(op);
                            } else {
                                self.core.send(from, CallFailed { to: from, target: id, method, reason: why });
                            }
                        }
                        _ => self.refuse(id, method, caller, code, why),
                    }
                }
                self.core.send(id, EntityDestroyed { id });
            }
        }
    }

    /// Queues a save of `id` (persistent types) with its persistent attributes.
    pub(crate) fn save_entity(&mut self, id: Id) {
        let Some(slot) = self.entities.get_mut(&id) else { return };
        let ty = &self.reg.types[slot.ty];
        if !ty.persistent {
            return;
        }
        let data = encode_stored(&slot.attrs, &ty.schema);
        slot.attrs.clear_persistent_dirty();
        let op = StoreOp::Save { type_name: ty.name.to_owned(), id, data };
        self.core.store.queue(op, Waiter::Save { id });
    }

    /// Every tenth of the save interval: saves the persistent entities of the slice due (and
    /// of any slice overdue) whose persistent attributes changed.
    pub(crate) fn save_dirty(&mut self, now: Instant) {
        let Some(mut due) = self.core.store.next_save else { return };
        if now < due {
            return;
        }
        let period = save_slice_period(self.core.store.save_interval);
        let mut candidates = Vec::new();
        let mut n = 0;
        while now >= due && n < SAVE_SLICES {
            candidates.extend(self.core.store.take_dirty(self.core.store.save_slice));
            self.core.store.save_slice = (self.core.store.save_slice + 1) % SAVE_SLICES;
            due += period;
            n += 1;
        }
        self.core.store.next_save = Some(if now >= due { now + period } else { due });
        for id in candidates {
            let Some(s) = self.entities.get(&id) else { continue };
            if !self.reg.types[s.ty].persistent || !s.attrs.persistent_dirty() {
                continue;
            }
            if self.core.store.saving.contains(&id) {
                // Its last save is still in flight: next interval.
                self.core.store.mark_dirty(id);
            } else {
                self.save_entity(id);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use oxworld_net::client_proto::ServerMsg;
    use oxworld_net::msg::{Call, CreateBoot, FromGame};
    use oxworld_net::value::encode_args;

    use super::*;
    use crate::attr::AttrFlags;
    use crate::entity::{Args, CallError, Entity, Expose, Registry};
    use crate::store::{MemStore, Store};

    /// A persistent avatar with a persistent `gold` and a non-persistent `mood`.
    #[derive(Default)]
    struct Avatar;
    impl Entity for Avatar {
        fn on_init(&mut self, ctx: &mut Ctx<'_>) {
            assert!(ctx.attrs_ref().value() == &Value::Map(Default::default()), "on_init runs before attributes");
            ctx.attrs().set("gold", 1i64);
            ctx.attrs().set("rank", "novice");
        }
        fn on_attrs_ready(&mut self, ctx: &mut Ctx<'_>) {
            let g = ctx.attrs().int("gold");
            ctx.attrs().set("gold_when_ready", g);
        }
    }
    impl Avatar {
        fn earn(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
            let g = ctx.attrs().int("gold") + args.int(0)?;
            ctx.attrs().set("gold", g);
            ctx.attrs().set("mood", "rich");
            Ok(())
        }
        fn show(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
            let g = ctx.attrs().int("gold");
            ctx.call(args.id(0)?, "shown", vec![Value::Int(g)]);
            Ok(())
        }
        fn bye(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
            ctx.destroy();
            Ok(())
        }
        fn go(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
            ctx.enter_space(args.id(0)?, oxworld_net::client_proto::Pos::default())
                .map_err(|e| CallError::Failed(e.to_string()))
        }
    }

    /// Records every storage reply it gets, as a client call to itself.
    #[derive(Default)]
    struct Clerk;
    impl Entity for Clerk {
        fn on_call_failed(&mut self, ctx: &mut Ctx<'_>, target: Id, _method: u32, reason: &str) {
            ctx.call_client("call_failed", vec![crate::entity::id_value(target), Value::from(reason)]);
        }
    }
    impl Clerk {
        fn got(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
            ctx.call_client("got", args.into_vec());
            Ok(())
        }
        fn shown(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
            ctx.call_client("shown", args.into_vec());
            Ok(())
        }
    }

    const CLIENT: Id = Id([0xc1; 16]);
    const CLERK: Id = Id([0xce; 16]);

    fn world(t0: Instant) -> World {
        let mut reg = Registry::new();
        reg.entity("Avatar", Avatar::default)
            .persistent()
            .attr("gold", AttrFlags::CLIENT | AttrFlags::PERSISTENT)
            .attr("mood", AttrFlags::CLIENT)
            .method("earn", Expose::Server, Avatar::earn)
            .method("show", Expose::Server, Avatar::show)
            .method("bye", Expose::Server, Avatar::bye)
            .method("go", Expose::Server, Avatar::go);
        reg.entity("Clerk", Clerk::default).method("got", Expose::Server, Clerk::got).method(
            "shown",
            Expose::Server,
            Clerk::shown,
        );
        reg.boot("Clerk");
        let mut w = World::new(reg, 1, 1, None, 3, (t0, 1_700_000_000_000)).expect("registry");
        w.handle(t0, CreateBoot { boot: CLERK, gate: 1, client: CLIENT, token: Id::NIL });
        w
    }

    /// Runs every queued storage operation on `store`, in order, as the store thread would.
    fn run_store(w: &mut World, store: &mut dyn Store, now: Instant) {
        loop {
            let ops = w.take_store_ops();
            if ops.is_empty() {
                return;
            }
            for (t, op) in ops {
                let r = store.execute(op);
                w.store_done(now, t, r);
            }
        }
    }

    /// The replies the clerk's client got, in order.
    fn replies(w: &mut World) -> Vec<(String, Vec<Value>)> {
        w.drain_output()
            .filter_map(|(_, m)| match m {
                FromGame::ToClients(tc) => match ServerMsg::decode(&tc.payload).ok()? {
                    ServerMsg::Call { method, args, .. } => Some((method, args)),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn with_clerk(w: &mut World, f: impl FnOnce(&mut Ctx<'_>)) {
        w.with_entity(CLERK, Caller::Server(Id::NIL), |_, ctx| {
            f(ctx);
            Ok(())
        });
    }

    fn call(w: &mut World, now: Instant, target: Id, method: &str, args: Vec<Value>) {
        let mut enc = Vec::new();
        encode_args(&args, &mut enc);
        w.handle(now, Call { target, method: method_id(method), caller: Caller::Server(CLERK), args: enc });
    }

    #[test]
    fn kvdb_replies_arrive_as_calls_in_order() {
        let t0 = Instant::now();
        let mut w = world(t0);
        let mut store = MemStore::default();
        let _ = replies(&mut w);
        with_clerk(&mut w, |ctx| {
            ctx.kvdb_put("a", "1", Some("got")).expect("put");
            ctx.kvdb_put("b", "2", None).expect("put");
            ctx.kvdb_get("a", "got").expect("get");
            ctx.kvdb_get("zz", "got").expect("get");
            ctx.kvdb_get_or_put("a", "9", "got").expect("gop");
            ctx.kvdb_get_or_put("c", "3", "got").expect("gop");
            ctx.kvdb_get_range("a", "c", "got").expect("range");
            assert_eq!(
                ctx.kvdb_get("a", "no_such_method"),
                Err(StoreCallError::UnknownMethod("no_such_method".into()))
            );
            assert!(ctx.exists("Clerk", CLERK, "got").is_err(), "not a persistent type");
        });
        assert!(w.has_pending_io());
        run_store(&mut w, &mut store, t0);
        assert!(!w.has_pending_io());
        let mut m = crate::metrics::MetricSet::default();
        crate::metrics::Metrics::metrics(&w, &mut m);
        let lat = m.families.iter().find(|f| f.name == "oxworld_store_op_seconds").expect("store latency");
        assert!(lat.samples.iter().any(|s| s.labels == vec![("op", "kv_get".to_owned())]), "{lat:?}");
        let s = |v: &str| Value::from(v);
        let pair = |k: &str, v: &str| Value::List(vec![s(k), s(v)]);
        assert_eq!(
            replies(&mut w),
            vec![
                ("got".into(), vec![s("a"), Value::Nil]),
                ("got".into(), vec![s("a"), s("1"), Value::Nil]),
                ("got".into(), vec![s("zz"), Value::Nil, Value::Nil]),
                ("got".into(), vec![s("a"), s("1"), Value::Nil]),
                ("got".into(), vec![s("c"), Value::Nil, Value::Nil]),
                ("got".into(), vec![Value::List(vec![pair("a", "1"), pair("b", "2")]), Value::Nil]),
            ]
        );
    }

    /// A stalled store (nothing ever completes): requests past [`MAX_STORE_IN_FLIGHT`] are
    /// answered `Unavailable` at once instead of queueing without bound; once the store
    /// answers again, new requests are taken.
    #[test]
    fn a_stalled_store_refuses_requests_past_the_in_flight_bound() {
        let t0 = Instant::now();
        let mut w = world(t0);
        let _ = replies(&mut w);
        let mut handed_out = Vec::new();
        with_clerk(&mut w, |ctx| {
            for _ in 0..MAX_STORE_IN_FLIGHT + 3 {
                ctx.kvdb_get("k", "got").expect("get");
            }
        });
        handed_out.extend(w.take_store_ops());
        assert_eq!(handed_out.len(), MAX_STORE_IN_FLIGHT, "the store got what the bound allows");
        let got = replies(&mut w);
        assert_eq!(got.len(), 3, "the rest were answered at once");
        assert!(got.iter().all(|(_, a)| matches!(&a[..], [_, Value::Nil, Value::Str(e)] if e.contains("in flight"))));
        // The store comes back: everything in flight is answered, and new requests go out.
        let mut store = MemStore::default();
        for (t, op) in handed_out {
            let r = store.execute(op);
            w.store_done(t0, t, r);
        }
        // (Replies are local calls: at most one budget of them per loop iteration.)
        let mut answered = replies(&mut w).len();
        while w.has_local_work() {
            w.tick(t0);
            answered += replies(&mut w).len();
        }
        assert_eq!(answered, MAX_STORE_IN_FLIGHT);
        with_clerk(&mut w, |ctx| ctx.kvdb_get("k", "got").expect("get"));
        assert_eq!(w.take_store_ops().len(), 1);
    }

    /// A store that fails everything.
    struct Broken;
    impl Store for Broken {
        fn execute(&mut self, _op: StoreOp) -> Result<StoreReply, StoreError> {
            Err(StoreError::unavailable("disk on fire"))
        }
        fn backend(&self) -> &'static str {
            "broken"
        }
    }

    #[test]
    fn storage_errors_reach_the_reply_method() {
        let t0 = Instant::now();
        let mut w = world(t0);
        let _ = replies(&mut w);
        with_clerk(&mut w, |ctx| {
            ctx.kvdb_get("a", "got").expect("get");
            ctx.kvdb_put("a", "1", Some("got")).expect("put");
        });
        run_store(&mut w, &mut Broken, t0);
        let got = replies(&mut w);
        assert_eq!(got.len(), 2);
        assert!(matches!(&got[0].1[..], [_, Value::Nil, Value::Str(e)] if e.contains("disk on fire")), "{got:?}");
        assert!(matches!(&got[1].1[..], [_, Value::Str(e)] if e.contains("disk on fire")), "{got:?}");
    }

    /// GoWorld's load fails for an id with nothing stored; so does ours (a mistyped id must not
    /// make a new avatar): the calls that waited fail back to their callers, no entity is made,
    /// nothing is saved. The explicit load-or-create makes the fresh entity.
    #[test]
    fn a_load_of_nothing_stored_fails_to_the_callers_unless_load_or_create() {
        let t0 = Instant::now();
        let mut w = world(t0);
        let mut store = MemStore::default();
        let _ = replies(&mut w);
        let a = Id([0xa7; 16]);
        with_clerk(&mut w, |ctx| {
            ctx.load_entity_on_game(1, "Avatar", a).expect("persistent");
            assert_eq!(ctx.load_entity_anywhere("Clerk", a), Err(StoreCallError::NotPersistent("Clerk".into())));
        });
        let sent: Vec<FromGame> = w.drain_output().map(|(_, m)| m).collect();
        assert!(matches!(&sent[..], [FromGame::LoadEntity(l)] if l.must_exist && l.id == a), "{sent:?}");
        let mut frame = Vec::new();
        oxworld_net::msg::Message::encode(
            &LoadEntity { id: a, game: 1, type_name: "Avatar".into(), must_exist: true },
            0,
            &mut frame,
        );
        assert_eq!(frame[1] & oxworld_net::msg::FLAG_MUST_EXIST, oxworld_net::msg::FLAG_MUST_EXIST, "a header flag");
        w.handle(t0, LoadEntity { id: a, game: 1, type_name: "Avatar".into(), must_exist: true });
        call(&mut w, t0, a, "earn", vec![Value::Int(10)]);
        run_store(&mut w, &mut store, t0);
        assert!(!w.has_entity(a), "nothing stored: no entity");
        w.run_local_now(t0);
        let got = replies(&mut w);
        assert!(
            matches!(&got[..], [(m, args)] if m == "call_failed" && matches!(&args[1], Value::Str(r) if r.contains("nothing stored for Avatar"))),
            "the waiting caller is told: {got:?}"
        );
        assert!(store.execute(StoreOp::Exists { type_name: "Avatar".into(), id: a }) == Ok(StoreReply::Exists(false)));
        // Load-or-create: a fresh avatar, saved at once.
        with_clerk(&mut w, |ctx| ctx.load_or_create_entity_on_game(1, "Avatar", a).expect("persistent"));
        let sent: Vec<FromGame> = w.drain_output().map(|(_, m)| m).collect();
        assert!(matches!(&sent[..], [FromGame::LoadEntity(l)] if !l.must_exist), "{sent:?}");
        w.handle(t0, LoadEntity { id: a, game: 1, type_name: "Avatar".into(), must_exist: false });
        run_store(&mut w, &mut store, t0);
        assert!(w.has_entity(a));
        run_store(&mut w, &mut store, t0);
        assert!(store.execute(StoreOp::Exists { type_name: "Avatar".into(), id: a }) == Ok(StoreReply::Exists(true)));
    }

    /// Persistent entities: saved on create, on the interval when changed, on destroy; loaded
    /// with what was saved; calls sent while loading wait and run after, in order; a second
    /// load makes no copy; exists and list see them.
    #[test]
    fn persistent_entities_save_and_load() {
        let t0 = Instant::now();
        let mut w = world(t0);
        w.set_save_interval(Duration::from_secs(10));
        let mut store = MemStore::default();
        let a = Id([0xa1; 16]);
        // A first load of an id nobody stored: a fresh avatar, saved at once.
        w.handle(t0, LoadEntity { id: a, game: 1, type_name: "Avatar".into(), must_exist: false });
        call(&mut w, t0, a, "earn", vec![Value::Int(10)]);
        call(&mut w, t0, a, "show", vec![crate::entity::id_value(CLERK)]);
        assert!(!w.has_entity(a), "still loading");
        run_store(&mut w, &mut store, t0);
        assert!(w.has_entity(a));
        assert_eq!(replies(&mut w), vec![("shown".to_owned(), vec![Value::Int(11)])], "queued calls ran in order");
        // A second load while it lives: nothing happens.
        w.handle(t0, LoadEntity { id: a, game: 1, type_name: "Avatar".into(), must_exist: false });
        assert!(w.take_store_ops().is_empty());
        // Not yet saved with gold 11 (interval not reached).
        let stored = |store: &mut MemStore| match store.execute(StoreOp::Load { type_name: "Avatar".into(), id: a }) {
            Ok(StoreReply::Data(Some(d))) => decode_stored(&d).expect("stored form"),
            other => panic!("{other:?}"),
        };
        assert_eq!(stored(&mut store), Value::Map([("gold".to_owned(), Value::Int(1))].into()));
        w.tick(t0 + Duration::from_secs(10));
        run_store(&mut w, &mut store, t0);
        assert_eq!(
            stored(&mut store),
            Value::Map([("gold".to_owned(), Value::Int(11))].into()),
            "only persistent attrs"
        );
        // Unchanged: the next interval saves nothing.
        w.tick(t0 + Duration::from_secs(20));
        assert!(w.take_store_ops().is_empty());
        // Destroy saves.
        call(&mut w, t0, a, "earn", vec![Value::Int(5)]);
        call(&mut w, t0, a, "bye", vec![]);
        assert!(!w.has_entity(a));
        run_store(&mut w, &mut store, t0);
        assert_eq!(stored(&mut store), Value::Map([("gold".to_owned(), Value::Int(16))].into()));
        // Loading again brings it back as saved.
        w.handle(t0, LoadEntity { id: a, game: 1, type_name: "Avatar".into(), must_exist: false });
        call(&mut w, t0, a, "show", vec![crate::entity::id_value(CLERK)]);
        run_store(&mut w, &mut store, t0);
        assert_eq!(replies(&mut w), vec![("shown".to_owned(), vec![Value::Int(16)])], "loaded as saved");
        let attr = |w: &World, k: &str| match w.attrs_of(a) {
            Some(Value::Map(m)) => m.get(k).cloned(),
            _ => None,
        };
        assert_eq!(attr(&w, "gold_when_ready"), Some(Value::Int(16)), "on_attrs_ready sees the stored attributes");
        assert_eq!(attr(&w, "rank"), Some(Value::from("novice")), "on_init's defaults stay where nothing is stored");
        with_clerk(&mut w, |ctx| {
            ctx.exists("Avatar", a, "got").expect("exists");
            ctx.exists("Avatar", Id([0xa2; 16]), "got").expect("exists");
            ctx.list_entity_ids("Avatar", "got").expect("list");
        });
        run_store(&mut w, &mut store, t0);
        let got = replies(&mut w);
        assert!(got.contains(&(
            "got".to_owned(),
            vec![Value::from("Avatar"), crate::entity::id_value(a), Value::Bool(true), Value::Nil]
        )));
        assert!(got.contains(&(
            "got".to_owned(),
            vec![Value::from("Avatar"), crate::entity::id_value(Id([0xa2; 16])), Value::Bool(false), Value::Nil]
        )));
        assert!(got.contains(&(
            "got".to_owned(),
            vec![Value::from("Avatar"), Value::List(vec![crate::entity::id_value(a)]), Value::Nil]
        )));
    }

    /// A world (saves every 10 s) with the avatars `ids` loaded fresh (and saved) from `store`,
    /// each then changed once (`earn(10)`, gold 11).
    fn loaded_and_changed(t0: Instant, ids: &[Id], store: &mut MemStore) -> World {
        let mut w = world(t0);
        w.set_save_interval(Duration::from_secs(10));
        for &id in ids {
            w.handle(t0, LoadEntity { id, game: 1, type_name: "Avatar".into(), must_exist: false });
        }
        run_store(&mut w, store, t0);
        for &id in ids {
            call(&mut w, t0, id, "earn", vec![Value::Int(10)]);
        }
        w
    }

    /// A persistent entity leaving with unsaved changes is saved as it leaves (its new game
    /// saves it again within its interval): a crash of either game loses at most an interval.
    #[test]
    fn a_migrating_entity_with_unsaved_changes_is_saved_as_it_leaves() {
        let t0 = Instant::now();
        let mut store = MemStore::default();
        let a = Id([0xa1; 16]);
        let mut w = loaded_and_changed(t0, &[a], &mut store);
        let far = Id([0x5f; 16]);
        call(&mut w, t0, a, "go", vec![Value::id(far)]);
        w.handle(t0, oxworld_net::msg::SpaceGame { space: far, game: 2, entity: a });
        let _ = w.drain_output().count();
        assert!(w.take_store_ops().is_empty(), "nothing saved before it leaves");
        w.handle(t0, oxworld_net::msg::MigrateAck { entity: a });
        assert!(!w.has_entity(a), "gone to game 2");
        let out: Vec<FromGame> = w.drain_output().map(|(_, m)| m).collect();
        assert!(out.iter().any(|m| matches!(m, FromGame::RealMigrate(rm) if rm.entity == a)), "{out:?}");
        run_store(&mut w, &mut store, t0);
        let stored = match store.execute(StoreOp::Load { type_name: "Avatar".into(), id: a }) {
            Ok(StoreReply::Data(Some(d))) => decode_stored(&d).expect("stored form"),
            other => panic!("{other:?}"),
        };
        assert_eq!(stored, Value::Map([("gold".to_owned(), Value::Int(11))].into()));
    }

    /// The periodic save runs in slices: each tenth of the interval saves the changed entities
    /// of one slice, and every changed entity is saved within one interval.
    #[test]
    fn changed_entities_are_saved_slice_by_slice_within_an_interval() {
        let t0 = Instant::now();
        let mut store = MemStore::default();
        let ids: Vec<Id> = (0..40u8).map(|i| Id([i.wrapping_add(0x20); 16])).collect();
        let mut w = loaded_and_changed(t0, &ids, &mut store);
        let mut saved = Vec::new();
        let mut per_tick = Vec::new();
        for k in 1..=10u32 {
            w.tick(t0 + Duration::from_secs(1) * k);
            let ops = w.take_store_ops();
            per_tick.push(ops.len());
            saved.extend(ops.iter().filter_map(|(_, op)| match op {
                StoreOp::Save { id, .. } => Some(*id),
                _ => None,
            }));
            for (t, op) in ops {
                let r = store.execute(op);
                w.store_done(t0, t, r);
            }
        }
        saved.sort();
        assert_eq!(saved, ids, "every changed entity saved once within the interval");
        assert!(per_tick.iter().all(|n| *n < ids.len() / 2), "spread over the slices: {per_tick:?}");
        assert!(per_tick.iter().filter(|n| **n > 0).count() >= 5, "{per_tick:?}");
        // Nothing changed since: the next interval saves nothing.
        w.tick(t0 + Duration::from_secs(25));
        assert!(w.take_store_ops().is_empty());
    }

    /// The stored record is written in place with the same bytes as the map it stands for,
    /// and reads back as the persistent attributes only.
    #[test]
    fn the_stored_record_is_the_map_it_stands_for() {
        let t0 = Instant::now();
        let mut store = MemStore::default();
        let a = Id([0xa1; 16]);
        let w = loaded_and_changed(t0, &[a], &mut store);
        let slot = w.entities.get(&a).expect("loaded");
        let schema = &w.reg.types[slot.ty].schema;
        let mut m = BTreeMap::new();
        m.insert("v".to_owned(), Value::Int(STORED_ENTITY_VERSION));
        m.insert("attrs".to_owned(), slot.attrs.persistent_snapshot(schema));
        let mut want = Vec::new();
        Value::Map(m).encode(&mut want);
        let got = encode_stored(&slot.attrs, schema);
        assert_eq!(got, want);
        assert_eq!(decode_stored(&got), Ok(Value::Map([("gold".to_owned(), Value::Int(11))].into())));
    }

    /// A load that fails answers the calls that waited and drops the route.
    #[test]
    fn a_failed_load_answers_waiting_calls() {
        let t0 = Instant::now();
        let mut w = world(t0);
        let a = Id([0xa1; 16]);
        w.handle(t0, LoadEntity { id: a, game: 1, type_name: "Avatar".into(), must_exist: false });
        let mut enc = Vec::new();
        encode_args(&[Value::Int(1)], &mut enc);
        w.handle(
            t0,
            Call {
                target: a,
                method: method_id("earn"),
                args: enc,
                caller: Caller::Client { gate: 1, client: CLIENT },
            },
        );
        let _ = w.drain_output().count();
        run_store(&mut w, &mut Broken, t0);
        let out: Vec<FromGame> = w.drain_output().map(|(_, m)| m).collect();
        assert!(out.contains(&EntityDestroyed { id: a }.into()), "{out:?}");
        let err = out.iter().find_map(|m| match m {
            FromGame::ToClients(tc) => ServerMsg::decode(&tc.payload).ok(),
            _ => None,
        });
        assert!(matches!(err, Some(ServerMsg::Error { code, .. }) if code == ErrorCode::Unavailable as u16), "{err:?}");
        assert!(!w.has_entity(a));
        // Garbage in storage is a failed load too, not a panic.
        let mut store = MemStore::default();
        store.execute(StoreOp::Save { type_name: "Avatar".into(), id: a, data: vec![0xff, 0, 1] }).expect("save");
        w.handle(t0, LoadEntity { id: a, game: 1, type_name: "Avatar".into(), must_exist: false });
        run_store(&mut w, &mut store, t0);
        assert!(!w.has_entity(a));
        assert!(decode_stored(&[]).is_err());
    }
}
