//! Area of interest for one space with a per-entity view radius: a uniform grid over the X/Z
//! plane. Watcher W sees target T (W != T) iff W's radius is positive and their squared distance is <= W's
//! radius squared (radius 0 sees nothing, even at the same point, but is seen);
//! the relation is asymmetric. Moves and radius changes are recorded and applied by
//! [`Aoi::flush`], which reports only the pairs that changed, as events: the index never calls
//! out while it mutates (STYLE P3).

use rustc_hash::FxHashMap;

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

/// The entities of one grid cell, their keys and coordinates side by side so a scan reads
/// contiguous memory.
#[derive(Debug, Clone, Default)]
struct CellData {
    keys: Vec<AoiKey>,
    xs: Vec<f32>,
    zs: Vec<f32>,
}

/// The AOI index of one space. Per-key data lives in dense vectors indexed by key.
#[derive(Debug, Clone)]
pub struct Aoi {
    cell: f32,
    max_radius: f32,
    alive: Vec<bool>,
    xs: Vec<f32>,
    zs: Vec<f32>,
    rs: Vec<f32>,
    cell_of: Vec<Cell>,
    slot: Vec<u32>,
    dirty: Vec<bool>,
    sees: Vec<Vec<AoiKey>>,
    seen_by: Vec<Vec<AoiKey>>,
    grid: FxHashMap<Cell, CellData>,
    dirty_list: Vec<AoiKey>,
    count: usize,
    /// Per-key marks for set differences without sorting or hashing; `epoch` advances per use.
    stamp: Vec<u32>,
    epoch: u32,
    scratch: Vec<AoiKey>,
}

/// Replaces non-finite coordinates by 0 so a bad input cannot poison the grid.
fn finite(v: f32) -> f32 {
    if v.is_finite() { v } else { 0.0 }
}

/// Radii are clamped to `>= 0`; NaN counts as 0; infinity becomes the largest finite radius
/// whose square is finite.
fn radius(r: f32) -> f32 {
    if r.is_finite() && r > 0.0 {
        r.min(f32::MAX.sqrt())
    } else if r == f32::INFINITY {
        f32::MAX.sqrt()
    } else {
        0.0
    }
}

fn remove_one(v: &mut Vec<AoiKey>, k: AoiKey) {
    if let Some(i) = v.iter().position(|x| *x == k) {
        v.swap_remove(i);
    }
}

impl Aoi {
    /// An empty index with grid cells of `cell_size` (about the typical view radius is best).
    pub fn new(cell_size: f32) -> Self {
        let cell = if cell_size.is_finite() && cell_size >= 1.0 { cell_size } else { 100.0 };
        Aoi {
            cell,
            max_radius: 0.0,
            alive: Vec::new(),
            xs: Vec::new(),
            zs: Vec::new(),
            rs: Vec::new(),
            cell_of: Vec::new(),
            slot: Vec::new(),
            dirty: Vec::new(),
            sees: Vec::new(),
            seen_by: Vec::new(),
            grid: FxHashMap::default(),
            dirty_list: Vec::new(),
            count: 0,
            stamp: Vec::new(),
            epoch: 0,
            scratch: Vec::new(),
        }
    }

    fn cell_at(&self, x: f32, z: f32) -> Cell {
        // Saturating float-to-int casts keep far-away coordinates in range.
        ((x / self.cell).floor() as i32, (z / self.cell).floor() as i32)
    }

    /// Number of entities.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True without entities.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// True if `key` is in the index.
    pub fn contains(&self, key: AoiKey) -> bool {
        self.alive.get(key as usize).copied().unwrap_or(false)
    }

