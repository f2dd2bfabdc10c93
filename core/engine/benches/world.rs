//! The game's logic per client call, in the sans-IO world: one `Call` from a client decoded,
//! its entity's method run (inside the per-handler panic boundary), its reply to the client
//! encoded into a `ToClients`. No sockets: the CPU one call costs a game loop besides IO. Also
//! what the loop's own metrics cost per iteration (`LoopStats::record`: one relaxed add each
//! for iterations, busy time, events, frames and a histogram bucket).
//! Run: `cargo bench -p oxworld-engine --bench world`.

use divan::Bencher;
use oxworld_engine::{Args, CallError, Ctx, Entity, Expose, Id, Registry, Value, World};
use oxworld_net::method_id;
use oxworld_net::msg::{Call, Caller, CreateBoot};
use oxworld_net::value::encode_args;

fn main() {
    divan::main();
}

#[derive(Default)]
struct Echo;

impl Entity for Echo {}

impl Echo {
    fn echo(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        ctx.call_client("echo_reply", args.into_vec());
        Ok(())
    }
}

const CLIENT: Id = Id([0xc1; 16]);
const BOOT: Id = Id([0xb0; 16]);

/// A world whose boot entity is bound to a client, and the call that client sends.
fn world() -> (World, Call) {
    let mut reg = Registry::new();
    reg.entity("Echo", Echo::default).method("echo", Expose::OwnClient, Echo::echo);
    reg.boot("Echo");
    let now = oxworld_runtime::clock_now();
    let mut w = World::new(reg, 1, 1, None, 7, (now, 1_700_000_000_000)).expect("registry");
    w.handle(now, CreateBoot { boot: BOOT, gate: 1, client: CLIENT, token: Id::NIL });
    w.drain_output().for_each(drop);
    let mut args = Vec::new();
    encode_args(&[Value::from("oxworld-echo-payload"), Value::Int(42), Value::Float(1.5)], &mut args);
    let call =
        Call { target: BOOT, method: method_id("echo"), caller: Caller::Client { gate: 1, client: CLIENT }, args };
    (w, call)
}

/// One client call to an entity and its reply, through `World::handle` and `drain_output`.
#[divan::bench(sample_count = 200, sample_size = 64)]
fn client_call_and_reply(b: Bencher) {
    let (mut w, call) = world();
    let now = oxworld_runtime::clock_now();
    b.bench_local(|| {
        w.handle(now, divan::black_box(call.clone()));
        w.drain_output().count()
    });
}

/// The same with the clock a game process gives its world: every handler timed for the call
/// latency histogram, and the output drained as the game does (with traces).
#[divan::bench(sample_count = 200, sample_size = 64)]
fn client_call_and_reply_timed(b: Bencher) {
    let (mut w, call) = world();
    w.set_clock(Box::new(oxworld_runtime::clock_now));
    let now = oxworld_runtime::clock_now();
    b.bench_local(|| {
        w.handle(now, divan::black_box(call.clone()));
        w.drain_output_traced().count()
    });
}

/// The loop's metrics per iteration: what every iteration of every process pays for them.
#[divan::bench(sample_count = 200, sample_size = 1024)]
fn loop_stats_record(b: Bencher) {
    let stats = oxworld_runtime::loopstats::LoopStats::default();
    let busy = std::time::Duration::from_micros(37);
    b.bench_local(|| stats.record(divan::black_box(busy), divan::black_box(3), divan::black_box(2)));
}
