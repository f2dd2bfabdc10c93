//! The game process: a [`World`] wired to the dispatcher links. A sans-IO [`App`]; [`run`]
//! connects it to the `net` runtime.

use std::time::Instant;

use anyhow::Context as _;
use log::{info, warn};
use oxworld_net::msg::ProcKind;
use oxworld_net::runtime::{App, Event, Outbox, Runtime, RuntimeConfig, Signal};

use crate::entity::Registry;
use crate::gate::internal_opts;
use crate::links::{LinkEvent, Links};
use crate::proc::ProcArgs;
use crate::world::World;

/// How often a game reports its load to every dispatcher.
pub const LOAD_REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// One game's logic: its world and its links to the dispatchers.
pub struct GameApp {
    id: u16,
    world: World,
    links: Links,
    last_now: Instant,
    next_load_report: Instant,
    done: bool,
    fatal: Option<String>,
}

impl GameApp {
    /// Game `id` of `cfg` running `world`.
    pub fn new(cfg: &oxworld_net::config::Config, id: u16, world: World, now: Instant) -> Self {
        let addrs = cfg.dispatchers.iter().map(|d| d.advertise_addr).collect();
        let links =
            Links::new(format!("game{id}"), ProcKind::Game, id, cfg.secret.clone(), addrs, internal_opts(cfg), now);
        GameApp { id, world, links, last_now: now, next_load_report: now, done: false, fatal: None }
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
        for (d, msg) in self.world.drain_output() {
            self.links.send(d, &msg, out);
        }
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
                Ok(Some((_, LinkEvent::Msg(m)))) => self.world.handle(now, m),
                Ok(None) => {}
                Err(refused) => {
                    self.fatal = Some(refused.to_string());
                    self.done = true;
                }
            },
            Event::Closed { conn, reason } => {
                self.links.on_closed(conn, &reason, now);
            }
            Event::Accepted { conn, .. } => out.close(conn, "games accept no connections"),
            Event::Signal(Signal::Terminate) => {
                info!("game{}: stopping; destroying {} entities", self.id, self.world.entity_count());
                self.world.shutdown(now);
                self.done = true;
            }
            Event::Wake => {}
            Event::Signal(Signal::Hangup) => warn!("game{}: SIGHUP (freeze) is not supported yet; ignored", self.id),
        }
        self.pump(out);
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox) {
        self.last_now = now;
        self.links.tick(now, out);
        self.world.tick(now);
        if now >= self.next_load_report {
            self.next_load_report = now + LOAD_REPORT_EVERY;
            let msg = oxworld_net::msg::Msg::GameLoad { load: self.world.load() };
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
        [self.links.next_deadline(), self.world.next_deadline(), Some(self.next_load_report)]
            .into_iter()
            .flatten()
            .min()
    }

    fn done(&self) -> bool {
        self.done
    }
}

/// Runs a game process: parses `--config`, `--id` and `--log` from the command line, builds
/// the world from `reg`, and serves until SIGTERM/SIGINT.
pub fn run(reg: Registry) -> anyhow::Result<()> {
    let args = ProcArgs::parse_args();
    let cfg = args.load_config()?;
    let gc = cfg.game(args.id).with_context(|| format!("game id {} is not in {}", args.id, cfg.path.display()))?;
    crate::proc::init_logging(args.log.as_deref().unwrap_or(&gc.log_level));
    let rt =
        Runtime::new(RuntimeConfig { name: format!("game{}", args.id), io_threads: gc.io_threads, listeners: vec![] })?;
    let clock = rt.unix_ms_base();
    let world =
        World::new(reg, args.id, cfg.dispatchers.len(), gc.boot_entity.as_deref(), oxworld_net::id::os_seed(), clock)?;
    let mut app = GameApp::new(&cfg, args.id, world, clock.0);
    info!("game{}: starting ({} dispatchers)", args.id, cfg.dispatchers.len());
    rt.run(&mut app)?;
    if let Some(f) = app.fatal() {
        anyhow::bail!("game{}: {f}", args.id);
    }
    Ok(())
}
