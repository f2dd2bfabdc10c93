//! The arena through real processes (one dispatcher, two games, a gate): register and log in,
//! enter arena 1, see monsters appear, shoot a frozen test monster to death (its hp falling on
//! the client's replica, an `on_shoot` for every shot, the kill on the score board), move by
//! `ClientMsg::Move` (checked on the server), and change arenas (a migration when the other
//! arena lives on the other game).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use oxworld_bin::testkit::TestCluster;
use oxworld_client::{BlockingClient, ClientError};
use oxworld_net::client_proto::{ClientMsg, Pos, ServerMsg};
use oxworld_net::{Id, Value};

const WAIT: Duration = Duration::from_secs(20);

/// Reads messages until `f` picks one; returns what it picked.
fn wait_for<T>(c: &mut BlockingClient, what: &str, mut f: impl FnMut(&ServerMsg) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        match c.next(deadline.saturating_duration_since(Instant::now())) {
            Ok(m) => {
                if let Some(t) = f(&m) {
                    return t;
                }
            }
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
}

/// Waits for a call named `method` to the client (any error or `show_error` fails the test).
fn wait_call(c: &mut BlockingClient, method: &str) -> Vec<Value> {
    wait_for(c, method, |m| match m {
        ServerMsg::Call { method: got, args, .. } if got == method => Some(args.clone()),
        ServerMsg::Call { method: got, args, .. } if got == "show_error" => panic!("waiting for {method}: {args:?}"),
        ServerMsg::Error { message, .. } => panic!("waiting for {method}: error {message}"),
        _ => None,
    })
}

/// Reads messages until `cond` holds of the client's state.
fn wait_until(c: &mut BlockingClient, what: &str, mut cond: impl FnMut(&mut BlockingClient) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond(c) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        match c.next(Duration::from_millis(50)) {
            Ok(_) | Err(ClientError::Timeout(_)) => {}
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
}

/// Reads (and applies) whatever arrives for `d`.
fn drain(c: &mut BlockingClient, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        match c.next(until.saturating_duration_since(Instant::now())) {
            Ok(_) | Err(ClientError::Timeout(_)) => {}
            Err(e) => panic!("reading: {e}"),
        }
    }
}

/// Attribute `key` of entity `id` on the client's replica.
fn attr(c: &mut BlockingClient, id: Id, key: &str) -> Option<Value> {
    match &c.conn().entity(id)?.attrs {
        Value::Map(m) => m.get(key).cloned(),
        _ => None,
    }
}

fn int(c: &mut BlockingClient, id: Id, key: &str) -> Option<i64> {
    attr(c, id, key).and_then(|v| v.as_int())
}

fn as_id(v: Option<&Value>) -> Id {
    v.and_then(Value::as_id).unwrap_or_else(|| panic!("an entity id: {v:?}"))
}

fn float(v: Option<&Value>) -> f32 {
    v.and_then(Value::as_float).unwrap_or_else(|| panic!("a number: {v:?}")) as f32
}

/// `locate()`: (x, z, arena kind, game) as the server has them.
fn locate(c: &mut BlockingClient, player: Id) -> (f32, f32, i64, i64) {
    c.call(player, "locate", vec![]).expect("send");
    let at = wait_call(c, "on_locate");
    let kind = at.get(3).and_then(Value::as_int).expect("kind");
    let game = at.get(4).and_then(Value::as_int).expect("game");
    (float(at.first()), float(at.get(2)), kind, game)
}

#[test]
fn a_player_fights_scores_moves_and_changes_arenas() {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_arena"));
    let cluster = TestCluster::start("arena", &exe, 1, 2, "").expect("cluster");
    let mut c = BlockingClient::connect(&cluster.gate, Duration::from_secs(3)).expect("connect");
    let account = c.wait_player(Duration::from_secs(10)).expect("account");
    assert_eq!(c.conn().entity_type(account), Some("Account"));

    // Register, a wrong password, then the right one.
    c.call(account, "register", vec![Value::from("ann"), Value::from("s3cret")]).expect("send");
    assert_eq!(wait_call(&mut c, "show_info"), vec![Value::from("registered; now log in")]);
    c.call(account, "login", vec![Value::from("ann"), Value::from("wrong")]).expect("send");
    let refused = wait_for(&mut c, "show_error", |m| match m {
        ServerMsg::Call { method, args, .. } if method == "show_error" => Some(args.clone()),
        _ => None,
    });
    assert_eq!(refused, vec![Value::from("wrong user name or password")]);
    c.call(account, "login", vec![Value::from("ann"), Value::from("s3cret")]).expect("send");

    // The client now plays the user's Player, which enters arena 1 (through the Arenas
    // service, retried until it is up).
    let arena = wait_call(&mut c, "on_arena");
    assert_eq!(arena.first(), Some(&Value::Int(1)), "{arena:?}");
    let player = c.conn().player().expect("player");
    assert_eq!(c.conn().entity_type(player), Some("Player"));
    assert_eq!(attr(&mut c, player, "name"), Some(Value::from("ann")));
    assert_eq!(int(&mut c, player, "level"), Some(1));
    assert_eq!(int(&mut c, player, "hp"), Some(100));
    assert_eq!(int(&mut c, player, "hp_max"), Some(100));
    assert_eq!(int(&mut c, player, "score"), Some(0));
    assert!(attr(&mut c, player, "action").is_some());

    // The arena spawns two monsters per player, near it (within its view).
    let monster = wait_for(&mut c, "a monster", |m| match m {
        ServerMsg::CreateEntity { id, type_name, .. } if type_name == "Monster" => Some(*id),
        _ => None,
    });
    assert_eq!(attr(&mut c, monster, "name"), Some(Value::from("monster")));
    assert_eq!(int(&mut c, monster, "hp_max"), Some(100));

    // A frozen test monster 10 units away, exactly where asked.
    let (x, z, kind, _) = locate(&mut c, player);
    assert_eq!(kind, 1);
    c.call(player, "spawn_test_monster", vec![Value::Float(10.0), Value::Float(0.0)]).expect("send");
    let target = as_id(wait_call(&mut c, "on_test_monster").first());
    wait_until(&mut c, "the test monster", |c| c.conn().entity(target).is_some());
    let seen = c.conn().entity(target).expect("replica").pos;
    assert!((seen.x - (x + 10.0)).abs() < 0.01 && (seen.z - z).abs() < 0.01, "{seen:?} vs {x},{z}");
    assert_eq!(int(&mut c, target, "hp"), Some(100));

    // Shoot it to death: every shot is answered with `on_shoot`; each hit takes 25 hp off
    // the replica. Shots may be refused while the cooldown runs or if the monsters around
    // killed us meanwhile (we respawn and shoot on).
    let (mut shots, mut hits, mut last_hp) = (0, 0, 100);
    while last_hp > 0 {
        assert!(shots < 80, "{shots} shots, {hits} hits, the monster still has {last_hp} hp");
        c.call(player, "shoot", vec![Value::id(target)]).expect("send");
        shots += 1;
        let outcome = wait_for(&mut c, "on_shoot", |m| match m {
            ServerMsg::Call { method, args, .. } if method == "on_shoot" => Some(Ok(args.clone())),
            ServerMsg::Error { message, .. } => Some(Err(message.clone())),
            _ => None,
        });
        match outcome {
            Ok(args) => {
                assert_eq!(args.first(), Some(&Value::id(player)));
                assert_eq!(args.get(1), Some(&Value::id(target)));
                let hit = args.get(2) == Some(&Value::Bool(true));
                assert_eq!(args.get(3), Some(&Value::Int(if hit { 25 } else { 0 })), "{args:?}");
                hits += usize::from(hit);
            }
            Err(message) => assert!(message.contains("dead") || message.contains("too fast"), "{message}"),
        }
        // Past the cooldown; the damage reaches the replica meanwhile.
        drain(&mut c, Duration::from_millis(250));
        let hp = int(&mut c, target, "hp").expect("the monster's hp");
        assert!(hp <= last_hp, "hp never rises: {hp} after {last_hp}");
        last_hp = hp;
    }
    assert_eq!(hits, 4, "100 hp, 25 per hit");
    assert_eq!(attr(&mut c, target, "action"), Some(Value::from("dead")));
    // The corpse goes; the kill is ours.
    wait_for(&mut c, "the corpse to go", |m| {
        matches!(m, ServerMsg::DestroyEntity { id } if *id == target).then_some(())
    });
    wait_until(&mut c, "the kill's score", |c| int(c, player, "score").is_some_and(|s| s >= 1));

    // The score board has it.
    c.call(player, "scores", vec![]).expect("send");
    let board = wait_call(&mut c, "on_scores");
    let Some(Value::List(entries)) = board.first() else { panic!("{board:?}") };
    let ours = entries.iter().find_map(|e| match e {
        Value::List(p) if p.first() == Some(&Value::from("ann")) => p.get(1).and_then(Value::as_int),
        _ => None,
    });
    assert!(ours.is_some_and(|s| s >= 1), "{entries:?}");

    // The client moves the player; the server has the new place (moves are refused for the
    // few hundred ms after a respawn: sent again until they land).
    let deadline = Instant::now() + WAIT;
    loop {
        let (x, z, _, _) = locate(&mut c, player);
        let want = Pos { x: (x + 5.0).min(195.0), y: 0.0, z: (z + 5.0).min(195.0), yaw: 90.0 };
        c.conn().send(&ClientMsg::Move { id: player, pos: want });
        c.flush().expect("send");
        drain(&mut c, Duration::from_millis(200));
        let (nx, nz, _, _) = locate(&mut c, player);
        if (nx - want.x).abs() < 0.01 && (nz - want.z).abs() < 0.01 {
            break;
        }
        assert!(Instant::now() < deadline, "the move never reached the server: at {nx},{nz}, wanted {want:?}");
    }

    // Another arena (made on the least-loaded game: maybe a migration), and a bad kind.
    c.call(player, "go_arena", vec![Value::Int(9)]).expect("send");
    let err = wait_for(&mut c, "a refusal", |m| match m {
        ServerMsg::Error { message, .. } => Some(message.clone()),
        _ => None,
    });
    assert!(err.contains("arena kinds"), "{err}");
    let deadline = Instant::now() + WAIT;
    let arena = loop {
        c.call(player, "go_arena", vec![Value::Int(2)]).expect("send");
        match wait_for(&mut c, "on_arena", |m| match m {
            ServerMsg::Call { method, args, .. } if method == "on_arena" => Some(Ok(args.clone())),
            ServerMsg::Error { message, .. } => Some(Err(message.clone())),
            _ => None,
        }) {
            Ok(args) => break args,
            // Killed by the monsters meanwhile: wait for the respawn.
            Err(message) if message.contains("dead") && Instant::now() < deadline => {
                drain(&mut c, Duration::from_millis(500));
            }
            Err(message) => panic!("go_arena: {message}"),
        }
    };
    assert_eq!(arena.first(), Some(&Value::Int(2)), "{arena:?}");
    let (_, _, kind, game) = locate(&mut c, player);
    assert_eq!(kind, 2);
    assert!(game == 1 || game == 2, "game {game}");
    assert_eq!(c.conn().player(), Some(player), "the same player after the move");
}
