//! Where and how a client reaches a gate ([`Dial`]): the address, the transport, and the
//! channel settings (mode, the gate's public key, compression), usually read from the cluster
//! config the gate runs.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use oxworld_net::channel::{ClientSettings, DEFAULT_COMPRESS_THRESHOLD, Mode, read_key_file};
use oxworld_net::config::GateConfig;

/// Largest server message a client accepts.
pub const CLIENT_MAX_MESSAGE: usize = 16 << 20;

/// A client transport (PROTOCOL.md section 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Length-prefixed records over TCP (`listen_addr`).
    Tcp,
    /// One record per binary WebSocket message (`ws_addr`).
    Ws,
    /// One record per KCP message over UDP (`kcp_addr`).
    Kcp,
}

impl Transport {
    /// The name used on command lines and in reports: `tcp`, `ws`, `kcp`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Ws => "ws",
            Transport::Kcp => "kcp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Transport, String> {
        match s {
            "tcp" => Ok(Transport::Tcp),
            "ws" | "websocket" => Ok(Transport::Ws),
            "kcp" => Ok(Transport::Kcp),
            _ => Err(format!("unknown transport {s:?} (tcp, ws or kcp)")),
        }
    }
}

/// Everything needed to open one client connection.
#[derive(Debug, Clone)]
pub struct Dial {
    /// The gate's address for `transport`.
    pub addr: SocketAddr,
    /// How to reach it.
    pub transport: Transport,
    /// The channel to run over it.
    pub settings: ClientSettings,
}

impl Dial {
    /// An unencrypted, uncompressed TCP dial (tests of gates with `encrypt = false`).
    pub fn plain_tcp(addr: SocketAddr) -> Dial {
        Dial {
            addr,
            transport: Transport::Tcp,
            settings: ClientSettings {
                mode: Mode::Plain,
                server_key: None,
                compress_threshold: 0,
                max_message: CLIENT_MAX_MESSAGE,
            },
        }
    }

    /// How to reach gate `gc` over `transport` as its config says: its advertised address for
    /// that transport, encrypted with the public key derived from its key file when it encrypts,
    /// offering lz4 when it compresses.
    pub fn for_gate(gc: &GateConfig, transport: Transport) -> Result<Dial, String> {
        let addr = match transport {
            Transport::Tcp => Some(gc.advertise_addr),
            Transport::Ws => gc.ws_advertise_addr,
            Transport::Kcp => gc.kcp_advertise_addr,
        }
        .ok_or_else(|| format!("gate{} has no {transport} address in its config", gc.id))?;
        let server_key = if gc.encrypt { Some(read_key_file(&gc.key_file)?.public()) } else { None };
        Ok(Dial {
            addr,
            transport,
            settings: ClientSettings {
                mode: if gc.encrypt { Mode::NoiseNk } else { Mode::Plain },
                server_key,
                compress_threshold: if gc.compress_threshold > 0 { DEFAULT_COMPRESS_THRESHOLD } else { 0 },
                max_message: CLIENT_MAX_MESSAGE,
            },
        })
    }

    /// A fresh protocol state for one connection of this dial.
    pub fn new_conn(&self) -> crate::ClientConn {
        crate::ClientConn::new(self.settings.clone(), os_seed())
    }

    /// A connection state that resumes `session` (see [`crate::ClientConn::resuming`]).
    pub fn resume_conn(&self, session: crate::conn::Session) -> crate::ClientConn {
        crate::ClientConn::resuming(self.settings.clone(), os_seed(), session)
    }

    /// True if connections of this dial are encrypted.
    pub fn encrypted(&self) -> bool {
        self.settings.mode == Mode::NoiseNk
    }
}

/// 32 bytes from the OS's randomness, to seed one connection's ephemeral key.
///
/// # Panics
/// If the OS has no randomness to give (a client must not run with guessable keys).
pub fn os_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    #[allow(clippy::expect_used)] // see Panics
    getrandom::fill(&mut seed).expect("the OS random generator works");
    seed
}
