//! oxworld's wire layer, sans-IO: framing, the client and internal wire protocols, ids, values,
//! the cluster config, and the [`app`] interface every process's logic implements. Knows nothing
//! about entities, and never touches a socket, a thread or the clock (`clippy.toml` here bans
//! them); `oxworld-runtime` drives an [`app::App`] over real sockets.

pub mod app;
pub mod attr_op;
pub mod channel;
pub mod client_proto;
pub mod config;
pub mod frame;
pub mod id;
pub mod kcp;
pub mod msg;
pub mod ratelog;
pub mod value;
pub mod wire;
pub mod ws;

pub use id::{Id, IdGen, IdSeed, method_id};
pub use value::Value;