    /// Entities `watcher` sees.
    pub fn sees(&self, watcher: AoiKey) -> impl Iterator<Item = AoiKey> + '_ {
        self.sees.get(watcher as usize).into_iter().flat_map(|v| v.iter().copied())
    }

    /// Entities that see `target`.
    pub fn seen_by(&self, target: AoiKey) -> impl Iterator<Item = AoiKey> + '_ {
        self.seen_by.get(target as usize).into_iter().flat_map(|v| v.iter().copied())
    }

    fn grow(&mut self, key: AoiKey) {
        let n = key as usize + 1;
        if self.alive.len() < n {
            self.alive.resize(n, false);
            self.xs.resize(n, 0.0);
            self.zs.resize(n, 0.0);
            self.rs.resize(n, 0.0);
            self.cell_of.resize(n, (0, 0));
            self.slot.resize(n, 0);
            self.dirty.resize(n, false);
            self.sees.resize_with(n, Vec::new);
            self.seen_by.resize_with(n, Vec::new);
            self.stamp.resize(n, 0);
        }
    }

    fn cell_push(&mut self, key: AoiKey) {
        let k = key as usize;
        let c = self.grid.entry(self.cell_of[k]).or_default();
        self.slot[k] = c.keys.len() as u32;
        c.keys.push(key);
        c.xs.push(self.xs[k]);
        c.zs.push(self.zs[k]);
    }

    fn cell_remove(&mut self, key: AoiKey) {
        let k = key as usize;
        let cell = self.cell_of[k];
        let Some(c) = self.grid.get_mut(&cell) else { return };
        let i = self.slot[k] as usize;
        if c.keys.get(i) != Some(&key) {
            return;
        }
        c.keys.swap_remove(i);
        c.xs.swap_remove(i);
        c.zs.swap_remove(i);
        if let Some(&moved) = c.keys.get(i) {
            self.slot[moved as usize] = i as u32;
        }
        if c.keys.is_empty() {
            self.grid.remove(&cell);
        }
    }

    /// Adds `key` at (x, z) with view radius `r`; its pairs are reported at once (pending moves
    /// of others are applied first, so events stay consistent). A known key is moved instead.
    pub fn insert(&mut self, key: AoiKey, x: f32, z: f32, r: f32, events: &mut Vec<AoiEvent>) {
        if self.contains(key) {
            self.move_to(key, x, z);
            self.set_radius(key, r);
            self.flush(events);
            return;
        }
        self.grow(key);
        let k = key as usize;
        let (x, z) = (finite(x), finite(z));
        self.alive[k] = true;
        self.xs[k] = x;
        self.zs[k] = z;
        self.rs[k] = radius(r);
        self.max_radius = self.max_radius.max(self.rs[k]);
        self.cell_of[k] = self.cell_at(x, z);
        self.cell_push(key);
        self.count += 1;
        self.mark(key);
        self.flush(events);
    }

    /// Removes `key`, reporting a leave for every pair it was part of (both directions).
    pub fn remove(&mut self, key: AoiKey, events: &mut Vec<AoiEvent>) {
        if !self.contains(key) {
            return;
        }
        self.flush(events);
        let k = key as usize;
        for t in std::mem::take(&mut self.sees[k]) {
            remove_one(&mut self.seen_by[t as usize], key);
            events.push(AoiEvent::Leave { watcher: key, target: t });
        }
        for w in std::mem::take(&mut self.seen_by[k]) {
            remove_one(&mut self.sees[w as usize], key);
            events.push(AoiEvent::Leave { watcher: w, target: key });
        }
        self.cell_remove(key);
        self.alive[k] = false;
        self.count -= 1;
    }

    fn mark(&mut self, key: AoiKey) {
        let k = key as usize;
        if !self.dirty[k] {
            self.dirty[k] = true;
            self.dirty_list.push(key);
        }
    }

    /// Records a move of `key`; applied by the next [`Aoi::flush`]. Unknown keys are ignored.
    pub fn move_to(&mut self, key: AoiKey, x: f32, z: f32) {
        if !self.contains(key) {
            return;
        }
        let k = key as usize;
        let (x, z) = (finite(x), finite(z));
        let cell = self.cell_at(x, z);
        if cell != self.cell_of[k] {
            self.cell_remove(key);
            self.xs[k] = x;
            self.zs[k] = z;
            self.cell_of[k] = cell;
            self.cell_push(key);
        } else {
            self.xs[k] = x;
            self.zs[k] = z;
            if let Some(c) = self.grid.get_mut(&cell) {
                let i = self.slot[k] as usize;
                c.xs[i] = x;
                c.zs[i] = z;
            }
        }
        self.mark(key);
    }

    /// Records a new view radius for `key`; applied by the next [`Aoi::flush`].
    pub fn set_radius(&mut self, key: AoiKey, r: f32) {
        if !self.contains(key) {
            return;
        }
        let r = radius(r);
        self.rs[key as usize] = r;
        self.max_radius = self.max_radius.max(r);
        self.mark(key);
    }

    /// Two fresh stamp values (`e`, `e + 1`), never seen before in `stamp`.
    fn next_epoch(&mut self) -> u32 {
        if self.epoch >= u32::MAX - 4 {
            self.stamp.iter_mut().for_each(|s| *s = 0);
            self.epoch = 0;
        }
        self.epoch += 2;
        self.epoch
    }

    /// The cell range covering the square of half-side `reach` around (x, z), or `None` when
    /// that range holds more cells than are occupied (then scanning occupied cells is cheaper).
    fn range(&self, x: f32, z: f32, reach: f32) -> Option<(Cell, Cell)> {
        let lo = self.cell_at(x - reach, z - reach);
        let hi = self.cell_at(x + reach, z + reach);
        let span = (i64::from(hi.0) - i64::from(lo.0) + 1).saturating_mul(i64::from(hi.1) - i64::from(lo.1) + 1);
        (span <= self.grid.len() as i64).then_some((lo, hi))
    }

    /// Recomputes what `w` sees, reporting enters and leaves. With `keep_seen_by` false the
    /// reverse lists are left stale (the caller rebuilds them all).
    fn recompute(&mut self, w: AoiKey, keep_seen_by: bool, events: &mut Vec<AoiEvent>) {
        let wi = w as usize;
        let (x, z, r) = (self.xs[wi], self.zs[wi], self.rs[wi]);
        let e = self.next_epoch();
        for &t in &self.sees[wi] {
            self.stamp[t as usize] = e;
        }
        let mut found = std::mem::take(&mut self.scratch);
        found.clear();
        if r > 0.0 {
            let r2 = r * r;
            let scan = |c: &CellData, found: &mut Vec<AoiKey>| {
                for ((&k, &cx), &cz) in c.keys.iter().zip(&c.xs).zip(&c.zs) {
                    let (dx, dz) = (cx - x, cz - z);
                    if dx * dx + dz * dz <= r2 && k != w {
                        found.push(k);
                    }
                }
            };
            match self.range(x, z, r) {
                Some((lo, hi)) => {
                    for cx in lo.0..=hi.0 {
                        for cz in lo.1..=hi.1 {
                            if let Some(c) = self.grid.get(&(cx, cz)) {
                                scan(c, &mut found);
                            }
                        }
                    }
                }
                None => self.grid.values().for_each(|c| scan(c, &mut found)),
            }
        }
        for &t in &found {
            let ti = t as usize;
            if self.stamp[ti] == e {
                self.stamp[ti] = e + 1;
            } else {
                if keep_seen_by {
                    self.seen_by[ti].push(w);
                }
                events.push(AoiEvent::Enter { watcher: w, target: t });
            }
        }
        let old = std::mem::replace(&mut self.sees[wi], found);
        for &t in &old {
            if self.stamp[t as usize] == e {
                if keep_seen_by {
                    remove_one(&mut self.seen_by[t as usize], w);
                }
                events.push(AoiEvent::Leave { watcher: w, target: t });
            }
        }
        self.scratch = old;
    }

    /// Updates the view that clean (unmoved) watchers have of moved `t`.
    fn update_watchers(&mut self, t: AoiKey, events: &mut Vec<AoiEvent>) {
        let ti = t as usize;
        let (x, z) = (self.xs[ti], self.zs[ti]);
        // Clean watchers that no longer see t.
        let mut i = 0;
        while i < self.seen_by[ti].len() {
            let w = self.seen_by[ti][i];
            let wi = w as usize;
            if !self.dirty[wi] && !within(dist2(x, z, self.xs[wi], self.zs[wi]), self.rs[wi]) {
                self.seen_by[ti].swap_remove(i);
                remove_one(&mut self.sees[wi], t);
                events.push(AoiEvent::Leave { watcher: w, target: t });
            } else {
                i += 1;
            }
        }
        // Clean watchers that now see t.
        let e = self.next_epoch();
        for &w in &self.seen_by[ti] {
            self.stamp[w as usize] = e;
        }
        let mut cand = std::mem::take(&mut self.scratch);
        cand.clear();
        match self.range(x, z, self.max_radius) {
            Some((lo, hi)) => {
                for cx in lo.0..=hi.0 {
                    for cz in lo.1..=hi.1 {
                        if let Some(c) = self.grid.get(&(cx, cz)) {
                            cand.extend_from_slice(&c.keys);
                        }
                    }
                }
            }
            None => self.grid.values().for_each(|c| cand.extend_from_slice(&c.keys)),
        }
        for &w in &cand {
            let wi = w as usize;
            if w != t
                && !self.dirty[wi]
                && self.stamp[wi] != e
                && within(dist2(x, z, self.xs[wi], self.zs[wi]), self.rs[wi])
            {
                self.seen_by[ti].push(w);
                self.sees[wi].push(t);
                events.push(AoiEvent::Enter { watcher: w, target: t });
            }
        }
        self.scratch = cand;
    }

    /// Applies recorded moves and radius changes; appends the pairs that changed.
    pub fn flush(&mut self, events: &mut Vec<AoiEvent>) {
        if self.dirty_list.is_empty() {
            return;
        }
        let dirty = std::mem::take(&mut self.dirty_list);
        // When most entities moved, rebuilding every reverse list at the end is cheaper than
        // patching them pair by pair.
        let rebuild = dirty.len() * 4 >= self.count * 3;
        // Moved watchers recompute their whole view (this covers moved targets too).
        for &k in &dirty {
            if self.contains(k) {
                self.recompute(k, !rebuild, events);
            }
        }
        if rebuild {
            self.seen_by.iter_mut().for_each(Vec::clear);
            for (w, sees) in self.sees.iter().enumerate() {
                for &t in sees {
                    self.seen_by[t as usize].push(w as AoiKey);
                }
            }
        }
        // Watchers that did not move learn about targets that did.
        if dirty.len() < self.count {
            for &k in &dirty {
                if self.contains(k) {
                    self.update_watchers(k, events);
                }
            }
        }
        for &k in &dirty {
            if let Some(d) = self.dirty.get_mut(k as usize) {
                *d = false;
            }
        }
        let mut dirty = dirty;
        dirty.clear();
        self.dirty_list = dirty;
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
