//! The game process's logic: a [`World`] wired to the dispatcher links, the store thread's
//! port and the hot-swap phase. A sans-IO [`App`]; `oxworld-host` runs it.
//!
//! LIFECYCLE of a hot swap, game side (the dispatcher side is in `dispatcher.rs`):
//! `Running` --SIGHUP--> `Freezing` (FreezeGame sent to every dispatcher; messages keep
//! arriving and are handled until each dispatcher's `FreezeAck`, after which none can) --all
//! acks, no storage work in flight--> the world is frozen and handed to the freeze sink (LMDB)
//! --written--> the process exits 0. A sink error thaws instead: every link is redialled, the
//! dispatchers release what they held, and the game goes on. The new binary, started with
//! `--restore`, rebuilds the world before it dials; each dispatcher answers its Hello with
//! `Thawed` and the held traffic; after the last `Thawed` the game reports `restored` (with
//! the count of held messages that failed) and clears the freeze.

use std::time::Instant;

use log::{info, warn};
use oxworld_net::Value;
use oxworld_net::app::{App, Event, Outbox, Signal};
use oxworld_net::msg::trace::Trace;
use oxworld_net::msg::{
    Call, CallFailed, Caller, FLAG_TRACED, FreezeAck, FreezeGame, FromGame, GameLoad, Message, ProcKind, Thawed, ToGame,
};

use crate::links::{LinkEvent, Links};
use crate::status::{ProcState, Report, SwapReport};
use crate::store::{StoreError, StoreOp, StoreReply};
use crate::world::jobs::JobFn;
use crate::world::{Frozen, World};

/// How often a game reports its load to every dispatcher.
pub const LOAD_REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Where a game stands in a hot swap.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Running,
    /// FreezeGame sent; dispatchers (by link index) that acknowledged.
    Freezing {
        acked: std::collections::BTreeSet<usize>,
        since: Instant,
    },
    /// Rebuilt from a freeze; dispatchers (by link index) that released their traffic, and
    /// the totals they reported.
    Thawing {
        thawed: std::collections::BTreeSet<usize>,
        released: u64,
        failed: u64,
    },
    /// Frozen and written: the process is exiting.
    Frozen,
}

/// Writes a frozen world somewhere durable (LMDB, in the host). An error thaws the game.
pub type FreezeSink = Box<dyn FnMut(&Frozen) -> Result<(), String>>;

/// The game's side of its store thread (the host runs the thread; tests answer in place).
pub trait StorePort {
    /// Hands `op` to the store; gives it back if the store is gone.
    fn submit(&mut self, ticket: u64, op: StoreOp) -> Result<(), StoreOp>;
    /// A finished operation, if one is ready.
    fn poll(&mut self) -> Option<(u64, Result<StoreReply, StoreError>)>;
}

/// The game's side of its job threads (the host runs them; without a port jobs run inline).
pub trait JobPort {
    /// Hands a job to the threads; gives it back if they are gone.
    fn submit(&mut self, ticket: u64, job: JobFn) -> Result<(), JobFn>;
    /// A finished job, if one is ready.
    fn poll(&mut self) -> Option<(u64, Result<Value, String>)>;
}

/// One game's logic: its world and its links to the dispatchers.
pub struct GameApp {
    id: u16,
    world: World,
    links: Links,
    last_now: Instant,
    next_load_report: Instant,
    done: bool,
    fatal: Option<String>,
    phase: Phase,
    freeze_sink: Option<FreezeSink>,
    /// The hot swap under way or just finished.
    swap: Option<SwapReport>,
    /// The world was written by the freeze sink: the process exits with success.
    frozen: bool,
    /// The store thread: operations out, results in.
    store: Option<Box<dyn StorePort>>,
    /// The job threads: jobs out, results in.
    jobs: Option<Box<dyn JobPort>>,
    /// SIGTERM: waiting (until this deadline) for the final saves before exiting.
    stopping: Option<Instant>,
    /// Messages from dispatchers that did not decode (dropped).
    malformed: u64,
    /// Internal frames received and sent, by kind.
    frames_in: crate::metrics::KindCounts,
    frames_out: crate::metrics::KindCounts,
}

