//! The portable form of one entity, used to move it to another game and to freeze it for a hot
//! swap: type, attributes, timers (method *names* and remaining time), crontab entries, client
//! binding, position, the space it is in or going to, and the state its `Entity::save`
//! returned. Encoded as one `Value` map with a version, so a reader can refuse what it does not
//! understand instead of guessing.

use std::time::Duration;

use oxworld_net::value::{
    DecodeBudget, decode_map_head, decode_map_key, encode_list_head, encode_map_head, encode_str,
};
use oxworld_net::wire::{DecodeError, Reader, put_bytes};
use oxworld_net::{Id, Value};
use thiserror::Error;

use crate::world::ClientRef;

/// Version of the encoding below; bumped on any change. Version 2 added crontab entries,
/// timer handles and the kind of space entities; version 3 the client's resume token and,
/// for a client that is away, its time left and dropped messages; versions 1 and 2 are still
/// read.
pub const ENTITY_IMAGE_VERSION: i64 = 3;

/// The oldest version this binary reads.
pub const OLDEST_ENTITY_IMAGE_VERSION: i64 = 1;

/// One timer as carried across games.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerImage {
    /// Method name (ids are recomputed by the receiver).
    pub method: String,
    /// Time left until it fires.
    pub remaining: Duration,
    /// Repeat interval, if repeating.
    pub repeat: Option<Duration>,
    /// Call arguments.
    pub args: Vec<Value>,
    /// The handle the entity was given (kept where it does not clash on the receiver).
    pub id: Option<u64>,
}

/// One crontab entry as carried across games.
#[derive(Debug, Clone, PartialEq)]
pub struct CronImage {
    /// The schedule as written (`"*/5 * * * *"`).
    pub spec: String,
    /// Method name.
    pub method: String,
    /// Call arguments.
    pub args: Vec<Value>,
}

/// Everything needed to rebuild one entity elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityImage {
    /// Registered type name.
    pub type_name: String,
    /// Attribute tree (a map).
    pub attrs: Value,
    /// Live timers.
    pub timers: Vec<TimerImage>,
    /// Bound client.
    pub client: Option<ClientRef>,
    /// The bound client is away: ms left to resume, and messages it lost so far.
    pub away: Option<(u64, u32)>,
    /// The bound client's filter properties (`set_client_filter_prop`), key order.
    pub props: Vec<(String, String)>,
    /// Position and yaw: x, y, z, yaw.
    pub pos: [f32; 4],
    /// Space to enter on arrival (and where in it).
    pub space: Id,
    /// What `Entity::save` returned.
    pub state: Value,
    /// Whether the own client may move it.
    pub client_move: bool,
    /// AOI radius, if it takes part in AOI.
    pub radius: Option<f32>,
    /// Crontab entries.
    pub cron: Vec<CronImage>,
    /// Spaces only (freezes): the space's kind.
    pub space_kind: Option<i64>,
}

/// The fields an image's map may hold, read entry by entry (`EntityImage::decode`).
#[derive(Default)]
struct Fields {
    slots: [Option<Value>; FIELDS.len()],
}

/// Every key an image's map may hold.
const FIELDS: [&str; 13] = [
    "attrs",
    "client",
    "client_move",
    "cron",
    "kind",
    "pos",
    "props",
    "radius",
    "space",
    "state",
    "timers",
    "type",
    "v",
];

impl Fields {
    fn put(&mut self, key: &str, v: Value) {
        if let Some(i) = FIELDS.iter().position(|k| *k == key) {
            self.slots[i] = Some(v);
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        FIELDS.iter().position(|k| *k == key).and_then(|i| self.slots[i].as_ref())
    }

    fn remove(&mut self, key: &str) -> Option<Value> {
        FIELDS.iter().position(|k| *k == key).and_then(|i| self.slots[i].take())
    }
}

/// An [`EntityImage`] borrowed from a live entity: encodes to the same bytes without copying
/// its attributes or state (a freeze of 100,000 entities copied each tree twice).
#[derive(Debug, Clone, Copy)]
pub struct EntityImageRef<'a> {
    /// Registered type name.
    pub type_name: &'a str,
    /// Attribute tree (a map).
    pub attrs: &'a Value,
    /// Live timers.
    pub timers: &'a [TimerImage],
    /// Bound client.
    pub client: Option<ClientRef>,
    /// The bound client is away: ms left to resume, and messages it lost so far.
    pub away: Option<(u64, u32)>,
    /// The bound client's filter properties (`set_client_filter_prop`), key order.
    pub props: &'a [(String, String)],
    /// Position and yaw: x, y, z, yaw.
    pub pos: [f32; 4],
    /// Space to enter on arrival (and where in it).
    pub space: Id,
    /// What `Entity::save` returned.
    pub state: &'a Value,
    /// Whether the own client may move it.
    pub client_move: bool,
    /// AOI radius, if it takes part in AOI.
    pub radius: Option<f32>,
    /// Crontab entries.
    pub cron: &'a [CronImage],
    /// Spaces only (freezes): the space's kind.
    pub space_kind: Option<i64>,
}

