//! Area of interest for one space with a per-entity view radius: a uniform grid over the X/Z
//! plane. Watcher W sees target T (W != T) iff W's radius is positive and their squared distance is <= W's
//! radius squared (radius 0 sees nothing, even at the same point, but is seen);
//! the relation is asymmetric. Moves and radius changes are recorded and applied by
//! [`Aoi::flush`], which reports only the pairs that changed, as events: the index never calls
//! out while it mutates (STYLE P3).

use rustc_hash::{FxHashMap, FxHashSet};

/// Key of an entity within one AOI index: small integers chosen by the caller.
pub type AoiKey = u32;

/// A pair that started or stopped seeing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AoiEvent {
    /// `watcher` now sees `target`.
    Enter {
        /// Who sees.
        watcher: AoiKey,
        /// Who is seen.
        target: AoiKey,
    },
    /// `watcher` no longer sees `target`.
    Leave {
        /// Who saw.
        watcher: AoiKey,
        /// Who was seen.
        target: AoiKey,
    },
}

type Cell = (i32, i32);

#[derive(Debug, Clone)]
struct Node {
    x: f32,
    z: f32,
    radius: f32,
    cell: Cell,
    dirty: bool,
    sees: FxHashSet<AoiKey>,
    seen_by: FxHashSet<AoiKey>,
}

/// The AOI index of one space.
#[derive(Debug, Clone)]
pub struct Aoi {
    cell: f32,
    nodes: FxHashMap<AoiKey, Node>,
    grid: FxHashMap<Cell, Vec<AoiKey>>,
    dirty: Vec<AoiKey>,
    max_radius: f32,
}

/// Replaces non-finite coordinates by 0 so a bad input cannot poison the grid.
fn finite(v: f32) -> f32 {
    if v.is_finite() { v } else { 0.0 }
}

/// Radii are clamped to `>= 0`; NaN counts as 0.
fn radius(r: f32) -> f32 {
    if r.is_finite() && r > 0.0 {
        r
    } else if r == f32::INFINITY {
        f32::MAX.sqrt()
    } else {
        0.0
    }
}

impl Aoi {
    /// An empty index with grid cells of `cell_size` (use about the typical view radius).
    pub fn new(cell_size: f32) -> Self {
        let cell = if cell_size.is_finite() && cell_size >= 1.0 { cell_size } else { 100.0 };
        Aoi { cell, nodes: FxHashMap::default(), grid: FxHashMap::default(), dirty: Vec::new(), max_radius: 0.0 }
    }

    fn cell_of(&self, x: f32, z: f32) -> Cell {
        ((x / self.cell).floor() as i32, (z / self.cell).floor() as i32)
    }

    /// Number of entities.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True without entities.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// True if `key` is in the index.
    pub fn contains(&self, key: AoiKey) -> bool {
        self.nodes.contains_key(&key)
    }

