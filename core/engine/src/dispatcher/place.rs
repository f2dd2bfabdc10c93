//! Where a dispatcher puts what is created or loaded "anywhere" (the least-loaded live game),
//! and which registration of a service shard wins.

use log::{debug, info, warn};
use oxworld_net::Id;
use oxworld_net::app::Outbox;
use oxworld_net::msg::{Header, Message, ServiceUpdate};

use super::DispatcherApp;

impl DispatcherApp {
    /// A create: routed to the game in its header, or (game 0) to the least-loaded live game,
    /// patched into the header.
    pub(super) fn place_create(&mut self, h: Header, mut frame: Vec<u8>, out: &mut Outbox) {
        let id = h.route;
        if h.seq != 0
            && let Some(g) = self.routes.get(&id).copied().filter(|g| self.is_live(*g))
        {
            // Sent again after a restart of this dispatcher, and created the first time.
            debug!("dispatcher{}: create {id}: it lives on game{g} already; dropped", self.id);
            return self.settle(&frame, out);
        }
        let target = if h.aux == 0 {
            match self.least_loaded() {
                Some(t) => {
                    Header::patch_aux(&mut frame, t);
                    t
                }
                None => {
                    self.stats.undeliverable += 1;
                    warn!("dispatcher{}: create {id} anywhere: no live game", self.id);
                    return self.settle(&frame, out);
                }
            }
        } else {
            h.aux
        };
        self.routes.insert(id, target);
        if let Err(frame) = self.send_game(target, frame, out) {
            self.routes.remove(&id);
            self.stats.undeliverable += 1;
            warn!("dispatcher{}: create {id} on offline game{target} dropped", self.id);
            self.settle(&frame, out);
        }
    }

    /// A load: ignored if the entity lives on a live (or frozen) game already; otherwise the
    /// route is recorded at once (later calls wait at the loading game, a second load finds
    /// it) and the load goes to the game in its header, or the least-loaded one.
    pub(super) fn place_load(&mut self, h: Header, mut frame: Vec<u8>, out: &mut Outbox) {
        let id = h.route;
        if let Some(g) = self.routes.get(&id).copied().filter(|g| self.is_live(*g)) {
            debug!("dispatcher{}: {id} already lives on game{g}; load ignored", self.id);
            return self.settle(&frame, out);
        }
        let target = if h.aux == 0 { self.least_loaded() } else { Some(h.aux).filter(|g| self.is_live(*g)) };
        let Some(target) = target else {
            self.stats.undeliverable += 1;
            warn!("dispatcher{}: load {id}: no live game to load it on", self.id);
            return self.settle(&frame, out);
        };
        Header::patch_aux(&mut frame, target);
        self.routes.insert(id, target);
        if let Err(frame) = self.send_game(target, frame, out) {
            self.routes.remove(&id);
            self.settle(&frame, out);
        }
    }

    /// The first live registration of a shard wins; every game hears the outcome.
    pub(super) fn register_service(&mut self, game: u16, entity: Id, name: String, shard: u16, out: &mut Outbox) {
        let key = (name, shard);
        let winner = match self.services.get(&key) {
            Some(&(e, g)) if self.is_live(g) && e != entity => (e, g),
            _ => {
                self.services.insert(key.clone(), (entity, game));
                info!("dispatcher{}: service {}#{} is {entity} on game{game}", self.id, key.0, key.1);
                (entity, game)
            }
        };
        let update = ServiceUpdate { entity: winner.0, game: winner.1, name: key.0, shard: key.1 }.to_frame(0);
        self.broadcast_games(&update, None, out);
    }
}
