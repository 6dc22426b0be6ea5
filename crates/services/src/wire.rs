//! Binary encoding of the services gossip (version 1).
//!
//! Layout (big endian): `version:u8 kind:u8` then the body. The mesh frames each payload
//! and names its sender, so a message is the whole buffer (trailing bytes are an error)
//! and task messages speak for their sender. Decoding never panics, never allocates more
//! than the input can hold, and takes only the canonical form (names and entries sorted,
//! specifications normalized), so whatever decodes encodes back to the same bytes.
//!
//! | kind | body |
//! |---|---|
//! | 1 Names (delta) | n:u32, n × name |
//! | 2 Names (full) | n:u32, n × name |
//! | 3 TaskDelta | base:u64, seq:u64, n:u32, n × task, m:u32, m × (service, addr) |
//! | 4 TaskSet | seq:u64, n:u32, n × task |
//! | 5 Digest | names:u32, names_hash:u64, seq:u64, tasks:u32, tasks_hash:u64 |
//! | 6 Request | flags:u8 (1 = names, 2 = tasks) |
//!
//! name = service, removed:u64, n:u16, n × (origin, version:u64, live:u8, spec if live);
//! spec = mode:u8, subnet:[u8;4], prefix:u8, has_vip:u8, [vip:[u8;4]], n:u16 × (proto:u8,
//! port:u16), n:u16 × (proto:u8, host_port:u16, port:u16), health:u8 (0 none, 1 tcp,
//! 2 http + path), [interval:u64]; task = service, addr:[u8;4], container, healthy:u8.
//! Strings are `len:u16` + UTF-8.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use weft_types::cursor::{decode_versioned, PayloadError, Reader, Short, Writer};
use weft_types::port::Proto;

use crate::limits::{
    MAX_CONTAINER_LEN, MAX_ENTRIES_PER_NAME, MAX_NAMES, MAX_PATH_LEN, MAX_PEER_LEN, MAX_PORTS,
    MAX_PUBLISHED, MAX_TASKS_PER_HOST,
};
use crate::names::{Entry, NameState};
use crate::spec::{
    check_name, EndpointMode, HealthCheck, HealthKind, PortSpec, Publish, ServiceSpec,
};
use crate::tasks::{Task, TaskKey};

/// The encoding version written by this code.
pub const VERSION: u8 = 1;

const KIND_NAMES: u8 = 1;
const KIND_NAMES_FULL: u8 = 2;
const KIND_TASK_DELTA: u8 = 3;
const KIND_TASK_SET: u8 = 4;
const KIND_DIGEST: u8 = 5;
const KIND_REQUEST: u8 = 6;
/// Smallest encoded name: a 1-byte name, removed, entry count.
const MIN_NAME_LEN: usize = 3 + 8 + 2;
/// Smallest encoded task: 1-byte service and container, addr, healthy.
const MIN_TASK_LEN: usize = 3 + 4 + 3 + 1;
/// Smallest encoded task key.
const MIN_KEY_LEN: usize = 3 + 4;

/// A services gossip message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Names that changed, or (`full`) every name the sender holds.
    Names {
        /// Every name the sender holds (anti-entropy), not just changed ones.
        full: bool,
        /// The names, sorted.
        names: Vec<NameState>,
    },
    /// Changes of the sender's task set from sequence `base` to `seq`.
    TaskDelta {
        /// The sequence number the changes apply to.
        base: u64,
        /// The sequence number after them.
        seq: u64,
        /// Tasks added or changed.
        upserts: Vec<Task>,
        /// Tasks removed.
        removes: Vec<TaskKey>,
    },
    /// The sender's whole task set.
    TaskSet {
        /// Its sequence number.
        seq: u64,
        /// The tasks, sorted.
        tasks: Vec<Task>,
    },
    /// A summary of what the sender holds, for anti-entropy.
    Digest(Digest),
    /// "Send me your names and/or your task set."
    Request {
        /// All names held.
        names: bool,
        /// The receiver's task set.
        tasks: bool,
    },
}

/// A summary of what a peer holds: its names, and its own task set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    /// Names held.
    pub names: u32,
    /// Hash of the names held.
    pub names_hash: u64,
    /// Sequence number of the sender's task set.
    pub seq: u64,
    /// Tasks in it.
    pub tasks: u32,
    /// Hash of them.
    pub tasks_hash: u64,
}

impl Digest {
    fn put(&self, w: &mut Writer) {
        w.u32(self.names);
        w.u64(self.names_hash);
        w.u64(self.seq);
        w.u32(self.tasks);
        w.u64(self.tasks_hash);
    }

