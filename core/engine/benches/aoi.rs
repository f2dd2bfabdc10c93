//! AOI step benchmark: 10,000 entities placed uniformly in a 2,000 x 2,000 area, every entity
//! moving each step by up to 5 units per axis (kept inside the area); one step = 10,000
//! `move_to` calls + one `flush` into a reused events buffer. Populations: every radius 100
//! (`step_10000`), radii spread over 50..200 with the same cell size (`step_10000_mixed_radius`),
//! and only 1 % of the entities moving (`step_10000_1pct_moving`, the sparse path).
//!
//! Run: `cargo bench -p oxworld-engine --bench aoi`.

use divan::Bencher;
use oxworld_engine::aoi::{Aoi, AoiEvent};

const N: u32 = 10_000;
const SIDE: f32 = 2_000.0;
const MAX_STEP: f32 = 5.0;
const CELL: f32 = 100.0;

/// splitmix64: tiny, seeded, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [-MAX_STEP, MAX_STEP).
    fn step(&mut self) -> f32 {
        (self.unit() * 2.0 - 1.0) * MAX_STEP
    }
}

struct World {
    aoi: Aoi,
    pos: Vec<(f32, f32)>,
    rng: Rng,
    events: Vec<AoiEvent>,
}

impl World {
    fn new(radius: impl Fn(&mut Rng) -> f32) -> Self {
        let mut rng = Rng(0x5eed);
        let mut aoi = Aoi::new(CELL);
        let mut pos = Vec::with_capacity(N as usize);
        let mut events = Vec::new();
        for k in 0..N {
            let (x, z) = (rng.unit() * SIDE, rng.unit() * SIDE);
            let r = radius(&mut rng);
            aoi.insert(k, x, z, r, &mut events);
            events.clear();
            pos.push((x, z));
        }
        aoi.flush(&mut events);
        events.clear();
        World { aoi, pos, rng, events }
    }

    /// Moves every `every`-th entity (offset rotating per step), then flushes.
    fn step(&mut self, every: usize) {
        let skip = (self.rng.next() % every as u64) as usize;
        for (k, p) in self.pos.iter_mut().enumerate().skip(skip).step_by(every) {
            p.0 = (p.0 + self.rng.step()).clamp(0.0, SIDE);
            p.1 = (p.1 + self.rng.step()).clamp(0.0, SIDE);
            self.aoi.move_to(k as u32, p.0, p.1);
        }
        self.events.clear();
        self.aoi.flush(&mut self.events);
    }
}

/// Every entity has radius 100 and moves each step.
#[divan::bench(sample_count = 300, sample_size = 1)]
fn step_10000(b: Bencher) {
    let mut w = World::new(|_| 100.0);
    b.bench_local(|| w.step(1));
}

/// Radii uniform in 50..200 (same cell size 100), every entity moves each step.
#[divan::bench(sample_count = 300, sample_size = 1)]
fn step_10000_mixed_radius(b: Bencher) {
    let mut w = World::new(|r| 50.0 + r.unit() * 150.0);
    b.bench_local(|| w.step(1));
}

/// Radius 100, only every 100th entity moves each step (100 moves + one flush).
#[divan::bench(sample_count = 300, sample_size = 1)]
fn step_10000_1pct_moving(b: Bencher) {
    let mut w = World::new(|_| 100.0);
    b.bench_local(|| w.step(100));
}

fn main() {
    divan::main();
}
