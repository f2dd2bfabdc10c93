//! Attribute deltas: typed operations on an entity's attribute tree (a `Value::Map`), their wire
//! encoding, and `apply`, which a client replica uses to follow the server's tree.
//!
//! A path names a container from the root down: map keys and list indices. Every operation
//! acts on the container its path names. PROTOCOL.md ("Attribute operations") is normative.

use crate::value::{DecodeBudget, Value};
use crate::wire::{DecodeError, Reader, put_bytes, put_len};

/// One step of a path: a map key or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathElem {
    /// Key in a map.
    Key(String),
    /// Index in a list.
    Index(u32),
}

/// One change to an attribute tree.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrOp {
    /// `map[key] = value` in the map at `path`.
    MapSet {
        /// Map to change.
        path: Vec<PathElem>,
        /// Key.
        key: String,
        /// New value (containers are sent whole).
        value: Value,
    },
    /// Remove `key` from the map at `path`.
    MapDel {
        /// Map to change.
        path: Vec<PathElem>,
        /// Key.
        key: String,
    },
    /// Remove every key of the map at `path`.
    MapClear {
        /// Map to change.
        path: Vec<PathElem>,
    },
    /// `list[index] = value` in the list at `path`.
    ListSet {
        /// List to change.
        path: Vec<PathElem>,
        /// Index (must exist).
        index: u32,
        /// New value.
        value: Value,
    },
    /// Append `value` to the list at `path`.
    ListAppend {
        /// List to change.
        path: Vec<PathElem>,
        /// Appended value.
        value: Value,
    },
    /// Remove the last element of the list at `path`.
    ListPop {
        /// List to change.
        path: Vec<PathElem>,
    },
}

const OP_MAP_SET: u8 = 1;
const OP_MAP_DEL: u8 = 2;
const OP_MAP_CLEAR: u8 = 3;
const OP_LIST_SET: u8 = 4;
const OP_LIST_APPEND: u8 = 5;
const OP_LIST_POP: u8 = 6;
const ELEM_KEY: u8 = 0;
const ELEM_INDEX: u8 = 1;

/// Why an operation could not be applied to a tree (a replica out of step, or a bad sender).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The path does not lead to an existing container of the right kind.
    #[error("path does not name a {0}")]
    BadPath(&'static str),
    /// A list index past the end.
    #[error("list index {index} out of range (len {len})")]
    OutOfRange {
        /// Index.
        index: u32,
        /// List length.
        len: usize,
    },
}

impl AttrOp {
    /// The path of the container the operation changes.
    pub fn path(&self) -> &[PathElem] {
        match self {
            AttrOp::MapSet { path, .. }
            | AttrOp::MapDel { path, .. }
            | AttrOp::MapClear { path }
            | AttrOp::ListSet { path, .. }
            | AttrOp::ListAppend { path, .. }
            | AttrOp::ListPop { path } => path,
        }
    }