    fn get(r: &mut Reader) -> Result<Digest, Short> {
        Ok(Digest {
            names: r.u32()?,
            names_hash: r.u64()?,
            seq: r.u64()?,
            tasks: r.u32()?,
            tasks_hash: r.u64()?,
        })
    }
}

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The payload ended early.
    #[error("services gossip payload truncated at byte {} (needed {} more)", .0.at, .0.needed)]
    Truncated(#[from] Short),
    /// Written by another encoding version.
    #[error("services gossip payload has version {0}, this router speaks {VERSION}; upgrade the older router")]
    Version(u8),
    /// Unknown message kind.
    #[error("services gossip payload has unknown kind {0}")]
    Kind(u8),
    /// A field has a value that cannot be right, or breaks a bound.
    #[error("services gossip payload has a bad {field} at byte {at}")]
    Bad {
        /// Which field.
        field: &'static str,
        /// Offset of the field.
        at: usize,
    },
    /// Bytes after the end of the message.
    #[error("services gossip payload has {0} trailing bytes")]
    Trailing(usize),
}

impl WireError {
    /// Whether the sender is broken or hostile (dropped), rather than speaking another
    /// version of the encoding (ignored, as during a rolling upgrade).
    pub fn drops_peer(&self) -> bool {
        !matches!(self, WireError::Version(_))
    }
}

impl PayloadError for WireError {
    fn version(found: u8) -> WireError {
        WireError::Version(found)
    }
    fn trailing(n: usize) -> WireError {
        WireError::Trailing(n)
    }
}

impl Message {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(VERSION);
        match self {
            Message::Names { full, names } => {
                w.u8(if *full { KIND_NAMES_FULL } else { KIND_NAMES });
                w.list32(names, put_name);
            }
            Message::TaskDelta {
                base,
                seq,
                upserts,
                removes,
            } => {
                w.u8(KIND_TASK_DELTA);
                w.u64(*base);
                w.u64(*seq);
                w.list32(upserts, put_task);
                w.list32(removes, |w, k| {
                    put_str(w, &k.service);
                    w.raw(&k.addr.octets());
                });
            }
            Message::TaskSet { seq, tasks } => {
                w.u8(KIND_TASK_SET);
                w.u64(*seq);
                w.list32(tasks, put_task);
            }
            Message::Digest(d) => {
                w.u8(KIND_DIGEST);
                d.put(&mut w);
            }
            Message::Request { names, tasks } => {
                w.u8(KIND_REQUEST);
                w.u8(u8::from(*names) | (u8::from(*tasks) << 1));
            }
        }
        w.buf
    }

    /// Decodes a payload from peer `sender` (the host of the tasks it carries); any
    /// malformed input gives an error, never a panic.
    pub fn decode(buf: &[u8], sender: &str) -> Result<Message, WireError> {
        decode_versioned(buf, VERSION, |kind, r| {
            Message::decode_body(kind, r, sender)
        })
    }

    /// The message of kind `kind` (the header read), without its end checked.
    fn decode_body(kind: u8, r: &mut Reader, sender: &str) -> Result<Message, WireError> {
        Ok(match kind {
            KIND_NAMES | KIND_NAMES_FULL => {
                let n = count(r, MIN_NAME_LEN, MAX_NAMES, "name count")?;
                let mut names: Vec<NameState> = Vec::with_capacity(n);
                for _ in 0..n {
                    let at = r.pos();
                    let name = get_name(r)?;
                    if names.last().is_some_and(|l| l.name >= name.name) {
                        return Err(bad("name order", at));
                    }
                    names.push(name);
                }
                Message::Names {
                    full: kind == KIND_NAMES_FULL,
                    names,
                }
            }
            KIND_TASK_DELTA => {
                let base = r.u64()?;
                let at = r.pos();
                let seq = r.u64()?;
                if seq <= base {
                    return Err(bad("task sequence", at));
                }
                let upserts = get_tasks(r, sender)?;
                let n = count(r, MIN_KEY_LEN, MAX_TASKS_PER_HOST, "task count")?;
                let mut removes: Vec<TaskKey> = Vec::with_capacity(n);
                for _ in 0..n {
                    let at = r.pos();
                    let key = TaskKey {
                        service: get_service(r)?,
                        addr: Ipv4Addr::from(r.array::<4>()?),
                    };
                    if removes.last().is_some_and(|l| *l >= key) {
                        return Err(bad("task order", at));
                    }
                    removes.push(key);
                }
                Message::TaskDelta {
                    base,
                    seq,
                    upserts,
                    removes,
                }
            }
            KIND_TASK_SET => Message::TaskSet {
                seq: r.u64()?,
                tasks: get_tasks(r, sender)?,
            },
            KIND_DIGEST => Message::Digest(Digest::get(r)?),
            KIND_REQUEST => {
                let at = r.pos();
                let flags = r.u8()?;
                if flags > 3 {
                    return Err(bad("request flags", at));
                }
                Message::Request {
                    names: flags & 1 != 0,
                    tasks: flags & 2 != 0,
                }
            }
            other => return Err(WireError::Kind(other)),
        })
    }
}

