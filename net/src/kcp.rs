//! KCP, the ARQ protocol of skywind3000's ikcp, implemented here from its specification as a
//! sans-IO state machine: datagrams and time in, messages and datagrams out. Wire-compatible
//! with ikcp, kcp-go and the `kcp` crate (checked in tests against that crate and, in CI,
//! against C ikcp through Python).
//!
//! Why not the `kcp` crate itself: it does ikcp's wrapping `u32` sequence and clock
//! arithmetic with plain `+`/`-`, so a crafted datagram panics any build with overflow checks
//! (tests, fuzzing), and a long-lived session panics when its counters wrap. Here every
//! sequence number and timestamp comparison is [`diff`] (wrapping subtraction read as `i32`),
//! every counter wraps explicitly, and everything a peer sends is bounds-checked, so no
//! datagram can panic any build (the `kcp_input` fuzz target holds it to that).
//!
//! Message mode only (ikcp's default): one [`Kcp::send`] is one message, cut into at most
//! 127 fragments, and [`Kcp::recv`] returns whole messages in order.
//!
//! Drive order: [`Kcp::input`] each datagram from the peer; [`Kcp::send`] messages; call
//! [`Kcp::update`] with the current time (ms, any origin, wrapping) every `interval` ms or
//! when [`Kcp::check`] says, and [`Kcp::flush`] after input or sends to answer at once; take
//! datagrams with [`Kcp::poll_transmit`] and messages with [`Kcp::recv`].

use std::collections::VecDeque;

use thiserror::Error;

/// Bytes of a segment header.
pub const OVERHEAD: usize = 24;
/// Segment commands.
const CMD_PUSH: u8 = 81;
const CMD_ACK: u8 = 82;
const CMD_WASK: u8 = 83;
const CMD_WINS: u8 = 84;
const ASK_SEND: u32 = 1;
const ASK_TELL: u32 = 2;
const RTO_NODELAY_MIN: u32 = 30;
const RTO_MIN: u32 = 100;
const RTO_DEF: u32 = 200;
const RTO_MAX: u32 = 60_000;
/// Fragments of one message: ikcp's receive window floor.
pub const MAX_FRAGMENTS: usize = 127;
const THRESH_INIT: u32 = 2;
const THRESH_MIN: u32 = 2;
const PROBE_INIT: u32 = 7_000;
const PROBE_LIMIT: u32 = 120_000;
const FASTACK_LIMIT: u32 = 5;

/// `a - b` on the wrapping `u32` line: positive when `a` is after `b`.
pub fn diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// KCP tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KcpParams {
    /// Nodelay mode: minimum RTO 30 ms and gentler back-off.
    pub nodelay: bool,
    /// Flush interval in ms (10..=5000 in practice).
    pub interval: u32,
    /// Fast retransmit after this many ACKs skip a segment (0: off).
    pub resend: u32,
    /// No congestion window.
    pub no_congestion: bool,
    /// Send window in segments.
    pub snd_wnd: u16,
    /// Receive window in segments (at least 128).
    pub rcv_wnd: u16,
    /// Bytes per datagram.
    pub mtu: u32,
    /// Transmissions of one segment after which the peer is declared dead.
    pub dead_link: u32,
}

impl Default for KcpParams {
    fn default() -> Self {
        KcpParams {
            nodelay: true,
            interval: 10,
            resend: 2,
            no_congestion: true,
            snd_wnd: 256,
            rcv_wnd: 256,
            mtu: 1200,
            dead_link: 20,
        }
    }
}

/// Why a datagram or a send was refused.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KcpError {
    /// Shorter than a segment header, or a segment longer than the datagram.
    #[error("truncated segment")]
    Truncated,
    /// A segment of another conversation.
    #[error("segment of conversation {0:#x}")]
    Conv(u32),
    /// Not one of the four commands.
    #[error("unknown command {0}")]
    Cmd(u8),
    /// A message needing more than 127 fragments, or an empty one.
    #[error("message of {0} bytes cannot be sent in one KCP message")]
    MessageSize(usize),
}

#[derive(Debug, Clone, Default)]
struct Segment {
    frg: u8,
    ts: u32,
    sn: u32,
    resendts: u32,
    rto: u32,
    fastack: u32,
    xmit: u32,
    data: Vec<u8>,
}

