//! Errors the IPAM core answers requests with (each says what, why and what to do).

use crate::addr::Cidr;
use serde::Serialize;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum IpamError {
    /// The configuration is not usable.
    #[error("bad IPAM configuration: {0}")]
    BadConfig(String),
    /// A subnet or address outside the allocation range.
    #[error("{subnet} is not inside the allocation range {range}; choose a subnet inside {range} (or change --ipalloc-range)")]
    OutsideRange {
        /// What was asked for.
        subnet: Cidr,
        /// The allocation range.
        range: Cidr,
    },
    /// The network or broadcast address of a subnet.
    #[error("{addr} is the network or broadcast address of its subnet and cannot be given to a container; choose another address")]
    NotUsable {
        /// The address.
        addr: Cidr,
    },
    /// A claim of an address another container holds.
    #[error("{addr} is already held by {holder} on peer {peer}; release it there or claim another address")]
    AddressInUse {
        /// The address.
        addr: Cidr,
        /// The container holding it.
        holder: String,
        /// The peer it lives on.
        peer: String,
    },
    /// No free address in the subnet anywhere.
    #[error("no free address in {subnet}: every peer that owns part of it is full; release addresses or use another subnet")]
    SubnetFull {
        /// The subnet.
        subnet: Cidr,
    },
    /// A request waited too long.
    #[error("gave up after {waited_ms} ms: {waiting_for}")]
    TimedOut {
        /// How long it waited.
        waited_ms: u64,
        /// What it waited for.
        waiting_for: String,
    },
    /// rmpeer of a peer that is reachable.
    #[error("peer {name} is reachable, so it is alive and still owns its space; stop it with `weft reset` on that host instead, or make sure it is gone before rmpeer")]
    PeerReachable {
        /// The peer.
        name: String,
    },
    /// rmpeer of ourselves.
    #[error("cannot rmpeer this peer ({name}); use `weft reset` to hand its space to others")]
    RmPeerSelf {
        /// Our name.
        name: String,
    },
    /// rmpeer of a peer that owns nothing.
    #[error("peer {name} owns no address space; peers that do: {owners}")]
    UnknownPeer {
        /// The peer.
        name: String,
        /// The peers owning space.
        owners: String,
    },
    /// An operation that needs the ring before it exists.
    #[error("IPAM is not initialised yet ({status}); run `weft prime` first")]
    NotInitialised {
        /// The status line.
        status: String,
    },
    /// The peer is leaving.
    #[error("IPAM on this peer is shutting down (weft reset); no new requests")]
    ShuttingDown,
    /// Nobody to hand space to.
    #[error("no reachable peer to hand this peer's address space to; reconnect a peer first, or use --force and run `weft rmpeer {name}` on another peer later")]
    NoPeerForHandover {
        /// Our name.
        name: String,
    },
    /// Handover not confirmed in time.
    #[error("peers {peers} did not confirm taking this peer's space; if they never do, run `weft rmpeer {name}` on one of them")]
    HandoverUnconfirmed {
        /// Peers that did not confirm.
        peers: String,
        /// Our name.
        name: String,
    },
    /// Persisted state belongs to another peer name.
    #[error("persisted IPAM state belongs to peer {persisted}, but this peer is {ours}; remove the state directory or use the old name")]
    RestoreName {
        /// Name in the file.
        persisted: String,
        /// Our name.
        ours: String,
    },
    /// Persisted ring covers another range.
    #[error("persisted IPAM ring is for range {persisted}, but --ipalloc-range is {configured}; pass --ipalloc-range {persisted} or run `weft reset` first")]
    RestoreRange {
        /// Range in the file.
        persisted: Cidr,
        /// Configured range.
        configured: Cidr,
    },
}
