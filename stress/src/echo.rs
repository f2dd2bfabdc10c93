//! Scenario `echo`, against `demo/echo`: every bot connects to a gate from the config (round
//! robin), waits for its boot entity, then calls `echo` `--rate` times per second and checks
//! that every reply carries what it sent, in order. Calls unanswered 5 s after the sending
//! deadline, failed connects and disconnects count as errors.

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
struct Bot {
    player: Option<Id>,
    seq: i64,
    outstanding: VecDeque<(i64, Instant)>,
    closed: bool,
}

pub(crate) const PAYLOAD: &str = "oxworld-echo-payload";

pub(crate) fn run_echo(
    gates: &[Dial],
    first: usize,
    count: usize,
    duration: Duration,
    rate: f64,
    live: Arc<Live>,
) -> anyhow::Result<Report> {
    let mut net = BotNet::new()?;
    let mut rep = Report::new(live);
    let mut bots: Vec<Bot> = Vec::with_capacity(count);
    let start = Instant::now();
    let send_until = start + duration;
    let hard_end = send_until + ANSWER_GRACE;
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut schedule: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut events = Vec::new();
    for i in 0..count {
        let dial = &gates[(first + i) % gates.len()];
        match net.connect(dial) {
            Ok(b) => debug_assert_eq!(b, i),
            Err(e) => bail!("bot {}: connect to {}: {e}", first + i, dial.addr),
        }
        bots.push(Bot::default());
        // Spread the first calls over one interval so the bots do not fire in lockstep.
        let offset = interval.mul_f64(i as f64 / count.max(1) as f64);
        schedule.push(Reverse((start + offset, i)));
    }
    let echo = method_id("echo");
    loop {
        let now = Instant::now();
        if now >= hard_end || rep.live().stopped() {
            break;
        }
        if now >= send_until && bots.iter().all(|b| b.closed || b.outstanding.is_empty()) {
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
            if let Some(player) = b.player {
                b.seq += 1;
                b.outstanding.push_back((b.seq, now));
                rep.calls += 1;
                let msg = ClientMsg::Call {
                    target: player,
                    method: echo,
                    args: vec![Value::from(PAYLOAD), Value::Int(b.seq)],
                };
                net.send(i, &msg, &mut events);
            } else if now.duration_since(start) > LOGIN_TIMEOUT {
                rep.error(format!("bot {}: no boot entity after {LOGIN_TIMEOUT:?}", first + i));
                b.closed = true;
                net.close(i);
                continue;
            }
            let next = (due + interval).max(now);
            schedule.push(Reverse((next, i)));
        }
        let wake = schedule.peek().map(|Reverse((t, _))| *t).unwrap_or(hard_end).min(hard_end);
        let timeout = wake.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
        net.poll(timeout, &mut events)?;
        let now = Instant::now();
        for ev in events.drain(..) {
            match ev {
                BotEvent::Connected(_) => {}
                BotEvent::Message(i, ServerMsg::CreateEntity { is_player: true, id, .. }) => bots[i].player = Some(id),
                BotEvent::Message(i, ServerMsg::Call { method, args, .. }) if method == "echo_reply" => {
                    let b = &mut bots[i];
                    let Some((seq, sent)) = b.outstanding.pop_front() else {
                        rep.error(format!("bot {}: reply without a call", first + i));
                        continue;
                    };
                    if args != [Value::from(PAYLOAD), Value::Int(seq)] {
                        rep.fail(
                            "echo",
                            format!("bot {}: echo {seq}: expected [{PAYLOAD:?}, {seq}], got {args:?}", first + i),
                        );
                        continue;
                    }
                    rep.replies += 1;
                    let us = u64::try_from(now.duration_since(sent).as_micros()).unwrap_or(u64::MAX).max(1);
                    rep.ok("echo", us);
                }
                BotEvent::Message(i, ServerMsg::Error { code, message, .. }) => {
                    rep.error(format!("bot {}: server error {code}: {message}", first + i));
                }
                BotEvent::Message(..) => {}
                BotEvent::Closed(i, reason) => {
                    if rep.live().reconnect {
                        net.reconnect_after(i, &gates[(first + i) % gates.len()], RECONNECT_DELAY);
                        // Calls in flight are gone with the connection.
                        bots[i] = Bot::default();
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
                rep.fail(
                    "echo",
                    format!("bot {}: echo {seq}: no reply within {ANSWER_GRACE:?} after the run", first + i),
                );
            }
        }
        if b.player.is_none() && !b.closed {
            rep.error(format!("bot {}: never got its boot entity", first + i));
        }
    }
    Ok(rep)
}
