//! WebSocket input: arbitrary bytes, in arbitrary chunks, into the gate's side (the HTTP
//! request, then frames) and, after a real upgrade, into both sides. Nothing may panic; every
//! record handed out respects the maximum.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use oxworld_net::ws::{WsClient, WsServer, WsSettings};

fuzz_target!(|data: &[u8]| {
    let settings =
        Arc::new(WsSettings { allowed_origins: vec!["http://a".into()], web_root: None, max_record: 4096, site_info: None });
    let step = 1 + usize::from(data.first().copied().unwrap_or(0) % 97);
    // Raw bytes as a fresh connection (an HTTP request, or not).
    let mut fresh = WsServer::new(settings.clone());
    let mut out = Vec::new();
    let mut records = Vec::new();
    for chunk in data.chunks(step) {
        if fresh.handle_bytes(chunk, &mut out, &mut records).is_err() {
            break;
        }
    }
    assert!(records.iter().all(|r| r.len() <= 4096));
    // The same bytes as frames after a real upgrade, at both ends.
    let mut server = WsServer::new(settings);
    let mut req = Vec::new();
    let mut client = WsClient::new("g", [5; 16], 4096, &mut req);
    let mut resp = Vec::new();
    let _ = server.handle_bytes(&req, &mut resp, &mut Vec::new());
    let _ = client.handle_bytes(&resp, &mut Vec::new(), &mut Vec::new());
    let mut got = Vec::new();
    for chunk in data.chunks(step) {
        if server.handle_bytes(chunk, &mut Vec::new(), &mut got).is_err() {
            break;
        }
    }
    for chunk in data.chunks(step) {
        if client.handle_bytes(chunk, &mut Vec::new(), &mut got).is_err() {
            break;
        }
    }
    assert!(got.iter().all(|r| r.len() <= 4096));
});
