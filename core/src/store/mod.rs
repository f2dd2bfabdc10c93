//! Entity storage and KVDB behind one blocking trait, [`Store`], run on a game's store thread
//! (never on its logic loop): persistent entities by type and id, and a string key-value
//! database with atomic get-or-put and ordered ranges. Backends: [`MemStore`] (tests and the
//! simulator), LMDB (`lmdb`, the embedded default) and Redis (`redis`, for clusters spread over
//! machines). Every backend passes the same test suite (`tests` below).

use std::collections::BTreeMap;
use std::fmt;

use oxworld_net::Id;
use oxworld_net::config::StorageConfig;

pub mod lmdb;
pub mod redis;

/// Longest KVDB key or entity type name (bytes). LMDB's key limit is 511 bytes; the entity key
/// adds a separator and 16 id bytes.
pub const MAX_KEY_BYTES: usize = 480;
/// Largest KVDB value (bytes): KVDB holds small records (accounts, indexes), not blobs.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Largest stored entity (bytes of its encoded persistent attributes).
pub const MAX_RECORD_BYTES: usize = 16 << 20;

/// One storage operation.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    /// Writes an entity's data (durable when `Done` comes back).
    Save {
        /// Entity type.
        type_name: String,
        /// Entity id.
        id: Id,
        /// Opaque data.
        data: Vec<u8>,
    },
    /// Reads an entity's data.
    Load {
        /// Entity type.
        type_name: String,
        /// Entity id.
        id: Id,
    },
    /// Whether an entity is stored.
    Exists {
        /// Entity type.
        type_name: String,
        /// Entity id.
        id: Id,
    },
    /// Ids of every stored entity of a type.
    List {
        /// Entity type.
        type_name: String,
    },
    /// Reads a KVDB key.
    KvGet {
        /// Key.
        key: String,
    },
    /// Writes a KVDB key.
    KvPut {
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// Atomically: returns the existing value, or stores `value` and returns none.
    KvGetOrPut {
        /// Key.
        key: String,
        /// Value stored if the key is absent.
        value: String,
    },
    /// Keys in `[begin, end)` in byte order; an empty `end` means to the last key.
    KvRange {
        /// First key (inclusive).
        begin: String,
        /// Last key (exclusive); empty: no bound.
        end: String,
    },
}

/// The answer to one [`StoreOp`].
#[derive(Debug, Clone, PartialEq)]
pub enum StoreReply {
    /// A write is durable.
    Done,
    /// `Load`: the data, if stored.
    Data(Option<Vec<u8>>),
    /// `Exists`.
    Exists(bool),
    /// `List`.
    Ids(Vec<Id>),
    /// `KvGet` (the value) and `KvGetOrPut` (the existing value; none if ours was stored).
    Value(Option<String>),
    /// `KvRange`.
    Range(Vec<(String, String)>),
}

/// What kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The backend cannot be reached or refused the operation; retrying may work.
    Unavailable,
    /// Stored data is not what it should be.
    Corrupt,
    /// A key or value over the limits, or the store is full.
    TooLarge,
    /// Anything else.
    Other,
}

/// A failed storage operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    /// Kind.
    pub kind: StoreErrorKind,
    /// What happened.
    pub message: String,
}

impl StoreError {
    /// A failure of `kind`.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError { kind, message: message.into() }
    }

    /// The backend cannot serve.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Unavailable, message)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for StoreError {}

/// A storage backend. Blocking; runs on the store thread.
pub trait Store: Send {
    /// Runs one operation; writes are durable when it returns `Ok`.
    fn execute(&mut self, op: StoreOp) -> Result<StoreReply, StoreError>;
    /// Runs operations in order, each seeing the ones before; all writes are durable when it
    /// returns. Backends may commit them together (LMDB does: one fsync for the batch).
    fn execute_batch(&mut self, ops: Vec<StoreOp>) -> Vec<Result<StoreReply, StoreError>> {
        ops.into_iter().map(|op| self.execute(op)).collect()
    }
    /// Backend name for logs.
    fn backend(&self) -> &'static str;
}

