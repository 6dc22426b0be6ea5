//! The mesh's messages and their binary encoding: versioned, length-prefixed fields,
//! decoders that return errors (never panic) on any bytes, on weft's shared byte cursor.

use weft_types::cursor::{self, Writer};

/// Lowest wire protocol version this build speaks.
pub const PROTOCOL_MIN: u8 = 1;
/// Highest wire protocol version this build speaks.
pub const PROTOCOL_MAX: u8 = 1;
/// Largest encoded message; larger gossip is split into several messages.
pub const MAX_MESSAGE: usize = 60_000;
/// Largest application payload that fits in one routed message.
pub const MAX_PAYLOAD: usize = MAX_MESSAGE - 200;

/// A decoding failure: what was wrong with the bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message ended before a field did.
    #[error("message truncated while reading {0}")]
    Truncated(&'static str),
    /// An unknown message type.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A string field is not UTF-8.
    #[error("field {0} is not valid UTF-8")]
    BadUtf8(&'static str),
    /// Bytes left over after the message.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    /// A field holds a value out of range.
    #[error("field {0} has an invalid value")]
    Invalid(&'static str),
}

/// What a peer says about itself right after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Unique peer name.
    pub name: String,
    /// Nickname (hostname by default).
    pub nickname: String,
    /// Random id of this run of the peer (tells a restart from a clone).
    pub uid: u64,
    /// TCP port the peer listens on (so its address can be gossiped).
    pub listen_port: u16,
}

/// One connection as a peer reports it in gossip.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EdgeInfo {
    /// Remote peer name.
    pub name: String,
    /// Remote address as this peer sees it (`IP:PORT`).
    pub addr: String,
    /// Whether this peer dialled.
    pub outbound: bool,
}

/// A peer's entry in the topology, owned and versioned by that peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEntry {
    /// Unique name.
    pub name: String,
    /// Nickname.
    pub nickname: String,
    /// Id of the peer's current run.
    pub uid: u64,
    /// Bumped by the owner on every change; higher wins.
    pub version: u64,
    /// Control port it listens on.
    pub listen_port: u16,
    /// Its established connections, sorted by name.
    pub edges: Vec<EdgeInfo>,
}

/// One item of a digest: which version of a peer's entry the sender holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestItem {
    /// Peer name.
    pub name: String,
    /// Version held.
    pub version: u64,
}

/// A message on an established control connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// First message after the handshake.
    Hello(Hello),
    /// Keeps the connection alive.
    Heartbeat,
    /// The sender refuses the connection and will close it.
    Refuse {
        /// Why, for the log and `weft status connections`.
        reason: String,
    },
    /// Entries that are new to the receiver.
    Gossip {
        /// The entries.
        entries: Vec<PeerEntry>,
    },
    /// A summary of the sender's view; a mismatch asks for a digest.
    DigestHash {
        /// Hash over (name, version) of the reachable entries.
        hash: u64,
        /// Number of entries hashed.
        count: u32,
    },
    /// The versions the sender holds; the receiver answers with newer entries and
    /// requests the ones it lacks.
    Digest {
        /// The items.
        items: Vec<DigestItem>,
    },
    /// Asks for the named entries.
    Request {
        /// Peer names.
        names: Vec<String>,
    },
    /// An application payload routed to one peer.
    Unicast {
        /// Application channel.
        channel: u16,
        /// Origin peer.
        src: String,
        /// Destination peer.
        dst: String,
        /// Hops left.
        ttl: u8,
        /// Opaque payload.
        payload: Vec<u8>,
    },
    /// An application payload for every peer, forwarded along the origin's broadcast tree.
    Broadcast {
        /// Application channel.
        channel: u16,
        /// Origin peer.
        src: String,
        /// Opaque payload.
        payload: Vec<u8>,
    },
}

const T_HELLO: u8 = 1;
const T_HEARTBEAT: u8 = 2;
const T_REFUSE: u8 = 3;
const T_GOSSIP: u8 = 4;
const T_DIGEST_HASH: u8 = 5;
const T_DIGEST: u8 = 6;
const T_REQUEST: u8 = 7;
const T_UNICAST: u8 = 8;
const T_BROADCAST: u8 = 9;

