//! `oxworld import-config`: converts a GoWorld `goworld.ini` into an oxworld config, noting what became of every key.

use std::fmt::{Display, Write as _};
use std::net::SocketAddr;

/// The result of [`convert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// The oxworld config (ini text), accepted by `oxworld_net::config::Config::parse`.
    pub config: String,
    /// One line per GoWorld key: where it went, or that it was dropped and why.
    pub notes: Vec<String>,
}

/// Process kinds: section prefix, `[deployment]` count key, the most our parser allows.
const KINDS: [(&str, &str, usize); 3] =
    [("dispatcher", "desired_dispatchers", 64), ("game", "desired_games", 1024), ("gate", "desired_gates", 1024)];
const SECRET: &str = "change-me-imported-from-goworld";
const UNKNOWN: &str = "unknown GoWorld key";
const LOGS: &str = "each process logs to stderr, which `oxworld start` writes to <run-dir>/<process>.log \
                    (run/dispatcher1.log, run/game1.log, ...); the level is log_level (RUST_LOG wins when set)";
const NOISE: &str = "TLS is not used: every client connection runs Noise NK + ChaCha20-Poly1305 (encrypt, \
                     default true) with the gate's key_file (default gate.key; `oxworld keygen` prints the public \
                     key clients pin)";
const LZ4: &str = "snappy is not used: we use lz4, negotiated per client, for messages of at least \
                   compress_threshold_bytes (default 512; 0: off)";
const NO_GATE_ADDR: &str = "[gate_common] listen_addr: not set; GoWorld gates listened on 0.0.0.0:14000 (TCP and \
                            KCP), ours on 127.0.0.1:(14000 + id - 1), TCP only: set listen_addr and kcp_addr";
const NO_GATE_WS: &str = "[gate_common] http_addr: not set; GoWorld gates served WebSocket on 127.0.0.1:24000/ws, \
                          ours only where ws_addr is set";
/// Keys dropped whatever their value: (the sections they belong to, key, why).
const DROPPED: [(&str, &str, &str); 10] = [
    ("dispatcher game gate", "log_file", LOGS),
    ("dispatcher game gate", "log_stderr", LOGS),
    ("dispatcher game", "http_addr", "we have no per-process HTTP debug server (pprof/expvar)"),
    ("game gate", "gomaxprocs", "a Go runtime setting; our processes run io_threads IO threads (default 1)"),
    ("gate", "compress_connection", LZ4),
    ("gate", "encrypt_connection", NOISE),
    ("gate", "rsa_key", NOISE),
    ("gate", "rsa_certificate", NOISE),
    ("gate", "position_sync_interval_ms", "our gates forward each client's latest move every tick (no setting)"),
    ("debug", "debug", "we have no self-check switch; log_level = debug logs more"),
];

type Keys = Vec<(String, String)>;

