//! Scenario `testgame`, against `demo/testgame` (GoWorld's test_client in our idiom): every
//! bot logs in as `test<n>` (password `123456`), enters a space, then keeps doing one random
//! action at a time, each checked for its expected outcome within 5 s:
//!
//! | action | sends | done when |
//! |---|---|---|
//! | `enter_space` | `enter_space_kind(k)` (a kind other than the current) | `entered(k, _)` |
//! | `enter_nil_space` | `enter_random_nil_space(r)` (not from the nil space) | `entered(0, _)` |
//! | `say_world`, `say_prof` | `say(channel, text)` | its own `on_say(name, channel, text)` |
//! | `test_list` | `test_list(seed)` | `on_test_list(list)` and the replica's `test_list` equals it |
//! | `test_complex` | `test_complex()` | replica `complex.key1.key2` right at `on_complex_set`, empty at `on_complex_clear` |
//! | `test_aoi` | `test_aoi()` (not in the nil space) | `on_test_aoi(tester)` and the client was told about `tester` |
//! | `mail` | `mail(text)` | `on_mails(texts)` containing `text` |
//! | `online` | `online()` | `on_online(n)` with `n >= 1` |
//! | `test_call_all` | `test_call_all()` | every client around answered (`on_test_call_all(n)`, `n >= 1`) |
//!
//! The time between actions is random, 0 to `2 / --rate` seconds.
//!
//! With `--reconnect` (the crash runs) one action in four is `bump`: `bump(n + 1)` sets the
//! avatar's persistent `counter`, done at `on_bump(n + 1)`. A bot whose connection closed
//! resumes its session on the next gate of the config (`resume`, done when its avatar is shown
//! again; its `counter` must be every value acknowledged, counted in `resumes`); if the resume
//! is refused (`resumes_refused`), or after it lost its player (`PlayerLost`), it logs in
//! again, and its avatar's `counter` must be at least every value acknowledged more than
//! `[storage] save_interval_s` before the loss (plus 250 ms for the save itself); each one
//! older and missing counts in `lost_values` (an error).
//!
//! Like GoWorld's test_client, each bot also **moves** while sending (unless `--no-move`): on
//! every 100 ms tick, with probability 0.5, its avatar steps by a tiny amount (x by
//! [-0.01, 0.01), z by [-0.01, 0), a random yaw) and it sends `Move`. The test game's Avatar
//! does not take client movement (as GoWorld's test_game Avatar never enables client syncing),
//! so these only load the gate -> dispatcher -> game path; they are counted as `moves`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use oxworld_client::Dial;
use oxworld_client::botnet::{BotEvent, BotNet};
use oxworld_net::client_proto::{ClientMsg, ErrorCode, Pos, ServerMsg};
use oxworld_net::{Id, Value, method_id};

use crate::RECONNECT_DELAY;
use crate::report::{Live, Report, Rng, call};

/// How an outcome that is the server's error starts.
const SERVER_ERROR: &str = "server error: ";

/// How long an action may take.
const ACTION_TIMEOUT: Duration = Duration::from_secs(5);
/// How long logging in may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

const ACTIONS: [&str; 11] = [
    "test_call_all",
    "enter_space",
    "enter_nil_space",
    "say_world",
    "say_prof",
    "test_list",
    "test_complex",
    "test_aoi",
    "mail",
    "online",
    "enter_space",
];

#[derive(Debug, Clone, PartialEq)]
enum Pending {
    Login,
    /// Resuming its session on another connection (`--reconnect`, after a lost connection).
    Resume,
    Space(i64),
    NilSpace,
    Say(String),
    List,
    Complex {
        set_seen: bool,
    },
    Aoi,
    Mail(String),
    Online,
    CallAll,
    Bump(i64),
}

