//! KCP input: arbitrary datagrams (and clock jumps) into a conversation that has data in
//! flight, into the gate's connect exchange and into a client's. Nothing may panic (fuzz builds
//! have overflow checks on: this is what the `kcp` crate fails), and the receive side stays
//! within its windows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxworld_net::kcp::link::{KcpAcceptor, KcpClient};
use oxworld_net::kcp::{Kcp, KcpParams};

fuzz_target!(|data: &[u8]| {
    let params = KcpParams::default();
    let conv = u32::from_le_bytes([data.first().copied().unwrap_or(0), 0, 0, 0]);
    let mut k = Kcp::new(conv, &params);
    let mut now = u32::MAX - 20_000;
    k.update(now);
    let _ = k.send(&[7; 3000]);
    k.flush();
    let mut gate = KcpAcceptor::new([3; 32]).expect("sha256");
    let mut client = KcpClient::new(params, [1; 8], now);
    let peer = "127.0.0.1:9".parse().expect("addr");
    let mut records = Vec::new();
    // Datagrams are separated by 0xFE 0xFE; the byte after each says how far the clock moves.
    for (i, d) in data.split(|b| *b == 0xFE).enumerate() {
        let step = u32::from(d.first().copied().unwrap_or(0)) * 37;
        now = now.wrapping_add(step);
        k.set_current(now);
        let _ = k.input(d);
        if i % 3 == 0 {
            k.update(now);
        }
        while k.poll_transmit().is_some() {}
        while let Some(m) = k.recv() {
            assert!(m.len() <= 256 * 1176);
        }
        let _ = k.check(now);
        let _ = gate.handle(now / 1000, peer, d);
        client.handle_datagram(now, d, &mut records);
        client.update(now);
        let _ = client.take_transmits();
        records.clear();
    }
});
