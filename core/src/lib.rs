//! oxworld-core: the crate a game links. Re-exports the engine's game API (implement
//! [`Entity`], register types in a [`Registry`], act through [`Ctx`]) and runs the game with
//! one call, [`run`]:
//!
//! ```no_run
//! use oxworld_core::{Entity, Registry};
//!
//! #[derive(Default)]
//! struct Account;
//! impl Entity for Account {}
//!
//! fn main() -> std::process::ExitCode {
//!     let mut reg = Registry::new();
//!     reg.entity("Account", Account::default);
//!     reg.boot("Account");
//!     oxworld_core::run(reg)
//! }
//! ```
//!
//! The layers are reachable too: [`engine`] (sans-IO world and state machines), [`host`]
//! (process glue), [`store`] (storage backends).

use std::process::ExitCode;

/// The global allocator of every process linking this crate (feature `mimalloc`, on by
/// default): freezing, restoring and routing allocate many small objects, which mimalloc
/// serves from per-thread pages without the lock and heap-growth contention of glibc's.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use oxworld_engine as engine;
pub use oxworld_engine::world::{EntityView, PanicPolicy, SpaceError, SpaceView, StoreCallError, nil_space_id};
pub use oxworld_engine::{
    Args, AttrError, AttrFlags, Attrs, CallError, ClientRef, CreateError, Ctx, Entity, Expose, Id, ListMut, MapMut,
    Pos, Registry, TimerError, TimerId, Value, World, fnv1a32, id_value,
};
pub use oxworld_engine::{panics, pubsub};
pub use oxworld_host as host;
pub use oxworld_store as store;

/// Runs a game process with the entity types of `reg`: parses its flags (`--config`, `--id`,
/// `--log`, `--restore`, `--status-file`), serves until SIGTERM/SIGINT (saving persistent
/// entities) or SIGHUP (freezing for a hot swap), and returns the exit code.
pub fn run(reg: Registry) -> ExitCode {
    oxworld_host::main(|args| oxworld_host::run_game(reg, &args))
}
