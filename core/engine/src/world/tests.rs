//! Unit tests of the world: one `World` driven by messages and time, its output decoded.

use std::time::{Duration, Instant};

use oxworld_net::client_proto::{Pos, ServerMsg};
use oxworld_net::msg::{Call, Caller, ClientDisconnected, ClientMove, CreateBoot, CreateEntity, FromGame};
use oxworld_net::value::encode_args;
use oxworld_net::{Id, Value, method_id};

use super::*;
use crate::entity::{Args, CallError, Entity, Expose, Registry, id_value};

#[derive(Default)]
struct Boot {
    created: bool,
    peer: Option<Id>,
    /// Calls of `spin` so far.
    spins: u64,
}

impl Entity for Boot {
    fn on_created(&mut self, ctx: &mut Ctx<'_>) {
        self.created = true;
        ctx.attrs().set("level", 1i64);
        ctx.attrs().set("secret", "s");
    }
    fn on_client_disconnected(&mut self, ctx: &mut Ctx<'_>) {
        ctx.destroy();
    }
}

impl Boot {
    fn echo(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        ctx.call_client("echo_reply", args.into_vec());
        Ok(())
    }
    fn secret(&mut self, _ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        Ok(())
    }
    fn mine(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let n = args.int(0)?;
        ctx.call_client("mine_reply", vec![Value::Int(n)]);
        Ok(())
    }
    fn spawn_local(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        let id = ctx.create_entity_locally("Helper").map_err(|e| CallError::Failed(e.to_string()))?;
        self.peer = Some(id);
        ctx.call(id, "ping", vec![id_value(ctx.id())]);
        Ok(())
    }
    fn grow(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        let mut a = ctx.attrs();
        a.set("level", 2i64);
        a.set("secret", "t");
        let mut bag = a.list_at("bag").map_err(|e| CallError::Failed(e.to_string()))?;
        bag.append(Value::Map(Default::default()));
        bag.map_at(0).map_err(|e| CallError::Failed(e.to_string()))?.set("item", "sword");
        ctx.call_client("grown", vec![]);
        ctx.attrs().set("level", 3i64);
        Ok(())
    }
    fn start_ticking(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        let t = ctx
            .add_repeat_timer(Duration::from_millis(100), "tock", vec![Value::Int(7)])
            .map_err(|e| CallError::Failed(e.to_string()))?;
        ctx.attrs().set("timer", Value::Int(t.0 as i64));
        ctx.add_timer(Duration::from_millis(250), "stop_ticking", vec![])
            .map_err(|e| CallError::Failed(e.to_string()))?;
        assert!(ctx.add_timer(Duration::ZERO, "no_such", vec![]).is_err());
        Ok(())
    }
    fn tock(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        ctx.call_client("tock", args.into_vec());
        Ok(())
    }
    fn stop_ticking(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        let t = crate::timer::TimerId(ctx.attrs().int("timer") as u64);
        assert!(ctx.cancel_timer(t));
        ctx.call_client("stopped", vec![]);
        Ok(())
    }
    /// A runaway: posts itself again, forever.
    fn spin(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        self.spins += 1;
        ctx.post("spin", vec![]);
        Ok(())
    }

    /// A bug: changes an attribute, then panics.
    fn boom(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        ctx.attrs().set("level", 99i64);
        let v: Vec<u8> = Vec::new();
        let _ = v[usize::from(ctx.game_id())];
        Ok(())
    }
    fn kick_me(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        ctx.kick_client(args.str(0)?);
        Ok(())
    }

    fn pong(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        ctx.call_client("pong", vec![Value::Int(args.int(0)?)]);
        Ok(())
    }
}

/// A player in spaces: aoi radius 10, an all_clients attribute, space hooks recorded.
#[derive(Default)]
pub(super) struct Player;
impl Entity for Player {
    fn on_enter_space(&mut self, ctx: &mut Ctx<'_>) {
        let kind = ctx.space_kind(ctx.space()).unwrap_or(-1);
        ctx.attrs().set("entered_kind", kind);
    }
    fn on_client_disconnected(&mut self, ctx: &mut Ctx<'_>) {
        ctx.destroy();
    }
}
impl Player {
    fn go(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let space = args.id(0)?;
        let x = args.get(1)?.as_float().unwrap_or(0.0) as f32;
        ctx.enter_space(space, Pos::at(x, 0.0, 0.0)).map_err(|e| CallError::Failed(e.to_string()))
    }
    fn walk(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let x = args.get(0)?.as_float().unwrap_or(0.0) as f32;
        ctx.set_position(x, 0.0, 0.0);
        Ok(())
    }
    fn shout(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        ctx.attrs().set("mood", "loud");
        // The args name whom the call reaches (`clients_watching`), for the test to check.
        let watching = ctx.clients_watching().into_iter().map(id_value).collect();
        let n = ctx.call_all_clients("shout", watching);
        assert_eq!(n, ctx.clients_watching().len());
        Ok(())
    }
}

