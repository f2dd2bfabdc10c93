//! The self-describing value type carried as RPC arguments: nil, bool, int, float, string,
//! bytes, list, map. Its byte layout is specified in PROTOCOL.md ("Values").

use std::collections::BTreeMap;

use crate::id::Id;
use crate::wire::{DecodeError, Reader, put_bytes, put_len};

/// Deepest nesting of lists and maps a decoder accepts; deeper input is refused, so a hostile
/// message cannot exhaust the stack.
pub const MAX_DEPTH: usize = 32;

/// Memory a decoder may spend on values per input byte, past [`DECODE_BUDGET_FLOOR`]. A value
/// in memory is at least 32 bytes (a list element) for at least 1 byte on the wire, so without
/// a budget a list of nils would take 32 times its bytes.
pub const DECODE_BUDGET_PER_BYTE: usize = 8;

/// Memory any input may take to decode whatever it holds (so small messages are never
/// refused for their shape).
pub const DECODE_BUDGET_FLOOR: usize = 64 << 10;

/// Memory counted per decoded value besides its string or bytes (its slot in a list).
const VALUE_COST: usize = std::mem::size_of::<Value>();

/// Memory counted per map entry besides its value (key string, tree node share).
const MAP_ENTRY_COST: usize = 40;

/// The memory decoding values from `input_len` bytes may take: `8 x input_len + 64 KiB`.
/// Anything more is refused with [`DecodeError::OverBudget`].
pub const fn decode_budget(input_len: usize) -> usize {
    input_len.saturating_mul(DECODE_BUDGET_PER_BYTE).saturating_add(DECODE_BUDGET_FLOOR)
}

/// What decoding may still allocate; one per message, shared by every value in it.
#[derive(Debug)]
pub struct DecodeBudget {
    left: usize,
    total: usize,
}

impl DecodeBudget {
    /// The budget for a message of `len` bytes ([`decode_budget`]).
    pub fn for_input(len: usize) -> Self {
        let total = decode_budget(len);
        DecodeBudget { left: total, total }
    }

    /// Counts `n` bytes about to be allocated; an error once the budget is spent.
    pub fn spend(&mut self, n: usize) -> Result<(), DecodeError> {
        self.left = self.left.checked_sub(n).ok_or(DecodeError::OverBudget(self.total))?;
        Ok(())
    }
}

const TAG_NIL: u8 = 0;
const TAG_FALSE: u8 = 1;
const TAG_TRUE: u8 = 2;
const TAG_INT: u8 = 3;
const TAG_FLOAT: u8 = 4;
const TAG_STR: u8 = 5;
const TAG_BYTES: u8 = 6;
const TAG_LIST: u8 = 7;
const TAG_MAP: u8 = 8;

