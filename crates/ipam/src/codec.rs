//! IPAM's fields (strings, CIDRs, rings) on weft's shared byte cursor, for the wire
//! messages and the persisted state. The reader checks every length against what is left,
//! so no input can make it panic or allocate more than the input's size.

use std::collections::BTreeMap;

pub use weft_types::cursor::{Reader, Short, Writer};

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

impl From<Short> for DecodeError {
    fn from(s: Short) -> DecodeError {
        DecodeError::Truncated {
            at: s.at,
            needed: s.needed,
        }
    }
}

/// IPAM's fields on the shared writer.
pub trait WriteFields {
    /// Append a length-prefixed string (truncated to `MAX_STR`, which names never reach).
    fn str(&mut self, s: &str);
    /// Append a list of strings.
    fn strs(&mut self, v: &[String]);
    /// Append a CIDR.
    fn cidr(&mut self, c: &Cidr);
    /// Append a ring.
    fn ring(&mut self, r: &Ring);
    /// Append a presence flag (1 or 0), then the value with `write` if there is one.
    fn optional<T>(&mut self, v: Option<&T>, write: impl FnOnce(&mut Self, &T))
    where
        Self: Sized,
    {
        self.flag(v.is_some());
        if let Some(v) = v {
            write(self, v);
        }
    }
    /// Append a presence flag.
    fn flag(&mut self, present: bool);
}

impl WriteFields for Writer {
    fn str(&mut self, s: &str) {
        self.str16(s, MAX_STR);
    }
    fn strs(&mut self, v: &[String]) {
        self.u32(v.len() as u32);
        for s in v {
            self.str(s);
        }
    }
    fn cidr(&mut self, c: &Cidr) {
        self.u32(c.addr);
        self.u8(c.prefix);
    }
    fn flag(&mut self, present: bool) {
        self.u8(u8::from(present));
    }
    fn ring(&mut self, r: &Ring) {
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

/// IPAM's fields on the shared reader.
pub trait ReadFields {
    /// Read a length-prefixed UTF-8 string.
    fn str(&mut self) -> Result<String, DecodeError>;
    /// Read a list of strings.
    fn strs(&mut self) -> Result<Vec<String>, DecodeError>;
    /// Read a CIDR.
    fn cidr(&mut self) -> Result<Cidr, DecodeError>;
    /// Read a ring.
    fn ring(&mut self) -> Result<Ring, DecodeError>;
    /// Read a presence flag (`what` names it in the error when it is neither 0 nor 1).
    fn flag(&mut self, what: &'static str) -> Result<bool, DecodeError>;
    /// Read a presence flag, then the value with `read` if there is one.
    fn optional<T>(
        &mut self,
        what: &'static str,
        read: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError>
    where
        Self: Sized,
    {
        if self.flag(what)? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }
    /// Fail if bytes are left.
    fn finish(&self) -> Result<(), DecodeError>;
}

impl ReadFields for Reader<'_> {
    fn str(&mut self) -> Result<String, DecodeError> {
        let n = usize::from(self.u16()?);
        if n > MAX_STR {
            return Err(DecodeError::Invalid("string too long"));
        }
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Invalid("string is not UTF-8"))
    }
    fn strs(&mut self) -> Result<Vec<String>, DecodeError> {
        let n = self.u32()?;
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(self.str()?);
        }
        Ok(v)
    }
    fn flag(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid(what)),
        }
    }
    fn cidr(&mut self) -> Result<Cidr, DecodeError> {
        let a = self.u32()?;
        let p = self.u8()?;
        Cidr::new(a, p).ok_or(DecodeError::Invalid("prefix above 32"))
    }
    fn ring(&mut self) -> Result<Ring, DecodeError> {
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
    fn finish(&self) -> Result<(), DecodeError> {
        let left = self.remaining();
        if left == 0 {
            Ok(())
        } else {
            Err(DecodeError::Trailing(left))
        }
    }
}
