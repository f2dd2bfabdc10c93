//! The grid of the AOI index: cells, the counting-sort rebuild, and the vectorised kernels
//! that diff flushed against pending state pair by pair (the sweep over neighbouring cells and
//! the ring pass for entities that reach further). See the parent module's docs, "How it is
//! fast".

use std::ops::Range;

use super::*;

impl Grid {
    pub(super) fn empty(reach: f32) -> Self {
        Grid {
            x0: 0.0,
            z0: 0.0,
            reach,
            reach2: sq(reach).min(f32::MAX),
            invx: KX as f32 / reach,
            invz: KY as f32 / reach,
            mag: 2.0 * reach,
            w: 1,
            h: 1,
            start: vec![0; 3],
            key: Vec::new(),
            x: Vec::new(),
            z: Vec::new(),
            r2: Vec::new(),
            ox: Vec::new(),
            oz: Vec::new(),
            or2: Vec::new(),
        }
    }

    pub(super) fn cells(&self) -> usize {
        self.w * self.h
    }

    /// The window and cell sizes, copied out (the build's hot loop keeps them in registers).
    #[inline]
    pub(super) fn geom(&self) -> Geom {
        Geom { x0: self.x0, z0: self.z0, invx: self.invx, invz: self.invz, w: self.w, h: self.h }
    }

    /// Column of `x`, clamped into the window (NaN maps to 0).
    #[inline]
    pub(super) fn col(&self, x: f32) -> usize {
        self.geom().col(x)
    }

    /// Row of `z`, clamped into the window.
    #[inline]
    pub(super) fn row(&self, z: f32) -> usize {
        self.geom().row(z)
    }

    /// Inclusive column and row ranges of the cells holding every point within `reach` of
    /// (x, z): `(c0, c1, r0, r1)`.
    pub(super) fn span(&self, x: f32, z: f32, reach: f32) -> (usize, usize, usize, usize) {
        let p = reach + PAD_REL * (reach + self.mag + x.abs() + z.abs());
        (self.col(x - p), self.col(x + p), self.row(z - p), self.row(z + p))
    }

    /// Slots of cell `c`: the swept ones, then the jumpers.
    pub(super) fn slots(&self, c: usize) -> impl Iterator<Item = usize> + use<> {
        let n = self.cells();
        let (a, b) = (self.start[c] as usize, self.start[c + 1] as usize);
        let (j, k) = (self.start[n + c] as usize, self.start[n + c + 1] as usize);
        (a..b).chain(j..k)
    }

    /// Cell indices of [`Grid::span`], none if `skip`.
    pub(super) fn cells_near(&self, x: f32, z: f32, reach: f32, skip: bool) -> impl Iterator<Item = usize> + use<> {
        let (c0, c1, r0, r1) = if skip { (1, 0, 1, 0) } else { self.span(x, z, reach) };
        let w = self.w;
        (r0..=r1).flat_map(move |row| (c0..=c1).map(move |col| row * w + col))
    }

    /// Calls `f` with every slot (tombstones included) in the cells within `reach` of (x, z).
    #[inline]
    pub(super) fn visit(&self, x: f32, z: f32, reach: f32, mut f: impl FnMut(usize)) {
        let (c0, c1, r0, r1) = self.span(x, z, reach);
        let n = self.cells();
        for row in r0..=r1 {
            for col in c0..=c1 {
                let c = row * self.w + col;
                for s in self.start[c] as usize..self.start[c + 1] as usize {
                    f(s);
                }
                for s in self.start[n + c] as usize..self.start[n + c + 1] as usize {
                    f(s);
                }
            }
        }
    }
}

impl Geom {
    /// Column of `x`, clamped into the window (NaN maps to 0).
    #[inline(always)]
    pub(super) fn col(self, x: f32) -> usize {
        // Truncation is floor for the non-negative values kept (and no libm call on x86-64 v1).
        let c = (x - self.x0) * self.invx;
        if c >= 0.0 { (c as usize).min(self.w - 1) } else { 0 }
    }

    /// Row of `z`, clamped into the window.
    #[inline(always)]
    pub(super) fn row(self, z: f32) -> usize {
        let c = (z - self.z0) * self.invz;
        if c >= 0.0 { (c as usize).min(self.h - 1) } else { 0 }
    }

