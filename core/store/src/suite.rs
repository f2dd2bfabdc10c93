//! The test suite every storage backend must pass (`MemStore`, LMDB, Redis): KVDB get, put,
//! get-or-put and ranges, entity save, load, exists and list, batches, reopen.

use oxworld_engine::Id;
use oxworld_engine::store::{
    MAX_KEY_BYTES, MAX_RECORD_BYTES, MAX_VALUE_BYTES, Store, StoreErrorKind, StoreOp, StoreReply,
};

fn ok(s: &mut dyn Store, op: StoreOp) -> StoreReply {
    s.execute(op.clone()).unwrap_or_else(|e| panic!("{} {op:?}: {e}", s.backend()))
}

fn put(s: &mut dyn Store, k: &str, v: &str) {
    assert_eq!(ok(s, StoreOp::KvPut { key: k.into(), value: v.into() }), StoreReply::Done);
}

fn get(s: &mut dyn Store, k: &str) -> Option<String> {
    match ok(s, StoreOp::KvGet { key: k.into() }) {
        StoreReply::Value(v) => v,
        other => panic!("{other:?}"),
    }
}

fn range(s: &mut dyn Store, b: &str, e: &str) -> Vec<(String, String)> {
    match ok(s, StoreOp::KvRange { begin: b.into(), end: e.into() }) {
        StoreReply::Range(r) => r,
        other => panic!("{other:?}"),
    }
}

/// Everything a backend must do; `s` starts empty.
pub(crate) fn suite(s: &mut dyn Store) {
    let (a, b, c) = (Id([1; 16]), Id([2; 16]), Id([3; 16]));
    let load = |s: &mut dyn Store, t: &str, id: Id| ok(s, StoreOp::Load { type_name: t.into(), id });
    assert_eq!(load(s, "Avatar", a), StoreReply::Data(None));
    for (t, id, d) in
        [("Avatar", a, &b"one"[..]), ("Avatar", b, b"two"), ("Monster", c, b"three"), ("Avatar", a, b"uno")]
    {
        assert_eq!(ok(s, StoreOp::Save { type_name: t.into(), id, data: d.to_vec() }), StoreReply::Done);
    }
    assert_eq!(load(s, "Avatar", a), StoreReply::Data(Some(b"uno".to_vec())), "overwritten");
    assert_eq!(load(s, "Monster", a), StoreReply::Data(None), "types are separate");
    assert_eq!(ok(s, StoreOp::Exists { type_name: "Avatar".into(), id: b }), StoreReply::Exists(true));
    assert_eq!(ok(s, StoreOp::Exists { type_name: "Avatar".into(), id: c }), StoreReply::Exists(false));
    let StoreReply::Ids(mut ids) = ok(s, StoreOp::List { type_name: "Avatar".into() }) else { panic!() };
    ids.sort();
    assert_eq!(ids, vec![a, b]);
    assert_eq!(ok(s, StoreOp::List { type_name: "Avatar2".into() }), StoreReply::Ids(vec![]));
    assert_eq!(ok(s, StoreOp::List { type_name: "Avata".into() }), StoreReply::Ids(vec![]), "no prefix matches");
    // KV.
    assert_eq!(get(s, "k"), None);
    put(s, "k", "v1");
    put(s, "k", "v2");
    assert_eq!(get(s, "k"), Some("v2".into()));
    put(s, "", "empty key");
    assert_eq!(get(s, ""), Some("empty key".into()));
    put(s, "ключ", "значение ✓");
    assert_eq!(get(s, "ключ"), Some("значение ✓".into()));
    put(s, "e", "");
    assert_eq!(get(s, "e"), Some(String::new()), "an empty value is a value");
    let gop = |s: &mut dyn Store, k: &str, v: &str| ok(s, StoreOp::KvGetOrPut { key: k.into(), value: v.into() });
    assert_eq!(gop(s, "user$ann", "first"), StoreReply::Value(None), "first wins");
    assert_eq!(gop(s, "user$ann", "second"), StoreReply::Value(Some("first".into())));
    assert_eq!(get(s, "user$ann"), Some("first".into()));
    // Ranges.
    for i in 0..50 {
        put(s, &format!("r{i:03}"), &i.to_string());
    }
    let r = range(s, "r010", "r015");
    assert_eq!(r.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["r010", "r011", "r012", "r013", "r014"]);
    assert_eq!(r[0].1, "10");
    let tail = range(s, "r045", "");
    assert_eq!(tail.len(), 5 + 2, "to the last key: r045..r049, user$ann, ключ");
    assert_eq!(range(s, "r015", "r010"), vec![], "empty when end <= begin");
    // Limits are errors, not panics.
    let long = "x".repeat(MAX_KEY_BYTES + 1);
    assert!(s.execute(StoreOp::KvPut { key: long.clone(), value: "v".into() }).is_err());
    assert!(s.execute(StoreOp::KvGet { key: long }).is_err());
    let big = "v".repeat(MAX_VALUE_BYTES + 1);
    let e = s.execute(StoreOp::KvPut { key: "big".into(), value: big.clone() }).expect_err("too large");
    assert_eq!(e.kind, StoreErrorKind::TooLarge);
    let e = s.execute(StoreOp::KvGetOrPut { key: "big".into(), value: big }).expect_err("too large");
    assert_eq!(e.kind, StoreErrorKind::TooLarge);
    assert_eq!(get(s, "big"), None, "nothing of it stored");
    let e = s.execute(StoreOp::KvRange { begin: String::new(), end: "x".repeat(MAX_KEY_BYTES + 1) });
    assert_eq!(e.expect_err("long bound").kind, StoreErrorKind::TooLarge);
    let huge = vec![0u8; MAX_RECORD_BYTES + 1];
    let e = s.execute(StoreOp::Save { type_name: "Avatar".into(), id: c, data: huge }).expect_err("too large");
    assert_eq!(e.kind, StoreErrorKind::TooLarge);
    let e = s.execute(StoreOp::Save { type_name: "T".repeat(MAX_KEY_BYTES + 1), id: c, data: vec![] });
    assert_eq!(e.expect_err("long type").kind, StoreErrorKind::TooLarge);
    let e = s.execute(StoreOp::List { type_name: "Ava\0tar".into() }).expect_err("NUL in a type");
    assert_eq!(e.kind, StoreErrorKind::Other);
    assert_eq!(load(s, "Avatar", c), StoreReply::Data(None), "nothing of it stored");
    // The biggest allowed record and an empty one.
    let most = vec![0xa5u8; MAX_RECORD_BYTES];
    assert_eq!(ok(s, StoreOp::Save { type_name: "Big".into(), id: a, data: most.clone() }), StoreReply::Done);
    assert_eq!(load(s, "Big", a), StoreReply::Data(Some(most)));
    assert_eq!(ok(s, StoreOp::Save { type_name: "".into(), id: a, data: vec![] }), StoreReply::Done);
    assert_eq!(load(s, "", a), StoreReply::Data(Some(vec![])), "empty type and data");
}

