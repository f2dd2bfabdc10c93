//! `Monster`: spawned by its arena (or by a player's test aid), it thinks every 100 ms: walks
//! to the nearest live player it sees and bites it once a second when within reach. It dies at
//! 0 hp ("dead"), credits its killer and vanishes shortly after.

use std::time::Duration;

use oxworld_core::engine::geom::Vec3;
use oxworld_core::{Args, AttrFlags, CallError, Ctx, Entity, Expose, Id, Pos, Registry, Value, id_value};

use crate::rules::{
    MONSTER_ATTACK_EVERY, MONSTER_DAMAGE, MONSTER_HP, MONSTER_KILL_SCORE, MONSTER_REACH, MONSTER_SPEED, MONSTER_TICK,
    VIEW_RADIUS, step_toward,
};
use crate::{credit, failed, float_arg, hp_of, int_attr, set_action, take_damage};

/// Ticks between two bites.
const ATTACK_TICKS: u32 = (MONSTER_ATTACK_EVERY.as_millis() / MONSTER_TICK.as_millis()) as u32;
/// Ticks a hit shows ("hit") before the monster's own action again.
const HIT_TICKS: u32 = 3;
/// A walking monster stops this close to its target (within reach).
const KEEP: f32 = MONSTER_REACH * 0.8;
/// How long a dead monster lies before it goes.
const CORPSE_TIME: Duration = Duration::from_secs(2);

/// A monster. Plain state survives freezes through `save`/`load`.
#[derive(Default)]
struct Monster {
    /// Test aid: its AI does nothing (set by `place`'s fourth argument).
    frozen: bool,
    /// Ticks until it may bite again.
    cooldown: u32,
    /// Ticks its "hit" still shows.
    hit_ticks: u32,
}

impl Entity for Monster {
    fn on_init(&mut self, ctx: &mut Ctx<'_>) {
        let mut a = ctx.attrs();
        a.set("name", "monster");
        a.set("hp_max", MONSTER_HP);
        a.set("hp", MONSTER_HP);
        a.set("action", "idle");
    }

    fn on_created(&mut self, ctx: &mut Ctx<'_>) {
        if let Err(e) = ctx.add_repeat_timer(MONSTER_TICK, "think", vec![]) {
            log::error!("{}: no AI: {e}", ctx.id());
        }
    }

    fn save(&self) -> Value {
        Value::List(vec![
            Value::Bool(self.frozen),
            Value::Int(i64::from(self.cooldown)),
            Value::Int(i64::from(self.hit_ticks)),
        ])
    }

    fn load(&mut self, state: Value) {
        if let Value::List(l) = state {
            self.frozen = l.first().and_then(Value::as_bool).unwrap_or(false);
            let ticks = |i: usize| l.get(i).and_then(Value::as_int).and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
            self.cooldown = ticks(1);
            self.hit_ticks = ticks(2);
        }
    }
}

/// Where player `id` stands, if it is a live player of this game.
fn live_player_at(ctx: &Ctx<'_>, id: Id) -> Option<Vec3> {
    let e = ctx.entity(id)?;
    if e.type_name() != "Player" || hp_of(&e) <= 0 {
        return None;
    }
    e.position().map(Vec3::from)
}

/// The nearest live player this monster sees, with its place: the nearest player seen if it
/// is alive (the common case), else the nearest live one among the others seen.
fn nearest_live_player(ctx: &Ctx<'_>) -> Option<(Id, Vec3)> {
    let (nearest, _) = ctx.nearest_neighbour_of_type("Player")?;
    if let Some(at) = live_player_at(ctx, nearest) {
        return Some((nearest, at));
    }
    let here = Vec3::from(ctx.position());
    ctx.neighbours()
        .into_iter()
        .filter_map(|n| live_player_at(ctx, n).map(|at| (n, at)))
        .min_by(|a, b| here.distance_xz(a.1).total_cmp(&here.distance_xz(b.1)).then(a.0.cmp(&b.0)))
}