    /// Cell index (row-major) of (x, z).
    #[inline(always)]
    pub(super) fn cell(self, x: f32, z: f32) -> usize {
        self.row(z) * self.w + self.col(x)
    }
}

impl Aoi {
    /// Builds `next` from every present entity (pending state if `pending`, else flushed; the
    /// flushed state is also stored as the "old" columns), with cells wide enough for moves up
    /// to `step`, and makes it `cur`. Jumpers go to the jumper buckets if `PENDING`.
    pub(super) fn build<const PENDING: bool>(&mut self, step: f32) {
        let pending = PENDING;
        let Scratch { order, bucket, floats, ring } = &mut self.scratch;
        let ents = &mut self.ents;
        let g = &mut self.next;
        order.clear();
        let (mut lx, mut hx, mut lz, mut hz) = (f32::INFINITY, f32::NEG_INFINITY, f32::INFINITY, f32::NEG_INFINITY);
        let mut over = 0usize;
        // Largest reach of a swept entity (see `Aoi::ring`).
        let mut far = 0.0f32;
        for (k, e) in ents.iter().enumerate() {
            if !e.alive() {
                continue;
            }
            order.push(k as AoiKey);
            let (x, z, r) = e.view(pending);
            // Coordinates are never NaN: plain comparisons, not `f32::min`.
            lx = if x < lx { x } else { lx };
            hx = if x > hx { x } else { hx };
            lz = if z < lz { z } else { lz };
            hz = if z > hz { z } else { hz };
            over += usize::from(r > self.cell);
            if pending && !e.jump {
                far = far.max((e.r + 2.0 * step).max(e.rq));
            }
        }
        let n = order.len();
        if n == 0 {
            (lx, hx, lz, hz) = (0.0, 0.0, 0.0, 0.0);
        }
        // Cell size: the configured one, or a high quantile of the radii if most exceed it.
        let mut base = self.cell;
        if over * WIDE_DIV > n {
            floats.clear();
            floats.extend(order.iter().map(|&k| ents[k as usize].view(pending).2));
            let i = n - 1 - n / WIDE_DIV;
            let (_, q, _) = floats.select_nth_unstable_by(i, f32::total_cmp);
            if q.is_finite() {
                base = base.max(*q);
            }
        }
        let eff = f64::from(base) + 2.0 * f64::from(step);
        let limit = (CELLS_PER_ENTITY * n + CELLS_BASE) as f64;
        let (kx, ky) = (KX as f64, KY as f64);
        let cells = |c: f64, lx: f32, hx: f32, lz: f32, hz: f32| {
            (((f64::from(hx) - f64::from(lx)) * kx / c).floor() + 1.0)
                * (((f64::from(hz) - f64::from(lz)) * ky / c).floor() + 1.0)
        };
        if cells(eff, lx, hx, lz, hz) > limit && n >= 3 {
            // Far outliers: window the bulk, clamp the rest into border cells.
            let (lo, hi) = (n.div_ceil(OUTLIER_DIV), n - 1 - n.div_ceil(OUTLIER_DIV));
            for axis in 0..2 {
                floats.clear();
                floats.extend(order.iter().map(|&k| {
                    let (x, z, _) = ents[k as usize].view(pending);
                    if axis == 0 { x } else { z }
                }));
                let a = *floats.select_nth_unstable_by(lo, f32::total_cmp).1;
                let b = *floats.select_nth_unstable_by(hi, f32::total_cmp).1;
                if axis == 0 {
                    (lx, hx) = (a, b);
                } else {
                    (lz, hz) = (a, b);
                }
            }
        }
        let mag = f64::from(lx.abs().max(hx.abs())) + f64::from(lz.abs().max(hz.abs()));
        // Enough slack that an entity with reach `eff` passes the test in `Aoi::ring`.
        let mut cell = eff + 8.0 * f64::from(PAD_REL) * (eff + mag);
        while cells(cell, lx, hx, lz, hz) > limit {
            cell *= 2.0;
        }
        let w = ((f64::from(hx) - f64::from(lx)) * kx / cell).floor() as usize + 1;
        let h = ((f64::from(hz) - f64::from(lz)) * ky / cell).floor() as usize + 1;
        g.x0 = lx;
        g.z0 = lz;
        g.reach = cell as f32;
        g.invx = (kx / cell) as f32;
        g.invz = (ky / cell) as f32;
        // Capped so that `r2 <= reach2` still implies `r <= reach` when the square overflows.
        g.reach2 = sq(g.reach).min(f32::MAX);
        g.w = w;
        g.h = h;
        g.mag = (mag + 2.0 * cell) as f32;
        let (geom, mag_g, reach_g) = (g.geom(), g.mag, g.reach);
        // Counting sort: count, inclusive prefix sums, scatter backwards (stable, so slots are
        // in key order within a bucket and the build is deterministic).
        let nc = w * h;
        g.start.clear();
        g.start.resize(2 * nc + 1, 0);
        bucket.clear();
        bucket.resize(n, 0);
        // Locals and plain slices, so that the loops keep everything in registers.
        let start = &mut g.start[..];
        for (&k, b) in order.iter().zip(bucket.iter_mut()) {
            let e = &ents[k as usize];
            let (x, z, _) = e.view(pending);
            let c = geom.cell(x, z);
            let c = if pending && e.jump { nc + c } else { c };
            *b = c as u32;
            start[c] += 1;
        }
        let mut acc = 0u32;
        for s in &mut start[..2 * nc] {
            acc += *s;
            *s = acc;
        }
        start[2 * nc] = acc;
        // Every slot is written below: only a change of length costs.
        for v in [&mut g.x, &mut g.z, &mut g.r2, &mut g.ox, &mut g.oz, &mut g.or2] {
            v.resize(n, 0.0);
        }
        g.key.resize(n, 0);
        let key = &mut g.key[..n];
        for (&k, &b) in order.iter().zip(bucket.iter()).rev() {
            let b = b as usize;
            start[b] -= 1;
            key[start[b] as usize] = k;
        }
        // Then the columns in slot order: reads of `ents` jump about, writes stream.
        ring.clear();
        let rings = pending && far + 2.0 * PAD_REL * (far + mag_g) > reach_g;
        let (xs, zs, r2s) = (&mut g.x[..n], &mut g.z[..n], &mut g.r2[..n]);
        let (oxs, ozs, or2s) = (&mut g.ox[..n], &mut g.oz[..n], &mut g.or2[..n]);
        for (s, &k) in key.iter().enumerate() {
            let e = &mut ents[k as usize];
            let (x, z, r) = e.view(pending);
            xs[s] = x;
            zs[s] = z;
            r2s[s] = sq(r);
            oxs[s] = e.px;
            ozs[s] = e.pz;
            or2s[s] = sq(e.r);
            e.loc = s as u32;
            if rings && !e.jump {
                // Reach of a swept entity: its new radius, or its old one plus both moves.
                let reach = (e.r + 2.0 * step).max(e.rq);
                if reach + 2.0 * PAD_REL * (reach + mag_g) > reach_g {
                    ring.push(s as u32);
                }
            }
        }
        std::mem::swap(&mut self.cur, &mut self.next);
        self.extras.clear();
        self.wide.clear();
        let reach2 = self.cur.reach2;
        self.wide.extend(order.iter().copied().filter(|&k| sq(self.ents[k as usize].view(pending).2) > reach2));
    }