/// One KCP conversation.
#[derive(Debug)]
pub struct Kcp {
    conv: u32,
    mtu: usize,
    mss: usize,
    snd_una: u32,
    snd_nxt: u32,
    rcv_nxt: u32,
    ssthresh: u32,
    rx_rttval: u32,
    rx_srtt: u32,
    rx_rto: u32,
    rx_minrto: u32,
    snd_wnd: u32,
    rcv_wnd: u32,
    rmt_wnd: u32,
    cwnd: u32,
    probe: u32,
    current: u32,
    interval: u32,
    ts_flush: u32,
    nodelay: bool,
    updated: bool,
    ts_probe: u32,
    probe_wait: u32,
    dead_link: u32,
    incr: u32,
    fastresend: u32,
    nocwnd: bool,
    dead: bool,
    snd_queue: VecDeque<Segment>,
    snd_buf: VecDeque<Segment>,
    rcv_queue: VecDeque<Segment>,
    rcv_buf: VecDeque<Segment>,
    acklist: Vec<(u32, u32)>,
    /// Bytes of messages waiting to be sent or acknowledged.
    queued_bytes: usize,
    buffer: Vec<u8>,
    out: VecDeque<Vec<u8>>,
}

impl Kcp {
    /// A conversation `conv` with `params`.
    pub fn new(conv: u32, params: &KcpParams) -> Kcp {
        let mtu = (params.mtu as usize).clamp(OVERHEAD + 26, 65_535);
        let mut k = Kcp {
            conv,
            mtu,
            mss: mtu - OVERHEAD,
            snd_una: 0,
            snd_nxt: 0,
            rcv_nxt: 0,
            ssthresh: THRESH_INIT,
            rx_rttval: 0,
            rx_srtt: 0,
            rx_rto: RTO_DEF,
            rx_minrto: RTO_MIN,
            snd_wnd: u32::from(params.snd_wnd.max(1)),
            rcv_wnd: u32::from(params.rcv_wnd.max(128)),
            rmt_wnd: 128,
            cwnd: 0,
            probe: 0,
            current: 0,
            interval: params.interval.clamp(10, 5000),
            ts_flush: params.interval,
            nodelay: params.nodelay,
            updated: false,
            ts_probe: 0,
            probe_wait: 0,
            dead_link: params.dead_link.max(2),
            incr: 0,
            fastresend: params.resend,
            nocwnd: params.no_congestion,
            dead: false,
            snd_queue: VecDeque::new(),
            snd_buf: VecDeque::new(),
            rcv_queue: VecDeque::new(),
            rcv_buf: VecDeque::new(),
            acklist: Vec::new(),
            queued_bytes: 0,
            buffer: Vec::new(),
            out: VecDeque::new(),
        };
        if params.nodelay {
            k.rx_minrto = RTO_NODELAY_MIN;
        }
        if params.interval < 10 {
            k.interval = 10;
        }
        k
    }

    /// The conversation id.
    pub fn conv(&self) -> u32 {
        self.conv
    }

    /// The flush interval in ms.
    pub fn interval(&self) -> u32 {
        self.interval
    }

    /// True once a segment was sent `dead_link` times without an acknowledgement.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Bytes of messages not yet acknowledged by the peer.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// True when an [`Kcp::update`] would do nothing: nothing to send, retransmit, acknowledge
    /// or probe. An idle conversation's timers can be skipped (thousands of idle clients cost
    /// nothing per tick); its clock catches up at the next update.
    pub fn is_idle(&self) -> bool {
        self.snd_queue.is_empty()
            && self.snd_buf.is_empty()
            && self.acklist.is_empty()
            && self.probe == 0
            && self.rmt_wnd != 0
            && self.buffer.is_empty()
    }

    /// Segments waiting to be sent or acknowledged.
    pub fn wait_snd(&self) -> usize {
        self.snd_buf.len() + self.snd_queue.len()
    }

    /// Queues one message.
    pub fn send(&mut self, data: &[u8]) -> Result<(), KcpError> {
        if data.is_empty() {
            return Err(KcpError::MessageSize(0));
        }
        let count = data.len().div_ceil(self.mss);
        if count > MAX_FRAGMENTS {
            return Err(KcpError::MessageSize(data.len()));
        }
        for (i, chunk) in data.chunks(self.mss).enumerate() {
            let frg = (count - i - 1) as u8;
            self.snd_queue.push_back(Segment { frg, data: chunk.to_vec(), ..Segment::default() });
        }
        self.queued_bytes += data.len();
        Ok(())
    }

