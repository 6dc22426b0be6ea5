//! State shared by the router's tasks and its API handlers.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::sync::watch;
use weft_api::{
    ConnectionReport, PeerConnectionReport, PeerReport, Report, RouterReport, TargetReport,
};

use crate::config::Config;
use crate::mesh::MeshHandle;
use crate::metrics::Metrics;

/// Handle to the running router, cheap to clone.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    name: String,
    started: Instant,
    metrics: Arc<Metrics>,
    mesh: OnceLock<MeshHandle>,
    parts: OnceLock<crate::containers::Parts>,
    docker: OnceLock<crate::docker::DockerHandle>,
    shutdown: watch::Sender<bool>,
}

impl Router {
    /// A router with its identity decided.
    pub fn new(config: Config, name: String) -> Self {
        let (shutdown, _) = watch::channel(false);
        Router {
            inner: Arc::new(Inner {
                config,
                name,
                started: Instant::now(),
                metrics: Arc::new(Metrics::default()),
                mesh: OnceLock::new(),
                parts: OnceLock::new(),
                docker: OnceLock::new(),
                shutdown,
            }),
        }
    }

    /// The configuration the router started with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// This peer's unique name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Counters exported on /metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The counters, shareable with tasks.
    pub fn metrics_arc(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    /// Installs the running mesh (once, at start-up).
    pub fn set_mesh(&self, mesh: MeshHandle) {
        let _ = self.inner.mesh.set(mesh);
    }

    /// The mesh, once started: send/receive payloads, watch the topology.
    pub fn mesh(&self) -> Option<&MeshHandle> {
        self.inner.mesh.get()
    }

    /// Installs the data path, IPAM, DNS and the container registry (once, at start-up).
    pub fn set_parts(&self, parts: crate::containers::Parts) {
        let _ = self.inner.parts.set(parts);
    }

    /// The container pipeline's pieces; an error while the router is still starting.
    pub fn parts(&self) -> Result<&crate::containers::Parts, crate::api::ApiFailure> {
        self.inner
            .parts
            .get()
            .ok_or_else(|| crate::api::ApiFailure {
                status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                message: "the router is still starting; try again in a moment".to_string(),
            })
    }

    /// Installs the Docker integration (once, at start-up, when Docker is there).
    pub fn set_docker(&self, docker: crate::docker::DockerHandle) {
        let _ = self.inner.docker.set(docker);
    }

    /// The Docker integration, when this host has Docker.
    pub fn docker(&self) -> Option<&crate::docker::DockerHandle> {
        self.inner.docker.get()
    }

    /// Seconds since start.
    pub fn uptime_secs(&self) -> u64 {
        self.inner.started.elapsed().as_secs()
    }

    /// Asks every task to stop.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Resolves once shutdown was asked for.
    pub async fn stopped(&self) {
        let mut rx = self.inner.shutdown.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// The whole state as `weft report` shows it.
    pub fn report(&self) -> Report {
        let c = &self.inner.config;
        let (peers, connections, targets) = self.mesh_report();
        Report {
            version: weft_api::VERSION.to_string(),
            router: RouterReport {
                name: self.inner.name.clone(),
                nickname: c.nickname.clone(),
                port: c.port,
                protocol_min_version: weft_mesh::wire::PROTOCOL_MIN,
                protocol_max_version: weft_mesh::wire::PROTOCOL_MAX,
                encryption: c.password.is_some(),
                peer_discovery: !c.no_discovery,
                trusted_subnets: c.trusted_subnets.clone(),
                conn_limit: c.conn_limit,
                mtu: c.mtu,
                peers,
                connections,
                targets,
            },
            ipam: self.parts().ok().and_then(|p| p.ipam.report()),
            dns: self.parts().ok().and_then(|p| p.dns.report()),
            docker: self.docker().map(|d| d.report(&self.inner.config.paths)),
        }
    }

    /// The router report's peers, connections and targets, from the mesh snapshot.
    fn mesh_report(&self) -> (Vec<PeerReport>, Vec<ConnectionReport>, Vec<TargetReport>) {
        let Some(mesh) = self.mesh() else {
            return (Vec::new(), Vec::new(), Vec::new());
        };
        let snap = mesh.snapshot();
        let nick = |name: &str| {
            snap.peers
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.nickname.clone())
                .unwrap_or_default()
        };
        let reports = |a: &str, b: &str| {
            snap.peers
                .iter()
                .find(|p| p.name == a)
                .is_some_and(|p| p.edges.iter().any(|e| e.name == b))
        };
        let peers = snap
            .peers
            .iter()
            .map(|p| PeerReport {
                name: p.name.clone(),
                nickname: p.nickname.clone(),
                connections: p
                    .edges
                    .iter()
                    .map(|e| PeerConnectionReport {
                        name: e.name.clone(),
                        nickname: nick(&e.name),
                        address: e.addr.clone(),
                        outbound: e.outbound,
                        established: reports(&e.name, &p.name),
                    })
                    .collect(),
            })
            .collect();
        let connections = snap
            .connections
            .iter()
            .map(|c| {
                let path = c
                    .peer
                    .as_deref()
                    .and_then(|p| self.parts().ok()?.datapath.path_of(p));
                ConnectionReport {
                    address: c.address.clone(),
                    outbound: c.outbound,
                    state: c.state.clone(),
                    path: path.as_ref().map(|p| p.path.clone()).unwrap_or_default(),
                    peer: match (&c.peer, &c.nickname) {
                        (Some(p), Some(n)) => format!("{p}({n})"),
                        (Some(p), None) => p.clone(),
                        _ => String::new(),
                    },
                    mtu: path.as_ref().map(|p| p.mtu),
                    info: c.info.clone(),
                    encryption: path
                        .as_ref()
                        .map(|p| p.encryption.clone())
                        .unwrap_or_default(),
                    cipher: path.as_ref().and_then(|p| p.cipher.clone()),
                    path_mtu: path.and_then(|p| p.pmtu),
                }
            })
            .collect();
        let targets = snap
            .targets
            .iter()
            .map(|t| TargetReport {
                address: t.address.clone(),
                explicit: t.explicit,
                state: t.state.clone(),
                last_error: t.last_error.clone(),
            })
            .collect();
        (peers, connections, targets)
    }
}
