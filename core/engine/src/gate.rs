//! The gate: holds client connections, turns client messages into routed internal messages and
//! delivers what games send to clients. A sans-IO [`App`].
//!
//! LIFECYCLE of a client: accepted -> `Welcome` sent and `ClientConnected` routed to the boot
//! entity's dispatcher -> the game's `CreateEntity(is_player)` makes that entity the owner ->
//! calls flow -> on close, `ClientDisconnected` goes to the owner's game. A client may only
//! address entities it has been sent a create for; a malformed message closes that client only.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use log::{debug, info, warn};
use oxworld_net::app::{App, CloseReason, ConnId, ConnOpts, Event, Outbox, Signal};
use oxworld_net::client_proto::{CLIENT_PROTOCOL_VERSION, ClientMsg, ErrorCode, ServerMsg};
use oxworld_net::config::{Config, GateConfig};
use oxworld_net::msg::trace::Trace;
use oxworld_net::msg::{
    Call, Caller, ClientConnected, ClientDisconnected, ClientMove, FLAG_TRACED, FilteredCall, GameLost, Kind, Message,
    PlayerAt, ProcKind, SetFilterProp, ToClients, ToGate,
};
use oxworld_net::ratelog::RateLog;
use oxworld_net::value::encode_args;
use oxworld_net::{Id, IdGen, IdSeed};
use rustc_hash::FxHashMap;

mod loss;
mod resume;

use crate::gather::Gather;
use crate::links::{LinkEvent, Links};
use crate::ratelimit::{ClientLimits, Limited, Verdict};
use crate::slowcalls::GateTracer;
use crate::status::{ProcState, Report};

/// Entities one client may know at once; a game that creates more for one client is buggy,
/// and the gate stops tracking (and so refuses calls to) the excess.
pub const MAX_KNOWN_PER_CLIENT: usize = 100_000;

struct Client {
    id: Id,
    /// Its resume token (`Session`), bound to its player with it.
    token: Id,
    /// Where it stands with resuming a session (see `gate::resume`).
    resume: resume::ResumeState,
    owner: Option<Id>,
    /// The boot entity asked for it (at connect, or after its player was lost), and whether a
    /// player was created for it since: a dispatcher that restarted may have lost the request,
    /// so it is asked again when that link is back.
    boot: Id,
    booted: bool,
    /// The game that runs the owner: the origin of the last message other than an `Error`
    /// that reached this client (every such message comes from the player's game, which also
    /// computes its view; an `Error` comes from a call's target). When a dispatcher says that
    /// game is lost, this client's player is gone.
    owner_game: u16,
    /// When `owner_game` was last set.
    owner_since: Instant,
    /// Filter properties set by the game (`call_filtered_clients`).
    props: HashMap<String, String>,
    /// Entities this client was told about; ids are chosen by clients when they call, so a
    /// SipHash set (not Fx) keeps hostile probes from degrading it.
    known: HashSet<Id>,
    /// When the client last sent anything (heartbeats included).
    last_heard: Instant,
    /// The gate is closing it (its `Closed` event has not come yet): told once, closed once.
    closing: bool,
    /// Closed for saying nothing in time: lost rather than gone (its session may resume).
    idle: bool,
    /// Its call and move rate limits.
    limits: ClientLimits,
    /// The listener it came through (index into `GateApp::transports`).
    listener: usize,
}

impl GateStats {
    /// Counts one error the gate sent a client.
    fn error(&mut self, code: ErrorCode) {
        if let Some(n) = self.client_errors.get_mut(code as usize) {
            *n += 1;
        }
    }
}

/// Counters a gate keeps.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GateStats {
    /// Client connections accepted.
    pub accepted: u64,
    /// Calls forwarded to dispatchers.
    pub calls: u64,
    /// Client messages refused (malformed, unaddressable target).
    pub refused: u64,
    /// Messages from dispatchers that did not decode (dropped).
    pub malformed_internal: u64,
    /// Clients closed for sending nothing within `heartbeat_timeout`.
    pub idle: u64,
    /// Clients closed because their entity kicked them (`ErrorCode::Kicked`).
    pub kicked: u64,
    /// Clients whose player entity was lost with its game (told `PlayerLost`, given a new
    /// boot entity).
    pub players_lost: u64,
    /// Client messages (and their bytes) received: calls, heartbeats, moves, undecodable,
    /// resumes.
    pub client_msgs: [u64; 5],
    /// Errors the gate itself sent to clients, by error code (index = code).
    pub client_errors: [u64; 16],
    /// Bytes of those messages.
    pub client_bytes: [u64; 5],
    /// Messages from the cluster delivered to clients (one per recipient), and their bytes.
    pub delivered: u64,
    /// Bytes of those messages (before the channel's framing, compression and encryption).
    pub delivered_bytes: u64,
    /// Client messages dropped by the rate limits.
    pub rate_limited: u64,
    /// Clients disconnected for going on past the rate limits.
    pub rate_disconnected: u64,
}

/// One gate's state.
pub struct GateApp {
    cfg: GateConfig,
    links: Links,
    ids: IdGen,
    clock_base: (Instant, u64),
    clients: FxHashMap<ConnId, Client>,
    /// Client ids are the gate's own (random), looked up for internal messages: Fx is safe.
    by_client: FxHashMap<Id, ConnId>,
    /// Each game's incarnation last reported lost, and when first (see
    /// [`GateApp::on_game_lost`]).
    games_lost: FxHashMap<u16, (u64, Instant)>,
    stats: GateStats,
    pending_moves: FxHashMap<Id, (Id, [f32; 4])>,
    /// When to look for clients past `heartbeat_timeout` next.
    next_idle_check: Instant,
    /// Write gathering for clients (`client_flush`).
    gather: Gather,
    /// The transport of each client listener, by listener index.
    transports: Vec<&'static str>,
    /// Time of the event or tick being handled.
    now: Instant,
    /// Per-client problems are logged at most once a second.
    client_log: RateLog,
    /// Which calls are traced, and what their replies measured.
    tracer: GateTracer,
    done: bool,
    fatal: Option<String>,
}

/// How often the gate looks for idle clients: a quarter of the timeout, within 50 ms to 1 s.
fn idle_check_every(timeout: std::time::Duration) -> std::time::Duration {
    (timeout / 4).clamp(std::time::Duration::from_millis(50), std::time::Duration::from_secs(1))
}

/// The error a call gets when no destination acknowledged it within the bounds.
pub(crate) const GIVEN_UP: &str = "not acknowledged within unacked_timeout_s: it may or may not have run";

/// Limits of a client connection.
pub fn client_opts(g: &GateConfig) -> ConnOpts {
    ConnOpts { max_frame: g.max_client_frame, max_queued: g.client_queue_limit }
}

