//! Hot swaps to binaries that cannot restore in time, with test-only builds of the test game
//! (`demo/variants`) deployed as "the new binary": one without an entity type (`oxworld
//! reload` fails naming the type, the freeze is kept and the dispatchers keep holding the
//! game's traffic; `oxworld start` with the fixed binary restores it, and every call a client
//! made meanwhile is answered, once, in order, without the client reconnecting), and one that
//! restores slower than the hold bound (every held call is answered with an error).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oxworld_bin::launcher;
use oxworld_bin::testkit::{TestCluster, fresh_bin};
use oxworld_client::BlockingClient;
use oxworld_net::Value;
use oxworld_net::client_proto::ServerMsg;

/// The test game (the cluster's binary), next to this crate's binaries.
fn testgame() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_BIN_EXE_testgame-no-beacon")).parent().expect("bin dir").to_path_buf();
    fresh_bin(&dir, "testgame").expect("the test game is built")
}

/// A bin dir deploying `variant` as the game binary `testgame` (with the real dispatcher, gate
/// and CLI), as an operator deploys a new build before `oxworld reload`.
fn deploy(c: &TestCluster, variant: &str, name: &str) -> PathBuf {
    let dir = c.dir.join(name);
    std::fs::create_dir_all(&dir).expect("bin dir");
    let link = |from: &Path, to: &str| {
        let _ = std::fs::remove_file(dir.join(to));
        std::os::unix::fs::symlink(from, dir.join(to)).expect("symlink");
    };
    for b in ["oxworld", "oxworld-dispatcher", "oxworld-gate"] {
        link(&c.layout.bin_dir.join(b), b);
    }
    link(Path::new(variant), "testgame");
    dir
}

