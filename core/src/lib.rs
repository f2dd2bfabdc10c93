//! oxworld core: the library a game links. The entity world as a sans-IO state machine, the
//! dispatcher and gate state machines, and the `run` functions that wire each to the `net`
//! runtime. Never touches a socket or the clock itself: time is passed in.

pub mod aoi;
pub mod attr;
pub mod cron;
pub mod dispatcher;
pub mod entity;
pub mod game;
pub mod gate;
mod links;
pub mod migrate;
pub mod proc;
pub mod space;
pub mod store;
pub mod timer;
pub mod world;

pub use attr::{AttrError, AttrFlags, Attrs, ListMut, MapMut};
pub use entity::{Args, CallError, Entity, Expose, Registry, id_value};
pub use oxworld_net::client_proto::Pos;
pub use oxworld_net::id::fnv1a32;
pub use oxworld_net::{Id, Value};
pub use timer::TimerId;
pub use world::{ClientRef, CreateError, Ctx, TimerError, World};

/// Runs a dispatcher process (flags: `--config`, `--id`, `--log`).
pub fn run_dispatcher() -> anyhow::Result<()> {
    use anyhow::Context as _;
    use oxworld_net::runtime::{ConnOpts, ListenSpec, Runtime, RuntimeConfig};
    let args = proc::ProcArgs::parse_args();
    let cfg = args.load_config()?;
    let dc = cfg
        .dispatcher(args.id)
        .with_context(|| format!("dispatcher id {} is not in {}", args.id, cfg.path.display()))?;
    proc::init_logging(args.log.as_deref().unwrap_or(&dc.log_level));
    let opts = ConnOpts { max_frame: cfg.max_internal_frame, max_queued: cfg.internal_queue_limit, idle_timeout: None };
    let listen = ListenSpec { addr: dc.listen_addr, opts, max_conns: 4096 };
    let rt = Runtime::new(RuntimeConfig {
        name: format!("dispatcher{}", args.id),
        io_threads: dc.io_threads,
        listeners: vec![listen],
    })
    .with_context(|| format!("dispatcher{}: cannot listen on {}", args.id, dc.listen_addr))?;
    log::info!("dispatcher{}: listening on {}", args.id, rt.local_addr(0)?);
    let mut app = dispatcher::DispatcherApp::new(&cfg, args.id);
    rt.run(&mut app)?;
    Ok(())
}

/// Runs a gate process (flags: `--config`, `--id`, `--log`).
pub fn run_gate() -> anyhow::Result<()> {
    use anyhow::Context as _;
    use oxworld_net::runtime::{ListenSpec, Runtime, RuntimeConfig};
    let args = proc::ProcArgs::parse_args();
    let cfg = args.load_config()?;
    let gc = cfg.gate(args.id).with_context(|| format!("gate id {} is not in {}", args.id, cfg.path.display()))?;
    proc::init_logging(args.log.as_deref().unwrap_or(&gc.log_level));
    let listen = ListenSpec { addr: gc.listen_addr, opts: gate::client_opts(gc), max_conns: gc.max_clients };
    let rt = Runtime::new(RuntimeConfig {
        name: format!("gate{}", args.id),
        io_threads: gc.io_threads,
        listeners: vec![listen],
    })
    .with_context(|| format!("gate{}: cannot listen on {}", args.id, gc.listen_addr))?;
    log::info!("gate{}: listening for clients on {}", args.id, rt.local_addr(0)?);
    let clock = rt.unix_ms_base();
    let mut app = gate::GateApp::new(&cfg, args.id, oxworld_net::id::os_seed(), clock);
    rt.run(&mut app)?;
    if let Some(f) = app.fatal() {
        anyhow::bail!("gate{}: {f}", args.id);
    }
    Ok(())
}