/// Converts GoWorld config text. Never fails: what cannot be converted is dropped with a note.
pub fn convert(goworld_ini: &str) -> Converted {
    let mut cx = Cx::default();
    let mut sections = parse(goworld_ini, &mut cx.notes);
    sections.sort_by_key(|(name, _)| rank(name));

    // [deployment]: our parser requires the three counts and a secret.
    let mut counts = [0usize; 3];
    for (key, v) in sections.iter().filter(|(n, _)| n == "deployment").flat_map(|(_, keys)| keys) {
        let f = ("deployment", key.as_str());
        match KINDS.iter().position(|(_, desired, _)| desired == key) {
            None => cx.drop(f, UNKNOWN),
            Some(k) => match v.parse::<usize>() {
                Ok(n) if (1..=KINDS[k].2).contains(&n) => {
                    counts[k] = n;
                    cx.map(f, f.0, &[f.1], n.to_string(), "");
                }
                _ => cx.drop(f, format!("{v:?} is not a count in 1..={}", KINDS[k].2)),
            },
        }
    }
    for (k, &(prefix, desired, max)) in KINDS.iter().enumerate() {
        if counts[k] == 0 {
            let ids = sections.iter().filter_map(|(n, _)| instance(n)).filter(|&(kk, _)| kk == k);
            counts[k] = ids.filter_map(|(_, id)| id).map(usize::from).filter(|&id| id <= max).max().unwrap_or(1);
            let n = counts[k];
            cx.notes.push(format!("[deployment] {desired}: not set, from the [{prefix}N] sections -> {desired} = {n}"));
        }
        cx.set("deployment", desired, counts[k].to_string());
    }
    cx.set("deployment", "secret", SECRET.to_owned());
    cx.notes.push(format!(
        "[deployment] secret = {SECRET}: added (GoWorld has none; internal links present it): replace it"
    ));

    for (name, keys) in sections.iter().filter(|(n, _)| n != "deployment") {
        let mut kept = Keys::new();
        for (key, v) in keys {
            if v.is_empty() {
                cx.drop((name, key), "empty value (GoWorld uses its default)");
            } else {
                kept.push((key.clone(), v.clone()));
            }
        }
        let kind = instance(name);
        let beyond = kind.and_then(|(k, id)| id.filter(|&id| !(1..=counts[k]).contains(&usize::from(id))).map(|_| k));
        for (key, v) in &kept {
            let f = (name.as_str(), key.as_str());
            match (name.as_str(), kind) {
                ("storage" | "kvdb", _) => {}
                _ if let Some(k) = beyond => cx.drop(f, format!("not started: {} = {}", KINDS[k].1, counts[k])),
                (_, Some((k, id))) => {
                    let to = id.map_or_else(|| name.clone(), |id| format!("{}{id}", KINDS[k].0));
                    instance_key(&mut cx, KINDS[k].0, f, &to, v);
                }
                ("debug", _) => instance_key(&mut cx, "debug", f, name, v),
                _ => cx.drop(f, "unknown GoWorld section"),
            }
        }
        match name.as_str() {
            "storage" => storage(&mut cx, &kept),
            "kvdb" => kvdb(&mut cx, &kept),
            _ => {}
        }
    }

    // Our parser refuses a config where no game takes new clients; GoWorld started it anyway.
    let bans = |cx: &Cx, i: usize| {
        cx.get(&format!("game{i}"), "ban_boot_entity").or(cx.get("game_common", "ban_boot_entity")) == Some("true")
    };
    if (1..=counts[1]).all(|i| bans(&cx, i)) {
        cx.set("game1", "ban_boot_entity", "false".to_owned());
        cx.notes.push("[game1] ban_boot_entity = false: set, every game banned boot entities (refused by us)".into());
    }
    let gates_have = |key: &str| cx.out.iter().any(|(n, ks)| n.starts_with("gate") && ks.iter().any(|(k, _)| k == key));
    for (key, note) in [("listen_addr", NO_GATE_ADDR), ("ws_addr", NO_GATE_WS)] {
        if !gates_have(key) {
            cx.notes.push(note.to_owned());
        }
    }

    cx.out.sort_by_key(|(name, _)| rank(name));
    let mut config = String::from("; Converted from a GoWorld goworld.ini by `oxworld import-config`.\n");
    for (name, keys) in &cx.out {
        let _ = writeln!(config, "\n[{name}]");
        for (k, v) in keys {
            let _ = writeln!(config, "{k} = {v}");
        }
    }
    Converted { config, notes: cx.notes }
}

/// The output being built and the notes so far.
#[derive(Default)]
struct Cx {
    out: Vec<(String, Keys)>,
    notes: Vec<String>,
}

impl Cx {
    fn get(&self, section: &str, key: &str) -> Option<&str> {
        let keys = &self.out.iter().find(|(n, _)| n == section)?.1;
        keys.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn set(&mut self, section: &str, key: &str, value: String) {
        let i = self.out.iter().position(|(n, _)| n == section).unwrap_or_else(|| {
            self.out.push((section.to_owned(), Keys::new()));
            self.out.len() - 1
        });
        let keys = &mut self.out[i].1;
        match keys.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value,
            None => keys.push((key.to_owned(), value)),
        }
    }

