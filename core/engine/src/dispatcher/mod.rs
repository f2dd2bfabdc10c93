//! The dispatcher: routes every message about one entity through one place, keeps entity ->
//! game, places boot entities, and tells games who joined and left. A sans-IO [`App`].
//!
//! It routes by the fixed header of each frame (`oxworld_net::msg::Header`): calls, client
//! messages, creates, loads and migrations are forwarded as the bytes that arrived (a create or
//! load "anywhere" gets the chosen game patched into the header); only what is addressed to the
//! dispatcher itself (the handshake, routes, spaces, services, loads, freezes) has its body
//! decoded. Held traffic (a migrating entity's, a freezing game's) is held as frames.
//!
//! LIFECYCLE of an accepted connection: `Pending` (only `Hello` is accepted; anything else, a
//! wrong secret, version or id is answered with `Refused` and closed; its frames are capped at
//! `HANDSHAKE_MAX_FRAME` by the listener; it is closed if no `Hello` comes within
//! `handshake_timeout_ms`, and the oldest pending connection is closed when more than
//! `max_pending_conns` are pending, so unauthenticated peers never crowd out games and gates)
//! -> `Game(id)` or `Gate(id)` (frame cap raised to `max_internal_frame_bytes`) until it closes. A second connection with the id of a live one replaces it. A
//! frame that does not decode from a peer past the handshake is dropped and counted; the
//! connection stays (its framing is intact).
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
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use oxworld_net::Id;
use oxworld_net::app::{App, ConnId, Event, Outbox, Signal};
use oxworld_net::client_proto::{ErrorCode, ServerMsg};
use oxworld_net::config::Config;
use oxworld_net::msg::trace::{Hop, Trace};
use oxworld_net::msg::{
    Announce, Call, Caller, ClientConnected, CreateBoot, FLAG_TRACED, FreezeAck, FromGameKind, FromGateKind, GameDown,
    GameLoad, GateDown, Header, Kind, Message, MigrateAck, MsgDecodeError, ProcKind, QuerySpace, ResumeClient,
    ResumeRefused, ServiceRegister, ServiceUpdate, SpaceGame, ToClients, origin_of,
};
use oxworld_net::ratelog::RateLog;
use rustc_hash::FxHashMap;

use crate::status::{ProcState, Report};

mod handshake;
mod inflight;
mod loss;
mod place;
mod warmup;

/// Messages held for one migrating entity; past this they fail (with an error to clients).
pub const MAX_HELD_PER_ENTITY: usize = 100_000;

/// How long a restored game's new link waits for its frozen process's link to close.
pub const PARK_TIMEOUT: Duration = Duration::from_secs(1);

/// Bytes held for one migrating entity; past this further messages fail like above.
pub const MAX_HELD_BYTES_PER_ENTITY: usize = 64 << 20;

/// A migration whose entity has not arrived (nor been cancelled) within this long: its held
/// messages fail (errors to their senders) and later ones follow the route as usual.
pub const MIGRATION_HOLD_TIMEOUT: Duration = Duration::from_secs(30);

/// Client logins held while no game is connected; past this they are refused.
pub const MAX_PENDING_BOOTS: usize = 10_000;

/// Bookkeeping bytes counted per held frame, besides the frame itself (for the memory bound).
const HELD_OVERHEAD: usize = 16;

/// A login waiting for (or placed on) a game: the client, its gate, its boot entity and the
/// resume token its entity is bound with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Login {
    gate: u16,
    client: Id,
    boot: Id,
    token: Id,
}

/// Traffic held for one migrating entity, as frames in arrival order.
struct MigrationHold {
    since: Instant,
    bytes: usize,
    queue: VecDeque<Vec<u8>>,
}

/// Traffic held for one freezing game, as frames in arrival order.
struct Hold {
    since: Instant,
    bytes: usize,
    queue: VecDeque<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Pending,
    /// A restored game's new connection whose old (frozen) connection is still open: its
    /// handshake completes when the old one closes, so everything the old process sent is
    /// routed before anything of the new one.
    Parked(u16),
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
    /// Frames from peers past the handshake that did not decode (dropped).
    pub malformed: u64,
    /// Pending connections closed: no `Hello` in time, or pushed out by newer ones.
    pub handshake_dropped: u64,
    /// Migration holds that timed out.
    pub migrations_expired: u64,
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
    /// Frames and bytes received from linked peers, by message kind (the header's first byte).
    frames_in: crate::metrics::KindCounts,
    boot_rr: usize,
    /// Service shards registered through this dispatcher: (name, shard) -> (entity, game).
    services: BTreeMap<(String, u16), (Id, u16)>,
    /// Entities being migrated: frames for them are held here, in order.
    held: FxHashMap<Id, MigrationHold>,
    /// Connections that have not completed the handshake, by id (ids grow with accept time,
    /// so the first is the oldest) with their accept time.
    pending: BTreeMap<ConnId, Instant>,
    max_pending: usize,
    handshake_timeout: Duration,
    max_frame: usize,
    handshake_log: RateLog,
    /// Restored games waiting for their frozen process's link to close, with what they sent.
    parked: BTreeMap<u16, (ConnId, Vec<Vec<u8>>, Instant)>,
    /// Last load each live game reported, bumped by each placement until the next report.
    loads: BTreeMap<u16, u64>,
    /// Logins waiting for a game: (gate, client, boot entity).
    pending_boots: VecDeque<Login>,
    /// Boot entities placed on a game that has not said it created them yet: boot -> (game,
    /// gate, client). Placed again elsewhere if that game is lost first.
    placed_boots: FxHashMap<Id, (u16, Login)>,
    /// Games whose traffic is held for a hot swap.
    frozen: BTreeMap<u16, Hold>,
    /// Held messages that failed per game (reported in `Thawed` when it comes back).
    failed_holds: BTreeMap<u16, u64>,
    hold_timeout: std::time::Duration,
    hold_max_bytes: usize,
    /// The incarnation each game last linked with (its `Hello`).
    incarnations: BTreeMap<u16, u64>,
    /// Games whose link closed, with when they count as lost (`game_lost_after_ms`) unless the
    /// same process links again.
    lost_pending: BTreeMap<u16, Instant>,
    /// Games between `FreezeGame` and their next link: the process that links next continues
    /// the world (a restore), whatever its incarnation.
    swapping: BTreeSet<u16>,
    game_lost_after: Duration,
    /// Numbered frames forwarded and not acknowledged yet, per destination (see `inflight`).
    inflight: FxHashMap<u16, inflight::Inflight>,
    /// Routed traffic held until every game has announced its entities (see `warmup`).
    warmup: Option<warmup::Warmup>,
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
            frames_in: Default::default(),
            boot_rr: 0,
            loads: BTreeMap::new(),
            held: FxHashMap::default(),
            pending: BTreeMap::new(),
            max_pending: cfg.dispatcher(id).map_or(64, |d| d.max_pending_conns),
            handshake_timeout: cfg.dispatcher(id).map_or(Duration::from_secs(5), |d| d.handshake_timeout),
            max_frame: cfg.max_internal_frame,
            handshake_log: RateLog::per_second(),
            parked: BTreeMap::new(),
            services: BTreeMap::new(),
            pending_boots: VecDeque::new(),
            placed_boots: FxHashMap::default(),
            frozen: BTreeMap::new(),
            failed_holds: BTreeMap::new(),
            hold_timeout: cfg.freeze_hold_timeout,
            hold_max_bytes: cfg.freeze_hold_max_bytes,
            incarnations: BTreeMap::new(),
            lost_pending: BTreeMap::new(),
            swapping: BTreeSet::new(),
            game_lost_after: cfg.game_lost_after,
            warmup: Some(warmup::Warmup::new()),
            inflight: FxHashMap::default(),
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

    /// Sends `frame` to game `game`, or holds it if the game is frozen. Gives the frame back if
    /// the game is neither connected nor frozen.
    fn send_game(&mut self, game: u16, frame: Vec<u8>, out: &mut Outbox) -> Result<(), Vec<u8>> {
        if let Some(h) = self.frozen.get_mut(&game) {
            h.bytes += frame.len() + HELD_OVERHEAD;
            h.queue.push_back(frame);
            if h.bytes > self.hold_max_bytes {
                warn!("dispatcher{}: traffic held for frozen game{game} over {} bytes", self.id, self.hold_max_bytes);
                self.expire_hold(game, out);
            }
            return Ok(());
        }
        match self.games.get(&game) {
            Some(&c) => {
                out.send(c, &frame);
                self.stats.routed += 1;
                self.forwarded(origin_of(ProcKind::Game, game), frame);
                Ok(())
            }
            None => Err(frame),
        }
    }

    /// Sends `frame` to every game, live or frozen (a frozen game gets it after its restore),
    /// except `skip`. Encoded once by the caller.
    fn broadcast_games(&mut self, frame: &[u8], skip: Option<u16>, out: &mut Outbox) {
        let mut all: Vec<u16> = self.games.keys().chain(self.frozen.keys()).copied().collect();
        all.sort_unstable();
        all.dedup();
        for g in all {
            if Some(g) != skip {
                let _ = self.send_game(g, frame.to_vec(), out);
            }
        }
    }

