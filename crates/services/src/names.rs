//! The register of service definitions: per name, the creates not covered by its latest
//! removal (a tombstone: the removal's Lamport time covers every create before it).
//!
//! Merging is a union (a withdrawn create stays withdrawn, a later removal covers more),
//! so peers that have seen the same creates and removals hold the same register, in any
//! order. The live definition of a name is its lowest `(version, origin)` create that is
//! not withdrawn; a create that loses is withdrawn by its own creator, so it cannot come
//! back later when the winner is removed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::hash::stable_hash;
use crate::limits::MAX_DEAD_NAMES;
use crate::spec::{Definition, ServiceSpec};

/// One create of a name, as peers exchange and routers save it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The creating peer.
    pub origin: String,
    /// Its Lamport time.
    pub version: u64,
    /// The specification; None once its creator withdrew it (it lost).
    pub spec: Option<ServiceSpec>,
}

/// Everything known of one name, as peers exchange and routers save it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameState {
    /// Service name.
    pub name: String,
    /// Lamport time of its latest removal (0: never removed); covers creates up to it.
    pub removed: u64,
    /// Its creates after that.
    pub entries: Vec<Entry>,
}

/// One name in memory.
#[derive(Debug, Clone, Default)]
struct Record {
    removed: u64,
    entries: BTreeMap<(u64, String), Option<ServiceSpec>>,
}

impl Record {
    fn winner(&self) -> Option<Definition> {
        self.entries.iter().find_map(|((version, origin), spec)| {
            spec.as_ref().map(|spec| Definition {
                spec: spec.clone(),
                origin: origin.clone(),
                version: *version,
            })
        })
    }

    /// The latest Lamport time in it: dead names are forgotten oldest first.
    fn top(&self) -> u64 {
        let last = self.entries.keys().next_back().map_or(0, |k| k.0);
        self.removed.max(last)
    }

    fn hash(&self, name: &str) -> u64 {
        let mut h = stable_hash(&[name.as_bytes(), &self.removed.to_be_bytes()]);
        for ((version, origin), spec) in &self.entries {
            let spec = spec
                .as_ref()
                .map(crate::wire::spec_bytes)
                .unwrap_or_default();
            h = h.wrapping_add(stable_hash(&[
                name.as_bytes(),
                &version.to_be_bytes(),
                origin.as_bytes(),
                &spec,
            ]));
        }
        h
    }

    fn state(&self, name: &str) -> NameState {
        NameState {
            name: name.to_string(),
            removed: self.removed,
            entries: self
                .entries
                .iter()
                .map(|((version, origin), spec)| Entry {
                    origin: origin.clone(),
                    version: *version,
                    spec: spec.clone(),
                })
                .collect(),
        }
    }
}

/// What a merge did to one name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NameChange {
    /// The live definition before.
    pub before: Option<Definition>,
    /// The live definition after.
    pub after: Option<Definition>,
    /// Creates (not withdrawn) that the removal covered.
    pub covered: Vec<Definition>,
}

/// Every name we know.
#[derive(Debug, Clone, Default)]
pub(crate) struct Names {
    records: BTreeMap<String, Record>,
    live: BTreeMap<String, Definition>,
    /// Names without a live definition, by [`Record::top`].
    dead: BTreeSet<(u64, String)>,
    /// Sum of the records' hashes: equal registers have equal sums.
    hash: u64,
}

