//! The echo demo game: `Account` (the boot entity) echoes calls back to its client, and relays
//! them through a `Relay` entity created on another game, so tests can see which game answered.

use oxworld_core::{Args, CallError, Ctx, Entity, Expose, Id, Registry, Value, id_value};

/// The boot entity: one per client connection.
#[derive(Default)]
struct Account {
    relay: Option<Id>,
}

impl Entity for Account {
    fn on_client_disconnected(&mut self, ctx: &mut Ctx<'_>) {
        ctx.destroy();
    }

    fn on_destroy(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(r) = self.relay.take() {
            ctx.call(r, "bye", vec![]);
        }
    }
}

impl Account {
    /// Any client: sends the arguments back as `echo_reply`.
    fn echo(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        ctx.call_client("echo_reply", args.into_vec());
        Ok(())
    }

    /// Own client: sleeps `args[0]` milliseconds (at most 1000) on the game's loop, then
    /// answers `nap_reply`: a deliberately slow call, to see it traced and logged
    /// (`slow_call_ms`). A real game never blocks its loop; it hands such work to `ctx.run_off_loop`.
    fn nap(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let ms = args.int(0)?.clamp(0, 1000) as u64;
        std::thread::sleep(std::time::Duration::from_millis(ms));
        ctx.call_client("nap_reply", vec![Value::Int(ms as i64)]);
        Ok(())
    }

    /// Own client: answers `whoami_reply(game_id)`.
    fn whoami(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        ctx.call_client("whoami_reply", vec![Value::Int(i64::from(ctx.game_id()))]);
        Ok(())
    }

    /// Own client: asks a `Relay` on the next online game to answer; the client receives
    /// `relay_echo_reply(game_id_of_relay, args...)`.
    fn relay_echo(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let relay = match self.relay {
            Some(r) => r,
            None => {
                let me = ctx.game_id();
                let games = ctx.online_games();
                let other = games.iter().copied().find(|&g| g > me).or_else(|| games.first().copied()).unwrap_or(me);
                let r = ctx.create_entity_on_game(other, "Relay").map_err(|e| CallError::Failed(e.to_string()))?;
                self.relay = Some(r);
                r
            }
        };
        let mut fwd = vec![id_value(ctx.id())];
        fwd.extend(args.into_vec());
        ctx.call(relay, "relay", fwd);
        Ok(())
    }

    /// Server only: the relay's answer, passed on to the client.
    fn relay_reply(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        ctx.call_client("relay_echo_reply", args.into_vec());
        Ok(())
    }

    /// Server only: never callable by a client (tests check the refusal).
    fn admin_reset(&mut self, _ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        self.relay = None;
        Ok(())
    }
}

/// Answers relayed echoes from the game it lives on.
struct Relay;

impl Entity for Relay {}

impl Relay {
    fn relay(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let from = args.id(0)?;
        let mut reply = vec![Value::Int(i64::from(ctx.game_id()))];
        reply.extend(args.into_vec().into_iter().skip(1));
        ctx.call(from, "relay_reply", reply);
        Ok(())
    }

    fn bye(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        ctx.destroy();
        Ok(())
    }
}

fn registry() -> Registry {
    let mut reg = Registry::new();
    reg.entity("Account", Account::default)
        .method("echo", Expose::AnyClient, Account::echo)
        .method("whoami", Expose::OwnClient, Account::whoami)
        .method("nap", Expose::OwnClient, Account::nap)
        .method("relay_echo", Expose::OwnClient, Account::relay_echo)
        .method("relay_reply", Expose::Server, Account::relay_reply)
        .method("admin_reset", Expose::Server, Account::admin_reset);
    reg.entity("Relay", || Relay).method("relay", Expose::Server, Relay::relay).method(
        "bye",
        Expose::Server,
        Relay::bye,
    );
    reg.boot("Account");
    reg
}

fn main() -> std::process::ExitCode {
    oxworld_core::run(registry())
}
