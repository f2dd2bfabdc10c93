//! Attribute delta benchmarks: recording 100 nested changes and encoding them for a client
//! (`AttrOps`), and applying them to a client replica. Run: `cargo bench -p oxworld-engine --bench attr`.

use divan::Bencher;
use oxworld_engine::Attrs;
use oxworld_net::Value;
use oxworld_net::attr_op::{decode_ops, encode_ops};
use oxworld_net::wire::Reader;

/// 100 changes: 50 root sets, 25 nested map sets, 25 list appends.
fn changes(a: &mut Attrs) {
    let mut root = a.root();
    for i in 0..50i64 {
        root.set("hp", i);
    }
    if let Ok(mut stats) = root.map_at("stats") {
        for i in 0..25i64 {
            stats.set("str", i);
        }
    }
    if let Ok(mut bag) = a.root().list_at("bag") {
        for i in 0..25i64 {
            bag.append(Value::Int(i));
        }
    }
}

#[divan::bench]
fn record_and_encode_100_ops(b: Bencher) {
    let mut a = Attrs::default();
    let mut out = Vec::with_capacity(4096);
    b.bench_local(|| {
        changes(&mut a);
        let ops = a.take_ops();
        out.clear();
        encode_ops(&ops, &mut out);
        out.len()
    });
}

#[divan::bench]
fn decode_and_apply_100_ops(b: Bencher) {
    let mut a = Attrs::default();
    changes(&mut a);
    let ops = a.take_ops();
    let mut wire = Vec::new();
    encode_ops(&ops, &mut wire);
    b.bench_local(|| {
        let mut replica = Value::Map(Default::default());
        let ops = decode_ops(&mut Reader::new(&wire)).unwrap_or_default();
        for op in &ops {
            let _ = op.apply(&mut replica);
        }
        replica
    });
}

fn main() {
    divan::main();
}
