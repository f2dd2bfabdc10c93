//! Tests of the client channel: round trips in every mode, refusals, and hostile records.

use std::sync::Arc;

use super::*;

const SERVER_SECRET: [u8; 32] = [7; 32];

fn server_settings(mode: Mode, threshold: usize) -> Arc<ServerSettings> {
    Arc::new(ServerSettings {
        mode,
        key: Some(StaticKey::from_secret(SERVER_SECRET)),
        compress_threshold: threshold,
        max_message: 1 << 20,
    })
}

fn client_settings(mode: Mode, threshold: usize) -> ClientSettings {
    ClientSettings {
        mode,
        server_key: Some(StaticKey::from_secret(SERVER_SECRET).public()),
        compress_threshold: threshold,
        max_message: 1 << 20,
    }
}

/// Splits length-prefixed records.
fn records(wire: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some((r, next)) = next_prefixed(wire, at) {
        out.push(r.to_vec());
        at = next;
    }
    assert_eq!(at, wire.len(), "records end where the buffer ends");
    out
}

/// A client and a server channel after the handshake, with what each received so far.
struct Pair {
    client: ClientChannel,
    server: ServerChannel,
    to_server: Vec<Vec<u8>>,
    to_client: Vec<Vec<u8>>,
}

impl Pair {
    fn new(server: Arc<ServerSettings>, client: ClientSettings) -> Result<Pair, ChannelError> {
        let mut p = Pair {
            client: ClientChannel::new(client, [1; 32]),
            server: ServerChannel::new(server, [2; 32]),
            to_server: Vec::new(),
            to_client: Vec::new(),
        };
        let mut wire = Vec::new();
        p.client.start(&mut wire)?;
        p.deliver_to_server(&wire)?;
        Ok(p)
    }

    fn deliver_to_server(&mut self, wire: &[u8]) -> Result<(), ChannelError> {
        let mut back = Vec::new();
        for r in records(wire) {
            let got = &mut self.to_server;
            self.server.handle_record(&r, &mut back, |m| got.push(m))?;
        }
        if !back.is_empty() {
            self.deliver_to_client(&back)?;
        }
        Ok(())
    }

    fn deliver_to_client(&mut self, wire: &[u8]) -> Result<(), ChannelError> {
        let mut back = Vec::new();
        for r in records(wire) {
            let got = &mut self.to_client;
            self.client.handle_record(&r, &mut back, |m| got.push(m))?;
        }
        if !back.is_empty() {
            self.deliver_to_server(&back)?;
        }
        Ok(())
    }

    fn client_sends(&mut self, msg: &[u8]) -> Result<(), ChannelError> {
        let mut wire = Vec::new();
        self.client.send(msg, &mut wire)?;
        self.deliver_to_server(&wire)
    }

    fn server_sends(&mut self, msg: &[u8]) -> Result<(), ChannelError> {
        let mut wire = Vec::new();
        self.server.send(msg, &mut wire)?;
        self.deliver_to_client(&wire)
    }
}

fn sample(len: usize, seed: u8) -> Vec<u8> {
    // Compressible but not trivial: a repeating pattern with some variation.
    (0..len).map(|i| (i % 97) as u8 ^ seed ^ ((i / 1000) as u8)).collect()
}

#[test]
fn round_trips_in_every_mode() {
    for mode in [Mode::Plain, Mode::NoiseNk] {
        for threshold in [0, 64] {
            let mut p =
                Pair::new(server_settings(mode, threshold), client_settings(mode, threshold)).expect("handshake");
            assert!(p.client.is_open() && p.server.is_open());
            assert_eq!(p.client.compression(), threshold > 0);
            let msgs: Vec<Vec<u8>> = [1, 63, 64, 1000, MAX_FRAGMENT, MAX_FRAGMENT + 1, 300_000]
                .iter()
                .enumerate()
                .map(|(i, n)| sample(*n, i as u8))
                .collect();
            for m in &msgs {
                p.client_sends(m).expect("client sends");
                p.server_sends(m).expect("server sends");
            }
            assert_eq!(p.to_server, msgs, "{mode:?} {threshold}");
            assert_eq!(p.to_client, msgs, "{mode:?} {threshold}");
        }
    }
}