    /// The sweep of a full flush: every pair of non-jumpers whose columns differ by at most
    /// `KX` and rows by at most `KY`, each unordered pair once (the rest of the own row up to
    /// `KX` columns right, then `KY` rows below), both directions.
    pub(super) fn sweep(&self, events: &mut Vec<AoiEvent>) {
        let g = &self.cur;
        let (w, h) = (g.w, g.h);
        for row in 0..h {
            for col in 0..w {
                let c = row * w + col;
                let (a0, a1) = (g.start[c] as usize, g.start[c + 1] as usize);
                if a0 == a1 {
                    continue;
                }
                let (lo, hi) = (col.saturating_sub(KX), (col + KX).min(w - 1));
                let right = g.start[row * w + hi + 1] as usize;
                let mut below = [(0, 0); KY];
                for (dr, r) in below.iter_mut().enumerate() {
                    let row = row + dr + 1;
                    if row < h {
                        *r = (g.start[row * w + lo] as usize, g.start[row * w + hi + 1] as usize);
                    }
                }
                for a in a0..a1 {
                    let me = [g.x[a], g.z[a], g.r2[a], g.ox[a], g.oz[a], g.or2[a]];
                    sweep_one::<true>(g, a, me, a + 1..right, events);
                    for &(b0, b1) in &below {
                        sweep_one::<true>(g, a, me, b0..b1, events);
                    }
                }
            }
        }
    }

