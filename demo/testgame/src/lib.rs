//! The test game (GoWorld's test_game in our idiom): engine features exercised by strict bots
//! (`oxworld-stress --scenario testgame`) and integration tests.
//!
//! - `Account` (boot): `login(user, "123456")` finds or makes the user's avatar id in KVDB,
//!   loads the persistent `Avatar` on this game and hands it the client. Before login it also
//!   answers numbered `seq` calls and `hop`s between the games' arenas (migration tests).
//! - `Avatar` (persistent, AOI 100): attributes of every flag; client actions: enter a space by
//!   kind (through the sharded `Spaces` service), enter a random game's nil space (migration),
//!   say in the world or the profession channel (filtered client calls), random list edits
//!   and a nested attribute round trip (replica checks), an AOI tester, mail through KVDB,
//!   the `Online` service's count, a call to every client around (`test_call_all`), and a
//!   persistent `counter` the bots write (`bump`) and check after a crash.
//! - `Arena` (the space type): each game's nil space opens an arena (kind = game id, published
//!   in KVDB as `arena$<game>`) and keeps a `Beacon` with a repeating timer; spaces of kind
//!   101.. made by `Spaces` each get 10 `Monster`s.
//!
//! The game is a library ([`registry`], with [`register_game`] and [`register_beacon`] for
//! builds that change a type) and a binary (`src/main.rs`). Tests that need a binary whose
//! types changed, or a slow restart, build one in `demo/variants`; nothing here behaves
//! differently under test.

use std::collections::BTreeMap;

use oxworld_core::{Args, AttrFlags, CallError, Ctx, Entity, Expose, Id, Pos, Registry, Value, id_value};

mod account;
mod services;

use account::Account;
use services::{Online, Spaces};

/// The password every test user has (as GoWorld's test_game).
const PASSWORD: &str = "123456";
/// Monsters in each space made by the `Spaces` service.
const MONSTERS: usize = 10;
/// Kind of the crowd space (`join_crowd`): no monsters.
const CROWD_KIND: i64 = 1000;

fn failed(e: impl std::fmt::Display) -> CallError {
    CallError::Failed(e.to_string())
}

/// A repeatable spot in a 1,000 x 1,000 space for `id` (and `salt`).
fn spot(id: Id, salt: i64) -> Pos {
    let mut seed = id.0.to_vec();
    seed.extend_from_slice(&salt.to_le_bytes());
    let h = oxworld_core::fnv1a32(&seed);
    Pos::at((h % 1000) as f32, 0.0, ((h >> 10) % 1000) as f32)
}

/// The space type. The nil space of each game opens the game's arena at start; spaces of kind
/// 101 and up (made for avatars) get monsters.
#[derive(Default)]
struct Arena;

impl Entity for Arena {
    /// Nil spaces: every process of the config is up (what GoWorld games start their world
    /// in); recorded for `Account.ready`, which reads it locally.
    fn on_game_ready(&mut self, ctx: &mut Ctx<'_>) {
        log::info!("game{}: deployment ready", ctx.game_id());
        ctx.attrs().set("ready", true);
    }

    fn on_created(&mut self, ctx: &mut Ctx<'_>) {
        let game = ctx.game_id();
        if ctx.id() == ctx.nil_space() {
            if ctx.create_entity_locally("Beacon").is_err() {
                log::warn!("game{game}: no Beacon type in this binary");
            }
            let arena = ctx.create_space_locally(i64::from(game));
            if let Err(e) = ctx.kvdb_put(&format!("arena${game}"), &arena.to_string(), None) {
                log::error!("game{game}: cannot publish the arena: {e}");
            }
            return;
        }
        let me = ctx.id();
        let kind = ctx.space_kind(me).unwrap_or(0);
        if kind > 100 && kind != CROWD_KIND {
            for _ in 0..MONSTERS {
                match ctx.create_entity_locally("Monster") {
                    Ok(m) => ctx.call(m, "place", vec![id_value(me)]),
                    Err(e) => log::error!("monster: {e}"),
                }
            }
        }
    }
}

/// One per game: pulses every 5 s (a timer that must survive hot swaps).
#[derive(Default)]
pub struct Beacon;