impl GateApp {
    /// Gate `gc` of the cluster `cfg`; `seed` seeds client ids, `clock_base` pairs an instant
    /// with Unix ms.
    pub fn new(cfg: &Config, gc: &GateConfig, seed: impl Into<IdSeed>, clock_base: (Instant, u64)) -> Self {
        let id = gc.id;
        let gc = gc.clone();
        let tracer = GateTracer::new(gc.id, gc.trace_sample, gc.slow_call);
        let transports =
            std::iter::once("tcp").chain(gc.ws_addr.map(|_| "ws")).chain(gc.kcp_addr.map(|_| "kcp")).collect();
        let flush_period = gc.client_flush;
        let max_held = gc.client_queue_limit / 2;
        let links = Links::new(format!("gate{id}"), ProcKind::Gate, id, cfg, clock_base.0, clock_base.1);
        GateApp {
            cfg: gc,
            links,
            ids: IdGen::new(seed),
            clock_base,
            clients: FxHashMap::default(),
            by_client: FxHashMap::default(),
            games_lost: FxHashMap::default(),
            stats: GateStats::default(),
            pending_moves: FxHashMap::default(),
            next_idle_check: clock_base.0,
            gather: Gather::new(flush_period, max_held),
            transports,
            now: clock_base.0,
            client_log: RateLog::per_second(),
            tracer,
            done: false,
            fatal: None,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &GateStats {
        &self.stats
    }

    /// Number of connected clients.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    fn unix_ms(&self, now: Instant) -> u64 {
        let (start, base) = self.clock_base;
        base + u64::try_from(now.saturating_duration_since(start).as_millis()).unwrap_or(0)
    }

    fn reply(out: &mut Outbox, conn: ConnId, msg: &ServerMsg) {
        out.send_with(conn, |b| msg.encode(b));
    }

    /// A client connected; `(resume, session)`: what its hello offered (revision 2.2).
    fn on_accept(&mut self, now: Instant, conn: ConnId, listener: usize, features: (bool, bool), out: &mut Outbox) {
        let (resume, session) = features;
        // Each transport's listener stops at `max_clients`; this bounds them together.
        if self.clients.len() >= self.cfg.max_clients {
            out.close(conn, "the gate is at max_clients");
            return;
        }
        let ms = self.unix_ms(now);
        let client = self.ids.next(ms);
        let boot = self.ids.next(ms);
        let token = self.ids.secret();
        self.stats.accepted += 1;
        let c = Client {
            id: client,
            token,
            resume: if resume { resume::ResumeState::Awaiting } else { resume::ResumeState::No },
            owner: None,
            boot,
            booted: false,
            owner_game: 0,
            owner_since: now,
            props: HashMap::new(),
            known: HashSet::new(),
            last_heard: now,
            closing: false,
            idle: false,
            limits: ClientLimits::new(&self.cfg, now),
            listener,
        };
        self.clients.insert(conn, c);
        self.by_client.insert(client, conn);
        let idle_ms = u32::try_from(self.cfg.heartbeat_timeout.as_millis()).unwrap_or(u32::MAX);
        Self::reply(
            out,
            conn,
            &ServerMsg::Welcome { version: CLIENT_PROTOCOL_VERSION, client, idle_timeout_ms: idle_ms },
        );
        if session {
            Self::reply(out, conn, &ServerMsg::Session { token });
        }
        if !resume {
            // A client that resumes gets a boot entity only if its `Resume` fails.
            let d = boot.dispatcher_index(self.links.len());
            self.links.send(d, &ClientConnected { boot, gate: self.cfg.id, client, token }, out);
        }
    }

    fn on_client_frame(&mut self, conn: ConnId, data: &[u8], at: Option<Instant>, out: &mut Outbox) {
        let Some(c) = self.clients.get_mut(&conn) else {
            return;
        };
        c.last_heard = self.now;
        let msg = ClientMsg::decode(data);
        let kind = match &msg {
            Ok(ClientMsg::Call { .. }) => 0,
            Ok(ClientMsg::Heartbeat) => 1,
            Ok(ClientMsg::Move { .. }) => 2,
            Err(_) => 3,
            Ok(ClientMsg::Resume { .. }) => 4,
        };
        self.stats.client_msgs[kind] += 1;
        self.stats.client_bytes[kind] += data.len() as u64;
        if (!c.resume.is_no() || kind == 4) && self.resume_step(conn, &msg, out) {
            return;
        }
        let Some(c) = self.clients.get_mut(&conn) else {
            return;
        };
        let limited = match &msg {
            Ok(ClientMsg::Call { .. }) => Some(Limited::Call),
            Ok(ClientMsg::Move { .. }) => Some(Limited::Move),
            _ => None,
        };
        if let Some(kind) = limited {
            match c.limits.admit(kind, self.now) {
                Verdict::Pass => {}
                Verdict::Refuse => {
                    self.stats.rate_limited += 1;
                    let (target, method) = match &msg {
                        Ok(ClientMsg::Call { target, method, .. }) => (*target, *method),
                        Ok(ClientMsg::Move { id, .. }) => (*id, 0),
                        _ => (Id::NIL, 0),
                    };
                    self.stats.error(ErrorCode::RateLimited);
                    let err = ServerMsg::error(ErrorCode::RateLimited, target, method, "over the rate limit; dropped");
                    Self::reply(out, conn, &err);
                    return;
                }
                Verdict::Disconnect => {
                    self.stats.rate_limited += 1;
                    self.stats.rate_disconnected += 1;
                    let id = c.id;
                    if let Some(left_out) = self.client_log.allow(self.now) {
                        info!(
                            "gate{}: client {id} keeps going past its rate limit; closing it ({left_out} similar left out)",
                            self.cfg.id
                        );
                    }
                    self.drop_client(conn, ErrorCode::RateLimited, "too many messages over the rate limit", out);
                    return;
                }
            }
        }
        let c = &*c;
        match msg {
            // Handled by `resume_step`.
            Ok(ClientMsg::Heartbeat | ClientMsg::Resume { .. }) => {}
            Ok(ClientMsg::Move { id, pos }) => {
                if ![pos.x, pos.y, pos.z, pos.yaw].iter().all(|v| v.is_finite()) {
                    self.stats.refused += 1;
                    self.stats.error(ErrorCode::InvalidPosition);
                    let err = ServerMsg::error(ErrorCode::InvalidPosition, id, 0, "position is not finite");
                    Self::reply(out, conn, &err);
                    return;
                }
                if c.owner != Some(id) {
                    self.stats.refused += 1;
                    self.stats.error(ErrorCode::NotAddressable);
                    let err =
                        ServerMsg::error(ErrorCode::NotAddressable, id, 0, "a client may only move its own entity");
                    Self::reply(out, conn, &err);
                    return;
                }
                // Coalesced: only the latest position per entity is forwarded each loop turn.
                self.pending_moves.insert(id, (c.id, [pos.x, pos.y, pos.z, pos.yaw]));
            }
            Ok(ClientMsg::Call { target, method, args }) => {
                if !c.known.contains(&target) {
                    self.stats.refused += 1;
                    self.stats.error(ErrorCode::NotAddressable);
                    let err =
                        ServerMsg::error(ErrorCode::NotAddressable, target, method, "entity not known to this client");
                    Self::reply(out, conn, &err);
                    return;
                }
                let mut enc = Vec::new();
                encode_args(&args, &mut enc);
                let msg =
                    Call { target, method, caller: Caller::Client { gate: self.cfg.id, client: c.id }, args: enc };
                self.stats.calls += 1;
                let d = target.dispatcher_index(self.links.len());
                match self.tracer.sample(self.now.saturating_duration_since(at.unwrap_or(self.now))) {
                    None => self.links.send(d, &msg, out),
                    Some(trace) => self.links.send_with(
                        d,
                        Kind::Call,
                        |origin, b| {
                            let start = b.len();
                            msg.encode(origin, b);
                            trace.stamp(&mut b[start..]);
                        },
                        out,
                    ),
                }
                self.gather.expedite(conn, self.now);
            }
            Err(e) => {
                self.stats.refused += 1;
                if let Some(left_out) = self.client_log.allow(self.now) {
                    info!(
                        "gate{}: client {} sent a malformed message ({e}); closing it ({left_out} similar left out)",
                        self.cfg.id, c.id
                    );
                }
                self.drop_client(conn, ErrorCode::Malformed, &format!("malformed message: {e}"), out);
            }
        }
    }

    fn on_client_closed(&mut self, conn: ConnId, reason: &CloseReason, out: &mut Outbox) {
        self.gather.forget(conn);
        let Some(c) = self.clients.remove(&conn) else {
            return;
        };
        self.by_client.remove(&c.id);
        match reason {
            CloseReason::PeerClosed => debug!("gate{}: client {} left", self.cfg.id, c.id),
            r => info!("gate{}: client {} dropped: {r}", self.cfg.id, c.id),
        }
        if let Some(owner) = c.owner {
            // Lost, not left: its session may resume on another connection.
            let resumable = c.idle || matches!(reason, CloseReason::Io(_) | CloseReason::QueueFull(_));
            let msg = ClientDisconnected { owner, gate: self.cfg.id, client: c.id, resumable };
            self.links.send(owner.dispatcher_index(self.links.len()), &msg, out);
        }
    }

    /// A message from a dispatcher; `origin` is its header's (the sending game for
    /// `ToClients`).
    fn on_dispatcher_msg(&mut self, msg: ToGate, origin: u16, out: &mut Outbox) {
        match msg {
            ToGate::GameLost(GameLost { game, incarnation }) => self.on_game_lost(game, incarnation, out),
            ToGate::PlayerAt(PlayerAt { client, entity, .. }) => {
                if let Some(game) = oxworld_net::msg::game_of_origin(origin)
                    && let Some(c) = self.by_client.get(&client).and_then(|conn| self.clients.get_mut(conn))
                    && c.owner == Some(entity)
                {
                    c.owner_game = game;
                    c.owner_since = self.now;
                }
            }
            ToGate::SetFilterProp(SetFilterProp { client, key, value, .. }) => {
                if let Some(c) = self.by_client.get(&client).and_then(|conn| self.clients.get_mut(conn)) {
                    if value.is_empty() {
                        c.props.remove(&key);
                    } else {
                        c.props.insert(key, value);
                    }
                }
            }
            ToGate::FilteredCall(fc) => self.on_filtered_call(fc, out),
            ToGate::ResumeRefused(m) => self.on_resume_refused(&m, out),
            ToGate::ToClients(ToClients { clients, payload, .. }) => {
                let peek = ServerMsg::peek_entity(&payload);
                for client in clients {
                    self.deliver(client, peek, &payload, origin, out);
                }
            }
            ToGate::HelloAck(_) | ToGate::Refused(_) => {
                debug!("gate{}: handshake message after the handshake; ignored", self.cfg.id);
            }
        }
    }

    /// Calls the method on the player entity of every matching client: checked once, encoded
    /// once; each client gets a copy with its owner's id.
    fn on_filtered_call(&mut self, fc: FilteredCall, out: &mut Outbox) {
        let FilteredCall { key, op, value, method, args, .. } = fc;
        let mut r = oxworld_net::wire::Reader::new(&args);
        if let Err(e) = oxworld_net::value::decode_args(&mut r).and_then(|_| r.finish()) {
            warn!("gate{}: filtered call {method} with undecodable arguments: {e}", self.cfg.id);
            return;
        }
        let template = ServerMsg::call_template(&method, &args);
        let id_at = oxworld_net::client_proto::CALL_ID_RANGE;
        for (&conn, c) in &self.clients {
            let Some(owner) = c.owner else { continue };
            let hit = key.is_empty() || c.props.get(&key).is_some_and(|p| op.matches(p, &value));
            if !hit {
                continue;
            }
            self.stats.delivered += 1;
            self.stats.delivered_bytes += template.len() as u64;
            if self.gather.now_or_hold(conn, self.now, out) {
                out.send_with(conn, |b| {
                    let at = b.len();
                    b.extend_from_slice(&template);
                    b[at + id_at.start..at + id_at.end].copy_from_slice(&owner.0);
                });
            } else {
                let mut m = template.clone();
                m[id_at.clone()].copy_from_slice(&owner.0);
                self.gather.hold(conn, m, out);
            }
        }
    }

    /// Delivers one game message (`payload`, whose entity `peek` describes) to `client`,
    /// tracking which entities it may address and which one it owns.
    fn deliver(&mut self, client: Id, peek: Option<(bool, bool, Id)>, payload: &[u8], origin: u16, out: &mut Outbox) {
        let Some(&conn) = self.by_client.get(&client) else {
            // The client left before its owner was created: tell the owner's game now.
            if let Some((true, true, owner)) = peek {
                let msg = ClientDisconnected { owner, gate: self.cfg.id, client, resumable: false };
                self.links.send(owner.dispatcher_index(self.links.len()), &msg, out);
            }
            return;
        };
        if let Some(game) = oxworld_net::msg::game_of_origin(origin)
            && !ServerMsg::is_error(payload)
            && let Some(c) = self.clients.get_mut(&conn)
        {
            // Follows the player across migrations (which the client never sees).
            c.owner_game = game;
            c.owner_since = self.now;
        }
        if let (Some((is_create, is_player, id)), Some(c)) = (peek, self.clients.get_mut(&conn)) {
            if is_create {
                if c.known.len() < MAX_KNOWN_PER_CLIENT {
                    c.known.insert(id);
                }
                if is_player {
                    // A resume that asked for it succeeded.
                    c.resume = resume::ResumeState::No;
                    // A client handed to another entity starts with no filter properties (as in
                    // GoWorld): the new owner sets its own.
                    if c.owner.is_some_and(|o| o != id) {
                        c.props.clear();
                    }
                    c.owner = Some(id);
                    c.booted = true;
                }
            } else {
                c.known.remove(&id);
                if c.owner == Some(id) {
                    c.owner = None;
                }
            }
        }
        if ServerMsg::is_kick(payload) {
            // The game let go of this client and tells it why: what was held goes first, then
            // the connection closes and nothing else may reach it.
            if let Some(c) = self.clients.get_mut(&conn)
                && !std::mem::replace(&mut c.closing, true)
            {
                self.stats.kicked += 1;
                self.gather.flush_conn(conn, out);
                out.send(conn, payload);
                out.close(conn, "kicked by its entity".to_owned());
            }
            return;
        }
        self.send_client(conn, payload, out);
    }

    /// Tells client `conn` why (an `Error` with `code`) and closes it, once.
    fn drop_client(&mut self, conn: ConnId, code: ErrorCode, why: &str, out: &mut Outbox) {
        let Some(c) = self.clients.get_mut(&conn) else { return };
        if std::mem::replace(&mut c.closing, true) {
            return;
        }
        self.stats.error(code);
        Self::reply(out, conn, &ServerMsg::error(code, Id::NIL, 0, why));
        out.close(conn, why.to_owned());
    }

    /// Closes every client that sent nothing for `heartbeat_timeout`, telling it so.
    fn drop_idle(&mut self, now: Instant, out: &mut Outbox) {
        let timeout = self.cfg.heartbeat_timeout;
        let idle: Vec<ConnId> = self
            .clients
            .iter()
            .filter(|(_, c)| !c.closing && now.saturating_duration_since(c.last_heard) > timeout)
            .map(|(conn, _)| *conn)
            .collect();
        for conn in idle {
            self.stats.idle += 1;
            if let Some(c) = self.clients.get_mut(&conn) {
                c.idle = true;
            }
            let why = format!("no message from the client for {} ms (send Heartbeat)", timeout.as_millis());
            self.drop_client(conn, ErrorCode::Idle, &why, out);
        }
    }

    /// Sends a game's message to a client: at once, or with the next flush.
    fn send_client(&mut self, conn: ConnId, payload: &[u8], out: &mut Outbox) {
        self.stats.delivered += 1;
        self.stats.delivered_bytes += payload.len() as u64;
        if self.gather.now_or_hold(conn, self.now, out) {
            out.send(conn, payload);
        } else {
            self.gather.hold(conn, payload.to_vec(), out);
        }
    }
}

impl App for GateApp {
    fn handle(&mut self, now: Instant, event: Event, out: &mut Outbox) {
        self.now = now;
        self.gather.roll(now, false, out);
        match event {
            Event::Accepted { conn, listener, resume, session, .. } => {
                self.on_accept(now, conn, listener, (resume, session), out);
            }
            Event::Connected { conn } => self.links.on_connected(conn, out, |_| Vec::new()),
            Event::Frame { conn, data, at } => {
                if !self.links.owns(conn) {
                    self.on_client_frame(conn, &data, at, out);
                    return;
                }
                match self.links.on_frame(conn, &data, out) {
                    Ok(Some((d, LinkEvent::Frame(h, body)))) => match ToGate::decode_parts(&h, body) {
                        Ok(ToGate::ToClients(tc)) if h.flags & FLAG_TRACED != 0 => {
                            let client = tc.clients.first().copied();
                            self.on_dispatcher_msg(ToGate::ToClients(tc), h.origin, out);
                            let waited = now.saturating_duration_since(at.unwrap_or(now));
                            self.tracer.on_reply(now, Trace::from_u64(h.trace), waited, client);
                        }
                        Ok(m) => self.on_dispatcher_msg(m, h.origin, out),
                        Err(e) => {
                            // One bad message from a peer past the handshake: dropped, the link
                            // (whose framing is intact) stays.
                            self.stats.malformed_internal += 1;
                            warn!(
                                "gate{}: dispatcher{} sent a message that does not decode ({e}); dropped",
                                self.cfg.id,
                                d + 1
                            );
                        }
                    },
                    Ok(Some((d, LinkEvent::Up { .. }))) => self.ask_boots_again(d, out),
                    Ok(_) => {}
                    Err(refused) => {
                        self.fatal = Some(refused.to_string());
                        self.done = true;
                    }
                }
            }
            Event::Closed { conn, reason } => {
                if !self.links.on_closed(conn, &reason, now) {
                    self.on_client_closed(conn, &reason, out);
                }
            }
            Event::Signal(Signal::Terminate) => {
                info!("gate{}: stopping; closing {} clients", self.cfg.id, self.clients.len());
                self.gather.roll(now, true, out);
                let bye = ServerMsg::error(ErrorCode::Unavailable, Id::NIL, 0, "the gate is stopping");
                for (&conn, c) in &self.clients {
                    if let Some(owner) = c.owner {
                        // A gate that stops (a rolling restart): its clients resume elsewhere.
                        let msg = ClientDisconnected { owner, gate: self.cfg.id, client: c.id, resumable: true };
                        self.links.send(owner.dispatcher_index(self.links.len()), &msg, out);
                    }
                    Self::reply(out, conn, &bye);
                    out.close(conn, "gate stopping");
                }
                self.clients.clear();
                self.by_client.clear();
                self.done = true;
            }
            Event::Signal(Signal::Hangup) => info!("gate{}: SIGHUP ignored", self.cfg.id),
            Event::Wake => {}
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox) {
        self.links.tick(now, out);
        for frame in self.links.take_given_up() {
            if let Ok(Call { target, method, caller: Caller::Client { client, .. }, .. }) = Call::decode(&frame)
                && let Some(&conn) = self.by_client.get(&client)
            {
                self.stats.error(ErrorCode::Unavailable);
                let err = ServerMsg::error(ErrorCode::Unavailable, target, method, GIVEN_UP);
                Self::reply(out, conn, &err);
            }
        }
        self.now = now;
        self.gather.tick(now, out);
        let n = self.links.len();
        let gate = self.cfg.id;
        for (id, (client, pos)) in self.pending_moves.drain() {
            self.links.send(id.dispatcher_index(n), &ClientMove { id, gate, client, pos }, out);
        }
        if now >= self.next_idle_check {
            self.next_idle_check = now + idle_check_every(self.cfg.heartbeat_timeout);
            self.drop_idle(now, out);
            self.resume_timeouts(now, out);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        // A period with nothing held needs no wake-up: it is only bookkeeping.
        let flush = if self.gather.held.is_empty() { None } else { self.gather.period_end };
        let idle = (!self.clients.is_empty()).then_some(self.next_idle_check);
        [self.links.next_deadline(), flush, idle].into_iter().flatten().min()
    }

    fn done(&self) -> bool {
        self.done
    }
}

impl Report for GateApp {
    fn holds(&self) -> Option<(&'static str, u64)> {
        Some(("clients", self.clients.len() as u64))
    }

    fn state(&self) -> ProcState {
        if self.done {
            ProcState::Stopping
        } else if self.links.all_ready() {
            ProcState::Ready
        } else {
            ProcState::Starting
        }
    }

    fn fatal(&self) -> Option<&str> {
        self.fatal.as_deref()
    }
}

impl crate::metrics::Metrics for GateApp {
    fn metrics(&self, m: &mut crate::metrics::MetricSet) {
        self.links.metrics(m);
        let st = &self.stats;
        let mut per = vec![0u64; self.transports.len()];
        for c in self.clients.values() {
            if let Some(n) = per.get_mut(c.listener) {
                *n += 1;
            }
        }
        for (t, n) in self.transports.iter().zip(per) {
            m.gauge("clients", "Client connections this gate holds, by transport", &[("transport", t)], n as f64);
        }
        for (code, n) in st.client_errors.iter().enumerate().filter(|(_, n)| **n > 0) {
            let name = ErrorCode::from_u16(code as u16).map(|c| format!("{c:?}")).unwrap_or_else(|| code.to_string());
            m.counter("client_errors_total", "Errors the gate sent to clients, by code", &[("code", &name)], *n);
        }
        for (i, kind) in ["call", "heartbeat", "move", "undecodable", "resume"].iter().enumerate() {
            let labels = [("kind", *kind)];
            m.counter("client_msgs_in_total", "Client messages received, by kind", &labels, st.client_msgs[i]);
            m.counter(
                "client_bytes_in_total",
                "Bytes of client messages received, by kind",
                &labels,
                st.client_bytes[i],
            );
        }
        self.tracer.metrics(m);
        m.counter("client_msgs_out_total", "Messages from the cluster delivered to clients", &[], st.delivered);
        m.counter(
            "client_bytes_out_total",
            "Bytes of messages delivered to clients (before framing, compression, encryption)",
            &[],
            st.delivered_bytes,
        );
        m.counter("clients_accepted_total", "Client connections accepted", &[], st.accepted);
        m.counter("client_calls_total", "Calls from clients forwarded to the cluster", &[], st.calls);
        m.counter("client_refused_total", "Client messages refused (malformed, not addressable)", &[], st.refused);
        m.counter("clients_idle_total", "Clients closed for sending nothing", &[], st.idle);
        m.counter("clients_kicked_total", "Clients closed because their entity kicked them", &[], st.kicked);
        m.counter(
            "players_lost_total",
            "Clients whose player entity was lost with its game (told PlayerLost, given a new boot entity)",
            &[],
            st.players_lost,
        );
        m.counter("rate_limited_total", "Client messages dropped by the rate limits", &[], st.rate_limited);
        m.counter(
            "rate_disconnected_total",
            "Clients disconnected for going on past the rate limits",
            &[],
            st.rate_disconnected,
        );
        m.counter(
            "malformed_internal_total",
            "Messages from dispatchers that did not decode",
            &[],
            st.malformed_internal,
        );
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use std::path::Path;

    use oxworld_net::Value;
    use std::time::Duration;

    use oxworld_net::msg::{FilterOp, FromGate, HelloAck, Message, ResumeRefused};

    use super::*;

    const CFG: &str = "[deployment]\ndesired_dispatchers=2\ndesired_games=1\ndesired_gates=1\nsecret=k\n";

    struct Fixture {
        gate: GateApp,
        out: Outbox,
        links: Vec<ConnId>,
        now: Instant,
    }

    /// A gate whose two dispatcher links completed their handshake.
    fn fixture() -> Fixture {
        fixture_with(CFG)
    }

    fn fixture_with(text: &str) -> Fixture {
        let cfg = Config::parse(Path::new("t.ini"), text).expect("config");
        let now = Instant::now();
        let mut gate = GateApp::new(&cfg, cfg.gate(1).expect("gate 1"), 7, (now, 1_700_000_000_000));
        let mut out = Outbox::new();
        gate.tick(now, &mut out);
        let links: Vec<ConnId> = out.take_connects().into_iter().map(|(c, _, _)| c).collect();
        for &l in &links {
            gate.handle(now, Event::Connected { conn: l }, &mut out);
            let ack = HelloAck { dispatcher: 1, games: vec![] }.to_frame(0);
            gate.handle(now, Event::Frame { conn: l, data: ack, at: None }, &mut out);
        }
        out.take_frames();
        Fixture { gate, out, links, now }
    }

    impl Fixture {
        fn accept(&mut self, conn: u64) -> (Id, Id) {
            let peer = "127.0.0.1:9".parse().expect("addr");
            self.gate.handle(
                self.now,
                Event::Accepted { conn: ConnId(conn), listener: 0, peer, resume: false, session: false },
                &mut self.out,
            );
            let mut client = Id::NIL;
            let mut boot = Id::NIL;
            for (_, frames) in self.out.take_frames() {
                for f in frames {
                    if let Ok(ServerMsg::Welcome { client: c, .. }) = ServerMsg::decode(&f) {
                        client = c;
                    } else if let Ok(FromGate::ClientConnected(cc)) = FromGate::decode(&f) {
                        boot = cc.boot;
                    }
                }
            }
            (client, boot)
        }

        fn deliver(&mut self, client: Id, m: &ServerMsg) {
            self.deliver_to(&[client], m);
        }

        /// One game message for several clients, as a game fans it out.
        fn deliver_to(&mut self, clients: &[Id], m: &ServerMsg) {
            self.deliver_from(1, clients, m);
        }

        /// The same from game `game` (the header's origin).
        fn deliver_from(&mut self, game: u16, clients: &[Id], m: &ServerMsg) {
            let mut payload = Vec::new();
            m.encode(&mut payload);
            let data = ToClients { gate: 1, clients: clients.to_vec(), payload }.to_frame(game);
            self.gate.handle(self.now, Event::Frame { conn: self.links[0], data, at: None }, &mut self.out);
        }

        /// Takes the queued output and decodes what went to client connection `conn`.
        fn take_client_msgs(&mut self, conn: u64) -> Vec<ServerMsg> {
            self.out
                .take_frames()
                .into_iter()
                .filter(|(c, _)| *c == ConnId(conn))
                .flat_map(|(_, fs)| fs.into_iter().map(|b| ServerMsg::decode(&b).expect("valid")))
                .collect()
        }

        fn client_sends(&mut self, conn: u64, m: &ClientMsg) -> Vec<(ConnId, Vec<Vec<u8>>)> {
            let mut data = Vec::new();
            m.encode(&mut data);
            self.gate.handle(self.now, Event::Frame { conn: ConnId(conn), data, at: None }, &mut self.out);
            self.out.take_frames()
        }
    }

    /// The create that makes `id` a client's own entity.
    fn player_create(id: Id) -> ServerMsg {
        ServerMsg::CreateEntity {
            is_player: true,
            id,
            type_name: "B".into(),
            attrs: Value::Nil,
            pos: Default::default(),
        }
    }

    #[test]
    fn calls_only_to_known_entities() {
        let mut f = fixture();
        let (client, boot) = f.accept(100);
        let call = ClientMsg::Call { target: boot, method: 1, args: vec![Value::Int(1)] };
        // Not yet created on the client: refused, connection kept.
        let got = f.client_sends(100, &call);
        assert!(matches!(ServerMsg::decode(&got[0].1[0]), Ok(ServerMsg::Error { code: 5, .. })));
        assert!(f.out.take_closes().is_empty());
        assert_eq!(f.gate.stats().client_errors[ErrorCode::NotAddressable as usize], 1, "counted for the metrics");
        let mut m = crate::metrics::MetricSet::default();
        crate::metrics::Metrics::metrics(&f.gate, &mut m);
        let errors = m.families.iter().find(|f| f.name == "oxworld_client_errors_total").expect("client errors");
        assert_eq!(errors.samples[0].labels, vec![("code", "NotAddressable".to_owned())]);
        f.deliver(client, &player_create(boot));
        assert_eq!(f.out.take_frames()[0].0, ConnId(100));
        let got = f.client_sends(100, &call);
        let link = f.links[boot.dispatcher_index(2)];
        assert_eq!(got[0].0, link);
        assert!(matches!(
            FromGate::decode(&got[0].1[0]),
            Ok(FromGate::Call(Call { caller: Caller::Client { .. }, .. }))
        ));
        // After a destroy the entity is no longer addressable.
        f.deliver(client, &ServerMsg::DestroyEntity { id: boot });
        f.out.take_frames();
        let got = f.client_sends(100, &call);
        assert_eq!(got[0].0, ConnId(100));
    }

    #[test]
    fn filtered_calls_match_props_numerically_or_as_strings() {
        let mut f = fixture();
        let (c1, b1) = f.accept(100);
        let (c2, b2) = f.accept(101);
        for (c, b) in [(c1, b1), (c2, b2)] {
            let create = player_create(b);
            f.deliver(c, &create);
        }
        f.out.take_frames();
        let set = |f: &mut Fixture, client: Id, v: &str| {
            let data = SetFilterProp { gate: 1, client, key: "level".into(), value: v.into() }.to_frame(1);
            f.gate.handle(f.now, Event::Frame { conn: f.links[0], data, at: None }, &mut f.out);
        };
        set(&mut f, c1, "3");
        set(&mut f, c2, "12");
        let mut args = Vec::new();
        oxworld_net::value::encode_args(&[Value::Int(1)], &mut args);
        let fc = FilteredCall {
            gate: 1,
            key: "level".into(),
            op: FilterOp::Ge,
            value: "10".into(),
            method: "hi".into(),
            args,
        };
        let data = fc.to_frame(1);
        f.gate.handle(f.now, Event::Frame { conn: f.links[0], data, at: None }, &mut f.out);
        let sent = f.out.take_frames();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].0, ConnId(101));
        assert_eq!(
            ServerMsg::decode(&sent[0].1[0]),
            Ok(ServerMsg::Call { id: b2, method: "hi".into(), args: vec![Value::Int(1)] })
        );
    }

    /// Filter properties belong to the client's owner: handing the client to another entity
    /// clears them.
    #[test]
    fn filter_props_are_cleared_when_the_client_changes_owner() {
        let mut f = fixture();
        let (c1, b1) = f.accept(100);
        f.deliver(c1, &player_create(b1));
        let data = SetFilterProp { gate: 1, client: c1, key: "level".into(), value: "9".into() }.to_frame(1);
        f.gate.handle(f.now, Event::Frame { conn: f.links[0], data, at: None }, &mut f.out);
        f.out.take_frames();
        let call = |f: &mut Fixture| {
            let fc = FilteredCall {
                gate: 1,
                key: "level".into(),
                op: FilterOp::Eq,
                value: "9".into(),
                method: "hi".into(),
                args: vec![0, 0, 0, 0],
            };
            f.gate.handle(f.now, Event::Frame { conn: f.links[0], data: fc.to_frame(1), at: None }, &mut f.out);
            f.out.take_frames().len()
        };
        assert_eq!(call(&mut f), 1, "the owner's prop matches");
        // The same owner created again (a re-sent view) keeps them.
        f.deliver(c1, &player_create(b1));
        f.out.take_frames();
        assert_eq!(call(&mut f), 1);
        // Handed to another entity: the old player's destroy, the new player's create.
        let other = Id([0x42; 16]);
        f.deliver(c1, &player_create(other));
        f.out.take_frames();
        assert_eq!(call(&mut f), 0, "cleared with the change of owner");
    }

    #[test]
    fn malformed_message_closes_only_that_client() {
        let mut f = fixture();
        f.accept(100);
        f.accept(101);
        f.gate.handle(f.now, Event::Frame { conn: ConnId(100), data: vec![0x01, 0x02], at: None }, &mut f.out);
        let closes = f.out.take_closes();
        assert_eq!(closes.len(), 1);
        assert_eq!(closes[0].0, ConnId(100));
        let err = &f.out.take_frames()[0];
        assert!(matches!(ServerMsg::decode(&err.1[0]), Ok(ServerMsg::Error { code: 6, .. })));
        assert_eq!(f.gate.client_count(), 2, "the close event, not the refusal, removes the client");
    }

    /// Errors a client got in what `client_sends` returned.
    fn error_codes(sent: &[(ConnId, Vec<Vec<u8>>)], conn: u64) -> Vec<u16> {
        sent.iter()
            .filter(|(c, _)| *c == ConnId(conn))
            .flat_map(|(_, fs)| fs.iter())
            .filter_map(|f| match ServerMsg::decode(f) {
                Ok(ServerMsg::Error { code, .. }) => Some(code),
                _ => None,
            })
            .collect()
    }

    /// Calls past the bucket are dropped with `RateLimited`; a client that keeps going is
    /// disconnected; a non-finite position is refused with `InvalidPosition` and never
    /// forwarded; the other client is untouched.
    #[test]
    fn rate_limits_and_non_finite_positions_are_refused_with_their_codes() {
        let mut f = fixture_with(&format!(
            "{CFG}[gate_common]\ncall_rate_per_s = 10\ncall_burst = 3\nmove_burst = 4\nrate_limit_disconnect = 2\n"
        ));
        let (client, boot) = f.accept(100);
        f.accept(101);
        f.deliver(client, &player_create(boot));
        f.out.take_frames();
        let pos = |x: f32| oxworld_net::client_proto::Pos { x, y: 0.0, z: 0.0, yaw: 0.0 };
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let sent = f.client_sends(100, &ClientMsg::Move { id: boot, pos: pos(bad) });
            assert_eq!(error_codes(&sent, 100), vec![ErrorCode::InvalidPosition as u16]);
        }
        f.gate.tick(f.now, &mut f.out);
        assert!(f.out.take_frames().is_empty(), "no non-finite position forwarded");
        // Bad moves count against the move bucket (4) too: one good move left, then refused.
        let sent = f.client_sends(100, &ClientMsg::Move { id: boot, pos: pos(1.0) });
        assert!(error_codes(&sent, 100).is_empty());
        f.gate.tick(f.now, &mut f.out);
        let moved = f.out.take_frames();
        assert!(
            moved.iter().flat_map(|(_, fs)| fs).any(|m| matches!(FromGate::decode(m), Ok(FromGate::ClientMove(_)))),
            "the finite move is forwarded: {moved:?}"
        );
        let sent = f.client_sends(100, &ClientMsg::Move { id: boot, pos: pos(2.0) });
        assert_eq!(error_codes(&sent, 100), vec![ErrorCode::RateLimited as u16]);
        let call = ClientMsg::Call { target: boot, method: 1, args: vec![] };
        for _ in 0..3 {
            let sent = f.client_sends(100, &call);
            assert!(error_codes(&sent, 100).is_empty() && sent.iter().any(|(c, _)| *c == f.links[0]), "forwarded");
        }
        let sent = f.client_sends(100, &call);
        assert_eq!(error_codes(&sent, 100), vec![ErrorCode::RateLimited as u16], "the burst is spent");
        assert!(f.out.take_closes().is_empty(), "told, not yet closed");
        let sent = f.client_sends(100, &call);
        assert_eq!(error_codes(&sent, 100), vec![ErrorCode::RateLimited as u16]);
        assert_eq!(f.out.take_closes().iter().map(|(c, _)| *c).collect::<Vec<_>>(), vec![ConnId(100)]);
        let st = f.gate.stats();
        assert_eq!((st.rate_limited, st.rate_disconnected), (3, 1), "one move and two calls");
        // 100 ms later the bucket has a token again (for a client that slowed down).
        f.now += std::time::Duration::from_millis(100);
        let sent = f.client_sends(101, &ClientMsg::Heartbeat);
        assert!(error_codes(&sent, 101).is_empty());
    }

