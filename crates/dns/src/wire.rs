//! Binary encoding of DNS gossip messages (version 1).
//!
//! Layout (big endian): `version:u8 kind:u8` then the body. Strings are `len:u16` + UTF-8;
//! hostnames `len:u8` + ASCII. The mesh frames each payload, so a message is the whole
//! buffer and trailing bytes are an error. Decoding never panics and never allocates
//! more than the input can hold.
//!
//! | kind | body |
//! |---|---|
//! | 1 Delta | origin, clock:u64, n:u32, n × entry |
//! | 2 Digest | origin, clock:u64, live:u32, checksum:u64 |
//! | 3 Request | origin (the peer asked for its own full state) |
//! | 4 Full | origin, clock:u64, n:u32, n × entry |
//!
//! entry = container, hostname, addr:[u8;4], version:u64, flags:u8 (bit 0 = tombstone)

use std::net::Ipv4Addr;

use weft_types::cursor::{decode_versioned, PayloadError, Reader, Short, Writer};

use crate::records::{normalize_name, Entry, EntryKey, EntryState, MAX_ID_LEN};

/// The encoding version written by this code.
pub const VERSION: u8 = 1;

const KIND_DELTA: u8 = 1;
const KIND_DIGEST: u8 = 2;
const KIND_REQUEST: u8 = 3;
const KIND_FULL: u8 = 4;
/// Smallest possible encoded entry: two 1-byte strings, lengths, addr, version, flags.
const MIN_ENTRY_LEN: usize = 2 + 1 + 1 + 1 + 4 + 8 + 1;

/// A gossip message between routers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Entries of `origin` that just changed.
    Delta {
        /// Peer whose entries these are (the sender).
        origin: String,
        /// Sender's logical clock after the change.
        clock: u64,
        /// Changed entries (all of `origin`).
        entries: Vec<Entry>,
    },
    /// Summary of the sender's own entries, for anti-entropy.
    Digest {
        /// The sender.
        origin: String,
        /// Sender's logical clock.
        clock: u64,
        /// Number of live entries.
        live: u32,
        /// Checksum of the live entries (see [`checksum`]).
        checksum: u64,
    },
    /// "Send me your full state."
    Request {
        /// The peer asked (the receiver).
        origin: String,
    },
    /// Every entry of the sender (live and tombstone) as of `clock`.
    Full {
        /// The sender.
        origin: String,
        /// Sender's logical clock; every entry of `origin` up to it is in `entries`.
        clock: u64,
        /// All entries.
        entries: Vec<Entry>,
    },
}

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The payload ended early.
    #[error("dns gossip payload truncated at byte {} (needed {} more)", .0.at, .0.needed)]
    Truncated(#[from] Short),
    /// Written by a newer (or unknown) encoding.
    #[error("dns gossip payload has version {0}, this router speaks {VERSION}; upgrade the older router")]
    Version(u8),
    /// Unknown message kind.
    #[error("dns gossip payload has unknown kind {0}")]
    Kind(u8),
    /// A field has a value that cannot be right.
    #[error("dns gossip payload has a bad {field} at byte {at}")]
    Bad {
        /// Which field.
        field: &'static str,
        /// Offset of the field.
        at: usize,
    },
    /// Bytes after the end of the message.
    #[error("dns gossip payload has {0} trailing bytes")]
    Trailing(usize),
}

/// FNV-1a 64 over the live entries given in key order; equal sets give equal sums.
pub fn checksum<'a>(live: impl IntoIterator<Item = &'a Entry>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for e in live {
        feed(e.key.container.as_bytes());
        feed(&[0]);
        feed(e.key.hostname.as_bytes());
        feed(&[0]);
        feed(&e.key.addr.octets());
        feed(&e.state.version.to_be_bytes());
    }
    h
}

impl Message {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(VERSION);
        match self {
            Message::Delta {
                origin,
                clock,
                entries,
            }
            | Message::Full {
                origin,
                clock,
                entries,
            } => {
                w.u8(if matches!(self, Message::Delta { .. }) {
                    KIND_DELTA
                } else {
                    KIND_FULL
                });
                put_str(&mut w, origin);
                w.u64(*clock);
                w.list32(entries, put_entry);
            }
            Message::Digest {
                origin,
                clock,
                live,
                checksum,
            } => {
                w.u8(KIND_DIGEST);
                put_str(&mut w, origin);
                w.u64(*clock);
                w.u32(*live);
                w.u64(*checksum);
            }
            Message::Request { origin } => {
                w.u8(KIND_REQUEST);
                put_str(&mut w, origin);
            }
        }
        w.buf
    }

    /// Decodes a payload; any malformed input gives an error, never a panic.
    pub fn decode(buf: &[u8]) -> Result<Message, WireError> {
        decode_versioned(buf, VERSION, Message::decode_body)
    }

    /// The message of kind `kind` (the header read), without its end checked.
    fn decode_body(kind: u8, r: &mut Reader) -> Result<Message, WireError> {
        Ok(match kind {
            KIND_DELTA | KIND_FULL => {
                let origin = id(r, "origin")?;
                let clock = r.u64()?;
                let at = r.pos();
                let n = r.u32()? as usize;
                // Bound the allocation by what the remaining bytes can hold.
                if n > r.remaining() / MIN_ENTRY_LEN {
                    return Err(WireError::Bad {
                        field: "entry count",
                        at,
                    });
                }
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    entries.push(entry(r, &origin)?);
                }
                if kind == KIND_DELTA {
                    Message::Delta {
                        origin,
                        clock,
                        entries,
                    }
                } else {
                    Message::Full {
                        origin,
                        clock,
                        entries,
                    }
                }
            }
            KIND_DIGEST => {
                let origin = id(r, "origin")?;
                Message::Digest {
                    origin,
                    clock: r.u64()?,
                    live: r.u32()?,
                    checksum: r.u64()?,
                }
            }
            KIND_REQUEST => Message::Request {
                origin: id(r, "origin")?,
            },
            other => return Err(WireError::Kind(other)),
        })
    }
}

