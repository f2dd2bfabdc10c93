//! The embedded LMDB backend (`lmdb-rkv`): [`LmdbStore`] for entity storage and KVDB, shared
//! by every game of a machine (LMDB is multi-process safe), and [`FreezeDb`], one environment
//! per game for hot-swap freezes. The only file that uses `lmdb-rkv`: every transaction and
//! cursor lives inside one function here, which keeps clear of the crate's cursor lifetime
//! hole (mozilla/lmdb-rs#79), and every value is copied out before its transaction ends.
//!
//! Layout: database `entities`, key = type name, `\0`, 16 id bytes; database `kv`, key = `k`
//! followed by the KVDB key's bytes (LMDB refuses empty keys; KVDB allows them). Freeze: database `freeze`, keys `meta`, `rec` + u64 big-endian index, and
//! `complete` (written last in the same transaction: a freeze without it is not one).

use std::path::{Path, PathBuf};

use lmdb::{Cursor as _, Database, DatabaseFlags, Environment, RwTransaction, Transaction as _, WriteFlags};
use oxworld_net::Id;

use super::{Store, StoreError, StoreErrorKind, StoreOp, StoreReply, check_limits};

/// Named databases per environment.
const MAX_DBS: u32 = 4;
/// Readers at once (one per game process and thread of a machine).
const MAX_READERS: u32 = 256;

fn lerr(what: &str, e: lmdb::Error) -> StoreError {
    let kind = match e {
        lmdb::Error::MapFull => StoreErrorKind::TooLarge,
        lmdb::Error::Corrupted | lmdb::Error::PageNotFound | lmdb::Error::Invalid | lmdb::Error::VersionMismatch => {
            StoreErrorKind::Corrupt
        }
        _ => StoreErrorKind::Unavailable,
    };
    let hint = if matches!(e, lmdb::Error::MapFull) { " (raise map_size_mb in [storage])" } else { "" };
    StoreError::new(kind, format!("lmdb {what}: {e}{hint}"))
}

fn open_env(dir: &Path, map_size: usize) -> Result<Environment, StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::unavailable(format!("creating {}: {e}", dir.display())))?;
    Environment::new()
        .set_max_dbs(MAX_DBS)
        .set_max_readers(MAX_READERS)
        .set_map_size(map_size)
        .open(dir)
        .map_err(|e| lerr(&format!("opening {}", dir.display()), e))
}

fn entity_key(type_name: &str, id: Id) -> Vec<u8> {
    let mut k = Vec::with_capacity(type_name.len() + 17);
    k.extend_from_slice(type_name.as_bytes());
    k.push(0);
    k.extend_from_slice(&id.0);
    k
}

fn kv_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(b'k');
    k.extend_from_slice(key.as_bytes());
    k
}

fn utf8(b: &[u8], what: &str) -> Result<String, StoreError> {
    String::from_utf8(b.to_vec()).map_err(|_| StoreError::new(StoreErrorKind::Corrupt, format!("{what} is not UTF-8")))
}

/// Key-value pairs copied out of a transaction.
type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// Entity storage and KVDB in one LMDB environment.
pub struct LmdbStore {
    env: Environment,
    entities: Database,
    kv: Database,
    dir: PathBuf,
}

impl LmdbStore {
    /// Opens (creating) the environment in `dir` with a map of `map_size` bytes.
    pub fn open(dir: &Path, map_size: usize) -> Result<Self, StoreError> {
        let env = open_env(dir, map_size)?;
        let entities = env.create_db(Some("entities"), DatabaseFlags::empty()).map_err(|e| lerr("entities db", e))?;
        let kv = env.create_db(Some("kv"), DatabaseFlags::empty()).map_err(|e| lerr("kv db", e))?;
        Ok(LmdbStore { env, entities, kv, dir: dir.to_owned() })
    }

