//! `Account`, the boot entity: one per connection until login. Registers users (passwords
//! salted and hashed with Argon2id off the game loop, stored in KVDB as `password$<user>`)
//! and logs them in: the user's `Player` id is made once (`playerID$<user>`), the player is
//! loaded on this game (made at the first login) and takes the client.

use oxworld_core::{Args, CallError, Ctx, Entity, Expose, Id, Registry, Value, id_value};

use crate::{failed, password, valid_name};

/// The boot entity: one per connection, until login hands the client to a player.
#[derive(Default)]
struct Account {
    /// The user of the request under way (kept through migration and freezes by `save`).
    user: Option<String>,
    /// Password typed at login, until checked (never stored).
    password: Option<String>,
    /// The player id this account proposed for a first login.
    proposed: Option<String>,
    /// A request is under way.
    busy: bool,
}

impl Entity for Account {
    fn on_client_disconnected(&mut self, ctx: &mut Ctx<'_>) {
        ctx.destroy();
    }

    /// The player of a returning user could not be loaded (nothing stored: the store was
    /// wiped or the id is corrupt): the user is told, never handed an empty player.
    fn on_call_failed(&mut self, ctx: &mut Ctx<'_>, _target: Id, _method: u32, reason: &str) {
        log::warn!("{}: {reason}", ctx.id());
        self.error(ctx, "your player could not be loaded; ask an operator");
    }

    fn save(&self) -> Value {
        let mut m = std::collections::BTreeMap::new();
        for (key, v) in [("user", &self.user), ("password", &self.password), ("proposed", &self.proposed)] {
            if let Some(v) = v {
                m.insert(key.to_owned(), Value::from(v.as_str()));
            }
        }
        m.insert("busy".to_owned(), Value::Bool(self.busy));
        Value::Map(m)
    }

    fn load(&mut self, state: Value) {
        if let Value::Map(m) = state {
            let s = |key: &str| m.get(key).and_then(Value::as_str).map(str::to_owned);
            self.user = s("user");
            self.password = s("password");
            self.proposed = s("proposed");
            self.busy = m.get("busy").and_then(Value::as_bool).unwrap_or(false);
        }
    }
}

impl Account {
    fn error(&mut self, ctx: &mut Ctx<'_>, msg: &str) {
        self.busy = false;
        self.password = None;
        ctx.call_client("show_error", vec![Value::from(msg)]);
    }

    /// Checks `(user, password)` and marks the account busy; `None` (the client told why)
    /// if the request cannot start.
    fn start(&mut self, ctx: &mut Ctx<'_>, args: &Args) -> Result<Option<(String, String)>, CallError> {
        args.expect_len(2)?;
        let (user, pwd) = (args.str(0)?.to_owned(), args.str(1)?.to_owned());
        if self.busy {
            self.error(ctx, "busy: wait for the previous request");
            return Ok(None);
        }
        if !valid_name(&user) {
            self.error(ctx, "user names are 1-32 characters of A-Z a-z 0-9 _ -");
            return Ok(None);
        }
        if pwd.is_empty() || pwd.len() > password::MAX_PASSWORD {
            self.error(ctx, "passwords are 1-128 bytes");
            return Ok(None);
        }
        self.busy = true;
        Ok(Some((user, pwd)))
    }

    /// Own client: `register(user, password)`; answers `show_info` or `show_error`.
    fn register(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let Some((user, pwd)) = self.start(ctx, &args)? else { return Ok(()) };
        self.user = Some(user);
        ctx.run_off_loop(move || password::hash(&pwd).map(|h| Value::from(h.as_str())), "on_hashed", vec![])
            .map_err(failed)
    }

    /// Job reply: (hash or nil, error or nil).
    fn on_hashed(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let (Some(hash), Some(user)) = (args.get(0)?.as_str(), self.user.clone()) else {
            let why = args.get(1)?.as_str().unwrap_or("no user").to_owned();
            self.error(ctx, &format!("hashing failed: {why}"));
            return Ok(());
        };
        ctx.kvdb_get_or_put(&format!("password${user}"), hash, "on_registered").map_err(failed)
    }