/// Checks an operation against the limits before any backend sees it.
pub fn check_limits(op: &StoreOp) -> Result<(), StoreError> {
    let too = |what: &str, n: usize, max: usize| {
        Err(StoreError::new(StoreErrorKind::TooLarge, format!("{what} of {n} bytes is over the limit of {max}")))
    };
    let key = |k: &str| if k.len() > MAX_KEY_BYTES { too("key", k.len(), MAX_KEY_BYTES) } else { Ok(()) };
    // The LMDB entity key is `type \0 id`: a NUL inside the type would let one type's keys
    // pass for another's.
    let type_name = |t: &str| {
        if t.contains('\0') {
            return Err(StoreError::new(StoreErrorKind::Other, format!("entity type {t:?} contains a NUL byte")));
        }
        key(t)
    };
    match op {
        StoreOp::Save { type_name: t, data, .. } => {
            type_name(t)?;
            if data.len() > MAX_RECORD_BYTES {
                return too("entity record", data.len(), MAX_RECORD_BYTES);
            }
            Ok(())
        }
        StoreOp::Load { type_name: t, .. } | StoreOp::Exists { type_name: t, .. } | StoreOp::List { type_name: t } => {
            type_name(t)
        }
        StoreOp::KvGet { key: k } => key(k),
        StoreOp::KvPut { key: k, value } | StoreOp::KvGetOrPut { key: k, value } => {
            key(k)?;
            if value.len() > MAX_VALUE_BYTES {
                return too("value", value.len(), MAX_VALUE_BYTES);
            }
            Ok(())
        }
        StoreOp::KvRange { begin, end } => {
            key(begin)?;
            key(end)
        }
    }
}

/// Everything in memory (tests, the simulator).
#[derive(Default)]
pub struct MemStore {
    entities: BTreeMap<(String, Id), Vec<u8>>,
    kv: BTreeMap<String, String>,
}

