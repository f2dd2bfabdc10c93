//! The header's trace slot on a traced client call and its reply: how long the message spent
//! inside each process it crossed (residence time, so hosts need no synchronised clocks).
//!
//! A gate samples a client call (1 in `trace_sample`) by setting [`FLAG_TRACED`] and writing a
//! fresh [`Trace`] into the header's `trace` slot; each hop adds its residence time; the game
//! copies what the call gathered into the first message its handler sends back to the calling
//! client, and the gate that delivers that reply reads the whole path. A game also traces the
//! reply of an unsampled call that was slow at the game itself, without the upstream hops.
//!
//! Slot layout (8 bytes, the `trace` field's little-endian bytes): bytes 0 to 5 are the hops
//! of [`Hop`], each a duration in [`encode_us`]'s one-byte log scale; byte 6 is reserved (0);
//! byte 7 holds [`SAMPLED`] when the gate sampled the call (bytes 0 and 1 were measured).

use std::time::Duration;

use super::{FLAG_TRACED, HEADER_LEN};

/// Bit of byte 7: the gate sampled the call, so its upstream hops were measured.
pub const SAMPLED: u8 = 1;

/// Where a traced call spends time, in the order it passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// The gate: from its IO worker reading the call to its loop forwarding it.
    GateIn = 0,
    /// The dispatcher, on the way to the game.
    DispatcherIn = 1,
    /// The game: from its IO worker reading the call to the handler starting (waiting for
    /// the loop, earlier events of the same turn, a load it waited for).
    GameQueue = 2,
    /// The game: from the handler starting to it returning.
    Handler = 3,
    /// The dispatcher, on the way back.
    DispatcherBack = 4,
    /// The gate: from its IO worker reading the reply to its loop handing it to the client's
    /// connection.
    GateOut = 5,
}

impl Hop {
    /// Every hop, in order.
    pub const ALL: [Hop; 6] =
        [Hop::GateIn, Hop::DispatcherIn, Hop::GameQueue, Hop::Handler, Hop::DispatcherBack, Hop::GateOut];

    /// Its name in logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Hop::GateIn => "gate_in",
            Hop::DispatcherIn => "dispatcher_in",
            Hop::GameQueue => "game_queue",
            Hop::Handler => "handler",
            Hop::DispatcherBack => "dispatcher_back",
            Hop::GateOut => "gate_out",
        }
    }
}

/// Microseconds in one byte: 0 to 15 exactly, then 8 steps per doubling (about 12 %
/// resolution, rounded down), up to about 4.5 hours; longer saturates at 255.
pub fn encode_us(us: u64) -> u8 {
    if us < 16 {
        return us as u8;
    }
    let e = 63 - u64::from(us.leading_zeros()) - 3; // >= 1: us >> e is in 8..16
    let code = ((e + 1) << 3) | ((us >> e) - 8);
    code.min(255) as u8
}

/// The microseconds a byte of [`encode_us`] stands for (the bottom of its step).
pub fn decode_us(code: u8) -> u64 {
    if code < 16 {
        return u64::from(code);
    }
    let e = u32::from(code >> 3) - 1;
    (8 + u64::from(code & 7)) << e
}

/// The trace slot of one call and its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trace(pub [u8; 8]);

impl Trace {
    /// A call the gate sampled: every hop will be measured.
    pub fn sampled() -> Trace {
        let mut t = Trace::default();
        t.0[7] = SAMPLED;
        t
    }

    /// From the header's `trace` field.
    pub fn from_u64(v: u64) -> Trace {
        Trace(v.to_le_bytes())
    }

    /// As the header's `trace` field.
    pub fn to_u64(self) -> u64 {
        u64::from_le_bytes(self.0)
    }

    /// True when the gate sampled the call (its first two hops were measured).
    pub fn is_sampled(self) -> bool {
        self.0[7] & SAMPLED != 0
    }

    /// Adds `d` to `hop` (saturating: a hop crossed twice, as in a migration, adds up).
    pub fn add(&mut self, hop: Hop, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = hop as usize;
        self.0[i] = encode_us(decode_us(self.0[i]).saturating_add(us));
    }

    /// The time recorded at `hop`.
    pub fn get(self, hop: Hop) -> Duration {
        Duration::from_micros(decode_us(self.0[hop as usize]))
    }

    /// The time recorded over every hop.
    pub fn total(self) -> Duration {
        Hop::ALL.iter().map(|&h| self.get(h)).sum()
    }