    /// The root attribute the operation touches (`None` for a clear of the root itself).
    pub fn root_key(&self) -> Option<&str> {
        match self.path().first() {
            Some(PathElem::Key(k)) => Some(k),
            Some(PathElem::Index(_)) => None,
            None => match self {
                AttrOp::MapSet { key, .. } | AttrOp::MapDel { key, .. } => Some(key),
                _ => None,
            },
        }
    }

    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (tag, path) = match self {
            AttrOp::MapSet { path, .. } => (OP_MAP_SET, path),
            AttrOp::MapDel { path, .. } => (OP_MAP_DEL, path),
            AttrOp::MapClear { path } => (OP_MAP_CLEAR, path),
            AttrOp::ListSet { path, .. } => (OP_LIST_SET, path),
            AttrOp::ListAppend { path, .. } => (OP_LIST_APPEND, path),
            AttrOp::ListPop { path } => (OP_LIST_POP, path),
        };
        out.push(tag);
        put_len(out, path.len());
        for e in path {
            match e {
                PathElem::Key(k) => {
                    out.push(ELEM_KEY);
                    put_bytes(out, k.as_bytes());
                }
                PathElem::Index(i) => {
                    out.push(ELEM_INDEX);
                    out.extend_from_slice(&i.to_le_bytes());
                }
            }
        }
        match self {
            AttrOp::MapSet { key, value, .. } => {
                put_bytes(out, key.as_bytes());
                value.encode(out);
            }
            AttrOp::MapDel { key, .. } => put_bytes(out, key.as_bytes()),
            AttrOp::ListSet { index, value, .. } => {
                out.extend_from_slice(&index.to_le_bytes());
                value.encode(out);
            }
            AttrOp::ListAppend { value, .. } => value.encode(out),
            AttrOp::MapClear { .. } | AttrOp::ListPop { .. } => {}
        }
    }

    /// Reads one operation.
    pub fn decode(r: &mut Reader<'_>) -> Result<AttrOp, DecodeError> {
        Self::decode_with(r, &mut DecodeBudget::for_input(r.remaining()))
    }

    /// Reads one operation, its value spending from a budget shared with its message.
    pub fn decode_with(r: &mut Reader<'_>, budget: &mut DecodeBudget) -> Result<AttrOp, DecodeError> {
        let tag = r.u8("attr op")?;
        // A path element is at least 5 bytes (tag + u32).
        let n = r.count("path length", 5)?;
        if n > crate::value::MAX_DEPTH {
            return Err(DecodeError::TooDeep(crate::value::MAX_DEPTH));
        }
        let mut path = Vec::with_capacity(n);
        for _ in 0..n {
            path.push(match r.u8("path element")? {
                ELEM_KEY => PathElem::Key(r.str("path key")?.to_owned()),
                ELEM_INDEX => PathElem::Index(r.u32("path index")?),
                _ => return Err(DecodeError::Invalid("path element kind")),
            });
        }
        Ok(match tag {
            OP_MAP_SET => AttrOp::MapSet { path, key: r.str("key")?.to_owned(), value: Value::decode_with(r, budget)? },
            OP_MAP_DEL => AttrOp::MapDel { path, key: r.str("key")?.to_owned() },
            OP_MAP_CLEAR => AttrOp::MapClear { path },
            OP_LIST_SET => AttrOp::ListSet { path, index: r.u32("index")?, value: Value::decode_with(r, budget)? },
            OP_LIST_APPEND => AttrOp::ListAppend { path, value: Value::decode_with(r, budget)? },
            OP_LIST_POP => AttrOp::ListPop { path },
            _ => return Err(DecodeError::Invalid("attr op kind")),
        })
    }

    /// Applies the operation to `root` (a map).
    pub fn apply(&self, root: &mut Value) -> Result<(), ApplyError> {
        let target = walk(root, self.path())?;
        match (self, target) {
            (AttrOp::MapSet { key, value, .. }, Value::Map(m)) => {
                m.insert(key.clone(), value.clone());
            }
            (AttrOp::MapDel { key, .. }, Value::Map(m)) => {
                m.remove(key);
            }
            (AttrOp::MapClear { .. }, Value::Map(m)) => m.clear(),
            (AttrOp::ListSet { index, value, .. }, Value::List(l)) => {
                let len = l.len();
                let slot = l.get_mut(*index as usize).ok_or(ApplyError::OutOfRange { index: *index, len })?;
                *slot = value.clone();
            }
            (AttrOp::ListAppend { value, .. }, Value::List(l)) => l.push(value.clone()),
            (AttrOp::ListPop { .. }, Value::List(l)) => {
                l.pop();
            }
            (AttrOp::MapSet { .. } | AttrOp::MapDel { .. } | AttrOp::MapClear { .. }, _) => {
                return Err(ApplyError::BadPath("map"));
            }
            _ => return Err(ApplyError::BadPath("list")),
        }
        Ok(())
    }
}

