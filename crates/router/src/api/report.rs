//! `weft report`: the whole state of the router as one [`Report`], from its handles.

use weft_api::{
    ConnectionReport, PeerConnectionReport, PeerReport, Report, RouterReport, TargetReport,
};

use super::app::Handles;

/// The whole state as `weft report` shows it.
pub fn report(h: &Handles) -> Report {
    let c = &h.config;
    let (peers, connections, targets) = mesh_report(h);
    Report {
        version: weft_api::VERSION.to_string(),
        router: RouterReport {
            name: h.name.clone(),
            nickname: c.nickname.clone(),
            port: c.port,
            protocol_min_version: weft_mesh::wire::PROTOCOL_MIN,
            protocol_max_version: weft_mesh::wire::PROTOCOL_MAX,
            encryption: c.password.is_some(),
            peer_discovery: !c.no_discovery,
            trusted_subnets: c.trusted_subnets.iter().map(|s| s.to_string()).collect(),
            conn_limit: c.conn_limit,
            mtu: c.mtu,
            peers,
            connections,
            targets,
        },
        ipam: h.containers.ipam.report(),
        dns: h.containers.dns.report(),
        docker: h.docker.as_ref().map(|d| d.report(&c.paths)),
        // Filled in by the handler (the services task is asked).
        services: Vec::new(),
    }
}

/// The router report's peers, connections and targets, from the mesh snapshot.
fn mesh_report(h: &Handles) -> (Vec<PeerReport>, Vec<ConnectionReport>, Vec<TargetReport>) {
    let snap = h.mesh.snapshot();
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
                .and_then(|p| h.containers.datapath.path_of(p));
            ConnectionReport {
                address: c.address.clone(),
                outbound: c.outbound,
                state: c.state.clone(),
                path: path.as_ref().map(|p| p.path.clone()).unwrap_or_default(),
                encrypted: path.as_ref().is_some_and(|p| p.cipher.is_some()),
                cipher: path
                    .as_ref()
                    .and_then(|p| p.cipher)
                    .map(|c| c.name().to_string()),
                peer: match (&c.peer, &c.nickname) {
                    (Some(p), Some(n)) => format!("{p}({n})"),
                    (Some(p), None) => p.clone(),
                    _ => String::new(),
                },
                mtu: path.as_ref().map(|p| p.mtu),
                pmtu: path.and_then(|p| p.pmtu),
                info: c.info.clone(),
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
