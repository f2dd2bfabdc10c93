//! The internal protocol: the fixed header and every message of every direction (what a
//! dispatcher, game or gate decodes from a peer). Nothing may panic; a decoded message
//! re-encodes to a frame that decodes again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxworld_net::msg::{FromGame, FromGate, Header, ToGame, ToGate};

fuzz_target!(|data: &[u8]| {
    let _ = Header::parse(data);
    if let Ok(m) = FromGame::decode(data) {
        let mut b = Vec::new();
        m.encode(1, &mut b);
        assert!(FromGame::decode(&b).is_ok());
    }
    if let Ok(m) = ToGame::decode(data) {
        let mut b = Vec::new();
        m.encode(1, &mut b);
        assert!(ToGame::decode(&b).is_ok());
    }
    if let Ok(m) = FromGate::decode(data) {
        let mut b = Vec::new();
        m.encode(0x8001, &mut b);
        assert!(FromGate::decode(&b).is_ok());
    }
    if let Ok(m) = ToGate::decode(data) {
        let mut b = Vec::new();
        m.encode(1, &mut b);
        assert!(ToGate::decode(&b).is_ok());
    }
});
