//! The allocator's interface: its configuration, the events it takes and the actions it
//! returns (see `allocator` for the order in which the driver must execute them).

use std::collections::BTreeSet;

use serde::Serialize;
use weft_mesh::Transmit;

use crate::addr::{Addr, Cidr};
use crate::consensus::InitMode;
use crate::error::IpamError;
use crate::persist::PersistedState;

/// Identifies a request so its reply can be matched.
pub type RequestId = u64;
/// Milliseconds on a monotonic clock chosen by the driver (the mesh cores' one time type).
pub use weft_mesh::Millis;

/// How IPAM is configured on this peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConfig {
    /// `--ipalloc-range`.
    pub range: Cidr,
    /// `--ipalloc-default-subnet` (the range itself when `None`).
    pub default_subnet: Option<Cidr>,
    /// `--ipalloc-init`.
    pub init: InitMode,
    /// How long a request may wait for the ring or for space.
    pub request_timeout_ms: Millis,
    /// How long before an unanswered space request, `Want` or proposal is retried.
    pub retry_ms: Millis,
    /// How often the ring is gossiped even when unchanged (anti-entropy).
    pub gossip_ms: Millis,
}

impl IpamConfig {
    /// A configuration with default timers (30 s requests, 2 s retries, 10 s gossip).
    pub fn new(range: Cidr, init: InitMode) -> IpamConfig {
        IpamConfig {
            range,
            default_subnet: None,
            init,
            request_timeout_ms: 30_000,
            retry_ms: 2_000,
            gossip_ms: 10_000,
        }
    }
}

/// An input to the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Give `owner` an address in `subnet` (the default subnet when `None`).
    Allocate {
        /// Request id.
        id: RequestId,
        /// Container id.
        owner: String,
        /// The subnet.
        subnet: Option<Cidr>,
    },
    /// Give `owner` exactly `addr` (with its subnet's prefix).
    Claim {
        /// Request id.
        id: RequestId,
        /// Container id.
        owner: String,
        /// The address and prefix.
        addr: Cidr,
    },
    /// Release `addr` held by `owner`, or all its addresses when `None`.
    Release {
        /// Request id.
        id: RequestId,
        /// Container id.
        owner: String,
        /// The address.
        addr: Option<Addr>,
    },
    /// The addresses `owner` holds.
    Lookup {
        /// Request id.
        id: RequestId,
        /// Container id.
        owner: String,
    },
    /// Every allocation this peer holds, with its owner (the owner audit at start-up).
    Holdings {
        /// Request id.
        id: RequestId,
    },
    /// A payload from another peer.
    Received {
        /// Sender's peer name.
        from: String,
        /// The payload bytes.
        payload: Vec<u8>,
    },
    /// The peers now reachable in the mesh (ours included or not, it does not matter).
    PeersChanged {
        /// Peer names.
        reachable: BTreeSet<String>,
    },
    /// Time passed; call every few hundred ms.
    Tick,
    /// Initialise the ring now (`weft prime`); replies once it exists.
    Prime {
        /// Request id.
        id: RequestId,
    },
    /// Take over the space of a dead peer.
    RmPeer {
        /// Request id.
        id: RequestId,
        /// The dead peer.
        name: String,
    },
    /// Hand this peer's space to others before leaving (`weft reset`).
    Shutdown {
        /// Request id.
        id: RequestId,
    },
    /// The `Persist` with this token (and all before it) is durable.
    Persisted {
        /// The token.
        token: u64,
    },
}

/// An output of the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A payload for one peer or for every reachable peer, on the allocator's channel.
    Transmit(Transmit),
    /// Something for the driver to carry out besides sending.
    Effect(IpamEffect),
}

/// What IPAM asks its driver to do besides sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpamEffect {
    /// Write this state durably, then report `Event::Persisted { token }`. Sends and
    /// replies that depend on it are held until then.
    Persist {
        /// The whole state.
        state: PersistedState,
        /// Report this back.
        token: u64,
    },
    /// Answer a local request.
    Reply {
        /// The request.
        id: RequestId,
        /// The answer.
        result: Result<Reply, IpamError>,
    },
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Reply {
    /// The address given (with its subnet's prefix).
    Allocated(Cidr),
    /// The address claimed.
    Claimed(Cidr),
    /// The addresses released.
    Released(Vec<Cidr>),
    /// The addresses held.
    Addresses(Vec<Cidr>),
    /// Every allocation of this peer: owner and address, in address order.
    Holdings(Vec<(String, Cidr)>),
    /// The ring exists.
    Primed,
    /// rmpeer done: how many addresses were taken over.
    RemovedPeer {
        /// The peer removed.
        name: String,
        /// Addresses now ours.
        addresses: u64,
    },
    /// Shutdown done: who got how many addresses.
    HandedOver(Vec<(String, u64)>),
}
