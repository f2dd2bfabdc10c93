//! `Player`: a user's persistent fighter. `name` and `level` are saved; `hp`, `hp_max`,
//! `action` and `score` live for the session; all six reach every client that sees it. Its
//! own client moves it (`ClientMsg::Move`) while it is alive in an arena; it shoots what it
//! sees, takes damage from shots and bites, dies, respawns, scores and reads the score board.

use std::time::{Duration, Instant};

use oxworld_core::engine::geom::Vec3;
use oxworld_core::{Args, AttrFlags, CallError, Ctx, Entity, Expose, Id, Pos, Registry, Value, id_value};

use crate::rules::{
    ARENA_KINDS, PLAYER_HP, PLAYER_KILL_SCORE, RESPAWN_AFTER, Rng, SCORE_PER_LEVEL, SHOOT_RANGE, SHOT_COOLDOWN,
    SHOT_DAMAGE, VIEW_RADIUS, random_spot, seed_of, shot_hits,
};
use crate::{MAX_DAMAGE, credit, failed, float_arg, hp_of, int_attr, set_action, take_damage};

/// Arena a player enters at login.
const FIRST_ARENA: i64 = 1;
/// How long a shown action ("shoot", "hit") lasts before the player is "idle" again.
const ACTION_SHOWN: Duration = Duration::from_millis(300);
/// After the server places a player (entering an arena, respawning), how long its own client
/// may not move it: the next position sync must reach that client first, and the sync skips
/// the own client of a client-driven entity. Longer than the default sync interval (100 ms).
const HOLD_STILL: Duration = Duration::from_millis(300);
/// Retries of a call to a service that is not registered yet (right after the cluster
/// starts), and the pause between them.
const SERVICE_RETRIES: i64 = 50;
const SERVICE_RETRY: Duration = Duration::from_millis(200);
/// Farthest a test monster may be put from its player (x and z).
const TEST_MONSTER_REACH: f32 = 50.0;

/// A user's fighter. Plain state survives migration through `save`/`load`.
#[derive(Default)]
struct Player {
    /// Rolls of its dice so far: each roll seeds a fresh generator with it.
    rolls: u64,
    /// Bumped by every shown action; a `recover` timer of an older one does nothing.
    action_seq: i64,
    /// Bumped by every placement and death; a `resume_move` timer of an older one does nothing.
    move_seq: i64,
    /// When it last shot (not kept through migration: at worst one early shot).
    last_shot: Option<Instant>,
}

impl Entity for Player {
    /// Defaults: stored `name` and `level` replace them for a returning user.
    fn on_init(&mut self, ctx: &mut Ctx<'_>) {
        let mut a = ctx.attrs();
        a.set("level", 1i64);
        a.set("hp_max", PLAYER_HP);
        a.set("hp", PLAYER_HP);
        a.set("action", "idle");
        a.set("score", 0i64);
    }

    fn on_client_connected(&mut self, ctx: &mut Ctx<'_>) {
        let name = ctx.attrs_ref().get("name").and_then(Value::as_str).unwrap_or("").to_owned();
        let hello = format!("welcome {name}; entering arena {FIRST_ARENA}");
        ctx.call_client("show_info", vec![Value::from(hello)]);
        Self::request_arena(ctx, FIRST_ARENA, 0);
    }

    fn on_client_disconnected(&mut self, ctx: &mut Ctx<'_>) {
        // Destroy saves it.
        ctx.destroy();
    }

    /// In an arena: tells the client where it is (`on_arena(kind, game, x, z)`), and hands
    /// it the movement once its replica has the same place.
    fn on_enter_space(&mut self, ctx: &mut Ctx<'_>) {
        let kind = ctx.space_kind(ctx.space()).unwrap_or(0);
        if kind < 1 {
            ctx.set_client_move(false);
            return;
        }
        // The engine tells the own client its place in the new space; the movement stays with
        // the server briefly, so a `Move` the client sent from its old place cannot undo it.
        let p = ctx.position();
        self.hold_still(ctx);
        let game = Value::Int(i64::from(ctx.game_id()));
        ctx.call_client("on_arena", vec![Value::Int(kind), game, Value::Float(p.x.into()), Value::Float(p.z.into())]);
    }

    fn save(&self) -> Value {
        Value::List(vec![Value::Int(self.rolls as i64), Value::Int(self.action_seq), Value::Int(self.move_seq)])
    }

    fn load(&mut self, state: Value) {
        if let Value::List(l) = state {
            let a = Args(l);
            self.rolls = a.int(0).map(|r| r as u64).unwrap_or(0);
            self.action_seq = a.int(1).unwrap_or(0);
            self.move_seq = a.int(2).unwrap_or(0);
        }
    }
}