/// Runs the CLI against the cluster, with `bin_dir` instead of the cluster's if given.
fn cli(c: &TestCluster, args: &[&str], bin_dir: Option<&Path>) -> (bool, String) {
    let out = c.cli_command(args, bin_dir.unwrap_or(&c.layout.bin_dir)).output().expect("oxworld runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn a_failed_restore_keeps_the_freeze_and_start_brings_it_back() {
    // Game 2 exports metrics: after its hot swap they show the swap's pause.
    let metrics_port = oxworld_bin::testkit::free_port();
    let extra = format!("[game2]\nmetrics_addr = 127.0.0.1:{metrics_port}\n");
    let cluster = TestCluster::start("swap-fail", &testgame(), 2, 2, &extra).expect("cluster");
    // Two players: boots go round robin, so one lives on each game.
    let mut clients: Vec<(BlockingClient, oxworld_net::Id, i64)> = (0..2)
        .map(|_| {
            let mut c = BlockingClient::connect(&cluster.gate, Duration::from_secs(3)).expect("connect");
            let me = c.wait_player(Duration::from_secs(10)).expect("player");
            (c, me, 0)
        })
        .collect();
    let call_all = |clients: &mut Vec<(BlockingClient, oxworld_net::Id, i64)>, n: usize| {
        for (c, me, sent) in clients.iter_mut() {
            for _ in 0..n {
                c.call(*me, "seq", vec![Value::Int(*sent)]).expect("send");
                *sent += 1;
            }
        }
    };
    call_all(&mut clients, 5);
    // The "new binary" lacks the Beacon type: the first game's restore fails.
    let without = deploy(&cluster, env!("CARGO_BIN_EXE_testgame-no-beacon"), "bin-no-beacon");
    let (ok, out) = cli(&cluster, &["reload"], Some(&without));
    assert!(!ok, "reload must fail: {out}");
    assert!(out.contains("game1 could not restore") && out.contains("Beacon") && out.contains("kept"), "{out}");
    let game1 = launcher::Proc { kind: launcher::Kind::Game, id: 1 };
    let kept = launcher::frozen_state(&cluster.layout, game1);
    assert!(kept.is_some_and(|r| r.reason.is_some_and(|r| r.contains("Beacon"))), "freeze kept");
    // Calls meanwhile: held for the player on game 1 (its process is gone until `start`
    // below, which takes longer than the calls need to reach the dispatchers; either way
    // every call is answered once, in order), answered at once on game 2.
    call_all(&mut clients, 5);
    // The fixed binary: `oxworld start` restores game 1 from its freeze.
    let (ok, out) = cli(&cluster, &["start", "--no-build"], None);
    assert!(ok, "{out}");
    assert!(out.contains("game1 (restored from its freeze)"), "{out}");
    assert!(launcher::frozen_state(&cluster.layout, game1).is_none(), "freeze consumed");
    call_all(&mut clients, 5);
    let mut games = Vec::new();
    for (c, me, sent) in clients.iter_mut() {
        let mut replies = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while (replies.len() as i64) < *sent {
            match c.next(deadline.saturating_duration_since(Instant::now())).expect("replies") {
                ServerMsg::Call { method, args, .. } if method == "seq_reply" => {
                    replies.push(args[0].as_int().unwrap_or(-1));
                    games.push(args[1].as_int().unwrap_or(-1));
                }
                ServerMsg::Error { message, .. } => panic!("error: {message}"),
                ServerMsg::DestroyEntity { id } if id == *me => panic!("player destroyed"),
                _ => {}
            }
        }
        assert_eq!(replies, (0..*sent).collect::<Vec<_>>());
    }
    assert!(games.contains(&1) && games.contains(&2), "one player on each game: {games:?}");
    // And the cluster can be swapped again as usual.
    let (ok, out) = cli(&cluster, &["reload"], None);
    assert!(ok && out.contains("reloaded 2 games"), "{out}");
    // The restored game 2 exports its swap: entities, the freeze, the restore and the pause.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while Instant::now() < deadline && !text.contains("oxworld_swap_pause_seconds ") {
        std::thread::sleep(Duration::from_millis(200));
        text = scrape(metrics_port);
    }
    for name in ["oxworld_swap_entities ", "oxworld_swap_freeze_seconds ", "oxworld_swap_restore_seconds "] {
        assert!(text.contains(name), "{name}in:\n{text}");
    }
    let pause: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("oxworld_swap_pause_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("the pause:\n{text}"));
    assert!(pause > 0.0 && pause < 30.0, "{pause}");
}

/// The body of `GET /metrics` on loopback `port` (empty while nothing listens).
fn scrape(port: u16) -> String {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

/// A restart slower than the hold bound: every call held meanwhile is answered with
/// `Unavailable` (none is lost silently), the game still comes back, and `oxworld reload`
/// exits non-zero saying that held messages failed.
#[test]
fn a_restore_slower_than_the_hold_bound_fails_the_held_calls_loudly() {
    let extra = "[deployment]\nfreeze_hold_timeout_s = 1\n";
    let cluster = TestCluster::start("swap-slow", &testgame(), 1, 1, extra).expect("cluster");
    let mut c = BlockingClient::connect(&cluster.gate, Duration::from_secs(3)).expect("connect");
    let me = c.wait_player(Duration::from_secs(10)).expect("player");
    let slow = deploy(&cluster, env!("CARGO_BIN_EXE_testgame-slow-restore"), "bin-slow");
    let mut cmd = cluster.cli_command(&["reload"], &slow);
    let reload = std::thread::spawn(move || cmd.output().expect("oxworld runs"));
    // Calls while the game is away (frozen, or its slow new binary restoring) for longer
    // than the 1 s bound.
    let game1 = launcher::Proc { kind: launcher::Kind::Game, id: 1 };
    let away = |r: &oxworld_core::host::status::StatusRecord| matches!(r.state.as_str(), "frozen" | "restoring");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cluster.layout.record(game1).is_some_and(|r| away(&r)) {
        assert!(Instant::now() < deadline, "the game never froze");
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = 5i64;
    for n in 0..sent {
        c.call(me, "seq", vec![Value::Int(n)]).expect("send");
    }
    let out = reload.join().expect("reload thread");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "reload must fail: {text}");
    assert!(text.contains("answered with an error") && text.contains("5 failed"), "{text}");
    // Each held call came back as an error: nothing silently lost.
    let (mut errors, mut replies) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while errors + replies < sent {
        match c.next(deadline.saturating_duration_since(Instant::now())).expect("an answer for every call") {
            ServerMsg::Error { code, .. } => {
                assert_eq!(code, oxworld_net::client_proto::ErrorCode::Unavailable as u16);
                errors += 1;
            }
            ServerMsg::Call { method, .. } if method == "seq_reply" => replies += 1,
            _ => {}
        }
    }
    assert_eq!(errors, sent, "every held call failed loudly");
    // The game is back and serves the same player.
    c.call(me, "seq", vec![Value::Int(99)]).expect("send");
    loop {
        match c.next(deadline.saturating_duration_since(Instant::now())).expect("served again") {
            ServerMsg::Call { method, args, .. } if method == "seq_reply" => {
                assert_eq!(args[0], Value::Int(99));
                break;
            }
            ServerMsg::Error { message, .. } => panic!("{message}"),
            _ => {}
        }
    }
}
