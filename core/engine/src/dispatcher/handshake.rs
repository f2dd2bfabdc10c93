//! The dispatcher's handshakes and holds: a `Hello` accepted or refused, a game up (its held
//! traffic released) or a restored game's link parked until its frozen process's link closes,
//! pending connections dropped, and a freeze hold that outlived its bounds failed loudly.

use log::{info, warn};
use oxworld_net::app::{ConnId, Outbox};
use oxworld_net::client_proto::{ErrorCode, ServerMsg};
use oxworld_net::msg::{
    Call, CallFailed, Caller, GameUp, GateUp, Header, Hello, HelloAck, INTERNAL_PROTOCOL_VERSION, Message, ProcKind,
    Refused, ServiceUpdate, Thawed, origin_of,
};

use super::{DispatcherApp, Peer, constant_time_eq, kind_name};

impl DispatcherApp {
    /// Gives up holding `game`'s traffic: every held message fails (calls are answered with
    /// an error), then the game is down.
    pub(super) fn expire_hold(&mut self, game: u16, out: &mut Outbox) {
        let Some(h) = self.frozen.remove(&game) else { return };
        let n = h.queue.len() as u64;
        let held_for = self.now.map(|n| n.saturating_duration_since(h.since)).unwrap_or_default();
        warn!(
            "dispatcher{}: game{game} frozen for {held_for:?} without coming back; failing {n} held messages",
            self.id
        );
        *self.failed_holds.entry(game).or_insert(0) += n;
        if let Some(c) = self.games.get(&game).copied() {
            out.close(c, "freeze hold expired");
            self.conns.remove(&c);
        }
        self.game_down(game, out);
        // Its players are lost unless the restore still comes (within game_lost_after_ms).
        if let Some(now) = self.now {
            self.lost_pending.insert(game, now + self.game_lost_after);
        }
        let reason = format!("game{game} did not come back from its hot swap in time");
        for frame in h.queue {
            self.fail(&frame, &reason, out);
        }
        // A new process that was waiting for the old one's link comes up now.
        self.unpark(game, out);
    }

    /// Answers a frame that will never be delivered: client calls get `Unavailable`, entity
    /// calls `CallFailed`; everything else is logged. Counted. (Decodes the body: rare.)
    pub(super) fn fail(&mut self, frame: &[u8], reason: &str, out: &mut Outbox) {
        self.stats.undeliverable += 1;
        self.settle(frame, out);
        match Call::decode(frame) {
            Ok(Call { target, method, caller: Caller::Client { gate, client }, .. }) => {
                let err = ServerMsg::error(ErrorCode::Unavailable, target, method, reason);
                self.send_to_gate(gate, client, &err, out);
            }
            Ok(Call { target, method, caller: Caller::Server(from), .. }) if !from.is_nil() => {
                let m = CallFailed { to: from, target, method, reason: reason.to_owned() };
                self.route(from, m.to_frame(0), out);
            }
            _ => warn!("dispatcher{}: {} dropped: {reason}", self.id, kind_name(frame)),
        }
    }

    /// Completes the handshake of game `g`'s parked connection, if any, and routes what it
    /// sent meanwhile. An old link still registered is closed first.
    pub(super) fn unpark(&mut self, g: u16, out: &mut Outbox) {
        let Some((new, frames, _)) = self.parked.remove(&g) else { return };
        self.game_up(new, g, out);
        for f in frames {
            if let Ok((h, _)) = Header::parse(&f) {
                self.on_game_frame(g, h, f, out);
            }
        }
    }

    /// Closes a connection that has not completed the handshake (already out of `pending`).
    pub(super) fn drop_pending(&mut self, conn: ConnId, reason: &str, out: &mut Outbox) {
        self.stats.handshake_dropped += 1;
        self.conns.remove(&conn);
        out.close(conn, reason);
        // A flood must not flood the log too: one line per second.
        if let Some(left_out) = self.now.and_then(|t| self.handshake_log.allow(t)) {
            warn!("dispatcher{}: closed {conn}: {reason} ({left_out} similar left out)", self.id);
        }
    }

    /// A connection closed: forgets it, giving back what it was.
    pub(super) fn forget(&mut self, conn: ConnId) -> Option<Peer> {
        self.pending.remove(&conn);
        self.conns.remove(&conn)
    }

    pub(super) fn refuse(&mut self, conn: ConnId, reason: String, out: &mut Outbox) {
        self.stats.refused += 1;
        // Anyone who can reach the port can send bad handshakes: one line per second.
        if let Some(left_out) = self.now.and_then(|t| self.handshake_log.allow(t)) {
            warn!("dispatcher{}: refusing {conn}: {reason} ({left_out} similar left out)", self.id);
        }
        out.send_with(conn, |b| Refused { reason: reason.clone() }.encode(0, b));
        out.close(conn, reason);
        self.conns.remove(&conn);
    }

