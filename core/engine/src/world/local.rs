//! Read-only access to the other entities and the spaces of the same game from entity code
//! (GoWorld's `GetEntity`, `Entities`, `GetSpace`): views borrowed from the world through
//! [`Ctx`] for the length of one handler, so nothing can hold a reference across calls.
//! Entities on other games stay reachable by calls only.

use oxworld_net::Id;
use oxworld_net::client_proto::Pos;

use super::{ClientRef, Ctx, Slot};
use crate::attr::Attrs;
use crate::entity::{Entity, Registry};
use crate::space::{SpaceState, Spaces};

/// One entity of this game, read-only, for the length of the current handler.
#[derive(Clone, Copy)]
pub struct EntityView<'a> {
    id: Id,
    ty: usize,
    reg: &'a Registry,
    spaces: &'a Spaces,
    attrs: &'a Attrs,
    client: Option<ClientRef>,
    /// `None` for the entity whose handler is running (its object is checked out).
    obj: Option<&'a dyn crate::entity::EntityObj>,
}

impl std::fmt::Debug for EntityView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntityView").field("id", &self.id).field("type", &self.type_name()).finish()
    }
}

impl<'a> EntityView<'a> {
    /// Its id.
    pub fn id(&self) -> Id {
        self.id
    }

    /// The name its type was registered under.
    pub fn type_name(&self) -> &'static str {
        self.reg.types[self.ty].name
    }

    /// True if it is a space.
    pub fn is_space(&self) -> bool {
        self.reg.types[self.ty].is_space
    }

    /// Position and yaw (`None` for spaces).
    pub fn position(&self) -> Option<Pos> {
        self.spaces.spatial(self.id).map(|s| s.pos)
    }

    /// Yaw in degrees (0 for spaces).
    pub fn yaw(&self) -> f32 {
        self.position().map(|p| p.yaw).unwrap_or(0.0)
    }

    /// The space it is in (`None` for spaces).
    pub fn space(&self) -> Option<Id> {
        self.spaces.spatial(self.id).map(|s| s.space)
    }

    /// Its attributes.
    pub fn attrs(&self) -> &'a Attrs {
        self.attrs
    }

    /// True while a client is bound to it.
    pub fn has_client(&self) -> bool {
        self.client.is_some()
    }

    /// The client bound to it.
    pub fn client(&self) -> Option<ClientRef> {
        self.client
    }

    /// Its game object as type `E` (`None` for another type, and for the entity whose
    /// handler is running: use `self` there).
    pub fn get<E: Entity>(&self) -> Option<&'a E> {
        let obj: &'a dyn crate::entity::EntityObj = self.obj?;
        obj.as_any().downcast_ref::<E>()
    }
}

/// One space of this game, read-only, for the length of the current handler.
#[derive(Clone, Copy)]
pub struct SpaceView<'a> {
    id: Id,
    state: &'a SpaceState,
    ctx_entities: &'a super::Entities,
    reg: &'a Registry,
}

impl std::fmt::Debug for SpaceView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpaceView").field("id", &self.id).field("members", &self.member_count()).finish()
    }
}

impl<'a> SpaceView<'a> {
    /// The space's id.
    pub fn id(&self) -> Id {
        self.id
    }

    /// Its kind.
    pub fn kind(&self) -> i64 {
        self.state.kind
    }

    /// True for a game's nil space.
    pub fn is_nil(&self) -> bool {
        self.id.0[..14] == *b"oxw-nil-space!"
    }

    /// Entities in it.
    pub fn member_count(&self) -> usize {
        self.state.members.len()
    }

    /// Ids of the entities in it (in no particular order).
    pub fn members(&self) -> impl Iterator<Item = Id> + 'a {
        self.state.members.iter().copied()
    }

    /// Entities in it whose type is `type_name`.
    pub fn count_of_type(&self, type_name: &str) -> usize {
        self.members_of_type(type_name).count()
    }

    /// Ids of the entities in it whose type is `type_name`.
    pub fn members_of_type(&self, type_name: &str) -> impl Iterator<Item = Id> + 'a {
        let ty = self.reg.type_index(type_name);
        let entities = self.ctx_entities;
        self.state.members.iter().copied().filter(move |m| ty.is_some() && entities.get(m).map(|s| s.ty) == ty)
    }
}

impl Ctx<'_> {
    fn view_of<'s>(&'s self, id: Id, slot: &'s Slot) -> EntityView<'s> {
        EntityView {
            id,
            ty: slot.ty,
            reg: self.reg,
            spaces: &self.core.spaces,
            attrs: &slot.attrs,
            client: slot.client,
            obj: slot.obj.as_deref(),
        }
    }

    fn self_view(&self) -> EntityView<'_> {
        EntityView {
            id: self.id,
            ty: self.ty,
            reg: self.reg,
            spaces: &self.core.spaces,
            attrs: self.attrs,
            client: *self.client,
            obj: None,
        }
    }

    /// Entity `id` if it lives on this game (GoWorld's `GetEntity`), read-only until the
    /// handler returns; this entity itself too (without its object: use `self`).
    pub fn entity(&self, id: Id) -> Option<EntityView<'_>> {
        if id == self.id {
            return Some(self.self_view());
        }
        self.entities.get(&id).map(|slot| self.view_of(id, slot))
    }

    /// Every entity of this game, spaces included (GoWorld's `Entities`), in no particular
    /// order.
    pub fn entities(&self) -> impl Iterator<Item = EntityView<'_>> {
        let others = self.entities.iter().filter(|(id, _)| **id != self.id).map(|(id, slot)| self.view_of(*id, slot));
        std::iter::once(self.self_view()).chain(others)
    }

    /// Every entity of this game of type `type_name`.
    pub fn entities_of_type<'s>(&'s self, type_name: &'s str) -> impl Iterator<Item = EntityView<'s>> + 's {
        self.entities().filter(move |e| e.type_name() == type_name)
    }

    /// Space `id` if it is on this game (GoWorld's `GetSpace`).
    pub fn space_view(&self, id: Id) -> Option<SpaceView<'_>> {
        let state = self.core.spaces.space(id)?;
        Some(SpaceView { id, state, ctx_entities: self.entities, reg: self.reg })
    }

    /// The space this entity is in, as a view (`None` for spaces).
    pub fn my_space(&self) -> Option<SpaceView<'_>> {
        let space = self.core.spaces.spatial(self.id)?.space;
        self.space_view(space)
    }

    /// The nearest entity of type `type_name` among those this entity sees (its AOI
    /// neighbours), with its distance; ties go to the smaller id.
    pub fn nearest_neighbour_of_type(&self, type_name: &str) -> Option<(Id, f32)> {
        let ty = self.reg.type_index(type_name)?;
        let seen = self.core.spaces.seen(self.id);
        self.nearest(seen.into_iter().filter(|n| self.entities.get(n).is_some_and(|s| s.ty == ty)))
    }

    /// The nearest other entity of type `type_name` in this entity's space, seen or not,
    /// with its distance; ties go to the smaller id. Scans the space's members of that type.
    pub fn nearest_in_space_of_type(&self, type_name: &str) -> Option<(Id, f32)> {
        let space = self.my_space()?;
        self.nearest(space.members_of_type(type_name).filter(|m| *m != self.id))
    }

    fn nearest(&self, candidates: impl Iterator<Item = Id>) -> Option<(Id, f32)> {
        let here = crate::geom::Vec3::from(self.position());
        candidates
            .filter_map(|n| self.position_of(n).map(|p| (n, here.distance(p.into()))))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
    }
}
