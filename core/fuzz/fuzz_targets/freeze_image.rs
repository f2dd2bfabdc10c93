//! A whole hot-swap freeze as a new binary reads it (game-wide meta plus entity records)
//! restored into a world: a corrupt or hostile freeze must be refused with an error, never
//! panic the restoring game. The input is split into the meta and up to 8 records by
//! length bytes.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use oxworld_engine::entity::{Entity, Registry};
use oxworld_engine::world::{Frozen, World};

#[derive(Default)]
struct Thing;
impl Entity for Thing {}

fuzz_target!(|data: &[u8]| {
    let mut parts = Vec::new();
    let mut rest = data;
    while parts.len() < 9 && !rest.is_empty() {
        let n = usize::from(rest[0]).min(rest.len() - 1);
        parts.push(rest[1..1 + n].to_vec());
        rest = &rest[1 + n..];
    }
    if parts.is_empty() {
        return;
    }
    let meta = parts.remove(0);
    let mut reg = Registry::new();
    reg.entity("Thing", Thing::default);
    reg.boot("Thing");
    let now = Instant::now();
    let _ = World::restore(reg, 1, 1, None, 1u64, (now, 0), &Frozen { meta, records: parts });
});
