//! Byte-level reading and writing shared by the wire messages and the persisted state.
//! The reader checks every length against what is left, so no input can make it panic or
//! allocate more than the input's size.

use std::collections::BTreeMap;

use crate::addr::{Addr, Cidr};
use crate::ring::{Entry, Ring};

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended early.
    #[error("truncated: needed {needed} more bytes at offset {at}")]
    Truncated {
        /// Offset where it ended.
        at: usize,
        /// Bytes missing.
        needed: usize,
    },
    /// Not an IPAM payload.
    #[error("bad magic: not a weft IPAM payload")]
    BadMagic,
    /// A format version this build does not know.
    #[error("unsupported version {0} (this build speaks {1})")]
    Version(u8, u8),
    /// A message type this build does not know.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A field has a value that is not allowed.
    #[error("invalid field: {0}")]
    Invalid(&'static str),
    /// Bytes left after the message.
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

/// Longest string accepted (peer names, container ids).
pub const MAX_STR: usize = 1024;

/// Appends fields to a buffer.
#[derive(Default)]
pub struct Writer {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// Append one byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// Append a big-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// Append a big-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// Append a length-prefixed string (truncated to `MAX_STR`, which names never reach).
    pub fn str(&mut self, s: &str) {
        let mut end = s.len().min(MAX_STR);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.buf.extend_from_slice(&(end as u16).to_be_bytes());
        self.buf.extend_from_slice(&s.as_bytes()[..end]);
    }
    /// Append a list of strings.
    pub fn strs(&mut self, v: &[String]) {
        self.u32(v.len() as u32);
        for s in v {
            self.str(s);
        }
    }
    /// Append a CIDR.
    pub fn cidr(&mut self, c: &Cidr) {
        self.u32(c.addr);
        self.u8(c.prefix);
    }
    /// Append a ring.
    pub fn ring(&mut self, r: &Ring) {
        self.cidr(&r.range());
        self.u64(r.origin());
        self.u32(r.tokens().len() as u32);
        for (t, e) in r.tokens() {
            self.u32(*t);
            self.u32(e.version);
            self.str(&e.owner);
            self.u32(e.free);
        }
    }
}

/// Reads fields from a slice.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(DecodeError::Truncated {
                at: self.pos,
                needed: n - left,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// Read one byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    /// Read a big-endian u16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    /// Read a big-endian u32.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// Read a big-endian u64.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    /// Read a length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<String, DecodeError> {
        let n = usize::from(self.u16()?);
        if n > MAX_STR {
            return Err(DecodeError::Invalid("string too long"));
        }
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Invalid("string is not UTF-8"))
    }
    /// Read a list of strings.
    pub fn strs(&mut self) -> Result<Vec<String>, DecodeError> {
        let n = self.u32()?;
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(self.str()?);
        }
        Ok(v)
    }
    /// Read a CIDR.
    pub fn cidr(&mut self) -> Result<Cidr, DecodeError> {
        let a = self.u32()?;
        let p = self.u8()?;
        Cidr::new(a, p).ok_or(DecodeError::Invalid("prefix above 32"))
    }
    /// Read a ring.
    pub fn ring(&mut self) -> Result<Ring, DecodeError> {
        let range = self.cidr()?;
        let origin = self.u64()?;
        let n = self.u32()?;
        let mut tokens: BTreeMap<Addr, Entry> = BTreeMap::new();
        for _ in 0..n {
            let t = self.u32()?;
            let version = self.u32()?;
            let owner = self.str()?;
            let free = self.u32()?;
            if tokens
                .insert(
                    t,
                    Entry {
                        version,
                        owner,
                        free,
                    },
                )
                .is_some()
            {
                return Err(DecodeError::Invalid("duplicate ring token"));
            }
        }
        Ring::from_parts(range, origin, tokens)
            .ok_or(DecodeError::Invalid("ring tokens do not cover the range"))
    }
    /// Fail if bytes are left.
    pub fn finish(&self) -> Result<(), DecodeError> {
        let left = self.buf.len() - self.pos;
        if left == 0 {
            Ok(())
        } else {
            Err(DecodeError::Trailing(left))
        }
    }
}
