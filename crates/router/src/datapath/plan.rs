//! The data-path plan (sans-IO): from the mesh topology, what peers announced and the
//! heartbeat health of fastdp, decide per peer which path carries its traffic and what the
//! VXLAN FDB and the sleeve tables must hold. Time is an input (milliseconds).
//!
//! Rules:
//! - A directly connected peer uses fastdp when its heartbeats through the VXLAN device
//!   answer (and --no-fastdp is off); otherwise the sleeve, directly.
//! - A peer without a direct connection is reached through the sleeve, relayed by the
//!   mesh's next hop.
//! - Broadcasts follow one tree per origin (breadth first over the mesh, ties by name, so
//!   every peer computes the same tree). A direct child that must pass our broadcasts on
//!   gets them through the sleeve only (no VXLAN flood entry): each peer receives every
//!   broadcast exactly once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};

/// How long without a fastdp pong before the path counts as broken.
pub const FASTDP_DEAD_MS: u64 = 2000;
/// How long pongs must keep coming after a failure before fastdp is used again.
pub const FASTDP_HEAL_MS: u64 = 1500;

/// Heartbeat health of the fastdp path to one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    last_pong: Option<u64>,
    up_since: Option<u64>,
    failed_before: bool,
}

impl Health {
    /// A pong arrived at `now`.
    pub fn pong(&mut self, now: u64) {
        let fresh = self
            .last_pong
            .is_none_or(|t| now.saturating_sub(t) > FASTDP_DEAD_MS);
        if fresh {
            if self.last_pong.is_some() {
                self.failed_before = true;
            }
            self.up_since = Some(now);
        }
        self.last_pong = Some(now);
    }

    /// Whether fastdp works at `now`: a recent pong, and after a failure pongs for a while.
    pub fn ok(&self, now: u64) -> bool {
        let (Some(last), Some(since)) = (self.last_pong, self.up_since) else {
            return false;
        };
        now.saturating_sub(last) <= FASTDP_DEAD_MS
            && (!self.failed_before || now.saturating_sub(since) >= FASTDP_HEAL_MS)
    }
}

/// A reachable peer as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    /// Sleeve short id.
    pub id: u32,
    /// Its sleeve (= control) port.
    pub port: u16,
    /// Underlay address when directly connected (IPv4 only).
    pub direct: Option<Ipv4Addr>,
    /// Next hop when not directly connected.
    pub via: Option<String>,
    /// Announced bridge MAC and container MACs (None until its state arrived).
    pub announced: Option<(u64, Vec<[u8; 6]>)>,
    /// Its fastdp heartbeats answer.
    pub fastdp_ok: bool,
}

/// The path a peer's unicast traffic takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Kernel VXLAN to this underlay address.
    Fastdp(Ipv4Addr),
    /// Sleeve, straight to the peer.
    Sleeve(SocketAddr),
    /// Sleeve, relayed by this peer.
    Relay(String),
}

/// What the kernel and the sleeve must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Path per peer.
    pub modes: BTreeMap<String, Mode>,
    /// VXLAN unicast entries MAC → VTEP.
    pub vxlan_macs: BTreeMap<[u8; 6], Ipv4Addr>,
    /// VXLAN flood entries.
    pub vxlan_flood: BTreeSet<Ipv4Addr>,
    /// Sleeve peers: name → (id, underlay address if direct).
    pub sleeve_peers: BTreeMap<String, (u32, Option<SocketAddr>)>,
    /// Sleeve relay routes: destination id → next hop id.
    pub sleeve_routes: BTreeMap<u32, u32>,
    /// Sleeve MAC entries (peers not on fastdp).
    pub sleeve_macs: BTreeMap<[u8; 6], u32>,
    /// Sleeve broadcast routes: origin id → next hop ids.
    pub broadcast: BTreeMap<u32, Vec<u32>>,
}

/// Children of `me` in the breadth-first tree rooted at `origin` over `adj`.
pub fn tree_children(
    adj: &BTreeMap<String, BTreeSet<String>>,
    origin: &str,
    me: &str,
) -> Vec<String> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut q = VecDeque::new();
    seen.insert(origin);
    q.push_back(origin);
    while let Some(n) = q.pop_front() {
        if let Some(ns) = adj.get(n) {
            for m in ns {
                if seen.insert(m.as_str()) {
                    parent.insert(m.as_str(), n);
                    q.push_back(m.as_str());
                }
            }
        }
    }
    parent
        .iter()
        .filter(|(_, p)| **p == me)
        .map(|(c, _)| c.to_string())
        .collect()
}

