//! The embedded LMDB backend (`lmdb-rkv`): [`LmdbStore`] for entity storage and KVDB, shared
//! by every game of a machine (LMDB is multi-process safe), and [`FreezeDb`], one environment
//! per game for hot-swap freezes. The only file that uses `lmdb-rkv`: every transaction and
//! cursor lives inside one function here, which keeps clear of the crate's cursor lifetime
//! hole (mozilla/lmdb-rs#79), and every value is copied out before its transaction ends.
//!
//! Layout: database `entities`, key = type name, `\0`, 16 id bytes; database `kv`, key = `k`
//! followed by the KVDB key's bytes (LMDB refuses empty keys; KVDB allows them). Freeze:
//! database `freeze`, keys `meta`, `rec` + u64 big-endian index, and `complete` (written last
//! in the same transaction: a freeze without it is not one).
//!
//! What comes from disk is checked, never trusted: a `data.mdb` shorter than its own meta page
//! says (truncated) is refused before any page is touched (LMDB would fault on the missing
//! pages), a file that is not LMDB is refused by LMDB, and keys or values of the wrong shape
//! are `Corrupt` errors.

use std::path::{Path, PathBuf};

use lmdb::{Cursor as _, Database, DatabaseFlags, Environment, RwTransaction, Transaction, WriteFlags};
use oxworld_engine::Id;
use oxworld_engine::store::{Store, StoreError, StoreErrorKind, StoreOp, StoreReply, check_limits};

/// Named databases per environment.
const MAX_DBS: u32 = 4;
/// Readers at once (one per game process and thread of a machine).
const MAX_READERS: u32 = 256;
/// A freeze's map doubles on `MapFull` up to this much address space (not disk).
pub const MAX_FREEZE_MAP_BYTES: usize = 256 << 30;

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

fn corrupt(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, message)
}

/// Opens (creating) the environment in `dir`, after checking that an existing `data.mdb` is
/// as long as its meta page says.
fn open_env(dir: &Path, map_size: usize) -> Result<Environment, StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::unavailable(format!("creating {}: {e}", dir.display())))?;
    let env = Environment::new()
        .set_max_dbs(MAX_DBS)
        .set_max_readers(MAX_READERS)
        .set_map_size(map_size)
        .open(dir)
        .map_err(|e| lerr(&format!("opening {}", dir.display()), e))?;
    // LMDB read both meta pages with pread and checked them; it has not touched a data page.
    let info = env.info().map_err(|e| lerr("info", e))?;
    let page = env.stat().map_err(|e| lerr("stat", e))?.page_size() as u64;
    let data = dir.join("data.mdb");
    let len = std::fs::metadata(&data).map_err(|e| StoreError::unavailable(format!("{}: {e}", data.display())))?.len();
    let need = (info.last_pgno() as u64 + 1).saturating_mul(page);
    if len < need {
        return Err(corrupt(format!("{} is {len} bytes but holds {need} bytes of pages: truncated", data.display())));
    }
    Ok(env)
}

/// Begins a write transaction, adopting a map another process grew meanwhile.
fn begin_rw(env: &Environment) -> Result<RwTransaction<'_>, StoreError> {
    match env.begin_rw_txn() {
        Err(lmdb::Error::MapResized) => {
            env.set_map_size(0).map_err(|e| lerr("adopting the map size", e))?;
            env.begin_rw_txn().map_err(|e| lerr("write", e))
        }
        r => r.map_err(|e| lerr("write", e)),
    }
}

/// Begins a read-only transaction, adopting a map another process grew meanwhile.
fn begin_ro(env: &Environment) -> Result<lmdb::RoTransaction<'_>, StoreError> {
    match env.begin_ro_txn() {
        Err(lmdb::Error::MapResized) => {
            env.set_map_size(0).map_err(|e| lerr("adopting the map size", e))?;
            env.begin_ro_txn().map_err(|e| lerr("read", e))
        }
        r => r.map_err(|e| lerr("read", e)),
    }
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
    String::from_utf8(b.to_vec()).map_err(|_| corrupt(format!("{what} is not UTF-8")))
}

/// Key-value pairs copied out of a transaction.
type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// Whether `op` writes (and so needs the write transaction).
fn writes(op: &StoreOp) -> bool {
    matches!(op, StoreOp::Save { .. } | StoreOp::KvPut { .. } | StoreOp::KvGetOrPut { .. })
}

