//! The topology: every peer's latest entry, which peers are reachable over established
//! edges (both ends report the connection), unicast next hops and broadcast trees.

use std::collections::{BTreeMap, HashMap};

use crate::wire::PeerEntry;

/// Entries by peer name plus the routes computed from them.
#[derive(Debug, Default)]
pub struct Topology {
    /// Latest entry of each known peer (reachable or not).
    entries: BTreeMap<String, PeerEntry>,
    own: String,
    /// Established edges changed: routes and trees must be recomputed.
    dirty: bool,
    /// A version changed: the digest must be recomputed.
    digest_dirty: bool,
    /// Bumped whenever the reachable set changes, so callers can skip comparing it.
    reach_gen: u64,
    /// Reachable peers, sorted; indices below refer to this list (found by binary search).
    reachable: Vec<String>,
    /// Established neighbours of each reachable peer (indices, sorted by name).
    adjacency: Vec<Vec<usize>>,
    /// Next hop (index) from us to each reachable peer; None for ourselves.
    next_hop: Vec<Option<usize>>,
    /// Cache of our children in the broadcast tree rooted at each origin.
    children: HashMap<usize, Vec<String>>,
    digest: (u64, u32),
}

impl Topology {
    /// A topology that holds only our own entry.
    pub fn new(own: PeerEntry) -> Self {
        let mut t = Topology {
            own: own.name.clone(),
            dirty: true,
            digest_dirty: true,
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
        let name = self.own.clone();
        self.store(name, Some(e));
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
        self.store(e.name.clone(), Some(e));
        true
    }

    /// Drops a (non-own) entry.
    pub fn remove(&mut self, name: &str) {
        if name != self.own && self.entries.contains_key(name) {
            self.store(name.to_string(), None);
        }
    }

    /// Replaces (or with None drops) an entry. Routes are only recomputed when an
    /// established edge appeared or vanished: most gossip is the first end of a new
    /// connection reporting it, or a version bump, and recomputing on each was O(N) per
    /// message.
    fn store(&mut self, name: String, e: Option<PeerEntry>) {
        let old = match e {
            Some(e) => self.entries.insert(name.clone(), e),
            None => self.entries.remove(&name),
        };
        self.digest_dirty = true;
        if !self.dirty && self.established_changed(&name, old.as_ref()) {
            self.dirty = true;
        }
    }

    /// Whether replacing `old` by the current entry of `name` changed an edge that both
    /// ends report.
    fn established_changed(&self, name: &str, old: Option<&PeerEntry>) -> bool {
        let before = edge_names(old);
        let after = edge_names(self.entries.get(name));
        let in_one = |a: &[&str], b: &[&str]| -> Vec<String> {
            a.iter()
                .filter(|x| b.binary_search(x).is_err())
                .map(|x| x.to_string())
                .collect()
        };
        let mut diff = in_one(&before, &after);
        diff.extend(in_one(&after, &before));
        diff.iter().any(|y| {
            y == name
                || self
                    .entries
                    .get(y)
                    .is_some_and(|ye| ye.edges.iter().any(|x| x.name == name))
        })
    }

    fn refresh(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.children.clear();
        // Work on indices into the (sorted) entry list: names are compared once.
        let names: Vec<&str> = self.entries.keys().map(String::as_str).collect();
        // Names are sorted (BTreeMap order): look them up by binary search.
        let find = |name: &str| names.binary_search(&name).ok();
        let reported: Vec<Vec<usize>> = self
            .entries
            .values()
            .map(|e| {
                let mut v: Vec<usize> = e
                    .edges
                    .iter()
                    .filter_map(|x| find(x.name.as_str()))
                    .collect();
                v.sort_unstable();
                v.dedup();
                v
            })
            .collect();
        // An edge counts when both ends report it.
        let n = names.len();
        let Some(own) = find(self.own.as_str()) else {
            return;
        };
        let mut hop: Vec<Option<Option<usize>>> = vec![None; n];
        hop[own] = Some(None);
        let mut order = vec![own];
        let mut adj_all: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut head = 0;
        while head < order.len() {
            let p = order[head];
            head += 1;
            let nbrs: Vec<usize> = reported[p]
                .iter()
                .copied()
                .filter(|&q| reported[q].binary_search(&p).is_ok())
                .collect();
            for &q in &nbrs {
                if hop[q].is_none() {
                    let h = if p == own {
                        q
                    } else {
                        hop[p].flatten().unwrap_or(q)
                    };
                    hop[q] = Some(Some(h));
                    order.push(q);
                }
            }
            adj_all[p] = nbrs;
        }
        // Renumber the reachable peers in name order.
        let mut members: Vec<usize> = order.clone();
        members.sort_unstable();
        let mut renum = vec![usize::MAX; n];
        for (k, &i) in members.iter().enumerate() {
            renum[i] = k;
        }
        let reachable: Vec<String> = members.iter().map(|&i| names[i].to_string()).collect();
        if reachable != self.reachable {
            self.reach_gen += 1;
        }
        self.reachable = reachable;
        self.adjacency = members
            .iter()
            .map(|&i| adj_all[i].iter().map(|&q| renum[q]).collect())
            .collect();
        self.next_hop = members
            .iter()
            .map(|&i| hop[i].flatten().map(|h| renum[h]))
            .collect();
        self.digest_dirty = true;
    }

    fn pos(&self, name: &str) -> Option<usize> {
        self.reachable
            .binary_search_by(|x| x.as_str().cmp(name))
            .ok()
    }

    /// Reachable peers (us included), sorted by name.
    pub fn reachable(&mut self) -> &[String] {
        self.refresh();
        &self.reachable
    }

    /// Whether a peer is reachable from us.
    pub fn is_reachable(&mut self, name: &str) -> bool {
        self.refresh();
        self.pos(name).is_some()
    }

    /// Established neighbours of a reachable peer.
    pub fn neighbours(&mut self, name: &str) -> Vec<String> {
        self.refresh();
        match self.pos(name) {
            Some(i) => self.adjacency[i]
                .iter()
                .map(|&q| self.reachable[q].clone())
                .collect(),
            None => Vec::new(),
        }
    }

    /// The neighbour to send through to reach `dst`.
    pub fn next_hop(&mut self, dst: &str) -> Option<String> {
        self.refresh();
        let i = self.pos(dst)?;
        self.next_hop[i].map(|h| self.reachable[h].clone())
    }

    /// Every reachable peer's next hop.
    pub fn routes(&mut self) -> Vec<(String, String)> {
        self.refresh();
        self.next_hop
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.map(|h| (self.reachable[i].clone(), self.reachable[h].clone())))
            .collect()
    }

