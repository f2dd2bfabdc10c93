//! Tests of KCP: delivery in order over a lossy, reordering link, counters and clock wrapping
//! around `u32`, interop with the `kcp` crate (a translation of C ikcp), and hostile datagrams.

use super::*;

/// A deterministic xorshift generator for the simulated link.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Message `i` of a side: a size from 1 byte to several fragments, with its index inside.
fn message(side: u8, i: usize, rng: &mut Rng) -> Vec<u8> {
    let len = 4 + rng.below(if i.is_multiple_of(7) { 6000 } else { 300 }) as usize;
    let mut m = vec![side; len];
    m[..4].copy_from_slice(&(i as u32).to_le_bytes());
    m
}

/// What each side sent and what the other received: (sent by a, got by b, sent by b, got by a).
type Exchanged = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>);

/// Runs two conversations over a link dropping `loss_pct` % of datagrams and delaying each by
/// 0..=`jitter` ticks (so they reorder); returns what each side received.
fn exchange(loss_pct: u64, jitter: u64, start_sn: u32, start_ms: u32, n: usize) -> Exchanged {
    let params = KcpParams::default();
    let mut a = Kcp::new(7, &params);
    let mut b = Kcp::new(7, &params);
    a.start_at(start_sn);
    b.start_at(start_sn);
    let mut rng = Rng(0x5eed ^ loss_pct ^ u64::from(start_sn));
    let sent_a: Vec<Vec<u8>> = (0..n).map(|i| message(1, i, &mut rng)).collect();
    let sent_b: Vec<Vec<u8>> = (0..n).map(|i| message(2, i, &mut rng)).collect();
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    // In flight: (deliver at tick, to a?, datagram).
    let mut wire: Vec<(u64, bool, Vec<u8>)> = Vec::new();
    let mut next = 0;
    for tick in 0..200_000u64 {
        let now = start_ms.wrapping_add((tick * 5) as u32);
        // Keep the send queues fed, a few messages at a time.
        while next < n && a.wait_snd() < 64 && b.wait_snd() < 64 {
            a.send(&sent_a[next]).expect("send a");
            b.send(&sent_b[next]).expect("send b");
            next += 1;
        }
        let (due, later): (Vec<_>, Vec<_>) = wire.into_iter().partition(|(t, _, _)| *t <= tick);
        wire = later;
        for (_, to_a, d) in due {
            let k = if to_a { &mut a } else { &mut b };
            k.set_current(now);
            k.input(&d).expect("a well-formed datagram");
        }
        for (k, to_a) in [(&mut a, false), (&mut b, true)] {
            k.update(now);
            while let Some(d) = k.poll_transmit() {
                assert!(d.len() <= 1200, "datagrams respect the mtu");
                if rng.below(100) >= loss_pct {
                    wire.push((tick + 1 + rng.below(jitter + 1), to_a, d));
                }
            }
        }
        while let Some(m) = a.recv() {
            got_a.push(m);
        }
        while let Some(m) = b.recv() {
            got_b.push(m);
        }
        if got_a.len() == n && got_b.len() == n {
            break;
        }
    }
    (sent_a, got_b, sent_b, got_a)
}

#[test]
fn delivers_in_order_exactly_once_over_a_clean_link() {
    let (sent_a, got_b, sent_b, got_a) = exchange(0, 0, 0, 0, 300);
    assert_eq!(got_b, sent_a);
    assert_eq!(got_a, sent_b);
}

#[test]
fn delivers_in_order_exactly_once_despite_loss_and_reordering() {
    for loss in [5, 20, 40] {
        let (sent_a, got_b, sent_b, got_a) = exchange(loss, 6, 0, 0, 200);
        assert_eq!(got_b.len(), sent_a.len(), "loss {loss}%");
        assert_eq!(got_b, sent_a, "loss {loss}%");
        assert_eq!(got_a, sent_b, "loss {loss}%");
    }
}

#[test]
fn sequence_numbers_and_the_clock_wrap_around() {
    let (sent_a, got_b, sent_b, got_a) = exchange(10, 3, u32::MAX - 40, u32::MAX - 3_000, 150);
    assert_eq!(got_b, sent_a);
    assert_eq!(got_a, sent_b);
}

#[test]
fn oversized_and_empty_messages_are_refused() {
    let mut k = Kcp::new(1, &KcpParams::default());
    assert_eq!(k.send(&[]), Err(KcpError::MessageSize(0)));
    let mss = 1200 - OVERHEAD;
    assert!(k.send(&vec![0; mss * MAX_FRAGMENTS]).is_ok());
    assert_eq!(k.send(&vec![0; mss * MAX_FRAGMENTS + 1]), Err(KcpError::MessageSize(mss * MAX_FRAGMENTS + 1)));
}

#[test]
fn a_silent_peer_is_declared_dead() {
    let mut k = Kcp::new(1, &KcpParams::default());
    k.send(b"hello?").expect("send");
    let mut now = 0u32;
    for _ in 0..100_000 {
        now = now.wrapping_add(10);
        k.update(now);
        while k.poll_transmit().is_some() {}
        if k.is_dead() {
            break;
        }
    }
    assert!(k.is_dead(), "20 transmissions without an ACK");
}

