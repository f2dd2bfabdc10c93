//! The dispatcher: routes every message about one entity through one place, keeps entity ->
//! game, places boot entities, and tells games who joined and left. A sans-IO [`App`].
//!
//! LIFECYCLE of an accepted connection: `Pending` (only `Hello` is accepted; anything else, a
//! wrong secret, version or id is answered with `Refused` and closed) -> `Game(id)` or
//! `Gate(id)` until it closes. A second connection with the id of a live one replaces it.
//!
//! LIFECYCLE of a game's traffic across a hot swap: `Live` -> (`FreezeGame` from the game)
//! `Held` — everything addressed to the game (calls, creates, loads, migrations into it) is
//! queued in arrival order, its link closing is not a game-down, it stays a placement
//! candidate for nothing and a service owner for everything -> (a new connection of the same
//! game) `Live` again: `HelloAck`, `Thawed`, then the held messages in order. If the hold
//! outlives `freeze_hold_timeout_s` or grows past `freeze_hold_max_bytes`, every held call is
//! answered with an error (clients get `Unavailable`, entities get `CallFailed`), the game is
//! declared down, and the count is reported in `Thawed` when it does come back.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use log::{debug, info, warn};
use oxworld_net::Id;
use oxworld_net::app::{App, ConnId, Event, Outbox, Signal};
use oxworld_net::client_proto::{ErrorCode, ServerMsg};
use oxworld_net::config::Config;
use oxworld_net::msg::{Caller, INTERNAL_PROTOCOL_VERSION, Msg, ProcKind};
use rustc_hash::FxHashMap;

use crate::status::{ProcState, Report};

/// Messages held for one migrating entity; past this they fail (with an error to clients).
pub const MAX_HELD_PER_ENTITY: usize = 100_000;

/// Client logins held while no game is connected; past this they are refused.
pub const MAX_PENDING_BOOTS: usize = 10_000;

/// Traffic held for one freezing game.
struct Hold {
    since: Instant,
    bytes: usize,
    queue: VecDeque<Msg>,
}

/// Rough size of a held message, for the memory bound.
fn held_size(m: &Msg) -> usize {
    64 + match m {
        Msg::Call { args, .. } => args.len(),
        Msg::RealMigrate { data, .. } | Msg::CreateEntity { data, .. } => data.len(),
        Msg::ToClient { payload, .. } => payload.len(),
        _ => 0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Pending,
    Game(u16),
    Gate(u16),
}

/// Counters a dispatcher keeps.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DispatcherStats {
    /// Messages forwarded.
    pub routed: u64,
    /// Messages that found no destination (each logged, client calls answered with an error).
    pub undeliverable: u64,
    /// Handshakes refused.
    pub refused: u64,
}

/// One dispatcher's routing state.
pub struct DispatcherApp {
    id: u16,
    secret: String,
    n_games: u16,
    n_gates: u16,
    banned: BTreeSet<u16>,
    conns: FxHashMap<ConnId, Peer>,
    games: BTreeMap<u16, ConnId>,
    gates: BTreeMap<u16, ConnId>,
    routes: FxHashMap<Id, u16>,
    boot_rr: usize,
    /// Service shards registered through this dispatcher: (name, shard) -> (entity, game).
    services: BTreeMap<(String, u16), (Id, u16)>,
    /// Entities being migrated: messages for them are held here, in order.
    held: FxHashMap<Id, VecDeque<Msg>>,
    /// Last load each live game reported, bumped by each placement until the next report.
    loads: BTreeMap<u16, u64>,
    pending_boots: VecDeque<(u16, Id, Id)>,
    /// Games whose traffic is held for a hot swap.
    frozen: BTreeMap<u16, Hold>,
    /// Held messages that failed per game (reported in `Thawed` when it comes back).
    failed_holds: BTreeMap<u16, u64>,
    hold_timeout: std::time::Duration,
    hold_max_bytes: usize,
    /// Time of the event being handled (for hold ages).
    now: Option<Instant>,
    stats: DispatcherStats,
    done: bool,
}

