//! Players whose client went away (its connection dropped, or its gate died) and may come
//! back: the entity stays bound to the client for `client_resume_s`, keeps the server calls
//! sent to it (bounded), and a `ResumeClient` carrying the client's last token binds it to the
//! client's new connection, with its view sent again. After the window it gets
//! `on_client_disconnected`, as without resume.
//!
//! LIFECYCLE of a binding: `Attached` --(connection or gate gone)--> `Away { until }` --
//! (`ResumeClient` with the binding's client id and token)--> `Attached` to the new
//! connection (its own token from then on: a token resumes once) | (`until` passes) -->
//! unbound, `on_client_disconnected`. A resume is accepted while still `Attached` too (the old
//! connection is half-open): the old connection is kicked first.
//!
//! While away, what would reach the client is dropped except server `Call`s, which are kept in
//! order up to [`MAX_KEPT`] messages and [`MAX_KEPT_BYTES`]; the rest of those are counted
//! (`Resumed.dropped`). State (entities, attributes, positions) is not kept: the view sent on
//! resume replaces it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use log::{debug, info};
use oxworld_net::Id;
use oxworld_net::client_proto::{ErrorCode, ServerMsg};
use oxworld_net::msg::{ResumeClient, ResumeRefused, SetFilterProp};
use rustc_hash::FxHashMap;

use super::{ClientRef, World, WorldCore};

/// Server calls kept per away client.
pub(crate) const MAX_KEPT: usize = 256;
/// Bytes of server calls kept per away client.
pub(crate) const MAX_KEPT_BYTES: usize = 256 << 10;

/// One client that went away.
#[derive(Debug, Default)]
pub(super) struct Away {
    until: Option<Instant>,
    kept: VecDeque<Vec<u8>>,
    kept_bytes: usize,
    dropped: u32,
}

/// The away clients of a world, by client id (the binding moves between entities with
/// `give_client_to`, and so does this).
#[derive(Debug, Default)]
pub(super) struct Resume {
    /// `client_resume_s` (zero: no waiting).
    window: Duration,
    away: FxHashMap<Id, Away>,
    /// Each bound client's filter properties, as the gate holds them: a gate that resumes the
    /// client gets them again (they travel with the entity too).
    props: FxHashMap<Id, std::collections::BTreeMap<String, String>>,
}

impl WorldCore {
    /// Records filter property `key` of `client` (empty `value`: removed).
    pub(super) fn record_prop(&mut self, client: Id, key: &str, value: &str) {
        let props = self.resume.props.entry(client).or_default();
        if value.is_empty() {
            props.remove(key);
        } else {
            props.insert(key.to_owned(), value.to_owned());
        }
        if props.is_empty() {
            self.resume.props.remove(&client);
        }
    }

    /// `client` is no longer bound here: its properties go (a gate forgets them too).
    pub(super) fn forget_client(&mut self, client: Id) {
        self.resume.props.remove(&client);
        self.resume.away.remove(&client);
    }

    /// `client`'s filter properties (for its entity's image).
    pub(super) fn props_of(&self, client: Id) -> Vec<(String, String)> {
        self.resume
            .props
            .get(&client)
            .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// An entity arrived bound to `client` with these filter properties.
    pub(super) fn props_from_image(&mut self, client: Id, props: Vec<(String, String)>) {
        if !props.is_empty() {
            self.resume.props.insert(client, props.into_iter().collect());
        }
    }

    /// True when no client is away (the common case: sends skip the lookups).
    pub(super) fn resume_is_empty(&self) -> bool {
        self.resume.away.is_empty()
    }

    /// True if `c` is away: then a server call in `payload` is kept for it (or counted as
    /// dropped) and anything else dropped.
    pub(super) fn away_keeps(&mut self, c: &ClientRef, payload: &[u8]) -> bool {
        let Some(a) = self.resume.away.get_mut(&c.client) else { return false };
        if ServerMsg::is_call(payload) {
            if a.kept.len() < MAX_KEPT && a.kept_bytes + payload.len() <= MAX_KEPT_BYTES {
                a.kept_bytes += payload.len();
                a.kept.push_back(payload.to_vec());
            } else {
                a.dropped = a.dropped.saturating_add(1);
            }
        }
        true
    }

    /// Time left for away client `client` and what it lost so far (for its entity's image).
    pub(super) fn away_image(&self, client: Id) -> Option<(u64, u32)> {
        let a = self.resume.away.get(&client)?;
        let left = a.until.map(|u| u.saturating_duration_since(self.now)).unwrap_or_default();
        let dropped = a.dropped.saturating_add(u32::try_from(a.kept.len()).unwrap_or(u32::MAX));
        Some((u64::try_from(left.as_millis()).unwrap_or(u64::MAX), dropped))
    }

    /// An entity arrived (migration, restore) bound to a client that is away.
    pub(super) fn away_from_image(&mut self, client: Id, (left_ms, dropped): (u64, u32)) {
        let until = Some(self.now + Duration::from_millis(left_ms));
        self.resume.away.insert(client, Away { until, dropped, ..Default::default() });
    }
}

impl World {
    /// How long a player whose client went away waits for it to resume (`client_resume_s`;
    /// zero, the default of a bare world, unbinds it at once).
    pub fn set_client_resume(&mut self, window: Duration) {
        self.core.resume.window = window;
    }