/// How long a freeze waits for queued local work to finish before freezing without it.
pub const FREEZE_LOCAL_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a stopping game waits for its last saves.
pub const STOP_SAVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl GameApp {
    /// Game `id` of `cfg` running `world`.
    pub fn new(cfg: &oxworld_net::config::Config, id: u16, mut world: World, now: Instant) -> Self {
        world.set_max_frame(cfg.max_internal_frame);
        let mut links = Links::new(format!("game{id}"), ProcKind::Game, id, cfg, now, world.unix_ms_at(now));
        // Unique per process start (ids carry the start time and the process's random seed).
        let fresh = world.fresh_id().0;
        links.set_incarnation(u64::from_le_bytes(std::array::from_fn(|i| fresh[i] ^ fresh[i + 8])));
        GameApp {
            id,
            world,
            links,
            last_now: now,
            next_load_report: now,
            done: false,
            fatal: None,
            phase: Phase::Running,
            freeze_sink: None,
            swap: None,
            frozen: false,
            store: None,
            jobs: None,
            stopping: None,
            malformed: 0,
            frames_in: Default::default(),
            frames_out: Default::default(),
        }
    }

    /// Connects the world's off-loop jobs to job threads.
    pub fn with_jobs(mut self, port: Box<dyn JobPort>) -> Self {
        self.jobs = Some(port);
        self
    }

    /// Hands queued jobs to the job threads (or runs them here if there are none).
    fn pump_jobs(&mut self, now: Instant) {
        match &mut self.jobs {
            Some(port) => {
                for (ticket, job) in self.world.take_jobs() {
                    if let Err(job) = port.submit(ticket, job) {
                        warn!("game{}: the job threads are gone; running a job on the loop", self.id);
                        self.world.job_done(now, ticket, job());
                    }
                }
            }
            None => self.world.run_jobs_inline(now),
        }
    }

    /// Takes the results the job threads have finished.
    fn drain_jobs(&mut self, now: Instant) {
        while let Some((ticket, r)) = self.jobs.as_mut().and_then(|p| p.poll()) {
            self.world.job_done(now, ticket, r);
        }
    }

    /// Connects the world's storage operations to a store thread.
    pub fn with_store(mut self, link: Box<dyn StorePort>) -> Self {
        self.store = Some(link);
        self
    }

    /// Hands queued storage operations to the store thread (or fails them if there is none).
    fn pump_store(&mut self, now: Instant) {
        let ops = self.world.take_store_ops();
        if ops.is_empty() {
            return;
        }
        match &mut self.store {
            Some(link) => {
                for (ticket, op) in ops {
                    if link.submit(ticket, op).is_err() {
                        let err = StoreError::unavailable("the store thread is gone");
                        self.world.store_done(now, ticket, Err(err));
                    }
                }
            }
            None => {
                for (ticket, _) in ops {
                    self.world.store_done(now, ticket, Err(StoreError::unavailable("no store configured")));
                }
            }
        }
    }

    /// Takes the results the store thread has finished.
    fn drain_store(&mut self, now: Instant) {
        while let Some((ticket, r)) = self.store.as_mut().and_then(|l| l.poll()) {
            self.world.store_done(now, ticket, r);
        }
    }

    fn check_stopped(&mut self) {
        if let Some(deadline) = self.stopping {
            if !self.world.has_pending_io() {
                self.done = true;
            } else if self.last_now >= deadline {
                log::error!("game{}: stopping with storage work still unfinished after {STOP_SAVE_TIMEOUT:?}", self.id);
                self.done = true;
            }
        }
    }

    /// Where SIGHUP writes the frozen world; without one, SIGHUP is refused with a warning.
    pub fn with_freeze_sink(mut self, sink: FreezeSink) -> Self {
        self.freeze_sink = Some(sink);
        self
    }

    /// The world was restored from a freeze (`entities` of them): the game is `restoring` until
    /// every dispatcher has released the traffic it held.
    pub fn restored(mut self, entities: usize) -> Self {
        self.links.set_restored();
        self.phase = Phase::Thawing { thawed: Default::default(), released: 0, failed: 0 };
        self.swap = Some(SwapReport { entities: entities as u64, ..Default::default() });
        self
    }

    /// Lets go of the store and job threads' channels (they finish what was queued and end)
    /// while the app itself is kept: a frozen game's process exits without dropping its world.
    pub fn release_ports(&mut self) {
        self.store = None;
        self.jobs = None;
    }

    /// True once the world has been frozen and written: the process should exit 0.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    fn start_freeze(&mut self, now: Instant, out: &mut Outbox) {
        if self.phase != Phase::Running {
            warn!("game{}: SIGHUP while a hot swap is under way; ignored", self.id);
            return;
        }
        if self.freeze_sink.is_none() {
            warn!("game{}: SIGHUP but no freeze store is configured; ignored", self.id);
            return;
        }
        if !self.links.all_ready() {
            // A dispatcher we cannot reach could not hold our traffic: refuse rather than lose it.
            warn!("game{}: SIGHUP refused: not every dispatcher link is up; send it again later", self.id);
            return;
        }
        info!(
            "game{}: freezing ({} entities); asking the dispatchers to hold traffic",
            self.id,
            self.world.entity_count()
        );
        for d in 0..self.links.len() {
            self.links.send(d, &FreezeGame {}, out);
        }
        self.phase = Phase::Freezing { acked: Default::default(), since: now };
        self.swap = Some(SwapReport { freeze_began: Some(now), ..Default::default() });
    }

    /// Finishes the freeze once every dispatcher holds our traffic and no work is pending.
    fn try_finish_freeze(&mut self, now: Instant, out: &mut Outbox) {
        let Phase::Freezing { acked, since } = &self.phase else { return };
        // Queued local work runs first (over as many iterations as its budget needs), unless it
        // never ends: an entity that keeps calling itself cannot hold a hot swap hostage.
        let draining = now.saturating_duration_since(*since) < FREEZE_LOCAL_WAIT;
        if acked.len() < self.links.len() || (self.world.has_local_work() && draining) || self.world.has_pending_io() {
            return;
        }
        let since = *since;
        let frozen = self.world.freeze(now);
        self.pump(out);
        let written = match self.freeze_sink.as_mut() {
            Some(sink) => sink(&frozen),
            None => Err("no freeze store".into()),
        };
        if let Some(s) = &mut self.swap {
            s.entities = frozen.records.len() as u64;
        }
        match written {
            Ok(()) => {
                info!(
                    "game{}: frozen {} entities in {:?}; exiting for the new binary",
                    self.id,
                    frozen.records.len(),
                    self.world.clock_now().saturating_duration_since(since)
                );
                self.frozen = true;
                self.done = true;
                self.phase = Phase::Frozen;
            }
            Err(e) => {
                log::error!("game{}: writing the freeze failed ({e}); thawing and going on", self.id);
                self.phase = Phase::Running;
                self.links.redial_all(now, out);
            }
        }
    }

    fn on_thawed(&mut self, d: usize, released: u64, failed: u64) {
        let Phase::Thawing { thawed, released: r, failed: f } = &mut self.phase else { return };
        thawed.insert(d);
        *r += released;
        *f += failed;
        if thawed.len() == self.links.len() {
            let (r, f) = (*r, *f);
            if f > 0 {
                warn!("game{}: restored; {r} held messages released, {f} failed while the game was away", self.id);
            } else {
                info!("game{}: restored; {r} held messages released", self.id);
            }
            self.phase = Phase::Running;
            if let Some(s) = &mut self.swap {
                s.released = r;
                s.failed = f;
                s.thawed_at = Some(self.last_now);
            }
        }
    }

    /// The world (for tests and inspection).
    pub fn world(&self) -> &World {
        &self.world
    }

    fn pump(&mut self, out: &mut Outbox) {
        let now = self.last_now;
        // Results handed back at once (no store) may queue more work; the world runs what this
        // iteration's budget allows and leaves the rest for the next (`next_deadline` is now).
        self.pump_store(now);
        self.pump_jobs(now);
        if self.world.has_local_work() {
            self.world.run_local_now(now);
            self.pump_store(now);
            self.pump_jobs(now);
        }
        let frames_out = &mut self.frames_out;
        for (d, mut msg, trace) in self.world.drain_output_traced() {
            if let FromGame::RealMigrate(m) = &mut msg {
                m.delivered = self.links.delivered_via(d);
            }
            self.links.send_with(
                d,
                msg.kind(),
                |origin, b| {
                    let start = b.len();
                    msg.encode(origin, b);
                    if let Some(t) = trace {
                        t.stamp(&mut b[start..]);
                    }
                    frames_out.add(msg.kind() as u8, b.len() - start);
                },
                out,
            );
        }
        self.check_stopped();
    }
}

