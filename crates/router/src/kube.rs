//! Peers from the Kubernetes API (`weft launch --kube-peers`). A task lists and watches the
//! nodes and, every `--kube-poll`, hands them with the mesh's and IPAM's view to the sans-IO
//! [`weft_kube::Core`], and carries out what the core decides: targets are dialled and
//! forgotten through the mesh handle, departed peers' space is taken through the IPAM
//! handle's `rmpeer`. The nodes the core has seen are kept in the state directory, so a
//! restarted router still reclaims a node deleted while it was down. docs/kubernetes.md.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use weft_ipam::{IpamError, Reply};
use weft_kube::{
    ApiClient, Core, CoreConfig, KubeError, MeshView, NodeEvent, NodeList, NodeWatch,
    ReclaimOutcome,
};

use crate::config::KubeConfig;
use crate::ipam::{IpamHandle, IpamHandleError, Request};
use crate::mesh::MeshHandle;

/// The file in the state directory that holds the peer names of the nodes seen in the API.
pub const SEEN_FILE: &str = "kube-seen";

/// Why the Kubernetes peers could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubePeersError {
    /// The first node list could not be read; the launch stops (Kubernetes restarts the pod).
    #[error("--kube-peers: {0}")]
    FirstList(#[source] KubeError),
    /// The seen-nodes file is unreadable or damaged.
    #[error("cannot read {}: {why}; if it is damaged, remove it (the router then forgets which deleted nodes it saw)", path.display())]
    Seen {
        /// The file.
        path: PathBuf,
        /// Cause.
        why: String,
    },
}

/// The Kubernetes peers, ready to run: the client, the core, and the first node list.
pub struct KubePeers {
    client: ApiClient,
    core: Core,
    first: NodeList,
    poll: std::time::Duration,
    seen_file: PathBuf,
}

impl KubePeers {
    /// Reads the persisted seen nodes and the first node list. Called before anything else
    /// starts, so a router that cannot read the API changes nothing on the host.
    pub async fn prepare(
        cfg: &KubeConfig,
        port: u16,
        fixed_targets: BTreeSet<String>,
        state_dir: &Path,
    ) -> Result<KubePeers, KubePeersError> {
        let seen_file = state_dir.join(SEEN_FILE);
        let seen = load_seen(&seen_file)?;
        let client = ApiClient::new(cfg.api.clone(), weft_kube::SERVICE_ACCOUNT_DIR);
        let first = client
            .list_nodes()
            .await
            .map_err(KubePeersError::FirstList)?;
        let core = Core::new(
            CoreConfig {
                node: cfg.node.clone(),
                port,
                reclaim_after: u64::try_from(cfg.reclaim_after.as_millis()).unwrap_or(u64::MAX),
                fixed_targets,
            },
            seen,
        );
        tracing::info!(api = %cfg.api.url(), node = %cfg.node, nodes = first.nodes.len(), "Kubernetes node list read");
        Ok(KubePeers {
            client,
            core,
            first,
            poll: cfg.poll,
            seen_file,
        })
    }

    /// How many nodes the first list holds that are not being deleted (the consensus size
    /// when `--ipalloc-init` is not given, as weave-kube counted them).
    pub fn listed_nodes(&self) -> u32 {
        let n = self.first.nodes.iter().filter(|n| !n.deleting).count();
        u32::try_from(n.max(1)).unwrap_or(u32::MAX)
    }

    /// Runs the poll loop until `stopped` resolves.
    pub fn run(
        self,
        mesh: MeshHandle,
        ipam: IpamHandle,
        stopped: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        tokio::spawn(self.poll_loop(mesh, ipam, stopped));
    }

