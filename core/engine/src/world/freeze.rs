//! Freezing a world for a hot swap and rebuilding it in a new binary: every entity as an
//! [`EntityImage`] record (attributes, `Entity::save` state, timers with their remaining time
//! and handles, crontab entries, client binding, space, position, AOI radius), plus one
//! metadata record for what belongs to the game rather than to an entity (online games, the
//! service registry mirror, migrations under way, the crontab minute). Sans-IO: the caller
//! writes [`Frozen`] to LMDB (`store::lmdb::FreezeDb`) and reads it back.
//!
//! A restore checks everything before it builds anything: a type or a timer method the new
//! binary lacks fails the restore with a message naming it, and the frozen data is left as it
//! was (the caller clears it only after a restore succeeded). Added attribute fields need no
//! migration (attributes are dynamic trees; `Entity::load` sees whatever `save` wrote).

use std::collections::BTreeMap;
use std::time::Instant;

use log::info;
use oxworld_net::client_proto::Pos;
use oxworld_net::msg::Caller;
use oxworld_net::{Id, IdSeed, Value, method_id};
use thiserror::Error;

use super::{FREEZE_DRAIN_OPS, World};
use crate::entity::{Registry, RegistryError};
use crate::migrate::EntityImage;

/// Decodes entity records (16 id bytes, then an [`EntityImage`]); `first` is the index of
/// `records[0]` in the whole freeze, for error messages. Pure, so a host may decode slices of
/// the records on several threads and concatenate the results in order.
pub fn decode_records<R: AsRef<[u8]>>(records: &[R], first: usize) -> Result<Vec<(Id, EntityImage)>, RestoreError> {
    let mut out = Vec::with_capacity(records.len());
    for (i, rec) in records.iter().enumerate() {
        let index = first + i;
        let Some((id, body)) = rec.as_ref().split_first_chunk::<16>() else {
            return Err(RestoreError::Record { index, reason: "shorter than an id".into() });
        };
        let image = EntityImage::decode(body).map_err(|e| RestoreError::Record { index, reason: e.to_string() })?;
        out.push((Id(*id), image));
    }
    Ok(out)
}

/// The hot-swap hooks a type may leave as the trait's empty default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SwapHook {
    /// [`crate::Entity::on_freeze`].
    Freeze,
    /// [`crate::Entity::on_restored`].
    Restored,
}

/// Version of the freeze layout (the metadata record and how records are framed); entity
/// records carry their own [`crate::migrate::ENTITY_IMAGE_VERSION`].
pub const FREEZE_VERSION: i64 = 1;

/// A frozen world: one metadata record and one record per entity (spaces first).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frozen {
    /// Game-wide state (see the module docs).
    pub meta: Vec<u8>,
    /// 16 id bytes followed by the entity's encoded [`EntityImage`].
    pub records: Vec<Vec<u8>>,
}

/// What a restore rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestoreReport {
    /// Entities rebuilt (spaces included).
    pub entities: usize,
    /// Of which spaces (the nil space included).
    pub spaces: usize,
}

/// Why a freeze could not be restored by this binary. The frozen data is not touched.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The metadata record is unreadable.
    #[error("freeze metadata is unreadable: {0}")]
    Meta(String),
    /// Written by a newer or incompatible layout.
    #[error("freeze format version {0} is not supported (this binary reads version {FREEZE_VERSION})")]
    Version(i64),
    /// Frozen by another game id.
    #[error("the freeze belongs to game {frozen}, not game {me}")]
    WrongGame {
        /// Game that froze.
        frozen: u16,
        /// This game.
        me: u16,
    },
    /// The dispatcher count changed, so entity routes would change under the entities.
    #[error("frozen with {frozen} dispatchers but the config now has {now}; restore with the old dispatcher count")]
    Dispatchers {
        /// Count at freeze time.
        frozen: usize,
        /// Count now.
        now: usize,
    },
    /// Entity types in the freeze that this binary does not register.
    #[error("entity types in the freeze are not registered by this binary: {0}")]
    MissingTypes(String),
    /// A timer or crontab entry names a method the type no longer has.
    #[error("{ty}: frozen timers or crontab entries call method {method:?}, which this binary does not have")]
    MissingMethod {
        /// Entity type.
        ty: String,
        /// Method name.
        method: String,
    },
    /// One entity record is unreadable.
    #[error("entity record {index} is unreadable: {reason}")]
    Record {
        /// Position in the freeze.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The registry itself is invalid.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

fn id_of(v: Option<&Value>) -> Option<Id> {
    v.and_then(Value::as_id)
}

fn int(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_int)
}

