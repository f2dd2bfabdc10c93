//! The test game's services: `Online` (who is checked in, per shard) and `Spaces` (one space
//! per kind, made anywhere on first demand, replaced when its game is lost).

use std::collections::{BTreeMap, BTreeSet};

use oxworld_core::{Args, CallError, Ctx, Entity, Id, Value, id_value};

/// Service (3 shards): the avatars checked in to this shard.
#[derive(Default)]
pub(crate) struct Online {
    avatars: BTreeSet<Id>,
}

impl Entity for Online {
    fn save(&self) -> Value {
        Value::List(self.avatars.iter().map(|id| id_value(*id)).collect())
    }

    fn load(&mut self, state: Value) {
        if let Value::List(l) = state {
            let a = Args(l);
            self.avatars = (0..a.len()).filter_map(|i| a.id(i).ok()).collect();
        }
    }
}

impl Online {
    pub(crate) fn check_in(&mut self, _ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        self.avatars.insert(args.id(0)?);
        Ok(())
    }

    pub(crate) fn check_out(&mut self, _ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        self.avatars.remove(&args.id(0)?);
        Ok(())
    }

    /// `count(avatar)`: how many avatars are checked in, the asking one among them (a shard
    /// re-created after its game was lost learns again who is online).
    pub(crate) fn count(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        self.avatars.insert(args.id(0)?);
        let n = i64::try_from(self.avatars.len()).unwrap_or(i64::MAX);
        ctx.call(args.id(0)?, "on_online", vec![Value::Int(n)]);
        Ok(())
    }
}

/// Service (3 shards, by kind): one space per kind, made anywhere on first demand.
#[derive(Default)]
pub(crate) struct Spaces {
    by_kind: BTreeMap<i64, Id>,
}

impl Entity for Spaces {
    fn save(&self) -> Value {
        Value::List(self.by_kind.iter().map(|(k, id)| Value::List(vec![Value::Int(*k), id_value(*id)])).collect())
    }

    fn load(&mut self, state: Value) {
        if let Value::List(l) = state {
            for pair in l {
                if let Value::List(p) = pair {
                    let a = Args(p);
                    if let (Ok(k), Ok(id)) = (a.int(0), a.id(1)) {
                        self.by_kind.insert(k, id);
                    }
                }
            }
        }
    }
}

impl Spaces {
    pub(crate) fn want(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let (kind, avatar) = (args.int(0)?, args.id(1)?);
        let space = *self.by_kind.entry(kind).or_insert_with(|| ctx.create_space_anywhere(kind));
        ctx.call(avatar, "do_enter_space", vec![id_value(space), Value::Int(kind)]);
        Ok(())
    }

    /// `replace(kind, space, avatar)`: the avatar could not enter `space` (gone with its game):
    /// a new space of that kind, unless another already replaced it.
    pub(crate) fn replace(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let (kind, space, avatar) = (args.int(0)?, args.id(1)?, args.id(2)?);
        if self.by_kind.get(&kind) == Some(&space) {
            self.by_kind.remove(&kind);
        }
        self.want(ctx, Args(vec![Value::Int(kind), id_value(avatar)]))
    }
}