    /// Sends `frame` to gate `gate`; false if it is not connected (then it is settled: the
    /// clients it was for are gone with their gate).
    fn send_gate(&mut self, gate: u16, frame: Vec<u8>, out: &mut Outbox) -> bool {
        match self.gates.get(&gate) {
            Some(&c) => {
                out.send(c, &frame);
                self.stats.routed += 1;
                self.forwarded(origin_of(ProcKind::Gate, gate), frame);
                true
            }
            None => {
                self.stats.undeliverable += 1;
                debug!("dispatcher{}: gate{gate} not connected; client message dropped", self.id);
                self.settle(&frame, out);
                false
            }
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
            for frame in self.held.remove(&e).map(|h| h.queue).unwrap_or_default() {
                self.undeliverable(e, &frame, out);
            }
        }
        // Services it provided are gone; games re-create them.
        let lost: Vec<(String, u16)> =
            self.services.iter().filter(|(_, (_, g))| *g == game).map(|(k, _)| k.clone()).collect();
        for (name, shard) in lost {
            self.services.remove(&(name.clone(), shard));
            let update = ServiceUpdate { entity: Id::NIL, game: 0, name, shard }.to_frame(0);
            self.broadcast_games(&update, None, out);
        }
        self.broadcast_games(&GameDown { game }.to_frame(0), None, out);
    }

    fn place_boot(&mut self, login: Login, out: &mut Outbox) {
        let Login { gate, client, boot, token } = login;
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
            self.pending_boots.push_back(login);
            return;
        }
        let (g, c) = candidates[self.boot_rr % candidates.len()];
        self.boot_rr = self.boot_rr.wrapping_add(1);
        self.routes.insert(boot, g);
        out.send_with(c, |b| CreateBoot { boot, gate, client, token }.encode(0, b));
        self.placed_boots.insert(boot, (g, login));
        self.stats.routed += 1;
    }

    fn send_to_gate(&mut self, gate: u16, client: Id, msg: &ServerMsg, out: &mut Outbox) {
        let mut payload = Vec::new();
        msg.encode(&mut payload);
        let frame = ToClients { gate, clients: vec![client], payload }.to_frame(0);
        self.send_gate(gate, frame, out);
    }

    /// Forwards a frame addressed to entity `target` to the entity's game (or holds it while
    /// the entity migrates).
    fn route(&mut self, target: Id, frame: Vec<u8>, out: &mut Outbox) {
        if let Some(h) = self.held.get_mut(&target) {
            if h.queue.len() < MAX_HELD_PER_ENTITY && h.bytes + frame.len() <= MAX_HELD_BYTES_PER_ENTITY {
                h.bytes += frame.len() + HELD_OVERHEAD;
                h.queue.push_back(frame);
                return;
            }
            warn!(
                "dispatcher{}: more than {MAX_HELD_PER_ENTITY} messages or {MAX_HELD_BYTES_PER_ENTITY} bytes held for \
                 migrating {target}",
                self.id
            );
            self.fail(&frame, &format!("too much traffic held while {target} migrates"), out);
            return;
        }
        let frame = match self.routes.get(&target).copied() {
            Some(g) => match self.send_game(g, frame, out) {
                Ok(()) => return,
                Err(f) => f,
            },
            None => frame,
        };
        self.undeliverable(target, &frame, out);
    }

    /// A frame that cannot reach `target`: client calls get an error, the rest is logged; all
    /// counted.
    fn undeliverable(&mut self, target: Id, frame: &[u8], out: &mut Outbox) {
        self.stats.undeliverable += 1;
        self.settle(frame, out);
        match Call::decode(frame) {
            Ok(Call { method, caller: Caller::Client { gate, client }, .. }) => {
                let err = ServerMsg::error(ErrorCode::UnknownEntity, target, method, format!("no entity {target}"));
                self.send_to_gate(gate, client, &err, out);
            }
            Ok(Call { method, caller: Caller::Server(from), .. }) => {
                warn!("dispatcher{}: call {method:#010x} from {from} to unknown entity {target} dropped", self.id);
            }
            Err(_) => match ResumeClient::decode(frame) {
                Ok(m) => {
                    let reason = format!("no entity {target}");
                    let refused = ResumeRefused { gate: m.gate, client: m.client, entity: target, reason }.to_frame(0);
                    self.send_gate(m.gate, refused, out);
                }
                Err(_) => debug!("dispatcher{}: {} for unknown entity {target} dropped", self.id, kind_name(frame)),
            },
        }
    }

    /// A frame a peer past the handshake sent that does not decode: dropped and counted.
    fn malformed(&mut self, from: Peer, e: &MsgDecodeError) {
        self.stats.malformed += 1;
        warn!("dispatcher{}: {from:?} sent a frame that does not decode ({e}); dropped", self.id);
    }

    fn on_game_frame(&mut self, game: u16, h: Header, frame: Vec<u8>, out: &mut Outbox) {
        let kind = match FromGameKind::of(&h) {
            Ok(k) => k,
            Err(e) => return self.malformed(Peer::Game(game), &e),
        };
        let frame = match kind {
            FromGameKind::Call
            | FromGameKind::CallFailed
            | FromGameKind::CreateEntity
            | FromGameKind::LoadEntity
            | FromGameKind::RealMigrate
            | FromGameKind::ToClients
            | FromGameKind::SetFilterProp
            | FromGameKind::PlayerAt
            | FromGameKind::ResumeRefused
            | FromGameKind::FilteredCall => match self.warming(Peer::Game(game), frame, out) {
                Some(f) => f,
                None => return,
            },
            _ => frame,
        };
        let body = &frame[oxworld_net::msg::HEADER_LEN..];
        match kind {
            FromGameKind::Acks => self.forward_acks(origin_of(ProcKind::Game, game), &h, body, &frame, out),
            // Forwarded as they came, by the header alone.
            FromGameKind::Call | FromGameKind::CallFailed => self.route(h.route, frame, out),
            FromGameKind::CreateEntity => self.place_create(h, frame, out),
            FromGameKind::LoadEntity => self.place_load(h, frame, out),
            FromGameKind::RealMigrate => {
                let (entity, target) = (h.route, h.aux);
                let held = self.held.remove(&entity).map(|h| h.queue).unwrap_or_default();
                self.routes.insert(entity, target);
                if let Err(mut frame) = self.send_game(target, frame, out) {
                    // The target went down (or its link did) while the entity was on its way:
                    // it goes back to the game it left, which rebuilds it; never lost.
                    warn!("dispatcher{}: {entity} migrating to offline game{target}: sent back to game{game}", self.id);
                    Header::patch_aux(&mut frame, game);
                    self.routes.insert(entity, game);
                    if self.send_game(game, frame, out).is_err() {
                        self.routes.remove(&entity);
                        warn!("dispatcher{}: {entity}: its game{game} is gone too: lost", self.id);
                    }
                }
                for f in held {
                    self.route(entity, f, out);
                }
            }
            FromGameKind::ToClients
            | FromGameKind::SetFilterProp
            | FromGameKind::PlayerAt
            | FromGameKind::ResumeRefused => {
                self.send_gate(h.aux, frame, out);
            }
            FromGameKind::FilteredCall => {
                self.send_gate(h.aux, frame, out);
            }
            // Addressed to the dispatcher.
            FromGameKind::Announce => match Announce::decode_body(&h, body) {
                Ok(a) => {
                    for e in a.entities {
                        if let Some(prev) = self.routes.insert(e, game)
                            && prev != game
                        {
                            warn!("dispatcher{}: entity {e} re-announced by game{game}, was on game{prev}", self.id);
                        }
                    }
                    if a.last {
                        self.announced(game, out);
                    }
                }
                Err(e) => self.malformed(Peer::Game(game), &e),
            },
            FromGameKind::EntityCreated => {
                self.routes.insert(h.route, game);
                self.placed_boots.remove(&h.route);
            }
            FromGameKind::EntityDestroyed => {
                if self.routes.get(&h.route) == Some(&game) {
                    self.routes.remove(&h.route);
                }
            }
            // Answers go through `send_game`: a game that froze after asking gets them after
            // its restore instead of losing them with its old process.
            FromGameKind::QuerySpace => match QuerySpace::decode_body(&h, body) {
                Ok(QuerySpace { space, entity }) => {
                    let on = self.routes.get(&space).copied().filter(|g| self.is_live(*g)).unwrap_or(0);
                    let _ = self.send_game(game, SpaceGame { space, game: on, entity }.to_frame(0), out);
                }
                Err(e) => self.malformed(Peer::Game(game), &e),
            },
            FromGameKind::MigrateRequest => {
                // `now` is set by every `handle`, which is the only way here.
                if let Some(since) = self.now {
                    self.held.entry(h.route).or_insert(MigrationHold { since, bytes: 0, queue: VecDeque::new() });
                }
                let _ = self.send_game(game, MigrateAck { entity: h.route }.to_frame(0), out);
            }
            FromGameKind::CancelMigrate => {
                for f in self.held.remove(&h.route).map(|h| h.queue).unwrap_or_default() {
                    self.route(h.route, f, out);
                }
            }
            FromGameKind::ServiceRegister => match ServiceRegister::decode_body(&h, body) {
                Ok(ServiceRegister { entity, name, shard }) => self.register_service(game, entity, name, shard, out),
                Err(e) => self.malformed(Peer::Game(game), &e),
            },
            FromGameKind::GameLoad => match GameLoad::decode_body(&h, body) {
                Ok(GameLoad { load }) => {
                    self.loads.insert(game, u64::from(load));
                }
                Err(e) => self.malformed(Peer::Game(game), &e),
            },
            FromGameKind::FreezeGame => {
                info!("dispatcher{}: game{game} is freezing; holding its traffic", self.id);
                // It handles everything sent before the FreezeAck below before it freezes.
                self.clear_inflight(origin_of(ProcKind::Game, game));
                let Some(since) = self.now else { return };
                self.frozen.insert(game, Hold { since, bytes: 0, queue: VecDeque::new() });
                self.swapping.insert(game);
                if let Some(&c) = self.games.get(&game) {
                    out.send_with(c, |b| FreezeAck { dispatcher: self.id }.encode(0, b));
                }
            }
            FromGameKind::Hello => {
                let e = MsgDecodeError::Unexpected { kind: h.kind, direction: "FromGame after the handshake" };
                self.malformed(Peer::Game(game), &e);
            }
        }
    }

    fn on_gate_frame(&mut self, gate: u16, h: Header, frame: Vec<u8>, out: &mut Outbox) {
        let kind = match FromGateKind::of(&h) {
            Ok(k) => k,
            Err(e) => return self.malformed(Peer::Gate(gate), &e),
        };
        let frame = match kind {
            FromGateKind::Acks | FromGateKind::Hello => frame,
            _ => match self.warming(Peer::Gate(gate), frame, out) {
                Some(f) => f,
                None => return,
            },
        };
        match kind {
            FromGateKind::Acks => {
                let body = &frame[oxworld_net::msg::HEADER_LEN..];
                self.forward_acks(origin_of(ProcKind::Gate, gate), &h, body, &frame, out);
            }
            FromGateKind::Call
            | FromGateKind::ClientDisconnected
            | FromGateKind::ClientMove
            | FromGateKind::ResumeClient => {
                self.route(h.route, frame, out);
            }
            FromGateKind::ClientConnected => {
                match ClientConnected::decode_body(&h, &frame[oxworld_net::msg::HEADER_LEN..]) {
                    // A gate asks again for logins whose boot it never saw (after this
                    // dispatcher restarted); one already placed or waiting is not placed twice.
                    Ok(m)
                        if self.routes.contains_key(&m.boot) || self.pending_boots.iter().any(|p| p.boot == m.boot) =>
                    {
                        debug!("dispatcher{}: boot {} already placed; ignored", self.id, m.boot);
                    }
                    Ok(m) => self.place_boot(Login { gate, client: m.client, boot: m.boot, token: m.token }, out),
                    Err(e) => self.malformed(Peer::Gate(gate), &e),
                }
            }
            FromGateKind::Hello => {
                let e = MsgDecodeError::Unexpected { kind: h.kind, direction: "FromGate after the handshake" };
                self.malformed(Peer::Gate(gate), &e);
            }
        }
    }
}