    /// Lists the nodes, then watches them from the list's version; every `--kube-poll` the
    /// core decides on the nodes as they are. A watch that ends is opened again; one that
    /// fails (or an API that does not watch) falls back to a list at every tick. Nothing is
    /// decided on a list that could not be brought up to date.
    async fn poll_loop(
        mut self,
        mesh: MeshHandle,
        ipam: IpamHandle,
        stopped: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let start = Instant::now();
        let mut nodes = std::mem::take(&mut self.first);
        let mut need_list = false;
        let mut watch: Option<NodeWatch> = None;
        // Kept apart, so an API that lists but does not watch logs its watch error once.
        let mut list_errors = ErrorLog::default();
        let mut watch_errors = ErrorLog::default();
        let mut last_held = None;
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                event = next_event(&mut watch) => match event {
                    Ok(Some((NodeEvent::Expired, _))) => {
                        watch = None;
                        need_list = true;
                    }
                    Ok(Some((event, version))) => {
                        nodes.apply(event, version);
                        watch_errors.clear();
                    }
                    // The API ends a watch after its timeout: open it again at the next tick.
                    Ok(None) => watch = None,
                    Err(e) => {
                        watch_errors.warn(&e);
                        watch = None;
                        need_list = true;
                    }
                },
                _ = tick.tick() => {
                    if need_list {
                        match self.client.list_nodes().await {
                            Ok(l) => {
                                nodes = l;
                                need_list = false;
                                list_errors.clear();
                            }
                            Err(e) => {
                                list_errors.warn(&e);
                                continue;
                            }
                        }
                    }
                    if watch.is_none() {
                        match self.client.watch_nodes(&nodes.resource_version).await {
                            Ok(w) => watch = Some(w),
                            // Decide on this list; list again at the next tick.
                            Err(e) => {
                                watch_errors.warn(&e);
                                need_list = true;
                            }
                        }
                    }
                    let now = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                    self.decide(now, &nodes, &mesh, &ipam, &mut last_held).await;
                }
            }
        }
    }

    /// Hands the nodes to the core and carries out what it decides.
    async fn decide(
        &mut self,
        now: u64,
        nodes: &NodeList,
        mesh: &MeshHandle,
        ipam: &IpamHandle,
        last_held: &mut Option<String>,
    ) {
        let d = self.core.nodes(now, nodes, &view(mesh, ipam));
        if !d.connect.is_empty() {
            tracing::info!(targets = ?d.connect, "dialling Kubernetes nodes");
            if let Err(e) = mesh.connect(&d.connect, false) {
                tracing::warn!("cannot dial Kubernetes nodes: {e}");
            }
        }
        if !d.forget.is_empty() {
            tracing::info!(targets = ?d.forget, "forgetting nodes that left the Kubernetes API");
            if let Err(e) = mesh.forget(&d.forget).await {
                tracing::warn!("cannot forget nodes: {e}");
            }
        }
        if d.held != *last_held {
            if let Some(why) = &d.held {
                let waiting: Vec<&String> = self.core.waiting().keys().collect();
                tracing::info!("departed peers {waiting:?} wait: {why}");
            }
            last_held.clone_from(&d.held);
        }
        let mut seen_changed = d.seen_changed;
        for peer in d.reclaim {
            let outcome = reclaim(ipam, &peer).await;
            seen_changed |= outcome == ReclaimOutcome::Done;
            self.core.reclaimed(now, &peer, outcome);
        }
        if seen_changed {
            self.save_seen().await;
        }
    }

    async fn save_seen(&self) {
        let names: Vec<&String> = self.core.seen().iter().collect();
        let data = serde_json::to_vec(&names).unwrap_or_default();
        let path = self.seen_file.clone();
        let res = tokio::task::spawn_blocking(move || crate::persist::write_atomic(&path, &data))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = res {
            tracing::warn!("cannot write {}: {e}", self.seen_file.display());
        }
    }
}

/// The next event of the watch, if one is open (else never).
async fn next_event(
    watch: &mut Option<NodeWatch>,
) -> Result<Option<(NodeEvent, String)>, KubeError> {
    match watch {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// Logs an API error once until another error, or success, comes.
#[derive(Default)]
struct ErrorLog {
    last: String,
}

impl ErrorLog {
    fn warn(&mut self, e: &KubeError) {
        let msg = e.to_string();
        if msg != self.last {
            tracing::warn!("{msg}; the node list is read again at the next --kube-poll");
            self.last = msg;
        }
    }

    fn clear(&mut self) {
        if !self.last.is_empty() {
            tracing::info!("the Kubernetes API answers again (after: {})", self.last);
            self.last.clear();
        }
    }
}

/// `rmpeer` of a departed peer, and what it came to.
async fn reclaim(ipam: &IpamHandle, peer: &str) -> ReclaimOutcome {
    match ipam
        .request(Request::RmPeer {
            name: peer.to_string(),
        })
        .await
    {
        Ok(Reply::RemovedPeer { name, addresses }) => {
            tracing::info!(peer = %name, addresses, "reclaimed the address space of a node deleted from Kubernetes");
            ReclaimOutcome::Done
        }
        Ok(other) => {
            tracing::warn!(peer, "rmpeer answered unexpectedly: {other:?}");
            ReclaimOutcome::Failed
        }
        // Another router took it first (or it handed its space over before it left).
        Err(IpamHandleError::Core(IpamError::UnknownPeer { .. })) => ReclaimOutcome::Done,
        Err(IpamHandleError::Core(IpamError::PeerReachable { .. })) => {
            tracing::info!(peer, "not reclaimed: the peer is reachable again");
            ReclaimOutcome::Reachable
        }
        Err(e) => {
            tracing::warn!(peer, "cannot reclaim the space of a deleted node: {e}");
            ReclaimOutcome::Failed
        }
    }
}

/// The mesh's reachable peers and IPAM's owners of space (none while the ring is unknown).
fn view(mesh: &MeshHandle, ipam: &IpamHandle) -> MeshView {
    let reachable = mesh
        .snapshot()
        .peers
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let space_owners = ipam.status().and_then(|st| {
        let owners: BTreeSet<String> = st
            .peers
            .into_iter()
            .filter(|p| p.owned > 0)
            .map(|p| p.name)
            .collect();
        (!owners.is_empty()).then_some(owners)
    });
    MeshView {
        reachable,
        space_owners,
    }
}

fn load_seen(path: &Path) -> Result<BTreeSet<String>, KubePeersError> {
    let bad = |why: String| KubePeersError::Seen {
        path: path.to_path_buf(),
        why,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let names: Vec<String> =
                serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
            Ok(names.into_iter().take(weft_kube::core::MAX_SEEN).collect())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(bad(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seen_file_round_trips_and_a_damaged_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SEEN_FILE);
        assert!(load_seen(&path).unwrap().is_empty());
        crate::persist::write_atomic(&path, br#"["node-a","node-b"]"#).unwrap();
        let seen = load_seen(&path).unwrap();
        assert_eq!(seen.len(), 2);
        std::fs::write(&path, b"{oops").unwrap();
        let e = load_seen(&path).unwrap_err().to_string();
        assert!(e.contains(SEEN_FILE) && e.contains("remove it"), "{e}");
    }
}
