//! Moving an entity to another game (see ARCHITECTURE.md, "Migration"), and the one way an
//! entity becomes an [`EntityImage`] ([`World::image_of`]) and is rebuilt from one
//! ([`World::rebuild`]): migration and hot-swap freezes share both.

use log::warn;
use oxworld_net::client_proto::Pos;
use oxworld_net::msg::{Caller, CancelMigrate, EntityDestroyed, MigrateRequest, PlayerAt, RealMigrate};
use oxworld_net::{Id, Value, method_id};

use super::{CronEntry, Slot, World};
use crate::attr::Attrs;
use crate::cron::CronSpec;
use crate::migrate::{CronImage, EntityImage, EntityImageRef, TimerImage};
use crate::timer::Timer;

/// Where a rebuilt entity was, for the caller to put it back in a space.
pub(super) struct Placement {
    pub(super) pos: Pos,
    pub(super) space: Id,
    pub(super) radius: Option<f32>,
    pub(super) client_move: bool,
}

impl World {
    pub(super) fn on_space_game(&mut self, space: Id, entity: Id, game: u16) {
        let Some(&(want, pos, _)) = self.core.migrations.get(&entity) else { return };
        if want != space {
            return;
        }
        if game == 0 || !self.entities.contains_key(&entity) {
            warn!("game{}: {entity} cannot enter {space}: no such space", self.core.game_id);
            self.core.migrations.remove(&entity);
            self.core.migration_started.remove(&entity);
            // Told, so it can look for another (its game may have been lost with the space).
            let reason = format!("space {space} does not exist (destroyed, or its game is gone)");
            self.with_entity(entity, Caller::Server(Id::NIL), |e, ctx| {
                e.on_migrate_failed(ctx, &reason);
                Ok(())
            });
        } else if game == self.core.game_id {
            self.core.migrations.remove(&entity);
            self.core.migration_started.remove(&entity);
            self.enter_space_now(entity, space, pos);
        } else {
            self.core.migrations.insert(entity, (space, pos, game));
            self.core.send(entity, MigrateRequest { entity });
        }
    }

    pub(super) fn on_migrate_ack(&mut self, entity: Id) {
        match self.core.migrations.remove(&entity) {
            Some((space, pos, game)) if game != 0 && self.entities.contains_key(&entity) => {
                self.migrate_out(entity, game, space, pos);
            }
            _ => {
                self.core.migration_started.remove(&entity);
                self.core.send(entity, CancelMigrate { entity });
            }
        }
    }

    /// The portable form of local entity `id` as it is now: attributes, `save()` state,
    /// timers (by method name, with their remaining time and handles), crontab entries, client
    /// binding, space, position, AOI radius and, for a space, its kind. The world is not
    /// changed.
    pub(super) fn image_of(&self, id: Id) -> Option<EntityImage> {
        self.with_image(id, |r| EntityImage {
            type_name: r.type_name.to_owned(),
            attrs: r.attrs.clone(),
            timers: r.timers.to_vec(),
            client: r.client,
            away: r.away,
            props: r.props.to_vec(),
            pos: r.pos,
            space: r.space,
            state: r.state.clone(),
            client_move: r.client_move,
            radius: r.radius,
            cron: r.cron.to_vec(),
            space_kind: r.space_kind,
        })
    }

