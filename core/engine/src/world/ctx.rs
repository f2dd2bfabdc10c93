//! [`Ctx`]: everything entity code can do, handed to each method and hook. It reaches the
//! world's shared state (`WorldCore`) while the entity's own slot is checked out, so entity
//! code never runs re-entrantly: local calls, creates, destroys and space changes are queued
//! as `LocalOp`s and run after the handler returns. Storage calls are in `persist`, service
//! calls in `services`.

use std::time::{Duration, Instant};

use log::{debug, warn};
use oxworld_net::client_proto::{Pos, ServerMsg};
use oxworld_net::msg::{Call, Caller, CreateEntity, FilterOp, FilteredCall, QuerySpace, SetFilterProp};
use oxworld_net::value::encode_args;
use oxworld_net::{Id, Value, method_id};

use super::{
    ClientRef, CreateError, CronAddError, CronEntry, LocalOp, MAX_LOCAL_QUEUE, SpaceError, TimerError, WorldCore,
    nil_space_id,
};
use crate::attr::{AttrSchema, Attrs, MapMut};
use crate::cron::CronSpec;
use crate::entity::Registry;
use crate::timer::{Timer, TimerId};

/// What an entity method or hook gets to act on the world.
pub struct Ctx<'a> {
    pub(super) core: &'a mut WorldCore,
    pub(super) reg: &'a Registry,
    pub(super) id: Id,
    pub(super) caller: Caller,
    pub(super) client: &'a mut Option<ClientRef>,
    pub(super) destroy: &'a mut bool,
    pub(super) attrs: &'a mut Attrs,
    pub(super) schema: &'a AttrSchema,
    pub(super) ty: usize,
    /// The other entities of this game (this one's slot is empty while its code runs).
    pub(super) entities: &'a super::Entities,
}

