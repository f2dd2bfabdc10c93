//! Tests of panics in entity code (caught per handler, the entity quarantined or kept) and of
//! an entity letting go of its client (`kick_client`).

use std::time::Duration;

use oxworld_net::client_proto::{ErrorCode, ServerMsg};
use oxworld_net::msg::{Caller, FromGame};
use oxworld_net::{Id, Value};

use super::tests::{BOOT, booted, client_call};
use super::*;
use crate::entity::CallError;

/// Everything the world sent, client messages decoded, other messages by kind.
fn output(w: &mut World) -> (Vec<ServerMsg>, Vec<FromGame>) {
    let mut to_clients = Vec::new();
    let mut other = Vec::new();
    for (_, m) in w.drain_output() {
        match m {
            FromGame::ToClients(tc) => to_clients.push(ServerMsg::decode(&tc.payload).expect("valid")),
            m => other.push(m),
        }
    }
    (to_clients, other)
}

#[test]
fn a_panicking_method_quarantines_its_entity_and_the_game_goes_on() {
    let mut w = booted();
    let mut helper = Id::NIL;
    w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
        helper = ctx.create_entity_locally("Helper").map_err(|e| CallError::Failed(e.to_string()))?;
        Ok(())
    });
    w.run_local();
    output(&mut w);
    client_call(&mut w, super::tests::CLIENT, BOOT, "boom", vec![]);
    let (to_client, other) = output(&mut w);
    assert!(
        matches!(&to_client[..], [
            ServerMsg::Error { code: failed, .. },
            ServerMsg::Error { code: kicked, message, .. },
        ] if *failed == ErrorCode::Failed as u16 && *kicked == ErrorCode::Kicked as u16 && message.contains("internal error")),
        "the call is answered, then the client kicked; no half-made attribute change: {to_client:?}"
    );
    assert!(other.iter().any(|m| matches!(m, FromGame::EntityDestroyed(d) if d.id == BOOT)), "{other:?}");
    assert!(!w.has_entity(BOOT));
    assert_eq!((w.stats().panics, w.stats().quarantined), (1, 1));
    // Another entity of the same game keeps serving.
    w.handle(
        w.core.now,
        oxworld_net::msg::Call {
            target: helper,
            method: oxworld_net::method_id("ping"),
            caller: Caller::Server(BOOT),
            args: {
                let mut b = Vec::new();
                oxworld_net::value::encode_args(&[Value::id(BOOT)], &mut b);
                b
            },
        },
    );
    let (_, other) = output(&mut w);
    assert!(other.iter().any(|m| matches!(m, FromGame::Call(c) if c.target == BOOT)), "helper answered: {other:?}");
}

#[test]
fn with_the_keep_policy_the_entity_stays_as_the_panic_left_it() {
    let mut w = booted();
    w.set_panic_policy(PanicPolicy::Keep);
    client_call(&mut w, super::tests::CLIENT, BOOT, "boom", vec![]);
    let (to_client, _) = output(&mut w);
    assert!(
        to_client.iter().any(|m| matches!(m, ServerMsg::Error { code, message, .. } if *code == ErrorCode::Failed as u16 && message.contains("Boot.boom: failed: internal error"))),
        "the caller is answered with an error: {to_client:?}"
    );
    assert!(w.has_entity(BOOT));
    let level = match w.attrs_of(BOOT) {
        Some(Value::Map(m)) => m.get("level").cloned(),
        _ => None,
    };
    assert_eq!(level, Some(Value::Int(99)), "changes made before the panic stay");
    assert_eq!((w.stats().panics, w.stats().quarantined), (1, 0));
    client_call(&mut w, super::tests::CLIENT, BOOT, "echo", vec![Value::Int(5)]);
    let (to_client, _) = output(&mut w);
    assert!(to_client.iter().any(|m| matches!(m, ServerMsg::Call { method, .. } if method == "echo_reply")));
}

#[test]
fn a_panicking_timer_is_caught_too() {
    let mut w = booted();
    let t0 = w.core.now;
    w.with_entity(BOOT, Caller::Server(Id::NIL), |_, ctx| {
        ctx.add_timer(Duration::from_millis(10), "boom", vec![]).map_err(|e| CallError::Failed(e.to_string()))?;
        Ok(())
    });
    w.tick(t0 + Duration::from_millis(20));
    assert!(!w.has_entity(BOOT), "quarantined");
    assert_eq!(w.stats().panics, 1);
    assert_eq!(w.timer_count(), 0, "its timers went with it");
}

#[test]
fn an_entity_kicks_its_client_with_a_reason() {
    let mut w = booted();
    client_call(&mut w, super::tests::CLIENT, BOOT, "kick_me", vec![Value::from("see you tomorrow")]);
    let (to_client, _) = output(&mut w);
    assert!(
        matches!(to_client.last(), Some(ServerMsg::Error { code, message, .. }) if *code == ErrorCode::Kicked as u16 && message == "see you tomorrow"),
        "{to_client:?}"
    );
    // Boot destroys itself in on_client_disconnected: the hook ran.
    w.run_local();
    assert!(!w.has_entity(BOOT));
    assert_eq!(w.stats().panics, 0);
}