    /// Every dispatcher says game 1 is down: the client whose player ran there is told once
    /// (`PlayerLost`), may no longer address what it knew, and gets one new boot entity; the
    /// client whose player runs on game 2 hears nothing.
    #[test]
    fn a_client_whose_player_ran_on_a_lost_game_is_told_and_boots_again() {
        let mut f = fixture_with(&CFG.replace("desired_games=1", "desired_games=2"));
        let (c1, b1) = f.accept(100);
        let (c2, b2) = f.accept(101);
        let (c3, b3) = f.accept(102);
        f.deliver_from(1, &[c1], &player_create(b1));
        f.deliver_from(2, &[c2], &player_create(b2));
        // c3's player migrated from game 1 to game 2: the next message comes from there.
        f.deliver_from(1, &[c3], &player_create(b3));
        f.deliver_from(2, &[c3], &ServerMsg::Call { id: b3, method: "entered".into(), args: vec![] });
        // c4's player migrated to game 2 without a word to the client yet: its gate is told.
        let (c4, b4) = f.accept(103);
        f.deliver_from(1, &[c4], &player_create(b4));
        let at = PlayerAt { gate: 1, client: c4, entity: b4 }.to_frame(2);
        f.gate.handle(f.now, Event::Frame { conn: f.links[1], data: at, at: None }, &mut f.out);
        // An error about a call to an entity of game 1 does not move c2's player there.
        f.deliver_from(1, &[c2], &ServerMsg::error(ErrorCode::UnknownMethod, b1, 7, "no"));
        f.out.take_frames();
        let down = |f: &mut Fixture| {
            for l in f.links.clone() {
                let data = GameLost { game: 1, incarnation: 77 }.to_frame(0);
                f.gate.handle(f.now, Event::Frame { conn: l, data, at: None }, &mut f.out);
            }
            f.out.take_frames()
        };
        let sent = down(&mut f);
        let to = |conn: u64| -> Vec<ServerMsg> {
            sent.iter()
                .filter(|(c, _)| *c == ConnId(conn))
                .flat_map(|(_, fs)| fs.iter().map(|b| ServerMsg::decode(b).expect("valid")))
                .collect()
        };
        assert!(
            matches!(&to(100)[..], [ServerMsg::PlayerLost { entity, game: 1, .. }] if *entity == b1),
            "{:?}",
            to(100)
        );
        assert!(to(101).is_empty() && to(102).is_empty() && to(103).is_empty(), "{:?} {:?}", to(101), to(102));
        let boots: Vec<ClientConnected> = sent
            .iter()
            .filter(|(c, _)| f.links.contains(c))
            .flat_map(|(_, fs)| {
                fs.iter().filter_map(|b| match FromGate::decode(b) {
                    Ok(FromGate::ClientConnected(cc)) => Some(cc),
                    _ => None,
                })
            })
            .collect();
        assert_eq!(boots.len(), 1, "one new boot entity: {boots:?}");
        assert_eq!((boots[0].client, boots[0].gate), (c1, 1));
        assert!(boots[0].boot != b1 && boots[0].boot != Id::NIL);
        let sent = f.client_sends(100, &ClientMsg::Call { target: b1, method: 1, args: vec![] });
        assert_eq!(error_codes(&sent, 100), vec![ErrorCode::NotAddressable as u16], "the lost player is forgotten");
        // The new boot entity becomes its player as at connect; a late GameDown changes nothing.
        f.deliver_from(2, &[c1], &player_create(boots[0].boot));
        f.out.take_frames();
        assert!(down(&mut f).is_empty());
        let sent = f.client_sends(100, &ClientMsg::Call { target: boots[0].boot, method: 1, args: vec![] });
        assert!(error_codes(&sent, 100).is_empty());
        assert_eq!(f.gate.stats().players_lost, 1);
    }

