//! Hot-swap cost inside a game process, for 10,000 and 100,000 entities (each with four
//! attributes and a repeating timer, all in the nil space): `World::freeze` (images), writing
//! them to LMDB (`FreezeDb::write`, durable), reading them back (`FreezeDb::read`) and
//! `World::restore`. The client-visible pause adds process exit and start and the dispatcher
//! round trips; `oxworld reload` reports it (BENCHMARKS.md).
//! Run: `cargo bench -p oxworld-store --bench freeze`.

use std::time::{Duration, Instant};

use oxworld_engine::world::Frozen;
use oxworld_engine::{Args, CallError, Ctx, Entity, Expose, Id, Registry, World};
use oxworld_net::msg::CreateEntity;
use oxworld_store::lmdb::FreezeDb;

fn main() {
    divan::main();
}

#[derive(Default)]
struct Npc;

impl Entity for Npc {
    fn on_created(&mut self, ctx: &mut Ctx<'_>) {
        let mut a = ctx.attrs();
        a.set("name", "npc");
        a.set("hp", 100i64);
        a.set("level", 7i64);
        a.set("title", "keeper of the benchmark");
        let _ = ctx.add_repeat_timer(Duration::from_secs(30), "wander", vec![]);
    }
}

impl Npc {
    fn wander(&mut self, _ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        Ok(())
    }
}

fn registry() -> Registry {
    let mut reg = Registry::new();
    reg.entity("Npc", Npc::default).method("wander", Expose::Server, Npc::wander);
    reg.boot("Npc");
    reg
}

/// A world with `n` Npcs.
fn world(n: usize, now: Instant) -> World {
    let mut w = World::new(registry(), 1, 1, None, 1, (now, 1_700_000_000_000)).expect("registry");
    for i in 0..n as u64 {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i + 1).to_be_bytes());
        let create = CreateEntity { id: Id(id), game: 1, type_name: "Npc".into(), space_kind: None };
        w.handle(now, create);
    }
    let _ = w.drain_output().count();
    w
}

const SIZES: [usize; 2] = [10_000, 100_000];

#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn freeze(bencher: divan::Bencher, n: usize) {
    let now = Instant::now();
    let mut w = world(n, now);
    bencher.bench_local(|| w.freeze(now));
}

#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn write_lmdb(bencher: divan::Bencher, n: usize) {
    let now = Instant::now();
    let frozen = world(n, now).freeze(now);
    let dir = std::env::temp_dir().join(format!("oxworld-bench-freeze-{n}-{}", std::process::id()));
    let mut db = FreezeDb::open(&dir, 8 << 30).expect("open");
    bencher.bench_local(|| db.write(&frozen.meta, &frozen.records).expect("write"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn read_lmdb(bencher: divan::Bencher, n: usize) {
    let now = Instant::now();
    let frozen = world(n, now).freeze(now);
    let dir = std::env::temp_dir().join(format!("oxworld-bench-thaw-{n}-{}", std::process::id()));
    let mut db = FreezeDb::open(&dir, 8 << 30).expect("open");
    db.write(&frozen.meta, &frozen.records).expect("write");
    bencher.bench_local(|| db.read().expect("read").expect("complete"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn restore(bencher: divan::Bencher, n: usize) {
    let now = Instant::now();
    let frozen: Frozen = world(n, now).freeze(now);
    bencher.bench_local(|| {
        World::restore(registry(), 1, 1, None, 2, (now, 1_700_000_000_000), &frozen).expect("restores")
    });
}
