//! A game process: builds the world from the game's `Registry` (or rebuilds it from its freeze
//! with `--restore`), opens storage and runs the store thread, writes freezes to LMDB, and
//! keeps the status record's hot-swap fields (see `status`). The logic is the engine's
//! `GameApp`; this is its glue.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use anyhow::Context as _;
use crossbeam_channel::{Receiver, Sender};
use log::{info, warn};
use oxworld_engine::entity::Registry;
use oxworld_engine::game::{FreezeSink, GameApp, JobPort, StorePort};
use oxworld_engine::migrate::EntityImage;
use oxworld_engine::status::{ProcState, SwapReport};
use oxworld_engine::store::{MAX_BATCH, StoreError, StoreOp, StoreReply};
use oxworld_engine::world::jobs::JobFn;
use oxworld_engine::world::{Frozen, PanicPolicy, RestoreError, World, decode_records};
use oxworld_net::Id;
use oxworld_net::Value;
use oxworld_runtime::{Runtime, RuntimeConfig};
use oxworld_store::lmdb::FreezeDb;

use crate::proc::{self, ProcArgs};
use crate::status::{self, Hosted, StatusWriter, SwapStatus, UnixClock};

/// Map size of a game's freeze environment (LMDB reserves address space, not disk; the map
/// grows past it if a freeze needs more).
pub const FREEZE_MAP_BYTES: usize = 8 << 30;

/// Where game `id` keeps its freeze (an LMDB environment) under `freeze_dir`.
pub fn freeze_env(freeze_dir: &Path, id: u16) -> PathBuf {
    freeze_dir.join(format!("game{id}"))
}

type StoreResult = (u64, Result<StoreReply, StoreError>);

/// The game's end of its store thread: two channels.
struct ChannelPort {
    ops: Sender<(u64, StoreOp)>,
    results: Receiver<StoreResult>,
}

impl StorePort for ChannelPort {
    fn submit(&mut self, ticket: u64, op: StoreOp) -> Result<(), StoreOp> {
        self.ops.send((ticket, op)).map_err(|e| e.into_inner().1)
    }

    fn poll(&mut self) -> Option<StoreResult> {
        self.results.try_recv().ok()
    }
}

/// The game's side of its job threads.
struct JobChannels {
    jobs: Sender<(u64, JobFn)>,
    results: Receiver<(u64, Result<Value, String>)>,
}

impl JobPort for JobChannels {
    fn submit(&mut self, ticket: u64, job: JobFn) -> Result<(), JobFn> {
        self.jobs.send((ticket, job)).map_err(|e| e.into_inner().1)
    }

    fn poll(&mut self) -> Option<(u64, Result<Value, String>)> {
        self.results.try_recv().ok()
    }
}

/// Starts the job threads (one per core, at most 4): they run what entities hand to
/// `Ctx::run_off_loop` and wake the loop with each result. They end when the game drops its
/// sender. The channels hold at most `MAX_JOBS_IN_FLIGHT` (the world's bound).
fn start_job_threads(rt: &Runtime) -> std::io::Result<(JobChannels, Vec<std::thread::JoinHandle<()>>)> {
    let (job_tx, job_rx) = crossbeam_channel::unbounded::<(u64, JobFn)>();
    let (res_tx, res_rx) = crossbeam_channel::unbounded();
    let n = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    let mut threads = Vec::with_capacity(n);
    for i in 0..n {
        let (rx, tx) = (job_rx.clone(), res_tx.clone());
        threads.push(rt.spawn_helper(&format!("job{i}"), move |notifier| {
            while let Ok((ticket, job)) = rx.recv() {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                    .unwrap_or_else(|_| Err("the job panicked".to_owned()));
                if tx.send((ticket, r)).is_err() {
                    break;
                }
                notifier.notify();
            }
        })?);
    }
    Ok((JobChannels { jobs: job_tx, results: res_rx }, threads))
}