    /// A dispatcher link that comes back (its dispatcher may have restarted and lost what it
    /// held): the logins through it that got no player yet are asked again; not the others.
    #[test]
    fn logins_without_a_player_are_asked_again_when_their_dispatcher_is_back() {
        let mut f = fixture();
        let mut clients = Vec::new();
        for conn in 100..110 {
            clients.push(f.accept(conn));
        }
        let n = f.links.len();
        let (d, waiting) = (0..n)
            .find_map(|d| {
                let on: Vec<(Id, Id)> = clients.iter().copied().filter(|(_, b)| b.dispatcher_index(n) == d).collect();
                (on.len() >= 2).then_some((d, on))
            })
            .expect("two boots through one dispatcher");
        // The first of them got its player; the others did not.
        f.deliver(waiting[0].0, &player_create(waiting[0].1));
        f.out.take_frames();
        let link = f.links[d];
        f.gate.handle(f.now, Event::Closed { conn: link, reason: CloseReason::PeerClosed }, &mut f.out);
        f.now += std::time::Duration::from_secs(2);
        f.gate.tick(f.now, &mut f.out);
        let (conn, _, _) = f.out.take_connects().into_iter().next().expect("redialled");
        f.gate.handle(f.now, Event::Connected { conn }, &mut f.out);
        let ack = HelloAck { dispatcher: d as u16 + 1, games: vec![] }.to_frame(0);
        f.gate.handle(f.now, Event::Frame { conn, data: ack, at: None }, &mut f.out);
        let asked: Vec<Id> = f
            .out
            .take_frames()
            .into_iter()
            .filter(|(c, _)| *c == conn)
            .flat_map(|(_, fs)| fs.into_iter())
            .filter_map(|b| match FromGate::decode(&b) {
                Ok(FromGate::ClientConnected(cc)) => Some(cc.boot),
                _ => None,
            })
            .collect();
        let mut want: Vec<Id> = waiting[1..].iter().map(|(_, b)| *b).collect();
        want.sort();
        let mut asked = asked;
        asked.sort();
        assert_eq!(asked, want);
    }