impl Player {
    /// A fresh generator for this player's next roll, seeded from `ids` and its roll count.
    fn dice(&mut self, ids: &[Id]) -> Rng {
        self.rolls += 1;
        Rng::new(seed_of(ids, self.rolls))
    }

    fn alive(ctx: &Ctx<'_>) -> bool {
        int_attr(ctx, "hp") > 0
    }

    fn in_arena(ctx: &Ctx<'_>) -> bool {
        ctx.space_kind(ctx.space()).unwrap_or(0) >= 1
    }

    /// Takes the movement from the client for [`HOLD_STILL`] (a server placement must reach
    /// its replica first); `resume_move` gives it back.
    fn hold_still(&mut self, ctx: &mut Ctx<'_>) {
        ctx.set_client_move(false);
        self.move_seq += 1;
        if let Err(e) = ctx.add_timer(HOLD_STILL, "resume_move", vec![Value::Int(self.move_seq)]) {
            log::warn!("{}: {e}", ctx.id());
        }
    }

    /// Shows `action` for [`ACTION_SHOWN`], then "idle" again.
    fn show_action(&mut self, ctx: &mut Ctx<'_>, action: &str) {
        set_action(ctx, action);
        self.action_seq += 1;
        if let Err(e) = ctx.add_timer(ACTION_SHOWN, "recover", vec![Value::Int(self.action_seq)]) {
            log::warn!("{}: {e}", ctx.id());
        }
    }

    /// Asks the `Arenas` service for the arena of `kind` (it answers `enter_arena`), retrying
    /// while the service is not registered yet.
    fn request_arena(ctx: &mut Ctx<'_>, kind: i64, attempt: i64) {
        let me = id_value(ctx.id());
        if ctx.service_ready("Arenas") && ctx.call_service_shard_index("Arenas", 0, "want", vec![Value::Int(kind), me])
        {
            return;
        }
        if attempt >= SERVICE_RETRIES {
            ctx.call_client("show_error", vec![Value::from("the arenas are not available; try again later")]);
            return;
        }
        let again = vec![Value::Int(kind), Value::Int(attempt + 1)];
        if let Err(e) = ctx.add_timer(SERVICE_RETRY, "retry_arena", again) {
            log::warn!("{}: {e}", ctx.id());
        }
    }

    /// Reports the score to the board (nothing to report at 0).
    fn report(ctx: &mut Ctx<'_>) {
        let score = int_attr(ctx, "score");
        let name = ctx.attrs_ref().get("name").cloned().unwrap_or(Value::Nil);
        if score > 0 && ctx.service_ready("Scores") {
            ctx.call_service_shard_index("Scores", 0, "report", vec![name, Value::Int(score)]);
        }
    }

