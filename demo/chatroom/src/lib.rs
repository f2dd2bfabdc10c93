//! The chatroom demo game (GoWorld's chatroom_demo in our idiom): an `Account` per connection
//! registers and logs in (passwords stored salted and hashed with Argon2id in KVDB), then hands
//! its client to the user's persistent `Avatar`, which chats in rooms built on client filter
//! properties. The room is set once the avatar has its client, so chat arrives without an
//! explicit `/join` (GoWorld's quirk fixed).

use std::collections::BTreeMap;

use oxworld_core::{Args, AttrFlags, CallError, Ctx, Entity, Expose, Id, Registry, Value, id_value};

mod password;

/// Room a new avatar starts in.
const DEFAULT_ROOM: &str = "1";
/// Longest user name, room name and chat line accepted (bytes).
const MAX_NAME: usize = 32;
const MAX_ROOM: usize = 32;
const MAX_CHAT: usize = 512;

fn failed(e: impl std::fmt::Display) -> CallError {
    CallError::Failed(e.to_string())
}

/// Names and rooms: 1..=max characters of `[A-Za-z0-9_-]`.
fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The boot entity: one per connection, until login hands the client to an avatar.
#[derive(Default)]
struct Account {
    /// The login under way: user name (kept through migration and freezes by `save`).
    user: Option<String>,
    /// Password typed at login, until checked (never stored).
    password: Option<String>,
    /// The avatar id this account proposed for a first login.
    proposed: Option<String>,
    busy: bool,
}

impl Entity for Account {
    fn on_client_disconnected(&mut self, ctx: &mut Ctx<'_>) {
        ctx.destroy();
    }

    /// The avatar of a returning user could not be loaded (nothing stored: the store was
    /// wiped or the id is corrupt): the user is told, never handed an empty avatar.
    fn on_call_failed(&mut self, ctx: &mut Ctx<'_>, _target: Id, _method: u32, reason: &str) {
        log::warn!("{}: {reason}", ctx.id());
        self.error(ctx, "your avatar could not be loaded; ask an operator");
    }

    fn save(&self) -> Value {
        let mut m = std::collections::BTreeMap::new();
        if let Some(u) = &self.user {
            m.insert("user".to_owned(), Value::from(u.as_str()));
        }
        if let Some(p) = &self.password {
            m.insert("password".to_owned(), Value::from(p.as_str()));
        }
        if let Some(p) = &self.proposed {
            m.insert("proposed".to_owned(), Value::from(p.as_str()));
        }
        m.insert("busy".to_owned(), Value::Bool(self.busy));
        Value::Map(m)
    }

    fn load(&mut self, state: Value) {
        if let Value::Map(m) = state {
            self.user = m.get("user").and_then(Value::as_str).map(str::to_owned);
            self.password = m.get("password").and_then(Value::as_str).map(str::to_owned);
            self.proposed = m.get("proposed").and_then(Value::as_str).map(str::to_owned);
            self.busy = m.get("busy").and_then(Value::as_bool).unwrap_or(false);
        }
    }
}

impl Account {
    fn info(ctx: &mut Ctx<'_>, msg: &str) {
        ctx.call_client("show_info", vec![Value::from(msg)]);
    }

    fn error(&mut self, ctx: &mut Ctx<'_>, msg: &str) {
        self.busy = false;
        self.password = None;
        ctx.call_client("show_error", vec![Value::from(msg)]);
    }

    fn start(&mut self, ctx: &mut Ctx<'_>, args: &Args) -> Result<Option<(String, String)>, CallError> {
        args.expect_len(2)?;
        let (user, pwd) = (args.str(0)?.to_owned(), args.str(1)?.to_owned());
        if self.busy {
            self.error(ctx, "busy: wait for the previous request");
            return Ok(None);
        }
        if !valid_name(&user, MAX_NAME) {
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
    /// Hashing (about 10 ms of Argon2id) runs off the game loop.
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
            Self::info(ctx, "registered; now log in");
        }
        Ok(())
    }