fn small<T: TryFrom<i64>>(v: Option<&Value>) -> Option<T> {
    int(v).and_then(|i| T::try_from(i).ok())
}

fn pos_value(p: Pos) -> Value {
    Value::List([p.x, p.y, p.z, p.yaw].iter().map(|f| Value::Float(f64::from(*f))).collect())
}

fn pos_of(v: Option<&Value>) -> Option<Pos> {
    let Some(Value::List(l)) = v else { return None };
    let f = |i: usize| l.get(i).and_then(Value::as_float).map(|f| f as f32);
    Some(Pos { x: f(0)?, y: f(1)?, z: f(2)?, yaw: f(3)? })
}

/// Game-wide state of a freeze, decoded.
struct Meta {
    game: u16,
    dispatchers: usize,
    online: Vec<u16>,
    /// The gates up when it froze (optional in the map: a freeze of an earlier binary has
    /// none; the dispatchers say `GateUp` again at the restore's link-up anyway).
    gates: Vec<u16>,
    services: Vec<(String, u16, Id, u16)>,
    pending_services: Vec<(String, u16, Id)>,
    migrations: Vec<(Id, Id, Pos, u16)>,
    cron_minute: u64,
    records: usize,
}

impl Meta {
    fn encode(&self) -> Vec<u8> {
        let mut m = BTreeMap::new();
        m.insert("v".to_owned(), Value::Int(FREEZE_VERSION));
        m.insert("game".to_owned(), Value::Int(i64::from(self.game)));
        m.insert("dispatchers".to_owned(), Value::Int(i64::try_from(self.dispatchers).unwrap_or(i64::MAX)));
        m.insert("online".to_owned(), Value::List(self.online.iter().map(|g| Value::Int(i64::from(*g))).collect()));
        m.insert("gates".to_owned(), Value::List(self.gates.iter().map(|g| Value::Int(i64::from(*g))).collect()));
        let services = self
            .services
            .iter()
            .map(|(n, s, id, g)| {
                Value::List(vec![
                    Value::from(n.as_str()),
                    Value::Int(i64::from(*s)),
                    Value::id(*id),
                    Value::Int(i64::from(*g)),
                ])
            })
            .collect();
        m.insert("services".to_owned(), Value::List(services));
        let pending = self
            .pending_services
            .iter()
            .map(|(n, s, id)| Value::List(vec![Value::from(n.as_str()), Value::Int(i64::from(*s)), Value::id(*id)]))
            .collect();
        m.insert("pending_services".to_owned(), Value::List(pending));
        let migrations = self
            .migrations
            .iter()
            .map(|(e, sp, p, g)| {
                Value::List(vec![Value::id(*e), Value::id(*sp), pos_value(*p), Value::Int(i64::from(*g))])
            })
            .collect();
        m.insert("migrations".to_owned(), Value::List(migrations));
        m.insert("cron_minute".to_owned(), Value::Int(i64::try_from(self.cron_minute).unwrap_or(i64::MAX)));
        m.insert("records".to_owned(), Value::Int(i64::try_from(self.records).unwrap_or(i64::MAX)));
        let mut out = Vec::new();
        Value::Map(m).encode(&mut out);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Meta, RestoreError> {
        let bad = |what: &str| RestoreError::Meta(format!("field {what:?} missing or malformed"));
        let mut r = oxworld_net::wire::Reader::new(bytes);
        let v = Value::decode(&mut r).map_err(|e| RestoreError::Meta(e.to_string()))?;
        r.finish().map_err(|e| RestoreError::Meta(e.to_string()))?;
        let Value::Map(m) = v else { return Err(bad("root")) };
        let version = int(m.get("v")).ok_or_else(|| bad("v"))?;
        if version != FREEZE_VERSION {
            return Err(RestoreError::Version(version));
        }
        let list = |k: &str| match m.get(k) {
            Some(Value::List(l)) => Ok(l.as_slice()),
            _ => Err(bad(k)),
        };
        let mut online = Vec::new();
        for g in list("online")? {
            online.push(small(Some(g)).ok_or_else(|| bad("online"))?);
        }
        let mut gates = Vec::new();
        if m.contains_key("gates") {
            for g in list("gates")? {
                gates.push(small(Some(g)).ok_or_else(|| bad("gates"))?);
            }
        }
        let mut services = Vec::new();
        for s in list("services")? {
            let Value::List(f) = s else { return Err(bad("services")) };
            let name = f.first().and_then(Value::as_str).ok_or_else(|| bad("services"))?.to_owned();
            let shard = small(f.get(1)).ok_or_else(|| bad("services"))?;
            let id = id_of(f.get(2)).ok_or_else(|| bad("services"))?;
            let game = small(f.get(3)).ok_or_else(|| bad("services"))?;
            services.push((name, shard, id, game));
        }
        let mut pending_services = Vec::new();
        for s in list("pending_services")? {
            let Value::List(f) = s else { return Err(bad("pending_services")) };
            let name = f.first().and_then(Value::as_str).ok_or_else(|| bad("pending_services"))?.to_owned();
            let shard = small(f.get(1)).ok_or_else(|| bad("pending_services"))?;
            let id = id_of(f.get(2)).ok_or_else(|| bad("pending_services"))?;
            pending_services.push((name, shard, id));
        }
        let mut migrations = Vec::new();
        for s in list("migrations")? {
            let Value::List(f) = s else { return Err(bad("migrations")) };
            let e = id_of(f.first()).ok_or_else(|| bad("migrations"))?;
            let sp = id_of(f.get(1)).ok_or_else(|| bad("migrations"))?;
            let p = pos_of(f.get(2)).ok_or_else(|| bad("migrations"))?;
            let g = small(f.get(3)).ok_or_else(|| bad("migrations"))?;
            migrations.push((e, sp, p, g));
        }
        Ok(Meta {
            game: small(m.get("game")).ok_or_else(|| bad("game"))?,
            dispatchers: small(m.get("dispatchers")).ok_or_else(|| bad("dispatchers"))?,
            online,
            gates,
            services,
            pending_services,
            migrations,
            cron_minute: small(m.get("cron_minute")).ok_or_else(|| bad("cron_minute"))?,
            records: small(m.get("records")).ok_or_else(|| bad("records"))?,
        })
    }
}

impl World {
    /// Runs the local work queued by the `on_freeze` hooks, up to [`FREEZE_DRAIN_OPS`]
    /// whatever is left of this iteration's budget; true if none is left.
    fn drain_for_freeze(&mut self) -> bool {
        let budget = std::mem::replace(&mut self.core.budget, FREEZE_DRAIN_OPS);
        self.run_local();
        self.core.budget = budget;
        self.core.local.is_empty()
    }