/// A space that counts who entered.
#[derive(Default)]
struct Arena;
impl Entity for Arena {
    fn on_game_ready(&mut self, ctx: &mut Ctx<'_>) {
        let n = ctx.attrs().int("ready");
        ctx.attrs().set("ready", n + 1);
    }
    fn on_entity_enter_space(&mut self, ctx: &mut Ctx<'_>, _entity: Id) {
        let n = ctx.attrs().int("entered");
        ctx.attrs().set("entered", n + 1);
    }
}

/// Records AOI enters and leaves it is told about (`aoi_hooks`).
#[derive(Default)]
struct Sentry;
impl Entity for Sentry {
    fn on_enter_aoi(&mut self, ctx: &mut Ctx<'_>, other: Id) {
        let mut a = ctx.attrs();
        if let Ok(mut l) = a.list_at("log") {
            l.append(Value::from(format!("+{}", other.0[0]).as_str()));
        }
    }
    fn on_leave_aoi(&mut self, ctx: &mut Ctx<'_>, other: Id) {
        let mut a = ctx.attrs();
        if let Ok(mut l) = a.list_at("log") {
            l.append(Value::from(format!("-{}", other.0[0]).as_str()));
        }
    }
}

pub(super) struct Helper;
impl Entity for Helper {}
impl Helper {
    fn ping(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        ctx.call(args.id(0)?, "pong", vec![Value::Int(i64::from(ctx.game_id()))]);
        Ok(())
    }
}

pub(super) fn world() -> World {
    let mut reg = Registry::new();
    reg.entity("Boot", Boot::default)
        .method("echo", Expose::AnyClient, Boot::echo)
        .method("secret", Expose::Server, Boot::secret)
        .method("mine", Expose::OwnClient, Boot::mine)
        .method("spawn_local", Expose::OwnClient, Boot::spawn_local)
        .method("pong", Expose::Server, Boot::pong)
        .method("boom", Expose::OwnClient, Boot::boom)
        .method("kick_me", Expose::OwnClient, Boot::kick_me)
        .method("spin", Expose::OwnClient, Boot::spin)
        .method("grow", Expose::OwnClient, Boot::grow)
        .method("start_ticking", Expose::OwnClient, Boot::start_ticking)
        .method("tock", Expose::Server, Boot::tock)
        .method("stop_ticking", Expose::Server, Boot::stop_ticking)
        .attr("level", crate::attr::AttrFlags::ALL_CLIENTS)
        .attr("bag", crate::attr::AttrFlags::CLIENT);
    reg.entity("Helper", || Helper).method("ping", Expose::Server, Helper::ping);
    reg.entity("Player", Player::default)
        .aoi(10.0)
        .attr("mood", crate::attr::AttrFlags::ALL_CLIENTS)
        .attr("entered_kind", crate::attr::AttrFlags::CLIENT)
        .method("go", Expose::OwnClient, Player::go)
        .method("walk", Expose::OwnClient, Player::walk)
        .method("shout", Expose::OwnClient, Player::shout);
    reg.space("Arena", Arena::default).attr("entered", crate::attr::AttrFlags::ALL_CLIENTS);
    reg.entity("Sentry", Sentry::default).aoi(10.0).aoi_hooks();
    reg.boot("Boot");
    let now = Instant::now();
    World::new(reg, 1, 2, None, 42, (now, 1_700_000_000_000)).expect("valid registry")
}

pub(super) const GATE: u16 = 1;
pub(super) const CLIENT: Id = Id([0xc1; 16]);
pub(super) const BOOT: Id = Id([0xb0; 16]);

/// Client messages the world produced, decoded.
pub(super) fn client_msgs(w: &mut World) -> Vec<ServerMsg> {
    w.drain_output()
        .flat_map(|(_, m)| match m {
            FromGame::ToClients(tc) => {
                let msg = ServerMsg::decode(&tc.payload).expect("valid client msg");
                vec![msg; tc.clients.len()]
            }
            _ => Vec::new(),
        })
        .collect()
}

