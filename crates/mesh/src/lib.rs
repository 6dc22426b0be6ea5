//! Sans-IO mesh core: peer identity, handshake, gossip, topology and routes.
//!
//! - [`session`]: one control connection's bytes (version prologue, Noise, frames).
//! - [`wire`]: the messages and their encoding.
//! - [`mesh`]: one peer's state machine (connections, gossip, heartbeats, targets).
//! - [`topology`]: entries, reachability, next hops, broadcast trees.
//! - [`app`]: the trait every core on the mesh implements, and what it is handed.
//! - [`peers`]: the peer bookkeeping the gossip cores share.
//! - [`sim`]: a deterministic simulation of many peers, reusable by other cores.

pub mod app;
pub mod limits;
pub mod mesh;
pub mod peers;
pub mod session;
pub mod sim;
pub mod topology;
pub mod wire;

pub use app::{Disconnect, MeshApp, Millis, Reachable, TopologyView, Transmit};
pub use mesh::{
    Action, ConnEvent, ConnId, ConnStatus, Mesh, MeshConfig, Neighbour, SendError, TargetStatus,
    Timing,
};
pub use peers::{GossipPeers, PeerChange};
pub use session::{Role, Session, SessionError, SessionEvent};
pub use wire::{Hello, Message, PeerEntry};
