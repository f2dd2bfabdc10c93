//! Scenario `crowd`, against `demo/testgame`: every bot logs in (`crowd<n>`), joins the one
//! crowd space and walks at 10 Hz by client-driven moves (`ClientMsg::Move`), spread so each
//! sees about 30 others (AOI radius 100). Each move carries its send time (tenths of a
//! millisecond since the run started, in the unused `y` coordinate), so every position update a
//! bot receives about a neighbour gives a delivery latency (action `position`; it includes the
//! game's position-sync batching, 100 ms by default). At the end the bots stop, wait for the
//! last syncs, and check that what each one sees matches the true positions (action `aoi`):
//! every bot within 99 units is shown, none beyond 101.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use oxworld_client::Dial;
use oxworld_client::botnet::{BotEvent, BotNet};
use oxworld_net::client_proto::{ClientMsg, Pos, ServerMsg};
use oxworld_net::{Id, Value, method_id};

use crate::RECONNECT_DELAY;
use crate::report::{Live, Report, Rng};

const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
const STEP: Duration = Duration::from_millis(100);
const RADIUS: f32 = 100.0;
/// Time for the last moves to be synced and applied before the AOI check.
const SETTLE: Duration = Duration::from_millis(1500);

/// Final positions of every bot, shared by the bot threads for the AOI check.
pub(crate) type Board = Arc<Mutex<HashMap<Id, (f32, f32)>>>;

struct Walker {
    name: String,
    avatar: Option<Id>,
    walking: bool,
    x: f32,
    z: f32,
    seen: HashSet<Id>,
    closed: bool,
    login_sent: Instant,
}

