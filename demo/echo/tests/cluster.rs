//! Real-process test: 2 dispatchers, 2 games running the echo demo and 1 gate on loopback
//! (testkit: generated config, free ports, a run directory of its own). Clients call echo and
//! relay_echo, check which game answered, send hostile input, and every process is stopped with
//! exit code 0 and none left behind.

use std::path::PathBuf;
use std::time::Duration;

use oxworld_bin::testkit::{Spec, TestCluster};
use oxworld_client::BlockingClient;
use oxworld_net::client_proto::{ErrorCode, ServerMsg};
use oxworld_net::{Id, Value};

const WAIT: Duration = Duration::from_secs(20);

fn cluster(name: &str, dispatchers: usize, games: usize) -> TestCluster {
    cluster_with_gate(name, dispatchers, games, "max_client_frame_bytes = 4096")
}

fn cluster_with_gate(name: &str, dispatchers: usize, games: usize, gate: &str) -> TestCluster {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_echo"));
    let spec = Spec { dispatchers, games, gate, ..Spec::default() };
    TestCluster::start_with(name, &exe, &spec).expect("cluster")
}

/// A client with its boot entity.
fn client(c: &TestCluster) -> (BlockingClient, Id) {
    let mut bc = BlockingClient::connect(&c.gate, Duration::from_secs(3)).expect("connect");
    let me = bc.wait_player(WAIT).expect("boot entity");
    (bc, me)
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
    let cluster = cluster("echo", 2, 2);

    // Clients spread over both games; each relay is answered by the other game.
    let mut seen_games = std::collections::BTreeSet::new();
    let mut clients = Vec::new();
    for i in 0..4 {
        let (mut c, me) = client(&cluster);
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
    let (mut bad, _) = client(&cluster);
    bad.conn().send_raw(&[0x7f, 1, 2]);
    bad.flush().expect("send garbage");
    assert_eq!(error(&mut bad).0, ErrorCode::Malformed as u16);
    assert!(bad.closed_within(WAIT), "malformed client was closed");
    let (mut big, _) = client(&cluster);
    big.write_raw(&(1u32 << 30).to_le_bytes()).expect("send huge prefix");
    assert!(big.closed_within(WAIT), "oversized frame closed the client");
    // A record that does not authenticate closes the connection too.
    let (mut forged, _) = client(&cluster);
    forged.write_raw(&[20, 0, 0, 0]).expect("prefix");
    forged.write_raw(&[0x5a; 20]).expect("send a forged record");
    assert!(forged.closed_within(WAIT), "a forged record closed the client");
    // A client that does not know the gate's key is refused with a reason, and closed.
    let mut wrong = cluster.gate.clone();
    wrong.settings.server_key = Some(oxworld_net::channel::StaticKey::from_secret([9; 32]).public());
    let mut stranger = BlockingClient::connect(&wrong, WAIT).expect("tcp connect");
    match stranger.next(WAIT) {
        Err(oxworld_client::ClientError::Channel(oxworld_net::channel::ChannelError::Refused { status, reason })) => {
            assert_eq!(status, oxworld_net::channel::Status::HandshakeFailed);
            assert!(reason.contains("server key"), "{reason}");
        }
        other => panic!("expected a refused handshake, got {other:?}"),
    }

    // Hostile datagrams at the KCP port: garbage, a forged CONNECT, a short HELLO, data for
    // conversations that do not exist. The gate answers none with more than it got, and a
    // KCP client still gets in afterwards.
    let kcp_addr = cluster.cfg.gates[0].kcp_addr.expect("kcp_addr");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let mut forged = vec![0, 0, 0, 0, 3];
    forged.extend_from_slice(&[0x42; 60]);
    let mut seed = 0x9e37_79b9u32;
    let mut junk = Vec::new();
    for len in [0usize, 1, 3, 4, 5, 24, 25, 200, 1400] {
        let d: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        junk.push(d);
    }
    junk.push(forged);
    junk.push(vec![0, 0, 0, 0, 1, 7, 7]);
    for d in &junk {
        let _ = udp.send_to(d, kcp_addr);
        let mut buf = [0u8; 2048];
        if let Ok((n, _)) = udp.recv_from(&mut buf) {
            assert!(n <= d.len().max(9), "{n}-byte answer to a {}-byte datagram", d.len());
        }
    }
    let mut k = BlockingClient::connect(&cluster.dial(oxworld_client::Transport::Kcp), WAIT).expect("kcp");
    let kme = k.wait_player(WAIT).expect("a KCP client gets in after the junk");
    k.call(kme, "echo", vec![Value::from("over kcp")]).expect("send");
    assert_eq!(reply(&mut k).1, vec![Value::from("over kcp")]);

    for (c, me) in &mut clients {
        c.call(*me, "relay_echo", vec![Value::from("after")]).expect("send");
        assert_eq!(reply(c).1[1], Value::from("after"));
    }
    drop(clients);

    assert_eq!(cluster.running().len(), 5, "every process is still up");
    cluster.stop().expect("every process exits 0 on SIGTERM");
}

#[test]
fn dispatcher_refuses_wrong_secret_and_survives() {
    use std::io::{Read, Write};

    use oxworld_net::msg::{Hello, INTERNAL_PROTOCOL_VERSION, Message, ProcKind, ToGame};

    let cluster = cluster("refuse", 1, 1);
    let (mut c, me) = client(&cluster);
    let disp = cluster.cfg.dispatchers[0].listen_addr;

    let mut raw = std::net::TcpStream::connect(disp).expect("connect");
    raw.set_read_timeout(Some(WAIT)).expect("timeout");
    let hello = Hello {
        version: INTERNAL_PROTOCOL_VERSION,
        kind: ProcKind::Game,
        id: 1,
        secret: "wrong".into(),
        incarnation: 0,
        restored: false,
    };
    let payload = hello.to_frame(1);
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&payload);
    raw.write_all(&frame).expect("send hello");
    let mut got = Vec::new();
    let _ = raw.read_to_end(&mut got);
    let refused = ToGame::decode(&got[4..]).expect("a Refused message");
    assert!(matches!(refused, ToGame::Refused(ref r) if r.reason.contains("secret")), "{refused:?}");

    let mut garbage = std::net::TcpStream::connect(disp).expect("connect");
    garbage.set_read_timeout(Some(WAIT)).expect("timeout");
    garbage.write_all(&[2, 0, 0, 0, 0xff, 0xff]).expect("send");
    let mut sink = Vec::new();
    let _ = garbage.read_to_end(&mut sink);

    // The real game 1 was not displaced by the impostor and the cluster still serves.
    c.call(me, "echo", vec![Value::Int(42)]).expect("send");
    assert_eq!(reply(&mut c).1, vec![Value::Int(42)]);
    drop(c);
    cluster.stop().expect("every process exits 0 on SIGTERM");
}