/// How one operation of a batch failed.
enum Fail {
    /// Only this operation.
    Op(StoreError),
    /// LMDB itself: the transaction is abandoned.
    Txn(StoreError),
}

/// A value copied out of `txn`, or none.
fn get(txn: &impl Transaction, db: Database, key: &[u8]) -> Result<Option<Vec<u8>>, Fail> {
    match txn.get(db, &key) {
        Ok(v) => Ok(Some(v.to_vec())),
        Err(lmdb::Error::NotFound) => Ok(None),
        Err(e) => Err(Fail::Txn(lerr("get", e))),
    }
}

/// Key-value pairs from `begin` while `keep(key)` holds, copied out of `txn`. The cursor
/// lives and dies in here.
fn scan(txn: &impl Transaction, db: Database, begin: &[u8], keep: impl Fn(&[u8]) -> bool) -> Result<Rows, StoreError> {
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

/// Entity storage and KVDB in one LMDB environment.
pub struct LmdbStore {
    env: Environment,
    entities: Database,
    kv: Database,
    dir: PathBuf,
}

impl LmdbStore {
    /// Opens (creating) the environment in `dir` with a map of `map_size` bytes. Every process
    /// sharing `dir` should use the same map size (a bigger one is adopted by the others).
    pub fn open(dir: &Path, map_size: usize) -> Result<Self, StoreError> {
        let env = open_env(dir, map_size)?;
        let entities = env.create_db(Some("entities"), DatabaseFlags::empty()).map_err(|e| lerr("entities db", e))?;
        let kv = env.create_db(Some("kv"), DatabaseFlags::empty()).map_err(|e| lerr("kv db", e))?;
        Ok(LmdbStore { env, entities, kv, dir: dir.to_owned() })
    }

    /// Runs a reading `op` inside `txn` (either kind of transaction).
    fn read(&self, txn: &impl Transaction, op: StoreOp) -> Result<StoreReply, Fail> {
        let text = |b: &[u8], what: &str| utf8(b, what).map_err(Fail::Op);
        match op {
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
                    let tail: [u8; 16] = k[prefix.len()..]
                        .try_into()
                        .map_err(|_| Fail::Op(corrupt(format!("an entity key of {} bytes", k.len()))))?;
                    ids.push(Id(tail));
                }
                Ok(StoreReply::Ids(ids))
            }
            StoreOp::KvGet { key } => {
                let v = get(txn, self.kv, &kv_key(&key))?;
                Ok(StoreReply::Value(v.map(|b| text(&b, "a KVDB value")).transpose()?))
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
            StoreOp::Save { .. } | StoreOp::KvPut { .. } | StoreOp::KvGetOrPut { .. } => {
                Err(Fail::Op(StoreError::new(StoreErrorKind::Other, "lmdb: a write in a read transaction")))
            }
        }
    }

    /// Runs `op` inside the write transaction `txn`.
    fn apply(&self, txn: &mut RwTransaction<'_>, op: StoreOp) -> Result<StoreReply, Fail> {
        check_limits(&op).map_err(Fail::Op)?;
        match op {
            StoreOp::Save { type_name, id, data } => {
                txn.put(self.entities, &entity_key(&type_name, id), &data, WriteFlags::empty())
                    .map_err(|e| Fail::Txn(lerr("put", e)))?;
                Ok(StoreReply::Done)
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
                        let old = get(&*txn, self.kv, &k)?.unwrap_or_default();
                        Ok(StoreReply::Value(Some(utf8(&old, "a KVDB value").map_err(Fail::Op)?)))
                    }
                    Err(e) => Err(Fail::Txn(lerr("put", e))),
                }
            }
            read => self.read(&*txn, read),
        }
    }

    /// Runs `ops` in one transaction: a write transaction with one commit (one fsync for the
    /// lot) if any of them writes, else a read-only one (which never waits for a writer of
    /// another process). `Err`: the LMDB error that stopped it; nothing of it is committed.
    fn try_batch(&self, ops: &[StoreOp]) -> Result<Vec<Result<StoreReply, StoreError>>, StoreError> {
        type Out = Vec<Result<StoreReply, StoreError>>;
        let collect = |out: &mut Out, r: Result<StoreReply, Fail>| match r {
            Ok(r) => {
                out.push(Ok(r));
                Ok(())
            }
            Err(Fail::Op(e)) => {
                out.push(Err(e));
                Ok(())
            }
            Err(Fail::Txn(e)) => Err(e),
        };
        let mut out = Vec::with_capacity(ops.len());
        if !ops.iter().any(writes) {
            let txn = begin_ro(&self.env)?;
            for op in ops {
                let r = check_limits(op).map_err(Fail::Op).and_then(|()| self.read(&txn, op.clone()));
                collect(&mut out, r)?;
            }
            txn.abort();
            return Ok(out);
        }
        let mut txn = begin_rw(&self.env)?;
        for op in ops {
            collect(&mut out, self.apply(&mut txn, op.clone()))?;
        }
        txn.commit().map_err(|e| lerr("commit", e))?;
        Ok(out)
    }
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

