//! The topology: every peer's latest entry, which peers are reachable over established
//! edges (both ends report the connection), unicast next hops and broadcast trees.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::wire::PeerEntry;

/// Entries by peer name plus the routes computed from them.
#[derive(Debug, Default)]
pub struct Topology {
    /// Latest entry of each known peer (reachable or not).
    entries: BTreeMap<String, PeerEntry>,
    own: String,
    dirty: bool,
    /// Established neighbours of each reachable peer, sorted.
    adjacency: HashMap<String, Vec<String>>,
    /// Next hop from us to each reachable peer (ourselves excluded).
    next_hop: HashMap<String, String>,
    /// Reachable peers, sorted.
    reachable: Vec<String>,
    /// Cache of our children in the broadcast tree rooted at each origin.
    children: HashMap<String, Vec<String>>,
    digest: (u64, u32),
}

impl Topology {
    /// A topology that holds only our own entry.
    pub fn new(own: PeerEntry) -> Self {
        let mut t = Topology {
            own: own.name.clone(),
            dirty: true,
            ..Default::default()
        };
        t.entries.insert(own.name.clone(), own);
        t
    }

    /// Our own entry.
    pub fn own(&self) -> &PeerEntry {
        &self.entries[&self.own]
    }

    /// Replaces our own entry.
    pub fn set_own(&mut self, e: PeerEntry) {
        self.entries.insert(self.own.clone(), e);
        self.dirty = true;
    }

    /// The entry of a peer, if known.
    pub fn get(&self, name: &str) -> Option<&PeerEntry> {
        self.entries.get(name)
    }

    /// Every stored entry, reachable or not.
    pub fn all(&self) -> impl Iterator<Item = &PeerEntry> {
        self.entries.values()
    }

    /// Stores an entry if it is newer than what we hold; true if it was.
    pub fn merge(&mut self, e: PeerEntry) -> bool {
        if let Some(old) = self.entries.get(&e.name) {
            if (old.version, old.uid) >= (e.version, e.uid) {
                return false;
            }
        }
        self.entries.insert(e.name.clone(), e);
        self.dirty = true;
        true
    }

    /// Drops a (non-own) entry.
    pub fn remove(&mut self, name: &str) {
        if name != self.own && self.entries.remove(name).is_some() {
            self.dirty = true;
        }
    }

    fn refresh(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.children.clear();
        self.adjacency.clear();
        self.next_hop.clear();
        // An edge counts when both ends report it.
        let established = |a: &PeerEntry, b: &str| -> bool {
            self.entries
                .get(b)
                .is_some_and(|eb| eb.edges.iter().any(|x| x.name == a.name))
        };
        let mut adjacency: HashMap<String, Vec<String>> = HashMap::new();
        let mut queue = VecDeque::from([self.own.clone()]);
        let mut seen: HashMap<String, Option<String>> = HashMap::from([(self.own.clone(), None)]);
        while let Some(p) = queue.pop_front() {
            let Some(e) = self.entries.get(&p) else {
                continue;
            };
            let mut nbrs: Vec<String> = e
                .edges
                .iter()
                .filter(|x| established(e, &x.name))
                .map(|x| x.name.clone())
                .collect();
            nbrs.sort();
            nbrs.dedup();
            let hop = seen.get(&p).cloned().flatten();
            for n in &nbrs {
                if !seen.contains_key(n) {
                    // The first hop toward n is n itself for our neighbours, else inherited.
                    let h = if p == self.own {
                        n.clone()
                    } else {
                        hop.clone().unwrap_or_default()
                    };
                    seen.insert(n.clone(), Some(h));
                    queue.push_back(n.clone());
                }
            }
            adjacency.insert(p, nbrs);
        }
        for (p, hop) in seen {
            if let Some(h) = hop {
                self.next_hop.insert(p, h);
            }
        }
        let mut reachable: Vec<String> = adjacency.keys().cloned().collect();
        reachable.sort();
        self.reachable = reachable;
        self.adjacency = adjacency;
        let mut h = Fnv::default();
        for name in &self.reachable {
            h.write(name.as_bytes());
            h.write(&self.entries[name].version.to_be_bytes());
        }
        self.digest = (h.0, self.reachable.len() as u32);
    }