impl Entity for Beacon {
    fn on_created(&mut self, ctx: &mut Ctx<'_>) {
        if let Err(e) = ctx.add_repeat_timer(std::time::Duration::from_secs(5), "pulse", vec![]) {
            log::error!("beacon: {e}");
        }
    }
}

impl Beacon {
    /// Server: one pulse of its repeating timer.
    pub fn pulse(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        let n = ctx.attrs().int("pulses");
        ctx.attrs().set("pulses", n + 1);
        Ok(())
    }
}

/// Stands in a space; seen by avatars nearby.
#[derive(Default)]
struct Monster;

impl Entity for Monster {
    fn on_created(&mut self, ctx: &mut Ctx<'_>) {
        ctx.attrs().set("name", "monster");
    }
}

impl Monster {
    fn place(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let space = args.id(0)?;
        let pos = spot(ctx.id(), 0);
        ctx.enter_space(space, pos).map_err(failed)
    }
}

/// Created for `test_aoi` next to an avatar, then destroyed.
#[derive(Default)]
struct AoiTester;

impl Entity for AoiTester {}

impl AoiTester {
    fn place(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let (space, x, z) =
            (args.id(0)?, args.get(1)?.as_float().unwrap_or(0.0), args.get(2)?.as_float().unwrap_or(0.0));
        ctx.enter_space(space, Pos::at(x as f32 + 1.0, 0.0, z as f32)).map_err(failed)
    }

    fn bye(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        ctx.destroy();
        Ok(())
    }
}

/// A user's persistent avatar.
#[derive(Default)]
struct Avatar {
    /// The space of a kind it is on its way to (from `Spaces`), until it arrives or fails.
    entering: Option<(i64, Id)>,
    /// The kind of space it asked `Spaces` for, until it enters one.
    want_kind: Option<i64>,
    /// It asked `Online` for the count and has not had the answer.
    online_pending: bool,
}

/// A service request whose answer has not come this long after is asked again: a call in
/// flight to a game that crashed is gone with it (the cluster does not resend it).
const SERVICE_RETRY: std::time::Duration = std::time::Duration::from_millis(1500);

impl Entity for Avatar {
    fn on_migrate_failed(&mut self, ctx: &mut Ctx<'_>, reason: &str) {
        // The space `Spaces` gave may be gone with a lost game: ask for another.
        if let Some((kind, space)) = self.entering.take() {
            log::info!("{}: cannot enter {space} of kind {kind} ({reason}); asking Spaces again", ctx.id());
            let me = id_value(ctx.id());
            ctx.call_service_shard_key(
                "Spaces",
                &kind.to_string(),
                "replace",
                vec![Value::Int(kind), id_value(space), me],
            );
            return;
        }
        // Another game's nil space, that game gone meanwhile: this game's nil space instead.
        let nil = ctx.nil_space();
        log::info!("{}: cannot move ({reason}); entering this game's nil space", ctx.id());
        if ctx.space() == nil {
            ctx.call_client("entered", vec![Value::Int(0), Value::Int(i64::from(ctx.game_id()))]);
        } else if let Err(e) = ctx.enter_space(nil, Pos::default()) {
            log::warn!("{}: cannot enter this game's nil space: {e}", ctx.id());
        }
    }

    fn on_created(&mut self, ctx: &mut Ctx<'_>) {
        let id = ctx.id();
        let mut a = ctx.attrs();
        a.set_default("level", 1i64);
        a.set_default("prof", 1 + i64::from(id.0[15] % 4));
        a.set_default("exp", 0i64);
        a.set_default("last_mail", 0i64);
        a.set("test_list", Value::List(vec![]));
    }

    fn on_client_connected(&mut self, ctx: &mut Ctx<'_>) {
        let prof = ctx.attrs().int("prof").to_string();
        ctx.set_client_filter_prop("prof", &prof);
        ctx.set_client_filter_prop("online", "1");
        ctx.post("check_in", vec![Value::Int(0)]);
        ctx.call_client("on_login", vec![Value::Bool(true)]);
    }

    fn on_client_disconnected(&mut self, ctx: &mut Ctx<'_>) {
        ctx.destroy();
    }

