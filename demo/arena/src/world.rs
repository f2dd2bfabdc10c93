//! The arena's world: `ArenaSpace` (the space type: arenas keep monsters spawned around their
//! players), the `Arenas` service (one arena per kind, made on the least-loaded game) and the
//! `Scores` service (the top ten, kept in its attributes).

use std::collections::BTreeMap;
use std::time::Duration;

use oxworld_core::engine::geom::Vec3;
use oxworld_core::{Args, CallError, Ctx, Entity, Expose, Id, Registry, Value, id_value};

use crate::rules::{ARENA_KINDS, MAX_MONSTERS, MONSTERS_PER_PLAYER, Rng, ranked, record_score, seed_of, spawn_point};

/// How often an arena counts its monsters and players.
const SPAWN_CHECK: Duration = Duration::from_secs(1);
/// Most monsters one check spawns (a crowd arriving is filled over a few seconds).
const SPAWN_PER_CHECK: usize = 4;

/// The space type. Each game's nil space (kind 0) is one too and does nothing; arenas
/// (kinds 1 and up) spawn monsters.
#[derive(Default)]
struct ArenaSpace {
    /// Spawn checks that spawned something: each seeds the dice of the next.
    spawns: u64,
}

impl Entity for ArenaSpace {
    fn on_game_ready(&mut self, ctx: &mut Ctx<'_>) {
        log::info!("game{}: deployment ready", ctx.game_id());
    }

    fn on_created(&mut self, ctx: &mut Ctx<'_>) {
        let kind = ctx.space_kind(ctx.id()).unwrap_or(0);
        if kind < 1 {
            return;
        }
        log::info!("game{}: arena {kind} opened ({})", ctx.game_id(), ctx.id());
        if let Err(e) = ctx.add_repeat_timer(SPAWN_CHECK, "populate", vec![]) {
            log::error!("arena {kind}: no monsters: {e}");
        }
    }

    fn save(&self) -> Value {
        Value::Int(self.spawns as i64)
    }

    fn load(&mut self, state: Value) {
        self.spawns = state.as_int().map(|n| n as u64).unwrap_or(0);
    }
}

impl ArenaSpace {
    /// Server (its timer): spawns monsters while the arena holds fewer than
    /// [`MONSTERS_PER_PLAYER`] per player, near each player in turn.
    fn populate(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        let me = ctx.id();
        let Some(view) = ctx.space_view(me) else { return Ok(()) };
        let players: Vec<Id> = view.members_of_type("Player").collect();
        let monsters = view.count_of_type("Monster");
        let wanted = (MONSTERS_PER_PLAYER * players.len()).min(MAX_MONSTERS);
        let missing = wanted.saturating_sub(monsters).min(SPAWN_PER_CHECK);
        if missing == 0 {
            return Ok(());
        }
        self.spawns += 1;
        let mut rng = Rng::new(seed_of(&[me], self.spawns));
        for i in 0..missing {
            // Near each player in turn (not a random one), so every player gets monsters to
            // fight, however far apart the players stand.
            let turn = (self.spawns as usize).wrapping_add(i) % players.len().max(1);
            let near = players.get(turn).and_then(|p| ctx.position_of(*p)).map(Vec3::from);
            let at = spawn_point(&mut rng, near);
            match ctx.create_entity_locally("Monster") {
                Ok(m) => {
                    let (x, z) = (Value::Float(at.x.into()), Value::Float(at.z.into()));
                    ctx.call(m, "place", vec![id_value(me), x, z]);
                }
                Err(e) => log::error!("arena {me}: {e}"),
            }
        }
        Ok(())
    }
}

/// Service (1 shard): the arena of each kind, made anywhere on first demand.
#[derive(Default)]
struct Arenas {
    by_kind: BTreeMap<i64, Id>,
}

impl Entity for Arenas {
    fn save(&self) -> Value {
        Value::List(self.by_kind.iter().map(|(k, id)| Value::List(vec![Value::Int(*k), id_value(*id)])).collect())
    }

    fn load(&mut self, state: Value) {
        let Value::List(l) = state else { return };
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

impl Arenas {
    /// Server: `want(kind, player)`: the player is sent `enter_arena(space)`.
    fn want(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let (kind, player) = (args.int(0)?, args.id(1)?);
        if !(1..=ARENA_KINDS).contains(&kind) {
            return Err(CallError::BadArguments(format!("arena kinds are 1..={ARENA_KINDS}")));
        }
        let space = *self.by_kind.entry(kind).or_insert_with(|| ctx.create_space_anywhere(kind));
        ctx.call(player, "enter_arena", vec![id_value(space)]);
        Ok(())
    }
}

/// Service (1 shard): the best scores, `name -> score`, in its attribute `top` (which travels
/// with it through freezes).
#[derive(Default)]
struct Scores;

impl Entity for Scores {}

impl Scores {
    fn board(ctx: &Ctx<'_>) -> BTreeMap<String, i64> {
        match ctx.attrs_ref().get("top") {
            Some(Value::Map(m)) => m.iter().filter_map(|(n, s)| s.as_int().map(|s| (n.clone(), s))).collect(),
            _ => BTreeMap::new(),
        }
    }

    /// Server: `report(name, score)`: kept if it makes the top ten (a name keeps its best).
    fn report(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let (name, score) = (args.str(0)?.to_owned(), args.int(1)?);
        let mut board = Self::board(ctx);
        if record_score(&mut board, &name, score) {
            let top = board.into_iter().map(|(n, s)| (n, Value::Int(s))).collect();
            ctx.attrs().set("top", Value::Map(top));
        }
        Ok(())
    }

    /// Server: `query(player)`: the player is sent `on_scores([[name, score], ...])`, best
    /// first.
    fn query(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let player = args.id(0)?;
        let list = ranked(&Self::board(ctx))
            .into_iter()
            .map(|(n, s)| Value::List(vec![Value::from(n), Value::Int(s)]))
            .collect();
        ctx.call(player, "on_scores", vec![Value::List(list)]);
        Ok(())
    }
}

/// Registers the space type and the two services.
pub(crate) fn register(reg: &mut Registry) {
    reg.space("ArenaSpace", ArenaSpace::default).method("populate", Expose::Server, ArenaSpace::populate);
    reg.service("Arenas", Arenas::default, 1).method("want", Expose::Server, Arenas::want);
    reg.service("Scores", Scores::default, 1).method("report", Expose::Server, Scores::report).method(
        "query",
        Expose::Server,
        Scores::query,
    );
}