pub(super) fn client_call(w: &mut World, client: Id, target: Id, method: &str, args: Vec<Value>) {
    let mut enc = Vec::new();
    encode_args(&args, &mut enc);
    let caller = Caller::Client { gate: GATE, client };
    w.handle(Instant::now(), Call { target, method: method_id(method), args: enc, caller });
}

pub(super) fn booted() -> World {
    let mut w = world();
    w.handle(Instant::now(), CreateBoot { boot: BOOT, gate: GATE, client: CLIENT, token: Id::NIL });
    let msgs = client_msgs(&mut w);
    assert!(matches!(&msgs[..], [ServerMsg::CreateEntity { is_player: true, id, .. }] if *id == BOOT), "{msgs:?}");
    w
}

#[test]
fn attributes_reach_the_own_client_in_order() {
    let mut w = world();
    w.handle(Instant::now(), CreateBoot { boot: BOOT, gate: GATE, client: CLIENT, token: Id::NIL });
    let created = client_msgs(&mut w);
    let want_attrs = Value::Map([("level".to_owned(), Value::Int(1))].into());
    assert!(
        matches!(&created[..], [ServerMsg::CreateEntity { attrs, .. }] if *attrs == want_attrs),
        "create carries the visible attributes set in on_created, not the server-only one: {created:?}"
    );
    client_call(&mut w, CLIENT, BOOT, "grow", vec![]);
    let msgs = client_msgs(&mut w);
    // Changes before the client call arrive before it; the later change after it.
    assert!(matches!(&msgs[0], ServerMsg::AttrOps { ops, .. } if ops.len() == 4), "{msgs:?}");
    assert!(matches!(&msgs[1], ServerMsg::Call { method, .. } if method == "grown"));
    assert!(matches!(&msgs[2], ServerMsg::AttrOps { ops, .. } if ops.len() == 1));
    let mut replica = want_attrs;
    for m in &msgs {
        if let ServerMsg::AttrOps { ops, .. } = m {
            for op in ops {
                op.apply(&mut replica).expect("applies");
            }
        }
    }
    let bag = Value::List(vec![Value::Map([("item".to_owned(), Value::from("sword"))].into())]);
    assert_eq!(replica, Value::Map([("bag".to_owned(), bag), ("level".to_owned(), Value::Int(3))].into()));
}

#[test]
fn timers_fire_by_injected_time_and_cancel() {
    let mut w = booted();
    let t0 = Instant::now();
    let enc = {
        let mut b = Vec::new();
        encode_args(&[], &mut b);
        b
    };
    let caller = Caller::Client { gate: GATE, client: CLIENT };
    w.handle(t0, Call { target: BOOT, method: method_id("start_ticking"), args: enc, caller });
    client_msgs(&mut w);
    assert_eq!(w.timer_count(), 2);
    assert_eq!(w.core.timers.next_deadline(), Some(t0 + Duration::from_millis(100)));
    let mut seen = Vec::new();
    for step in 1..=6u64 {
        w.tick(t0 + Duration::from_millis(50 * step));
        for m in client_msgs(&mut w) {
            if let ServerMsg::Call { method, .. } = m {
                seen.push((50 * step, method));
            }
        }
    }
    let want: Vec<(u64, String)> = vec![(100, "tock".into()), (200, "tock".into()), (250, "stopped".into())];
    assert_eq!(seen, want);
    assert_eq!(w.timer_count(), 0);
    // Destroying an entity drops its timers.
    let mut w = booted();
    let caller = Caller::Client { gate: GATE, client: CLIENT };
    let mut b = Vec::new();
    encode_args(&[], &mut b);
    w.handle(t0, Call { target: BOOT, method: method_id("start_ticking"), args: b, caller });
    w.handle(t0, ClientDisconnected { owner: BOOT, gate: GATE, client: CLIENT, resumable: false });
    assert_eq!(w.timer_count(), 0);
}

/// Client messages per client id.
fn per_client(w: &mut World) -> std::collections::HashMap<Id, Vec<ServerMsg>> {
    let mut m: std::collections::HashMap<Id, Vec<ServerMsg>> = Default::default();
    for (_, msg) in w.drain_output() {
        if let FromGame::ToClients(tc) = msg {
            let decoded = ServerMsg::decode(&tc.payload).expect("valid");
            for client in tc.clients {
                m.entry(client).or_default().push(decoded.clone());
            }
        }
    }
    m
}