    /// Runs `op` inside `txn`. `Err(Txn)`: LMDB failed and the transaction must not be
    /// committed; `Err(Op)`: only this operation failed.
    fn apply(&self, txn: &mut RwTransaction<'_>, op: StoreOp) -> Result<StoreReply, Fail> {
        check_limits(&op).map_err(Fail::Op)?;
        let get = |txn: &RwTransaction<'_>, db: Database, key: &[u8]| -> Result<Option<Vec<u8>>, Fail> {
            match txn.get(db, &key) {
                Ok(v) => Ok(Some(v.to_vec())),
                Err(lmdb::Error::NotFound) => Ok(None),
                Err(e) => Err(Fail::Txn(lerr("get", e))),
            }
        };
        let text = |b: &[u8], what: &str| utf8(b, what).map_err(Fail::Op);
        match op {
            StoreOp::Save { type_name, id, data } => {
                txn.put(self.entities, &entity_key(&type_name, id), &data, WriteFlags::empty())
                    .map_err(|e| Fail::Txn(lerr("put", e)))?;
                Ok(StoreReply::Done)
            }
            StoreOp::Load { type_name, id } => {
                Ok(StoreReply::Data(get(txn, self.entities, &entity_key(&type_name, id))?))
            }
            StoreOp::Exists { type_name, id } => {
                Ok(StoreReply::Exists(get(txn, self.entities, &entity_key(&type_name, id))?.is_some()))
            }
            StoreOp::List { type_name } => {
                let mut prefix = type_name.into_bytes();
                prefix.push(0);
                let rows = scan(txn, self.entities, &prefix, |k| k.starts_with(&prefix)).map_err(Fail::Txn)?;
                let mut ids = Vec::with_capacity(rows.len());
                for (k, _) in rows {
                    let tail: [u8; 16] = k[prefix.len()..].try_into().map_err(|_| {
                        Fail::Op(StoreError::new(StoreErrorKind::Corrupt, format!("entity key of {} bytes", k.len())))
                    })?;
                    ids.push(Id(tail));
                }
                Ok(StoreReply::Ids(ids))
            }
            StoreOp::KvGet { key } => {
                let v = get(txn, self.kv, &kv_key(&key))?;
                Ok(StoreReply::Value(v.map(|b| text(&b, "a KVDB value")).transpose()?))
            }
            StoreOp::KvPut { key, value } => {
                txn.put(self.kv, &kv_key(&key), &value.as_bytes(), WriteFlags::empty())
                    .map_err(|e| Fail::Txn(lerr("put", e)))?;
                Ok(StoreReply::Done)
            }
            StoreOp::KvGetOrPut { key, value } => {
                // Inside one write transaction (LMDB has one writer at a time across
                // processes), so the check and the write are atomic.
                let k = kv_key(&key);
                match txn.put(self.kv, &k, &value.as_bytes(), WriteFlags::NO_OVERWRITE) {
                    Ok(()) => Ok(StoreReply::Value(None)),
                    Err(lmdb::Error::KeyExist) => {
                        let old = get(txn, self.kv, &k)?.unwrap_or_default();
                        Ok(StoreReply::Value(Some(text(&old, "a KVDB value")?)))
                    }
                    Err(e) => Err(Fail::Txn(lerr("put", e))),
                }
            }
            StoreOp::KvRange { begin, end } => {
                if !end.is_empty() && end <= begin {
                    return Ok(StoreReply::Range(Vec::new()));
                }
                let rows = scan(txn, self.kv, &kv_key(&begin), |k| {
                    k.first() == Some(&b'k') && (end.is_empty() || &k[1..] < end.as_bytes())
                })
                .map_err(Fail::Txn)?;
                let mut out = Vec::with_capacity(rows.len());
                for (k, v) in rows {
                    out.push((text(&k[1..], "a KVDB key")?, text(&v, "a KVDB value")?));
                }
                Ok(StoreReply::Range(out))
            }
        }
    }

    /// Runs `ops` in one write transaction with one commit (one fsync for the lot), or says
    /// which LMDB error stopped it (then nothing of it is committed).
    fn try_batch(&self, ops: &[StoreOp]) -> Result<Vec<Result<StoreReply, StoreError>>, StoreError> {
        let mut txn = self.env.begin_rw_txn().map_err(|e| lerr("write", e))?;
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            match self.apply(&mut txn, op.clone()) {
                Ok(r) => out.push(Ok(r)),
                Err(Fail::Op(e)) => out.push(Err(e)),
                Err(Fail::Txn(e)) => return Err(e),
            }
        }
        txn.commit().map_err(|e| lerr("commit", e))?;
        Ok(out)
    }
}

/// How one operation of a batch failed.
enum Fail {
    /// Only this operation.
    Op(StoreError),
    /// LMDB itself: the transaction is abandoned.
    Txn(StoreError),
}

