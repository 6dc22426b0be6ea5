//! The topology: every peer's latest entry, which peers are reachable over established
//! edges (both ends report the connection), unicast next hops and broadcast trees.

use std::collections::{BTreeMap, HashMap};

use crate::wire::PeerEntry;

/// Entries by peer name plus the routes computed from them.
///
/// Derived state lives in integer slots (one per peer with an entry) and the established
/// adjacency is kept up to date as entries change, so a route recomputation is one
/// breadth-first search over integers instead of re-reading every entry's edge names.
#[derive(Debug, Default)]
pub struct Topology {
    /// Latest entry of each known peer (reachable or not).
    entries: BTreeMap<String, PeerEntry>,
    own: String,
    /// Established edges changed: routes and trees must be recomputed.
    dirty: bool,
    /// A version changed: the digest must be recomputed.
    digest_dirty: bool,
    /// Bumped whenever the reachable set may have changed, so callers can skip comparing it.
    reach_gen: u64,
    /// Slot of each peer that has an entry.
    slot_of: HashMap<String, usize>,
    /// Name held by each slot (empty when free).
    slot_name: Vec<String>,
    /// Free slots, reused by new names.
    free: Vec<usize>,
    /// Established neighbours of each slot (both ends report the edge), sorted by name.
    adj: Vec<Vec<usize>>,
    /// Whether each slot is reachable from us (as of the last recomputation).
    in_reach: Vec<bool>,
    /// Next hop (slot) from us to each slot; None for ourselves and the unreachable.
    hop: Vec<Option<usize>>,
    /// Reachable peers sorted by name, and their slots in the same order.
    reachable: Vec<String>,
    reach_slots: Vec<usize>,
    /// Cache of our children in the broadcast tree rooted at each origin (by slot).
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
        t.store(own.name.clone(), Some(own));
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

    /// Replaces (or with None drops) an entry and updates the established adjacency.
    /// Routes are only recomputed when an established edge appeared or vanished: most
    /// gossip is the first end of a new connection reporting it, or a version bump.
    fn store(&mut self, name: String, e: Option<PeerEntry>) {
        let old = match e {
            Some(e) => {
                if !self.slot_of.contains_key(&name) {
                    self.alloc(&name);
                }
                self.entries.insert(name.clone(), e)
            }
            None => self.entries.remove(&name),
        };
        self.digest_dirty = true;
        self.update_edges(&name, old.as_ref());
        if !self.entries.contains_key(&name) {
            self.release(&name);
        }
    }

    /// Toggles the established edges of `name` that differ between `old` and its current
    /// entry (an edge is established when the other end's entry lists it too).
    fn update_edges(&mut self, name: &str, old: Option<&PeerEntry>) {
        let Some(&s) = self.slot_of.get(name) else {
            return;
        };
        let before = edge_names(old);
        let after = edge_names(self.entries.get(name));
        let mut toggles: Vec<(usize, bool)> = Vec::new();
        for (list, other, add) in [(&before, &after, false), (&after, &before, true)] {
            for y in list.iter().filter(|y| other.binary_search(y).is_err()) {
                let Some(&t) = self.slot_of.get(*y) else {
                    continue;
                };
                let listed_back = t == s
                    || self
                        .entries
                        .get(*y)
                        .is_some_and(|ye| ye.edges.iter().any(|x| x.name == name));
                if listed_back {
                    toggles.push((t, add));
                }
            }
        }
        for (t, add) in toggles {
            self.dirty = true;
            if add {
                self.link(s, t);
                if s != t {
                    self.link(t, s);
                }
            } else {
                self.adj[s].retain(|&x| x != t);
                self.adj[t].retain(|&x| x != s);
            }
        }
    }

    /// Adds `b` to `a`'s neighbours, keeping them sorted by name.
    fn link(&mut self, a: usize, b: usize) {
        let names = &self.slot_name;
        let list = &mut self.adj[a];
        if let Err(i) = list.binary_search_by(|&x| names[x].cmp(&names[b])) {
            list.insert(i, b);
        }
    }

    fn alloc(&mut self, name: &str) {
        let s = match self.free.pop() {
            Some(s) => {
                self.slot_name[s] = name.to_string();
                s
            }
            None => {
                self.slot_name.push(name.to_string());
                self.adj.push(Vec::new());
                self.slot_name.len() - 1
            }
        };
        self.slot_of.insert(name.to_string(), s);
    }

    /// Frees the slot of a dropped entry (its established edges are gone already).
    fn release(&mut self, name: &str) {
        let Some(s) = self.slot_of.remove(name) else {
            return;
        };
        for t in std::mem::take(&mut self.adj[s]) {
            self.adj[t].retain(|&x| x != s);
        }
        if self.in_reach.get(s).copied().unwrap_or(false) {
            self.in_reach[s] = false;
            self.hop[s] = None;
            if let Some(i) = self.reach_slots.iter().position(|&x| x == s) {
                self.reach_slots.remove(i);
                self.reachable.remove(i);
            }
            self.reach_gen += 1;
            self.dirty = true;
        }
        self.children.clear();
        self.slot_name[s].clear();
        self.free.push(s);
    }