fn args(v: Vec<Value>) -> Vec<u8> {
    let mut b = Vec::new();
    encode_args(&v, &mut b);
    b
}

#[test]
fn spaces_aoi_and_client_views() {
    let mut reg_world = world();
    let w = &mut reg_world;
    let t0 = Instant::now();
    // Two players (boot override: Player) on clients A and B.
    let (ca, cb) = (Id([0xa0; 16]), Id([0xb0; 16]));
    let (pa, pb) = (Id([0x0a; 16]), Id([0x0b; 16]));
    let ty = w.reg.type_index("Player").expect("registered");
    w.create(ty, pa, Some(ClientRef { gate: GATE, client: ca, token: Id::NIL }));
    w.create(ty, pb, Some(ClientRef { gate: GATE, client: cb, token: Id::NIL }));
    assert_eq!(w.space_of(pa), Some(w.nil_space()));
    per_client(w);
    // A space of kind 7, created by entity code (a local op), then both enter it.
    let space = {
        let mut ctx_space = Id::NIL;
        w.with_entity(pa, Caller::Server(Id::NIL), |_, ctx| {
            ctx_space = ctx.create_space_locally(7);
            Ok(())
        });
        w.run_local();
        ctx_space
    };
    let call = |w: &mut World, client: Id, target: Id, m: &str, a: Vec<Value>| {
        let caller = Caller::Client { gate: GATE, client };
        w.handle(t0, Call { target, method: method_id(m), args: args(a), caller });
    };
    call(w, ca, pa, "go", vec![id_value(space), Value::Float(0.0)]);
    let msgs = per_client(w);
    let a_msgs = &msgs[&ca];
    assert!(
        matches!(&a_msgs[0], ServerMsg::CreateEntity { id, is_player: false, attrs, .. }
        if *id == space && matches!(attrs, Value::Map(m) if m.get("_kind") == Some(&Value::Int(7)))),
        "{a_msgs:?}"
    );
    call(w, cb, pb, "go", vec![id_value(space), Value::Float(5.0)]);
    let msgs = per_client(w);
    // B sees the space then A; A sees B appear (both radius 10, distance 5).
    let b_ids: Vec<Id> = msgs[&cb]
        .iter()
        .filter_map(|m| match m {
            ServerMsg::CreateEntity { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(b_ids, vec![space, pa], "{:?}", msgs[&cb]);
    assert!(msgs[&ca].iter().any(|m| matches!(m, ServerMsg::CreateEntity { id, .. } if *id == pb)));
    // all_clients attributes and call_all_clients reach the neighbour's client.
    call(w, ca, pa, "shout", vec![]);
    let msgs = per_client(w);
    assert!(msgs[&cb].iter().any(|m| matches!(m, ServerMsg::AttrOps { id, .. } if *id == pa)), "{:?}", msgs[&cb]);
    let shout = ServerMsg::Call { id: pa, method: "shout".into(), args: vec![id_value(pa), id_value(pb)] };
    assert!(msgs[&cb].contains(&shout), "{:?}", msgs[&cb]);
    assert!(msgs[&ca].contains(&shout), "the own client too");
    // Walking out of range: leave after the tick (not inside the handler).
    call(w, cb, pb, "walk", vec![Value::Float(50.0)]);
    assert!(per_client(w).values().flatten().all(|m| !matches!(m, ServerMsg::DestroyEntity { .. })));
    w.tick(t0 + Duration::from_millis(200));
    let msgs = per_client(w);
    assert!(msgs[&ca].contains(&ServerMsg::DestroyEntity { id: pb }), "{msgs:?}");
    assert!(msgs[&cb].contains(&ServerMsg::DestroyEntity { id: pa }));
    // B's own client gets its position at the sync.
    assert!(msgs[&cb].iter().any(|m| matches!(m, ServerMsg::Positions { entries } if entries[0].0 == pb)));
    // Out of range, a call to all clients reaches A's own only.
    call(w, ca, pa, "shout", vec![]);
    let msgs = per_client(w);
    assert!(msgs[&ca].contains(&ServerMsg::Call { id: pa, method: "shout".into(), args: vec![id_value(pa)] }));
    assert!(msgs.get(&cb).is_none_or(|m| m.iter().all(|m| !matches!(m, ServerMsg::Call { .. }))));
    // Destroying the space destroys its entities; clients see neighbours, space, self go.
    call(w, cb, pb, "walk", vec![Value::Float(1.0)]);
    w.tick(t0 + Duration::from_millis(400));
    per_client(w);
    w.destroy_entity(space);
    assert!(!w.has_entity(pa) && !w.has_entity(pb) && !w.has_entity(space));
    let msgs = per_client(w);
    let a_destroys: Vec<Id> = msgs[&ca]
        .iter()
        .filter_map(|m| match m {
            ServerMsg::DestroyEntity { id } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(a_destroys.last(), Some(&pa), "own entity last: {a_destroys:?}");
    assert!(a_destroys.contains(&space));
}

/// Types registered with `aoi_hooks` hear who enters and leaves their area of interest,
/// after the move and in order; others do not.
#[test]
fn aoi_hooks_report_enters_and_leaves() {
    let mut w = world();
    let t0 = Instant::now();
    let (sentry, pa, pb) = (Id([0x5e; 16]), Id([0x0a; 16]), Id([0x0b; 16]));
    w.create(w.reg.type_index("Sentry").expect("registered"), sentry, None);
    let player = w.reg.type_index("Player").expect("registered");
    w.create(player, pa, Some(ClientRef { gate: GATE, client: Id([0xa0; 16]), token: Id::NIL }));
    w.create(player, pb, None);
    let space = {
        let mut id = Id::NIL;
        w.with_entity(pa, Caller::Server(Id::NIL), |_, ctx| {
            id = ctx.create_space_locally(1);
            Ok(())
        });
        w.run_local();
        id
    };
    for (e, x) in [(sentry, 0.0), (pa, 5.0), (pb, 50.0)] {
        w.enter_space_now(e, space, Pos::at(x, 0.0, 0.0));
    }
    w.tick(t0);
    let log = |w: &World| w.entities[&sentry].attrs.get("log").cloned();
    assert_eq!(log(&w), Some(Value::List(vec![Value::from("+10")])), "only the one in range");
    w.with_entity(pb, Caller::Server(Id::NIL), |_, ctx| {
        ctx.set_position(3.0, 0.0, 0.0);
        Ok(())
    });
    w.with_entity(pa, Caller::Server(Id::NIL), |_, ctx| {
        ctx.set_position(90.0, 0.0, 0.0);
        Ok(())
    });
    let timed = w.core.calls.aoi_step.count();
    w.tick(t0);
    let got = log(&w);
    let Some(Value::List(l)) = got else { panic!("{got:?}") };
    assert_eq!(l.len(), 3);
    assert!(l[1..].contains(&Value::from("+11")) && l[1..].contains(&Value::from("-10")), "{l:?}");
    // Players (no aoi_hooks) were not called: their attributes have no log.
    assert!(w.entities[&pa].attrs.get("log").is_none());
    // The moves' AOI step was timed for the AOI step histogram; a tick with nothing to do is not.
    assert_eq!(w.core.calls.aoi_step.count(), timed + 1);
    w.tick(t0);
    assert_eq!(w.core.calls.aoi_step.count(), timed + 1, "a tick with nothing to do is not observed");
}

#[test]
fn set_position_works_without_aoi_and_client_moves_need_permission() {
    let mut w = booted();
    let t0 = Instant::now();
    w.handle(t0, ClientMove { id: BOOT, gate: GATE, client: CLIENT, pos: [3.0, 0.0, 4.0, 0.0] });
    assert_eq!(w.position_of(BOOT), Some(Pos::default()), "client movement not enabled");
    w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
        ctx.set_client_move(true);
        ctx.set_position(1.0, 2.0, 3.0);
        ctx.face_to(1.0, 10.0);
        Ok(())
    });
    assert_eq!(w.position_of(BOOT), Some(Pos { x: 1.0, y: 2.0, z: 3.0, yaw: 0.0 }));
    w.handle(t0, ClientMove { id: BOOT, gate: GATE, client: Id([9; 16]), pos: [3.0, 0.0, 4.0, 0.0] });
    assert_eq!(w.position_of(BOOT).map(|p| p.x), Some(1.0), "another client's move is refused");
    w.handle(t0, ClientMove { id: BOOT, gate: GATE, client: CLIENT, pos: [3.0, 0.0, 4.0, 90.0] });
    assert_eq!(w.position_of(BOOT), Some(Pos { x: 3.0, y: 0.0, z: 4.0, yaw: 90.0 }));
}

#[test]
fn post_cron_and_global_timers() {
    let mut w = booted();
    let t0 = w.core.clock_base.0;
    // The clock base is 1_700_000_000_000 ms = minute 28_333_333 + 20 s.
    w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
        ctx.post("tock", vec![Value::Int(0)]);
        ctx.add_cron("* * * * *", "tock", vec![Value::Int(1)]).expect("cron");
        assert!(ctx.add_cron("61 * * * *", "tock", vec![]).is_err());
        assert!(ctx.add_cron("* * * * *", "nope", vec![]).is_err());
        assert!(ctx.add_global_timer(Duration::from_millis(5), None, "no_such_space_method", vec![]).is_err());
        Ok(())
    });
    w.run_local();
    let tocks = |w: &mut World| -> Vec<Value> {
        client_msgs(w)
            .into_iter()
            .filter_map(|m| match m {
                ServerMsg::Call { method, args, .. } if method == "tock" => Some(args[0].clone()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(tocks(&mut w), vec![Value::Int(0)], "post runs after the handler");
    w.tick(t0 + Duration::from_secs(30));
    assert!(tocks(&mut w).is_empty(), "same minute: nothing");
    w.tick(t0 + Duration::from_secs(41));
    assert_eq!(tocks(&mut w), vec![Value::Int(1)], "the next minute fires once");
    w.tick(t0 + Duration::from_secs(42));
    assert!(tocks(&mut w).is_empty());
    w.tick(t0 + Duration::from_secs(600));
    assert_eq!(tocks(&mut w), vec![Value::Int(1)], "after a stall: once, not nine times");
}

#[test]
fn give_client_to_destroys_old_view_before_creating_new_one_on_one_route() {
    let mut w = booted();
    let mut helper = Id::NIL;
    w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
        helper = ctx.create_entity_locally("Helper").map_err(|e| CallError::Failed(e.to_string()))?;
        Ok(())
    });
    w.run_local();
    w.drain_output().for_each(drop);
    w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
        ctx.give_client_to(helper);
        Ok(())
    });
    w.run_local();
    let out: Vec<(usize, FromGame)> = w.drain_output().collect();
    let route = helper.dispatcher_index(2);
    let msgs: Vec<ServerMsg> = out
        .iter()
        .filter_map(|(d, m)| match m {
            FromGame::ToClients(tc) => {
                assert_eq!(*d, route, "the whole hand-over travels on the new owner's route");
                ServerMsg::decode(&tc.payload).ok()
            }
            _ => None,
        })
        .collect();
    assert!(matches!(&msgs[0], ServerMsg::DestroyEntity { id } if *id == BOOT), "{msgs:?}");
    assert!(matches!(&msgs[1], ServerMsg::CreateEntity { id, is_player: true, .. } if *id == helper), "{msgs:?}");
    // The old owner lost its client (its on_client_disconnected destroyed it).
    assert!(!w.has_entity(BOOT));
    assert!(w.has_entity(helper));
}

#[test]
fn call_nil_spaces_reaches_each_game_once() {
    let mut w = booted();
    w.set_online_games(&[1, 2, 3]);
    let calls_before = w.stats().calls;
    w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
        ctx.call_nil_spaces("hello", vec![]);
        Ok(())
    });
    w.run_local();
    let remote: Vec<Id> = w
        .drain_output()
        .filter_map(|(d, m)| match m {
            FromGame::Call(Call { target, .. }) => {
                assert_eq!(d, target.dispatcher_index(2));
                Some(target)
            }
            _ => None,
        })
        .collect();
    assert_eq!(remote, vec![nil_space_id(2), nil_space_id(3)]);
    assert_eq!(w.stats().calls, calls_before + 1, "the local nil space got it once");
}