    pub(super) fn on_hello(&mut self, conn: ConnId, frame: &[u8], out: &mut Outbox) {
        self.pending.remove(&conn);
        let hello = match Header::parse(frame) {
            Ok((h, body)) if h.kind == oxworld_net::msg::Kind::Hello => Hello::decode_body(&h, body),
            Ok((h, _)) => {
                self.refuse(conn, format!("expected Hello first, got {}", h.kind), out);
                return;
            }
            Err(e) => Err(e),
        };
        let Hello { version, kind, id, secret, incarnation, restored } = match hello {
            Ok(h) => h,
            Err(e) => {
                self.refuse(conn, format!("malformed handshake: {e}"), out);
                return;
            }
        };
        if version != INTERNAL_PROTOCOL_VERSION {
            self.refuse(
                conn,
                format!("protocol version {version}, this dispatcher speaks {INTERNAL_PROTOCOL_VERSION}"),
                out,
            );
            return;
        }
        if !constant_time_eq(secret.as_bytes(), self.secret.as_bytes()) {
            self.refuse(conn, "wrong cluster secret".into(), out);
            return;
        }
        match kind {
            ProcKind::Game if (1..=self.n_games).contains(&id) => {
                self.game_linked(id, incarnation, restored, out);
                if let Some(since) = self.now.filter(|_| self.frozen.contains_key(&id) && self.games.contains_key(&id))
                {
                    info!("dispatcher{}: game{id} is back; waiting for its frozen process's link to close", self.id);
                    self.conns.insert(conn, Peer::Parked(id));
                    self.parked.insert(id, (conn, Vec::new(), since));
                } else {
                    self.game_up(conn, id, out);
                }
            }
            ProcKind::Gate if (1..=self.n_gates).contains(&id) => {
                if let Some(old) = self.gates.insert(id, conn) {
                    warn!("dispatcher{}: gate{id} connected again; dropping its old link", self.id);
                    out.close(old, "replaced by a new connection of the same gate");
                    self.conns.remove(&old);
                }
                self.conns.insert(conn, Peer::Gate(id));
                out.set_max_frame(conn, self.max_frame);
                out.send_with(conn, |b| HelloAck { dispatcher: self.id, games: Vec::new() }.encode(0, b));
                self.replay_inflight(origin_of(ProcKind::Gate, id), conn, out);
                self.broadcast_games(&GateUp { gate: id }.to_frame(0), None, out);
                info!("dispatcher{}: gate{id} up", self.id);
                self.warmup_check(out);
            }
            _ => self.refuse(conn, format!("{kind:?} id {id} is not in the config"), out),
        }
    }

    /// Game `id` completed its handshake on `conn`: answer, release what was held for it,
    /// tell the others, and place waiting logins. Its entities' routes follow in `Announce`s.
    pub(super) fn game_up(&mut self, conn: ConnId, id: u16, out: &mut Outbox) {
        let hold = self.frozen.remove(&id);
        self.swapping.remove(&id);
        // Linked (its Hello decided whether its players were lost): nothing is pending any more,
        // even if a hold expiry scheduled a loss meanwhile.
        self.lost_pending.remove(&id);
        if let Some(old) = self.games.get(&id).copied() {
            warn!("dispatcher{}: game{id} connected again; dropping its old link", self.id);
            out.close(old, "replaced by a new connection of the same game");
            self.conns.remove(&old);
            if hold.is_none() {
                self.game_down(id, out);
            }
        }
        self.conns.insert(conn, Peer::Game(id));
        self.games.insert(id, conn);
        out.set_max_frame(conn, self.max_frame);
        let games: Vec<u16> = self.games.keys().chain(self.frozen.keys()).copied().collect();
        out.send_with(conn, |b| HelloAck { dispatcher: self.id, games }.encode(0, b));
        // Always sent (0, 0 for a game that was not frozen), so a restored game knows when
        // every dispatcher has released its traffic.
        let failed = self.failed_holds.remove(&id).unwrap_or(0);
        let queue = hold.map(|h| h.queue).unwrap_or_default();
        let released = queue.len() as u64;
        if released > 0 || failed > 0 {
            info!("dispatcher{}: game{id} is back; releasing {released} held messages ({failed} failed)", self.id);
        }
        out.send_with(conn, |b| Thawed { dispatcher: self.id, released, failed }.encode(0, b));
        // The gates first: what is released next may call every client (a filtered call goes
        // to the gates the game knows).
        for &gate in self.gates.keys() {
            out.send_with(conn, |b| GateUp { gate }.encode(0, b));
        }
        // The same process after a broken link: what it may have lost, in order, first.
        self.replay_inflight(origin_of(ProcKind::Game, id), conn, out);
        for frame in queue {
            out.send(conn, &frame);
            self.stats.routed += 1;
            self.forwarded(origin_of(ProcKind::Game, id), frame);
        }
        self.broadcast_games(&GameUp { game: id }.to_frame(0), Some(id), out);
        info!("dispatcher{}: game{id} up ({} games)", self.id, self.games.len());
        for ((name, shard), (entity, game)) in &self.services {
            let m = ServiceUpdate { entity: *entity, game: *game, name: name.clone(), shard: *shard };
            out.send_with(conn, |b| m.encode(0, b));
        }
        if !self.banned.contains(&id) {
            while let Some(login) = self.pending_boots.pop_front() {
                self.place_boot(login, out);
            }
        }
    }
}