    /// Runs `f` on the image of `id` borrowed from the live entity (attributes not copied).
    pub(super) fn with_image<R>(&self, id: Id, f: impl FnOnce(EntityImageRef<'_>) -> R) -> Option<R> {
        let slot = self.entities.get(&id)?;
        let ty = &self.reg.types[slot.ty];
        let name_of = |m: &u32| ty.by_id.get(m).map(|&i| ty.methods[i].name.to_owned());
        let now = self.core.now;
        let timers: Vec<TimerImage> = self
            .core
            .timers
            .of_entity(id)
            .into_iter()
            .filter_map(|(handle, t)| {
                Some(TimerImage {
                    method: name_of(&t.method)?,
                    remaining: t.deadline.saturating_duration_since(now),
                    repeat: t.repeat,
                    args: t.args.clone(),
                    id: Some(handle.0),
                })
            })
            .collect();
        let cron: Vec<CronImage> = self
            .core
            .cron
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|c| Some(CronImage { spec: c.text.clone(), method: name_of(&c.method)?, args: c.args.clone() }))
            .collect();
        let spatial = self.core.spaces.spatial(id);
        let props = slot.client.map(|c| self.core.props_of(c.client)).unwrap_or_default();
        let pos = spatial.map(|s| s.pos).unwrap_or_default();
        let state = slot.obj.as_ref().map(|o| save_caught(o.as_ref(), ty.name, id)).unwrap_or(Value::Nil);
        Some(f(EntityImageRef {
            type_name: ty.name,
            attrs: slot.attrs.value(),
            timers: &timers,
            client: slot.client,
            away: slot.client.and_then(|c| self.core.away_image(c.client)),
            props: &props,
            pos: [pos.x, pos.y, pos.z, pos.yaw],
            space: spatial.map(|s| s.space).unwrap_or(Id::NIL),
            state: &state,
            client_move: spatial.is_some_and(|s| s.client_move),
            radius: spatial.and_then(|s| s.radius),
            cron: &cron,
            space_kind: self.core.spaces.space(id).map(|s| s.kind),
        }))
    }

    /// Builds entity `id` of type `ty` (checked by the caller) from `image`: its object with
    /// `load(state)`, attributes (dirty for a persistent type, so it is saved again from here),
    /// client binding, timers and crontab entries, and for a space its space. Puts nothing in a
    /// space and runs no hook: the caller places it ([`Placement`]) and says hello.
    pub(super) fn rebuild(&mut self, id: Id, ty: usize, image: EntityImage) -> Placement {
        if let Some(kind) = image.space_kind {
            self.core.spaces.add_space(id, kind, id != self.core.nil_space);
        }
        let mut obj = (self.reg.types[ty].factory)();
        if let Err(msg) = crate::panics::catch(|| obj.load(image.state)) {
            // Its attributes, timers and client still come back; plain fields start fresh.
            self.core.stats.panics += 1;
            let what = format!("{}.load of {id}", self.reg.types[ty].name);
            self.core.log_panic(&what, &msg, "its plain fields start fresh (attributes are kept)");
            obj = (self.reg.types[ty].factory)();
        }
        let mut attrs = Attrs::from_value(image.attrs);
        if self.reg.types[ty].persistent {
            attrs.mark_persistent_dirty();
            self.core.store.mark_dirty(id);
        }
        self.entities.insert(id, Slot { ty, obj: Some(obj), client: image.client, attrs });
        self.core.local_ids.insert(id);
        if let Some(c) = image.client {
            self.core.clients.insert(id, c);
            if let Some(away) = image.away {
                self.core.away_from_image(c.client, away);
            }
            self.core.props_from_image(c.client, image.props);
        }
        self.add_image_schedules(id, ty, image.timers, image.cron);
        let [x, y, z, yaw] = image.pos;
        Placement {
            pos: Pos { x, y, z, yaw },
            space: image.space,
            radius: image.radius.or(self.reg.types[ty].aoi_radius),
            client_move: image.client_move,
        }
    }

    /// Sends `entity` to `game`, to enter `space` at `pos` there: its client keeps the entity
    /// but loses its space and neighbours; everything else travels in an [`EntityImage`].
    /// An image too big for an internal frame cancels the migration instead: the entity goes
    /// back into the space it left and its `on_migrate_failed` runs.
    pub(super) fn migrate_out(&mut self, entity: Id, game: u16, space: Id, pos: Pos) {
        let before = self.core.spaces.spatial(entity).map(|s| (s.space, s.pos));
        self.leave_space(entity);
        self.with_entity(entity, Caller::Server(Id::NIL), |e, ctx| {
            e.on_migrate_out(ctx);
            Ok(())
        });
        let Some(mut image) = self.image_of(entity) else { return };
        image.space = space;
        image.pos = [pos.x, pos.y, pos.z, pos.yaw];
        let data = image.encode();
        if !self.core.fits(data.len(), || format!("the migration of {entity}")) {
            self.core.send(entity, CancelMigrate { entity });
            if let Some((was_in, was_at)) = before {
                self.enter_space_now(entity, was_in, was_at);
            }
            let reason = format!("its image of {} bytes exceeds the internal frame limit", data.len());
            self.with_entity(entity, Caller::Server(Id::NIL), |e, ctx| {
                e.on_migrate_failed(ctx, &reason);
                Ok(())
            });
            return;
        }
        // Changes not saved yet are saved from here too, so a crash of the game it goes to
        // loses no more than one save interval (its arrival there marks it changed again).
        if self.entities.get(&entity).is_some_and(|s| s.attrs.persistent_dirty()) {
            self.save_entity(entity);
        }
        self.entities.remove(&entity);
        self.core.timers.remove_entity(entity);
        self.core.cron.remove(&entity);
        if let Some(c) = self.core.clients.remove(&entity) {
            // Its away state and filter properties travel in the image.
            self.core.forget_client(c.client);
        }
        self.core.local_ids.remove(&entity);
        self.core.spaces.forget(entity);
        self.core.stats.migrated_out += 1;
        if let Some(t0) = self.core.migration_started.remove(&entity) {
            self.core.migration_time.observe(self.core.now.saturating_duration_since(t0).as_secs_f64());
        }
        self.core.send(entity, RealMigrate { entity, game, data, delivered: Vec::new() });
    }

