//! The byte cursor of weft's binary codecs (mesh wire, DNS gossip, IPAM messages and state):
//! big-endian integers and length-prefixed fields.
//!
//! [`Reader`] checks every length against what is left, so no input makes it panic, and a
//! decoder that sizes a collection from a count asks [`Reader::count`], which refuses a
//! count the remaining bytes cannot hold: no input makes a decoder allocate more than its
//! own size. Each codec maps [`Short`] into its own error, with the context it knows.

/// The input ended before a field did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Short {
    /// Offset where the field started.
    pub at: usize,
    /// Bytes missing.
    pub needed: usize,
}

impl std::fmt::Display for Short {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "input ends at byte {} ({} more needed)",
            self.at, self.needed
        )
    }
}

impl std::error::Error for Short {}

/// Reads fields from a slice, front to back.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Offset of the next byte.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        let left = self.remaining();
        if n > left {
            return Err(Short {
                at: self.pos,
                needed: n - left,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.array::<1>()?[0])
    }

    /// A big-endian u16.
    pub fn u16(&mut self) -> Result<u16, Short> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// A big-endian u32.
    pub fn u32(&mut self) -> Result<u32, Short> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A big-endian u64.
    pub fn u64(&mut self) -> Result<u64, Short> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Bytes prefixed with a u16 length.
    pub fn bytes16(&mut self) -> Result<&'a [u8], Short> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }

    /// Bytes prefixed with a u32 length.
    pub fn bytes32(&mut self) -> Result<&'a [u8], Short> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// A u32 count of items each at least `min_size` bytes long; `None` when the bytes
    /// left cannot hold that many (so a forged count cannot make the caller allocate).
    pub fn count(&mut self, min_size: usize) -> Result<Option<usize>, Short> {
        let n = self.u32()? as usize;
        Ok((n.saturating_mul(min_size.max(1)) <= self.remaining()).then_some(n))
    }
}

/// Appends fields to a buffer.
#[derive(Debug, Default)]
pub struct Writer {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// Append one byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Append a big-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Append a big-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Append a big-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Append raw bytes.
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Append a string prefixed with its u16 length, cut at a char boundary to at most
    /// `max` bytes (callers pass a bound their names never reach).
    pub fn str16(&mut self, s: &str, max: usize) {
        let mut end = s.len().min(max).min(usize::from(u16::MAX));
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.u16(end as u16);
        self.raw(&s.as_bytes()[..end]);
    }

    /// Append bytes prefixed with their u32 length.
    pub fn bytes32(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.raw(b);
    }

    /// Append a u32 count, then each item as `put` writes it.
    pub fn list32<T>(&mut self, items: &[T], mut put: impl FnMut(&mut Writer, &T)) {
        self.u32(items.len() as u32);
        for item in items {
            put(self, item);
        }
    }
}

/// The errors of a codec of versioned payloads (`version:u8 kind:u8 body`, read whole)
/// for a header or an end that is wrong; the codec keeps its own context in them.
pub trait PayloadError: From<Short> {
    /// The payload was written by encoding version `found`.
    fn version(found: u8) -> Self;
    /// `n` bytes are left after the message.
    fn trailing(n: usize) -> Self;
}

/// Decodes a whole versioned payload: refuses another version, hands `body` the kind and a
/// reader past the header, and refuses bytes `body` leaves unread.
pub fn decode_versioned<'a, T, E: PayloadError>(
    buf: &'a [u8],
    version: u8,
    body: impl FnOnce(u8, &mut Reader<'a>) -> Result<T, E>,
) -> Result<T, E> {
    let mut r = Reader::new(buf);
    let found = r.u8()?;
    if found != version {
        return Err(E::version(found));
    }
    let kind = r.u8()?;
    let msg = body(kind, &mut r)?;
    match r.remaining() {
        0 => Ok(msg),
        n => Err(E::trailing(n)),
    }
}

/// The first broken form of a valid encoding that `decode` takes: a strict prefix (what a
/// truncated input looks like) or the encoding with a byte after it. `None` when every one
/// is refused, as a codec test expects.
pub fn first_broken_accepted<T, E>(
    encoded: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, E>,
) -> Option<Vec<u8>> {
    let longer = [encoded, &[0]].concat();
    (0..encoded.len())
        .map(|cut| encoded[..cut].to_vec())
        .chain([longer])
        .find(|b| decode(b).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_truncation_is_an_error() {
        let mut w = Writer::default();
        w.u8(1);
        w.u16(2);
        w.u32(3);
        w.u64(4);
        w.str16("héllo", 2); // cut inside "é": back to its boundary
        w.bytes32(b"xyz");
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(2));
        assert_eq!(r.u32(), Ok(3));
        assert_eq!(r.u64(), Ok(4));
        assert_eq!(r.bytes16(), Ok(&b"h"[..]));
        assert_eq!(r.bytes32(), Ok(&b"xyz"[..]));
        assert_eq!(r.remaining(), 0);
        assert_eq!(
            r.u8(),
            Err(Short {
                at: w.buf.len(),
                needed: 1
            })
        );
        for cut in 0..w.buf.len() {
            let mut r = Reader::new(&w.buf[..cut]);
            let all = (|| {
                r.u8()?;
                r.u16()?;
                r.u32()?;
                r.u64()?;
                r.bytes16()?;
                r.bytes32()
            })();
            assert!(all.is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn lists_and_versioned_payloads_read_whole() {
        #[derive(Debug, PartialEq)]
        enum E {
            Short,
            Version(u8),
            Trailing(usize),
        }
        impl From<Short> for E {
            fn from(_: Short) -> E {
                E::Short
            }
        }
        impl PayloadError for E {
            fn version(found: u8) -> E {
                E::Version(found)
            }
            fn trailing(n: usize) -> E {
                E::Trailing(n)
            }
        }
        let mut w = Writer::default();
        w.u8(1);
        w.u8(7);
        w.list32(&[5u16, 6], |w, v| w.u16(*v));
        let first = |kind: u8, r: &mut Reader| -> Result<(u8, u32, u16), E> {
            Ok((kind, r.u32()?, r.u16()?))
        };
        assert_eq!(
            decode_versioned(&w.buf, 1, first),
            Err(E::Trailing(2)),
            "the second item is left unread"
        );
        assert_eq!(decode_versioned(&w.buf, 2, first), Err(E::Version(1)));
        assert_eq!(decode_versioned(&w.buf[..1], 1, first), Err(E::Short));
        let all = |kind: u8, r: &mut Reader| -> Result<(u8, Vec<u16>), E> {
            let n = r.count(2)?.ok_or(E::Short)?;
            Ok((kind, (0..n).map(|_| r.u16()).collect::<Result<_, _>>()?))
        };
        assert_eq!(decode_versioned(&w.buf, 1, all), Ok((7, vec![5, 6])));
        assert_eq!(
            first_broken_accepted(&w.buf, |b| decode_versioned(b, 1, all)),
            None
        );
        assert_eq!(
            first_broken_accepted(&w.buf, |b| decode_versioned(b, 1, first)),
            Some(w.buf[..8].to_vec())
        );
    }

    #[test]
    fn a_count_the_input_cannot_hold_is_refused() {
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0, 0]);
        assert_eq!(r.count(1), Ok(None));
        let mut r = Reader::new(&[0, 0, 0, 2, 0, 0]);
        assert_eq!(r.count(1), Ok(Some(2)));
    }
}