impl Store for MemStore {
    fn execute(&mut self, op: StoreOp) -> Result<StoreReply, StoreError> {
        check_limits(&op)?;
        Ok(match op {
            StoreOp::Save { type_name, id, data } => {
                self.entities.insert((type_name, id), data);
                StoreReply::Done
            }
            StoreOp::Load { type_name, id } => StoreReply::Data(self.entities.get(&(type_name, id)).cloned()),
            StoreOp::Exists { type_name, id } => StoreReply::Exists(self.entities.contains_key(&(type_name, id))),
            StoreOp::List { type_name } => StoreReply::Ids(
                self.entities
                    .range((type_name.clone(), Id::NIL)..)
                    .take_while(|((t, _), _)| *t == type_name)
                    .map(|((_, i), _)| *i)
                    .collect(),
            ),
            StoreOp::KvGet { key } => StoreReply::Value(self.kv.get(&key).cloned()),
            StoreOp::KvPut { key, value } => {
                self.kv.insert(key, value);
                StoreReply::Done
            }
            StoreOp::KvGetOrPut { key, value } => match self.kv.get(&key) {
                Some(v) => StoreReply::Value(Some(v.clone())),
                None => {
                    self.kv.insert(key, value);
                    StoreReply::Value(None)
                }
            },
            StoreOp::KvRange { begin, end } => StoreReply::Range(
                self.kv
                    .range(begin..)
                    .take_while(|(k, _)| end.is_empty() || k.as_str() < end.as_str())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        })
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

/// Operations a store thread takes from its queue at once (one LMDB transaction).
pub const MAX_BATCH: usize = 256;

/// Opens the backend `cfg` names.
pub fn open(cfg: &StorageConfig) -> Result<Box<dyn Store>, StoreError> {
    match cfg.backend.as_str() {
        "lmdb" => Ok(Box::new(lmdb::LmdbStore::open(&cfg.dir, cfg.map_size_mb << 20)?)),
        "redis" => Ok(Box::new(redis::RedisStore::open(&cfg.redis_url)?)),
        "memory" => Ok(Box::new(MemStore::default())),
        other => Err(StoreError::new(StoreErrorKind::Other, format!("unknown storage backend {other:?}"))),
    }
}

/// The shared backend test suite: every backend must pass [`suite`].
#[cfg(test)]
pub(crate) mod suite {
    use super::*;

    fn ok(s: &mut dyn Store, op: StoreOp) -> StoreReply {
        s.execute(op.clone()).unwrap_or_else(|e| panic!("{} {op:?}: {e}", s.backend()))
    }

    fn put(s: &mut dyn Store, k: &str, v: &str) {
        assert_eq!(ok(s, StoreOp::KvPut { key: k.into(), value: v.into() }), StoreReply::Done);
    }

    fn get(s: &mut dyn Store, k: &str) -> Option<String> {
        match ok(s, StoreOp::KvGet { key: k.into() }) {
            StoreReply::Value(v) => v,
            other => panic!("{other:?}"),
        }
    }

    fn range(s: &mut dyn Store, b: &str, e: &str) -> Vec<(String, String)> {
        match ok(s, StoreOp::KvRange { begin: b.into(), end: e.into() }) {
            StoreReply::Range(r) => r,
            other => panic!("{other:?}"),
        }
    }

    /// Everything a backend must do; `s` starts empty.
    pub(crate) fn suite(s: &mut dyn Store) {
        let (a, b, c) = (Id([1; 16]), Id([2; 16]), Id([3; 16]));
        let load = |s: &mut dyn Store, t: &str, id: Id| ok(s, StoreOp::Load { type_name: t.into(), id });
        assert_eq!(load(s, "Avatar", a), StoreReply::Data(None));
        for (t, id, d) in
            [("Avatar", a, &b"one"[..]), ("Avatar", b, b"two"), ("Monster", c, b"three"), ("Avatar", a, b"uno")]
        {
            assert_eq!(ok(s, StoreOp::Save { type_name: t.into(), id, data: d.to_vec() }), StoreReply::Done);
        }
        assert_eq!(load(s, "Avatar", a), StoreReply::Data(Some(b"uno".to_vec())), "overwritten");
        assert_eq!(load(s, "Monster", a), StoreReply::Data(None), "types are separate");
        assert_eq!(ok(s, StoreOp::Exists { type_name: "Avatar".into(), id: b }), StoreReply::Exists(true));
        assert_eq!(ok(s, StoreOp::Exists { type_name: "Avatar".into(), id: c }), StoreReply::Exists(false));
        let StoreReply::Ids(mut ids) = ok(s, StoreOp::List { type_name: "Avatar".into() }) else { panic!() };
        ids.sort();
        assert_eq!(ids, vec![a, b]);
        assert_eq!(ok(s, StoreOp::List { type_name: "Avatar2".into() }), StoreReply::Ids(vec![]));
        assert_eq!(ok(s, StoreOp::List { type_name: "Avata".into() }), StoreReply::Ids(vec![]), "no prefix matches");
        // KV.
        assert_eq!(get(s, "k"), None);
        put(s, "k", "v1");
        put(s, "k", "v2");
        assert_eq!(get(s, "k"), Some("v2".into()));
        put(s, "", "empty key");
        assert_eq!(get(s, ""), Some("empty key".into()));
        put(s, "ключ", "значение ✓");
        assert_eq!(get(s, "ключ"), Some("значение ✓".into()));
        put(s, "e", "");
        assert_eq!(get(s, "e"), Some(String::new()), "an empty value is a value");
        let gop = |s: &mut dyn Store, k: &str, v: &str| ok(s, StoreOp::KvGetOrPut { key: k.into(), value: v.into() });
        assert_eq!(gop(s, "user$ann", "first"), StoreReply::Value(None), "first wins");
        assert_eq!(gop(s, "user$ann", "second"), StoreReply::Value(Some("first".into())));
        assert_eq!(get(s, "user$ann"), Some("first".into()));
        // Ranges.
        for i in 0..50 {
            put(s, &format!("r{i:03}"), &i.to_string());
        }
        let r = range(s, "r010", "r015");
        assert_eq!(r.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["r010", "r011", "r012", "r013", "r014"]);
        assert_eq!(r[0].1, "10");
        let tail = range(s, "r045", "");
        assert_eq!(tail.len(), 5 + 2, "to the last key: r045..r049, user$ann, ключ");
        assert_eq!(range(s, "r015", "r010"), vec![], "empty when end <= begin");
        // Limits are errors, not panics.
        let long = "x".repeat(MAX_KEY_BYTES + 1);
        assert!(s.execute(StoreOp::KvPut { key: long.clone(), value: "v".into() }).is_err());
        assert!(s.execute(StoreOp::KvGet { key: long }).is_err());
        let big = "v".repeat(MAX_VALUE_BYTES + 1);
        let e = s.execute(StoreOp::KvPut { key: "big".into(), value: big.clone() }).expect_err("too large");
        assert_eq!(e.kind, StoreErrorKind::TooLarge);
        let e = s.execute(StoreOp::KvGetOrPut { key: "big".into(), value: big }).expect_err("too large");
        assert_eq!(e.kind, StoreErrorKind::TooLarge);
        assert_eq!(get(s, "big"), None, "nothing of it stored");
        let e = s.execute(StoreOp::KvRange { begin: String::new(), end: "x".repeat(MAX_KEY_BYTES + 1) });
        assert_eq!(e.expect_err("long bound").kind, StoreErrorKind::TooLarge);
        let huge = vec![0u8; MAX_RECORD_BYTES + 1];
        let e = s.execute(StoreOp::Save { type_name: "Avatar".into(), id: c, data: huge }).expect_err("too large");
        assert_eq!(e.kind, StoreErrorKind::TooLarge);
        let e = s.execute(StoreOp::Save { type_name: "T".repeat(MAX_KEY_BYTES + 1), id: c, data: vec![] });
        assert_eq!(e.expect_err("long type").kind, StoreErrorKind::TooLarge);
        let e = s.execute(StoreOp::List { type_name: "Ava\0tar".into() }).expect_err("NUL in a type");
        assert_eq!(e.kind, StoreErrorKind::Other);
        assert_eq!(load(s, "Avatar", c), StoreReply::Data(None), "nothing of it stored");
        // The biggest allowed record and an empty one.
        let most = vec![0xa5u8; MAX_RECORD_BYTES];
        assert_eq!(ok(s, StoreOp::Save { type_name: "Big".into(), id: a, data: most.clone() }), StoreReply::Done);
        assert_eq!(load(s, "Big", a), StoreReply::Data(Some(most)));
        assert_eq!(ok(s, StoreOp::Save { type_name: "".into(), id: a, data: vec![] }), StoreReply::Done);
        assert_eq!(load(s, "", a), StoreReply::Data(Some(vec![])), "empty type and data");
    }

    /// What [`suite`] left must still be there after the backend is closed and opened again.
    pub(crate) fn after_reopen(s: &mut dyn Store) {
        let load = ok(s, StoreOp::Load { type_name: "Avatar".into(), id: Id([1; 16]) });
        assert_eq!(load, StoreReply::Data(Some(b"uno".to_vec())));
        let StoreReply::Ids(mut ids) = ok(s, StoreOp::List { type_name: "Avatar".into() }) else { panic!() };
        ids.sort();
        assert_eq!(ids, vec![Id([1; 16]), Id([2; 16])]);
        assert_eq!(get(s, "user$ann"), Some("first".into()));
        assert_eq!(get(s, "ключ"), Some("значение ✓".into()));
        assert_eq!(range(s, "r010", "r013").len(), 3);
        let gop = ok(s, StoreOp::KvGetOrPut { key: "user$ann".into(), value: "late".into() });
        assert_eq!(gop, StoreReply::Value(Some("first".into())), "first still wins");
    }

    /// A batch runs in order, each operation seeing the ones before, with its own result.
    pub(crate) fn batch(s: &mut dyn Store) {
        let ops = vec![
            StoreOp::KvPut { key: "b1".into(), value: "x".into() },
            StoreOp::KvGet { key: "b1".into() },
            StoreOp::KvGetOrPut { key: "b1".into(), value: "y".into() },
            StoreOp::KvPut { key: "x".repeat(MAX_KEY_BYTES + 1), value: "too long".into() },
            StoreOp::KvGetOrPut { key: "b2".into(), value: "z".into() },
            StoreOp::KvRange { begin: "b".into(), end: "c".into() },
        ];
        let r = s.execute_batch(ops);
        assert_eq!(r.len(), 6);
        assert_eq!(r[0], Ok(StoreReply::Done));
        assert_eq!(r[1], Ok(StoreReply::Value(Some("x".into()))));
        assert_eq!(r[2], Ok(StoreReply::Value(Some("x".into()))));
        assert!(r[3].is_err(), "one bad operation fails alone");
        assert_eq!(r[4], Ok(StoreReply::Value(None)));
        assert_eq!(r[5], Ok(StoreReply::Range(vec![("b1".into(), "x".into()), ("b2".into(), "z".into())])));
        assert_eq!(get(s, "b2"), Some("z".into()), "committed");
    }

    /// Many keys come back in order.
    pub(crate) fn many_keys(s: &mut dyn Store) {
        for i in (0..10_000).rev() {
            put(s, &format!("m{i:05}"), "x");
        }
        let r = range(s, "m", "n");
        assert_eq!(r.len(), 10_000);
        assert!(r.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn memory_backend_passes_the_suite() {
        let mut s = MemStore::default();
        suite(&mut s);
        after_reopen(&mut s);
        many_keys(&mut MemStore::default());
        batch(&mut MemStore::default());
    }
}
