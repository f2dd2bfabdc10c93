//! Tests of what entity code reads and does on its own game without a call: positions,
//! distance and facing of local entities, the entity's own queries, crontab removal, and
//! where spaces (and not entities of a space type) are created.

use std::time::Duration;

use oxworld_net::client_proto::{Pos, ServerMsg};
use oxworld_net::msg::Caller;
use oxworld_net::{Id, Value};

use super::tests::{BOOT, Helper, Player, booted, client_msgs};
use super::*;
use crate::entity::CallError;

#[test]
fn distance_facing_and_self_queries_for_local_entities() {
    let mut w = booted();
    let mut helper = Id::NIL;
    w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
        helper = ctx.create_entity_locally("Helper").map_err(|e| CallError::Failed(e.to_string()))?;
        ctx.set_position(1.0, 0.0, 1.0);
        Ok(())
    });
    w.run_local();
    w.with_entity(helper, Caller::Server(Id::NIL), |_, ctx| {
        ctx.set_position(4.0, 0.0, 5.0);
        Ok(())
    });
    w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
        assert_eq!(ctx.position_of(helper), Some(Pos { x: 4.0, y: 0.0, z: 5.0, yaw: 0.0 }));
        assert_eq!(ctx.distance_to(helper), Some(5.0));
        assert!(ctx.face_to_entity(helper));
        assert!((ctx.position().yaw - 36.869_9).abs() < 1e-3, "{}", ctx.position().yaw);
        assert_eq!(ctx.distance_to(Id([0x77; 16])), None, "not on this game");
        assert!(!ctx.face_to_entity(Id([0x77; 16])));
        assert!(!ctx.is_space() && !ctx.is_destroyed());
        assert_eq!(ctx.position_of(ctx.nil_space()), None, "spaces have no position");
        ctx.destroy();
        assert!(ctx.is_destroyed());
        Ok(())
    });
}

#[test]
fn space_types_are_refused_by_create_entity_and_spaces_go_to_a_named_game() {
    let mut w = booted();
    let space_type = w.reg.space_type.map(|t| w.reg.types[t].name).expect("the test registry has a space type");
    w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
        for r in [
            ctx.create_entity_locally(space_type),
            ctx.create_entity_on_game(2, space_type),
            ctx.create_entity_anywhere(space_type),
        ] {
            assert_eq!(r, Err(CreateError::SpaceType(space_type.to_owned())));
        }
        assert_eq!(ctx.create_space_on_game(99, 3), Err(CreateError::GameOffline(99)));
        Ok(())
    });
    let mut here = Id::NIL;
    w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
        here = ctx.create_space_on_game(ctx.game_id(), 4).expect("here");
        Ok(())
    });
    w.run_local();
    w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
        assert_eq!(ctx.space_kind(here), Some(4), "created on this game after the handler");
        Ok(())
    });
}

#[test]
fn crontab_entries_can_be_removed() {
    let mut w = booted();
    let t0 = w.core.clock_base.0;
    w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
        ctx.add_cron("* * * * *", "tock", vec![Value::Int(1)]).expect("cron");
        ctx.add_cron("*/2 * * * *", "tock", vec![Value::Int(2)]).expect("cron");
        assert_eq!(ctx.remove_cron(Some("*/2 * * * *"), "tock"), 1);
        assert_eq!(ctx.remove_cron(Some("*/2 * * * *"), "tock"), 0);
        assert_eq!(ctx.remove_cron(None, "nope"), 0);
        Ok(())
    });
    w.tick(t0 + Duration::from_secs(41));
    let n =
        client_msgs(&mut w).iter().filter(|m| matches!(m, ServerMsg::Call { method, .. } if method == "tock")).count();
    assert_eq!(n, 1, "the remaining entry fired");
    w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
        assert_eq!(ctx.remove_cron(None, "tock"), 1);
        Ok(())
    });
    w.tick(t0 + Duration::from_secs(200));
    assert!(client_msgs(&mut w).iter().all(|m| !matches!(m, ServerMsg::Call { method, .. } if method == "tock")));
}

