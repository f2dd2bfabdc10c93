//! Migration cost in the engine's state machines: 1,000 entities, each migrating alone from
//! game 1 to game 2 through a real `DispatcherApp`, in memory (no sockets): time from the
//! `hop` call entering the dispatcher until the entity exists on game 2. Prints p50/p99/max.
//! Run: `cargo bench -p oxworld-engine --bench migrate`.

use std::path::Path;
use std::time::{Duration, Instant};

use oxworld_engine::dispatcher::DispatcherApp;
use oxworld_engine::{Args, CallError, Ctx, Entity, Expose, Id, Registry, World, id_value};
use oxworld_net::app::{App, ConnId, Event, Outbox};
use oxworld_net::client_proto::Pos;
use oxworld_net::config::Config;
use oxworld_net::method_id;
use oxworld_net::msg::{Call, Caller, CreateEntity, Hello, INTERNAL_PROTOCOL_VERSION, Message, ProcKind, ToGame};
use oxworld_net::value::encode_args;

#[derive(Default)]
struct Mover;

impl Entity for Mover {}

impl Mover {
    fn hop(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        ctx.attrs().set("hp", 100i64);
        ctx.enter_space(args.id(0)?, Pos::at(1.0, 0.0, 1.0)).map_err(|e| CallError::Failed(e.to_string()))
    }
}

fn registry() -> Registry {
    let mut reg = Registry::new();
    reg.entity("Mover", Mover::default).aoi(50.0).method("hop", Expose::Server, Mover::hop);
    reg.boot("Mover");
    reg
}

fn enc<M: Message>(m: &M) -> Vec<u8> {
    m.to_frame(1)
}

struct Cluster {
    now: Instant,
    d: DispatcherApp,
    out: Outbox,
    w: [World; 2],
}

impl Cluster {
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for (i, conn) in [(0usize, ConnId(1)), (1, ConnId(2))] {
                let msgs: Vec<_> = self.w[i].drain_output().map(|(_, m)| m).collect();
                for m in msgs {
                    moved = true;
                    let mut data = Vec::new();
                    m.encode(i as u16 + 1, &mut data);
                    self.d.handle(self.now, Event::Frame { conn, data, at: None }, &mut self.out);
                }
            }
            for (conn, frames) in self.out.take_frames() {
                for f in frames {
                    moved = true;
                    if let (Ok(m), Some(w)) = (ToGame::decode(&f), self.w.get_mut(conn.0 as usize - 1)) {
                        w.handle(self.now, m);
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }
}

fn main() {
    let cfg = Config::parse(
        Path::new("b.ini"),
        "[deployment]\ndesired_dispatchers=1\ndesired_games=2\ndesired_gates=1\nsecret=s\n",
    )
    .expect("config");
    let now = oxworld_runtime::clock_now();
    let mut d = DispatcherApp::new(&cfg, 1);
    let mut out = Outbox::new();
    let peer = "127.0.0.1:1".parse().expect("addr");
    for (c, id) in [(1u64, 1u16), (2, 2)] {
        d.handle(now, Event::Accepted { conn: ConnId(c), listener: 0, peer, resume: false, session: false }, &mut out);
        let hello = Hello {
            version: INTERNAL_PROTOCOL_VERSION,
            kind: ProcKind::Game,
            id,
            secret: "s".into(),
            incarnation: 0,
            restored: false,
        };
        d.handle(now, Event::Frame { conn: ConnId(c), data: enc(&hello), at: None }, &mut out);
    }
    out.take_frames();
    let mk = |g: u16| World::new(registry(), g, 1, None, u64::from(g), (now, 0)).expect("world");
    let mut c = Cluster { now, d, out, w: [mk(1), mk(2)] };
    for w in &mut c.w {
        w.set_online_games(&[1, 2]);
    }
    // A space on each game, 1,000 movers on game 1.
    let spaces = [Id([0x51; 16]), Id([0x52; 16])];
    for (i, s) in spaces.iter().enumerate() {
        let m = CreateEntity { id: *s, game: i as u16 + 1, type_name: "__space__".into(), space_kind: Some(1) };
        c.d.handle(now, Event::Frame { conn: ConnId(1), data: enc(&m), at: None }, &mut c.out);
    }
    let movers: Vec<Id> = (0..1000u32)
        .map(|i| {
            let mut b = [0x10u8; 16];
            b[..4].copy_from_slice(&i.to_le_bytes());
            Id(b)
        })
        .collect();
    for m in &movers {
        let msg = CreateEntity { id: *m, game: 1, type_name: "Mover".into(), space_kind: None };
        c.d.handle(now, Event::Frame { conn: ConnId(1), data: enc(&msg), at: None }, &mut c.out);
    }
    c.pump();
    let mut times = Vec::with_capacity(movers.len());
    for m in &movers {
        let mut args = Vec::new();
        encode_args(&[id_value(spaces[1])], &mut args);
        let call = Call { target: *m, method: method_id("hop"), caller: Caller::Server(Id::NIL), args };
        let t0 = oxworld_runtime::clock_now();
        c.d.handle(c.now, Event::Frame { conn: ConnId(1), data: enc(&call), at: None }, &mut c.out);
        c.pump();
        times.push(oxworld_runtime::clock_now() - t0);
        assert!(c.w[1].has_entity(*m) && !c.w[0].has_entity(*m), "migrated");
    }
    times.sort();
    let q = |p: f64| times[((times.len() as f64 - 1.0) * p) as usize];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "migration (in-memory, 1 dispatcher, 2 games, 1,000 entities one at a time): p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        us(q(0.5)),
        us(q(0.99)),
        us(q(1.0))
    );
}
