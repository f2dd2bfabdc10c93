//! What saving changed persistent entities costs, for choosing `save_interval_s`: a world of
//! 10,000 or 100,000 persistent avatars (ten persistent attributes, about 200 bytes stored)
//! of which 10 % changed since the last save.
//! - `save_pass`: the game thread's part over one interval (its ten save slices: find the
//!   changed entities, encode their persistent attributes, queue a `Save` each), and
//!   `save_slice`, one slice of it: the pause one tick of the game loop takes to save.
//! - `store_saves`: the store thread's part, those saves run as the store thread runs them
//!   (batches of `MAX_BATCH`, each LMDB batch one durable commit; Redis one round trip each),
//!   on LMDB (temp directory) and Redis (a private redis-server on a free port).
//!
//! With mimalloc, as in a game process. Run: `cargo bench -p oxworld-store --bench save`.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use oxworld_engine::store::{MAX_BATCH, MemStore, Store, StoreOp, StoreReply};
use oxworld_engine::{Args, AttrFlags, CallError, Ctx, Entity, Expose, Id, Registry, Value, World};
use oxworld_net::msg::{Call, Caller, CreateEntity};
use oxworld_store::lmdb::LmdbStore;
use oxworld_store::redis::RedisStore;

#[path = "../src/testserver.rs"]
mod testserver;
use testserver::RedisServer;

/// The allocator every game process runs with (`oxworld-core`'s default).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

const SIZES: [usize; 2] = [10_000, 100_000];
const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Avatar;

impl Entity for Avatar {
    fn on_created(&mut self, ctx: &mut Ctx<'_>) {
        let mut a = ctx.attrs();
        for (i, name) in ATTRS.iter().enumerate() {
            a.set(name, Value::from(format!("value-{i:02}-of-an-avatar")));
        }
    }
}

impl Avatar {
    fn touch(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        ctx.attrs().set("level", args.int(0)?);
        Ok(())
    }
}

const ATTRS: [&str; 10] = ["name", "level", "prof", "exp", "gold", "title", "guild", "home", "pet", "mount"];

/// A world of `n` persistent avatars, all saved once.
fn world(n: usize) -> (World, Vec<Id>, Instant) {
    let mut reg = Registry::new();
    let mut t = reg.entity("Avatar", Avatar::default).persistent().method("touch", Expose::Server, Avatar::touch);
    for name in ATTRS {
        t = t.attr(name, AttrFlags::CLIENT | AttrFlags::PERSISTENT);
    }
    reg.boot("Avatar");
    let now = Instant::now();
    let mut w = World::new(reg, 1, 1, None, 7, (now, 1_700_000_000_000)).expect("registry");
    w.set_save_interval(INTERVAL);
    let ids: Vec<Id> = (0..n as u64)
        .map(|i| {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&(i + 1).to_le_bytes());
            Id(b)
        })
        .collect();
    for &id in &ids {
        w.handle(now, CreateEntity { id, game: 1, type_name: "Avatar".into(), space_kind: None });
    }
    w.drain_output().for_each(drop);
    let mut store = MemStore::default();
    let mut at = now;
    for _ in 0..2 {
        at += INTERVAL;
        w.tick(at);
        for (ticket, op) in w.take_store_ops() {
            let r = store.execute(op);
            w.store_done(at, ticket, r);
        }
    }
    (w, ids, at)
}

/// Changes one attribute of every tenth avatar (as their players would over an interval).
fn touch_tenth(w: &mut World, ids: &[Id], now: Instant, round: i64) {
    let mut args = Vec::new();
    oxworld_net::value::encode_args(&[Value::Int(round)], &mut args);
    for &id in ids.iter().step_by(10) {
        let method = oxworld_net::method_id("touch");
        w.handle(now, Call { target: id, method, caller: Caller::Server(Id::NIL), args: args.clone() });
    }
    w.drain_output().for_each(drop);
}

