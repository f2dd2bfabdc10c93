//! AOI step benchmark: 10,000 entities in a 2,000 x 2,000 area, view radius 100 (and a mixed
//! 50..200 population), every entity moving up to 5 units per axis each step; one step = all
//! moves + one flush. Run: `cargo bench -p oxworld-core --bench aoi`.

use divan::Bencher;
use oxworld_core::aoi::{Aoi, AoiEvent};

const N: u32 = 10_000;
const SIDE: f32 = 2_000.0;

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
}

fn world(radius: impl Fn(&mut Rng) -> f32) -> (Aoi, Vec<(f32, f32)>, Rng) {
    let mut rng = Rng(42);
    let mut aoi = Aoi::new(100.0);
    let mut pos = Vec::with_capacity(N as usize);
    let mut ev = Vec::new();
    for k in 0..N {
        let (x, z) = (rng.unit() * SIDE, rng.unit() * SIDE);
        let r = radius(&mut rng);
        aoi.insert(k, x, z, r, &mut ev);
        ev.clear();
        pos.push((x, z));
    }
    (aoi, pos, rng)
}

fn step(aoi: &mut Aoi, pos: &mut [(f32, f32)], rng: &mut Rng, ev: &mut Vec<AoiEvent>) {
    for (k, p) in pos.iter_mut().enumerate() {
        p.0 = (p.0 + (rng.unit() - 0.5) * 10.0).clamp(0.0, SIDE);
        p.1 = (p.1 + (rng.unit() - 0.5) * 10.0).clamp(0.0, SIDE);
        aoi.move_to(k as u32, p.0, p.1);
    }
    ev.clear();
    aoi.flush(ev);
}

/// Every entity radius 100.
#[divan::bench(sample_count = 20, sample_size = 1)]
fn step_10000(b: Bencher) {
    let (mut aoi, mut pos, mut rng) = world(|_| 100.0);
    let mut ev = Vec::new();
    b.bench_local(|| step(&mut aoi, &mut pos, &mut rng, &mut ev));
}

/// Radii spread over 50..200.
#[divan::bench(sample_count = 20, sample_size = 1)]
fn step_10000_mixed_radius(b: Bencher) {
    let (mut aoi, mut pos, mut rng) = world(|r| 50.0 + r.unit() * 150.0);
    let mut ev = Vec::new();
    b.bench_local(|| step(&mut aoi, &mut pos, &mut rng, &mut ev));
}

fn main() {
    divan::main();
}
