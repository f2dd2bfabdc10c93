//! The cluster config: GoWorld's ini layout parsed into validated, typed structs.
//!
//! Sections: `[deployment]`, `[dispatcher_common]`, `[dispatcherN]`, `[game_common]`, `[gameN]`,
//! `[gate_common]`, `[gateN]`. Every `*N` section starts from its `*_common` section, which starts
//! from built-in defaults. Unknown sections, unknown keys and bad values are errors naming the
//! file, the section and the key; nothing here exits the process.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

/// A config that cannot be used, with where the problem is.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{file}: [{section}] {key}: {problem}")]
pub struct ConfigError {
    /// Config file path.
    pub file: String,
    /// Section (lower-case).
    pub section: String,
    /// Key (lower-case), empty for section-level problems.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

/// One dispatcher process.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatcherConfig {
    /// 1-based id.
    pub id: u16,
    /// The machine it runs on (`host`; none: the machine `oxworld` runs on without `--host`).
    /// `oxworld start|stop|status|kill|reload --host NAME` acts on the processes naming NAME.
    pub host: Option<String>,
    /// Where it listens for games and gates.
    pub listen_addr: SocketAddr,
    /// Where games and gates dial it.
    pub advertise_addr: SocketAddr,
    /// `log` filter (`error`, `warn`, `info`, `debug`, `trace`).
    pub log_level: String,
    /// IO worker threads.
    pub io_threads: usize,
    /// Connections accepted at once (`max_conns`, default 4096); more are refused at accept.
    pub max_conns: usize,
    /// Connections that have not completed the handshake (`max_pending_conns`, default 64);
    /// when full, the oldest pending one is closed for the newcomer, so they never crowd out
    /// games and gates.
    pub max_pending_conns: usize,
    /// A connection that has not sent a valid `Hello` within this long is closed
    /// (`handshake_timeout_ms`, default 5000). Until then its frames are capped at
    /// [`crate::msg::HANDSHAKE_MAX_FRAME`].
    pub handshake_timeout: Duration,
    /// Where the Prometheus endpoint listens (`metrics_addr`; off when absent).
    pub metrics_addr: Option<SocketAddr>,
}

/// One game process.
#[derive(Debug, Clone, PartialEq)]
pub struct GameConfig {
    /// 1-based id.
    pub id: u16,
    /// The machine it runs on (`host`; none: the machine `oxworld` runs on without `--host`).
    /// `oxworld start|stop|status|kill|reload --host NAME` acts on the processes naming NAME.
    pub host: Option<String>,
    /// Overrides the boot entity type the game binary declares.
    pub boot_entity: Option<String>,
    /// Never place boot entities (new clients) on this game.
    pub ban_boot_entity: bool,
    /// `log` filter.
    pub log_level: String,
    /// IO worker threads.
    pub io_threads: usize,
    /// How often moved entities' positions are sent to the clients that see them
    /// (`position_sync_interval_ms`, 5..=10000, default 100).
    pub position_sync_interval: Duration,
    /// What happens to an entity whose code panicked (`on_panic`: `quarantine`, the default,
    /// destroys it without saving and kicks its client; `keep` leaves it as it was).
    pub quarantine_on_panic: bool,
    /// Where the Prometheus endpoint listens (`metrics_addr`; off when absent).
    pub metrics_addr: Option<SocketAddr>,
    /// A client call that waits and runs longer than this at the game has its reply traced
    /// even when the gate did not sample it (`slow_call_ms`, default 100).
    pub slow_call: Duration,
    /// How long a player entity whose client's connection or gate was lost waits for the
    /// client to resume before it gets `on_client_disconnected` (`client_resume_s`, 0..=3600,
    /// default 30; 0: at once, as before resume existed).
    pub client_resume: Duration,
}