/// Address space a freeze of `records` may need: each record with its node and page
/// overhead, half-full pages, plus the old freeze (freed pages are reusable only after the
/// commit).
fn freeze_estimate(meta: &[u8], records: &[Vec<u8>], old_bytes: usize) -> usize {
    let payload: usize = records.iter().map(|r| r.len() + 64).sum::<usize>() + meta.len();
    payload.saturating_mul(2).saturating_add(old_bytes).saturating_add(1 << 20)
}

/// One game's hot-swap freeze: a metadata record and the entity records, written in one
/// transaction.
pub struct FreezeDb {
    env: Environment,
    db: Database,
    map_size: usize,
}

impl FreezeDb {
    /// Opens (creating) the freeze environment in `dir`; `map_size` reserves address space
    /// (not disk). A write that needs more grows it (see [`FreezeDb::write`]).
    pub fn open(dir: &Path, map_size: usize) -> Result<Self, StoreError> {
        let env = open_env(dir, map_size)?;
        let db = env.create_db(Some("freeze"), DatabaseFlags::empty()).map_err(|e| lerr("freeze db", e))?;
        let map_size = env.info().map_err(|e| lerr("info", e))?.map_size();
        Ok(FreezeDb { env, db, map_size })
    }

    /// The map size now (bytes).
    pub fn map_size(&self) -> usize {
        self.map_size
    }

    /// Replaces whatever was frozen with `meta` and `records`, durably, all or nothing. The map
    /// is first grown to an estimate of what the freeze needs, and doubled on `MapFull` (the
    /// transaction is abandoned and run again) up to [`MAX_FREEZE_MAP_BYTES`].
    pub fn write(&mut self, meta: &[u8], records: &[Vec<u8>]) -> Result<(), StoreError> {
        self.write_records(meta, records, true)
    }

    fn write_records(&mut self, meta: &[u8], records: &[Vec<u8>], presize: bool) -> Result<(), StoreError> {
        if presize {
            let info = self.env.info().map_err(|e| lerr("info", e))?;
            let page = self.env.stat().map_err(|e| lerr("stat", e))?.page_size() as usize;
            let old = info.last_pgno().saturating_add(1).saturating_mul(page);
            let need = freeze_estimate(meta, records, old).min(MAX_FREEZE_MAP_BYTES);
            if need > self.map_size {
                self.grow(need)?;
            }
        }
        loop {
            match self.try_write(meta, records) {
                Err(lmdb::Error::MapFull) if self.map_size < MAX_FREEZE_MAP_BYTES => {
                    let bigger = self.map_size.saturating_mul(2).min(MAX_FREEZE_MAP_BYTES);
                    self.grow(bigger)?;
                }
                Err(lmdb::Error::MapFull) => {
                    return Err(StoreError::new(
                        StoreErrorKind::TooLarge,
                        format!("the freeze does not fit in a map of {} bytes", self.map_size),
                    ));
                }
                Err(e) => return Err(lerr("freeze write", e)),
                Ok(()) => return Ok(()),
            }
        }
    }

    /// Sets the map to `bytes` (no transaction of this environment is open).
    fn grow(&mut self, bytes: usize) -> Result<(), StoreError> {
        self.env.set_map_size(bytes).map_err(|e| lerr("growing the map", e))?;
        self.map_size = self.env.info().map_err(|e| lerr("info", e))?.map_size();
        Ok(())
    }

    /// One attempt; an error drops (aborts) the transaction.
    fn try_write(&self, meta: &[u8], records: &[Vec<u8>]) -> Result<(), lmdb::Error> {
        let mut txn = self.env.begin_rw_txn()?;
        txn.clear_db(self.db)?;
        txn.put(self.db, &META, &meta, WriteFlags::empty())?;
        for (i, r) in records.iter().enumerate() {
            // Keys grow: append without searching the tree.
            txn.put(self.db, &rec_key(i as u64), r, WriteFlags::APPEND)?;
        }
        txn.put(self.db, &COMPLETE, &b"1", WriteFlags::empty())?;
        txn.commit()
    }

