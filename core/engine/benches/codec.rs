//! Hot-path microbenchmarks: framing, the internal message codec (a fixed header and a speedy
//! body), the client codec (`ClientMsg` / `ServerMsg`), and a dispatcher forwarding one call
//! from a gate to a game (its CPU per forwarded message: header, route lookup among 100,000
//! entities, the frame copied into the outbox).
//! Run: `cargo bench -p oxworld-engine --bench codec`.

use std::path::Path;

use divan::Bencher;
use oxworld_engine::dispatcher::DispatcherApp;
use oxworld_net::app::{App, ConnId, Event, Outbox};
use oxworld_net::client_proto::{ClientMsg, ServerMsg};
use oxworld_net::config::Config;
use oxworld_net::frame::{Deframer, encode_frame};
use oxworld_net::msg::{Announce, Call, Caller, Hello, INTERNAL_PROTOCOL_VERSION, Message, ProcKind, ToGame};
use oxworld_net::value::encode_args;
use oxworld_net::{Id, Value, method_id};

fn main() {
    divan::main();
}

fn args() -> Vec<Value> {
    vec![Value::from("oxworld-echo-payload"), Value::Int(42), Value::Float(1.5)]
}

fn call() -> Call {
    let mut a = Vec::new();
    encode_args(&args(), &mut a);
    Call {
        target: Id([7; 16]),
        method: method_id("echo"),
        caller: Caller::Client { gate: 1, client: Id([9; 16]) },
        args: a,
    }
}

/// 100 frames of 64 bytes written back to back, then split again.
#[divan::bench]
fn frame_100_roundtrip(b: Bencher) {
    let payload = [0xabu8; 64];
    let mut d = Deframer::new(1 << 20);
    let mut wire = Vec::with_capacity(100 * 68);
    b.counter(divan::counter::ItemsCount::new(100usize)).bench_local(|| {
        wire.clear();
        for _ in 0..100 {
            encode_frame(&payload, &mut wire);
        }
        d.push(&wire);
        let mut n = 0;
        while let Ok(Some(f)) = d.next_frame() {
            n += f.len();
        }
        n
    });
}

#[divan::bench]
fn internal_call_encode(b: Bencher) {
    let m = call();
    let mut out = Vec::with_capacity(128);
    b.bench_local(|| {
        out.clear();
        m.encode(0x8001, &mut out);
        out.len()
    });
}

#[divan::bench]
fn internal_call_decode(b: Bencher) {
    let bytes = call().to_frame(0x8001);
    b.bench_local(|| ToGame::decode(divan::black_box(&bytes)).is_ok());
}

#[divan::bench]
fn client_call_roundtrip(b: Bencher) {
    let m = ClientMsg::Call { target: Id([7; 16]), method: method_id("echo"), args: args() };
    let mut out = Vec::with_capacity(128);
    b.bench_local(|| {
        out.clear();
        m.encode(&mut out);
        ClientMsg::decode(&out).is_ok()
    });
}

#[divan::bench]
fn server_call_roundtrip(b: Bencher) {
    let m = ServerMsg::Call { id: Id([7; 16]), method: "echo_reply".into(), args: args() };
    let mut out = Vec::with_capacity(128);
    b.bench_local(|| {
        out.clear();
        m.encode(&mut out);
        ServerMsg::decode(&out).is_ok()
    });
}

/// One call through a dispatcher with 100,000 routed entities: decode, look up, re-encode.
#[divan::bench]
fn dispatcher_route_one_call(b: Bencher) {
    let cfg = "[deployment]\ndesired_dispatchers=1\ndesired_games=2\ndesired_gates=1\nsecret=k\n";
    let mut d = DispatcherApp::new(&Config::parse(Path::new("b.ini"), cfg).expect("config"), 1);
    let mut out = Outbox::new();
    let now = oxworld_runtime::clock_now();
    let peer = "127.0.0.1:9".parse().expect("addr");
    let hello = |kind, id| {
        Hello { version: INTERNAL_PROTOCOL_VERSION, kind, id, secret: "k".into(), incarnation: 0, restored: false }
            .to_frame(0)
    };
    for (c, kind, id) in [(1, ProcKind::Game, 1), (2, ProcKind::Game, 2), (3, ProcKind::Gate, 1)] {
        d.handle(now, Event::Accepted { conn: ConnId(c), listener: 0, peer, resume: false, session: false }, &mut out);
        d.handle(now, Event::Frame { conn: ConnId(c), data: hello(kind, id), at: None }, &mut out);
    }
    for game in 1..=2u64 {
        let entities: Vec<Id> = (0..100_000u64)
            .filter(|i| i % 2 == game - 1)
            .map(|i| {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&i.to_le_bytes());
                Id(id)
            })
            .collect();
        for batch in entities.chunks(4096) {
            let v = Announce { last: true, entities: batch.to_vec() }.to_frame(game as u16);
            d.handle(now, Event::Frame { conn: ConnId(game), data: v, at: None }, &mut out);
        }
    }
    let _ = out.take_frames();
    let mut target = [0u8; 16];
    target[..8].copy_from_slice(&777u64.to_le_bytes());
    let mut a = Vec::new();
    encode_args(&args(), &mut a);
    let bytes =
        Call { target: Id(target), method: 1, caller: Caller::Client { gate: 1, client: Id([9; 16]) }, args: a }
            .to_frame(0x8001);
    b.bench_local(|| {
        d.handle(now, Event::Frame { conn: ConnId(3), data: bytes.clone(), at: None }, &mut out);
        out.take_frames().len()
    });
}
