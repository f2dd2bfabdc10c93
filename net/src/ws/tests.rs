//! Tests of the WebSocket transport: upgrade, records both ways, refusals, static files and
//! hostile input, all in memory.

use std::sync::Arc;

use super::*;

fn settings() -> Arc<WsSettings> {
    Arc::new(WsSettings {
        allowed_origins: vec!["http://good.example".into()],
        web_root: None,
        max_record: 1000,
        site_info: Some("{\"encrypt\":false}".into()),
    })
}

/// A server and a client wired together in memory, upgraded.
fn pair() -> (WsServer, WsClient, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut server = WsServer::new(settings());
    let mut to_server = Vec::new();
    let mut client = WsClient::new("gate", [7; 16], 1 << 20, &mut to_server);
    let mut to_client = Vec::new();
    let mut at_server = Vec::new();
    assert_eq!(server.handle_bytes(&to_server, &mut to_client, &mut at_server), Ok(WsStatus::Open));
    assert!(server.is_open());
    let mut at_client = Vec::new();
    client.handle_bytes(&to_client, &mut Vec::new(), &mut at_client).expect("101");
    (server, client, at_server, at_client)
}

#[test]
fn records_cross_both_ways_even_a_byte_at_a_time() {
    let (mut server, mut client, _, _) = pair();
    let mut wire = Vec::new();
    for r in [&b"one"[..], &[0u8; 999][..], b"three"] {
        client.send_record(r, &mut wire).expect("send");
    }
    let mut got = Vec::new();
    for b in &wire {
        server.handle_bytes(&[*b], &mut Vec::new(), &mut got).expect("byte");
    }
    assert_eq!(got, vec![b"one".to_vec(), vec![0; 999], b"three".to_vec()]);
    let mut wire = Vec::new();
    server.send_record(b"back", &mut wire).expect("send");
    let mut got = Vec::new();
    client.handle_bytes(&wire, &mut Vec::new(), &mut got).expect("read");
    assert_eq!(got, vec![b"back".to_vec()]);
}

#[test]
fn records_sent_before_the_upgrade_follow_it() {
    let mut server = WsServer::new(settings());
    let mut to_server = Vec::new();
    let mut client = WsClient::new("gate", [1; 16], 1 << 20, &mut to_server);
    client.send_record(b"early", &mut to_server).expect("queued");
    let mut to_client = Vec::new();
    server.handle_bytes(&to_server, &mut to_client, &mut Vec::new()).expect("upgrade");
    let mut more = Vec::new();
    client.handle_bytes(&to_client, &mut more, &mut Vec::new()).expect("101");
    let mut got = Vec::new();
    server.handle_bytes(&more, &mut Vec::new(), &mut got).expect("early record");
    assert_eq!(got, vec![b"early".to_vec()]);
}

#[test]
fn a_record_arriving_with_the_request_is_kept() {
    // A client that pipelines its first frame right after the request head.
    let mut req = Vec::new();
    let mut client = WsClient::new("gate", [2; 16], 1 << 20, &mut req);
    let mut server = WsServer::new(settings());
    let mut to_client = Vec::new();
    server.handle_bytes(&req, &mut to_client, &mut Vec::new()).expect("upgrade");
    client.handle_bytes(&to_client, &mut Vec::new(), &mut Vec::new()).expect("101");
    let mut frame = Vec::new();
    client.send_record(b"x", &mut frame).expect("frame");
    let mut server = WsServer::new(settings());
    let mut got = Vec::new();
    server.handle_bytes(&[req, frame].concat(), &mut Vec::new(), &mut got).expect("both");
    assert_eq!(got, vec![b"x".to_vec()]);
}