    fn on_destroy(&mut self, ctx: &mut Ctx<'_>) {
        let key = ctx.id().to_string();
        let me = id_value(ctx.id());
        ctx.call_service_shard_key("Online", &key, "check_out", vec![me]);
        if let Err(e) = oxworld_core::pubsub::unsubscribe_all(ctx) {
            log::warn!("{}: pubsub: {e}", ctx.id());
        }
    }

    fn on_leave_aoi(&mut self, ctx: &mut Ctx<'_>, other: Id) {
        // A client that can no longer see this avatar may not get to answer a call-all.
        Self::call_all_settle(ctx, other);
    }

    fn on_enter_space(&mut self, ctx: &mut Ctx<'_>) {
        self.entering = None;
        self.want_kind = None;
        let kind = ctx.space_kind(ctx.space()).unwrap_or(0);
        ctx.call_client("entered", vec![Value::Int(kind), Value::Int(i64::from(ctx.game_id()))]);
    }
}

impl Avatar {
    /// Server: the account `(id, game, user)` wants to hand over its client.
    fn attach(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let (account, game, user) = (args.id(0)?, args.int(1)?, args.str(2)?.to_owned());
        if ctx.client().is_some() || game != i64::from(ctx.game_id()) {
            ctx.call(account, "login_failed", vec![]);
            return Ok(());
        }
        if ctx.attrs().str("name").is_empty() {
            ctx.attrs().set("name", user.as_str());
        }
        let me = ctx.id();
        ctx.call(account, "attached", vec![id_value(me)]);
        Ok(())
    }

    /// Own client: enter a space of `kind` (101..), found or made by the `Spaces` service.
    fn enter_space_kind(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let kind = args.int(0)?;
        if !(101..=CROWD_KIND).contains(&kind) {
            return Err(CallError::BadArguments(format!("kinds are 101..={CROWD_KIND}")));
        }
        if ctx.space_kind(ctx.space()) == Some(kind) {
            // Already there (a client that resumed its session does not know where it is).
            ctx.call_client("entered", vec![Value::Int(kind), Value::Int(i64::from(ctx.game_id()))]);
            return Ok(());
        }
        let me = id_value(ctx.id());
        let attempt = args.get(1).ok().and_then(Value::as_int).unwrap_or(0);
        if ctx.call_service_shard_key("Spaces", &kind.to_string(), "want", vec![Value::Int(kind), me]) {
            self.want_kind = Some(kind);
            let check = vec![Value::from("space"), Value::Int(kind), Value::Int(attempt)];
            ctx.add_timer(SERVICE_RETRY, "service_check", check).map_err(failed)?;
        } else {
            // Right after the cluster starts the service may not be registered yet: retry
            // every 200 ms for up to 10 s.
            if attempt >= 50 {
                return Err(failed("the Spaces service is not ready"));
            }
            let again = vec![Value::Int(kind), Value::Int(attempt + 1)];
            ctx.add_timer(std::time::Duration::from_millis(200), "enter_space_kind", again).map_err(failed)?;
        }
        Ok(())
    }

    /// Own client: join the crowd (the one space of kind 1000) and move by client messages
    /// from now on (`ClientMsg::Move`); answers `entered(1000, game)`.
    fn join_crowd(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        ctx.set_client_move(true);
        self.enter_space_kind(ctx, Args(vec![Value::Int(CROWD_KIND)]))
    }

    /// Server: the `Spaces` service's answer.
    fn do_enter_space(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let space = args.id(0)?;
        self.entering = args.get(1).ok().and_then(Value::as_int).map(|kind| (kind, space));
        let pos = spot(ctx.id(), ctx.attrs().int("exp"));
        ctx.enter_space(space, pos).map_err(failed)
    }

    /// Own client: enter the nil space of a random online game (a migration if it is another).
    fn enter_random_nil_space(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let games = ctx.online_games();
        let pick = usize::try_from(args.int(0)?.unsigned_abs()).unwrap_or(0) % games.len().max(1);
        let game = games.get(pick).copied().unwrap_or(ctx.game_id());
        ctx.enter_space(oxworld_core::nil_space_id(game), Pos::default()).map_err(failed)
    }

