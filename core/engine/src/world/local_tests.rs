//! Tests of what entity code reads and does on its own game without a call: positions,
//! distance and facing of local entities, the entity's own queries, crontab removal, and
//! where spaces (and not entities of a space type) are created.

use std::time::Duration;

use oxworld_net::client_proto::{Pos, ServerMsg};
use oxworld_net::msg::Caller;
use oxworld_net::{Id, Value};

use super::tests::{BOOT, booted, client_msgs};
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