fn request(extra: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: g\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: \
         dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

fn status_of(req: &[u8]) -> (Result<WsStatus, WsError>, String) {
    let mut s = WsServer::new(settings());
    let mut out = Vec::new();
    let r = s.handle_bytes(req, &mut out, &mut Vec::new());
    (r, String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn the_upgrade_follows_rfc_6455() {
    let (r, out) = status_of(&request("", "/"));
    assert_eq!(r, Ok(WsStatus::Open));
    // The RFC's own example key and accept value.
    assert!(out.starts_with("HTTP/1.1 101"), "{out}");
    assert!(out.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{out}");
}

#[test]
fn refusals_are_http_errors() {
    for (req, code) in [
        (request("Origin: http://evil.example\r\n", "/"), "403"),
        (request("", "/other"), "404"),
        (request("", "/").iter().copied().map(|b| if b == b'3' { b'2' } else { b }).collect::<Vec<u8>>(), "426"),
        (b"POST / HTTP/1.1\r\nHost: g\r\n\r\n".to_vec(), "405"),
        (b"\x00\x01garbage\r\n\r\n".to_vec(), "400"),
        (b"GET /index.html HTTP/1.1\r\nHost: g\r\n\r\n".to_vec(), "404"),
        (
            b"GET / HTTP/1.1\r\nHost: g\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
                .to_vec(),
            "400",
        ),
    ] {
        let (_, out) = status_of(&req);
        assert!(out.starts_with(&format!("HTTP/1.1 {code}")), "{code}: {out}");
    }
    // An allowed origin and no origin at all are fine.
    assert_eq!(status_of(&request("Origin: http://good.example\r\n", "/")).0, Ok(WsStatus::Open));
    // An endless head is cut off.
    let mut s = WsServer::new(settings());
    let mut out = Vec::new();
    let mut r = s.handle_bytes(b"GET / HTTP/1.1\r\n", &mut out, &mut Vec::new());
    for _ in 0..100 {
        r = s.handle_bytes(format!("X-Long: {}\r\n", "a".repeat(1000)).as_bytes(), &mut out, &mut Vec::new());
        if r.is_err() {
            break;
        }
    }
    assert!(matches!(r, Err(WsError::Http(431, _))), "{r:?}");
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431"));
}

#[test]
fn text_and_oversized_messages_close_the_connection() {
    let (mut server, _, _, _) = pair();
    // A masked text frame "hi" (client frames are masked; mask 0).
    let text = [0x81, 0x82, 0, 0, 0, 0, b'h', b'i'];
    assert!(matches!(server.handle_bytes(&text, &mut Vec::new(), &mut Vec::new()), Err(WsError::Protocol(_))));
    let (mut server, mut client, _, _) = pair();
    let mut wire = Vec::new();
    client.send_record(&[1; 1001], &mut wire).expect("the client allows it");
    assert!(matches!(server.handle_bytes(&wire, &mut Vec::new(), &mut Vec::new()), Err(WsError::Protocol(_))));
    // An unmasked client frame is a protocol error.
    let (mut server, _, _, _) = pair();
    assert!(server.handle_bytes(&[0x82, 0x01, 0x00], &mut Vec::new(), &mut Vec::new()).is_err());
}

#[test]
fn pings_are_answered() {
    let (mut server, _, _, _) = pair();
    let ping = [0x89, 0x81, 0, 0, 0, 0, b'p'];
    let mut out = Vec::new();
    let mut got = Vec::new();
    server.handle_bytes(&ping, &mut out, &mut got).expect("ping");
    assert!(got.is_empty());
    assert_eq!(out, vec![0x8a, 0x01, b'p'], "a pong with the same payload");
}

#[test]
fn static_files_are_served_from_the_root_only() {
    let dir = std::env::temp_dir().join(format!("oxw-ws-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("index.html"), "<p>hello</p>").expect("file");
    let s = Arc::new(WsSettings { web_root: Some(dir.clone()), ..(*settings()).clone() });
    let get = |path: &str| {
        let mut w = WsServer::new(s.clone());
        let mut out = Vec::new();
        let r = w.handle_bytes(format!("GET {path} HTTP/1.1\r\nHost: g\r\n\r\n").as_bytes(), &mut out, &mut Vec::new());
        assert_eq!(r, Ok(WsStatus::Done));
        String::from_utf8_lossy(&out).into_owned()
    };
    let page = get("/");
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("text/html") && page.ends_with("<p>hello</p>"), "{page}");
    assert!(get("/index.html?v=1").starts_with("HTTP/1.1 200"));
    assert!(get("/../etc/passwd").starts_with("HTTP/1.1 404"));
    assert!(get("/missing.js").starts_with("HTTP/1.1 404"));
    let info = get("/oxworld.json?x");
    assert!(info.starts_with("HTTP/1.1 200") && info.contains("application/json"), "{info}");
    assert!(info.ends_with("{\"encrypt\":false}"), "the gate's connection details: {info}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn base64_matches_the_standard() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
}

proptest::proptest! {
    #[test]
    fn any_bytes_after_the_upgrade_are_handled_without_panicking(data in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let (mut server, _, _, _) = pair();
        let _ = server.handle_bytes(&data, &mut Vec::new(), &mut Vec::new());
        let mut fresh = WsServer::new(settings());
        let _ = fresh.handle_bytes(&data, &mut Vec::new(), &mut Vec::new());
    }
}