#[test]
fn messages_sent_before_the_handshake_arrive_after_it_in_order() {
    let mut server = ServerChannel::new(server_settings(Mode::NoiseNk, 64), [2; 32]);
    let mut client = ClientChannel::new(client_settings(Mode::NoiseNk, 64), [1; 32]);
    let mut early = Vec::new();
    server.send(b"welcome", &mut early).expect("queued");
    // As an app's outbox writes them: length-prefixed messages.
    let mut prefixed = Vec::new();
    crate::frame::encode_frame(&sample(5000, 1), &mut prefixed);
    server.send_all(&prefixed, &mut early).expect("queued");
    assert!(early.is_empty(), "nothing leaves before the handshake");
    assert!(server.pending_bytes() > 5000);
    let mut hello = Vec::new();
    client.start(&mut hello).expect("hello");
    client.send(b"early call", &mut hello).expect("queued on the client too");
    let mut reply = Vec::new();
    let mut got = Vec::new();
    for r in records(&hello) {
        server.handle_record(&r, &mut reply, |m| got.push(m)).expect("hello");
    }
    assert!(got.is_empty(), "the client's early call waits for the handshake");
    let mut back = Vec::new();
    let mut at_client = Vec::new();
    for r in records(&reply) {
        client.handle_record(&r, &mut back, |m| at_client.push(m)).expect("reply");
    }
    assert_eq!(at_client, vec![b"welcome".to_vec(), sample(5000, 1)]);
    for r in records(&back) {
        server.handle_record(&r, &mut Vec::new(), |m| got.push(m)).expect("early call");
    }
    assert_eq!(got, vec![b"early call".to_vec()]);
}