/// A segment header with these fields and `len` bytes of body.
#[allow(clippy::too_many_arguments)] // one per header field, in wire order
fn segment(conv: u32, cmd: u8, frg: u8, wnd: u16, ts: u32, sn: u32, una: u32, body: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&conv.to_le_bytes());
    s.push(cmd);
    s.push(frg);
    s.extend_from_slice(&wnd.to_le_bytes());
    s.extend_from_slice(&ts.to_le_bytes());
    s.extend_from_slice(&sn.to_le_bytes());
    s.extend_from_slice(&una.to_le_bytes());
    s.extend_from_slice(&(body.len() as u32).to_le_bytes());
    s.extend_from_slice(body);
    s
}

/// The datagrams that panic the `kcp` crate with overflow checks on are harmless here.
#[test]
fn crafted_datagrams_do_not_panic() {
    let mut k = Kcp::new(9, &KcpParams::default());
    k.update(5);
    k.send(b"x").expect("send");
    k.flush();
    for d in [
        segment(9, CMD_PUSH, 0, 128, 0, 0x8000_0000, 0, b"a"),
        segment(9, CMD_ACK, 0, 128, 0x8000_0000, 0, 0, b""),
        segment(9, CMD_ACK, 0, 128, u32::MAX, u32::MAX, u32::MAX, b""),
        segment(9, CMD_PUSH, 255, 0, u32::MAX, 0, 0x8000_0000, b"b"),
        segment(9, CMD_PUSH, 255, 65_535, 0, 1, 7, b"c"),
        segment(9, CMD_WASK, 0, 0, 0, 0, 0, b""),
        segment(9, CMD_WINS, 0, 0, 0, 0, 0, b""),
    ] {
        let _ = k.input(&d);
        k.update(10);
        while k.poll_transmit().is_some() {}
        while k.recv().is_some() {}
    }
    // Malformed: short, wrong conversation, unknown command, a length past the datagram.
    assert_eq!(k.input(&[0; 10]), Err(KcpError::Truncated));
    assert_eq!(k.input(&segment(8, CMD_PUSH, 0, 1, 0, 0, 0, b"")), Err(KcpError::Conv(8)));
    assert_eq!(k.input(&segment(9, 99, 0, 1, 0, 0, 0, b"")), Err(KcpError::Cmd(99)));
    let mut long = segment(9, CMD_PUSH, 0, 1, 0, 0, 0, b"abc");
    long[20] = 200;
    assert_eq!(k.input(&long), Err(KcpError::Truncated));
    // A fragment count that never completes leaves nothing to receive, and the window bounds
    // what a peer can park here.
    let mut k = Kcp::new(9, &KcpParams::default());
    k.update(0);
    for sn in 0..1000u32 {
        let _ = k.input(&segment(9, CMD_PUSH, 200, 128, 0, sn, 0, &[0; 1000]));
    }
    let m = k.recv().expect("201 fragments are in");
    assert_eq!(m.len(), 201 * 1000, "exactly the announced fragments, no more");
    assert!(k.rcv_queue.len() + k.rcv_buf.len() <= 2 * 256, "the windows bound what a peer parks here");
}

/// Our KCP and the `kcp` crate (a close translation of C ikcp) talk to each other.
#[test]
fn interoperates_with_the_kcp_crate() {
    use std::cell::RefCell;
    use std::io::Write;
    use std::rc::Rc;

    #[derive(Clone, Default)]
    struct Out(Rc<RefCell<Vec<Vec<u8>>>>);
    impl Write for Out {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = Out::default();
    let mut theirs = kcp::Kcp::new(0x1234, out.clone());
    theirs.set_nodelay(true, 10, 2, true);
    theirs.set_wndsize(256, 256);
    theirs.set_mtu(1200).expect("mtu");
    let mut ours = Kcp::new(0x1234, &KcpParams::default());
    let mut rng = Rng(42);
    let to_them: Vec<Vec<u8>> = (0..100).map(|i| message(1, i, &mut rng)).collect();
    let to_us: Vec<Vec<u8>> = (0..100).map(|i| message(2, i, &mut rng)).collect();
    for m in &to_them {
        ours.send(m).expect("ours");
    }
    for m in &to_us {
        theirs.send(m).expect("theirs");
    }
    let (mut got_them, mut got_us) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 1 << 16];
    for tick in 1..5_000u32 {
        let now = tick * 10;
        ours.update(now);
        theirs.update(now).expect("update");
        while let Some(d) = ours.poll_transmit() {
            theirs.input(&d).expect("their input takes our datagram");
        }
        for d in out.0.borrow_mut().drain(..) {
            ours.set_current(now);
            ours.input(&d).expect("our input takes theirs");
        }
        while let Ok(n) = theirs.recv(&mut buf) {
            got_them.push(buf[..n].to_vec());
        }
        while let Some(m) = ours.recv() {
            got_us.push(m);
        }
        if got_them.len() == 100 && got_us.len() == 100 {
            break;
        }
    }
    assert_eq!(got_them, to_them);
    assert_eq!(got_us, to_us);
}

proptest::proptest! {
    #[test]
    fn any_datagram_is_handled_without_panicking(d in proptest::collection::vec(proptest::num::u8::ANY, 0..200), conv in 0u32..3) {
        let mut k = Kcp::new(conv, &KcpParams::default());
        k.update(u32::MAX - 5);
        k.send(b"data").expect("send");
        k.flush();
        let _ = k.input(&d);
        k.update(7);
        while k.poll_transmit().is_some() {}
        while k.recv().is_some() {}
        let _ = k.check(9);
    }
}
