//! What comes back from disk or another game about one entity: a stored entity record (LMDB
//! or Redis) and a migration / freeze image. Errors are fine, panics are not; a decoded image
//! re-encodes to one that decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxworld_engine::migrate::EntityImage;
use oxworld_engine::world::persist::decode_stored;

fuzz_target!(|data: &[u8]| {
    let _ = decode_stored(data);
    if let Ok(img) = EntityImage::decode(data) {
        assert!(EntityImage::decode(&img.encode()).is_ok());
    }
});