    /// Reachable peers (us included), sorted by name.
    pub fn reachable(&mut self) -> &[String] {
        self.refresh();
        &self.reachable
    }

    /// Whether a peer is reachable from us.
    pub fn is_reachable(&mut self, name: &str) -> bool {
        self.refresh();
        self.adjacency.contains_key(name)
    }

    /// Established neighbours of a reachable peer.
    pub fn neighbours(&mut self, name: &str) -> Vec<String> {
        self.refresh();
        self.adjacency.get(name).cloned().unwrap_or_default()
    }

    /// The neighbour to send through to reach `dst`.
    pub fn next_hop(&mut self, dst: &str) -> Option<String> {
        self.refresh();
        self.next_hop.get(dst).cloned()
    }

    /// Every reachable peer's next hop.
    pub fn routes(&mut self) -> Vec<(String, String)> {
        self.refresh();
        let mut v: Vec<_> = self
            .next_hop
            .iter()
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect();
        v.sort();
        v
    }

    /// Hash and count over (name, version) of the reachable entries.
    pub fn digest(&mut self) -> (u64, u32) {
        self.refresh();
        self.digest
    }

    /// Our children in the breadth-first tree rooted at `origin` (ties broken by name, so
    /// every peer with the same view computes the same tree). None if `origin` is not
    /// reachable.
    pub fn broadcast_children(&mut self, origin: &str) -> Option<Vec<String>> {
        self.refresh();
        if !self.adjacency.contains_key(origin) {
            return None;
        }
        if let Some(c) = self.children.get(origin) {
            return Some(c.clone());
        }
        let mut parent: HashMap<&str, &str> = HashMap::new();
        let mut queue = VecDeque::from([origin]);
        parent.insert(origin, "");
        while let Some(p) = queue.pop_front() {
            for n in self.adjacency.get(p).into_iter().flatten() {
                if !parent.contains_key(n.as_str()) {
                    parent.insert(n, p);
                    queue.push_back(n);
                }
            }
        }
        let own = self.own.as_str();
        let kids: Vec<String> = self
            .adjacency
            .get(own)
            .into_iter()
            .flatten()
            .filter(|n| parent.get(n.as_str()) == Some(&own))
            .cloned()
            .collect();
        self.children.insert(origin.to_string(), kids.clone());
        Some(kids)
    }

    /// Every reachable peer's entry, sorted by name.
    pub fn reachable_entries(&mut self) -> Vec<PeerEntry> {
        self.refresh();
        self.reachable
            .iter()
            .filter_map(|n| self.entries.get(n).cloned())
            .collect()
    }
}

/// FNV-1a, 64 bit: a stable hash for digests (the same on every peer and build).
#[derive(Debug)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, b: &[u8]) {
        for x in b {
            self.0 ^= *x as u64;
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
        // A separator so that ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x100_0000_01b3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::EdgeInfo;

    fn entry(name: &str, v: u64, edges: &[&str]) -> PeerEntry {
        PeerEntry {
            name: name.into(),
            nickname: name.into(),
            uid: 0,
            version: v,
            listen_port: 6783,
            edges: edges
                .iter()
                .map(|n| EdgeInfo {
                    name: n.to_string(),
                    addr: String::new(),
                    outbound: true,
                })
                .collect(),
        }
    }

    #[test]
    fn routes_follow_established_edges_only() {
        // a - b - c, and a -> d reported by a only.
        let mut t = Topology::new(entry("a", 1, &["b", "d"]));
        t.merge(entry("b", 1, &["a", "c"]));
        t.merge(entry("c", 1, &["b"]));
        t.merge(entry("d", 1, &[]));
        assert_eq!(t.reachable(), &["a", "b", "c"]);
        assert_eq!(t.next_hop("c").as_deref(), Some("b"));
        assert_eq!(t.next_hop("d"), None);
        assert_eq!(t.broadcast_children("a").unwrap(), vec!["b"]);
        assert_eq!(t.broadcast_children("c").unwrap(), Vec::<String>::new());
        assert!(!t.merge(entry("b", 1, &[])), "same version is not newer");
        assert!(t.merge(entry("b", 2, &["a"])));
        assert_eq!(t.reachable(), &["a", "b"]);
    }
}
