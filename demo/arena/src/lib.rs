//! The arena demo (GoWorld's unity_demo in our idiom): a top-down arena shooter that a browser
//! page draws on a canvas and a stress scenario plays with bots.
//!
//! - `Account` (boot): `register` and `login` as in the chatroom (Argon2id off the game loop);
//!   login hands the client to the user's persistent `Player`.
//! - `Player` (persistent, AOI [`rules::VIEW_RADIUS`]): moved by its client (`ClientMsg::Move`)
//!   while alive; shoots what it sees, takes damage, dies, respawns, scores.
//! - `Monster` (AOI as players): a 100 ms AI that walks to the nearest live player it sees and
//!   bites it; dies at 0 hp, crediting its killer.
//! - `ArenaSpace` (the space type): arenas of kinds `1..=`[`rules::ARENA_KINDS`] keep twice as
//!   many monsters as players.
//! - services `Arenas` (one arena per kind, made on the least-loaded game: entering one on
//!   another game migrates the player) and `Scores` (the top ten).
//!
//! The game is a library ([`registry`], and the [`rules`] its bots share) and a binary
//! (`src/main.rs`). README.md lists every method a client calls.

use oxworld_core::{Args, CallError, Ctx, EntityView, Id, Registry, Value};

mod account;
mod monster;
// The chatroom's password storage (Argon2id, PHC strings, reused working memory), shared
// rather than copied: that crate keeps the module private.
#[path = "../../chatroom/src/password.rs"]
mod password;
mod player;
pub mod rules;
mod world;

/// The most one `damaged` or `add_score` call may carry (a bound on what a caller can do).
const MAX_DAMAGE: i64 = 1000;

/// Longest user name accepted (bytes).
const MAX_NAME: usize = 32;

fn failed(e: impl std::fmt::Display) -> CallError {
    CallError::Failed(e.to_string())
}

/// User names: 1..=[`MAX_NAME`] characters of `[A-Za-z0-9_-]`.
fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Root attribute `key` of the running entity as an integer (0 if absent).
fn int_attr(ctx: &Ctx<'_>, key: &str) -> i64 {
    ctx.attrs_ref().get(key).and_then(Value::as_int).unwrap_or(0)
}

/// Hit points of another entity of this game (0 if it has none).
fn hp_of(e: &EntityView<'_>) -> i64 {
    e.attrs().get("hp").and_then(Value::as_int).unwrap_or(0)
}

/// Sets the running entity's `action` attribute, only if it changes (each change is a message
/// to every client that sees the entity).
fn set_action(ctx: &mut Ctx<'_>, action: &str) {
    if ctx.attrs_ref().get("action").and_then(Value::as_str) != Some(action) {
        ctx.attrs().set("action", action);
    }
}

/// The shared half of `damaged(amount, attacker)` (players and monsters): lowers the running
/// entity's `hp` by `amount` (clamped to 0..=[`MAX_DAMAGE`]); `None` if it was already
/// dead, else the hp left and the attacker.
fn take_damage(ctx: &mut Ctx<'_>, args: &Args) -> Result<Option<(i64, Id)>, CallError> {
    let (amount, attacker) = (args.int(0)?.clamp(0, MAX_DAMAGE), args.id(1)?);
    let hp = int_attr(ctx, "hp");
    if hp <= 0 {
        return Ok(None);
    }
    let left = (hp - amount).max(0);
    ctx.attrs().set("hp", left);
    Ok(Some((left, attacker)))
}

/// Argument `i` as a finite number (integers widen).
fn float_arg(args: &Args, i: usize) -> Result<f32, CallError> {
    let v = args.get(i)?;
    match v.as_float() {
        Some(f) if f.is_finite() => Ok(f as f32),
        _ => Err(CallError::BadArguments(format!("argument {i}: expected a finite number, got {}", v.kind()))),
    }
}

/// Gives `points` to `killer` if it is a player of this game other than the running entity
/// (a killer that left the game meanwhile goes without).
fn credit(ctx: &mut Ctx<'_>, killer: Id, points: i64) {
    let is_player = killer != ctx.id() && ctx.entity(killer).is_some_and(|e| e.type_name() == "Player");
    if is_player {
        ctx.call(killer, "add_score", vec![Value::Int(points)]);
    }
}

/// The arena's entity types, with `Account` as the boot type.
pub fn registry() -> Registry {
    let mut reg = Registry::new();
    world::register(&mut reg);
    account::register(&mut reg);
    player::register(&mut reg);
    monster::register(&mut reg);
    reg.boot("Account");
    reg
}
