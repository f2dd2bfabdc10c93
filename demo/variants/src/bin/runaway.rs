//! A game with buggy entities for tests: `Account.spin` posts itself again forever and
//! `Account.crash` panics (bugs a studio could ship); the loop budget and the per-handler panic
//! boundary must keep the game serving everyone else (tests only).

use oxworld_core::{Args, CallError, Ctx, Entity, Expose, Registry};

#[derive(Default)]
struct Account {
    spins: u64,
}

impl Entity for Account {
    fn on_client_disconnected(&mut self, ctx: &mut Ctx<'_>) {
        ctx.destroy();
    }
}

impl Account {
    /// Any client: answers `echo_reply(args...)`.
    fn echo(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        ctx.call_client("echo_reply", args.into_vec());
        Ok(())
    }

    /// Own client: a bug that panics (an index out of range), after changing an attribute.
    fn crash(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        ctx.attrs().set("half_done", true);
        let slots = [1u8, 2, 3];
        let i = usize::try_from(args.int(0)?).unwrap_or(usize::MAX);
        ctx.call_client("crash_survived", vec![oxworld_core::Value::Int(i64::from(slots[i]))]);
        Ok(())
    }

    /// Own client: never stops calling itself.
    fn spin(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        self.spins += 1;
        ctx.post("spin", vec![]);
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    let mut reg = Registry::new();
    reg.entity("Account", Account::default)
        .method("echo", Expose::AnyClient, Account::echo)
        .method("spin", Expose::OwnClient, Account::spin)
        .method("crash", Expose::OwnClient, Account::crash);
    reg.boot("Account");
    oxworld_core::run(reg)
}
