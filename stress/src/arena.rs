//! Scenario `arena`, against `demo/arena` (the top-down shooter). Every bot registers and logs
//! in as `b<run>x<n>` (`<run>`: the run's start time in ms and the process id, in hex, so a
//! rerun against the same store gets new users) with the password `stress`, is put into arena 1
//! (`on_arena(1, game, x, z)`), and once every bot is in plays on a 100 ms tick for
//! `--duration`:
//!
//! - **move** (counted, not timed), on half the ticks: `ClientMsg::Move` for its player, a step
//!   of at most 1.5 on x and on z from where the bot is, kept within 0..=200. Where it is:
//!   `on_arena`'s or `on_respawn`'s place, then its own moves. Never while dead (its player's
//!   hp 0), nor within 400 ms of `on_arena`/`on_respawn` (the server drops client moves for
//!   300 ms after it placed a player: waiting keeps the bot in step with it).
//! - **`shoot`**, every 0.8-1.2 s, alive, with no shot in flight and 200 ms (the cooldown) after
//!   the last one was answered: `shoot(m)` at the nearest `Monster` with hp > 0 on the replica,
//!   if it is within 55 (the range is 60; what the bot sees is a position sync old). Done at
//!   its own `on_shoot(me, m, hit, damage)`, damage 25 for a hit and 0 for a miss.
//! - **`scores`**, every 10 s (the first at a random time): `scores()`. Done at `on_scores(list)`,
//!   at most ten `[name, score]` pairs, best first.
//!
//! `register` (until `show_info`) and `login` (until `on_arena` in arena 1, for a player named
//! as the user) are timed too.
//!
//! Refused shots. A refusal that a race between what the bot saw and what the server had
//! explains counts as `refused`, not as an error, and the race must then show within 5 s:
//!
//! | refusal | the race | what must show |
//! |---|---|---|
//! | "no such target in view", "that is not a live target" | the monster died or went | dead (hp 0) or gone on the replica |
//! | "out of range" | the monster or the player moved (the view is a sync old) | (nothing to check) |
//! | "the dead do not shoot" | a bite killed the player meanwhile | own hp 0, after the shot was sent |
//!
//! Every other refusal is an error, "too fast" among them: a bot shoots only 200 ms after the
//! answer to its previous shot arrived, so the server ran the two at least that far apart
//! whatever the link and the load did. So are a shot answered by neither within 5 s, and an
//! `on_shoot` naming another target, with a wrong damage, or for no shot in flight.
//!
//! Counted (top-level fields of the JSON line): `moves`, `shots` (sent), `hits` and `misses`
//! (own `on_shoot`s), `refused`, `kills` (rises of the player's `score`: a monster kill is
//! worth 1, and bots shoot only monsters), `deaths` (own hp falling to 0) and `respawns`.
//! Errors besides: a refused or late (60 s) registration or login, a death without
//! `on_respawn` within 10 s, an `on_respawn` without a death or outside the arena, a falling
//! score, an unasked answer, any other server error or `show_error`, the player destroyed, a
//! disconnect (unless `--reconnect`: then the bot logs in again).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use oxworld_client::botnet::{BotEvent, BotNet};
use oxworld_client::{ClientConn, Dial};
use oxworld_net::client_proto::{ClientMsg, ErrorCode, Pos, ServerMsg};
use oxworld_net::{Id, Value, method_id};

use crate::report::{Live, Report, Rng, call};
use crate::{ANSWER_GRACE, RECONNECT_DELAY};

// The game's numbers, as `demo/arena/src/rules.rs` has them (the load tool does not link games).
/// Side of the square arena: x and z run from 0 to this.
const ARENA_SIZE: f32 = 200.0;
/// Farthest shot (x/z distance).
const SHOOT_RANGE: f32 = 60.0;
/// Damage of a shot that hits.
const SHOT_DAMAGE: i64 = 25;
/// Shortest time between two shots of one player.
const SHOT_COOLDOWN: Duration = Duration::from_millis(200);
/// Score for killing a monster.
const MONSTER_KILL_SCORE: i64 = 1;
/// The arena a login enters.
const FIRST_ARENA: i64 = 1;
/// Entries of the score board.
const TOP: usize = 10;

