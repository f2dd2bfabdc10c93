//! A deterministic in-memory cluster (STYLE P10): one dispatcher, two games and a gate
//! stand-in, wired through the real `DispatcherApp` and `World` state machines and real frames
//! (so the dispatcher routes by header as in production); services, and migration under a
//! stream of calls, without sockets or sleeps.

use std::path::Path;
use std::time::{Duration, Instant};

use oxworld_net::app::{App, ConnId, Event, Outbox};
use oxworld_net::client_proto::{Pos, ServerMsg};
use oxworld_net::config::Config;
use oxworld_net::msg::{
    Call, Caller, ClientConnected, FromGame, Hello, INTERNAL_PROTOCOL_VERSION, Message, ProcKind, ToGame, ToGate,
    origin_of,
};
use oxworld_net::value::encode_args;
use oxworld_net::{Id, Value, method_id};

use super::*;
use crate::dispatcher::DispatcherApp;
use crate::entity::{Args, CallError, Entity, Expose, Registry, id_value};

const G1: ConnId = ConnId(1);
const G2: ConnId = ConnId(2);
const GATE: ConnId = ConnId(3);

/// Counts calls and checks they arrive in order, exactly once; hops between spaces.
#[derive(Default)]
struct Walker {
    next: i64,
}

impl Entity for Walker {
    fn save(&self) -> Value {
        Value::Int(self.next)
    }
    fn load(&mut self, state: Value) {
        self.next = state.as_int().unwrap_or(0);
    }
    fn on_migrate_failed(&mut self, ctx: &mut Ctx<'_>, reason: &str) {
        ctx.attrs().set("migrate_failed", reason);
    }
    fn on_call_failed(&mut self, ctx: &mut Ctx<'_>, _target: Id, _method: u32, reason: &str) {
        ctx.attrs().set("call_failed", reason);
    }
}

impl Walker {
    fn count(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let seq = args.int(0)?;
        if seq != self.next + 1 {
            let bad = ctx.attrs().int("bad");
            ctx.attrs().set("bad", bad + 1);
        }
        self.next = seq;
        ctx.attrs().set("count", seq);
        ctx.call_client("counted", vec![Value::Int(seq), Value::Int(i64::from(ctx.game_id()))]);
        Ok(())
    }
    fn hop(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let space = args.id(0)?;
        ctx.enter_space(space, Pos::at(1.0, 0.0, 1.0)).map_err(|e| CallError::Failed(e.to_string()))
    }
    /// Grows an attribute to `args[0]` bytes.
    fn bloat(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        ctx.attrs().set("ballast", "x".repeat(args.int(0)? as usize));
        Ok(())
    }
    /// Calls `args[0]` with `args[1]` bytes of arguments.
    fn send_big(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let big = "y".repeat(args.int(1)? as usize);
        ctx.call(args.id(0)?, "count", vec![Value::from(big.as_str())]);
        Ok(())
    }
    fn tick(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        let t = ctx.attrs().int("ticks");
        ctx.attrs().set("ticks", t + 1);
        Ok(())
    }
}

/// A sharded service that counts pings.
#[derive(Default)]
struct Online;
impl Entity for Online {}
impl Online {
    fn ping(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        let n = ctx.attrs().int("pings");
        ctx.attrs().set("pings", n + 1);
        Ok(())
    }
    fn spread(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        let reached = ctx.call_service_all("Online", "ping", vec![]);
        ctx.attrs().set("reached", reached as i64);
        for k in ["alice", "bob", "carol"] {
            ctx.call_service_shard_key("Online", k, "ping", vec![]);
        }
        Ok(())
    }
}