    fn refresh(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.children.clear();
        self.digest_dirty = true;
        let n = self.slot_name.len();
        let Some(&own) = self.slot_of.get(&self.own) else {
            return;
        };
        // Breadth-first from us; neighbours are visited in name order, so the first hop
        // toward each peer is the same as on any peer with this view.
        let mut hop: Vec<Option<usize>> = vec![None; n];
        let mut seen = vec![false; n];
        seen[own] = true;
        let mut order = vec![own];
        let mut head = 0;
        while head < order.len() {
            let p = order[head];
            head += 1;
            for &q in &self.adj[p] {
                if !seen[q] {
                    seen[q] = true;
                    hop[q] = Some(if p == own { q } else { hop[p].unwrap_or(q) });
                    order.push(q);
                }
            }
        }
        self.in_reach.resize(n, false);
        let mut added = Vec::new();
        let mut removed = false;
        for (s, (&now, was)) in seen.iter().zip(self.in_reach.iter_mut()).enumerate() {
            if now && !*was {
                added.push(s);
            } else if !now && *was {
                removed = true;
            }
            *was = now;
        }
        if removed {
            let keep: Vec<bool> = self.reach_slots.iter().map(|&s| seen[s]).collect();
            let mut k = keep.iter();
            self.reachable.retain(|_| *k.next().unwrap_or(&false));
            self.reach_slots.retain(|&s| seen[s]);
        }
        for s in &added {
            let name = &self.slot_name[*s];
            let i = self.reachable.binary_search(name).unwrap_or_else(|i| i);
            self.reachable.insert(i, name.clone());
            self.reach_slots.insert(i, *s);
        }
        if removed || !added.is_empty() {
            self.reach_gen += 1;
        }
        self.hop = hop;
    }

