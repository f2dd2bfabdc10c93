//! Process glue: turns the engine's sans-IO state machines into running processes. Parses the
//! command line ([`proc`]), sets up logging, binds the runtime's listeners, opens storage and
//! runs a game's store thread, keeps the process's status record ([`status`]), and decides
//! the exit code in one place ([`proc::main`]). Everything here that touches the outside world
//! is thin; the logic it runs lives in `oxworld-engine`.

mod game;
pub mod metrics;
pub mod proc;
pub mod status;

use anyhow::Context as _;
use oxworld_engine::dispatcher::DispatcherApp;
use oxworld_engine::gate::{self, GateApp};
use oxworld_engine::status::Report;
use oxworld_net::app::{App, ConnOpts};
use oxworld_net::channel::{Mode, ServerSettings, read_key_file};
use oxworld_net::msg::HANDSHAKE_MAX_FRAME;
use oxworld_runtime::{ListenSpec, Runtime, RuntimeConfig};

pub use game::{FREEZE_MAP_BYTES, freeze_env, run_game};
pub use proc::{ProcArgs, main};
pub use status::{StatusRecord, SwapStatus};

use crate::status::{Hosted, StatusWriter, UnixClock};
use oxworld_engine::metrics::Metrics;

/// Runs a dispatcher process until SIGTERM or SIGINT.
pub fn run_dispatcher(args: &ProcArgs) -> anyhow::Result<()> {
    let cfg = args.load_config()?;
    let dc = cfg
        .dispatcher(args.id)
        .with_context(|| format!("dispatcher id {} is not in {}", args.id, cfg.path.display()))?;
    proc::init_logging(args.log.as_deref().unwrap_or(&dc.log_level));
    let name = format!("dispatcher{}", args.id);
    let mut status = StatusWriter::new(args.status_file.clone(), &name, "dispatcher", unix_clock());
    // Frames are capped small until a peer's Hello is accepted (the dispatcher raises the cap).
    let opts = ConnOpts { max_frame: HANDSHAKE_MAX_FRAME, max_queued: cfg.internal_queue_limit };
    let listen = ListenSpec { addr: dc.listen_addr, opts, max_conns: dc.max_conns, channel: None, ws: None, kcp: None };
    let rt = Runtime::new(RuntimeConfig { name: name.clone(), io_threads: dc.io_threads, listeners: vec![listen] })
        .with_context(|| format!("{name}: cannot listen on {}", dc.listen_addr));
    let rt = status.fail_on_err(rt)?;
    log::info!("{name}: listening on {}", rt.local_addr(0)?);
    run_hosted(rt, Hosted::new(DispatcherApp::new(&cfg, args.id), status), dc.metrics_addr)
}

/// Runs a gate process until SIGTERM or SIGINT (or a dispatcher refuses it).
pub fn run_gate(args: &ProcArgs) -> anyhow::Result<()> {
    let cfg = args.load_config()?;
    let gc = cfg.gate(args.id).with_context(|| format!("gate id {} is not in {}", args.id, cfg.path.display()))?;
    proc::init_logging(args.log.as_deref().unwrap_or(&gc.log_level));
    let name = format!("gate{}", args.id);
    let mut status = StatusWriter::new(args.status_file.clone(), &name, "gate", unix_clock());
    let channel = status.fail_on_err(client_channel(gc))?;
    // One limit for all transports: `max_clients` per listener, and the gate itself closes
    // clients past `max_clients` in all.
    let mut listeners = vec![ListenSpec {
        addr: gc.listen_addr,
        opts: gate::client_opts(gc),
        max_conns: gc.max_clients,
        channel: Some(channel.clone()),
        ws: None,
        kcp: None,
    }];
    if let Some(addr) = gc.ws_addr {
        let ws = oxworld_net::ws::WsSettings {
            allowed_origins: gc.ws_allowed_origins.clone(),
            web_root: gc.web_root_in(args.game_dir.as_deref()),
            max_record: oxworld_net::channel::MAX_RECORD,
            site_info: Some(site_info(&channel)),
        };
        listeners.push(ListenSpec {
            addr,
            opts: gate::client_opts(gc),
            max_conns: gc.max_clients,
            channel: Some(channel.clone()),
            ws: Some(std::sync::Arc::new(ws)),
            kcp: None,
        });
    }
    if let Some(addr) = gc.kcp_addr {
        let k = &gc.kcp;
        let params = oxworld_net::kcp::KcpParams {
            nodelay: k.nodelay,
            interval: k.interval_ms,
            resend: k.resend,
            no_congestion: k.no_congestion,
            snd_wnd: k.snd_wnd,
            rcv_wnd: k.rcv_wnd,
            mtu: k.mtu,
            dead_link: 20,
        };
        listeners.push(ListenSpec {
            addr,
            opts: gate::client_opts(gc),
            max_conns: gc.max_clients,
            channel: Some(channel.clone()),
            ws: None,
            kcp: Some(oxworld_runtime::KcpListen {
                params,
                recv_buffer: k.udp_recv_buffer,
                send_buffer: k.udp_send_buffer,
            }),
        });
    }
    let rt =
        Runtime::new(RuntimeConfig { name: name.clone(), io_threads: gc.io_threads, listeners }).with_context(|| {
            format!("{name}: cannot listen on {} / ws {:?} / kcp {:?}", gc.listen_addr, gc.ws_addr, gc.kcp_addr)
        });
    let rt = status.fail_on_err(rt)?;
    let mut transports = vec![format!("tcp {}", rt.local_addr(0)?)];
    let mut i = 1;
    if gc.ws_addr.is_some() {
        transports.push(format!("websocket {}", rt.local_addr(i)?));
        i += 1;
    }
    if gc.kcp_addr.is_some() {
        transports.push(format!("kcp {}", rt.local_addr(i)?));
    }
    log::info!(
        "{name}: listening for clients on {} ({})",
        transports.join(", "),
        if gc.encrypt { "encrypted" } else { "unencrypted" }
    );
    let app = GateApp::new(&cfg, gc, oxworld_runtime::os_seed(), rt.unix_ms_base());
    run_hosted(rt, Hosted::new(app, status), gc.metrics_addr)
}

