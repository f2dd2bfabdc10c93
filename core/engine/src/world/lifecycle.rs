//! The life of an entity inside one game: creating it (and the spaces), running a call or a
//! hook on it with a [`Ctx`] (checked out of its slot, so entity code never re-enters the
//! world), refusing calls it cannot serve, and destroying it.

use log::{debug, warn};
use oxworld_net::client_proto::{ErrorCode, Pos, ServerMsg};
use oxworld_net::msg::{Caller, EntityCreated, EntityDestroyed};
use oxworld_net::{Id, Value};

use super::{ClientRef, Ctx, LocalOp, PanicPolicy, Slot, World};
use crate::attr::Attrs;
use crate::entity::{Args, CallError, Entity, EntityObj, Expose};

/// The hooks a new entity gets, in order (a loaded one gets its stored attributes after the
/// first).
const HOOKS_OF_A_NEW_ENTITY: [fn(&mut dyn EntityObj, &mut Ctx<'_>); 3] =
    [Entity::on_init, Entity::on_attrs_ready, Entity::on_created];

impl World {
    /// Creates space `id` of `kind` (an instance of the space type) on this game.
    pub(super) fn create_space_now(&mut self, id: Id, kind: i64) {
        let Some(ty) = self.reg.space_type else { return };
        self.core.spaces.add_space(id, kind, id != self.core.nil_space);
        let slot = Slot { ty, obj: Some((self.reg.types[ty].factory)()), client: None, attrs: Attrs::default() };
        self.entities.insert(id, slot);
        self.core.local_ids.insert(id);
        self.core.send(id, EntityCreated { id });
        for hook in HOOKS_OF_A_NEW_ENTITY {
            self.with_entity(id, Caller::Server(Id::NIL), |e, ctx| {
                hook(e, ctx);
                Ok(())
            });
        }
    }

    /// Creates entity `id` of type `ty` with empty attributes, bound to `client` if given.
    pub(super) fn create(&mut self, ty: usize, id: Id, client: Option<ClientRef>) {
        self.create_with(ty, id, client, Attrs::default());
    }

    /// Creates an entity with `attrs` already set (loaded entities); persistent types are
    /// saved right after `on_created`, so `exists` sees them.
    pub(super) fn create_with(&mut self, ty: usize, id: Id, client: Option<ClientRef>, attrs: Attrs) {
        if self.entities.contains_key(&id) {
            warn!("game{}: entity {id} already exists; create ignored", self.core.game_id);
            return;
        }
        let obj = (self.reg.types[ty].factory)();
        let slot = Slot { ty, obj: Some(obj), client: None, attrs: Attrs::default() };
        self.entities.insert(id, slot);
        self.core.local_ids.insert(id);
        let radius = self.reg.types[ty].aoi_radius;
        let mut sights = Vec::new();
        self.core.spaces.join(id, self.core.nil_space, Pos::default(), radius, &mut sights);
        self.with_entity(id, Caller::Server(Id::NIL), |e, ctx| {
            e.on_init(ctx);
            Ok(())
        });
        // Stored attributes replace the defaults `on_init` set.
        if let Some(slot) = self.entities.get_mut(&id)
            && let Value::Map(stored) = attrs.value()
            && !stored.is_empty()
        {
            let mut root = slot.attrs.root();
            for (k, v) in stored {
                root.set(k, v.clone());
            }
            slot.attrs.take_ops();
            slot.attrs.clear_persistent_dirty();
        }
        for hook in &HOOKS_OF_A_NEW_ENTITY[1..] {
            self.with_entity(id, Caller::Server(Id::NIL), |e, ctx| {
                hook(e, ctx);
                Ok(())
            });
        }
        if !self.entities.contains_key(&id) {
            // `on_created` panicked and the entity was quarantined: its client is let go.
            if let Some(c) = client {
                let why = format!("{} could not be created (internal error); try again", self.reg.types[ty].name);
                self.core.send_to_client(id, c, &ServerMsg::error(ErrorCode::Kicked, id, 0, why));
            }
            return;
        }
        self.save_entity(id);
        if let Some(c) = client {
            self.attach_client(id, c);
        }
    }

    pub(super) fn destroy_entity(&mut self, id: Id) {
        self.destroy_entity_with(id, true);
    }

    /// Removes entity `id`; with `hooks`, runs its `on_destroy` and saves it (a quarantined
    /// entity gets neither: its state may be half-changed).
    fn destroy_entity_with(&mut self, id: Id, hooks: bool) {
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
        if let Some(c) = self.core.clients.remove(&id) {
            self.core.forget_client(c.client);
        }
        self.core.local_ids.remove(&id);
        self.core.migration_started.remove(&id);
        self.core.timers.remove_entity(id);
        self.core.cron.remove(&id);
        if let Some(mut obj) = slot.obj.take().filter(|_| hooks) {
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
                entities: &self.entities,
            };
            match crate::panics::catch(|| obj.on_destroy(&mut ctx)) {
                Ok(()) => {
                    ctx.flush_attrs();
                    ctx.save();
                }
                Err(msg) => {
                    // Destroyed anyway; the half-changed state is not saved (the last save stands).
                    self.core.stats.panics += 1;
                    let what = format!("{}.on_destroy of {id}", self.reg.types[slot.ty].name);
                    self.core.log_panic(&what, &msg, "destroyed without saving");
                }
            }
        }
        if let Some(c) = slot.client {
            self.core.send_to_client(id, c, &ServerMsg::DestroyEntity { id });
        }
        self.core.send(id, EntityDestroyed { id });
    }

    /// Runs `f` on entity `id` with a [`Ctx`]; handles a destroy it requested, and a panic
    /// (caught, logged; by the [`PanicPolicy`] the entity is quarantined).
    pub(super) fn with_entity(
        &mut self,
        id: Id,
        caller: Caller,
        f: impl FnOnce(&mut dyn EntityObj, &mut Ctx<'_>) -> Result<(), CallError>,
    ) -> Option<Result<(), CallError>> {
        let (r, quarantine) = self.run_entity_code(id, caller, f)?;
        if quarantine {
            self.quarantine(id);
        }
        Some(r)
    }

    /// [`World::with_entity`] leaving a quarantine to the caller (true: quarantine `id` now).
    fn run_entity_code(
        &mut self,
        id: Id,
        caller: Caller,
        f: impl FnOnce(&mut dyn EntityObj, &mut Ctx<'_>) -> Result<(), CallError>,
    ) -> Option<(Result<(), CallError>, bool)> {
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
            entities: &self.entities,
        };
        let (r, panicked) = match crate::panics::catch(|| f(obj.as_mut(), &mut ctx)) {
            Ok(r) => (r, None),
            Err(msg) => (Err(CallError::Failed("internal error".to_owned())), Some(msg)),
        };
        let quarantine = panicked.is_some() && ctx.core.panic_policy == PanicPolicy::Quarantine;
        if !quarantine {
            ctx.flush_attrs();
        }
        if let Some(slot) = self.entities.get_mut(&id) {
            slot.obj = Some(obj);
            slot.client = client;
            slot.attrs = attrs;
        }
        if let Some(msg) = panicked {
            self.core.stats.panics += 1;
            let tn = self.reg.types[ty].name;
            let what = match self.core.running {
                Some(m) => format!("{tn}.{m} of {id}"),
                None => format!("a hook of {tn} {id}"),
            };
            if quarantine {
                self.core.log_panic(&what, &msg, "the entity is destroyed without saving and its client kicked");
                return Some((r, true));
            }
            self.core.log_panic(&what, &msg, "the entity is kept as it was left");
        }
        if destroy {
            self.core.local.push_back(LocalOp::Destroy(id));
        }
        Some((r, false))
    }

    /// Destroys `id` after a panic in its code: its client (if any) is kicked with a message
    /// saying why, then it is removed without hooks and without saving.
    fn quarantine(&mut self, id: Id) {
        self.core.stats.quarantined += 1;
        if let Some(c) = self.core.clients.remove(&id) {
            self.core.forget_client(c.client);
            if let Some(s) = self.entities.get_mut(&id) {
                s.client = None;
            }
            let tn = self.entities.get(&id).map(|s| self.reg.types[s.ty].name).unwrap_or("entity");
            let why = format!("your {tn} hit an internal error on the server and was shut down; log in again");
            self.core.send_to_client(id, c, &ServerMsg::error(ErrorCode::Kicked, id, 0, why));
        }
        self.destroy_entity_with(id, false);
    }

    /// Lets go of `entity`'s client, telling it `reason`; runs `on_client_disconnected`.
    pub(super) fn kick_now(&mut self, entity: Id, reason: &str) {
        let Some(&c) = self.core.clients.get(&entity) else { return };
        self.core.send_to_client(entity, c, &ServerMsg::error(ErrorCode::Kicked, entity, 0, reason.to_owned()));
        self.detach_client(entity);
    }

    /// Runs one call: refuses what cannot be served, else runs the handler. The type and
    /// method index of a handler that ran, for its timing (`calls::run_call`).
    pub(super) fn run_call_untimed(
        &mut self,
        target: Id,
        method: u32,
        args: Vec<Value>,
        caller: Caller,
    ) -> Option<(usize, usize)> {
        self.core.stats.calls += 1;
        let Some(slot) = self.entities.get(&target) else {
            self.refuse(target, method, caller, ErrorCode::UnknownEntity, format!("no entity {target} on this game"));
            return None;
        };
        let ty = &self.reg.types[slot.ty];
        let Some(&mi) = ty.by_id.get(&method) else {
            let msg = format!("{} has no method with id {method:#010x}", ty.name);
            self.refuse(target, method, caller, ErrorCode::UnknownMethod, msg);
            return None;
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
                return None;
            }
        }
        let (ty_idx, name) = (slot.ty, m.name);
        if let Some((n, _)) = self.core.calls.per_method.get_mut(ty_idx).and_then(|t| t.get_mut(mi)) {
            *n += 1;
        }
        self.core.running = Some(name);
        let r = self.run_entity_code(target, caller, |e, ctx| {
            let reg = ctx.reg;
            (reg.types[ty_idx].methods[mi].handler)(e.as_any_mut(), ctx, Args(args))
        });
        self.core.running = None;
        let (r, quarantine) = match r {
            Some((r, q)) => (Some(r), q),
            None => (None, false),
        };
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
        if quarantine {
            // After the caller's answer, so the client sees why its call failed, then the kick.
            self.quarantine(target);
        }
        Some((ty_idx, mi))
    }

    /// Reports a call that could not be served: to the client that made it, or to the log and
    /// the undeliverable counter for server callers.
    pub(super) fn refuse(&mut self, target: Id, method: u32, caller: Caller, code: ErrorCode, message: String) {
        if let Some(n) = self.core.call_errors.get_mut(code as usize) {
            *n += 1;
        }
        match caller {
            Caller::Client { gate, client } => {
                self.core.stats.refused_client_calls += 1;
                debug!("game{}: refused client call: {message}", self.core.game_id);
                let msg = ServerMsg::error(code, target, method, message);
                self.core.send_to_client(target, ClientRef { gate, client, token: Id::NIL }, &msg);
            }
            Caller::Server(from) => {
                self.core.stats.undeliverable += 1;
                warn!("game{}: call {method:#010x} from {from} to {target} failed: {message}", self.core.game_id);
            }
        }
    }
}