impl EntityImageRef<'_> {
    /// Appends the encoded image: one `Value` map written entry by entry, keys in ascending
    /// order, so the bytes are those of the map `EntityImage::decode` reads.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // Lists and strings are written in place (no `Value` built, no argument cloned): a
        // freeze writes one image per entity.
        let optional = [
            self.client.is_some(),
            !self.cron.is_empty(),
            self.space_kind.is_some(),
            self.radius.is_some(),
            !self.props.is_empty(),
        ];
        encode_map_head(out, 8 + optional.iter().filter(|o| **o).count());
        let key = |out: &mut Vec<u8>, k: &str| put_bytes(out, k.as_bytes());
        let list = |out: &mut Vec<u8>, items: &[Value]| {
            encode_list_head(out, items.len());
            items.iter().for_each(|v| v.encode(out));
        };
        key(out, "attrs");
        self.attrs.encode(out);
        if let Some(c) = self.client {
            key(out, "client");
            encode_list_head(out, if self.away.is_some() { 5 } else { 3 });
            Value::Int(i64::from(c.gate)).encode(out);
            Value::id(c.client).encode(out);
            Value::id(c.token).encode(out);
            if let Some((left, dropped)) = self.away {
                Value::Int(i64::try_from(left).unwrap_or(i64::MAX)).encode(out);
                Value::Int(i64::from(dropped)).encode(out);
            }
        }
        key(out, "client_move");
        Value::Bool(self.client_move).encode(out);
        if !self.cron.is_empty() {
            key(out, "cron");
            encode_list_head(out, self.cron.len());
            for c in self.cron {
                encode_list_head(out, 3);
                encode_str(out, &c.spec);
                encode_str(out, &c.method);
                list(out, &c.args);
            }
        }
        if let Some(k) = self.space_kind {
            key(out, "kind");
            Value::Int(k).encode(out);
        }
        key(out, "pos");
        encode_list_head(out, self.pos.len());
        self.pos.iter().for_each(|f| Value::Float(f64::from(*f)).encode(out));
        if !self.props.is_empty() {
            key(out, "props");
            encode_list_head(out, self.props.len());
            for (k, v) in self.props {
                encode_list_head(out, 2);
                encode_str(out, k);
                encode_str(out, v);
            }
        }
        if let Some(r) = self.radius {
            key(out, "radius");
            Value::Float(f64::from(r)).encode(out);
        }
        key(out, "space");
        Value::id(self.space).encode(out);
        key(out, "state");
        self.state.encode(out);
        key(out, "timers");
        encode_list_head(out, self.timers.len());
        for t in self.timers {
            encode_list_head(out, 5);
            encode_str(out, &t.method);
            ms(t.remaining).encode(out);
            t.repeat.map(ms).unwrap_or(Value::Nil).encode(out);
            list(out, &t.args);
            t.id.map(|i| Value::Int(i64::try_from(i).unwrap_or(-1))).unwrap_or(Value::Nil).encode(out);
        }
        key(out, "type");
        encode_str(out, self.type_name);
        key(out, "v");
        Value::Int(ENTITY_IMAGE_VERSION).encode(out);
    }
}