/// One gate process.
#[derive(Debug, Clone, PartialEq)]
pub struct GateConfig {
    /// 1-based id.
    pub id: u16,
    /// The machine it runs on (`host`; none: the machine `oxworld` runs on without `--host`).
    /// `oxworld start|stop|status|kill|reload --host NAME` acts on the processes naming NAME.
    pub host: Option<String>,
    /// TCP address the gate listens on.
    pub listen_addr: SocketAddr,
    /// TCP address clients dial (`advertise_addr`; default: `listen_addr`, with an unspecified
    /// IP such as 0.0.0.0 read as 127.0.0.1).
    pub advertise_addr: SocketAddr,
    /// WebSocket address clients dial (`ws_advertise_addr`; default from `ws_addr` likewise).
    pub ws_advertise_addr: Option<SocketAddr>,
    /// KCP address clients dial (`kcp_advertise_addr`; default from `kcp_addr` likewise).
    pub kcp_advertise_addr: Option<SocketAddr>,
    /// `log` filter.
    pub log_level: String,
    /// IO worker threads.
    pub io_threads: usize,
    /// Largest client frame accepted; larger ones close the connection before allocating.
    pub max_client_frame: usize,
    /// Bytes queued towards one client before it is disconnected as too slow.
    pub client_queue_limit: usize,
    /// A client that sends nothing for this long is dropped.
    pub heartbeat_timeout: Duration,
    /// Client connections accepted at once; more are refused at accept.
    pub max_clients: usize,
    /// Write gathering period for clients (`client_flush_ms`, default 10, 0: every message at
    /// once): a client that got two or more messages in the last period and sent no call in
    /// it gets its first message of a period at once and later ones together at the period's
    /// end; everyone else's leave at once (see `oxworld_core::gate`).
    pub client_flush: Duration,
    /// Client calls (`Call`, `CallService`) accepted per second per client (`call_rate_per_s`,
    /// default 1000), refilling a bucket of `call_burst` (default 2000). A call past it is
    /// answered with error `RateLimited` and dropped.
    pub call_rate: u32,
    /// Bucket size for calls.
    pub call_burst: u32,
    /// `Move` messages accepted per second per client (`move_rate_per_s`, default 100, bucket
    /// `move_burst` default 100); past it a move is dropped with `RateLimited`.
    pub move_rate: u32,
    /// Bucket size for moves.
    pub move_burst: u32,
    /// A client whose refused messages within one second exceed this (`rate_limit_disconnect`,
    /// default 1000) is disconnected: it keeps going after being told.
    pub rate_limit_disconnect: u32,
    /// WebSocket address (`ws_addr`; off when absent).
    pub ws_addr: Option<SocketAddr>,
    /// KCP over UDP address (`kcp_addr`; off when absent).
    pub kcp_addr: Option<SocketAddr>,
    /// Encrypt every client connection (`encrypt`, default true): Noise NK, PROTOCOL.md 2.5.
    pub encrypt: bool,
    /// The gate's X25519 secret key file (`key_file`, default `gate.key`), resolved against
    /// the config file's directory.
    pub key_file: PathBuf,
    /// Messages of at least this many bytes are lz4-compressed for clients that accept it
    /// (`compress_threshold_bytes`, default 512; 0: no compression).
    pub compress_threshold: usize,
    /// Directory of static files the WebSocket port serves to plain GETs (`web_root`) as
    /// written; see [`GateConfig::web_root_in`] for where a relative one points.
    pub web_root: Option<PathBuf>,
    /// The config file's directory (what a relative `web_root` falls back to).
    pub config_dir: PathBuf,
    /// Browser origins allowed to open a WebSocket (`ws_allowed_origins`, comma-separated;
    /// empty: any). Requests without `Origin` are always accepted.
    pub ws_allowed_origins: Vec<String>,
    /// KCP parameters.
    pub kcp: KcpConfig,
    /// Where the Prometheus endpoint listens (`metrics_addr`; off when absent).
    pub metrics_addr: Option<SocketAddr>,
    /// One client call in this many is traced hop by hop (`trace_sample`, default 1000; 0:
    /// none sampled, slow replies from games are still logged).
    pub trace_sample: u32,
    /// A traced call whose reply took longer than this end to end is logged
    /// (`slow_call_ms`, default 100).
    pub slow_call: Duration,
}

impl GateConfig {
    /// The directory `web_root` names: as written if absolute; a relative one resolves against
    /// `game_dir` (the game directory `oxworld start` was given, so each demo serves its own
    /// pages from one shared config), or without one against the config file's directory.
    pub fn web_root_in(&self, game_dir: Option<&Path>) -> Option<PathBuf> {
        let w = self.web_root.as_ref()?;
        Some(if w.is_absolute() { w.clone() } else { game_dir.unwrap_or(&self.config_dir).join(w) })
    }
}

/// KCP tuning of a gate (`kcp_*` keys), defaults for low latency as kcp-go's "fast" mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KcpConfig {
    /// `kcp_nodelay` (default true): RTO grows 1.5x instead of 2x, minimum RTO 30 ms.
    pub nodelay: bool,
    /// `kcp_interval_ms` (default 10): internal flush interval.
    pub interval_ms: u32,
    /// `kcp_resend` (default 2): fast retransmit after this many skipping ACKs (0: off).
    pub resend: u32,
    /// `kcp_nc` (default true): no congestion window.
    pub no_congestion: bool,
    /// `kcp_snd_wnd` (default 256) send window, in segments.
    pub snd_wnd: u16,
    /// `kcp_rcv_wnd` (default 256) receive window, in segments.
    pub rcv_wnd: u16,
    /// `kcp_mtu` (default 1200) bytes per datagram.
    pub mtu: u32,
    /// `udp_recv_buffer_bytes` (default 4 MiB): SO_RCVBUF of the gate's UDP socket.
    pub udp_recv_buffer: usize,
    /// `udp_send_buffer_bytes` (default 4 MiB): SO_SNDBUF of the gate's UDP socket.
    pub udp_send_buffer: usize,
}

/// The whole validated cluster config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// File it was read from.
    pub path: PathBuf,
    /// Shared secret every internal connection must present.
    pub secret: String,
    /// Largest internal frame (dispatcher links).
    pub max_internal_frame: usize,
    /// Bytes queued towards one internal peer before the link is considered dead.
    pub internal_queue_limit: usize,
    /// How long a dispatcher holds a freezing game's traffic (hot swap) before answering
    /// every held call with an error and declaring the game down (`freeze_hold_timeout_s`).
    pub freeze_hold_timeout: Duration,
    /// Bytes of held traffic per freezing game past which the same happens
    /// (`freeze_hold_max_bytes`).
    pub freeze_hold_max_bytes: usize,
    /// A game whose links closed counts as lost (its clients are told `PlayerLost` and get a
    /// new boot entity) when it has not linked again as the same process within this long
    /// (`game_lost_after_ms`, default 2000); a new process of it (a restart) counts at once.
    pub game_lost_after: Duration,
    /// How long a game or gate keeps a numbered message nobody acknowledged (to send it again
    /// after a dispatcher restart) before answering it with an error (`unacked_timeout_s`,
    /// default `freeze_hold_timeout_s` + 30: a dispatcher holding it for a hot swap or a
    /// migration answers it itself before then).
    pub unacked_timeout: Duration,
    /// Bytes of unacknowledged messages a process keeps; past them the oldest are answered
    /// with an error (`unacked_max_bytes`, default 64 MiB).
    pub unacked_max_bytes: usize,
    /// Dispatchers, ids 1..=N in order.
    pub dispatchers: Vec<DispatcherConfig>,
    /// Games, ids 1..=N in order.
    pub games: Vec<GameConfig>,
    /// Gates, ids 1..=N in order.
    pub gates: Vec<GateConfig>,
    /// Entity storage, KVDB and freezes (`[storage]`).
    pub storage: StorageConfig,
}