    /// Changes whenever the reachable set may have changed (equal values: it did not).
    pub fn reach_gen(&mut self) -> u64 {
        self.refresh();
        self.reach_gen
    }

    /// Hash and count over (name, version) of the reachable entries.
    pub fn digest(&mut self) -> (u64, u32) {
        self.refresh();
        if self.digest_dirty {
            self.digest_dirty = false;
            let mut h = Fnv::default();
            for name in &self.reachable {
                h.write(name.as_bytes());
                if let Some(e) = self.entries.get(name) {
                    h.write(&e.version.to_be_bytes());
                }
            }
            self.digest = (h.0, self.reachable.len() as u32);
        }
        self.digest
    }

    /// Our children in the breadth-first tree rooted at `origin` (ties broken by name, so
    /// every peer with the same view computes the same tree). None if `origin` is not
    /// reachable.
    pub fn broadcast_children(&mut self, origin: &str) -> Option<Vec<String>> {
        self.refresh();
        let root = self.pos(origin)?;
        if let Some(c) = self.children.get(&root) {
            return Some(c.clone());
        }
        let own = self.pos(&self.own)?;
        let n = self.reachable.len();
        let mut parent = vec![usize::MAX; n];
        parent[root] = root;
        let mut queue = std::collections::VecDeque::from([root]);
        while let Some(p) = queue.pop_front() {
            for &q in &self.adjacency[p] {
                if parent[q] == usize::MAX {
                    parent[q] = p;
                    queue.push_back(q);
                }
            }
            // Our neighbours' parents are final once we are processed.
            if p == own {
                break;
            }
        }
        let kids: Vec<String> = self.adjacency[own]
            .iter()
            .filter(|&&q| parent[q] == own && q != root)
            .map(|&q| self.reachable[q].clone())
            .collect();
        self.children.insert(root, kids.clone());
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

/// The names an entry reports edges to, sorted and deduplicated.
fn edge_names(e: Option<&PeerEntry>) -> Vec<&str> {
    let mut v: Vec<&str> = e
        .map(|e| e.edges.iter().map(|x| x.name.as_str()).collect())
        .unwrap_or_default();
    v.sort_unstable();
    v.dedup();
    v
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
