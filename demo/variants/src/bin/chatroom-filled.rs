//! The chatroom whose games each create `OXWORLD_FILL` idle `Npc`s at start (not on a
//! restore): big worlds for the hot-swap benchmark (benchmarks only).

use oxworld_core::{Ctx, Entity, Registry};
use oxworld_demo_variants::FILL_ENV;

/// The space type; each game's nil space fills the game at creation.
#[derive(Default)]
struct FilledLobby;

impl Entity for FilledLobby {
    fn on_created(&mut self, ctx: &mut Ctx<'_>) {
        let n: usize = std::env::var(FILL_ENV).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        if ctx.id() != ctx.nil_space() {
            return;
        }
        for _ in 0..n {
            if let Err(e) = ctx.create_entity_locally("Npc") {
                log::warn!("filling: {e}");
                return;
            }
        }
        log::info!("game{}: created {n} Npcs", ctx.game_id());
    }
}

fn main() -> std::process::ExitCode {
    let mut reg = Registry::new();
    oxworld_demo_chatroom::register_chat(&mut reg);
    reg.space("Lobby", FilledLobby::default);
    oxworld_core::run(reg)
}