fn bad(field: &'static str, at: usize) -> WireError {
    WireError::Bad { field, at }
}

/// A u32 count of items at least `min_size` bytes each, at most `max`.
fn count(
    r: &mut Reader,
    min_size: usize,
    max: usize,
    field: &'static str,
) -> Result<usize, WireError> {
    let at = r.pos();
    match r.count(min_size)? {
        Some(n) if n <= max => Ok(n),
        _ => Err(bad(field, at)),
    }
}

fn put_str(w: &mut Writer, s: &str) {
    // Every string is bounded far below u16::MAX where it is made; cut defensively.
    w.str16(s, usize::from(u16::MAX));
}

/// A string of 1 to `max` bytes.
fn get_str(r: &mut Reader, max: usize, field: &'static str) -> Result<String, WireError> {
    let at = r.pos();
    let bytes = r.bytes16()?;
    if bytes.is_empty() || bytes.len() > max {
        return Err(bad(field, at));
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| bad(field, at))
}

fn get_service(r: &mut Reader) -> Result<String, WireError> {
    let at = r.pos();
    let name = get_str(r, crate::limits::MAX_NAME_LEN, "service name")?;
    check_name(&name).map_err(|_| bad("service name", at))?;
    Ok(name)
}

fn put_name(w: &mut Writer, n: &NameState) {
    put_str(w, &n.name);
    w.u64(n.removed);
    w.u16(n.entries.len() as u16);
    for e in &n.entries {
        put_str(w, &e.origin);
        w.u64(e.version);
        match &e.spec {
            None => w.u8(0),
            Some(spec) => {
                w.u8(1);
                put_spec(w, spec);
            }
        }
    }
}