/// Where games keep persistent entities, KVDB and hot-swap freezes (`[storage]`).
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// `lmdb` (embedded, the default), `redis`, or `memory` (tests: lost on exit).
    pub backend: String,
    /// LMDB directory, shared by the games of one machine (`dir`, default `run/store`).
    pub dir: PathBuf,
    /// Redis URL (`redis_url`).
    pub redis_url: String,
    /// LMDB map size in MiB: the most the store can hold (`map_size_mb`).
    pub map_size_mb: usize,
    /// Time between saves of changed persistent entities (`save_interval_s`).
    pub save_interval: Duration,
    /// Where games write their freezes (`freeze_dir`, default `run/freeze`).
    pub freeze_dir: PathBuf,
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            section: String::new(),
            key: String::new(),
            problem: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses config text; `path` is used for error messages and kept in [`Config::path`].
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let err = |section: &str, key: &str, problem: String| ConfigError {
            file: file.clone(),
            section: section.to_owned(),
            key: key.to_owned(),
            problem,
        };
        let ini = ini::Ini::load_from_str(text).map_err(|e| err("", "", format!("not an ini file: {e}")))?;
        // Lower-cased sections -> lower-cased keys -> values.
        let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (name, props) in ini.iter() {
            let Some(name) = name else {
                if let Some((k, _)) = props.iter().next() {
                    return Err(err("", k, "key outside of any section".into()));
                }
                continue;
            };
            let sec = sections.entry(name.trim().to_ascii_lowercase()).or_default();
            for (k, v) in props.iter() {
                let v = v.split(';').next().unwrap_or("").trim().to_owned();
                sec.insert(k.trim().to_ascii_lowercase(), v);
            }
        }

        let empty = BTreeMap::new();
        let dep = Section::new(&file, "deployment", sections.get("deployment").unwrap_or(&empty));
        let n_disp = dep.uint("desired_dispatchers", None, 1, 64)?;
        let n_games = dep.uint("desired_games", None, 1, 1024)?;
        let n_gates = dep.uint("desired_gates", None, 1, 1024)?;
        let secret = dep.string("secret", None)?;
        if secret.is_empty() {
            return Err(err("deployment", "secret", "must not be empty".into()));
        }
        let max_internal_frame = dep.uint("max_internal_frame_bytes", Some(32 << 20), 1024, 1 << 30)?;
        let internal_queue_limit = dep.uint("internal_queue_limit_bytes", Some(256 << 20), 1 << 20, 1 << 34)?;
        let freeze_hold_timeout = Duration::from_secs(dep.uint("freeze_hold_timeout_s", Some(120), 1, 86_400)? as u64);
        let freeze_hold_max_bytes = dep.uint("freeze_hold_max_bytes", Some(512 << 20), 1 << 10, 1 << 36)?;
        let game_lost_after = Duration::from_millis(dep.uint("game_lost_after_ms", Some(2000), 100, 600_000)? as u64);
        let hold_s = freeze_hold_timeout.as_secs() as usize;
        let unacked_s = dep.uint("unacked_timeout_s", Some(hold_s + 30), 1, 86_400 * 2)?;
        if unacked_s <= hold_s {
            let why = format!(
                "must be longer than freeze_hold_timeout_s ({hold_s}): a held message would run after its sender got an error"
            );
            return Err(err("deployment", "unacked_timeout_s", why));
        }
        let unacked_timeout = Duration::from_secs(unacked_s as u64);
        let unacked_max_bytes = dep.uint("unacked_max_bytes", Some(64 << 20), 1 << 16, 1 << 36)?;
        dep.deny_unknown()?;

        let st = Section::new(&file, "storage", sections.get("storage").unwrap_or(&empty));
        let backend = st.string("backend", Some("lmdb"))?;
        if !["lmdb", "redis", "memory"].contains(&backend.as_str()) {
            return Err(err("storage", "backend", format!("{backend:?} is not one of lmdb, redis, memory")));
        }
        // Relative directories are relative to the directory `oxworld` runs in (where `run/`
        // is), like the CLI's --run-dir.
        let dir = |key: &'static str, default: &str| -> Result<PathBuf, ConfigError> {
            let d = st.string(key, Some(default))?;
            if d.is_empty() {
                return Err(err("storage", key, "must not be empty".into()));
            }
            Ok(PathBuf::from(d))
        };
        let redis_url = st.string("redis_url", Some("redis://127.0.0.1:6379/0"))?;
        if !["redis://", "redis+unix://", "unix://"].iter().any(|p| redis_url.starts_with(p)) {
            return Err(err(
                "storage",
                "redis_url",
                format!("{redis_url:?} is not a redis://host:port/db (or redis+unix://, unix://) URL"),
            ));
        }
        let storage = StorageConfig {
            backend,
            dir: dir("dir", "run/store")?,
            redis_url,
            // At most 1 TiB (LMDB reserves the map as address space, not disk).
            map_size_mb: st.uint("map_size_mb", Some(1024), 1, 1 << 20)?,
            save_interval: Duration::from_secs(st.uint("save_interval_s", Some(60), 1, 86_400)? as u64),
            freeze_dir: dir("freeze_dir", "run/freeze")?,
        };
        st.deny_unknown()?;

        for name in sections.keys() {
            let known = ["deployment", "storage", "dispatcher_common", "game_common", "gate_common"]
                .contains(&name.as_str())
                || [("dispatcher", n_disp), ("game", n_games), ("gate", n_gates)].iter().any(|(p, n)| {
                    name.strip_prefix(p)
                        .and_then(|rest| rest.parse::<usize>().ok())
                        .is_some_and(|i| (1..=*n).contains(&i))
                });
            if !known {
                return Err(err(name, "", "unknown section (or its id exceeds the desired count)".into()));
            }
        }

        let merged = |kind: &str, i: usize| -> BTreeMap<String, String> {
            let mut m = sections.get(&format!("{kind}_common")).cloned().unwrap_or_default();
            if let Some(own) = sections.get(&format!("{kind}{i}")) {
                m.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            m
        };

        let mut dispatchers = Vec::new();
        for i in 1..=n_disp {
            let m = merged("dispatcher", i);
            let name = format!("dispatcher{i}");
            let s = Section::new(&file, &name, &m);
            let default_listen = format!("127.0.0.1:{}", 13000 + i - 1);
            let listen_addr = s.addr("listen_addr", Some(&default_listen))?;
            let advertise_addr = s.advertised("advertise_addr", Some(listen_addr))?.unwrap_or(listen_addr);
            dispatchers.push(DispatcherConfig {
                id: i as u16,
                host: s.host()?,
                metrics_addr: s.opt_addr("metrics_addr")?,
                listen_addr,
                advertise_addr,
                log_level: s.log_level()?,
                io_threads: s.uint("io_threads", Some(1), 1, 64)?,
                max_conns: s.uint("max_conns", Some(4096), 2, 1_000_000)?,
                max_pending_conns: s.uint("max_pending_conns", Some(64), 1, 1_000_000)?,
                handshake_timeout: Duration::from_millis(
                    s.uint("handshake_timeout_ms", Some(5000), 10, 600_000)? as u64
                ),
            });
            s.deny_unknown()?;
        }
        let mut games = Vec::new();
        for i in 1..=n_games {
            let m = merged("game", i);
            let name = format!("game{i}");
            let s = Section::new(&file, &name, &m);
            let boot = s.string("boot_entity", Some(""))?;
            games.push(GameConfig {
                metrics_addr: s.opt_addr("metrics_addr")?,
                id: i as u16,
                host: s.host()?,
                boot_entity: (!boot.is_empty()).then_some(boot),
                ban_boot_entity: s.bool("ban_boot_entity", false)?,
                log_level: s.log_level()?,
                io_threads: s.uint("io_threads", Some(1), 1, 64)?,
                position_sync_interval: Duration::from_millis(s.uint(
                    "position_sync_interval_ms",
                    Some(100),
                    5,
                    10_000,
                )? as u64),
                quarantine_on_panic: match s.string("on_panic", Some("quarantine"))?.as_str() {
                    "quarantine" => true,
                    "keep" => false,
                    other => return Err(s.err("on_panic", format!("{other:?}: expected quarantine or keep"))),
                },
                slow_call: Duration::from_millis(s.uint("slow_call_ms", Some(100), 1, 3_600_000)? as u64),
                client_resume: Duration::from_secs(s.uint("client_resume_s", Some(30), 0, 3600)? as u64),
            });
            s.deny_unknown()?;
        }
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut gates = Vec::new();
        for i in 1..=n_gates {
            let m = merged("gate", i);
            let name = format!("gate{i}");
            let s = Section::new(&file, &name, &m);
            let default_listen = format!("127.0.0.1:{}", 14000 + i - 1);
            let listen_addr = s.addr("listen_addr", Some(&default_listen))?;
            let (ws_addr, kcp_addr) = (s.opt_addr("ws_addr")?, s.opt_addr("kcp_addr")?);
            gates.push(GateConfig {
                metrics_addr: s.opt_addr("metrics_addr")?,
                id: i as u16,
                host: s.host()?,
                listen_addr,
                advertise_addr: s.advertised("advertise_addr", Some(listen_addr))?.unwrap_or(listen_addr),
                ws_advertise_addr: s.advertised_for("ws_advertise_addr", "ws_addr", ws_addr)?,
                kcp_advertise_addr: s.advertised_for("kcp_advertise_addr", "kcp_addr", kcp_addr)?,
                ws_addr,
                kcp_addr,
                log_level: s.log_level()?,
                io_threads: s.uint("io_threads", Some(1), 1, 64)?,
                max_client_frame: s.uint("max_client_frame_bytes", Some(1 << 20), 64, 1 << 28)?,
                client_queue_limit: s.uint("client_queue_limit_bytes", Some(4 << 20), 1024, 1 << 32)?,
                heartbeat_timeout: Duration::from_secs(s.uint("heartbeat_timeout_s", Some(60), 1, 86_400)? as u64),
                max_clients: s.uint("max_clients", Some(20_000), 1, 1_000_000)?,
                client_flush: Duration::from_millis(s.uint("client_flush_ms", Some(10), 0, 1000)? as u64),
                trace_sample: s.uint("trace_sample", Some(1000), 0, 1 << 30)? as u32,
                slow_call: Duration::from_millis(s.uint("slow_call_ms", Some(100), 1, 3_600_000)? as u64),
                call_rate: s.uint("call_rate_per_s", Some(1000), 1, 10_000_000)? as u32,
                call_burst: s.uint("call_burst", Some(2000), 1, 10_000_000)? as u32,
                move_rate: s.uint("move_rate_per_s", Some(100), 1, 10_000_000)? as u32,
                move_burst: s.uint("move_burst", Some(100), 1, 10_000_000)? as u32,
                rate_limit_disconnect: s.uint("rate_limit_disconnect", Some(1000), 1, 10_000_000)? as u32,
                encrypt: s.bool("encrypt", true)?,
                key_file: base_dir.join(s.string("key_file", Some("gate.key"))?),
                compress_threshold: s.uint("compress_threshold_bytes", Some(512), 0, 1 << 28)?,
                web_root: {
                    let w = s.string("web_root", Some(""))?;
                    (!w.is_empty()).then(|| PathBuf::from(w))
                },
                config_dir: base_dir.clone(),
                ws_allowed_origins: s
                    .string("ws_allowed_origins", Some(""))?
                    .split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(str::to_owned)
                    .collect(),
                kcp: KcpConfig {
                    nodelay: s.bool("kcp_nodelay", true)?,
                    interval_ms: s.uint("kcp_interval_ms", Some(10), 1, 5000)? as u32,
                    resend: s.uint("kcp_resend", Some(2), 0, 100)? as u32,
                    no_congestion: s.bool("kcp_nc", true)?,
                    snd_wnd: s.uint("kcp_snd_wnd", Some(256), 1, 65_535)? as u16,
                    rcv_wnd: s.uint("kcp_rcv_wnd", Some(256), 128, 65_535)? as u16,
                    mtu: s.uint("kcp_mtu", Some(1200), 100, 1500)? as u32,
                    udp_recv_buffer: s.uint("udp_recv_buffer_bytes", Some(4 << 20), 4096, 1 << 30)?,
                    udp_send_buffer: s.uint("udp_send_buffer_bytes", Some(4 << 20), 4096, 1 << 30)?,
                },
            });
            s.deny_unknown()?;
        }
        if ban_all(&games) {
            return Err(err(
                "game_common",
                "ban_boot_entity",
                "every game bans boot entities: no client could log in".into(),
            ));
        }
        // Two processes of one host may not listen on one address (other hosts may).
        let mut seen = BTreeMap::new();
        let listens = dispatchers
            .iter()
            .map(|d| (format!("dispatcher{}", d.id), &d.host, d.listen_addr))
            .chain(gates.iter().map(|g| (format!("gate{}", g.id), &g.host, g.listen_addr)))
            .chain(gates.iter().filter_map(|g| g.ws_addr.map(|a| (format!("gate{}", g.id), &g.host, a))));
        for (sec, host, addr) in listens {
            if let Some(other) = seen.insert((host.clone(), addr), sec.clone()) {
                return Err(err(&sec, "listen_addr", format!("{addr} is also the listen_addr of [{other}]")));
            }
        }
        check_hosts(&dispatchers, &games, &gates, &storage.backend, &storage.redis_url)
            .map_err(|(sec, key, p)| err(&sec, key, p))?;
        Ok(Config {
            path: path.to_owned(),
            secret,
            max_internal_frame,
            internal_queue_limit,
            freeze_hold_timeout,
            freeze_hold_max_bytes,
            game_lost_after,
            unacked_timeout,
            unacked_max_bytes,
            dispatchers,
            games,
            gates,
            storage,
        })
    }

    /// The game with `id`, if configured.
    pub fn game(&self, id: u16) -> Option<&GameConfig> {
        self.games.iter().find(|g| g.id == id)
    }

    /// The gate with `id`, if configured.
    pub fn gate(&self, id: u16) -> Option<&GateConfig> {
        self.gates.iter().find(|g| g.id == id)
    }

    /// Every host some process names, sorted.
    pub fn hosts(&self) -> Vec<String> {
        let all = self.dispatchers.iter().map(|d| &d.host).chain(self.games.iter().map(|g| &g.host));
        let set: BTreeSet<String> = all.chain(self.gates.iter().map(|g| &g.host)).flatten().cloned().collect();
        set.into_iter().collect()
    }

    /// The dispatcher with `id`, if configured.
    pub fn dispatcher(&self, id: u16) -> Option<&DispatcherConfig> {
        self.dispatchers.iter().find(|d| d.id == id)
    }
}

