//! Entity attributes: a typed tree (maps and lists of values) whose every change is recorded as
//! an [`AttrOp`], so the world can replay exactly those changes to the clients that may see them.
//!
//! Entity code reaches the tree through [`MapMut`] and [`ListMut`] handles (from
//! `Ctx::attrs`); each mutation updates the tree and appends one op. Which clients get an op
//! is decided by the flags of its root attribute, declared on the entity type
//! (`TypeBuilder::attr`): [`AttrFlags::CLIENT`] (own client), [`AttrFlags::ALL_CLIENTS`] (own
//! client and every client whose entity sees this one), [`AttrFlags::PERSISTENT`] (saved).
//! Undeclared attributes are kept, migrated and frozen, but never synced or saved.

use std::collections::{BTreeMap, HashMap};

use oxworld_net::Value;
use oxworld_net::attr_op::{AttrOp, PathElem, walk};
use thiserror::Error;

/// How one root attribute is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct AttrFlags(u8);

impl AttrFlags {
    /// Kept on the server only.
    pub const SERVER: AttrFlags = AttrFlags(0);
    /// Synced to the entity's own client.
    pub const CLIENT: AttrFlags = AttrFlags(1);
    /// Synced to the own client and to every client whose entity sees this one.
    pub const ALL_CLIENTS: AttrFlags = AttrFlags(2 | 1);
    /// Saved to storage.
    pub const PERSISTENT: AttrFlags = AttrFlags(4);

    /// Both sets of flags.
    pub const fn with(self, other: AttrFlags) -> AttrFlags {
        AttrFlags(self.0 | other.0)
    }

    /// True if every flag of `other` is set.
    pub const fn has(self, other: AttrFlags) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
}

impl std::ops::BitOr for AttrFlags {
    type Output = AttrFlags;
    fn bitor(self, rhs: AttrFlags) -> AttrFlags {
        self.with(rhs)
    }
}

/// Flags of every declared root attribute of one entity type.
pub type AttrSchema = HashMap<String, AttrFlags>;

/// Who an op or a snapshot is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The entity's own client: `CLIENT` and `ALL_CLIENTS` attributes.
    Own,
    /// Clients of other entities that see this one: `ALL_CLIENTS` attributes.
    Others,
}

impl Audience {
    fn admits(self, f: AttrFlags) -> bool {
        match self {
            Audience::Own => f.has(AttrFlags::CLIENT),
            Audience::Others => f.has(AttrFlags::ALL_CLIENTS),
        }
    }
}

/// A mutation that does not fit the tree.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AttrError {
    /// A value of another kind is stored there.
    #[error("attribute {key:?} holds a {found}, not a {wanted}")]
    WrongType {
        /// Key or index.
        key: String,
        /// Kind wanted.
        wanted: &'static str,
        /// Kind found.
        found: &'static str,
    },
    /// Index past the end of a list.
    #[error("index {index} out of range (len {len})")]
    OutOfRange {
        /// Index.
        index: usize,
        /// Length.
        len: usize,
    },
}

/// The attribute tree of one entity and its changes not yet flushed.
#[derive(Debug, Clone, PartialEq)]
pub struct Attrs {
    root: Value,
    ops: Vec<AttrOp>,
    persistent_dirty: bool,
}

impl Default for Attrs {
    fn default() -> Self {
        Attrs { root: Value::Map(BTreeMap::new()), ops: Vec::new(), persistent_dirty: false }
    }
}

impl Attrs {
    /// A tree holding `root` (a map; anything else gives an empty tree), with no pending ops.
    pub fn from_value(root: Value) -> Self {
        match root {
            Value::Map(_) => Attrs { root, ..Attrs::default() },
            _ => Attrs::default(),
        }
    }

    /// The whole tree (a `Value::Map`).
    pub fn value(&self) -> &Value {
        &self.root
    }