impl Names {
    /// Merges what a peer (or we) know of a name; None when nothing changed.
    pub fn merge(&mut self, st: NameState) -> Option<NameChange> {
        let existed = self.records.contains_key(&st.name);
        let rec = self.records.entry(st.name.clone()).or_default();
        let (old_hash, old_top) = (rec.hash(&st.name), rec.top());
        let mut change = NameChange {
            before: self.live.get(&st.name).cloned(),
            ..NameChange::default()
        };
        let mut changed = false;
        if st.removed > rec.removed {
            rec.removed = st.removed;
            changed = true;
            let keep = rec
                .entries
                .split_off(&(st.removed.saturating_add(1), String::new()));
            let gone = std::mem::replace(&mut rec.entries, keep);
            for ((version, origin), spec) in gone {
                if let Some(spec) = spec {
                    change.covered.push(Definition {
                        spec,
                        origin,
                        version,
                    });
                }
            }
        }
        for e in st.entries {
            if e.version <= rec.removed {
                continue;
            }
            match rec.entries.get_mut(&(e.version, e.origin.clone())) {
                None => {
                    rec.entries.insert((e.version, e.origin), e.spec);
                    changed = true;
                }
                Some(held) => {
                    // Withdrawn is final. One create with two specs (its creator
                    // restarted without saving and reused the version): the lower spec,
                    // on every peer alike.
                    let lower = match (&*held, &e.spec) {
                        (Some(_), None) => true,
                        (Some(h), Some(s)) => s < h,
                        (None, _) => false,
                    };
                    if lower {
                        *held = e.spec;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            if !existed {
                self.records.remove(&st.name);
            }
            return None;
        }
        self.hash = self
            .hash
            .wrapping_sub(if existed { old_hash } else { 0 })
            .wrapping_add(rec.hash(&st.name));
        change.after = rec.winner();
        let new_top = rec.top();
        if existed && change.before.is_none() {
            self.dead.remove(&(old_top, st.name.clone()));
        }
        match &change.after {
            Some(def) => {
                self.live.insert(st.name, def.clone());
            }
            None => {
                self.live.remove(&st.name);
                self.dead.insert((new_top, st.name));
            }
        }
        Some(change)
    }

    /// Withdraws `origin`'s create of `name` at `version` (it lost).
    pub fn withdraw(&mut self, name: &str, version: u64, origin: &str) -> Option<NameChange> {
        self.merge(NameState {
            name: name.to_string(),
            removed: 0,
            entries: vec![Entry {
                origin: origin.to_string(),
                version,
                spec: None,
            }],
        })
    }

    /// Forgets the oldest names without a live definition past [`MAX_DEAD_NAMES`]; a
    /// create older than a forgotten removal could come back (from a peer away that long).
    pub fn forget_oldest_dead(&mut self) {
        while self.dead.len() > MAX_DEAD_NAMES {
            let Some((_, name)) = self.dead.pop_first() else {
                break;
            };
            if let Some(rec) = self.records.remove(&name) {
                self.hash = self.hash.wrapping_sub(rec.hash(&name));
            }
        }
    }

    /// Creates of `name` by `origin` that are live but lose to another, as (version,
    /// winner's origin, their VIP).
    pub fn losers_of(&self, name: &str, origin: &str) -> Vec<(u64, String, Option<Ipv4Addr>)> {
        let Some(winner) = self.live.get(name) else {
            return Vec::new();
        };
        let Some(rec) = self.records.get(name) else {
            return Vec::new();
        };
        rec.entries
            .iter()
            .filter(|((v, o), spec)| {
                o == origin
                    && spec.is_some()
                    && (*v, o.as_str()) != (winner.version, winner.origin.as_str())
            })
            .map(|((v, _), spec)| (*v, winner.origin.clone(), spec.as_ref().and_then(|s| s.vip)))
            .collect()
    }

    /// The live definition of `name`.
    pub fn live(&self, name: &str) -> Option<&Definition> {
        self.live.get(name)
    }

    /// The live definitions, sorted by name.
    pub fn live_all(&self) -> impl Iterator<Item = &Definition> {
        self.live.values()
    }

    /// Number of live definitions.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// What we know of `name`.
    pub fn state(&self, name: &str) -> Option<NameState> {
        self.records.get(name).map(|r| r.state(name))
    }

    /// What we know of every name, sorted.
    pub fn states(&self) -> Vec<NameState> {
        self.records.iter().map(|(n, r)| r.state(n)).collect()
    }

    /// The highest Lamport time in the register.
    pub fn max_version(&self) -> u64 {
        self.records.values().map(Record::top).max().unwrap_or(0)
    }

    /// Number of names held (live or not).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether `name` is held (live or not).
    pub fn holds(&self, name: &str) -> bool {
        self.records.contains_key(name)
    }

    /// Number of creates `name` would have after merging `st`.
    pub fn entries_after_merge(&self, st: &NameState) -> usize {
        let rec = self.records.get(&st.name);
        let removed = rec.map_or(0, |r| r.removed).max(st.removed);
        let held = rec.map_or(0, |r| {
            r.entries
                .range((removed.saturating_add(1), String::new())..)
                .count()
        });
        let new = st
            .entries
            .iter()
            .filter(|e| e.version > removed)
            .filter(|e| rec.is_none_or(|r| !r.entries.contains_key(&(e.version, e.origin.clone()))))
            .count();
        held + new
    }

    /// Digest of the register: equal on peers that hold the same.
    pub fn hash(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::EndpointMode;
    use proptest::prelude::*;

    fn spec(name: &str) -> ServiceSpec {
        ServiceSpec {
            mode: EndpointMode::Dnsrr,
            vip: None,
            ports: vec![],
            ..crate::spec::sample(name, 0)
        }
    }

    fn create(name: &str, origin: &str, version: u64) -> NameState {
        NameState {
            name: name.into(),
            removed: 0,
            entries: vec![Entry {
                origin: origin.into(),
                version,
                spec: Some(spec(name)),
            }],
        }
    }

    fn removal(name: &str, removed: u64) -> NameState {
        NameState {
            name: name.into(),
            removed,
            entries: vec![],
        }
    }

    fn winner(n: &Names, name: &str) -> Option<(u64, String)> {
        n.live(name).map(|d| (d.version, d.origin.clone()))
    }

    #[test]
    fn removal_covers_earlier_creates_and_a_later_create_is_a_new_life() {
        let mut n = Names::default();
        n.merge(create("web", "b", 3));
        let ch = n.merge(create("web", "a", 3)).unwrap();
        assert_eq!(
            winner(&n, "web"),
            Some((3, "a".into())),
            "lower origin at one version"
        );
        assert_eq!(ch.before.unwrap().origin, "b");
        assert!(n.merge(create("web", "a", 3)).is_none(), "nothing new");
        n.merge(create("web", "c", 9));
        let ch = n.merge(removal("web", 5)).unwrap();
        assert_eq!(ch.covered.len(), 2);
        assert_eq!(
            winner(&n, "web"),
            Some((9, "c".into())),
            "created after the removal"
        );
        assert!(
            n.merge(create("web", "a", 4)).is_none(),
            "a create before the removal stays out"
        );
        // A withdrawn create stays withdrawn, whatever arrives later.
        n.withdraw("web", 9, "c").unwrap();
        assert_eq!(winner(&n, "web"), None);
        assert!(n.merge(create("web", "c", 9)).is_none());
        assert_eq!(n.live_count(), 0);
    }

    #[test]
    fn the_oldest_dead_names_are_forgotten_first() {
        let mut n = Names::default();
        n.merge(create("live", "a", 1));
        for i in 0..=MAX_DEAD_NAMES as u64 {
            n.merge(removal(&format!("d{i}"), i + 10));
        }
        n.forget_oldest_dead();
        assert_eq!(n.len(), MAX_DEAD_NAMES + 1);
        assert!(!n.holds("d0") && n.holds("d1") && n.holds("live"));
        let sum = n.states().iter().fold(0u64, |h, st| {
            let mut one = Names::default();
            one.merge(st.clone());
            h.wrapping_add(one.hash())
        });
        assert_eq!(sum, n.hash(), "the hash follows what is forgotten");
    }

    fn op() -> impl Strategy<Value = NameState> {
        let names = prop::sample::select(vec!["a", "b"]);
        let origins = prop::sample::select(vec!["p", "q", "r"]);
        (names, origins, 1u64..8, 0u8..5).prop_map(|(name, origin, v, kind)| match kind {
            // Another spec for the same create (a creator that reused a version).
            4 => {
                let mut st = create(name, origin, v);
                if let Some(s) = st.entries[0].spec.as_mut() {
                    s.subnet = "10.33.0.0/24".parse().unwrap();
                }
                st
            }
            0 => removal(name, v),
            1 => NameState {
                name: name.into(),
                removed: 0,
                entries: vec![Entry {
                    origin: origin.into(),
                    version: v,
                    spec: None,
                }],
            },
            _ => create(name, origin, v),
        })
    }

    proptest! {
        #[test]
        fn merging_in_any_order_gives_the_same_register(
            ops in prop::collection::vec(op(), 1..20),
            seed in any::<u64>(),
        ) {
            let mut a = Names::default();
            for o in &ops {
                a.merge(o.clone());
            }
            let mut shuffled = ops.clone();
            let len = shuffled.len();
            for i in 0..len {
                let j = (seed.wrapping_mul(i as u64 + 1).rotate_left(17) % len as u64) as usize;
                shuffled.swap(i, j);
            }
            let mut b = Names::default();
            for o in &shuffled {
                b.merge(o.clone());
            }
            // And merging one register into another (a full state) gives it too.
            let mut c = Names::default();
            for st in a.states() {
                c.merge(st);
            }
            prop_assert_eq!(a.states(), b.states());
            prop_assert_eq!(a.hash(), b.hash());
            prop_assert_eq!(a.hash(), c.hash());
            for name in ["a", "b"] {
                prop_assert_eq!(a.live(name), b.live(name));
            }
        }
    }
}