    /// The trace of an encoded frame, if it is traced.
    pub fn of_frame(frame: &[u8]) -> Option<Trace> {
        if frame.len() < HEADER_LEN || frame[1] & FLAG_TRACED == 0 {
            return None;
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&frame[40..48]);
        Some(Trace(b))
    }

    /// Marks an encoded frame traced and writes this trace into its slot.
    pub fn stamp(self, frame: &mut [u8]) {
        if frame.len() < HEADER_LEN {
            return;
        }
        frame[1] |= FLAG_TRACED;
        frame[40..48].copy_from_slice(&self.0);
    }

    /// Adds `d` to `hop` of an encoded frame if it is traced; an untraced frame is left alone
    /// (the normal path's whole cost is this flag test).
    pub fn add_to_frame(frame: &mut [u8], hop: Hop, d: Duration) {
        if let Some(mut t) = Trace::of_frame(frame) {
            t.add(hop, d);
            t.stamp(frame);
        }
    }

    /// One line for a log: `gate_in 0.1 ms, dispatcher_in 0.0 ms, ...` (hops not measured say so).
    pub fn describe(self) -> String {
        let mut s = String::new();
        for h in Hop::ALL {
            if !s.is_empty() {
                s.push_str(", ");
            }
            let measured = self.is_sampled() || !matches!(h, Hop::GateIn | Hop::DispatcherIn);
            if measured {
                s.push_str(&format!("{} {:.1} ms", h.name(), self.get(h).as_secs_f64() * 1000.0));
            } else {
                s.push_str(&format!("{} not sampled", h.name()));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use crate::msg::{Call, Caller, Message};

    #[test]
    fn the_log_scale_is_exact_below_16_and_within_an_eighth_above() {
        for us in 0..16 {
            assert_eq!(decode_us(encode_us(us)), us);
        }
        for us in [16u64, 17, 31, 100, 999, 1_000, 12_345, 1_000_000, 60_000_000] {
            let back = decode_us(encode_us(us));
            assert!(back <= us && us - back <= us / 8, "{us} -> {back}");
        }
        // Monotonic over every code, and saturating at the top.
        for c in 1..=255u8 {
            assert!(decode_us(c) > decode_us(c - 1), "code {c}");
            assert_eq!(encode_us(decode_us(c)), c);
        }
        assert_eq!(encode_us(u64::MAX), 255);
    }

    #[test]
    fn hops_add_up_in_a_frame_and_untraced_frames_are_left_alone() {
        let call = Call { target: Id([7; 16]), method: 9, caller: Caller::default(), args: vec![1, 2] };
        let mut plain = call.to_frame(1);
        let before = plain.clone();
        Trace::add_to_frame(&mut plain, Hop::DispatcherIn, Duration::from_millis(3));
        assert_eq!(plain, before, "an untraced frame is not touched");

        let mut f = call.to_frame(1);
        Trace::sampled().stamp(&mut f);
        Trace::add_to_frame(&mut f, Hop::DispatcherIn, Duration::from_micros(10));
        Trace::add_to_frame(&mut f, Hop::DispatcherIn, Duration::from_micros(5));
        Trace::add_to_frame(&mut f, Hop::GateIn, Duration::from_millis(2));
        let t = Trace::of_frame(&f).expect("traced");
        assert!(t.is_sampled());
        assert_eq!(t.get(Hop::DispatcherIn), Duration::from_micros(15));
        assert!(t.get(Hop::GateIn) <= Duration::from_millis(2) && t.get(Hop::GateIn) >= Duration::from_micros(1750));
        // The body is untouched: the frame still decodes to the same call.
        assert_eq!(Call::decode(&f).expect("decodes"), call);
        let line = t.describe();
        assert!(line.contains("dispatcher_in 0.0 ms") && line.contains("gate_in 1."), "{line}");
    }

    #[test]
    fn an_unsampled_trace_says_which_hops_were_not_measured() {
        let mut t = Trace::default();
        t.add(Hop::Handler, Duration::from_millis(250));
        assert!(!t.is_sampled());
        let line = t.describe();
        assert!(line.contains("gate_in not sampled") && line.contains("handler 2"), "{line}");
        assert!(t.total() >= Duration::from_millis(220));
        // Short and hostile frames are not traced and not touched.
        assert_eq!(Trace::of_frame(&[0xff; 10]), None);
        let mut short = vec![0xff; 47];
        Trace::add_to_frame(&mut short, Hop::GateOut, Duration::from_secs(1));
        Trace::default().stamp(&mut short);
        assert_eq!(short, vec![0xff; 47]);
    }
}