    /// A root attribute.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match &self.root {
            Value::Map(m) => m.get(key),
            _ => None,
        }
    }

    /// A mutable handle on the root map.
    pub fn root(&mut self) -> MapMut<'_> {
        MapMut { attrs: self, path: Vec::new() }
    }

    /// Takes the ops recorded since the last call.
    pub fn take_ops(&mut self) -> Vec<AttrOp> {
        std::mem::take(&mut self.ops)
    }

    /// True if ops are waiting.
    pub fn has_ops(&self) -> bool {
        !self.ops.is_empty()
    }

    /// True if a persistent attribute changed since [`Attrs::clear_persistent_dirty`].
    pub fn persistent_dirty(&self) -> bool {
        self.persistent_dirty
    }

    pub(crate) fn mark_persistent_dirty(&mut self) {
        self.persistent_dirty = true;
    }

    /// Marks the persistent attributes as saved.
    pub fn clear_persistent_dirty(&mut self) {
        self.persistent_dirty = false;
    }

    /// The root attributes `audience` may see under `schema`, as one map.
    pub fn snapshot(&self, schema: &AttrSchema, audience: Audience) -> Value {
        let Value::Map(m) = &self.root else {
            return Value::Map(BTreeMap::new());
        };
        Value::Map(
            m.iter()
                .filter(|(k, _)| schema.get(*k).is_some_and(|f| audience.admits(*f)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// The root attributes flagged `PERSISTENT`.
    pub fn persistent_snapshot(&self, schema: &AttrSchema) -> Value {
        let Value::Map(m) = &self.root else {
            return Value::Map(BTreeMap::new());
        };
        Value::Map(
            m.iter()
                .filter(|(k, _)| schema.get(*k).is_some_and(|f| f.has(AttrFlags::PERSISTENT)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// Appends the encoding of [`Attrs::persistent_snapshot`] (the same bytes) without building
    /// it: no key or value is copied.
    pub fn encode_persistent(&self, schema: &AttrSchema, out: &mut Vec<u8>) {
        let Value::Map(m) = &self.root else {
            Value::Map(BTreeMap::new()).encode(out);
            return;
        };
        let keep = |k: &String| schema.get(k).is_some_and(|f| f.has(AttrFlags::PERSISTENT));
        oxworld_net::value::encode_map_head(out, m.keys().filter(|k| keep(k)).count());
        for (k, v) in m.iter().filter(|(k, _)| keep(k)) {
            oxworld_net::wire::put_bytes(out, k.as_bytes());
            v.encode(out);
        }
    }

    fn record(&mut self, op: AttrOp) {
        self.ops.push(op);
    }
}

/// The ops of `ops` that `audience` may see under `schema`. A clear of the root map is kept:
/// a replica holds only what it may see, so clearing it is exact.
pub fn filter_ops<'a>(
    ops: &'a [AttrOp],
    schema: &'a AttrSchema,
    audience: Audience,
) -> impl Iterator<Item = &'a AttrOp> {
    ops.iter().filter(move |op| match op.root_key() {
        Some(k) => schema.get(k).is_some_and(|f| audience.admits(*f)),
        None => true,
    })
}

/// True if any op touches a persistent root attribute.
pub fn touches_persistent(ops: &[AttrOp], schema: &AttrSchema) -> bool {
    ops.iter().any(|op| match op.root_key() {
        Some(k) => schema.get(k).is_some_and(|f| f.has(AttrFlags::PERSISTENT)),
        None => true,
    })
}

fn container<'v>(root: &'v mut Value, path: &[PathElem]) -> &'v mut Value {
    // Handles are only built along paths that exist, and they borrow the tree mutably, so the
    // structure cannot change underneath them.
    match walk(root, path) {
        Ok(v) => v,
        Err(e) => unreachable!("attribute handle path vanished: {e}"),
    }
}

/// A map inside an attribute tree (the root, or a nested map).
pub struct MapMut<'a> {
    attrs: &'a mut Attrs,
    path: Vec<PathElem>,
}

impl MapMut<'_> {
    fn map(&mut self) -> &mut BTreeMap<String, Value> {
        match container(&mut self.attrs.root, &self.path) {
            Value::Map(m) => m,
            _ => unreachable!("MapMut always points at a map"),
        }
    }

    fn map_ref(&self) -> &BTreeMap<String, Value> {
        let mut cur = &self.attrs.root;
        for e in &self.path {
            cur = match (e, cur) {
                (PathElem::Key(k), Value::Map(m)) => &m[k],
                (PathElem::Index(i), Value::List(l)) => &l[*i as usize],
                _ => unreachable!("MapMut path leads through containers"),
            };
        }
        match cur {
            Value::Map(m) => m,
            _ => unreachable!("MapMut always points at a map"),
        }
    }

    /// Sets `key`.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        let value = value.into();
        self.map().insert(key.to_owned(), value.clone());
        let path = self.path.clone();
        self.attrs.record(AttrOp::MapSet { path, key: key.to_owned(), value });
    }

    /// Sets `key` only if absent; true if it was set.
    pub fn set_default(&mut self, key: &str, value: impl Into<Value>) -> bool {
        if self.map_ref().contains_key(key) {
            return false;
        }
        self.set(key, value);
        true
    }

    /// The value at `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map_ref().get(key)
    }

    /// `key` as an integer (0 if absent or not an integer).
    pub fn int(&self, key: &str) -> i64 {
        self.get(key).and_then(Value::as_int).unwrap_or(0)
    }

    /// `key` as a string ("" if absent or not a string).
    pub fn str(&self, key: &str) -> &str {
        self.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// True if `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.map_ref().contains_key(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map_ref().len()
    }

    /// True without keys.
    pub fn is_empty(&self) -> bool {
        self.map_ref().is_empty()
    }

    /// The keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.map_ref().keys().cloned().collect()
    }

    /// Removes `key`, returning its value (GoWorld's `Del` and `Pop*`).
    pub fn delete(&mut self, key: &str) -> Option<Value> {
        let old = self.map().remove(key)?;
        let path = self.path.clone();
        self.attrs.record(AttrOp::MapDel { path, key: key.to_owned() });
        Some(old)
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.map().clear();
        let path = self.path.clone();
        self.attrs.record(AttrOp::MapClear { path });
    }

    fn child(&mut self, key: &str, wanted: &'static str, empty: Value) -> Result<Vec<PathElem>, AttrError> {
        let found = self.map_ref().get(key).map(Value::kind);
        match found {
            None => self.set(key, empty),
            Some(k) if k == wanted => {}
            Some(k) => {
                return Err(AttrError::WrongType { key: key.to_owned(), wanted, found: k });
            }
        }
        let mut path = self.path.clone();
        path.push(PathElem::Key(key.to_owned()));
        Ok(path)
    }

    /// The map at `key`, created empty if absent (which records the creation).
    pub fn map_at(&mut self, key: &str) -> Result<MapMut<'_>, AttrError> {
        let path = self.child(key, "map", Value::Map(BTreeMap::new()))?;
        Ok(MapMut { attrs: self.attrs, path })
    }

    /// The list at `key`, created empty if absent (which records the creation).
    pub fn list_at(&mut self, key: &str) -> Result<ListMut<'_>, AttrError> {
        let path = self.child(key, "list", Value::List(Vec::new()))?;
        Ok(ListMut { attrs: self.attrs, path })
    }
}

