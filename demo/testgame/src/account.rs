//! The testgame's boot entity, `Account`: one per connection until its login hands the client
//! to the user's `Avatar`.

use super::*;

/// The boot entity: one per connection until login.
#[derive(Default)]
pub(crate) struct Account {
    user: Option<String>,
    proposed: Option<String>,
}

impl Entity for Account {
    fn on_created(&mut self, ctx: &mut Ctx<'_>) {
        ctx.attrs().set("hops", 0i64);
    }

    fn on_client_disconnected(&mut self, ctx: &mut Ctx<'_>) {
        ctx.destroy();
    }

    /// The stored avatar could not be loaded: the login fails.
    fn on_call_failed(&mut self, ctx: &mut Ctx<'_>, _target: Id, _method: u32, reason: &str) {
        log::warn!("{}: {reason}", ctx.id());
        ctx.call_client("on_login", vec![Value::Bool(false)]);
    }

    fn on_migrate_in(&mut self, ctx: &mut Ctx<'_>) {
        let n = ctx.attrs().int("hops");
        ctx.attrs().set("hops", n + 1);
    }

    fn save(&self) -> Value {
        let s = |v: &Option<String>| v.as_deref().map(Value::from).unwrap_or(Value::Nil);
        Value::List(vec![s(&self.user), s(&self.proposed)])
    }

    fn load(&mut self, state: Value) {
        if let Value::List(l) = state {
            self.user = l.first().and_then(Value::as_str).map(str::to_owned);
            self.proposed = l.get(1).and_then(Value::as_str).map(str::to_owned);
        }
    }
}

impl Account {
    /// Own client: `seq(n)` answers `seq_reply(n, game)`.
    pub(crate) fn seq(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let n = args.int(0)?;
        ctx.call_client("seq_reply", vec![Value::Int(n), Value::Int(i64::from(ctx.game_id()))]);
        Ok(())
    }

    /// Own client: move to the arena of the next other online game (or of this one).
    pub(crate) fn hop(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        let me = ctx.game_id();
        let games = ctx.online_games();
        let to =
            games.iter().copied().find(|&g| g > me).or_else(|| games.iter().copied().find(|&g| g != me)).unwrap_or(me);
        ctx.kvdb_get(&format!("arena${to}"), "go_arena").map_err(failed)
    }

    /// KVDB reply: (key, arena id or nil, error or nil).
    pub(crate) fn go_arena(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        if let Some(e) = args.get(2)?.as_str() {
            return Err(CallError::Failed(format!("arena lookup: {e}")));
        }
        let space = args.get(1)?.as_str().and_then(Id::parse_hex).ok_or_else(|| failed("no such arena"))?;
        let pos = spot(ctx.id(), ctx.attrs().int("hops"));
        ctx.enter_space(space, pos).map_err(failed)
    }

    /// Own client: `login(user, password)`; answers `on_login(false)` or hands the client to
    /// the user's avatar (which then says `on_login(true)`).
    pub(crate) fn login(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let (user, pwd) = (args.str(0)?.to_owned(), args.str(1)?);
        if pwd != PASSWORD || user.is_empty() || user.len() > 64 {
            ctx.call_client("on_login", vec![Value::Bool(false)]);
            return Ok(());
        }
        let fresh = ctx.new_id().to_string();
        self.user = Some(user.clone());
        self.proposed = Some(fresh.clone());
        ctx.kvdb_get_or_put(&format!("user${user}"), &fresh, "on_avatar_id").map_err(failed)
    }

    /// KVDB reply: (key, existing avatar id or nil if ours was stored, error or nil).
    pub(crate) fn on_avatar_id(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        if args.get(2)?.as_str().is_some() {
            ctx.call_client("on_login", vec![Value::Bool(false)]);
            return Ok(());
        }
        let existing = args.get(1)?.as_str().map(str::to_owned);
        let is_new = existing.is_none();
        let hex = existing.or_else(|| self.proposed.take()).unwrap_or_default();
        let avatar = Id::parse_hex(&hex).ok_or_else(|| failed("stored avatar id is corrupt"))?;
        if is_new {
            ctx.load_or_create_entity_on_game(ctx.game_id(), "Avatar", avatar).map_err(failed)?;
        } else {
            ctx.load_entity_on_game(ctx.game_id(), "Avatar", avatar).map_err(failed)?;
        }
        // Already live on this game with a client (a second login): refused at once, read
        // locally instead of asking the avatar by a call.
        if ctx.entity(avatar).is_some_and(|a| a.has_client()) {
            ctx.call_client("on_login", vec![Value::Bool(false)]);
            return Ok(());
        }
        let name = self.user.clone().unwrap_or_default();
        let me = ctx.id();
        ctx.call(
            avatar,
            "attach",
            vec![id_value(me), Value::Int(i64::from(ctx.game_id())), Value::from(name.as_str())],
        );
        Ok(())
    }

    /// Own client: `on_ready(bool)`: whether this game's nil space heard that every process
    /// of the deployment is up (read locally from the nil space, no call).
    pub(crate) fn ready(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        let nil = ctx.nil_space();
        let ready = ctx.entity(nil).and_then(|e| e.attrs().get("ready").cloned()).unwrap_or(Value::Bool(false));
        ctx.call_client("on_ready", vec![ready]);
        Ok(())
    }

    pub(crate) fn attached(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        ctx.give_client_to(args.id(0)?);
        ctx.destroy();
        Ok(())
    }

    pub(crate) fn login_failed(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        ctx.call_client("on_login", vec![Value::Bool(false)]);
        Ok(())
    }
}
