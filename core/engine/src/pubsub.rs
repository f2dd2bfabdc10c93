//! Publish/subscribe between entities (GoWorld's `ext/pubsub`): a sharded service `"PubSub"`
//! holding who listens to which subject, and free functions entity code calls through its
//! [`Ctx`].
//!
//! **Subjects.** A subscription subject is either exact (`"chat.world"`) or a wildcard ending
//! in `*` (`"chat.*"`, `"*"`), which matches every subject starting with what precedes the `*`
//! (`"chat."` itself included). Every subject is non-empty, at most [`MAX_SUBJECT_LEN`] bytes,
//! free of control characters, and holds `*` only as its last character; a published subject
//! holds no `*` at all. Both the helpers and the service check this ([`Subject::parse`],
//! [`check_publish_subject`]); the service refuses bad arguments with
//! [`CallError::BadArguments`] (GoWorld panics).
//!
//! **Sharding.** An exact subscription lives on the shard that owns the subject
//! (`call_service_shard_key(subject)`), and so does a publish of that subject. A wildcard
//! subscription is sent to every shard (`call_service_all`), so the one shard a publish lands
//! on sees every exact and every wildcard subscription that matches. `unsubscribe_all` goes to
//! every shard. Changing the shard count of a running cluster strands exact subscriptions on
//! their old shards.
//!
//! **Delivery.** The shard calls [`ON_PUBLISH`] (`"on_publish"`) on each matching subscriber
//! with `(subject: str, content)`; the subscriber's type must declare that method
//! (`Expose::Server`). A subscriber matching through several subscriptions (`"chat.*"` and
//! `"chat.world"`) is called **once** per publish (GoWorld calls once per matching
//! subscription). Subscribers are called in id order. Order is kept per sender and shard only:
//! a publish from one entity can overtake a subscribe made by another.
//!
//! **State.** Everything lives in the shard's attributes (server-only, undeclared), so it is
//! frozen for a hot swap and carried by any image without `save`/`load`, and there is no
//! in-memory index to rebuild: `exact`: subject -> {subscriber hex id -> true}; `wild`: prefix
//! (the subject without its `*`) -> {hex id -> true}; `by_sub`: hex id -> {subject as
//! subscribed -> true}, this shard's subscriptions of each subscriber, for `unsubscribe_all`.
//! A publish looks up `exact[subject]` and `wild[p]` for each prefix `p` of the subject (at
//! most [`MAX_SUBJECT_LEN`] + 1 map lookups, however many wildcards exist). The service is
//! not persistent: a shard re-created after its game died starts empty (GoWorld loses them
//! too).
//!
//! **Gone subscribers.** The service cannot tell a destroyed subscriber from a slow one:
//! calls to it are dropped and logged by the dispatcher (or fail back to the shard's
//! `on_call_failed`, which logs). Unsubscribing is the subscriber's job: call
//! [`unsubscribe_all`] from its `on_destroy`.

use std::collections::BTreeSet;

use oxworld_net::{Id, Value, method_id};
use thiserror::Error;

use crate::attr::AttrError;
use crate::entity::{Args, CallError, Entity, Expose, Registry};
use crate::world::Ctx;

/// Name of the service type.
pub const SERVICE: &str = "PubSub";
/// Method called on subscribers with `(subject: str, content: any)`.
pub const ON_PUBLISH: &str = "on_publish";
/// Longest subject, in bytes (a wildcard's `*` included).
pub const MAX_SUBJECT_LEN: usize = 256;

const EXACT: &str = "exact";
const WILD: &str = "wild";
const BY_SUB: &str = "by_sub";

/// Why a subject or a pub/sub request was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PubSubError {
    /// The subject is empty.
    #[error("empty subject")]
    Empty,
    /// The subject is longer than [`MAX_SUBJECT_LEN`] bytes.
    #[error("subject of {0} bytes (at most {max})", max = MAX_SUBJECT_LEN)]
    TooLong(usize),
    /// The subject holds a control character.
    #[error("subject holds a control character")]
    ControlChar,
    /// `*` somewhere else than at the end of a subscription, or in a published subject.
    #[error("`*` may only end a subscription subject")]
    MisplacedWildcard,
    /// No `PubSub` service is registered in this binary.
    #[error("the PubSub service is not registered")]
    NotRegistered,
    /// Some shards that should have got the request have no provider right now.
    #[error("reached {reached} of {wanted} PubSub shards")]
    Unreached {
        /// Shards reached.
        reached: usize,
        /// Shards the request was for.
        wanted: usize,
    },
}

