//! `Value` and argument lists: any bytes decode to a value or an error (never a panic, never
//! more memory than the decode budget); a decoded value re-encodes to a stable encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxworld_net::Value;
use oxworld_net::value::{decode_args, encode_args};
use oxworld_net::wire::Reader;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = Value::decode(&mut Reader::new(data)) {
        let mut once = Vec::new();
        v.encode(&mut once);
        let back = Value::decode(&mut Reader::new(&once)).expect("re-encoded value decodes");
        let mut twice = Vec::new();
        back.encode(&mut twice);
        assert_eq!(once, twice, "encoding is stable");
    }
    if let Ok(args) = decode_args(&mut Reader::new(data)) {
        let mut once = Vec::new();
        encode_args(&args, &mut once);
        assert!(decode_args(&mut Reader::new(&once)).is_ok());
    }
});
