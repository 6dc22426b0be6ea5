//! What the status, the report and the data path read from the mesh.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::{Mesh, TargetState};
use crate::wire::PeerEntry;

/// One connection as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnStatus {
    /// Remote address.
    pub address: String,
    /// Whether we dialled.
    pub outbound: bool,
    /// `established`, `connecting`, `failed`, `pending`.
    pub state: String,
    /// Remote peer name, when known.
    pub peer: Option<String>,
    /// Remote nickname, when known.
    pub nickname: Option<String>,
    /// Failure reason or other detail.
    pub info: String,
}

/// One target as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    /// `HOST:PORT`.
    pub address: String,
    /// Given by the user.
    pub explicit: bool,
    /// `connected`, `connecting`, `waiting`.
    pub state: String,
    /// Last error.
    pub last_error: String,
    /// Peer it leads to, once known.
    pub peer: Option<String>,
}

/// A directly connected peer (for the data path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// Peer name.
    pub name: String,
    /// Its address on this connection.
    pub addr: SocketAddr,
    /// Whether we dialled.
    pub outbound: bool,
}

impl Mesh {
    /// Reachable peers (us included) with their entries, sorted by name.
    pub fn peers(&mut self) -> Vec<PeerEntry> {
        self.topo.reachable_entries()
    }

    /// Whether both ends report the edge a–b.
    pub fn edge_established(&self, a: &str, b: &str) -> bool {
        let has = |x: &str, y: &str| {
            self.topo
                .get(x)
                .is_some_and(|e| e.edges.iter().any(|c| c.name == y))
        };
        has(a, b) && has(b, a)
    }

    /// What this peer believes: reachable peers and the established edges among them
    /// (each edge once, smaller name first).
    pub fn view(&mut self) -> (Vec<String>, Vec<(String, String)>) {
        let peers = self.topo.reachable().to_vec();
        (peers, self.topo.edges())
    }

    /// Next hop toward each reachable peer.
    pub fn routes(&mut self) -> Vec<(String, String)> {
        self.topo.routes()
    }

    /// Our children in the broadcast tree rooted at `origin`.
    pub fn broadcast_children(&mut self, origin: &str) -> Option<Vec<String>> {
        self.topo.broadcast_children(origin)
    }

    /// The topology as the cores on the mesh take it ([`crate::app::TopologyView`]).
    pub fn topology_view(&mut self) -> crate::app::TopologyView {
        let direct: Vec<(String, std::net::SocketAddr)> = self
            .conns
            .values()
            .map(|c| (c.peer.clone(), c.addr))
            .collect();
        crate::app::TopologyView::build(&mut self.topo, &self.cfg.name, &direct)
    }

    /// Directly connected peers.
    pub fn neighbours(&self) -> Vec<Neighbour> {
        self.conns
            .values()
            .map(|c| Neighbour {
                name: c.peer.clone(),
                addr: c.addr,
                outbound: c.outbound,
            })
            .collect()
    }

    /// A name conflict seen in gossip, if any.
    pub fn conflict(&self) -> Option<&str> {
        self.conflict.as_deref()
    }

    /// Connections for the status: established ones, dials, and recent failures.
    pub fn connection_status(&self, now: u64) -> Vec<ConnStatus> {
        let mut out = Vec::new();
        for c in self.conns.values() {
            out.push(ConnStatus {
                address: c.addr.to_string(),
                outbound: c.outbound,
                state: "established".into(),
                peer: Some(c.peer.clone()),
                nickname: self.topo.get(&c.peer).map(|e| e.nickname.clone()),
                info: String::new(),
            });
        }
        let connected: HashSet<&str> = self.conns.values().map(|c| c.peer.as_str()).collect();
        for (addr, t) in &self.targets {
            if t.peer.as_deref().is_some_and(|p| connected.contains(p)) {
                continue;
            }
            let (state, info) = match t.state {
                TargetState::Connecting { .. } => ("connecting", t.last_error.clone()),
                TargetState::Waiting { next_at } if !t.last_error.is_empty() => (
                    "failed",
                    format!(
                        "{}, retry in {} s",
                        t.last_error,
                        next_at.saturating_sub(now).div_ceil(1000)
                    ),
                ),
                TargetState::Waiting { .. } => ("pending", String::new()),
            };
            out.push(ConnStatus {
                address: addr.clone(),
                outbound: true,
                state: state.into(),
                peer: t.peer.clone(),
                nickname: None,
                info,
            });
        }
        for f in &self.failures {
            out.push(ConnStatus {
                address: f.addr.clone(),
                outbound: f.outbound,
                state: "failed".into(),
                peer: None,
                nickname: None,
                info: f.reason.clone(),
            });
        }
        if let Some(c) = &self.conflict {
            out.push(ConnStatus {
                address: String::new(),
                outbound: false,
                state: "failed".into(),
                peer: None,
                nickname: None,
                info: c.clone(),
            });
        }
        out
    }

    /// Targets for the status.
    pub fn target_status(&self) -> Vec<TargetStatus> {
        let connected: HashSet<&str> = self.conns.values().map(|c| c.peer.as_str()).collect();
        self.targets
            .iter()
            .map(|(addr, t)| TargetStatus {
                address: addr.clone(),
                explicit: t.explicit,
                state: if t.peer.as_deref().is_some_and(|p| connected.contains(p)) {
                    "connected"
                } else if matches!(t.state, TargetState::Connecting { .. }) {
                    "connecting"
                } else {
                    "waiting"
                }
                .into(),
                last_error: t.last_error.clone(),
                peer: t.peer.clone(),
            })
            .collect()
    }
}
