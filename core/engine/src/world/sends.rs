//! The world's output: internal messages queued with the dispatcher each must go through,
//! attribute flushes, and client messages fanned out with one encoded payload per audience.
//!
//! Everything a client is sent travels through the dispatcher of the entity that owns that
//! client (its "route"), so one client's stream stays in order. A message for many clients is
//! encoded once and sent as one `ToClients` per (dispatcher, gate) group of its recipients.

use oxworld_net::Id;
use oxworld_net::attr_op::AttrOp;
use oxworld_net::client_proto::ServerMsg;
use oxworld_net::msg::{FromGame, ToClients};

use super::{ClientRef, WorldCore};
use crate::attr::{AttrSchema, Attrs, Audience, filter_ops, touches_persistent};

impl WorldCore {
    /// Unix milliseconds now (for id generation and crontab minutes).
    pub(super) fn unix_ms(&self) -> u64 {
        let (start, base) = self.clock_base;
        base + u64::try_from(self.now.saturating_duration_since(start).as_millis()).unwrap_or(0)
    }

    /// Logs a panic caught in entity code (`what` ran, `msg` says where), at most once a second
    /// with the count of those left out.
    pub(super) fn log_panic(&mut self, what: &str, msg: &str, outcome: &str) {
        if let Some(left_out) = self.panic_log.allow(self.now) {
            log::error!(
                "game{}: {what} panicked: {msg}; the caller got an error, {outcome}, the game goes on \
                 ({left_out} similar left out, {} panics so far)",
                self.game_id,
                self.stats.panics
            );
        }
    }

    /// True if a message whose variable part is `bytes` long fits the internal frame limit;
    /// otherwise counts and logs (at most once a second) what was refused.
    pub(super) fn fits(&mut self, bytes: usize, what: impl FnOnce() -> String) -> bool {
        if bytes.saturating_add(super::MSG_OVERHEAD) <= self.max_frame {
            return true;
        }
        self.stats.oversized += 1;
        if let Some(left_out) = self.oversized_log.allow(self.now) {
            log::warn!(
                "game{}: {} of {bytes} bytes exceeds the internal frame limit of {} bytes; not sent ({left_out} \
                 similar left out)",
                self.game_id,
                what(),
                self.max_frame
            );
        }
        false
    }

    /// Queues `msg` through dispatcher index `d`.
    pub(super) fn send_idx(&mut self, d: usize, msg: impl Into<FromGame>) {
        self.out.push((d % self.n_dispatchers, msg.into()));
    }

    /// Queues `msg` through the dispatcher of `route`.
    pub(super) fn send(&mut self, route: Id, msg: impl Into<FromGame>) {
        self.out.push((route.dispatcher_index(self.n_dispatchers), msg.into()));
    }

    /// Sends one client message to client `c`, through the dispatcher of `route` (the entity
    /// that owns the client).
    pub(super) fn send_to_client(&mut self, route: Id, c: ClientRef, msg: &ServerMsg) {
        let mut payload = Vec::new();
        msg.encode(&mut payload);
        self.send_payload_to_client(route, c, payload);
    }

    /// Sends one encoded client message to client `c` (kept or dropped if it is away).
    pub(super) fn send_payload_to_client(&mut self, route: Id, c: ClientRef, payload: Vec<u8>) {
        if !self.fits(payload.len(), || format!("a message from {route} to its client")) {
            return;
        }
        if self.away_keeps(&c, &payload) {
            return;
        }
        self.send(route, ToClients { gate: c.gate, clients: vec![c.client], payload });
    }

    /// Sends one encoded client message to every `(route, client)` of `recipients`: one
    /// `ToClients` per group of recipients sharing a dispatcher (their route's) and a gate.
    pub(super) fn send_to_clients(&mut self, recipients: &[(Id, ClientRef)], payload: Vec<u8>) {
        let n = self.n_dispatchers;
        if !self.fits(payload.len() + 16 * recipients.len(), || format!("a message for {} clients", recipients.len())) {
            return;
        }
        // (dispatcher index, gate) -> clients; a handful of groups, so a small vector.
        let mut groups: Vec<((usize, u16), Vec<Id>)> = Vec::new();
        for (route, c) in recipients {
            if !self.resume_is_empty() && self.away_keeps(c, &payload) {
                continue;
            }
            let key = (route.dispatcher_index(n), c.gate);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, clients)) => clients.push(c.client),
                None => groups.push((key, vec![c.client])),
            }
        }
        let last = groups.len().saturating_sub(1);
        let mut payload = Some(payload);
        for (i, ((d, gate), clients)) in groups.into_iter().enumerate() {
            let bytes =
                if i == last { payload.take().unwrap_or_default() } else { payload.clone().unwrap_or_default() };
            self.out.push((d, ToClients { gate, clients, payload: bytes }.into()));
        }
    }

    /// Sends the attribute changes recorded so far to the clients that may see them: the
    /// owner's client gets what `CLIENT` and `ALL_CLIENTS` attributes changed, every client
    /// watching the entity what `ALL_CLIENTS` ones did (encoded once for all of them).
    pub(super) fn flush_attrs(&mut self, id: Id, attrs: &mut Attrs, schema: &AttrSchema, client: Option<ClientRef>) {
        if !attrs.has_ops() {
            return;
        }
        let ops = attrs.take_ops();
        if touches_persistent(&ops, schema) {
            attrs.mark_persistent_dirty();
            self.store.mark_dirty(id);
        }
        if let Some(c) = client {
            let visible: Vec<AttrOp> = filter_ops(&ops, schema, Audience::Own).cloned().collect();
            if !visible.is_empty() {
                self.send_to_client(id, c, &ServerMsg::AttrOps { id, ops: visible });
            }
        }
        let watchers: Vec<(Id, ClientRef)> =
            self.spaces.watchers(id).into_iter().filter_map(|w| self.clients.get(&w).map(|&c| (w, c))).collect();
        if watchers.is_empty() {
            return;
        }
        let visible: Vec<AttrOp> = filter_ops(&ops, schema, Audience::Others).cloned().collect();
        if !visible.is_empty() {
            let mut payload = Vec::new();
            ServerMsg::AttrOps { id, ops: visible }.encode(&mut payload);
            self.send_to_clients(&watchers, payload);
        }
    }
}
