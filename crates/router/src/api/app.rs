//! The handles the API serves, all built by the daemon before the API starts (so no
//! request ever finds a part of the router still starting).

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use crate::cni::Cni;
use crate::config::Config;
use crate::containers::Containers;
use crate::docker::DockerHandle;
use crate::mesh::MeshHandle;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Every running part of the router the API uses.
pub struct Handles {
    /// The configuration the router started with.
    pub config: Config,
    /// This peer's unique name.
    pub name: String,
    /// When the router started.
    pub started: Instant,
    /// Counters exported on /metrics.
    pub metrics: Arc<Metrics>,
    /// The mesh: peers, connections, targets.
    pub mesh: MeshHandle,
    /// The attach pipeline with IPAM, DNS and the data path.
    pub containers: Arc<Containers>,
    /// Owners of addresses taken through the raw IPAM API.
    pub ipam_owners: Arc<crate::ipam_owners::ApiOwners>,
    /// The CNI plugin's attachments.
    pub cni: Arc<Cni>,
    /// The Docker integration, when this host has Docker.
    pub docker: Option<DockerHandle>,
    /// The router's stop signal.
    pub shutdown: Shutdown,
}

/// The axum state: the handles, shared.
#[derive(Clone)]
pub struct AppState(Arc<Handles>);

impl AppState {
    /// Shares `handles` with the API's handlers.
    pub fn new(handles: Handles) -> Self {
        AppState(Arc::new(handles))
    }

    /// Seconds since start.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

impl Deref for AppState {
    type Target = Handles;

    fn deref(&self) -> &Handles {
        &self.0
    }
}
