//! The plan: what every host programs for the services, the same on every peer once the
//! gossip has settled.

use std::net::Ipv4Addr;

use crate::spec::{EndpointMode, PortSpec, Publish};

/// One service as the data path needs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlannedService {
    /// Service name.
    pub name: String,
    /// Endpoint mode.
    pub mode: EndpointMode,
    /// The VIP (mode vip, and not taken by an older service).
    pub vip: Option<Ipv4Addr>,
    /// Ports balanced from the VIP.
    pub ports: Vec<PortSpec>,
    /// Published ports (those no older service publishes).
    pub published: Vec<Publish>,
    /// Tasks in rotation (healthy, host reachable), sorted.
    pub backends: Vec<Ipv4Addr>,
}

/// Every live service, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Plan {
    /// The services, sorted by name.
    pub services: Vec<PlannedService>,
}
