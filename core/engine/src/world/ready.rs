//! The deployment-ready hook: a game's world hears which dispatcher links, games and gates are
//! up, and runs `on_game_ready` on its nil space once all of the config's are (see
//! ARCHITECTURE.md, "Deployment ready").

use std::time::Instant;

use oxworld_net::Id;
use oxworld_net::msg::Caller;

use super::World;

impl World {
    /// The link to dispatcher index `d` completed its handshake.
    pub fn dispatcher_linked(&mut self, now: Instant, d: usize) {
        self.core.now = now;
        self.core.linked.insert(d);
        self.check_ready();
    }

    /// The config's numbers of games and gates: once every dispatcher link, game and gate is
    /// up, the nil space gets `on_game_ready` (once).
    pub fn set_deployment(&mut self, games: u16, gates: u16) {
        self.core.deployment = Some((games, gates));
    }

    /// True once `on_game_ready` ran (or the world was restored).
    pub fn deployment_ready(&self) -> bool {
        self.core.ready_fired
    }

    pub(super) fn check_ready(&mut self) {
        let Some((games, gates)) = self.core.deployment else { return };
        let c = &self.core;
        let up = !c.ready_fired
            && c.linked.len() >= c.n_dispatchers
            && (1..=games).all(|g| c.online_games.contains(&g))
            && (1..=gates).all(|g| c.online_gates.contains(&g));
        if up {
            self.core.ready_fired = true;
            log::info!("game{}: every dispatcher, game and gate is up: on_game_ready", self.core.game_id);
            let nil = self.core.nil_space;
            self.with_entity(nil, Caller::Server(Id::NIL), |e, ctx| {
                e.on_game_ready(ctx);
                Ok(())
            });
        }
    }
}