fn registry() -> Registry {
    let mut reg = Registry::new();
    reg.service("Online", Online::default, 3).method("ping", Expose::Server, Online::ping).method(
        "spread",
        Expose::Server,
        Online::spread,
    );
    reg.entity("Walker", Walker::default)
        .aoi(10.0)
        .attr("count", crate::attr::AttrFlags::CLIENT)
        .method("count", Expose::OwnClient, Walker::count)
        .method("hop", Expose::Server, Walker::hop)
        .method("bloat", Expose::Server, Walker::bloat)
        .method("send_big", Expose::Server, Walker::send_big)
        .method("tick", Expose::Server, Walker::tick);
    reg.boot("Walker");
    reg
}

struct Sim {
    now: Instant,
    d: DispatcherApp,
    out: Outbox,
    worlds: [World; 2],
    /// What the gate delivered to the client, decoded.
    client: Vec<ServerMsg>,
    /// Games whose process "died": no longer ticked or heard.
    dead: [bool; 2],
}

fn enc<M: Message>(m: &M) -> Vec<u8> {
    m.to_frame(0)
}

impl Sim {
    fn new() -> Sim {
        let cfg = Config::parse(
            Path::new("sim.ini"),
            "[deployment]\ndesired_dispatchers=1\ndesired_games=2\ndesired_gates=1\nsecret=s\n",
        )
        .expect("config");
        let now = Instant::now();
        let mut d = DispatcherApp::new(&cfg, 1);
        let mut out = Outbox::new();
        let peer = "127.0.0.1:1".parse().expect("addr");
        for (conn, kind, id) in [(G1, ProcKind::Game, 1), (G2, ProcKind::Game, 2), (GATE, ProcKind::Gate, 1)] {
            d.handle(now, Event::Accepted { conn, listener: 0, peer, resume: false, session: false }, &mut out);
            let hello = Hello {
                version: INTERNAL_PROTOCOL_VERSION,
                kind,
                id,
                secret: "s".into(),
                incarnation: u64::from(id),
                restored: false,
            };
            d.handle(now, Event::Frame { conn, data: enc(&hello), at: None }, &mut out);
            if kind == ProcKind::Game {
                let last = oxworld_net::msg::Announce { last: true, entities: vec![] };
                d.handle(now, Event::Frame { conn, data: enc(&last), at: None }, &mut out);
            }
        }
        out.take_frames();
        let mk = |g: u16| World::new(registry(), g, 1, None, u64::from(g), (now, 1_700_000_000_000)).expect("world");
        let mut worlds = [mk(1), mk(2)];
        for w in &mut worlds {
            w.set_online_games(&[1, 2]);
        }
        let mut sim = Sim { now, d, out, worlds, client: Vec::new(), dead: [false; 2] };
        sim.settle();
        sim
    }

