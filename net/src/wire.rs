//! Checked little-endian reader and writer helpers shared by the hand-written client codecs.
//!
//! Every read is bounds-checked and returns [`DecodeError`] instead of panicking: the bytes come
//! from the network.

use thiserror::Error;

/// Why a message could not be decoded. The offending connection is closed; nothing else is.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message ended before a field was complete.
    #[error("truncated message: needed {needed} more bytes for {what}")]
    Truncated {
        /// Field being read.
        what: &'static str,
        /// Bytes missing.
        needed: usize,
    },
    /// A message type byte that this protocol version does not define.
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    /// A value tag byte that the value encoding does not define.
    #[error("unknown value tag {0:#04x}")]
    UnknownTag(u8),
    /// A string that is not UTF-8.
    #[error("invalid UTF-8 in {0}")]
    BadUtf8(&'static str),
    /// A count or length larger than the bytes that could possibly follow.
    #[error("{what} claims {claimed} elements but only {remaining} bytes remain")]
    LengthAttack {
        /// Field being read.
        what: &'static str,
        /// Count announced by the sender.
        claimed: usize,
        /// Bytes left in the message.
        remaining: usize,
    },
    /// Values nested deeper than [`crate::value::MAX_DEPTH`].
    #[error("value nested deeper than {0} levels")]
    TooDeep(usize),
    /// Values whose decoded form would take more memory than the decoder allows for the
    /// bytes it was given (see [`crate::value::decode_budget`]).
    #[error("values would take more than {0} bytes of memory to decode")]
    OverBudget(usize),
    /// Bytes left over after a complete message.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    /// A field with a value outside its allowed set.
    #[error("invalid value for {0}")]
    Invalid(&'static str),
}

/// A cursor over a received message.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading `buf` from its first byte.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails with [`DecodeError::Trailing`] unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() { Ok(()) } else { Err(DecodeError::Trailing(self.buf.len())) }
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated { what, needed: n - self.buf.len() });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes exactly `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    /// Reads one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// Reads a little-endian `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// Reads a little-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// Reads a little-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Reads a little-endian `i64`.
    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    /// Reads a little-endian IEEE-754 `f64`.
    pub fn f64(&mut self, what: &'static str) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }

    /// Reads a `u32` count and checks that `count * min_elem_size` bytes can still follow.
    pub fn count(&mut self, what: &'static str, min_elem_size: usize) -> Result<usize, DecodeError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_elem_size.max(1)) > self.buf.len() {
            return Err(DecodeError::LengthAttack { what, claimed: n, remaining: self.buf.len() });
        }
        Ok(n)
    }

    /// Reads `u32` length + raw bytes.
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.count(what, 1)?;
        self.take(n, what)
    }

    /// Reads `u32` length + UTF-8 bytes.
    pub fn str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes(what)?).map_err(|_| DecodeError::BadUtf8(what))
    }
}

/// Appends `u32` length + bytes.
///
/// # Panics
/// If `b` is longer than `u32::MAX`; frames are capped far below that.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_len(out, b.len());
    out.extend_from_slice(b);
}

/// Appends a `u32` length or count.
///
/// # Panics
/// If `n` exceeds `u32::MAX`; frames are capped far below that.
pub fn put_len(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("length fits in u32: frames are capped far below 4 GiB");
    out.extend_from_slice(&n.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_bounds() {
        let mut out = vec![1u8];
        out.extend_from_slice(&7u32.to_le_bytes());
        put_bytes(&mut out, b"hi");
        let mut r = Reader::new(&out);
        assert_eq!(r.u8("a"), Ok(1));
        assert_eq!(r.u32("b"), Ok(7));
        assert_eq!(r.str("c"), Ok("hi"));
        assert_eq!(r.finish(), Ok(()));
        assert!(matches!(r.u8("d"), Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn count_refuses_impossible_lengths() {
        let out = u32::MAX.to_le_bytes();
        let mut r = Reader::new(&out);
        assert!(matches!(r.bytes("x"), Err(DecodeError::LengthAttack { .. })));
    }

    #[test]
    fn bad_utf8() {
        let mut out = Vec::new();
        put_bytes(&mut out, &[0xff, 0xfe]);
        assert_eq!(Reader::new(&out).str("s"), Err(DecodeError::BadUtf8("s")));
    }
}