    /// Own client: `say(channel, text)`: `world` reaches every client, `prof` those of this
    /// avatar's profession; everybody gets `on_say(name, channel, text)`.
    fn say(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let (channel, text) = (args.str(0)?.to_owned(), args.str(1)?.to_owned());
        let name = ctx.attrs().str("name").to_owned();
        let msg = vec![Value::from(name.as_str()), Value::from(channel.as_str()), Value::from(text.as_str())];
        match channel.as_str() {
            "world" => ctx.call_all_clients_everywhere("on_say", msg),
            "prof" => {
                let prof = ctx.attrs().int("prof").to_string();
                ctx.call_filtered_clients("prof", "=", &prof, "on_say", msg);
            }
            other => return Err(CallError::BadArguments(format!("no channel {other:?}"))),
        }
        Ok(())
    }

    /// Own client: a list edit chosen by `seed` (pop, set or append), then
    /// `on_test_list(list)`: the client's replica must equal it.
    fn test_list(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let seed = args.int(0)?;
        {
            let mut a = ctx.attrs();
            let mut l = a.list_at("test_list").map_err(failed)?;
            let n = l.len();
            match seed.rem_euclid(3) {
                0 if n > 0 => {
                    l.pop();
                }
                1 if n > 0 => l.set(usize::try_from(seed.unsigned_abs()).unwrap_or(0) % n, seed).map_err(failed)?,
                _ if n < 20 => l.append(seed),
                _ => {
                    l.pop();
                }
            }
        }
        let list = ctx.attrs().get("test_list").cloned().unwrap_or(Value::Nil);
        ctx.call_client("on_test_list", vec![list]);
        Ok(())
    }

    /// Own client: builds `complex.key1.key2 = [true, [{finalkey: "iamhere"}]]`, tells the
    /// client (`on_complex_set`), clears `complex`, tells it again (`on_complex_clear`).
    fn test_complex(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        {
            let mut a = ctx.attrs();
            let mut c = a.map_at("complex").map_err(failed)?;
            let mut k1 = c.map_at("key1").map_err(failed)?;
            let mut k2 = k1.list_at("key2").map_err(failed)?;
            k2.append(true);
            k2.append(Value::List(vec![]));
            let mut inner = k2.list_at(1).map_err(failed)?;
            inner.append(Value::Map(BTreeMap::new()));
            inner.map_at(0).map_err(failed)?.set("finalkey", "iamhere");
        }
        ctx.call_client("on_complex_set", vec![]);
        ctx.attrs().map_at("complex").map_err(failed)?.clear();
        ctx.call_client("on_complex_clear", vec![]);
        Ok(())
    }

    /// Own client: an `AoiTester` appears next to the avatar; once it has entered the space
    /// the client gets `on_test_aoi(tester)` (it must have been told about the tester), then
    /// the tester goes away.
    fn test_aoi(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        let space = ctx.space();
        if space == ctx.nil_space() {
            return Err(failed("the nil space has no AOI"));
        }
        let pos = ctx.position();
        let tester = ctx.create_entity_locally("AoiTester").map_err(failed)?;
        let args = vec![id_value(space), Value::Float(f64::from(pos.x)), Value::Float(f64::from(pos.z))];
        ctx.call(tester, "place", args);
        // A timer due now fires after this turn's local work (the tester's create and space
        // entry), so the client hears of the tester first.
        ctx.add_timer(std::time::Duration::ZERO, "aoi_check", vec![id_value(tester)]).map_err(failed)?;
        Ok(())
    }

    /// Own client: turns towards the nearest monster of its space and tells the client
    /// `on_nearest(monster, distance, yaw, name)`: local access (the monster's attributes) and
    /// geometry, no call (what an arena's monsters do to pick a player).
    fn nearest_monster(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        let (monster, distance) =
            ctx.nearest_in_space_of_type("Monster").ok_or_else(|| failed("no monster in this space"))?;
        ctx.face_to_entity(monster);
        let name = ctx.entity(monster).and_then(|m| m.attrs().get("name").cloned()).unwrap_or(Value::Nil);
        let yaw = f64::from(ctx.position().yaw);
        ctx.call_client(
            "on_nearest",
            vec![id_value(monster), Value::Float(f64::from(distance)), Value::Float(yaw), name],
        );
        Ok(())
    }