#[test]
fn a_wrong_server_key_is_refused_with_a_reason() {
    let mut c = client_settings(Mode::NoiseNk, 0);
    c.server_key = Some(StaticKey::from_secret([9; 32]).public());
    match Pair::new(server_settings(Mode::NoiseNk, 0), c) {
        Err(ChannelError::Handshake(_)) => {}
        other => panic!("expected the server to fail the handshake, got {:?}", other.err()),
    }
    // What the client sees: the refusal record.
    let mut server = ServerChannel::new(server_settings(Mode::NoiseNk, 0), [2; 32]);
    let mut c = client_settings(Mode::NoiseNk, 0);
    c.server_key = Some(StaticKey::from_secret([9; 32]).public());
    let mut client = ClientChannel::new(c, [1; 32]);
    let mut hello = Vec::new();
    client.start(&mut hello).expect("hello");
    let mut reply = Vec::new();
    let r = server.handle_record(&records(&hello)[0], &mut reply, |_| {});
    assert!(matches!(r, Err(ChannelError::Handshake(_))));
    let err = client.handle_record(&records(&reply)[0], &mut Vec::new(), |_| {}).expect_err("refused");
    match err {
        ChannelError::Refused { status: Status::HandshakeFailed, reason } => assert!(reason.contains("server key")),
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn a_mode_mismatch_is_refused_both_ways() {
    for (server_mode, client_mode, want) in
        [(Mode::NoiseNk, Mode::Plain, "requires encryption"), (Mode::Plain, Mode::NoiseNk, "unencrypted")]
    {
        let mut server = ServerChannel::new(server_settings(server_mode, 0), [2; 32]);
        let mut client = ClientChannel::new(client_settings(client_mode, 0), [1; 32]);
        let mut hello = Vec::new();
        client.start(&mut hello).expect("hello");
        let mut reply = Vec::new();
        assert!(server.handle_record(&records(&hello)[0], &mut reply, |_| {}).is_err());
        match client.handle_record(&records(&reply)[0], &mut Vec::new(), |_| {}) {
            Err(ChannelError::Refused { status: Status::ModeRefused, reason }) => assert!(reason.contains(want)),
            other => panic!("unexpected {other:?}"),
        }
        // The failed channel sends nothing more and refuses more input.
        let mut out = Vec::new();
        server.send(b"x", &mut out).expect("dropped quietly");
        assert!(out.is_empty());
        assert!(server.handle_record(b"anything", &mut out, |_| {}).is_err());
    }
}

#[test]
fn lz4_is_used_only_when_both_agree() {
    // The client offers, the gate has compression off: nothing is compressed either way.
    let mut p = Pair::new(server_settings(Mode::Plain, 0), client_settings(Mode::Plain, 64)).expect("handshake");
    assert!(!p.client.compression());
    let big = vec![0u8; 10_000];
    let mut wire = Vec::new();
    p.server.send(&big, &mut wire).expect("send");
    assert!(wire.len() > 10_000, "not compressed: {}", wire.len());
    p.client.send(&big, &mut wire).expect("send");
    assert!(wire.len() > 20_000, "the client does not compress either");
    // Both agree: the zeros shrink.
    let mut p = Pair::new(server_settings(Mode::Plain, 64), client_settings(Mode::Plain, 64)).expect("handshake");
    let mut wire = Vec::new();
    p.server.send(&big, &mut wire).expect("send");
    assert!(wire.len() < 200, "compressed: {}", wire.len());
    assert_eq!(records(&wire)[0][0], FLAG_LZ4);
    // Incompressible data goes as is.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..5000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let mut wire = Vec::new();
    p.server.send(&noise, &mut wire).expect("send");
    assert_eq!(records(&wire)[0][0], 0);
}

/// An open plain channel at the server, to feed hostile records to.
fn open_plain_server(lz4: bool, max: usize) -> ServerChannel {
    let mut s = (*server_settings(Mode::Plain, if lz4 { 64 } else { 0 })).clone();
    s.max_message = max;
    let mut server = ServerChannel::new(Arc::new(s), [2; 32]);
    let mut client = ClientChannel::new(client_settings(Mode::Plain, 64), [1; 32]);
    let mut hello = Vec::new();
    client.start(&mut hello).expect("hello");
    server.handle_record(&records(&hello)[0], &mut Vec::new(), |_| {}).expect("open");
    server
}

fn feed(server: &mut ServerChannel, record: &[u8]) -> Result<Vec<Vec<u8>>, ChannelError> {
    let mut got = Vec::new();
    server.handle_record(record, &mut Vec::new(), |m| got.push(m))?;
    Ok(got)
}

#[test]
fn hostile_records_are_errors_not_panics() {
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("empty record", vec![], true),
        ("flags only", vec![0], true),
        ("unknown flag", vec![0x80, 1], true),
        ("lz4 without length", vec![FLAG_LZ4, 1, 2], true),
        ("lz4 length past the maximum", [vec![FLAG_LZ4], 2_000_000u32.to_le_bytes().to_vec(), vec![0]].concat(), true),
        ("lz4 garbage", [vec![FLAG_LZ4], 100u32.to_le_bytes().to_vec(), vec![0xff; 10]].concat(), true),
        ("lz4 says zero", [vec![FLAG_LZ4], 0u32.to_le_bytes().to_vec(), vec![0x00]].concat(), true),
        ("fine", vec![0, 42], false),
    ];
    for (what, record, fails) in cases {
        let mut s = open_plain_server(true, 1 << 20);
        assert_eq!(feed(&mut s, &record).is_err(), fails, "{what}");
    }
    // Compressed data from a client that did not get the feature.
    let mut s = open_plain_server(false, 1 << 20);
    let mut packed = 10u32.to_le_bytes().to_vec();
    packed.extend(lz4_flex::block::compress(&[5; 10]));
    assert!(matches!(feed(&mut s, &[&[FLAG_LZ4][..], &packed].concat()), Err(ChannelError::Record(_))));
    // Lz4 whose real output is shorter than stated.
    let mut s = open_plain_server(true, 1 << 20);
    let mut short = 20u32.to_le_bytes().to_vec();
    short.extend(lz4_flex::block::compress(&[5; 10]));
    assert!(feed(&mut s, &[&[FLAG_LZ4][..], &short].concat()).is_err());
}

#[test]
fn fragments_are_bounded_and_must_agree() {
    // The maximum counts across fragments, checked before buffering.
    let mut s = open_plain_server(true, 100);
    assert_eq!(feed(&mut s, &[&[FLAG_MORE][..], &[1; 60]].concat()).expect("first half"), Vec::<Vec<u8>>::new());
    assert!(matches!(feed(&mut s, &[&[0][..], &[1; 41]].concat()), Err(ChannelError::TooLarge { len: 101, max: 100 })));
    let mut s = open_plain_server(true, 100);
    feed(&mut s, &[&[FLAG_MORE][..], &[1; 60]].concat()).expect("first half");
    assert_eq!(feed(&mut s, &[&[0][..], &[1; 40]].concat()).expect("exactly the maximum"), vec![vec![1; 100]]);
    // Compression must be the same on every fragment of a message.
    let mut s = open_plain_server(true, 1000);
    feed(&mut s, &[&[FLAG_MORE][..], &[1; 10]].concat()).expect("first");
    assert!(feed(&mut s, &[&[FLAG_LZ4][..], &[1; 10]].concat()).is_err());
    // An oversized single record.
    let mut s = open_plain_server(true, 1 << 20);
    assert!(feed(&mut s, &vec![0; MAX_FRAGMENT + 2]).is_err());
}

#[test]
fn tampered_or_replayed_records_fail_authentication() {
    let mut p = Pair::new(server_settings(Mode::NoiseNk, 0), client_settings(Mode::NoiseNk, 0)).expect("handshake");
    let mut wire = Vec::new();
    p.client.send(b"hello there", &mut wire).expect("send");
    let rec = records(&wire).remove(0);
    let mut bad = rec.clone();
    bad[3] ^= 1;
    assert_eq!(feed(&mut p.server, &bad), Err(ChannelError::Auth));
    // A fresh pair: the record itself is fine once, and replaying it fails (nonces advance).
    let mut p = Pair::new(server_settings(Mode::NoiseNk, 0), client_settings(Mode::NoiseNk, 0)).expect("handshake");
    let mut wire = Vec::new();
    p.client.send(b"hello there", &mut wire).expect("send");
    let rec = records(&wire).remove(0);
    assert_eq!(feed(&mut p.server, &rec).expect("once"), vec![b"hello there".to_vec()]);
    assert_eq!(feed(&mut p.server, &rec), Err(ChannelError::Auth));
    for short in [&rec[..0], &rec[..5], &rec[..16]] {
        let mut q = Pair::new(server_settings(Mode::NoiseNk, 0), client_settings(Mode::NoiseNk, 0)).expect("pair");
        assert!(feed(&mut q.server, short).is_err());
    }
}

#[test]
fn hostile_hellos_are_refused() {
    let header = |v: u8, mode: u8| vec![b'O', b'X', b'W', v, mode, 0];
    let cases: Vec<(Vec<u8>, Status)> = vec![
        (vec![], Status::Malformed),
        (b"OXW".to_vec(), Status::Malformed),
        (b"GET / HTTP/1.1\r\n".to_vec(), Status::Malformed),
        (header(1, 1), Status::Version),
        (header(2, 9), Status::Malformed),
        (header(2, 0), Status::ModeRefused),
        (header(2, 1), Status::Malformed),
        ([header(2, 1), vec![0; 47]].concat(), Status::Malformed),
        ([header(2, 1), vec![0; 48]].concat(), Status::HandshakeFailed),
    ];
    for (hello, want) in cases {
        let mut server = ServerChannel::new(server_settings(Mode::NoiseNk, 0), [2; 32]);
        let mut reply = Vec::new();
        assert!(server.handle_record(&hello, &mut reply, |_| {}).is_err(), "{hello:?}");
        let r = records(&reply).remove(0);
        assert_eq!(&r[..4], b"OXW\x02");
        assert_eq!(Status::from_byte(r[4]), want, "{hello:?}");
        assert_eq!(r[5], Mode::NoiseNk as u8);
        assert!(std::str::from_utf8(&r[6..]).is_ok());
    }
}

#[test]
fn hostile_server_hellos_are_errors() {
    let mk = || {
        let mut c = ClientChannel::new(client_settings(Mode::NoiseNk, 64), [1; 32]);
        c.start(&mut Vec::new()).expect("hello");
        c
    };
    for reply in [
        vec![],
        b"OXW\x02".to_vec(),
        b"OXW\x02\x00\x00\x01".to_vec(),
        b"OXW\x01\x00\x01".to_vec(),
        [b"OXW\x02\x00\x01".to_vec(), vec![0; NOISE_MSG2_LEN]].concat(),
        [b"OXW\x02\x00\x01".to_vec(), vec![0; 3]].concat(),
    ] {
        assert!(mk().handle_record(&reply, &mut Vec::new(), |_| {}).is_err(), "{reply:?}");
    }
    // A plain gate that claims a feature the client did not offer.
    let mut c = ClientChannel::new(client_settings(Mode::Plain, 0), [1; 32]);
    c.start(&mut Vec::new()).expect("hello");
    assert!(c.handle_record(b"OXW\x02\x00\x00\x01", &mut Vec::new(), |_| {}).is_err());
}

#[test]
fn key_files_round_trip() {
    let k = StaticKey::from_secret([3; 32]);
    let text = k.to_file_text();
    assert_eq!(text.len(), 65);
    assert_eq!(StaticKey::from_file_text(&text), Some(k.clone()));
    assert_eq!(StaticKey::from_file_text("zz"), None);
    assert_eq!(StaticKey::from_file_text(&"g".repeat(64)), None);
    assert_eq!(parse_key_hex(&hex(&k.public())), Some(k.public()));
}

/// The worked example of PROTOCOL.md section 2.6: fixed keys and seeds give these bytes, and
/// the Python interop test checks the same bytes with an independent Noise implementation.
#[test]
fn protocol_test_vectors() {
    let v = vectors();
    for (name, got, want) in [
        ("server public", hex(&v.server_public), VEC_SERVER_PUBLIC),
        ("client ephemeral secret", hex(&v.client_eph), VEC_CLIENT_EPHEMERAL),
        ("server ephemeral secret", hex(&v.server_eph), VEC_SERVER_EPHEMERAL),
        ("client hello", hex(&v.client_hello), VEC_CLIENT_HELLO),
        ("server hello", hex(&v.server_hello), VEC_SERVER_HELLO),
        ("client record", hex(&v.client_record), VEC_CLIENT_RECORD),
        ("server record", hex(&v.server_record), VEC_SERVER_RECORD),
    ] {
        assert_eq!(got, want, "{name}");
    }
}

pub(crate) struct Vectors {
    pub server_public: [u8; 32],
    pub client_eph: [u8; 32],
    pub server_eph: [u8; 32],
    pub client_hello: Vec<u8>,
    pub server_hello: Vec<u8>,
    pub client_record: Vec<u8>,
    pub server_record: Vec<u8>,
}

/// Secret of the vectors' gate key: bytes 0x00..=0x1f.
const VEC_SECRET: [u8; 32] = {
    let mut k = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        k[i] = i as u8;
        i += 1;
    }
    k
};