/// The kind of an encoded frame, for logs.
fn kind_name(frame: &[u8]) -> &'static str {
    Header::parse(frame).map(|(h, _)| h.kind.name()).unwrap_or("a malformed frame")
}

impl App for DispatcherApp {
    fn handle(&mut self, now: Instant, event: Event, out: &mut Outbox) {
        self.now = Some(now);
        self.warmup_clock(now);
        match event {
            Event::Accepted { conn, .. } => {
                self.conns.insert(conn, Peer::Pending);
                self.pending.insert(conn, now);
                while self.pending.len() > self.max_pending {
                    let Some((old, _)) = self.pending.pop_first() else { break };
                    self.drop_pending(old, "too many connections without a handshake", out);
                }
            }
            Event::Frame { conn, mut data, at } => {
                let Some(&peer) = self.conns.get(&conn) else {
                    return;
                };
                if peer == Peer::Pending {
                    self.on_hello(conn, &data, out);
                    return;
                }
                let h = match Header::parse(&data) {
                    Ok((h, _)) => h,
                    Err(e) => return self.malformed(peer, &e),
                };
                self.frames_in.add(h.kind as u8, data.len());
                if h.flags & FLAG_TRACED != 0 {
                    // A sampled client call or its reply: add the time it waited here.
                    let hop = if h.kind == Kind::ToClients { Hop::DispatcherBack } else { Hop::DispatcherIn };
                    Trace::add_to_frame(&mut data, hop, now.saturating_duration_since(at.unwrap_or(now)));
                }
                match peer {
                    Peer::Game(g) => self.on_game_frame(g, h, data, out),
                    Peer::Gate(g) => self.on_gate_frame(g, h, data, out),
                    Peer::Parked(g) => {
                        if let Some((_, frames, _)) = self.parked.get_mut(&g) {
                            frames.push(data);
                        }
                    }
                    Peer::Pending => {}
                }
            }
            Event::Closed { conn, reason } => match self.forget(conn) {
                Some(Peer::Game(g)) if self.games.get(&g) == Some(&conn) => {
                    if self.frozen.contains_key(&g) {
                        info!("dispatcher{}: frozen game{g} exited ({reason}); holding its traffic", self.id);
                        self.games.remove(&g);
                        self.unpark(g, out);
                    } else {
                        warn!("dispatcher{}: game{g} link closed: {reason}", self.id);
                        self.game_down(g, out);
                        // Lost unless the same process links again in time.
                        self.lost_pending.insert(g, now + self.game_lost_after);
                    }
                }
                Some(Peer::Parked(g)) => {
                    self.parked.remove(&g);
                }
                Some(Peer::Gate(g)) if self.gates.get(&g) == Some(&conn) => {
                    warn!("dispatcher{}: gate{g} link closed: {reason}", self.id);
                    self.gates.remove(&g);
                    self.broadcast_games(&GateDown { gate: g }.to_frame(0), None, out);
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
        self.warmup_clock(now);
        self.warmup_tick(now, out);
        let lost: Vec<u16> = self.lost_pending.iter().filter(|(_, at)| now >= **at).map(|(g, _)| *g).collect();
        for g in lost {
            let incarnation = self.incarnations.get(&g).copied().unwrap_or(0);
            self.game_lost(g, incarnation, out);
        }
        let expired: Vec<u16> =
            self.frozen.iter().filter(|(_, h)| now >= h.since + self.hold_timeout).map(|(g, _)| *g).collect();
        for g in expired {
            self.expire_hold(g, out);
        }
        // A parked connection waits at most PARK_TIMEOUT for the old link's close; then the
        // old link is closed here (what it still carried is lost, as it always was).
        let overdue: Vec<u16> =
            self.parked.iter().filter(|(_, (_, _, since))| now >= *since + PARK_TIMEOUT).map(|(g, _)| *g).collect();
        for g in overdue {
            if let Some(old) = self.games.remove(&g) {
                warn!(
                    "dispatcher{}: game{g}'s frozen process's link did not close in {PARK_TIMEOUT:?}; closing it",
                    self.id
                );
                out.close(old, "replaced by the restored process");
                self.conns.remove(&old);
            }
            self.unpark(g, out);
        }
        while let Some((&conn, &at)) = self.pending.first_key_value() {
            if now < at + self.handshake_timeout {
                break;
            }
            self.pending.remove(&conn);
            self.drop_pending(conn, "no handshake in time", out);
        }
        let stuck: Vec<Id> =
            self.held.iter().filter(|(_, h)| now >= h.since + MIGRATION_HOLD_TIMEOUT).map(|(e, _)| *e).collect();
        for e in stuck {
            let Some(h) = self.held.remove(&e) else { continue };
            self.stats.migrations_expired += 1;
            warn!(
                "dispatcher{}: {e} did not arrive within {MIGRATION_HOLD_TIMEOUT:?} of its migration; failing {} held \
                 messages",
                self.id,
                h.queue.len()
            );
            let reason = format!("{e} did not finish migrating in time");
            for frame in h.queue {
                self.fail(&frame, &reason, out);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let holds = self.frozen.values().map(|h| h.since + self.hold_timeout);
        let pending = self.pending.values().next().map(|at| *at + self.handshake_timeout);
        let migrations = self.held.values().map(|h| h.since + MIGRATION_HOLD_TIMEOUT);
        let parked = self.parked.values().map(|(_, _, since)| *since + PARK_TIMEOUT);
        let lost = self.lost_pending.values().copied();
        holds.chain(pending).chain(migrations).chain(parked).chain(lost).chain(self.warmup_deadline()).min()
    }

    fn done(&self) -> bool {
        self.done
    }
}

impl Report for DispatcherApp {
    fn holds(&self) -> Option<(&'static str, u64)> {
        Some(("routes", self.routes.len() as u64))
    }

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

impl crate::metrics::Metrics for DispatcherApp {
    fn metrics(&self, m: &mut crate::metrics::MetricSet) {
        let st = &self.stats;
        m.counter("routed_total", "Messages forwarded", &[], st.routed);
        m.counter("undeliverable_total", "Messages with no route (answered or dropped)", &[], st.undeliverable);
        m.counter("refused_total", "Connections refused at the handshake", &[], st.refused);
        m.counter("malformed_internal_total", "Frames from linked peers that did not decode", &[], st.malformed);
        m.counter("handshake_dropped_total", "Connections dropped before their handshake", &[], st.handshake_dropped);
        m.counter("migrations_expired_total", "Migrations whose hold expired", &[], st.migrations_expired);
        m.gauge("routes", "Entity routes this dispatcher knows", &[], self.routes.len() as f64);
        self.frames_in.export(m, false);
        m.gauge("linked_games", "Games linked", &[], self.games.len() as f64);
        m.gauge("linked_gates", "Gates linked", &[], self.gates.len() as f64);
        let held: usize = self.held.values().map(|h| h.queue.len()).sum::<usize>()
            + self.frozen.values().map(|h| h.queue.len()).sum::<usize>();
        m.gauge("held_messages", "Messages held for migrating entities and freezing games", &[], held as f64);
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use oxworld_net::app::CloseReason;
    use oxworld_net::msg::{
        Acks, CancelMigrate, ClientDisconnected, CreateEntity, EntityCreated, EntityDestroyed, FreezeGame, GameLost,
        GameUp, GateUp, Hello, HelloAck, INTERNAL_PROTOCOL_VERSION, LoadEntity, MigrateRequest, ProcKind, RealMigrate,
        Refused, Thawed, ToGame, ToGate,
    };

    use super::*;

    const CFG: &str = "[deployment]\ndesired_dispatchers=1\ndesired_games=2\ndesired_gates=1\nsecret=k\n";
    /// The gate's connection in [`cluster`].
    const GATE: ConnId = ConnId(3);

    /// What the dispatcher sent one connection: games and gates get different messages.
    #[derive(Debug, Clone, PartialEq)]
    enum Got {
        Game(ToGame),
        Gate(ToGate),
    }

    /// A dispatcher past its warm-up (tested on its own below).
    fn app() -> DispatcherApp {
        let mut d = DispatcherApp::new(&Config::parse(Path::new("t.ini"), CFG).expect("config"), 1);
        d.warmup = None;
        d
    }

    fn hello(kind: ProcKind, id: u16, secret: &str) -> Vec<u8> {
        hello_of(kind, id, secret, 1)
    }

    fn hello_of(kind: ProcKind, id: u16, secret: &str, incarnation: u64) -> Vec<u8> {
        hello_restored(kind, id, secret, incarnation, false)
    }

    fn hello_restored(kind: ProcKind, id: u16, secret: &str, incarnation: u64, restored: bool) -> Vec<u8> {
        Hello { version: INTERNAL_PROTOCOL_VERSION, kind, id, secret: secret.into(), incarnation, restored }.to_frame(0)
    }

    fn enc<M: Message>(m: &M) -> Vec<u8> {
        m.to_frame(1)
    }

    fn g(m: impl Into<ToGame>) -> Got {
        Got::Game(m.into())
    }

    /// Decodes everything queued: frames to the gate's connection as `ToGate`, others as
    /// `ToGame`.
    fn sent(out: &mut Outbox) -> Vec<(ConnId, Got)> {
        out.take_frames()
            .into_iter()
            .flat_map(|(c, fs)| {
                fs.into_iter().map(move |f| {
                    let got = if c == GATE {
                        Got::Gate(ToGate::decode(&f).expect("valid gate msg"))
                    } else {
                        Got::Game(ToGame::decode(&f).expect("valid game msg"))
                    };
                    (c, got)
                })
            })
            .collect()
    }

    /// Feeds `data` as a frame on `conn` and returns the decoded messages sent per connection.
    fn feed(d: &mut DispatcherApp, out: &mut Outbox, conn: u64, data: Vec<u8>) -> Vec<(ConnId, Got)> {
        d.handle(Instant::now(), Event::Frame { conn: ConnId(conn), data, at: None }, out);
        sent(out)
    }

    fn accept(d: &mut DispatcherApp, out: &mut Outbox, conn: u64) {
        let peer = "127.0.0.1:9".parse().expect("addr");
        d.handle(
            Instant::now(),
            Event::Accepted { conn: ConnId(conn), listener: 0, peer, resume: false, session: false },
            out,
        );
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
        announced(&mut d, &mut out, 1);
        announced(&mut d, &mut out, 2);
        sent(&mut out);
        (d, out)
    }

    /// The game on `conn` announces no entities (its last batch), ending the warm-up once
    /// every game did.
    fn announced(d: &mut DispatcherApp, out: &mut Outbox, conn: u64) {
        d.handle(
            Instant::now(),
            Event::Frame { conn: ConnId(conn), data: enc(&Announce { last: true, entities: vec![] }), at: None },
            out,
        );
    }

    fn client_error(got: &Got) -> Option<ServerMsg> {
        match got {
            Got::Gate(ToGate::ToClients(tc)) => ServerMsg::decode(&tc.payload).ok(),
            _ => None,
        }
    }

    #[test]
    fn handshake_refusals() {
        let mut d = app();
        let mut out = Outbox::new();
        for c in 1..=5 {
            accept(&mut d, &mut out, c);
        }
        let refused = |got: &[(ConnId, Got)], what: &str| matches!(got, [(_, Got::Game(ToGame::Refused(Refused { reason })))] if reason.contains(what));
        let got = feed(&mut d, &mut out, 1, hello(ProcKind::Game, 1, "wrong"));
        assert!(refused(&got, "secret"), "{got:?}");
        let got = feed(&mut d, &mut out, 2, hello(ProcKind::Game, 9, "k"));
        assert!(refused(&got, "not in the config"), "{got:?}");
        let got = feed(&mut d, &mut out, 4, enc(&GameUp { game: 1 }));
        assert!(refused(&got, "expected Hello"), "{got:?}");
        let old =
            Hello { version: 2, kind: ProcKind::Game, id: 1, secret: "k".into(), incarnation: 0, restored: false }
                .to_frame(1);
        let got = feed(&mut d, &mut out, 5, old);
        assert!(refused(&got, "protocol version 2"), "{got:?}");
        assert_eq!(out.take_closes().len(), 4);
        // Garbage closes only that connection.
        feed(&mut d, &mut out, 3, vec![0xde, 0xad]);
        assert_eq!(out.take_closes().len(), 1);
        assert_eq!(d.stats().refused, 5);
    }

    /// Past the handshake, a frame that does not decode is dropped and counted, and the link
    /// stays: a game's link closing would cost its routes.
    #[test]
    fn a_bad_frame_from_a_linked_peer_is_dropped_not_fatal() {
        let (mut d, mut out) = cluster();
        let e = Id([5; 16]);
        feed(&mut d, &mut out, 2, enc(&EntityCreated { id: e }));
        assert!(feed(&mut d, &mut out, 2, vec![0xff; 60]).is_empty());
        assert!(feed(&mut d, &mut out, 2, vec![1, 2, 3]).is_empty());
        // A kind that does not travel from games, and one that does but is cut short.
        assert!(feed(&mut d, &mut out, 1, enc(&HelloAck { dispatcher: 1, games: vec![] })).is_empty());
        let mut load = enc(&GameLoad { load: 3 });
        load.pop();
        assert!(feed(&mut d, &mut out, 1, load).is_empty());
        assert!(out.take_closes().is_empty());
        assert_eq!(d.stats().malformed, 4);
        assert_eq!(d.route_of(e), Some(2), "the game's routes are intact");
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
                (ConnId(1), g(HelloAck { dispatcher: 1, games: vec![1] })),
                (ConnId(1), g(Thawed { dispatcher: 1, released: 0, failed: 0 }))
            ]
        );
        let got = feed(&mut d, &mut out, 2, hello(ProcKind::Game, 2, "k"));
        assert!(got.contains(&(ConnId(1), g(GameUp { game: 2 }))));
        accept(&mut d, &mut out, 3);
        feed(&mut d, &mut out, 3, hello(ProcKind::Gate, 1, "k"));
        let mut placed = Vec::new();
        for i in 0..4u8 {
            let m = ClientConnected { boot: Id([i + 100; 16]), gate: 1, client: Id([i; 16]), token: Id::NIL };
            let got = feed(&mut d, &mut out, 3, enc(&m));
            assert_eq!(got[0].1, g(CreateBoot { boot: m.boot, gate: 1, client: m.client, token: Id::NIL }));
            placed.push(got[0].0);
        }
        assert_eq!(placed, vec![ConnId(1), ConnId(2), ConnId(1), ConnId(2)]);
        // A gate asking again for a boot already placed (its link came back) places nothing.
        let again = ClientConnected { boot: Id([100; 16]), gate: 1, client: Id([0; 16]), token: Id::NIL };
        assert!(feed(&mut d, &mut out, 3, enc(&again)).is_empty());
    }

    /// A game's entities come in `Announce` batches after its `Hello` (which stays small), and
    /// the routes are rebuilt from them.
    #[test]
    fn announced_entities_are_routed() {
        let (mut d, mut out) = cluster();
        let ids: Vec<Id> = (0..10u8).map(|i| Id([i + 1; 16])).collect();
        feed(&mut d, &mut out, 2, enc(&Announce { last: false, entities: ids[..6].to_vec() }));
        feed(&mut d, &mut out, 2, enc(&Announce { last: true, entities: ids[6..].to_vec() }));
        assert!(ids.iter().all(|e| d.route_of(*e) == Some(2)));
        let call = Call { target: ids[9], method: 1, caller: Caller::Server(Id::NIL), args: vec![0, 0, 0, 0] };
        assert_eq!(feed(&mut d, &mut out, 1, enc(&call)), vec![(ConnId(2), g(call))]);
    }

    #[test]
    fn boots_wait_for_a_game() {
        let mut d = app();
        let mut out = Outbox::new();
        accept(&mut d, &mut out, 3);
        feed(&mut d, &mut out, 3, hello(ProcKind::Gate, 1, "k"));
        let got = feed(
            &mut d,
            &mut out,
            3,
            enc(&ClientConnected { boot: Id([2; 16]), gate: 1, client: Id([1; 16]), token: Id::NIL }),
        );
        assert!(got.is_empty());
        accept(&mut d, &mut out, 1);
        let got = feed(&mut d, &mut out, 1, hello(ProcKind::Game, 1, "k"));
        assert!(got.iter().any(|(_, m)| matches!(m, Got::Game(ToGame::CreateBoot(_)))), "{got:?}");
    }

    /// Calls are forwarded as the bytes that arrived: the dispatcher routes by the header.
    #[test]
    fn calls_follow_routes_as_they_came_and_unknown_targets_answer_the_client() {
        let (mut d, mut out) = cluster();
        let e = Id([5; 16]);
        feed(&mut d, &mut out, 2, enc(&EntityCreated { id: e }));
        let call = Call { target: e, method: 1, caller: Caller::Client { gate: 1, client: Id([1; 16]) }, args: vec![] };
        let frame = call.to_frame(origin_of_gate());
        d.handle(Instant::now(), Event::Frame { conn: GATE, data: frame.clone(), at: None }, &mut out);
        let raw = out.take_frames();
        assert_eq!(raw, vec![(ConnId(2), vec![frame])], "forwarded byte for byte");
        feed(&mut d, &mut out, 2, enc(&EntityDestroyed { id: e }));
        let got = feed(&mut d, &mut out, 3, enc(&call));
        match &got[..] {
            [(GATE, m)] => {
                let err = client_error(m).expect("an error to the client");
                assert!(matches!(err, ServerMsg::Error { code: 1, target, .. } if target == e));
            }
            other => panic!("expected an error to the gate, got {other:?}"),
        }
        // Entity-to-entity call to an unknown entity: counted.
        let before = d.stats().undeliverable;
        let call = Call { target: e, method: 1, caller: Caller::Server(Id([9; 16])), args: vec![] };
        feed(&mut d, &mut out, 1, enc(&call));
        assert_eq!(d.stats().undeliverable, before + 1);
    }

    fn origin_of_gate() -> u16 {
        oxworld_net::msg::origin_of(ProcKind::Gate, 1)
    }

    #[test]
    fn game_down_purges_routes_and_notifies() {
        let (mut d, mut out) = cluster();
        let e = Id([5; 16]);
        let create = CreateEntity { id: e, game: 2, type_name: "X".into(), space_kind: None };
        feed(&mut d, &mut out, 2, enc(&create));
        assert_eq!(d.route_of(e), Some(2));
        d.handle(Instant::now(), Event::Closed { conn: ConnId(2), reason: CloseReason::PeerClosed }, &mut out);
        assert_eq!(d.route_of(e), None);
        let got = sent(&mut out);
        assert!(got.contains(&(ConnId(1), g(GameDown { game: 2 }))));
        assert!(!got.iter().any(|(c, _)| *c == GATE), "gates hear nothing yet: the same process may link again");
        // New boots never go to the dead game.
        for i in 0..3u8 {
            let m = ClientConnected { boot: Id([i + 50; 16]), gate: 1, client: Id([i; 16]), token: Id::NIL };
            assert_eq!(feed(&mut d, &mut out, 3, enc(&m))[0].0, ConnId(1));
        }
    }

    fn lost_to_gate(out: &mut Outbox) -> Vec<u16> {
        sent(out)
            .into_iter()
            .filter_map(|(c, got)| match got {
                Got::Gate(ToGate::GameLost(GameLost { game, .. })) if c == GATE => Some(game),
                _ => None,
            })
            .collect()
    }

    /// A game whose link closed is lost for the gates (they tell its players) when the same
    /// process has not linked again within `game_lost_after_ms`, or at once when another
    /// process of it links; a broken link the same process mends, or a hot swap's restore,
    /// loses nothing.
    #[test]
    fn a_game_is_lost_when_another_process_takes_its_place_or_none_comes_back() {
        let (mut d, mut out) = cluster();
        let t0 = Instant::now();
        let closed = |d: &mut DispatcherApp, out: &mut Outbox, conn: u64, at: Instant| {
            d.handle(at, Event::Closed { conn: ConnId(conn), reason: CloseReason::PeerClosed }, out);
        };
        // The same process mends its link: nothing lost, even long after.
        closed(&mut d, &mut out, 2, t0);
        accept(&mut d, &mut out, 4);
        let got = feed(&mut d, &mut out, 4, hello_of(ProcKind::Game, 2, "k", 1));
        assert!(!got.iter().any(|(c, _)| *c == GATE), "{got:?}");
        d.tick(t0 + Duration::from_secs(60), &mut out);
        assert_eq!(lost_to_gate(&mut out), Vec::<u16>::new());
        // Another process of game 2: lost at once.
        closed(&mut d, &mut out, 4, t0);
        accept(&mut d, &mut out, 5);
        let got = feed(&mut d, &mut out, 5, hello_of(ProcKind::Game, 2, "k", 2));
        assert!(got.contains(&(GATE, Got::Gate(GameLost { game: 2, incarnation: 1 }.into()))), "{got:?}");
        d.tick(t0 + Duration::from_secs(60), &mut out);
        assert_eq!(lost_to_gate(&mut out), Vec::<u16>::new(), "once");
        // Nobody comes back: lost when game_lost_after_ms (2 s by default) has passed.
        closed(&mut d, &mut out, 5, t0);
        d.tick(t0 + Duration::from_millis(1900), &mut out);
        assert_eq!(lost_to_gate(&mut out), Vec::<u16>::new());
        assert!(d.next_deadline().is_some_and(|t| t <= t0 + Duration::from_secs(2)));
        d.tick(t0 + Duration::from_secs(2), &mut out);
        assert_eq!(lost_to_gate(&mut out), vec![2]);
        // A hot swap: the restored process (another incarnation) continues the world.
        accept(&mut d, &mut out, 6);
        feed(&mut d, &mut out, 6, hello_of(ProcKind::Game, 2, "k", 3));
        feed(&mut d, &mut out, 6, enc(&oxworld_net::msg::FreezeGame {}));
        closed(&mut d, &mut out, 6, t0);
        accept(&mut d, &mut out, 7);
        let got = feed(&mut d, &mut out, 7, hello_restored(ProcKind::Game, 2, "k", 4, true));
        assert!(!got.iter().any(|(c, _)| *c == GATE), "{got:?}");
        d.tick(t0 + Duration::from_secs(60), &mut out);
        assert_eq!(lost_to_gate(&mut out), Vec::<u16>::new(), "a restore loses nothing");
        // A freezing process that dies, replaced by a fresh one (not restored): lost.
        feed(&mut d, &mut out, 7, enc(&oxworld_net::msg::FreezeGame {}));
        closed(&mut d, &mut out, 7, t0);
        accept(&mut d, &mut out, 8);
        let got = feed(&mut d, &mut out, 8, hello_of(ProcKind::Game, 2, "k", 5));
        assert!(got.contains(&(GATE, Got::Gate(GameLost { game: 2, incarnation: 4 }.into()))), "{got:?}");
        // A hold that expires, then a restore that comes just in time: nothing lost later.
        feed(&mut d, &mut out, 8, enc(&oxworld_net::msg::FreezeGame {}));
        accept(&mut d, &mut out, 9);
        feed(&mut d, &mut out, 9, hello_restored(ProcKind::Game, 2, "k", 6, true));
        d.tick(t0 + Duration::from_secs(1000), &mut out);
        let _ = sent(&mut out);
        d.tick(t0 + Duration::from_secs(2000), &mut out);
        assert_eq!(lost_to_gate(&mut out), Vec::<u16>::new(), "the restore came up when the hold expired");
    }

    /// A login placed on a game that is lost before it created the boot entity is placed on
    /// another game; one the game created is not.
    #[test]
    fn a_boot_placed_on_a_lost_game_is_placed_again() {
        let (mut d, mut out) = cluster();
        let boots: Vec<ClientConnected> = (0..2u8)
            .map(|i| ClientConnected { boot: Id([i + 100; 16]), gate: 1, client: Id([i; 16]), token: Id::NIL })
            .collect();
        let mut on = Vec::new();
        for m in &boots {
            on.push(feed(&mut d, &mut out, 3, enc(m))[0].0);
        }
        assert_eq!(on, vec![ConnId(1), ConnId(2)], "round robin");
        // Game 1 created its boot; game 2 did not, and is replaced by a new process.
        feed(&mut d, &mut out, 1, EntityCreated { id: boots[0].boot }.to_frame(1));
        let t0 = Instant::now();
        d.handle(t0, Event::Closed { conn: ConnId(2), reason: CloseReason::PeerClosed }, &mut out);
        accept(&mut d, &mut out, 4);
        let got = feed(&mut d, &mut out, 4, hello_of(ProcKind::Game, 2, "k", 2));
        let placed: Vec<(ConnId, CreateBoot)> = got
            .into_iter()
            .filter_map(|(c, m)| match m {
                Got::Game(ToGame::CreateBoot(b)) => Some((c, b)),
                _ => None,
            })
            .collect();
        assert_eq!(
            placed,
            vec![(ConnId(1), CreateBoot { boot: boots[1].boot, gate: 1, client: boots[1].client, token: Id::NIL })]
        );
        assert_eq!(d.route_of(boots[1].boot), Some(1));
    }

    /// A create "anywhere" goes to the least-loaded live game, with that game patched into its
    /// header; the body is forwarded untouched.
    #[test]
    fn anywhere_goes_to_the_least_loaded_live_game() {
        let (mut d, mut out) = cluster();
        feed(&mut d, &mut out, 1, enc(&GameLoad { load: 10 }));
        feed(&mut d, &mut out, 2, enc(&GameLoad { load: 8 }));
        let mut placed = Vec::new();
        for i in 0..4u8 {
            let m = CreateEntity { id: Id([i; 16]), game: 0, type_name: "X".into(), space_kind: Some(i64::from(i)) };
            let got = feed(&mut d, &mut out, 1, enc(&m));
            let (conn, Got::Game(ToGame::CreateEntity(c))) = &got[0] else { panic!("{got:?}") };
            assert_eq!((c.game, c.id, c.space_kind), (conn.0 as u16, m.id, m.space_kind));
            placed.push(*conn);
        }
        // Game 2 (load 8) takes two placements until it reaches game 1's load, then they alternate.
        assert_eq!(placed, vec![ConnId(2), ConnId(2), ConnId(1), ConnId(2)]);
        d.handle(Instant::now(), Event::Closed { conn: ConnId(2), reason: CloseReason::PeerClosed }, &mut out);
        out.take_frames();
        let m = CreateEntity { id: Id([9; 16]), game: 0, type_name: "X".into(), space_kind: None };
        let got = feed(&mut d, &mut out, 1, enc(&m));
        assert_eq!(got[0].0, ConnId(1), "a dead game is never chosen");
    }

    /// Games hear of every gate that is up: at its handshake, and (a game linking later) right
    /// after their own `HelloAck`, for their deployment-ready hook.
    #[test]
    fn gate_up_reaches_every_game_even_one_that_links_later() {
        let mut d = DispatcherApp::new(&Config::parse(Path::new("t.ini"), CFG).expect("config"), 1);
        let mut out = Outbox::new();
        for c in 1..=3 {
            accept(&mut d, &mut out, c);
        }
        feed(&mut d, &mut out, 1, hello(ProcKind::Game, 1, "k"));
        let got = feed(&mut d, &mut out, 3, hello(ProcKind::Gate, 1, "k"));
        assert!(got.contains(&(ConnId(1), g(GateUp { gate: 1 }))), "broadcast to the linked game: {got:?}");
        let got = feed(&mut d, &mut out, 2, hello(ProcKind::Game, 2, "k"));
        assert!(got.contains(&(ConnId(2), g(GateUp { gate: 1 }))), "told to the game linking later: {got:?}");
    }

    #[test]
    fn gate_down_is_broadcast() {
        let (mut d, mut out) = cluster();
        d.handle(Instant::now(), Event::Closed { conn: GATE, reason: CloseReason::PeerClosed }, &mut out);
        let n = sent(&mut out).iter().filter(|(_, m)| *m == g(GateDown { gate: 1 })).count();
        assert_eq!(n, 2);
    }

    /// Client messages and filtered calls pass through to the gates as they came.
    #[test]
    fn client_messages_reach_the_gates() {
        let (mut d, mut out) = cluster();
        let tc = ToClients { gate: 1, clients: vec![Id([1; 16]), Id([2; 16])], payload: vec![0x84, 1, 2] };
        assert_eq!(feed(&mut d, &mut out, 1, enc(&tc)), vec![(GATE, Got::Gate(tc.into()))]);
        let to_missing_gate = ToClients { gate: 9, clients: vec![Id([1; 16])], payload: vec![1] };
        assert!(feed(&mut d, &mut out, 1, enc(&to_missing_gate)).is_empty());
        let fc = oxworld_net::msg::FilteredCall { gate: 1, ..Default::default() };
        assert_eq!(feed(&mut d, &mut out, 2, enc(&fc)), vec![(GATE, Got::Gate(fc.into()))]);
        let to_missing_gate = oxworld_net::msg::FilteredCall { gate: 9, ..Default::default() };
        assert!(feed(&mut d, &mut out, 2, enc(&to_missing_gate)).is_empty());
    }

    fn client_call(e: Id, n: u8) -> Call {
        Call { target: e, method: 1, caller: Caller::Client { gate: 1, client: Id([0xc0; 16]) }, args: vec![n] }
    }

    /// A migration: the entity's messages are held from the request until the entity arrives
    /// on the other game, then released there in order (a cancel releases them where it is).
    #[test]
    fn a_migrating_entitys_messages_are_held_then_follow_it() {
        let (mut d, mut out) = cluster();
        let e = Id([5; 16]);
        feed(&mut d, &mut out, 1, enc(&EntityCreated { id: e }));
        let got = feed(&mut d, &mut out, 1, enc(&MigrateRequest { entity: e }));
        assert_eq!(got, vec![(ConnId(1), g(MigrateAck { entity: e }))]);
        assert!(feed(&mut d, &mut out, 3, enc(&client_call(e, 1))).is_empty(), "held");
        let disc = ClientDisconnected { owner: e, gate: 1, client: Id([0xc0; 16]), resumable: false };
        assert!(feed(&mut d, &mut out, 3, enc(&disc)).is_empty(), "held");
        let mig = RealMigrate { entity: e, game: 2, data: vec![7; 9], delivered: vec![] };
        let got = feed(&mut d, &mut out, 1, enc(&mig));
        assert_eq!(got, vec![(ConnId(2), g(mig)), (ConnId(2), g(client_call(e, 1))), (ConnId(2), g(disc))]);
        assert_eq!(d.route_of(e), Some(2));
        feed(&mut d, &mut out, 2, enc(&MigrateRequest { entity: e }));
        assert!(feed(&mut d, &mut out, 3, enc(&client_call(e, 2))).is_empty());
        let got = feed(&mut d, &mut out, 2, enc(&CancelMigrate { entity: e }));
        assert_eq!(got, vec![(ConnId(2), g(client_call(e, 2)))]);
    }

    /// A migration whose entity never arrives: past the time bound its held calls are answered
    /// with an error and later calls follow the route again.
    #[test]
    fn a_migration_hold_past_its_time_bound_fails_its_calls() {
        let (mut d, mut out) = cluster();
        let e = Id([5; 16]);
        feed(&mut d, &mut out, 1, enc(&EntityCreated { id: e }));
        feed(&mut d, &mut out, 1, enc(&MigrateRequest { entity: e }));
        assert!(feed(&mut d, &mut out, 3, enc(&client_call(e, 1))).is_empty(), "held");
        let due = d.next_deadline().expect("the hold has a deadline");
        d.tick(due - Duration::from_millis(1), &mut out);
        assert!(sent(&mut out).is_empty(), "not yet");
        d.tick(due, &mut out);
        let got = sent(&mut out);
        assert!(
            matches!(got.as_slice(), [(GATE, e)] if matches!(client_error(e), Some(ServerMsg::Error { code, .. }) if code == ErrorCode::Unavailable as u16 )),
            "{got:?}"
        );
        assert_eq!(d.stats().migrations_expired, 1);
        let got = feed(&mut d, &mut out, 3, enc(&client_call(e, 2)));
        assert_eq!(got, vec![(ConnId(1), g(client_call(e, 2)))], "routed again");
    }

    /// Unauthenticated connections: capped in number (the oldest goes), closed when no Hello
    /// comes in time, frames capped until the handshake (raised when a Hello is accepted), and
    /// games and gates that completed it are never touched.
    #[test]
    fn pending_connections_are_capped_and_timed_out() {
        let text = format!("{CFG}[dispatcher_common]\nmax_pending_conns=3\nhandshake_timeout_ms=1000\n");
        let (mut d, mut out) = cluster_with(&text);
        let raised = out.take_limits();
        assert_eq!(raised.len(), 3, "each completed handshake raises its frame cap: {raised:?}");
        assert!(raised.iter().all(|(_, m)| *m == 32 << 20));
        sent(&mut out);
        let t0 = Instant::now();
        let peer = "127.0.0.1:9".parse().expect("addr");
        for c in 10..16 {
            d.handle(
                t0,
                Event::Accepted { conn: ConnId(c), listener: 0, peer, resume: false, session: false },
                &mut out,
            );
        }
        let closed: Vec<ConnId> = out.take_closes().into_iter().map(|(c, _)| c).collect();
        assert_eq!(closed, vec![ConnId(10), ConnId(11), ConnId(12)], "the oldest pending ones go");
        assert_eq!(d.next_deadline(), Some(t0 + Duration::from_secs(1)));
        // A gate that says Hello in time is promoted (replacing the old gate link).
        d.handle(t0, Event::Frame { conn: ConnId(15), data: hello(ProcKind::Gate, 1, "k"), at: None }, &mut out);
        assert_eq!(out.take_limits(), vec![(ConnId(15), 32 << 20)]);
        out.take_closes();
        sent(&mut out);
        d.tick(t0 + Duration::from_secs(1), &mut out);
        let closed: Vec<ConnId> = out.take_closes().into_iter().map(|(c, _)| c).collect();
        assert_eq!(closed, vec![ConnId(13), ConnId(14)], "no Hello in time");
        assert_eq!(d.stats().handshake_dropped, 5);
        assert_eq!(d.next_deadline(), None);
        // The games are still there.
        let e = Id([6; 16]);
        feed(&mut d, &mut out, 2, enc(&EntityCreated { id: e }));
        let got = feed(&mut d, &mut out, 15, enc(&client_call(e, 1)));
        assert_eq!(got, vec![(ConnId(2), g(client_call(e, 1)))]);
    }

    /// Game 2 freezes: its traffic (from the gate and from other games) is held, its link may
    /// close without the game being declared down, boots and placements skip it, and when the
    /// new binary says Hello it gets `Thawed` and then every held message in order.
    #[test]
    fn a_frozen_games_traffic_is_held_and_released_in_order() {
        let (mut d, mut out) = cluster();
        let e = Id([5; 16]);
        feed(&mut d, &mut out, 2, enc(&EntityCreated { id: e }));
        let got = feed(&mut d, &mut out, 2, enc(&FreezeGame {}));
        assert_eq!(got, vec![(ConnId(2), g(FreezeAck { dispatcher: 1 }))]);
        assert!(d.is_frozen(2));
        let mut want = Vec::new();
        for n in 0..5 {
            want.push(g(client_call(e, n)));
            assert!(feed(&mut d, &mut out, 3, enc(&client_call(e, n))).is_empty(), "held, not sent");
        }
        let from_game1 = Call { target: e, method: 2, caller: Caller::Server(Id([0x11; 16])), args: vec![] };
        assert!(feed(&mut d, &mut out, 1, enc(&from_game1)).is_empty());
        want.push(g(from_game1));
        // The old binary exits: no GameDown, the route stays.
        d.handle(Instant::now(), Event::Closed { conn: ConnId(2), reason: CloseReason::PeerClosed }, &mut out);
        assert!(out.take_frames().is_empty(), "nobody is told the game is down");
        assert_eq!(d.route_of(e), Some(2));
        // Meanwhile boots and anywhere-placements go to game 1 only.
        for i in 0..3u8 {
            let boot = ClientConnected { boot: Id([i + 60; 16]), gate: 1, client: Id([i; 16]), token: Id::NIL };
            assert_eq!(feed(&mut d, &mut out, 3, enc(&boot))[0].0, ConnId(1));
        }
        // The new binary connects.
        accept(&mut d, &mut out, 4);
        let got = feed(&mut d, &mut out, 4, hello(ProcKind::Game, 2, "k"));
        let to_new: Vec<Got> = got.iter().filter(|(c, _)| *c == ConnId(4)).map(|(_, m)| m.clone()).collect();
        assert!(
            matches!(&to_new[0], Got::Game(ToGame::HelloAck(a)) if a.games.contains(&1) && a.games.contains(&2)),
            "{to_new:?}"
        );
        assert_eq!(to_new[1], g(Thawed { dispatcher: 1, released: 6, failed: 0 }));
        assert_eq!(to_new[2], g(GateUp { gate: 1 }), "the gates before the held traffic (filtered calls need them)");
        assert_eq!(&to_new[3..9], &want[..]);
        assert!(!d.is_frozen(2));
        // Traffic flows directly again.
        let got = feed(&mut d, &mut out, 3, enc(&client_call(e, 9)));
        assert_eq!(got, vec![(ConnId(4), g(client_call(e, 9)))]);
    }

    /// Past the time bound, every held call is answered with an error to its sender (a client
    /// gets `Unavailable`, an entity gets `CallFailed`), the game is down, and its next Hello
    /// learns how many messages failed.
    #[test]
    fn a_hold_past_its_time_bound_answers_every_held_call_with_an_error() {
        let cfg = format!("{CFG}freeze_hold_timeout_s=2\n");
        let (mut d, mut out) = cluster_with(&cfg);
        let (e, caller) = (Id([5; 16]), Id([0x11; 16]));
        feed(&mut d, &mut out, 2, enc(&EntityCreated { id: e }));
        feed(&mut d, &mut out, 1, enc(&EntityCreated { id: caller }));
        feed(&mut d, &mut out, 2, enc(&FreezeGame {}));
        let t0 = Instant::now();
        feed(&mut d, &mut out, 3, enc(&client_call(e, 1)));
        feed(&mut d, &mut out, 1, enc(&Call { target: e, method: 2, caller: Caller::Server(caller), args: vec![] }));
        assert!(d.next_deadline().is_some_and(|t| t <= t0 + Duration::from_secs(2)));
        d.tick(t0 + Duration::from_millis(500), &mut out);
        assert!(out.take_frames().is_empty(), "still within the bound");
        d.tick(t0 + Duration::from_secs(3), &mut out);
        let got = sent(&mut out);
        let client_err = got.iter().find_map(|(c, m)| if *c == GATE { client_error(m) } else { None });
        assert!(
            matches!(client_err, Some(ServerMsg::Error { code, .. }) if code == ErrorCode::Unavailable as u16),
            "{got:?}"
        );
        assert!(
            got.iter().any(|(c, m)| *c == ConnId(1)
                && matches!(m, Got::Game(ToGame::CallFailed(f)) if f.to == caller && f.target == e && f.method == 2)),
            "{got:?}"
        );
        assert!(got.contains(&(ConnId(1), g(GameDown { game: 2 }))), "{got:?}");
        assert_eq!(d.route_of(e), None);
        assert!(!d.is_frozen(2));
        // The late binary still comes up and learns what failed.
        accept(&mut d, &mut out, 4);
        let got = feed(&mut d, &mut out, 4, hello(ProcKind::Game, 2, "k"));
        assert!(got.contains(&(ConnId(4), g(Thawed { dispatcher: 1, released: 0, failed: 2 }))), "{got:?}");
    }

    /// The memory bound: held bytes past `freeze_hold_max_bytes` fail the hold at once.
    #[test]
    fn a_hold_past_its_byte_bound_fails_at_once() {
        let cfg = format!("{CFG}freeze_hold_max_bytes=2048\n");
        let (mut d, mut out) = cluster_with(&cfg);
        let e = Id([5; 16]);
        feed(&mut d, &mut out, 2, enc(&EntityCreated { id: e }));
        feed(&mut d, &mut out, 2, enc(&FreezeGame {}));
        let big = |n: u8| Call {
            target: e,
            method: 1,
            caller: Caller::Client { gate: 1, client: Id([0xc0; 16]) },
            args: vec![n; 1000],
        };
        assert!(feed(&mut d, &mut out, 3, enc(&big(1))).is_empty());
        let got = feed(&mut d, &mut out, 3, enc(&big(2)));
        let errors = got.iter().filter(|(c, m)| *c == GATE && client_error(m).is_some()).count();
        assert_eq!(errors, 2, "both held calls answered: {got:?}");
        assert!(!d.is_frozen(2));
    }

    /// A load for an entity that already has a live route (even on a frozen game) makes no
    /// second copy; otherwise the route exists before the game loads it, and the chosen game
    /// is patched into the forwarded load.
    #[test]
    fn load_never_makes_a_second_copy() {
        let (mut d, mut out) = cluster();
        let e = Id([7; 16]);
        let load = LoadEntity { id: e, game: 0, type_name: "Avatar".into(), must_exist: true };
        let got = feed(&mut d, &mut out, 1, enc(&load));
        assert_eq!(got.len(), 1);
        let placed = d.route_of(e).expect("route recorded at once");
        assert_eq!(got[0].1, g(LoadEntity { game: placed, ..load.clone() }));
        assert!(feed(&mut d, &mut out, 2, enc(&load)).is_empty(), "second load ignored");
        let gc = u64::from(placed);
        feed(&mut d, &mut out, gc, enc(&FreezeGame {}));
        assert!(feed(&mut d, &mut out, 3 - gc, enc(&load)).is_empty(), "loaded on a frozen game: still one copy");
    }

    /// Answers and broadcasts meant for a game that is freezing are held like calls: the old
    /// process would drop them. (A migration started while its game froze hung forever.)
    #[test]
    fn answers_and_broadcasts_to_a_freezing_game_wait_for_its_restore() {
        let (mut d, mut out) = cluster();
        let (space, mover) = (Id([0x5a; 16]), Id([0x6b; 16]));
        feed(&mut d, &mut out, 1, enc(&EntityCreated { id: space }));
        feed(&mut d, &mut out, 2, enc(&EntityCreated { id: mover }));
        feed(&mut d, &mut out, 2, enc(&FreezeGame {}));
        // Game 2 is still draining its work and asks where a space is, and to migrate.
        assert!(feed(&mut d, &mut out, 2, enc(&QuerySpace { space, entity: mover })).is_empty());
        assert!(feed(&mut d, &mut out, 2, enc(&MigrateRequest { entity: mover })).is_empty());
        // Broadcasts meanwhile: a service registration by game 1, the gate going away.
        let reg = ServiceRegister { entity: Id([0x77; 16]), name: "Hub".into(), shard: 0 };
        let got = feed(&mut d, &mut out, 1, enc(&reg));
        assert!(got.iter().all(|(c, _)| *c != ConnId(2)), "nothing to the frozen process: {got:?}");
        d.handle(Instant::now(), Event::Closed { conn: GATE, reason: CloseReason::PeerClosed }, &mut out);
        assert!(sent(&mut out).iter().all(|(c, _)| *c != ConnId(2)));
        d.handle(Instant::now(), Event::Closed { conn: ConnId(2), reason: CloseReason::PeerClosed }, &mut out);
        accept(&mut d, &mut out, 4);
        let got: Vec<Got> = feed(&mut d, &mut out, 4, hello(ProcKind::Game, 2, "k"))
            .into_iter()
            .filter(|(c, _)| *c == ConnId(4))
            .map(|(_, m)| m)
            .collect();
        assert!(matches!(got[1], Got::Game(ToGame::Thawed(Thawed { released: 4, .. }))), "{got:?}");
        assert_eq!(got[2], g(SpaceGame { space, game: 1, entity: mover }));
        assert_eq!(got[3], g(MigrateAck { entity: mover }));
        assert!(matches!(&got[4], Got::Game(ToGame::ServiceUpdate(u)) if u.name == "Hub"));
        assert_eq!(got[5], g(GateDown { gate: 1 }));
    }

    /// Raw frames queued, with their headers (for kinds no direction enum of a peer decodes).
    fn raw(out: &mut Outbox) -> Vec<(ConnId, Header, Vec<u8>)> {
        out.take_frames()
            .into_iter()
            .flat_map(|(c, fs)| fs.into_iter().map(move |f| (c, Header::parse(&f).expect("header").0, f)))
            .collect()
    }

    /// Feeds a frame and leaves what it caused queued.
    fn push(d: &mut DispatcherApp, out: &mut Outbox, conn: u64, data: Vec<u8>) {
        d.handle(Instant::now(), Event::Frame { conn: ConnId(conn), data, at: None }, out);
    }

    fn numbered<M: Message>(m: &M, origin: u16, seq: u64) -> Vec<u8> {
        let mut f = m.to_frame(origin);
        Header::patch_seq(&mut f, seq, seq);
        f
    }

    /// A restarted dispatcher routes nothing until every game has announced its entities:
    /// a call sent again by a gate and a login asked again wait, then find what the games
    /// said (the login is not placed twice); a game that never links ends the wait at
    /// `game_lost_after_ms`.
    #[test]
    fn a_restarted_dispatcher_waits_for_every_games_entities_before_routing() {
        let mut d = DispatcherApp::new(&Config::parse(Path::new("t.ini"), CFG).expect("config"), 1);
        let mut out = Outbox::new();
        let t0 = Instant::now();
        for c in 1..=3 {
            accept(&mut d, &mut out, c);
        }
        feed(&mut d, &mut out, 3, hello(ProcKind::Gate, 1, "k"));
        feed(&mut d, &mut out, 1, hello(ProcKind::Game, 1, "k"));
        feed(&mut d, &mut out, 2, hello(ProcKind::Game, 2, "k"));
        let (player, boot) = (Id([7; 16]), Id([8; 16]));
        let call = numbered(&client_call(player, 1), 0x8001, 500);
        assert!(feed(&mut d, &mut out, 3, call.clone()).is_empty(), "held: nobody said where {player} is");
        let login = ClientConnected { boot, gate: 1, client: Id([9; 16]), token: Id::NIL };
        assert!(feed(&mut d, &mut out, 3, enc(&login)).is_empty(), "held too");
        feed(&mut d, &mut out, 1, enc(&Announce { last: true, entities: vec![boot] }));
        assert!(d.warmup.is_some(), "game 2 has not finished");
        push(&mut d, &mut out, 2, enc(&Announce { last: false, entities: vec![] }));
        let got = raw(&mut out);
        assert!(got.is_empty(), "{got:?}");
        push(&mut d, &mut out, 2, enc(&Announce { last: true, entities: vec![player] }));
        let got = raw(&mut out);
        assert_eq!(got.len(), 1, "the call, and no second boot: {got:?}");
        assert_eq!((got[0].0, &got[0].2), (ConnId(2), &call), "forwarded as it came, seq included");
        assert!(d.warmup.is_none());
        // A game that never links: the wait ends on time.
        let mut d = DispatcherApp::new(&Config::parse(Path::new("t.ini"), CFG).expect("config"), 1);
        accept(&mut d, &mut out, 1);
        feed(&mut d, &mut out, 1, hello(ProcKind::Game, 1, "k"));
        feed(&mut d, &mut out, 1, enc(&Announce { last: true, entities: vec![] }));
        let due = d.next_deadline().expect("a warm-up deadline");
        assert!(due > t0 && due <= Instant::now() + Duration::from_secs(2));
        d.tick(due, &mut out);
        assert!(d.warmup.is_none());
    }

    /// Acknowledgements go to the origin they name; what the dispatcher cannot deliver it
    /// settles itself (so the origin stops keeping it), and a create sent again for an entity
    /// that exists is dropped and settled.
    #[test]
    fn acks_are_forwarded_and_what_cannot_be_delivered_is_settled() {
        let (mut d, mut out) = cluster();
        let acks = Acks { origin: 0x8001, runs: vec![(40, 3)] };
        push(&mut d, &mut out, 1, acks.to_frame(1));
        let got = raw(&mut out);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].0, got[0].1.kind), (GATE, Kind::Acks), "to the gate the ack names");
        // A numbered client call to an unknown entity: an error to the client, settled.
        let nobody = Id([0x55; 16]);
        push(&mut d, &mut out, 3, numbered(&client_call(nobody, 1), 0x8001, 77));
        let got = raw(&mut out);
        let settled: Vec<Acks> = got
            .iter()
            .filter(|(_, h, _)| h.kind == Kind::Acks)
            .map(|(c, _, f)| {
                assert_eq!(*c, GATE);
                Acks::decode(f).expect("acks")
            })
            .collect();
        assert_eq!(settled, vec![Acks { origin: 0x8001, runs: vec![(77, 1)] }]);
        assert!(got.iter().any(|(c, h, _)| *c == GATE && h.kind == Kind::ToClients), "and the client hears why");
        // A create sent again for an entity that lives: dropped, settled.
        let e = Id([0x66; 16]);
        feed(&mut d, &mut out, 2, enc(&EntityCreated { id: e }));
        let create = CreateEntity { id: e, game: 0, type_name: "M".into(), ..Default::default() };
        push(&mut d, &mut out, 1, numbered(&create, 1, 9));
        let got = raw(&mut out);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].0, got[0].1.kind), (ConnId(1), Kind::Acks));
    }
}
