//! The VIPs of the services this host created, as a kind of IPAM owner for the audit at
//! start (`crate::owners`): a VIP whose service is gone is released there.

use super::Services;
use crate::owners::{AddrOwner, Claim};

/// Owner kind `services`: `weft:service:NAME` for each service this host created.
pub struct VipOwner(pub Services);

impl AddrOwner for VipOwner {
    const KIND: &'static str = "services";

    async fn claims(&self) -> Vec<Claim> {
        self.0.claims().await
    }
}
