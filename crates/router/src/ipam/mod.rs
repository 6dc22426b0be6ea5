//! Address management in the router: drives the sans-IO [`weft_ipam::Allocator`] with mesh
//! payloads, timers and persistence, and answers the attach pipeline.
//!
//! Until the allocator is wired in, only explicit claims (`ip:CIDR`) work; every other form
//! answers "not available yet".

use ipnet::Ipv4Net;
use weft_ipam::AddrSpec;

use crate::api::ApiFailure;

/// The default allocation range (`--ipalloc-range`).
pub const DEFAULT_RANGE: &str = "10.32.0.0/12";

/// Handle the attach pipeline uses to get and give back addresses.
#[derive(Debug, Clone)]
pub struct IpamHandle {
    range: Ipv4Net,
    default_subnet: Ipv4Net,
}

impl IpamHandle {
    /// Starts address management for `range`.
    pub fn start(range: Ipv4Net, default_subnet: Option<Ipv4Net>) -> Self {
        IpamHandle {
            range,
            default_subnet: default_subnet.unwrap_or(range),
        }
    }

    /// The subnet used when a container asks for none.
    pub fn default_subnet(&self) -> Ipv4Net {
        self.default_subnet
    }

    /// The allocation range.
    pub fn range(&self) -> Ipv4Net {
        self.range
    }

    /// An address for `owner` as `spec` asks.
    pub async fn allocate(&self, owner: &str, spec: &AddrSpec) -> Result<Ipv4Net, ApiFailure> {
        let _ = owner;
        match spec {
            AddrSpec::Claim(c) => cidr_to_net(c),
            other => Err(ApiFailure::not_available(&format!(
                "allocating {other} (address management)"
            ))),
        }
    }

    /// Gives back `addr` of `owner` (all of its addresses when `None`).
    pub async fn release(&self, owner: &str, addr: Option<Ipv4Net>) -> Result<(), ApiFailure> {
        let _ = (owner, addr);
        Ok(())
    }
}

/// The `ipnet` form of an IPAM CIDR.
pub fn cidr_to_net(c: &weft_ipam::Cidr) -> Result<Ipv4Net, ApiFailure> {
    Ipv4Net::new(std::net::Ipv4Addr::from(c.addr), c.prefix)
        .map_err(|e| ApiFailure::bad_request(format!("{c:?}: {e}")))
}