/// Appends one gossip entry.
fn put_entry(w: &mut Writer, e: &PeerEntry) {
    put_str(w, &e.name);
    put_str(w, &e.nickname);
    w.u64(e.uid);
    w.u64(e.version);
    w.u16(e.listen_port);
    w.list32(&e.edges, |w, c| {
        put_str(w, &c.name);
        put_str(w, &c.addr);
        w.u8(c.outbound as u8);
    });
}

/// Appends a string; strings are names and reasons, longer ones are cut at a char boundary.
fn put_str(w: &mut Writer, s: &str) {
    w.str16(s, usize::from(u16::MAX));
}

/// The shared cursor, with each failure named by the field being read.
struct Reader<'a>(cursor::Reader<'a>);

impl<'a> Reader<'a> {
    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.0.u8().map_err(|_| DecodeError::Truncated(what))
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.0.u16().map_err(|_| DecodeError::Truncated(what))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.0.u32().map_err(|_| DecodeError::Truncated(what))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.0.u64().map_err(|_| DecodeError::Truncated(what))
    }
    fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid(what)),
        }
    }
    fn str(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let b = self.0.bytes16().map_err(|_| DecodeError::Truncated(what))?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::BadUtf8(what))
    }
    fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>, DecodeError> {
        let b = self.0.bytes32().map_err(|_| DecodeError::Truncated(what))?;
        Ok(b.to_vec())
    }
    /// A u32 count of items each at least `min_size` bytes long (checked against what is
    /// left, so that a forged count cannot make us allocate), then the items.
    fn list<T>(
        &mut self,
        what: &'static str,
        min_size: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let n = match self.0.count(min_size) {
            Ok(Some(n)) => n,
            _ => return Err(DecodeError::Truncated(what)),
        };
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(item(self)?);
        }
        Ok(v)
    }
    fn entry(&mut self) -> Result<PeerEntry, DecodeError> {
        let name = self.str("entry name")?;
        let nickname = self.str("entry nickname")?;
        let uid = self.u64("entry uid")?;
        let version = self.u64("entry version")?;
        let listen_port = self.u16("entry port")?;
        let edges = self.list("entry edges", 5, |r| {
            Ok(EdgeInfo {
                name: r.str("edge name")?,
                addr: r.str("edge address")?,
                outbound: r.bool("edge direction")?,
            })
        })?;
        Ok(PeerEntry {
            name,
            nickname,
            uid,
            version,
            listen_port,
            edges,
        })
    }
}

