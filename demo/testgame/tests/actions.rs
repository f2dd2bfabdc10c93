//! Every test-game action once, through real processes, with its expected outcome checked on
//! the client's replica (what `oxworld-stress --scenario testgame` does at scale).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use oxworld_bin::testkit::TestCluster;
use oxworld_client::BlockingClient;
use oxworld_net::client_proto::ServerMsg;
use oxworld_net::{Id, Value};

/// Waits for a call named `method` to the client; returns its arguments.
fn wait_call(c: &mut BlockingClient, method: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match c.next(deadline.saturating_duration_since(Instant::now())) {
            Ok(ServerMsg::Call { method: m, args, .. }) if m == method => return args,
            Ok(m) if std::env::var("DEBUG_ACTIONS").is_ok() => eprintln!("skip {m:?}"),
            Ok(ServerMsg::Error { message, .. }) => panic!("error while waiting for {method}: {message}"),
            Ok(_) => {}
            Err(e) => panic!("waiting for {method}: {e}"),
        }
    }
}

fn attr(c: &mut BlockingClient, id: Id, path: &[&str]) -> Option<Value> {
    let mut v = c.conn().entity(id)?.attrs.clone();
    for key in path {
        v = match v {
            Value::Map(mut m) => m.remove(*key)?,
            _ => return None,
        };
    }
    Some(v)
}