    /// Moves messages until nothing is in flight.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for (i, conn) in [(0usize, G1), (1, G2)] {
                let msgs: Vec<FromGame> = self.worlds[i].drain_output().map(|(_, m)| m).collect();
                if self.dead[i] {
                    continue;
                }
                for m in msgs {
                    moved = true;
                    let mut data = Vec::new();
                    m.encode(origin_of(ProcKind::Game, i as u16 + 1), &mut data);
                    self.d.handle(self.now, Event::Frame { conn, data, at: None }, &mut self.out);
                }
            }
            for (conn, frames) in self.out.take_frames() {
                for f in frames {
                    moved = true;
                    let to_game = || ToGame::decode(&f).expect("dispatcher output decodes");
                    match conn {
                        G1 => self.worlds[0].handle(self.now, to_game()),
                        G2 => self.worlds[1].handle(self.now, to_game()),
                        GATE => {
                            if let Ok(ToGate::ToClients(tc)) = ToGate::decode(&f) {
                                for _ in &tc.clients {
                                    self.client.push(ServerMsg::decode(&tc.payload).expect("client msg"));
                                }
                            }
                        }
                        other => panic!("unexpected connection {other}"),
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the simulated cluster did not settle");
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        for (i, w) in self.worlds.iter_mut().enumerate() {
            if !self.dead[i] {
                w.tick(self.now);
            }
        }
        self.settle();
    }

    fn kill(&mut self, game: usize) {
        self.dead[game] = true;
        let conn = [G1, G2][game];
        let reason = oxworld_net::app::CloseReason::PeerClosed;
        self.d.handle(self.now, Event::Closed { conn, reason }, &mut self.out);
        self.settle();
    }

    /// Service providers (shard -> game) as the live games' mirrors see them; panics if
    /// they disagree.
    fn providers(&self) -> Vec<u16> {
        let mut seen = None;
        for (i, w) in self.worlds.iter().enumerate() {
            if self.dead[i] {
                continue;
            }
            let v: Vec<u16> =
                (0..3).filter_map(|s| w.core.services.get(&("Online".to_owned(), s)).map(|(_, g)| *g)).collect();
            if let Some(prev) = &seen {
                assert_eq!(prev, &v, "mirrors agree");
            }
            seen = Some(v);
        }
        seen.unwrap_or_default()
    }

    fn online_instances(&self) -> usize {
        self.worlds
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.dead[*i])
            .map(|(_, w)| w.entities.values().filter(|s| w.reg.types[s.ty].name == "Online").count())
            .sum()
    }

    /// The client (gate 1, CLIENT) calls `method` on `target`.
    fn client_call(&mut self, target: Id, method: &str, args: Vec<Value>) {
        let mut a = Vec::new();
        encode_args(&args, &mut a);
        let caller = Caller::Client { gate: 1, client: CLIENT };
        let m = Call { target, method: method_id(method), caller, args: a };
        self.d.handle(self.now, Event::Frame { conn: GATE, data: enc(&m), at: None }, &mut self.out);
    }

    fn server_call(&mut self, target: Id, method: &str, args: Vec<Value>) {
        let mut a = Vec::new();
        encode_args(&args, &mut a);
        let m = Call { target, method: method_id(method), caller: Caller::Server(Id::NIL), args: a };
        self.d.handle(self.now, Event::Frame { conn: G1, data: enc(&m), at: None }, &mut self.out);
    }

    fn holder(&self, id: Id) -> Vec<u16> {
        (0..2).filter(|&i| self.worlds[i].has_entity(id)).map(|i| i as u16 + 1).collect()
    }
}

const CLIENT: Id = Id([0xc1; 16]);
const WALKER: Id = Id([0x77; 16]);

#[test]
fn services_are_created_once_reached_by_shard_and_recreated_when_their_game_dies() {
    let mut sim = Sim::new();
    for _ in 0..3 {
        sim.advance(Duration::from_secs(1));
    }
    let p = sim.providers();
    assert_eq!(p.len(), 3, "every shard has a provider: {p:?}");
    assert_eq!(sim.online_instances(), 3, "exactly one instance per shard");
    // Reach them: all shards, and by key.
    let any = sim.worlds[0].core.services[&("Online".to_owned(), 0)].0;
    // The typed queries agree with the registry (GoWorld's GetServiceEntityID,
    // GetServiceShardCount, CheckServiceEntitiesReady).
    let nil = sim.worlds[0].core.nil_space;
    sim.worlds[0].with_entity(nil, Caller::Server(Id::NIL), |_, ctx| {
        assert_eq!(ctx.service_shard_count("Online"), 3);
        assert!(ctx.service_ready("Online"));
        assert_eq!(ctx.service_entity("Online", 0), Some(any));
        assert_eq!(ctx.service_entity("Online", 7), None);
        assert_eq!(ctx.service_shard_count("Nope"), 0);
        assert!(!ctx.service_ready("Nope"));
        Ok(())
    });
    sim.server_call(any, "spread", vec![]);
    sim.settle();
    let pings: i64 = sim
        .worlds
        .iter()
        .flat_map(|w| {
            w.entities
                .values()
                .filter(|s| w.reg.types[s.ty].name == "Online")
                .map(|s| s.attrs.get("pings").and_then(Value::as_int).unwrap_or(0))
        })
        .sum();
    assert_eq!(pings, 3 + 3, "call_service_all reached 3 shards, shard_key calls 3 more");
    // Game 2 dies: its shards come back on game 1.
    let on_two = p.iter().filter(|&&g| g == 2).count();
    sim.kill(1);
    sim.settle();
    assert!(on_two > 0, "the shards are spread over both games");
    {
        let nil = sim.worlds[0].core.nil_space;
        sim.worlds[0].with_entity(nil, Caller::Server(Id::NIL), |_, ctx| {
            assert!(!ctx.service_ready("Online"), "game 2's shards are gone until re-created");
            Ok(())
        });
    }
    for _ in 0..(SERVICE_FALLBACK_CHECKS + 2) {
        sim.advance(Duration::from_secs(1));
    }
    assert_eq!(sim.providers(), vec![1, 1, 1], "all shards on the surviving game (game 2 had {on_two})");
    assert_eq!(sim.online_instances(), 3);
}