    /// Entities `watcher` sees.
    pub fn sees(&self, watcher: AoiKey) -> impl Iterator<Item = AoiKey> + '_ {
        self.nodes.get(&watcher).into_iter().flat_map(|n| n.sees.iter().copied())
    }

    /// Entities that see `target`.
    pub fn seen_by(&self, target: AoiKey) -> impl Iterator<Item = AoiKey> + '_ {
        self.nodes.get(&target).into_iter().flat_map(|n| n.seen_by.iter().copied())
    }

    /// Adds `key` at (x, z) with view radius `r`; its pairs are reported at once (pending moves
    /// of others are applied first, so events stay consistent). A known key is moved instead.
    pub fn insert(&mut self, key: AoiKey, x: f32, z: f32, r: f32, events: &mut Vec<AoiEvent>) {
        if self.nodes.contains_key(&key) {
            self.move_to(key, x, z);
            self.set_radius(key, r);
            self.flush(events);
            return;
        }
        let (x, z, r) = (finite(x), finite(z), radius(r));
        let cell = self.cell_of(x, z);
        self.grid.entry(cell).or_default().push(key);
        self.max_radius = self.max_radius.max(r);
        let node = Node { x, z, radius: r, cell, dirty: false, sees: Default::default(), seen_by: Default::default() };
        self.nodes.insert(key, node);
        self.mark(key);
        self.flush(events);
    }

    /// Removes `key`, reporting a leave for every pair it was part of (both directions).
    pub fn remove(&mut self, key: AoiKey, events: &mut Vec<AoiEvent>) {
        if !self.nodes.contains_key(&key) {
            return;
        }
        self.flush(events);
        let Some(node) = self.nodes.remove(&key) else { return };
        if let Some(v) = self.grid.get_mut(&node.cell) {
            v.retain(|k| *k != key);
            if v.is_empty() {
                self.grid.remove(&node.cell);
            }
        }
        for t in node.sees {
            if let Some(n) = self.nodes.get_mut(&t) {
                n.seen_by.remove(&key);
            }
            events.push(AoiEvent::Leave { watcher: key, target: t });
        }
        for w in node.seen_by {
            if let Some(n) = self.nodes.get_mut(&w) {
                n.sees.remove(&key);
            }
            events.push(AoiEvent::Leave { watcher: w, target: key });
        }
    }

    fn mark(&mut self, key: AoiKey) {
        if let Some(n) = self.nodes.get_mut(&key)
            && !n.dirty
        {
            n.dirty = true;
            self.dirty.push(key);
        }
    }

    /// Records a move of `key`; applied by the next [`Aoi::flush`]. Unknown keys are ignored.
    pub fn move_to(&mut self, key: AoiKey, x: f32, z: f32) {
        let (x, z) = (finite(x), finite(z));
        let cell = self.cell_of(x, z);
        let Some(n) = self.nodes.get_mut(&key) else { return };
        let old = n.cell;
        n.x = x;
        n.z = z;
        if old != cell {
            n.cell = cell;
            if let Some(v) = self.grid.get_mut(&old) {
                v.retain(|k| *k != key);
                if v.is_empty() {
                    self.grid.remove(&old);
                }
            }
            self.grid.entry(cell).or_default().push(key);
        }
        self.mark(key);
    }

    /// Records a new view radius for `key`; applied by the next [`Aoi::flush`].
    pub fn set_radius(&mut self, key: AoiKey, r: f32) {
        let r = radius(r);
        let Some(n) = self.nodes.get_mut(&key) else { return };
        n.radius = r;
        self.max_radius = self.max_radius.max(r);
        self.mark(key);
    }

    /// Keys in the cells overlapping the square of half-side `reach` around (x, z).
    fn candidates(&self, x: f32, z: f32, reach: f32, out: &mut Vec<AoiKey>) {
        out.clear();
        let (x0, z0) = self.cell_of(x - reach, z - reach);
        let (x1, z1) = self.cell_of(x + reach, z + reach);
        // A huge radius would scan an absurd cell range: scan occupied cells instead.
        let span = (i64::from(x1) - i64::from(x0) + 1).saturating_mul(i64::from(z1) - i64::from(z0) + 1);
        if span > self.grid.len() as i64 {
            for (c, v) in &self.grid {
                if (x0..=x1).contains(&c.0) && (z0..=z1).contains(&c.1) {
                    out.extend_from_slice(v);
                }
            }
            return;
        }
        for cx in x0..=x1 {
            for cz in z0..=z1 {
                if let Some(v) = self.grid.get(&(cx, cz)) {
                    out.extend_from_slice(v);
                }
            }
        }
    }

    /// Applies recorded moves and radius changes; appends the pairs that changed.
    pub fn flush(&mut self, events: &mut Vec<AoiEvent>) {
        let dirty = std::mem::take(&mut self.dirty);
        let mut cand = Vec::new();
        for &k in &dirty {
            let Some(n) = self.nodes.get(&k) else { continue };
            let (x, z, r) = (n.x, n.z, n.radius);
            // What k sees: drop those now out of range, add those newly in range.
            let gone: Vec<AoiKey> = n
                .sees
                .iter()
                .copied()
                .filter(|t| self.nodes.get(t).is_none_or(|o| !within(dist2(x, z, o.x, o.z), r)))
                .collect();
            self.candidates(x, z, r, &mut cand);
            let new: Vec<AoiKey> = cand
                .iter()
                .copied()
                .filter(|&t| t != k && !n.sees.contains(&t))
                .filter(|t| self.nodes.get(t).is_some_and(|o| within(dist2(x, z, o.x, o.z), r)))
                .collect();
            // Who sees k: drop watchers now out of their range, add new ones.
            let lost: Vec<AoiKey> = n
                .seen_by
                .iter()
                .copied()
                .filter(|w| self.nodes.get(w).is_none_or(|o| !within(dist2(x, z, o.x, o.z), o.radius)))
                .collect();
            self.candidates(x, z, self.max_radius, &mut cand);
            let gained: Vec<AoiKey> = cand
                .iter()
                .copied()
                .filter(|&w| w != k && !n.seen_by.contains(&w))
                .filter(|w| self.nodes.get(w).is_some_and(|o| within(dist2(x, z, o.x, o.z), o.radius)))
                .collect();
            for t in gone {
                self.unlink(k, t, events);
            }
            for t in new {
                self.link(k, t, events);
            }
            for w in lost {
                self.unlink(w, k, events);
            }
            for w in gained {
                self.link(w, k, events);
            }
        }
        for k in dirty {
            if let Some(n) = self.nodes.get_mut(&k) {
                n.dirty = false;
            }
        }
    }

    fn link(&mut self, w: AoiKey, t: AoiKey, events: &mut Vec<AoiEvent>) {
        let inserted = self.nodes.get_mut(&w).is_some_and(|n| n.sees.insert(t));
        if inserted {
            if let Some(n) = self.nodes.get_mut(&t) {
                n.seen_by.insert(w);
            }
            events.push(AoiEvent::Enter { watcher: w, target: t });
        }
    }

    fn unlink(&mut self, w: AoiKey, t: AoiKey, events: &mut Vec<AoiEvent>) {
        let removed = self.nodes.get_mut(&w).is_some_and(|n| n.sees.remove(&t));
        if removed {
            if let Some(n) = self.nodes.get_mut(&t) {
                n.seen_by.remove(&w);
            }
            events.push(AoiEvent::Leave { watcher: w, target: t });
        }
    }
}

