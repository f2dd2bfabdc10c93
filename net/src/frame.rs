//! Length-prefixed framing: `u32` little-endian payload length, then the payload.
//!
//! [`Deframer`] is a sans-IO accumulator: feed it bytes as they arrive, pull whole frames out.
//! The length prefix is checked against the configured maximum *before* any buffer for the
//! payload is reserved, so a hostile prefix (`0xFFFF_FFFF`) costs nothing but the connection.

use thiserror::Error;

/// Bytes in the length prefix.
pub const PREFIX_LEN: usize = 4;

/// Why a byte stream could not be cut into frames. Fatal for the connection.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announced more than the connection's maximum frame size.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Announced payload length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
}

/// Appends one frame (prefix + payload) to `out`.
///
/// # Panics
/// If `payload` is longer than `u32::MAX` bytes: callers build payloads far below that
/// (every sender checks its configured maximum frame size first).
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("frame payload length fits in u32 (checked by sender)");
    out.reserve(PREFIX_LEN + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Starts a frame in `out` whose length is patched by [`finish_frame`]: lets encoders write a
/// message straight into the outgoing buffer without an intermediate `Vec`.
pub fn begin_frame(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; PREFIX_LEN]);
    at
}

/// Patches the length prefix written by [`begin_frame`] at `at`. Returns the payload length.
///
/// # Panics
/// If the payload written since `begin_frame` exceeds `u32::MAX` bytes.
pub fn finish_frame(out: &mut [u8], at: usize) -> usize {
    let len = out.len() - at - PREFIX_LEN;
    let len32 = u32::try_from(len).expect("frame payload length fits in u32 (checked by sender)");
    out[at..at + PREFIX_LEN].copy_from_slice(&len32.to_le_bytes());
    len
}

/// Accumulates stream bytes and yields complete frame payloads.
#[derive(Debug)]
pub struct Deframer {
    buf: Vec<u8>,
    /// Start of unread data in `buf`; compacted lazily so a burst of small frames costs one move.
    start: usize,
    max_frame: usize,
}

impl Deframer {
    /// A deframer that refuses frames whose payload exceeds `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self { buf: Vec::new(), start: 0, max_frame }
    }

    /// Changes the largest payload accepted from now on (a dispatcher raises it once a peer
    /// has completed the handshake).
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }

    /// Appends freshly read bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(data);
    }

    /// Gives a writable tail of at least `min` bytes to read into directly; call
    /// [`Deframer::commit`] with the count actually read. Avoids a copy on the socket path.
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
        self.compact();
        let len = self.buf.len();
        self.buf.resize(len + min, 0);
        &mut self.buf[len..]
    }

    /// Keeps `n` bytes of the last [`Deframer::spare`] tail and drops the rest.
    pub fn commit(&mut self, spare_len: usize, n: usize) {
        let new_len = self.buf.len() - spare_len + n;
        self.buf.truncate(new_len);
    }

    /// Number of buffered bytes not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame payload, `Ok(None)` if more bytes are needed (a normal outcome).
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let avail = &self.buf[self.start..];
        let Some(prefix) = avail.get(..PREFIX_LEN) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; PREFIX_LEN];
        len_bytes.copy_from_slice(prefix);
        let len = u32::from_le_bytes(len_bytes) as usize;
        if len > self.max_frame {
            return Err(FrameError::TooLarge { len, max: self.max_frame });
        }
        if avail.len() < PREFIX_LEN + len {
            return Ok(None);
        }
        let from = self.start + PREFIX_LEN;
        self.start = from + len;
        Ok(Some(&self.buf[from..from + len]))
    }

    /// Releases the buffer's memory once everything was consumed and it had grown past a few
    /// KiB (a large frame passed), so idle connections stay small.
    pub fn shrink_if_idle(&mut self) {
        if self.start == self.buf.len() && self.buf.capacity() > 8 * 1024 {
            self.buf = Vec::new();
            self.start = 0;
        }
    }

    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        if self.start == self.buf.len() {
            self.buf.clear();
        } else {
            self.buf.drain(..self.start);
        }
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(d: &mut Deframer) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut v = Vec::new();
        while let Some(f) = d.next_frame()? {
            v.push(f.to_vec());
        }
        Ok(v)
    }

    #[test]
    fn roundtrip_several_frames_in_one_push() {
        let mut wire = Vec::new();
        encode_frame(b"hello", &mut wire);
        encode_frame(b"", &mut wire);
        encode_frame(&[7; 300], &mut wire);
        let mut d = Deframer::new(1024);
        d.push(&wire);
        assert_eq!(frames(&mut d), Ok(vec![b"hello".to_vec(), vec![], vec![7; 300]]));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn one_byte_at_a_time() {
        let mut wire = Vec::new();
        encode_frame(b"abc", &mut wire);
        encode_frame(b"defgh", &mut wire);
        let mut d = Deframer::new(16);
        let mut got = Vec::new();
        for b in &wire {
            d.push(&[*b]);
            got.extend(frames(&mut d).expect("valid stream"));
        }
        assert_eq!(got, vec![b"abc".to_vec(), b"defgh".to_vec()]);
    }

    #[test]
    fn truncated_frame_waits() {
        let mut wire = Vec::new();
        encode_frame(b"abcdef", &mut wire);
        let mut d = Deframer::new(16);
        d.push(&wire[..7]);
        assert_eq!(d.next_frame(), Ok(None));
        d.push(&wire[7..]);
        assert_eq!(d.next_frame(), Ok(Some(&b"abcdef"[..])));
    }

    #[test]
    fn hostile_length_refused_before_allocating() {
        let mut d = Deframer::new(1 << 20);
        d.push(&u32::MAX.to_le_bytes());
        assert_eq!(d.next_frame(), Err(FrameError::TooLarge { len: u32::MAX as usize, max: 1 << 20 }));
        assert!(d.buf.capacity() < 1024, "no payload buffer was reserved");
    }

    #[test]
    fn begin_finish_patch_length() {
        let mut out = vec![9];
        let at = begin_frame(&mut out);
        out.extend_from_slice(b"xyz");
        assert_eq!(finish_frame(&mut out, at), 3);
        assert_eq!(out, vec![9, 3, 0, 0, 0, b'x', b'y', b'z']);
    }

    #[test]
    fn spare_and_commit() {
        let mut wire = Vec::new();
        encode_frame(b"spare", &mut wire);
        let mut d = Deframer::new(64);
        let tail = d.spare(64);
        tail[..wire.len()].copy_from_slice(&wire);
        d.commit(64, wire.len());
        assert_eq!(d.next_frame(), Ok(Some(&b"spare"[..])));
        assert_eq!(d.next_frame(), Ok(None));
    }
}