/// A bot's pace.
const TICK: Duration = Duration::from_millis(100);
/// Chance of a move on a tick.
const MOVE_CHANCE: f64 = 0.5;
/// Longest step on x and on z.
const STEP: f32 = 1.5;
/// No moves this long after the server placed the player (it takes them again after 300 ms).
const HOLD: Duration = Duration::from_millis(400);
/// Mean time between two looks for a target (each 0.8 to 1.2 times it).
const SHOOT_EVERY: Duration = Duration::from_secs(1);
/// Targets must be this much nearer than [`SHOOT_RANGE`] on the replica.
const RANGE_MARGIN: f32 = 5.0;
/// Time between two `scores()` of one bot.
const SCORES_EVERY: Duration = Duration::from_secs(10);
/// How long a shot or a score board may take, and the race behind a refusal to show.
const ACTION_TIMEOUT: Duration = Duration::from_secs(5);
/// A death must be followed by `on_respawn` within this (the game respawns after 3 s).
const RESPAWN_LIMIT: Duration = Duration::from_secs(10);
/// Registering and logging in hash a password on a game (Argon2): allow for a queue at start.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How often timeouts are looked for.
const SCAN_EVERY: Duration = Duration::from_millis(100);
const PASSWORD: &str = "stress";
/// The counters every run reports, zeros included.
const COUNTERS: [&str; 8] = ["moves", "shots", "hits", "misses", "refused", "kills", "deaths", "respawns"];

/// A run id for the bots' user names: the start time in ms (40 bits, fixed width) and the
/// process id, in hex.
pub(crate) fn run_id() -> String {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("{:010x}{:x}", ms % (1 << 40), std::process::id())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    Registering,
    LoggingIn,
    Playing,
}

/// What a refused shot says happened, to be seen in time.
#[derive(Debug)]
enum Expect {
    /// The target dead or gone on the replica.
    TargetDown(Id),
    /// The bot's own death.
    OwnDeath,
}

struct Fighter {
    name: String,
    stage: Stage,
    /// The user exists (a bot logging in again after a reconnect skips `register`).
    registered: bool,
    /// When `register` or `login` was sent.
    asked: Instant,
    account: Option<Id>,
    player: Option<Id>,
    /// The player's attributes, updated in message order (the bot net's replica runs a whole
    /// read ahead).
    mine: Value,
    hp: i64,
    score: i64,
    /// Where the bot is: `on_arena`'s or `on_respawn`'s place, then its own moves.
    x: f32,
    z: f32,
    /// No moves before this.
    hold_until: Instant,
    /// Monsters on the replica.
    monsters: HashSet<Id>,
    /// The shot in flight: target, sent.
    shot: Option<(Id, Instant)>,
    /// When the last shot was answered (`on_shoot` or a refusal).
    last_answer: Option<Instant>,
    next_shot: Instant,
    scores_asked: Option<Instant>,
    next_scores: Instant,
    /// Seen dead (hp 0), no `on_respawn` yet.
    dead: bool,
    /// `on_respawn` is due by then (cleared once reported late).
    respawn_due: Option<Instant>,
    last_death: Option<Instant>,
    /// What refusals say happened: what, by when, the refusal.
    expects: Vec<(Expect, Instant, String)>,
    /// Bumped by a reconnect: ticks of the earlier session stop.
    session: u64,
    closed: bool,
}

impl Fighter {
    fn new(name: String, now: Instant) -> Self {
        Fighter {
            name,
            stage: Stage::Connecting,
            registered: false,
            asked: now,
            account: None,
            player: None,
            mine: Value::Nil,
            hp: 0,
            score: 0,
            x: 0.0,
            z: 0.0,
            hold_until: now,
            monsters: HashSet::new(),
            shot: None,
            last_answer: None,
            next_shot: now,
            scores_asked: None,
            next_scores: now,
            dead: false,
            respawn_due: None,
            last_death: None,
            expects: Vec::new(),
            session: 0,
            closed: false,
        }
    }