#[test]
fn create_space_anywhere_is_created_as_a_space() {
    let mut w = world();
    let id = Id([0x55; 16]);
    w.handle(Instant::now(), CreateEntity { id, game: 1, type_name: "Arena".into(), space_kind: Some(5) });
    assert!(w.has_entity(id));
    assert_eq!(w.core.spaces.space(id).map(|s| s.kind), Some(5));
    // The kind is typed: a space without one, or a kind on a type that is not the space type,
    // is refused (and reported to the dispatcher as destroyed), never guessed.
    for bad in [
        CreateEntity { id: Id([0x56; 16]), game: 1, type_name: "Arena".into(), space_kind: None },
        CreateEntity { id: Id([0x57; 16]), game: 1, type_name: "Helper".into(), space_kind: Some(1) },
        CreateEntity { id: Id([0x58; 16]), game: 1, type_name: "Nope".into(), space_kind: None },
    ] {
        let id = bad.id;
        w.drain_output().for_each(drop);
        w.handle(Instant::now(), bad);
        assert!(!w.has_entity(id));
        let out: Vec<FromGame> = w.drain_output().map(|(_, m)| m).collect();
        assert!(matches!(&out[..], [FromGame::EntityDestroyed(d)] if d.id == id), "{out:?}");
    }
}