    /// GoWorld's key `from` becomes `keys` of our `[to]`, all set to `value`.
    fn map(&mut self, from: (&str, &str), to: &str, keys: &[&str], value: String, remark: &str) {
        if value.contains(['\\', '"', '\'']) || value.chars().any(char::is_control) {
            return self.drop(from, format!("{value:?}: quotes and backslashes cannot be written to our ini"));
        }
        let remark = if remark.is_empty() { String::new() } else { format!(" ({remark})") };
        self.notes.push(format!("[{}] {} -> [{to}] {} = {value}{remark}", from.0, from.1, keys.join(", ")));
        for key in keys {
            self.set(to, key, value.clone());
        }
    }

    fn drop(&mut self, (section, key): (&str, &str), why: impl Display) {
        self.notes.push(format!("[{section}] {key}: dropped, {why}"));
    }
}

/// A key `f` of `[dispatcher*]`, `[game*]`, `[gate*]` or `[debug]` (`kind`), written to our `[to]`.
fn instance_key(cx: &mut Cx, kind: &str, f: (&str, &str), to: &str, v: &str) {
    if let Some((_, _, why)) = DROPPED.iter().find(|(kinds, k, _)| *k == f.1 && kinds.split(' ').any(|p| p == kind)) {
        return cx.drop(f, why);
    }
    let secs = |max: u64| {
        v.parse::<u64>().ok().filter(|s| *s <= max).ok_or_else(|| format!("{v:?} is not a count of seconds"))
    };
    match (kind, f.1) {
        ("dispatcher" | "game" | "gate", "log_level") => {
            let (level, remark) = match v.to_ascii_lowercase().as_str() {
                l @ ("debug" | "info" | "warn" | "error") => (l.to_owned(), ""),
                "warning" => ("warn".to_owned(), ""),
                "panic" | "fatal" => ("error".to_owned(), "we have no panic/fatal level"),
                _ => ("debug".to_owned(), "not a GoWorld level: GoWorld fell back to debug"),
            };
            cx.map(f, to, &[f.1], level, remark);
        }
        ("dispatcher", "listen_addr" | "advertise_addr") => addr_key(cx, f, to, &[f.1], v, ""),
        ("game", "boot_entity") => cx.map(f, to, &[f.1], v.to_owned(), ""),
        ("game", "ban_boot_entity") => match go_bool(v) {
            Some(b) => cx.map(f, to, &[f.1], b.to_string(), ""),
            None => cx.drop(f, format!("{v:?} is not a boolean")),
        },
        ("game", "position_sync_interval_ms") => match v.parse::<i64>() {
            Ok(ms) => {
                let c = ms.clamp(5, 10_000);
                cx.map(f, to, &[f.1], c.to_string(), if c == ms { "" } else { "clamped to 5..=10000" });
            }
            Err(_) => cx.drop(f, format!("{v:?} is not a whole number of milliseconds")),
        },
        ("game", "save_interval") => match (secs(86_400), cx.get("storage", "save_interval_s").map(str::to_owned)) {
            (Ok(0), _) | (Err(_), _) => cx.drop(f, format!("{v:?} is not a count of seconds in 1..=86400")),
            (Ok(s), Some(prev)) if prev != s.to_string() => {
                cx.drop(f, format!("one interval serves every game: [storage] save_interval_s = {prev}, set before"))
            }
            (Ok(s), _) => cx.map(f, "storage", &["save_interval_s"], s.to_string(), "one for every game"),
        },
        ("gate", "listen_addr") => {
            addr_key(cx, f, to, &["listen_addr", "kcp_addr"], v, "GoWorld served KCP on the same port over UDP")
        }
        ("gate", "http_addr") => {
            addr_key(cx, f, to, &["ws_addr"], v, "WebSocket clients connect to path / instead of /ws; no pprof")
        }
        ("gate", "heartbeat_check_interval") => match secs(86_400) {
            Ok(0) => cx.drop(f, "0 (off; GoWorld never enforced it): ours drop clients silent for heartbeat_timeout_s"),
            Ok(s) => cx.map(f, to, &["heartbeat_timeout_s"], s.to_string(), "GoWorld never enforced it; we do"),
            Err(e) => cx.drop(f, e),
        },
        _ => cx.drop(f, UNKNOWN),
    }
}

