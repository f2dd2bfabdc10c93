//! Builds of the demo games for tests and benchmarks, never for players: each binary is a demo
//! game with one thing changed, so the demos themselves behave the same under test as in play.
//!
//! - `testgame-no-beacon`: the test game without its `Beacon` type (a new binary whose types
//!   changed: a hot swap to it must fail, naming the type, and keep the freeze).
//! - `testgame-slow-restore`: the test game whose `Beacon` takes [`SLOW_RESTORE`] to restore
//!   (a restart slower than the dispatchers' hold bound).
//! - `runaway`: a game whose `Account.spin` posts itself forever (the loop budget must keep
//!   the game serving and its status record fresh).
//! - `chatroom-filled`: the chatroom whose games each create `OXWORLD_FILL` idle `Npc`s at
//!   start (the hot-swap benchmark of BENCHMARKS.md measures freezes of big worlds with it).

use std::time::Duration;

/// How long `testgame-slow-restore` takes to restore each `Beacon`.
pub const SLOW_RESTORE: Duration = Duration::from_millis(2500);

/// The environment variable `chatroom-filled` reads: `Npc`s per game.
pub const FILL_ENV: &str = "OXWORLD_FILL";