impl Ctx<'_> {
    /// Called by the trait's empty default of `hook` only, with the Rust type it ran for: if
    /// that is this entity's registered type, the type does not override `hook`, so the rest
    /// of its entities need not run it. (Another type's override calling a field's default
    /// passes the field's type, which marks nothing.)
    pub(crate) fn default_swap_hook(&mut self, of: std::any::TypeId, hook: super::freeze::SwapHook) {
        if self.reg.types[self.ty].rust_type == of {
            self.core.default_swap_hooks.insert((self.ty, hook));
        }
    }

    /// This entity's attributes, for reading and changing; changes reach the clients that may
    /// see them (by the attribute's flags) in order, before any later call to those clients.
    pub fn attrs(&mut self) -> MapMut<'_> {
        self.attrs.root()
    }

    /// This entity's attributes, read-only.
    pub fn attrs_ref(&self) -> &Attrs {
        self.attrs
    }

    /// Queues local work to run after the current handler; refused (counted, logged with a
    /// threshold that doubles) when [`MAX_LOCAL_QUEUE`] operations are already queued.
    fn queue(&mut self, op: LocalOp) {
        if self.core.local.len() >= MAX_LOCAL_QUEUE {
            self.core.stats.local_refused += 1;
            if let Some(n) = self.core.queue_full.hit() {
                log::error!(
                    "game{}: {} {} queued local work past {MAX_LOCAL_QUEUE} operations ({n} refused so far); dropped",
                    self.core.game_id,
                    self.reg.types[self.ty].name,
                    self.id
                );
            }
            return;
        }
        self.core.local.push_back(op);
    }

    pub(super) fn flush_attrs(&mut self) {
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
        let deadline = self.core.now.checked_add(first).ok_or(TimerError::TooLong(first))?;
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
        self.queue(LocalOp::Call { target: self.id, method: method_id(method), args, caller });
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
        let deadline = self.core.now.checked_add(after).ok_or(TimerError::TooLong(after))?;
        Ok(self.core.timers.add(Timer { entity: self.core.nil_space, method: m, args, deadline, repeat }))
    }

    /// Calls `method` of this entity on a crontab schedule (`"*/5 * * * *"`: every five
    /// minutes, UTC), until the entity is destroyed or the entry removed (`remove_cron`).
    /// Schedules travel with the entity (migration, freeze).
    pub fn add_cron(&mut self, spec: &str, method: &str, args: Vec<Value>) -> Result<(), CronAddError> {
        let s = CronSpec::parse(spec)?;
        let m = method_id(method);
        if !self.reg.types[self.ty].by_id.contains_key(&m) {
            return Err(CronAddError::UnknownMethod(method.to_owned()));
        }
        self.core.cron.entry(self.id).or_default().push(CronEntry { spec: s, text: spec.to_owned(), method: m, args });
        Ok(())
    }

    /// Removes this entity's crontab entries that call `method` (all of them with `spec: None`,
    /// or only those with that schedule as written); returns how many were removed.
    pub fn remove_cron(&mut self, spec: Option<&str>, method: &str) -> usize {
        let m = method_id(method);
        let Some(entries) = self.core.cron.get_mut(&self.id) else { return 0 };
        let before = entries.len();
        entries.retain(|e| !(e.method == m && spec.is_none_or(|s| s == e.text)));
        let removed = before - entries.len();
        if entries.is_empty() {
            self.core.cron.remove(&self.id);
        }
        removed
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

    /// Position and yaw of `other` if it is an entity of this game (GoWorld's
    /// `GetEntity(id).Position`); `None` for spaces and for entities elsewhere, which stay
    /// reachable by calls only.
    pub fn position_of(&self, other: Id) -> Option<Pos> {
        self.core.spaces.spatial(other).map(|s| s.pos)
    }

    /// Distance (3D, as GoWorld's `DistanceTo`) from this entity to `other` of this game.
    pub fn distance_to(&self, other: Id) -> Option<f32> {
        let there = self.position_of(other)?;
        Some(crate::geom::Vec3::from(self.position()).distance(there.into()))
    }

    /// Turns this entity towards `other` of this game (GoWorld's `FaceTo`); false if `other` is
    /// not here or stands exactly above or below.
    pub fn face_to_entity(&mut self, other: Id) -> bool {
        let Some(there) = self.position_of(other) else { return false };
        let here = crate::geom::Vec3::from(self.position());
        match (crate::geom::Vec3::from(there) - here).yaw() {
            Some(yaw) => {
                self.set_yaw(yaw);
                true
            }
            None => false,
        }
    }

    /// True if this entity is a space.
    pub fn is_space(&self) -> bool {
        self.reg.types[self.ty].is_space
    }

    /// True if this entity's type takes part in AOI (declared with a radius).
    pub fn uses_aoi(&self) -> bool {
        self.reg.types[self.ty].aoi_radius.is_some()
    }

    /// True if this entity's type is persistent (saved and loadable).
    pub fn is_persistent(&self) -> bool {
        self.reg.types[self.ty].persistent
    }

    /// True once this entity asked to be destroyed (`destroy` in this handler); it goes when
    /// the handler returns.
    pub fn is_destroyed(&self) -> bool {
        *self.destroy
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
            self.queue(LocalOp::EnterSpace { entity: self.id, space, pos });
        } else {
            // Another game's space: find it, then migrate there (see `World::handle`).
            self.core.migrations.insert(self.id, (space, pos, 0));
            self.core.migration_started.insert(self.id, self.core.now);
            self.core.send(space, QuerySpace { space, entity: self.id });
        }
        Ok(())
    }

    /// Creates a space of kind `kind` on this game (an instance of the registered space
    /// type); it exists once the current handler returns.
    pub fn create_space_locally(&mut self, kind: i64) -> Id {
        let id = self.core.ids.next(self.core.unix_ms());
        self.core.local_ids.insert(id);
        self.queue(LocalOp::CreateSpace { id, kind });
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
        // Encoded once; one message per dispatcher and gate carries it to every client.
        let mut payload = Vec::new();
        msg.encode(&mut payload);
        let reached = self.reached_clients();
        self.core.send_to_clients(&reached, payload);
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
            self.queue(LocalOp::Call { target, method, args, caller });
        } else {
            let mut enc = Vec::new();
            encode_args(&args, &mut enc);
            if !self.core.fits(enc.len(), || format!("a call from {} to {target}", self.id)) {
                let reason = format!("arguments of {} bytes exceed the internal frame limit", enc.len());
                self.queue(LocalOp::CallFailed { to: self.id, target, method, reason });
                return;
            }
            self.core.send(target, Call { target, method, caller, args: enc });
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
        let ty = self.entity_type(type_name)?;
        let id = self.core.ids.next(self.core.unix_ms());
        self.core.local_ids.insert(id);
        self.queue(LocalOp::Create { ty, id });
        Ok(id)
    }

    /// Creates an entity of `type_name` on game `game`; calls sent to the returned id right
    /// away are delivered after the creation, in order.
    pub fn create_entity_on_game(&mut self, game: u16, type_name: &str) -> Result<Id, CreateError> {
        if game == self.core.game_id {
            return self.create_entity_locally(type_name);
        }
        self.entity_type(type_name)?;
        if !self.core.online_games.contains(&game) {
            return Err(CreateError::GameOffline(game));
        }
        let id = self.core.ids.next(self.core.unix_ms());
        self.core.send(id, CreateEntity { id, game, type_name: type_name.to_owned(), space_kind: None });
        Ok(id)
    }

    /// Creates an entity of `type_name` on the least-loaded live game (chosen by the new
    /// entity's dispatcher from the loads games report every second).
    pub fn create_entity_anywhere(&mut self, type_name: &str) -> Result<Id, CreateError> {
        self.entity_type(type_name)?;
        let id = self.core.ids.next(self.core.unix_ms());
        self.core.send(id, CreateEntity { id, game: 0, type_name: type_name.to_owned(), space_kind: None });
        Ok(id)
    }

    /// The registered, non-space type `type_name`.
    fn entity_type(&self, type_name: &str) -> Result<usize, CreateError> {
        let ty = self.reg.type_index(type_name).ok_or_else(|| CreateError::UnknownType(type_name.to_owned()))?;
        if self.reg.types[ty].is_space {
            return Err(CreateError::SpaceType(type_name.to_owned()));
        }
        Ok(ty)
    }

    /// Creates a space of kind `kind` on game `game` (GoWorld's `CreateSpaceOnGame`); this
    /// game's own id creates it here.
    pub fn create_space_on_game(&mut self, game: u16, kind: i64) -> Result<Id, CreateError> {
        if game == self.core.game_id {
            return Ok(self.create_space_locally(kind));
        }
        if !self.core.online_games.contains(&game) {
            return Err(CreateError::GameOffline(game));
        }
        let id = self.core.ids.next(self.core.unix_ms());
        let type_name = self.reg.space_type.map(|t| self.reg.types[t].name).unwrap_or("__space__").to_owned();
        self.core.send(id, CreateEntity { id, game, type_name, space_kind: Some(kind) });
        Ok(id)
    }

    /// Creates a space of kind `kind` on the least-loaded live game.
    pub fn create_space_anywhere(&mut self, kind: i64) -> Id {
        let id = self.core.ids.next(self.core.unix_ms());
        let type_name = self.reg.space_type.map(|t| self.reg.types[t].name).unwrap_or("__space__").to_owned();
        self.core.send(id, CreateEntity { id, game: 0, type_name, space_kind: Some(kind) });
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
        self.queue(LocalOp::GiveClient { from: self.id, to: other });
    }

    /// Lets go of this entity's client once the current handler returns (GoWorld's
    /// `SetClient(nil)`): the client gets an `Error` with code `Kicked` and `reason`, then its
    /// gate closes the connection; this entity's `on_client_disconnected` runs. A connection
    /// without an entity could do nothing in our protocol, so letting go always closes it.
    /// No-op without a client.
    pub fn kick_client(&mut self, reason: &str) {
        if self.client.is_some() {
            self.queue(LocalOp::Kick { entity: self.id, reason: reason.to_owned() });
        }
    }

    /// Sets filter property `key` of this entity's client (empty `value` removes it); used by
    /// [`Ctx::call_filtered_clients`]. No-op without a client.
    pub fn set_client_filter_prop(&mut self, key: &str, value: &str) {
        if let Some(c) = *self.client {
            self.core.record_prop(c.client, key, value);
            let msg = SetFilterProp { gate: c.gate, client: c.client, key: key.to_owned(), value: value.to_owned() };
            self.core.send(self.id, msg);
        }
    }

    /// Calls `method` (with `args`) on the player entity of every client, on every gate, whose
    /// filter property `key` satisfies `op value` (`"="`, `"!="`, `"<"`, `">"`, `"<="`, `">="`;
    /// numbers compare numerically, anything else as strings); an empty `key` selects every
    /// client. Each gate gets it exactly once, however many dispatchers there are. Unknown
    /// `op`: nothing is sent. GoWorld compares as strings always: see
    /// [`Ctx::call_filtered_clients_by_string`].
    pub fn call_filtered_clients(&mut self, key: &str, op: &str, value: &str, method: &str, args: Vec<Value>) {
        self.filtered(key, FilterOp::parse(op), op, value, method, args);
    }

    /// [`Ctx::call_filtered_clients`] comparing as strings (byte order) even when both sides
    /// are numbers, as GoWorld's `CallFilteredClients` does (`"10" < "9"`).
    pub fn call_filtered_clients_by_string(
        &mut self,
        key: &str,
        op: &str,
        value: &str,
        method: &str,
        args: Vec<Value>,
    ) {
        self.filtered(key, FilterOp::parse(op).map(FilterOp::as_string), op, value, method, args);
    }

    fn filtered(&mut self, key: &str, op: Option<FilterOp>, text: &str, value: &str, method: &str, args: Vec<Value>) {
        let Some(op) = op else {
            warn!("call_filtered_clients: unknown operator {text:?}");
            return;
        };
        let mut enc = Vec::new();
        encode_args(&args, &mut enc);
        if !self.core.fits(enc.len(), || format!("call_filtered_clients({method}) from {}", self.id)) {
            return;
        }
        // One per online gate, all through dispatcher index 0 (so they stay in order), each
        // numbered end to end: none is lost when a dispatcher dies.
        let gates: Vec<u16> = self.core.online_gates.iter().copied().collect();
        for gate in gates {
            let msg = FilteredCall {
                gate,
                key: key.to_owned(),
                op,
                value: value.to_owned(),
                method: method.to_owned(),
                args: enc.clone(),
            };
            self.core.send_idx(0, msg);
        }
    }

    /// Calls `method` on every connected client's player entity.
    pub fn call_all_clients_everywhere(&mut self, method: &str, args: Vec<Value>) {
        self.call_filtered_clients("", "=", "", method, args);
    }

    /// Destroys this entity once the current handler returns.
    pub fn destroy(&mut self) {
        *self.destroy = true;
    }
}