/// Computes the plan for peer `me`. `adj` holds the mesh's established connections
/// (both directions), `peers` every other reachable peer.
pub fn plan(
    me: &str,
    me_id: u32,
    adj: &BTreeMap<String, BTreeSet<String>>,
    peers: &BTreeMap<String, PeerView>,
    no_fastdp: bool,
) -> Plan {
    let mut p = Plan::default();
    let own_children = tree_children(adj, me, me);
    // Direct children that pass our broadcasts on get them through the sleeve only.
    let relays: BTreeSet<String> = own_children
        .iter()
        .filter(|c| !tree_children(adj, me, c).is_empty())
        .cloned()
        .collect();
    for (name, v) in peers {
        let mode = match (v.direct, &v.via) {
            (Some(ip), _) if v.fastdp_ok && !no_fastdp => Mode::Fastdp(ip),
            (Some(ip), _) => Mode::Sleeve(SocketAddr::new(ip.into(), v.port)),
            (None, Some(hop)) if peers.get(hop).is_some_and(|h| h.direct.is_some()) => {
                Mode::Relay(hop.clone())
            }
            _ => continue,
        };
        let macs: &[[u8; 6]] = v
            .announced
            .as_ref()
            .map(|(_, m)| m.as_slice())
            .unwrap_or(&[]);
        let bmac = v.announced.as_ref().map(|(b, _)| *b);
        match &mode {
            Mode::Fastdp(ip) => {
                for m in macs {
                    p.vxlan_macs.insert(*m, *ip);
                }
                if !relays.contains(name) {
                    p.vxlan_flood.insert(*ip);
                }
                p.sleeve_peers.insert(
                    name.clone(),
                    (v.id, Some(SocketAddr::new((*ip).into(), v.port))),
                );
            }
            Mode::Sleeve(addr) => {
                p.sleeve_peers.insert(name.clone(), (v.id, Some(*addr)));
                for m in macs {
                    p.sleeve_macs.insert(*m, v.id);
                }
            }
            Mode::Relay(hop) => {
                p.sleeve_peers.insert(name.clone(), (v.id, None));
                if let Some(h) = peers.get(hop) {
                    p.sleeve_routes.insert(v.id, h.id);
                }
                for m in macs {
                    p.sleeve_macs.insert(*m, v.id);
                }
            }
        }
        // Heartbeats (and the exposed host) go to the bridge MAC on every direct peer.
        if let (Some(ip), Some(b)) = (v.direct, bmac) {
            p.vxlan_macs.insert(mac_of(b), ip);
            if !matches!(mode, Mode::Fastdp(_)) {
                p.sleeve_macs.insert(mac_of(b), v.id);
            }
        }
        p.modes.insert(name.clone(), mode);
    }
    let id_of = |n: &str| peers.get(n).map(|v| v.id);
    // Our own broadcasts: through the sleeve to every child not reached by a flood entry.
    let own: Vec<u32> = own_children
        .iter()
        .filter(|c| !matches!(p.modes.get(*c), Some(Mode::Fastdp(_))) || relays.contains(*c))
        .filter(|c| p.sleeve_peers.get(*c).is_some_and(|(_, a)| a.is_some()))
        .filter_map(|c| id_of(c))
        .collect();
    p.broadcast.insert(me_id, own);
    // Others' broadcasts: passed on to our children in their tree.
    for (name, v) in peers {
        let kids: Vec<u32> = tree_children(adj, name, me)
            .iter()
            .filter(|c| p.sleeve_peers.get(*c).is_some_and(|(_, a)| a.is_some()))
            .filter_map(|c| id_of(c))
            .collect();
        p.broadcast.insert(v.id, kids);
    }
    p
}

