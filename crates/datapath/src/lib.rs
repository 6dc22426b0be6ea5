//! Kernel data path: bridge, veth, VXLAN, FDB, routes, netns entry, and the sleeve.
//!
//! Every function acts on the calling thread's network namespace (the host: the router
//! runs inside it) unless it takes a [`Netns`]; work inside another namespace runs on a
//! short-lived thread, never by moving the caller. Calls block: from async code wrap
//! them in `spawn_blocking`.

pub mod addr;
pub mod arp;
pub mod attach;
pub mod bridge;
pub mod endpoint;
pub mod error;
pub mod expose;
pub mod fastdp;
pub mod fdb;
pub mod link;
pub mod listening;
pub mod mtu;
pub mod neigh;
pub mod netns;
pub mod nl;
pub mod port;
pub mod probe;
pub mod reset;
pub mod route;
pub mod sleeve;
pub mod sysctl;

pub use attach::{attach, detach, AttachInfo, AttachSpec, DetachInfo};
pub use bridge::ensure_bridge;
pub use error::{Error, Result};
pub use expose::{expose, hide};
pub use fastdp::FastdpSpec;
pub use netns::{Netns, NetnsTarget};
pub use reset::reset;
