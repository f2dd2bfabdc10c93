//! The Redis backend, for clusters spread over several machines: the `redis` crate's
//! synchronous connection (no async runtime), on the store thread. Keys: `E:<type>:<hex id>`
//! for entity data with a set `EI:<type>` of the ids; `_KV_<key>` for KVDB values with a sorted
//! set `_KVIDX_` (all scores 0, ordered by bytes) for ranges. Multi-key writes are MULTI/EXEC
//! transactions; get-or-put is one Lua script, so it is atomic across games.

use std::time::Duration;

use oxworld_engine::Id;
use oxworld_engine::store::{Store, StoreError, StoreErrorKind, StoreOp, StoreReply, check_limits};
use redis::{Commands as _, Connection, RedisError};

/// Connect and per-command IO timeout.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

const KV_INDEX: &str = "_KVIDX_";

const GET_OR_PUT: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return false
";

fn rerr(e: &RedisError) -> StoreError {
    StoreError::unavailable(format!("redis: {e}"))
}

/// What kind of failure a Redis error is: data of the wrong shape (a value that is not UTF-8,
/// a key of another Redis type) is `Corrupt`; a server that cannot serve now is `Unavailable`.
fn kind_of(e: &RedisError) -> StoreErrorKind {
    use redis::ErrorKind as K;
    if e.is_io_error() || e.is_connection_dropped() {
        return StoreErrorKind::Unavailable;
    }
    match e.kind() {
        K::TypeError => StoreErrorKind::Corrupt,
        _ if e.code() == Some("WRONGTYPE") => StoreErrorKind::Corrupt,
        K::BusyLoadingError | K::TryAgain | K::ReadOnly | K::MasterDown | K::ClusterDown => StoreErrorKind::Unavailable,
        _ if e.code() == Some("OOM") => StoreErrorKind::TooLarge,
        _ => StoreErrorKind::Other,
    }
}

fn ekey(type_name: &str, id: Id) -> String {
    format!("E:{type_name}:{id}")
}

fn kvkey(key: &str) -> String {
    format!("_KV_{key}")
}