    /// The next whole message, if one has arrived.
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        let first = self.rcv_queue.front()?;
        let need = usize::from(first.frg) + 1;
        if self.rcv_queue.len() < need {
            return None;
        }
        let recover = self.rcv_queue.len() >= self.rcv_wnd as usize;
        // Exactly the fragments the first one announced (a peer whose fragment numbers do
        // not count down gets its garbage back as one bounded message, which the layer above
        // refuses).
        let mut msg = Vec::new();
        for seg in self.rcv_queue.drain(..need) {
            msg.extend_from_slice(&seg.data);
        }
        self.move_ready();
        if recover && self.rcv_queue.len() < self.rcv_wnd as usize {
            // Tell the peer the window opened again.
            self.probe |= ASK_TELL;
        }
        Some(msg)
    }

    /// Moves in-order segments from the reorder buffer to the receive queue.
    fn move_ready(&mut self) {
        while let Some(seg) = self.rcv_buf.front() {
            if seg.sn != self.rcv_nxt || self.rcv_queue.len() >= self.rcv_wnd as usize {
                break;
            }
            if let Some(seg) = self.rcv_buf.pop_front() {
                self.rcv_queue.push_back(seg);
            }
            self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
        }
    }

    /// Feeds one datagram from the peer. An error means the datagram (from the failing segment
    /// on) was ignored; the conversation itself is unharmed.
    pub fn input(&mut self, data: &[u8]) -> Result<(), KcpError> {
        if data.len() < OVERHEAD {
            return Err(KcpError::Truncated);
        }
        let prev_una = self.snd_una;
        let mut maxack: Option<(u32, u32)> = None;
        let mut p = data;
        while p.len() >= OVERHEAD {
            let u32_at = |i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
            let conv = u32_at(0);
            let cmd = p[4];
            let frg = p[5];
            let wnd = u16::from_le_bytes([p[6], p[7]]);
            let ts = u32_at(8);
            let sn = u32_at(12);
            let una = u32_at(16);
            let len = u32_at(20) as usize;
            if conv != self.conv {
                return Err(KcpError::Conv(conv));
            }
            if len > p.len() - OVERHEAD {
                return Err(KcpError::Truncated);
            }
            if !(CMD_PUSH..=CMD_WINS).contains(&cmd) {
                return Err(KcpError::Cmd(cmd));
            }
            let body = &p[OVERHEAD..OVERHEAD + len];
            self.rmt_wnd = u32::from(wnd);
            self.parse_una(una);
            self.shrink_buf();
            match cmd {
                CMD_ACK => {
                    if diff(self.current, ts) >= 0 {
                        self.update_ack(diff(self.current, ts) as u32);
                    }
                    self.parse_ack(sn);
                    self.shrink_buf();
                    match maxack {
                        Some((m, _)) if diff(sn, m) <= 0 => {}
                        _ => maxack = Some((sn, ts)),
                    }
                }
                CMD_PUSH if diff(sn, self.rcv_nxt.wrapping_add(self.rcv_wnd)) < 0 => {
                    self.acklist.push((sn, ts));
                    if diff(sn, self.rcv_nxt) >= 0 {
                        self.parse_data(Segment { frg, ts, sn, data: body.to_vec(), ..Segment::default() });
                    }
                }
                CMD_WASK => self.probe |= ASK_TELL,
                // CMD_WINS: the window came with the header; a PUSH past the window is dropped.
                _ => {}
            }
            p = &p[OVERHEAD + len..];
        }
        if let Some((sn, _)) = maxack {
            self.parse_fastack(sn);
        }
        if diff(self.snd_una, prev_una) > 0 && self.cwnd < self.rmt_wnd {
            let mss = self.mss as u32;
            if self.cwnd < self.ssthresh {
                self.cwnd += 1;
                self.incr = self.incr.saturating_add(mss);
            } else {
                self.incr = self.incr.max(mss);
                self.incr = self.incr.saturating_add((mss * mss) / self.incr + mss / 16);
                if (u64::from(self.cwnd) + 1) * u64::from(mss) <= u64::from(self.incr) {
                    self.cwnd = self.incr.div_ceil(mss.max(1));
                }
            }
            if self.cwnd > self.rmt_wnd {
                self.cwnd = self.rmt_wnd;
                self.incr = self.rmt_wnd.saturating_mul(mss);
            }
        }
        Ok(())
    }

    fn update_ack(&mut self, rtt: u32) {
        let rtt = rtt.min(RTO_MAX);
        if self.rx_srtt == 0 {
            self.rx_srtt = rtt;
            self.rx_rttval = rtt / 2;
        } else {
            let delta = rtt.abs_diff(self.rx_srtt);
            self.rx_rttval = (3 * self.rx_rttval + delta) / 4;
            self.rx_srtt = ((7 * self.rx_srtt + rtt) / 8).max(1);
        }
        let rto = self.rx_srtt + self.interval.max(4 * self.rx_rttval);
        self.rx_rto = rto.clamp(self.rx_minrto, RTO_MAX);
    }

    fn shrink_buf(&mut self) {
        self.snd_una = self.snd_buf.front().map_or(self.snd_nxt, |s| s.sn);
    }

    fn parse_ack(&mut self, sn: u32) {
        if diff(sn, self.snd_una) < 0 || diff(sn, self.snd_nxt) >= 0 {
            return;
        }
        if let Some(i) = self.snd_buf.iter().take_while(|s| diff(sn, s.sn) >= 0).position(|s| s.sn == sn)
            && let Some(seg) = self.snd_buf.remove(i)
        {
            self.queued_bytes = self.queued_bytes.saturating_sub(seg.data.len());
        }
    }

    fn parse_una(&mut self, una: u32) {
        while let Some(seg) = self.snd_buf.front() {
            if diff(una, seg.sn) <= 0 {
                break;
            }
            if let Some(seg) = self.snd_buf.pop_front() {
                self.queued_bytes = self.queued_bytes.saturating_sub(seg.data.len());
            }
        }
    }

    fn parse_fastack(&mut self, sn: u32) {
        if diff(sn, self.snd_una) < 0 || diff(sn, self.snd_nxt) >= 0 {
            return;
        }
        for seg in &mut self.snd_buf {
            if diff(sn, seg.sn) < 0 {
                break;
            }
            if sn != seg.sn {
                seg.fastack += 1;
            }
        }
    }

    fn parse_data(&mut self, seg: Segment) {
        let sn = seg.sn;
        if diff(sn, self.rcv_nxt.wrapping_add(self.rcv_wnd)) >= 0 || diff(sn, self.rcv_nxt) < 0 {
            return;
        }
        // Find the slot from the back (segments mostly arrive in order).
        let mut at = self.rcv_buf.len();
        for (i, s) in self.rcv_buf.iter().enumerate().rev() {
            if s.sn == sn {
                return; // a repeat
            }
            if diff(sn, s.sn) > 0 {
                break;
            }
            at = i;
        }
        self.rcv_buf.insert(at, seg);
        self.move_ready();
    }

    fn wnd_unused(&self) -> u16 {
        let used = self.rcv_queue.len() as u32;
        self.rcv_wnd.saturating_sub(used).min(u32::from(u16::MAX)) as u16
    }

    fn push_header(&mut self, cmd: u8, frg: u8, wnd: u16, ts: u32, sn: u32, len: usize) {
        if self.buffer.len() + OVERHEAD + len > self.mtu {
            self.emit();
        }
        let b = &mut self.buffer;
        b.extend_from_slice(&self.conv.to_le_bytes());
        b.push(cmd);
        b.push(frg);
        b.extend_from_slice(&wnd.to_le_bytes());
        b.extend_from_slice(&ts.to_le_bytes());
        b.extend_from_slice(&sn.to_le_bytes());
        b.extend_from_slice(&self.rcv_nxt.to_le_bytes());
        b.extend_from_slice(&(len as u32).to_le_bytes());
    }

    fn emit(&mut self) {
        if !self.buffer.is_empty() {
            self.out.push_back(std::mem::take(&mut self.buffer));
        }
    }

    /// Sends what is due: acknowledgements, window probes, new and retransmitted segments.
    /// Does nothing before the first [`Kcp::update`].
    pub fn flush(&mut self) {
        if !self.updated {
            return;
        }
        let current = self.current;
        let wnd = self.wnd_unused();
        for (sn, ts) in std::mem::take(&mut self.acklist) {
            self.push_header(CMD_ACK, 0, wnd, ts, sn, 0);
        }
        if self.rmt_wnd == 0 {
            if self.probe_wait == 0 {
                self.probe_wait = PROBE_INIT;
                self.ts_probe = current.wrapping_add(self.probe_wait);
            } else if diff(current, self.ts_probe) >= 0 {
                self.probe_wait = self.probe_wait.max(PROBE_INIT);
                self.probe_wait = (self.probe_wait + self.probe_wait / 2).min(PROBE_LIMIT);
                self.ts_probe = current.wrapping_add(self.probe_wait);
                self.probe |= ASK_SEND;
            }
        } else {
            self.ts_probe = 0;
            self.probe_wait = 0;
        }
        if self.probe & ASK_SEND != 0 {
            self.push_header(CMD_WASK, 0, wnd, 0, 0, 0);
        }
        if self.probe & ASK_TELL != 0 {
            self.push_header(CMD_WINS, 0, wnd, 0, 0, 0);
        }
        self.probe = 0;

        let mut cwnd = self.snd_wnd.min(self.rmt_wnd);
        if !self.nocwnd {
            cwnd = cwnd.min(self.cwnd);
        }
        while diff(self.snd_nxt, self.snd_una.wrapping_add(cwnd)) < 0 {
            let Some(mut seg) = self.snd_queue.pop_front() else { break };
            seg.ts = current;
            seg.sn = self.snd_nxt;
            self.snd_nxt = self.snd_nxt.wrapping_add(1);
            seg.resendts = current;
            seg.rto = self.rx_rto;
            seg.fastack = 0;
            seg.xmit = 0;
            self.snd_buf.push_back(seg);
        }

        let resent = if self.fastresend > 0 { self.fastresend } else { u32::MAX };
        let rtomin = if self.nodelay { 0 } else { self.rx_rto >> 3 };
        let mut lost = false;
        let mut change = false;
        let mut snd_buf = std::mem::take(&mut self.snd_buf);
        for seg in &mut snd_buf {
            let mut needsend = false;
            if seg.xmit == 0 {
                needsend = true;
                seg.xmit = 1;
                seg.rto = self.rx_rto;
                seg.resendts = current.wrapping_add(seg.rto).wrapping_add(rtomin);
            } else if diff(current, seg.resendts) >= 0 {
                needsend = true;
                seg.xmit += 1;
                let step = if self.nodelay { seg.rto / 2 } else { seg.rto.max(self.rx_rto) };
                seg.rto = seg.rto.saturating_add(step).min(RTO_MAX);
                seg.resendts = current.wrapping_add(seg.rto);
                lost = true;
            } else if seg.fastack >= resent && seg.xmit <= FASTACK_LIMIT {
                needsend = true;
                seg.xmit += 1;
                seg.fastack = 0;
                seg.resendts = current.wrapping_add(seg.rto);
                change = true;
            }
            if needsend {
                seg.ts = current;
                self.push_header(CMD_PUSH, seg.frg, wnd, seg.ts, seg.sn, seg.data.len());
                self.buffer.extend_from_slice(&seg.data);
                if seg.xmit >= self.dead_link {
                    self.dead = true;
                }
            }
        }
        self.snd_buf = snd_buf;
        self.emit();
        let mss = self.mss as u32;
        if change {
            let inflight = self.snd_nxt.wrapping_sub(self.snd_una);
            self.ssthresh = (inflight / 2).max(THRESH_MIN);
            self.cwnd = self.ssthresh.saturating_add(resent.min(1 << 16));
            self.incr = self.cwnd.saturating_mul(mss);
        }
        if lost {
            self.ssthresh = (self.cwnd / 2).max(THRESH_MIN);
            self.cwnd = 1;
            self.incr = mss;
        }
        if self.cwnd < 1 {
            self.cwnd = 1;
            self.incr = mss;
        }
    }

    /// The clock moved to `current` (ms, wrapping): flushes when the interval is due.
    pub fn update(&mut self, current: u32) {
        self.current = current;
        if !self.updated {
            self.updated = true;
            self.ts_flush = current;
        }
        let mut slap = diff(current, self.ts_flush);
        if !(-10_000..10_000).contains(&slap) {
            self.ts_flush = current;
            slap = 0;
        }
        if slap >= 0 {
            self.ts_flush = self.ts_flush.wrapping_add(self.interval);
            if diff(current, self.ts_flush) >= 0 {
                self.ts_flush = current.wrapping_add(self.interval);
            }
            self.flush();
        }
    }

    /// Sets the clock without flushing (before an `input`, so RTT samples use the right time).
    pub fn set_current(&mut self, current: u32) {
        self.current = current;
    }

    /// Milliseconds until [`Kcp::update`] has work (0: now).
    pub fn check(&self, current: u32) -> u32 {
        if !self.updated {
            return 0;
        }
        let mut ts_flush = self.ts_flush;
        if !(-10_000..10_000).contains(&diff(current, ts_flush)) {
            ts_flush = current;
        }
        if diff(current, ts_flush) >= 0 {
            return 0;
        }
        let mut minimal = diff(ts_flush, current) as u32;
        for seg in &self.snd_buf {
            let d = diff(seg.resendts, current);
            if d <= 0 {
                return 0;
            }
            minimal = minimal.min(d as u32);
        }
        minimal.min(self.interval)
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// Reads the conversation id of a datagram.
    pub fn conv_of(datagram: &[u8]) -> Option<u32> {
        datagram.first_chunk::<4>().map(|b| u32::from_le_bytes(*b))
    }

    #[cfg(test)]
    fn start_at(&mut self, sn: u32) {
        self.snd_una = sn;
        self.snd_nxt = sn;
        self.rcv_nxt = sn;
    }
}

pub mod link;

#[cfg(test)]
mod tests;
