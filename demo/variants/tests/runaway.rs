//! Buggy entities in a real game process (`runaway`). `spin` posts itself forever: the game
//! keeps answering another client, and `oxworld status` keeps showing it `ready`, never
//! `stalled` (its status record is written from the same loop, so it would age if the loop
//! stalled). `crash` panics: each crashing client is answered and kicked, everyone else keeps
//! being served, and the process never exits.

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
    assert!(text.lines().any(|l| l.starts_with("game") && l.contains(" ready ")), "{text}");
    assert!(!text.contains("stalled"), "{text}");
    drop((bad, good));
    cluster.stop().expect("the game stops on SIGTERM even with work queued");
}

#[test]
fn a_panicking_method_does_not_end_its_game() {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_runaway"));
    let cluster = TestCluster::start("panics", &exe, 1, 1, "").expect("cluster");
    let mut good = BlockingClient::connect(&cluster.gate, Duration::from_secs(3)).expect("connect");
    let me = good.wait_player(Duration::from_secs(10)).expect("player");
    let mut crashers = Vec::new();
    for _ in 0..20 {
        let mut c = BlockingClient::connect(&cluster.gate, Duration::from_secs(3)).expect("connect");
        let id = c.wait_player(Duration::from_secs(10)).expect("player");
        crashers.push((c, id));
    }
    let mut n = 0;
    for (bad, bad_me) in &mut crashers {
        // Under load: the crash call lands between echoes of the good client.
        bad.call(*bad_me, "crash", vec![Value::Int(7)]).expect("send");
        n += 1;
        echo(&mut good, me, n);
        let mut codes = Vec::new();
        loop {
            match bad.next(Duration::from_secs(5)) {
                Ok(ServerMsg::Error { code, message, .. }) => {
                    codes.push(code);
                    if code == 12 {
                        assert!(message.contains("internal error"), "{message}");
                    }
                }
                Ok(ServerMsg::Call { method, .. }) => panic!("the crash was not supposed to finish: {method}"),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        assert_eq!(codes, vec![8, 12], "the call failed (Failed), then the client was kicked (Kicked)");
    }
    for _ in 0..20 {
        n += 1;
        echo(&mut good, me, n);
    }
    let out = cluster.cli(&["status"]).expect("oxworld status runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("game") && l.contains(" ready ")), "{text}");
    drop(good);
    drop(crashers);
    cluster.stop().expect("the game never exited: it stops on SIGTERM with exit code 0");
}
