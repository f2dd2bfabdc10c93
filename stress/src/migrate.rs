//! Scenario `migrate`, against `demo/testgame`: every bot's player hops to another game's
//! arena `--rate` times a second (a migration each time) and sends a numbered `seq` call
//! before each hop. Latency is from the `hop` call until the client sees the new arena created
//! (the entity has moved, rebuilt and entered the space). Errors: a server error, a
//! disconnect, a `seq` reply out of order or missing, a hop not done within the grace period.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use oxworld_client::Dial;
use oxworld_client::botnet::{BotEvent, BotNet};
use oxworld_net::client_proto::{ClientMsg, ServerMsg};
use oxworld_net::{Id, Value, method_id};

use crate::RECONNECT_DELAY;
use crate::report::{Live, Report};
use crate::{ANSWER_GRACE, LOGIN_TIMEOUT};

#[derive(Default)]
struct Hopper {
    player: Option<Id>,
    /// Kind of the arena the player is in (the game id; 0: the nil space).
    kind: i64,
    /// When the hop under way was sent.
    hop_sent: Option<Instant>,
    seq: i64,
    outstanding: VecDeque<(i64, Instant)>,
    closed: bool,
}

/// Runs bots `first..first+count` for `duration`; `calls` = hops, `replies` = hops completed.
pub(crate) fn run_migrate(
    gates: &[Dial],
    first: usize,
    count: usize,
    duration: Duration,
    rate: f64,
    live: Arc<Live>,
) -> anyhow::Result<Report> {
    let mut net = BotNet::new()?;
    let mut rep = Report::new(live);
    let mut bots: Vec<Hopper> = Vec::with_capacity(count);
    let start = Instant::now();
    let send_until = start + duration;
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut schedule: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut events = Vec::new();
    for i in 0..count {
        let dial = &gates[(first + i) % gates.len()];
        if let Err(e) = net.connect(dial) {
            bail!("bot {}: connect to {}: {e}", first + i, dial.addr);
        }
        bots.push(Hopper::default());
        schedule.push(Reverse((start + interval.mul_f64(i as f64 / count.max(1) as f64), i)));
    }
    loop {
        let now = Instant::now();
        let idle = bots.iter().all(|b| b.closed || (b.hop_sent.is_none() && b.outstanding.is_empty()));
        if now >= send_until + ANSWER_GRACE || (now >= send_until && idle) || rep.live().stopped() {
            break;
        }
        while let Some(&Reverse((due, i))) = schedule.peek() {
            if due > now || now >= send_until {
                break;
            }
            schedule.pop();
            let b = &mut bots[i];
            if b.closed {
                continue;
            }
            match b.player {
                Some(p) if b.hop_sent.is_none() => {
                    b.seq += 1;
                    b.outstanding.push_back((b.seq, now));
                    net.send(
                        i,
                        &ClientMsg::Call { target: p, method: method_id("seq"), args: vec![Value::Int(b.seq)] },
                        &mut events,
                    );
                    net.send(i, &ClientMsg::Call { target: p, method: method_id("hop"), args: vec![] }, &mut events);
                    b.hop_sent = Some(now);
                    rep.calls += 1;
                }
                None if now.duration_since(start) > LOGIN_TIMEOUT => {
                    rep.error(format!("bot {}: no player after {LOGIN_TIMEOUT:?}", first + i));
                    b.closed = true;
                    net.close(i);
                    continue;
                }
                _ => {}
            }
            schedule.push(Reverse(((due + interval).max(now), i)));
        }
        let wake = schedule.peek().map(|Reverse((t, _))| *t).unwrap_or(now + Duration::from_millis(100));
        net.poll(wake.saturating_duration_since(Instant::now()).min(Duration::from_millis(100)), &mut events)?;
        let now = Instant::now();
        for ev in std::mem::take(&mut events) {
            match ev {
                BotEvent::Connected(_) => {}
                BotEvent::Message(i, ServerMsg::CreateEntity { is_player: true, id, .. }) => bots[i].player = Some(id),
                BotEvent::Message(i, ServerMsg::CreateEntity { type_name, attrs, .. }) if type_name == "Arena" => {
                    let b = &mut bots[i];
                    let kind = match &attrs {
                        Value::Map(m) => m.get("_kind").and_then(Value::as_int).unwrap_or(-1),
                        _ => -1,
                    };
                    if kind != b.kind {
                        b.kind = kind;
                        if let Some(sent) = b.hop_sent.take() {
                            rep.replies += 1;
                            let us = u64::try_from(now.duration_since(sent).as_micros()).unwrap_or(u64::MAX);
                            rep.ok("hop", us);
                        }
                    }
                }
                BotEvent::Message(i, ServerMsg::Call { method, args, .. }) if method == "seq_reply" => {
                    let b = &mut bots[i];
                    let got = args.first().and_then(Value::as_int);
                    match b.outstanding.pop_front() {
                        Some((want, sent)) if Some(want) == got => {
                            rep.ok("seq", u64::try_from(now.duration_since(sent).as_micros()).unwrap_or(u64::MAX));
                        }
                        want => rep.fail(
                            "seq",
                            format!(
                                "bot {}: seq: reply {got:?}, expected {:?} (lost, duplicated or reordered)",
                                first + i,
                                want.map(|w| w.0)
                            ),
                        ),
                    }
                }
                BotEvent::Message(i, ServerMsg::DestroyEntity { id }) if Some(id) == bots[i].player => {
                    rep.error(format!("bot {}: its player was destroyed", first + i));
                }
                BotEvent::Message(i, ServerMsg::Error { code, message, .. }) => {
                    rep.error(format!("bot {}: server error {code}: {message}", first + i));
                }
                BotEvent::Message(..) => {}
                BotEvent::Closed(i, reason) => {
                    if rep.live().reconnect {
                        net.reconnect_after(i, &gates[(first + i) % gates.len()], RECONNECT_DELAY);
                        bots[i] = Hopper::default();
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
        if b.hop_sent.is_some() {
            rep.fail("hop", format!("bot {}: hop: the new arena never appeared", first + i));
        }
        for (seq, _) in &b.outstanding {
            rep.fail("seq", format!("bot {}: seq {seq}: never answered", first + i));
        }
    }
    Ok(rep)
}
