//! Real-process test: 2 dispatchers, 2 games running the echo demo and 1 gate on loopback,
//! with a generated config on free ports and a run directory of its own. Clients call echo and
//! relay_echo, check which game answered, send hostile input, and everything is stopped with no
//! process left behind.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxworld_client::BlockingClient;
use oxworld_net::client_proto::{ErrorCode, ServerMsg};
use oxworld_net::{Id, Value};

const WAIT: Duration = Duration::from_secs(20);

use oxworld_bin::testkit::{cargo_build, free_ports};

/// The directory holding this test's binaries; builds the dispatcher and gate (always through
/// cargo, a no-op when they are fresh: a stale binary would test old code).
fn bin_dir() -> PathBuf {
    let game = PathBuf::from(env!("CARGO_BIN_EXE_echo"));
    let dir = game.parent().expect("binary dir").to_path_buf();
    cargo_build("oxworld-bin", &dir).expect("building oxworld-bin");
    dir
}

/// Processes of one test cluster; killed on drop if the test fails half-way.
struct Cluster {
    dir: PathBuf,
    gate_addr: SocketAddr,
    procs: Vec<(String, Child)>,
}

impl Cluster {
    fn start(name: &str, dispatchers: usize, games: usize) -> Cluster {
        let dir = std::env::temp_dir().join(format!("oxworld-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("run dir");
        let ports = free_ports(dispatchers + 1);
        assert_eq!(ports.len(), dispatchers + 1, "free loopback ports");
        let gate_port = ports[0];
        let mut ini = format!(
            "[deployment]\ndesired_dispatchers = {dispatchers}\ndesired_games = {games}\ndesired_gates = 1\nsecret = test-secret\n\
             [gate1]\nlisten_addr = 127.0.0.1:{gate_port}\nheartbeat_timeout_s = 30\nmax_client_frame_bytes = 4096\n\
             [storage]\ndir = {}\nfreeze_dir = {}\n",
            dir.join("store").display(),
            dir.join("freeze").display()
        );
        for (d, port) in ports.iter().enumerate().skip(1) {
            ini.push_str(&format!("[dispatcher{d}]\nlisten_addr = 127.0.0.1:{port}\n"));
        }
        let config = dir.join("oxworld.ini");
        fs::write(&config, ini).expect("config");
        let bins = bin_dir();
        let mut c =
            Cluster { dir: dir.clone(), gate_addr: SocketAddr::from(([127, 0, 0, 1], gate_port)), procs: Vec::new() };
        for d in 1..=dispatchers {
            c.spawn(&bins.join("oxworld-dispatcher"), "dispatcher", d, &config);
        }
        for g in 1..=games {
            c.spawn(&PathBuf::from(env!("CARGO_BIN_EXE_echo")), "game", g, &config);
        }
        c.spawn(&bins.join("oxworld-gate"), "gate", 1, &config);
        c
    }

    fn spawn(&mut self, exe: &Path, kind: &str, id: usize, config: &Path) {
        let log = fs::File::create(self.dir.join(format!("{kind}{id}.log"))).expect("log file");
        let child = Command::new(exe)
            .args(["--config", config.to_str().expect("utf-8 path"), "--id", &id.to_string(), "--log", "debug"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn");
        self.procs.push((format!("{kind}{id}"), child));
    }

    /// A client with its boot entity, retrying while the cluster comes up.
    fn client(&self) -> (BlockingClient, Id) {
        let deadline = Instant::now() + WAIT;
        loop {
            let attempt = BlockingClient::connect(self.gate_addr, Duration::from_secs(1)).and_then(|mut c| {
                let p = c.wait_player(Duration::from_secs(5))?;
                Ok((c, p))
            });
            match attempt {
                Ok(ok) => return ok,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("no boot entity within {WAIT:?}: {e}; logs in {}", self.dir.display()),
            }
        }
    }

    fn running(&mut self) -> Vec<String> {
        self.procs.iter_mut().filter_map(|(n, c)| matches!(c.try_wait(), Ok(None)).then(|| n.clone())).collect()
    }

    /// SIGTERM in order gate -> games -> dispatchers; every process must exit 0.
    fn stop(mut self) {
        let procs = std::mem::take(&mut self.procs);
        for (name, mut child) in procs.into_iter().rev() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            let status = loop {
                if let Ok(Some(st)) = child.try_wait() {
                    break st;
                }
                assert!(Instant::now() < deadline, "{name} did not stop on SIGTERM; logs in {}", self.dir.display());
                std::thread::sleep(Duration::from_millis(20));
            };
            assert!(status.success(), "{name} exited with {status}; logs in {}", self.dir.display());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, c) in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The next `Call` from the server, skipping anything else; panics on an error message.
fn reply(c: &mut BlockingClient) -> (String, Vec<Value>) {
    loop {
        match c.next(WAIT).expect("a server message") {
            ServerMsg::Call { method, args, .. } => return (method, args),
            ServerMsg::Error { message, .. } => panic!("unexpected error: {message}"),
            _ => {}
        }
    }
}

fn error(c: &mut BlockingClient) -> (u16, String) {
    loop {
        match c.next(WAIT).expect("a server message") {
            ServerMsg::Error { code, message, .. } => return (code, message),
            ServerMsg::Call { method, .. } => panic!("expected an error, got a call of {method}"),
            _ => {}
        }
    }
}

#[test]
fn echo_relay_and_hostile_input_across_two_games() {
    let cluster = Cluster::start("echo", 2, 2);

    // Clients spread over both games; each relay is answered by the other game.
    let mut seen_games = std::collections::BTreeSet::new();
    let mut clients = Vec::new();
    for i in 0..4 {
        let (mut c, me) = cluster.client();
        c.call(me, "echo", vec![Value::from("hello"), Value::Int(i)]).expect("send");
        assert_eq!(reply(&mut c), ("echo_reply".into(), vec![Value::from("hello"), Value::Int(i)]));
        c.call(me, "whoami", vec![]).expect("send");
        let (m, args) = reply(&mut c);
        assert_eq!(m, "whoami_reply");
        let game = args[0].as_int().expect("game id");
        seen_games.insert(game);
        for round in 0..3 {
            c.call(me, "relay_echo", vec![Value::Int(round)]).expect("send");
            let (m, args) = reply(&mut c);
            assert_eq!(m, "relay_echo_reply");
            let relay_game = args[0].as_int().expect("relay game id");
            assert_ne!(relay_game, game, "the relay lives on the other game");
            assert_eq!(args[1], Value::Int(round));
        }
        clients.push((c, me));
    }
    assert_eq!(seen_games.len(), 2, "boot entities were placed on both games: {seen_games:?}");

    let (c, me) = &mut clients[0];
    // A server-only method, an unknown method and an unknown entity: errors, connection kept.
    c.call(*me, "admin_reset", vec![]).expect("send");
    assert_eq!(error(c).0, ErrorCode::NotExposed as u16);
    c.call(*me, "no_such_method", vec![]).expect("send");
    assert_eq!(error(c).0, ErrorCode::UnknownMethod as u16);
    c.call(Id([7; 16]), "echo", vec![]).expect("send");
    assert_eq!(error(c).0, ErrorCode::NotAddressable as u16);
    // Another client's entity is not addressable by this one either.
    let other = clients[1].1;
    let (c, me) = &mut clients[0];
    c.call(other, "echo", vec![]).expect("send");
    assert_eq!(error(c).0, ErrorCode::NotAddressable as u16);
    c.call(*me, "echo", vec![Value::from("still here")]).expect("send");
    assert_eq!(reply(c).1, vec![Value::from("still here")]);

    // Garbage and an oversized frame close only the offending connections.
    let (mut bad, _) = cluster.client();
    bad.write_raw(&[3, 0, 0, 0, 0x7f, 1, 2]).expect("send garbage");
    assert_eq!(error(&mut bad).0, ErrorCode::Malformed as u16);
    assert!(bad.closed_within(WAIT), "malformed client was closed");
    let (mut big, _) = cluster.client();
    big.write_raw(&(1u32 << 30).to_le_bytes()).expect("send huge prefix");
    assert!(big.closed_within(WAIT), "oversized frame closed the client");

    for (c, me) in &mut clients {
        c.call(*me, "relay_echo", vec![Value::from("after")]).expect("send");
        assert_eq!(reply(c).1[1], Value::from("after"));
    }
    drop(clients);

    let mut cluster = cluster;
    assert_eq!(cluster.running().len(), 5, "every process is still up");
    cluster.stop();
}

#[test]
fn dispatcher_refuses_wrong_secret_and_survives() {
    use std::io::{Read, Write};

    use oxworld_net::msg::{INTERNAL_PROTOCOL_VERSION, Msg, ProcKind};

    let cluster = Cluster::start("refuse", 1, 1);
    let (mut c, me) = cluster.client();
    let ini = fs::read_to_string(cluster.dir.join("oxworld.ini")).expect("config");
    let cfg = oxworld_net::config::Config::parse(Path::new("x.ini"), &ini).expect("config");
    let disp = cfg.dispatchers[0].listen_addr;

    let mut raw = std::net::TcpStream::connect(disp).expect("connect");
    raw.set_read_timeout(Some(WAIT)).expect("timeout");
    let hello = Msg::Hello {
        version: INTERNAL_PROTOCOL_VERSION,
        kind: ProcKind::Game,
        id: 1,
        secret: "wrong".into(),
        entities: vec![],
    };
    let mut payload = Vec::new();
    hello.encode(&mut payload);
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&payload);
    raw.write_all(&frame).expect("send hello");
    let mut got = Vec::new();
    let _ = raw.read_to_end(&mut got);
    let refused = Msg::decode(&got[4..]).expect("a Refused message");
    assert!(matches!(refused, Msg::Refused { ref reason } if reason.contains("secret")), "{refused:?}");

    let mut garbage = std::net::TcpStream::connect(disp).expect("connect");
    garbage.set_read_timeout(Some(WAIT)).expect("timeout");
    garbage.write_all(&[2, 0, 0, 0, 0xff, 0xff]).expect("send");
    let mut sink = Vec::new();
    let _ = garbage.read_to_end(&mut sink);

    // The real game 1 was not displaced by the impostor and the cluster still serves.
    c.call(me, "echo", vec![Value::Int(42)]).expect("send");
    assert_eq!(reply(&mut c).1, vec![Value::Int(42)]);
    drop(c);
    cluster.stop();
}