/// Key-value pairs from `begin` while `keep(key)` holds, copied out of `txn`.
fn scan(txn: &RwTransaction<'_>, db: Database, begin: &[u8], keep: impl Fn(&[u8]) -> bool) -> Result<Rows, StoreError> {
    let mut out = Vec::new();
    let mut cursor = txn.open_ro_cursor(db).map_err(|e| lerr("cursor", e))?;
    // `cursor` outlives the iteration (the crate does not enforce it).
    let iter = if begin.is_empty() { cursor.iter_start() } else { cursor.iter_from(begin) };
    for item in iter {
        let (k, v) = item.map_err(|e| lerr("scan", e))?;
        if !keep(k) {
            break;
        }
        out.push((k.to_vec(), v.to_vec()));
    }
    drop(cursor);
    Ok(out)
}

impl Store for LmdbStore {
    fn execute(&mut self, op: StoreOp) -> Result<StoreReply, StoreError> {
        match self.try_batch(std::slice::from_ref(&op)) {
            Ok(mut r) => r.pop().unwrap_or_else(|| Err(StoreError::unavailable("lmdb: no result"))),
            Err(e) => Err(e),
        }
    }

    /// Group commit: the whole batch in one transaction. If LMDB fails part-way (a full map,
    /// say), nothing of the batch is committed and each operation is run alone, so each gets
    /// its own result.
    fn execute_batch(&mut self, ops: Vec<StoreOp>) -> Vec<Result<StoreReply, StoreError>> {
        match self.try_batch(&ops) {
            Ok(r) => r,
            Err(_) => ops.into_iter().map(|op| self.execute(op)).collect(),
        }
    }

    fn backend(&self) -> &'static str {
        "lmdb"
    }
}

impl std::fmt::Debug for LmdbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LmdbStore({})", self.dir.display())
    }
}

const META: &[u8] = b"meta";
const COMPLETE: &[u8] = b"complete";
const REC: &[u8] = b"rec";

fn rec_key(i: u64) -> [u8; 11] {
    let mut k = [0u8; 11];
    k[..3].copy_from_slice(REC);
    k[3..].copy_from_slice(&i.to_be_bytes());
    k
}

/// One game's hot-swap freeze: a metadata record and the entity records, written in one
/// transaction.
pub struct FreezeDb {
    env: Environment,
    db: Database,
}

impl FreezeDb {
    /// Opens (creating) the freeze environment in `dir`; `map_size` reserves address space
    /// (not disk) and bounds the freeze.
    pub fn open(dir: &Path, map_size: usize) -> Result<Self, StoreError> {
        let env = open_env(dir, map_size)?;
        let db = env.create_db(Some("freeze"), DatabaseFlags::empty()).map_err(|e| lerr("freeze db", e))?;
        Ok(FreezeDb { env, db })
    }

    /// Replaces whatever was frozen with `meta` and `records`, durably, all or nothing.
    pub fn write(&mut self, meta: &[u8], records: impl Iterator<Item = Vec<u8>>) -> Result<(), StoreError> {
        let mut txn = self.env.begin_rw_txn().map_err(|e| lerr("write", e))?;
        txn.clear_db(self.db).map_err(|e| lerr("clear", e))?;
        txn.put(self.db, &META, &meta, WriteFlags::empty()).map_err(|e| lerr("put", e))?;
        for (i, r) in records.enumerate() {
            // Keys grow: append without searching the tree.
            txn.put(self.db, &rec_key(i as u64), &r, WriteFlags::APPEND).map_err(|e| lerr("put", e))?;
        }
        txn.put(self.db, &COMPLETE, &b"1", WriteFlags::empty()).map_err(|e| lerr("put", e))?;
        txn.commit().map_err(|e| lerr("commit", e))
    }

    /// The frozen metadata and records, or `None` if no complete freeze is stored.
    #[allow(clippy::type_complexity)]
    pub fn read(&self) -> Result<Option<(Vec<u8>, Vec<Vec<u8>>)>, StoreError> {
        let txn = self.env.begin_ro_txn().map_err(|e| lerr("read", e))?;
        match txn.get(self.db, &COMPLETE) {
            Ok(_) => {}
            Err(lmdb::Error::NotFound) => return Ok(None),
            Err(e) => return Err(lerr("get", e)),
        }
        let meta = txn.get(self.db, &META).map_err(|e| lerr("meta", e))?.to_vec();
        let mut records = Vec::new();
        {
            let mut cursor = txn.open_ro_cursor(self.db).map_err(|e| lerr("cursor", e))?;
            for item in cursor.iter_from(REC) {
                let (k, v) = item.map_err(|e| lerr("scan", e))?;
                if !k.starts_with(REC) {
                    break;
                }
                if k.len() != 11 || k[3..] != (records.len() as u64).to_be_bytes() {
                    return Err(StoreError::new(StoreErrorKind::Corrupt, "freeze records are not contiguous"));
                }
                records.push(v.to_vec());
            }
        }
        Ok(Some((meta, records)))
    }