    #[test]
    fn disconnect_reaches_the_owner() {
        let mut f = fixture();
        let (client, boot) = f.accept(100);
        f.deliver(client, &player_create(boot));
        f.out.take_frames();
        f.gate.handle(f.now, Event::Closed { conn: ConnId(100), reason: CloseReason::PeerClosed }, &mut f.out);
        let sent = f.out.take_frames();
        let msg = FromGate::decode(&sent[0].1[0]).expect("msg");
        assert_eq!(msg, ClientDisconnected { owner: boot, gate: 1, client, resumable: false }.into(), "it left");
        assert_eq!(f.gate.client_count(), 0);
        // A connection lost to a socket error: its session may resume.
        let (client, boot) = f.accept(101);
        f.deliver(client, &player_create(boot));
        f.out.take_frames();
        let reason = CloseReason::Io("connection reset".into());
        f.gate.handle(f.now, Event::Closed { conn: ConnId(101), reason }, &mut f.out);
        let sent = f.out.take_frames();
        let msg = FromGate::decode(&sent[0].1[0]).expect("msg");
        assert_eq!(msg, ClientDisconnected { owner: boot, gate: 1, client, resumable: true }.into(), "it was lost");
    }

    #[test]
    fn owner_created_after_client_left_is_told() {
        let mut f = fixture();
        let (client, boot) = f.accept(100);
        f.gate.handle(f.now, Event::Closed { conn: ConnId(100), reason: CloseReason::PeerClosed }, &mut f.out);
        f.out.take_frames();
        f.deliver(client, &player_create(boot));
        let sent = f.out.take_frames();
        let msg = FromGate::decode(&sent[0].1[0]).expect("msg");
        assert_eq!(msg, ClientDisconnected { owner: boot, gate: 1, client, resumable: false }.into());
    }