struct Bot {
    /// Attributes of every entity this client knows, updated in message order (the bot
    /// net's own replica runs ahead: it applies a whole read at once).
    shadow: std::collections::HashMap<Id, Value>,
    name: String,
    account: Option<Id>,
    avatar: Option<Id>,
    kind: i64,
    /// Where the bot believes its avatar stands (the server's word, then its own steps).
    pos: Pos,
    pending: Option<(&'static str, Pending, Instant)>,
    closed: bool,
    n: u64,
    /// Players this bot lost with their game (`PlayerLost`): errors about them are the crash's,
    /// not the bot's (with `--reconnect`).
    lost: Vec<Id>,
    /// The avatar's `counter` as last acknowledged, and when each value was (newest last).
    counter: i64,
    acked: std::collections::VecDeque<(Instant, i64)>,
    /// When the bot last lost its player or connection (checked at the next login).
    lost_at: Option<Instant>,
    /// The first `--kill` it has not recovered from yet.
    next_kill: usize,
    /// The gate it uses (the next one of the config after a disconnect).
    gate: usize,
    /// The chaos run: which kills troubled it and when it worked again.
    chaos: crate::chaos::BotChaos,
}

impl Bot {
    /// Forgets its player and what it was shown, and logs in again; what it had acknowledged
    /// before `lost_at` must come back (`lost_values`).
    fn log_in_again(&mut self, lost_at: Instant, now: Instant) {
        self.account = None;
        self.avatar = None;
        self.kind = -1;
        self.shadow.clear();
        self.lost_at = Some(lost_at);
        self.pending = Some(("login", Pending::Login, now));
    }
}

fn attr<'a>(shadow: &'a std::collections::HashMap<Id, Value>, id: Id, path: &[&str]) -> Option<&'a Value> {
    let mut v = shadow.get(&id)?;
    for key in path {
        match v {
            Value::Map(m) => v = m.get(*key)?,
            _ => return None,
        }
    }
    Some(v)
}

fn id_arg(v: Option<&Value>) -> Option<Id> {
    match v {
        Some(Value::Bytes(b)) => <[u8; 16]>::try_from(b.as_slice()).ok().map(Id),
        _ => None,
    }
}

fn complex_expected() -> Value {
    let inner = Value::Map([("finalkey".to_owned(), Value::from("iamhere"))].into());
    Value::List(vec![Value::Bool(true), Value::List(vec![inner])])
}

/// Runs bots `first..first+count` for `duration` (after all logged in).
/// What the whole run asks of every bot thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opts {
    /// Actions per second per bot, on average.
    pub(crate) rate: f64,
    /// Bots of the whole run (the number of space kinds follows it).
    pub(crate) total_bots: usize,
    /// Bots send `Move`s (not `--no-move`).
    pub(crate) moves: bool,
    /// The cluster's `[storage] save_interval_s`: the loss window the counter check allows.
    pub(crate) save_interval: Duration,
}

/// How often bots look for actions that timed out.
const SCAN_EVERY: Duration = Duration::from_millis(50);
/// The movement tick: each bot moves with probability 0.5 per tick.
const MOVE_EVERY: Duration = Duration::from_millis(100);

