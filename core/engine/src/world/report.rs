//! What a game's world tells about the cluster and itself: the deployment-ready hook (it hears
//! which dispatcher links, games and gates are up, and runs `on_game_ready` on its nil space
//! once all of the config's are; ARCHITECTURE.md, "Deployment ready") and its metrics.

use std::time::Instant;

use oxworld_net::Id;
use oxworld_net::msg::Caller;

use super::World;
use crate::metrics::{MetricSet, Metrics};

impl World {
    /// Unix milliseconds at `now`, by the clock base the world was made with.
    pub fn unix_ms_at(&self, now: Instant) -> u64 {
        let (start, base) = self.core.clock_base;
        base + u64::try_from(now.saturating_duration_since(start).as_millis()).unwrap_or(0)
    }

    /// The link to dispatcher index `d` completed its handshake.
    pub fn dispatcher_linked(&mut self, now: Instant, d: usize) {
        self.core.now = now;
        self.core.linked.insert(d);
        // The service shards this game provides register again with their registry dispatcher
        // (a restarted one knows none of them; one that stayed up keeps the same answer).
        let mine: Vec<(String, u16, Id)> = self
            .core
            .services
            .iter()
            .filter(|(_, (_, game))| *game == self.core.game_id)
            .map(|((name, shard), (entity, _))| (name.clone(), *shard, *entity))
            .collect();
        for (name, shard, entity) in mine {
            let h = oxworld_net::id::fnv1a32(format!("{name}#{shard}").as_bytes()) as usize;
            if h % self.core.n_dispatchers.max(1) == d {
                self.core.send_idx(d, oxworld_net::msg::ServiceRegister { entity, name, shard });
            }
        }
        // Migrations waiting for an answer of that dispatcher ask again (a restarted one never
        // got the question; one that stayed up answers twice, and the second answer finds
        // nothing waiting: harmless).
        let n = self.core.n_dispatchers.max(1);
        let waiting: Vec<(Id, Id, u16)> = self.core.migrations.iter().map(|(e, (s, _, g))| (*e, *s, *g)).collect();
        for (entity, space, game) in waiting {
            if game == 0 && space.dispatcher_index(n) == d {
                self.core.send(space, oxworld_net::msg::QuerySpace { space, entity });
            } else if game != 0 && entity.dispatcher_index(n) == d {
                self.core.send(entity, oxworld_net::msg::MigrateRequest { entity });
            }
        }
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
            // Service shards are looked for now rather than at the next periodic check (up
            // to a second later): the first clients after a start find them (the test game's
            // first `enter_space`s waited 0.6-1 s in retries without this).
            let now = self.core.now;
            self.core.next_service_check = now + super::SERVICE_CHECK_EVERY;
            self.check_services(now);
        }
    }
}

