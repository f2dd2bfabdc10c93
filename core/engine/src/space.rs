//! Spaces of one game and where each entity is: membership, positions, and one AOI index per
//! space. Sans-IO; reports who started or stopped seeing whom as `Sight` pairs, which the world
//! turns into client messages and hooks after the move (never from inside the index).

use oxworld_net::Id;
use oxworld_net::client_proto::Pos;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::aoi::{Aoi, AoiEvent, AoiKey};

/// Grid cell size of a space's AOI index when its entities' radii are unknown; the AOI works
/// with any radius, this only tunes speed.
pub const DEFAULT_AOI_CELL: f32 = 100.0;

/// `watcher` started (`enter`) or stopped seeing `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sight {
    pub(crate) watcher: Id,
    pub(crate) target: Id,
    pub(crate) enter: bool,
}

/// Where one entity is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Spatial {
    pub(crate) space: Id,
    pub(crate) pos: Pos,
    /// AOI radius; `None` for entities that do not take part in AOI.
    pub(crate) radius: Option<f32>,
    key: Option<AoiKey>,
    /// Moved since the last position sync.
    pub(crate) moved: bool,
    /// The own client may move this entity.
    pub(crate) client_move: bool,
}

/// One space.
pub(crate) struct SpaceState {
    pub(crate) kind: i64,
    aoi: Option<Aoi>,
    /// AOI key -> entity (NIL when free).
    keys: Vec<Id>,
    free: Vec<AoiKey>,
    pub(crate) members: FxHashSet<Id>,
}

/// Every space of a world and every entity's place.
#[derive(Default)]
pub(crate) struct Spaces {
    spaces: FxHashMap<Id, SpaceState>,
    spatial: FxHashMap<Id, Spatial>,
    events: Vec<AoiEvent>,
}

impl Spaces {
    /// Adds a space; `aoi` false for spaces without area of interest (the nil space).
    pub(crate) fn add_space(&mut self, id: Id, kind: i64, aoi: bool) {
        let aoi = aoi.then(|| Aoi::new(DEFAULT_AOI_CELL));
        self.spaces
            .insert(id, SpaceState { kind, aoi, keys: Vec::new(), free: Vec::new(), members: Default::default() });
    }

    /// Removes an (empty) space.
    pub(crate) fn remove_space(&mut self, id: Id) -> Option<SpaceState> {
        self.spaces.remove(&id)
    }

    pub(crate) fn space(&self, id: Id) -> Option<&SpaceState> {
        self.spaces.get(&id)
    }

    pub(crate) fn is_space(&self, id: Id) -> bool {
        self.spaces.contains_key(&id)
    }

    pub(crate) fn spatial(&self, id: Id) -> Option<&Spatial> {
        self.spatial.get(&id)
    }

    pub(crate) fn spatial_mut(&mut self, id: Id) -> Option<&mut Spatial> {
        self.spatial.get_mut(&id)
    }

    /// Puts `entity` into `space` at `pos`; returns the sight pairs that begin at once.
    pub(crate) fn join(&mut self, entity: Id, space: Id, pos: Pos, radius: Option<f32>, out: &mut Vec<Sight>) {
        let Some(s) = self.spaces.get_mut(&space) else { return };
        s.members.insert(entity);
        let mut key = None;
        if let (Some(aoi), Some(r)) = (s.aoi.as_mut(), radius) {
            let k = match s.free.pop() {
                Some(k) => k,
                None => {
                    s.keys.push(Id::NIL);
                    (s.keys.len() - 1) as AoiKey
                }
            };
            s.keys[k as usize] = entity;
            aoi.insert(k, pos.x, pos.z, r, &mut self.events);
            key = Some(k);
        }
        let client_move = self.spatial.get(&entity).is_some_and(|sp| sp.client_move);
        self.spatial.insert(entity, Spatial { space, pos, radius, key, moved: false, client_move });
        Self::translate(s, &mut self.events, out);
    }

    /// Takes `entity` out of its space (it stays known with no space); returns the sight pairs
    /// that end.
    pub(crate) fn leave(&mut self, entity: Id, out: &mut Vec<Sight>) -> Option<Id> {
        let sp = self.spatial.get_mut(&entity)?;
        let space = sp.space;
        let key = sp.key.take();
        sp.space = Id::NIL;
        let s = self.spaces.get_mut(&space)?;
        s.members.remove(&entity);
        if let (Some(aoi), Some(k)) = (s.aoi.as_mut(), key) {
            // Pending moves of other entities stay pending; only this key's pairs end here.
            aoi.remove(k, &mut self.events);
            Self::translate(s, &mut self.events, out);
            s.keys[k as usize] = Id::NIL;
            s.free.push(k);
        }
        Some(space)
    }

    /// Forgets `entity` entirely (after [`Spaces::leave`]).
    pub(crate) fn forget(&mut self, entity: Id) {
        self.spatial.remove(&entity);
    }

    /// Records a move; sight changes are reported by the next [`Spaces::flush`].
    pub(crate) fn move_to(&mut self, entity: Id, pos: Pos) {
        let Some(sp) = self.spatial.get_mut(&entity) else { return };
        sp.pos = pos;
        sp.moved = true;
        if let (Some(k), Some(s)) = (sp.key, self.spaces.get_mut(&sp.space))
            && let Some(aoi) = s.aoi.as_mut()
        {
            aoi.move_to(k, pos.x, pos.z);
        }
    }