#[test]
fn echo_from_any_client() {
    let mut w = booted();
    client_call(&mut w, Id([7; 16]), BOOT, "echo", vec![Value::from("hi")]);
    let want = ServerMsg::Call { id: BOOT, method: "echo_reply".into(), args: vec![Value::from("hi")] };
    assert_eq!(client_msgs(&mut w), vec![want]);
}

fn error_code(msgs: &[ServerMsg]) -> Option<u16> {
    match msgs {
        [ServerMsg::Error { code, .. }] => Some(*code),
        _ => None,
    }
}

#[test]
fn exposure_is_enforced() {
    let mut w = booted();
    client_call(&mut w, CLIENT, BOOT, "secret", vec![]);
    assert_eq!(error_code(&client_msgs(&mut w)), Some(ErrorCode::NotExposed as u16));
    client_call(&mut w, Id([7; 16]), BOOT, "mine", vec![Value::Int(1)]);
    assert_eq!(error_code(&client_msgs(&mut w)), Some(ErrorCode::NotExposed as u16));
    client_call(&mut w, CLIENT, BOOT, "mine", vec![Value::Int(1)]);
    assert!(matches!(&client_msgs(&mut w)[..], [ServerMsg::Call { method, .. }] if method == "mine_reply"));
    assert_eq!(w.stats().refused_client_calls, 2);
}