    /// Entities whose reach (radius, plus twice the largest move for the old radius) exceeds
    /// the grid's stencil (listed by `Aoi::build`) also see beyond it: scan the cells they can
    /// reach outside the stencil, one direction.
    pub(super) fn ring(&self, step: f32, events: &mut Vec<AoiEvent>) {
        let g = &self.cur;
        for &s in &self.scratch.ring {
            let s = s as usize;
            let e = &self.ents[g.key[s] as usize];
            let reach = (e.r + 2.0 * step).max(e.rq);
            let padded = reach + 2.0 * PAD_REL * (reach + g.mag);
            let cells = |inv: f32| {
                let k = (padded * inv).ceil();
                if k >= 0.0 { k as usize } else { 0 }
            };
            let (kx, kz) = (cells(g.invx), cells(g.invz));
            let (col, row) = (g.col(g.x[s]), g.row(g.z[s]));
            let (c0, c1) = (col.saturating_sub(kx), col.saturating_add(kx).min(g.w - 1));
            let (r0, r1) = (row.saturating_sub(kz), row.saturating_add(kz).min(g.h - 1));
            let me = [g.x[s], g.z[s], g.r2[s], g.ox[s], g.oz[s], g.or2[s]];
            // Per row, the cells outside the stencil are at most two runs of slots.
            for rr in r0..=r1 {
                let first = rr * g.w;
                let run = |c0: usize, c1: usize| g.start[first + c0] as usize..g.start[first + c1 + 1] as usize;
                if rr.abs_diff(row) > KY {
                    sweep_one::<false>(g, s, me, run(c0, c1), events);
                    continue;
                }
                if col > c0 + KX {
                    sweep_one::<false>(g, s, me, run(c0, col - KX - 1), events);
                }
                if col + KX < c1 {
                    sweep_one::<false>(g, s, me, run(col + KX + 1, c1), events);
                }
            }
        }
    }
}

/// Compares slot `a` (columns `me`) with slots `b`, flushed state against pending state, and
/// appends the changed pairs: a->b, and b->a too if `BOTH` (the sweep; the ring pass does one
/// direction). The kernel tests 8 pairs at a time without branches, which the compiler
/// vectorises; only a chunk with a change (about one in seven) goes on to [`report`]. The last
/// partial chunk is the 8 last slots with the pairs already done skipped, so no pair is
/// reported twice and there is no scalar tail.
#[inline(always)]
pub(super) fn sweep_one<const BOTH: bool>(
    g: &Grid,
    a: usize,
    me: [f32; 6],
    b: Range<usize>,
    events: &mut Vec<AoiEvent>,
) {
    let n = b.len();
    // Six columns of the same length `n`, so that indexing below `n` needs no checks.
    let x = &g.x[b.clone()];
    let them = [
        x,
        &g.z[b.start..][..n],
        &g.r2[b.start..][..n],
        &g.ox[b.start..][..n],
        &g.oz[b.start..][..n],
        &g.or2[b.start..][..n],
    ];
    let mut j = 0;
    while j + LANES <= n {
        if any_changed::<BOTH>(me, them, j) {
            report::<BOTH>(g, a, b.start + j, 0, events);
        }
        j += LANES;
    }
    if j < n {
        if n >= LANES {
            if any_changed::<BOTH>(me, them, n - LANES) {
                report::<BOTH>(g, a, b.start + n - LANES, j - (n - LANES), events);
            }
        } else {
            for t in b.start + j..b.end {
                report_one::<BOTH>(g, a, t, events);
            }
        }
    }
}