/// Nothing is sent that the dispatcher would refuse: with a 64 KiB internal frame limit, an
/// entity whose image outgrew it stays where it is (its migration cancelled, the entity told,
/// back in its space, the calls held meanwhile answered in order), and a call with arguments
/// too big fails back to its caller; the links and every other route are untouched.
#[test]
fn oversized_messages_are_refused_at_the_sender() {
    let mut sim = Sim::new();
    for w in &mut sim.worlds {
        w.set_max_frame(64 << 10);
    }
    let spaces = [Id([0x51; 16]), Id([0x52; 16])];
    for (i, s) in spaces.iter().enumerate() {
        sim.worlds[i].create_space_now(*s, i as i64 + 1);
    }
    let m = ClientConnected { boot: WALKER, gate: 1, client: CLIENT, token: Id::NIL };
    sim.d.handle(sim.now, Event::Frame { conn: GATE, data: enc(&m), at: None }, &mut sim.out);
    sim.settle();
    sim.server_call(WALKER, "hop", vec![id_value(spaces[0])]);
    sim.settle();
    sim.server_call(WALKER, "bloat", vec![Value::Int(100_000)]);
    sim.server_call(WALKER, "hop", vec![id_value(spaces[1])]);
    for seq in 1..=3 {
        sim.client_call(WALKER, "count", vec![Value::Int(seq)]);
    }
    sim.settle();
    assert_eq!(sim.holder(WALKER), vec![1], "the entity stayed");
    let w = &mut sim.worlds[0];
    let mut seen = None;
    w.with_entity(WALKER, Caller::Server(Id::NIL), |_, ctx| {
        seen = Some((ctx.space(), ctx.attrs().str("migrate_failed").to_owned()));
        Ok(())
    });
    let (space, failed) = seen.expect("walker exists");
    assert_eq!(space, spaces[0], "back in the space it left");
    assert!(failed.contains("exceeds the internal frame limit"), "{failed}");
    assert_eq!(w.stats().oversized, 1);
    let counted: Vec<i64> = sim
        .client
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Call { method, args, .. } if method == "counted" => args[0].as_int(),
            _ => None,
        })
        .collect();
    assert_eq!(counted, vec![1, 2, 3], "calls held during the attempt are answered, in order");
    // A call with arguments too big fails back to the caller.
    let other = Id([0x7e; 16]);
    sim.server_call(WALKER, "send_big", vec![id_value(other), Value::Int(100_000)]);
    sim.settle();
    let mut failed = String::new();
    sim.worlds[0].with_entity(WALKER, Caller::Server(Id::NIL), |_, ctx| {
        failed = ctx.attrs().str("call_failed").to_owned();
        Ok(())
    });
    assert!(failed.contains("exceed the internal frame limit"), "{failed:?} {:?}", sim.worlds[0].stats());
    // Still routable: a normal call is answered.
    sim.client_call(WALKER, "count", vec![Value::Int(4)]);
    sim.settle();
    assert!(sim.client.iter().any(
        |m| matches!(m, ServerMsg::Call { method, args, .. } if method == "counted" && args[0].as_int() == Some(4))
    ));
}

