//! The sans-IO core: from the API's node list and the router's view of the mesh, which
//! addresses to dial and which departed peers' address space to reclaim (the `rmpeer` Weave
//! users had to run by hand).
//!
//! A router in Kubernetes mode is named after its node ([`peer_name_for_node`]), so every
//! router maps nodes to peers the same way without writing anything to the API. A peer's
//! space is reclaimed only when all of these hold:
//! - its node was seen in the API by this router (so a peer that never was a node, such as
//!   a host joined by hand, is never touched), and is now absent from the list (a node that
//!   is NotReady, or whose deletion has only begun, still counts as present);
//! - it is not this router, it is not reachable in the mesh, and it still owns space;
//! - both have held for `reclaim_after` without a break;
//! - this router is the reclaimer: the lowest-named peer among the listed nodes whose
//!   routers this one reaches, and those are more than half of the listed nodes. Two sides
//!   of a partition cannot both hold a majority, so at most one router reclaims a peer.

use std::collections::{BTreeMap, BTreeSet};

use crate::nodes::NodeList;

/// The longest peer name weft takes (crates/router's identity rules).
pub const MAX_PEER_NAME: usize = 64;
/// At most this many node names are remembered as seen (the persisted set stays small).
pub const MAX_SEEN: usize = 20_000;

/// The peer name of the router on node `node`: the node name itself when it is a valid peer
/// name (node names are DNS names, so this holds up to 64 characters), else its first 47
/// characters, `-` and 16 hex digits of its SHA-256, so that two long names never meet.
pub fn peer_name_for_node(node: &str) -> String {
    let valid = |c: char| c.is_ascii_alphanumeric() || ":._-".contains(c);
    if !node.is_empty() && node.len() <= MAX_PEER_NAME && node.chars().all(valid) {
        return node.to_string();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, node.as_bytes());
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let head: String = node
        .chars()
        .map(|c| if valid(c) { c } else { '_' })
        .take(47)
        .collect();
    format!("{head}-{hex}")
}

/// The core's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// The node this router runs on.
    pub node: String,
    /// The control port routers listen on (the port of every dialled address).
    pub port: u16,
    /// How long (ms) a peer must be gone from the API and the mesh before its space is taken.
    pub reclaim_after: u64,
    /// Targets given at launch: never forgotten by this core.
    pub fixed_targets: BTreeSet<String>,
}

/// What the router knows of the mesh when a node list arrives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshView {
    /// Names of the peers reachable in the mesh (this one counts as reachable).
    pub reachable: BTreeSet<String>,
    /// Names of the peers that own address space in the IPAM ring; `None` while the ring is
    /// not known yet (then nothing is reclaimed nor forgotten).
    pub space_owners: Option<BTreeSet<String>>,
}

/// What to do after a node list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    /// Targets (`host:port`) to start dialling.
    pub connect: Vec<String>,
    /// Targets to stop dialling (nodes that left the list).
    pub forget: Vec<String>,
    /// Peers whose space to take over now, with `rmpeer`.
    pub reclaim: Vec<String>,
    /// Whether the set of seen nodes changed (the caller persists [`Core::seen`]).
    pub seen_changed: bool,
    /// Why nothing is reclaimed although peers are waiting, if so (for the log and status).
    pub held: Option<String>,
}

/// The outcome of a reclaim the caller carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReclaimOutcome {
    /// The space was taken (or another router had taken it already): done.
    Done,
    /// The peer turned out to be reachable: start its wait again.
    Reachable,
    /// Anything else: try again after the next list.
    Failed,
}

/// The Kubernetes peers core (see the module's documentation for the rules).
#[derive(Debug, Clone)]
pub struct Core {
    cfg: CoreConfig,
    me: String,
    /// Targets this core asked to dial.
    dialled: BTreeSet<String>,
    /// Peer names of nodes seen in the API (persisted by the caller).
    seen: BTreeSet<String>,
    /// Candidates for reclaim and since when (ms) they have been gone.
    gone_since: BTreeMap<String, u64>,
    /// Reclaims handed out and not yet reported.
    in_flight: BTreeSet<String>,
}

impl Core {
    /// A core for `cfg`, with the seen nodes an earlier run persisted.
    pub fn new(cfg: CoreConfig, seen: BTreeSet<String>) -> Core {
        let me = peer_name_for_node(&cfg.node);
        Core {
            cfg,
            me,
            dialled: BTreeSet::new(),
            seen,
            gone_since: BTreeMap::new(),
            in_flight: BTreeSet::new(),
        }
    }

