//! The IPAM wire messages: `b"WI"`, a version byte, a type byte, then the fields.
//! The mesh frames payloads; decoding checks every length and never panics.

use crate::addr::{Addr, Cidr};
use crate::codec::{DecodeError, ReadFields, Reader, WriteFields, Writer};
use crate::consensus::{AcceptedValue, Ballot};
use crate::ring::Ring;

/// The wire version this build speaks.
pub const WIRE_VERSION: u8 = 1;
const MAGIC: [u8; 2] = *b"WI";

/// Why a space request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// The peer has no free address in the subnet.
    NoSpace,
    /// The wanted address is held by this container on the peer.
    InUse(String),
    /// The peer does not own the wanted address (its ring moved on).
    NotOwner,
}

/// Why a ring is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingKind {
    /// Broadcast after a change, or an answer: merge, do not answer.
    Gossip,
    /// Periodic anti-entropy to one peer: merge, and answer with ours if the sender lacks
    /// something.
    Exchange,
    /// The sender is leaving and gave us its space: merge, persist, answer `HandoverAck`.
    Handover,
}

/// One IPAM message between peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The sender's ring.
    Ring {
        /// The ring.
        ring: Ring,
        /// Why it is sent (what the receiver answers).
        kind: RingKind,
    },
    /// The receiver of a handover has merged and persisted it.
    HandoverAck,
    /// Ask for free space in `subnet` (or for exactly the address `want`).
    SpaceRequest {
        /// Matches the answer to the request.
        nonce: u64,
        /// The subnet space is wanted in.
        subnet: Cidr,
        /// A claim: the one address wanted.
        want: Option<Addr>,
    },
    /// A space request granted: the donor's ring, in which the requester now owns space.
    SpaceGranted {
        /// The request's nonce.
        nonce: u64,
        /// The donor's ring after the transfer.
        ring: Ring,
    },
    /// A space request refused.
    SpaceDenied {
        /// The request's nonce.
        nonce: u64,
        /// Why.
        reason: DenyReason,
    },
    /// The sender needs a ring (lazy initialisation); carries its init mode tag.
    Want {
        /// 0 consensus, 1 seed, 2 observer.
        mode: u8,
    },
    /// Paxos phase 1a.
    Prepare {
        /// The proposer's ballot.
        ballot: Ballot,
    },
    /// Paxos phase 1b.
    Promise {
        /// The ballot promised.
        ballot: Ballot,
        /// What the acceptor accepted before.
        accepted: Option<AcceptedValue>,
    },
    /// A refused prepare or accept.
    Nack {
        /// The ballot refused.
        ballot: Ballot,
        /// The higher ballot already promised.
        promised: Ballot,
    },
    /// Paxos phase 2a.
    Accept {
        /// The ballot.
        ballot: Ballot,
        /// The peers the ring is split among.
        value: Vec<String>,
    },
    /// Paxos phase 2b.
    Accepted {
        /// The ballot accepted.
        ballot: Ballot,
    },
}

/// Writes a consensus ballot (shared by the wire and the persisted state).
pub(crate) fn put_ballot(w: &mut Writer, b: &Ballot) {
    w.u64(b.round);
    w.str(&b.proposer);
}

/// Reads a ballot written by [`put_ballot`].
/// An accepted proposal: its ballot and value.
pub(crate) fn put_accepted(w: &mut Writer, (b, v): &(Ballot, Vec<String>)) {
    put_ballot(w, b);
    w.strs(v);
}

/// Reads what [`put_accepted`] wrote.
pub(crate) fn get_accepted(r: &mut Reader<'_>) -> Result<(Ballot, Vec<String>), DecodeError> {
    Ok((get_ballot(r)?, r.strs()?))
}

pub(crate) fn get_ballot(r: &mut Reader<'_>) -> Result<Ballot, DecodeError> {
    Ok(Ballot {
        round: r.u64()?,
        proposer: r.str()?,
    })
}