#[test]
fn entity_code_reads_other_local_entities_and_spaces() {
    let mut w = booted();
    let (mut arena, mut p1, mut p2, mut helper) = (Id::NIL, Id::NIL, Id::NIL, Id::NIL);
    w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
        arena = ctx.create_space_locally(7);
        p1 = ctx.create_entity_locally("Player").map_err(|e| CallError::Failed(e.to_string()))?;
        p2 = ctx.create_entity_locally("Player").map_err(|e| CallError::Failed(e.to_string()))?;
        helper = ctx.create_entity_locally("Helper").map_err(|e| CallError::Failed(e.to_string()))?;
        Ok(())
    });
    w.run_local();
    for (p, x) in [(p1, 1.0), (p2, 6.0)] {
        w.with_entity(p, Caller::Server(Id::NIL), |_, ctx| {
            ctx.attrs().set("mood", if x < 2.0 { "calm" } else { "loud" });
            ctx.enter_space(arena, Pos::at(x, 0.0, 0.0)).map_err(|e| CallError::Failed(e.to_string()))
        });
    }
    w.run_local();
    w.tick(w.core.now + Duration::from_millis(200));
    w.with_entity(p1, Caller::Server(Id::NIL), |_, ctx| {
        let other = ctx.entity(p2).expect("p2 lives here");
        assert_eq!(other.type_name(), "Player");
        assert_eq!(other.position(), Some(Pos::at(6.0, 0.0, 0.0)));
        assert_eq!(other.space(), Some(arena));
        assert_eq!(other.attrs().get("mood"), Some(&Value::from("loud")));
        assert!(!other.has_client() && !other.is_space());
        assert!(other.get::<Player>().is_some(), "typed read of another entity");
        assert!(other.get::<Helper>().is_none(), "wrong type");
        let me = ctx.entity(ctx.id()).expect("self");
        assert_eq!(me.attrs().get("mood"), Some(&Value::from("calm")), "own view reads the live attributes");
        assert!(me.get::<Player>().is_none(), "own object is checked out: use self");
        let boot = ctx.entity(BOOT).expect("boot");
        assert!(boot.has_client(), "boot is bound to the test client");
        assert!(ctx.entity(Id([0x55; 16])).is_none(), "not on this game");

        let space = ctx.my_space().expect("in a space");
        assert_eq!((space.id(), space.kind(), space.member_count()), (arena, 7, 2));
        assert!(!space.is_nil());
        assert_eq!(space.count_of_type("Player"), 2);
        assert_eq!(space.count_of_type("Helper"), 0);
        assert_eq!(space.count_of_type("NoSuchType"), 0);
        let mut members: Vec<Id> = space.members().collect();
        members.sort();
        let mut want = vec![p1, p2];
        want.sort();
        assert_eq!(members, want);
        let nil = ctx.space_view(ctx.nil_space()).expect("nil space");
        assert!(nil.is_nil());
        assert_eq!(nil.count_of_type("Helper"), 1);
        assert!(ctx.entities_of_type("Player").count() == 2);
        assert_eq!(ctx.entities().count(), ctx.entities.len(), "every slot, this one included");
        assert_eq!(ctx.nearest_neighbour_of_type("Player"), Some((p2, 5.0)));
        assert_eq!(ctx.nearest_neighbour_of_type("Helper"), None, "not a neighbour");
        assert_eq!(ctx.nearest_in_space_of_type("Player"), Some((p2, 5.0)), "itself left out");
        assert_eq!(ctx.nearest_in_space_of_type("Helper"), None, "not in this space");
        Ok(())
    });
}

#[test]
fn filtered_calls_compare_numbers_or_strings_as_asked() {
    let mut w = booted();
    let t = w.core.clock_base.0;
    w.handle(t, oxworld_net::msg::GateUp { gate: 1 });
    w.handle(t, oxworld_net::msg::GateUp { gate: 2 });
    w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
        ctx.call_filtered_clients("level", ">", "9", "hi", vec![]);
        ctx.call_filtered_clients_by_string("level", ">", "9", "hi", vec![]);
        ctx.call_filtered_clients_by_string("level", "=>", "9", "hi", vec![]);
        Ok(())
    });
    let sent: Vec<(usize, u16, oxworld_net::msg::FilterOp)> = w
        .drain_output()
        .filter_map(|(d, m)| match m {
            oxworld_net::msg::FromGame::FilteredCall(fc) => Some((d, fc.gate, fc.op)),
            _ => None,
        })
        .collect();
    use oxworld_net::msg::FilterOp;
    let want = vec![(0, 1, FilterOp::Gt), (0, 2, FilterOp::Gt), (0, 1, FilterOp::StrGt), (0, 2, FilterOp::StrGt)];
    assert_eq!(sent, want, "one per online gate, through dispatcher index 0; an unknown operator sends nothing");
    let ops: Vec<FilterOp> = sent.iter().map(|(_, _, op)| *op).collect();
    assert!(FilterOp::Gt.matches("10", "9") && !ops[2].matches("10", "9"), "GoWorld's '10' < '9'");
}

#[test]
fn the_nil_space_hears_once_that_every_process_is_up() {
    use oxworld_net::msg::{GameUp, GateDown, GateUp};
    let mut w = booted();
    let t = w.core.now;
    let ready = |w: &World| match w.attrs_of(w.nil_space()) {
        Some(Value::Map(m)) => m.get("ready").and_then(Value::as_int).unwrap_or(0),
        _ => 0,
    };
    w.set_deployment(2, 2);
    w.dispatcher_linked(t, 0);
    w.handle(t, GameUp { game: 2 });
    w.handle(t, GateUp { gate: 1 });
    w.handle(t, GateUp { gate: 2 });
    assert_eq!(ready(&w), 0, "one of the two dispatcher links is not up yet");
    assert!(!w.deployment_ready());
    w.dispatcher_linked(t, 1);
    assert_eq!(ready(&w), 1);
    assert!(w.deployment_ready());
    w.handle(t, GateDown { gate: 2 });
    w.handle(t, GateUp { gate: 2 });
    w.dispatcher_linked(t, 1);
    assert_eq!(ready(&w), 1, "once per game process");
}

#[test]
fn a_player_entering_a_space_is_told_where_it_stands() {
    let mut w = booted();
    let mut arena = Id::NIL;
    w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
        arena = ctx.create_space_locally(7);
        ctx.set_client_move(true);
        Ok(())
    });
    w.run_local();
    client_msgs(&mut w);
    w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
        ctx.enter_space(arena, Pos::at(3.0, 0.0, 4.0)).map_err(|e| CallError::Failed(e.to_string()))
    });
    w.run_local();
    let msgs = client_msgs(&mut w);
    assert!(
        msgs.iter()
            .any(|m| matches!(m, ServerMsg::Positions { entries } if entries == &vec![(BOOT, Pos::at(3.0, 0.0, 4.0))])),
        "even a client-driven player learns its place in the new space: {msgs:?}"
    );
}