    /// Freezes the world: runs every entity's `on_freeze` hook, drains local work, sends the
    /// clients the positions not yet synced, and returns every entity and the game-wide state
    /// as records. Messages the hooks produced are in [`World::drain_output`] and must be
    /// sent before the process exits. The world itself is left as it was (if writing the
    /// freeze fails, the game can go on).
    pub fn freeze(&mut self, now: Instant) -> Frozen {
        self.core.now = now;
        // In the table's own order: at 100,000 entities, visiting them sorted by id cost more in
        // cache misses than the hooks and images themselves.
        let ids: Vec<Id> = self.entities.keys().copied().collect();
        for id in &ids {
            if self.hook_is_default(*id, SwapHook::Freeze) {
                continue;
            }
            self.with_entity(*id, Caller::Server(Id::NIL), |e, ctx| {
                e.on_freeze(ctx);
                Ok(())
            });
        }
        if !self.drain_for_freeze() {
            log::error!(
                "game{}: {} local operations still queued at freeze; they are lost",
                self.core.game_id,
                self.core.local.len()
            );
        }
        self.core.next_sync = now;
        self.sync_spaces(now);
        // Spaces first, so members find them on restore; otherwise in the table's order.
        let (mut order, members): (Vec<Id>, Vec<Id>) =
            self.entities.keys().copied().partition(|id| self.core.spaces.is_space(*id));
        order.extend(members);
        let mut records = Vec::with_capacity(order.len());
        for id in order {
            let rec = self.with_image(id, |image| {
                let mut rec = Vec::with_capacity(256);
                rec.extend_from_slice(&id.0);
                image.encode_into(&mut rec);
                rec
            });
            records.extend(rec);
        }
        let meta = Meta {
            game: self.core.game_id,
            dispatchers: self.core.n_dispatchers,
            online: self.core.online_games.iter().copied().collect(),
            gates: self.core.online_gates.iter().copied().collect(),
            services: self.core.services.iter().map(|((n, s), (id, g))| (n.clone(), *s, *id, *g)).collect(),
            pending_services: self.core.pending_services.iter().map(|((n, s), (id, _))| (n.clone(), *s, *id)).collect(),
            migrations: self.core.migrations.iter().map(|(e, (sp, p, g))| (*e, *sp, *p, *g)).collect(),
            cron_minute: self.core.cron_minute,
            records: records.len(),
        };
        info!("game{}: froze {} entities, {} timers", self.core.game_id, records.len(), self.core.timers.len());
        Frozen { meta: meta.encode(), records }
    }

