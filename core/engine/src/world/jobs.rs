//! Work that must not run on the game loop (password hashing, path finding, anything that
//! takes milliseconds): entity code hands a closure to [`Ctx::run_off_loop`], the game process
//! runs it on its job threads, and the result comes back as a call of a method of the entity
//! that asked (by name, so it follows the entity if it migrated). Sans-IO like the store: jobs
//! are queued with a ticket, [`World::take_jobs`] hands them out, [`World::job_done`] takes
//! the results. Bounded: past [`MAX_JOBS_IN_FLIGHT`] a job is answered at once with an error.

use std::time::Instant;

use oxworld_net::msg::Caller;
use oxworld_net::{Id, Value};

use super::{Ctx, LocalOp, World};
use crate::world::persist::StoreCallError;

/// Jobs one game may have queued or running at once; past it `run_off_loop` answers at once
/// with the error "too many jobs in flight".
pub const MAX_JOBS_IN_FLIGHT: usize = 10_000;

/// One job: runs on a job thread, returns a value or an error message.
pub type JobFn = Box<dyn FnOnce() -> Result<Value, String> + Send>;

/// Who gets a job's result: `method` of `entity`, with `echo` first.
pub(crate) struct JobWaiter {
    entity: Id,
    method: u32,
    echo: Vec<Value>,
}

/// Jobs of one world.
#[derive(Default)]
pub(crate) struct JobState {
    next_ticket: u64,
    outgoing: Vec<(u64, JobFn)>,
    waiting: rustc_hash::FxHashMap<u64, JobWaiter>,
    /// Answered with an error on the next hand-out (over the bound).
    refused: Vec<u64>,
}

impl JobState {
    /// True while jobs are queued or running (a freeze waits for them).
    pub(crate) fn pending(&self) -> bool {
        !self.waiting.is_empty()
    }
}

impl Ctx<'_> {
    /// Runs `work` off the game loop; then calls `reply(echo..., result or nil, error or nil)`
    /// on this entity. `work` must not touch the world (it gets nothing of it): copy in what
    /// it needs.
    pub fn run_off_loop(
        &mut self,
        work: impl FnOnce() -> Result<Value, String> + Send + 'static,
        reply: &str,
        echo: Vec<Value>,
    ) -> Result<(), StoreCallError> {
        let method = self.reply_method(reply)?;
        let jobs = &mut self.core.jobs;
        jobs.next_ticket += 1;
        let ticket = jobs.next_ticket;
        jobs.waiting.insert(ticket, JobWaiter { entity: self.id, method, echo });
        if jobs.waiting.len() > MAX_JOBS_IN_FLIGHT {
            jobs.refused.push(ticket);
        } else {
            jobs.outgoing.push((ticket, Box::new(work)));
        }
        Ok(())
    }
}

impl World {
    /// Takes the jobs to run, each with its ticket for [`World::job_done`]. Jobs refused for
    /// the bound are answered here first.
    pub fn take_jobs(&mut self) -> Vec<(u64, JobFn)> {
        for ticket in std::mem::take(&mut self.core.jobs.refused) {
            let now = self.core.now;
            self.job_done(now, ticket, Err("too many jobs in flight".to_owned()));
        }
        std::mem::take(&mut self.core.jobs.outgoing)
    }

    /// The result of the job with `ticket`: queues the reply call.
    pub fn job_done(&mut self, now: Instant, ticket: u64, result: Result<Value, String>) {
        self.core.now = now;
        let Some(JobWaiter { entity, method, mut echo }) = self.core.jobs.waiting.remove(&ticket) else {
            log::warn!("game{}: job result for unknown ticket {ticket}", self.core.game_id);
            return;
        };
        match result {
            Ok(v) => echo.extend([v, Value::Nil]),
            Err(e) => echo.extend([Value::Nil, Value::from(e.as_str())]),
        }
        // Not counted against the local queue bound: it is bounded by the jobs in flight.
        self.core.local.push_back(LocalOp::Call {
            target: entity,
            method,
            args: echo,
            caller: Caller::Server(Id::NIL),
        });
        self.run_local();
    }

    /// Runs every queued job on this thread (games without job threads: tests, simulations).
    pub fn run_jobs_inline(&mut self, now: Instant) {
        loop {
            let jobs = self.take_jobs();
            if jobs.is_empty() {
                return;
            }
            for (ticket, job) in jobs {
                self.job_done(now, ticket, job());
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use oxworld_net::client_proto::ServerMsg;
    use oxworld_net::msg::{CreateBoot, FromGame};

    use super::*;
    use crate::entity::{Args, CallError, Entity, Expose, Registry};

    #[derive(Default)]
    struct Hasher;
    impl Entity for Hasher {}
    impl Hasher {
        fn done(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
            ctx.call_client("done", args.into_vec());
            Ok(())
        }
    }

    const ME: Id = Id([0xab; 16]);

    fn world(t0: Instant) -> World {
        let mut reg = Registry::new();
        reg.entity("Hasher", Hasher::default).method("done", Expose::Server, Hasher::done);
        reg.boot("Hasher");
        let mut w = World::new(reg, 1, 1, None, 5, (t0, 0)).expect("registry");
        w.handle(t0, CreateBoot { boot: ME, gate: 1, client: Id([0xc1; 16]), token: Id::NIL });
        w.drain_output().for_each(drop);
        w
    }

    fn replies(w: &mut World) -> Vec<Vec<Value>> {
        w.drain_output()
            .filter_map(|(_, m)| match m {
                FromGame::ToClients(tc) => match ServerMsg::decode(&tc.payload).ok()? {
                    ServerMsg::Call { args, .. } => Some(args),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    /// A job's result (or error) comes back as a call of the named method with the echo
    /// first; a freeze waits while jobs run; unknown reply methods are refused at once; past
    /// the bound jobs are answered with an error without running.
    #[test]
    fn jobs_reply_by_method_and_are_bounded() {
        let t0 = Instant::now();
        let mut w = world(t0);
        w.with_entity(ME, Caller::Server(Id::NIL), |_, ctx| {
            ctx.run_off_loop(|| Ok(Value::Int(6 * 7)), "done", vec![Value::from("sum")]).expect("job");
            ctx.run_off_loop(|| Err("no luck".into()), "done", vec![]).expect("job");
            assert!(ctx.run_off_loop(|| Ok(Value::Nil), "nope", vec![]).is_err());
            Ok(())
        });
        assert!(w.has_pending_io(), "a freeze waits for running jobs");
        let jobs = w.take_jobs();
        assert_eq!(jobs.len(), 2);
        // Results may come back in any order; each goes to its own waiter.
        for (t, job) in jobs.into_iter().rev() {
            w.job_done(t0, t, job());
        }
        assert!(!w.has_pending_io());
        assert_eq!(
            replies(&mut w),
            vec![vec![Value::Nil, Value::from("no luck")], vec![Value::from("sum"), Value::Int(42), Value::Nil]]
        );
        w.with_entity(ME, Caller::Server(Id::NIL), |_, ctx| {
            for _ in 0..MAX_JOBS_IN_FLIGHT + 2 {
                ctx.run_off_loop(|| Ok(Value::Nil), "done", vec![]).expect("job");
            }
            Ok(())
        });
        assert_eq!(w.take_jobs().len(), MAX_JOBS_IN_FLIGHT);
        let refused = replies(&mut w);
        assert_eq!(refused.len(), 2);
        assert!(refused.iter().all(|a| a[1] == Value::from("too many jobs in flight")));
    }
}
