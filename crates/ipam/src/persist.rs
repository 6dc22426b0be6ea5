//! The state a peer keeps across restarts: its name, its ring, its allocations and its Paxos
//! acceptor state. The router writes `encode()` atomically (temp, fsync, rename, fsync dir)
//! when the core asks with `IpamEffect::Persist`, then reports `Event::Persisted`.

use std::collections::BTreeSet;

use crate::addr::{subtract, Addr};
use crate::codec::{DecodeError, ReadFields, Reader, WriteFields, Writer};
use crate::consensus::AcceptorState;
use crate::messages::{get_accepted, get_ballot, put_accepted, put_ballot};
use crate::ring::Ring;

/// The persisted format version this build writes.
pub const STATE_VERSION: u32 = 1;
const MAGIC: [u8; 4] = *b"WIPS";

/// One allocation as persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedAlloc {
    /// The address.
    pub addr: Addr,
    /// The prefix of its subnet.
    pub prefix: u8,
    /// The container (or other owner) id.
    pub owner: String,
}

/// Space taken from a dead peer with rmpeer, not used until every other peer that owns space
/// has sent its ring (one of them may hold a part the dead peer gave away just before it died).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    /// The removed peer.
    pub dead: String,
    /// The intervals taken over.
    pub ranges: Vec<(u64, u64)>,
    /// The tokens taken over, with the version the take-over gave them.
    pub tokens: Vec<(Addr, u32)>,
    /// Peers whose ring we still need.
    pub waiting: BTreeSet<String>,
}

/// Everything a peer needs to restart without losing or duplicating an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedState {
    /// The peer's name (a restore under another name is refused).
    pub name: String,
    /// The ring, once initialised.
    pub ring: Option<Ring>,
    /// The allocations.
    pub allocations: Vec<PersistedAlloc>,
    /// Paxos acceptor state (promises must survive restarts).
    pub acceptor: AcceptorState,
    /// Space from rmpeer not yet usable.
    pub quarantines: Vec<Quarantine>,
}

impl PersistedState {
    /// Encode for a file.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.buf.extend_from_slice(&MAGIC);
        w.u32(STATE_VERSION);
        w.str(&self.name);
        w.optional(self.ring.as_ref(), |w, r| w.ring(r));
        w.u32(self.allocations.len() as u32);
        for a in &self.allocations {
            w.u32(a.addr);
            w.u8(a.prefix);
            w.str(&a.owner);
        }
        w.optional(self.acceptor.promised.as_ref(), put_ballot);
        w.optional(self.acceptor.accepted.as_ref(), put_accepted);
        w.u32(self.quarantines.len() as u32);
        for q in &self.quarantines {
            w.str(&q.dead);
            w.u32(q.ranges.len() as u32);
            for (a, b) in &q.ranges {
                w.u64(*a);
                w.u64(*b);
            }
            w.u32(q.tokens.len() as u32);
            for (t, v) in &q.tokens {
                w.u32(*t);
                w.u32(*v);
            }
            let waiting: Vec<String> = q.waiting.iter().cloned().collect();
            w.strs(&waiting);
        }
        w.buf
    }

    /// The intervals this peer may allocate from: what it owns, minus quarantined space.
    pub fn usable_ranges(&self) -> Vec<(u64, u64)> {
        usable(self.ring.as_ref(), &self.name, &self.quarantines)
    }

    /// Decode a file's contents; never panics.
    pub fn decode(buf: &[u8]) -> Result<PersistedState, DecodeError> {
        let mut r = Reader::new(buf);
        for m in MAGIC {
            if r.u8()? != m {
                return Err(DecodeError::BadMagic);
            }
        }
        let v = r.u32()?;
        if v != STATE_VERSION {
            return Err(DecodeError::Version(v.min(255) as u8, STATE_VERSION as u8));
        }
        let name = r.str()?;
        let ring = r.optional("ring flag", |r| r.ring())?;
        let n = r.u32()?;
        let mut allocations = Vec::new();
        for _ in 0..n {
            let addr = r.u32()?;
            let prefix = r.u8()?;
            if prefix > 32 {
                return Err(DecodeError::Invalid("prefix above 32"));
            }
            allocations.push(PersistedAlloc {
                addr,
                prefix,
                owner: r.str()?,
            });
        }
        let promised = r.optional("promised flag", get_ballot)?;
        let accepted = r.optional("accepted flag", get_accepted)?;
        let nq = r.u32()?;
        let mut quarantines = Vec::new();
        for _ in 0..nq {
            let dead = r.str()?;
            let nr = r.u32()?;
            let mut ranges = Vec::new();
            for _ in 0..nr {
                let a = r.u64()?;
                let b = r.u64()?;
                if a >= b || b > 1 << 32 {
                    return Err(DecodeError::Invalid("quarantine interval"));
                }
                ranges.push((a, b));
            }
            let nt = r.u32()?;
            let mut tokens = Vec::new();
            for _ in 0..nt {
                tokens.push((r.u32()?, r.u32()?));
            }
            let waiting = r.strs()?.into_iter().collect();
            quarantines.push(Quarantine {
                dead,
                ranges,
                tokens,
                waiting,
            });
        }
        r.finish()?;
        Ok(PersistedState {
            name,
            ring,
            allocations,
            acceptor: AcceptorState { promised, accepted },
            quarantines,
        })
    }
}

/// What `name` may allocate from in `ring`, minus quarantined space.
pub fn usable(ring: Option<&Ring>, name: &str, quarantines: &[Quarantine]) -> Vec<(u64, u64)> {
    let Some(ring) = ring else {
        return Vec::new();
    };
    let owned = ring.owned_by(name);
    let minus: Vec<(u64, u64)> = quarantines
        .iter()
        .flat_map(|q| q.ranges.iter().copied())
        .collect();
    subtract(&owned, &minus)
}
