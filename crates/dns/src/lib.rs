//! weft's embedded DNS: record store, record gossip, query answering, upstream forwarding.
//!
//! - [`records`]: the name → address store (a per-origin last-writer-wins set).
//! - [`wire`]: the versioned binary encoding of gossip messages.
//! - [`gossip`]: the sans-IO gossip core that keeps stores equal across peers (a
//!   [`weft_mesh::MeshApp`]).
//! - [`limits`]: bounds on what a peer's gossip may make us hold.
//! - [`answer`]: answering one DNS query from the store (hickory-proto wire format).
//! - [`forward`]: upstream servers from resolv.conf and forwarding over UDP/TCP.
//! - [`server`]: the tokio UDP/TCP server on sockets the caller made.
//! - [`services`]: the names of services (VIPs, `tasks.NAME`), set by the router.
//!
//! Where containers send their queries is explained in docs/dns.md.

pub mod answer;
pub mod forward;
pub mod gossip;
pub mod limits;
pub mod records;
pub mod server;
pub mod services;
pub mod stats;
pub mod wire;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, RwLock};

pub use answer::{AnswerConfig, Answerer, Outcome, Transport};
pub use forward::{ForwardConfig, Forwarder, Upstreams};
pub use gossip::{DnsGossip, GossipConfig, GossipError, RemoveFilter};
pub use records::{Entry, EntryKey, EntryState, Records};
pub use server::{serve, DnsHandle};
pub use services::{ServiceNames, SharedServiceNames};
pub use wire::WireError;

/// The store shared between the gossip core (writer) and the servers (readers).
pub type SharedRecords = Arc<RwLock<Records>>;

/// Default domain answered locally.
pub const DEFAULT_DOMAIN: &str = "weft.local.";
/// Default TTL of local answers, seconds.
pub const DEFAULT_TTL: u32 = 1;
/// Address weft answers on inside every attached container's netns (the resolv.conf one).
pub const CONTAINER_DNS_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
/// Second in-container address, for Docker (whose own resolver owns 127.0.0.11 on
/// user-defined networks and forwards to `--dns 127.0.0.12` from the container's netns).
pub const DOCKER_DNS_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 12);
/// Port of both.
pub const DNS_PORT: u16 = 53;
/// Every address weft listens on in containers; never used as an upstream.
pub const LISTEN_ADDRS: [IpAddr; 2] = [IpAddr::V4(CONTAINER_DNS_ADDR), IpAddr::V4(DOCKER_DNS_ADDR)];

/// The Docker flags `weft dns-args` prints, e.g. `--dns=127.0.0.12 --dns-search=weft.local.`.
pub fn docker_dns_args(domain: &str) -> String {
    format!("--dns={DOCKER_DNS_ADDR} --dns-search={domain}")
}

/// Errors of the DNS crate; each names the input that caused it.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A hostname that cannot be a DNS name.
    #[error("invalid DNS name {name:?}: {why}; use letters, digits and '-' in dot-separated labels, like web.weft.local")]
    BadName {
        /// The name as given (cut to 300 characters).
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// A peer name or container id that is empty or too long.
    #[error("invalid {what} {value:?}: it must be 1 to 255 bytes long")]
    BadId {
        /// Which field.
        what: &'static str,
        /// The value as given (cut to 300 characters).
        value: String,
    },
    /// A local name past a bound its peers apply ([`limits`]).
    #[error("DNS name refused: {what} (at most {limit}); remove some first")]
    Full {
        /// What is full.
        what: String,
        /// The bound.
        limit: usize,
    },
    /// A removal without anything to select entries by.
    #[error("dns removal names nothing to remove: give a container, a hostname or an address")]
    EmptyRemoval,
    /// resolv.conf could not be read.
    #[error("cannot read resolver configuration {path}: {source}; check that the file exists and is readable")]
    ResolvConf {
        /// The path read.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A socket given to the server could not be used.
    #[error("cannot use DNS socket {what}: {source}")]
    Socket {
        /// Which socket (address or role).
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Reads the shared store, tolerating a poisoned lock (the data stays consistent per call).
pub fn read_records(records: &SharedRecords) -> std::sync::RwLockReadGuard<'_, Records> {
    records.read().unwrap_or_else(|e| e.into_inner())
}

/// Writes the shared store, tolerating a poisoned lock.
pub(crate) fn write_records(records: &SharedRecords) -> std::sync::RwLockWriteGuard<'_, Records> {
    records.write().unwrap_or_else(|e| e.into_inner())
}