    /// Clients away now (for tests and metrics).
    pub fn clients_away(&self) -> usize {
        self.core.resume.away.len()
    }

    /// `owner`'s gate says its client `client` left (closed its connection: unbound at once)
    /// or was lost (`resumable`: it may resume).
    pub(super) fn client_disconnected(&mut self, owner: Id, client: Id, resumable: bool) {
        if self.entities.get(&owner).and_then(|s| s.client).is_some_and(|c| c.client == client) {
            if resumable {
                self.client_left(owner);
            } else {
                self.detach_client(owner);
            }
        }
    }

    /// Gate `gate` is gone with every client it held.
    pub(super) fn gate_down(&mut self, gate: u16) {
        self.core.online_gates.remove(&gate);
        let ids: Vec<Id> =
            self.entities.iter().filter(|(_, s)| s.client.is_some_and(|c| c.gate == gate)).map(|(id, _)| *id).collect();
        for id in ids {
            self.client_left(id);
        }
    }

    /// The connection of `entity`'s client is gone (its gate said so, or the gate died).
    pub(super) fn client_left(&mut self, entity: Id) {
        let window = self.core.resume.window;
        let Some(c) = self.entities.get(&entity).and_then(|s| s.client) else { return };
        if window.is_zero() || c.token.is_nil() {
            return self.detach_client(entity);
        }
        let until = Some(self.core.now + window);
        let a = self.core.resume.away.entry(c.client).or_default();
        a.until = until;
        debug!("game{}: client {} of {entity} is away; it may resume within {window:?}", self.core.game_id, c.client);
    }

    /// Unbinds the clients whose window passed (`on_client_disconnected`).
    pub(super) fn expire_away(&mut self, now: Instant) {
        let gone: Vec<Id> =
            self.core.resume.away.iter().filter(|(_, a)| a.until.is_some_and(|u| now >= u)).map(|(c, _)| *c).collect();
        for client in gone {
            self.core.resume.away.remove(&client);
            let owner = self.core.clients.iter().find(|(_, c)| c.client == client).map(|(e, _)| *e);
            if let Some(entity) = owner {
                debug!("game{}: client {client} of {entity} did not come back in time", self.core.game_id);
                self.detach_client(entity);
            }
        }
    }

    /// When the next away client's window passes.
    pub(super) fn away_deadline(&self) -> Option<Instant> {
        self.core.resume.away.values().filter_map(|a| a.until).min()
    }

