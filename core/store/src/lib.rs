//! oxworld's storage backends behind the engine's `Store` trait: embedded LMDB ([`lmdb`], the
//! default, plus [`lmdb::FreezeDb`] for hot-swap freezes) and Redis ([`redis`], for clusters
//! spread over machines). [`open`] picks one from the `[storage]` config. Every backend, the
//! engine's `MemStore` included, passes one test suite (`suite`, test builds only).

pub mod lmdb;
pub mod redis;

#[cfg(test)]
mod suite;
#[cfg(test)]
mod testserver;

use oxworld_engine::store::{MemStore, Store, StoreError, StoreErrorKind};
use oxworld_net::config::StorageConfig;

/// Opens the backend `cfg` names.
pub fn open(cfg: &StorageConfig) -> Result<Box<dyn Store>, StoreError> {
    match cfg.backend.as_str() {
        "lmdb" => Ok(Box::new(lmdb::LmdbStore::open(&cfg.dir, cfg.map_size_mb << 20)?)),
        "redis" => Ok(Box::new(redis::RedisStore::open(&cfg.redis_url)?)),
        "memory" => Ok(Box::new(MemStore::default())),
        other => Err(StoreError::new(StoreErrorKind::Other, format!("unknown storage backend {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use oxworld_engine::store::MemStore;

    use crate::suite;

    #[test]
    fn memory_backend_passes_the_suite() {
        let mut s = MemStore::default();
        suite::suite(&mut s);
        suite::after_reopen(&mut s);
        suite::many_keys(&mut MemStore::default());
        suite::batch(&mut MemStore::default());
    }
}
