//! The arena's rules as pure functions, shared by its entities and tested without a world: the
//! numbers of the game, the dice (a small deterministic generator, no `rand`), who hits whom,
//! how a monster closes in, where things appear, and the order of the score board. Public so
//! bots and tools can play by the same numbers.

use std::collections::BTreeMap;
use std::f32::consts::TAU;
use std::time::Duration;

use oxworld_core::Id;
use oxworld_core::engine::geom::Vec3;

/// Side of the square arena: positions run from 0 to `ARENA_SIZE` on x and on z.
pub const ARENA_SIZE: f32 = 200.0;
/// Arena kinds a player may enter: `1..=ARENA_KINDS` (one arena per kind, cluster-wide).
pub const ARENA_KINDS: i64 = 4;
/// View (AOI) radius of players and monsters.
pub const VIEW_RADIUS: f32 = 100.0;
/// Farthest shot (x/z distance).
pub const SHOOT_RANGE: f32 = 60.0;
/// Damage of a shot that hits.
pub const SHOT_DAMAGE: i64 = 25;
/// Shortest time between two shots of one player.
pub const SHOT_COOLDOWN: Duration = Duration::from_millis(200);
/// Hit chance point-blank.
pub const MAX_HIT_CHANCE: f32 = 0.95;
/// Hit chance at [`SHOOT_RANGE`].
pub const MIN_HIT_CHANCE: f32 = 0.35;
/// A player's hit points when it (re)spawns.
pub const PLAYER_HP: i64 = 100;
/// How long a dead player stays dead.
pub const RESPAWN_AFTER: Duration = Duration::from_secs(3);
/// A monster's hit points.
pub const MONSTER_HP: i64 = 100;
/// How often a monster thinks (and moves).
pub const MONSTER_TICK: Duration = Duration::from_millis(100);
/// How fast a monster walks (units per second).
pub const MONSTER_SPEED: f32 = 6.0;
/// How close a monster must be to bite (x/z distance).
pub const MONSTER_REACH: f32 = 3.0;
/// Damage of one bite.
pub const MONSTER_DAMAGE: i64 = 5;
/// Shortest time between two bites of one monster.
pub const MONSTER_ATTACK_EVERY: Duration = Duration::from_secs(1);
/// An arena keeps (at most) this many monsters per player in it.
pub const MONSTERS_PER_PLAYER: usize = 2;
/// Most monsters one arena spawns up to.
pub const MAX_MONSTERS: usize = 200;
/// Monsters appear this far from a player at least...
pub const SPAWN_MIN: f32 = 20.0;
/// ...and at most.
pub const SPAWN_MAX: f32 = 50.0;
/// Score for killing a monster.
pub const MONSTER_KILL_SCORE: i64 = 1;
/// Score for killing a player.
pub const PLAYER_KILL_SCORE: i64 = 3;
/// A player goes up one level every this many points of score.
pub const SCORE_PER_LEVEL: i64 = 10;
/// Entries of the score board.
pub const TOP: usize = 10;
/// Players (re)spawn at least this far from the arena's edges.
const EDGE: f32 = 5.0;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's finalizer: spreads every input bit over the output.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small deterministic random generator (xorshift64*, seeded through splitmix64): the same
/// seed rolls the same numbers on every game, before and after a migration or a hot swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any seed, zero included).
    pub fn new(seed: u64) -> Rng {
        let z = mix(seed);
        Rng(if z == 0 { GOLDEN } else { z })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in `0..n` (0 for `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }
}

/// A seed from entity ids (in order) and a counter the caller keeps: every roll of one
/// entity gets its own seed, and replaying the same ids and counter gives the same roll.
pub fn seed_of(ids: &[Id], n: u64) -> u64 {
    ids.iter().fold(mix(n), |h, id| {
        let v = u128::from_le_bytes(id.0);
        mix(h ^ (v as u64) ^ mix((v >> 64) as u64))
    })
}

/// The chance that a shot at `distance` hits: [`MAX_HIT_CHANCE`] point-blank, falling in a
/// straight line to [`MIN_HIT_CHANCE`] at [`SHOOT_RANGE`]; 0 beyond it (and for nonsense).
pub fn hit_chance(distance: f32) -> f32 {
    if !(0.0..=SHOOT_RANGE).contains(&distance) {
        return 0.0;
    }
    MAX_HIT_CHANCE - (MAX_HIT_CHANCE - MIN_HIT_CHANCE) * distance / SHOOT_RANGE
}

/// Whether shot number `shot` of `shooter` at `target`, `distance` away, hits: one roll of
/// the dice seeded from the three, against [`hit_chance`]. Deterministic (a replay agrees) and
/// fair (over many shots the hit rate is the chance).
pub fn shot_hits(shooter: Id, target: Id, shot: u64, distance: f32) -> bool {
    Rng::new(seed_of(&[shooter, target], shot)).unit() < hit_chance(distance)
}

/// One step of a walker at `from` towards `to` on the x/z plane: at most `max_step` long,
/// never closer to `to` than `keep` (no step when already that close). Height stays.
pub fn step_toward(from: Vec3, to: Vec3, max_step: f32, keep: f32) -> Vec3 {
    let d = Vec3::new(to.x - from.x, 0.0, to.z - from.z);
    let dist = d.length();
    if dist <= keep || dist == 0.0 {
        return from;
    }
    let step = (dist - keep).min(max_step.max(0.0));
    from + d * (step / dist)
}

/// `v` moved onto the arena's floor: x and z within `0..=ARENA_SIZE`, height 0.
pub fn clamp_to_arena(v: Vec3) -> Vec3 {
    Vec3::new(v.x.clamp(0.0, ARENA_SIZE), 0.0, v.z.clamp(0.0, ARENA_SIZE))
}

/// A random spot of the arena, away from its edges (where players enter and respawn).
pub fn random_spot(rng: &mut Rng) -> Vec3 {
    Vec3::new(rng.range(EDGE, ARENA_SIZE - EDGE), 0.0, rng.range(EDGE, ARENA_SIZE - EDGE))
}

/// Where a new monster appears: [`SPAWN_MIN`]..[`SPAWN_MAX`] from `near` (a player) in a
/// random direction, kept in the arena; anywhere in the arena without one.
pub fn spawn_point(rng: &mut Rng, near: Option<Vec3>) -> Vec3 {
    let Some(c) = near else { return random_spot(rng) };
    let angle = rng.range(0.0, TAU);
    let r = rng.range(SPAWN_MIN, SPAWN_MAX);
    clamp_to_arena(Vec3::new(c.x + r * angle.sin(), 0.0, c.z + r * angle.cos()))
}

/// The board best first: higher scores first, equal scores by name.
pub fn ranked(board: &BTreeMap<String, i64>) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = board.iter().map(|(n, s)| (n.clone(), *s)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Records `score` for `name` on a board of the [`TOP`] best: a name keeps its best score;
/// past `TOP` names the worst one leaves (lowest score; of equal ones, the last by name).
/// Returns whether the board changed.
pub fn record_score(board: &mut BTreeMap<String, i64>, name: &str, score: i64) -> bool {
    if name.is_empty() || score <= 0 || board.get(name).is_some_and(|&old| old >= score) {
        return false;
    }
    board.insert(name.to_owned(), score);
    if board.len() > TOP {
        let worst = board.iter().min_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0))).map(|(n, _)| n.clone());
        if let Some(worst) = worst {
            board.remove(&worst);
        }
    }
    board.contains_key(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> Id {
        Id([b; 16])
    }

    #[test]
    fn the_dice_are_deterministic_and_spread() {
        let roll = |seed| {
            let mut r = Rng::new(seed);
            (0..8).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(roll(7), roll(7), "same seed, same rolls");
        assert_ne!(roll(7), roll(8));
        assert_ne!(Rng::new(0).next_u64(), 0, "seed 0 works too");
        assert_eq!(seed_of(&[id(1), id(2)], 3), seed_of(&[id(1), id(2)], 3));
        assert_ne!(seed_of(&[id(1), id(2)], 3), seed_of(&[id(1), id(2)], 4), "the counter matters");
        assert_ne!(seed_of(&[id(1), id(2)], 3), seed_of(&[id(2), id(1)], 3), "who shoots whom matters");
        // Uniform enough: ten buckets of 10,000 rolls each within 10% of the mean.
        let mut r = Rng::new(42);
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
            buckets[((u * 10.0) as usize).min(9)] += 1;
        }
        assert!(buckets.iter().all(|&b| (9_000..=11_000).contains(&b)), "{buckets:?}");
        assert!((0..1000).all(|_| r.below(7) < 7));
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn hit_chance_falls_with_distance() {
        assert_eq!(hit_chance(0.0), MAX_HIT_CHANCE);
        assert!((hit_chance(SHOOT_RANGE) - MIN_HIT_CHANCE).abs() < 1e-6);
        assert!(hit_chance(10.0) > hit_chance(30.0));
        assert_eq!(hit_chance(SHOOT_RANGE + 0.1), 0.0);
        assert_eq!(hit_chance(-1.0), 0.0);
        assert_eq!(hit_chance(f32::NAN), 0.0);
    }

    #[test]
    fn shots_are_deterministic_and_fair() {
        let (a, b) = (id(1), id(2));
        for n in 0..100 {
            assert_eq!(shot_hits(a, b, n, 30.0), shot_hits(a, b, n, 30.0), "a replay agrees");
        }
        for distance in [5.0, 30.0, 55.0] {
            let hits = (0..20_000u64).filter(|&n| shot_hits(a, b, n, distance)).count();
            let rate = hits as f32 / 20_000.0;
            assert!((rate - hit_chance(distance)).abs() < 0.02, "at {distance}: {rate} vs {}", hit_chance(distance));
        }
        assert!(!(0..1000).any(|n| shot_hits(a, b, n, SHOOT_RANGE + 1.0)), "out of range never hits");
    }

    #[test]
    fn a_monster_steps_toward_its_target_and_stops_at_reach() {
        let from = Vec3::new(0.0, 0.0, 0.0);
        let to = Vec3::new(30.0, 0.0, 40.0);
        let next = step_toward(from, to, 0.6, 2.4);
        assert!((from.distance_xz(next) - 0.6).abs() < 1e-5, "a full step");
        assert!((next.x / next.z - 0.75).abs() < 1e-5, "straight at it");
        // Close: the last step stops at `keep`, then no more steps.
        let near = Vec3::new(30.0, 0.0, 37.0);
        let last = step_toward(near, to, 5.0, 2.4);
        assert!((last.distance_xz(to) - 2.4).abs() < 1e-4, "{last:?}");
        assert!(step_toward(last, to, 5.0, 2.4).distance_xz(last) < 1e-4, "no step at reach");
        assert_eq!(step_toward(to, to, 1.0, 0.0), to, "on the spot");
        // Height is the walker's own.
        assert_eq!(step_toward(Vec3::new(0.0, 3.0, 0.0), Vec3::new(10.0, 0.0, 0.0), 1.0, 0.0).y, 3.0);
        // Walking on: reaches reach distance in a bounded number of ticks.
        let mut at = from;
        let mut ticks = 0;
        while at.distance_xz(to) > MONSTER_REACH {
            at = step_toward(at, to, MONSTER_SPEED * MONSTER_TICK.as_secs_f32(), MONSTER_REACH * 0.8);
            ticks += 1;
            assert!(ticks < 200, "never arrives");
        }
        assert!(at.distance_xz(to) >= MONSTER_REACH * 0.8 - 1e-4);
    }

    #[test]
    fn spawn_positions_stay_in_the_arena() {
        let inside = |v: Vec3| (0.0..=ARENA_SIZE).contains(&v.x) && (0.0..=ARENA_SIZE).contains(&v.z) && v.y == 0.0;
        let mut rng = Rng::new(1);
        for _ in 0..5_000 {
            let s = random_spot(&mut rng);
            assert!(inside(s) && s.x >= EDGE && s.x <= ARENA_SIZE - EDGE, "{s:?}");
            // Near a player in the middle: within the spawn ring.
            let c = Vec3::new(100.0, 0.0, 100.0);
            let p = spawn_point(&mut rng, Some(c));
            let d = c.distance_xz(p);
            assert!(inside(p) && (SPAWN_MIN - 1e-3..=SPAWN_MAX + 1e-3).contains(&d), "{p:?} at {d}");
            // Near a player in a corner (or out of the arena): clamped, never farther.
            for corner in [Vec3::new(1.0, 0.0, 1.0), Vec3::new(-40.0, 0.0, 250.0)] {
                let q = spawn_point(&mut rng, Some(corner));
                assert!(inside(q), "{q:?}");
            }
            let q = spawn_point(&mut rng, Some(Vec3::new(1.0, 0.0, 1.0)));
            assert!(q.distance_xz(Vec3::new(1.0, 0.0, 1.0)) <= SPAWN_MAX + 1e-3);
            assert!(inside(spawn_point(&mut rng, None)));
        }
        assert_eq!(clamp_to_arena(Vec3::new(-1.0, 5.0, 999.0)), Vec3::new(0.0, 0.0, ARENA_SIZE));
    }

    #[test]
    fn the_score_board_keeps_the_top_ten_in_order() {
        let mut board = BTreeMap::new();
        for i in 1..=12i64 {
            assert!(record_score(&mut board, &format!("p{i:02}"), i));
        }
        assert_eq!(board.len(), TOP);
        let r = ranked(&board);
        assert_eq!(r.first(), Some(&("p12".to_owned(), 12)));
        assert_eq!(r.last(), Some(&("p03".to_owned(), 3)), "the two lowest left");
        assert!(r.windows(2).all(|w| w[0].1 >= w[1].1));
        // Below the board: not recorded; a name keeps its best; a better score climbs.
        assert!(!record_score(&mut board, "low", 1));
        assert!(!record_score(&mut board, "p05", 2));
        assert_eq!(board.get("p05"), Some(&5));
        assert!(record_score(&mut board, "p05", 50));
        assert_eq!(ranked(&board)[0], ("p05".to_owned(), 50));
        assert!(!record_score(&mut board, "", 100) && !record_score(&mut board, "zero", 0));
        // Equal scores rank by name; of equal lowest, the last name leaves.
        let mut tie = BTreeMap::new();
        for n in ["d", "b", "a", "c"] {
            record_score(&mut tie, n, 7);
        }
        let names: Vec<String> = ranked(&tie).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        for i in 0..7 {
            record_score(&mut tie, &format!("x{i}"), 9);
        }
        assert_eq!(tie.len(), TOP);
        assert!(!tie.contains_key("d") && tie.contains_key("c"));
    }
}