/// Runs bots `first..first+count`; `total` bots take part (for the area and the check).
pub(crate) fn run_crowd(
    gates: &[Dial],
    first: usize,
    count: usize,
    total: usize,
    duration: Duration,
    board: Board,
    live: Arc<Live>,
) -> anyhow::Result<Report> {
    let mut net = BotNet::new()?;
    let mut rep = Report::new(live);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((first as u64 + 7) << 17));
    // About 30 neighbours each: density 30 / (pi r^2).
    let side = ((total.max(1) as f32) * std::f32::consts::PI * RADIUS * RADIUS / 30.0).sqrt().max(2.0 * RADIUS);
    let start = Instant::now();
    let tenths = |t: Instant| (t.duration_since(start).as_micros() / 100) as f32;
    let mut bots = Vec::with_capacity(count);
    for i in 0..count {
        let dial = &gates[(first + i) % gates.len()];
        if let Err(e) = net.connect(dial) {
            bail!("bot {}: connect to {}: {e}", first + i, dial.addr);
        }
        bots.push(Walker {
            name: format!("crowd{}", first + i),
            avatar: None,
            walking: false,
            x: rng.unit() as f32 * side,
            z: rng.unit() as f32 * side,
            seen: HashSet::new(),
            closed: false,
            login_sent: start,
        });
    }
    let mut schedule: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut events = Vec::new();
    let mut walk_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if rep.live().stopped() {
            return Ok(rep);
        }
        if walk_until.is_none()
            && (bots.iter().all(|b| b.closed || b.walking) || now.duration_since(start) > LOGIN_TIMEOUT)
        {
            walk_until = Some(now + duration);
            for (i, b) in bots.iter_mut().enumerate() {
                if !b.walking && !b.closed {
                    rep.fail("login", format!("bot {}: not in the crowd after {LOGIN_TIMEOUT:?}", first + i));
                    b.closed = true;
                }
            }
        }
        if walk_until.is_some_and(|u| now >= u + SETTLE) {
            break;
        }
        while let Some(&Reverse((due, i))) = schedule.peek() {
            if due > now {
                break;
            }
            schedule.pop();
            let b = &mut bots[i];
            let (Some(id), false) = (b.avatar, b.closed) else { continue };
            if walk_until.is_some_and(|u| now >= u) {
                continue;
            }
            b.x = (b.x + (rng.unit() as f32 - 0.5) * 10.0).clamp(0.0, side);
            b.z = (b.z + (rng.unit() as f32 - 0.5) * 10.0).clamp(0.0, side);
            let pos = Pos { x: b.x, y: tenths(now), z: b.z, yaw: 0.0 };
            net.send(i, &ClientMsg::Move { id, pos }, &mut events);
            schedule.push(Reverse((due + STEP, i)));
        }
        net.poll(Duration::from_millis(10), &mut events)?;
        let now = Instant::now();
        for ev in std::mem::take(&mut events) {
            let (i, msg) = match ev {
                BotEvent::Connected(_) => continue,
                BotEvent::Closed(i, reason) => {
                    if rep.live().reconnect {
                        net.reconnect_after(i, &gates[(first + i) % gates.len()], RECONNECT_DELAY);
                        let b = &mut bots[i];
                        b.avatar = None;
                        b.walking = false;
                        b.seen.clear();
                        rep.ok("reconnect", 1);
                    } else {
                        bots[i].closed = true;
                        rep.error(format!("bot {}: disconnected: {reason}", first + i));
                    }
                    continue;
                }
                BotEvent::Message(i, m) => (i, m),
            };
            let b = &mut bots[i];
            match msg {
                ServerMsg::CreateEntity { is_player: true, id, type_name, .. } if type_name == "Account" => {
                    b.login_sent = now;
                    let args = vec![Value::from(b.name.as_str()), Value::from("123456")];
                    net.send(i, &ClientMsg::Call { target: id, method: method_id("login"), args }, &mut events);
                }
                ServerMsg::CreateEntity { is_player: true, id, type_name, .. } if type_name == "Avatar" => {
                    b.avatar = Some(id);
                    rep.ok("login", u64::try_from(now.duration_since(b.login_sent).as_micros()).unwrap_or(u64::MAX));
                    net.send(
                        i,
                        &ClientMsg::Call { target: id, method: method_id("join_crowd"), args: vec![] },
                        &mut events,
                    );
                }
                ServerMsg::CreateEntity { is_player: false, id, type_name, .. } if type_name == "Avatar" => {
                    b.seen.insert(id);
                }
                ServerMsg::DestroyEntity { id } => {
                    b.seen.remove(&id);
                }
                ServerMsg::Call { method, args, .. }
                    if method == "entered" && args.first().and_then(Value::as_int) == Some(1000) && !b.walking =>
                {
                    b.walking = true;
                    schedule.push(Reverse((now, i)));
                }
                ServerMsg::Positions { entries } => {
                    let t = tenths(now);
                    for (id, pos) in entries {
                        if Some(id) != b.avatar && pos.y > 0.0 {
                            rep.ok("position", ((t - pos.y).max(0.0) as u64) * 100);
                        }
                    }
                }
                ServerMsg::Error { message, .. } => rep.error(format!("bot {}: server error: {message}", first + i)),
                _ => {}
            }
        }
    }
    // The AOI check: publish our final positions, wait for everybody's, compare.
    {
        let mut board = board.lock().map_err(|_| anyhow::anyhow!("board poisoned"))?;
        for b in bots.iter().filter(|b| b.walking && !b.closed) {
            if let Some(id) = b.avatar {
                board.insert(id, (b.x, b.z));
            }
        }
    }
    let walking = bots.iter().filter(|b| b.walking && !b.closed).count();
    let deadline = Instant::now() + Duration::from_secs(10);
    let all = loop {
        let n = board.lock().map(|b| b.len()).unwrap_or(0);
        if n >= total.saturating_sub(count - walking) || Instant::now() >= deadline {
            break board.lock().map(|b| b.clone()).unwrap_or_default();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for (i, b) in bots.iter().enumerate().filter(|(_, b)| b.walking && !b.closed) {
        let Some(me) = b.avatar else { continue };
        let d = |(x, z): (f32, f32)| ((x - b.x).powi(2) + (z - b.z).powi(2)).sqrt();
        let must: Vec<Id> =
            all.iter().filter(|(id, p)| **id != me && d(**p) < RADIUS - 1.0).map(|(id, _)| *id).collect();
        let missing = must.iter().filter(|id| !b.seen.contains(id)).count();
        let extra = b.seen.iter().filter(|id| all.get(id).is_some_and(|p| d(*p) > RADIUS + 1.0)).count();
        if missing == 0 && extra == 0 {
            rep.ok("aoi", 1);
        } else {
            rep.fail(
                "aoi",
                format!(
                    "bot {}: sees {} of {} bots in range, and {extra} out of range",
                    first + i,
                    must.len() - missing,
                    must.len()
                ),
            );
        }
    }
    Ok(rep)
}