    /// The frozen metadata and records, or `None` if no complete freeze is stored.
    #[allow(clippy::type_complexity)]
    pub fn read(&self) -> Result<Option<(Vec<u8>, Vec<Vec<u8>>)>, StoreError> {
        self.read_with(|meta, records| (meta.to_vec(), records.iter().map(|r| r.to_vec()).collect()))
    }

    /// Runs `f` on the frozen metadata and records in place (slices of the memory map, valid
    /// while `f` runs: nothing is copied), or returns `None` if no complete freeze is stored.
    pub fn read_with<R>(&self, f: impl FnOnce(&[u8], &[&[u8]]) -> R) -> Result<Option<R>, StoreError> {
        let txn = begin_ro(&self.env)?;
        match txn.get(self.db, &COMPLETE) {
            Ok(_) => {}
            Err(lmdb::Error::NotFound) => return Ok(None),
            Err(e) => return Err(lerr("get", e)),
        }
        let meta = match txn.get(self.db, &META) {
            Ok(m) => m,
            Err(lmdb::Error::NotFound) => return Err(corrupt("a complete freeze without its meta record")),
            Err(e) => return Err(lerr("meta", e)),
        };
        let mut records: Vec<&[u8]> = Vec::new();
        let mut cursor = txn.open_ro_cursor(self.db).map_err(|e| lerr("cursor", e))?;
        // `cursor` outlives the iteration (the crate does not enforce it). The values stay
        // valid until the read-only transaction ends, after `f`.
        for item in cursor.iter_from(REC) {
            let (k, v) = item.map_err(|e| lerr("scan", e))?;
            if !k.starts_with(REC) {
                break;
            }
            if k.len() != 11 || k[3..] != (records.len() as u64).to_be_bytes() {
                return Err(corrupt("freeze records are not contiguous"));
            }
            records.push(v);
        }
        drop(cursor);
        let out = f(meta, &records);
        drop(records);
        txn.abort();
        Ok(Some(out))
    }