fn vectors() -> Vectors {
    let key = StaticKey::from_secret(VEC_SECRET);
    let server = Arc::new(ServerSettings {
        mode: Mode::NoiseNk,
        key: Some(key.clone()),
        compress_threshold: 0,
        max_message: 1 << 20,
    });
    let client_seed = [0x11; 32];
    let server_seed = [0x22; 32];
    let eph = |seed: [u8; 32]| {
        let mut e = [0u8; 32];
        SeededRandom(ChaCha12Rng::from_seed(seed)).try_fill_bytes(&mut e).expect("rng");
        e
    };
    let mut c = ClientChannel::new(
        ClientSettings {
            mode: Mode::NoiseNk,
            server_key: Some(key.public()),
            compress_threshold: 0,
            max_message: 1 << 20,
        },
        client_seed,
    );
    let mut s = ServerChannel::new(server, server_seed);
    let mut hello = Vec::new();
    c.start(&mut hello).expect("hello");
    let mut reply = Vec::new();
    s.handle_record(&records(&hello)[0], &mut reply, |_| {}).expect("accept");
    c.handle_record(&records(&reply)[0], &mut Vec::new(), |_| {}).expect("open");
    // The client's Heartbeat message (one byte, 0x02) and the gate's answer "hi" in one record.
    let mut cr = Vec::new();
    c.send(&[0x02], &mut cr).expect("seal");
    let mut sr = Vec::new();
    s.send(b"hi", &mut sr).expect("seal");
    Vectors {
        server_public: key.public(),
        client_eph: eph(client_seed),
        server_eph: eph(server_seed),
        client_hello: records(&hello).remove(0),
        server_hello: records(&reply).remove(0),
        client_record: records(&cr).remove(0),
        server_record: records(&sr).remove(0),
    }
}

