//! Real-process tests of what must survive: bots keep calling and chatting while
//! `oxworld reload` hot-swaps both games twice (every call answered exactly once, in order,
//! no disconnect), and a game killed with SIGKILL comes back with its persistent state as of
//! the last save. Each test runs its own cluster (`oxworld_bin::testkit`: 2 dispatchers, 2
//! games, 1 gate) on free loopback ports with its own run, store and freeze directories.

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use oxworld_bin::testkit::TestCluster;
use oxworld_client::{BlockingClient, ClientError};
use oxworld_net::client_proto::ServerMsg;
use oxworld_net::{Id, Value};

/// A cluster of 2 dispatchers, 2 games running the chatroom, 1 gate, saving every second.
fn cluster(name: &str) -> TestCluster {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_chatroom"));
    TestCluster::start(name, &exe, 2, 2, "[storage]\nsave_interval_s = 1\n").expect("cluster starts")
}

/// A logged-in chat user.
struct Bot {
    c: BlockingClient,
    avatar: Id,
    name: String,
    /// The avatar's greeting (names the room it is in).
    welcome: String,
}

/// Waits for a `show_info` / `show_error` call; returns (is_error, text).
fn answer(c: &mut BlockingClient) -> (bool, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next(left).expect("an answer") {
            ServerMsg::Call { method, args, .. } if method == "show_info" || method == "show_error" => {
                return (method == "show_error", args[0].as_str().unwrap_or("").to_owned());
            }
            ServerMsg::Error { message, .. } => return (true, message),
            _ => {}
        }
    }
}

fn login(addr: SocketAddr, name: &str, register: bool) -> Bot {
    let mut c = BlockingClient::connect(addr, Duration::from_secs(3)).expect("connect");
    let account = c.wait_player(Duration::from_secs(10)).expect("account");
    if register {
        c.call(account, "register", vec![Value::from(name), Value::from("pw")]).expect("send");
        let (err, text) = answer(&mut c);
        assert!(!err, "register {name}: {text}");
    }
    c.call(account, "login", vec![Value::from(name), Value::from("pw")]).expect("send");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.next(deadline.saturating_duration_since(Instant::now())).expect("login answer") {
            ServerMsg::CreateEntity { is_player: true, id, type_name, .. } if type_name == "Avatar" => {
                let (err, welcome) = answer(&mut c);
                assert!(!err && welcome.starts_with("welcome"), "{welcome}");
                return Bot { c, avatar: id, name: name.to_owned(), welcome };
            }
            ServerMsg::Call { method, args, .. } if method == "show_error" => panic!("login {name}: {args:?}"),
            _ => {}
        }
    }
}

/// What one bot saw while it called and chatted.
#[derive(Default, Debug)]
struct Tally {
    sent: i64,
    pongs: Vec<i64>,
    own_chats: Vec<i64>,
    games: BTreeMap<i64, u64>,
    errors: Vec<String>,
    disconnected: Option<String>,
}