    /// Removes the freeze (after a successful restore).
    pub fn clear(&mut self) -> Result<(), StoreError> {
        let mut txn = begin_rw(&self.env)?;
        txn.clear_db(self.db).map_err(|e| lerr("clear", e))?;
        txn.commit().map_err(|e| lerr("commit", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::Builder::new().prefix("oxworld-lmdb-").tempdir().expect("temp dir")
    }

    fn kv(s: &mut LmdbStore, op: StoreOp) -> Result<StoreReply, StoreError> {
        s.execute(op)
    }

    #[test]
    fn lmdb_backend_passes_the_suite_and_survives_reopen() {
        let dir = tmp();
        {
            let mut s = LmdbStore::open(dir.path(), 256 << 20).expect("open");
            crate::suite::suite(&mut s);
            crate::suite::many_keys(&mut s);
            crate::suite::batch(&mut s);
        }
        let mut s = LmdbStore::open(dir.path(), 256 << 20).expect("reopen");
        crate::suite::after_reopen(&mut s);
    }

    /// Env var naming the directory the second "game" of [`two_processes_share_one_store`]
    /// opens.
    const CHILD_DIR: &str = "OXWORLD_LMDB_CHILD_DIR";

    /// Two games (processes) on one directory, both open at once, see each other's writes,
    /// and get-or-put is atomic between them. The second game is this same test run again by
    /// the test binary as a child process (LMDB must not be opened twice in one process: its
    /// POSIX locks are per process); with `CHILD_DIR` set it plays the child's part (read,
    /// get-or-put, save) and returns.
    #[test]
    fn two_processes_share_one_store() {
        if let Ok(child) = std::env::var(CHILD_DIR) {
            let mut s = LmdbStore::open(Path::new(&child), 64 << 20).expect("child open");
            assert_eq!(kv(&mut s, StoreOp::KvGet { key: "k".into() }), Ok(StoreReply::Value(Some("from a".into()))));
            let gop = StoreOp::KvGetOrPut { key: "once".into(), value: "b".into() };
            assert_eq!(kv(&mut s, gop), Ok(StoreReply::Value(None)));
            let save = StoreOp::Save { type_name: "Avatar".into(), id: Id([9; 16]), data: b"from b".to_vec() };
            assert_eq!(kv(&mut s, save), Ok(StoreReply::Done));
            return;
        }
        let dir = tmp();
        let mut a = LmdbStore::open(dir.path(), 64 << 20).expect("open a");
        a.execute(StoreOp::KvPut { key: "k".into(), value: "from a".into() }).expect("put");
        let exe = std::env::current_exe().expect("test binary");
        let out = std::process::Command::new(exe)
            .args(["--exact", "lmdb::tests::two_processes_share_one_store", "--test-threads", "1"])
            .env(CHILD_DIR, dir.path())
            .output()
            .expect("run the child game");
        assert!(out.status.success(), "child: {}", String::from_utf8_lossy(&out.stdout));
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"), "the child test ran");
        let gop = StoreOp::KvGetOrPut { key: "once".into(), value: "a".into() };
        assert_eq!(kv(&mut a, gop), Ok(StoreReply::Value(Some("b".into()))), "the child's put won");
        let load = StoreOp::Load { type_name: "Avatar".into(), id: Id([9; 16]) };
        assert_eq!(kv(&mut a, load), Ok(StoreReply::Data(Some(b"from b".to_vec()))));
    }

    #[test]
    fn a_full_map_is_an_error_not_a_panic() {
        let dir = tmp();
        let mut s = LmdbStore::open(dir.path(), 1 << 20).expect("open");
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
        assert_eq!(kv(&mut s, StoreOp::KvGet { key: "k".into() }), Ok(StoreReply::Value(None)), "still usable");
    }

    /// Data of the wrong shape in the file (written behind the store's back) is an error.
    #[test]
    fn garbage_records_are_corrupt_errors() {
        let dir = tmp();
        let mut s = LmdbStore::open(dir.path(), 64 << 20).expect("open");
        {
            let mut txn = s.env.begin_rw_txn().expect("txn");
            txn.put(s.kv, &b"kbad", &[0xff, 0xfe], WriteFlags::empty()).expect("put");
            txn.put(s.kv, &[b'k', 0xc3], &b"v", WriteFlags::empty()).expect("put");
            txn.put(s.entities, &b"Avatar\0short", &b"x", WriteFlags::empty()).expect("put");
            txn.commit().expect("commit");
        }
        let e = kv(&mut s, StoreOp::KvGet { key: "bad".into() }).expect_err("not UTF-8");
        assert_eq!(e.kind, StoreErrorKind::Corrupt, "{e}");
        let e = kv(&mut s, StoreOp::KvGetOrPut { key: "bad".into(), value: "v".into() }).expect_err("not UTF-8");
        assert_eq!(e.kind, StoreErrorKind::Corrupt, "{e}");
        let e = kv(&mut s, StoreOp::KvRange { begin: String::new(), end: String::new() }).expect_err("bad key");
        assert_eq!(e.kind, StoreErrorKind::Corrupt, "{e}");
        let e = kv(&mut s, StoreOp::List { type_name: "Avatar".into() }).expect_err("short id");
        assert_eq!(e.kind, StoreErrorKind::Corrupt, "{e}");
        assert_eq!(kv(&mut s, StoreOp::KvPut { key: "ok".into(), value: "v".into() }), Ok(StoreReply::Done));
    }

    /// A truncated or overwritten `data.mdb` is refused at open, without touching a page.
    #[test]
    fn damaged_files_are_refused_at_open() {
        let dir = tmp();
        {
            let mut s = LmdbStore::open(dir.path(), 64 << 20).expect("open");
            let ops = (0..2000u32)
                .map(|i| StoreOp::Save {
                    type_name: "T".into(),
                    id: Id([(i % 251) as u8, (i / 251) as u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
                    data: vec![i as u8; 1000],
                })
                .collect();
            assert!(s.execute_batch(ops).iter().all(Result::is_ok));
        }
        let data = dir.path().join("data.mdb");
        let full = std::fs::read(&data).expect("read data.mdb");
        assert!(full.len() > 100 * 4096, "{} bytes", full.len());
        for cut in [full.len() / 2, full.len() - 4096, 3 * 4096, 4096 + 200, 100, 0] {
            std::fs::write(&data, &full[..cut]).expect("truncate");
            match LmdbStore::open(dir.path(), 64 << 20) {
                Err(e) => assert!(matches!(e.kind, StoreErrorKind::Corrupt | StoreErrorKind::Unavailable), "{e}"),
                // An empty file is a new environment.
                Ok(mut s) => {
                    assert_eq!(cut, 0, "a file cut to {cut} bytes opened");
                    assert_eq!(kv(&mut s, StoreOp::List { type_name: "T".into() }), Ok(StoreReply::Ids(vec![])));
                }
            }
        }
        let mut garbage = full.clone();
        garbage[..8192].iter_mut().enumerate().for_each(|(i, b)| *b = (i * 7 + 3) as u8);
        std::fs::write(&data, &garbage).expect("overwrite");
        let e = LmdbStore::open(dir.path(), 64 << 20).expect_err("not LMDB");
        assert_eq!(e.kind, StoreErrorKind::Corrupt, "{e}");
        std::fs::write(&data, &full).expect("restore");
        let mut s = LmdbStore::open(dir.path(), 64 << 20).expect("whole again");
        let StoreReply::Ids(ids) = kv(&mut s, StoreOp::List { type_name: "T".into() }).expect("list") else {
            panic!("not ids")
        };
        assert_eq!(ids.len(), 2000);
    }

    #[test]
    fn freeze_empty_roundtrip_replace_clear() {
        let dir = tmp();
        let mut f = FreezeDb::open(dir.path(), 1 << 30).expect("open");
        assert_eq!(f.read().expect("read"), None, "empty");
        let recs: Vec<Vec<u8>> = (0..100_000u32).map(|i| i.to_le_bytes().repeat(50)).collect();
        f.write(b"m1", &recs).expect("write");
        drop(f);
        let mut f = FreezeDb::open(dir.path(), 1 << 30).expect("reopen");
        let (meta, got) = f.read().expect("read").expect("complete");
        assert_eq!(meta, b"m1");
        assert_eq!(got, recs);
        f.write(b"m2", &[vec![1u8]]).expect("replace");
        assert_eq!(f.read().expect("read"), Some((b"m2".to_vec(), vec![vec![1u8]])), "old records gone");
        f.write(b"", &[]).expect("an empty freeze");
        assert_eq!(f.read().expect("read"), Some((Vec::new(), Vec::new())), "empty but complete");
        f.clear().expect("clear");
        assert_eq!(f.read().expect("read"), None);
        drop(f);
        assert_eq!(FreezeDb::open(dir.path(), 1 << 30).expect("reopen").read().expect("read"), None, "cleared");
    }

    #[test]
    fn freeze_without_marker_or_with_holes() {
        let dir = tmp();
        let f = FreezeDb::open(dir.path(), 1 << 30).expect("open");
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
        assert_eq!(f.read().expect_err("hole").kind, StoreErrorKind::Corrupt);
        // So are a record key of the wrong length and a missing meta record.
        {
            let mut txn = f.env.begin_rw_txn().expect("txn");
            txn.del(f.db, &rec_key(5), None).expect("del");
            txn.put(f.db, &b"rec\x01", &b"r", WriteFlags::empty()).expect("put");
            txn.commit().expect("commit");
        }
        assert_eq!(f.read().expect_err("short key").kind, StoreErrorKind::Corrupt);
        {
            let mut txn = f.env.begin_rw_txn().expect("txn");
            txn.del(f.db, &b"rec\x01", None).expect("del");
            txn.del(f.db, &META, None).expect("del");
            txn.commit().expect("commit");
        }
        assert_eq!(f.read().expect_err("no meta").kind, StoreErrorKind::Corrupt);
    }

    /// 100,000 records of 1 KiB in a map opened at 1 MiB: the map grows, by estimate and (when
    /// the estimate is skipped) by doubling on `MapFull`.
    #[test]
    fn freeze_grows_its_map() {
        let recs: Vec<Vec<u8>> = (0..100_000u32).map(|i| i.to_be_bytes().repeat(256)).collect();
        for presize in [true, false] {
            let dir = tmp();
            let mut f = FreezeDb::open(dir.path(), 1 << 20).expect("open");
            f.write_records(b"meta", &recs, presize).expect("write grows the map");
            assert!(f.map_size() >= 100 << 20, "{} bytes", f.map_size());
            drop(f);
            let f = FreezeDb::open(dir.path(), 1 << 20).expect("reopen with a small map");
            let (meta, got) = f.read().expect("read").expect("complete");
            assert_eq!(meta, b"meta");
            assert_eq!(got.len(), recs.len());
            assert!(got == recs, "records differ (presize {presize})");
        }
    }
}