/// Entity storage and KVDB in one Redis database.
pub struct RedisStore {
    client: redis::Client,
    conn: Option<Connection>,
    script: redis::Script,
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`).
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| rerr(&e))?;
        let mut s = RedisStore { client, conn: None, script: redis::Script::new(GET_OR_PUT) };
        s.connection()?;
        Ok(s)
    }

    fn connection(&mut self) -> Result<&mut Connection, StoreError> {
        if self.conn.is_none() {
            let c = self.client.get_connection_with_timeout(IO_TIMEOUT).map_err(|e| rerr(&e))?;
            c.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| rerr(&e))?;
            c.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| rerr(&e))?;
            self.conn = Some(c);
        }
        self.conn.as_mut().ok_or_else(|| StoreError::unavailable("redis: no connection"))
    }

    fn run(&mut self, op: &StoreOp) -> Result<Result<StoreReply, StoreError>, RedisError> {
        let script = self.script.clone();
        let Some(c) = self.conn.as_mut() else {
            return Err(RedisError::from((redis::ErrorKind::IoError, "not connected")));
        };
        Ok(Ok(match op {
            StoreOp::Save { type_name, id, data } => {
                redis::pipe()
                    .atomic()
                    .set(ekey(type_name, *id), data.as_slice())
                    .ignore()
                    .sadd(format!("EI:{type_name}"), id.to_string())
                    .ignore()
                    .query::<()>(c)?;
                StoreReply::Done
            }
            StoreOp::Load { type_name, id } => StoreReply::Data(c.get(ekey(type_name, *id))?),
            StoreOp::Exists { type_name, id } => StoreReply::Exists(c.exists(ekey(type_name, *id))?),
            StoreOp::List { type_name } => {
                let set = format!("EI:{type_name}");
                let hex: Vec<String> = c.smembers(&set)?;
                let mut ids = Vec::with_capacity(hex.len());
                for h in &hex {
                    let Some(id) = Id::parse_hex(h) else {
                        return Ok(Err(StoreError::new(
                            StoreErrorKind::Corrupt,
                            format!("redis: {set} holds {h:?}, not an entity id"),
                        )));
                    };
                    ids.push(id);
                }
                ids.sort();
                StoreReply::Ids(ids)
            }
            StoreOp::KvGet { key } => StoreReply::Value(c.get(kvkey(key))?),
            StoreOp::KvPut { key, value } => {
                redis::pipe()
                    .atomic()
                    .set(kvkey(key), value)
                    .ignore()
                    .zadd(KV_INDEX, key, 0)
                    .ignore()
                    .query::<()>(c)?;
                StoreReply::Done
            }
            StoreOp::KvGetOrPut { key, value } => {
                let old: Option<String> = script.key(kvkey(key)).key(KV_INDEX).arg(value).arg(key).invoke(c)?;
                StoreReply::Value(old)
            }
            StoreOp::KvRange { begin, end } => {
                if !end.is_empty() && end <= begin {
                    return Ok(Ok(StoreReply::Range(Vec::new())));
                }
                let max = if end.is_empty() { "+".to_owned() } else { format!("({end}") };
                let keys: Vec<String> = c.zrangebylex(KV_INDEX, format!("[{begin}"), max)?;
                if keys.is_empty() {
                    return Ok(Ok(StoreReply::Range(Vec::new())));
                }
                let full: Vec<String> = keys.iter().map(|k| kvkey(k)).collect();
                let values: Vec<Option<String>> = redis::cmd("MGET").arg(&full).query(c)?;
                // A key whose value vanished (deleted by hand) is left out.
                StoreReply::Range(keys.into_iter().zip(values).filter_map(|(k, v)| Some((k, v?))).collect())
            }
        }))
    }
}

impl Store for RedisStore {
    fn execute(&mut self, op: StoreOp) -> Result<StoreReply, StoreError> {
        check_limits(&op)?;
        // One reconnect per operation after a dropped connection, then the error stands.
        for attempt in 0..2 {
            self.connection()?;
            match self.run(&op) {
                Ok(r) => return r,
                Err(e) if attempt == 0 && (e.is_io_error() || e.is_connection_dropped()) => self.conn = None,
                Err(e) => {
                    let kind = kind_of(&e);
                    if kind == StoreErrorKind::Unavailable {
                        self.conn = None;
                    }
                    return Err(StoreError::new(kind, format!("redis: {e}")));
                }
            }
        }
        Err(StoreError::unavailable("redis: connection lost"))
    }

    /// Consecutive `Save`s go to Redis together, in one MULTI/EXEC pipeline (one round trip
    /// instead of one each); everything else runs one at a time, in order.
    fn execute_batch(&mut self, ops: Vec<StoreOp>) -> Vec<Result<StoreReply, StoreError>> {
        let mut out: Vec<Result<StoreReply, StoreError>> = Vec::with_capacity(ops.len());
        let mut run: Vec<(usize, String, Id, Vec<u8>)> = Vec::new();
        for op in ops {
            let save = matches!(op, StoreOp::Save { .. }) && check_limits(&op).is_ok();
            match op {
                StoreOp::Save { type_name, id, data } if save => {
                    run.push((out.len(), type_name, id, data));
                    out.push(Ok(StoreReply::Done));
                }
                other => {
                    self.save_together(&run, &mut out);
                    run.clear();
                    out.push(self.execute(other));
                }
            }
        }
        self.save_together(&run, &mut out);
        out
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}

impl RedisStore {
    /// Writes `saves` (their slots in `out` already say `Done`) in one atomic pipeline; on
    /// failure each slot gets the error (the world keeps those entities dirty and saves them
    /// again next interval).
    fn save_together(&mut self, saves: &[(usize, String, Id, Vec<u8>)], out: &mut [Result<StoreReply, StoreError>]) {
        if saves.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (_, type_name, id, data) in saves {
            pipe.set(ekey(type_name, *id), data.as_slice())
                .ignore()
                .sadd(format!("EI:{type_name}"), id.to_string())
                .ignore();
        }
        let mut failure = None;
        // One reconnect after a dropped connection, then the error stands.
        for attempt in 0..2 {
            let r = match self.connection() {
                Ok(c) => pipe.query::<()>(c),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            match r {
                Ok(()) => return,
                Err(e) if attempt == 0 && (e.is_io_error() || e.is_connection_dropped()) => self.conn = None,
                Err(e) => {
                    let kind = kind_of(&e);
                    if kind == StoreErrorKind::Unavailable {
                        self.conn = None;
                    }
                    failure = Some(StoreError::new(kind, format!("redis: {e}")));
                    break;
                }
            }
        }
        let e = failure.unwrap_or_else(|| StoreError::unavailable("redis: connection lost"));
        for (slot, ..) in saves {
            if let Some(r) = out.get_mut(*slot) {
                *r = Err(e.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use redis::Commands as _;

    use super::*;
    use crate::testserver::RedisServer;

    #[test]
    fn redis_backend_passes_the_suite_and_survives_reconnect() {
        let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
        {
            let mut s = RedisStore::open(&server.url).expect("connect");
            crate::suite::suite(&mut s);
            crate::suite::many_keys(&mut s);
            crate::suite::batch(&mut s);
            // A dropped connection is re-established once, transparently.
            s.conn = None;
            assert_eq!(s.execute(StoreOp::KvGet { key: "k".into() }), Ok(StoreReply::Value(Some("v2".into()))));
            // So is one the server closed.
            let mut admin = redis::Client::open(server.url.as_str()).and_then(|c| c.get_connection()).expect("admin");
            let killed: i64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("normal")
                .arg("SKIPME")
                .arg("yes")
                .query(&mut admin)
                .expect("kill");
            assert!(killed >= 1, "the store's connection was closed");
            assert_eq!(s.execute(StoreOp::KvGet { key: "k".into() }), Ok(StoreReply::Value(Some("v2".into()))));
        }
        let mut s = RedisStore::open(&server.url).expect("reconnect");
        crate::suite::after_reopen(&mut s);
        drop(server);
        let e = s.execute(StoreOp::KvGet { key: "k".into() }).expect_err("server gone");
        assert_eq!(e.kind, StoreErrorKind::Unavailable);
        // Saves sent together fail together, each told (the world saves them again later).
        let save = |n: u8| StoreOp::Save { type_name: "Avatar".into(), id: Id([n; 16]), data: vec![n] };
        let r = s.execute_batch(vec![save(1), save(2)]);
        assert!(r.iter().all(|r| r.as_ref().is_err_and(|e| e.kind == StoreErrorKind::Unavailable)), "{r:?}");
    }

    /// Data of the wrong shape (written behind the store's back) is an error, not a panic.
    #[test]
    fn redis_garbage_is_a_corrupt_error() {
        let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
        let mut admin = redis::Client::open(server.url.as_str()).and_then(|c| c.get_connection()).expect("admin");
        let _: () = admin.set("_KV_bad", &[0xffu8, 0xfe][..]).expect("set");
        let _: () = admin.sadd("EI:Avatar", "not-hex").expect("sadd");
        let _: () = admin.rpush(format!("E:Avatar:{}", Id([1; 16])), "x").expect("rpush");
        let mut s = RedisStore::open(&server.url).expect("connect");
        let e = s.execute(StoreOp::KvGet { key: "bad".into() }).expect_err("not UTF-8");
        assert_eq!(e.kind, StoreErrorKind::Corrupt, "{e}");
        let e = s.execute(StoreOp::KvGetOrPut { key: "bad".into(), value: "v".into() }).expect_err("not UTF-8");
        assert_eq!(e.kind, StoreErrorKind::Corrupt, "{e}");
        let e = s.execute(StoreOp::List { type_name: "Avatar".into() }).expect_err("not an id");
        assert_eq!(e.kind, StoreErrorKind::Corrupt, "{e}");
        let e = s.execute(StoreOp::Load { type_name: "Avatar".into(), id: Id([1; 16]) }).expect_err("a list");
        assert_eq!(e.kind, StoreErrorKind::Corrupt, "{e}");
        assert_eq!(
            s.execute(StoreOp::KvPut { key: "ok".into(), value: "v".into() }),
            Ok(StoreReply::Done),
            "still usable"
        );
    }
}
