//! A gate's part in losing a game or a dispatcher: the clients whose player ran on a game that
//! is gone are told (`PlayerLost`) and get a fresh boot entity; the logins a restarted
//! dispatcher lost are asked for again.

use log::warn;
use oxworld_net::Id;
use oxworld_net::app::{ConnId, Outbox};
use oxworld_net::client_proto::ServerMsg;
use oxworld_net::msg::ClientConnected;

use super::GateApp;

impl GateApp {
    /// Incarnation `incarnation` of game `game` is gone (every dispatcher says so, each once):
    /// each client whose player entity ran there, as of the first of these reports, is told
    /// (`PlayerLost`), forgets what it knew, and gets a fresh boot entity, as at connect: it
    /// logs in again. Another report of the same incarnation never touches a player placed
    /// after the first.
    pub(super) fn on_game_lost(&mut self, game: u16, incarnation: u64, out: &mut Outbox) {
        let now = self.now;
        let cutoff = match self.games_lost.get(&game) {
            Some(&(inc, first)) if inc == incarnation => first,
            _ => {
                self.games_lost.insert(game, (incarnation, now));
                now
            }
        };
        let lost: Vec<ConnId> = self
            .clients
            .iter()
            .filter(|(_, c)| !c.closing && c.owner.is_some() && c.owner_game == game && c.owner_since <= cutoff)
            .map(|(conn, _)| *conn)
            .collect();
        if lost.is_empty() {
            return;
        }
        warn!(
            "gate{}: game{game} is down; {} clients lost their player and get a new boot entity",
            self.cfg.id,
            lost.len()
        );
        let ms = self.unix_ms(self.now);
        let message = format!("game{game}, which ran this player, is gone; log in again");
        for conn in lost {
            let boot = self.ids.next(ms);
            let Some(c) = self.clients.get_mut(&conn) else { continue };
            let Some(entity) = c.owner.take() else { continue };
            c.boot = boot;
            c.booted = false;
            c.owner_game = 0;
            c.known.clear();
            c.props.clear();
            let (client, token) = (c.id, c.token);
            self.stats.players_lost += 1;
            // After whatever is held for it, at once (rare, and it changes what the client is).
            self.gather.flush_conn(conn, out);
            Self::reply(out, conn, &ServerMsg::PlayerLost { entity, game, message: message.clone() });
            let d = boot.dispatcher_index(self.links.len());
            self.links.send(d, &ClientConnected { boot, gate: self.cfg.id, client, token }, out);
        }
    }

    /// Dispatcher `d`'s link is up (again): the logins it was asked for and that got no player
    /// yet are asked again (a restarted dispatcher lost them; one that stayed up ignores a
    /// boot it already placed).
    pub(super) fn ask_boots_again(&mut self, d: usize, out: &mut Outbox) {
        let n = self.links.len();
        let again: Vec<(Id, Id, Id)> = self
            .clients
            .values()
            .filter(|c| !c.booted && !c.closing && c.resume.is_no() && c.boot.dispatcher_index(n) == d)
            .map(|c| (c.boot, c.id, c.token))
            .collect();
        for (boot, client, token) in again {
            self.links.send(d, &ClientConnected { boot, gate: self.cfg.id, client, token }, out);
        }
    }
}