    /// Own client: `login(user, password)`; on success the client's player becomes the
    /// user's `Avatar`.
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
        // Verifying (Argon2id) runs off the game loop.
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
        // The user's avatar id: made once, at the first login.
        let fresh = ctx.new_id().to_string();
        ctx.kvdb_get_or_put(&format!("avatarID${user}"), &fresh, "on_avatar_id").map_err(failed)?;
        // Remember which id we proposed, in case ours is the one stored.
        self.proposed = Some(fresh);
        Ok(())
    }

    /// KVDB reply: (key, existing id or nil if ours was stored, error or nil).
    fn on_avatar_id(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        if let Some(e) = args.get(2)?.as_str() {
            self.error(ctx, &format!("storage error: {e}"));
            return Ok(());
        }
        let proposed = self.proposed.take().unwrap_or_default();
        let existing = args.get(1)?.as_str().map(str::to_owned);
        let is_new = existing.is_none();
        let hex = existing.unwrap_or(proposed);
        let Some(avatar) = Id::parse_hex(&hex) else {
            self.error(ctx, "stored avatar id is corrupt");
            return Ok(());
        };
        // Loaded here (never a second copy if it already lives somewhere); the call waits
        // for the load. A new user's avatar is made; a returning user's must be stored (if
        // it is not, `on_call_failed` tells the user instead of handing out an empty avatar).
        if is_new {
            ctx.load_or_create_entity_on_game(ctx.game_id(), "Avatar", avatar).map_err(failed)?;
        } else {
            ctx.load_entity_on_game(ctx.game_id(), "Avatar", avatar).map_err(failed)?;
        }
        // Already live on this game with a client: refused at once, read locally instead of
        // asking the avatar by a call (on another game, the avatar's `attach` refuses).
        if ctx.entity(avatar).is_some_and(|a| a.has_client()) {
            self.error(ctx, "already logged in elsewhere");
            return Ok(());
        }
        let user = self.user.clone().unwrap_or_default();
        let me = ctx.id();
        ctx.call(
            avatar,
            "attach",
            vec![id_value(me), Value::Int(i64::from(ctx.game_id())), Value::from(user.as_str())],
        );
        Ok(())
    }

    /// Server: the avatar is ready on this game: it takes the client.
    fn attached(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let avatar = args.id(0)?;
        self.busy = false;
        ctx.give_client_to(avatar);
        ctx.destroy();
        Ok(())
    }

    /// Server: the avatar could not be attached.
    fn login_failed(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let why = args.str(0)?.to_owned();
        self.error(ctx, &why);
        Ok(())
    }
}

/// A user's persistent avatar: its name and room survive logouts and restarts.
#[derive(Default)]
struct Avatar;

impl Entity for Avatar {
    fn on_client_connected(&mut self, ctx: &mut Ctx<'_>) {
        // Set here, once the client is bound (GoWorld set it before: a no-op).
        let room = ctx.attrs().str("chatroom").to_owned();
        let room = if valid_name(&room, MAX_ROOM) { room } else { DEFAULT_ROOM.to_owned() };
        ctx.attrs().set("chatroom", room.as_str());
        ctx.set_client_filter_prop("chatroom", &room);
        let name = ctx.attrs().str("name").to_owned();
        let hello = format!(
            "welcome {name}; you are in chat room {room}: what you type goes to everyone in it (/join <room> to move)"
        );
        ctx.call_client("show_info", vec![Value::from(hello.as_str())]);
        arrive(ctx, &room, &name);
    }

    fn on_client_disconnected(&mut self, ctx: &mut Ctx<'_>) {
        let (room, name) = (ctx.attrs().str("chatroom").to_owned(), ctx.attrs().str("name").to_owned());
        leave(ctx, &room, &name);
        let me = id_value(ctx.id());
        ctx.call_service_shard_index(ROOMS, 0, "gone", vec![me]);
        // Destroy saves it.
        ctx.destroy();
    }
}

/// Tells everyone in `room` that `name` arrived (`on_arrive(name, room)`), and the `Rooms`
/// service where this avatar is now.
fn arrive(ctx: &mut Ctx<'_>, room: &str, name: &str) {
    sync_room(ctx);
    let args = vec![Value::from(name), Value::from(room)];
    ctx.call_filtered_clients_by_string("chatroom", "=", room, "on_arrive", args);
}

/// Tells everyone in `room` that `name` left it (`on_leave(name, room)`).
fn leave(ctx: &mut Ctx<'_>, room: &str, name: &str) {
    let args = vec![Value::from(name), Value::from(room)];
    ctx.call_filtered_clients_by_string("chatroom", "=", room, "on_leave", args);
}

/// The service counting who is in which room (for `/rooms`).
const ROOMS: &str = "Rooms";

/// How often a report to `Rooms` is retried while the service is not up yet (right after the
/// cluster starts).
const ROOMS_RETRY: std::time::Duration = std::time::Duration::from_millis(200);
/// Retries of `rooms()` before giving up.
const ROOMS_ATTEMPTS: i64 = 50;