/// Runs a game process with the types of `reg` until SIGTERM/SIGINT (saves its persistent
/// entities, then exits) or SIGHUP (freezes for a hot swap, then exits for the new binary).
pub fn run_game(reg: Registry, args: &ProcArgs) -> anyhow::Result<()> {
    let cfg = args.load_config()?;
    let id = args.id;
    let gc = cfg.game(id).with_context(|| format!("game id {id} is not in {}", cfg.path.display()))?;
    proc::init_logging(args.log.as_deref().unwrap_or(&gc.log_level));
    let name = format!("game{id}");
    let clock = crate::unix_clock();
    // When the freeze being restored began, from the record the frozen process left (kept
    // across failed restores): the pause clients saw is measured from it.
    let prev_swap = args.status_file.as_deref().and_then(status::read).and_then(|r| r.swap);
    // (And how long that freeze took, so the restored process reports the whole swap.)
    let frozen_at = prev_swap.and_then(|s| s.at_ms).map(|at| (at, prev_swap.and_then(|s| s.freeze_ms)));
    let mut status = StatusWriter::new(args.status_file.clone(), &name, "game", clock);
    let storage = cfg.storage.clone();
    let env = freeze_env(&storage.freeze_dir, id);
    let n_disp = cfg.dispatchers.len();
    let seed = oxworld_runtime::os_seed();
    let clock_pair = (clock.base, clock.base_ms);
    let (mut world, restored) = if args.restore {
        status.set_swap(Some(SwapStatus {
            at_ms: frozen_at.map(|f| f.0),
            freeze_ms: frozen_at.and_then(|f| f.1),
            ..Default::default()
        }));
        let restored = restore(reg, id, &cfg, seed, clock_pair, &env).map_err(|reason| {
            status.write(Instant::now(), ProcState::RestoreFailed, Some(&reason.replace('\n', " ")));
            anyhow::anyhow!("{name}: restore failed: {reason} (the frozen data in {} is kept)", env.display())
        })?;
        (restored.0, Some(restored.1))
    } else {
        let w = World::new(reg, id, n_disp, gc.boot_entity.as_deref(), seed, clock_pair);
        (status.fail_on_err(w.map_err(anyhow::Error::from))?, None)
    };
    world.set_save_interval(storage.save_interval);
    world.set_position_sync_interval(gc.position_sync_interval);
    world.set_deployment(cfg.games.len() as u16, cfg.gates.len() as u16);
    world.set_panic_policy(if gc.quarantine_on_panic { PanicPolicy::Quarantine } else { PanicPolicy::Keep });
    world.set_clock(Box::new(oxworld_runtime::clock_now));
    world.set_slow_call(gc.slow_call);
    world.set_client_resume(gc.client_resume);
    oxworld_engine::panics::install_hook();
    let store = oxworld_store::open(&storage).with_context(|| format!("{name}: opening the {} store", storage.backend));
    let mut store = status.fail_on_err(store)?;
    let rt = Runtime::new(RuntimeConfig { name: name.clone(), io_threads: gc.io_threads, listeners: vec![] });
    let rt = status.fail_on_err(rt.map_err(anyhow::Error::from))?;
    let (op_tx, op_rx) = crossbeam_channel::unbounded::<(u64, StoreOp)>();
    let (res_tx, res_rx) = crossbeam_channel::unbounded();
    let store_thread = rt.spawn_helper("store", move |notifier| {
        // Ends when the game drops its sender, after every queued operation ran. Whatever
        // queued up meanwhile runs as one batch (one LMDB commit).
        while let Ok(first) = op_rx.recv() {
            let mut batch = vec![first];
            batch.extend(op_rx.try_iter().take(MAX_BATCH - 1));
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
    // When the freeze was written (the freeze's duration is measured to here).
    let written_at: Rc<Cell<Option<Instant>>> = Rc::default();
    let written = written_at.clone();
    let sink_env = env.clone();
    let sink: FreezeSink = Box::new(move |frozen: &Frozen| {
        let mut db = FreezeDb::open(&sink_env, FREEZE_MAP_BYTES).map_err(|e| e.to_string())?;
        db.write(&frozen.meta, &frozen.records).map_err(|e| e.to_string())?;
        written.set(Some(Instant::now()));
        Ok(())
    });
    let (jobs, job_threads) = status.fail_on_err(start_job_threads(&rt).map_err(anyhow::Error::from))?;
    let mut app = GameApp::new(&cfg, id, world, clock.base)
        .with_store(Box::new(ChannelPort { ops: op_tx, results: res_rx }))
        .with_jobs(Box::new(jobs))
        .with_freeze_sink(sink);
    if let Some(entities) = restored {
        app = app.restored(entities);
    }
    let clear_env = env.clone();
    let mut hosted = Hosted::new(app, status)
        .swap_fields(Box::new(move |s: &SwapReport| swap_status(s, clock, written_at.get(), frozen_at)))
        .on_change(Box::new(move |from, to, _| {
            if from == ProcState::Restoring && to == ProcState::Ready {
                // Only now is the freeze consumed: clear it so a later --restore cannot go back.
                if let Err(e) = FreezeDb::open(&clear_env, FREEZE_MAP_BYTES).and_then(|mut db| db.clear()) {
                    warn!("game{id}: clearing the consumed freeze failed: {e}");
                }
            }
        }));
    crate::serve_metrics(&rt, &mut hosted, gc.metrics_addr)?;
    info!("{name}: starting ({n_disp} dispatchers{})", if restored.is_some() { ", restored" } else { "" });
    let result = rt.run(&mut hosted);
    let err = result.as_ref().err().map(ToString::to_string);
    hosted.finish(Instant::now(), err.as_deref());
    let fatal = oxworld_engine::status::Report::fatal(&hosted.app).map(str::to_owned);
    if hosted.app.is_frozen() {
        // Everything the world holds is in the freeze, and the clients wait until the new
        // process is up: the OS takes this memory back at exit far faster than dropping each
        // entity (about 200 ms at 100,000 entities). The store and job channels still close,
        // so their threads finish what was queued and end.
        hosted.app.release_ports();
        std::mem::forget(hosted);
    } else {
        // Dropping the app drops the store channel: the thread finishes what was queued and ends.
        drop(hosted);
    }
    if store_thread.join().is_err() {
        log::error!("{name}: the store thread panicked");
    }
    for t in job_threads {
        if t.join().is_err() {
            log::error!("{name}: a job thread panicked");
        }
    }
    result?;
    if let Some(f) = fatal {
        anyhow::bail!("{name}: {f}");
    }
    Ok(())
}

/// Reads game `id`'s freeze and rebuilds its world; the error is the reason to report.
fn restore(
    reg: Registry,
    id: u16,
    cfg: &oxworld_net::config::Config,
    seed: oxworld_net::IdSeed,
    clock: (Instant, u64),
    env: &Path,
) -> Result<(World, usize), String> {
    let gc = cfg.game(id).ok_or_else(|| format!("game id {id} is not in the config"))?;
    let t0 = Instant::now();
    let db = FreezeDb::open(env, FREEZE_MAP_BYTES).map_err(|e| e.to_string())?;
    let n_disp = cfg.dispatchers.len();
    let boot = gc.boot_entity.as_deref();
    // The records are read in place from the memory map (no copy), decoded and rebuilt while
    // the read transaction is open.
    let mut located = None;
    let rebuilt = db
        .read_with(|meta, records| {
            located = Some(Instant::now());
            World::restore_with(reg, id, n_disp, boot, seed, clock, meta, records, decode_in_parallel)
        })
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no complete freeze of game{id} in {}", env.display()))?;
    let (w, report) = rebuilt.map_err(|e| e.to_string())?;
    let t2 = Instant::now();
    let t1 = located.unwrap_or(t2);
    let ms = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64() * 1e3;
    info!(
        "game{id}: found the freeze's records in {:.1} ms ({} since the process began), rebuilt the world in {:.1} ms",
        ms(t0, t1),
        format_args!("{:.1} ms", ms(clock.0, t0)),
        ms(t1, t2)
    );
    Ok((w, report.entities))
}

/// Decodes a freeze's entity records on up to 4 threads (one per core), each a contiguous
/// slice, and concatenates the results in order, so the first failing record in the freeze is
/// the one reported. During a swap the game's clients wait and the other processes are idle:
/// the decode is the largest step of the restore (about 2 us per entity).
fn decode_in_parallel<R: AsRef<[u8]> + Sync>(records: &[R]) -> Result<Vec<(Id, EntityImage)>, RestoreError> {
    /// Below this, one thread's start costs more than it saves.
    const MIN_PER_THREAD: usize = 2048;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    let threads = cores.min(records.len() / MIN_PER_THREAD).max(1);
    if threads == 1 {
        return decode_records(records, 0);
    }
    let per = records.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = records
            .chunks(per)
            .enumerate()
            .map(|(i, part)| {
                let thread = std::thread::Builder::new().name(format!("decode{i}"));
                (i, part, thread.spawn_scoped(s, move || decode_records(part, i * per)))
            })
            .collect();
        // Every thread is joined before the first error is returned (the scope would panic
        // on a panicked thread left unjoined).
        let joined: Vec<_> = parts
            .into_iter()
            .map(|(i, part, thread)| match thread {
                Ok(t) => {
                    t.join().map_err(|_| RestoreError::Record { index: i * per, reason: "its decoder panicked".into() })
                }
                // No thread to be had: this slice is decoded here.
                Err(_) => Ok(decode_records(part, i * per)),
            })
            .collect();
        let mut out = Vec::with_capacity(records.len());
        for decoded in joined {
            out.extend(decoded??);
        }
        Ok(out)
    })
}

/// The status record's hot-swap fields from the game's report.
/// `frozen_at`: when the freeze this process restored began (Unix ms), and how long it took.
fn swap_status(
    s: &SwapReport,
    clock: UnixClock,
    written_at: Option<Instant>,
    frozen_at: Option<(u64, Option<u64>)>,
) -> SwapStatus {
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let at_ms = s.freeze_began.map(|t| clock.ms(t)).or(frozen_at.map(|f| f.0));
    let thawed = s.thawed_at;
    let froze = s.freeze_began.zip(written_at).map(|(a, b)| ms(b.saturating_duration_since(a)));
    SwapStatus {
        entities: s.entities,
        at_ms,
        freeze_ms: froze.or(frozen_at.and_then(|f| f.1)),
        restore_ms: thawed.map(|t| ms(t.saturating_duration_since(clock.base))),
        released: thawed.map(|_| s.released),
        failed: thawed.map(|_| s.failed),
        pause_ms: thawed.zip(at_ms).map(|(t, at)| clock.ms(t).saturating_sub(at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u32) -> Vec<u8> {
        let image = EntityImage {
            type_name: format!("T{}", i % 7),
            attrs: Value::Map(Default::default()),
            timers: Vec::new(),
            client: None,
            away: None,
            props: Vec::new(),
            pos: [i as f32, 0.0, 1.0, 0.5],
            space: Id::NIL,
            state: Value::Int(i64::from(i)),
            client_move: i.is_multiple_of(2),
            radius: Some(10.0),
            cron: Vec::new(),
            space_kind: None,
        };
        let mut rec = (u128::from(i) + 1).to_be_bytes().to_vec();
        rec.extend(image.encode());
        rec
    }

    /// The threads' results, concatenated, are what one thread decodes, in the same order;
    /// a bad record is reported by its index in the whole freeze.
    #[test]
    fn parallel_decode_matches_the_serial_one_and_names_the_first_bad_record() {
        let mut records: Vec<Vec<u8>> = (0..10_001).map(record).collect();
        let serial = decode_records(&records, 0).expect("serial");
        let parallel = decode_in_parallel(&records).expect("parallel");
        assert_eq!(parallel, serial);
        assert_eq!(parallel.len(), 10_001);
        records[9_000].truncate(20);
        records[9_500] = vec![1, 2, 3];
        match decode_in_parallel(&records) {
            Err(RestoreError::Record { index, .. }) => assert_eq!(index, 9_000),
            other => panic!("expected a bad record at 9000, got {other:?}"),
        }
        // Few records: one thread, same result.
        assert_eq!(decode_in_parallel(&records[..10]).expect("small"), decode_records(&records[..10], 0).expect("s"));
    }
}
