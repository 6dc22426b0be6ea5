//! What a service is: its specification as `weft service create` gives it, and the
//! definition the mesh agrees on (the specification, who created it and when).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use weft_types::port::Proto;

/// A port of the service: VIP:port balances to task:port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    /// Transport protocol.
    pub proto: Proto,
    /// The port, the same on the VIP and on the tasks.
    pub port: u16,
}

/// A published port: host_port on every host balances to task:port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Publish {
    /// Transport protocol.
    pub proto: Proto,
    /// The port on every host.
    pub host_port: u16,
    /// The port on the tasks.
    pub port: u16,
}

/// How clients reach the tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    /// One virtual address balanced over the tasks.
    Vip,
    /// No VIP: the name answers with the task addresses.
    Dnsrr,
}

/// What a health check of a task does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    /// A TCP connect to the task's first port.
    Tcp,
    /// An HTTP GET of `path` expecting a 2xx or 3xx status.
    Http {
        /// Absolute path, e.g. `/healthz`.
        path: String,
    },
}

/// How the tasks of a service are health-checked (by the router of each task's host).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HealthCheck {
    /// What a check does.
    pub kind: HealthKind,
    /// Milliseconds between checks.
    pub interval_ms: u64,
}

/// What `weft service create` asks for, already parsed into types.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Service name (a DNS label).
    pub name: String,
    /// How clients reach the tasks.
    pub mode: EndpointMode,
    /// The subnet the tasks (and the VIP) are in.
    pub subnet: Ipv4Net,
    /// The virtual address (mode vip), allocated by the creating router.
    pub vip: Option<Ipv4Addr>,
    /// Ports balanced from the VIP.
    pub ports: Vec<PortSpec>,
    /// Ports published on every host.
    pub published: Vec<Publish>,
    /// Health check of the tasks, if any.
    pub health: Option<HealthCheck>,
}

/// A service as the mesh knows it: one per name once gossip has settled.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Definition {
    /// The specification.
    pub spec: ServiceSpec,
    /// The peer that created it.
    pub origin: String,
    /// Lamport time of its creation: of two concurrent creates of one name, the lower
    /// `(version, origin)` wins.
    pub version: u64,
}
