//! Records after the handshake (plain mode with lz4, so the bytes reach the record layer and
//! the decompressor directly, and encrypted mode): arbitrary records in arbitrary sizes.
//! Nothing may panic, no message exceeds the maximum (lz4 lengths are checked before
//! allocating), and what a real sender seals always opens to the same message.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use oxworld_net::channel::{ClientChannel, ClientSettings, Mode, ServerChannel, ServerSettings, StaticKey, next_prefixed};

const MAX: usize = 4096;

fn open_pair(mode: Mode) -> (ServerChannel, ClientChannel) {
    let key = StaticKey::from_secret([9; 32]);
    let s = Arc::new(ServerSettings { mode, key: Some(key.clone()), compress_threshold: 16, max_message: MAX });
    let mut server = ServerChannel::new(s, [1; 32]);
    let mut client = ClientChannel::new(
        ClientSettings { mode, server_key: Some(key.public()), compress_threshold: 16, max_message: MAX },
        [2; 32],
    );
    let mut hello = Vec::new();
    client.start(&mut hello).expect("hello");
    let (h, _) = next_prefixed(&hello, 0).expect("record");
    let mut reply = Vec::new();
    server.handle_record(h, &mut reply, |_| {}).expect("accepted");
    let (r, _) = next_prefixed(&reply, 0).expect("record");
    client.handle_record(r, &mut Vec::new(), |_| {}).expect("open");
    (server, client)
}

fuzz_target!(|data: &[u8]| {
    // Hostile records, split at 0xFF 0x00.
    for mode in [Mode::Plain, Mode::NoiseNk] {
        let (mut server, _) = open_pair(mode);
        let mut rest = data;
        while !rest.is_empty() {
            let end = rest.windows(2).position(|w| w == [0xFF, 0x00]).unwrap_or(rest.len());
            let (rec, tail) = rest.split_at(end);
            rest = tail.get(2..).unwrap_or_default();
            let mut got = Vec::new();
            if server.handle_record(rec, &mut Vec::new(), |m| got.push(m)).is_err() {
                break;
            }
            assert!(got.iter().all(|m| m.len() <= MAX && !m.is_empty()));
        }
    }
    // The same bytes as a message sealed by a real client open to themselves.
    if !data.is_empty() && data.len() <= MAX {
        let (mut server, mut client) = open_pair(Mode::NoiseNk);
        let mut wire = Vec::new();
        client.send(data, &mut wire).expect("seal");
        let mut got = Vec::new();
        let mut at = 0;
        while let Some((r, next)) = next_prefixed(&wire, at) {
            server.handle_record(r, &mut Vec::new(), |m| got.push(m)).expect("opens");
            at = next;
        }
        assert_eq!(got, vec![data.to_vec()]);
    }
});