    /// Whether `id`'s type leaves `hook` as the trait's empty default (learned when the
    /// hook of one of its entities ran).
    fn hook_is_default(&self, id: Id, hook: SwapHook) -> bool {
        self.entities.get(&id).is_some_and(|s| self.core.default_swap_hooks.contains(&(s.ty, hook)))
    }

    /// Rebuilds a frozen world without telling any client anything (they still show it): the
    /// same entities with the same ids, attributes, state, timers (remaining time counted
    /// from `clock_base`), crontab entries, client bindings, spaces, positions and AOI
    /// neighbourhoods, then runs every entity's `on_restored` hook. Fails, building nothing,
    /// if this binary cannot represent the freeze.
    pub fn restore(
        reg: Registry,
        game_id: u16,
        n_dispatchers: usize,
        boot_override: Option<&str>,
        seed: impl Into<IdSeed>,
        clock_base: (Instant, u64),
        frozen: &Frozen,
    ) -> Result<(World, RestoreReport), RestoreError> {
        let decode = |r: &[Vec<u8>]| decode_records(r, 0);
        Self::restore_with(
            reg,
            game_id,
            n_dispatchers,
            boot_override,
            seed,
            clock_base,
            &frozen.meta,
            &frozen.records,
            decode,
        )
    }

    /// [`World::restore`] from a freeze's metadata and entity records wherever they are (the
    /// host reads them in place from LMDB's memory map), with the records decoded by `decode`,
    /// which must return what [`decode_records`]`(records, 0)` would (the host splits the
    /// records over threads).
    #[allow(clippy::too_many_arguments)]
    pub fn restore_with<R: AsRef<[u8]>>(
        reg: Registry,
        game_id: u16,
        n_dispatchers: usize,
        boot_override: Option<&str>,
        seed: impl Into<IdSeed>,
        clock_base: (Instant, u64),
        meta: &[u8],
        records: &[R],
        decode: impl FnOnce(&[R]) -> Result<Vec<(Id, EntityImage)>, RestoreError>,
    ) -> Result<(World, RestoreReport), RestoreError> {
        let meta = Meta::decode(meta)?;
        if meta.game != game_id {
            return Err(RestoreError::WrongGame { frozen: meta.game, me: game_id });
        }
        if meta.dispatchers != n_dispatchers.max(1) {
            return Err(RestoreError::Dispatchers { frozen: meta.dispatchers, now: n_dispatchers });
        }
        if meta.records != records.len() {
            return Err(RestoreError::Meta(format!(
                "{} entity records expected, {} found",
                meta.records,
                records.len()
            )));
        }
        let mut w = World::build(reg, game_id, n_dispatchers, boot_override, seed, clock_base)?;
        // This world was started before the swap: its game-ready hook ran (or will not matter).
        w.core.ready_fired = true;
        // Check everything first.
        let decoded = decode(records)?;
        if decoded.len() != records.len() {
            return Err(RestoreError::Meta(format!("{} entity records decoded of {}", decoded.len(), records.len())));
        }
        let mut images = Vec::with_capacity(decoded.len());
        let mut missing = std::collections::BTreeSet::new();
        for (index, (id, image)) in decoded.into_iter().enumerate() {
            match w.reg.type_index(&image.type_name) {
                None => {
                    missing.insert(image.type_name.clone());
                }
                Some(ty) => {
                    let desc = &w.reg.types[ty];
                    let names = image.timers.iter().map(|t| &t.method).chain(image.cron.iter().map(|c| &c.method));
                    for m in names {
                        if !desc.by_id.contains_key(&method_id(m)) {
                            return Err(RestoreError::MissingMethod { ty: desc.name.to_owned(), method: m.clone() });
                        }
                    }
                    if image.space_kind.is_some() != desc.is_space {
                        return Err(RestoreError::Record {
                            index,
                            reason: format!("{} is frozen as a space but is not one here, or the reverse", desc.name),
                        });
                    }
                    images.push((id, ty, image));
                }
            }
        }
        if !missing.is_empty() {
            return Err(RestoreError::MissingTypes(missing.into_iter().collect::<Vec<_>>().join(", ")));
        }
        // Build, silently.
        let mut report = RestoreReport::default();
        // One allocation per table instead of a rehash at every doubling.
        w.entities.reserve(images.len());
        w.core.local_ids.reserve(images.len());
        let nil = w.core.nil_space;
        let mut sights = Vec::new();
        for (id, ty, image) in images {
            let is_space = image.space_kind.is_some();
            let place = w.rebuild(id, ty, image);
            if is_space {
                report.spaces += 1;
            } else {
                let space = if w.core.spaces.is_space(place.space) { place.space } else { nil };
                w.core.spaces.join(id, space, place.pos, place.radius, &mut sights);
                if let Some(sp) = w.core.spaces.spatial_mut(id) {
                    sp.client_move = place.client_move;
                }
            }
            report.entities += 1;
        }
        if !w.entities.contains_key(&nil) {
            // A freeze always holds the nil space; an empty one (hand-made) still gets one.
            w.create_space_now(nil, 0);
        }
        // Neighbourhoods are rebuilt from the same positions and radii: the clients already
        // show them.
        w.core.spaces.flush(&mut sights);
        let _ = w.core.spaces.take_moved();
        w.core.online_games.extend(meta.online);
        w.core.online_games.insert(game_id);
        // Filtered calls made before the dispatchers' `GateUp`s arrive reach these gates.
        w.core.online_gates.extend(meta.gates);
        for (n, s, id, g) in meta.services {
            w.core.services.insert((n, s), (id, g));
        }
        for (n, s, id) in meta.pending_services {
            w.core.pending_services.insert((n, s), (id, clock_base.0));
        }
        for (e, sp, p, g) in meta.migrations {
            if w.entities.contains_key(&e) {
                w.core.migrations.insert(e, (sp, p, g));
            }
        }
        w.core.cron_minute = w.core.cron_minute.max(meta.cron_minute);
        w.core.out.clear();
        let mut ids: Vec<(bool, Id)> = w.entities.keys().map(|id| (!w.core.spaces.is_space(*id), *id)).collect();
        ids.sort_unstable();
        for (_, id) in ids {
            if w.hook_is_default(id, SwapHook::Restored) {
                continue;
            }
            w.with_entity(id, Caller::Server(Id::NIL), |e, ctx| {
                e.on_restored(ctx);
                Ok(())
            });
        }
        info!("game{game_id}: restored {} entities ({} spaces)", report.entities, report.spaces);
        Ok((w, report))
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use std::time::Duration;

    use oxworld_net::client_proto::ServerMsg;
    use oxworld_net::msg::{
        Call, CreateBoot, CreateEntity, FromGame, MigrateAck, MigrateRequest, ServiceUpdate, SpaceGame,
    };
    use oxworld_net::value::encode_args;

    use super::*;
    use crate::attr::AttrFlags;
    use crate::entity::{Args, CallError, Entity, Expose};
    use crate::world::{ClientRef, Ctx};

    /// A player whose plain field `gold` survives through save/load.
    #[derive(Default)]
    struct Hero {
        gold: i64,
    }
    impl Entity for Hero {
        fn save(&self) -> Value {
            Value::Int(self.gold)
        }
        fn load(&mut self, state: Value) {
            self.gold = state.as_int().unwrap_or(0);
        }
        fn on_restored(&mut self, ctx: &mut Ctx<'_>) {
            let n = ctx.attrs().int("restores");
            ctx.attrs().set("restores", n + 1);
        }
    }
    impl Hero {
        fn earn(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
            self.gold += args.int(0)?;
            ctx.call_client("gold", vec![Value::Int(self.gold)]);
            Ok(())
        }
        fn go(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
            let x = args.get(1)?.as_float().unwrap_or(0.0) as f32;
            ctx.enter_space(args.id(0)?, Pos::at(x, 0.0, 0.0)).map_err(|e| CallError::Failed(e.to_string()))
        }
        fn walk(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
            ctx.set_position(args.get(0)?.as_float().unwrap_or(0.0) as f32, 0.0, 0.0);
            Ok(())
        }
        fn arm(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
            let t = ctx
                .add_repeat_timer(Duration::from_millis(100), "tick", vec![Value::Int(1)])
                .map_err(|e| CallError::Failed(e.to_string()))?;
            ctx.attrs().set("timer", Value::Int(t.0 as i64));
            ctx.add_cron("*/5 * * * *", "tick", vec![Value::Int(2)]).map_err(|e| CallError::Failed(e.to_string()))?;
            Ok(())
        }
        fn tick(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
            ctx.call_client("tick", args.into_vec());
            Ok(())
        }
        fn stop(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
            let t = crate::timer::TimerId(ctx.attrs().int("timer") as u64);
            let ok = ctx.cancel_timer(t);
            ctx.call_client("stopped", vec![Value::Bool(ok)]);
            Ok(())
        }
    }

    #[derive(Default)]
    struct Arena;
    impl Entity for Arena {}

    struct Hub;
    impl Entity for Hub {}

    /// The registry; `with_tick` false drops the timer method (a changed binary).
    fn registry(with_hero: bool, with_tick: bool) -> Registry {
        let mut reg = Registry::new();
        if with_hero {
            let b = reg
                .entity("Hero", Hero::default)
                .aoi(10.0)
                .attr("hp", AttrFlags::ALL_CLIENTS)
                .method("earn", Expose::OwnClient, Hero::earn)
                .method("go", Expose::OwnClient, Hero::go)
                .method("walk", Expose::OwnClient, Hero::walk)
                .method("arm", Expose::OwnClient, Hero::arm)
                .method("stop", Expose::OwnClient, Hero::stop);
            if with_tick {
                b.method("tick", Expose::Server, Hero::tick);
            }
        }
        reg.entity("Hub", || Hub);
        reg.space("Arena", Arena::default);
        reg.boot(if with_hero { "Hero" } else { "Hub" });
        reg
    }

    const GATE: u16 = 1;

    fn client_msgs(w: &mut World) -> Vec<(Id, ServerMsg)> {
        w.drain_output()
            .filter_map(|(_, m)| match m {
                FromGame::ToClients(tc) => {
                    Some((tc.clients[0], ServerMsg::decode(&tc.payload).expect("valid client msg")))
                }
                _ => None,
            })
            .collect()
    }

    fn call(w: &mut World, now: Instant, client: Id, target: Id, m: &str, a: Vec<Value>) {
        let mut enc = Vec::new();
        encode_args(&a, &mut enc);
        let caller = Caller::Client { gate: GATE, client };
        w.handle(now, Call { target, method: method_id(m), caller, args: enc });
    }

    /// A game with a space of kind 5 holding two heroes that see each other, one far away;
    /// timers, a crontab entry, plain state, a service mirror and a migration in flight.
    fn populated(t0: Instant) -> (World, [Id; 3], [Id; 3], Id) {
        let mut w = World::new(registry(true, true), 3, 2, None, 7, (t0, 1_700_000_000_000)).expect("registry");
        let heroes = [Id([0xa1; 16]), Id([0xa2; 16]), Id([0xa3; 16])];
        let clients = [Id([0xc1; 16]), Id([0xc2; 16]), Id([0xc3; 16])];
        for (h, c) in heroes.iter().zip(&clients) {
            w.handle(t0, CreateBoot { boot: *h, gate: GATE, client: *c, token: Id::NIL });
        }
        let space = Id([0x5a; 16]);
        w.handle(t0, CreateEntity { id: space, game: 3, type_name: "Arena".into(), space_kind: Some(5) });
        for (i, x) in [0.0, 5.0, 500.0].into_iter().enumerate() {
            call(&mut w, t0, clients[i], heroes[i], "go", vec![Value::id(space), Value::Float(x)]);
        }
        call(&mut w, t0, clients[0], heroes[0], "earn", vec![Value::Int(40)]);
        call(&mut w, t0, clients[0], heroes[0], "arm", vec![]);
        w.handle(t0, ServiceUpdate { entity: Id([0x77; 16]), game: 2, name: "Hub".into(), shard: 0 });
        w.tick(t0);
        let _ = w.drain_output().count();
        (w, heroes, clients, space)
    }

    /// A field whose type keeps the default hooks.
    #[derive(Default)]
    struct Inner;
    impl Entity for Inner {}

    /// Overrides both hooks and calls its field's defaults from them.
    #[derive(Default)]
    struct Outer {
        inner: Inner,
    }
    impl Entity for Outer {
        fn on_freeze(&mut self, ctx: &mut Ctx<'_>) {
            self.inner.on_freeze(ctx);
            ctx.attrs().set("froze", true);
        }
        fn on_restored(&mut self, ctx: &mut Ctx<'_>) {
            self.inner.on_restored(ctx);
            ctx.attrs().set("restored", true);
        }
    }

    /// A wrapper's own hooks run for every one of its entities, although the field's default
    /// hooks ran inside them (the default marks only its own type).
    #[test]
    fn an_override_calling_a_fields_default_hook_runs_for_every_entity() {
        let reg = || {
            let mut reg = Registry::new();
            reg.entity("Outer", Outer::default);
            reg.entity("Inner", || Inner);
            reg.boot("Outer");
            reg
        };
        let t0 = Instant::now();
        let mut w = World::new(reg(), 1, 1, None, 7, (t0, 1_700_000_000_000)).expect("registry");
        let outers: Vec<Id> = (1..=5u8).map(|i| Id([i; 16])).collect();
        for id in &outers {
            w.handle(t0, CreateEntity { id: *id, game: 1, type_name: "Outer".into(), space_kind: None });
        }
        let frozen = w.freeze(t0);
        for id in &outers {
            assert_eq!(w.entities[id].attrs.get("froze"), Some(&Value::Bool(true)), "on_freeze of {id}");
        }
        let (r, _) = World::restore(reg(), 1, 1, None, 9, (t0, 1_700_000_000_000), &frozen).expect("restores");
        for id in &outers {
            assert_eq!(r.entities[id].attrs.get("restored"), Some(&Value::Bool(true)), "on_restored of {id}");
        }
        let outer = r.reg.type_index("Outer").expect("registered");
        assert!(!r.core.default_swap_hooks.contains(&(outer, SwapHook::Restored)));
    }

    #[test]
    fn restore_rebuilds_the_same_world_silently_and_it_carries_on() {
        let t0 = Instant::now();
        let (mut w, heroes, clients, space) = populated(t0);
        // 30 ms into the 100 ms timer period.
        let frozen = w.freeze(t0 + Duration::from_millis(30));
        assert!(client_msgs(&mut w).is_empty(), "nothing moved, nothing to tell");
        assert_eq!(frozen.records.len(), w.entity_count());

        // A new process: another clock, another seed.
        let t1 = t0 + Duration::from_secs(3600);
        let (mut r, report) =
            World::restore(registry(true, true), 3, 2, None, 99, (t1, 1_700_000_500_000), &frozen).expect("restores");
        assert_eq!(report, RestoreReport { entities: w.entity_count(), spaces: 2 });
        // Silent: no client message, no routing message.
        assert_eq!(r.drain_output().count(), 0);
        for h in heroes {
            assert!(r.has_entity(h));
            assert_eq!(r.space_of(h), Some(space));
            assert_eq!(r.position_of(h), w.position_of(h));
            assert_eq!(r.entities[&h].attrs.get("restores"), Some(&Value::Int(1)), "on_restored ran");
        }
        // The empty default hooks were learned per type and skipped after the first; Hero's
        // own on_restored ran for every hero (above).
        let ty = |name: &str| r.reg.type_index(name).expect("registered");
        assert!(r.core.default_swap_hooks.contains(&(ty("Arena"), SwapHook::Restored)));
        assert!(!r.core.default_swap_hooks.contains(&(ty("Hero"), SwapHook::Restored)));
        assert!(w.core.default_swap_hooks.contains(&(ty("Arena"), SwapHook::Freeze)));
        assert!(
            w.core.default_swap_hooks.contains(&(ty("Hero"), SwapHook::Freeze)),
            "Hero keeps the default on_freeze"
        );
        assert_eq!(r.core.services.get(&("Hub".to_owned(), 0)), Some(&(Id([0x77; 16]), 2)));
        assert_eq!(r.core.spaces.space(space).map(|s| s.kind), Some(5));
        // Freezing the restored world again (at the same point of its timers) gives the same
        // records, apart from the hook's counter.
        let again = r.freeze(t1);
        let strip = |f: &Frozen| -> Vec<Vec<u8>> {
            f.records
                .iter()
                .map(|rec| {
                    let mut img = EntityImage::decode(&rec[16..]).expect("image");
                    if let Value::Map(m) = &mut img.attrs {
                        m.remove("restores");
                    }
                    let mut out = rec[..16].to_vec();
                    out.extend(img.encode());
                    out
                })
                .collect()
        };
        assert_eq!(strip(&again), strip(&frozen));
        assert_eq!(
            Meta::decode(&again.meta).expect("meta").services,
            Meta::decode(&frozen.meta).expect("meta").services
        );
        let _ = r.drain_output().count();

        // Plain state survived; the own client still reaches its entity.
        call(&mut r, t1, clients[0], heroes[0], "earn", vec![Value::Int(2)]);
        assert_eq!(
            client_msgs(&mut r),
            vec![(clients[0], ServerMsg::Call { id: heroes[0], method: "gold".into(), args: vec![Value::Int(42)] })]
        );
        // The timer fires 70 ms after the restore (its remaining time), not 100 ms.
        r.tick(t1 + Duration::from_millis(69));
        assert!(client_msgs(&mut r).is_empty());
        r.tick(t1 + Duration::from_millis(70));
        let fired = client_msgs(&mut r);
        assert!(
            matches!(&fired[..], [(c, ServerMsg::Call { method, .. })] if *c == clients[0] && method == "tick"),
            "{fired:?}"
        );
        // The handle the entity kept in an attribute still cancels it.
        call(&mut r, t1, clients[0], heroes[0], "stop", vec![]);
        let stopped = client_msgs(&mut r);
        assert!(
            matches!(&stopped[..], [(_, ServerMsg::Call { args: a, .. })] if *a == vec![Value::Bool(true)]),
            "{stopped:?}"
        );
        // AOI membership is back: hero 1 walking away makes hero 0's client drop it.
        call(&mut r, t1, clients[1], heroes[1], "walk", vec![Value::Float(300.0)]);
        r.tick(t1 + Duration::from_millis(200));
        let msgs = client_msgs(&mut r);
        assert!(msgs.contains(&(clients[0], ServerMsg::DestroyEntity { id: heroes[1] })), "{msgs:?}");
        assert!(msgs.contains(&(clients[1], ServerMsg::DestroyEntity { id: heroes[0] })), "{msgs:?}");
        // Crontab entries came back with the entity.
        assert_eq!(r.core.cron.len(), 1);
        assert_eq!(r.core.cron[&heroes[0]][0].text, "*/5 * * * *");
    }

    #[test]
    fn a_binary_that_cannot_represent_the_freeze_says_why() {
        let t0 = Instant::now();
        let (mut w, ..) = populated(t0);
        let frozen = w.freeze(t0);
        let restore = |reg: Registry, game: u16, n: usize, f: &Frozen| {
            World::restore(reg, game, n, None, 1, (t0, 1_700_000_000_000), f).map(|_| ()).map_err(|e| e.to_string())
        };
        let e = restore(registry(false, true), 3, 2, &frozen).expect_err("type removed");
        assert!(e.contains("not registered") && e.contains("Hero"), "{e}");
        let e = restore(registry(true, false), 3, 2, &frozen).expect_err("timer method removed");
        assert!(e.contains("Hero") && e.contains("\"tick\""), "{e}");
        let e = restore(registry(true, true), 4, 2, &frozen).expect_err("other game");
        assert!(e.contains("game 3"), "{e}");
        let e = restore(registry(true, true), 3, 3, &frozen).expect_err("dispatchers changed");
        assert!(e.contains("2 dispatchers"), "{e}");
        // The input is untouched by the failures and still restores with the right binary.
        assert!(restore(registry(true, true), 3, 2, &frozen).is_ok());
    }

    #[test]
    fn truncated_and_hostile_freezes_are_errors_not_panics() {
        let t0 = Instant::now();
        let (mut w, ..) = populated(t0);
        let frozen = w.freeze(t0);
        let restore = |f: &Frozen| World::restore(registry(true, true), 3, 2, None, 1, (t0, 0), f).map(|_| ());
        for cut in 0..frozen.meta.len() {
            let mut f = frozen.clone();
            f.meta.truncate(cut);
            assert!(restore(&f).is_err(), "meta cut at {cut}");
        }
        let rec = frozen.records.len() - 1;
        for cut in 0..frozen.records[rec].len() {
            let mut f = frozen.clone();
            f.records[rec].truncate(cut);
            assert!(restore(&f).is_err(), "record cut at {cut}");
        }
        let mut f = frozen.clone();
        f.records.pop();
        assert!(restore(&f).is_err(), "a record missing");
        let mut f = frozen.clone();
        f.records[0] = vec![0xff; 40];
        assert!(restore(&f).is_err());
        let mut f = frozen.clone();
        let mut m = BTreeMap::new();
        m.insert("v".to_owned(), Value::Int(FREEZE_VERSION + 1));
        f.meta.clear();
        Value::Map(m).encode(&mut f.meta);
        assert!(matches!(
            World::restore(registry(true, true), 3, 2, None, 1, (t0, 0), &f),
            Err(RestoreError::Version(_))
        ));
    }

    /// A restored entity that was waiting for another game's space goes on with its move
    /// when the answer (held by the dispatcher during the swap) arrives.
    #[test]
    fn a_migration_under_way_survives_the_swap() {
        let t0 = Instant::now();
        let (mut w, heroes, clients, _) = populated(t0);
        let far = Id([0x5f; 16]);
        call(&mut w, t0, clients[2], heroes[2], "go", vec![Value::id(far), Value::Float(1.0)]);
        let _ = w.drain_output().count();
        let frozen = w.freeze(t0);
        let (mut r, _) =
            World::restore(registry(true, true), 3, 2, None, 5, (t0, 1_700_000_000_000), &frozen).expect("restores");
        r.handle(t0, SpaceGame { space: far, game: 1, entity: heroes[2] });
        let out: Vec<FromGame> = r.drain_output().map(|(_, m)| m).collect();
        assert!(out.contains(&MigrateRequest { entity: heroes[2] }.into()), "{out:?}");
        r.handle(t0, MigrateAck { entity: heroes[2] });
        let out: Vec<FromGame> = r.drain_output().map(|(_, m)| m).collect();
        assert!(
            out.iter().any(|m| matches!(m, FromGame::RealMigrate(rm) if rm.entity == heroes[2] && rm.game == 1)),
            "{out:?}"
        );
        assert!(!r.has_entity(heroes[2]));
        let _ = clients;
        let _ = ClientRef { gate: GATE, client: clients[0], token: Id::NIL };
    }
}