impl App for GameApp {
    fn handle(&mut self, now: Instant, event: Event, out: &mut Outbox) {
        self.last_now = now;
        match event {
            Event::Connected { conn } => {
                let world = &self.world;
                self.links.on_connected(conn, out, |d| world.entities_for_dispatcher(d));
            }
            Event::Frame { conn, data, at } => match self.links.on_frame(conn, &data, out) {
                Ok(Some((d, LinkEvent::Up { games }))) => {
                    self.world.set_online_games(&games);
                    self.world.dispatcher_linked(now, d);
                }
                Ok(Some((d, LinkEvent::Frame(h, body)))) => {
                    self.frames_in.add(h.kind as u8, data.len());
                    match ToGame::decode_parts(&h, body) {
                        Ok(ToGame::FreezeAck(FreezeAck { .. })) => {
                            if let Phase::Freezing { acked, .. } = &mut self.phase {
                                acked.insert(d);
                            }
                            self.try_finish_freeze(now, out);
                        }
                        Ok(ToGame::Thawed(Thawed { released, failed, .. })) => self.on_thawed(d, released, failed),
                        Ok(m) => {
                            if let ToGame::RealMigrate(r) = &m {
                                self.links.merge_delivered(d, &r.delivered);
                            }
                            if let ToGame::Call(_) = m {
                                let trace = (h.flags & FLAG_TRACED != 0).then(|| Trace::from_u64(h.trace));
                                self.world.set_arrival(at.unwrap_or(now), trace);
                            }
                            self.world.handle(now, m)
                        }
                        Err(e) => {
                            // One bad message from a peer that passed the handshake: dropped and
                            // counted; the link (whose framing is intact) stays up.
                            self.malformed += 1;
                            warn!(
                                "game{}: dispatcher{} sent a message that does not decode ({e}); dropped",
                                self.id,
                                d + 1
                            );
                        }
                    }
                }
                Ok(None) => {}
                Err(refused) => {
                    self.fatal = Some(refused.to_string());
                    self.done = true;
                }
            },
            Event::Closed { conn, reason } => {
                if self.links.on_closed(conn, &reason, now) && matches!(self.phase, Phase::Freezing { .. }) {
                    // A dispatcher went away mid-freeze: its traffic is not held. Thaw the
                    // others and stay up; the operator can send SIGHUP again.
                    warn!("game{}: a dispatcher link closed during the freeze; freeze abandoned", self.id);
                    self.phase = Phase::Running;
                    self.links.redial_all(now, out);
                }
            }
            Event::Accepted { conn, .. } => out.close(conn, "games accept no connections"),
            Event::Signal(Signal::Terminate) => {
                if self.stopping.is_none() {
                    info!("game{}: stopping; destroying {} entities", self.id, self.world.entity_count());
                    self.world.shutdown(now);
                    self.stopping = Some(now + STOP_SAVE_TIMEOUT);
                }
            }
            Event::Wake => {
                self.drain_store(now);
                self.drain_jobs(now);
                self.try_finish_freeze(now, out);
            }
            Event::Signal(Signal::Hangup) => self.start_freeze(now, out),
        }
        self.pump(out);
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox) {
        self.last_now = now;
        self.links.tick(now, out);
        for frame in self.links.take_given_up() {
            if let Ok(Call { target, method, caller: Caller::Server(from), .. }) = Call::decode(&frame)
                && !from.is_nil()
            {
                let reason = crate::gate::GIVEN_UP.to_owned();
                self.world.handle(now, ToGame::CallFailed(CallFailed { to: from, target, method, reason }));
            }
        }
        self.world.tick(now);
        self.try_finish_freeze(now, out);
        if now >= self.next_load_report {
            self.next_load_report = now + LOAD_REPORT_EVERY;
            let msg = GameLoad { load: self.world.load() };
            for d in 0..self.links.len() {
                self.links.send(d, &msg, out);
            }
        }
        self.pump(out);
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.world.has_local_work() {
            return Some(self.last_now);
        }
        if let Some(d) = self.stopping {
            return Some(d);
        }
        [self.links.next_deadline(), self.world.next_deadline(), Some(self.next_load_report)]
            .into_iter()
            .flatten()
            .min()
    }