    /// Changes an entity's AOI radius (effective at the next flush).
    pub(crate) fn set_radius(&mut self, entity: Id, radius: f32) {
        let Some(sp) = self.spatial.get_mut(&entity) else { return };
        if sp.radius.is_none() {
            return;
        }
        sp.radius = Some(radius);
        if let (Some(k), Some(s)) = (sp.key, self.spaces.get_mut(&sp.space))
            && let Some(aoi) = s.aoi.as_mut()
        {
            aoi.set_radius(k, radius);
        }
    }

    /// Applies recorded moves in every space; returns the sight changes.
    pub(crate) fn flush(&mut self, out: &mut Vec<Sight>) {
        for s in self.spaces.values_mut() {
            if let Some(aoi) = s.aoi.as_mut() {
                aoi.flush(&mut self.events);
                Self::translate(s, &mut self.events, out);
            }
        }
    }

    /// Entities whose view includes `entity`.
    pub(crate) fn watchers(&self, entity: Id) -> Vec<Id> {
        self.related(entity, false)
    }

    /// Entities `entity` sees.
    pub(crate) fn seen(&self, entity: Id) -> Vec<Id> {
        self.related(entity, true)
    }

    fn related(&self, entity: Id, sees: bool) -> Vec<Id> {
        let Some(sp) = self.spatial.get(&entity) else { return Vec::new() };
        let (Some(k), Some(s)) = (sp.key, self.spaces.get(&sp.space)) else { return Vec::new() };
        let Some(aoi) = s.aoi.as_ref() else { return Vec::new() };
        let ids = |k: AoiKey| s.keys.get(k as usize).copied().unwrap_or(Id::NIL);
        if sees { aoi.sees(k).map(ids).collect() } else { aoi.seen_by(k).map(ids).collect() }
    }

    /// Entities that moved since the last call, with their positions; clears the marks.
    pub(crate) fn take_moved(&mut self) -> Vec<(Id, Pos)> {
        let mut v = Vec::new();
        for (id, sp) in self.spatial.iter_mut() {
            if sp.moved {
                sp.moved = false;
                v.push((*id, sp.pos));
            }
        }
        v
    }

    fn translate(s: &SpaceState, events: &mut Vec<AoiEvent>, out: &mut Vec<Sight>) {
        let id = |k: AoiKey| s.keys.get(k as usize).copied().unwrap_or(Id::NIL);
        for e in events.drain(..) {
            let (w, t, enter) = match e {
                AoiEvent::Enter { watcher, target } => (watcher, target, true),
                AoiEvent::Leave { watcher, target } => (watcher, target, false),
            };
            let (watcher, target) = (id(w), id(t));
            if !watcher.is_nil() && !target.is_nil() {
                out.push(Sight { watcher, target, enter });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Id {
        Id([n; 16])
    }

    #[test]
    fn join_move_leave_report_sight_pairs() {
        let mut s = Spaces::default();
        let sp = id(100);
        s.add_space(sp, 1, true);
        let mut out = Vec::new();
        s.join(id(1), sp, Pos::at(0.0, 0.0, 0.0), Some(10.0), &mut out);
        s.join(id(2), sp, Pos::at(5.0, 0.0, 0.0), Some(1.0), &mut out);
        // 1 sees 2 (distance 5 <= 10); 2 does not see 1 (radius 1).
        assert_eq!(out, vec![Sight { watcher: id(1), target: id(2), enter: true }]);
        assert_eq!(s.watchers(id(2)), vec![id(1)]);
        assert!(s.watchers(id(1)).is_empty());
        out.clear();
        s.move_to(id(2), Pos::at(50.0, 0.0, 0.0));
        assert!(out.is_empty(), "moves report nothing until flush");
        s.flush(&mut out);
        assert_eq!(out, vec![Sight { watcher: id(1), target: id(2), enter: false }]);
        assert_eq!(s.take_moved(), vec![(id(2), Pos::at(50.0, 0.0, 0.0))]);
        assert!(s.take_moved().is_empty());
        out.clear();
        s.move_to(id(2), Pos::at(1.0, 0.0, 0.0));
        s.flush(&mut out);
        out.clear();
        assert_eq!(s.leave(id(1), &mut out), Some(sp));
        assert!(out.contains(&Sight { watcher: id(1), target: id(2), enter: false }), "{out:?}");
        assert!(out.contains(&Sight { watcher: id(2), target: id(1), enter: false }), "{out:?}");
        assert!(!s.space(sp).expect("space").members.contains(&id(1)));
    }

    #[test]
    fn entities_without_aoi_and_spaces_without_aoi() {
        let mut s = Spaces::default();
        s.add_space(id(100), 0, false);
        s.add_space(id(101), 1, true);
        let mut out = Vec::new();
        s.join(id(1), id(100), Pos::default(), Some(10.0), &mut out);
        s.join(id(2), id(100), Pos::default(), Some(10.0), &mut out);
        assert!(out.is_empty(), "the nil space has no AOI");
        s.join(id(3), id(101), Pos::default(), None, &mut out);
        s.join(id(4), id(101), Pos::default(), Some(10.0), &mut out);
        assert!(out.is_empty(), "an entity without AOI neither sees nor is seen");
        assert_eq!(s.space(id(101)).expect("space").members.len(), 2);
    }
}
