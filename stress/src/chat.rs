//! Scenario `chat`, against `demo/chatroom`: every bot registers (or finds its account taken
//! from an earlier run) and logs in as `s<n>` with the password `stress`, lands in room `1`
//! with everybody else, then sends a chat line every 1-3 s (uniformly, so `--rate` is ignored).
//! Latency is until the bot's own line comes back through the room; every other bot's line it
//! receives counts as a delivery. Errors: a refused login, a server error, a disconnect, an own
//! line lost, duplicated or out of order, lines unanswered at the end.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use oxworld_client::Dial;
use oxworld_client::botnet::{BotEvent, BotNet};
use oxworld_net::client_proto::ServerMsg;
use oxworld_net::{Id, Value};

use crate::ANSWER_GRACE;
use crate::RECONNECT_DELAY;
use crate::report::{Live, Report, Rng, call};

/// Logging in hashes a password on the game (Argon2): allow for a queue of them at start.
const CHAT_LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
const PASSWORD: &str = "stress";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    Registering,
    LoggingIn,
    Chatting,
}

struct ChatBot {
    name: String,
    stage: Stage,
    player: Option<Id>,
    seq: u64,
    outstanding: VecDeque<(u64, Instant)>,
    closed: bool,
}

/// Runs bots `first..first+count` for `duration` of chatting; returns what they measured
/// (`calls` = lines sent, `replies` = own lines back, `deliveries` = others' lines).
pub(crate) fn run_chat(
    gates: &[Dial],
    first: usize,
    count: usize,
    duration: Duration,
    live: Arc<Live>,
) -> anyhow::Result<Report> {
    let mut net = BotNet::new()?;
    let mut rep = Report::new(live);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (first as u64 + 1));
    let mut bots = Vec::with_capacity(count);
    for i in 0..count {
        let dial = &gates[(first + i) % gates.len()];
        if let Err(e) = net.connect(dial) {
            bail!("bot {}: connect to {}: {e}", first + i, dial.addr);
        }
        bots.push(ChatBot {
            name: format!("s{}", first + i),
            stage: Stage::Connecting,
            player: None,
            seq: 0,
            outstanding: VecDeque::new(),
            closed: false,
        });
    }
    let start = Instant::now();
    let mut schedule: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut events = Vec::new();
    // Sending starts when every bot is in (or at the login deadline).
    let mut send_until: Option<Instant> = None;
    let mut sent_marked = false;
    loop {
        let now = Instant::now();
        if send_until.is_none()
            && (bots.iter().all(|b| b.closed || b.stage == Stage::Chatting)
                || now.duration_since(start) > CHAT_LOGIN_TIMEOUT)
        {
            send_until = Some(now + duration);
            rep.live().began_sending();
            for (i, b) in bots.iter_mut().enumerate() {
                if b.stage != Stage::Chatting && !b.closed {
                    rep.error(format!("bot {}: not logged in after {CHAT_LOGIN_TIMEOUT:?} ({:?})", first + i, b.stage));
                    b.closed = true;
                    net.close(i);
                    continue;
                }
                schedule.push(Reverse((now + Duration::from_secs_f64(1.0 + 2.0 * rng.unit()), i)));
            }
        }
        if !sent_marked && send_until.is_some_and(|u| now >= u) {
            sent_marked = true;
            rep.live().done_sending();
        }
        if rep.live().stopped() {
            break;
        }
        if let Some(until) = send_until {
            if now >= until + ANSWER_GRACE
                || (now >= until && bots.iter().all(|b| b.closed || b.outstanding.is_empty()))
            {
                break;
            }
            while let Some(&Reverse((due, i))) = schedule.peek() {
                if due > now || now >= until {
                    break;
                }
                schedule.pop();
                let b = &mut bots[i];
                let Some(player) = b.player.filter(|_| !b.closed) else { continue };
                b.seq += 1;
                b.outstanding.push_back((b.seq, now));
                rep.calls += 1;
                let line = format!("c {} {}", b.seq, b.name);
                call(&mut net, i, player, "send_chat", vec![Value::from(line.as_str())], &mut events);
                schedule.push(Reverse((now + Duration::from_secs_f64(1.0 + 2.0 * rng.unit()), i)));
            }
        }
        let wake = schedule.peek().map(|Reverse((t, _))| *t).unwrap_or(now + Duration::from_millis(100));
        net.poll(wake.saturating_duration_since(Instant::now()).min(Duration::from_millis(100)), &mut events)?;
        let now = Instant::now();
        // Sends below may report closes into `events`: handled on the next turn.
        for ev in std::mem::take(&mut events) {
            match ev {
                BotEvent::Connected(_) => {}
                BotEvent::Message(i, ServerMsg::CreateEntity { is_player: true, id, type_name, .. }) => {
                    let b = &mut bots[i];
                    b.player = Some(id);
                    if type_name == "Account" && b.stage == Stage::Connecting {
                        b.stage = Stage::Registering;
                        let args = vec![Value::from(b.name.as_str()), Value::from(PASSWORD)];
                        call(&mut net, i, id, "register", args, &mut events);
                    } else if type_name == "Avatar" {
                        b.stage = Stage::Chatting;
                    }
                }
                BotEvent::Message(i, ServerMsg::Call { method, args, .. }) => {
                    let b = &mut bots[i];
                    match method.as_str() {
                        "on_recv_chat" => {
                            let text = args.get(1).and_then(Value::as_str).unwrap_or("");
                            let mut words = text.split(' ');
                            let (seq, from) = (words.nth(1).and_then(|s| s.parse::<u64>().ok()), words.next());
                            if from != Some(b.name.as_str()) {
                                rep.deliveries += 1;
                                continue;
                            }
                            match (b.outstanding.pop_front(), seq) {
                                (Some((want, sent)), Some(got)) if want == got => {
                                    rep.replies += 1;
                                    let us = u64::try_from(now.duration_since(sent).as_micros()).unwrap_or(u64::MAX);
                                    rep.ok("chat", us);
                                }
                                (w, g) => rep.fail(
                                    "chat",
                                    format!(
                                        "bot {}: chat: own line {g:?} came back, expected {:?}",
                                        first + i,
                                        w.map(|w| w.0)
                                    ),
                                ),
                            }
                        }
                        "show_info" if b.stage == Stage::Registering => {
                            // Registered: log in.
                            b.stage = Stage::LoggingIn;
                            let args = vec![Value::from(b.name.as_str()), Value::from(PASSWORD)];
                            if let Some(p) = b.player {
                                call(&mut net, i, p, "login", args, &mut events);
                            }
                        }
                        "show_error" if b.stage == Stage::Registering => {
                            // Taken by an earlier run: log in with the same password.
                            b.stage = Stage::LoggingIn;
                            let args = vec![Value::from(b.name.as_str()), Value::from(PASSWORD)];
                            if let Some(p) = b.player {
                                call(&mut net, i, p, "login", args, &mut events);
                            }
                        }
                        "show_error" => {
                            let why = args.first().and_then(Value::as_str).unwrap_or("").to_owned();
                            rep.error(format!("bot {} ({:?}): {why}", first + i, b.stage));
                        }
                        _ => {}
                    }
                }
                BotEvent::Message(i, ServerMsg::Error { code, message, .. }) => {
                    rep.error(format!("bot {}: server error {code}: {message}", first + i));
                }
                BotEvent::Message(..) => {}
                BotEvent::Closed(i, reason) => {
                    if rep.live().reconnect {
                        net.reconnect_after(i, &gates[(first + i) % gates.len()], RECONNECT_DELAY);
                        let b = &mut bots[i];
                        b.stage = Stage::Connecting;
                        b.player = None;
                        b.outstanding.clear();
                        rep.ok("reconnect", 1);
                    } else {
                        bots[i].closed = true;
                        rep.error(format!("bot {}: disconnected: {reason}", first + i));
                    }
                }
            }
        }
    }
    for (i, b) in bots.iter().enumerate() {
        if !b.outstanding.is_empty() {
            for (seq, _) in &b.outstanding {
                rep.fail("chat", format!("bot {}: chat: own line {seq} never came back", first + i));
            }
        }
    }
    Ok(rep)
}