    /// A client that sends nothing for `heartbeat_timeout` is told why (`Error` with code
    /// `Idle`) and closed, once; heartbeats (any message) keep it; the others are untouched.
    #[test]
    fn idle_clients_are_told_and_closed_heartbeats_keep_them() {
        use std::time::Duration;
        let mut f = fixture_with(&format!("{CFG}[gate_common]\nheartbeat_timeout_s = 10\n"));
        let t0 = f.now;
        f.accept(100);
        f.accept(101);
        f.out.take_frames();
        let s = |n: u64| t0 + Duration::from_secs(n);
        assert!(f.gate.next_deadline().is_some_and(|d| d <= s(1)), "idle checks run while clients are connected");
        f.now = s(6);
        f.client_sends(101, &ClientMsg::Heartbeat);
        f.gate.tick(s(10), &mut f.out);
        assert!(f.out.take_closes().is_empty(), "not idle yet at the timeout itself");
        f.gate.tick(s(11), &mut f.out);
        let closes = f.out.take_closes();
        assert_eq!(closes.iter().map(|(c, _)| *c).collect::<Vec<_>>(), vec![ConnId(100)]);
        let told = f.take_client_msgs(100);
        assert!(
            matches!(&told[..], [ServerMsg::Error { code, message, .. }] if *code == ErrorCode::Idle as u16 && message.contains("Heartbeat")),
            "{told:?}"
        );
        f.gate.tick(s(12), &mut f.out);
        assert!(f.out.take_closes().is_empty(), "closed once, not again while its close is under way");
        f.gate.tick(s(17), &mut f.out);
        assert_eq!(f.out.take_closes().len(), 1, "the other one, 11 s after its heartbeat");
        assert_eq!(f.gate.stats().idle, 2);
    }