/// A list inside an attribute tree.
pub struct ListMut<'a> {
    attrs: &'a mut Attrs,
    path: Vec<PathElem>,
}

impl ListMut<'_> {
    fn list(&mut self) -> &mut Vec<Value> {
        match container(&mut self.attrs.root, &self.path) {
            Value::List(l) => l,
            _ => unreachable!("ListMut always points at a list"),
        }
    }

    /// Number of elements.
    pub fn len(&mut self) -> usize {
        self.list().len()
    }

    /// True without elements.
    pub fn is_empty(&mut self) -> bool {
        self.list().is_empty()
    }

    /// Element `i`.
    pub fn get(&mut self, i: usize) -> Option<&Value> {
        self.list().get(i)
    }

    /// Replaces element `i`.
    pub fn set(&mut self, i: usize, value: impl Into<Value>) -> Result<(), AttrError> {
        let value = value.into();
        let l = self.list();
        let len = l.len();
        let slot = l.get_mut(i).ok_or(AttrError::OutOfRange { index: i, len })?;
        *slot = value.clone();
        let index = u32::try_from(i).map_err(|_| AttrError::OutOfRange { index: i, len })?;
        let path = self.path.clone();
        self.attrs.record(AttrOp::ListSet { path, index, value });
        Ok(())
    }

    /// Appends an element.
    pub fn append(&mut self, value: impl Into<Value>) {
        let value = value.into();
        self.list().push(value.clone());
        let path = self.path.clone();
        self.attrs.record(AttrOp::ListAppend { path, value });
    }

    /// Removes and returns the last element.
    pub fn pop(&mut self) -> Option<Value> {
        let v = self.list().pop()?;
        let path = self.path.clone();
        self.attrs.record(AttrOp::ListPop { path });
        Some(v)
    }

    fn child(&mut self, i: usize, wanted: &'static str) -> Result<Vec<PathElem>, AttrError> {
        let l = self.list();
        let len = l.len();
        let v = l.get(i).ok_or(AttrError::OutOfRange { index: i, len })?;
        if v.kind() != wanted {
            return Err(AttrError::WrongType { key: i.to_string(), wanted, found: v.kind() });
        }
        let mut path = self.path.clone();
        path.push(PathElem::Index(u32::try_from(i).map_err(|_| AttrError::OutOfRange { index: i, len })?));
        Ok(path)
    }

    /// The map at index `i` (must exist).
    pub fn map_at(&mut self, i: usize) -> Result<MapMut<'_>, AttrError> {
        let path = self.child(i, "map")?;
        Ok(MapMut { attrs: self.attrs, path })
    }

    /// The list at index `i` (must exist).
    pub fn list_at(&mut self, i: usize) -> Result<ListMut<'_>, AttrError> {
        let path = self.child(i, "list")?;
        Ok(ListMut { attrs: self.attrs, path })
    }
}

