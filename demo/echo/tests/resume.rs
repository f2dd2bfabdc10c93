//! Real-process test of resuming a session (PROTOCOL.md, "Resuming a session"): 1 dispatcher,
//! 1 game running the echo demo, 2 gates. A client's gate is SIGKILLed; the client resumes on
//! the other gate with its session (client id, player, token) and has the same player back,
//! with its view, no login; a token that is not the client's last, or one used already, is
//! refused and that connection logs in instead.

use std::path::PathBuf;
use std::time::Duration;

use oxworld_bin::testkit::{Spec, TestCluster};
use oxworld_client::BlockingClient;
use oxworld_net::Value;
use oxworld_net::client_proto::{ErrorCode, ServerMsg};

const WAIT: Duration = Duration::from_secs(20);

/// Messages until a server `Call` named `method`, which it returns with what came before it.
fn until_call(c: &mut BlockingClient, method: &str) -> (Vec<ServerMsg>, Vec<Value>) {
    let mut seen = Vec::new();
    loop {
        match c.next(WAIT).expect("a server message") {
            ServerMsg::Call { method: m, args, .. } if m == method => return (seen, args),
            other => seen.push(other),
        }
    }
}

/// Messages until an `Error`, which it returns (its code).
fn until_error(c: &mut BlockingClient) -> u16 {
    loop {
        match c.next(WAIT).expect("a server message") {
            ServerMsg::Error { code, .. } => return code,
            ServerMsg::Call { method, .. } => panic!("expected an error, got a call of {method}"),
            _ => {}
        }
    }
}

#[test]
fn a_client_whose_gate_died_resumes_its_player_on_another_gate() {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_echo"));
    let spec = Spec { gates: 2, ..Spec::default() };
    let cluster = TestCluster::start_with("resume", &exe, &spec).expect("cluster");
    let gate2 = cluster.dial_gate(2).expect("gate2");
    let mut a = BlockingClient::connect(&cluster.gate, Duration::from_secs(3)).expect("connect");
    let me = a.wait_player(WAIT).expect("a player");
    let session = a.conn().session().expect("a session to resume: client id, player, token");
    assert_eq!(session.player, me);
    let mut b = BlockingClient::connect(&cluster.gate, Duration::from_secs(3)).expect("connect");
    let b_player = b.wait_player(WAIT).expect("a player");
    let b_session = b.conn().session().expect("a session");

    // gate1 dies with both connections.
    let pid = cluster.pid_of("gate1").expect("gate1's pid");
    let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().expect("kill runs");
    assert!(killed.success());
    assert!(a.closed_within(WAIT), "the connection to the dead gate closes");

    // Resumed on gate2: the same player, its view, and its methods answer.
    let mut a2 = BlockingClient::resume(&gate2, Duration::from_secs(3), session).expect("connect to gate2");
    let player = a2.wait_player(WAIT).expect("the player is back");
    assert_eq!(player, me, "the same player entity, no login");
    a2.call(me, "whoami", vec![]).expect("send");
    let (before, _) = until_call(&mut a2, "whoami_reply");
    assert!(!before.iter().any(|m| matches!(m, ServerMsg::Error { .. })), "no error on the way: {before:?}");

    // B: another client's token is refused; that connection logs in instead.
    let forged = oxworld_client::Session { token: session.token, ..b_session };
    let mut b2 = BlockingClient::resume(&gate2, Duration::from_secs(3), forged).expect("connect to gate2");
    assert_eq!(until_error(&mut b2), ErrorCode::ResumeRefused as u16);
    let fresh = b2.wait_player(WAIT).expect("a boot entity after the refusal");
    assert_ne!(fresh, b_player, "a login, not B's player");

    // A's old session was used: replaying it is refused.
    let mut a3 = BlockingClient::resume(&gate2, Duration::from_secs(3), session).expect("connect to gate2");
    assert_eq!(until_error(&mut a3), ErrorCode::ResumeRefused as u16, "a token resumes once");
    // And A's resumed connection is still the player's.
    a2.call(me, "echo", vec![Value::Int(5)]).expect("send");
    let (_, args) = until_call(&mut a2, "echo_reply");
    assert_eq!(args, vec![Value::Int(5)]);
}