/// One dynamically typed value.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// No value.
    #[default]
    Nil,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// A UTF-8 string.
    Str(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// An ordered list.
    List(Vec<Value>),
    /// A map with string keys, kept sorted so encodings are deterministic.
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// Appends this value's encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Nil => out.push(TAG_NIL),
            Value::Bool(false) => out.push(TAG_FALSE),
            Value::Bool(true) => out.push(TAG_TRUE),
            Value::Int(i) => {
                out.push(TAG_INT);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Value::Float(f) => {
                out.push(TAG_FLOAT);
                out.extend_from_slice(&f.to_le_bytes());
            }
            Value::Str(s) => {
                out.push(TAG_STR);
                put_bytes(out, s.as_bytes());
            }
            Value::Bytes(b) => {
                out.push(TAG_BYTES);
                put_bytes(out, b);
            }
            Value::List(l) => {
                out.push(TAG_LIST);
                put_len(out, l.len());
                for v in l {
                    v.encode(out);
                }
            }
            Value::Map(m) => {
                out.push(TAG_MAP);
                put_len(out, m.len());
                for (k, v) in m {
                    put_bytes(out, k.as_bytes());
                    v.encode(out);
                }
            }
        }
    }

    /// Reads one value, allocating at most [`decode_budget`] of the bytes left in `r`.
    pub fn decode(r: &mut Reader<'_>) -> Result<Value, DecodeError> {
        Self::decode_with(r, &mut DecodeBudget::for_input(r.remaining()))
    }

    /// Reads one value, spending from a budget shared with the rest of its message.
    pub fn decode_with(r: &mut Reader<'_>, budget: &mut DecodeBudget) -> Result<Value, DecodeError> {
        budget.spend(VALUE_COST)?;
        Self::decode_at(r, 0, budget)
    }

    /// One value whose own slot was already paid for.
    fn decode_at(r: &mut Reader<'_>, depth: usize, budget: &mut DecodeBudget) -> Result<Value, DecodeError> {
        let tag = r.u8("value tag")?;
        Ok(match tag {
            TAG_NIL => Value::Nil,
            TAG_FALSE => Value::Bool(false),
            TAG_TRUE => Value::Bool(true),
            TAG_INT => Value::Int(r.i64("int value")?),
            TAG_FLOAT => Value::Float(r.f64("float value")?),
            TAG_STR => {
                let s = r.str("string value")?;
                budget.spend(s.len())?;
                Value::Str(s.to_owned())
            }
            TAG_BYTES => {
                let b = r.bytes("bytes value")?;
                budget.spend(b.len())?;
                Value::Bytes(b.to_vec())
            }
            TAG_LIST | TAG_MAP if depth >= MAX_DEPTH => {
                return Err(DecodeError::TooDeep(MAX_DEPTH));
            }
            TAG_LIST => {
                let n = r.count("list length", 1)?;
                // Paid before reserving: the count is already bounded by the bytes left.
                budget.spend(n.saturating_mul(VALUE_COST))?;
                let mut l = Vec::with_capacity(n);
                for _ in 0..n {
                    l.push(Self::decode_at(r, depth + 1, budget)?);
                }
                Value::List(l)
            }
            TAG_MAP => {
                // Each entry is at least a 4-byte key length and a 1-byte value tag.
                let n = r.count("map length", 5)?;
                let mut m = BTreeMap::new();
                for _ in 0..n {
                    let k = r.str("map key")?;
                    budget.spend(k.len() + MAP_ENTRY_COST + VALUE_COST)?;
                    let k = k.to_owned();
                    let v = Self::decode_at(r, depth + 1, budget)?;
                    m.insert(k, v);
                }
                Value::Map(m)
            }
            other => return Err(DecodeError::UnknownTag(other)),
        })
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        if let Value::Str(s) = self { Some(s) } else { None }
    }

    /// The integer inside, if this is an integer.
    pub fn as_int(&self) -> Option<i64> {
        if let Value::Int(i) = self { Some(*i) } else { None }
    }

    /// The float inside (integers widen), if this is a number.
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The bool inside, if this is a bool.
    pub fn as_bool(&self) -> Option<bool> {
        if let Value::Bool(b) = self { Some(*b) } else { None }
    }

    /// An entity or client id as a value: its 16 bytes (how ids travel as call arguments, in
    /// attributes and in stored images).
    pub fn id(id: Id) -> Value {
        Value::Bytes(id.0.to_vec())
    }

    /// The id inside, if this is exactly 16 bytes (see [`Value::id`]).
    pub fn as_id(&self) -> Option<Id> {
        match self {
            Value::Bytes(b) => <[u8; 16]>::try_from(b.as_slice()).ok().map(Id),
            _ => None,
        }
    }

    /// Name of this value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }
}

/// Writes the head of a map of `len` entries without building a [`Value::Map`]: each entry
/// follows as its key (`wire::put_bytes`) then its value. With the keys in ascending order (as
/// a `Value::Map` holds them) the bytes equal that map's encoding.
pub fn encode_map_head(out: &mut Vec<u8>, len: usize) {
    out.push(TAG_MAP);
    put_len(out, len);
}

/// Writes the head of a list of `len` items without building a [`Value::List`]: the items
/// follow, each encoded as a value. The bytes equal that list's encoding.
pub fn encode_list_head(out: &mut Vec<u8>, len: usize) {
    out.push(TAG_LIST);
    put_len(out, len);
}

/// Writes a string value without building a [`Value::Str`] (the same bytes).
pub fn encode_str(out: &mut Vec<u8>, s: &str) {
    out.push(TAG_STR);
    put_bytes(out, s.as_bytes());
}

/// Reads the head of a map (the counterpart of [`encode_map_head`]): its entry count, or
/// `None` (nothing consumed but the tag) when the value there is not a map. Each entry follows
/// as a key ([`decode_map_key`]) and a value ([`Value::decode_with`]).
pub fn decode_map_head(r: &mut Reader<'_>, budget: &mut DecodeBudget) -> Result<Option<usize>, DecodeError> {
    budget.spend(VALUE_COST)?;
    if r.u8("value tag")? != TAG_MAP {
        return Ok(None);
    }
    // Each entry is at least a 4-byte key length and a 1-byte value tag.
    Ok(Some(r.count("map length", 5)?))
}

/// Reads one map entry's key, borrowed from the input, paid from `budget` as [`Value::decode`]
/// pays for it.
pub fn decode_map_key<'a>(r: &mut Reader<'a>, budget: &mut DecodeBudget) -> Result<&'a str, DecodeError> {
    let k = r.str("map key")?;
    budget.spend(k.len() + MAP_ENTRY_COST)?;
    Ok(k)
}

/// Appends an argument list: `u32` count + each value.
pub fn encode_args(args: &[Value], out: &mut Vec<u8>) {
    put_len(out, args.len());
    for a in args {
        a.encode(out);
    }
}

/// Reads an argument list written by [`encode_args`].
pub fn decode_args(r: &mut Reader<'_>) -> Result<Vec<Value>, DecodeError> {
    let mut budget = DecodeBudget::for_input(r.remaining());
    let n = r.count("argument count", 1)?;
    budget.spend(n.saturating_mul(VALUE_COST))?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(Value::decode_at(r, 0, &mut budget)?);
    }
    Ok(v)
}

