//! What a dispatcher forwarded to each game and gate that the destination has not
//! acknowledged yet: sent again, in order and before anything new, when the same process links
//! again after a broken link; answered with errors when that process is gone.
//!
//! The origins keep every numbered frame until its destination acknowledges it, but they send
//! again only when their own link to a dispatcher comes back (the dispatcher restarted). A
//! broken link between a live dispatcher and a live game loses what was on it in the other
//! direction, and only the dispatcher knows what that was: it keeps each numbered frame it
//! forwards, indexed by `(origin, seq)`, and forgets it when the destination's `Acks` pass
//! through on their way to the origin. A freezing game has handled everything sent before its
//! `FreezeAck`, so its record is cleared at `FreezeGame`.

use std::collections::BTreeMap;

use log::{info, warn};
use oxworld_net::app::{ConnId, Outbox};
use oxworld_net::msg::{Acks, Header, Kind, Message, game_of_origin};

use super::DispatcherApp;

/// Bytes of unacknowledged frames kept per destination; past this the oldest are forgotten
/// (their origins still keep them; only the replay after a broken link is lost for them).
pub(super) const MAX_INFLIGHT_BYTES: usize = 64 << 20;

/// Frames forwarded to one destination and not acknowledged yet.
#[derive(Default)]
pub(super) struct Inflight {
    next: u64,
    frames: BTreeMap<u64, Vec<u8>>,
    index: BTreeMap<(u16, u64), u64>,
    bytes: usize,
}

/// The `(origin, seq)` of a numbered frame, read from its header bytes.
fn numbered(frame: &[u8]) -> Option<(u16, u64)> {
    let seq = u64::from_le_bytes(frame.get(24..32)?.try_into().ok()?);
    if seq == 0 {
        return None;
    }
    let origin = u16::from_le_bytes(frame.get(20..22)?.try_into().ok()?);
    Some((origin, seq))
}

impl DispatcherApp {
    /// `frame` was forwarded to `dest` (a game's or gate's origin): kept if numbered.
    pub(super) fn forwarded(&mut self, dest: u16, frame: Vec<u8>) {
        let Some(key) = numbered(&frame) else { return };
        let f = self.inflight.entry(dest).or_default();
        let n = f.next;
        f.next += 1;
        f.bytes += frame.len();
        if let Some(old) = f.index.insert(key, n)
            && let Some(stale) = f.frames.remove(&old)
        {
            f.bytes -= stale.len();
        }
        f.frames.insert(n, frame);
        while f.bytes > MAX_INFLIGHT_BYTES {
            let Some((_, oldest)) = f.frames.pop_first() else { break };
            f.bytes -= oldest.len();
            if let Some(k) = numbered(&oldest) {
                f.index.remove(&k);
            }
        }
    }

    /// `acker` acknowledged `acks` (on their way through to the origin).
    pub(super) fn acked_through(&mut self, acker: u16, acks: &Acks) {
        let Some(f) = self.inflight.get_mut(&acker) else { return };
        for &(first, count) in &acks.runs {
            let end = first.saturating_add(u64::from(count));
            // Bounded by what is kept, whatever the run claims.
            let keys: Vec<(u16, u64)> =
                f.index.range((acks.origin, first)..(acks.origin, end)).map(|(k, _)| *k).collect();
            for k in keys {
                if let Some(n) = f.index.remove(&k)
                    && let Some(frame) = f.frames.remove(&n)
                {
                    f.bytes -= frame.len();
                }
            }
        }
    }

    /// The same process of `dest` linked again on `conn`: what it may have lost goes first.
    pub(super) fn replay_inflight(&mut self, dest: u16, conn: ConnId, out: &mut Outbox) {
        let Some(f) = self.inflight.get(&dest) else { return };
        if f.frames.is_empty() {
            return;
        }
        info!("dispatcher{}: sending {} unacknowledged message(s) again to {dest:#06x}", self.id, f.frames.len());
        for frame in f.frames.values() {
            out.send(conn, frame);
        }
    }

    /// `dest`'s process is gone: what it did not acknowledge is answered with errors.
    pub(super) fn fail_inflight(&mut self, dest: u16, out: &mut Outbox) {
        let Some(f) = self.inflight.remove(&dest) else { return };
        if !f.frames.is_empty() {
            warn!(
                "dispatcher{}: {} message(s) to {dest:#06x} unacknowledged when its process went; answering them",
                self.id,
                f.frames.len()
            );
        }
        for mut frame in f.frames.into_values() {
            let Ok((h, _)) = Header::parse(&frame) else { continue };
            match (h.kind, game_of_origin(h.origin)) {
                (Kind::Call, _) => self.fail(&frame, "its destination's process ended before handling it", out),
                // An entity on its way there goes back to the game it left, which rebuilds it.
                (Kind::RealMigrate, Some(from)) if from != dest => {
                    warn!(
                        "dispatcher{}: {} was migrating to a game that is gone: sent back to game{from}",
                        self.id, h.route
                    );
                    Header::patch_aux(&mut frame, from);
                    self.routes.insert(h.route, from);
                    if let Err(frame) = self.send_game(from, frame, out) {
                        self.routes.remove(&h.route);
                        self.settle(&frame, out);
                    }
                }
                _ => self.settle(&frame, out),
            }
        }
    }

    /// `dest` handled everything forwarded so far (a freezing game's `FreezeGame`).
    pub(super) fn clear_inflight(&mut self, dest: u16) {
        self.inflight.remove(&dest);
    }

    /// Acknowledgements from a linked peer: forget what they cover, forward them to the origin
    /// they name (never held: a frozen or absent origin numbers afresh or hears them again).
    pub(super) fn forward_acks(&mut self, acker: u16, h: &Header, body: &[u8], frame: &[u8], out: &mut Outbox) {
        match Acks::decode_body(h, body) {
            Ok(acks) => self.acked_through(acker, &acks),
            Err(e) => {
                warn!("dispatcher{}: malformed Acks from {acker:#06x} ({e}); dropped", self.id);
                self.stats.malformed += 1;
                return;
            }
        }
        if let Some(c) = self.conn_of_origin(h.aux) {
            out.send(c, frame);
        }
    }
}
