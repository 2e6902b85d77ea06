//! The codec traits: one way to encode, one way to decode.

use crate::error::{DecodeError, EncodeError};

/// Encode `self` onto the end of a buffer.
///
/// Encoding is fallible because some values cannot be represented on the wire (an
/// attribute value above 253 octets, a packet above 4096 octets). On error nothing is
/// guaranteed about what was appended; callers reuse the buffer after truncating it.
pub trait Encode {
    /// Append the wire form of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// The wire form of `self` in a new vector.
    fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }
}

/// Decode a value from a [`Reader`].
pub trait Decode<'a>: Sized {
    /// Read one value, advancing the reader past it.
    fn read(reader: &mut Reader<'a>) -> Result<Self, DecodeError>;

    /// Decode exactly one value from `buf`, rejecting trailing octets.
    ///
    /// (A [`crate::Packet`] consumes the whole datagram: octets past its Length field
    /// are padding per RFC 2865 §3 and are ignored, so they are never "trailing".)
    fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(buf);
        let value = Self::read(&mut reader)?;
        reader.finish()?;
        Ok(value)
    }
}

/// A cursor over a borrowed byte slice. Reads never panic; they return `None` when
/// there are not enough octets left.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub const fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Offset of the next unread octet from the start of the buffer.
    pub const fn offset(&self) -> usize {
        self.pos
    }

    /// Number of unread octets.
    pub const fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The unread octets, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// The next octet, without consuming it.
    pub fn peek_u8(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Consume one octet.
    pub fn read_u8(&mut self) -> Option<u8> {
        let b = self.peek_u8()?;
        self.pos += 1;
        Some(b)
    }

    /// Consume `n` octets.
    pub fn read_bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// Consume everything that is left.
    pub fn read_rest(&mut self) -> &'a [u8] {
        let out = self.rest();
        self.pos = self.buf.len();
        out
    }

    /// Succeed only if nothing is left.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            len => Err(DecodeError::TrailingBytes { len }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_never_panics() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.read_u8(), Some(1));
        assert_eq!(r.read_bytes(5), None);
        assert_eq!(r.read_bytes(usize::MAX), None);
        assert_eq!(r.read_bytes(2), Some(&[2u8, 3][..]));
        assert_eq!(r.read_u8(), None);
        assert_eq!(r.rest(), &[] as &[u8]);
        assert!(r.finish().is_ok());
        let r = Reader::new(&[1]);
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes { len: 1 }));
    }
}
