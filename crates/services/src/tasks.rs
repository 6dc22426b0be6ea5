//! Tasks: the addresses of containers that serve a service, each owned by its host.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Which task: a service and an address in it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskKey {
    /// Service name.
    pub service: String,
    /// The task's address.
    pub addr: Ipv4Addr,
}

/// A task as the core reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Task {
    /// Service name.
    pub service: String,
    /// The task's address.
    pub addr: Ipv4Addr,
    /// The peer whose container it is.
    pub host: String,
    /// The container (id or name).
    pub container: String,
    /// In rotation: its last health check passed (or it has none) and its host is reachable.
    pub healthy: bool,
}