const VEC_SERVER_PUBLIC: &str = "8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f";
const VEC_CLIENT_EPHEMERAL: &str = "74ed346d4cc835e1945348805e28c48b2b27818a685ae2ec64baff9d615e10a8";
const VEC_SERVER_EPHEMERAL: &str = "1fcfab352c8b5d27e4985deeab5c9c6d53db5bdcf40b2ce2d97149fe8eba3497";
const VEC_CLIENT_HELLO: &str =
    "4f585702010083bbe66c9e5d7806ef48a133734e1e8ff7af5455f2685c3c6f0506d96dab1e1859720d5dfeb0267bfe2e44db27ca4796";
const VEC_SERVER_HELLO: &str =
    "4f58570200017e117f70dc634f0098d413b22001166e10992c7fdbd90a061d889a01a0da8b2e1d396f8de2863e4fdcb233e48964cf9fe9";
const VEC_CLIENT_RECORD: &str = "7950f5bcee7668fd2748f96b61b3988e1da7";
const VEC_SERVER_RECORD: &str = "4b38c34604d828886fde8682ab849bfe09b1a5";

proptest::proptest! {
    #[test]
    fn any_record_is_handled_without_panicking(record in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let mut s = open_plain_server(true, 1000);
        let _ = feed(&mut s, &record);
        let mut fresh = ServerChannel::new(server_settings(Mode::NoiseNk, 64), [2; 32]);
        let _ = fresh.handle_record(&record, &mut Vec::new(), |_| {});
    }
}
