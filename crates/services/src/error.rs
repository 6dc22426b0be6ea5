//! Why a local request to the services core was refused.

use std::net::Ipv4Addr;

use weft_types::port::Proto;

/// A refused create, remove or task change; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// A live service already has the name.
    #[error("service {0} already exists: remove it first or choose another name")]
    Exists(String),
    /// No live service has the name.
    #[error("no service named {0}: create it first (weft service ls lists them)")]
    Unknown(String),
    /// The name is not a DNS label.
    #[error("invalid service name {name:?}: {why}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// Another service already publishes that host port.
    #[error("host port {}/{port} is already published by service {service}: choose another port", proto.name())]
    PortInUse {
        /// Protocol.
        proto: Proto,
        /// Host port.
        port: u16,
        /// The service publishing it.
        service: String,
    },
    /// Another service already has that VIP.
    #[error("VIP {vip} is already used by service {service}")]
    VipInUse {
        /// The address.
        vip: Ipv4Addr,
        /// The service using it.
        service: String,
    },
    /// A bound of [`crate::limits`] would be passed.
    #[error("too many {what} (at most {limit})")]
    TooMany {
        /// What there would be too many of.
        what: String,
        /// The bound.
        limit: usize,
    },
    /// The specification or task is inconsistent.
    #[error("invalid service {name}: {why}")]
    Invalid {
        /// The service.
        name: String,
        /// What is wrong, and what to do.
        why: String,
    },
}
