//! `weft reset` in the router: hand the address space over (unless forced), stop the data
//! path, remove everything weft made on this host, forget the containers, and stop.

use std::path::Path;

use crate::datapath::expose::{reset_host, restore_forwarding, EXPOSE_FILE};
use crate::datapath::DatapathHandle;
use crate::docker::DockerHandle;
use crate::ipam::IpamHandle;
use crate::services::Services;
use crate::shutdown::Shutdown;

/// Why a reset did not remove everything (the router stops anyway).
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// Some links or rules could not be removed; each failure is listed.
    #[error("reset incomplete: {0}")]
    Incomplete(String),
    /// The blocking task that removes them did not finish.
    #[error("reset interrupted: {0}")]
    Interrupted(String),
}

/// The handles a reset acts on.
pub struct ResetParts<'a> {
    /// Address management (hands the space over or forgets it).
    pub ipam: &'a IpamHandle,
    /// The data path (stopped before its devices go).
    pub datapath: &'a DatapathHandle,
    /// Docker's networks of driver weft go first, when Docker is there.
    pub docker: Option<&'a DockerHandle>,
    /// Services: the tables in containers' namespaces go too.
    pub services: &'a Services,
    /// The state directory whose files are forgotten.
    pub state_dir: &'a Path,
    /// Stops the router at the end.
    pub shutdown: &'a Shutdown,
}

/// Resets this host; the router is asked to stop once the files are gone.
pub async fn reset(p: ResetParts<'_>, force: bool) -> Result<(), ResetError> {
    // Docker's networks first, while IPAM can still take their addresses back.
    if let Some(d) = p.docker {
        d.remove_networks().await;
    }
    let handed_over = if force {
        false
    } else {
        match p.ipam.shutdown().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("address space not handed over: {e}");
                false
            }
        }
    };
    if !handed_over {
        // Forget the ring and allocations anyway: a reset peer starts afresh.
        if let Err(e) = p.ipam.discard().await {
            tracing::warn!("IPAM state not discarded: {e}");
        }
    }
    // Containers outlive the reset: their namespaces must not keep weft's VIP rules.
    p.services.clear_tables().await;
    p.datapath.stop().await;
    let bridge = p.datapath.bridge().to_string();
    let state_dir = p.state_dir.to_path_buf();
    let dir = state_dir.clone();
    let res = tokio::task::spawn_blocking(move || {
        let res = reset_host(&bridge);
        match (res, restore_forwarding(&dir)) {
            (res, Ok(_)) => res,
            (Ok(_), Err(e)) => Err(e),
            (Err(a), Err(b)) => Err(format!("{a}; {b}")),
        }
    })
    .await
    .map_err(|e| ResetError::Interrupted(e.to_string()))?;
    let _ = std::fs::remove_file(state_dir.join(crate::registry::FILE));
    let _ = std::fs::remove_file(state_dir.join(EXPOSE_FILE));
    let _ = std::fs::remove_file(crate::docker::saved::path(&state_dir));
    let _ = std::fs::remove_file(state_dir.join(crate::intents::FILE));
    let _ = std::fs::remove_file(state_dir.join(crate::ipam_owners::FILE));
    let _ = std::fs::remove_file(state_dir.join(crate::services::FILE));
    p.shutdown.trigger();
    match res {
        Ok(removed) => {
            tracing::info!(?removed, "reset: weft's links and rules removed");
            Ok(())
        }
        Err(e) => Err(ResetError::Incomplete(e)),
    }
}
