//! The `Entity` trait, method exposure, typed argument access, and the registry of entity types
//! with their numeric method tables.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;

use oxworld_net::{Value, method_id};
use thiserror::Error;

use crate::world::Ctx;

/// Game logic of one entity type. Every hook is optional. Hooks and methods run on the game's
/// logic thread; they receive a [`Ctx`] to act on the world (call, create, destroy, reach the
/// client) and never block.
pub trait Entity: Any {
    /// An entity is being created or loaded: first hook of its life, before its stored
    /// attributes are set (`ctx.attrs()` is empty; values set here are defaults that stored
    /// ones replace). GoWorld's `OnInit`; not run on migration or restore (see
    /// `on_migrate_in`, `on_restored`).
    fn on_init(&mut self, _ctx: &mut Ctx<'_>) {}
    /// Its attributes are set (stored ones of a loaded entity merged over `on_init`'s), before
    /// `on_created`. GoWorld's `OnAttrsReady`.
    fn on_attrs_ready(&mut self, _ctx: &mut Ctx<'_>) {}
    /// After the entity exists and is routable, before any call reaches it.
    fn on_created(&mut self, _ctx: &mut Ctx<'_>) {}
    /// Nil spaces only (instances of the space type): every dispatcher, game and gate of the
    /// config is up, once per game process started fresh (a game restored by a hot swap does
    /// not get it again). GoWorld's `OnGameReady`: where a game starts its world (creates
    /// its spaces, monsters, services).
    fn on_game_ready(&mut self, _ctx: &mut Ctx<'_>) {}
    /// Just before the entity is removed.
    fn on_destroy(&mut self, _ctx: &mut Ctx<'_>) {}
    /// A client was bound to this entity (boot entities: right after `on_created`).
    fn on_client_connected(&mut self, _ctx: &mut Ctx<'_>) {}
    /// The bound client disconnected (or its gate went away).
    fn on_client_disconnected(&mut self, _ctx: &mut Ctx<'_>) {}
    /// This entity entered a space (`ctx.space()`), after the space's own hook.
    fn on_enter_space(&mut self, _ctx: &mut Ctx<'_>) {}
    /// This entity left space `old`.
    fn on_leave_space(&mut self, _ctx: &mut Ctx<'_>, _old: oxworld_net::Id) {}
    /// Spaces only: `entity` entered this space.
    fn on_entity_enter_space(&mut self, _ctx: &mut Ctx<'_>, _entity: oxworld_net::Id) {}
    /// Spaces only: `entity` left this space.
    fn on_entity_leave_space(&mut self, _ctx: &mut Ctx<'_>, _entity: oxworld_net::Id) {}
    /// Just before this entity leaves for another game.
    fn on_migrate_out(&mut self, _ctx: &mut Ctx<'_>) {}
    /// A migration of this entity was cancelled after `on_migrate_out` (its image exceeds
    /// the internal frame limit): it stays on this game, back in the space it was in. The
    /// default logs it.
    fn on_migrate_failed(&mut self, ctx: &mut Ctx<'_>, reason: &str) {
        log::warn!("{}: migration cancelled: {reason}", ctx.id());
    }
    /// Just after this entity arrived from another game (before it enters its space).
    fn on_migrate_in(&mut self, _ctx: &mut Ctx<'_>) {}
    /// State kept in plain struct fields that must survive migration (and freezing);
    /// attributes and timers travel anyway. The default keeps nothing.
    fn save(&self) -> oxworld_net::Value {
        oxworld_net::Value::Nil
    }
    /// Restores what [`Entity::save`] returned, on a fresh instance from the type's factory.
    fn load(&mut self, _state: oxworld_net::Value) {}
    /// The game is about to freeze for a hot swap: last chance to move plain state into
    /// attributes or [`Entity::save`]. Timers, attributes, client binding and position are
    /// frozen anyway.
    fn on_freeze(&mut self, ctx: &mut Ctx<'_>) {
        // The default does nothing: a freeze skips this type's other entities (unless this
        // is another type's override calling a field's default: the type must be `Self`).
        ctx.default_swap_hook(std::any::TypeId::of::<Self>(), crate::world::freeze::SwapHook::Freeze);
    }
    /// The entity was rebuilt by a new binary after a hot swap (all entities exist, clients
    /// are bound again; nothing was sent to clients).
    fn on_restored(&mut self, ctx: &mut Ctx<'_>) {
        // The default does nothing: a restore skips this type's other entities (the type
        // must be `Self`, as above).
        ctx.default_swap_hook(std::any::TypeId::of::<Self>(), crate::world::freeze::SwapHook::Restored);
    }
    /// A call this entity made to `target` could not be delivered (for instance: the target's
    /// game did not come back from a hot swap in time). The default logs it.
    fn on_call_failed(&mut self, ctx: &mut Ctx<'_>, target: oxworld_net::Id, method: u32, reason: &str) {
        log::warn!("{}: call {method:#010x} to {target} failed: {reason}", ctx.id());
    }
    /// Types registered with `.aoi_hooks()`: `other` came into this entity's area of interest
    /// (reported after the move that caused it, never from inside the AOI index).
    fn on_enter_aoi(&mut self, _ctx: &mut Ctx<'_>, _other: oxworld_net::Id) {}
    /// Types registered with `.aoi_hooks()`: `other` left this entity's area of interest.
    fn on_leave_aoi(&mut self, _ctx: &mut Ctx<'_>, _other: oxworld_net::Id) {}
}

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expose {
    /// Only other entities (server side).
    Server,
    /// Server, and the client bound to this entity.
    OwnClient,
    /// Server, and any client that was told about this entity.
    AnyClient,
}

/// Why a method call failed.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum CallError {
    /// The arguments do not fit the method.
    #[error("bad arguments: {0}")]
    BadArguments(String),
    /// The method refused the call.
    #[error("failed: {0}")]
    Failed(String),
}

/// Arguments of one call, with typed accessors that fail with [`CallError::BadArguments`]
/// instead of zero-filling as GoWorld does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Args(pub Vec<Value>);

impl Args {
    /// Number of arguments.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True without arguments.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Argument `i`, or an error naming it.
    pub fn get(&self, i: usize) -> Result<&Value, CallError> {
        self.0.get(i).ok_or_else(|| CallError::BadArguments(format!("missing argument {i}")))
    }

    /// Argument `i` as a string.
    pub fn str(&self, i: usize) -> Result<&str, CallError> {
        let v = self.get(i)?;
        v.as_str().ok_or_else(|| wrong(i, "string", v))
    }

    /// Argument `i` as an integer.
    pub fn int(&self, i: usize) -> Result<i64, CallError> {
        let v = self.get(i)?;
        v.as_int().ok_or_else(|| wrong(i, "int", v))
    }

    /// Argument `i` as an entity id (bytes of length 16).
    pub fn id(&self, i: usize) -> Result<oxworld_net::Id, CallError> {
        let v = self.get(i)?;
        v.as_id().ok_or_else(|| wrong(i, "entity id (16 bytes)", v))
    }

    /// Fails unless there are exactly `n` arguments.
    pub fn expect_len(&self, n: usize) -> Result<(), CallError> {
        if self.0.len() == n {
            Ok(())
        } else {
            Err(CallError::BadArguments(format!("expected {n} arguments, got {}", self.0.len())))
        }
    }

    /// The values, consumed.
    pub fn into_vec(self) -> Vec<Value> {
        self.0
    }
}

fn wrong(i: usize, want: &str, got: &Value) -> CallError {
    CallError::BadArguments(format!("argument {i}: expected {want}, got {}", got.kind()))
}

/// An entity id as a call argument (`Value::id`; [`Args::id`] reads it back).
pub fn id_value(id: oxworld_net::Id) -> Value {
    Value::id(id)
}

/// Object-safe view of an entity for the world: the hooks plus downcasting.
pub(crate) trait EntityObj: Entity {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn as_any(&self) -> &dyn Any;
}

impl<E: Entity> EntityObj for E {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

type ErasedHandler = Box<dyn Fn(&mut dyn Any, &mut Ctx<'_>, Args) -> Result<(), CallError>>;

/// One method of an entity type.
pub(crate) struct MethodDesc {
    pub(crate) name: &'static str,
    pub(crate) expose: Expose,
    pub(crate) handler: ErasedHandler,
}

/// Registered description of one entity type.
pub(crate) struct TypeDesc {
    pub(crate) name: &'static str,
    pub(crate) factory: Box<dyn Fn() -> Box<dyn EntityObj>>,
    pub(crate) methods: Vec<MethodDesc>,
    /// Method id -> index into `methods`. Ids come from clients, but only as lookup keys into
    /// a table fixed at registration, so collisions are not attacker-controlled.
    pub(crate) by_id: HashMap<u32, usize>,
    /// Flags of the declared root attributes.
    pub(crate) schema: crate::attr::AttrSchema,
    /// AOI radius of new entities of this type; `None`: not in AOI.
    pub(crate) aoi_radius: Option<f32>,
    /// Instances are spaces.
    pub(crate) is_space: bool,
    /// Service types: number of shards (0: not a service).
    pub(crate) service_shards: u16,
    /// Saved to storage (its `persistent` attributes) periodically and on destroy; loadable.
    pub(crate) persistent: bool,
    /// Gets `on_enter_aoi` / `on_leave_aoi`.
    pub(crate) aoi_hooks: bool,
    /// The Rust type registered (a default hook body recognises its own type by it).
    pub(crate) rust_type: std::any::TypeId,
}

impl fmt::Debug for TypeDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypeDesc").field("name", &self.name).field("methods", &self.methods.len()).finish()
    }
}

/// A registration mistake, reported when the game starts.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two types with one name.
    #[error("entity type {0:?} registered twice")]
    DuplicateType(String),
    /// Two methods of one type whose names hash to the same id (or one name twice).
    #[error("entity type {ty:?}: methods {a:?} and {b:?} have the same method id")]
    MethodIdClash {
        /// Type.
        ty: String,
        /// First method.
        a: String,
        /// Second method.
        b: String,
    },
    /// The boot entity type is not registered.
    #[error("boot entity type {0:?} is not registered")]
    UnknownBootType(String),
}

/// All entity types a game binary knows, and its boot entity type.
#[derive(Default)]
pub struct Registry {
    pub(crate) types: Vec<TypeDesc>,
    pub(crate) boot_type: Option<&'static str>,
    pub(crate) space_type: Option<usize>,
    pub(crate) errors: Vec<RegistryError>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("types", &self.types).field("boot_type", &self.boot_type).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers entity type `E` under `name`, built by `factory`; declare its methods on the
    /// returned builder.
    pub fn entity<E: Entity>(&mut self, name: &'static str, factory: fn() -> E) -> TypeBuilder<'_, E> {
        if self.types.iter().any(|t| t.name == name) {
            self.errors.push(RegistryError::DuplicateType(name.to_owned()));
        }
        self.types.push(TypeDesc {
            name,
            factory: Box::new(move || Box::new(factory())),
            methods: Vec::new(),
            by_id: HashMap::new(),
            schema: Default::default(),
            aoi_radius: None,
            is_space: false,
            service_shards: 0,
            persistent: false,
            aoi_hooks: false,
            rust_type: std::any::TypeId::of::<E>(),
        });
        let idx = self.types.len() - 1;
        TypeBuilder { reg: self, idx, _e: std::marker::PhantomData }
    }

    /// Registers the space type: spaces (including each game's nil space) are instances of
    /// it. Without one, a built-in space type with no behaviour is used.
    pub fn space<E: Entity>(&mut self, name: &'static str, factory: fn() -> E) -> TypeBuilder<'_, E> {
        if self.space_type.is_some() {
            self.errors.push(RegistryError::DuplicateType(format!("{name} (a second space type)")));
        }
        let b = self.entity(name, factory);
        let idx = b.idx;
        b.reg.types[idx].is_space = true;
        b.reg.space_type = Some(idx);
        TypeBuilder { reg: b.reg, idx, _e: std::marker::PhantomData }
    }

    /// Registers a service type: `shards` instances (1..=8192) exist cluster-wide, each created
    /// on some game and registered with the dispatchers; re-created elsewhere when their game
    /// dies. Reach them with `Ctx::call_service_*`.
    pub fn service<E: Entity>(&mut self, name: &'static str, factory: fn() -> E, shards: u16) -> TypeBuilder<'_, E> {
        let b = self.entity(name, factory);
        let idx = b.idx;
        b.reg.types[idx].service_shards = shards.clamp(1, 8192);
        TypeBuilder { reg: b.reg, idx, _e: std::marker::PhantomData }
    }

    /// Declares the type created for every new client connection (config `boot_entity`
    /// overrides it).
    pub fn boot(&mut self, name: &'static str) -> &mut Self {
        self.boot_type = Some(name);
        self
    }

    pub(crate) fn type_index(&self, name: &str) -> Option<usize> {
        self.types.iter().position(|t| t.name == name)
    }

    /// Checks the registrations; `boot` is the effective boot type.
    pub(crate) fn validate(&self, boot: &str) -> Result<(), RegistryError> {
        if let Some(e) = self.errors.first() {
            return Err(match e {
                RegistryError::DuplicateType(n) => RegistryError::DuplicateType(n.clone()),
                RegistryError::MethodIdClash { ty, a, b } => {
                    RegistryError::MethodIdClash { ty: ty.clone(), a: a.clone(), b: b.clone() }
                }
                RegistryError::UnknownBootType(n) => RegistryError::UnknownBootType(n.clone()),
            });
        }
        if self.type_index(boot).is_none() {
            return Err(RegistryError::UnknownBootType(boot.to_owned()));
        }
        Ok(())
    }
}

/// Declares the methods of one entity type.
pub struct TypeBuilder<'r, E> {
    reg: &'r mut Registry,
    idx: usize,
    _e: std::marker::PhantomData<fn(E)>,
}

impl<E: Entity> TypeBuilder<'_, E> {
    /// Entities of this type take part in AOI with view radius `radius` (each entity can
    /// change its own later with `Ctx::set_aoi_radius`).
    pub fn aoi(self, radius: f32) -> Self {
        self.reg.types[self.idx].aoi_radius = Some(radius.max(0.0));
        self
    }

    /// Makes the type persistent: its `persistent` attributes are saved to storage every
    /// `save_interval_s`, on destroy and right after creation, and instances can be loaded
    /// with `Ctx::load_entity_anywhere` / `load_entity_on_game`.
    pub fn persistent(self) -> Self {
        self.reg.types[self.idx].persistent = true;
        self
    }

    /// Delivers AOI enter/leave to the entity's `on_enter_aoi` / `on_leave_aoi` hooks (after
    /// each flush of moves, in order). Off by default: most types only need their clients told.
    pub fn aoi_hooks(self) -> Self {
        self.reg.types[self.idx].aoi_hooks = true;
        self
    }

    /// Declares root attribute `name` with `flags` (who sees it, whether it is saved).
    pub fn attr(self, name: &str, flags: crate::attr::AttrFlags) -> Self {
        self.reg.types[self.idx].schema.insert(name.to_owned(), flags);
        self
    }

    /// Adds method `name` with exposure `expose`, handled by `handler`.
    pub fn method(
        self,
        name: &'static str,
        expose: Expose,
        handler: fn(&mut E, &mut Ctx<'_>, Args) -> Result<(), CallError>,
    ) -> Self {
        let id = method_id(name);
        let ty = &mut self.reg.types[self.idx];
        if let Some(&other) = ty.by_id.get(&id) {
            let err = RegistryError::MethodIdClash {
                ty: ty.name.to_owned(),
                a: ty.methods[other].name.to_owned(),
                b: name.to_owned(),
            };
            self.reg.errors.push(err);
            return self;
        }
        ty.by_id.insert(id, ty.methods.len());
        ty.methods.push(MethodDesc {
            name,
            expose,
            handler: Box::new(move |any, ctx, args| match any.downcast_mut::<E>() {
                Some(e) => handler(e, ctx, args),
                None => Err(CallError::Failed("internal: entity type mismatch".into())),
            }),
        });
        self
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use super::*;

    struct A;
    impl Entity for A {}

    fn noop(_: &mut A, _: &mut Ctx<'_>, _: Args) -> Result<(), CallError> {
        Ok(())
    }

    #[test]
    fn duplicate_type_and_method_refused() {
        let mut r = Registry::new();
        r.entity("A", || A).method("m", Expose::Server, noop).method("m", Expose::Server, noop);
        assert!(matches!(r.validate("A"), Err(RegistryError::MethodIdClash { .. })));
        let mut r = Registry::new();
        r.entity("A", || A);
        r.entity("A", || A);
        assert_eq!(r.validate("A"), Err(RegistryError::DuplicateType("A".into())));
        let mut r = Registry::new();
        r.entity("A", || A);
        assert_eq!(r.validate("B"), Err(RegistryError::UnknownBootType("B".into())));
        assert_eq!(r.validate("A"), Ok(()));
    }

    #[test]
    fn args_accessors() {
        let a = Args(vec![Value::from("s"), Value::Int(4), id_value(oxworld_net::Id([9; 16]))]);
        assert_eq!(a.str(0), Ok("s"));
        assert_eq!(a.int(1), Ok(4));
        assert_eq!(a.id(2), Ok(oxworld_net::Id([9; 16])));
        assert!(matches!(a.int(0), Err(CallError::BadArguments(_))));
        assert!(matches!(a.str(5), Err(CallError::BadArguments(_))));
        assert!(a.expect_len(2).is_err());
    }
}
