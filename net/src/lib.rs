//! oxworld networking: framing, the client and internal wire protocols, ids, the cluster config,
//! and the runtime (event loop + IO workers). Knows nothing about entities.

pub mod attr_op;
pub mod botnet;
pub mod client;
pub mod client_proto;
pub mod config;
pub mod frame;
pub mod id;
pub mod msg;
pub mod runtime;
pub mod value;
pub mod wire;

pub use id::{Id, IdGen, method_id};
pub use value::Value;
