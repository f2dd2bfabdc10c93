//! Sharded service entities (`Registry::service`): calls to a service by shard index, by key
//! or to any shard, resolved locally from the game's mirror of the registry; and how a game
//! keeps the registry complete (creating missing shards, the dispatcher keeping the first
//! registration, every game hearing the outcome). See ARCHITECTURE.md, "Services".

use std::time::Instant;

use log::warn;
use oxworld_net::msg::ServiceRegister;
use oxworld_net::{Id, Value};

use super::{Ctx, SERVICE_FALLBACK_CHECKS, SERVICE_REGISTER_TIMEOUT, World};

impl Ctx<'_> {
    fn service(&self, name: &str, shard: u16) -> Option<Id> {
        self.core.services.get(&(name.to_owned(), shard)).map(|(e, _)| *e).filter(|e| !e.is_nil())
    }

    fn shards(&self, name: &str) -> u16 {
        self.reg.type_index(name).map(|t| self.reg.types[t].service_shards).unwrap_or(0)
    }

    /// Calls `method` on shard `shard` of service `name`; false (logged, counted) if that shard
    /// has no provider right now.
    pub fn call_service_shard_index(&mut self, name: &str, shard: u16, method: &str, args: Vec<Value>) -> bool {
        match self.service(name, shard) {
            Some(e) => {
                self.call(e, method, args);
                true
            }
            None => {
                self.core.stats.undeliverable += 1;
                warn!("service {name}#{shard} has no provider; {method} not delivered");
                false
            }
        }
    }

    /// Calls `method` on the shard of service `name` that owns `key` (`fnv1a32(key) % shards`).
    pub fn call_service_shard_key(&mut self, name: &str, key: &str, method: &str, args: Vec<Value>) -> bool {
        let n = self.shards(name).max(1);
        let shard = (oxworld_net::id::fnv1a32(key.as_bytes()) % u32::from(n)) as u16;
        self.call_service_shard_index(name, shard, method, args)
    }

    /// Calls `method` on one shard of service `name` (round robin over the shards).
    pub fn call_service_any(&mut self, name: &str, method: &str, args: Vec<Value>) -> bool {
        let n = self.shards(name).max(1);
        self.core.service_rr = self.core.service_rr.wrapping_add(1);
        let shard = (self.core.service_rr % usize::from(n)) as u16;
        self.call_service_shard_index(name, shard, method, args)
    }

    /// Calls `method` on every shard of service `name`; returns how many were reached.
    pub fn call_service_all(&mut self, name: &str, method: &str, args: Vec<Value>) -> usize {
        (0..self.shards(name)).filter(|&s| self.call_service_shard_index(name, s, method, args.clone())).count()
    }

    /// The entity serving shard `shard` of service `name` right now (GoWorld's
    /// `GetServiceEntityID`, per shard); `None` while that shard has no provider.
    pub fn service_entity(&self, name: &str, shard: u16) -> Option<Id> {
        self.service(name, shard)
    }

    /// How many shards service `name` has (GoWorld's `GetServiceShardCount`); 0 for a name
    /// that is not a registered service.
    pub fn service_shard_count(&self, name: &str) -> u16 {
        self.shards(name)
    }

    /// True when every shard of service `name` has a provider (GoWorld's
    /// `CheckServiceEntitiesReady`); false for a name that is not a service.
    pub fn service_ready(&self, name: &str) -> bool {
        let n = self.shards(name);
        n > 0 && (0..n).all(|s| self.service(name, s).is_some())
    }

    /// The current providers of service `name`, by shard (missing shards left out).
    pub fn service_providers(&self, name: &str) -> Vec<Id> {
        (0..self.shards(name)).filter_map(|s| self.service(name, s)).collect()
    }
}

impl World {
    pub(super) fn on_service_update(&mut self, name: String, shard: u16, entity: Id, game: u16) {
        let key = (name, shard);
        if let Some((mine, _)) = self.core.pending_services.get(&key).copied()
            && !entity.is_nil()
        {
            self.core.pending_services.remove(&key);
            if mine != entity {
                // Another game registered this shard first: ours is redundant.
                self.destroy_entity(mine);
            }
        }
        if entity.is_nil() {
            self.core.services.remove(&key);
        } else {
            self.core.missing_checks.remove(&key);
            self.core.services.insert(key, (entity, game));
        }
    }

    /// Creates the service shards nobody provides. Each missing shard has one designated
    /// creator among the online games (`fnv1a32(name#shard) % games`); if that one has not
    /// delivered after a few checks, every game tries and the dispatcher keeps the first.
    pub(super) fn check_services(&mut self, now: Instant) {
        let games: Vec<u16> = self.core.online_games.iter().copied().collect();
        let types: Vec<(usize, u16)> = self
            .reg
            .types
            .iter()
            .enumerate()
            .filter(|(_, t)| t.service_shards > 0)
            .map(|(i, t)| (i, t.service_shards))
            .collect();
        for (ty, shards) in types {
            let name = self.reg.types[ty].name;
            for shard in 0..shards {
                let key = (name.to_owned(), shard);
                if self.core.services.contains_key(&key) {
                    continue;
                }
                if let Some((_, since)) = self.core.pending_services.get(&key)
                    && now.duration_since(*since) < SERVICE_REGISTER_TIMEOUT
                {
                    continue;
                }
                let misses = self.core.missing_checks.entry(key.clone()).or_insert(0);
                *misses += 1;
                let reg_key = format!("{name}#{shard}");
                let h = oxworld_net::id::fnv1a32(reg_key.as_bytes()) as usize;
                let designated = games.get(h % games.len().max(1)).copied() == Some(self.core.game_id);
                if !designated && *misses < SERVICE_FALLBACK_CHECKS {
                    continue;
                }
                if let Some((old, _)) = self.core.pending_services.remove(&key) {
                    self.destroy_entity(old);
                }
                let id = self.core.ids.next(self.core.unix_ms());
                self.create(ty, id, None);
                self.core.send(id, oxworld_net::msg::EntityCreated { id });
                self.core.pending_services.insert(key, (id, now));
                let d = h % self.core.n_dispatchers;
                self.core.send_idx(d, ServiceRegister { entity: id, name: name.to_owned(), shard });
            }
        }
    }
}
