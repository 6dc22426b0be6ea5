//! The Docker plugin as an owner of IPAM addresses and bridge ports (see `crate::owners`):
//! its saved allocations (one recorded before IPAM is asked owns every address of its
//! owner) and its endpoints' veths.

use futures::future::BoxFuture;

use super::RouterBackend;
use crate::owners::{Claim, Owned, Owner};

/// The plugin's saved state, read when asked.
pub struct DockerOwner(pub RouterBackend);

impl Owner for DockerOwner {
    fn kind(&self) -> &'static str {
        "docker"
    }

    fn owned(&self) -> BoxFuture<'_, Owned> {
        Box::pin(async move {
            let s = self.0.state().lock().await;
            Owned {
                addrs: s
                    .allocations
                    .iter()
                    .map(|(owner, a)| match a {
                        Some(a) => Claim::addr(owner, a.addr()),
                        None => Claim::all(owner),
                    })
                    .collect(),
                ports: s.endpoints.values().map(|e| e.host_veth.clone()).collect(),
            }
        })
    }
}