    /// A client asks for its player back from a new connection.
    pub(super) fn resume_client(&mut self, m: ResumeClient) {
        let ResumeClient { entity, gate, client, old_client, token, new_token } = m;
        let bound = self.entities.get(&entity).and_then(|s| s.client);
        let refuse = |w: &mut World, reason: &str| {
            info!("game{}: resume of {entity} by client {client} of gate{gate} refused: {reason}", w.core.game_id);
            w.core.send(entity, ResumeRefused { gate, client, entity, reason: reason.to_owned() });
        };
        let Some(old) = bound else {
            let why = if self.entities.contains_key(&entity) { "its client is gone" } else { "no such entity" };
            return refuse(self, why);
        };
        if old.client != old_client || old.token.is_nil() || old.token != token || new_token.is_nil() {
            return refuse(self, "not that client's last session");
        }
        let away = self.core.resume.away.remove(&old.client);
        if away.is_none() {
            // Its old connection still looks alive to its gate: that one goes.
            let kick = ServerMsg::error(ErrorCode::Kicked, entity, 0, "this session resumed on another connection");
            self.core.send_to_client(entity, old, &kick);
        }
        let new = ClientRef { gate, client, token: new_token };
        if let Some(s) = self.entities.get_mut(&entity) {
            s.client = Some(new);
        }
        self.core.clients.insert(entity, new);
        let away = away.unwrap_or_default();
        info!(
            "game{}: client of {entity} resumed on gate{gate} ({} kept messages, {} dropped)",
            self.core.game_id,
            away.kept.len(),
            away.dropped
        );
        self.core.send_to_client(entity, new, &ServerMsg::Resumed { player: entity, dropped: away.dropped });
        // Its filter properties, as its old gate had them, to its new one.
        if let Some(props) = self.core.resume.props.remove(&old.client) {
            for (key, value) in &props {
                let m = SetFilterProp { gate, client, key: key.clone(), value: value.clone() };
                self.core.send(entity, m);
            }
            self.core.resume.props.insert(client, props);
        }
        self.send_view(entity, new);
        for payload in away.kept {
            self.core.send_payload_to_client(entity, new, payload);
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use oxworld_net::Value;
    use oxworld_net::msg::{ClientDisconnected, CreateBoot, FromGame, RealMigrate};

    use super::*;
    use crate::world::tests::{BOOT, CLIENT, GATE, client_call, world};

    const TOKEN: Id = Id([0x70; 16]);
    const NEW: Id = Id([0xc2; 16]);
    const NEW_TOKEN: Id = Id([0x71; 16]);
    const OTHER: Id = Id([0xc3; 16]);

    /// What the world sent: client messages as (gate, client, message), and the rest.
    fn sent(w: &mut World) -> (Vec<(u16, Id, ServerMsg)>, Vec<FromGame>) {
        let (mut to_clients, mut rest) = (Vec::new(), Vec::new());
        for (_, m) in w.drain_output() {
            match m {
                FromGame::ToClients(tc) => {
                    let msg = ServerMsg::decode(&tc.payload).expect("valid client msg");
                    to_clients.extend(tc.clients.iter().map(|c| (tc.gate, *c, msg.clone())));
                }
                other => rest.push(other),
            }
        }
        (to_clients, rest)
    }

    /// A world that waits 30 s for clients, with the boot entity bound to `CLIENT` by `TOKEN`.
    fn logged_in() -> (World, Instant) {
        let mut w = world();
        w.set_client_resume(Duration::from_secs(30));
        let t0 = Instant::now();
        w.handle(t0, CreateBoot { boot: BOOT, gate: GATE, client: CLIENT, token: TOKEN });
        (w, t0)
    }

    fn resume(w: &mut World, now: Instant, old_client: Id, token: Id) {
        let m = ResumeClient { entity: BOOT, gate: 2, client: NEW, old_client, token, new_token: NEW_TOKEN };
        w.handle(now, m);
    }

    fn refused(rest: &[FromGame]) -> bool {
        rest.iter()
            .any(|m| matches!(m, FromGame::ResumeRefused(r) if r.gate == 2 && r.client == NEW && r.entity == BOOT))
    }

    /// A player whose connection dropped waits; the calls sent to it meanwhile are kept; a
    /// resume with another token is refused; with its token it gets `Resumed`, its view and
    /// the kept calls on the new connection; the token does not resume twice; gone again past
    /// the window, it gets `on_client_disconnected` (the test's boot destroys itself then).
    #[test]
    fn a_client_that_went_away_resumes_with_its_view_and_the_calls_kept_meanwhile() {
        let (mut w, t0) = logged_in();
        sent(&mut w);
        // A filter property its gate holds (as `set_client_filter_prop` records it).
        w.core.record_prop(CLIENT, "prof", "3");
        w.handle(t0, ClientDisconnected { owner: BOOT, gate: GATE, client: CLIENT, resumable: true });
        assert!(w.has_entity(BOOT), "not let go yet");
        assert_eq!(w.clients_away(), 1);
        client_call(&mut w, OTHER, BOOT, "echo", vec![Value::Int(7)]);
        let (to_clients, _) = sent(&mut w);
        assert!(to_clients.is_empty(), "nothing goes to a client that is away: {to_clients:?}");
        let t1 = t0 + Duration::from_secs(10);
        resume(&mut w, t1, CLIENT, Id([9; 16]));
        assert!(refused(&sent(&mut w).1), "another token is refused");
        resume(&mut w, t1, OTHER, TOKEN);
        assert!(refused(&sent(&mut w).1), "another client's id is refused");
        resume(&mut w, t1, CLIENT, TOKEN);
        let (to_clients, rest) = sent(&mut w);
        assert!(!refused(&rest));
        assert!(
            rest.iter().any(|m| matches!(m, FromGame::SetFilterProp(p)
                if (p.gate, p.client, p.key.as_str(), p.value.as_str()) == (2, NEW, "prof", "3"))),
            "its filter properties go to its new gate: {rest:?}"
        );
        assert!(to_clients.iter().all(|(g, c, _)| (*g, *c) == (2, NEW)), "all to the new connection: {to_clients:?}");
        let msgs: Vec<&ServerMsg> = to_clients.iter().map(|(_, _, m)| m).collect();
        assert!(matches!(msgs[0], ServerMsg::Resumed { player, dropped: 0 } if *player == BOOT), "{msgs:?}");
        assert!(matches!(msgs[1], ServerMsg::CreateEntity { is_player: true, id, .. } if *id == BOOT));
        assert!(
            matches!(msgs[2], ServerMsg::Call { method, args, .. } if method == "echo_reply" && args == &[Value::Int(7)])
        );
        assert_eq!(msgs.len(), 3);
        assert_eq!(w.clients_away(), 0);
        // Its own methods answer the new connection.
        client_call(&mut w, NEW, BOOT, "mine", vec![Value::Int(3)]);
        let (to_clients, _) = sent(&mut w);
        assert!(
            matches!(&to_clients[..], [(2, c, ServerMsg::Call { method, .. })] if *c == NEW && method == "mine_reply")
        );
        // The old token does not resume again.
        resume(&mut w, t1, CLIENT, TOKEN);
        assert!(refused(&sent(&mut w).1), "a token resumes once");
        // Away again, and the window passes.
        let t2 = t1 + Duration::from_secs(1);
        w.handle(t2, ClientDisconnected { owner: BOOT, gate: 2, client: NEW, resumable: true });
        w.tick(t2 + Duration::from_secs(29));
        assert!(w.has_entity(BOOT));
        assert_eq!(w.next_deadline().map(|d| d <= t2 + Duration::from_secs(30)), Some(true));
        w.tick(t2 + Duration::from_secs(30));
        assert!(!w.has_entity(BOOT), "let go after the window: on_client_disconnected ran");
        assert_eq!(w.clients_away(), 0);
    }

    /// Calls kept for an away client are bounded; the rest are counted in `Resumed.dropped`;
    /// the away state travels with a migrating entity.
    #[test]
    fn kept_calls_are_bounded_and_the_away_state_travels_with_the_entity() {
        let (mut w, t0) = logged_in();
        w.handle(t0, ClientDisconnected { owner: BOOT, gate: GATE, client: CLIENT, resumable: true });
        for i in 0..(MAX_KEPT + 44) {
            client_call(&mut w, OTHER, BOOT, "echo", vec![Value::Int(i as i64)]);
        }
        sent(&mut w);
        let image = w.image_of(BOOT).expect("an image");
        let (left, dropped) = image.away.expect("away");
        assert!((29_000..=30_000).contains(&left), "time left: {left}");
        assert_eq!(dropped, (MAX_KEPT + 44) as u32, "every call it will not get");
        // On another game the binding is away too, with what it lost counted.
        let mut w2 = world();
        w2.handle(t0, RealMigrate { entity: BOOT, game: 2, data: image.encode(), delivered: Vec::new() });
        assert!(w2.has_entity(BOOT));
        assert_eq!(w2.clients_away(), 1);
        resume(&mut w2, t0, CLIENT, TOKEN);
        let (to_clients, _) = sent(&mut w2);
        assert!(matches!(to_clients[0].2, ServerMsg::Resumed { dropped, .. } if dropped == (MAX_KEPT + 44) as u32));
        // Here, the bound.
        resume(&mut w, t0, CLIENT, TOKEN);
        let (to_clients, _) = sent(&mut w);
        let calls = to_clients.iter().filter(|(_, _, m)| matches!(m, ServerMsg::Call { .. })).count();
        assert_eq!(calls, MAX_KEPT);
        assert!(matches!(to_clients[0].2, ServerMsg::Resumed { dropped: 44, .. }));
    }
}