#[cfg(test)]
mod tests {
    use oxworld_net::attr_op::{decode_ops, encode_ops};
    use oxworld_net::wire::Reader;
    use proptest::prelude::*;

    use super::*;

    fn schema() -> AttrSchema {
        let mut s = AttrSchema::new();
        s.insert("hp".into(), AttrFlags::ALL_CLIENTS);
        s.insert("gold".into(), AttrFlags::CLIENT | AttrFlags::PERSISTENT);
        s.insert("bag".into(), AttrFlags::CLIENT);
        s.insert("secret".into(), AttrFlags::SERVER);
        s
    }

    #[test]
    fn flags() {
        assert!(AttrFlags::ALL_CLIENTS.has(AttrFlags::CLIENT));
        assert!(!AttrFlags::CLIENT.has(AttrFlags::ALL_CLIENTS));
        assert!(!AttrFlags::SERVER.has(AttrFlags::SERVER), "no flag is not a flag");
        assert!((AttrFlags::CLIENT | AttrFlags::PERSISTENT).has(AttrFlags::PERSISTENT));
    }

    #[test]
    fn full_surface_records_ops() {
        let mut a = Attrs::default();
        let mut r = a.root();
        r.set("hp", 10i64);
        assert!(!r.set_default("hp", 99i64));
        assert_eq!(r.int("hp"), 10);
        {
            let mut bag = r.list_at("bag").expect("list");
            bag.append("sword");
            bag.append(Value::Map(BTreeMap::new()));
            bag.map_at(1).expect("map").set("name", "shield");
            assert_eq!(bag.pop(), Some(Value::Map([("name".to_owned(), Value::from("shield"))].into())));
            bag.set(0, "axe").expect("in range");
            assert!(bag.set(5, "x").is_err());
        }
        assert!(matches!(r.map_at("hp"), Err(AttrError::WrongType { .. })));
        r.map_at("stats").expect("map").set("str", 3i64);
        assert_eq!(r.delete("stats"), Some(Value::Map([("str".to_owned(), Value::Int(3))].into())));
        assert_eq!(r.delete("nothing"), None);
        let ops = a.take_ops();
        assert_eq!(ops.len(), 10, "{ops:#?}");
        assert!(!a.has_ops());
        // Replaying the ops on an empty tree gives the same tree.
        let mut replica = Value::Map(BTreeMap::new());
        for op in &ops {
            op.apply(&mut replica).expect("applies");
        }
        assert_eq!(&replica, a.value());
    }

    #[test]
    fn snapshots_and_filters_follow_flags() {
        let mut a = Attrs::default();
        let mut r = a.root();
        r.set("hp", 1i64);
        r.set("gold", 2i64);
        r.set("secret", 3i64);
        r.set("undeclared", 4i64);
        let s = schema();
        let own = a.snapshot(&s, Audience::Own);
        assert_eq!(own, Value::Map([("gold".to_owned(), Value::Int(2)), ("hp".to_owned(), Value::Int(1))].into()));
        let others = a.snapshot(&s, Audience::Others);
        assert_eq!(others, Value::Map([("hp".to_owned(), Value::Int(1))].into()));
        let ops = a.take_ops();
        assert_eq!(filter_ops(&ops, &s, Audience::Own).count(), 2);
        assert_eq!(filter_ops(&ops, &s, Audience::Others).count(), 1);
        assert!(touches_persistent(&ops, &s));
        assert_eq!(a.persistent_snapshot(&s), Value::Map([("gold".to_owned(), Value::Int(2))].into()));
        let (mut direct, mut built) = (Vec::new(), Vec::new());
        a.encode_persistent(&s, &mut direct);
        a.persistent_snapshot(&s).encode(&mut built);
        assert_eq!(direct, built, "the same bytes without the copy");
    }

    /// One random mutation, addressed by choices that the test resolves against the tree.
    #[derive(Debug, Clone)]
    enum Step {
        Set(u8, u8, i64),
        Default(u8, u8, i64),
        Delete(u8, u8),
        Clear(u8),
        Append(u8, u8, i64),
        ListSet(u8, u8, usize, i64),
        Pop(u8, u8),
        NestMap(u8, u8, u8),
    }