    /// This router's peer name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Peer names of the nodes seen in the API and not yet reclaimed or forgotten.
    pub fn seen(&self) -> &BTreeSet<String> {
        &self.seen
    }

    /// Peers waiting to be reclaimed, with since when (ms) they have been gone.
    pub fn waiting(&self) -> &BTreeMap<String, u64> {
        &self.gone_since
    }

    /// A new node list at `now` (ms): the targets to change and the peers to reclaim.
    pub fn nodes(&mut self, now: u64, list: &NodeList, view: &MeshView) -> Decisions {
        let mut d = Decisions::default();
        self.targets(list, &mut d);

        let listed: BTreeSet<String> = list
            .nodes
            .iter()
            .map(|n| peer_name_for_node(&n.name))
            .collect();
        for p in &listed {
            if self.seen.len() < MAX_SEEN && self.seen.insert(p.clone()) {
                d.seen_changed = true;
            }
        }
        let Some(owners) = &view.space_owners else {
            return d;
        };
        let reachable = |p: &str| p == self.me || view.reachable.contains(p);
        // A seen peer that is gone and owns nothing needs no reclaim: forget it.
        let before = self.seen.len();
        self.seen
            .retain(|p| listed.contains(p) || owners.contains(p));
        d.seen_changed |= self.seen.len() != before;

        let candidates: BTreeSet<String> = self
            .seen
            .iter()
            .filter(|p| !listed.contains(*p) && !reachable(p) && owners.contains(*p))
            .cloned()
            .collect();
        self.gone_since.retain(|p, _| candidates.contains(p));
        for p in &candidates {
            self.gone_since.entry(p.clone()).or_insert(now);
        }
        if self.gone_since.is_empty() {
            return d;
        }
        if let Err(why) = self.reclaimer(list, view) {
            d.held = Some(why);
            return d;
        }
        for (p, since) in &self.gone_since {
            if now.saturating_sub(*since) >= self.cfg.reclaim_after && !self.in_flight.contains(p) {
                d.reclaim.push(p.clone());
            }
        }
        self.in_flight.extend(d.reclaim.iter().cloned());
        d
    }

    /// The caller carried out the reclaim of `peer` at `now` (ms).
    pub fn reclaimed(&mut self, now: u64, peer: &str, outcome: ReclaimOutcome) {
        self.in_flight.remove(peer);
        match outcome {
            ReclaimOutcome::Done => {
                self.gone_since.remove(peer);
                self.seen.remove(peer);
            }
            ReclaimOutcome::Reachable => {
                self.gone_since.insert(peer.to_string(), now);
            }
            ReclaimOutcome::Failed => {}
        }
    }

    /// Dial every listed node but this one; stop dialling those that left.
    fn targets(&mut self, list: &NodeList, d: &mut Decisions) {
        let want: BTreeSet<String> = list
            .nodes
            .iter()
            .filter(|n| n.name != self.cfg.node && !n.deleting)
            .filter_map(|n| n.dial_addr())
            .map(|ip| match ip {
                std::net::IpAddr::V4(a) => format!("{a}:{}", self.cfg.port),
                std::net::IpAddr::V6(a) => format!("[{a}]:{}", self.cfg.port),
            })
            .collect();
        d.connect = want.difference(&self.dialled).cloned().collect();
        d.forget = self
            .dialled
            .difference(&want)
            .filter(|t| !self.cfg.fixed_targets.contains(*t))
            .cloned()
            .collect();
        self.dialled = want;
    }

    /// Ok when this router is the one that reclaims; else why not.
    fn reclaimer(&self, list: &NodeList, view: &MeshView) -> Result<(), String> {
        if list.get(&self.cfg.node).is_none() {
            return Err(format!(
                "this node ({}) is not in the API's node list; check --kube-node (NODE_NAME)",
                self.cfg.node
            ));
        }
        let voters: Vec<String> = list
            .nodes
            .iter()
            .filter(|n| !n.deleting)
            .map(|n| peer_name_for_node(&n.name))
            .collect();
        let present: Vec<&String> = voters
            .iter()
            .filter(|p| **p == self.me || view.reachable.contains(*p))
            .collect();
        if present.len() * 2 <= voters.len() {
            return Err(format!(
                "this router reaches {} of the {} listed nodes' routers, not a majority",
                present.len(),
                voters.len()
            ));
        }
        match present.iter().min() {
            Some(lowest) if **lowest == self.me => Ok(()),
            Some(lowest) => Err(format!("{lowest} reclaims (the lowest-named live node)")),
            None => Err("no live node".to_string()),
        }
    }
}