#[test]
fn unknown_method_bad_args_unknown_entity() {
    let mut w = booted();
    client_call(&mut w, CLIENT, BOOT, "nope", vec![]);
    assert_eq!(error_code(&client_msgs(&mut w)), Some(ErrorCode::UnknownMethod as u16));
    client_call(&mut w, CLIENT, BOOT, "mine", vec![Value::from("not an int")]);
    assert_eq!(error_code(&client_msgs(&mut w)), Some(ErrorCode::BadArguments as u16));
    client_call(&mut w, CLIENT, Id([9; 16]), "echo", vec![]);
    assert_eq!(error_code(&client_msgs(&mut w)), Some(ErrorCode::UnknownEntity as u16));
    // Garbage argument bytes.
    let caller = Caller::Client { gate: GATE, client: CLIENT };
    w.handle(Instant::now(), Call { target: BOOT, method: method_id("echo"), args: vec![1, 2], caller });
    assert_eq!(error_code(&client_msgs(&mut w)), Some(ErrorCode::BadArguments as u16));
    // The entity is still there and works.
    client_call(&mut w, CLIENT, BOOT, "echo", vec![]);
    assert_eq!(client_msgs(&mut w).len(), 1);
}

#[test]
fn server_call_to_missing_entity_is_counted() {
    let mut w = booted();
    w.handle(
        Instant::now(),
        Call { target: Id([5; 16]), method: 1, args: vec![0, 0, 0, 0], caller: Caller::Server(BOOT) },
    );
    assert_eq!(w.stats().undeliverable, 1);
}

#[test]
fn local_create_and_call_roundtrip() {
    let mut w = booted();
    client_call(&mut w, CLIENT, BOOT, "spawn_local", vec![]);
    assert_eq!(w.entity_count(), 3, "nil space, boot and the new helper");
    let out: Vec<(usize, FromGame)> = w.drain_output().collect();
    assert!(out.iter().any(|(_, m)| matches!(m, FromGame::EntityCreated(_))), "{out:?}");
    let pong = out.iter().find_map(|(_, m)| match m {
        FromGame::ToClients(tc) => ServerMsg::decode(&tc.payload).ok(),
        _ => None,
    });
    assert_eq!(pong, Some(ServerMsg::Call { id: BOOT, method: "pong".into(), args: vec![Value::Int(1)] }));
}

#[test]
fn disconnect_destroys_once() {
    let mut w = booted();
    w.handle(Instant::now(), ClientDisconnected { owner: BOOT, gate: GATE, client: CLIENT, resumable: false });
    assert!(!w.has_entity(BOOT));
    let out: Vec<(usize, FromGame)> = w.drain_output().collect();
    let destroyed = out.iter().filter(|(_, m)| matches!(m, FromGame::EntityDestroyed(_))).count();
    assert_eq!(destroyed, 1, "{out:?}");
    // A stale disconnect for another client id changes nothing.
    let mut w = booted();
    w.handle(Instant::now(), ClientDisconnected { owner: BOOT, gate: GATE, client: Id([1; 16]), resumable: false });
    assert!(w.has_entity(BOOT));
}