/// What [`suite`] left must still be there after the backend is closed and opened again.
pub(crate) fn after_reopen(s: &mut dyn Store) {
    let load = ok(s, StoreOp::Load { type_name: "Avatar".into(), id: Id([1; 16]) });
    assert_eq!(load, StoreReply::Data(Some(b"uno".to_vec())));
    let StoreReply::Ids(mut ids) = ok(s, StoreOp::List { type_name: "Avatar".into() }) else { panic!() };
    ids.sort();
    assert_eq!(ids, vec![Id([1; 16]), Id([2; 16])]);
    assert_eq!(get(s, "user$ann"), Some("first".into()));
    assert_eq!(get(s, "ключ"), Some("значение ✓".into()));
    assert_eq!(range(s, "r010", "r013").len(), 3);
    let gop = ok(s, StoreOp::KvGetOrPut { key: "user$ann".into(), value: "late".into() });
    assert_eq!(gop, StoreReply::Value(Some("first".into())), "first still wins");
}

/// A batch runs in order, each operation seeing the ones before, with its own result.
pub(crate) fn batch(s: &mut dyn Store) {
    let ops = vec![
        StoreOp::KvPut { key: "b1".into(), value: "x".into() },
        StoreOp::KvGet { key: "b1".into() },
        StoreOp::KvGetOrPut { key: "b1".into(), value: "y".into() },
        StoreOp::KvPut { key: "x".repeat(MAX_KEY_BYTES + 1), value: "too long".into() },
        StoreOp::KvGetOrPut { key: "b2".into(), value: "z".into() },
        StoreOp::KvRange { begin: "b".into(), end: "c".into() },
    ];
    let r = s.execute_batch(ops);
    assert_eq!(r.len(), 6);
    assert_eq!(r[0], Ok(StoreReply::Done));
    assert_eq!(r[1], Ok(StoreReply::Value(Some("x".into()))));
    assert_eq!(r[2], Ok(StoreReply::Value(Some("x".into()))));
    assert!(r[3].is_err(), "one bad operation fails alone");
    assert_eq!(r[4], Ok(StoreReply::Value(None)));
    assert_eq!(r[5], Ok(StoreReply::Range(vec![("b1".into(), "x".into()), ("b2".into(), "z".into())])));
    assert_eq!(get(s, "b2"), Some("z".into()), "committed");
    // Saves in a batch (Redis sends consecutive ones together) keep their order against the
    // reads between them, and a bad one fails alone.
    let (a, b, c) = (Id([0xb1; 16]), Id([0xb2; 16]), Id([0xb3; 16]));
    let save = |id: Id, data: &[u8]| StoreOp::Save { type_name: "Batched".into(), id, data: data.to_vec() };
    let ops = vec![
        save(a, b"a1"),
        save(b, b"b1"),
        StoreOp::Load { type_name: "Batched".into(), id: a },
        save(a, b"a2"),
        StoreOp::Save { type_name: "Bad\0type".into(), id: c, data: b"x".to_vec() },
        save(c, b"c1"),
        StoreOp::List { type_name: "Batched".into() },
        StoreOp::Load { type_name: "Batched".into(), id: a },
    ];
    let r = s.execute_batch(ops);
    assert_eq!(r.len(), 8);
    assert_eq!(
        (&r[0], &r[1], &r[3], &r[5]),
        (&Ok(StoreReply::Done), &Ok(StoreReply::Done), &Ok(StoreReply::Done), &Ok(StoreReply::Done))
    );
    assert_eq!(r[2], Ok(StoreReply::Data(Some(b"a1".to_vec()))), "a read sees the saves before it");
    assert!(r[4].is_err(), "one bad save fails alone");
    assert_eq!(r[6], Ok(StoreReply::Ids(vec![a, b, c])));
    assert_eq!(r[7], Ok(StoreReply::Data(Some(b"a2".to_vec()))));
}

/// Many keys come back in order.
pub(crate) fn many_keys(s: &mut dyn Store) {
    for i in (0..10_000).rev() {
        put(s, &format!("m{i:05}"), "x");
    }
    let r = range(s, "m", "n");
    assert_eq!(r.len(), 10_000);
    assert!(r.windows(2).all(|w| w[0].0 < w[1].0));
}