/// The container at `path` below `root`.
pub fn walk<'v>(root: &'v mut Value, path: &[PathElem]) -> Result<&'v mut Value, ApplyError> {
    let mut cur = root;
    for e in path {
        cur = match (e, cur) {
            (PathElem::Key(k), Value::Map(m)) => m.get_mut(k).ok_or(ApplyError::BadPath("container"))?,
            (PathElem::Index(i), Value::List(l)) => l.get_mut(*i as usize).ok_or(ApplyError::BadPath("container"))?,
            _ => return Err(ApplyError::BadPath("container")),
        };
    }
    Ok(cur)
}

/// Appends a list of operations: `u32` count, then each.
pub fn encode_ops(ops: &[AttrOp], out: &mut Vec<u8>) {
    put_len(out, ops.len());
    for op in ops {
        op.encode(out);
    }
}

/// Reads a list written by [`encode_ops`].
pub fn decode_ops(r: &mut Reader<'_>) -> Result<Vec<AttrOp>, DecodeError> {
    // An op is at least 5 bytes (tag + path length).
    let mut budget = DecodeBudget::for_input(r.remaining());
    let n = r.count("op count", 5)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(AttrOp::decode_with(r, &mut budget)?);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn k(s: &str) -> PathElem {
        PathElem::Key(s.into())
    }

    fn samples() -> Vec<AttrOp> {
        vec![
            AttrOp::MapSet { path: vec![], key: "hp".into(), value: Value::Int(10) },
            AttrOp::MapSet { path: vec![], key: "inv".into(), value: Value::List(vec![]) },
            AttrOp::ListAppend { path: vec![k("inv")], value: Value::Map(BTreeMap::new()) },
            AttrOp::MapSet {
                path: vec![k("inv"), PathElem::Index(0)],
                key: "name".into(),
                value: Value::from("sword"),
            },
            AttrOp::ListSet { path: vec![k("inv")], index: 0, value: Value::from("axe") },
            AttrOp::ListPop { path: vec![k("inv")] },
            AttrOp::MapDel { path: vec![], key: "hp".into() },
            AttrOp::MapClear { path: vec![k("inv2")] },
        ]
    }

    #[test]
    fn roundtrip_and_truncation() {
        let ops = samples();
        let mut out = Vec::new();
        encode_ops(&ops, &mut out);
        let mut r = Reader::new(&out);
        assert_eq!(decode_ops(&mut r), Ok(ops));
        assert_eq!(r.finish(), Ok(()));
        for cut in 0..out.len() {
            assert!(decode_ops(&mut Reader::new(&out[..cut])).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn hostile_input() {
        // Path length claiming 4 G elements.
        let mut out = vec![OP_MAP_CLEAR];
        out.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(AttrOp::decode(&mut Reader::new(&out)).is_err());
        // Unknown op and element kinds.
        assert!(AttrOp::decode(&mut Reader::new(&[99, 0, 0, 0, 0])).is_err());
        assert!(AttrOp::decode(&mut Reader::new(&[OP_LIST_POP, 1, 0, 0, 0, 7, 0, 0, 0, 0])).is_err());
    }

    #[test]
    fn apply_sequence_and_errors() {
        let mut root = Value::Map(BTreeMap::new());
        for op in samples().iter().take(7) {
            op.apply(&mut root).expect("applies");
        }
        let mut want = BTreeMap::new();
        want.insert("inv".to_owned(), Value::List(vec![]));
        assert_eq!(root, Value::Map(want));
        assert_eq!(samples()[7].apply(&mut root), Err(ApplyError::BadPath("container")));
        let bad = AttrOp::ListSet { path: vec![k("inv")], index: 3, value: Value::Nil };
        assert_eq!(bad.apply(&mut root), Err(ApplyError::OutOfRange { index: 3, len: 0 }));
        let wrong_kind = AttrOp::ListAppend { path: vec![], value: Value::Nil };
        assert_eq!(wrong_kind.apply(&mut root), Err(ApplyError::BadPath("list")));
    }
}
