//! 16-byte entity and client ids, their generator, and the documented hashes that pick a
//! dispatcher for an id and a numeric method id for a method name.

use std::fmt;

use chacha20::ChaCha12Rng;
use chacha20::rand_core::{Rng as _, SeedableRng as _};
use speedy::{Readable, Writable};

/// An entity or client id: 16 bytes, generated without coordination (see [`IdGen`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Readable, Writable)]
pub struct Id(pub [u8; 16]);

impl Id {
    /// The all-zero id, meaning "none".
    pub const NIL: Id = Id([0; 16]);

    /// True for [`Id::NIL`].
    pub fn is_nil(&self) -> bool {
        *self == Id::NIL
    }

    /// Index of the dispatcher that carries all traffic for this id among `n` dispatchers:
    /// `fnv1a32(id bytes) % n` (PROTOCOL.md, "Routing").
    pub fn dispatcher_index(&self, n: usize) -> usize {
        debug_assert!(n > 0, "a cluster has at least one dispatcher");
        fnv1a32(&self.0) as usize % n.max(1)
    }

    /// Parses the 32-character lowercase hex form.
    pub fn parse_hex(s: &str) -> Option<Id> {
        let b = s.as_bytes();
        if b.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            let hi = (b[2 * i] as char).to_digit(16)?;
            let lo = (b[2 * i + 1] as char).to_digit(16)?;
            *o = (hi * 16 + lo) as u8;
        }
        Some(Id(out))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({self})")
    }
}

/// 32-bit FNV-1a: offset basis `0x811c9dc5`, prime `0x01000193`, wrapping arithmetic.
pub const fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u32;
        h = h.wrapping_mul(0x0100_0193);
        i += 1;
    }
    h
}

/// Numeric id of an entity method: `fnv1a32` of its UTF-8 name. Clients compute it themselves;
/// the server dispatches on it without comparing strings. Collisions within one entity type are
/// refused at registration.
pub const fn method_id(name: &str) -> u32 {
    fnv1a32(name.as_bytes())
}

/// 256 bits of secret state for an [`IdGen`]: from the OS in processes
/// (`oxworld_runtime::os_seed`), from a number in tests and simulations (`From<u64>`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdSeed(pub [u8; 32]);

impl From<[u8; 32]> for IdSeed {
    fn from(b: [u8; 32]) -> Self {
        IdSeed(b)
    }
}

impl From<u64> for IdSeed {
    /// A reproducible seed for tests and simulations (never for a real process: 64 bits are
    /// guessable).
    fn from(n: u64) -> Self {
        let mut b = [0u8; 32];
        for (i, chunk) in b.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&(n ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_le_bytes());
        }
        IdSeed(b)
    }
}

impl fmt::Debug for IdSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdSeed(..)")
    }
}

/// Generates ids unique across processes without coordination: bytes 0..6 are the big-endian
/// milliseconds since the Unix epoch given by the caller, bytes 6..16 are 80 bits from a
/// ChaCha12 stream whose 256-bit key is the generator's secret seed, so one id (or many) says
/// nothing about the next: seeing ids does not let anyone predict others.
pub struct IdGen {
    rng: ChaCha12Rng,
}

impl fmt::Debug for IdGen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdGen(..)")
    }
}

impl IdGen {
    /// A generator keyed by `seed`.
    pub fn new(seed: impl Into<IdSeed>) -> Self {
        Self { rng: ChaCha12Rng::from_seed(seed.into().0) }
    }

    /// 128 bits of the stream, unstamped: a secret nobody can guess (a resume token).
    pub fn secret(&mut self) -> Id {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        b[8..].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        Id(b)
    }

    /// A fresh id stamped with `unix_ms`.
    pub fn next(&mut self, unix_ms: u64) -> Id {
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
        b[6..14].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        b[14..].copy_from_slice(&self.rng.next_u64().to_le_bytes()[..2]);
        Id(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
        assert_eq!(method_id("echo"), fnv1a32(b"echo"));
    }

    #[test]
    fn ids_unique_and_spread() {
        let mut g = IdGen::new(1);
        let mut seen = std::collections::HashSet::new();
        let mut per_disp = [0usize; 3];
        for i in 0..3000 {
            let id = g.next(1_700_000_000_000 + i);
            assert!(seen.insert(id));
            per_disp[id.dispatcher_index(3)] += 1;
        }
        assert!(per_disp.iter().all(|&c| c > 800), "{per_disp:?}");
    }

    /// Two generators with seeds differing in one bit share nothing; the same seed repeats
    /// (tests and simulations replay).
    #[test]
    fn ids_follow_the_whole_seed() {
        let mut a = [7u8; 32];
        let ids = |s: [u8; 32]| -> Vec<Id> {
            let mut g = IdGen::new(s);
            (0..4).map(|_| g.next(1)).collect()
        };
        let first = ids(a);
        assert_eq!(first, ids(a));
        a[31] ^= 1;
        let other = ids(a);
        assert!(first.iter().zip(&other).all(|(x, y)| x.0[6..] != y.0[6..]));
        assert_eq!(format!("{:?}", IdGen::new(IdSeed([9; 32]))), "IdGen(..)", "the secret is not logged");
    }

    #[test]
    fn hex_roundtrip() {
        let id = IdGen::new(7).next(42);
        assert_eq!(Id::parse_hex(&id.to_string()), Some(id));
        assert_eq!(Id::parse_hex("zz"), None);
    }
}