    const ROOTS: [&str; 5] = ["hp", "gold", "bag", "secret", "undeclared"];
    const KEYS: [&str; 3] = ["a", "b", "c"];

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..5u8, 0..3u8, any::<i64>()).prop_map(|(r, k, v)| Step::Set(r, k, v)),
            (0..5u8, 0..3u8, any::<i64>()).prop_map(|(r, k, v)| Step::Default(r, k, v)),
            (0..5u8, 0..3u8).prop_map(|(r, k)| Step::Delete(r, k)),
            (0..5u8).prop_map(Step::Clear),
            (0..5u8, 0..3u8, any::<i64>()).prop_map(|(r, k, v)| Step::Append(r, k, v)),
            (0..5u8, 0..3u8, 0..4usize, any::<i64>()).prop_map(|(r, k, i, v)| Step::ListSet(r, k, i, v)),
            (0..5u8, 0..3u8).prop_map(|(r, k)| Step::Pop(r, k)),
            (0..5u8, 0..3u8, 0..3u8).prop_map(|(r, k, j)| Step::NestMap(r, k, j)),
        ]
    }

    /// Applies a step; failures (wrong type, out of range) are part of the surface and change
    /// nothing.
    fn run(a: &mut Attrs, s: &Step) {
        let mut root = a.root();
        match *s {
            Step::Set(r, k, v) => {
                if let Ok(mut m) = root.map_at(ROOTS[r as usize]) {
                    m.set(KEYS[k as usize], v);
                } else {
                    root.set(ROOTS[r as usize], v);
                }
            }
            Step::Default(r, k, v) => {
                if let Ok(mut m) = root.map_at(ROOTS[r as usize]) {
                    m.set_default(KEYS[k as usize], v);
                }
            }
            Step::Delete(r, k) => {
                if let Ok(mut m) = root.map_at(ROOTS[r as usize]) {
                    m.delete(KEYS[k as usize]);
                }
                if k == 0 {
                    root.delete(ROOTS[r as usize]);
                }
            }
            Step::Clear(r) => {
                if let Ok(mut m) = root.map_at(ROOTS[r as usize]) {
                    m.clear();
                }
            }
            Step::Append(r, k, v) => {
                if let Ok(mut m) = root.map_at(ROOTS[r as usize])
                    && let Ok(mut l) = m.list_at(KEYS[k as usize])
                {
                    l.append(v);
                    l.append(Value::Map(BTreeMap::new()));
                }
            }
            Step::ListSet(r, k, i, v) => {
                if let Ok(mut m) = root.map_at(ROOTS[r as usize])
                    && let Ok(mut l) = m.list_at(KEYS[k as usize])
                {
                    if let Ok(mut inner) = l.map_at(i) {
                        inner.set("deep", v);
                    } else {
                        let _ = l.set(i, v);
                    }
                }
            }
            Step::Pop(r, k) => {
                if let Ok(mut m) = root.map_at(ROOTS[r as usize])
                    && let Ok(mut l) = m.list_at(KEYS[k as usize])
                {
                    l.pop();
                }
            }
            Step::NestMap(r, k, j) => {
                if let Ok(mut m) = root.map_at(ROOTS[r as usize])
                    && let Ok(mut inner) = m.map_at(KEYS[k as usize])
                {
                    inner.set(KEYS[j as usize], Value::List(vec![Value::Int(1)]));
                }
            }
        }
    }

    proptest! {
        /// A client replica fed the filtered, encoded, decoded ops after every flush equals the
        /// server's visible snapshot, for both audiences, nested paths included.
        #[test]
        fn replica_equals_server_after_every_flush(batches in proptest::collection::vec(proptest::collection::vec(step(), 0..12), 1..12)) {
            let s = schema();
            let mut a = Attrs::default();
            let mut own = Value::Map(BTreeMap::new());
            let mut others = Value::Map(BTreeMap::new());
            for batch in &batches {
                for st in batch {
                    run(&mut a, st);
                }
                let ops = a.take_ops();
                for (replica, aud) in [(&mut own, Audience::Own), (&mut others, Audience::Others)] {
                    let visible: Vec<AttrOp> = filter_ops(&ops, &s, aud).cloned().collect();
                    let mut wire = Vec::new();
                    encode_ops(&visible, &mut wire);
                    let decoded = decode_ops(&mut Reader::new(&wire)).expect("decodes");
                    for op in &decoded {
                        op.apply(replica).expect("replica applies every op");
                    }
                    prop_assert_eq!(&*replica, &a.snapshot(&s, aud));
                }
            }
        }
    }
}
