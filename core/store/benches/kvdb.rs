//! KVDB throughput of each storage backend, one operation at a time as a game's store thread
//! runs them: `KvPut` (durable on return), the same in batches of 100 (what the store thread
//! does with a burst), and `KvGet` of existing keys, for the in-memory store, LMDB (temp
//! directory) and Redis (a private redis-server on a free port); plus `FreezeDb` writing
//! (durable) and reading 10,000 and 100,000 records of 200 bytes.
//! Run: `cargo bench -p oxworld-store --bench kvdb`.

use oxworld_engine::store::{MemStore, Store, StoreOp};
use oxworld_store::lmdb::{FreezeDb, LmdbStore};
use oxworld_store::redis::RedisStore;

#[path = "../src/testserver.rs"]
mod testserver;
use testserver::RedisServer;

fn main() {
    divan::main();
}

const KEYS: usize = 1_000;
const BACKENDS: [&str; 3] = ["memory", "lmdb", "redis"];

/// A store and what must live as long as it (LMDB's temp directory, the Redis server).
fn open(backend: &str) -> (Box<dyn Store>, Box<dyn std::any::Any>) {
    match backend {
        "memory" => (Box::new(MemStore::default()), Box::new(())),
        "lmdb" => {
            let dir = tempfile::Builder::new().prefix("oxworld-bench-kvdb-").tempdir().expect("temp dir");
            (Box::new(LmdbStore::open(dir.path(), 1 << 30).expect("lmdb")), Box::new(dir))
        }
        _ => {
            let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
            (Box::new(RedisStore::open(&server.url).expect("redis")), Box::new(server))
        }
    }
}

fn key(i: usize) -> String {
    format!("account${i:06}")
}

#[divan::bench(args = BACKENDS, sample_count = 10, sample_size = 1)]
fn put(bencher: divan::Bencher, backend: &str) {
    let (mut store, _keep) = open(backend);
    bencher.counter(divan::counter::ItemsCount::new(KEYS)).bench_local(|| {
        for i in 0..KEYS {
            store.execute(StoreOp::KvPut { key: key(i), value: "v".repeat(64) }).expect("put");
        }
    });
}

#[divan::bench(args = BACKENDS, sample_count = 10, sample_size = 1)]
fn get(bencher: divan::Bencher, backend: &str) {
    let (mut store, _keep) = open(backend);
    for i in 0..KEYS {
        store.execute(StoreOp::KvPut { key: key(i), value: "v".repeat(64) }).expect("put");
    }
    bencher.counter(divan::counter::ItemsCount::new(KEYS)).bench_local(|| {
        for i in 0..KEYS {
            store.execute(StoreOp::KvGet { key: key(i) }).expect("get");
        }
    });
}

/// As the store thread runs a burst: 100 operations per batch (LMDB commits each batch once).
#[divan::bench(args = BACKENDS, sample_count = 10, sample_size = 1)]
fn put_batched_100(bencher: divan::Bencher, backend: &str) {
    let (mut store, _keep) = open(backend);
    bencher.counter(divan::counter::ItemsCount::new(KEYS)).bench_local(|| {
        for chunk in 0..KEYS / 100 {
            let ops = (0..100).map(|i| StoreOp::KvPut { key: key(chunk * 100 + i), value: "v".repeat(64) }).collect();
            for r in store.execute_batch(ops) {
                r.expect("put");
            }
        }
    });
}

const FREEZE_SIZES: [usize; 2] = [10_000, 100_000];

fn records(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| (i as u64).to_le_bytes().repeat(25)).collect()
}

/// `FreezeDb::write` of `n` records of 200 bytes (one transaction, durable).
#[divan::bench(args = FREEZE_SIZES, sample_count = 5, sample_size = 1)]
fn freeze_write_200b(bencher: divan::Bencher, n: usize) {
    let recs = records(n);
    let dir = tempfile::Builder::new().prefix("oxworld-bench-freeze-").tempdir().expect("temp dir");
    let mut db = FreezeDb::open(dir.path(), 1 << 30).expect("open");
    bencher.counter(divan::counter::ItemsCount::new(n)).bench_local(|| {
        db.write(b"meta", &recs).expect("write");
    });
}

/// `FreezeDb::read` of `n` records of 200 bytes.
#[divan::bench(args = FREEZE_SIZES, sample_count = 5, sample_size = 1)]
fn freeze_read_200b(bencher: divan::Bencher, n: usize) {
    let dir = tempfile::Builder::new().prefix("oxworld-bench-thaw-").tempdir().expect("temp dir");
    let mut db = FreezeDb::open(dir.path(), 1 << 30).expect("open");
    db.write(b"meta", &records(n)).expect("write");
    bencher.counter(divan::counter::ItemsCount::new(n)).bench_local(|| {
        let (_, got) = db.read().expect("read").expect("complete");
        assert_eq!(got.len(), n);
    });
}