/// What a config spread over several hosts must satisfy: every address a process of one host
/// dials on another (a dispatcher's `advertise_addr`) reaches that host (not loopback), and
/// games on different hosts share a store that is not per machine (LMDB is).
fn check_hosts(
    dispatchers: &[DispatcherConfig],
    games: &[GameConfig],
    gates: &[GateConfig],
    backend: &str,
    redis_url: &str,
) -> Result<(), (String, &'static str, String)> {
    let name = |h: &Option<String>| h.clone().unwrap_or_else(|| "(no host)".to_owned());
    let game_hosts: BTreeSet<String> = games.iter().map(|g| name(&g.host)).collect();
    if backend == "lmdb" && game_hosts.len() > 1 {
        let list: Vec<String> = game_hosts.into_iter().collect();
        return Err((
            "storage".to_owned(),
            "backend",
            format!(
                "games run on several hosts ({}), but lmdb is a store on one machine: use backend = redis with a \
                 redis_url every host reaches",
                list.join(", ")
            ),
        ));
    }
    // Every game must reach the same store: not a loopback Redis (each host would use its own).
    let redis_local = ["redis://127.", "redis://localhost", "redis://[::1]", "unix://", "redis+unix://"];
    if backend == "redis" && game_hosts.len() > 1 && redis_local.iter().any(|p| redis_url.starts_with(p)) {
        return Err((
            "storage".to_owned(),
            "redis_url",
            format!(
                "{redis_url} is on each host itself, but games run on several hosts: give the address of one Redis they all reach"
            ),
        ));
    }
    let dialers: BTreeSet<String> =
        games.iter().map(|g| name(&g.host)).chain(gates.iter().map(|g| name(&g.host))).collect();
    for d in dispatchers {
        let here = name(&d.host);
        if let Some(other) = dialers.iter().find(|h| **h != here)
            && d.advertise_addr.ip().is_loopback()
        {
            return Err((
                format!("dispatcher{}", d.id),
                "advertise_addr",
                format!(
                    "{} is a loopback address, but processes on host {other} dial this dispatcher (on {here}): \
                     set advertise_addr to an address of {here} they reach",
                    d.advertise_addr
                ),
            ));
        }
    }
    Ok(())
}