/// A valid subscription subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    /// Exactly this subject.
    Exact(&'a str),
    /// Every subject starting with this prefix (the subscription without its `*`).
    Prefix(&'a str),
}

impl<'a> Subject<'a> {
    /// Checks a subscription subject (see the module docs).
    pub fn parse(s: &'a str) -> Result<Self, PubSubError> {
        check_common(s)?;
        match s.strip_suffix('*') {
            Some(p) if p.contains('*') => Err(PubSubError::MisplacedWildcard),
            Some(p) => Ok(Subject::Prefix(p)),
            None if s.contains('*') => Err(PubSubError::MisplacedWildcard),
            None => Ok(Subject::Exact(s)),
        }
    }

    /// The attribute table and key this subscription is kept under.
    fn slot(self) -> (&'static str, &'a str) {
        match self {
            Subject::Exact(s) => (EXACT, s),
            Subject::Prefix(p) => (WILD, p),
        }
    }
}

fn check_common(s: &str) -> Result<(), PubSubError> {
    if s.is_empty() {
        return Err(PubSubError::Empty);
    }
    if s.len() > MAX_SUBJECT_LEN {
        return Err(PubSubError::TooLong(s.len()));
    }
    if s.chars().any(char::is_control) {
        return Err(PubSubError::ControlChar);
    }
    Ok(())
}

/// Checks a subject to publish on: as a subscription subject, without any `*`.
pub fn check_publish_subject(s: &str) -> Result<(), PubSubError> {
    check_common(s)?;
    if s.contains('*') {
        return Err(PubSubError::MisplacedWildcard);
    }
    Ok(())
}

/// Registers the `"PubSub"` service with `shards` shards.
pub fn register(reg: &mut Registry, shards: u16) {
    reg.service(SERVICE, PubSub::default, shards)
        .method("subscribe", Expose::Server, PubSub::subscribe)
        .method("unsubscribe", Expose::Server, PubSub::unsubscribe)
        .method("unsubscribe_all", Expose::Server, PubSub::unsubscribe_all)
        .method("publish", Expose::Server, PubSub::publish);
}

/// Subscribes this entity to `subject` (exact, or a wildcard ending in `*`); it will get
/// [`ON_PUBLISH`] calls.
pub fn subscribe(ctx: &mut Ctx<'_>, subject: &str) -> Result<(), PubSubError> {
    let to = Subject::parse(subject)?;
    let me = ctx.id();
    route(ctx, "subscribe", vec![Value::id(me), Value::from(subject)], Some(to))
}

/// Undoes [`subscribe`] of this entity to `subject` (written the same way).
pub fn unsubscribe(ctx: &mut Ctx<'_>, subject: &str) -> Result<(), PubSubError> {
    let to = Subject::parse(subject)?;
    let me = ctx.id();
    route(ctx, "unsubscribe", vec![Value::id(me), Value::from(subject)], Some(to))
}

/// Drops every subscription of this entity, on every shard (call it from `on_destroy`).
pub fn unsubscribe_all(ctx: &mut Ctx<'_>) -> Result<(), PubSubError> {
    let me = ctx.id();
    route(ctx, "unsubscribe_all", vec![Value::id(me)], None)
}

/// Publishes `content` on `subject` (no `*`) to every matching subscriber.
pub fn publish(ctx: &mut Ctx<'_>, subject: &str, content: Value) -> Result<(), PubSubError> {
    check_publish_subject(subject)?;
    route(ctx, "publish", vec![Value::from(subject), content], Some(Subject::Exact(subject)))
}

/// Sends `method` to the shard owning an exact subject, or to every shard (wildcards, `None`).
fn route(ctx: &mut Ctx<'_>, method: &str, args: Vec<Value>, to: Option<Subject<'_>>) -> Result<(), PubSubError> {
    let shards = ctx.service_shard_count(SERVICE);
    if shards == 0 {
        return Err(PubSubError::NotRegistered);
    }
    let (reached, wanted) = match to {
        Some(Subject::Exact(s)) => (usize::from(ctx.call_service_shard_key(SERVICE, s, method, args)), 1),
        Some(Subject::Prefix(_)) | None => (ctx.call_service_all(SERVICE, method, args), usize::from(shards)),
    };
    if reached < wanted { Err(PubSubError::Unreached { reached, wanted }) } else { Ok(()) }
}

/// One shard of the service; all its state is in attributes (module docs).
#[derive(Debug, Default)]
struct PubSub;

impl Entity for PubSub {}

fn bad(e: PubSubError) -> CallError {
    CallError::BadArguments(e.to_string())
}

fn attr_err(e: AttrError) -> CallError {
    CallError::Failed(format!("PubSub attributes: {e}"))
}

/// Argument 0, a subscriber id, as the hex key it is stored under.
fn subscriber(args: &Args) -> Result<String, CallError> {
    let id = args.id(0)?;
    if id.is_nil() {
        return Err(CallError::BadArguments("nil subscriber".into()));
    }
    Ok(id.to_string())
}

/// The keys of the set at `attrs[table][key]` (none if absent).
fn members<'c>(ctx: &'c Ctx<'_>, table: &str, key: &str) -> impl Iterator<Item = &'c String> {
    let set = match ctx.attrs_ref().get(table) {
        Some(Value::Map(t)) => match t.get(key) {
            Some(Value::Map(set)) => Some(set),
            _ => None,
        },
        _ => None,
    };
    set.into_iter().flat_map(|s| s.keys())
}

/// Adds `member` to the set at `attrs[table][key]`.
fn set_add(ctx: &mut Ctx<'_>, table: &str, key: &str, member: &str) -> Result<(), CallError> {
    let mut root = ctx.attrs();
    let mut t = root.map_at(table).map_err(attr_err)?;
    let mut set = t.map_at(key).map_err(attr_err)?;
    set.set_default(member, true);
    Ok(())
}

/// Removes `member` from the set at `attrs[table][key]`, and the set once empty.
fn set_remove(ctx: &mut Ctx<'_>, table: &str, key: &str, member: &str) -> Result<(), CallError> {
    let mut root = ctx.attrs();
    if !root.contains(table) {
        return Ok(());
    }
    let mut t = root.map_at(table).map_err(attr_err)?;
    if !t.contains(key) {
        return Ok(());
    }
    let empty = {
        let mut set = t.map_at(key).map_err(attr_err)?;
        set.delete(member);
        set.is_empty()
    };
    if empty {
        t.delete(key);
    }
    Ok(())
}

impl PubSub {
    /// `(subscriber: id, subject: str)`.
    fn subscribe(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        args.expect_len(2)?;
        let hex = subscriber(&args)?;
        let subject = args.str(1)?;
        let (table, key) = Subject::parse(subject).map_err(bad)?.slot();
        set_add(ctx, table, key, &hex)?;
        set_add(ctx, BY_SUB, &hex, subject)
    }

    /// `(subscriber: id, subject: str)`; unknown subscriptions are ignored.
    fn unsubscribe(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        args.expect_len(2)?;
        let hex = subscriber(&args)?;
        let subject = args.str(1)?;
        let (table, key) = Subject::parse(subject).map_err(bad)?.slot();
        set_remove(ctx, table, key, &hex)?;
        set_remove(ctx, BY_SUB, &hex, subject)
    }

    /// `(subscriber: id)`: every subscription of it on this shard.
    fn unsubscribe_all(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        args.expect_len(1)?;
        let hex = subscriber(&args)?;
        let subjects: Vec<String> = members(ctx, BY_SUB, &hex).cloned().collect();
        for subject in &subjects {
            match Subject::parse(subject) {
                Ok(s) => {
                    let (table, key) = s.slot();
                    set_remove(ctx, table, key, &hex)?;
                }
                Err(e) => log::warn!("{}: stored subject {subject:?} is invalid: {e}", ctx.id()),
            }
        }
        let mut root = ctx.attrs();
        if root.contains(BY_SUB) {
            root.map_at(BY_SUB).map_err(attr_err)?.delete(&hex);
        }
        Ok(())
    }

    /// `(subject: str, content: any)`: calls [`ON_PUBLISH`] once on every matching subscriber.
    fn publish(&mut self, ctx: &mut Ctx<'_>, args: Args) -> Result<(), CallError> {
        args.expect_len(2)?;
        let subject = args.str(0)?.to_owned();
        check_publish_subject(&subject).map_err(bad)?;
        let mut to: BTreeSet<Id> = members(ctx, EXACT, &subject).filter_map(|k| Id::parse_hex(k)).collect();
        for prefix in (0..=subject.len()).filter_map(|i| subject.get(..i)) {
            to.extend(members(ctx, WILD, prefix).filter_map(|k| Id::parse_hex(k)));
        }
        let content = args.into_vec().pop().unwrap_or_default();
        log::debug!("{}: publish {subject:?} to {} subscribers", ctx.id(), to.len());
        let m = method_id(ON_PUBLISH);
        for id in to {
            ctx.call_id(id, m, vec![Value::from(subject.as_str()), content.clone()]);
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one arbitrary base instant from the clock
mod tests {
    use std::time::{Duration, Instant};

    use oxworld_net::msg::{Call, Caller, CreateEntity, FromGame, ServiceUpdate};
    use oxworld_net::value::encode_args;

    use super::*;
    use crate::world::{SERVICE_CHECK_EVERY, World};

    const SHARDS: u16 = 3;
    const L1: Id = Id([0x11; 16]);
    const L2: Id = Id([0x22; 16]);
    const L3: Id = Id([0x33; 16]);

    /// Game code using the helpers: records what it got and the errors it was given.
    #[derive(Default)]
    struct Listener;
    impl Entity for Listener {}
    impl Listener {
        /// `(op, subject, content)`: runs one helper.
        fn act(&mut self, ctx: &mut Ctx<'_>, a: Args) -> Result<(), CallError> {
            let r = match a.str(0)? {
                "sub" => subscribe(ctx, a.str(1)?),
                "unsub" => unsubscribe(ctx, a.str(1)?),
                "unsub_all" => unsubscribe_all(ctx),
                _ => publish(ctx, a.str(1)?, a.get(2)?.clone()),
            };
            if let Err(e) = r {
                ctx.attrs().list_at("errors").map_err(attr_err)?.append(e.to_string());
            }
            Ok(())
        }
        fn got(&mut self, ctx: &mut Ctx<'_>, a: Args) -> Result<(), CallError> {
            let entry = Value::List(vec![Value::from(a.str(0)?), a.get(1)?.clone()]);
            ctx.attrs().list_at("got").map_err(attr_err)?.append(entry);
            Ok(())
        }
    }

    fn registry(with_pubsub: bool) -> Registry {
        let mut reg = Registry::new();
        if with_pubsub {
            register(&mut reg, SHARDS);
        }
        reg.entity("Listener", Listener::default).method("act", Expose::Server, Listener::act).method(
            ON_PUBLISH,
            Expose::Server,
            Listener::got,
        );
        reg.boot("Listener");
        reg
    }

    /// One game hosting every shard (registered as the dispatcher would confirm) and three
    /// listeners; the shard entities by shard index.
    fn cluster(with_pubsub: bool) -> (World, Instant, Vec<Id>) {
        let t0 = Instant::now();
        let mut w = World::new(registry(with_pubsub), 1, 1, None, 7u64, (t0, 1_700_000_000_000)).expect("registry");
        let now = t0 + SERVICE_CHECK_EVERY;
        w.tick(now);
        let mut regs: Vec<(u16, Id)> = w
            .drain_output()
            .filter_map(|(_, m)| match m {
                FromGame::ServiceRegister(r) if r.name == SERVICE => Some((r.shard, r.entity)),
                _ => None,
            })
            .collect();
        regs.sort_unstable();
        for &(shard, entity) in &regs {
            w.handle(now, ServiceUpdate { entity, game: 1, name: SERVICE.into(), shard });
        }
        for id in [L1, L2, L3] {
            w.handle(now, CreateEntity { id, game: 1, type_name: "Listener".into(), space_kind: None });
        }
        let _ = w.drain_output().count();
        (w, now, regs.into_iter().map(|(_, e)| e).collect())
    }

    fn call(w: &mut World, now: Instant, target: Id, method: &str, args: Vec<Value>) {
        let mut enc = Vec::new();
        encode_args(&args, &mut enc);
        w.handle(now, Call { target, method: method_id(method), caller: Caller::Server(Id::NIL), args: enc });
    }

    /// `who` runs helper `op` on `subject` (publishing `subject` itself as the content).
    fn act(w: &mut World, now: Instant, who: Id, op: &str, subject: &str) {
        call(w, now, who, "act", vec![op.into(), subject.into(), subject.into()]);
    }

    fn at<'v>(v: Option<&'v Value>, path: &[&str]) -> Option<&'v Value> {
        path.iter().try_fold(v?, |v, k| match v {
            Value::Map(m) => m.get(*k),
            _ => None,
        })
    }

    fn list(w: &World, id: Id, key: &str) -> Vec<Value> {
        match at(w.attrs_of(id), &[key]) {
            Some(Value::List(l)) => l.clone(),
            _ => Vec::new(),
        }
    }

    /// The subjects `id` was told about, in order (each content checked to be its subject).
    fn got(w: &World, id: Id) -> Vec<String> {
        let pairs = list(w, id, "got").into_iter().filter_map(|e| match e {
            Value::List(p) if p.len() == 2 && p[0] == p[1] => p[0].as_str().map(str::to_owned),
            _ => None,
        });
        let out: Vec<String> = pairs.collect();
        assert_eq!(out.len(), list(w, id, "got").len(), "every delivery is (subject, content)");
        out
    }

    fn shard_of(subject: &str) -> usize {
        (crate::fnv1a32(subject.as_bytes()) % u32::from(SHARDS)) as usize
    }

    #[test]
    fn exact_subjects_reach_their_subscribers_only() {
        let (mut w, now, shards) = cluster(true);
        assert_eq!(shards.len(), usize::from(SHARDS));
        act(&mut w, now, L1, "sub", "chat.world");
        act(&mut w, now, L2, "sub", "chat.guild");
        for s in ["chat.world", "chat.worldx", "chat."] {
            act(&mut w, now, L3, "pub", s);
        }
        // Any value travels as the content.
        let content = Value::Map([("n".to_owned(), Value::List(vec![Value::Int(7)]))].into());
        call(&mut w, now, L3, "act", vec!["pub".into(), "chat.guild".into(), content.clone()]);
        assert_eq!(got(&w, L1), vec!["chat.world"]);
        assert_eq!(list(&w, L2, "got"), vec![Value::List(vec!["chat.guild".into(), content])]);
        assert!(got(&w, L3).is_empty() && list(&w, L3, "errors").is_empty());
    }

    #[test]
    fn wildcards_are_on_every_shard_and_deliver_once() {
        let (mut w, now, shards) = cluster(true);
        act(&mut w, now, L1, "sub", "chat.*");
        act(&mut w, now, L2, "sub", "chat.guild");
        act(&mut w, now, L2, "sub", "chat.*");
        act(&mut w, now, L3, "sub", "*");
        for s in &shards {
            let wild = at(w.attrs_of(*s), &[WILD, "chat.", &L1.to_string()]);
            assert_eq!(wild, Some(&Value::Bool(true)), "every shard holds the wildcard");
        }
        let mut subjects: Vec<String> = (0..12).map(|i| format!("chat.{i}")).collect();
        let used: BTreeSet<usize> = subjects.iter().map(|s| shard_of(s)).collect();
        assert_eq!(used.len(), usize::from(SHARDS), "the subjects land on every shard");
        subjects.push("chat.guild".into());
        for s in subjects.iter().map(String::as_str).chain(["trade.x"]) {
            act(&mut w, now, L3, "pub", s);
        }
        assert_eq!(got(&w, L1), subjects);
        assert_eq!(got(&w, L2), subjects, "exact and wildcard match chat.guild: delivered once");
        assert_eq!(got(&w, L3).len(), subjects.len() + 1, "`*` matches everything");
    }

    #[test]
    fn unsubscribe_and_unsubscribe_all_leave_nothing_behind() {
        let (mut w, now, shards) = cluster(true);
        act(&mut w, now, L1, "sub", "a.b");
        act(&mut w, now, L1, "sub", "a.*");
        act(&mut w, now, L1, "unsub", "a.b");
        act(&mut w, now, L3, "pub", "a.b");
        assert_eq!(got(&w, L1).len(), 1, "still there through the wildcard");
        act(&mut w, now, L1, "unsub", "a.*");
        act(&mut w, now, L3, "pub", "a.b");
        assert_eq!(got(&w, L1).len(), 1, "gone");
        for s in ["x", "y", "z.*"] {
            act(&mut w, now, L1, "sub", s);
        }
        act(&mut w, now, L2, "sub", "x");
        act(&mut w, now, L1, "unsub_all", "");
        for s in ["x", "y", "z.q"] {
            act(&mut w, now, L3, "pub", s);
        }
        assert_eq!(got(&w, L1).len(), 1, "nothing after unsubscribe_all");
        assert_eq!(got(&w, L2), vec!["x"], "other subscribers keep theirs");
        act(&mut w, now, L2, "unsub_all", "");
        for s in &shards {
            for table in [EXACT, WILD, BY_SUB] {
                let t = at(w.attrs_of(*s), &[table]);
                assert!(t.is_none_or(|v| matches!(v, Value::Map(m) if m.is_empty())), "{table} on {s}: {t:?}");
            }
        }
        assert!(list(&w, L1, "errors").is_empty());
    }

    #[test]
    fn hostile_subjects_are_refused() {
        let long = "a".repeat(MAX_SUBJECT_LEN + 1);
        assert_eq!(Subject::parse(""), Err(PubSubError::Empty));
        assert_eq!(Subject::parse(&long), Err(PubSubError::TooLong(MAX_SUBJECT_LEN + 1)));
        assert_eq!(Subject::parse("a*b"), Err(PubSubError::MisplacedWildcard));
        assert_eq!(Subject::parse("a**"), Err(PubSubError::MisplacedWildcard));
        assert_eq!(Subject::parse("a\nb"), Err(PubSubError::ControlChar));
        assert_eq!(Subject::parse("é.*"), Ok(Subject::Prefix("é.")));
        assert_eq!(Subject::parse("*"), Ok(Subject::Prefix("")));
        assert_eq!(check_publish_subject("a.*"), Err(PubSubError::MisplacedWildcard));
        assert_eq!(check_publish_subject(&"a".repeat(MAX_SUBJECT_LEN)), Ok(()));

        let (mut w, now, shards) = cluster(true);
        let before: Vec<Option<Value>> = shards.iter().map(|s| w.attrs_of(*s).cloned()).collect();
        for s in ["", "a*b", long.as_str()] {
            act(&mut w, now, L1, "sub", s);
        }
        act(&mut w, now, L1, "pub", "a.*");
        assert_eq!(list(&w, L1, "errors").len(), 4, "the helpers refuse each");
        // Around the helpers, straight to a shard: refused as bad arguments.
        let refused = w.stats().undeliverable;
        call(&mut w, now, shards[0], "subscribe", vec![Value::id(L1), "a*b".into()]);
        call(&mut w, now, shards[0], "subscribe", vec!["not an id".into(), "a".into()]);
        call(&mut w, now, shards[0], "subscribe", vec![Value::id(Id::NIL), "a".into()]);
        call(&mut w, now, shards[0], "publish", vec!["*".into(), Value::Nil]);
        assert_eq!(w.stats().undeliverable, refused + 4);
        let after: Vec<Option<Value>> = shards.iter().map(|s| w.attrs_of(*s).cloned()).collect();
        assert_eq!(before, after, "no shard changed");

        let (mut w, now, _) = cluster(false);
        act(&mut w, now, L1, "sub", "a");
        assert_eq!(list(&w, L1, "errors"), vec![Value::from(PubSubError::NotRegistered.to_string())]);
    }

    #[test]
    fn subscriptions_live_in_attributes_and_survive_a_hot_swap() {
        let (mut w, now, shards) = cluster(true);
        act(&mut w, now, L1, "sub", "chat.*");
        act(&mut w, now, L2, "sub", "news");
        let holder = w.attrs_of(shards[shard_of("news")]);
        let l2 = L2.to_string();
        assert_eq!(at(holder, &[EXACT, "news", &l2]), Some(&Value::Bool(true)));
        assert_eq!(at(holder, &[BY_SUB, &l2, "news"]), Some(&Value::Bool(true)));
        let frozen = w.freeze(now + Duration::from_millis(5));
        let t1 = now + Duration::from_secs(60);
        let (mut r, _) =
            World::restore(registry(true), 1, 1, None, 99u64, (t1, 1_700_000_060_000), &frozen).expect("restores");
        act(&mut r, t1, L3, "pub", "news");
        act(&mut r, t1, L3, "pub", "chat.x");
        assert_eq!(got(&r, L2), vec!["news"]);
        assert_eq!(got(&r, L1), vec!["chat.x"]);
    }
}
