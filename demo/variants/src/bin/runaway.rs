//! A game with a runaway entity for tests: `Account.spin` posts itself again forever (a bug a
//! studio could ship); the loop budget must keep the game serving (tests only).

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

    /// Own client: never stops calling itself.
    fn spin(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        self.spins += 1;
        ctx.post("spin", vec![]);
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    let mut reg = Registry::new();
    reg.entity("Account", Account::default).method("echo", Expose::AnyClient, Account::echo).method(
        "spin",
        Expose::OwnClient,
        Account::spin,
    );
    reg.boot("Account");
    oxworld_core::run(reg)
}