/// Keeps up to `window` pings and chats in flight until `stop`, then drains the replies.
fn run_bot(mut bot: Bot, stop: Arc<AtomicBool>, window: i64) -> Tally {
    let mut t = Tally::default();
    let handle = |t: &mut Tally, m: ServerMsg, name: &str| match m {
        ServerMsg::Call { method, args, .. } if method == "pong" => {
            t.pongs.push(args[0].as_int().unwrap_or(-1));
            *t.games.entry(args[1].as_int().unwrap_or(-1)).or_default() += 1;
        }
        ServerMsg::Call { method, args, .. } if method == "on_recv_chat" && args[0].as_str() == Some(name) => {
            let n = args[1].as_str().and_then(|s| s.strip_prefix("m ")).and_then(|s| s.parse().ok());
            t.own_chats.push(n.unwrap_or(-1));
        }
        ServerMsg::Call { method, args, .. } if method == "show_error" => t.errors.push(format!("{args:?}")),
        ServerMsg::Error { message, .. } => t.errors.push(message),
        _ => {}
    };
    while !stop.load(Ordering::Relaxed) {
        if t.sent - (t.pongs.len() as i64) < window {
            let n = t.sent;
            let r = bot
                .c
                .call(bot.avatar, "ping", vec![Value::Int(n)])
                .and_then(|()| bot.c.call(bot.avatar, "send_chat", vec![Value::from(format!("m {n}").as_str())]));
            if let Err(e) = r {
                t.disconnected = Some(e.to_string());
                return t;
            }
            t.sent += 1;
        }
        match bot.c.next(Duration::from_millis(20)) {
            Ok(m) => handle(&mut t, m, &bot.name),
            Err(ClientError::Timeout(_)) => {}
            Err(e) => {
                t.disconnected = Some(e.to_string());
                return t;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while (t.pongs.len() as i64) < t.sent || (t.own_chats.len() as i64) < t.sent {
        match bot.c.next(deadline.saturating_duration_since(Instant::now())) {
            Ok(m) => handle(&mut t, m, &bot.name),
            Err(e) => {
                t.disconnected = Some(format!("draining: {e}"));
                break;
            }
        }
    }
    t
}

fn reload(c: &TestCluster) -> String {
    let out = c.cli(&["reload"]).expect("oxworld runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "oxworld reload failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("reloaded 2 games"), "{stdout}");
    stdout
}

#[test]
fn bots_never_notice_two_reloads_of_both_games() {
    let cluster = cluster("reload");
    let bots: Vec<Bot> = (0..6).map(|i| login(cluster.gate, &format!("bot{i}"), true)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = bots
        .into_iter()
        .map(|b| {
            let stop = stop.clone();
            std::thread::spawn(move || run_bot(b, stop, 4))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let first = reload(&cluster);
    std::thread::sleep(Duration::from_millis(500));
    let second = reload(&cluster);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for (i, th) in threads.into_iter().enumerate() {
        let t = th.join().expect("bot thread");
        assert_eq!(t.disconnected, None, "bot{i} disconnected: {t:?}");
        assert!(t.errors.is_empty(), "bot{i} got errors: {:?}", t.errors);
        assert_eq!(t.pongs, (0..t.sent).collect::<Vec<_>>(), "bot{i}: every ping answered once, in order");
        assert_eq!(t.own_chats, (0..t.sent).collect::<Vec<_>>(), "bot{i}: every chat delivered once, in order");
        assert!(t.sent >= 20, "bot{i} only sent {}", t.sent);
    }
    // Both games were swapped twice and each reported its held traffic.
    for report in [&first, &second] {
        assert!(report.contains("game1:") && report.contains("game2:"), "{report}");
        assert!(report.contains("0 failed"), "{report}");
    }
    // Still serving new logins after the swaps.
    let mut late = login(cluster.gate, "bot0", false);
    late.c.call(late.avatar, "ping", vec![Value::Int(7)]).expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match late.c.next(deadline.saturating_duration_since(Instant::now())).expect("pong") {
            ServerMsg::Call { method, .. } if method == "pong" => break,
            _ => {}
        }
    }
}

/// Persistent state as of the last save comes back after a SIGKILL: the avatar's room.
#[test]
fn a_killed_game_comes_back_with_what_was_saved() {
    let cluster = cluster("crash");
    let mut bot = login(cluster.gate, "carol", true);
    bot.c.call(bot.avatar, "join_room", vec![Value::from("blue")]).expect("send");
    let (err, text) = answer(&mut bot.c);
    assert!(!err && text.contains("blue"), "{text}");
    // Which game holds the avatar.
    bot.c.call(bot.avatar, "ping", vec![Value::Int(1)]).expect("send");
    let game = loop {
        if let ServerMsg::Call { method, args, .. } = bot.c.next(Duration::from_secs(10)).expect("pong")
            && method == "pong"
        {
            break args[1].as_int().expect("game id");
        }
    };
    // save_interval_s = 1: wait for a save, then kill -9 that game.
    std::thread::sleep(Duration::from_millis(2500));
    let pid = cluster.game_pid(game as u16).expect("pid file");
    assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().expect("kill").success());
    std::thread::sleep(Duration::from_millis(300));
    // Calls to the lost avatar get a clear error, not silence.
    bot.c.call(bot.avatar, "ping", vec![Value::Int(2)]).expect("send");
    let (err, text) = answer(&mut bot.c);
    assert!(err, "expected an error for a call to an entity of a dead game, got {text}");
    drop(bot);
    // `oxworld start` brings the game back; the next login loads the saved avatar.
    let out = cluster.cli(&["start", "--no-build"]).expect("oxworld runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = login(cluster.gate, "carol", false);
    assert!(again.welcome.contains("room blue"), "the saved room is back: {}", again.welcome);
}

/// The chat itself: two users hear each other in the default room without any `/join`
/// (GoWorld's quirk fixed), `/join` moves one of them away, wrong passwords and taken names
/// are refused, and nothing is stored in clear.
#[test]
fn users_chat_in_rooms_and_passwords_are_not_stored_in_clear() {
    let cluster = cluster("chat");
    let mut ann = login(cluster.gate, "ann", true);
    let mut bob = login(cluster.gate, "bob", true);
    assert!(ann.welcome.contains("room 1") && bob.welcome.contains("room 1"));
    let hear = |b: &mut Bot| -> Vec<(String, String)> {
        let mut got = Vec::new();
        while let Ok(m) = b.c.next(Duration::from_millis(400)) {
            if let ServerMsg::Call { method, args, .. } = m
                && method == "on_recv_chat"
            {
                got.push((args[0].as_str().unwrap_or("").to_owned(), args[1].as_str().unwrap_or("").to_owned()));
            }
        }
        got
    };
    ann.c.call(ann.avatar, "send_chat", vec![Value::from("hello")]).expect("send");
    let want = vec![("ann".to_owned(), "hello".to_owned())];
    assert_eq!(hear(&mut bob), want, "bob hears ann with no /join");
    assert_eq!(hear(&mut ann), want, "ann hears herself");
    bob.c.call(bob.avatar, "join_room", vec![Value::from("red")]).expect("send");
    let (err, text) = answer(&mut bob.c);
    assert!(!err && text.contains("red"), "{text}");
    ann.c.call(ann.avatar, "send_chat", vec![Value::from("anyone?")]).expect("send");
    assert!(hear(&mut bob).is_empty(), "bob left room 1");
    assert_eq!(hear(&mut ann).len(), 1);
    // Refusals.
    let mut c = BlockingClient::connect(cluster.gate, Duration::from_secs(3)).expect("connect");
    let account = c.wait_player(Duration::from_secs(10)).expect("account");
    c.call(account, "register", vec![Value::from("ann"), Value::from("other")]).expect("send");
    assert_eq!(answer(&mut c), (true, "that user name is taken".to_owned()));
    c.call(account, "login", vec![Value::from("ann"), Value::from("wrong")]).expect("send");
    assert_eq!(answer(&mut c), (true, "wrong user name or password".to_owned()));
    c.call(account, "register", vec![Value::from("bad name!"), Value::from("x")]).expect("send");
    assert!(answer(&mut c).0);
    // The store holds a salted Argon2 hash, never the password.
    let data = fs::read(cluster.dir.join("store/data.mdb")).expect("lmdb file");
    let text = String::from_utf8_lossy(&data);
    assert!(text.contains("password$ann") && text.contains("$argon2id$"), "stored as a hash");
    assert!(!text.contains("\u{0}pw\u{0}") && !text.contains("other"), "no clear password");
}