    /// Starts playing: the first look for a target within a second, the first `scores()`
    /// within [`SCORES_EVERY`].
    fn begin(&mut self, now: Instant, rng: &mut Rng) {
        self.next_shot = now + SHOOT_EVERY.mul_f64(rng.unit());
        self.next_scores = now + SCORES_EVERY.mul_f64(rng.unit());
    }

    /// The player's `name` attribute.
    fn mine_name(&self) -> Option<&str> {
        match &self.mine {
            Value::Map(m) => m.get("name").and_then(Value::as_str),
            _ => None,
        }
    }
}

/// Names a bot in error messages: its number and user, formatted only when needed.
struct Who<'a>(usize, &'a str);

impl std::fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bot {} ({})", self.0, self.1)
    }
}

fn us(since: Instant, now: Instant) -> u64 {
    u64::try_from(now.duration_since(since).as_micros()).unwrap_or(u64::MAX)
}

fn int_attr(attrs: &Value, key: &str) -> Option<i64> {
    match attrs {
        Value::Map(m) => m.get(key).and_then(Value::as_int),
        _ => None,
    }
}

/// A coordinate argument inside the arena.
fn coord(v: Option<&Value>) -> Option<f32> {
    let f = v?.as_float()? as f32;
    (0.0..=ARENA_SIZE).contains(&f).then_some(f)
}

