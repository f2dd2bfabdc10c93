//! The channel's hello exchange: arbitrary first records into the gate (both modes) and
//! arbitrary server hellos into a client that sent its own. Nothing may panic, and nothing but
//! a real handshake opens a channel.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use oxworld_net::channel::{ClientChannel, ClientSettings, Mode, ServerChannel, ServerSettings, StaticKey};

fuzz_target!(|data: &[u8]| {
    let key = StaticKey::from_secret([9; 32]);
    for mode in [Mode::NoiseNk, Mode::Plain] {
        let settings = Arc::new(ServerSettings { mode, key: Some(key.clone()), compress_threshold: 64, max_message: 4096 });
        let mut s = ServerChannel::new(settings, [1; 32]);
        let mut wire = Vec::new();
        let r = s.handle_record(data, &mut wire, |_| {});
        // Only mode 0 can be opened without the server's key (a forged Noise message 1
        // cannot authenticate... except that NK authenticates the gate, not the client: a
        // well-formed message 1 from anyone is a valid handshake).
        if r.is_ok() {
            assert!(s.is_open());
        }
        let mut c = ClientChannel::new(
            ClientSettings { mode, server_key: Some(key.public()), compress_threshold: 64, max_message: 4096 },
            [2; 32],
        );
        let mut hello = Vec::new();
        c.start(&mut hello).expect("hello");
        let r = c.handle_record(data, &mut Vec::new(), |_| {});
        if mode == Mode::NoiseNk {
            assert!(r.is_err(), "a random server hello cannot complete Noise NK");
        }
    }
});
