//! The dispatcher's part in losing a game: which process linking means the previous one's
//! entities are gone (its incarnation, whether it restored a freeze), telling the gates
//! (`GameLost`), and placing again the logins that game had not created yet.

use log::{info, warn};
use oxworld_net::app::Outbox;
use oxworld_net::msg::{GameLost, Message};

use super::{DispatcherApp, Login};

impl DispatcherApp {
    /// Game `game`'s process is gone with its entities: gates tell the clients whose player
    /// entity ran there.
    pub(super) fn game_lost(&mut self, game: u16, incarnation: u64, out: &mut Outbox) {
        self.lost_pending.remove(&game);
        self.swapping.remove(&game);
        warn!("dispatcher{}: game{game}'s process is gone; telling the gates its players are lost", self.id);
        let lost = GameLost { game, incarnation }.to_frame(0);
        for &c in self.gates.values() {
            out.send(c, &lost);
        }
        self.fail_inflight(oxworld_net::msg::origin_of(oxworld_net::msg::ProcKind::Game, game), out);
        // Logins placed there and not created yet go elsewhere (their clients have no player
        // for the gate to re-boot).
        let again: Vec<Login> =
            self.placed_boots.values().filter(|(g, _)| *g == game).map(|(_, login)| *login).collect();
        for login in again {
            self.placed_boots.remove(&login.boot);
            self.routes.remove(&login.boot);
            info!(
                "dispatcher{}: boot {} of client {} was placed on lost game{game}; placing it again",
                self.id, login.boot, login.client
            );
            self.place_boot(login, out);
        }
    }

    /// Game `game` linked with `incarnation`: a process that restored a freeze continues the
    /// world; so does the same process after a broken link, or the first one this dispatcher
    /// sees outside a hot swap; any other one (a restart, or a fresh process during a hot swap
    /// whose freezing process died) means the previous one's entities are gone.
    pub(super) fn game_linked(&mut self, game: u16, incarnation: u64, restored: bool, out: &mut Outbox) {
        let prev = self.incarnations.insert(game, incarnation);
        let continues = restored || prev == Some(incarnation) || (prev.is_none() && !self.swapping.contains(&game));
        if restored {
            // It continues from its freeze, which holds everything sent before it froze.
            self.clear_inflight(oxworld_net::msg::origin_of(oxworld_net::msg::ProcKind::Game, game));
        }
        if continues {
            self.lost_pending.remove(&game);
        } else {
            self.game_lost(game, prev.unwrap_or(0), out);
        }
    }
}
