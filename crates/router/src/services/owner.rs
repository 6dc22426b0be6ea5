//! The VIPs of the services this host created, as a kind of IPAM owner for the audit at
//! start (`crate::owners`): a VIP whose service is gone is released there.

use futures::future::BoxFuture;

use super::Services;
use crate::owners::{Owned, Owner};

/// Owner kind `services`: `weft:service:NAME` for each service this host created.
pub struct VipOwner(pub Services);

impl Owner for VipOwner {
    fn kind(&self) -> &'static str {
        "services"
    }

    fn owned(&self) -> BoxFuture<'_, Owned> {
        Box::pin(async move {
            Owned {
                addrs: self.0.claims().await,
                ports: Vec::new(),
            }
        })
    }
}