    fn pos(&self, name: &str) -> Option<usize> {
        let &s = self.slot_of.get(name)?;
        self.in_reach.get(s).copied().unwrap_or(false).then_some(s)
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
            Some(s) => self.adj[s]
                .iter()
                .map(|&q| self.slot_name[q].clone())
                .collect(),
            None => Vec::new(),
        }
    }

    /// The neighbour to send through to reach `dst`.
    pub fn next_hop(&mut self, dst: &str) -> Option<String> {
        self.refresh();
        let s = self.pos(dst)?;
        self.hop
            .get(s)
            .copied()
            .flatten()
            .map(|h| self.slot_name[h].clone())
    }

    /// Every reachable peer's next hop.
    pub fn routes(&mut self) -> Vec<(String, String)> {
        self.refresh();
        self.reach_slots
            .iter()
            .filter_map(|&s| {
                self.hop
                    .get(s)
                    .copied()
                    .flatten()
                    .map(|h| (self.slot_name[s].clone(), self.slot_name[h].clone()))
            })
            .collect()
    }

    /// Established edges among reachable peers, each once (smaller name first), in the
    /// order of the smaller name, then the larger.
    pub fn edges(&mut self) -> Vec<(String, String)> {
        self.refresh();
        let mut out = Vec::new();
        for &s in &self.reach_slots {
            for &q in &self.adj[s] {
                if self.slot_name[s] < self.slot_name[q] {
                    out.push((self.slot_name[s].clone(), self.slot_name[q].clone()));
                }
            }
        }
        out
    }

    /// Names of the stored entries that were unreachable at the last [`Self::reachable`]
    /// (or any other query that brings the routes up to date).
    pub fn unreachable_names(&self) -> impl Iterator<Item = &str> {
        self.slot_of
            .iter()
            .filter(|(_, &s)| !self.in_reach.get(s).copied().unwrap_or(false))
            .map(|(n, _)| n.as_str())
    }

    /// Whether a peer was reachable at the last query that brought the routes up to date.
    pub fn was_reachable(&self, name: &str) -> bool {
        self.pos(name).is_some()
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
        // Our neighbours' parents are final once we are processed.
        let parent = self.bfs_parents(root, Some(own));
        let kids: Vec<String> = self.adj[own]
            .iter()
            .filter(|&&q| parent[q] == own && q != root)
            .map(|&q| self.slot_name[q].clone())
            .collect();
        self.children.insert(root, kids.clone());
        Some(kids)
    }

    /// Our children in our own broadcast tree that have children there themselves (they
    /// pass our broadcasts on), sorted by name.
    pub fn own_relays(&mut self) -> Vec<String> {
        self.refresh();
        let Some(own) = self.pos(&self.own) else {
            return Vec::new();
        };
        let parent = self.bfs_parents(own, None);
        let mut has_kids = vec![false; parent.len()];
        for (q, &p) in parent.iter().enumerate() {
            if p != usize::MAX && p != q {
                has_kids[p] = true;
            }
        }
        let mut out: Vec<String> = self.adj[own]
            .iter()
            .filter(|&&q| q != own && parent[q] == own && has_kids[q])
            .map(|&q| self.slot_name[q].clone())
            .collect();
        out.sort();
        out
    }

    /// Parent of each slot in the breadth-first tree rooted at `root` (neighbours in name
    /// order; `usize::MAX` for slots not reached), stopping after `stop` is processed.
    fn bfs_parents(&self, root: usize, stop: Option<usize>) -> Vec<usize> {
        let mut parent = vec![usize::MAX; self.slot_name.len()];
        parent[root] = root;
        let mut queue = std::collections::VecDeque::from([root]);
        while let Some(p) = queue.pop_front() {
            for &q in &self.adj[p] {
                if parent[q] == usize::MAX {
                    parent[q] = p;
                    queue.push_back(q);
                }
            }
            if Some(p) == stop {
                break;
            }
        }
        parent
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

    /// The routes recomputed from scratch over the entries (the definition the
    /// incremental adjacency must match): reachable, next hops, and children per origin.
    #[allow(clippy::type_complexity)]
    fn reference(
        entries: &BTreeMap<String, PeerEntry>,
        own: &str,
    ) -> (
        Vec<String>,
        Vec<(String, String)>,
        Vec<(String, Vec<String>)>,
        BTreeMap<String, String>,
    ) {
        let lists = |a: &str, b: &str| {
            entries
                .get(a)
                .is_some_and(|e| e.edges.iter().any(|x| x.name == b))
        };
        let nbrs = |p: &str| -> Vec<String> {
            let mut v: Vec<String> = entries[p]
                .edges
                .iter()
                .map(|x| x.name.clone())
                .filter(|q| entries.contains_key(q) && lists(q, p))
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let bfs = |root: &str| -> BTreeMap<String, String> {
            let mut parent = BTreeMap::from([(root.to_string(), root.to_string())]);
            let mut queue = std::collections::VecDeque::from([root.to_string()]);
            while let Some(p) = queue.pop_front() {
                for q in nbrs(&p) {
                    if !parent.contains_key(&q) {
                        parent.insert(q.clone(), p.clone());
                        queue.push_back(q);
                    }
                }
            }
            parent
        };
        let tree = bfs(own);
        let reachable: Vec<String> = tree.keys().cloned().collect();
        let mut routes = Vec::new();
        for p in &reachable {
            let mut x = p.clone();
            if x == own {
                continue;
            }
            while tree[&x] != own {
                x = tree[&x].clone();
            }
            routes.push((p.clone(), x));
        }
        let children = reachable
            .iter()
            .map(|o| {
                let t = bfs(o);
                let kids = nbrs(own)
                    .into_iter()
                    .filter(|q| q != o && t.get(q).is_some_and(|p| p == own))
                    .collect();
                (o.clone(), kids)
            })
            .collect();
        (reachable, routes, children, tree)
    }

    #[test]
    fn incremental_routes_match_a_recomputation_from_scratch() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let names: Vec<String> = (0..8).map(|i| format!("n{i:02}")).collect();
        let mut largest = 0;
        for _ in 0..20 {
            let mut t = Topology::new(entry("n00", 1, &[]));
            let mut version = 1;
            for _ in 0..150 {
                let who = &names[rng.random_range(0..names.len())];
                version += 1;
                if who != "n00" && rng.random_bool(0.1) {
                    t.remove(who);
                } else {
                    let k = rng.random_range(0..6);
                    let edges: Vec<&str> = (0..k)
                        .map(|_| names[rng.random_range(0..names.len())].as_str())
                        .collect();
                    let e = entry(who, version, &edges);
                    if who == "n00" {
                        t.set_own(e);
                    } else {
                        t.merge(e);
                    }
                }
                if rng.random_bool(0.5) {
                    continue; // let changes pile up between recomputations
                }
                let (reachable, routes, children, own_tree) = reference(&t.entries, "n00");
                assert_eq!(t.reachable(), reachable.as_slice());
                largest = largest.max(reachable.len());
                assert_eq!(t.routes(), routes);
                let own_kids = children
                    .iter()
                    .find(|(o, _)| o == "n00")
                    .map(|(_, k)| k.clone())
                    .unwrap_or_default();
                let relays: Vec<String> = own_kids
                    .into_iter()
                    .filter(|c| own_tree.iter().any(|(x, p)| p == c && x != c))
                    .collect();
                assert_eq!(t.own_relays(), relays);
                for (o, kids) in children {
                    assert_eq!(t.broadcast_children(&o), Some(kids), "origin {o}");
                }
            }
        }
        assert!(
            largest >= 6,
            "the random views grew to {largest} reachable peers only"
        );
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