    /// KVDB reply: (key, existing or nil, error or nil).
    fn on_registered(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        if let Some(e) = args.get(2)?.as_str() {
            self.error(ctx, &format!("storage error: {e}"));
        } else if !matches!(args.get(1)?, Value::Nil) {
            self.error(ctx, "that user name is taken");
        } else {
            self.busy = false;
            ctx.call_client("show_info", vec![Value::from("registered; now log in")]);
        }
        Ok(())
    }

    /// Own client: `login(user, password)`; on success the client's player becomes the user's
    /// `Player`.
    fn login(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let Some((user, pwd)) = self.start(ctx, &args)? else { return Ok(()) };
        self.user = Some(user.clone());
        self.password = Some(pwd);
        ctx.kvdb_get(&format!("password${user}"), "on_password").map_err(failed)
    }

    /// KVDB reply: (key, stored hash or nil, error or nil).
    fn on_password(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        if let Some(e) = args.get(2)?.as_str() {
            self.error(ctx, &format!("storage error: {e}"));
            return Ok(());
        }
        let typed = self.password.take().unwrap_or_default();
        let Some(stored) = args.get(1)?.as_str().map(str::to_owned) else {
            self.error(ctx, "wrong user name or password");
            return Ok(());
        };
        ctx.run_off_loop(move || Ok(Value::Bool(password::verify(&typed, &stored))), "on_verified", vec![])
            .map_err(failed)
    }

    /// Job reply: (whether the password matched, error or nil).
    fn on_verified(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let ok = args.get(0)?.as_bool() == Some(true);
        let Some(user) = self.user.clone().filter(|_| ok) else {
            self.error(ctx, "wrong user name or password");
            return Ok(());
        };
        // The user's player id: made once, at the first login.
        let fresh = ctx.new_id().to_string();
        ctx.kvdb_get_or_put(&format!("playerID${user}"), &fresh, "on_player_id").map_err(failed)?;
        self.proposed = Some(fresh);
        Ok(())
    }

    /// KVDB reply: (key, existing id or nil if ours was stored, error or nil).
    fn on_player_id(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        if let Some(e) = args.get(2)?.as_str() {
            self.error(ctx, &format!("storage error: {e}"));
            return Ok(());
        }
        let proposed = self.proposed.take().unwrap_or_default();
        let existing = args.get(1)?.as_str().map(str::to_owned);
        let is_new = existing.is_none();
        let Some(player) = Id::parse_hex(&existing.unwrap_or(proposed)) else {
            self.error(ctx, "stored player id is corrupt");
            return Ok(());
        };
        // Loaded here (never a second copy if it already lives somewhere); the call below
        // waits for the load. A returning user's player must be stored.
        if is_new {
            ctx.load_or_create_entity_on_game(ctx.game_id(), "Player", player).map_err(failed)?;
        } else {
            ctx.load_entity_on_game(ctx.game_id(), "Player", player).map_err(failed)?;
        }
        if ctx.entity(player).is_some_and(|p| p.has_client()) {
            self.error(ctx, "already logged in elsewhere");
            return Ok(());
        }
        let user = self.user.clone().unwrap_or_default();
        let me = ctx.id();
        let game = Value::Int(i64::from(ctx.game_id()));
        ctx.call(player, "attach", vec![id_value(me), game, Value::from(user.as_str())]);
        Ok(())
    }

    /// Server: the player is ready on this game: it takes the client.
    fn attached(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let player = args.id(0)?;
        self.busy = false;
        ctx.give_client_to(player);
        ctx.destroy();
        Ok(())
    }

    /// Server: the player could not be attached (`reason`).
    fn login_failed(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let why = args.str(0)?.to_owned();
        self.error(ctx, &why);
        Ok(())
    }
}

/// Registers `Account`.
pub(crate) fn register(reg: &mut Registry) {
    reg.entity("Account", Account::default)
        .method("register", Expose::OwnClient, Account::register)
        .method("login", Expose::OwnClient, Account::login)
        .method("on_hashed", Expose::Server, Account::on_hashed)
        .method("on_registered", Expose::Server, Account::on_registered)
        .method("on_password", Expose::Server, Account::on_password)
        .method("on_verified", Expose::Server, Account::on_verified)
        .method("on_player_id", Expose::Server, Account::on_player_id)
        .method("attached", Expose::Server, Account::attached)
        .method("login_failed", Expose::Server, Account::login_failed);
}