/// The game thread's saving over one interval (its ten slices, one tick each): finds the
/// 10 % changed, encodes, queues. (The store's answers to the previous interval and the next
/// changes are made untimed.)
#[divan::bench(args = SIZES, sample_count = 10, sample_size = 1)]
fn save_pass(bencher: divan::Bencher, n: usize) {
    let (w, ids, t0) = world(n);
    let state = RefCell::new((w, t0, 0i64, Vec::new()));
    bencher
        .counter(divan::counter::ItemsCount::new(n / 10))
        .with_inputs(|| {
            let (w, at, round, done) = &mut *state.borrow_mut();
            for ticket in done.drain(..) {
                w.store_done(*at, ticket, Ok(StoreReply::Done));
            }
            *round += 1;
            touch_tenth(w, &ids, *at, *round);
        })
        .bench_local_values(|()| {
            let (w, at, _, done) = &mut *state.borrow_mut();
            for _ in 0..oxworld_engine::world::SAVE_SLICES {
                *at += INTERVAL / oxworld_engine::world::SAVE_SLICES;
                w.tick(*at);
                done.extend(w.take_store_ops().into_iter().map(|(ticket, _)| ticket));
            }
            assert_eq!(done.len(), n.div_ceil(10), "one save per changed avatar");
        });
}

/// One slice of it: what one tick of the game loop spends saving (the pause it adds).
#[divan::bench(args = SIZES, sample_count = 50, sample_size = 1)]
fn save_slice(bencher: divan::Bencher, n: usize) {
    let (w, ids, t0) = world(n);
    let state = RefCell::new((w, t0, 0i64, Vec::new()));
    bencher
        .with_inputs(|| {
            let (w, at, round, done) = &mut *state.borrow_mut();
            *round += 1;
            if *round % i64::from(oxworld_engine::world::SAVE_SLICES) == 1 {
                for ticket in done.drain(..) {
                    w.store_done(*at, ticket, Ok(StoreReply::Done));
                }
                touch_tenth(w, &ids, *at, *round);
            }
        })
        .bench_local_values(|()| {
            let (w, at, _, done) = &mut *state.borrow_mut();
            *at += INTERVAL / oxworld_engine::world::SAVE_SLICES;
            w.tick(*at);
            done.extend(w.take_store_ops().into_iter().map(|(ticket, _)| ticket));
        });
}

/// The saves of one interval (10 % of `n`), as the store thread runs them.
fn saves(n: usize) -> Vec<StoreOp> {
    let (mut w, ids, t0) = world(n);
    let at = t0 + INTERVAL;
    touch_tenth(&mut w, &ids, at, 1);
    w.tick(at);
    w.take_store_ops().into_iter().map(|(_, op)| op).collect()
}

fn run_batches(store: &mut dyn Store, ops: Vec<StoreOp>) {
    let mut ops = ops.into_iter().peekable();
    while ops.peek().is_some() {
        let batch: Vec<StoreOp> = ops.by_ref().take(MAX_BATCH).collect();
        for r in store.execute_batch(batch) {
            r.expect("saved");
        }
    }
}

#[divan::bench(args = SIZES, sample_count = 10, sample_size = 1)]
fn store_saves_lmdb(bencher: divan::Bencher, n: usize) {
    let ops = saves(n);
    let bytes: usize = ops.iter().map(|op| if let StoreOp::Save { data, .. } = op { data.len() } else { 0 }).sum();
    eprintln!("{} saves of {} bytes each on average", ops.len(), bytes / ops.len().max(1));
    let dir = tempfile::Builder::new().prefix("oxworld-bench-save-").tempdir().expect("temp dir");
    let mut store = LmdbStore::open(dir.path(), 1 << 30).expect("lmdb");
    bencher
        .counter(divan::counter::ItemsCount::new(ops.len()))
        .with_inputs(|| ops.clone())
        .bench_local_values(|ops| run_batches(&mut store, ops));
}

#[divan::bench(args = SIZES, sample_count = 10, sample_size = 1)]
fn store_saves_redis(bencher: divan::Bencher, n: usize) {
    let ops = saves(n);
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let mut store = RedisStore::open(&server.url).expect("redis");
    bencher
        .counter(divan::counter::ItemsCount::new(ops.len()))
        .with_inputs(|| ops.clone())
        .bench_local_values(|ops| run_batches(&mut store, ops));
}