/// The nearest monster with hp > 0 on the replica, and how far it is from (x, z).
fn nearest_monster(conn: &ClientConn, monsters: &HashSet<Id>, x: f32, z: f32) -> Option<(Id, f32)> {
    monsters
        .iter()
        .filter_map(|id| {
            let r = conn.entity(*id)?;
            if int_attr(&r.attrs, "hp")? <= 0 {
                return None;
            }
            Some((*id, (r.pos.x - x).hypot(r.pos.z - z)))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

/// Whether `list` is a score board: at most [`TOP`] `[name, score]` pairs, best first.
fn board_ok(list: Option<&Value>) -> bool {
    let Some(Value::List(entries)) = list else { return false };
    let mut last = i64::MAX;
    entries.len() <= TOP
        && entries.iter().all(|e| {
            let Value::List(pair) = e else { return false };
            let score = pair.get(1).and_then(Value::as_int);
            match (pair.len(), pair.first().and_then(Value::as_str), score) {
                (2, Some(_), Some(s)) if s <= last => {
                    last = s;
                    true
                }
                _ => false,
            }
        })
}

/// One tick of a playing bot: maybe a move, maybe a shot, maybe `scores()`.
fn tick(net: &mut BotNet, rep: &mut Report, rng: &mut Rng, i: usize, b: &mut Fighter, events: &mut Vec<BotEvent>) {
    let now = Instant::now();
    let Some(me) = b.player else { return };
    if b.dead || b.hp <= 0 {
        return;
    }
    if now >= b.hold_until && rng.unit() < MOVE_CHANCE {
        let dx = (rng.unit() as f32 * 2.0 - 1.0) * STEP;
        let dz = (rng.unit() as f32 * 2.0 - 1.0) * STEP;
        b.x = (b.x + dx).clamp(0.0, ARENA_SIZE);
        b.z = (b.z + dz).clamp(0.0, ARENA_SIZE);
        let pos = Pos { x: b.x, y: 0.0, z: b.z, yaw: dx.atan2(dz).to_degrees() };
        net.send(i, &ClientMsg::Move { id: me, pos }, events);
        rep.count("moves", 1);
    }
    if now >= b.next_shot {
        b.next_shot = now + SHOOT_EVERY.mul_f64(0.8 + 0.4 * rng.unit());
        let rested = b.last_answer.is_none_or(|t| now.duration_since(t) >= SHOT_COOLDOWN);
        if b.shot.is_none()
            && rested
            && let Some((target, d)) = nearest_monster(net.conn(i), &b.monsters, b.x, b.z)
            && d <= SHOOT_RANGE - RANGE_MARGIN
        {
            call(net, i, me, "shoot", vec![Value::id(target)], events);
            b.shot = Some((target, now));
            rep.count("shots", 1);
        }
    }
    if now >= b.next_scores && b.scores_asked.is_none() {
        b.next_scores = now + SCORES_EVERY;
        call(net, i, me, "scores", vec![], events);
        b.scores_asked = Some(now);
    }
}

/// Looks for what is overdue: answers, a respawn, the races behind refusals.
fn scan(rep: &mut Report, conn: &ClientConn, n: usize, b: &mut Fighter, now: Instant) {
    let who = Who(n, &b.name);
    if let Some((target, sent)) = b.shot
        && now.duration_since(sent) > ACTION_TIMEOUT
    {
        b.shot = None;
        rep.fail("shoot", format!("{who}: shoot {target}: neither on_shoot nor a refusal within {ACTION_TIMEOUT:?}"));
    }
    if let Some(sent) = b.scores_asked
        && now.duration_since(sent) > ACTION_TIMEOUT
    {
        b.scores_asked = None;
        rep.fail("scores", format!("{who}: scores: no on_scores within {ACTION_TIMEOUT:?}"));
    }
    if let Some(due) = b.respawn_due
        && now >= due
    {
        b.respawn_due = None;
        rep.error(format!("{who}: dead for {RESPAWN_LIMIT:?} without on_respawn"));
    }
    b.expects.retain(|(what, by, refusal)| {
        let seen = match what {
            Expect::TargetDown(t) => conn.entity(*t).is_none_or(|r| int_attr(&r.attrs, "hp").unwrap_or(0) <= 0),
            // Cleared when the death shows.
            Expect::OwnDeath => false,
        };
        if !seen && now >= *by {
            let shown = match what {
                Expect::TargetDown(t) => format!("target {t} still alive on the replica"),
                Expect::OwnDeath => "the player's hp never reached 0".to_owned(),
            };
            rep.error(format!("{who}: shot refused ({refusal}), but {shown} {ACTION_TIMEOUT:?} later"));
            return false;
        }
        !seen
    });
}

/// Runs bots `first..first+count` (users `b<run>x<n>`) for `duration` of play (after all are
/// in the arena).
pub(crate) fn run_arena(
    gates: &[Dial],
    first: usize,
    count: usize,
    duration: Duration,
    run: &str,
    live: Arc<Live>,
) -> anyhow::Result<Report> {
    let mut net = BotNet::new()?;
    let mut rep = Report::new(live);
    for name in COUNTERS {
        rep.count(name, 0);
    }
    let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ ((first as u64 + 3) << 18));
    let start = Instant::now();
    let mut bots = Vec::with_capacity(count);
    for i in 0..count {
        let dial = &gates[(first + i) % gates.len()];
        if let Err(e) = net.connect(dial) {
            bail!("bot {}: connect to {}: {e}", first + i, dial.addr);
        }
        bots.push(Fighter::new(format!("b{run}x{}", first + i), start));
    }
    // Ticks: (due, bot, session).
    let mut schedule: BinaryHeap<Reverse<(Instant, usize, u64)>> = BinaryHeap::new();
    let mut events = Vec::new();
    // Play starts when every bot is in the arena (or at the login deadline).
    let mut until: Option<Instant> = None;
    let mut sent_marked = false;
    let mut next_scan = start;
    loop {
        let now = Instant::now();
        if rep.live().stopped() {
            return Ok(rep);
        }
        if until.is_none()
            && (bots.iter().all(|b| b.closed || b.stage == Stage::Playing) || now.duration_since(start) > LOGIN_TIMEOUT)
        {
            until = Some(now + duration);
            rep.live().began_sending();
            for (i, b) in bots.iter_mut().enumerate() {
                if b.closed {
                    continue;
                }
                if b.stage != Stage::Playing {
                    let what = format!("not in the arena after {LOGIN_TIMEOUT:?} ({:?})", b.stage);
                    rep.fail("login", format!("bot {} ({}): {what}", first + i, b.name));
                    b.closed = true;
                    net.close(i);
                    continue;
                }
                b.begin(now, &mut rng);
                schedule.push(Reverse((now + TICK.mul_f64(rng.unit()), i, b.session)));
            }
        }
        if !sent_marked && until.is_some_and(|u| now >= u) {
            sent_marked = true;
            rep.live().done_sending();
        }
        if let Some(u) = until {
            let idle = bots.iter().all(|b| b.closed || (b.shot.is_none() && b.scores_asked.is_none()));
            if now >= u + ANSWER_GRACE || (now >= u && idle) {
                break;
            }
        }
        if now >= next_scan {
            next_scan = now + SCAN_EVERY;
            for (i, b) in bots.iter_mut().enumerate() {
                if !b.closed {
                    scan(&mut rep, net.conn(i), first + i, b, now);
                }
            }
        }
        while let Some(&Reverse((due, i, session))) = schedule.peek() {
            if due > now {
                break;
            }
            schedule.pop();
            let b = &mut bots[i];
            if b.closed || b.session != session || b.stage != Stage::Playing || until.is_none_or(|u| now >= u) {
                continue;
            }
            tick(&mut net, &mut rep, &mut rng, i, b, &mut events);
            schedule.push(Reverse(((due + TICK).max(now), i, session)));
        }
        let wake = schedule.peek().map_or(next_scan, |Reverse((t, _, _))| (*t).min(next_scan));
        net.poll(wake.saturating_duration_since(Instant::now()).min(Duration::from_millis(20)), &mut events)?;
        let now = Instant::now();
        // Sends below may report closes into `events`: handled on the next turn.
        for ev in std::mem::take(&mut events) {
            let (i, msg) = match ev {
                BotEvent::Connected(_) => continue,
                BotEvent::Closed(i, reason) => {
                    if rep.live().reconnect {
                        net.reconnect_after(i, &gates[(first + i) % gates.len()], RECONNECT_DELAY);
                        let b = &mut bots[i];
                        let (registered, session) = (b.registered, b.session + 1);
                        *b = Fighter { registered, session, ..Fighter::new(std::mem::take(&mut b.name), now) };
                        rep.ok("reconnect", 1);
                    } else {
                        bots[i].closed = true;
                        rep.error(format!("bot {} ({}): disconnected: {reason}", first + i, bots[i].name));
                    }
                    continue;
                }
                BotEvent::Message(i, m) => (i, m),
            };
            let b = &mut bots[i];
            if b.closed {
                continue;
            }
            let who = Who(first + i, &b.name);
            match msg {
                ServerMsg::CreateEntity { is_player: true, id, type_name, .. } if type_name == "Account" => {
                    b.account = Some(id);
                    b.asked = now;
                    let args = vec![Value::from(b.name.as_str()), Value::from(PASSWORD)];
                    if b.registered {
                        b.stage = Stage::LoggingIn;
                        call(&mut net, i, id, "login", args, &mut events);
                    } else {
                        b.stage = Stage::Registering;
                        call(&mut net, i, id, "register", args, &mut events);
                    }
                }
                ServerMsg::CreateEntity { is_player: true, id, type_name, attrs, .. } if type_name == "Player" => {
                    b.player = Some(id);
                    b.hp = int_attr(&attrs, "hp").unwrap_or(0);
                    b.score = int_attr(&attrs, "score").unwrap_or(0);
                    b.mine = attrs;
                }
                ServerMsg::CreateEntity { is_player: true, type_name, .. } => {
                    rep.error(format!("{who}: handed to a {type_name}, expected an Account or a Player"));
                }
                ServerMsg::CreateEntity { id, type_name, .. } if type_name == "Monster" => {
                    b.monsters.insert(id);
                }
                ServerMsg::DestroyEntity { id } => {
                    b.monsters.remove(&id);
                    if Some(id) == b.player {
                        b.player = None;
                        rep.error(format!("{who}: its player was destroyed"));
                    }
                }
                ServerMsg::AttrOps { id, ops } if Some(id) == b.player => {
                    // An update that does not apply is the bot net's replica's error too: it
                    // closes the bot, reported as a disconnect.
                    for op in &ops {
                        if op.apply(&mut b.mine).is_err() {
                            break;
                        }
                    }
                    let hp = int_attr(&b.mine, "hp").unwrap_or(0);
                    if b.hp > 0 && hp <= 0 {
                        rep.count("deaths", 1);
                        b.dead = true;
                        b.respawn_due = Some(now + RESPAWN_LIMIT);
                        b.last_death = Some(now);
                        b.expects.retain(|(what, ..)| !matches!(what, Expect::OwnDeath));
                    }
                    b.hp = hp;
                    let score = int_attr(&b.mine, "score").unwrap_or(b.score);
                    if score < b.score {
                        rep.error(format!("{who}: score fell from {} to {score}", b.score));
                    } else if score > b.score {
                        rep.count("kills", u64::try_from((score - b.score) / MONSTER_KILL_SCORE).unwrap_or(0));
                    }
                    b.score = score;
                }
                ServerMsg::Call { method, args, .. } => match method.as_str() {
                    "show_info" if b.stage == Stage::Registering => {
                        rep.ok("register", us(b.asked, now));
                        b.registered = true;
                        b.stage = Stage::LoggingIn;
                        b.asked = now;
                        if let Some(account) = b.account {
                            let args = vec![Value::from(b.name.as_str()), Value::from(PASSWORD)];
                            call(&mut net, i, account, "login", args, &mut events);
                        }
                    }
                    // The welcome after login.
                    "show_info" => {}
                    "show_error" => {
                        let why = args.first().and_then(Value::as_str).unwrap_or("(no reason)");
                        match b.stage {
                            // Registered before a reconnect, unbeknownst to the bot: log in.
                            Stage::Registering if b.session > 0 && why.contains("taken") => {
                                b.registered = true;
                                b.stage = Stage::LoggingIn;
                                b.asked = now;
                                if let Some(account) = b.account {
                                    let args = vec![Value::from(b.name.as_str()), Value::from(PASSWORD)];
                                    call(&mut net, i, account, "login", args, &mut events);
                                }
                            }
                            Stage::Connecting | Stage::Registering | Stage::LoggingIn => {
                                let action = if b.stage == Stage::LoggingIn { "login" } else { "register" };
                                rep.fail(action, format!("{who}: {action} refused: {why}"));
                                b.closed = true;
                                net.close(i);
                            }
                            Stage::Playing if b.scores_asked.is_some() && why.contains("score board") => {
                                b.scores_asked = None;
                                rep.fail("scores", format!("{who}: scores: {why}"));
                            }
                            Stage::Playing => rep.error(format!("{who}: show_error: {why}")),
                        }
                    }
                    "on_arena" => {
                        let kind = args.first().and_then(Value::as_int);
                        let game = args.get(1).and_then(Value::as_int);
                        let at = (coord(args.get(2)), coord(args.get(3)));
                        let named = b.mine_name() == Some(b.name.as_str());
                        match (b.stage, kind, game, at) {
                            (Stage::LoggingIn, Some(FIRST_ARENA), Some(_), (Some(x), Some(z)))
                                if b.player.is_some() && named =>
                            {
                                rep.ok("login", us(b.asked, now));
                                b.stage = Stage::Playing;
                                (b.x, b.z) = (x, z);
                                b.hold_until = now + HOLD;
                                if until.is_some() {
                                    b.begin(now, &mut rng);
                                    schedule.push(Reverse((now + TICK.mul_f64(rng.unit()), i, b.session)));
                                }
                            }
                            (Stage::LoggingIn, ..) => {
                                rep.fail(
                                    "login",
                                    format!(
                                        "{who}: login: expected on_arena({FIRST_ARENA}, game, x, z) inside the arena for a \
                                         player named {}, got on_arena{args:?} for {:?} named {:?}",
                                        b.name,
                                        b.player,
                                        b.mine_name()
                                    ),
                                );
                                b.closed = true;
                                net.close(i);
                            }
                            _ => rep.error(format!("{who}: on_arena{args:?} unasked ({:?})", b.stage)),
                        }
                    }
                    "on_respawn" => {
                        if !b.dead {
                            rep.error(format!("{who}: on_respawn{args:?} without a death seen"));
                        }
                        match (coord(args.first()), coord(args.get(1))) {
                            (Some(x), Some(z)) => (b.x, b.z) = (x, z),
                            _ => rep.error(format!("{who}: on_respawn{args:?}: expected a place in the arena")),
                        }
                        rep.count("respawns", 1);
                        b.dead = false;
                        b.respawn_due = None;
                        b.hold_until = now + HOLD;
                    }
                    "on_shoot" => {
                        // Every client around hears of every shot; only the bot's own count.
                        if b.player.is_none() || args.first().and_then(Value::as_id) != b.player {
                            continue;
                        }
                        let target = args.get(1).and_then(Value::as_id);
                        let hit = args.get(2).and_then(Value::as_bool);
                        let damage = args.get(3).and_then(Value::as_int);
                        let Some((want, sent)) = b.shot.take() else {
                            rep.error(format!("{who}: on_shoot{args:?} with no shot in flight"));
                            continue;
                        };
                        b.last_answer = Some(now);
                        match hit {
                            Some(h) if target == Some(want) && damage == Some(if h { SHOT_DAMAGE } else { 0 }) => {
                                rep.ok("shoot", us(sent, now));
                                rep.count(if h { "hits" } else { "misses" }, 1);
                            }
                            _ => rep.fail(
                                "shoot",
                                format!(
                                    "{who}: shoot {want}: expected on_shoot(me, {want}, hit, {SHOT_DAMAGE} or 0), \
                                     got on_shoot{args:?}"
                                ),
                            ),
                        }
                    }
                    "on_scores" => match b.scores_asked.take() {
                        Some(sent) if board_ok(args.first()) => rep.ok("scores", us(sent, now)),
                        Some(_) => rep.fail(
                            "scores",
                            format!("{who}: scores: expected at most {TOP} [name, score] best first, got {args:?}"),
                        ),
                        None => rep.error(format!("{who}: on_scores unasked")),
                    },
                    _ => {}
                },
                ServerMsg::Error { code, method, message, .. } => {
                    if method == method_id("shoot")
                        && let Some((target, sent)) = b.shot.take()
                    {
                        b.last_answer = Some(now);
                        let failed = code == ErrorCode::Failed as u16;
                        if failed && (message.contains("in view") || message.contains("not a live target")) {
                            rep.count("refused", 1);
                            b.expects.push((Expect::TargetDown(target), now + ACTION_TIMEOUT, message));
                        } else if failed && message.contains("out of range") {
                            rep.count("refused", 1);
                        } else if failed && message.contains("dead") {
                            rep.count("refused", 1);
                            if b.last_death.is_none_or(|t| t < sent) {
                                b.expects.push((Expect::OwnDeath, now + ACTION_TIMEOUT, message));
                            }
                        } else {
                            rep.fail("shoot", format!("{who}: shoot {target}: refused (error {code}): {message}"));
                        }
                        continue;
                    }
                    match b.stage {
                        Stage::Connecting | Stage::Registering | Stage::LoggingIn => {
                            let action = if b.stage == Stage::LoggingIn { "login" } else { "register" };
                            rep.fail(action, format!("{who}: {action}: server error {code}: {message}"));
                            b.closed = true;
                            net.close(i);
                        }
                        Stage::Playing if method == method_id("scores") && b.scores_asked.is_some() => {
                            b.scores_asked = None;
                            rep.fail("scores", format!("{who}: scores: server error {code}: {message}"));
                        }
                        Stage::Playing => rep.error(format!("{who}: server error {code}: {message}")),
                    }
                }
                _ => {}
            }
        }
    }
    for (i, b) in bots.iter().enumerate().filter(|(_, b)| !b.closed) {
        if let Some((target, _)) = b.shot {
            rep.fail("shoot", format!("bot {} ({}): shoot {target}: never answered", first + i, b.name));
        }
        if b.scores_asked.is_some() {
            rep.fail("scores", format!("bot {} ({}): scores: never answered", first + i, b.name));
        }
    }
    Ok(rep)
}