    /// Rebuilds an entity sent by another game and puts it into its target space.
    pub(super) fn migrate_in(&mut self, entity: Id, data: &[u8]) {
        let image = match EntityImage::decode(data) {
            Ok(i) if i.space_kind.is_none() => i,
            Ok(_) => {
                warn!("game{}: migrating {entity} lost: a space cannot migrate", self.core.game_id);
                self.core.send(entity, EntityDestroyed { id: entity });
                return;
            }
            Err(e) => {
                warn!("game{}: migrating {entity} lost: {e}", self.core.game_id);
                self.core.send(entity, EntityDestroyed { id: entity });
                return;
            }
        };
        let Some(ty) = self.reg.type_index(&image.type_name) else {
            warn!("game{}: migrating {entity} lost: unknown type {:?}", self.core.game_id, image.type_name);
            self.core.send(entity, EntityDestroyed { id: entity });
            return;
        };
        let client = image.client;
        let place = self.rebuild(entity, ty, image);
        if let Some(c) = client {
            // Its gate learns where its client's player runs now (before anything else this
            // game sends the client, through the same dispatcher).
            self.core.send(entity, PlayerAt { gate: c.gate, client: c.client, entity });
        }
        let pos = place.pos;
        let mut sights = Vec::new();
        self.core.spaces.join(entity, self.core.nil_space, pos, place.radius, &mut sights);
        if let Some(sp) = self.core.spaces.spatial_mut(entity) {
            sp.client_move = place.client_move;
        }
        self.core.stats.migrated_in += 1;
        self.with_entity(entity, Caller::Server(Id::NIL), |e, ctx| {
            e.on_migrate_in(ctx);
            Ok(())
        });
        if self.core.spaces.is_space(place.space) && place.space != self.core.nil_space {
            // Out of the nil space silently (it has no AOI and no client view), into the target.
            self.core.spaces.leave(entity, &mut sights);
            self.join_space(entity, place.space, pos);
        } else if place.space == self.core.nil_space {
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
                self.core.game_id, place.space
            );
        }
    }

    /// Re-arms the timers and crontab entries of an arrived or restored entity. Methods its
    /// type no longer has are dropped with a warning (a restore checks them first).
    pub(super) fn add_image_schedules(&mut self, entity: Id, ty: usize, timers: Vec<TimerImage>, cron: Vec<CronImage>) {
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
                    self.core.cron.entry(entity).or_default().push(CronEntry {
                        spec,
                        text: c.spec,
                        method: m,
                        args: c.args,
                    });
                }
                _ => warn!("game{}: {entity}: crontab entry {:?} {:?} dropped", self.core.game_id, c.spec, c.method),
            }
        }
    }
}

/// `Entity::save` of `obj`, a panic caught: logged, and the plain state is left out (`Nil`);
/// attributes, timers and the client travel anyway.
fn save_caught(obj: &dyn crate::entity::EntityObj, type_name: &str, id: Id) -> Value {
    crate::panics::catch(|| obj.save()).unwrap_or_else(|msg| {
        log::error!("{type_name}.save of {id} panicked: {msg}; its plain fields are left out of its image");
        Value::Nil
    })
}