fn mac_of(packed: u64) -> [u8; 6] {
    let b = packed.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// Packs a MAC into a u64 (for [`PeerView::announced`]).
pub fn pack_mac(m: &[u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adj(edges: &[(&str, &str)]) -> BTreeMap<String, BTreeSet<String>> {
        let mut a: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (x, y) in edges {
            a.entry(x.to_string()).or_default().insert(y.to_string());
            a.entry(y.to_string()).or_default().insert(x.to_string());
        }
        a
    }

    fn view(id: u32, direct: Option<u8>, via: Option<&str>, ok: bool) -> PeerView {
        PeerView {
            id,
            port: 6783,
            direct: direct.map(|i| Ipv4Addr::new(10, 0, 0, i)),
            via: via.map(String::from),
            announced: Some((
                pack_mac(&[2, 0, 0, 0, 0, id as u8]),
                vec![[2, 1, 0, 0, 0, id as u8]],
            )),
            fastdp_ok: ok,
        }
    }

    #[test]
    fn health_fails_and_heals_with_hysteresis() {
        let mut h = Health::default();
        assert!(!h.ok(0));
        h.pong(100);
        assert!(h.ok(100), "the first pong is enough");
        assert!(h.ok(100 + FASTDP_DEAD_MS));
        assert!(!h.ok(101 + FASTDP_DEAD_MS));
        h.pong(10_000);
        assert!(!h.ok(10_000), "after a failure, wait for stable pongs");
        h.pong(10_000 + FASTDP_HEAL_MS);
        assert!(h.ok(10_000 + FASTDP_HEAL_MS));
    }

    #[test]
    fn full_mesh_uses_fastdp_and_floods_by_vxlan_only() {
        let a = adj(&[("a", "b"), ("a", "c"), ("b", "c")]);
        let mut peers = BTreeMap::new();
        peers.insert("b".to_string(), view(2, Some(2), None, true));
        peers.insert("c".to_string(), view(3, Some(3), None, false));
        let p = plan("a", 1, &a, &peers, false);
        assert_eq!(p.modes["b"], Mode::Fastdp(Ipv4Addr::new(10, 0, 0, 2)));
        assert!(matches!(p.modes["c"], Mode::Sleeve(_)));
        assert_eq!(p.vxlan_flood, [Ipv4Addr::new(10, 0, 0, 2)].into());
        // c's container MAC is on the sleeve, b's on VXLAN; both bridge MACs on VXLAN.
        assert_eq!(p.sleeve_macs.get(&[2, 1, 0, 0, 0, 3]), Some(&3));
        assert_eq!(
            p.vxlan_macs.get(&[2, 1, 0, 0, 0, 2]),
            Some(&Ipv4Addr::new(10, 0, 0, 2))
        );
        assert_eq!(
            p.vxlan_macs.get(&[2, 0, 0, 0, 0, 3]),
            Some(&Ipv4Addr::new(10, 0, 0, 3))
        );
        assert_eq!(p.broadcast[&1], vec![3]);
        assert!(p.broadcast[&2].is_empty());
        // --no-fastdp: everything on the sleeve.
        let p = plan("a", 1, &a, &peers, true);
        assert!(p.vxlan_flood.is_empty());
        assert_eq!(p.broadcast[&1], vec![2, 3]);
    }

    #[test]
    fn line_topology_relays_through_the_middle() {
        let a = adj(&[("a", "b"), ("b", "c")]);
        let mut peers = BTreeMap::new();
        peers.insert("b".to_string(), view(2, Some(2), None, true));
        peers.insert("c".to_string(), view(3, None, Some("b"), false));
        let p = plan("a", 1, &a, &peers, false);
        assert_eq!(p.modes["c"], Mode::Relay("b".into()));
        assert_eq!(p.sleeve_routes[&3], 2);
        // b passes our broadcasts on: no flood entry, our broadcasts go to b by sleeve.
        assert!(p.vxlan_flood.is_empty());
        assert_eq!(p.broadcast[&1], vec![2]);
        // Unicast to b still goes by VXLAN.
        assert_eq!(p.modes["b"], Mode::Fastdp(Ipv4Addr::new(10, 0, 0, 2)));
        // In the middle: a's broadcasts go on to c and c's to a, through the sleeve.
        let mut peers = BTreeMap::new();
        peers.insert("a".to_string(), view(1, Some(1), None, true));
        peers.insert("c".to_string(), view(3, Some(3), None, true));
        let p = plan("b", 2, &a, &peers, false);
        assert_eq!(p.broadcast[&1], vec![3]);
        assert_eq!(p.broadcast[&3], vec![1]);
        assert!(p.broadcast[&2].is_empty());
        assert_eq!(p.vxlan_flood.len(), 2);
    }
}
