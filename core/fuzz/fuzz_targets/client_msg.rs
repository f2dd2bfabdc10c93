//! Client frames and messages: bytes from a socket cut into frames (in arbitrary chunks, with
//! a small frame limit), each payload decoded as a client message and as a server message
//! (what the client library decodes). Nothing may panic; what decodes re-encodes to bytes that
//! decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxworld_net::client_proto::{ClientMsg, ServerMsg};
use oxworld_net::frame::Deframer;

fuzz_target!(|data: &[u8]| {
    let mut d = Deframer::new(4096);
    let step = 1 + usize::from(data.first().copied().unwrap_or(0) % 64);
    'outer: for chunk in data.chunks(step) {
        d.push(chunk);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => {
                    let f = f.to_vec();
                    check(&f);
                }
                Ok(None) => break,
                Err(_) => break 'outer,
            }
        }
    }
    check(data);
});

fn check(payload: &[u8]) {
    if let Ok(m) = ClientMsg::decode(payload) {
        let mut again = Vec::new();
        m.encode(&mut again);
        let back = ClientMsg::decode(&again).expect("a decoded client message re-encodes");
        let mut third = Vec::new();
        back.encode(&mut third);
        assert_eq!(again, third);
    }
    if let Ok(m) = ServerMsg::decode(payload) {
        let mut again = Vec::new();
        m.encode(&mut again);
        assert!(ServerMsg::decode(&again).is_ok(), "a decoded server message re-encodes");
    }
}
