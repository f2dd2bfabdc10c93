//! What each client sees: the creates and destroys of spaces and neighbours as entities move
//! (AOI enters and leaves, dispatched after each move, never from inside the index), binding a
//! client to an entity and handing it over, and the periodic position sync.

use std::time::Instant;

use log::warn;
use oxworld_net::client_proto::{Pos, ServerMsg};
use oxworld_net::msg::Caller;
use oxworld_net::{Id, Value};
use rustc_hash::FxHashMap;

use super::{ClientRef, World};
use crate::attr::Audience;
use crate::space::Sight;

impl World {
    /// The create message for `target` as seen by a client that is not its own.
    pub(super) fn create_msg(&self, target: Id, is_player: bool) -> Option<ServerMsg> {
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
    pub(super) fn dispatch_sights(&mut self, sights: &[Sight]) {
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
    pub(super) fn leave_space(&mut self, entity: Id) -> Option<Id> {
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
    pub(super) fn join_space(&mut self, entity: Id, space: Id, pos: Pos) {
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
        if let Some(&c) = self.core.clients.get(&entity) {
            // Its own client learns where it stands now (a client-driven entity gets no
            // position sync of itself).
            self.core.send_to_client(entity, c, &ServerMsg::Positions { entries: vec![(entity, pos)] });
        }
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
    pub(super) fn release_client(&mut self, owner: Id, route: Id) -> Option<ClientRef> {
        let c = self.core.clients.remove(&owner)?;
        self.core.forget_client(c.client);
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

    pub(super) fn give_client_now(&mut self, from: Id, to: Id) {
        if from == to || !self.entities.contains_key(&to) || !self.core.clients.contains_key(&from) {
            warn!("game{}: give_client_to from {from} to {to}: no client or no such local entity", self.core.game_id);
            return;
        }
        // A client already bound to `to` is released first (it sees `to` go away).
        self.release_client(to, to);
        let Some(c) = self.release_client(from, to) else { return };
        self.attach_client(to, c);
    }

    /// Binds `c` to entity `id`: the client gets the entity (with the attributes it may see),
    /// then `on_client_connected` runs.
    pub(super) fn attach_client(&mut self, id: Id, c: ClientRef) {
        let Some(slot) = self.entities.get_mut(&id) else {
            return;
        };
        slot.client = Some(c);
        self.core.clients.insert(id, c);
        self.send_view(id, c);
        self.with_entity(id, Caller::Server(Id::NIL), |e, ctx| {
            e.on_client_connected(ctx);
            Ok(())
        });
    }

    /// Sends client `c` what it sees as the client of `id`: `id` itself (as its player), its
    /// space, and every entity in its area of interest.
    pub(super) fn send_view(&mut self, id: Id, c: ClientRef) {
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
    }

    pub(super) fn detach_client(&mut self, id: Id) {
        if let Some(s) = self.entities.get_mut(&id) {
            s.client = None;
        }
        if let Some(c) = self.core.clients.remove(&id) {
            self.core.forget_client(c.client);
        }
        self.with_entity(id, Caller::Server(Id::NIL), |e, ctx| {
            e.on_client_disconnected(ctx);
            Ok(())
        });
    }

    pub(super) fn enter_space_now(&mut self, entity: Id, space: Id, pos: Pos) {
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
    /// Runs the AOI (who sees whom changed) and, when due, the position sync. False when
    /// there was nothing to do (for the AOI step histogram).
    pub(super) fn sync_spaces(&mut self, now: Instant) -> bool {
        let mut sights = Vec::new();
        self.core.spaces.flush(&mut sights);
        self.dispatch_sights(&sights);
        if now < self.core.next_sync {
            return !sights.is_empty();
        }
        self.core.next_sync = now + self.core.sync_interval;
        let moved = self.core.spaces.take_moved();
        if moved.is_empty() {
            return !sights.is_empty();
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
        true
    }
}