fn ban_all(games: &[GameConfig]) -> bool {
    games.iter().all(|g| g.ban_boot_entity)
}

/// One merged section being read; remembers which keys were consumed.
struct Section<'a> {
    file: &'a str,
    name: &'a str,
    map: &'a BTreeMap<String, String>,
    used: std::cell::RefCell<Vec<&'static str>>,
}

impl<'a> Section<'a> {
    fn new(file: &'a str, name: &'a str, map: &'a BTreeMap<String, String>) -> Self {
        Self { file, name, map, used: Default::default() }
    }

    fn err(&self, key: &str, problem: String) -> ConfigError {
        ConfigError { file: self.file.to_owned(), section: self.name.to_owned(), key: key.to_owned(), problem }
    }

    fn raw(&self, key: &'static str) -> Option<&'a str> {
        self.used.borrow_mut().push(key);
        self.map.get(key).map(String::as_str)
    }

    fn string(&self, key: &'static str, default: Option<&str>) -> Result<String, ConfigError> {
        match (self.raw(key), default) {
            (Some(v), _) => Ok(v.to_owned()),
            (None, Some(d)) => Ok(d.to_owned()),
            (None, None) => Err(self.err(key, "required".into())),
        }
    }

    fn uint(&self, key: &'static str, default: Option<usize>, min: usize, max: usize) -> Result<usize, ConfigError> {
        let v = match (self.raw(key), default) {
            (Some(v), _) => v.parse::<usize>().map_err(|_| self.err(key, format!("{v:?} is not a whole number")))?,
            (None, Some(d)) => d,
            (None, None) => return Err(self.err(key, "required".into())),
        };
        if !(min..=max).contains(&v) {
            return Err(self.err(key, format!("{v} is outside {min}..={max}")));
        }
        Ok(v)
    }

    fn bool(&self, key: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(key).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(v) => Err(self.err(key, format!("{v:?} is not a boolean (true/false/1/0)"))),
        }
    }