/// Turns the running entity at `here` towards `there` (only if it turns by more than a
/// degree: each turn is a position update for every client around).
fn face(ctx: &mut Ctx<'_>, here: Vec3, there: Vec3) {
    if let Some(yaw) = (there - here).yaw()
        && (yaw - ctx.position().yaw).abs() > 1.0
    {
        ctx.set_yaw(yaw);
    }
}

impl Monster {
    /// Its own action, unless a hit still shows.
    fn show(&self, ctx: &mut Ctx<'_>, action: &str) {
        if self.hit_ticks == 0 {
            set_action(ctx, action);
        }
    }

    /// Server: `place(space, x, z[, frozen])`: enters `space` at (x, z); `frozen` (a test aid)
    /// stops its AI for good.
    fn place(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let (space, x, z) = (args.id(0)?, float_arg(&args, 1)?, float_arg(&args, 2)?);
        self.frozen = args.get(3).ok().and_then(Value::as_bool).unwrap_or(false);
        ctx.enter_space(space, Pos::at(x, 0.0, z)).map_err(failed)
    }

    /// Server (its repeating timer): one step of the AI.
    fn think(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        if self.frozen || int_attr(ctx, "hp") <= 0 || ctx.space_kind(ctx.space()).unwrap_or(0) < 1 {
            return Ok(());
        }
        self.cooldown = self.cooldown.saturating_sub(1);
        self.hit_ticks = self.hit_ticks.saturating_sub(1);
        let Some((target, there)) = nearest_live_player(ctx) else {
            self.show(ctx, "idle");
            return Ok(());
        };
        let here = Vec3::from(ctx.position());
        if here.distance_xz(there) > MONSTER_REACH {
            let next = step_toward(here, there, MONSTER_SPEED * MONSTER_TICK.as_secs_f32(), KEEP);
            ctx.set_position(next.x, next.y, next.z);
            face(ctx, next, there);
            self.show(ctx, "move");
            return Ok(());
        }
        face(ctx, here, there);
        if self.cooldown == 0 {
            self.cooldown = ATTACK_TICKS;
            let me = ctx.id();
            ctx.call(target, "damaged", vec![Value::Int(MONSTER_DAMAGE), id_value(me)]);
            ctx.call_all_clients("on_attack", vec![id_value(me), id_value(target)]);
        }
        self.show(ctx, "attack");
        Ok(())
    }

    /// Server: `damaged(amount, attacker)`: loses hp ("hit"); at 0 it is "dead", the attacker
    /// (a player) scores, and it goes after [`CORPSE_TIME`].
    fn damaged(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let Some((left, attacker)) = take_damage(ctx, &args)? else { return Ok(()) };
        if left > 0 {
            self.hit_ticks = HIT_TICKS;
            set_action(ctx, "hit");
            return Ok(());
        }
        set_action(ctx, "dead");
        credit(ctx, attacker, MONSTER_KILL_SCORE);
        ctx.add_timer(CORPSE_TIME, "vanish", vec![]).map_err(failed)?;
        Ok(())
    }

    /// Server (its timer): the corpse goes.
    fn vanish(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        ctx.destroy();
        Ok(())
    }
}

/// Registers `Monster`.
pub(crate) fn register(reg: &mut Registry) {
    reg.entity("Monster", Monster::default)
        .aoi(VIEW_RADIUS)
        .attr("name", AttrFlags::ALL_CLIENTS)
        .attr("hp", AttrFlags::ALL_CLIENTS)
        .attr("hp_max", AttrFlags::ALL_CLIENTS)
        .attr("action", AttrFlags::ALL_CLIENTS)
        .method("place", Expose::Server, Monster::place)
        .method("think", Expose::Server, Monster::think)
        .method("damaged", Expose::Server, Monster::damaged)
        .method("vanish", Expose::Server, Monster::vanish);
}
