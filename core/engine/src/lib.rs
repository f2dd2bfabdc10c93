//! The oxworld engine, sans-IO: the entity world of a game ([`world::World`] and the [`Ctx`]
//! entity code acts through), the dispatcher, gate and game state machines
//! ([`dispatcher::DispatcherApp`], [`gate::GateApp`], [`game::GameApp`]), AOI, timers,
//! attributes, migration images and the [`store::Store`] interface. Time comes in as a
//! parameter; this crate never opens a socket or a file, spawns a thread, sleeps or reads the
//! clock (`clippy.toml` here bans each, and the workspace's tidy test keeps `allow`s of those
//! lints out of non-test code). `oxworld-host` wires it to the runtime and storage.

pub mod aoi;
pub mod attr;
pub mod cron;
pub mod dispatcher;
pub mod entity;
pub mod game;
pub mod gate;
mod gather;
pub mod geom;
mod links;
pub mod metrics;
pub mod migrate;
pub mod panics;
pub mod pubsub;
pub mod ratelimit;
mod slowcalls;
pub mod space;
pub mod status;
pub mod store;
pub mod timer;
pub mod world;

pub use attr::{AttrError, AttrFlags, Attrs, ListMut, MapMut};
pub use entity::{Args, CallError, Entity, Expose, Registry, id_value};
pub use oxworld_net::client_proto::Pos;
pub use oxworld_net::id::fnv1a32;
pub use oxworld_net::{Id, Value};
pub use timer::TimerId;
pub use world::{ClientRef, CreateError, Ctx, TimerError, World};