    /// Own client: `subscribe(subject)` to the engine's publish/subscribe service (`chat.*`
    /// is a wildcard).
    fn subscribe(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        oxworld_core::pubsub::subscribe(ctx, args.str(0)?).map_err(failed)
    }

    /// Own client: `publish(subject, content)`; every subscriber's client gets
    /// `on_publish(subject, content)`.
    fn publish(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let subject = args.str(0)?.to_owned();
        oxworld_core::pubsub::publish(ctx, &subject, args.get(1)?.clone()).map_err(failed)
    }

    /// Server (the PubSub service): a publish this avatar subscribed to.
    fn on_publish(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        ctx.call_client("on_publish", args.into_vec());
        Ok(())
    }

    fn aoi_check(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let tester = args.id(0)?;
        ctx.call_client("on_test_aoi", vec![id_value(tester)]);
        ctx.call(tester, "bye", vec![]);
        Ok(())
    }

    /// Own client: `mail(text)` stores a mail to this avatar in KVDB, then reads its mails
    /// back (`on_mails([text, ...])`).
    fn mail(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let text = args.str(0)?.to_owned();
        let n = ctx.attrs().int("last_mail") + 1;
        ctx.attrs().set("last_mail", n);
        let prefix = format!("mail${}$", ctx.id());
        ctx.kvdb_put(&format!("{prefix}{n:010}"), &text, None).map_err(failed)?;
        ctx.kvdb_get_range(&prefix, &format!("{prefix}~"), "on_mails").map_err(failed)
    }