/// Maps a GoWorld address (Go's `host:port`; an empty host is every interface).
fn addr_key(cx: &mut Cx, f: (&str, &str), to: &str, keys: &[&str], v: &str, remark: &str) {
    let host_ok = |h: &str| h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    match v.rsplit_once(':').filter(|(_, p)| p.parse::<u16>().is_ok()) {
        Some(("", port)) => {
            let remark = format!("empty host: every interface; {remark}");
            cx.map(f, to, keys, format!("0.0.0.0:{port}"), remark.trim_end_matches("; "));
        }
        Some((host, _)) if v.parse::<SocketAddr>().is_ok() || host_ok(host) => cx.map(f, to, keys, v.into(), remark),
        _ => cx.drop(f, format!("{v:?} is not a host:port address")),
    }
}

/// `[storage]`: redis maps to our redis backend; anything else becomes our embedded LMDB store.
fn storage(cx: &mut Cx, keys: &Keys) {
    let get = |k: &str| keys.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str());
    let ty = get("type").unwrap_or("mongodb").to_ascii_lowercase();
    let (url, why) = match (ty == "redis").then(|| redis_url(get("url"), get("db"))) {
        Some(Ok(url)) => (Some(url), String::new()),
        Some(Err(e)) => (None, e),
        None => (None, format!("storage type {ty:?} is not supported (we have lmdb and redis)")),
    };
    let why = format!("{why}; using our embedded store: [storage] backend = lmdb (dir = run/store), data not migrated");
    let backend = if url.is_some() { "redis" } else { "lmdb" };
    cx.set("storage", "backend", backend.to_owned());
    if let Some(url) = &url {
        cx.set("storage", "redis_url", url.clone());
    } else if get("type").is_none() {
        cx.notes.push(format!("[storage] type: not set (GoWorld's default: mongodb); {why}"));
    }
    for (key, v) in keys {
        let f = ("storage", key.as_str());
        match (f.1, &url) {
            ("type", Some(_)) => cx.map(f, "storage", &["backend"], backend.to_owned(), ""),
            ("type", None) => cx.drop(f, &why),
            ("url" | "db", Some(url)) => cx.map(f, "storage", &["redis_url"], url.clone(), ""),
            ("url" | "db", None) => cx.drop(f, format!("belongs to storage type {ty:?}, not used")),
            (k, _) if k.starts_with("start_nodes_") => cx.drop(f, format!("{v}: Redis Cluster is not supported")),
            _ => cx.drop(f, UNKNOWN),
        }
    }
}

/// GoWorld's KVDB is separate; ours is kept by the `[storage]` backend, next to the entities.
fn kvdb(cx: &mut Cx, keys: &Keys) {
    let get = |k: &str| keys.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str());
    let ty = get("type").unwrap_or("").to_ascii_lowercase();
    let backend = cx.get("storage", "backend").unwrap_or("lmdb").to_owned();
    let why = if ty == "redis" && redis_url(get("url"), get("db")).ok().as_deref() == cx.get("storage", "redis_url") {
        "KVDB is kept in the same Redis as the entities ([storage] redis_url)".to_owned()
    } else {
        let hint =
            if ty == "redis" { "; for Redis set [storage] backend = redis, redis_url (entities too)" } else { "" };
        format!("KVDB is kept by the [storage] backend ({backend}), always on{hint}")
    };
    for (key, _) in keys {
        let known = ["type", "url", "db", "collection"].contains(&key.as_str()) || key.starts_with("start_nodes_");
        cx.drop(("kvdb", key), if known { why.as_str() } else { UNKNOWN });
    }
}

/// GoWorld's Redis `url` (`redis://host:port` or `host:port`) and `db` index as one URL.
fn redis_url(url: Option<&str>, db: Option<&str>) -> Result<String, String> {
    let url = url.unwrap_or("redis://127.0.0.1:6379");
    let url = if url.contains("://") { url.to_owned() } else { format!("redis://{url}") };
    let db = db.unwrap_or("0");
    if db.parse::<u32>().is_err() {
        return Err(format!("redis db {db:?} is not a number"));
    }
    match url.strip_prefix("redis://").map(|rest| rest.trim_end_matches('/')) {
        Some("") => Err(format!("{url:?} names no Redis host")),
        Some(rest) if !rest.contains('/') => Ok(format!("redis://{rest}/{db}")),
        Some(_) => Ok(url),
        None if url.starts_with("redis+unix://") || url.starts_with("unix://") => Ok(url),
        None => Err(format!("{url:?}: only redis://, redis+unix:// and unix:// Redis URLs are supported")),
    }
}