pub(crate) fn run_testgame(
    gates: &[Dial],
    first: usize,
    count: usize,
    duration: Duration,
    opts: Opts,
    live: Arc<Live>,
) -> anyhow::Result<Report> {
    let Opts { rate, total_bots, moves, save_interval } = opts;
    let mut net = BotNet::new()?;
    let mut rep = Report::new(live);
    let bumps = rep.live().reconnect;
    if bumps {
        rep.count("relogins", 0);
        rep.count("lost_values", 0);
        rep.count("resumes", 0);
        rep.count("resumes_refused", 0);
    }
    let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ ((first as u64 + 1) << 20));
    let kinds = (total_bots as u64 / 400).max(2);
    let mut bots = Vec::with_capacity(count);
    let start = Instant::now();
    for i in 0..count {
        let dial = &gates[(first + i) % gates.len()];
        if let Err(e) = net.connect(dial) {
            bail!("bot {}: connect to {}: {e}", first + i, dial.addr);
        }
        bots.push(Bot {
            shadow: Default::default(),
            name: format!("test{}", first + i),
            account: None,
            avatar: None,
            kind: -1,
            pos: Pos::default(),
            pending: Some(("login", Pending::Login, start)),
            closed: false,
            n: 0,
            lost: Vec::new(),
            counter: 0,
            acked: Default::default(),
            lost_at: None,
            next_kill: 0,
            gate: (first + i) % gates.len(),
            chaos: Default::default(),
        });
    }
    let gap = 2.0 / rate.max(0.001);
    let mut schedule: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut events = Vec::new();
    let mut send_until: Option<Instant> = None;
    let mut sent_marked = false;
    let mut next_scan = start;
    let mut next_move = start;
    if moves {
        rep.count("moves", 0);
    }
    loop {
        let now = Instant::now();
        if rep.live().stopped() {
            break;
        }
        if send_until.is_none()
            && (bots.iter().all(|b| b.closed || b.avatar.is_some()) || now.duration_since(start) > LOGIN_TIMEOUT)
        {
            send_until = Some(now + duration);
            rep.live().began_sending();
        }
        if !sent_marked && send_until.is_some_and(|u| now >= u) {
            sent_marked = true;
            rep.live().done_sending();
        }
        if let Some(until) = send_until
            && now >= until
            && bots.iter().all(|b| b.closed || b.pending.is_none())
        {
            break;
        }
        // Timeouts, looked for every SCAN_EVERY (they are seconds long; a scan per poll would
        // cost the bots O(bots) per message).
        if now >= next_scan {
            next_scan = now + SCAN_EVERY;
            for (i, b) in bots.iter_mut().enumerate() {
                let expired = b.pending.as_ref().is_some_and(|(_, what, since)| {
                    let login = matches!(what, Pending::Login | Pending::Resume);
                    now.duration_since(*since) > if login { LOGIN_TIMEOUT } else { ACTION_TIMEOUT }
                });
                if expired && let Some((name, what, since)) = b.pending.take() {
                    {
                        b.chaos.outcome(&rep.live().kill_times(), since, now, false);
                        let why = format!("bot {} ({}): {name}: no {what:?} outcome in time", first + i, b.name);
                        rep.fail_after(name, why, since, now, false);
                        if name == "login" {
                            b.closed = true;
                            net.close(i);
                        } else {
                            schedule.push(Reverse((now, i)));
                        }
                    }
                }
            }
        }
        if let Some(until) = send_until
            && now >= until + ACTION_TIMEOUT * 2
        {
            break;
        }
        if moves && now >= next_move && send_until.is_some_and(|u| now < u) {
            next_move = now + MOVE_EVERY;
            let mut sent = 0;
            for (i, b) in bots.iter_mut().enumerate() {
                // Not while resuming: until its view comes, the new gate does not know it owns it.
                let resuming = matches!(b.pending, Some((_, Pending::Resume, _)));
                let Some(avatar) = b.avatar.filter(|_| !b.closed && !resuming) else { continue };
                if rng.unit() < 0.5 {
                    continue;
                }
                b.pos.x += (rng.unit() * 0.02 - 0.01) as f32;
                b.pos.z -= (rng.unit() * 0.01) as f32;
                b.pos.yaw = (rng.unit() * 360.0) as f32;
                net.send(i, &ClientMsg::Move { id: avatar, pos: b.pos }, &mut events);
                sent += 1;
            }
            rep.count("moves", sent);
        }
        // Start due actions.
        while let Some(&Reverse((due, i))) = schedule.peek() {
            if due > now || send_until.is_none_or(|u| now >= u) {
                break;
            }
            schedule.pop();
            let b = &mut bots[i];
            let Some(avatar) = b.avatar.filter(|_| !b.closed && b.pending.is_none()) else { continue };
            b.n += 1;
            let tag = format!("{}-{}", b.name, b.n);
            let mut name = ACTIONS[rng.below(ACTIONS.len() as u64) as usize];
            // From the nil space (no AOI) only a space can be entered, as GoWorld's bots do.
            if b.kind <= 0 {
                name = "enter_space";
            } else if bumps && rng.below(4) == 0 {
                name = "bump";
            }
            let pending = match name {
                "enter_space" => {
                    let mut k = 101 + rng.below(kinds) as i64;
                    if k == b.kind {
                        k = 101 + (k - 101 + 1) % kinds as i64;
                    }
                    if k == b.kind {
                        k += 1;
                    }
                    call(&mut net, i, avatar, "enter_space_kind", vec![Value::Int(k)], &mut events);
                    Pending::Space(k)
                }
                "enter_nil_space" => {
                    call(
                        &mut net,
                        i,
                        avatar,
                        "enter_random_nil_space",
                        vec![Value::Int(rng.below(1000) as i64)],
                        &mut events,
                    );
                    Pending::NilSpace
                }
                "say_world" | "say_prof" => {
                    let channel = if name == "say_world" { "world" } else { "prof" };
                    call(
                        &mut net,
                        i,
                        avatar,
                        "say",
                        vec![Value::from(channel), Value::from(tag.as_str())],
                        &mut events,
                    );
                    Pending::Say(tag)
                }
                "test_list" => {
                    call(&mut net, i, avatar, "test_list", vec![Value::Int(rng.below(1000) as i64)], &mut events);
                    Pending::List
                }
                "test_complex" => {
                    call(&mut net, i, avatar, "test_complex", vec![], &mut events);
                    Pending::Complex { set_seen: false }
                }
                "test_aoi" => {
                    call(&mut net, i, avatar, "test_aoi", vec![], &mut events);
                    Pending::Aoi
                }
                "test_call_all" => {
                    call(&mut net, i, avatar, "test_call_all", vec![], &mut events);
                    Pending::CallAll
                }
                "mail" => {
                    call(&mut net, i, avatar, "mail", vec![Value::from(tag.as_str())], &mut events);
                    Pending::Mail(tag)
                }
                "bump" => {
                    call(&mut net, i, avatar, "bump", vec![Value::Int(b.counter + 1)], &mut events);
                    Pending::Bump(b.counter + 1)
                }
                _ => {
                    call(&mut net, i, avatar, "online", vec![], &mut events);
                    Pending::Online
                }
            };
            b.pending = Some((name, pending, now));
        }
        let mut wake = schedule.peek().map(|Reverse((t, _))| *t).unwrap_or(now + Duration::from_millis(50));
        if moves {
            wake = wake.min(next_move);
        }
        net.poll(wake.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)), &mut events)?;
        let now = Instant::now();
        for ev in std::mem::take(&mut events) {
            let (i, msg) = match ev {
                BotEvent::Connected(_) => continue,
                BotEvent::Closed(i, reason) => {
                    if rep.live().reconnect {
                        let b = &mut bots[i];
                        // The next gate of the config: this one may be gone.
                        b.gate = (b.gate + 1) % gates.len();
                        // Its connection is gone: troubled, whether an action was pending or not.
                        let since = b.pending.as_ref().map_or(now, |(_, _, t)| *t);
                        b.chaos.dropped(&rep.live().kill_times(), since, now);
                        rep.ok("reconnect", 1);
                        // With a player, it resumes the session (same avatar, nothing lost).
                        if let Some(s) = net.conn(i).session().filter(|s| Some(s.player) == b.avatar) {
                            net.resume_after(i, &gates[b.gate], RECONNECT_DELAY, s);
                            b.kind = -1;
                            b.shadow.clear();
                            b.pending = Some(("resume", Pending::Resume, now));
                            continue;
                        }
                        net.reconnect_after(i, &gates[b.gate], RECONNECT_DELAY);
                        b.log_in_again(rep.live().last_kill(now).unwrap_or(now), now);
                    } else {
                        bots[i].closed = true;
                        rep.error(format!("bot {} ({}): disconnected: {reason}", first + i, bots[i].name));
                    }
                    continue;
                }
                BotEvent::Message(i, m) => (i, m),
            };
            let b = &mut bots[i];
            let mut done: Option<Result<(), String>> = None;
            match &msg {
                ServerMsg::CreateEntity { id, attrs, .. } => {
                    b.shadow.insert(*id, attrs.clone());
                }
                ServerMsg::DestroyEntity { id } => {
                    b.shadow.remove(id);
                }
                ServerMsg::Positions { entries } => {
                    if let Some((_, p)) = entries.iter().find(|(id, _)| Some(*id) == b.avatar) {
                        b.pos = *p;
                    }
                }
                ServerMsg::AttrOps { id, ops } => {
                    if let Some(a) = b.shadow.get_mut(id) {
                        for op in ops {
                            if let Err(e) = op.apply(a) {
                                done = Some(Err(format!("attribute update out of step: {e}")));
                            }
                        }
                    }
                }
                _ => {}
            }
            match msg {
                // Its player died with its game; the gate gives it a new boot entity. With
                // --reconnect the bot logs in again (a re-login, not an error).
                ServerMsg::PlayerLost { entity, game, .. } => {
                    // Lost when the game died: the last --kill if there was one (what was
                    // acknowledged after it and before this message may be gone, legitimately).
                    b.lost_at = Some(rep.live().last_kill(now).unwrap_or(now));
                    let since = b.pending.as_ref().map_or(now, |(_, _, t)| *t);
                    b.chaos.dropped(&rep.live().kill_times(), since, now);
                    b.lost.extend([Some(entity), b.avatar, b.account].into_iter().flatten());
                    b.account = None;
                    b.avatar = None;
                    b.kind = -1;
                    b.shadow.clear();
                    if rep.live().reconnect {
                        b.pending = Some(("login", Pending::Login, now));
                        rep.count("relogins", 1);
                    } else {
                        done = Some(Err(format!("its player was lost with game{game}")));
                    }
                }
                // The resume was refused (the session expired, or its game is gone): a boot
                // entity follows; the bot logs in again.
                ServerMsg::Error { code, .. } if code == ErrorCode::ResumeRefused as u16 => {
                    b.log_in_again(rep.live().last_kill(now).unwrap_or(now), now);
                    rep.count("resumes_refused", 1);
                }
                ServerMsg::Error { target, code, .. }
                    if rep.live().reconnect
                        && (b.lost.contains(&target)
                            || (code == ErrorCode::UnknownEntity as u16
                                && (Some(target) == b.avatar || Some(target) == b.account))) =>
                {
                    // About a player lost with its game (its PlayerLost may come after this,
                    // through another dispatcher): the re-login settles the pending action.
                }
                ServerMsg::CreateEntity { is_player: true, id, type_name, .. } if type_name == "Account" => {
                    b.account = Some(id);
                    let args = vec![Value::from(b.name.as_str()), Value::from("123456")];
                    call(&mut net, i, id, "login", args, &mut events);
                }
                ServerMsg::CreateEntity { is_player: true, id, type_name, attrs, .. } if type_name == "Avatar" => {
                    b.avatar = Some(id);
                    b.kind = 0;
                    let restored = match &attrs {
                        Value::Map(m) => m.get("counter").and_then(Value::as_int).unwrap_or(0),
                        _ => 0,
                    };
                    if matches!(b.pending, Some((_, Pending::Resume, _))) {
                        // Resumed: the live avatar, so every acknowledged value is there.
                        if restored < b.counter {
                            rep.count("lost_values", 1);
                            let why = format!(
                                "bot {} ({}): resumed with counter {restored}, {} was acknowledged",
                                first + i,
                                b.name,
                                b.counter
                            );
                            match rep.chaos_kill(now, now) {
                                Some(k) => rep.kill_stat(k).lost_values += 1,
                                None => rep.error(why),
                            }
                        }
                        rep.count("resumes", 1);
                        done = Some(Ok(()));
                    } else if let Some(at) = b.lost_at.take() {
                        // Every value acknowledged before the loss window must have come back.
                        let window = save_interval + Duration::from_millis(250);
                        let due = b
                            .acked
                            .iter()
                            .filter(|(t, _)| at.saturating_duration_since(*t) > window)
                            .map(|(_, n)| *n)
                            .max();
                        if due.is_some_and(|d| restored < d)
                            && let Some(k) = rep.chaos_kill(at, at)
                        {
                            rep.kill_stat(k).lost_values += 1;
                            rep.count("lost_values", 1);
                        } else if let Some(due) = due.filter(|d| restored < *d) {
                            rep.count("lost_values", 1);
                            rep.error(format!(
                                "bot {} ({}): counter came back as {restored}, but {due} was acknowledged more than {window:?} before the loss",
                                first + i,
                                b.name
                            ));
                        }
                    }
                    b.counter = restored;
                    b.acked.clear();
                }
                ServerMsg::DestroyEntity { id } if Some(id) == b.avatar => {
                    done = Some(Err("its avatar was destroyed".into()));
                }
                // A neighbour that vanished between its call-all and our answer: not ours to fail.
                ServerMsg::Error { method, .. } if method == method_id("call_all_echo") => {}
                ServerMsg::Error { message, .. } => done = Some(Err(format!("{SERVER_ERROR}{message}"))),
                ServerMsg::Call { method, args, .. } => {
                    let pending = b.pending.as_mut().map(|(_, p, _)| p);
                    let int = |k: usize| args.get(k).and_then(Value::as_int);
                    match (method.as_str(), pending) {
                        ("on_login", Some(Pending::Login)) => {
                            if args.first() != Some(&Value::Bool(true)) {
                                done = Some(Err("login refused".into()));
                            } else if b.avatar.is_some() {
                                done = Some(Ok(()));
                            }
                        }
                        ("entered", p) => {
                            b.kind = int(0).unwrap_or(-1);
                            match p {
                                Some(Pending::Space(k)) if int(0) == Some(*k) => done = Some(Ok(())),
                                Some(Pending::NilSpace) if int(0) == Some(0) => done = Some(Ok(())),
                                _ => {}
                            }
                        }
                        ("on_say", Some(Pending::Say(tag)))
                            if args.first().and_then(Value::as_str) == Some(b.name.as_str())
                                && args.get(2).and_then(Value::as_str) == Some(tag.as_str()) =>
                        {
                            done = Some(Ok(()));
                        }
                        ("on_test_list", Some(Pending::List)) => {
                            let replica = b.avatar.and_then(|a| attr(&b.shadow, a, &["test_list"]));
                            done = Some(if replica == args.first() {
                                Ok(())
                            } else {
                                Err(format!("test_list replica {replica:?}, server {:?}", args.first()))
                            });
                        }
                        ("on_complex_set", Some(Pending::Complex { set_seen })) => {
                            let got = b.avatar.and_then(|a| attr(&b.shadow, a, &["complex", "key1", "key2"]));
                            if got == Some(&complex_expected()) {
                                *set_seen = true;
                            } else {
                                done = Some(Err(format!("complex.key1.key2 replica {got:?}")));
                            }
                        }
                        ("on_complex_clear", Some(Pending::Complex { set_seen })) => {
                            let got = b.avatar.and_then(|a| attr(&b.shadow, a, &["complex"]));
                            let empty = matches!(got, Some(Value::Map(m)) if m.is_empty());
                            done = Some(if *set_seen && empty {
                                Ok(())
                            } else {
                                Err(format!("complex after clear: {got:?} (set seen: {set_seen})"))
                            });
                        }
                        ("on_test_aoi", Some(Pending::Aoi)) => {
                            let tester = id_arg(args.first());
                            let known = tester.is_some_and(|t| b.shadow.contains_key(&t));
                            done = Some(if known { Ok(()) } else { Err(format!("AOI tester {tester:?} never shown")) });
                        }
                        ("on_mails", Some(Pending::Mail(tag))) => {
                            let found = matches!(args.first(), Some(Value::List(l)) if l.iter().any(|v| v.as_str() == Some(tag.as_str())));
                            done = Some(if found {
                                Ok(())
                            } else {
                                Err(format!("mail {tag} missing from {:?}", args.first()))
                            });
                        }
                        ("call_all_plz_echo", _) => {
                            // Answer whoever asks, busy or not (the asker counts us), if it is
                            // still shown to us.
                            if let (Some(from), Some(me)) =
                                (id_arg(args.first()).filter(|f| b.shadow.contains_key(f)), b.avatar)
                            {
                                call(&mut net, i, from, "call_all_echo", vec![Value::id(me)], &mut events);
                            }
                        }
                        ("on_test_call_all", Some(Pending::CallAll)) => {
                            // All answered (n), or some went away meanwhile (-left, n): fine as
                            // long as not everybody, ourselves included, stayed silent.
                            let ok = match (int(0), int(1)) {
                                (Some(n), None) => n >= 1,
                                (Some(missing), Some(n)) => -missing < n,
                                _ => false,
                            };
                            done = Some(if ok { Ok(()) } else { Err(format!("call-all answers: {args:?}")) });
                        }
                        ("on_bump", Some(Pending::Bump(n))) => {
                            done = Some(if int(0) == Some(*n) {
                                b.counter = *n;
                                b.acked.push_back((now, *n));
                                // Only what may still be checked is kept: an entry goes once a
                                // newer one is old enough to be checked in its place.
                                while b.acked.get(1).is_some_and(|(t, _)| now.duration_since(*t) > save_interval * 4) {
                                    b.acked.pop_front();
                                }
                                Ok(())
                            } else {
                                Err(format!("on_bump({:?}), sent {n}", int(0)))
                            });
                        }
                        ("on_online", Some(Pending::Online)) => {
                            done = Some(if int(0).is_some_and(|n| n >= 1) {
                                Ok(())
                            } else {
                                Err(format!("online count {:?}", int(0)))
                            });
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
            if let Some(outcome) = done {
                let Some((name, what, since)) = b.pending.take() else {
                    if let Err(e) = outcome {
                        rep.error(format!("bot {} ({}): {e}", first + i, b.name));
                    }
                    continue;
                };
                b.chaos.outcome(&rep.live().kill_times(), since, now, outcome.is_ok());
                match outcome {
                    Ok(()) => {
                        rep.ok(name, u64::try_from(now.duration_since(since).as_micros()).unwrap_or(u64::MAX));
                        rep.recovered(&mut b.next_kill, since, now);
                    }
                    Err(e) => {
                        let call = e.starts_with(SERVER_ERROR);
                        let why = format!("bot {} ({}): {name}: expected {what:?}: {e}", first + i, b.name);
                        rep.fail_after(name, why, since, now, call);
                    }
                }
                let delay = Duration::from_secs_f64(gap * rng.unit());
                schedule.push(Reverse((now + delay, i)));
            }
        }
    }
    let kills = rep.live().kill_times();
    if rep.live().chaos {
        let mut stats = std::mem::take(&mut rep.chaos);
        for b in &bots {
            b.chaos.add_to(&kills, &mut stats);
        }
        rep.chaos = stats;
    }
    Ok(rep)
}