macro_rules! from_impl {
    ($($t:ty => $variant:ident as $conv:ty),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self { Value::$variant(<$conv>::from(v)) }
        }
    )*};
}
from_impl!(bool => Bool as bool, i64 => Int as i64, i32 => Int as i64, u32 => Int as i64,
    u16 => Int as i64, f64 => Float as f64, String => Str as String, &str => Str as String,
    Vec<Value> => List as Vec<Value>);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample() -> Value {
        let mut m = BTreeMap::new();
        m.insert("a".to_owned(), Value::Int(-5));
        m.insert("b".to_owned(), Value::List(vec![Value::Nil, Value::Bool(true), Value::Float(1.5)]));
        m.insert("c".to_owned(), Value::Bytes(vec![1, 2, 3]));
        m.insert("d".to_owned(), Value::Str("héllo".to_owned()));
        Value::Map(m)
    }

    fn roundtrip(v: &Value) -> Result<Value, DecodeError> {
        let mut out = Vec::new();
        v.encode(&mut out);
        let mut r = Reader::new(&out);
        let got = Value::decode(&mut r)?;
        r.finish()?;
        Ok(got)
    }

    #[test]
    fn roundtrip_sample() {
        assert_eq!(roundtrip(&sample()), Ok(sample()));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut out = Vec::new();
        sample().encode(&mut out);
        for cut in 0..out.len() {
            let mut r = Reader::new(&out[..cut]);
            assert!(Value::decode(&mut r).is_err(), "prefix of {cut} bytes decoded");
        }
    }

    #[test]
    fn unknown_tag() {
        assert_eq!(Value::decode(&mut Reader::new(&[0x99])), Err(DecodeError::UnknownTag(0x99)));
    }

    #[test]
    fn huge_list_count_refused() {
        let mut out = vec![TAG_LIST];
        out.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Value::decode(&mut Reader::new(&out)), Err(DecodeError::LengthAttack { .. })));
    }

    /// The worst shapes for memory per input byte (a list of nils: 32 bytes each in memory,
    /// 1 on the wire; a map of empty keys) are refused past the budget, and whatever decodes
    /// stays within it; small messages decode whatever their shape.
    #[test]
    fn decoding_stays_within_its_memory_budget() {
        let nils = |n: usize| {
            let mut out = vec![TAG_LIST];
            out.extend_from_slice(&(n as u32).to_le_bytes());
            out.resize(5 + n, TAG_NIL);
            out
        };
        let small = nils(1000);
        assert!(Value::decode(&mut Reader::new(&small)).is_ok(), "under the floor: any shape");
        let big = nils(1 << 20);
        assert_eq!(Value::decode(&mut Reader::new(&big)), Err(DecodeError::OverBudget(decode_budget(big.len()))));
        let mut map = vec![TAG_MAP];
        let n = 200_000usize;
        map.extend_from_slice(&(n as u32).to_le_bytes());
        for _ in 0..n {
            map.extend_from_slice(&0u32.to_le_bytes());
            map.push(TAG_NIL);
        }
        assert!(matches!(Value::decode(&mut Reader::new(&map)), Err(DecodeError::OverBudget(_))));
        // Many arguments share one budget.
        let mut args = Vec::new();
        put_len(&mut args, 1 << 20);
        args.resize(4 + (1 << 20), TAG_NIL);
        assert!(matches!(decode_args(&mut Reader::new(&args)), Err(DecodeError::OverBudget(_))));
        // Strings and bytes cost what they hold: a 1 MiB string decodes.
        let s = Value::Str("x".repeat(1 << 20));
        assert_eq!(roundtrip(&s), Ok(s));
    }

    #[test]
    fn deep_nesting_refused() {
        let mut out = Vec::new();
        for _ in 0..=MAX_DEPTH {
            out.push(TAG_LIST);
            out.extend_from_slice(&1u32.to_le_bytes());
        }
        out.push(TAG_NIL);
        assert_eq!(Value::decode(&mut Reader::new(&out)), Err(DecodeError::TooDeep(MAX_DEPTH)));
    }

    #[test]
    fn args_roundtrip() {
        let args = vec![Value::from("x"), Value::from(3i64), sample()];
        let mut out = Vec::new();
        encode_args(&args, &mut out);
        assert_eq!(decode_args(&mut Reader::new(&out)), Ok(args));
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<i32>().prop_map(|i| Value::Float(f64::from(i) / 7.0)),
            ".{0,8}".prop_map(Value::Str),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
                proptest::collection::btree_map(".{0,4}", inner, 0..4).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn prop_roundtrip(v in arb_value()) {
            prop_assert_eq!(roundtrip(&v), Ok(v));
        }

        #[test]
        fn prop_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Value::decode(&mut Reader::new(&bytes));
        }
    }
}