fn put_str(w: &mut Writer, s: &str) {
    // Ids are checked to be at most 255 bytes when stored; cut defensively anyway.
    w.str16(s, usize::from(u16::MAX));
}

fn put_entry(w: &mut Writer, e: &Entry) {
    put_str(w, &e.key.container);
    // Hostnames are checked to be at most 254 bytes when stored.
    let h = e.key.hostname.as_bytes();
    let h = &h[..h.len().min(255)];
    w.u8(h.len() as u8);
    w.raw(h);
    w.raw(&e.key.addr.octets());
    w.u64(e.state.version);
    w.u8(u8::from(e.state.tombstone));
}

impl PayloadError for WireError {
    fn version(found: u8) -> WireError {
        WireError::Version(found)
    }
    fn trailing(n: usize) -> WireError {
        WireError::Trailing(n)
    }
}

/// A container id: u16 length, 1 to `MAX_ID_LEN` bytes of UTF-8.
fn id(r: &mut Reader, field: &'static str) -> Result<String, WireError> {
    let at = r.pos();
    let len = usize::from(r.u16()?);
    if len == 0 || len > MAX_ID_LEN {
        return Err(WireError::Bad { field, at });
    }
    let bytes = r.take(len)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| WireError::Bad { field, at })
}

fn entry(r: &mut Reader, origin: &str) -> Result<Entry, WireError> {
    let container = id(r, "container")?;
    let at = r.pos();
    let len = r.u8()? as usize;
    let raw = r.take(len)?;
    let hostname = std::str::from_utf8(raw).map_err(|_| WireError::Bad {
        field: "hostname",
        at,
    })?;
    // Only the stored (normalized) form is valid on the wire.
    match normalize_name(hostname) {
        Ok(n) if n == hostname => {}
        _ => {
            return Err(WireError::Bad {
                field: "hostname",
                at,
            })
        }
    }
    let addr = Ipv4Addr::from(r.array::<4>()?);
    let version = r.u64()?;
    let at = r.pos();
    let flags = r.u8()?;
    if flags > 1 {
        return Err(WireError::Bad { field: "flags", at });
    }
    Ok(Entry {
        key: EntryKey {
            origin: origin.to_string(),
            container,
            hostname: hostname.to_string(),
            addr,
        },
        state: EntryState {
            version,
            tombstone: flags == 1,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use weft_types::cursor::first_broken_accepted;

    fn sample() -> Vec<Message> {
        let e = |c: &str, h: &str, v: u64, t: bool| Entry {
            key: EntryKey::new("peer-a", c, h, Ipv4Addr::new(10, 32, 1, 2)).unwrap(),
            state: EntryState {
                version: v,
                tombstone: t,
            },
        };
        vec![
            Message::Delta {
                origin: "peer-a".into(),
                clock: 7,
                entries: vec![e("c1", "web.weft.local", 7, false)],
            },
            Message::Full {
                origin: "peer-a".into(),
                clock: 9,
                entries: vec![
                    e("c1", "web.weft.local", 7, false),
                    e("c2", "db.weft.local", 9, true),
                ],
            },
            Message::Full {
                origin: "peer-a".into(),
                clock: 0,
                entries: vec![],
            },
            Message::Digest {
                origin: "peer-a".into(),
                clock: 9,
                live: 1,
                checksum: 0xdead_beef,
            },
            Message::Request {
                origin: "peer-b".into(),
            },
        ]
    }

    #[test]
    fn messages_round_trip() {
        for m in sample() {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn every_truncation_and_bad_header_is_an_error() {
        for m in sample() {
            let b = m.encode();
            let broken = first_broken_accepted(&b, Message::decode);
            assert_eq!(broken, None, "{m:?}");
            let mut longer = b.clone();
            longer.push(0);
            assert_eq!(Message::decode(&longer), Err(WireError::Trailing(1)));
        }
        assert_eq!(Message::decode(&[2, 1]), Err(WireError::Version(2)));
        assert_eq!(Message::decode(&[1, 9]), Err(WireError::Kind(9)));
        // A huge entry count with no bytes behind it is refused before allocating.
        let mut b = vec![1, KIND_DELTA, 0, 1, b'p'];
        b.extend_from_slice(&0u64.to_be_bytes());
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Message::decode(&b),
            Err(WireError::Bad {
                field: "entry count",
                ..
            })
        ));
    }

    #[test]
    fn uppercase_hostname_on_the_wire_is_refused() {
        let m = Message::Delta {
            origin: "p".into(),
            clock: 1,
            entries: vec![Entry {
                key: EntryKey {
                    origin: "p".into(),
                    container: "c".into(),
                    hostname: "Web.weft.local.".into(),
                    addr: Ipv4Addr::LOCALHOST,
                },
                state: EntryState {
                    version: 1,
                    tombstone: false,
                },
            }],
        };
        assert!(matches!(
            Message::decode(&m.encode()),
            Err(WireError::Bad {
                field: "hostname",
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(idx in 0usize..5, pos in any::<usize>(), val in any::<u8>()) {
            let mut b = sample()[idx].encode();
            let p = pos % b.len();
            b[p] = val;
            if let Ok(m) = Message::decode(&b) {
                // Whatever decodes must encode back to the same bytes.
                prop_assert_eq!(m.encode(), b);
            }
        }
    }
}