    /// Removes the freeze (after a successful restore).
    pub fn clear(&mut self) -> Result<(), StoreError> {
        let mut txn = self.env.begin_rw_txn().map_err(|e| lerr("write", e))?;
        txn.clear_db(self.db).map_err(|e| lerr("clear", e))?;
        txn.commit().map_err(|e| lerr("commit", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("oxworld-lmdb-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn lmdb_backend_passes_the_suite_and_survives_reopen() {
        let dir = tmp("suite");
        {
            let mut s = LmdbStore::open(&dir, 256 << 20).expect("open");
            super::super::suite::suite(&mut s);
            super::super::suite::many_keys(&mut s);
            super::super::suite::batch(&mut s);
        }
        let mut s = LmdbStore::open(&dir, 256 << 20).expect("reopen");
        let r = s.execute(StoreOp::KvGet { key: "user$ann".into() }).expect("get");
        assert_eq!(r, StoreReply::Value(Some("first".into())), "durable across reopen");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Two handles on one directory (two games on one machine) see each other's writes.
    #[test]
    fn two_games_share_one_store() {
        let dir = tmp("shared");
        let mut a = LmdbStore::open(&dir, 64 << 20).expect("open a");
        let mut b = LmdbStore::open(&dir, 64 << 20).expect("open b");
        a.execute(StoreOp::KvPut { key: "k".into(), value: "from a".into() }).expect("put");
        assert_eq!(b.execute(StoreOp::KvGet { key: "k".into() }), Ok(StoreReply::Value(Some("from a".into()))));
        let gop = |s: &mut LmdbStore, v: &str| s.execute(StoreOp::KvGetOrPut { key: "once".into(), value: v.into() });
        assert_eq!(gop(&mut b, "b"), Ok(StoreReply::Value(None)));
        assert_eq!(gop(&mut a, "a"), Ok(StoreReply::Value(Some("b".into()))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_map_is_an_error_not_a_panic() {
        let dir = tmp("full");
        let mut s = LmdbStore::open(&dir, 1 << 20).expect("open");
        let mut failed = None;
        for i in 0..1000 {
            let op = StoreOp::Save { type_name: "T".into(), id: Id([i as u8; 16]), data: vec![7; 64 << 10] };
            if let Err(e) = s.execute(op) {
                failed = Some(e);
                break;
            }
        }
        let e = failed.expect("a 1 MiB map fills up");
        assert_eq!(e.kind, StoreErrorKind::TooLarge, "{e}");
        assert!(e.message.contains("map_size_mb"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn freeze_roundtrip_replace_clear_and_incomplete() {
        let dir = tmp("freeze");
        let mut f = FreezeDb::open(&dir, 1 << 30).expect("open");
        assert_eq!(f.read().expect("read"), None, "empty");
        let recs: Vec<Vec<u8>> = (0..100_000u32).map(|i| i.to_le_bytes().repeat(50)).collect();
        f.write(b"m1", recs.iter().cloned()).expect("write");
        drop(f);
        let mut f = FreezeDb::open(&dir, 1 << 30).expect("reopen");
        let (meta, got) = f.read().expect("read").expect("complete");
        assert_eq!(meta, b"m1");
        assert_eq!(got, recs);
        f.write(b"m2", [vec![1u8]].into_iter()).expect("replace");
        assert_eq!(f.read().expect("read"), Some((b"m2".to_vec(), vec![vec![1u8]])), "old records gone");
        f.clear().expect("clear");
        assert_eq!(f.read().expect("read"), None);
        // Records without the completion marker (a writer that died mid-way cannot commit,
        // but a hand-made or damaged file could look like this) are not a freeze.
        {
            let mut txn = f.env.begin_rw_txn().expect("txn");
            txn.put(f.db, &META, &b"m", WriteFlags::empty()).expect("put");
            txn.put(f.db, &rec_key(0), &b"r", WriteFlags::empty()).expect("put");
            txn.commit().expect("commit");
        }
        assert_eq!(f.read().expect("read"), None);
        // A gap in the records is corruption, reported.
        {
            let mut txn = f.env.begin_rw_txn().expect("txn");
            txn.put(f.db, &rec_key(5), &b"r", WriteFlags::empty()).expect("put");
            txn.put(f.db, &COMPLETE, &b"1", WriteFlags::empty()).expect("put");
            txn.commit().expect("commit");
        }
        assert!(f.read().is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