#[test]
fn every_action_does_what_the_bots_expect() {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_testgame"));
    let cluster = TestCluster::start("actions", &exe, 2, 2, "").expect("cluster");
    let mut c = BlockingClient::connect(&cluster.gate, Duration::from_secs(3)).expect("connect");
    let account = c.wait_player(Duration::from_secs(10)).expect("account");
    // The game heard that every process is up (its nil space's on_game_ready), read locally.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        c.call(account, "ready", vec![]).expect("send");
        if wait_call(&mut c, "on_ready") == vec![Value::Bool(true)] {
            break;
        }
        assert!(Instant::now() < deadline, "on_game_ready never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    c.call(account, "login", vec![Value::from("ann"), Value::from("wrong")]).expect("send");
    assert_eq!(wait_call(&mut c, "on_login"), vec![Value::Bool(false)]);
    c.call(account, "login", vec![Value::from("ann"), Value::from("123456")]).expect("send");
    assert_eq!(wait_call(&mut c, "on_login"), vec![Value::Bool(true)]);
    let avatar = c.conn().player().expect("player");
    assert_eq!(c.conn().entity_type(avatar), Some("Avatar"));
    // A second login of the same user while the first holds the avatar is refused (read
    // locally when the avatar lives on the second account's game, by a call otherwise).
    let mut twin = BlockingClient::connect(&cluster.gate, Duration::from_secs(3)).expect("connect");
    let twin_account = twin.wait_player(Duration::from_secs(10)).expect("account");
    twin.call(twin_account, "login", vec![Value::from("ann"), Value::from("123456")]).expect("send");
    assert_eq!(wait_call(&mut twin, "on_login"), vec![Value::Bool(false)]);
    drop(twin);
    assert_eq!(attr(&mut c, avatar, &["name"]), Some(Value::from("ann")));

    // A space by kind, through the Spaces service (retried until the service is up).
    c.call(avatar, "enter_space_kind", vec![Value::Int(101)]).expect("send");
    assert_eq!(wait_call(&mut c, "entered")[0], Value::Int(101));
    // Monsters of that space around (AOI), and an AOI tester that appears next to us.
    c.call(avatar, "test_aoi", vec![]).expect("send");
    let tester = wait_call(&mut c, "on_test_aoi");
    let Some(Value::Bytes(b)) = tester.first() else { panic!("{tester:?}") };
    let tester = Id(<[u8; 16]>::try_from(b.as_slice()).expect("16 bytes"));
    assert!(c.conn().entity(tester).is_some(), "the client was told about the AOI tester");
    // The nearest monster, found and faced through local access; the client's replica agrees
    // (once a position sync, every 100 ms, brought it the avatar's place in this space).
    let settle = Instant::now() + Duration::from_millis(400);
    while Instant::now() < settle {
        let _ = c.next(Duration::from_millis(50));
    }
    c.call(avatar, "nearest_monster", vec![]).expect("send");
    let near = wait_call(&mut c, "on_nearest");
    let Some(Value::Bytes(b)) = near.first() else { panic!("{near:?}") };
    let monster = Id(<[u8; 16]>::try_from(b.as_slice()).expect("16 bytes"));
    assert_eq!(near.get(3), Some(&Value::from("monster")), "its attribute, read locally");
    let told = near.get(1).and_then(Value::as_float).unwrap_or(-1.0);
    // Monsters stand at random spots; the client sees those within the avatar's AOI (100).
    match c.conn().entity(monster).map(|m| m.pos) {
        Some(seen) => {
            let me = c.conn().entity(avatar).expect("own replica").pos;
            let (dx, dz) = (seen.x - me.x, seen.z - me.z);
            assert!((f64::from((dx * dx + dz * dz).sqrt()) - told).abs() < 0.01, "distance {told} vs {dx},{dz}");
            let yaw = near.get(2).and_then(Value::as_float).unwrap_or(f64::NAN);
            assert!((f64::from(dx.atan2(dz).to_degrees()) - yaw).abs() < 0.01, "faces it: yaw {yaw}");
        }
        None => assert!(told > 99.0, "a monster {told} away is in sight but unknown to the client"),
    }
    // A call to every client around: ours is the only one; we answer it.
    c.call(avatar, "test_call_all", vec![]).expect("send");
    let from = wait_call(&mut c, "call_all_plz_echo");
    assert_eq!(from, vec![Value::id(avatar)]);
    c.call(avatar, "call_all_echo", vec![Value::id(avatar)]).expect("send");
    assert_eq!(wait_call(&mut c, "on_test_call_all"), vec![Value::Int(1)]);
    // Lists and nested attributes reach the replica.
    for seed in [5, 6, 7, 9, 3, 4] {
        c.call(avatar, "test_list", vec![Value::Int(seed)]).expect("send");
        let server = wait_call(&mut c, "on_test_list");
        assert_eq!(attr(&mut c, avatar, &["test_list"]).as_ref(), server.first());
    }
    c.call(avatar, "test_complex", vec![]).expect("send");
    wait_call(&mut c, "on_complex_set");
    let inner = Value::Map([("finalkey".to_owned(), Value::from("iamhere"))].into());
    let want = Value::List(vec![Value::Bool(true), Value::List(vec![inner])]);
    assert_eq!(attr(&mut c, avatar, &["complex", "key1", "key2"]), Some(want));
    wait_call(&mut c, "on_complex_clear");
    assert_eq!(attr(&mut c, avatar, &["complex"]), Some(Value::Map(Default::default())));
    // Chat channels.
    for channel in ["world", "prof"] {
        c.call(avatar, "say", vec![Value::from(channel), Value::from("hi")]).expect("send");
        let said = wait_call(&mut c, "on_say");
        assert_eq!(said, vec![Value::from("ann"), Value::from(channel), Value::from("hi")]);
    }
    // Mail through KVDB, the Online service.
    c.call(avatar, "mail", vec![Value::from("m1")]).expect("send");
    c.call(avatar, "mail", vec![Value::from("m2")]).expect("send");
    wait_call(&mut c, "on_mails");
    assert_eq!(wait_call(&mut c, "on_mails"), vec![Value::List(vec![Value::from("m1"), Value::from("m2")])]);
    // Publish/subscribe through the engine's sharded PubSub service: a wildcard and an exact
    // subscription, one delivery per publish (retried while the service registers).
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        c.call(avatar, "subscribe", vec![Value::from("news.*")]).expect("send");
        c.call(avatar, "subscribe", vec![Value::from("news.today")]).expect("send");
        c.call(avatar, "publish", vec![Value::from("news.today"), Value::from("rain")]).expect("send");
        match c.next(Duration::from_secs(2)) {
            Ok(ServerMsg::Call { method, args, .. }) if method == "on_publish" => break args,
            Ok(ServerMsg::Error { message, .. }) if message.contains("PubSub") || message.contains("reach") => {
                assert!(Instant::now() < deadline, "PubSub never came up: {message}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(m) => panic!("unexpected {m:?}"),
            Err(e) => panic!("no on_publish: {e}"),
        }
    };
    assert_eq!(got, vec![Value::from("news.today"), Value::from("rain")]);
    c.call(avatar, "publish", vec![Value::from("sports.today"), Value::from("goal")]).expect("send");
    c.call(avatar, "publish", vec![Value::from("news.tomorrow"), Value::from("sun")]).expect("send");
    loop {
        // (Earlier publishes of a retried first round may still arrive: never sports.)
        let got = wait_call(&mut c, "on_publish");
        assert_ne!(got.first(), Some(&Value::from("sports.today")), "not subscribed to sports");
        if got.first() == Some(&Value::from("news.tomorrow")) {
            assert_eq!(got, vec![Value::from("news.tomorrow"), Value::from("sun")]);
            break;
        }
    }
    c.call(avatar, "online", vec![]).expect("send");
    assert!(wait_call(&mut c, "on_online")[0].as_int().is_some_and(|n| n >= 1));
    // Nil spaces of both games (one of them is a migration), and back into a space.
    for pick in [0, 1] {
        c.call(avatar, "enter_random_nil_space", vec![Value::Int(pick)]).expect("send");
        assert_eq!(wait_call(&mut c, "entered")[0], Value::Int(0));
        c.call(avatar, "enter_space_kind", vec![Value::Int(102)]).expect("send");
        assert_eq!(wait_call(&mut c, "entered")[0], Value::Int(102));
    }
}