/// With a 1 s heartbeat timeout: a client of ours that only waits (its library sends the
/// heartbeats) stays connected for 3 s and is still served; a raw connection that sends nothing
/// is told why (`Error` with code `Idle`) and closed, and the client library reports the reason.
#[test]
fn quiet_clients_are_kept_by_heartbeats_and_silent_ones_told_why() {
    use std::io::Read;

    use oxworld_client::ClientError;

    let cluster = cluster_with_gate("idle", 1, 1, "heartbeat_timeout_s = 1");
    let (mut quiet, me) = client(&cluster);
    let mut silent = std::net::TcpStream::connect(cluster.gate_addr).expect("connect");
    silent.set_read_timeout(Some(WAIT)).expect("timeout");
    // The silent client says its hello (so the gate's messages can reach it), then nothing.
    let mut conn = cluster.gate.new_conn();
    std::io::Write::write_all(&mut silent, &conn.take_output()).expect("hello");
    // A client of ours whose reader only waits: `next` keeps the heartbeats going.
    match quiet.next(Duration::from_secs(3)) {
        Err(ClientError::Timeout(_)) => {}
        other => panic!("nothing is sent to a quiet client, and it is not dropped: {other:?}"),
    }
    quiet.call(me, "echo", vec![Value::from("still here")]).expect("send");
    assert_eq!(reply(&mut quiet).1, vec![Value::from("still here")]);
    // The silent one got its welcome, then an `Idle` error, then the close.
    let mut got = Vec::new();
    let _ = silent.read_to_end(&mut got);
    conn.handle_bytes(&got).expect("records");
    let mut codes = Vec::new();
    while let Some(m) = conn.poll_event() {
        if let ServerMsg::Error { code, .. } = m {
            codes.push(code);
        }
    }
    assert_eq!(codes, vec![ErrorCode::Idle as u16]);
    let why = ClientError::Closed(conn.farewell().map(str::to_owned)).to_string();
    assert!(why.contains("no message from the client for 1000 ms"), "{why}");
    drop(quiet);
    cluster.stop().expect("clean stop");
}

/// The same calls over every transport and channel mode: TCP, WebSocket and KCP, encrypted
/// (the default) and not, with lz4 on large messages and messages of several records; the
/// WebSocket port also serves `web_root`.
#[test]
fn every_transport_and_mode_carries_the_same_calls() {
    use std::io::{Read, Write};

    use oxworld_client::Transport;

    let web = std::env::temp_dir().join(format!("oxworld-web-{}", std::process::id()));
    std::fs::create_dir_all(&web).expect("web root");
    std::fs::write(web.join("index.html"), "<h1>oxworld</h1>").expect("page");
    for encrypt in [true, false] {
        let gate = format!("encrypt = {encrypt}\nweb_root = {}", web.display());
        let cluster = cluster_with_gate(&format!("transports-{encrypt}"), 1, 1, &gate);
        for transport in [Transport::Tcp, Transport::Ws, Transport::Kcp] {
            let dial = cluster.dial(transport);
            assert_eq!(dial.encrypted(), encrypt);
            let mut c = BlockingClient::connect(&dial, WAIT).expect("connect");
            let me = c.wait_player(WAIT).unwrap_or_else(|e| panic!("{transport} {encrypt}: {e}"));
            assert!(c.conn().is_open() && c.conn().encrypted() == encrypt);
            assert!(c.conn().compression(), "the gate compresses by default");
            // Small, large (compressed both ways) and past one record (fragmented).
            for text in ["hi".to_owned(), "ab".repeat(3000), "xyz".repeat(30_000)] {
                c.call(me, "echo", vec![Value::from(text.as_str())]).expect("send");
                assert_eq!(reply(&mut c).1, vec![Value::from(text.as_str())], "{transport} {encrypt}");
            }
        }
        // A plain GET on the WebSocket port gets the page.
        let ws = cluster.cfg.gates[0].ws_addr.expect("ws_addr");
        let mut http = std::net::TcpStream::connect(ws).expect("connect");
        http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
        http.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut page = String::new();
        let _ = http.read_to_string(&mut page);
        assert!(page.starts_with("HTTP/1.1 200") && page.ends_with("<h1>oxworld</h1>"), "{page}");
        assert_eq!(cluster.running().len(), 3);
        cluster.stop().expect("clean stop");
    }
    let _ = std::fs::remove_dir_all(&web);
}
