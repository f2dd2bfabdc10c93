//! Attribute operations (what clients apply to their replicas): decoded from any bytes and
//! applied to a replica; errors are fine, panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxworld_net::Value;
use oxworld_net::attr_op::decode_ops;
use oxworld_net::wire::Reader;

fuzz_target!(|data: &[u8]| {
    if let Ok(ops) = decode_ops(&mut Reader::new(data)) {
        let mut root = Value::Map(Default::default());
        for op in &ops {
            let _ = op.apply(&mut root);
        }
    }
});
