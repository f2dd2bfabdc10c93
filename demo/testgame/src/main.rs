//! The test game: engine features exercised by strict bots and integration tests. So far:
//! every game opens an `Arena` space at start and publishes its id in KVDB (`arena$<game>`);
//! a `Player` (the boot entity) answers numbered `seq` calls with the game that ran them and
//! `hop`s to the arena of another game (migration), so tests can check that calls sent around
//! moves arrive exactly once, in order. Each game also keeps a `Beacon` with a repeating timer.
//!
//! `OXWORLD_TESTGAME_WITHOUT=Beacon` leaves the `Beacon` type out of the registry: a binary
//! whose entity types changed, for testing that a restore refuses it and keeps the freeze.

use oxworld_core::{Args, AttrFlags, CallError, Ctx, Entity, Expose, Id, Pos, Registry, Value};

fn failed(e: impl std::fmt::Display) -> CallError {
    CallError::Failed(e.to_string())
}

/// The space type. The nil space of each game creates the game's arena at start.
#[derive(Default)]
struct Arena;

impl Entity for Arena {
    fn on_created(&mut self, ctx: &mut Ctx<'_>) {
        if ctx.id() != ctx.nil_space() {
            return;
        }
        let game = ctx.game_id();
        if ctx.create_entity_locally("Beacon").is_err() {
            log::warn!("game{game}: no Beacon type in this binary");
        }
        let arena = ctx.create_space_locally(i64::from(game));
        if let Err(e) = ctx.kvdb_put(&format!("arena${game}"), &arena.to_string(), None) {
            log::error!("game{game}: cannot publish the arena: {e}");
        }
    }
}

/// A player: AOI radius 50, an attribute every client around sees.
#[derive(Default)]
struct Player;

impl Entity for Player {
    fn on_created(&mut self, ctx: &mut Ctx<'_>) {
        ctx.attrs().set("hops", 0i64);
    }

    fn on_client_disconnected(&mut self, ctx: &mut Ctx<'_>) {
        ctx.destroy();
    }

    fn on_migrate_in(&mut self, ctx: &mut Ctx<'_>) {
        let n = ctx.attrs().int("hops");
        ctx.attrs().set("hops", n + 1);
    }
}

impl Player {
    /// Own client: `seq(n)` answers `seq_reply(n, game)`.
    fn seq(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let n = args.int(0)?;
        ctx.call_client("seq_reply", vec![Value::Int(n), Value::Int(i64::from(ctx.game_id()))]);
        Ok(())
    }

    /// Own client: move to the arena of the next other online game (or of this one).
    fn hop(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        let me = ctx.game_id();
        let games = ctx.online_games();
        let to =
            games.iter().copied().find(|&g| g > me).or_else(|| games.iter().copied().find(|&g| g != me)).unwrap_or(me);
        ctx.kvdb_get(&format!("arena${to}"), "go_arena").map_err(failed)
    }

    /// KVDB reply: (key, arena id or nil, error or nil).
    fn go_arena(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        if let Some(e) = args.get(2)?.as_str() {
            return Err(CallError::Failed(format!("arena lookup: {e}")));
        }
        let space = args.get(1)?.as_str().and_then(Id::parse_hex).ok_or_else(|| failed("no such arena"))?;
        // Spread players over a 1,000 x 1,000 arena (radius 50: a few neighbours each), at a
        // spot derived from the id and the hop count so tests are repeatable.
        let mut seed = ctx.id().0.to_vec();
        seed.extend_from_slice(&ctx.attrs().int("hops").to_le_bytes());
        let h = oxworld_core::fnv1a32(&seed);
        let (x, z) = ((h % 1000) as f32, ((h >> 10) % 1000) as f32);
        ctx.enter_space(space, Pos::at(x, 0.0, z)).map_err(failed)
    }
}

/// One per game: pulses every 5 s (a timer that must survive hot swaps).
#[derive(Default)]
struct Beacon;

impl Entity for Beacon {
    fn on_created(&mut self, ctx: &mut Ctx<'_>) {
        if let Err(e) = ctx.add_repeat_timer(std::time::Duration::from_secs(5), "pulse", vec![]) {
            log::error!("beacon: {e}");
        }
    }
}

impl Beacon {
    fn pulse(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        let n = ctx.attrs().int("pulses");
        ctx.attrs().set("pulses", n + 1);
        Ok(())
    }
}

fn registry() -> Registry {
    let without = std::env::var("OXWORLD_TESTGAME_WITHOUT").unwrap_or_default();
    let mut reg = Registry::new();
    if !without.split(',').any(|t| t == "Beacon") {
        reg.entity("Beacon", Beacon::default).method("pulse", Expose::Server, Beacon::pulse);
    }
    reg.space("Arena", Arena::default);
    reg.entity("Player", Player::default)
        .aoi(50.0)
        .attr("hops", AttrFlags::ALL_CLIENTS)
        .method("seq", Expose::OwnClient, Player::seq)
        .method("hop", Expose::OwnClient, Player::hop)
        .method("go_arena", Expose::Server, Player::go_arena);
    reg.boot("Player");
    reg
}

fn main() -> std::process::ExitCode {
    oxworld_core::proc::exit_code(oxworld_core::game::run(registry()))
}
