//! The client side of oxworld's client protocol (PROTOCOL.md): [`ClientConn`], a sans-IO state
//! machine with the client's replica of the entities it sees; [`BlockingClient`], one blocking
//! connection for tests and tools; [`BotNet`], many connections on one `mio` loop for load bots.

pub mod blocking;
pub mod botnet;
pub mod conn;
pub mod dial;
mod link;

pub use blocking::BlockingClient;
pub use botnet::{BotEvent, BotNet};
pub use conn::{ClientConn, ClientError, Replica, Session};
pub use dial::{Dial, Transport, os_seed};
