//! The sleeve: the userspace data path between peers over UDP (port 6783), used per
//! peer when the kernel VXLAN path does not work, and to relay between peers that have
//! no direct path.
//!
//! A TAP device on the weft bridge hands us Ethernet frames — TSO super-frames of up to
//! 64 KiB with their virtio_net_hdr — which cross the underlay as trains of MTU-sized
//! chunks in one UDP GSO send, are reassembled on the far side (UDP GRO hands over a
//! whole train at once) and written into its TAP as one super-frame again. Sealed per peer
//! pair when the router gives a session key, with AES-256-GCM where both CPUs have AES
//! instructions and ChaCha20-Poly1305 otherwise; replays are refused (sliding window).
//! Each peer's path MTU is probed (DF-set datagrams) and chunks are sized to it.
//!
//! Layout: `wire` (datagram format), `crypto` (ciphers, replay window), `pmtu` (path-MTU
//! search), `reassembly`, `forwarding` (MAC table, relay and broadcast routes), `heartbeat`
//! (schedule, RTT) are sans-IO; `peer` is a peer's shared state; `tap`, `udp`, `tx`
//! (TAP → UDP thread), `rx` (UDP → TAP thread) and `engine` (the control handle) do I/O.

pub mod crypto;
mod engine;
pub mod forwarding;
pub mod heartbeat;
mod peer;
pub mod pmtu;
pub mod reassembly;
mod rx;
pub mod tap;
mod tx;
pub mod udp;
pub mod wire;

pub use crypto::CipherKind;
pub use engine::{Sleeve, SleeveConfig, SleeveStats};
pub use peer::{PeerConfig, PeerStats};
pub use tap::Offloads;

/// UDP port of the sleeve by default.
pub const DEFAULT_PORT: u16 = 6783;

/// A peer's short id on the sleeve wire (assigned by the router; unique in the mesh).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u32);

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An Ethernet MAC address.
pub type Mac = [u8; 6];

/// What went wrong starting or driving the sleeve.
#[derive(Debug, thiserror::Error)]
pub enum SleeveError {
    /// A TAP operation failed.
    #[error("sleeve TAP device {name}: {op} failed: {source} (needs root/CAP_NET_ADMIN and /dev/net/tun)")]
    Tap {
        /// Device name.
        name: String,
        /// What we tried.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// Attaching the TAP to the bridge failed.
    #[error("cannot attach sleeve TAP {tap} to bridge {bridge}: {source} (does the bridge exist in this network namespace?)")]
    Bridge {
        /// Bridge name.
        bridge: String,
        /// TAP name.
        tap: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A UDP socket operation failed.
    #[error("sleeve UDP socket {addr}: {op} failed: {source} (is the port already in use?)")]
    Udp {
        /// The address to bind.
        addr: std::net::SocketAddr,
        /// What we tried.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A peer configuration that cannot work.
    #[error("sleeve peer {peer}: {reason}")]
    Peer {
        /// The peer's id.
        peer: PeerId,
        /// Why it was refused.
        reason: String,
    },
    /// A bad setting.
    #[error("sleeve configuration: {0}")]
    Config(String),
    /// Starting a thread failed.
    #[error("cannot start sleeve thread: {0}")]
    Thread(std::io::Error),
}