impl DispatcherApp {
    /// Dispatcher `id` of the cluster described by `cfg`.
    pub fn new(cfg: &Config, id: u16) -> Self {
        DispatcherApp {
            id,
            secret: cfg.secret.clone(),
            n_games: cfg.games.len() as u16,
            n_gates: cfg.gates.len() as u16,
            banned: cfg.games.iter().filter(|g| g.ban_boot_entity).map(|g| g.id).collect(),
            conns: FxHashMap::default(),
            games: BTreeMap::new(),
            gates: BTreeMap::new(),
            routes: FxHashMap::default(),
            boot_rr: 0,
            loads: BTreeMap::new(),
            held: FxHashMap::default(),
            services: BTreeMap::new(),
            pending_boots: VecDeque::new(),
            frozen: BTreeMap::new(),
            failed_holds: BTreeMap::new(),
            hold_timeout: cfg.freeze_hold_timeout,
            hold_max_bytes: cfg.freeze_hold_max_bytes,
            now: None,
            stats: DispatcherStats::default(),
            done: false,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &DispatcherStats {
        &self.stats
    }

    /// The game entity `id` is routed to, if known.
    pub fn route_of(&self, id: Id) -> Option<u16> {
        self.routes.get(&id).copied()
    }

    /// True if `game` is connected or its traffic is held for a hot swap.
    fn is_live(&self, game: u16) -> bool {
        self.games.contains_key(&game) || self.frozen.contains_key(&game)
    }

    /// Whether game `game` is frozen (its traffic held).
    pub fn is_frozen(&self, game: u16) -> bool {
        self.frozen.contains_key(&game)
    }

    /// Sends `msg` to game `game`, or holds it if the game is frozen. False if the game is
    /// neither connected nor frozen.
    fn send_game(&mut self, game: u16, msg: Msg, out: &mut Outbox) -> Result<(), Msg> {
        if let Some(h) = self.frozen.get_mut(&game) {
            h.bytes += held_size(&msg);
            h.queue.push_back(msg);
            if h.bytes > self.hold_max_bytes {
                warn!("dispatcher{}: traffic held for frozen game{game} over {} bytes", self.id, self.hold_max_bytes);
                self.expire_hold(game, out);
            }
            return Ok(());
        }
        match self.games.get(&game) {
            Some(&c) => {
                Self::send(out, c, &msg);
                self.stats.routed += 1;
                Ok(())
            }
            None => Err(msg),
        }
    }

    /// Sends `msg` to every game, live or frozen (a frozen game gets it after its restore),
    /// except `skip`.
    fn broadcast_games(&mut self, msg: &Msg, skip: Option<u16>, out: &mut Outbox) {
        let mut all: Vec<u16> = self.games.keys().chain(self.frozen.keys()).copied().collect();
        all.sort_unstable();
        all.dedup();
        for g in all {
            if Some(g) != skip {
                let _ = self.send_game(g, msg.clone(), out);
            }
        }
    }

    /// Gives up holding `game`'s traffic: every held message fails (calls are answered with
    /// an error), then the game is down.
    fn expire_hold(&mut self, game: u16, out: &mut Outbox) {
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
        let reason = format!("game{game} did not come back from its hot swap in time");
        for m in h.queue {
            self.fail(m, &reason, out);
        }
    }

    /// Answers a message that will never be delivered: client calls get `Unavailable`,
    /// entity calls `CallFailed`; everything else is logged. Counted.
    fn fail(&mut self, msg: Msg, reason: &str, out: &mut Outbox) {
        self.stats.undeliverable += 1;
        match msg {
            Msg::Call { target, method, caller: Caller::Client { gate, client }, .. } => {
                let err = ServerMsg::error(ErrorCode::Unavailable, target, method, reason);
                self.send_to_gate(gate, client, &err, out);
            }
            Msg::Call { target, method, caller: Caller::Server(from), .. } if !from.is_nil() => {
                let m = Msg::CallFailed { to: from, target, method, reason: reason.to_owned() };
                self.route(from, m, out);
            }
            other => warn!("dispatcher{}: {} dropped: {reason}", self.id, other.name()),
        }
    }

    fn send(out: &mut Outbox, conn: ConnId, msg: &Msg) {
        out.send_with(conn, |b| msg.encode(b));
    }

    fn refuse(&mut self, conn: ConnId, reason: String, out: &mut Outbox) {
        self.stats.refused += 1;
        warn!("dispatcher{}: refusing {conn}: {reason}", self.id);
        Self::send(out, conn, &Msg::Refused { reason: reason.clone() });
        out.close(conn, reason);
        self.conns.remove(&conn);
    }

    fn on_hello(&mut self, conn: ConnId, msg: Msg, out: &mut Outbox) {
        let Msg::Hello { version, kind, id, secret, entities } = msg else {
            self.refuse(conn, format!("expected Hello first, got {}", msg.name()), out);
            return;
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
                let hold = self.frozen.remove(&id);
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
                for e in entities {
                    if let Some(prev) = self.routes.insert(e, id)
                        && prev != id
                    {
                        warn!("dispatcher{}: entity {e} re-announced by game{id}, was on game{prev}", self.id);
                    }
                }
                let games: Vec<u16> = self.games.keys().chain(self.frozen.keys()).copied().collect();
                Self::send(out, conn, &Msg::HelloAck { dispatcher: self.id, games });
                // Always sent (0, 0 for a game that was not frozen), so a restored game knows
                // when every dispatcher has released its traffic.
                let failed = self.failed_holds.remove(&id).unwrap_or(0);
                let queue = hold.map(|h| h.queue).unwrap_or_default();
                let released = queue.len() as u64;
                if released > 0 || failed > 0 {
                    info!(
                        "dispatcher{}: game{id} is back; releasing {released} held messages ({failed} failed)",
                        self.id
                    );
                }
                Self::send(out, conn, &Msg::Thawed { dispatcher: self.id, released, failed });
                for m in queue {
                    Self::send(out, conn, &m);
                    self.stats.routed += 1;
                }
                self.broadcast_games(&Msg::GameUp { game: id }, Some(id), out);
                info!("dispatcher{}: game{id} up ({} games)", self.id, self.games.len());
                for ((name, shard), (entity, game)) in &self.services {
                    let m = Msg::ServiceUpdate { name: name.clone(), shard: *shard, entity: *entity, game: *game };
                    Self::send(out, conn, &m);
                }
                if !self.banned.contains(&id) {
                    while let Some((gate, client, boot)) = self.pending_boots.pop_front() {
                        self.place_boot(gate, client, boot, out);
                    }
                }
            }
            ProcKind::Gate if (1..=self.n_gates).contains(&id) => {
                if let Some(old) = self.gates.insert(id, conn) {
                    warn!("dispatcher{}: gate{id} connected again; dropping its old link", self.id);
                    out.close(old, "replaced by a new connection of the same gate");
                    self.conns.remove(&old);
                }
                self.conns.insert(conn, Peer::Gate(id));
                Self::send(out, conn, &Msg::HelloAck { dispatcher: self.id, games: Vec::new() });
                info!("dispatcher{}: gate{id} up", self.id);
            }
            _ => self.refuse(conn, format!("{kind:?} id {id} is not in the config"), out),
        }
    }

    /// The live game with the least load (ties: lowest id); counts the placement.
    fn least_loaded(&mut self) -> Option<u16> {
        let g = self
            .games
            .keys()
            .copied()
            .filter(|g| !self.frozen.contains_key(g))
            .min_by_key(|g| (self.loads.get(g).copied().unwrap_or(0), *g))?;
        *self.loads.entry(g).or_insert(0) += 1;
        Some(g)
    }

    fn game_down(&mut self, game: u16, out: &mut Outbox) {
        self.games.remove(&game);
        self.loads.remove(&game);
        // Entities of that game caught mid-migration: their held messages fail now.
        let stuck: Vec<Id> = self.held.keys().filter(|e| self.routes.get(e) == Some(&game)).copied().collect();
        let before = self.routes.len();
        self.routes.retain(|_, g| *g != game);
        info!("dispatcher{}: game{game} down; {} routes dropped", self.id, before - self.routes.len());
        for e in stuck {
            for m in self.held.remove(&e).unwrap_or_default() {
                self.undeliverable(e, m, out);
            }
        }
        // Services it provided are gone; games re-create them.
        let lost: Vec<(String, u16)> =
            self.services.iter().filter(|(_, (_, g))| *g == game).map(|(k, _)| k.clone()).collect();
        for (name, shard) in lost {
            self.services.remove(&(name.clone(), shard));
            let update = Msg::ServiceUpdate { name, shard, entity: Id::NIL, game: 0 };
            self.broadcast_games(&update, None, out);
        }
        self.broadcast_games(&Msg::GameDown { game }, None, out);
    }

    fn place_boot(&mut self, gate: u16, client: Id, boot: Id, out: &mut Outbox) {
        let candidates: Vec<(u16, ConnId)> = self
            .games
            .iter()
            .filter(|(g, _)| !self.banned.contains(g) && !self.frozen.contains_key(g))
            .map(|(g, c)| (*g, *c))
            .collect();
        if candidates.is_empty() {
            if self.pending_boots.len() >= MAX_PENDING_BOOTS {
                let err = ServerMsg::error(ErrorCode::Unavailable, boot, 0, "no game is available");
                self.send_to_gate(gate, client, &err, out);
                return;
            }
            self.pending_boots.push_back((gate, client, boot));
            return;
        }
        let (g, c) = candidates[self.boot_rr % candidates.len()];
        self.boot_rr = self.boot_rr.wrapping_add(1);
        self.routes.insert(boot, g);
        Self::send(out, c, &Msg::CreateBoot { gate, client, boot });
        self.stats.routed += 1;
    }

    fn send_to_gate(&mut self, gate: u16, client: Id, msg: &ServerMsg, out: &mut Outbox) {
        let Some(&c) = self.gates.get(&gate) else {
            self.stats.undeliverable += 1;
            debug!("dispatcher{}: gate{gate} not connected; client message dropped", self.id);
            return;
        };
        let mut payload = Vec::new();
        msg.encode(&mut payload);
        Self::send(out, c, &Msg::ToClient { gate, client, payload });
    }

    /// Forwards an entity-addressed message to the entity's game.
    fn route(&mut self, target: Id, msg: Msg, out: &mut Outbox) {
        if let Some(q) = self.held.get_mut(&target) {
            if q.len() < MAX_HELD_PER_ENTITY {
                q.push_back(msg);
                return;
            }
            warn!("dispatcher{}: more than {MAX_HELD_PER_ENTITY} messages held for migrating {target}", self.id);
            self.undeliverable(target, msg, out);
            return;
        }
        let msg = match self.routes.get(&target).copied() {
            Some(g) => match self.send_game(g, msg, out) {
                Ok(()) => return,
                Err(m) => m,
            },
            None => msg,
        };
        self.undeliverable(target, msg, out);
    }

    /// A message that cannot reach `target`: clients get an error, the rest is logged; all
    /// counted.
    fn undeliverable(&mut self, target: Id, msg: Msg, out: &mut Outbox) {
        self.stats.undeliverable += 1;
        match msg {
            Msg::Call { method, caller: Caller::Client { gate, client }, .. } => {
                let err = ServerMsg::error(ErrorCode::UnknownEntity, target, method, format!("no entity {target}"));
                self.send_to_gate(gate, client, &err, out);
            }
            Msg::Call { method, caller: Caller::Server(from), .. } => {
                warn!("dispatcher{}: call {method:#010x} from {from} to unknown entity {target} dropped", self.id);
            }
            Msg::LoadEntity { type_name, .. } => {
                warn!("dispatcher{}: load of {type_name} {target}: its game is gone", self.id);
            }
            other => debug!("dispatcher{}: {} for unknown entity {target} dropped", self.id, other.name()),
        }
    }

    fn on_game_msg(&mut self, game: u16, msg: Msg, out: &mut Outbox) {
        match msg {
            Msg::EntityCreated { id } => {
                self.routes.insert(id, game);
            }
            Msg::EntityDestroyed { id } => {
                if self.routes.get(&id) == Some(&game) {
                    self.routes.remove(&id);
                }
            }
            // Answers go through `send_game`: a game that froze after asking gets them after
            // its restore instead of losing them with its old process.
            Msg::QuerySpace { space, entity } => {
                let on = self.routes.get(&space).copied().filter(|g| self.is_live(*g)).unwrap_or(0);
                let _ = self.send_game(game, Msg::SpaceGame { space, entity, game: on }, out);
            }
            Msg::MigrateRequest { entity } => {
                self.held.entry(entity).or_default();
                let _ = self.send_game(game, Msg::MigrateAck { entity }, out);
            }
            Msg::RealMigrate { entity, game: target, data } => {
                let held = self.held.remove(&entity).unwrap_or_default();
                self.routes.insert(entity, target);
                if self.send_game(target, Msg::RealMigrate { entity, game: target, data }, out).is_err() {
                    self.routes.remove(&entity);
                    warn!("dispatcher{}: {entity} migrating to offline game{target}: lost", self.id);
                }
                for m in held {
                    self.route(entity, m, out);
                }
            }
            Msg::CancelMigrate { entity } => {
                for m in self.held.remove(&entity).unwrap_or_default() {
                    self.route(entity, m, out);
                }
            }
            Msg::ServiceRegister { name, shard, entity } => {
                let key = (name, shard);
                let winner = match self.services.get(&key) {
                    Some(&(e, g)) if self.is_live(g) && e != entity => (e, g),
                    _ => {
                        self.services.insert(key.clone(), (entity, game));
                        info!("dispatcher{}: service {}#{} is {entity} on game{game}", self.id, key.0, key.1);
                        (entity, game)
                    }
                };
                let update = Msg::ServiceUpdate { name: key.0, shard: key.1, entity: winner.0, game: winner.1 };
                self.broadcast_games(&update, None, out);
            }
            Msg::SetFilterProp { gate, .. } => match self.gates.get(&gate) {
                Some(&c) => Self::send(out, c, &msg),
                None => debug!("dispatcher{}: gate{gate} not connected; filter prop dropped", self.id),
            },
            Msg::FilteredCall { .. } => {
                for &c in self.gates.values() {
                    Self::send(out, c, &msg);
                }
            }
            Msg::GameLoad { load } => {
                self.loads.insert(game, u64::from(load));
            }
            Msg::CreateEntity { game: 0, id, type_name, data } => match self.least_loaded() {
                Some(target) => {
                    let msg = Msg::CreateEntity { game: target, id, type_name, data };
                    self.on_game_msg(game, msg, out);
                }
                None => {
                    self.stats.undeliverable += 1;
                    warn!("dispatcher{}: create {type_name} {id} anywhere: no live game", self.id);
                }
            },
            Msg::CreateEntity { game: target, id, .. } => {
                self.routes.insert(id, target);
                if let Err(Msg::CreateEntity { type_name, .. }) = self.send_game(target, msg, out) {
                    self.routes.remove(&id);
                    self.stats.undeliverable += 1;
                    warn!("dispatcher{}: create {type_name} {id} on offline game{target} dropped", self.id);
                }
            }
            Msg::LoadEntity { game: want, id, type_name } => {
                if let Some(g) = self.routes.get(&id).copied().filter(|g| self.is_live(*g)) {
                    debug!("dispatcher{}: {type_name} {id} already lives on game{g}; load ignored", self.id);
                    return;
                }
                let target = if want == 0 { self.least_loaded() } else { Some(want).filter(|g| self.is_live(*g)) };
                let Some(target) = target else {
                    self.stats.undeliverable += 1;
                    warn!("dispatcher{}: load {type_name} {id}: no live game to load it on", self.id);
                    return;
                };
                // The route exists from now on: calls wait on the game while it loads, and
                // a second load finds it.
                self.routes.insert(id, target);
                let m = Msg::LoadEntity { game: target, id, type_name };
                if self.send_game(target, m, out).is_err() {
                    self.routes.remove(&id);
                }
            }
            Msg::FreezeGame => {
                info!("dispatcher{}: game{game} is freezing; holding its traffic", self.id);
                let Some(since) = self.now else { return };
                self.frozen.insert(game, Hold { since, bytes: 0, queue: VecDeque::new() });
                if let Some(&c) = self.games.get(&game) {
                    Self::send(out, c, &Msg::FreezeAck { dispatcher: self.id });
                }
            }
            Msg::Call { target, .. } => self.route(target, msg, out),
            Msg::CallFailed { to, .. } => self.route(to, msg, out),
            Msg::ToClient { gate, .. } => match self.gates.get(&gate) {
                Some(&c) => {
                    Self::send(out, c, &msg);
                    self.stats.routed += 1;
                }
                None => {
                    self.stats.undeliverable += 1;
                    debug!("dispatcher{}: gate{gate} not connected; client message dropped", self.id);
                }
            },
            other => warn!("dispatcher{}: unexpected {} from game{game}", self.id, other.name()),
        }
    }

    fn on_gate_msg(&mut self, gate: u16, msg: Msg, out: &mut Outbox) {
        match msg {
            Msg::ClientConnected { client, boot, .. } => self.place_boot(gate, client, boot, out),
            Msg::Call { target, .. } => self.route(target, msg, out),
            Msg::ClientDisconnected { owner, .. } => self.route(owner, msg, out),
            Msg::CallFailed { to, .. } => self.route(to, msg, out),
            Msg::ClientMove { id, .. } => self.route(id, msg, out),
            other => warn!("dispatcher{}: unexpected {} from gate{gate}", self.id, other.name()),
        }
    }
}

impl App for DispatcherApp {
    fn handle(&mut self, now: Instant, event: Event, out: &mut Outbox) {
        self.now = Some(now);
        match event {
            Event::Accepted { conn, .. } => {
                self.conns.insert(conn, Peer::Pending);
            }
            Event::Frame { conn, data } => {
                let Some(&peer) = self.conns.get(&conn) else {
                    return;
                };
                let msg = match Msg::decode(&data) {
                    Ok(m) => m,
                    Err(e) => {
                        warn!("dispatcher{}: {conn} ({peer:?}) sent a malformed message: {e}", self.id);
                        out.close(conn, "malformed message");
                        return;
                    }
                };
                match peer {
                    Peer::Pending => self.on_hello(conn, msg, out),
                    Peer::Game(g) => self.on_game_msg(g, msg, out),
                    Peer::Gate(g) => self.on_gate_msg(g, msg, out),
                }
            }
            Event::Closed { conn, reason } => match self.conns.remove(&conn) {
                Some(Peer::Game(g)) if self.games.get(&g) == Some(&conn) => {
                    if self.frozen.contains_key(&g) {
                        info!("dispatcher{}: frozen game{g} exited ({reason}); holding its traffic", self.id);
                        self.games.remove(&g);
                    } else {
                        warn!("dispatcher{}: game{g} link closed: {reason}", self.id);
                        self.game_down(g, out);
                    }
                }
                Some(Peer::Gate(g)) if self.gates.get(&g) == Some(&conn) => {
                    warn!("dispatcher{}: gate{g} link closed: {reason}", self.id);
                    self.gates.remove(&g);
                    self.broadcast_games(&Msg::GateDown { gate: g }, None, out);
                }
                _ => {}
            },
            Event::Connected { .. } => {}
            Event::Signal(Signal::Terminate) => {
                info!("dispatcher{}: stopping", self.id);
                self.done = true;
            }
            Event::Signal(Signal::Hangup) => info!("dispatcher{}: SIGHUP ignored", self.id),
            Event::Wake => {}
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox) {
        self.now = Some(now);
        let expired: Vec<u16> =
            self.frozen.iter().filter(|(_, h)| now >= h.since + self.hold_timeout).map(|(g, _)| *g).collect();
        for g in expired {
            self.expire_hold(g, out);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.frozen.values().map(|h| h.since + self.hold_timeout).min()
    }

    fn done(&self) -> bool {
        self.done
    }
}

impl Report for DispatcherApp {
    fn state(&self) -> ProcState {
        if self.done { ProcState::Stopping } else { ProcState::Ready }
    }
}

/// Compares secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use oxworld_net::app::CloseReason;

    use super::*;

    const CFG: &str = "[deployment]\ndesired_dispatchers=1\ndesired_games=2\ndesired_gates=1\nsecret=k\n";

    fn app() -> DispatcherApp {
        DispatcherApp::new(&Config::parse(Path::new("t.ini"), CFG).expect("config"), 1)
    }

    fn hello(kind: ProcKind, id: u16, secret: &str) -> Vec<u8> {
        let mut b = Vec::new();
        Msg::Hello { version: INTERNAL_PROTOCOL_VERSION, kind, id, secret: secret.into(), entities: vec![] }
            .encode(&mut b);
        b
    }

    fn enc(m: &Msg) -> Vec<u8> {
        let mut b = Vec::new();
        m.encode(&mut b);
        b
    }

    /// Feeds `data` as a frame on `conn` and returns the decoded messages sent per connection.
    fn feed(d: &mut DispatcherApp, out: &mut Outbox, conn: u64, data: Vec<u8>) -> Vec<(ConnId, Msg)> {
        d.handle(Instant::now(), Event::Frame { conn: ConnId(conn), data }, out);
        out.take_frames()
            .into_iter()
            .flat_map(|(c, fs)| fs.into_iter().map(move |f| (c, Msg::decode(&f).expect("valid msg"))))
            .collect()
    }

    fn accept(d: &mut DispatcherApp, out: &mut Outbox, conn: u64) {
        let peer = "127.0.0.1:9".parse().expect("addr");
        d.handle(Instant::now(), Event::Accepted { conn: ConnId(conn), listener: 0, peer }, out);
    }

    /// Two games (conns 1, 2) and a gate (conn 3), handshakes done.
    fn cluster() -> (DispatcherApp, Outbox) {
        cluster_with(CFG)
    }

    /// Two games (conns 1, 2) and a gate (conn 3) of a dispatcher configured by `text`.
    fn cluster_with(text: &str) -> (DispatcherApp, Outbox) {
        let mut d = DispatcherApp::new(&Config::parse(Path::new("t.ini"), text).expect("config"), 1);
        let mut out = Outbox::new();
        for c in 1..=3 {
            accept(&mut d, &mut out, c);
        }
        feed(&mut d, &mut out, 1, hello(ProcKind::Game, 1, "k"));
        feed(&mut d, &mut out, 2, hello(ProcKind::Game, 2, "k"));
        feed(&mut d, &mut out, 3, hello(ProcKind::Gate, 1, "k"));
        (d, out)
    }

    #[test]
    fn handshake_refusals() {
        let mut d = app();
        let mut out = Outbox::new();
        for c in 1..=4 {
            accept(&mut d, &mut out, c);
        }
        let got = feed(&mut d, &mut out, 1, hello(ProcKind::Game, 1, "wrong"));
        assert!(matches!(&got[..], [(_, Msg::Refused { reason })] if reason.contains("secret")));
        let got = feed(&mut d, &mut out, 2, hello(ProcKind::Game, 9, "k"));
        assert!(matches!(&got[..], [(_, Msg::Refused { .. })]));
        let got = feed(&mut d, &mut out, 3, enc(&Msg::GameUp { game: 1 }));
        assert!(matches!(&got[..], [(_, Msg::Refused { reason })] if reason.contains("expected Hello")));
        assert_eq!(out.take_closes().len(), 3);
        // Garbage closes only that connection.
        feed(&mut d, &mut out, 4, vec![0xde, 0xad]);
        assert_eq!(out.take_closes().len(), 1);
        assert_eq!(d.stats().refused, 3);
    }

    #[test]
    fn game_up_is_announced_and_boots_round_robin() {
        let mut d = app();
        let mut out = Outbox::new();
        accept(&mut d, &mut out, 1);
        accept(&mut d, &mut out, 2);
        let got = feed(&mut d, &mut out, 1, hello(ProcKind::Game, 1, "k"));
        assert_eq!(
            got,
            vec![
                (ConnId(1), Msg::HelloAck { dispatcher: 1, games: vec![1] }),
                (ConnId(1), Msg::Thawed { dispatcher: 1, released: 0, failed: 0 })
            ]
        );
        let got = feed(&mut d, &mut out, 2, hello(ProcKind::Game, 2, "k"));
        assert!(got.contains(&(ConnId(1), Msg::GameUp { game: 2 })));
        accept(&mut d, &mut out, 3);
        feed(&mut d, &mut out, 3, hello(ProcKind::Gate, 1, "k"));
        let mut placed = Vec::new();
        for i in 0..4u8 {
            let got = feed(
                &mut d,
                &mut out,
                3,
                enc(&Msg::ClientConnected { gate: 1, client: Id([i; 16]), boot: Id([i + 100; 16]) }),
            );
            placed.push(got[0].0);
        }
        assert_eq!(placed, vec![ConnId(1), ConnId(2), ConnId(1), ConnId(2)]);
    }

    #[test]
    fn boots_wait_for_a_game() {
        let mut d = app();
        let mut out = Outbox::new();
        accept(&mut d, &mut out, 3);
        feed(&mut d, &mut out, 3, hello(ProcKind::Gate, 1, "k"));
        let got =
            feed(&mut d, &mut out, 3, enc(&Msg::ClientConnected { gate: 1, client: Id([1; 16]), boot: Id([2; 16]) }));
        assert!(got.is_empty());
        accept(&mut d, &mut out, 1);
        let got = feed(&mut d, &mut out, 1, hello(ProcKind::Game, 1, "k"));
        assert!(got.iter().any(|(_, m)| matches!(m, Msg::CreateBoot { .. })), "{got:?}");
    }

    #[test]
    fn calls_follow_routes_and_unknown_targets_answer_the_client() {
        let (mut d, mut out) = cluster();
        let e = Id([5; 16]);
        feed(&mut d, &mut out, 2, enc(&Msg::EntityCreated { id: e }));
        let call =
            Msg::Call { target: e, method: 1, args: vec![], caller: Caller::Client { gate: 1, client: Id([1; 16]) } };
        let got = feed(&mut d, &mut out, 3, enc(&call));
        assert_eq!(got, vec![(ConnId(2), call.clone())]);
        feed(&mut d, &mut out, 2, enc(&Msg::EntityDestroyed { id: e }));
        let got = feed(&mut d, &mut out, 3, enc(&call));
        match &got[..] {
            [(ConnId(3), Msg::ToClient { payload, .. })] => {
                let err = ServerMsg::decode(payload).expect("error msg");
                assert!(matches!(err, ServerMsg::Error { code: 1, target, .. } if target == e));
            }
            other => panic!("expected an error to the gate, got {other:?}"),
        }
        // Entity-to-entity call to an unknown entity: counted.
        let before = d.stats().undeliverable;
        feed(
            &mut d,
            &mut out,
            1,
            enc(&Msg::Call { target: e, method: 1, args: vec![], caller: Caller::Server(Id([9; 16])) }),
        );
        assert_eq!(d.stats().undeliverable, before + 1);
    }

    #[test]
    fn game_down_purges_routes_and_notifies() {
        let (mut d, mut out) = cluster();
        let e = Id([5; 16]);
        feed(&mut d, &mut out, 2, enc(&Msg::CreateEntity { game: 2, id: e, type_name: "X".into(), data: vec![] }));
        assert_eq!(d.route_of(e), Some(2));
        d.handle(Instant::now(), Event::Closed { conn: ConnId(2), reason: CloseReason::PeerClosed }, &mut out);
        assert_eq!(d.route_of(e), None);
        let sent = out.take_frames();
        assert!(
            sent.iter().any(|(c, f)| *c == ConnId(1) && Msg::decode(&f[0]).ok() == Some(Msg::GameDown { game: 2 }))
        );
        // New boots never go to the dead game.
        for i in 0..3u8 {
            let got = feed(
                &mut d,
                &mut out,
                3,
                enc(&Msg::ClientConnected { gate: 1, client: Id([i; 16]), boot: Id([i + 50; 16]) }),
            );
            assert_eq!(got[0].0, ConnId(1));
        }
    }

    #[test]
    fn anywhere_goes_to_the_least_loaded_live_game() {
        let (mut d, mut out) = cluster();
        feed(&mut d, &mut out, 1, enc(&Msg::GameLoad { load: 10 }));
        feed(&mut d, &mut out, 2, enc(&Msg::GameLoad { load: 8 }));
        let mut placed = Vec::new();
        for i in 0..4u8 {
            let m = Msg::CreateEntity { game: 0, id: Id([i; 16]), type_name: "X".into(), data: vec![] };
            let got = feed(&mut d, &mut out, 1, enc(&m));
            placed.push(got[0].0);
        }
        // Game 2 (load 8) takes two placements until it reaches game 1's load, then they alternate.
        assert_eq!(placed, vec![ConnId(2), ConnId(2), ConnId(1), ConnId(2)]);
        d.handle(Instant::now(), Event::Closed { conn: ConnId(2), reason: CloseReason::PeerClosed }, &mut out);
        out.take_frames();
        let m = Msg::CreateEntity { game: 0, id: Id([9; 16]), type_name: "X".into(), data: vec![] };
        let got = feed(&mut d, &mut out, 1, enc(&m));
        assert_eq!(got[0].0, ConnId(1), "a dead game is never chosen");
    }

    #[test]
    fn gate_down_is_broadcast() {
        let (mut d, mut out) = cluster();
        d.handle(Instant::now(), Event::Closed { conn: ConnId(3), reason: CloseReason::PeerClosed }, &mut out);
        let n = out
            .take_frames()
            .iter()
            .filter(|(_, f)| Msg::decode(&f[0]).ok() == Some(Msg::GateDown { gate: 1 }))
            .count();
        assert_eq!(n, 2);
    }

    fn client_call(e: Id, n: u8) -> Msg {
        Msg::Call { target: e, method: 1, args: vec![n], caller: Caller::Client { gate: 1, client: Id([0xc0; 16]) } }
    }

    /// Game 2 freezes: its traffic (from the gate and from other games) is held, its link may
    /// close without the game being declared down, boots and placements skip it, and when the
    /// new binary says Hello it gets `Thawed` and then every held message in order.
    #[test]
    fn a_frozen_games_traffic_is_held_and_released_in_order() {
        let (mut d, mut out) = cluster();
        let e = Id([5; 16]);
        feed(&mut d, &mut out, 2, enc(&Msg::EntityCreated { id: e }));
        let got = feed(&mut d, &mut out, 2, enc(&Msg::FreezeGame));
        assert_eq!(got, vec![(ConnId(2), Msg::FreezeAck { dispatcher: 1 })]);
        assert!(d.is_frozen(2));
        let mut want = Vec::new();
        for n in 0..5 {
            want.push(client_call(e, n));
            assert!(feed(&mut d, &mut out, 3, enc(&client_call(e, n))).is_empty(), "held, not sent");
        }
        let from_game1 = Msg::Call { target: e, method: 2, args: vec![], caller: Caller::Server(Id([0x11; 16])) };
        assert!(feed(&mut d, &mut out, 1, enc(&from_game1)).is_empty());
        want.push(from_game1);
        // The old binary exits: no GameDown, the route stays.
        d.handle(Instant::now(), Event::Closed { conn: ConnId(2), reason: CloseReason::PeerClosed }, &mut out);
        assert!(out.take_frames().is_empty(), "nobody is told the game is down");
        assert_eq!(d.route_of(e), Some(2));
        // Meanwhile boots and anywhere-placements go to game 1 only.
        for i in 0..3u8 {
            let boot = Msg::ClientConnected { gate: 1, client: Id([i; 16]), boot: Id([i + 60; 16]) };
            assert_eq!(feed(&mut d, &mut out, 3, enc(&boot))[0].0, ConnId(1));
        }
        // The new binary connects.
        accept(&mut d, &mut out, 4);
        let got = feed(&mut d, &mut out, 4, hello(ProcKind::Game, 2, "k"));
        let to_new: Vec<Msg> = got.iter().filter(|(c, _)| *c == ConnId(4)).map(|(_, m)| m.clone()).collect();
        assert!(matches!(&to_new[0], Msg::HelloAck { games, .. } if games.contains(&1) && games.contains(&2)));
        assert_eq!(to_new[1], Msg::Thawed { dispatcher: 1, released: 6, failed: 0 });
        assert_eq!(&to_new[2..8], &want[..]);
        assert!(!d.is_frozen(2));
        // Traffic flows directly again.
        let got = feed(&mut d, &mut out, 3, enc(&client_call(e, 9)));
        assert_eq!(got, vec![(ConnId(4), client_call(e, 9))]);
    }

    /// Past the time bound, every held call is answered with an error to its sender (a client
    /// gets `Unavailable`, an entity gets `CallFailed`), the game is down, and its next Hello
    /// learns how many messages failed.
    #[test]
    fn a_hold_past_its_time_bound_answers_every_held_call_with_an_error() {
        let cfg = format!("{CFG}freeze_hold_timeout_s=2\n");
        let (mut d, mut out) = cluster_with(&cfg);
        let (e, caller) = (Id([5; 16]), Id([0x11; 16]));
        feed(&mut d, &mut out, 2, enc(&Msg::EntityCreated { id: e }));
        feed(&mut d, &mut out, 1, enc(&Msg::EntityCreated { id: caller }));
        feed(&mut d, &mut out, 2, enc(&Msg::FreezeGame));
        let t0 = Instant::now();
        feed(&mut d, &mut out, 3, enc(&client_call(e, 1)));
        feed(
            &mut d,
            &mut out,
            1,
            enc(&Msg::Call { target: e, method: 2, args: vec![], caller: Caller::Server(caller) }),
        );
        assert!(d.next_deadline().is_some_and(|t| t <= t0 + Duration::from_secs(2)));
        d.tick(t0 + Duration::from_millis(500), &mut out);
        assert!(out.take_frames().is_empty(), "still within the bound");
        d.tick(t0 + Duration::from_secs(3), &mut out);
        let sent: Vec<(ConnId, Msg)> = out
            .take_frames()
            .into_iter()
            .flat_map(|(c, fs)| fs.into_iter().map(move |f| (c, Msg::decode(&f).expect("valid msg"))))
            .collect();
        let client_err = sent.iter().find_map(|(c, m)| match m {
            Msg::ToClient { payload, .. } if *c == ConnId(3) => ServerMsg::decode(payload).ok(),
            _ => None,
        });
        assert!(
            matches!(client_err, Some(ServerMsg::Error { code, .. }) if code == ErrorCode::Unavailable as u16),
            "{sent:?}"
        );
        assert!(
            sent.iter().any(|(c, m)| *c == ConnId(1)
                && matches!(m, Msg::CallFailed { to, target, method: 2, .. } if *to == caller && *target == e)),
            "{sent:?}"
        );
        assert!(sent.contains(&(ConnId(1), Msg::GameDown { game: 2 })), "{sent:?}");
        assert_eq!(d.route_of(e), None);
        assert!(!d.is_frozen(2));
        // The late binary still comes up and learns what failed.
        accept(&mut d, &mut out, 4);
        let got = feed(&mut d, &mut out, 4, hello(ProcKind::Game, 2, "k"));
        assert!(got.contains(&(ConnId(4), Msg::Thawed { dispatcher: 1, released: 0, failed: 2 })), "{got:?}");
    }

    /// The memory bound: held bytes past `freeze_hold_max_bytes` fail the hold at once.
    #[test]
    fn a_hold_past_its_byte_bound_fails_at_once() {
        let cfg = format!("{CFG}freeze_hold_max_bytes=2048\n");
        let (mut d, mut out) = cluster_with(&cfg);
        let e = Id([5; 16]);
        feed(&mut d, &mut out, 2, enc(&Msg::EntityCreated { id: e }));
        feed(&mut d, &mut out, 2, enc(&Msg::FreezeGame));
        let big = |n: u8| Msg::Call {
            target: e,
            method: 1,
            args: vec![n; 1000],
            caller: Caller::Client { gate: 1, client: Id([0xc0; 16]) },
        };
        assert!(feed(&mut d, &mut out, 3, enc(&big(1))).is_empty());
        let got = feed(&mut d, &mut out, 3, enc(&big(2)));
        let errors = got.iter().filter(|(c, m)| *c == ConnId(3) && matches!(m, Msg::ToClient { .. })).count();
        assert_eq!(errors, 2, "both held calls answered: {got:?}");
        assert!(!d.is_frozen(2));
    }

    /// A load for an entity that already has a live route (even on a frozen game) makes no
    /// second copy; otherwise the route exists before the game loads it.
    #[test]
    fn load_never_makes_a_second_copy() {
        let (mut d, mut out) = cluster();
        let e = Id([7; 16]);
        let load = Msg::LoadEntity { game: 0, id: e, type_name: "Avatar".into() };
        let got = feed(&mut d, &mut out, 1, enc(&load));
        assert_eq!(got.len(), 1);
        let placed = d.route_of(e).expect("route recorded at once");
        assert!(matches!(&got[0].1, Msg::LoadEntity { game, .. } if *game == placed));
        assert!(feed(&mut d, &mut out, 2, enc(&load)).is_empty(), "second load ignored");
        let g = usize::from(placed) as u64;
        feed(&mut d, &mut out, g, enc(&Msg::FreezeGame));
        assert!(feed(&mut d, &mut out, 3 - g, enc(&load)).is_empty(), "loaded on a frozen game: still one copy");
    }

    /// Answers and broadcasts meant for a game that is freezing are held like calls: the old
    /// process would drop them. (A migration started while its game froze hung forever.)
    #[test]
    fn answers_and_broadcasts_to_a_freezing_game_wait_for_its_restore() {
        let (mut d, mut out) = cluster();
        let (space, mover) = (Id([0x5a; 16]), Id([0x6b; 16]));
        feed(&mut d, &mut out, 1, enc(&Msg::EntityCreated { id: space }));
        feed(&mut d, &mut out, 2, enc(&Msg::EntityCreated { id: mover }));
        feed(&mut d, &mut out, 2, enc(&Msg::FreezeGame));
        // Game 2 is still draining its work and asks where a space is, and to migrate.
        assert!(feed(&mut d, &mut out, 2, enc(&Msg::QuerySpace { space, entity: mover })).is_empty());
        assert!(feed(&mut d, &mut out, 2, enc(&Msg::MigrateRequest { entity: mover })).is_empty());
        // Broadcasts meanwhile: a service registration by game 1, the gate going away.
        let reg = Msg::ServiceRegister { name: "Hub".into(), shard: 0, entity: Id([0x77; 16]) };
        let got = feed(&mut d, &mut out, 1, enc(&reg));
        assert!(got.iter().all(|(c, _)| *c != ConnId(2)), "nothing to the frozen process: {got:?}");
        d.handle(Instant::now(), Event::Closed { conn: ConnId(3), reason: CloseReason::PeerClosed }, &mut out);
        assert!(sent_to(&mut out, ConnId(2)).is_empty());
        d.handle(Instant::now(), Event::Closed { conn: ConnId(2), reason: CloseReason::PeerClosed }, &mut out);
        accept(&mut d, &mut out, 4);
        let got: Vec<Msg> = feed(&mut d, &mut out, 4, hello(ProcKind::Game, 2, "k"))
            .into_iter()
            .filter(|(c, _)| *c == ConnId(4))
            .map(|(_, m)| m)
            .collect();
        assert!(matches!(got[1], Msg::Thawed { released: 4, .. }), "{got:?}");
        assert_eq!(got[2], Msg::SpaceGame { space, entity: mover, game: 1 });
        assert_eq!(got[3], Msg::MigrateAck { entity: mover });
        assert!(matches!(&got[4], Msg::ServiceUpdate { name, .. } if name == "Hub"));
        assert_eq!(got[5], Msg::GateDown { gate: 1 });
    }

    fn sent_to(out: &mut Outbox, conn: ConnId) -> Vec<Msg> {
        out.take_frames()
            .into_iter()
            .filter(|(c, _)| *c == conn)
            .flat_map(|(_, fs)| fs.into_iter().map(|f| Msg::decode(&f).expect("valid")))
            .collect()
    }
}