/// An image that cannot be read.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum ImageError {
    /// Undecodable bytes.
    #[error("undecodable entity image: {0}")]
    Decode(#[from] DecodeError),
    /// A field missing or of the wrong kind.
    #[error("entity image field {0:?} missing or malformed")]
    Field(&'static str),
    /// Written by an incompatible version.
    #[error("entity image version {0} is not supported (this binary reads {ENTITY_IMAGE_VERSION})")]
    Version(i64),
}

fn ms(d: Duration) -> Value {
    Value::Int(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl EntityImage {
    /// The encoded image.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.borrowed().encode_into(&mut out);
        out
    }

    /// The same image, borrowed.
    pub fn borrowed(&self) -> EntityImageRef<'_> {
        EntityImageRef {
            type_name: &self.type_name,
            attrs: &self.attrs,
            timers: &self.timers,
            client: self.client,
            away: self.away,
            props: &self.props,
            pos: self.pos,
            space: self.space,
            state: &self.state,
            client_move: self.client_move,
            radius: self.radius,
            cron: &self.cron,
            space_kind: self.space_kind,
        }
    }

    /// Reads an image written by [`EntityImage::encode`].
    ///
    /// The map is read entry by entry into the fields it may hold (a later duplicate wins, as
    /// in a `Value::Map`; unknown keys are read and dropped), without building the map.
    pub fn decode(bytes: &[u8]) -> Result<EntityImage, ImageError> {
        let mut r = Reader::new(bytes);
        let mut budget = DecodeBudget::for_input(bytes.len());
        let Some(n) = decode_map_head(&mut r, &mut budget)? else { return Err(ImageError::Field("root")) };
        let mut m = Fields::default();
        for _ in 0..n {
            let key = decode_map_key(&mut r, &mut budget)?;
            let v = Value::decode_with(&mut r, &mut budget)?;
            m.put(key, v);
        }
        r.finish()?;
        let version = m.get("v").and_then(Value::as_int).ok_or(ImageError::Field("v"))?;
        if !(OLDEST_ENTITY_IMAGE_VERSION..=ENTITY_IMAGE_VERSION).contains(&version) {
            return Err(ImageError::Version(version));
        }
        let type_name = m.get("type").and_then(Value::as_str).ok_or(ImageError::Field("type"))?.to_owned();
        let attrs = m.remove("attrs").filter(|a| matches!(a, Value::Map(_))).ok_or(ImageError::Field("attrs"))?;
        let mut timers = Vec::new();
        let Some(Value::List(ts)) = m.remove("timers") else { return Err(ImageError::Field("timers")) };
        for t in ts {
            let Value::List(mut f) = t else { return Err(ImageError::Field("timers")) };
            // Version 1 timers have no handle.
            let id = match f.len() {
                5 => match f.pop() {
                    Some(Value::Int(i)) => u64::try_from(i).ok(),
                    _ => None,
                },
                _ => None,
            };
            let [Value::Str(method), Value::Int(rem), repeat, Value::List(args)] =
                <[Value; 4]>::try_from(f).map_err(|_| ImageError::Field("timers"))?
            else {
                return Err(ImageError::Field("timers"));
            };
            let dur = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
            let repeat = match repeat {
                Value::Nil => None,
                Value::Int(r) => Some(dur(r)),
                _ => return Err(ImageError::Field("timers")),
            };
            timers.push(TimerImage { method, remaining: dur(rem), repeat, args, id });
        }
        let mut cron = Vec::new();
        match m.remove("cron") {
            None => {}
            Some(Value::List(cs)) => {
                for c in cs {
                    let Value::List(f) = c else { return Err(ImageError::Field("cron")) };
                    let [Value::Str(spec), Value::Str(method), Value::List(args)] =
                        <[Value; 3]>::try_from(f).map_err(|_| ImageError::Field("cron"))?
                    else {
                        return Err(ImageError::Field("cron"));
                    };
                    cron.push(CronImage { spec, method, args });
                }
            }
            Some(_) => return Err(ImageError::Field("cron")),
        }
        let space_kind = match m.get("kind") {
            None => None,
            Some(Value::Int(k)) => Some(*k),
            Some(_) => return Err(ImageError::Field("kind")),
        };
        let id_of = |v: Option<&Value>, what: &'static str| v.and_then(Value::as_id).ok_or(ImageError::Field(what));
        let (client, away) = match m.get("client") {
            None => (None, None),
            // Versions 1 and 2: gate and client; 3: and the token; and, away, ms left and dropped.
            Some(Value::List(l)) if [2, 3, 5].contains(&l.len()) => {
                let gate = l[0].as_int().and_then(|g| u16::try_from(g).ok()).ok_or(ImageError::Field("client"))?;
                let token = if l.len() >= 3 { id_of(l.get(2), "client")? } else { Id::NIL };
                let away = if l.len() == 5 {
                    let n = |i: usize| l[i].as_int().filter(|v| *v >= 0).ok_or(ImageError::Field("client"));
                    Some((n(3)? as u64, u32::try_from(n(4)?).unwrap_or(u32::MAX)))
                } else {
                    None
                };
                (Some(ClientRef { gate, client: id_of(l.get(1), "client")?, token }), away)
            }
            Some(_) => return Err(ImageError::Field("client")),
        };
        let mut props = Vec::new();
        match m.get("props") {
            None => {}
            Some(Value::List(l)) => {
                for p in l {
                    let Value::List(kv) = p else { return Err(ImageError::Field("props")) };
                    match (kv.first().and_then(Value::as_str), kv.get(1).and_then(Value::as_str), kv.len()) {
                        (Some(k), Some(v), 2) => props.push((k.to_owned(), v.to_owned())),
                        _ => return Err(ImageError::Field("props")),
                    }
                }
            }
            Some(_) => return Err(ImageError::Field("props")),
        }
        let pos = match m.get("pos") {
            Some(Value::List(l)) if l.len() == 4 => {
                let mut p = [0f32; 4];
                for (o, v) in p.iter_mut().zip(l) {
                    *o = v.as_float().ok_or(ImageError::Field("pos"))? as f32;
                }
                p
            }
            _ => return Err(ImageError::Field("pos")),
        };
        let space = id_of(m.get("space"), "space")?;
        let state = m.remove("state").unwrap_or(Value::Nil);
        let client_move = m.get("client_move").and_then(Value::as_bool).unwrap_or(false);
        let radius = m.get("radius").and_then(Value::as_float).map(|r| r as f32);
        Ok(EntityImage {
            type_name,
            attrs,
            timers,
            client,
            away,
            props,
            pos,
            space,
            state,
            client_move,
            radius,
            cron,
            space_kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn sample() -> EntityImage {
        EntityImage {
            type_name: "Player".into(),
            attrs: Value::Map([("hp".to_owned(), Value::Int(3))].into()),
            timers: vec![TimerImage {
                method: "tick".into(),
                remaining: Duration::from_millis(40),
                repeat: Some(Duration::from_millis(100)),
                args: vec![Value::from("x")],
                id: Some(77),
            }],
            client: Some(ClientRef { gate: 2, client: Id([7; 16]), token: Id([8; 16]) }),
            away: Some((1500, 2)),
            props: vec![("prof".into(), "3".into()), ("zone".into(), "north".into())],
            pos: [1.0, 2.0, 3.0, 45.0],
            space: Id([9; 16]),
            state: Value::Int(11),
            client_move: true,
            radius: Some(50.0),
            cron: vec![CronImage { spec: "*/5 * * * *".into(), method: "tock".into(), args: vec![Value::Int(2)] }],
            space_kind: Some(3),
        }
    }

    /// The image as one `Value` map, built the way images were written before they were
    /// written entry by entry: the bytes must not change.
    fn as_value_map(i: &EntityImage) -> Vec<u8> {
        let mut m = BTreeMap::new();
        m.insert("v".to_owned(), Value::Int(ENTITY_IMAGE_VERSION));
        m.insert("type".to_owned(), Value::from(i.type_name.as_str()));
        m.insert("attrs".to_owned(), i.attrs.clone());
        let timers = i
            .timers
            .iter()
            .map(|t| {
                Value::List(vec![
                    Value::from(t.method.as_str()),
                    ms(t.remaining),
                    t.repeat.map(ms).unwrap_or(Value::Nil),
                    Value::List(t.args.clone()),
                    t.id.map(|i| Value::Int(i64::try_from(i).unwrap_or(-1))).unwrap_or(Value::Nil),
                ])
            })
            .collect();
        m.insert("timers".to_owned(), Value::List(timers));
        if !i.cron.is_empty() {
            let cron = i
                .cron
                .iter()
                .map(|c| {
                    Value::List(vec![
                        Value::from(c.spec.as_str()),
                        Value::from(c.method.as_str()),
                        Value::List(c.args.clone()),
                    ])
                })
                .collect();
            m.insert("cron".to_owned(), Value::List(cron));
        }
        if let Some(k) = i.space_kind {
            m.insert("kind".to_owned(), Value::Int(k));
        }
        if let Some(c) = i.client {
            let mut l = vec![Value::Int(i64::from(c.gate)), Value::id(c.client), Value::id(c.token)];
            if let Some((left, dropped)) = i.away {
                l.extend([Value::Int(left as i64), Value::Int(i64::from(dropped))]);
            }
            m.insert("client".to_owned(), Value::List(l));
        }
        m.insert("pos".to_owned(), Value::List(i.pos.iter().map(|f| Value::Float(f64::from(*f))).collect()));
        if !i.props.is_empty() {
            let props =
                i.props.iter().map(|(k, v)| Value::List(vec![Value::from(k.as_str()), Value::from(v.as_str())]));
            m.insert("props".to_owned(), Value::List(props.collect()));
        }
        m.insert("space".to_owned(), Value::id(i.space));
        m.insert("state".to_owned(), i.state.clone());
        m.insert("client_move".to_owned(), Value::Bool(i.client_move));
        if let Some(r) = i.radius {
            m.insert("radius".to_owned(), Value::Float(f64::from(r)));
        }
        let mut out = Vec::new();
        Value::Map(m).encode(&mut out);
        out
    }

    #[test]
    fn written_entry_by_entry_the_bytes_are_the_value_maps() {
        let full = sample();
        assert_eq!(full.encode(), as_value_map(&full));
        let mut attached = sample();
        attached.away = None;
        assert_eq!(attached.encode(), as_value_map(&attached));
        let mut bare = sample();
        bare.client = None;
        bare.away = None;
        bare.props.clear();
        bare.radius = None;
        bare.cron.clear();
        bare.space_kind = None;
        bare.timers.clear();
        assert_eq!(bare.encode(), as_value_map(&bare));
    }

    #[test]
    fn roundtrip() {
        assert_eq!(EntityImage::decode(&sample().encode()), Ok(sample()));
        let mut none = sample();
        none.client = None;
        none.away = None;
        none.props.clear();
        none.radius = None;
        none.timers.clear();
        none.cron.clear();
        none.space_kind = None;
        assert_eq!(EntityImage::decode(&none.encode()), Ok(none));
    }

    /// An image written by a version 1 binary (no cron, no timer handles) is still read.
    #[test]
    fn version_1_images_are_read() {
        let mut m = BTreeMap::new();
        m.insert("v".to_owned(), Value::Int(1));
        m.insert("type".to_owned(), Value::from("Player"));
        m.insert("attrs".to_owned(), Value::Map(BTreeMap::new()));
        let t = Value::List(vec![Value::from("tick"), Value::Int(40), Value::Nil, Value::List(vec![])]);
        m.insert("timers".to_owned(), Value::List(vec![t]));
        m.insert("pos".to_owned(), Value::List(vec![Value::Float(0.0); 4]));
        m.insert("space".to_owned(), Value::Bytes(vec![0; 16]));
        let mut out = Vec::new();
        Value::Map(m).encode(&mut out);
        let img = EntityImage::decode(&out).expect("v1 image");
        assert_eq!(img.timers[0].id, None);
        assert_eq!(img.timers[0].remaining, Duration::from_millis(40));
        assert!(img.cron.is_empty());
    }

    /// Read entry by entry, an image still reads like the map it is: unknown keys are
    /// skipped, a later duplicate wins, and a hostile count or key is an error, not a panic.
    #[test]
    fn unknown_keys_are_skipped_and_a_later_duplicate_wins() {
        let img = sample();
        let bytes = img.encode();
        // Re-write the map with one more unknown entry and a duplicate `state` at the end.
        let mut out = Vec::new();
        oxworld_net::value::encode_map_head(&mut out, 13 + 2);
        out.extend_from_slice(&bytes[5..]);
        oxworld_net::wire::put_bytes(&mut out, b"zz_future");
        Value::List(vec![Value::Int(1)]).encode(&mut out);
        oxworld_net::wire::put_bytes(&mut out, b"state");
        Value::Int(99).encode(&mut out);
        let got = EntityImage::decode(&out).expect("reads");
        assert_eq!(got.state, Value::Int(99));
        assert_eq!(EntityImage { state: img.state.clone(), ..got }, img);
        // A count far beyond the bytes, and a key that is not UTF-8.
        let mut huge = Vec::new();
        oxworld_net::value::encode_map_head(&mut huge, u32::MAX as usize);
        assert!(EntityImage::decode(&huge).is_err());
        let mut bad_key = Vec::new();
        oxworld_net::value::encode_map_head(&mut bad_key, 1);
        oxworld_net::wire::put_bytes(&mut bad_key, &[0xff, 0xfe]);
        Value::Nil.encode(&mut bad_key);
        assert!(EntityImage::decode(&bad_key).is_err());
    }

    #[test]
    fn truncated_garbage_and_other_versions_are_errors() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(EntityImage::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        assert!(EntityImage::decode(&[0xff, 1, 2]).is_err());
        let mut m = BTreeMap::new();
        m.insert("v".to_owned(), Value::Int(99));
        let mut out = Vec::new();
        Value::Map(m).encode(&mut out);
        assert_eq!(EntityImage::decode(&out), Err(ImageError::Version(99)));
        let mut out = Vec::new();
        Value::Int(1).encode(&mut out);
        assert_eq!(EntityImage::decode(&out), Err(ImageError::Field("root")));
    }
}