/// Reports this avatar's current room to `Rooms` with the next sequence number (the service
/// keeps the newest report per avatar, so reports may arrive in any order); while the service
/// is not up, retried from a timer, which reports whatever the room is by then.
fn sync_room(ctx: &mut Ctx<'_>) {
    let seq = ctx.attrs().int("room_seq") + 1;
    ctx.attrs().set("room_seq", seq);
    let room = ctx.attrs().str("chatroom").to_owned();
    let me = ctx.id();
    let args = vec![id_value(me), Value::from(room.as_str()), Value::Int(seq)];
    if !ctx.call_service_shard_index(ROOMS, 0, "set", args)
        && let Err(e) = ctx.add_timer(ROOMS_RETRY, "retry_rooms", vec![])
    {
        log::warn!("{me}: {e}");
    }
}

/// Which avatar is in which room, cluster-wide: one shard, in attributes (kept over hot swaps):
/// `members`: avatar id (hex) -> `[room, seq]`.
#[derive(Default)]
struct Rooms;

impl Entity for Rooms {}

impl Rooms {
    /// Server: `set(avatar, room, seq)`: the avatar is in `room`, unless a newer report came.
    fn set(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let (avatar, room, seq) = (args.id(0)?.to_string(), args.str(1)?.to_owned(), args.int(2)?);
        let mut a = ctx.attrs();
        let mut members = a.map_at("members").map_err(failed)?;
        let newer = match members.get(&avatar) {
            Some(Value::List(p)) => p.get(1).and_then(Value::as_int).is_none_or(|s| s < seq),
            _ => true,
        };
        if newer {
            members.set(&avatar, Value::List(vec![Value::from(room.as_str()), Value::Int(seq)]));
        }
        Ok(())
    }

    /// Server: `gone(avatar)`: the avatar logged out.
    fn gone(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let avatar = args.id(0)?.to_string();
        ctx.attrs().map_at("members").map_err(failed)?.delete(&avatar);
        Ok(())
    }

    /// Server: `list(avatar)`: calls the avatar's `on_rooms([[room, members], ...])`.
    fn list(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let avatar = args.id(0)?;
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        if let Some(Value::Map(m)) = ctx.attrs_ref().get("members") {
            for p in m.values() {
                if let Value::List(p) = p
                    && let Some(room) = p.first().and_then(Value::as_str)
                {
                    *counts.entry(room.to_owned()).or_default() += 1;
                }
            }
        }
        let rooms = counts.into_iter().map(|(r, n)| Value::List(vec![Value::from(r.as_str()), Value::Int(n)]));
        ctx.call(avatar, "on_rooms", vec![Value::List(rooms.collect())]);
        Ok(())
    }
}

impl Avatar {
    /// Server: `attach(account, account_game, user)`: the account wants to hand us its client.
    fn attach(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let (account, game, user) = (args.id(0)?, args.int(1)?, args.str(2)?.to_owned());
        if ctx.client().is_some() {
            ctx.call(account, "login_failed", vec![Value::from("already logged in elsewhere")]);
            return Ok(());
        }
        if game != i64::from(ctx.game_id()) {
            ctx.call(account, "login_failed", vec![Value::from("already logged in on another game")]);
            return Ok(());
        }
        if ctx.attrs().str("name").is_empty() {
            ctx.attrs().set("name", user.as_str());
        }
        let me = ctx.id();
        ctx.call(account, "attached", vec![id_value(me)]);
        Ok(())
    }

    /// Own client: `ping(n)` answers `pong(n, game_id)` (bots measure calls with it).
    fn ping(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let n = args.int(0)?;
        ctx.call_client("pong", vec![Value::Int(n), Value::Int(i64::from(ctx.game_id()))]);
        Ok(())
    }

    /// Own client: `join_room(room)` moves the avatar to chat room `room`.
    fn join_room(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let room = args.str(0)?.trim().to_owned();
        if !valid_name(&room, MAX_ROOM) {
            ctx.call_client("show_error", vec![Value::from("rooms are 1-32 characters of A-Z a-z 0-9 _ -")]);
            return Ok(());
        }
        let (old, name) = (ctx.attrs().str("chatroom").to_owned(), ctx.attrs().str("name").to_owned());
        if old == room {
            ctx.call_client("show_info", vec![Value::from(format!("you are in chat room {room}").as_str())]);
            return Ok(());
        }
        leave(ctx, &old, &name);
        ctx.attrs().set("chatroom", room.as_str());
        ctx.set_client_filter_prop("chatroom", &room);
        ctx.call_client("show_info", vec![Value::from(format!("you are in chat room {room}").as_str())]);
        arrive(ctx, &room, &name);
        Ok(())
    }