/// go-ini's booleans.
fn go_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "y" | "yes" | "on" => Some(true),
        "0" | "f" | "false" | "n" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `[xxx_common]` -> (kind, None), `[xxxN]` -> (kind, Some(N)).
fn instance(name: &str) -> Option<(usize, Option<u16>)> {
    KINDS.iter().enumerate().find_map(|(k, (prefix, _, _))| match name.strip_prefix(prefix)? {
        "_common" => Some((k, None)),
        rest if rest.bytes().all(|b| b.is_ascii_digit()) => rest.parse().ok().map(|id| (k, Some(id))),
        _ => None,
    })
}

/// Section order of our output (and of the conversion: `*_common` before `*N`).
fn rank(name: &str) -> (usize, u16) {
    match (name, instance(name)) {
        ("deployment", _) => (0, 0),
        ("storage", _) => (1, 0),
        ("kvdb", _) => (2, 0),
        (_, Some((k, id))) => (3 + 2 * k + usize::from(id.is_some()), id.unwrap_or(0)),
        _ => (9, 0),
    }
}

/// GoWorld's ini as go-ini reads it: lower-cased names, `=` or `:`, `;`/`#` comments (also
/// inline), quoted values, repeated sections merged and the last of a repeated key winning.
fn parse(text: &str, notes: &mut Vec<String>) -> Vec<(String, Keys)> {
    let mut out: Vec<(String, Keys)> = Vec::new();
    let mut cur = None;
    for (n, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())) {
        if line.is_empty() || line.starts_with([';', '#']) {
            continue;
        }
        if let Some((name, _)) = line.strip_prefix('[').and_then(|l| l.split_once(']')) {
            let name = name.trim().to_ascii_lowercase();
            cur = Some(out.iter().position(|(s, _)| *s == name).unwrap_or_else(|| {
                out.push((name, Keys::new()));
                out.len() - 1
            }));
            continue;
        }
        let Some(i) = line.find(['=', ':']) else {
            notes.push(format!("line {n}: dropped, not `key = value`"));
            continue;
        };
        let (key, raw) = (line[..i].trim().to_ascii_lowercase(), line[i + 1..].trim());
        let quoted = ['"', '`'].iter().find_map(|&q| raw.strip_prefix(q).and_then(|r| r.split_once(q)));
        let value = quoted.map_or_else(|| raw.split([';', '#']).next().unwrap_or("").trim(), |(v, _)| v).to_owned();
        let Some(keys) = cur.map(|c| &mut out[c].1) else {
            notes.push(format!("{key} (line {n}): dropped, outside any section (GoWorld ignores it)"));
            continue;
        };
        match keys.iter_mut().find(|(k, _)| *k == key) {
            Some(kv) => kv.1 = value,
            None => keys.push((key, value)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxworld_net::config::Config;
    use std::path::Path;
    use std::time::Duration;

    /// GoWorld's goworld.ini.sample, with 2 processes of each kind and its comments.
    const SAMPLE: &str = "\
[debug]
debug = 1 ; set to 0 in production

[deployment]
desired_dispatchers=2
desired_games=2
desired_gates=2

[storage]
type=mongodb
url=mongodb://127.0.0.1:27017/
db=goworld

[kvdb]
type=mongodb
url=mongodb://127.0.0.1:27017/goworld
db=goworld
collection=__kv__
;type=redis
;url=redis://127.0.0.1:6379
;db=1

[dispatcher_common]
listen_addr=127.0.0.1:13000
advertise_addr=127.0.0.1:13000
http_addr=127.0.0.1:23000
log_file=dispatcher.log
log_stderr=true
log_level=debug

[dispatcher1]
listen_addr=127.0.0.1:13001
advertise_addr=127.0.0.1:13001
http_addr=127.0.0.1:23001
[dispatcher2]
listen_addr=127.0.0.1:13002
advertise_addr=127.0.0.1:13002
http_addr=127.0.0.1:23002

[game_common]
boot_entity=Account
save_interval=600
log_file=game.log
log_stderr=true
http_addr=127.0.0.1:25000
log_level=debug
position_sync_interval_ms=100 ; position sync: server -> client
; gomaxprocs=0

[game1]
http_addr=25001
; ban_boot_entity=false
[game2]
http_addr=25002
ban_boot_entity=false

[gate_common]
gomaxprocs=0
log_file=gate.log
log_stderr=true
http_addr=127.0.0.1:24000
listen_addr=0.0.0.0:14000
log_level=warning
compress_connection=0
encrypt_connection=0
rsa_key=rsa.key
rsa_certificate=rsa.crt
heartbeat_check_interval = 0
position_sync_interval_ms=100 ; position sync: client -> server

[gate1]
listen_addr=0.0.0.0:14001
http_addr=127.0.0.1:24001
[gate2]
listen_addr=0.0.0.0:14002
http_addr=127.0.0.1:24002
";

    fn note<'a>(out: &'a Converted, start: &str) -> &'a str {
        out.notes.iter().find(|n| n.starts_with(start)).unwrap_or_else(|| panic!("no note {start:?}: {:#?}", out.notes))
    }

    fn parse_ours(out: &Converted) -> Config {
        Config::parse(Path::new("imported.ini"), &out.config)
            .unwrap_or_else(|e| panic!("{e}\n{}\n{:#?}", out.config, out.notes))
    }

    #[test]
    fn sample_keys_are_mapped_or_dropped() {
        let out = convert(SAMPLE);
        for start in [
            "[deployment] desired_games -> [deployment] desired_games = 2",
            "[game_common] boot_entity -> [game_common] boot_entity = Account",
            "[game_common] save_interval -> [storage] save_interval_s = 600",
            "[game_common] position_sync_interval_ms -> [game_common] position_sync_interval_ms = 100",
            "[game2] ban_boot_entity -> [game2] ban_boot_entity = false",
            "[dispatcher2] advertise_addr -> [dispatcher2] advertise_addr = 127.0.0.1:13002",
            "[gate1] listen_addr -> [gate1] listen_addr, kcp_addr = 0.0.0.0:14001",
            "[gate1] http_addr -> [gate1] ws_addr = 127.0.0.1:24001",
            "[gate_common] log_level -> [gate_common] log_level = warn",
            "[deployment] secret = ",
        ] {
            note(&out, start);
        }
        for (start, says) in [
            ("[dispatcher1] http_addr: dropped", "HTTP debug server"),
            ("[game1] http_addr: dropped", "HTTP debug server"),
            ("[game_common] log_file: dropped", "run/game1.log"),
            ("[gate_common] compress_connection: dropped", "lz4"),
            ("[gate_common] encrypt_connection: dropped", "Noise NK"),
            ("[gate_common] rsa_certificate: dropped", "key_file"),
            ("[gate_common] heartbeat_check_interval: dropped", "heartbeat_timeout_s"),
            ("[gate_common] position_sync_interval_ms: dropped", "latest move"),
            ("[storage] type: dropped", "\"mongodb\" is not supported"),
            ("[kvdb] collection: dropped", "[storage] backend (lmdb)"),
            ("[debug] debug: dropped", "log_level"),
        ] {
            assert!(note(&out, start).contains(says), "{start}: {}", note(&out, start));
        }
        // Every GoWorld key gets exactly one note.
        let mut section = "";
        for line in SAMPLE.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with(';')) {
            match line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                Some(s) => section = s,
                None => {
                    let key = line.split('=').next().unwrap_or("").trim();
                    let (a, b) = (format!("[{section}] {key} "), format!("[{section}] {key}:"));
                    let n = out.notes.iter().filter(|n| n.starts_with(&a) || n.starts_with(&b)).count();
                    assert_eq!(n, 1, "[{section}] {key}: {:#?}", out.notes);
                }
            }
        }
        assert!(out.config.contains("\n[storage]\nbackend = lmdb\nsave_interval_s = 600\n"), "{}", out.config);
        for gone in ["http_addr", "rsa", "compress", "log_file", "kvdb", "debug]", "mongodb"] {
            assert!(!out.config.contains(gone), "{gone}: {}", out.config);
        }
    }

    #[test]
    fn output_parses_with_our_parser() {
        let c = parse_ours(&convert(SAMPLE));
        assert_eq!((c.dispatchers.len(), c.games.len(), c.gates.len()), (2, 2, 2));
        assert_eq!(c.dispatchers[1].advertise_addr.port(), 13002);
        assert_eq!(c.dispatchers[0].log_level, "debug");
        assert_eq!(c.games[1].boot_entity.as_deref(), Some("Account"), "inherited from [game_common]");
        assert_eq!(c.games[0].position_sync_interval, Duration::from_millis(100));
        let gate = &c.gates[1];
        assert_eq!(gate.listen_addr.to_string(), "0.0.0.0:14002");
        assert_eq!(gate.kcp_addr.map(|a| a.port()), Some(14002));
        assert_eq!(gate.ws_addr.map(|a| a.port()), Some(24002));
        assert_eq!(gate.log_level, "warn");
        assert_eq!(c.storage.backend, "lmdb");
        assert_eq!(c.storage.save_interval, Duration::from_secs(600));

        // Redis storage (an older GoWorld's) with the KVDB in the same Redis; every game banned.
        let redis = SAMPLE
            .replacen(
                "type=mongodb\nurl=mongodb://127.0.0.1:27017/\ndb=goworld",
                "type=redis\nurl=10.0.0.5:6379\ndb=2",
                1,
            )
            .replace("type=mongodb\nurl=mongodb://127.0.0.1:27017/goworld", "type=redis\nurl=redis://10.0.0.5:6379/")
            .replace("db=goworld\ncollection", "db=2\ncollection")
            .replace("ban_boot_entity=false", "ban_boot_entity=1")
            .replace("[game_common]\n", "[game_common]\nban_boot_entity=yes\n");
        let out = convert(&redis);
        let c = parse_ours(&out);
        assert_eq!((c.storage.backend.as_str(), c.storage.redis_url.as_str()), ("redis", "redis://10.0.0.5:6379/2"));
        assert!(note(&out, "[kvdb] type: dropped").contains("same Redis"), "{:#?}", out.notes);
        assert!(note(&out, "[game1] ban_boot_entity = false").contains("every game banned"));
        assert!(!c.games[0].ban_boot_entity && c.games[1].ban_boot_entity);
    }

    #[test]
    fn unknown_keys_and_sections_are_dropped() {
        let out = convert(
            "[deployment]\ndesired_games = 1\nturbo = on\n[gate1]\nlisten_addr = :14000\nturbo = 1\n\
             [game2]\nboot_entity = Avatar\n[mystery]\nx = 1\n[game1]\nposition_sync_interval_ms = 1\n",
        );
        assert_eq!(note(&out, "[gate1] turbo"), "[gate1] turbo: dropped, unknown GoWorld key");
        assert_eq!(note(&out, "[deployment] turbo"), "[deployment] turbo: dropped, unknown GoWorld key");
        assert_eq!(note(&out, "[mystery] x"), "[mystery] x: dropped, unknown GoWorld section");
        assert!(note(&out, "[game2] boot_entity: dropped").contains("desired_games = 1"));
        assert!(note(&out, "[deployment] desired_gates: not set").ends_with("desired_gates = 1"));
        assert!(note(&out, "[gate1] listen_addr -> [gate1] listen_addr, kcp_addr = 0.0.0.0:14000").contains("every"));
        assert!(
            note(&out, "[game1] position_sync_interval_ms -> [game1] position_sync_interval_ms = 5")
                .contains("clamped")
        );
        for gone in ["turbo", "mystery", "Avatar", "game2"] {
            assert!(!out.config.contains(gone), "{gone}: {}", out.config);
        }
        parse_ours(&out);
    }

    #[test]
    fn empty_input() {
        for text in ["", "\n  \n; only a comment\n"] {
            let out = convert(text);
            let c = parse_ours(&out);
            assert_eq!((c.dispatchers.len(), c.games.len(), c.gates.len()), (1, 1, 1));
            assert_eq!(c.secret, SECRET);
            assert!(out.notes.iter().all(|n| n.starts_with("[deployment] ") || n.starts_with("[gate_common] ")));
            assert!(!out.config.contains("[storage]"), "{}", out.config);
        }
    }
}