    /// Server: `attach(account, account_game, user)`: the account wants to hand over its client.
    fn attach(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let (account, game, user) = (args.id(0)?, args.int(1)?, args.str(2)?.to_owned());
        if ctx.client().is_some() {
            ctx.call(account, "login_failed", vec![Value::from("already logged in elsewhere")]);
            return Ok(());
        }
        if game != i64::from(ctx.game_id()) {
            ctx.call(account, "login_failed", vec![Value::from("already logged in on another game")]);
            return Ok(());
        }
        if ctx.attrs_ref().get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
            ctx.attrs().set("name", user.as_str());
        }
        let me = ctx.id();
        ctx.call(account, "attached", vec![id_value(me)]);
        Ok(())
    }

    /// Own client: `go_arena(kind)` (1..=4): moves to the arena of `kind`, maybe on another
    /// game; answers `on_arena(kind, game, x, z)`.
    fn go_arena(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let kind = args.int(0)?;
        if !(1..=ARENA_KINDS).contains(&kind) {
            return Err(CallError::BadArguments(format!("arena kinds are 1..={ARENA_KINDS}")));
        }
        if !Self::alive(ctx) {
            return Err(failed("the dead wait for their respawn"));
        }
        if ctx.space_kind(ctx.space()) == Some(kind) {
            return Err(failed(format!("already in arena {kind}")));
        }
        Self::request_arena(ctx, kind, 0);
        Ok(())
    }

    /// Server (its timer): `retry_arena(kind, attempt)`.
    fn retry_arena(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        Self::request_arena(ctx, args.int(0)?, args.int(1)?);
        Ok(())
    }

    /// Server (the `Arenas` service): `enter_arena(space)`: enter it at a random spot (a
    /// migration if it lives on another game).
    fn enter_arena(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let space = args.id(0)?;
        if ctx.space() == space {
            return Ok(());
        }
        let at = random_spot(&mut self.dice(&[ctx.id()]));
        ctx.set_client_move(false);
        ctx.enter_space(space, Pos::at(at.x, 0.0, at.z)).map_err(failed)
    }

    /// Server (its timer): `resume_move(seq)`: the client moves the player again, unless it
    /// was placed or died since.
    fn resume_move(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        if args.int(0)? == self.move_seq && Self::alive(ctx) && Self::in_arena(ctx) {
            ctx.set_client_move(true);
        }
        Ok(())
    }

    /// Own client: `set_action(action)`: "idle" or "move", what other clients draw it doing.
    fn choose_action(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let action = args.str(0)?;
        if !matches!(action, "idle" | "move") {
            return Err(CallError::BadArguments("actions a client sets are \"idle\" and \"move\"".into()));
        }
        if Self::alive(ctx) {
            set_action(ctx, action);
        }
        Ok(())
    }

    /// Server (its timer): `recover(seq)`: a shown action is over.
    fn recover(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let current = ctx.attrs_ref().get("action").and_then(Value::as_str);
        if args.int(0)? == self.action_seq && matches!(current, Some("shoot" | "hit")) && Self::alive(ctx) {
            set_action(ctx, "idle");
        }
        Ok(())
    }

    /// Own client: `shoot(target)` at a player or monster it sees, alive and within
    /// [`SHOOT_RANGE`]. Hit or miss is a roll against a chance that falls with distance; a hit
    /// deals [`SHOT_DAMAGE`]. Every client that sees the shooter gets
    /// `on_shoot(shooter, target, hit, damage)`.
    fn shoot(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let target = args.id(0)?;
        let me = ctx.id();
        if !Self::alive(ctx) {
            return Err(failed("the dead do not shoot"));
        }
        let now = ctx.now();
        if self.last_shot.is_some_and(|t| now.saturating_duration_since(t) < SHOT_COOLDOWN) {
            return Err(failed(format!("too fast: one shot every {} ms", SHOT_COOLDOWN.as_millis())));
        }
        if target == me || !ctx.neighbours().contains(&target) {
            return Err(failed("no such target in view"));
        }
        let there = match ctx.entity(target) {
            Some(e) if matches!(e.type_name(), "Player" | "Monster") && hp_of(&e) > 0 => e.position().map(Vec3::from),
            Some(_) => return Err(failed("that is not a live target")),
            None => None,
        };
        let Some(there) = there else { return Err(failed("no such target in view")) };
        let distance = Vec3::from(ctx.position()).distance_xz(there);
        if distance > SHOOT_RANGE {
            return Err(failed(format!("out of range ({SHOOT_RANGE})")));
        }
        self.last_shot = Some(now);
        self.rolls += 1;
        let hit = shot_hits(me, target, self.rolls, distance);
        let damage = if hit { SHOT_DAMAGE } else { 0 };
        if hit {
            ctx.call(target, "damaged", vec![Value::Int(damage), id_value(me)]);
        }
        self.show_action(ctx, "shoot");
        ctx.call_all_clients("on_shoot", vec![id_value(me), id_value(target), Value::Bool(hit), Value::Int(damage)]);
        Ok(())
    }

    /// Server: `damaged(amount, attacker)`: loses hp ("hit"); at 0 it is "dead", its client
    /// stops moving it, the attacker (a player) scores, and it respawns after
    /// [`RESPAWN_AFTER`].
    fn damaged(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let Some((left, attacker)) = take_damage(ctx, &args)? else { return Ok(()) };
        if left > 0 {
            self.show_action(ctx, "hit");
            return Ok(());
        }
        set_action(ctx, "dead");
        // Any resume_move under way is void; respawn hands the movement back.
        ctx.set_client_move(false);
        self.move_seq += 1;
        credit(ctx, attacker, PLAYER_KILL_SCORE);
        ctx.add_timer(RESPAWN_AFTER, "respawn", vec![]).map_err(failed)?;
        Ok(())
    }

    /// Server (its timer): back to full hp at a random spot of the arena; the client gets
    /// `on_respawn(x, z)` and the movement back shortly after.
    fn respawn(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        if Self::alive(ctx) {
            return Ok(());
        }
        let hp_max = int_attr(ctx, "hp_max").max(1);
        ctx.attrs().set("hp", hp_max);
        set_action(ctx, "idle");
        let at = random_spot(&mut self.dice(&[ctx.id()]));
        ctx.set_position(at.x, 0.0, at.z);
        if Self::in_arena(ctx) {
            self.hold_still(ctx);
        }
        ctx.call_client("on_respawn", vec![Value::Float(at.x.into()), Value::Float(at.z.into())]);
        Ok(())
    }

    /// Server: `add_score(points)` for a kill; a level up every [`SCORE_PER_LEVEL`] points.
    fn add_score(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let points = args.int(0)?.clamp(0, MAX_DAMAGE);
        let old = int_attr(ctx, "score");
        let new = old.saturating_add(points);
        ctx.attrs().set("score", new);
        if new / SCORE_PER_LEVEL > old / SCORE_PER_LEVEL {
            let level = int_attr(ctx, "level");
            ctx.attrs().set("level", level + 1);
        }
        Self::report(ctx);
        Ok(())
    }

    /// Own client: `scores()`: the client gets `on_scores([[name, score], ...])`, best first
    /// (this player's own score reported first). Retries while the service is not up.
    fn scores(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        if ctx.service_ready("Scores") {
            Self::report(ctx);
            let me = id_value(ctx.id());
            ctx.call_service_shard_index("Scores", 0, "query", vec![me]);
            return Ok(());
        }
        let attempt = args.get(0).ok().and_then(Value::as_int).unwrap_or(0);
        if attempt >= SERVICE_RETRIES {
            ctx.call_client("show_error", vec![Value::from("the score board is not available; try again later")]);
            return Ok(());
        }
        ctx.add_timer(SERVICE_RETRY, "scores", vec![Value::Int(attempt + 1)]).map_err(failed)?;
        Ok(())
    }

    /// Server (the `Scores` service): `on_scores(list)`, passed on to the client.
    fn on_scores(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        ctx.call_client("on_scores", vec![args.get(0)?.clone()]);
        Ok(())
    }

    /// Own client: `locate()`: the client gets `on_locate(x, y, z, arena_kind, game)` as the
    /// server has it (the arena kind is 0 outside arenas).
    fn locate(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        let p = ctx.position();
        let kind = ctx.space_kind(ctx.space()).unwrap_or(0);
        let game = i64::from(ctx.game_id());
        let answer = vec![
            Value::Float(p.x.into()),
            Value::Float(p.y.into()),
            Value::Float(p.z.into()),
            Value::Int(kind),
            Value::Int(game),
        ];
        ctx.call_client("on_locate", answer);
        Ok(())
    }

    /// Test aid, not gameplay (the browser test and `tests/arena.rs` use it): own client,
    /// `spawn_test_monster(dx, dz)` puts a monster with full hp and its AI frozen (it never
    /// moves or bites) at offset (dx, dz) from the player in its arena, and answers
    /// `on_test_monster(monster)`.
    fn spawn_test_monster(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let (dx, dz) = (float_arg(&args, 0)?, float_arg(&args, 1)?);
        if dx.abs() > TEST_MONSTER_REACH || dz.abs() > TEST_MONSTER_REACH {
            return Err(CallError::BadArguments(format!("offsets are within ±{TEST_MONSTER_REACH}")));
        }
        if !Self::in_arena(ctx) {
            return Err(failed("enter an arena first"));
        }
        let (space, p) = (ctx.space(), ctx.position());
        let monster = ctx.create_entity_locally("Monster").map_err(failed)?;
        let (x, z) = (f64::from(p.x + dx), f64::from(p.z + dz));
        ctx.call(monster, "place", vec![id_value(space), Value::Float(x), Value::Float(z), Value::Bool(true)]);
        ctx.call_client("on_test_monster", vec![id_value(monster)]);
        Ok(())
    }
}