    /// An `Error` with code `Kicked` from a game reaches the client last: the gate closes the
    /// connection after it, once, and tells no game (the client owns nothing any more).
    #[test]
    fn a_kick_is_delivered_then_the_client_is_closed() {
        let mut f = fixture();
        let (client, boot) = f.accept(100);
        f.deliver(client, &player_create(boot));
        f.out.take_frames();
        f.deliver(client, &ServerMsg::DestroyEntity { id: boot });
        let kick = ServerMsg::error(ErrorCode::Kicked, boot, 0, "bye: you were idle in the lobby");
        f.deliver(client, &kick);
        let told = f.take_client_msgs(100);
        assert!(
            matches!(told.last(), Some(ServerMsg::Error { code: 12, message, .. }) if message.starts_with("bye")),
            "{told:?}"
        );
        assert_eq!(f.out.take_closes().iter().map(|(c, _)| *c).collect::<Vec<_>>(), vec![ConnId(100)]);
        f.deliver(client, &kick);
        assert!(f.out.take_closes().is_empty() && f.take_client_msgs(100).is_empty(), "nothing after the kick");
        assert_eq!(f.gate.stats().kicked, 1);
        assert!(!ServerMsg::is_kick(&[]) && !ServerMsg::is_kick(&[0x85, 12]), "truncated: not a kick");
    }

    /// One `ToClients` carries a game message to many clients: each gets the payload, and a
    /// create or destroy in it updates what each may address.
    #[test]
    fn one_message_for_many_clients_reaches_each() {
        let mut f = fixture();
        let (c1, b1) = f.accept(100);
        let (c2, b2) = f.accept(101);
        f.deliver(c1, &player_create(b1));
        f.deliver(c2, &player_create(b2));
        f.out.take_frames();
        let monster = Id([0x33; 16]);
        let create = ServerMsg::CreateEntity {
            is_player: false,
            id: monster,
            type_name: "Monster".into(),
            attrs: Value::Nil,
            pos: Default::default(),
        };
        f.deliver_to(&[c1, c2, Id([0x99; 16])], &create);
        let sent = f.out.take_frames();
        let to: Vec<ConnId> = sent.iter().map(|(c, _)| *c).collect();
        assert_eq!(to.len(), 2, "one copy per connected client: {sent:?}");
        assert!(to.contains(&ConnId(100)) && to.contains(&ConnId(101)));
        for conn in [100, 101] {
            let call = ClientMsg::Call { target: monster, method: 1, args: vec![] };
            let got = f.client_sends(conn, &call);
            assert!(got.iter().all(|(c, _)| f.links.contains(c)), "the monster is addressable now: {got:?}");
        }
    }

    /// With `client_flush_ms`: a client that is not busy gets every message at once (a burst of
    /// replies is not delayed); after a period with two or more messages it is busy: its first
    /// message in a period leaves at once (with the rest of that loop iteration's), later ones
    /// wait for the period's end and leave together, in order; after a period with none it is
    /// not busy any more.
    #[test]
    fn busy_clients_get_one_write_per_period_others_no_wait() {
        use std::time::Duration;
        let mut f = fixture_with(&format!("{CFG}[gate_common]\nclient_flush_ms = 5\n"));
        let (c1, b1) = f.accept(100);
        let create = player_create(b1);
        let world = |f: &mut Fixture, n: i64| {
            let mut args = Vec::new();
            oxworld_net::value::encode_args(&[Value::Int(n)], &mut args);
            let fc = FilteredCall {
                gate: 1,
                key: String::new(),
                op: FilterOp::Eq,
                value: String::new(),
                method: "world".into(),
                args,
            };
            let data = fc.to_frame(1);
            f.gate.handle(f.now, Event::Frame { conn: f.links[0], data, at: None }, &mut f.out);
        };
        let call = |n: i64| ServerMsg::Call { id: b1, method: "world".into(), args: vec![Value::Int(n)] };
        let to_client = |f: &mut Fixture| f.take_client_msgs(100);
        let ms = |n: u64| Duration::from_millis(n);
        let t0 = f.now;
        let at = |f: &mut Fixture, n: u64| f.now = t0 + ms(n);
        // Not busy: everything leaves in the iteration it arrived in.
        f.deliver(c1, &create);
        world(&mut f, 1);
        let got = to_client(&mut f);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(matches!(&got[0], ServerMsg::CreateEntity { id, .. } if *id == b1));
        assert_eq!(got[1], call(1));
        f.gate.tick(t0, &mut f.out);
        world(&mut f, 2);
        assert_eq!(to_client(&mut f), vec![call(2)], "a burst is not delayed");
        let idle_check = Some(f.gate.next_idle_check);
        assert_eq!(f.gate.next_deadline(), idle_check, "nothing held: no wake-up for gathering");
        // Three messages in that period: busy from the next one on.
        f.gate.tick(t0 + ms(5), &mut f.out);
        at(&mut f, 6);
        world(&mut f, 3);
        world(&mut f, 4);
        assert_eq!(to_client(&mut f), vec![call(3), call(4)], "first write of the period, one iteration");
        f.gate.tick(f.now, &mut f.out);
        at(&mut f, 7);
        world(&mut f, 5);
        world(&mut f, 6);
        assert!(to_client(&mut f).is_empty(), "held");
        assert_eq!(f.gate.next_deadline(), Some(t0 + ms(10)));
        f.gate.tick(t0 + ms(9), &mut f.out);
        assert!(to_client(&mut f).is_empty());
        f.gate.tick(t0 + ms(10), &mut f.out);
        assert_eq!(to_client(&mut f), vec![call(5), call(6)]);
        // That write was this client's for the next period: the next message waits again.
        at(&mut f, 11);
        world(&mut f, 7);
        assert!(to_client(&mut f).is_empty());
        f.gate.tick(t0 + ms(15), &mut f.out);
        assert_eq!(to_client(&mut f), vec![call(7)]);
        // A period without messages: not busy any more, messages leave at once.
        f.gate.tick(t0 + ms(20), &mut f.out);
        at(&mut f, 21);
        world(&mut f, 8);
        world(&mut f, 9);
        assert_eq!(to_client(&mut f), vec![call(8), call(9)]);
        // Busy again; a closed client's held messages are dropped, not written to a reused id.
        f.gate.tick(t0 + ms(26), &mut f.out);
        at(&mut f, 27);
        world(&mut f, 10);
        f.gate.tick(f.now, &mut f.out);
        world(&mut f, 11);
        assert_eq!(to_client(&mut f), vec![call(10)]);
        f.gate.handle(f.now, Event::Closed { conn: ConnId(100), reason: CloseReason::PeerClosed }, &mut f.out);
        f.out.take_frames();
        f.gate.tick(t0 + ms(40), &mut f.out);
        assert!(to_client(&mut f).is_empty());
        assert_eq!(f.gate.next_deadline(), None);
    }

    /// What is held for a busy client is bounded by half its `client_queue_limit`: past it,
    /// everything held is written at once (in order), where the write queue's limit applies.
    #[test]
    fn held_messages_are_bounded_by_the_client_queue_limit() {
        use std::time::Duration;
        let mut f =
            fixture_with(&format!("{CFG}[gate_common]\nclient_flush_ms = 10\nclient_queue_limit_bytes = 2048\n"));
        let (c1, b1) = f.accept(100);
        f.deliver(c1, &player_create(b1));
        let msg = |n: i64| ServerMsg::Call {
            id: b1,
            method: "m".into(),
            args: vec![Value::Int(n), Value::from("z".repeat(300).as_str())],
        };
        f.deliver(c1, &msg(0));
        f.out.take_frames();
        // Busy from the next period on: its first message leaves, the next ones are held.
        f.now += Duration::from_millis(10);
        f.gate.tick(f.now, &mut f.out);
        f.now += Duration::from_millis(1);
        f.deliver(c1, &msg(1));
        assert_eq!(f.take_client_msgs(100), vec![msg(1)], "the period's first message");
        f.gate.tick(f.now, &mut f.out);
        f.now += Duration::from_millis(1);
        // 340 bytes each: three are held (1020 bytes), the fourth passes 1024: all four are
        // written at once, in order.
        for n in 2..=4 {
            f.deliver(c1, &msg(n));
        }
        assert!(f.take_client_msgs(100).is_empty(), "held");
        f.deliver(c1, &msg(5));
        assert_eq!(f.take_client_msgs(100), vec![msg(2), msg(3), msg(4), msg(5)]);
    }

