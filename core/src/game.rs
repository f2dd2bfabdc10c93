//! The game process: a [`World`] wired to the dispatcher links. A sans-IO [`App`]; [`run`]
//! connects it to the `net` runtime.
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

use anyhow::Context as _;
use log::{info, warn};
use oxworld_net::msg::{Msg, ProcKind};
use oxworld_net::runtime::{App, Event, Outbox, Runtime, RuntimeConfig, Signal};

use crate::entity::Registry;
use crate::gate::internal_opts;
use crate::links::{LinkEvent, Links};
use crate::proc::ProcArgs;
use crate::store::{StoreError, StoreOp, StoreReply};
use crate::world::World;

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

/// Writes a frozen world somewhere durable (LMDB in [`run`]); gets the world, when the freeze
/// began (dispatchers started holding) and now. An error thaws the game.
pub type FreezeSink = Box<dyn FnMut(&crate::world::Frozen, Instant, Instant) -> Result<(), String>>;

/// Told once a restored game has every dispatcher's traffic back: (now, held messages
/// released, held messages that failed).
pub type ThawedHook = Box<dyn FnMut(Instant, u64, u64)>;

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
    on_thawed: Option<ThawedHook>,
    /// The world was written by the freeze sink: the process exits with success.
    frozen: bool,
    /// Channel ends to the store thread: operations out, results in.
    store: Option<StoreLink>,
    /// SIGTERM: waiting (until this deadline) for the final saves before exiting.
    stopping: Option<Instant>,
}

/// Operations to the store thread and its results back.
pub struct StoreLink {
    /// Operations with their tickets.
    pub ops: crossbeam_channel::Sender<(u64, StoreOp)>,
    /// Results with their tickets.
    pub results: crossbeam_channel::Receiver<(u64, Result<StoreReply, StoreError>)>,
}