    fn addr(&self, key: &'static str, default: Option<&str>) -> Result<SocketAddr, ConfigError> {
        let s = self.string(key, default)?;
        s.to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| self.err(key, format!("{s:?} is not a host:port address")))
    }

    fn opt_addr(&self, key: &'static str) -> Result<Option<SocketAddr>, ConfigError> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(_) => self.addr(key, None).map(Some),
        }
    }

    /// An address others dial: `key` if set, else `listen` with an unspecified IP (0.0.0.0,
    /// ::) read as loopback. Never unspecified nor port 0: nobody can dial those.
    fn advertised(&self, key: &'static str, listen: Option<SocketAddr>) -> Result<Option<SocketAddr>, ConfigError> {
        let a = match self.opt_addr(key)? {
            Some(a) => a,
            None => match listen {
                Some(mut l) => {
                    if l.ip().is_unspecified() {
                        l.set_ip(if l.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { Ipv6Addr::LOCALHOST.into() });
                    }
                    l
                }
                None => return Ok(None),
            },
        };
        if a.ip().is_unspecified() || a.port() == 0 {
            return Err(self.err(key, format!("{a} cannot be dialed: give the address others reach this process at")));
        }
        Ok(Some(a))
    }

    /// As [`Section::advertised`] for an optional listener (`listen_key`): an advertised
    /// address without the listener is an error.
    fn advertised_for(
        &self,
        key: &'static str,
        listen_key: &str,
        listen: Option<SocketAddr>,
    ) -> Result<Option<SocketAddr>, ConfigError> {
        let a = self.advertised(key, listen)?;
        if a.is_some() && listen.is_none() {
            return Err(self.err(key, format!("set, but {listen_key} is not: nothing listens there")));
        }
        Ok(a)
    }

    /// `host`: a name of letters, digits, `.`, `-` and `_`, or none.
    fn host(&self) -> Result<Option<String>, ConfigError> {
        let h = self.string("host", Some(""))?;
        if h.is_empty() {
            return Ok(None);
        }
        if !h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) || h.len() > 64 {
            return Err(self.err("host", format!("{h:?}: a host name is 1-64 letters, digits, '.', '-' or '_'")));
        }
        Ok(Some(h))
    }

    fn log_level(&self) -> Result<String, ConfigError> {
        let v = self.string("log_level", Some("info"))?.to_ascii_lowercase();
        match v.as_str() {
            "error" | "warn" | "info" | "debug" | "trace" | "off" => Ok(v),
            _ => Err(self.err("log_level", format!("{v:?} is not one of error, warn, info, debug, trace, off"))),
        }
    }

    fn deny_unknown(&self) -> Result<(), ConfigError> {
        let used = self.used.borrow();
        match self.map.keys().find(|k| !used.contains(&k.as_str())) {
            Some(k) => Err(self.err(k, "unknown key".into())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "
[deployment]
desired_dispatchers = 2
desired_games = 2
desired_gates = 1
secret = s3cret ; inline comment

[dispatcher_common]
log_level = warn

[dispatcher1]
listen_addr = 127.0.0.1:17001

[dispatcher2]
listen_addr = 127.0.0.1:17002
advertise_addr = 127.0.0.1:17002

[game_common]
boot_entity = Account

[game2]
ban_boot_entity = true
io_threads = 2
position_sync_interval_ms = 20
on_panic = keep

[gate1]
listen_addr = 127.0.0.1:17100
heartbeat_timeout_s = 5
";

    fn check(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.ini"), text)
    }

    #[test]
    fn parses_and_inherits() {
        let c = check(BASE).expect("valid config");
        assert_eq!(c.secret, "s3cret");
        assert_eq!(c.dispatchers.len(), 2);
        assert_eq!(c.dispatchers[0].log_level, "warn");
        assert_eq!(c.dispatchers[1].advertise_addr.port(), 17002);
        assert_eq!(c.games[0].boot_entity.as_deref(), Some("Account"));
        assert!(!c.games[0].ban_boot_entity);
        assert!(c.games[1].ban_boot_entity);
        assert_eq!(c.games[1].io_threads, 2);
        assert_eq!(c.games[0].position_sync_interval, Duration::from_millis(100), "default");
        assert_eq!(c.games[1].position_sync_interval, Duration::from_millis(20));
        assert!(c.games[0].quarantine_on_panic && !c.games[1].quarantine_on_panic);
        assert_eq!(c.gates[0].client_flush, Duration::from_millis(10), "default");
        assert_eq!(c.games[1].boot_entity.as_deref(), Some("Account"), "inherited from game_common");
        assert_eq!(c.gates[0].heartbeat_timeout, Duration::from_secs(5));
        assert_eq!(c.gates[0].max_client_frame, 1 << 20);
        assert_eq!(c.gates[0].web_root_in(None), None, "no web_root");
    }

    #[test]
    fn a_relative_web_root_follows_the_game_directory() {
        let c = Config::parse(Path::new("/etc/ox/c.ini"), &format!("{BASE}\n[gate_common]\nweb_root = web\n"))
            .expect("valid");
        let g = &c.gates[0];
        assert_eq!(g.web_root_in(Some(Path::new("/src/demo/chat"))), Some(PathBuf::from("/src/demo/chat/web")));
        assert_eq!(g.web_root_in(None), Some(PathBuf::from("/etc/ox/web")), "else the config's directory");
        let abs =
            Config::parse(Path::new("c.ini"), &format!("{BASE}\n[gate_common]\nweb_root = /srv/www\n")).expect("valid");
        assert_eq!(abs.gates[0].web_root_in(Some(Path::new("/x"))), Some(PathBuf::from("/srv/www")));
    }

    #[test]
    fn unknown_key_names_file_section_key() {
        let e = check(&format!("{BASE}\n[gate1]\nbogus = 1\n")).expect_err("unknown key");
        assert_eq!((e.file.as_str(), e.section.as_str(), e.key.as_str()), ("test.ini", "gate1", "bogus"));
        assert_eq!(e.to_string(), "test.ini: [gate1] bogus: unknown key");
    }

    #[test]
    fn unknown_section() {
        let e = check(&format!("{BASE}\n[storage2]\n")).expect_err("unknown section");
        assert_eq!(e.section, "storage2");
        let e = check(&format!("{BASE}\n[game3]\n")).expect_err("game id beyond desired_games");
        assert_eq!(e.section, "game3");
    }

    #[test]
    fn bad_values() {
        let e = check(&BASE.replace("desired_games = 2", "desired_games = two")).expect_err("bad number");
        assert_eq!((e.section.as_str(), e.key.as_str()), ("deployment", "desired_games"));
        let e = check(&BASE.replace("heartbeat_timeout_s = 5", "heartbeat_timeout_s = 0")).expect_err("range");
        assert_eq!(e.key, "heartbeat_timeout_s");
        let e = check(&BASE.replace("position_sync_interval_ms = 20", "position_sync_interval_ms = 4"))
            .expect_err("below 5 ms");
        assert_eq!(e.key, "position_sync_interval_ms");
        let e = check(&BASE.replace("ban_boot_entity = true", "ban_boot_entity = maybe")).expect_err("bool");
        assert_eq!(e.key, "ban_boot_entity");
        let e = check(&BASE.replace("127.0.0.1:17100", "nowhere")).expect_err("addr");
        assert_eq!(e.key, "listen_addr");
        let e = check(&BASE.replace("secret = s3cret ; inline comment", "")).expect_err("secret");
        assert_eq!(e.key, "secret");
    }

    #[test]
    fn storage_defaults() {
        let c = check(BASE).expect("valid config");
        let want = StorageConfig {
            backend: "lmdb".into(),
            dir: PathBuf::from("run/store"),
            redis_url: "redis://127.0.0.1:6379/0".into(),
            map_size_mb: 1024,
            save_interval: Duration::from_secs(60),
            freeze_dir: PathBuf::from("run/freeze"),
        };
        assert_eq!(c.storage, want);
        assert_eq!(check(&format!("{BASE}\n[storage]\n")).expect("empty section").storage, want);
    }

    #[test]
    fn storage_keys() {
        let c = check(&format!(
            "{BASE}\n[Storage]\nbackend = redis\ndir = /var/lib/ox/store\nredis_url = redis://10.0.0.5:6380/2 ; db 2\n\
             map_size_mb = 4096\nsave_interval_s = 5\nfreeze_dir = frz\n"
        ))
        .expect("valid config");
        let s = &c.storage;
        assert_eq!(s.backend, "redis");
        assert_eq!(s.dir, PathBuf::from("/var/lib/ox/store"));
        assert_eq!(s.redis_url, "redis://10.0.0.5:6380/2");
        assert_eq!(s.map_size_mb, 4096);
        assert_eq!(s.save_interval, Duration::from_secs(5));
        assert_eq!(s.freeze_dir, PathBuf::from("frz"));
        for b in ["lmdb", "memory"] {
            assert_eq!(check(&format!("{BASE}\n[storage]\nbackend = {b}\n")).expect("backend").storage.backend, b);
        }
        let unix = check(&format!("{BASE}\n[storage]\nredis_url = unix:///run/redis.sock\n")).expect("unix socket");
        assert_eq!(unix.storage.redis_url, "unix:///run/redis.sock");
    }

    #[test]
    fn storage_bad_values() {
        let bad = |body: &str, key: &str, says: &str| {
            let e = check(&format!("{BASE}\n[storage]\n{body}\n")).expect_err(body);
            assert_eq!((e.file.as_str(), e.section.as_str(), e.key.as_str()), ("test.ini", "storage", key), "{body}");
            assert!(e.to_string().contains(says), "{body}: {e}");
        };
        bad("backend = mongodb", "backend", "is not one of lmdb, redis, memory");
        bad("backend =", "backend", "is not one of");
        bad("dir =", "dir", "must not be empty");
        bad("freeze_dir =", "freeze_dir", "must not be empty");
        bad("redis_url = 127.0.0.1:6379", "redis_url", "is not a redis://");
        bad("redis_url = rediss://host:6379/0", "redis_url", "is not a redis://");
        bad("map_size_mb = 0", "map_size_mb", "outside 1..=1048576");
        bad("map_size_mb = 2097152", "map_size_mb", "outside");
        bad("map_size_mb = big", "map_size_mb", "is not a whole number");
        bad("save_interval_s = 0", "save_interval_s", "outside 1..=86400");
        bad("save_interval_s = -5", "save_interval_s", "is not a whole number");
        bad("sync = always", "sync", "unknown key");
    }

    #[test]
    fn duplicate_listen_addresses_refused() {
        let e = check(&BASE.replace("127.0.0.1:17100", "127.0.0.1:17001")).expect_err("dup");
        assert_eq!((e.section.as_str(), e.key.as_str()), ("gate1", "listen_addr"));
    }

    const HOSTS: &str = "
[deployment]
desired_dispatchers = 1
desired_games = 2
desired_gates = 2
secret = s
[storage]
backend = redis
redis_url = redis://10.0.0.1:6379/0
[dispatcher1]
host = h1
listen_addr = 0.0.0.0:17001
advertise_addr = 10.0.0.1:17001
[game1]
host = h2
[game2]
host = h3
[gate1]
host = h2
listen_addr = 0.0.0.0:17100
advertise_addr = 10.0.0.2:17100
ws_addr = 0.0.0.0:17200
[gate2]
host = h3
listen_addr = 0.0.0.0:17100
advertise_addr = 127.0.0.1:17101
kcp_addr = 0.0.0.0:17102
";

    #[test]
    fn hosts_and_advertised_addresses() {
        let c = check(HOSTS).expect("valid");
        assert_eq!(c.hosts(), ["h1", "h2", "h3"]);
        assert_eq!(c.dispatchers[0].host.as_deref(), Some("h1"));
        assert_eq!(c.games[1].host.as_deref(), Some("h3"));
        assert_eq!(c.gates[1].host.as_deref(), Some("h3"), "gates of two hosts may share a listen address");
        let (g1, g2) = (&c.gates[0], &c.gates[1]);
        assert_eq!(g1.advertise_addr.to_string(), "10.0.0.2:17100");
        // Unspecified listen IPs advertise loopback unless told otherwise.
        assert_eq!(g1.ws_advertise_addr.map(|a| a.to_string()).as_deref(), Some("127.0.0.1:17200"));
        assert_eq!(g2.advertise_addr.to_string(), "127.0.0.1:17101");
        assert_eq!(g2.kcp_advertise_addr.map(|a| a.to_string()).as_deref(), Some("127.0.0.1:17102"));
        assert_eq!(g2.ws_advertise_addr, None);
        assert_eq!(check(BASE).expect("valid").hosts(), Vec::<String>::new());
    }

    #[test]
    fn several_hosts_refuse_what_cannot_work_across_machines() {
        let bad = |text: &str, section: &str, key: &str, says: &str| {
            let e = check(text).expect_err(says);
            assert_eq!((e.section.as_str(), e.key.as_str()), (section, key), "{e}");
            assert!(e.to_string().contains(says), "{e}");
        };
        bad(
            &HOSTS.replace("backend = redis", "backend = lmdb"),
            "storage",
            "backend",
            "lmdb is a store on one machine",
        );
        bad(&HOSTS.replace("backend = redis\n", ""), "storage", "backend", "use backend = redis");
        bad(
            &HOSTS.replace("advertise_addr = 10.0.0.1:17001\n", ""),
            "dispatcher1",
            "advertise_addr",
            "loopback address, but processes on host h2 dial this dispatcher (on h1)",
        );
        bad(&HOSTS.replace("10.0.0.2:17100", "0.0.0.0:17100"), "gate1", "advertise_addr", "cannot be dialed");
        bad(&HOSTS.replace("10.0.0.1:17001", "10.0.0.1:0"), "dispatcher1", "advertise_addr", "cannot be dialed");
        bad(&HOSTS.replace("host = h3", "host = h 3"), "game2", "host", "a host name is");
        bad(
            &HOSTS.replace("redis://10.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            "storage",
            "redis_url",
            "on each host itself",
        );
        bad(&format!("{HOSTS}ws_advertise_addr = 10.0.0.3:17300\n"), "gate2", "ws_advertise_addr", "ws_addr is not");
        bad(
            &HOSTS.replace("host = h3\nlisten_addr", "host = h2\nlisten_addr"),
            "gate2",
            "listen_addr",
            "also the listen_addr",
        );
        // Games on one host may keep LMDB, with the dispatcher elsewhere.
        let one =
            HOSTS.replace("backend = redis", "backend = lmdb").replace("[game2]\nhost = h3", "[game2]\nhost = h2");
        check(&one).expect("games on one host");
    }
}