    /// KVDB reply: ([[key, text], ...], error or nil).
    fn on_mails(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        if let Some(e) = args.get(1)?.as_str() {
            return Err(failed(format!("mail: {e}")));
        }
        let texts: Vec<Value> = match args.get(0)? {
            Value::List(kvs) => kvs
                .iter()
                .filter_map(|kv| match kv {
                    Value::List(p) => p.get(1).cloned(),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        ctx.call_client("on_mails", vec![Value::List(texts)]);
        Ok(())
    }

    /// Server: checks in to this avatar's `Online` shard (retrying while the service is not
    /// registered yet).
    fn check_in(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let key = ctx.id().to_string();
        let me = id_value(ctx.id());
        if ctx.attrs().get("checked_in") == Some(&Value::Bool(true)) {
            return Ok(());
        }
        if ctx.call_service_shard_key("Online", &key, "check_in", vec![me]) {
            // A server-only attribute: travels with the avatar, never reaches a client.
            ctx.attrs().set("checked_in", true);
        } else {
            let attempt = args.int(0)?;
            if attempt >= 50 {
                return Err(failed("the Online service is not ready"));
            }
            ctx.add_timer(std::time::Duration::from_millis(200), "check_in", vec![Value::Int(attempt + 1)])
                .map_err(failed)?;
        }
        Ok(())
    }

    /// Own client: calls `call_all_plz_echo(me)` on its own client and on every client that
    /// sees it; each answers `call_all_echo(its entity)`; when every one has answered or left
    /// this avatar's area of interest (its answer may then be refused by the gate: it no longer
    /// knows this avatar), `on_test_call_all(n)`. Anything still missing after 3 s gives
    /// `on_test_call_all(-missing, n)`.
    fn test_call_all(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        let me = id_value(ctx.id());
        let waiting: Vec<Value> = ctx.clients_watching().into_iter().map(id_value).collect();
        let n = ctx.call_all_clients("call_all_plz_echo", vec![me]);
        let round = ctx.attrs().int("call_all_round") + 1;
        ctx.attrs().set("call_all_round", round);
        ctx.attrs().set("call_all_wait", Value::List(waiting));
        ctx.attrs().set("call_all_n", i64::try_from(n).unwrap_or(i64::MAX));
        ctx.add_timer(std::time::Duration::from_secs(3), "call_all_give_up", vec![Value::Int(round)])
            .map_err(failed)?;
        Ok(())
    }

    /// Stops waiting for `who`'s answer; reports when nobody is left.
    fn call_all_settle(ctx: &mut Ctx<'_>, who: Id) {
        let Some(Value::List(wait)) = ctx.attrs().get("call_all_wait").cloned() else { return };
        let before = wait.len();
        let who = id_value(who);
        let left: Vec<Value> = wait.into_iter().filter(|w| *w != who).collect();
        if left.len() == before {
            return;
        }
        let done = left.is_empty();
        ctx.attrs().set("call_all_wait", Value::List(left));
        if done {
            let n = ctx.attrs().int("call_all_n");
            ctx.call_client("on_test_call_all", vec![Value::Int(n)]);
        }
    }

    /// Any client that was shown this avatar: the answer to `call_all_plz_echo`, naming the
    /// answering client's entity.
    fn call_all_echo(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let who = args.id(0)?;
        Self::call_all_settle(ctx, who);
        Ok(())
    }

    fn call_all_give_up(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        if args.int(0)? != ctx.attrs().int("call_all_round") {
            return Ok(());
        }
        let Some(Value::List(wait)) = ctx.attrs().get("call_all_wait").cloned() else { return Ok(()) };
        if !wait.is_empty() {
            let missing = i64::try_from(wait.len()).unwrap_or(i64::MAX);
            ctx.attrs().set("call_all_wait", Value::List(vec![]));
            let n = ctx.attrs().int("call_all_n");
            ctx.call_client("on_test_call_all", vec![Value::Int(-missing), Value::Int(n)]);
        }
        Ok(())
    }

    /// Own client: `bump(n)` sets the persistent `counter` (the client's own copy shows it) to
    /// `n` and answers `on_bump(n)`: the strict bots' check that a crash loses no value older
    /// than the save interval.
    fn bump(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let n = args.int(0)?;
        ctx.attrs().set("counter", n);
        ctx.call_client("on_bump", vec![Value::Int(n)]);
        Ok(())
    }

    /// Own client: asks this avatar's `Online` shard how many avatars it holds.
    fn online(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let key = ctx.id().to_string();
        let me = id_value(ctx.id());
        // Checked in first if the retry timer has not done it yet (same shard: in order).
        self.check_in(ctx, Args(vec![Value::Int(0)]))?;
        let attempt = args.get(0).ok().and_then(Value::as_int).unwrap_or(0);
        if ctx.call_service_shard_key("Online", &key, "count", vec![me]) {
            self.online_pending = true;
            let check = vec![Value::from("online"), Value::Int(0), Value::Int(attempt)];
            ctx.add_timer(SERVICE_RETRY, "service_check", check).map_err(failed)?;
        } else {
            if attempt >= 50 {
                return Err(failed("the Online service is not ready"));
            }
            ctx.add_timer(std::time::Duration::from_millis(200), "online", vec![Value::Int(attempt + 1)])
                .map_err(failed)?;
        }
        Ok(())
    }

    /// Timer: `service_check(what, kind, attempt)`: the request of `attempt` is still
    /// unanswered (lost with a crashed game): asked again, up to 50 times.
    fn service_check(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let (what, kind, attempt) = (args.str(0)?.to_owned(), args.int(1)?, args.int(2)?);
        if attempt >= 50 {
            return Ok(());
        }
        match what.as_str() {
            "space" if self.want_kind == Some(kind) => {
                log::info!("{}: no space of kind {kind} yet; asking Spaces again", ctx.id());
                self.enter_space_kind(ctx, Args(vec![Value::Int(kind), Value::Int(attempt + 1)]))
            }
            "online" if self.online_pending => {
                log::info!("{}: no online count yet; asking Online again", ctx.id());
                self.online(ctx, Args(vec![Value::Int(attempt + 1)]))
            }
            _ => Ok(()),
        }
    }

    fn on_online(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        self.online_pending = false;
        ctx.call_client("on_online", vec![Value::Int(args.int(0)?)]);
        Ok(())
    }
}

/// The test game's entity types.
pub fn registry() -> Registry {
    let mut reg = Registry::new();
    register_beacon(&mut reg);
    register_game(&mut reg);
    reg
}

/// Registers `Beacon` (each game's nil space makes one; its timer must survive hot swaps).
pub fn register_beacon(reg: &mut Registry) {
    reg.entity("Beacon", Beacon::default).method("pulse", Expose::Server, Beacon::pulse);
}

/// Registers every type of the test game but `Beacon`, and the boot type.
pub fn register_game(reg: &mut Registry) {
    reg.space("Arena", Arena::default);
    reg.entity("Monster", Monster::default).aoi(100.0).attr("name", AttrFlags::ALL_CLIENTS).method(
        "place",
        Expose::Server,
        Monster::place,
    );
    reg.entity("AoiTester", AoiTester::default).aoi(100.0).method("place", Expose::Server, AoiTester::place).method(
        "bye",
        Expose::Server,
        AoiTester::bye,
    );
    reg.entity("Account", Account::default)
        .aoi(50.0)
        .attr("hops", AttrFlags::ALL_CLIENTS)
        .method("seq", Expose::OwnClient, Account::seq)
        .method("hop", Expose::OwnClient, Account::hop)
        .method("go_arena", Expose::Server, Account::go_arena)
        .method("login", Expose::OwnClient, Account::login)
        .method("on_avatar_id", Expose::Server, Account::on_avatar_id)
        .method("attached", Expose::Server, Account::attached)
        .method("login_failed", Expose::Server, Account::login_failed)
        .method("ready", Expose::OwnClient, Account::ready);
    let persistent_all = AttrFlags::ALL_CLIENTS | AttrFlags::PERSISTENT;
    let persistent_own = AttrFlags::CLIENT | AttrFlags::PERSISTENT;
    reg.entity("Avatar", Avatar::default)
        .persistent()
        .aoi(100.0)
        .aoi_hooks()
        .attr("name", persistent_all)
        .attr("level", persistent_all)
        .attr("prof", persistent_all)
        .attr("exp", persistent_own)
        .attr("last_mail", AttrFlags::PERSISTENT)
        .attr("counter", persistent_own)
        .attr("test_list", AttrFlags::ALL_CLIENTS)
        .attr("complex", AttrFlags::CLIENT)
        .method("attach", Expose::Server, Avatar::attach)
        .method("enter_space_kind", Expose::OwnClient, Avatar::enter_space_kind)
        .method("join_crowd", Expose::OwnClient, Avatar::join_crowd)
        .method("do_enter_space", Expose::Server, Avatar::do_enter_space)
        .method("enter_random_nil_space", Expose::OwnClient, Avatar::enter_random_nil_space)
        .method("say", Expose::OwnClient, Avatar::say)
        .method("test_list", Expose::OwnClient, Avatar::test_list)
        .method("test_complex", Expose::OwnClient, Avatar::test_complex)
        .method("test_aoi", Expose::OwnClient, Avatar::test_aoi)
        .method("aoi_check", Expose::Server, Avatar::aoi_check)
        .method("nearest_monster", Expose::OwnClient, Avatar::nearest_monster)
        .method("subscribe", Expose::OwnClient, Avatar::subscribe)
        .method("publish", Expose::OwnClient, Avatar::publish)
        .method(oxworld_core::pubsub::ON_PUBLISH, Expose::Server, Avatar::on_publish)
        .method("mail", Expose::OwnClient, Avatar::mail)
        .method("on_mails", Expose::Server, Avatar::on_mails)
        .method("online", Expose::OwnClient, Avatar::online)
        .method("bump", Expose::OwnClient, Avatar::bump)
        .method("test_call_all", Expose::OwnClient, Avatar::test_call_all)
        .method("call_all_echo", Expose::AnyClient, Avatar::call_all_echo)
        .method("call_all_give_up", Expose::Server, Avatar::call_all_give_up)
        .method("check_in", Expose::Server, Avatar::check_in)
        .method("on_online", Expose::Server, Avatar::on_online)
        .method("service_check", Expose::Server, Avatar::service_check);
    reg.service("Online", Online::default, 3)
        .method("check_in", Expose::Server, Online::check_in)
        .method("check_out", Expose::Server, Online::check_out)
        .method("count", Expose::Server, Online::count);
    reg.service("Spaces", Spaces::default, 3).method("want", Expose::Server, Spaces::want).method(
        "replace",
        Expose::Server,
        Spaces::replace,
    );
    oxworld_core::pubsub::register(reg, 3);
    reg.boot("Account");
}