/// `v[j..j + LANES]` as an array; callers keep `j + LANES <= v.len()`.
#[inline(always)]
pub(super) fn lanes(v: &[f32], j: usize) -> &[f32; LANES] {
    const NONE: [f32; LANES] = [f32::NAN; LANES];
    v[j..j + LANES].try_into().unwrap_or(&NONE)
}

/// True if a pair of `me` and slots `j..j + LANES` of `them` changed (a->b, or b->a if `BOTH`).
/// Columns are x, z, squared radius (pending), then the same flushed.
#[inline(always)]
pub(super) fn any_changed<const BOTH: bool>(me: [f32; 6], them: [&[f32]; 6], j: usize) -> bool {
    let [ax, az, ar2, aox, aoz, aor2] = me;
    let [x, z, r2, ox, oz, or2] = them;
    let (x, z, r2) = (lanes(x, j), lanes(z, j), lanes(r2, j));
    let (ox, oz, or2) = (lanes(ox, j), lanes(oz, j), lanes(or2, j));
    let mut any = false;
    for l in 0..LANES {
        let d = d2(ax, az, x[l], z[l]);
        let o = d2(aox, aoz, ox[l], oz[l]);
        any |= ((d <= ar2) != (o <= aor2)) | (BOTH && ((d <= r2[l]) != (o <= or2[l])));
    }
    any
}

/// Appends the changed pairs of slot `a` with slots `j + from..j + LANES` (b->a only if
/// `BOTH`): the comparisons are redone vectorised into per-lane flags, then the changed lanes
/// are visited.
#[inline(always)]
pub(super) fn report<const BOTH: bool>(g: &Grid, a: usize, j: usize, from: usize, events: &mut Vec<AoiEvent>) {
    let (ax, az, ar2, aox, aoz, aor2) = (g.x[a], g.z[a], g.r2[a], g.ox[a], g.oz[a], g.or2[a]);
    let (x, z, r2) = (lanes(&g.x, j), lanes(&g.z, j), lanes(&g.r2, j));
    let (ox, oz, or2) = (lanes(&g.ox, j), lanes(&g.oz, j), lanes(&g.or2, j));
    // Per lane: bit 0 a->b changed, bit 1 b->a changed, bit 2 a sees b now, bit 3 b sees a now.
    let mut flags = [0u32; LANES];
    for (l, f) in flags.iter_mut().enumerate() {
        let d = d2(ax, az, x[l], z[l]);
        let o = d2(aox, aoz, ox[l], oz[l]);
        let (ab, ba) = (d <= ar2, d <= r2[l]);
        *f = u32::from(ab != (o <= aor2))
            | u32::from(ba != (o <= or2[l])) << 1
            | u32::from(ab) << 2
            | u32::from(ba) << 3;
    }
    let mut lanes = 0u32;
    for (l, &f) in flags.iter().enumerate() {
        lanes |= u32::from(f & if BOTH { 3 } else { 1 } != 0) << l;
    }
    lanes &= u32::MAX << from;
    let (ka, keys) = (g.key[a], &g.key[j..j + LANES]);
    while lanes != 0 {
        let l = lanes.trailing_zeros() as usize;
        lanes &= lanes - 1;
        let (f, b) = (flags[l], keys[l]);
        if f & 1 != 0 {
            events.push(AoiEvent::new(f & 4 != 0, ka, b));
        }
        if BOTH && f & 2 != 0 {
            events.push(AoiEvent::new(f & 8 != 0, b, ka));
        }
    }
}

/// Appends the pair of slots `a` and `b` if it changed (a->b, and b->a if `BOTH`).
#[inline(never)]
pub(super) fn report_one<const BOTH: bool>(g: &Grid, a: usize, b: usize, events: &mut Vec<AoiEvent>) {
    let d = d2(g.x[a], g.z[a], g.x[b], g.z[b]);
    let o = d2(g.ox[a], g.oz[a], g.ox[b], g.oz[b]);
    if (d <= g.r2[a]) != (o <= g.or2[a]) {
        events.push(AoiEvent::new(d <= g.r2[a], g.key[a], g.key[b]));
    }
    if BOTH && (d <= g.r2[b]) != (o <= g.or2[b]) {
        events.push(AoiEvent::new(d <= g.r2[b], g.key[b], g.key[a]));
    }
}