impl Metrics for World {
    fn metrics(&self, m: &mut MetricSet) {
        let st = &self.core.stats;
        m.counter("game_calls_total", "Calls run or refused by this game's entities", &[], st.calls);
        for (ty, counts) in self.reg.types.iter().zip(&self.core.calls.per_method) {
            for (method, (n, h)) in ty.methods.iter().zip(counts).filter(|(_, (n, _))| *n > 0) {
                let labels = [("type", ty.name), ("method", method.name)];
                m.counter("entity_calls_total", "Calls run, by entity type and method", &labels, *n);
                m.histogram("entity_call_seconds", "Time in the handler, by entity type and method", &labels, h);
            }
        }
        m.counter(
            "slow_calls_total",
            "Client calls that waited and ran longer than slow_call_ms at this game",
            &[],
            self.core.calls.slow_calls,
        );
        m.counter(
            "traced_replies_total",
            "Replies to client calls sent with a trace (sampled by the gate, or slow here)",
            &[],
            self.core.calls.traced_replies,
        );
        for (code, n) in self.core.call_errors.iter().enumerate().filter(|(_, n)| **n > 0) {
            let name = oxworld_net::client_proto::ErrorCode::from_u16(code as u16).map(|c| format!("{c:?}"));
            let name = name.unwrap_or_else(|| code.to_string());
            m.counter("call_errors_total", "Calls answered with an error, by error code", &[("code", &name)], *n);
        }
        m.counter("undeliverable_total", "Calls between entities that found no target", &[], st.undeliverable);
        m.counter("migrations_out_total", "Entities sent to other games", &[], st.migrated_out);
        m.counter("migrations_in_total", "Entities received from other games", &[], st.migrated_in);
        m.counter("local_refused_total", "Local operations refused for a full queue", &[], st.local_refused);
        m.counter("oversized_total", "Messages refused for exceeding the internal frame limit", &[], st.oversized);
        m.counter("panics_total", "Panics caught in entity code", &[], st.panics);
        m.counter("quarantined_total", "Entities destroyed unsaved after a panic", &[], st.quarantined);
        let mut by_type = vec![0u64; self.reg.types.len()];
        for slot in self.entities.values() {
            by_type[slot.ty] += 1;
        }
        for (ty, n) in self.reg.types.iter().zip(by_type) {
            m.gauge("entities", "Live entities of this game, by type", &[("type", ty.name)], n as f64);
        }
        m.gauge("timers", "Live timers", &[], self.core.timers.len() as f64);
        m.gauge(
            "local_queue",
            "Local operations queued for the next loop iterations",
            &[],
            self.core.local.len() as f64,
        );
        m.gauge("store_pending", "Storage operations queued or running", &[], self.core.store.waiting.len() as f64);
        m.gauge("clients_bound", "Entities of this game with a client", &[], self.core.clients.len() as f64);
        m.histogram(
            "aoi_step_seconds",
            "Loop turns with AOI work: who-sees-whom updates and the position sync",
            &[],
            &self.core.calls.aoi_step,
        );
        m.histogram(
            "migration_seconds",
            "Outgoing migrations, from enter_space to the entity sent to its new game",
            &[],
            &self.core.migration_time,
        );
        m.counter(
            "budget_overruns_total",
            "Loop iterations whose local work ran past the per-iteration budget",
            &[],
            self.core.over_budget.count(),
        );
        for (op, h) in &self.core.store.latency {
            m.histogram(
                "store_op_seconds",
                "Storage operations, from hand-out to the store thread to result",
                &[("op", op)],
                h,
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use oxworld_net::msg::FromGame;

    use super::*;
    use crate::entity::{Entity, Registry};

    #[derive(Default)]
    struct Boot;
    impl Entity for Boot {}
    #[derive(Default)]
    struct Svc;
    impl Entity for Svc {}

    #[test]
    fn service_shards_are_created_as_soon_as_the_deployment_is_ready() {
        let mut reg = Registry::new();
        reg.entity("Boot", Boot::default);
        reg.service("Svc", Svc::default, 2);
        reg.boot("Boot");
        let now = Instant::now();
        let mut w = super::super::World::new(reg, 1, 1, None, 7, (now, 1_700_000_000_000)).expect("world");
        w.set_deployment(1, 0);
        w.set_online_games(&[1]);
        w.dispatcher_linked(now, 0);
        assert!(w.deployment_ready());
        // The only game is every shard's designated creator: both register at once, long
        // before the first periodic check a second later.
        let registered: Vec<oxworld_net::msg::ServiceRegister> = w
            .drain_output()
            .filter_map(|(_, m)| match m {
                FromGame::ServiceRegister(r) if r.name == "Svc" => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(registered.len(), 2);
        // The dispatcher confirms them; when its link comes back (it may have restarted and
        // forgotten them), they register again.
        for r in &registered {
            w.handle(
                now,
                oxworld_net::msg::ServiceUpdate { entity: r.entity, game: 1, name: r.name.clone(), shard: r.shard },
            );
        }
        let _ = w.drain_output().count();
        w.dispatcher_linked(now, 0);
        let again: Vec<(Id, u16)> = w
            .drain_output()
            .filter_map(|(_, m)| match m {
                FromGame::ServiceRegister(r) => Some((r.entity, r.shard)),
                _ => None,
            })
            .collect();
        let mut want: Vec<(Id, u16)> = registered.iter().map(|r| (r.entity, r.shard)).collect();
        want.sort();
        let mut again = again;
        again.sort();
        assert_eq!(again, want, "the same shards, the same entities");
    }
}