#[test]
fn migration_back_and_forth_under_a_stream_of_calls_loses_nothing() {
    let mut sim = Sim::new();
    // A space on each game; the walker boots on game 1 with a client.
    let spaces = [Id([0x51; 16]), Id([0x52; 16])];
    for (i, s) in spaces.iter().enumerate() {
        sim.worlds[i].create_space_now(*s, i as i64 + 1);
    }
    let m = ClientConnected { boot: WALKER, gate: 1, client: CLIENT, token: Id::NIL };
    sim.d.handle(sim.now, Event::Frame { conn: GATE, data: enc(&m), at: None }, &mut sim.out);
    sim.settle();
    assert_eq!(sim.holder(WALKER), vec![1]);
    // A repeating timer that must survive every hop.
    sim.worlds[0]
        .with_entity(WALKER, Caller::Server(Id::NIL), |_, ctx| {
            ctx.add_repeat_timer(Duration::from_millis(10), "tick", vec![])
                .map(|_| ())
                .map_err(|e| CallError::Failed(e.to_string()))
        })
        .expect("walker exists")
        .expect("timer added");
    let mut seq = 0;
    for hop in 0..10 {
        // Calls before, interleaved with and after the hop request, all in flight at once.
        for _ in 0..5 {
            seq += 1;
            sim.client_call(WALKER, "count", vec![Value::Int(seq)]);
        }
        sim.server_call(WALKER, "hop", vec![id_value(spaces[(hop + 1) % 2])]);
        for _ in 0..5 {
            seq += 1;
            sim.client_call(WALKER, "count", vec![Value::Int(seq)]);
        }
        sim.settle();
        for _ in 0..3 {
            seq += 1;
            sim.client_call(WALKER, "count", vec![Value::Int(seq)]);
        }
        sim.advance(Duration::from_millis(10));
        assert_eq!(sim.holder(WALKER), vec![((hop + 1) % 2) as u16 + 1], "hop {hop}");
    }
    let counted: Vec<i64> = sim
        .client
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Call { method, args, .. } if method == "counted" => args[0].as_int(),
            _ => None,
        })
        .collect();
    assert_eq!(counted, (1..=seq).collect::<Vec<_>>(), "every call exactly once, in order");
    let games: std::collections::BTreeSet<i64> = sim
        .client
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Call { method, args, .. } if method == "counted" => args[1].as_int(),
            _ => None,
        })
        .collect();
    assert_eq!(games.len(), 2, "answered by both games");
    assert!(
        !sim.client.iter().any(|m| matches!(m, ServerMsg::DestroyEntity { id } if *id == WALKER)),
        "the client never saw its player destroyed"
    );
    let w = &sim.worlds[sim.holder(WALKER)[0] as usize - 1];
    let attrs = w.entities.get(&WALKER).map(|s| s.attrs.value().clone()).expect("walker");
    let Value::Map(m) = attrs else { panic!("attrs are a map") };
    assert_eq!(m.get("bad"), None, "no call out of order");
    assert_eq!(m.get("count"), Some(&Value::Int(seq)), "attributes travelled");
    let timed: u64 = sim.worlds.iter().map(|w| w.core.migration_time.count()).sum();
    assert!(timed >= 1, "every outgoing migration is timed for the metrics");
    assert!(sim.worlds.iter().all(|w| w.core.migration_started.is_empty()), "no migration left half-timed");
    assert!(m.get("ticks").and_then(Value::as_int).unwrap_or(0) >= 5, "the timer kept firing across games: {m:?}");
    assert_eq!(w.space_of(WALKER), Some(spaces[sim.holder(WALKER)[0] as usize - 1]));
    assert_eq!(w.core.clients.get(&WALKER).map(|c| c.client), Some(CLIENT), "client binding travelled");
    assert_eq!(sim.d.route_of(WALKER), Some(sim.holder(WALKER)[0]));
    assert_eq!(sim.d.stats().undeliverable, 0);
}
