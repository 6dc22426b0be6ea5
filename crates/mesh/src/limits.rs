//! Bounds on what a peer may make us hold, against a hostile or broken peer. A peer that
//! exceeds one is refused and disconnected with the bound in the reason; the mesh goes on.

use crate::wire::PeerEntry;

/// Most peers the topology holds (Weave's meshes are hundreds; this is far above).
pub const MAX_PEERS: usize = 10_000;
/// Most edges (connections) one peer's entry may list.
pub const MAX_EDGES: usize = 2_048;
/// Longest peer name, nickname or edge address, in bytes.
pub const MAX_NAME: usize = 255;

/// Checks gossip from a peer against the bounds; `known` says whether a name is already in
/// the topology (an update does not grow it), `peers` is its size.
pub fn check_gossip(
    entries: &[PeerEntry],
    peers: usize,
    known: impl Fn(&str) -> bool,
) -> Result<(), String> {
    let mut new = 0usize;
    for e in entries {
        if e.name.len() > MAX_NAME || e.nickname.len() > MAX_NAME {
            return Err(format!(
                "gossip entry with a name or nickname over {MAX_NAME} bytes"
            ));
        }
        if e.edges.len() > MAX_EDGES {
            return Err(format!(
                "gossip entry of {} with {} edges (at most {MAX_EDGES})",
                e.name,
                e.edges.len()
            ));
        }
        if e.edges
            .iter()
            .any(|x| x.name.len() > MAX_NAME || x.addr.len() > MAX_NAME)
        {
            return Err(format!(
                "gossip entry of {} with an edge name or address over {MAX_NAME} bytes",
                e.name
            ));
        }
        if !known(&e.name) {
            new += 1;
        }
    }
    if peers.saturating_add(new) > MAX_PEERS {
        return Err(format!(
            "gossip would grow the topology past {MAX_PEERS} peers"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::EdgeInfo;

    fn entry(name: &str, edges: usize) -> PeerEntry {
        PeerEntry {
            name: name.into(),
            nickname: "n".into(),
            uid: 1,
            version: 1,
            listen_port: 6783,
            edges: (0..edges)
                .map(|i| EdgeInfo {
                    name: format!("p{i}"),
                    addr: "10.0.0.1:6783".into(),
                    outbound: true,
                })
                .collect(),
        }
    }

    #[test]
    fn bounds_on_edges_names_and_peers() {
        assert!(check_gossip(&[entry("a", 3)], 10, |_| false).is_ok());
        let err = check_gossip(&[entry("a", MAX_EDGES + 1)], 10, |_| false).unwrap_err();
        assert!(err.contains("edges"), "{err}");
        let long = "x".repeat(MAX_NAME + 1);
        assert!(check_gossip(&[entry(&long, 0)], 10, |_| false).is_err());
        let err =
            check_gossip(&[entry("a", 0), entry("b", 0)], MAX_PEERS - 1, |_| false).unwrap_err();
        assert!(err.contains("topology"), "{err}");
        // Updates of known peers do not count against the peer bound.
        assert!(check_gossip(&[entry("a", 0)], MAX_PEERS, |n| n == "a").is_ok());
    }
}
