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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oxworld_bin::testkit::TestCluster;
use oxworld_client::{BlockingClient, ClientError, Dial};
use oxworld_net::client_proto::ServerMsg;
use oxworld_net::{Id, Value};

/// A cluster of 2 dispatchers, 2 games running the chatroom, 1 gate, saving every second.
/// The bots here call as fast as answers come back (over 1,000 calls/s for a lone bot on
/// loopback), past the gate's default rate limit: these tests are about hot swaps, so the
/// limit is raised.
fn cluster(name: &str) -> TestCluster {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_chatroom"));
    let extra = "[storage]\nsave_interval_s = 1\n[gate_common]\ncall_rate_per_s = 100000\ncall_burst = 100000\n";
    TestCluster::start(name, &exe, 2, 2, extra).expect("cluster starts")
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

fn login(dial: &Dial, name: &str, register: bool) -> Bot {
    let mut c = BlockingClient::connect(dial, Duration::from_secs(3)).expect("connect");
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

/// Keeps up to `window` pings and chats in flight until `stop`, then drains the replies;
/// `pongs` counts the answers as they come (what the test waits on instead of sleeping).
fn run_bot(mut bot: Bot, stop: Arc<AtomicBool>, window: i64, pongs: Arc<AtomicU64>) -> Tally {
    let mut t = Tally::default();
    let handle = |t: &mut Tally, m: ServerMsg, name: &str| match m {
        ServerMsg::Call { method, args, .. } if method == "pong" => {
            pongs.fetch_add(1, Ordering::Relaxed);
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

/// Waits until every counter in `pongs` has moved on by `more` from where it is now.
fn wait_progress(pongs: &[Arc<AtomicU64>], more: u64) {
    let from: Vec<u64> = pongs.iter().map(|p| p.load(Ordering::Relaxed)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while pongs.iter().zip(&from).any(|(p, f)| p.load(Ordering::Relaxed) < f + more) {
        assert!(Instant::now() < deadline, "bots stopped getting answers");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts one thread per bot running [`run_bot`]; their answer counters.
fn spawn_bots(bots: Vec<Bot>, stop: &Arc<AtomicBool>) -> (Vec<std::thread::JoinHandle<Tally>>, Vec<Arc<AtomicU64>>) {
    let counters: Vec<Arc<AtomicU64>> = bots.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
    let threads = bots
        .into_iter()
        .zip(&counters)
        .map(|(b, n)| {
            let (stop, n) = (stop.clone(), n.clone());
            std::thread::spawn(move || run_bot(b, stop, 4, n))
        })
        .collect();
    (threads, counters)
}

/// Every ping answered once and in order, every chat heard once and in order, no error, no
/// disconnect.
fn check_tally(i: usize, t: &Tally) {
    assert_eq!(t.disconnected, None, "bot{i} disconnected: {t:?}");
    assert!(t.errors.is_empty(), "bot{i} got errors: {:?}", t.errors);
    assert_eq!(t.pongs, (0..t.sent).collect::<Vec<_>>(), "bot{i}: every ping answered once, in order");
    assert_eq!(t.own_chats, (0..t.sent).collect::<Vec<_>>(), "bot{i}: every chat delivered once, in order");
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
    let bots: Vec<Bot> = (0..6).map(|i| login(&cluster.gate, &format!("bot{i}"), true)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (threads, pongs) = spawn_bots(bots, &stop);
    // Each swap happens while every bot has calls in flight and after each got answers.
    wait_progress(&pongs, 10);
    let first = reload(&cluster);
    wait_progress(&pongs, 10);
    let second = reload(&cluster);
    wait_progress(&pongs, 10);
    stop.store(true, Ordering::Relaxed);
    for (i, th) in threads.into_iter().enumerate() {
        check_tally(i, &th.join().expect("bot thread"));
    }
    // Both games were swapped twice and each reported its held traffic.
    for report in [&first, &second] {
        assert!(report.contains("game1:") && report.contains("game2:"), "{report}");
        assert!(report.contains("0 failed"), "{report}");
    }
    // Still serving new logins after the swaps.
    let mut late = login(&cluster.gate, "bot0", false);
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
    let mut bot = login(&cluster.gate, "carol", true);
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
    // save_interval_s = 1: wait until the room is in the store, then kill -9 that game.
    let store = cluster.dir.join("store/data.mdb");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !fs::read(&store).is_ok_and(|d| String::from_utf8_lossy(&d).contains("blue")) {
        assert!(Instant::now() < deadline, "the avatar was never saved");
        std::thread::sleep(Duration::from_millis(20));
    }
    // LMDB writes a transaction's data pages before its meta page: the bytes can be in the
    // file a moment before the save is committed. Give that commit (well under a millisecond)
    // ample time, so the kill lands after it: this test is about what was saved.
    std::thread::sleep(Duration::from_millis(500));
    let pid = cluster.game_pid(game as u16).expect("pid file");
    assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().expect("kill").success());
    // Calls to the lost avatar get a clear error, not silence: a call sent before the
    // dispatcher saw the link close is lost with the process, so ask until one is answered.
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        assert!(Instant::now() < deadline, "no error for calls to an entity of a dead game");
        bot.c.call(bot.avatar, "ping", vec![Value::Int(2)]).expect("send");
        match bot.c.next(Duration::from_millis(200)) {
            Ok(ServerMsg::Error { message, .. }) => break message,
            Ok(ServerMsg::Call { method, .. }) if method == "pong" => panic!("a killed game answered"),
            _ => {}
        }
    };
    assert!(text.contains("no entity"), "{text}");
    drop(bot);
    // `oxworld start` brings the game back; the next login loads the saved avatar.
    let out = cluster.cli(&["start", "--no-build"]).expect("oxworld runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = login(&cluster.gate, "carol", false);
    assert!(again.welcome.contains("room blue"), "the saved room is back: {}", again.welcome);
}

/// The chat itself: two users hear each other in the default room without any `/join`
/// (GoWorld's quirk fixed), `/join` moves one of them away, wrong passwords and taken names
/// are refused, and nothing is stored in clear.
#[test]
fn users_chat_in_rooms_and_passwords_are_not_stored_in_clear() {
    let cluster = cluster("chat");
    let mut ann = login(&cluster.gate, "ann", true);
    let mut bob = login(&cluster.gate, "bob", true);
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
    let mut c = BlockingClient::connect(&cluster.gate, Duration::from_secs(3)).expect("connect");
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

/// Hostile peers on the internal port: a thousand idle connections per dispatcher and
/// connections announcing 32 MiB frames, opened while a bot chats and both games are
/// hot-swapped. The dispatchers close every one of them (pending connections are capped at
/// `max_pending_conns` = 64 and timed out; frames before the handshake are capped at 64 KiB),
/// stay small, and the bot never notices: every call answered once, in order.
#[test]
fn a_flooded_dispatcher_keeps_serving_and_reloading() {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    let cluster = cluster("flood");
    let bot = login(&cluster.gate, "flood0", true);
    let stop = Arc::new(AtomicBool::new(false));
    let (threads, pongs) = spawn_bots(vec![bot], &stop);
    wait_progress(&pongs, 10);
    let targets: Vec<SocketAddr> = cluster.cfg.dispatchers.iter().map(|d| d.listen_addr).collect();
    let flood = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for i in 0..2000 {
            let to = targets[i % targets.len()];
            let Ok(mut s) = TcpStream::connect_timeout(&to, Duration::from_secs(2)) else { continue };
            if i % 50 == 0 {
                // A frame claiming 32 MiB, trickled: refused at its length prefix.
                let _ = s.write_all(&(32u32 << 20).to_le_bytes());
                let _ = s.write_all(&[0x55; 1024]);
            }
            conns.push(s);
        }
        conns
    });
    let report = reload(&cluster);
    assert!(report.contains("0 failed"), "{report}");
    let conns = flood.join().expect("flood thread");
    assert!(conns.len() >= 1900, "only {} flood connections opened", conns.len());
    wait_progress(&pongs, 10);
    // Every flood connection is closed by the dispatcher within the handshake timeout (5 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut open = 0;
    for mut s in conns {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        s.set_read_timeout(Some(left)).expect("timeout");
        let mut buf = [0u8; 256];
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                    break false;
                }
                Err(_) => break true,
            }
        };
        open += usize::from(!closed);
    }
    assert_eq!(open, 0, "flood connections the dispatchers left open");
    // No dispatcher buffered a claimed 32 MiB frame.
    for d in 1..=2 {
        let pid = fs::read_to_string(cluster.layout.run_dir.join(format!("dispatcher{d}.pid"))).expect("pid file");
        let status = fs::read_to_string(format!("/proc/{}/status", pid.trim())).expect("proc status");
        let peak_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM");
        assert!(peak_kb < 128 * 1024, "dispatcher{d} peaked at {peak_kb} KiB");
    }
    stop.store(true, Ordering::Relaxed);
    for (i, th) in threads.into_iter().enumerate() {
        check_tally(i, &th.join().expect("bot thread"));
    }
}

/// Twenty connections spam logins with a wrong password for a real account (each one an
/// Argon2id verification, about 10 ms of CPU) while one logged-in user pings its avatar: the
/// hashing runs on the game's job threads, so the loop keeps answering. Prints the chatting
/// user's p50/p99 round trip and the logins verified; the bound asserted (p99 under 250 ms)
/// is far above what it measures, and far below the 20 x 10 ms a loop doing the hashing
/// itself would add to each round.
#[test]
fn login_spam_does_not_stall_a_chatting_user() {
    let cluster = TestCluster::start(
        "spam",
        &PathBuf::from(env!("CARGO_BIN_EXE_chatroom")),
        1,
        1,
        "[storage]\nsave_interval_s = 1\n",
    )
    .expect("cluster starts");
    drop(login(&cluster.gate, "victim", true));
    let mut chatter = login(&cluster.gate, "chatter", true);
    let stop = Arc::new(AtomicBool::new(false));
    let verified = Arc::new(AtomicU64::new(0));
    let spammers: Vec<_> = (0..20)
        .map(|_| {
            let (stop, verified, gate) = (stop.clone(), verified.clone(), cluster.gate.clone());
            std::thread::spawn(move || {
                let mut c = BlockingClient::connect(&gate, Duration::from_secs(3)).expect("connect");
                let account = c.wait_player(Duration::from_secs(10)).expect("account");
                while !stop.load(Ordering::Relaxed) {
                    c.call(account, "login", vec![Value::from("victim"), Value::from("guess")]).expect("send");
                    let (err, text) = answer(&mut c);
                    assert!(err, "a wrong password logged in: {text}");
                    if text == "wrong user name or password" {
                        verified.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Let the spam get going, then time round trips until at least 300 were timed and 40
    // logins were verified meanwhile.
    let deadline = Instant::now() + Duration::from_secs(60);
    while verified.load(Ordering::Relaxed) < 20 {
        assert!(Instant::now() < deadline, "the spam never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = verified.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let mut rtts = Vec::new();
    let mut n = 0;
    while n < 300 || verified.load(Ordering::Relaxed) - before < 40 {
        assert!(Instant::now() < deadline, "the spam stopped being verified");
        n += 1;
        let sent = Instant::now();
        chatter.c.call(chatter.avatar, "ping", vec![Value::Int(n)]).expect("send");
        loop {
            match chatter.c.next(Duration::from_secs(10)).expect("pong") {
                ServerMsg::Call { method, args, .. } if method == "pong" => {
                    assert_eq!(args[0].as_int(), Some(n));
                    break;
                }
                _ => {}
            }
        }
        rtts.push(sent.elapsed());
    }
    let spent = t0.elapsed();
    let during = verified.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    for s in spammers {
        s.join().expect("spammer");
    }
    rtts.sort();
    let (p50, p99) = (rtts[rtts.len() / 2], rtts[rtts.len() * 99 / 100]);
    println!(
        "login spam: {during} wrong-password logins verified in {spent:?} ({:.0}/s) while the chatter's ping took p50 \
         {p50:?}, p99 {p99:?}",
        during as f64 / spent.as_secs_f64()
    );
    assert!(during > 0, "the spam kept hashing while the chatter was timed");
    assert!(p99 < Duration::from_millis(250), "p99 {p99:?}");
}