/// Registers `Player`.
pub(crate) fn register(reg: &mut Registry) {
    let saved = AttrFlags::ALL_CLIENTS | AttrFlags::PERSISTENT;
    reg.entity("Player", Player::default)
        .persistent()
        .aoi(VIEW_RADIUS)
        .attr("name", saved)
        .attr("level", saved)
        .attr("hp", AttrFlags::ALL_CLIENTS)
        .attr("hp_max", AttrFlags::ALL_CLIENTS)
        .attr("action", AttrFlags::ALL_CLIENTS)
        .attr("score", AttrFlags::ALL_CLIENTS)
        .method("attach", Expose::Server, Player::attach)
        .method("go_arena", Expose::OwnClient, Player::go_arena)
        .method("retry_arena", Expose::Server, Player::retry_arena)
        .method("enter_arena", Expose::Server, Player::enter_arena)
        .method("resume_move", Expose::Server, Player::resume_move)
        .method("set_action", Expose::OwnClient, Player::choose_action)
        .method("recover", Expose::Server, Player::recover)
        .method("shoot", Expose::OwnClient, Player::shoot)
        .method("damaged", Expose::Server, Player::damaged)
        .method("respawn", Expose::Server, Player::respawn)
        .method("add_score", Expose::Server, Player::add_score)
        .method("scores", Expose::OwnClient, Player::scores)
        .method("on_scores", Expose::Server, Player::on_scores)
        .method("locate", Expose::OwnClient, Player::locate)
        .method("spawn_test_monster", Expose::OwnClient, Player::spawn_test_monster);
}