    /// Own client: `rooms()`: the client gets `on_rooms([[room, members], ...])` (retried
    /// while the `Rooms` service is not up yet).
    fn rooms(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let me = ctx.id();
        let attempt = args.get(0).ok().and_then(Value::as_int).unwrap_or(0);
        if ctx.call_service_shard_index(ROOMS, 0, "list", vec![id_value(me)]) {
            return Ok(());
        }
        if attempt >= ROOMS_ATTEMPTS {
            return Err(failed("the room list is not available"));
        }
        ctx.add_timer(ROOMS_RETRY, "rooms", vec![Value::Int(attempt + 1)]).map_err(failed)?;
        Ok(())
    }

    /// Server (its own timer): the room report retried.
    fn retry_rooms(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        sync_room(ctx);
        Ok(())
    }

    /// Server: the `Rooms` service's answer, for the client.
    fn on_rooms(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        ctx.call_client("on_rooms", args.into_vec());
        Ok(())
    }

    /// Own client: one line of chat for everyone in the avatar's room.
    fn send_chat(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        let text = args.str(0)?.trim().to_owned();
        if text.is_empty() || text.len() > MAX_CHAT {
            return Err(CallError::BadArguments(format!("chat lines are 1-{MAX_CHAT} bytes")));
        }
        let room = ctx.attrs().str("chatroom").to_owned();
        let name = ctx.attrs().str("name").to_owned();
        // Room names compare as strings ("1" and "01" are different rooms).
        ctx.call_filtered_clients_by_string(
            "chatroom",
            "=",
            &room,
            "on_recv_chat",
            vec![Value::from(name.as_str()), Value::from(text.as_str())],
        );
        Ok(())
    }
}

/// Spaces of this game (the chat needs nothing of them).
#[derive(Default)]
struct Lobby;

impl Entity for Lobby {}

/// An idle non-player with a few attributes and a slow timer, like a typical world object
/// (the hot-swap benchmark fills games with them: `demo/variants`, `chatroom-filled`).
#[derive(Default)]
pub struct Npc;

impl Entity for Npc {
    fn on_created(&mut self, ctx: &mut Ctx<'_>) {
        let mut a = ctx.attrs();
        a.set("name", "npc");
        a.set("hp", 100i64);
        a.set("level", 7i64);
        a.set("title", "keeper of the benchmark");
        let _ = ctx.add_repeat_timer(std::time::Duration::from_secs(30), "wander", vec![]);
    }
}

impl Npc {
    /// Server: its slow timer (touches an attribute, as world objects do).
    pub fn wander(&mut self, ctx: &mut Ctx<'_>, _args: Args) -> Result<(), CallError> {
        let hp = ctx.attrs().int("hp");
        ctx.attrs().set("hp", hp);
        Ok(())
    }
}

/// The chatroom's entity types.
pub fn registry() -> Registry {
    let mut reg = Registry::new();
    register_chat(&mut reg);
    reg.space("Lobby", Lobby::default);
    reg
}

/// Registers the chat's types (accounts, avatars, `Npc`) and the boot type, but no space type.
pub fn register_chat(reg: &mut Registry) {
    reg.entity("Account", Account::default)
        .method("register", Expose::OwnClient, Account::register)
        .method("login", Expose::OwnClient, Account::login)
        .method("on_hashed", Expose::Server, Account::on_hashed)
        .method("on_registered", Expose::Server, Account::on_registered)
        .method("on_password", Expose::Server, Account::on_password)
        .method("on_verified", Expose::Server, Account::on_verified)
        .method("on_avatar_id", Expose::Server, Account::on_avatar_id)
        .method("attached", Expose::Server, Account::attached)
        .method("login_failed", Expose::Server, Account::login_failed);
    reg.entity("Avatar", || Avatar)
        .persistent()
        .attr("name", AttrFlags::CLIENT | AttrFlags::PERSISTENT)
        .attr("chatroom", AttrFlags::CLIENT | AttrFlags::PERSISTENT)
        .method("attach", Expose::Server, Avatar::attach)
        .method("send_chat", Expose::OwnClient, Avatar::send_chat)
        .method("join_room", Expose::OwnClient, Avatar::join_room)
        .method("ping", Expose::OwnClient, Avatar::ping)
        .method("rooms", Expose::OwnClient, Avatar::rooms)
        .method("on_rooms", Expose::Server, Avatar::on_rooms)
        .method("retry_rooms", Expose::Server, Avatar::retry_rooms);
    reg.service(ROOMS, Rooms::default, 1)
        .method("set", Expose::Server, Rooms::set)
        .method("gone", Expose::Server, Rooms::gone)
        .method("list", Expose::Server, Rooms::list);
    reg.entity("Npc", Npc::default).attr("hp", AttrFlags::ALL_CLIENTS).method("wander", Expose::Server, Npc::wander);
    reg.boot("Account");
}
