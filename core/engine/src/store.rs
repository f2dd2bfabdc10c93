//! Entity storage and KVDB behind one blocking trait, [`Store`], run on a game's store thread
//! (never on its logic loop): persistent entities by type and id, and a string key-value
//! database with atomic get-or-put and ordered ranges. [`MemStore`] (tests and the simulator)
//! lives here; the LMDB and Redis backends are in `oxworld-store`, where every backend,
//! [`MemStore`] included, passes one test suite.

use std::collections::BTreeMap;
use std::fmt;

use oxworld_net::Id;

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

impl StoreOp {
    /// Its name, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            StoreOp::Save { .. } => "save",
            StoreOp::Load { .. } => "load",
            StoreOp::Exists { .. } => "exists",
            StoreOp::List { .. } => "list",
            StoreOp::KvGet { .. } => "kv_get",
            StoreOp::KvPut { .. } => "kv_put",
            StoreOp::KvGetOrPut { .. } => "kv_get_or_put",
            StoreOp::KvRange { .. } => "kv_range",
        }
    }
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
