//! The floor a gate's delivery cost is judged against (`--floor`): what one small loopback TCP
//! write costs this machine's CPU when nothing else happens. Socket pairs on loopback; one
//! thread writes one small message per write to each socket in turn (as a gate writes one
//! message to one client), another drains them all; the writer's own CPU time (the kernel's
//! loopback delivery included, as for the gate) per write is the figure.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Socket pairs the writes spread over.
const PAIRS: usize = 200;
/// Bytes per write: a small client message with its length prefix.
const MSG: usize = 48;

/// CPU nanoseconds the calling thread has run (`/proc/thread-self/schedstat`, first field).
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// What the floor measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Floor {
    /// Writes made.
    pub(crate) writes: u64,
    /// The writer thread's CPU microseconds per write.
    pub(crate) us_per_write: f64,
}

/// Writes for `secs` at about `rate` writes per second (0: as fast as it goes).
///
/// # Errors
/// When loopback sockets cannot be made or written.
pub(crate) fn measure(secs: f64, rate: f64) -> anyhow::Result<Floor> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind")?;
    let addr = listener.local_addr()?;
    let mut writers = Vec::with_capacity(PAIRS);
    let mut readers = Vec::with_capacity(PAIRS);
    for _ in 0..PAIRS {
        let w = TcpStream::connect(addr).context("connect")?;
        let (r, _) = listener.accept().context("accept")?;
        w.set_nodelay(true)?;
        r.set_nonblocking(true)?;
        writers.push(w);
        readers.push(r);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reader_stop = stop.clone();
    // The reader drains every socket in turn; it sleeps briefly when all were empty.
    let reader = std::thread::Builder::new().name("floor-reader".into()).spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        while !reader_stop.load(Ordering::Relaxed) {
            let mut got = false;
            for r in &mut readers {
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got = true;
                }
            }
            if !got {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    })?;
    let msg = [7u8; MSG];
    // Writes go out in bursts of BURST sockets (a message fanned out to many clients), paced
    // to `rate`: a sleep between bursts costs the writer little next to the writes.
    const BURST: u64 = 100;
    let gap = if rate > 0.0 { Duration::from_secs_f64(BURST as f64 / rate) } else { Duration::ZERO };
    let start = Instant::now();
    let cpu0 = thread_cpu_ns().context("thread CPU time")?;
    let mut writes = 0u64;
    let mut next = start;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..BURST {
            let w = &mut writers[(writes as usize) % PAIRS];
            w.write_all(&msg).context("write")?;
            writes += 1;
        }
        if !gap.is_zero() {
            next += gap;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    let cpu1 = thread_cpu_ns().context("thread CPU time")?;
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    Ok(Floor { writes, us_per_write: (cpu1.saturating_sub(cpu0)) as f64 / 1000.0 / writes.max(1) as f64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_floor_run_counts_writes_and_their_cost() {
        let f = measure(0.3, 0.0).expect("loopback works");
        assert!(f.writes > 100, "{f:?}");
        assert!(f.us_per_write > 0.0 && f.us_per_write < 1000.0, "{f:?}");
    }
}