    /// A busy client that sends a call is expedited for a period: what it is sent next (its
    /// reply) leaves at once, after what was held for it, in order.
    #[test]
    fn a_busy_clients_reply_is_not_held() {
        use std::time::Duration;
        let mut f = fixture_with(&format!("{CFG}[gate_common]\nclient_flush_ms = 10\n"));
        let (c1, b1) = f.accept(100);
        let m = |n: i64| ServerMsg::Call { id: b1, method: "m".into(), args: vec![Value::Int(n)] };
        let to_client = |f: &mut Fixture| f.take_client_msgs(100);
        let t0 = f.now;
        let create = player_create(b1);
        f.deliver(c1, &create);
        f.deliver(c1, &m(1));
        f.gate.tick(t0 + Duration::from_millis(10), &mut f.out);
        to_client(&mut f);
        // Busy now: first message of the period leaves, the next is held.
        f.now = t0 + Duration::from_millis(11);
        f.deliver(c1, &m(2));
        f.gate.tick(f.now, &mut f.out);
        f.deliver(c1, &m(3));
        assert_eq!(to_client(&mut f), vec![m(2)]);
        // The client calls; the reply leaves at once, after the held message.
        let call = ClientMsg::Call { target: b1, method: 7, args: vec![] };
        let sent = f.client_sends(100, &call);
        assert!(sent.iter().all(|(c, _)| *c != ConnId(100)), "the call went to a dispatcher");
        f.deliver(c1, &m(4));
        assert_eq!(to_client(&mut f), vec![m(3), m(4)]);
        // A period later the client is gathered again.
        f.gate.tick(t0 + Duration::from_millis(21), &mut f.out);
        f.gate.tick(t0 + Duration::from_millis(22), &mut f.out);
        f.now = t0 + Duration::from_millis(23);
        f.deliver(c1, &m(5));
        f.gate.tick(f.now, &mut f.out);
        f.deliver(c1, &m(6));
        assert_eq!(to_client(&mut f), vec![m(5)]);
    }

    /// Without gathering every message leaves in the iteration it arrived in.
    #[test]
    fn without_gathering_every_message_leaves_at_once() {
        let mut f = fixture_with(&format!("{CFG}[gate_common]\nclient_flush_ms = 0\n"));
        let (c1, b1) = f.accept(100);
        f.out.take_frames();
        for n in 0..3 {
            f.deliver(c1, &ServerMsg::Call { id: b1, method: "m".into(), args: vec![Value::Int(n)] });
            f.gate.tick(f.now, &mut f.out);
            assert_eq!(f.out.take_frames().len(), 1, "message {n} written in its own iteration");
        }
        assert_eq!(f.gate.next_deadline(), Some(f.gate.next_idle_check), "only the idle check");
    }

    /// Accepts client `conn` whose hello offered resume (or not); returns what it was told and
    /// what went to the dispatchers.
    fn accept_with(f: &mut Fixture, conn: u64, resume: bool) -> (Vec<ServerMsg>, Vec<FromGate>) {
        let peer = "127.0.0.1:9".parse().expect("addr");
        let session = true;
        f.gate.handle(f.now, Event::Accepted { conn: ConnId(conn), listener: 0, peer, resume, session }, &mut f.out);
        split(f, conn)
    }

    /// The queued output: to client `conn`, and to the dispatchers.
    fn split(f: &mut Fixture, conn: u64) -> (Vec<ServerMsg>, Vec<FromGate>) {
        let (mut to_client, mut to_links) = (Vec::new(), Vec::new());
        for (c, frames) in f.out.take_frames() {
            for b in frames {
                if c == ConnId(conn) {
                    to_client.push(ServerMsg::decode(&b).expect("valid"));
                } else if f.links.contains(&c) {
                    to_links.push(FromGate::decode(&b).expect("valid"));
                }
            }
        }
        (to_client, to_links)
    }

    /// Every connection gets a resume token (bound to its login); a connection whose hello
    /// offered resume gets no boot entity: its `Resume` goes to the player's game, and a
    /// refusal, or no answer in time, makes it a login; the player's view ends the resume.
    #[test]
    fn a_resuming_client_asks_for_its_player_and_logs_in_when_refused() {
        let mut f = fixture();
        let (told, sent) = accept_with(&mut f, 100, false);
        let token = match &told[..] {
            [ServerMsg::Welcome { .. }, ServerMsg::Session { token }] => *token,
            other => panic!("{other:?}"),
        };
        assert!(matches!(&sent[..], [FromGate::ClientConnected(cc)] if cc.token == token), "a login binds the token");
        let (told, sent) = accept_with(&mut f, 101, true);
        let (client, token) = match &told[..] {
            [ServerMsg::Welcome { client, .. }, ServerMsg::Session { token }] => (*client, *token),
            other => panic!("{other:?}"),
        };
        assert!(sent.is_empty(), "no boot entity for a client that resumes: {sent:?}");
        let (old, player, old_token) = (Id([0x11; 16]), Id([0x22; 16]), Id([0x33; 16]));
        f.client_sends(101, &ClientMsg::Resume { client: old, player, token: old_token });
        // (client_sends took the frames: ask again through a fresh one.)
        let (_, _) = split(&mut f, 101);
        let (told, sent) = accept_with(&mut f, 102, true);
        let client2 = match &told[0] {
            ServerMsg::Welcome { client, .. } => *client,
            other => panic!("{other:?}"),
        };
        assert!(sent.is_empty());
        let mut data = Vec::new();
        ClientMsg::Resume { client: old, player, token: old_token }.encode(&mut data);
        f.gate.handle(f.now, Event::Frame { conn: ConnId(102), data, at: None }, &mut f.out);
        let (_, sent) = split(&mut f, 102);
        let [FromGate::ResumeClient(rc)] = &sent[..] else { panic!("{sent:?}") };
        assert_eq!((rc.entity, rc.client, rc.old_client, rc.token), (player, client2, old, old_token));
        assert_eq!(rc.gate, 1);
        // Refused: an error, then a login.
        let refused = ResumeRefused { gate: 1, client: client2, entity: player, reason: "expired".into() }.to_frame(1);
        f.gate.handle(f.now, Event::Frame { conn: f.links[0], data: refused, at: None }, &mut f.out);
        let (told, sent) = split(&mut f, 102);
        assert!(
            matches!(&told[..], [ServerMsg::Error { code, .. }] if *code == ErrorCode::ResumeRefused as u16),
            "{told:?}"
        );
        assert!(matches!(&sent[..], [FromGate::ClientConnected(cc)] if cc.client == client2), "{sent:?}");
        // Client 101: its player's view comes (the game accepted): it may call its player.
        f.deliver(client, &ServerMsg::Resumed { player, dropped: 0 });
        f.deliver(client, &player_create(player));
        split(&mut f, 101);
        let got = f.client_sends(101, &ClientMsg::Call { target: player, method: 1, args: vec![] });
        assert!(got.iter().any(|(c, _)| f.links.contains(c)), "the call goes to the player's dispatcher");
        // A `Resume` later in a session is refused (the connection stays).
        f.client_sends(101, &ClientMsg::Resume { client: old, player, token });
        // No answer in time: a login.
        let (_, _) = accept_with(&mut f, 103, true);
        let mut data = Vec::new();
        ClientMsg::Resume { client: old, player, token: old_token }.encode(&mut data);
        f.gate.handle(f.now, Event::Frame { conn: ConnId(103), data, at: None }, &mut f.out);
        split(&mut f, 103);
        let later = f.now + resume::RESUME_TIMEOUT + Duration::from_secs(1);
        f.gate.tick(later, &mut f.out);
        let (told, sent) = split(&mut f, 103);
        assert!(
            told.iter().any(|m| matches!(m, ServerMsg::Error { code, .. } if *code == ErrorCode::ResumeRefused as u16))
        );
        assert!(sent.iter().any(|m| matches!(m, FromGate::ClientConnected(_))), "{sent:?}");
    }
}
