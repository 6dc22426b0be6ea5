//! The data path in the router: the `weft` bridge, fastdp (kernel VXLAN) programmed from
//! the mesh, the sleeve, and the choice of path per peer.
//!
//! For now: the bridge, so that containers on one host can be attached.

use std::sync::Arc;

use weft_datapath::{AttachInfo, Netns};

/// Name of the overlay bridge.
pub const BRIDGE: &str = "weft";
/// The overlay MTU when nothing better is known (Weave's default).
pub const DEFAULT_MTU: u32 = 1376;

/// Handle the attach pipeline uses.
#[derive(Debug, Clone)]
pub struct DatapathHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bridge: String,
    mtu: u32,
}

impl DatapathHandle {
    /// Sets up the bridge in the host's namespace.
    pub async fn start(mtu: Option<u32>) -> anyhow::Result<Self> {
        let mtu = mtu.unwrap_or(DEFAULT_MTU);
        tokio::task::spawn_blocking(move || weft_datapath::ensure_bridge(BRIDGE, mtu)).await??;
        Ok(DatapathHandle {
            inner: Arc::new(Inner {
                bridge: BRIDGE.to_string(),
                mtu,
            }),
        })
    }

    /// The bridge containers attach to.
    pub fn bridge(&self) -> &str {
        &self.inner.bridge
    }

    /// The overlay MTU given to containers.
    pub fn mtu(&self) -> u32 {
        self.inner.mtu
    }

    /// A local container interface appeared (its MAC is announced to peers).
    pub fn endpoint_added(&self, container: &str, netns: &Netns, info: &AttachInfo) {
        let _ = (container, netns, info);
    }

    /// A local container interface went away.
    pub fn endpoint_removed(&self, container: &str, mac: &str) {
        let _ = (container, mac);
    }
}
