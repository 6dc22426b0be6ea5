//! The embedded DNS in the router: the record store and its gossip over the mesh, and the
//! listeners inside containers' namespaces.
//!
//! Not wired in yet: registering names answers "not available yet".

use ipnet::Ipv4Net;
use weft_datapath::Netns;

use crate::api::ApiFailure;

/// Handle the attach pipeline uses to register and drop names.
#[derive(Debug, Clone, Default)]
pub struct DnsHandle {}

impl DnsHandle {
    /// A container was attached: register `hostname` (if any) for `addrs` and serve DNS
    /// inside its namespace.
    pub async fn container_attached(
        &self,
        container: &str,
        hostname: Option<&str>,
        addrs: &[Ipv4Net],
        netns: &Netns,
    ) -> Result<(), ApiFailure> {
        let _ = (container, addrs, netns);
        match hostname {
            Some(_) => Err(ApiFailure::not_available("registering names in DNS")),
            None => Ok(()),
        }
    }

    /// A container was detached (some or all of its addresses): drop its names for them.
    pub async fn container_detached(&self, container: &str, addrs: &[Ipv4Net]) {
        let _ = (container, addrs);
    }
}