/// How long a stopping game waits for its last saves.
pub const STOP_SAVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl GameApp {
    /// Game `id` of `cfg` running `world`.
    pub fn new(cfg: &oxworld_net::config::Config, id: u16, world: World, now: Instant) -> Self {
        let addrs = cfg.dispatchers.iter().map(|d| d.advertise_addr).collect();
        let links =
            Links::new(format!("game{id}"), ProcKind::Game, id, cfg.secret.clone(), addrs, internal_opts(cfg), now);
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
            on_thawed: None,
            frozen: false,
            store: None,
            stopping: None,
        }
    }

    /// Connects the world's storage operations to a store thread.
    pub fn with_store(mut self, link: StoreLink) -> Self {
        self.store = Some(link);
        self
    }

    /// Hands queued storage operations to the store thread (or fails them if there is none).
    fn pump_store(&mut self, now: Instant) {
        let ops = self.world.take_store_ops();
        if ops.is_empty() {
            return;
        }
        match &self.store {
            Some(link) => {
                for (ticket, op) in ops {
                    if let Err(e) = link.ops.send((ticket, op)) {
                        let (ticket, _) = e.into_inner();
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
        let Some(link) = &self.store else { return };
        let results: Vec<_> = link.results.try_iter().collect();
        for (ticket, r) in results {
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

    /// The world was restored from a freeze: report through `hook` once every dispatcher has
    /// released the traffic it held.
    pub fn restored(mut self, hook: ThawedHook) -> Self {
        self.phase = Phase::Thawing { thawed: Default::default(), released: 0, failed: 0 };
        self.on_thawed = Some(hook);
        self
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
            self.links.send(d, &Msg::FreezeGame, out);
        }
        self.phase = Phase::Freezing { acked: Default::default(), since: now };
    }

    /// Finishes the freeze once every dispatcher holds our traffic and no work is pending.
    fn try_finish_freeze(&mut self, now: Instant, out: &mut Outbox) {
        let Phase::Freezing { acked, since } = &self.phase else { return };
        if acked.len() < self.links.len() || !self.world.drain_local(now) || self.world.has_pending_io() {
            return;
        }
        let since = *since;
        let frozen = self.world.freeze(now);
        self.pump(out);
        let written = match self.freeze_sink.as_mut() {
            Some(sink) => sink(&frozen, since, now),
            None => Err("no freeze store".into()),
        };
        match written {
            Ok(()) => {
                info!(
                    "game{}: frozen {} entities in {:?}; exiting for the new binary",
                    self.id,
                    frozen.records.len(),
                    now.saturating_duration_since(since)
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
            if let Some(mut hook) = self.on_thawed.take() {
                hook(self.last_now, r, f);
            }
        }
    }

    /// The world (for tests and inspection).
    pub fn world(&self) -> &World {
        &self.world
    }

    /// Why the game stopped on its own, if it did.
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.as_deref()
    }

    fn pump(&mut self, out: &mut Outbox) {
        let now = self.last_now;
        // Results handed back at once (no store) may produce more operations and messages.
        for _ in 0..16 {
            self.pump_store(now);
            if !self.world.has_local_work() {
                break;
            }
            self.world.drain_local(now);
        }
        for (d, msg) in self.world.drain_output() {
            self.links.send(d, &msg, out);
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
            Event::Frame { conn, data } => match self.links.on_frame(conn, &data, out) {
                Ok(Some((_, LinkEvent::Up { games }))) => self.world.set_online_games(&games),
                Ok(Some((d, LinkEvent::Msg(Msg::FreezeAck { .. })))) => {
                    if let Phase::Freezing { acked, .. } = &mut self.phase {
                        acked.insert(d);
                    }
                    self.try_finish_freeze(now, out);
                }
                Ok(Some((d, LinkEvent::Msg(Msg::Thawed { released, failed, .. })))) => {
                    self.on_thawed(d, released, failed)
                }
                Ok(Some((_, LinkEvent::Msg(m)))) => self.world.handle(now, m),
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
                self.try_finish_freeze(now, out);
            }
            Event::Signal(Signal::Hangup) => self.start_freeze(now, out),
        }
        self.pump(out);
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox) {
        self.last_now = now;
        self.links.tick(now, out);
        self.world.tick(now);
        self.try_finish_freeze(now, out);
        if now >= self.next_load_report {
            self.next_load_report = now + LOAD_REPORT_EVERY;
            let msg = Msg::GameLoad { load: self.world.load() };
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

/// Writes a one-line status report (`key=value` pairs) for `oxworld reload` to read: written
/// to a temporary file and renamed, so a reader never sees half a line.
fn write_status(path: &std::path::Path, line: &str) {
    let tmp = path.with_extension("tmp");
    let r = std::fs::write(&tmp, format!("{line}\n")).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = r {
        warn!("cannot write status file {}: {e}", path.display());
    }
}

/// Reads `key` from a status line written by [`write_status`]; `reason`, always last, runs
/// to the end of the line.
pub fn status_field(line: &str, key: &str) -> Option<String> {
    if key == "reason" {
        return line.split_once(" reason=").map(|(_, r)| r.trim().to_owned());
    }
    line.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')).map(str::to_owned)
}

/// Where game `id` keeps its freeze (an LMDB environment) and its status line.
pub fn freeze_paths(freeze_dir: &std::path::Path, id: u16) -> (std::path::PathBuf, std::path::PathBuf) {
    (freeze_dir.join(format!("game{id}")), freeze_dir.join(format!("game{id}.status")))
}

/// Runs a game process: parses `--config`, `--id`, `--log` and `--restore` from the command
/// line, builds the world from `reg` (or rebuilds it from its freeze with `--restore`), runs
/// the store thread, and serves until SIGTERM/SIGINT (saves, then exits) or SIGHUP (freezes,
/// then exits for the new binary).
pub fn run(reg: Registry) -> anyhow::Result<()> {
    use crate::store::lmdb::FreezeDb;
    let args = ProcArgs::parse_args();
    let cfg = args.load_config()?;
    let id = args.id;
    let gc = cfg.game(id).with_context(|| format!("game id {id} is not in {}", cfg.path.display()))?;
    crate::proc::init_logging(args.log.as_deref().unwrap_or(&gc.log_level));
    let rt = Runtime::new(RuntimeConfig { name: format!("game{id}"), io_threads: gc.io_threads, listeners: vec![] })?;
    let clock = rt.unix_ms_base();
    let unix_ms = move |t: Instant| clock.1 + t.saturating_duration_since(clock.0).as_millis() as u64;
    let storage = cfg.storage.clone();
    let (freeze_env, status_path) = freeze_paths(&storage.freeze_dir, id);
    let map_size = FREEZE_MAP_BYTES;
    let n_disp = cfg.dispatchers.len();
    let seed = oxworld_net::id::os_seed();
    // When the freeze began (kept across failed restores, for the pause report).
    let frozen_at = std::fs::read_to_string(&status_path).ok().and_then(|l| status_field(&l, "at_ms"));
    let (mut world, restored) = if args.restore {
        let fail = |reason: String| -> anyhow::Error {
            let at = frozen_at.as_deref().map(|a| format!(" at_ms={a}")).unwrap_or_default();
            write_status(&status_path, &format!("state=restore-failed{at} reason={}", reason.replace('\n', " ")));
            anyhow::anyhow!("game{id}: restore failed: {reason} (the frozen data in {} is kept)", freeze_env.display())
        };
        let db = FreezeDb::open(&freeze_env, map_size).map_err(|e| fail(e.to_string()))?;
        let (meta, records) = db
            .read()
            .map_err(|e| fail(e.to_string()))?
            .ok_or_else(|| fail(format!("no complete freeze of game{id} in {}", freeze_env.display())))?;
        let frozen = crate::world::Frozen { meta, records };
        let (w, report) = World::restore(reg, id, n_disp, gc.boot_entity.as_deref(), seed, clock, &frozen)
            .map_err(|e| fail(e.to_string()))?;
        drop(db);
        (w, Some(report))
    } else {
        (World::new(reg, id, n_disp, gc.boot_entity.as_deref(), seed, clock)?, None)
    };
    world.set_save_interval(storage.save_interval);
    world.set_position_sync_interval(gc.position_sync_interval);
    let mut store =
        crate::store::open(&storage).with_context(|| format!("game{id}: opening the {} store", storage.backend))?;
    let (op_tx, op_rx) = crossbeam_channel::unbounded::<(u64, StoreOp)>();
    let (res_tx, res_rx) = crossbeam_channel::unbounded();
    let store_thread = rt.spawn_helper("store", move |notifier| {
        // Ends when the game drops its sender, after every queued operation ran. Whatever
        // queued up meanwhile runs as one batch (one LMDB commit).
        while let Ok(first) = op_rx.recv() {
            let mut batch = vec![first];
            batch.extend(op_rx.try_iter().take(crate::store::MAX_BATCH - 1));
            let (tickets, ops): (Vec<u64>, Vec<StoreOp>) = batch.into_iter().unzip();
            let results = store.execute_batch(ops);
            let mut gone = false;
            for (ticket, r) in tickets.into_iter().zip(results) {
                gone |= res_tx.send((ticket, r)).is_err();
            }
            if gone {
                break;
            }
            notifier.notify();
        }
    })?;
    let sink_env = freeze_env.clone();
    let sink_status = status_path.clone();
    let sink: FreezeSink = Box::new(move |frozen, since, _now| {
        let mut db = FreezeDb::open(&sink_env, map_size).map_err(|e| e.to_string())?;
        db.write(&frozen.meta, frozen.records.iter().cloned()).map_err(|e| e.to_string())?;
        // The one clock read of this glue: how long freezing and writing took, for the report
        // (`now` is when the last FreezeAck arrived, before the work).
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        write_status(
            &sink_status,
            &format!(
                "state=frozen entities={} freeze_ms={} at_ms={}",
                frozen.records.len(),
                now.saturating_duration_since(since).as_millis(),
                unix_ms(since)
            ),
        );
        Ok(())
    });
    let mut app = GameApp::new(&cfg, id, world, clock.0)
        .with_store(StoreLink { ops: op_tx, results: res_rx })
        .with_freeze_sink(sink);
    if let Some(report) = restored {
        let env = freeze_env.clone();
        let path = status_path.clone();
        app = app.restored(Box::new(move |now, released, failed| {
            // Only now is the freeze consumed: clear it so a later --restore cannot go back.
            if let Err(e) = FreezeDb::open(&env, map_size).and_then(|mut db| db.clear()) {
                warn!("game{id}: clearing the consumed freeze failed: {e}");
            }
            let pause =
                frozen_at.as_deref().and_then(|a| a.parse::<u64>().ok()).map(|a| unix_ms(now).saturating_sub(a));
            write_status(
                &path,
                &format!(
                    "state=restored entities={} restore_ms={} released={released} failed={failed} pause_ms={}",
                    report.entities,
                    now.saturating_duration_since(clock.0).as_millis(),
                    pause.map(|p| p.to_string()).unwrap_or_else(|| "unknown".into())
                ),
            );
        }));
    }
    info!("game{id}: starting ({} dispatchers{})", n_disp, if restored.is_some() { ", restored" } else { "" });
    let result = rt.run(&mut app);
    let fatal = app.fatal().map(str::to_owned);
    drop(app);
    if store_thread.join().is_err() {
        log::error!("game{id}: the store thread panicked");
    }
    result?;
    if let Some(f) = fatal {
        anyhow::bail!("game{id}: {f}");
    }
    Ok(())
}

/// Map size of a game's freeze environment (LMDB reserves address space, not disk).
pub const FREEZE_MAP_BYTES: usize = 8 << 30;

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use std::cell::RefCell;
    use std::path::Path;
    use std::rc::Rc;

    use oxworld_net::config::Config;
    use oxworld_net::runtime::{CloseReason, ConnId};

    use super::*;
    use crate::world::Frozen;

    const CFG: &str = "[deployment]\ndesired_dispatchers=2\ndesired_games=1\ndesired_gates=1\nsecret=k\n";

    fn enc(m: &Msg) -> Vec<u8> {
        let mut b = Vec::new();
        m.encode(&mut b);
        b
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
            let ack = Msg::HelloAck { dispatcher: d as u16 + 1, games: vec![1] };
            app.handle(now, Event::Frame { conn: c, data: enc(&ack) }, &mut out);
        }
        let _ = out.take_frames();
        (app, out, conns)
    }

    struct Boot;
    impl crate::entity::Entity for Boot {}

    fn sent(out: &mut Outbox) -> Vec<(ConnId, Msg)> {
        out.take_frames()
            .into_iter()
            .flat_map(|(c, fs)| fs.into_iter().map(move |f| (c, Msg::decode(&f).expect("valid"))))
            .collect()
    }

    /// SIGHUP: FreezeGame to every dispatcher; the world is written once, only after every
    /// FreezeAck, and the game is done.
    #[test]
    fn freeze_waits_for_every_ack_and_writes_once() {
        let now = Instant::now();
        let (app, mut out, conns) = linked(now);
        let writes: Rc<RefCell<Vec<Frozen>>> = Rc::default();
        let w = writes.clone();
        let mut app = app.with_freeze_sink(Box::new(move |f, _, _| {
            w.borrow_mut().push(f.clone());
            Ok(())
        }));
        app.handle(now, Event::Signal(Signal::Hangup), &mut out);
        let freeze: Vec<ConnId> =
            sent(&mut out).into_iter().filter(|(_, m)| *m == Msg::FreezeGame).map(|(c, _)| c).collect();
        assert_eq!(freeze.len(), 2, "asked every dispatcher");
        app.handle(now, Event::Frame { conn: conns[0], data: enc(&Msg::FreezeAck { dispatcher: 1 }) }, &mut out);
        app.tick(now, &mut out);
        assert!(writes.borrow().is_empty() && !app.done(), "one dispatcher still delivers");
        app.handle(now, Event::Frame { conn: conns[1], data: enc(&Msg::FreezeAck { dispatcher: 2 }) }, &mut out);
        app.tick(now, &mut out);
        app.tick(now, &mut out);
        assert_eq!(writes.borrow().len(), 1, "written exactly once");
        assert!(app.done() && app.is_frozen());
    }

    /// A sink error thaws: the game redials its dispatchers (which release what they held)
    /// and keeps running; a lost dispatcher mid-freeze does the same.
    #[test]
    fn a_failed_freeze_thaws_and_goes_on() {
        let now = Instant::now();
        let (app, mut out, conns) = linked(now);
        let mut app = app.with_freeze_sink(Box::new(|_, _, _| Err("disk full".into())));
        app.handle(now, Event::Signal(Signal::Hangup), &mut out);
        for (d, &c) in conns.iter().enumerate() {
            let ack = Msg::FreezeAck { dispatcher: d as u16 + 1 };
            app.handle(now, Event::Frame { conn: c, data: enc(&ack) }, &mut out);
        }
        assert!(!app.done());
        assert_eq!(out.take_closes().len(), 2, "links redialled: a fresh Hello thaws each dispatcher");
        // Once back, SIGHUP works again; a dispatcher lost mid-freeze abandons it.
        app.tick(now, &mut out);
        let conns: Vec<ConnId> = out.take_connects().into_iter().map(|(c, ..)| c).collect();
        for (d, &c) in conns.iter().enumerate() {
            app.handle(now, Event::Connected { conn: c }, &mut out);
            let ack = Msg::HelloAck { dispatcher: d as u16 + 1, games: vec![1] };
            app.handle(now, Event::Frame { conn: c, data: enc(&ack) }, &mut out);
        }
        app.handle(now, Event::Signal(Signal::Hangup), &mut out);
        assert!(sent(&mut out).iter().any(|(_, m)| *m == Msg::FreezeGame));
        app.handle(now, Event::Closed { conn: conns[0], reason: CloseReason::PeerClosed }, &mut out);
        assert!(!app.done());
        assert!(!out.take_closes().is_empty(), "the other dispatcher is redialled to thaw");
    }

    /// A restored game reports once every dispatcher has released its traffic.
    #[test]
    fn a_restored_game_reports_after_the_last_thawed() {
        let now = Instant::now();
        let (app, mut out, conns) = linked(now);
        let got: Rc<RefCell<Vec<(u64, u64)>>> = Rc::default();
        let g = got.clone();
        let mut app = app.restored(Box::new(move |_, r, f| g.borrow_mut().push((r, f))));
        let thawed = |d: u16, released, failed| enc(&Msg::Thawed { dispatcher: d, released, failed });
        app.handle(now, Event::Frame { conn: conns[0], data: thawed(1, 3, 0) }, &mut out);
        assert!(got.borrow().is_empty());
        app.handle(now, Event::Frame { conn: conns[1], data: thawed(2, 4, 1) }, &mut out);
        assert_eq!(*got.borrow(), vec![(7, 1)]);
    }
}
