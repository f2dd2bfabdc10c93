//! The test game whose `Beacon` takes `SLOW_RESTORE` to restore: a restart slower than the
//! dispatchers' hold bound (tests only).

use oxworld_core::{Args, CallError, Ctx, Entity, Expose, Registry};
use oxworld_demo_testgame::Beacon;
use oxworld_demo_variants::SLOW_RESTORE;

/// `Beacon`, but its restore blocks the game for `SLOW_RESTORE`.
#[derive(Default)]
struct SlowBeacon(Beacon);

impl Entity for SlowBeacon {
    fn on_created(&mut self, ctx: &mut Ctx<'_>) {
        self.0.on_created(ctx);
    }

    fn on_restored(&mut self, _ctx: &mut Ctx<'_>) {
        log::warn!("beacon: restoring slowly on purpose ({SLOW_RESTORE:?})");
        std::thread::sleep(SLOW_RESTORE);
    }
}

impl SlowBeacon {
    fn pulse(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        self.0.pulse(ctx, args)
    }
}

fn main() -> std::process::ExitCode {
    let mut reg = Registry::new();
    reg.entity("Beacon", SlowBeacon::default).method("pulse", Expose::Server, SlowBeacon::pulse);
    oxworld_demo_testgame::register_game(&mut reg);
    oxworld_core::run(reg)
}