    fn done(&self) -> bool {
        self.done
    }
}

impl Report for GameApp {
    fn holds(&self) -> Option<(&'static str, u64)> {
        Some(("entities", self.world.entity_count() as u64))
    }

    fn state(&self) -> ProcState {
        match self.phase {
            _ if self.stopping.is_some() => ProcState::Stopping,
            Phase::Running if self.links.all_ready() => ProcState::Ready,
            Phase::Running => ProcState::Starting,
            Phase::Freezing { .. } => ProcState::Freezing,
            Phase::Thawing { .. } => ProcState::Restoring,
            Phase::Frozen => ProcState::Frozen,
        }
    }

    fn swap(&self) -> Option<SwapReport> {
        self.swap
    }

    fn fatal(&self) -> Option<&str> {
        self.fatal.as_deref()
    }
}

impl crate::metrics::Metrics for GameApp {
    fn metrics(&self, m: &mut crate::metrics::MetricSet) {
        self.world.metrics(m);
        self.links.metrics(m);
        m.counter("malformed_internal_total", "Messages from dispatchers that did not decode", &[], self.malformed);
        self.frames_in.export(m, false);
        self.frames_out.export(m, true);
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use std::cell::RefCell;
    use std::path::Path;
    use std::rc::Rc;

    use oxworld_net::app::{CloseReason, ConnId};
    use oxworld_net::config::Config;

    use oxworld_net::msg::{FromGame, HelloAck, Message};

    use super::*;
    use crate::entity::Registry;

    const CFG: &str = "[deployment]\ndesired_dispatchers=2\ndesired_games=1\ndesired_gates=1\nsecret=k\n";

    fn enc<M: Message>(m: &M) -> Vec<u8> {
        m.to_frame(0)
    }

    /// A game whose two dispatcher links are up; returns it with the link connections.
    fn linked(now: Instant) -> (GameApp, Outbox, Vec<ConnId>) {
        let cfg = Config::parse(Path::new("t.ini"), CFG).expect("config");
        let mut reg = Registry::new();
        reg.entity("Boot", || Boot);
        reg.boot("Boot");
        let world = World::new(reg, 1, 2, None, 1, (now, 0)).expect("world");
        let mut app = GameApp::new(&cfg, 1, world, now);
        let mut out = Outbox::new();
        app.tick(now, &mut out);
        let conns: Vec<ConnId> = out.take_connects().into_iter().map(|(c, ..)| c).collect();
        assert_eq!(conns.len(), 2);
        for (d, &c) in conns.iter().enumerate() {
            app.handle(now, Event::Connected { conn: c }, &mut out);
            let ack = HelloAck { dispatcher: d as u16 + 1, games: vec![1] };
            app.handle(now, Event::Frame { conn: c, data: enc(&ack), at: None }, &mut out);
        }
        let _ = out.take_frames();
        (app, out, conns)
    }

    struct Boot;
    impl crate::entity::Entity for Boot {}

    fn sent(out: &mut Outbox) -> Vec<(ConnId, FromGame)> {
        out.take_frames()
            .into_iter()
            .flat_map(|(c, fs)| fs.into_iter().map(move |f| (c, FromGame::decode(&f).expect("valid"))))
            .collect()
    }

    fn is_freeze(m: &FromGame) -> bool {
        matches!(m, FromGame::FreezeGame(_))
    }

    /// SIGHUP: FreezeGame to every dispatcher; the world is written once, only after every
    /// FreezeAck, and the game is done.
    #[test]
    fn freeze_waits_for_every_ack_and_writes_once() {
        let now = Instant::now();
        let (app, mut out, conns) = linked(now);
        let writes: Rc<RefCell<Vec<Frozen>>> = Rc::default();
        let w = writes.clone();
        let mut app = app.with_freeze_sink(Box::new(move |f| {
            w.borrow_mut().push(f.clone());
            Ok(())
        }));
        app.handle(now, Event::Signal(Signal::Hangup), &mut out);
        let freeze: Vec<ConnId> = sent(&mut out).into_iter().filter(|(_, m)| is_freeze(m)).map(|(c, _)| c).collect();
        assert_eq!(freeze.len(), 2, "asked every dispatcher");
        app.handle(now, Event::Frame { conn: conns[0], data: enc(&FreezeAck { dispatcher: 1 }), at: None }, &mut out);
        app.tick(now, &mut out);
        assert!(writes.borrow().is_empty() && !app.done(), "one dispatcher still delivers");
        app.handle(now, Event::Frame { conn: conns[1], data: enc(&FreezeAck { dispatcher: 2 }), at: None }, &mut out);
        app.tick(now, &mut out);
        app.tick(now, &mut out);
        assert_eq!(writes.borrow().len(), 1, "written exactly once");
        assert!(app.done() && app.is_frozen());
        assert_eq!(app.state(), ProcState::Frozen);
        let swap = app.swap().expect("a swap report");
        assert_eq!((swap.entities, swap.freeze_began), (writes.borrow()[0].records.len() as u64, Some(now)));
    }

    /// A sink error thaws: the game redials its dispatchers (which release what they held)
    /// and keeps running; a lost dispatcher mid-freeze does the same.
    #[test]
    fn a_failed_freeze_thaws_and_goes_on() {
        let now = Instant::now();
        let (app, mut out, conns) = linked(now);
        let mut app = app.with_freeze_sink(Box::new(|_| Err("disk full".into())));
        app.handle(now, Event::Signal(Signal::Hangup), &mut out);
        for (d, &c) in conns.iter().enumerate() {
            let ack = FreezeAck { dispatcher: d as u16 + 1 };
            app.handle(now, Event::Frame { conn: c, data: enc(&ack), at: None }, &mut out);
        }
        assert!(!app.done());
        assert_eq!(out.take_closes().len(), 2, "links redialled: a fresh Hello thaws each dispatcher");
        // Once back, SIGHUP works again; a dispatcher lost mid-freeze abandons it.
        app.tick(now, &mut out);
        let conns: Vec<ConnId> = out.take_connects().into_iter().map(|(c, ..)| c).collect();
        for (d, &c) in conns.iter().enumerate() {
            app.handle(now, Event::Connected { conn: c }, &mut out);
            let ack = HelloAck { dispatcher: d as u16 + 1, games: vec![1] };
            app.handle(now, Event::Frame { conn: c, data: enc(&ack), at: None }, &mut out);
        }
        app.handle(now, Event::Signal(Signal::Hangup), &mut out);
        assert!(sent(&mut out).iter().any(|(_, m)| is_freeze(m)));
        app.handle(now, Event::Closed { conn: conns[0], reason: CloseReason::PeerClosed }, &mut out);
        assert!(!app.done());
        assert!(!out.take_closes().is_empty(), "the other dispatcher is redialled to thaw");
    }

    /// A restored game reports once every dispatcher has released its traffic.
    #[test]
    fn a_restored_game_reports_after_the_last_thawed() {
        let now = Instant::now();
        let (app, mut out, conns) = linked(now);
        let mut app = app.restored(5);
        assert_eq!(app.state(), ProcState::Restoring);
        let thawed = |d: u16, released, failed| enc(&Thawed { dispatcher: d, released, failed });
        app.handle(now, Event::Frame { conn: conns[0], data: thawed(1, 3, 0), at: None }, &mut out);
        assert_eq!(app.state(), ProcState::Restoring, "one dispatcher still holds traffic");
        let later = now + std::time::Duration::from_millis(7);
        app.handle(later, Event::Frame { conn: conns[1], data: thawed(2, 4, 1), at: None }, &mut out);
        assert_eq!(app.state(), ProcState::Ready);
        let swap = app.swap().expect("a swap report");
        assert_eq!((swap.entities, swap.released, swap.failed, swap.thawed_at), (5, 7, 1, Some(later)));
    }
}