impl Message {
    /// Encode for the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.buf.extend_from_slice(&MAGIC);
        w.u8(WIRE_VERSION);
        match self {
            Message::Ring { ring, kind } => {
                w.u8(1);
                w.u8(match kind {
                    RingKind::Gossip => 0,
                    RingKind::Exchange => 1,
                    RingKind::Handover => 2,
                });
                w.ring(ring);
            }
            Message::HandoverAck => w.u8(2),
            Message::SpaceRequest {
                nonce,
                subnet,
                want,
            } => {
                w.u8(3);
                w.u64(*nonce);
                w.cidr(subnet);
                w.optional(want.as_ref(), |w, a| w.u32(*a));
            }
            Message::SpaceDenied { nonce, reason } => {
                w.u8(4);
                w.u64(*nonce);
                match reason {
                    DenyReason::NoSpace => w.u8(0),
                    DenyReason::InUse(h) => {
                        w.u8(1);
                        w.str(h);
                    }
                    DenyReason::NotOwner => w.u8(2),
                }
            }
            Message::Want { mode } => {
                w.u8(5);
                w.u8(*mode);
            }
            Message::Prepare { ballot } => {
                w.u8(6);
                put_ballot(&mut w, ballot);
            }
            Message::Promise { ballot, accepted } => {
                w.u8(7);
                put_ballot(&mut w, ballot);
                w.optional(accepted.as_ref(), put_accepted);
            }
            Message::Nack { ballot, promised } => {
                w.u8(8);
                put_ballot(&mut w, ballot);
                put_ballot(&mut w, promised);
            }
            Message::Accept { ballot, value } => {
                w.u8(9);
                put_ballot(&mut w, ballot);
                w.strs(value);
            }
            Message::Accepted { ballot } => {
                w.u8(10);
                put_ballot(&mut w, ballot);
            }
            Message::SpaceGranted { nonce, ring } => {
                w.u8(11);
                w.u64(*nonce);
                w.ring(ring);
            }
        }
        w.buf
    }

    /// Decode from the wire; any input gives a message or an error, never a panic.
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
        let mut r = Reader::new(buf);
        if r.u8()? != MAGIC[0] || r.u8()? != MAGIC[1] {
            return Err(DecodeError::BadMagic);
        }
        let v = r.u8()?;
        if v != WIRE_VERSION {
            return Err(DecodeError::Version(v, WIRE_VERSION));
        }
        let m = match r.u8()? {
            1 => {
                let kind = match r.u8()? {
                    0 => RingKind::Gossip,
                    1 => RingKind::Exchange,
                    2 => RingKind::Handover,
                    _ => return Err(DecodeError::Invalid("ring kind")),
                };
                Message::Ring {
                    ring: r.ring()?,
                    kind,
                }
            }
            2 => Message::HandoverAck,
            3 => {
                let nonce = r.u64()?;
                let subnet = r.cidr()?;
                let want = r.optional("want flag", |r| Ok(r.u32()?))?;
                Message::SpaceRequest {
                    nonce,
                    subnet,
                    want,
                }
            }
            4 => {
                let nonce = r.u64()?;
                let reason = match r.u8()? {
                    0 => DenyReason::NoSpace,
                    1 => DenyReason::InUse(r.str()?),
                    2 => DenyReason::NotOwner,
                    _ => return Err(DecodeError::Invalid("deny reason")),
                };
                Message::SpaceDenied { nonce, reason }
            }
            5 => Message::Want { mode: r.u8()? },
            6 => Message::Prepare {
                ballot: get_ballot(&mut r)?,
            },
            7 => {
                let ballot = get_ballot(&mut r)?;
                let accepted = r.optional("accepted flag", get_accepted)?;
                Message::Promise { ballot, accepted }
            }
            8 => Message::Nack {
                ballot: get_ballot(&mut r)?,
                promised: get_ballot(&mut r)?,
            },
            9 => Message::Accept {
                ballot: get_ballot(&mut r)?,
                value: r.strs()?,
            },
            10 => Message::Accepted {
                ballot: get_ballot(&mut r)?,
            },
            11 => Message::SpaceGranted {
                nonce: r.u64()?,
                ring: r.ring()?,
            },
            t => return Err(DecodeError::UnknownType(t)),
        };
        r.finish()?;
        Ok(m)
    }
}