impl Message {
    /// The message's encoding (type byte, then fields).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            Message::Hello(h) => {
                w.u8(T_HELLO);
                put_str(&mut w, &h.name);
                put_str(&mut w, &h.nickname);
                w.u64(h.uid);
                w.u16(h.listen_port);
            }
            Message::Heartbeat => w.u8(T_HEARTBEAT),
            Message::Refuse { reason } => {
                w.u8(T_REFUSE);
                put_str(&mut w, reason);
            }
            Message::Gossip { entries } => {
                w.u8(T_GOSSIP);
                w.list32(entries, put_entry);
            }
            Message::DigestHash { hash, count } => {
                w.u8(T_DIGEST_HASH);
                w.u64(*hash);
                w.u32(*count);
            }
            Message::Digest { items } => {
                w.u8(T_DIGEST);
                w.list32(items, |w, i| {
                    put_str(w, &i.name);
                    w.u64(i.version);
                });
            }
            Message::Request { names } => {
                w.u8(T_REQUEST);
                w.list32(names, |w, n| put_str(w, n));
            }
            Message::Unicast {
                channel,
                src,
                dst,
                ttl,
                payload,
            } => {
                w.u8(T_UNICAST);
                w.u16(*channel);
                put_str(&mut w, src);
                put_str(&mut w, dst);
                w.u8(*ttl);
                w.bytes32(payload);
            }
            Message::Broadcast {
                channel,
                src,
                payload,
            } => {
                w.u8(T_BROADCAST);
                w.u16(*channel);
                put_str(&mut w, src);
                w.bytes32(payload);
            }
        }
        w.buf
    }

    /// Decodes one whole message; any malformed input is an error.
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
        let mut r = Reader(cursor::Reader::new(buf));
        let msg = match r.u8("message type")? {
            T_HELLO => Message::Hello(Hello {
                name: r.str("hello name")?,
                nickname: r.str("hello nickname")?,
                uid: r.u64("hello uid")?,
                listen_port: r.u16("hello port")?,
            }),
            T_HEARTBEAT => Message::Heartbeat,
            T_REFUSE => Message::Refuse {
                reason: r.str("refuse reason")?,
            },
            T_GOSSIP => {
                let entries = r.list("gossip entries", 26, Reader::entry)?;
                Message::Gossip { entries }
            }
            T_DIGEST_HASH => Message::DigestHash {
                hash: r.u64("digest hash")?,
                count: r.u32("digest count")?,
            },
            T_DIGEST => {
                let items = r.list("digest items", 10, |r| {
                    Ok(DigestItem {
                        name: r.str("digest name")?,
                        version: r.u64("digest version")?,
                    })
                })?;
                Message::Digest { items }
            }
            T_REQUEST => {
                let names = r.list("request names", 2, |r| r.str("request name"))?;
                Message::Request { names }
            }
            T_UNICAST => Message::Unicast {
                channel: r.u16("unicast channel")?,
                src: r.str("unicast source")?,
                dst: r.str("unicast destination")?,
                ttl: r.u8("unicast ttl")?,
                payload: r.bytes("unicast payload")?,
            },
            T_BROADCAST => Message::Broadcast {
                channel: r.u16("broadcast channel")?,
                src: r.str("broadcast source")?,
                payload: r.bytes("broadcast payload")?,
            },
            t => return Err(DecodeError::UnknownType(t)),
        };
        if r.0.remaining() != 0 {
            return Err(DecodeError::Trailing(r.0.remaining()));
        }
        Ok(msg)
    }

    /// Encoded size of one gossip entry (used to split large gossip).
    pub fn entry_size(e: &PeerEntry) -> usize {
        let mut w = Writer::default();
        put_entry(&mut w, e);
        w.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use weft_types::cursor::first_broken_accepted;

    pub(crate) fn samples() -> Vec<Message> {
        vec![
            Message::Hello(Hello {
                name: "02:aa:bb:cc:dd:ee".into(),
                nickname: "h1".into(),
                uid: 7,
                listen_port: 6783,
            }),
            Message::Heartbeat,
            Message::Refuse {
                reason: "same name".into(),
            },
            Message::Gossip {
                entries: vec![PeerEntry {
                    name: "a".into(),
                    nickname: "na".into(),
                    uid: 1,
                    version: 9,
                    listen_port: 6783,
                    edges: vec![EdgeInfo {
                        name: "b".into(),
                        addr: "10.0.0.2:6783".into(),
                        outbound: true,
                    }],
                }],
            },
            Message::DigestHash { hash: 5, count: 3 },
            Message::Digest {
                items: vec![DigestItem {
                    name: "a".into(),
                    version: 3,
                }],
            },
            Message::Request {
                names: vec!["a".into(), "b".into()],
            },
            Message::Unicast {
                channel: 2,
                src: "a".into(),
                dst: "b".into(),
                ttl: 9,
                payload: vec![1, 2, 3],
            },
            Message::Broadcast {
                channel: 2,
                src: "a".into(),
                payload: vec![],
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn truncated_and_trailing_are_errors() {
        for m in samples() {
            let broken = first_broken_accepted(&m.encode(), Message::decode);
            assert_eq!(broken, None, "{m:?}");
        }
    }

    /// Fuzz: random bytes and mutated valid messages never panic the decoder, and what
    /// decodes re-encodes to the same bytes.
    #[test]
    fn fuzz_message_decoder() {
        let cases: usize = weft_types::knob("WEFT_FUZZ_CASES", 20_000);
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let valid: Vec<Vec<u8>> = samples().iter().map(|m| m.encode()).collect();
        for i in 0..cases {
            let mut b = if i % 2 == 0 {
                let n = rng.random_range(0..64);
                (0..n).map(|_| rng.random()).collect::<Vec<u8>>()
            } else {
                valid[rng.random_range(0..valid.len())].clone()
            };
            for _ in 0..rng.random_range(0..4) {
                if b.is_empty() {
                    break;
                }
                let at = rng.random_range(0..b.len());
                match rng.random_range(0..3) {
                    0 => b[at] = rng.random(),
                    1 => {
                        b.remove(at);
                    }
                    _ => b.insert(at, rng.random()),
                }
            }
            if let Ok(m) = Message::decode(&b) {
                assert_eq!(m.encode(), b);
            }
        }
    }
}
