//! The self-describing value type carried as RPC arguments: nil, bool, int, float, string,
//! bytes, list, map. Its byte layout is specified in PROTOCOL.md ("Values").

use std::collections::BTreeMap;

use crate::id::Id;
use crate::wire::{DecodeError, Reader, put_bytes, put_len};

/// Deepest nesting of lists and maps a decoder accepts; deeper input is refused, so a hostile
/// message cannot exhaust the stack.
pub const MAX_DEPTH: usize = 32;

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

    /// Reads one value.
    pub fn decode(r: &mut Reader<'_>) -> Result<Value, DecodeError> {
        Self::decode_at(r, 0)
    }

    fn decode_at(r: &mut Reader<'_>, depth: usize) -> Result<Value, DecodeError> {
        let tag = r.u8("value tag")?;
        Ok(match tag {
            TAG_NIL => Value::Nil,
            TAG_FALSE => Value::Bool(false),
            TAG_TRUE => Value::Bool(true),
            TAG_INT => Value::Int(r.i64("int value")?),
            TAG_FLOAT => Value::Float(r.f64("float value")?),
            TAG_STR => Value::Str(r.str("string value")?.to_owned()),
            TAG_BYTES => Value::Bytes(r.bytes("bytes value")?.to_vec()),
            TAG_LIST | TAG_MAP if depth >= MAX_DEPTH => {
                return Err(DecodeError::TooDeep(MAX_DEPTH));
            }
            TAG_LIST => {
                let n = r.count("list length", 1)?;
                let mut l = Vec::with_capacity(n);
                for _ in 0..n {
                    l.push(Self::decode_at(r, depth + 1)?);
                }
                Value::List(l)
            }
            TAG_MAP => {
                // Each entry is at least a 4-byte key length and a 1-byte value tag.
                let n = r.count("map length", 5)?;
                let mut m = BTreeMap::new();
                for _ in 0..n {
                    let k = r.str("map key")?.to_owned();
                    let v = Self::decode_at(r, depth + 1)?;
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

/// Appends an argument list: `u32` count + each value.
pub fn encode_args(args: &[Value], out: &mut Vec<u8>) {
    put_len(out, args.len());
    for a in args {
        a.encode(out);
    }
}

/// Reads an argument list written by [`encode_args`].
pub fn decode_args(r: &mut Reader<'_>) -> Result<Vec<Value>, DecodeError> {
    let n = r.count("argument count", 1)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(Value::decode(r)?);
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
