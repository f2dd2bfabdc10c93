//! A runaway entity in a real game process (`runaway`: `spin` posts itself forever): the game
//! keeps answering another client, and `oxworld status` keeps showing it `ready`, never
//! `stalled` (its status record is written from the same loop, so it would age if the loop
//! stalled).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use oxworld_bin::testkit::TestCluster;
use oxworld_client::BlockingClient;
use oxworld_net::Value;
use oxworld_net::client_proto::ServerMsg;

fn echo(c: &mut BlockingClient, me: oxworld_net::Id, n: i64) -> Duration {
    let t0 = Instant::now();
    c.call(me, "echo", vec![Value::Int(n)]).expect("send");
    loop {
        match c.next(Duration::from_secs(5)).expect("an answer within 5 s") {
            ServerMsg::Call { method, args, .. } if method == "echo_reply" => {
                assert_eq!(args, vec![Value::Int(n)]);
                return t0.elapsed();
            }
            ServerMsg::Error { message, .. } => panic!("{message}"),
            _ => {}
        }
    }
}

#[test]
fn a_runaway_entity_does_not_stall_its_game() {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_runaway"));
    let cluster = TestCluster::start("runaway", &exe, 1, 1, "").expect("cluster");
    let mut bad = BlockingClient::connect(&cluster.gate, Duration::from_secs(3)).expect("connect");
    let bad_me = bad.wait_player(Duration::from_secs(10)).expect("player");
    let mut good = BlockingClient::connect(&cluster.gate, Duration::from_secs(3)).expect("connect");
    let me = good.wait_player(Duration::from_secs(10)).expect("player");
    bad.call(bad_me, "spin", vec![]).expect("send");
    // For more than the 3 s after which a record counts as stalled: answers keep coming, and
    // the game's record stays fresh.
    let start = Instant::now();
    let mut n = 0;
    let mut slowest = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(4) {
        n += 1;
        slowest = slowest.max(echo(&mut good, me, n));
    }
    assert!(slowest < Duration::from_secs(1), "the other client waited {slowest:?} for an answer");
    let out = cluster.cli(&["status"]).expect("oxworld status runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.lines().any(|l| l.starts_with("game") && l.ends_with(" ready")), "{text}");
    assert!(!text.contains("stalled"), "{text}");
    drop((bad, good));
    cluster.stop().expect("the game stops on SIGTERM even with work queued");
}