fn get_name(r: &mut Reader) -> Result<NameState, WireError> {
    let name = get_service(r)?;
    let removed = r.u64()?;
    let at = r.pos();
    let n = usize::from(r.u16()?);
    if n > MAX_ENTRIES_PER_NAME {
        return Err(bad("entry count", at));
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(n);
    for _ in 0..n {
        let at = r.pos();
        let origin = get_str(r, MAX_PEER_LEN, "origin")?;
        let version = r.u64()?;
        let ordered = entries
            .last()
            .is_none_or(|l| (l.version, l.origin.as_str()) < (version, origin.as_str()));
        if version <= removed || !ordered {
            return Err(bad("entry order", at));
        }
        let at = r.pos();
        let spec = match r.u8()? {
            0 => None,
            1 => Some(get_spec(r, &name)?),
            _ => return Err(bad("entry flag", at)),
        };
        entries.push(Entry {
            origin,
            version,
            spec,
        });
    }
    Ok(NameState {
        name,
        removed,
        entries,
    })
}

fn put_proto(w: &mut Writer, p: Proto) {
    w.u8(p.iana());
}

fn get_proto(r: &mut Reader) -> Result<Proto, WireError> {
    let at = r.pos();
    Proto::from_iana(r.u8()?).ok_or(bad("protocol", at))
}

/// The encoding of a spec (what digests hash).
pub(crate) fn spec_bytes(s: &ServiceSpec) -> Vec<u8> {
    let mut w = Writer::default();
    put_spec(&mut w, s);
    w.buf
}

fn put_spec(w: &mut Writer, s: &ServiceSpec) {
    w.u8(match s.mode {
        EndpointMode::Vip => 0,
        EndpointMode::Dnsrr => 1,
    });
    w.raw(&s.subnet.network().octets());
    w.u8(s.subnet.prefix_len());
    match s.vip {
        None => w.u8(0),
        Some(v) => {
            w.u8(1);
            w.raw(&v.octets());
        }
    }
    w.u16(s.ports.len() as u16);
    for p in &s.ports {
        put_proto(w, p.proto);
        w.u16(p.port);
    }
    w.u16(s.published.len() as u16);
    for p in &s.published {
        put_proto(w, p.proto);
        w.u16(p.host_port);
        w.u16(p.port);
    }
    match &s.health {
        None => w.u8(0),
        Some(h) => {
            match &h.kind {
                HealthKind::Tcp => w.u8(1),
                HealthKind::Http { path } => {
                    w.u8(2);
                    put_str(w, path);
                }
            }
            w.u64(h.interval_ms);
        }
    }
}

fn get_spec(r: &mut Reader, name: &str) -> Result<ServiceSpec, WireError> {
    let start = r.pos();
    let mode = match r.u8()? {
        0 => EndpointMode::Vip,
        1 => EndpointMode::Dnsrr,
        _ => return Err(bad("endpoint mode", start)),
    };
    let net = Ipv4Addr::from(r.array::<4>()?);
    let at = r.pos();
    let subnet = Ipv4Net::new(net, r.u8()?).map_err(|_| bad("subnet", at))?;
    let at = r.pos();
    let vip = match r.u8()? {
        0 => None,
        1 => Some(Ipv4Addr::from(r.array::<4>()?)),
        _ => return Err(bad("vip flag", at)),
    };
    let ports = get_list(r, MAX_PORTS, "port count", |r| {
        Ok(PortSpec {
            proto: get_proto(r)?,
            port: r.u16()?,
        })
    })?;
    let published = get_list(r, MAX_PUBLISHED, "published count", |r| {
        Ok(Publish {
            proto: get_proto(r)?,
            host_port: r.u16()?,
            port: r.u16()?,
        })
    })?;
    let at = r.pos();
    let kind = match r.u8()? {
        0 => None,
        1 => Some(HealthKind::Tcp),
        2 => Some(HealthKind::Http {
            path: get_str(r, MAX_PATH_LEN, "health path")?,
        }),
        _ => return Err(bad("health kind", at)),
    };
    let health = match kind {
        None => None,
        Some(kind) => Some(HealthCheck {
            kind,
            interval_ms: r.u64()?,
        }),
    };
    let spec = ServiceSpec {
        name: name.to_string(),
        mode,
        subnet,
        vip,
        ports,
        published,
        health,
    };
    // Only the normal form travels: anything else was not made by a router.
    match spec.normalized() {
        Ok(n) if n == spec => Ok(spec),
        _ => Err(bad("service spec", start)),
    }
}

/// A list with a u16 count of at most `max` items.
fn get_list<T>(
    r: &mut Reader,
    max: usize,
    field: &'static str,
    item: impl Fn(&mut Reader) -> Result<T, WireError>,
) -> Result<Vec<T>, WireError> {
    let at = r.pos();
    let n = usize::from(r.u16()?);
    if n > max {
        return Err(bad(field, at));
    }
    (0..n).map(|_| item(r)).collect()
}

fn put_task(w: &mut Writer, t: &Task) {
    put_str(w, &t.service);
    w.raw(&t.addr.octets());
    put_str(w, &t.container);
    w.u8(u8::from(t.healthy));
}

fn get_tasks(r: &mut Reader, host: &str) -> Result<Vec<Task>, WireError> {
    let n = count(r, MIN_TASK_LEN, MAX_TASKS_PER_HOST, "task count")?;
    let mut tasks: Vec<Task> = Vec::with_capacity(n);
    for _ in 0..n {
        let at = r.pos();
        let service = get_service(r)?;
        let addr = Ipv4Addr::from(r.array::<4>()?);
        let container = get_str(r, MAX_CONTAINER_LEN, "container")?;
        let hat = r.pos();
        let healthy = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(bad("health flag", hat)),
        };
        if tasks
            .last()
            .is_some_and(|l| (l.service.as_str(), l.addr) >= (service.as_str(), addr))
        {
            return Err(bad("task order", at));
        }
        tasks.push(Task {
            service,
            addr,
            host: host.to_string(),
            container,
            healthy,
        });
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use weft_types::cursor::first_broken_accepted;

    /// One message of each kind, the specification with every optional part.
    pub(crate) fn sample() -> Vec<Message> {
        let spec = ServiceSpec {
            published: vec![Publish {
                proto: Proto::Tcp,
                host_port: 8000,
                port: 80,
            }],
            health: Some(HealthCheck {
                kind: HealthKind::Http {
                    path: "/healthz".into(),
                },
                interval_ms: 2000,
            }),
            ..crate::spec::sample("web", 9)
        };
        let mut dns = spec.clone();
        dns.name = "dns".into();
        dns.mode = EndpointMode::Dnsrr;
        dns.vip = None;
        dns.published.clear();
        dns.health = Some(HealthCheck {
            kind: HealthKind::Tcp,
            interval_ms: 500,
        });
        let task = |s: &str, a: u8| Task {
            service: s.into(),
            addr: Ipv4Addr::new(10, 32, 0, a),
            host: "peer-a".into(),
            container: "c1".into(),
            healthy: a.is_multiple_of(2),
        };
        vec![
            Message::Names {
                full: false,
                names: vec![
                    NameState {
                        name: "dns".into(),
                        removed: 3,
                        entries: vec![Entry {
                            origin: "peer-b".into(),
                            version: 4,
                            spec: Some(dns),
                        }],
                    },
                    NameState {
                        name: "web".into(),
                        removed: 0,
                        entries: vec![
                            Entry {
                                origin: "peer-a".into(),
                                version: 1,
                                spec: Some(spec),
                            },
                            Entry {
                                origin: "peer-b".into(),
                                version: 1,
                                spec: None,
                            },
                        ],
                    },
                ],
            },
            Message::Names {
                full: true,
                names: vec![],
            },
            Message::TaskDelta {
                base: 4,
                seq: 5,
                upserts: vec![task("dns", 2), task("web", 3)],
                removes: vec![TaskKey {
                    service: "web".into(),
                    addr: Ipv4Addr::new(10, 32, 0, 7),
                }],
            },
            Message::TaskSet {
                seq: 5,
                tasks: vec![task("web", 3), task("web", 4)],
            },
            Message::Digest(Digest {
                names: 2,
                names_hash: 0xdead,
                seq: 5,
                tasks: 2,
                tasks_hash: 0xbeef,
            }),
            Message::Request {
                names: true,
                tasks: false,
            },
        ]
    }

    #[test]
    fn messages_round_trip() {
        for m in sample() {
            assert_eq!(Message::decode(&m.encode(), "peer-a").unwrap(), m);
        }
    }

    #[test]
    fn every_truncation_and_bad_header_is_an_error() {
        for m in sample() {
            let b = m.encode();
            let broken = first_broken_accepted(&b, |b| Message::decode(b, "p"));
            assert_eq!(broken, None, "{m:?}");
            let mut longer = b.clone();
            longer.push(0);
            assert_eq!(Message::decode(&longer, "p"), Err(WireError::Trailing(1)));
        }
        assert_eq!(Message::decode(&[2, 1], "p"), Err(WireError::Version(2)));
        assert!(!WireError::Version(2).drops_peer());
        assert_eq!(Message::decode(&[1, 9], "p"), Err(WireError::Kind(9)));
        // A huge count with no bytes behind it is refused before allocating.
        let mut b = vec![VERSION, KIND_TASK_SET];
        b.extend_from_slice(&0u64.to_be_bytes());
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Message::decode(&b, "p"),
            Err(WireError::Bad {
                field: "task count",
                ..
            })
        ));
    }

    #[test]
    fn only_the_canonical_form_decodes() {
        let mut bad = sample();
        // Names out of order.
        if let Message::Names { names, .. } = &mut bad[0] {
            names.reverse();
        }
        // A delta that does not move the sequence on.
        if let Message::TaskDelta { seq, .. } = &mut bad[2] {
            *seq = 4;
        }
        // A spec not in normal form (published target port missing from ports).
        let mut unnormal = sample().remove(0);
        if let Message::Names { names, .. } = &mut unnormal {
            names[1].entries[0].spec.as_mut().unwrap().ports.clear();
        }
        // A service name that is not a label.
        let mut badname = sample().remove(3);
        if let Message::TaskSet { tasks, .. } = &mut badname {
            tasks[0].service = "Web".into();
        }
        for m in [bad.remove(0), bad.remove(1), unnormal, badname] {
            let err = Message::decode(&m.encode(), "p").unwrap_err();
            assert!(matches!(err, WireError::Bad { .. }), "{m:?}: {err}");
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Message::decode(&bytes, "p");
        }

        #[test]
        fn mutated_messages_never_panic(idx in 0usize..6, pos in any::<usize>(), val in any::<u8>()) {
            let mut b = sample()[idx].encode();
            let p = pos % b.len();
            b[p] = val;
            if let Ok(m) = Message::decode(&b, "peer-a") {
                // Whatever decodes encodes back to the same bytes.
                prop_assert_eq!(m.encode(), b);
            }
        }
    }
}