/// The client channel a gate runs on every transport (PROTOCOL.md section 2).
/// What `GET /oxworld.json` on the WebSocket port answers: the details a page served by this
/// gate needs to connect back (trust on first use of the key; a public deployment puts TLS in
/// front of the page).
fn site_info(channel: &ServerSettings) -> String {
    let key = channel.key.as_ref().map(|k| format!("\"{}\"", oxworld_net::channel::hex(&k.public())));
    format!(
        "{{\"protocol\":{},\"encrypt\":{},\"server_key\":{}}}",
        oxworld_net::client_proto::CLIENT_PROTOCOL_VERSION,
        key.is_some(),
        key.unwrap_or_else(|| "null".to_owned())
    )
}

fn client_channel(gc: &oxworld_net::config::GateConfig) -> anyhow::Result<std::sync::Arc<ServerSettings>> {
    let key = if gc.encrypt { Some(read_key_file(&gc.key_file).map_err(anyhow::Error::msg)?) } else { None };
    Ok(std::sync::Arc::new(ServerSettings {
        mode: if gc.encrypt { Mode::NoiseNk } else { Mode::Plain },
        key,
        compress_threshold: gc.compress_threshold,
        max_message: gc.max_client_frame,
    }))
}

/// This process's clock pair for status records.
pub(crate) fn unix_clock() -> UnixClock {
    let (base, base_ms) = oxworld_runtime::unix_clock();
    UnixClock { base, base_ms }
}

/// Has `hosted`'s status records measure the loop's load, and starts the process's Prometheus
/// endpoint on `addr` (if set) with `hosted` publishing to it.
pub(crate) fn serve_metrics<A: App + Report + Metrics>(
    rt: &Runtime,
    hosted: &mut Hosted<A>,
    addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    hosted.status.sample_load(rt.loop_stats());
    let Some(addr) = addr else { return Ok(()) };
    let name = hosted.status.record().name.clone();
    let shared = std::sync::Arc::new(metrics::Shared::default());
    let bound = metrics::serve(addr, &name, shared.clone(), rt.loop_stats())
        .with_context(|| format!("{name}: cannot serve metrics on {addr}"));
    let bound = hosted.status.fail_on_err(bound)?;
    log::info!("{name}: metrics on http://{bound}/metrics");
    hosted.status.set_metrics_addr(bound);
    hosted.publish_metrics(metrics::Publisher::new(shared));
    Ok(())
}

/// Runs `hosted` on `rt` until it is done, then writes its final record.
fn run_hosted<A: App + Report + Metrics>(
    rt: Runtime,
    mut hosted: Hosted<A>,
    metrics_addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    serve_metrics(&rt, &mut hosted, metrics_addr)?;
    let result = rt.run(&mut hosted);
    let err = result.as_ref().err().map(ToString::to_string);
    hosted.finish(oxworld_runtime::clock_now(), err.as_deref());
    result?;
    if let Some(f) = hosted.app.fatal() {
        anyhow::bail!("{}: {f}", hosted.status.record().name);
    }
    Ok(())
}