/// True if squared distance `d2` is within view radius `r` (a zero radius sees nothing).
fn within(d2: f32, r: f32) -> bool {
    r > 0.0 && d2 <= r * r
}

fn dist2(x0: f32, z0: f32, x1: f32, z1: f32) -> f32 {
    let (dx, dz) = (x0 - x1, z0 - z1);
    dx * dx + dz * dz
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn enters(ev: &[AoiEvent]) -> BTreeSet<(u32, u32)> {
        ev.iter()
            .filter_map(|e| match e {
                AoiEvent::Enter { watcher, target } => Some((*watcher, *target)),
                _ => None,
            })
            .collect()
    }

    fn leaves(ev: &[AoiEvent]) -> BTreeSet<(u32, u32)> {
        ev.iter()
            .filter_map(|e| match e {
                AoiEvent::Leave { watcher, target } => Some((*watcher, *target)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn asymmetric_enter_leave_radius_and_remove() {
        let mut a = Aoi::new(10.0);
        let mut ev = Vec::new();
        a.insert(1, 0.0, 0.0, 20.0, &mut ev);
        a.insert(2, 15.0, 0.0, 5.0, &mut ev);
        assert_eq!(enters(&ev), BTreeSet::from([(1, 2)]), "1 sees 2, 2 does not see 1");
        ev.clear();
        a.set_radius(2, 15.0);
        a.flush(&mut ev);
        assert_eq!(enters(&ev), BTreeSet::from([(2, 1)]), "exactly at the radius counts");
        ev.clear();
        a.move_to(2, 100.0, 100.0);
        a.flush(&mut ev);
        assert_eq!(leaves(&ev), BTreeSet::from([(1, 2), (2, 1)]));
        ev.clear();
        a.move_to(2, 1.0, 1.0);
        a.move_to(2, 2.0, 1.0);
        a.flush(&mut ev);
        assert_eq!(enters(&ev), BTreeSet::from([(1, 2), (2, 1)]));
        ev.clear();
        a.flush(&mut ev);
        assert!(ev.is_empty(), "no change, no event");
        a.remove(1, &mut ev);
        assert_eq!(leaves(&ev), BTreeSet::from([(1, 2), (2, 1)]));
        assert_eq!(a.sees(2).count(), 0);
        ev.clear();
        a.insert(1, 2.0, 2.0, 0.0, &mut ev);
        assert_eq!(enters(&ev), BTreeSet::from([(2, 1)]), "radius 0 sees nothing but is seen");
    }

    #[test]
    fn hostile_numbers_and_unknown_keys() {
        let mut a = Aoi::new(f32::NAN);
        let mut ev = Vec::new();
        a.insert(1, f32::NAN, f32::INFINITY, f32::NAN, &mut ev);
        a.insert(2, 0.0, 0.0, -5.0, &mut ev);
        a.insert(3, 1.0, 0.0, f32::INFINITY, &mut ev);
        a.move_to(9, 1.0, 1.0);
        a.set_radius(9, 1.0);
        a.remove(9, &mut ev);
        a.flush(&mut ev);
        assert_eq!(a.len(), 3);
        assert!(a.sees(3).count() == 2, "an infinite radius sees everyone");
        assert_eq!(a.sees(1).count(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32, f32, f32, f32),
        Remove(u32),
        Move(u32, f32, f32),
        Radius(u32, f32),
        Flush,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Coordinates on a coarse lattice so exact-radius and cell-boundary cases come up.
        let c = (-6i32..6).prop_map(|v| v as f32 * 5.0);
        let r = (0i32..5).prop_map(|v| v as f32 * 5.0);
        prop_oneof![
            (0u32..8, c.clone(), c.clone(), r.clone()).prop_map(|(k, x, z, r)| Op::Insert(k, x, z, r)),
            (0u32..8).prop_map(Op::Remove),
            (0u32..8, c.clone(), c).prop_map(|(k, x, z)| Op::Move(k, x, z)),
            (0u32..8, r).prop_map(|(k, r)| Op::Radius(k, r)),
            Just(Op::Flush),
        ]
    }

    fn reference(pos: &FxHashMap<u32, (f32, f32, f32)>) -> BTreeSet<(u32, u32)> {
        let mut s = BTreeSet::new();
        for (&w, &(wx, wz, wr)) in pos {
            for (&t, &(tx, tz, _)) in pos {
                if w != t && within(dist2(wx, wz, tx, tz), wr) {
                    s.insert((w, t));
                }
            }
        }
        s
    }

    proptest! {
        #[test]
        fn matches_brute_force_and_events_replay(ops in proptest::collection::vec(op(), 1..60)) {
            let mut a = Aoi::new(10.0);
            let mut pos: FxHashMap<u32, (f32, f32, f32)> = FxHashMap::default();
            let mut rel: BTreeSet<(u32, u32)> = BTreeSet::new();
            let mut ev = Vec::new();
            for o in ops {
                match o {
                    Op::Insert(k, x, z, r) => {
                        a.insert(k, x, z, r, &mut ev);
                        let e = pos.entry(k).or_insert((x, z, r));
                        *e = (x, z, r);
                    }
                    Op::Remove(k) => {
                        a.remove(k, &mut ev);
                        pos.remove(&k);
                    }
                    Op::Move(k, x, z) => {
                        a.move_to(k, x, z);
                        if let Some(p) = pos.get_mut(&k) {
                            p.0 = x;
                            p.1 = z;
                        }
                    }
                    Op::Radius(k, r) => {
                        a.set_radius(k, r);
                        if let Some(p) = pos.get_mut(&k) {
                            p.2 = r;
                        }
                    }
                    Op::Flush => {}
                }
                if matches!(o, Op::Flush | Op::Insert(..) | Op::Remove(..)) {
                    a.flush(&mut ev);
                    for e in ev.drain(..) {
                        match e {
                            AoiEvent::Enter { watcher, target } => prop_assert!(rel.insert((watcher, target)), "duplicate enter"),
                            AoiEvent::Leave { watcher, target } => prop_assert!(rel.remove(&(watcher, target)), "spurious leave"),
                        }
                    }
                    let want = reference(&pos);
                    prop_assert_eq!(&rel, &want);
                    let mut got = BTreeSet::new();
                    for &k in pos.keys() {
                        for t in a.sees(k) {
                            got.insert((k, t));
                        }
                        for w in a.seen_by(k) {
                            prop_assert!(want.contains(&(w, k)));
                        }
                    }
                    prop_assert_eq!(got, want);
                }
            }
        }
    }
}