#[test]
fn remote_calls_go_to_the_targets_dispatcher() {
    let mut w = booted();
    let remote = Id([0x42; 16]);
    w.handle(
        Instant::now(),
        Call { target: BOOT, method: method_id("pong"), args: vec![0, 0, 0, 0], caller: Caller::Server(remote) },
    );
    // pong with no args fails: counted as undeliverable (server caller).
    assert_eq!(w.stats().undeliverable, 1);
    w.drain_output().for_each(drop);
    let reg_id = BOOT;
    let _ = reg_id;
    let mut enc = Vec::new();
    encode_args(&[id_value(BOOT)], &mut enc);
    // A Helper created by a remote game calls back through the dispatcher of BOOT.
    w.handle(Instant::now(), CreateEntity { id: remote, game: 1, type_name: "Helper".into(), space_kind: None });
    w.handle(
        Instant::now(),
        Call { target: remote, method: method_id("ping"), args: enc, caller: Caller::Server(BOOT) },
    );
    // ping calls BOOT which is local: it runs at once and answers the client.
    let msgs = client_msgs(&mut w);
    assert_eq!(msgs, vec![ServerMsg::Call { id: BOOT, method: "pong".into(), args: vec![Value::Int(1)] }]);
}

/// The spins so far of boot entity `id`.
fn spins(w: &mut World, id: Id) -> u64 {
    let Some(slot) = w.entities.get_mut(&id) else { return 0 };
    slot.obj.as_mut().and_then(|o| o.as_any_mut().downcast_mut::<Boot>()).map_or(0, |b| b.spins)
}

/// An entity that posts to itself forever from a client-callable method cannot stall the game:
/// it gets the iteration's budget of local operations, the rest waits for the next iteration,
/// and another client's calls are answered in the same iteration and every one after.
#[test]
fn a_self_posting_entity_cannot_stall_the_game() {
    let mut w = booted();
    let (other, other_client) = (Id([0xb1; 16]), Id([0xc2; 16]));
    w.handle(Instant::now(), CreateBoot { boot: other, gate: GATE, client: other_client, token: Id::NIL });
    let t0 = Instant::now();
    w.tick(t0);
    client_msgs(&mut w);
    client_call(&mut w, CLIENT, BOOT, "spin", vec![]);
    assert!(w.has_local_work(), "the runaway's next post waits");
    let per = LOCAL_OPS_PER_ITERATION as u64;
    assert_eq!(spins(&mut w, BOOT), 1 + per, "the call, then this iteration's budget of posts");
    for round in 0..5u32 {
        // Another client is answered in the same iteration...
        client_call(&mut w, other_client, other, "echo", vec![Value::Int(i64::from(round))]);
        let got = client_msgs(&mut w);
        let want = ServerMsg::Call { id: other, method: "echo_reply".into(), args: vec![Value::Int(i64::from(round))] };
        assert_eq!(got, vec![want]);
        // ...and each iteration runs one budget's worth of the runaway, no more.
        w.tick(t0 + Duration::from_millis(u64::from(round) + 1));
        assert_eq!(spins(&mut w, BOOT), 1 + (u64::from(round) + 2) * per);
        assert_eq!(w.core.local.len(), 1, "one queued post at a time: memory does not grow");
    }
    assert_eq!(w.core.over_budget.count(), 6, "each iteration over budget was counted (and logged at 1, 2, 4)");
}

/// A timer longer than the clock can represent is an error, not a panic; so is a repeat.
#[test]
fn a_timer_too_long_is_an_error() {
    let mut w = booted();
    let r = w
        .with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
            assert!(matches!(ctx.add_timer(Duration::MAX, "pong", vec![]), Err(TimerError::TooLong(_))));
            assert!(matches!(ctx.add_repeat_timer(Duration::MAX, "pong", vec![]), Err(TimerError::TooLong(_))));
            let far = Duration::from_secs(60 * 60 * 24 * 365 * 100);
            ctx.add_repeat_timer(far, "pong", vec![]).map(|_| ()).map_err(|e| CallError::Failed(e.to_string()))
        })
        .expect("boot exists");
    assert!(r.is_ok(), "a century is representable: {r:?}");
}
