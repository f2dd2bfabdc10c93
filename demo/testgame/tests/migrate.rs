//! Real-process migration under a stream of calls: 2 dispatchers, 2 games, 1 gate; 10 clients
//! each hop their player between the two games' arenas 20+ times while numbered `seq` calls
//! are in flight (several sent right before and right after each hop). Every call must be
//! answered exactly once, in order; both games must answer each client; no client may see its
//! own player destroyed, get an error, or be disconnected. The same again around a hot swap.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oxworld_bin::testkit::TestCluster;
use oxworld_client::{BlockingClient, ClientError};
use oxworld_net::client_proto::ServerMsg;
use oxworld_net::{Id, Value};

const CLIENTS: usize = 10;
const HOPS: usize = 20;
/// Calls in flight around each hop.
const AROUND: i64 = 5;

/// What one client saw.
#[derive(Debug, Default)]
struct Seen {
    sent: i64,
    replies: Vec<i64>,
    games: Vec<i64>,
    own_destroyed: bool,
    errors: Vec<String>,
    hops_done: usize,
}

fn record(seen: &mut Seen, me: Id, m: ServerMsg) {
    match m {
        ServerMsg::Call { method, args, .. } if method == "seq_reply" => {
            seen.replies.push(args[0].as_int().unwrap_or(-1));
            seen.games.push(args[1].as_int().unwrap_or(-1));
        }
        ServerMsg::DestroyEntity { id } if id == me => seen.own_destroyed = true,
        ServerMsg::Error { message, .. } => seen.errors.push(message),
        _ => {}
    }
}

/// Hops `hops` times (until `stop`, if given), with `AROUND` seq calls before and after
/// each hop, then waits for every reply. `progress` counts finished hops (what a test waits
/// on instead of sleeping).
fn client(
    dial: oxworld_client::Dial,
    hops: usize,
    stop: Option<Arc<AtomicBool>>,
    progress: Arc<AtomicUsize>,
) -> Result<Seen, String> {
    let mut c = BlockingClient::connect(&dial, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    let me = c.wait_player(Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let mut seen = Seen::default();
    let send = |c: &mut BlockingClient, seen: &mut Seen| -> Result<(), String> {
        c.call(me, "seq", vec![Value::Int(seen.sent)]).map_err(|e| e.to_string())?;
        seen.sent += 1;
        Ok(())
    };
    let mut h = 0;
    while h < hops || stop.as_ref().is_some_and(|s| !s.load(Ordering::Relaxed)) {
        for _ in 0..AROUND {
            send(&mut c, &mut seen)?;
        }
        c.call(me, "hop", vec![]).map_err(|e| e.to_string())?;
        for _ in 0..AROUND {
            send(&mut c, &mut seen)?;
        }
        // Let this hop finish before the next (a hop while migrating is refused by design).
        let want = seen.sent;
        let deadline = Instant::now() + Duration::from_secs(20);
        while (seen.replies.len() as i64) < want {
            let left = deadline.saturating_duration_since(Instant::now());
            match c.next(left) {
                Ok(m) => record(&mut seen, me, m),
                Err(e) => return Err(format!("waiting for replies after hop {h}: {e} ({seen:?})")),
            }
        }
        // Drain whatever the move produced (space and neighbour creates and destroys).
        loop {
            match c.next(Duration::from_millis(30)) {
                Ok(m) => record(&mut seen, me, m),
                Err(ClientError::Timeout(_)) => break,
                Err(e) => return Err(format!("after hop {h}: {e}")),
            }
        }
        h += 1;
        seen.hops_done = h;
        progress.fetch_add(1, Ordering::Relaxed);
    }
    Ok(seen)
}

fn check(i: usize, seen: &Seen) {
    assert_eq!(seen.replies, (0..seen.sent).collect::<Vec<_>>(), "client {i}: every call once, in order");
    assert!(seen.errors.is_empty(), "client {i}: errors {:?}", seen.errors);
    assert!(!seen.own_destroyed, "client {i}: saw its own player destroyed");
    assert!(seen.games.contains(&1) && seen.games.contains(&2), "client {i}: both games answered: {:?}", seen.games);
    // Between two hops, consecutive calls are answered by one game, then the other.
    let switches = seen.games.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(switches >= seen.hops_done / 2, "client {i}: {switches} game switches for {} hops", seen.hops_done);
}

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_testgame"))
}

#[test]
fn players_hop_between_games_under_a_call_stream_and_lose_nothing() {
    let cluster = TestCluster::start("migrate", &exe(), 2, 2, "").expect("cluster");
    let gate = cluster.gate.clone();
    let progress = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let progress = progress.clone();
            let gate = gate.clone();
            std::thread::spawn(move || client(gate, HOPS, None, progress))
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let seen = t.join().expect("client thread").unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(seen.hops_done, HOPS);
        check(i, &seen);
    }
}

/// Migrations keep going while both games are hot-swapped.
#[test]
fn hops_survive_a_hot_swap() {
    let cluster = TestCluster::start("migrate-swap", &exe(), 2, 2, "").expect("cluster");
    let gate = cluster.gate.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (stop, progress) = (stop.clone(), progress.clone());
            let gate = gate.clone();
            std::thread::spawn(move || client(gate, 3, Some(stop), progress))
        })
        .collect();
    // Waits until the clients have finished `n` more hops (between them).
    let hops_more = |n: usize| {
        let from = progress.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(30);
        while progress.load(Ordering::Relaxed) < from + n {
            assert!(Instant::now() < deadline, "the clients stopped hopping");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    hops_more(4);
    let out = cluster.cli(&["reload"]).expect("oxworld runs");
    assert!(
        out.status.success(),
        "reload: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    hops_more(4);
    stop.store(true, Ordering::Relaxed);
    for (i, t) in threads.into_iter().enumerate() {
        let seen = t.join().expect("client thread").unwrap_or_else(|e| panic!("client {i}: {e}"));
        check(i, &seen);
    }
}
