//! KVDB throughput of each storage backend, one operation at a time as a game's store thread
//! runs them: `KvPut` (durable on return), the same in batches of 100 (what the store thread
//! does with a burst), and `KvGet` of existing keys, for the in-memory store,
//! LMDB (temp directory) and Redis (a private redis-server on a free port).
//! Run: `cargo bench -p oxworld-core --bench kvdb`.

use oxworld_core::store::lmdb::LmdbStore;
use oxworld_core::store::redis::RedisStore;
use oxworld_core::store::redis::testserver::RedisServer;
use oxworld_core::store::{MemStore, Store, StoreOp};

fn main() {
    divan::main();
}

const KEYS: usize = 1_000;

fn backends() -> Vec<(&'static str, Box<dyn Store>, Option<RedisServer>)> {
    let dir = std::env::temp_dir().join(format!("oxworld-bench-kvdb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lmdb = LmdbStore::open(&dir, 1 << 30).expect("lmdb");
    let server = RedisServer::start().expect("redis-server (install the redis-server package)");
    let redis = RedisStore::open(&server.url).expect("redis");
    vec![
        ("memory", Box::new(MemStore::default()), None),
        ("lmdb", Box::new(lmdb), None),
        ("redis", Box::new(redis), Some(server)),
    ]
}

fn key(i: usize) -> String {
    format!("account${i:06}")
}

#[divan::bench(args = ["memory", "lmdb", "redis"], sample_count = 10, sample_size = 1)]
fn put(bencher: divan::Bencher, backend: &str) {
    let mut all = backends();
    let Some((_, store, _server)) = all.iter_mut().find(|(n, ..)| *n == backend) else { return };
    bencher.counter(divan::counter::ItemsCount::new(KEYS)).bench_local(|| {
        for i in 0..KEYS {
            store.execute(StoreOp::KvPut { key: key(i), value: "v".repeat(64) }).expect("put");
        }
    });
}

#[divan::bench(args = ["memory", "lmdb", "redis"], sample_count = 10, sample_size = 1)]
fn get(bencher: divan::Bencher, backend: &str) {
    let mut all = backends();
    let Some((_, store, _server)) = all.iter_mut().find(|(n, ..)| *n == backend) else { return };
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
#[divan::bench(args = ["memory", "lmdb", "redis"], sample_count = 10, sample_size = 1)]
fn put_batched_100(bencher: divan::Bencher, backend: &str) {
    let mut all = backends();
    let Some((_, store, _server)) = all.iter_mut().find(|(n, ..)| *n == backend) else { return };
    bencher.counter(divan::counter::ItemsCount::new(KEYS)).bench_local(|| {
        for chunk in 0..KEYS / 100 {
            let ops = (0..100).map(|i| StoreOp::KvPut { key: key(chunk * 100 + i), value: "v".repeat(64) }).collect();
            for r in store.execute_batch(ops) {
                r.expect("put");
            }
        }
    });
}
