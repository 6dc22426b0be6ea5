//! The record store: name → IPv4 entries, each owned by the peer that created it.
//!
//! Every entry has a key (origin peer, container, hostname, address) and a state
//! (version, live or tombstone). Merging keeps the higher version per key and, on a
//! tie, the tombstone, so merges commute and repeat harmlessly. Only the origin peer
//! changes its own entries; the gossip layer spreads them.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use weft_mesh::Millis;

use crate::DnsError;

/// Longest name accepted (RFC 1035 presentation form with the final dot).
pub const MAX_NAME_LEN: usize = 254;
/// Longest peer name or container id accepted.
pub const MAX_ID_LEN: usize = 255;

/// Identity of one entry: who made it, for which container, which name and address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryKey {
    /// Peer that owns the entry (the only one that may change it).
    pub origin: String,
    /// Container id or name the entry belongs to.
    pub container: String,
    /// Lowercase fully qualified name with the final dot.
    pub hostname: String,
    /// Address the name resolves to.
    pub addr: Ipv4Addr,
}

/// State of one entry: a logical version and whether it was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryState {
    /// Logical timestamp given by the origin; higher wins.
    pub version: u64,
    /// True when the entry was removed (kept a while so late adds do not resurrect it).
    pub tombstone: bool,
}

impl EntryState {
    /// True when `self` should replace `other` in a merge.
    pub fn beats(&self, other: &EntryState) -> bool {
        self.version > other.version
            || (self.version == other.version && self.tombstone && !other.tombstone)
    }
}

/// One entry as carried by gossip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Identity.
    pub key: EntryKey,
    /// Version and liveness.
    pub state: EntryState,
}

#[derive(Debug, Clone)]
struct Slot {
    state: EntryState,
    /// When a tombstone may be forgotten (local time of this store).
    expires: Option<Millis>,
}

/// Outcome of merging one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// The entry was newer and is now stored.
    Applied,
    /// The store already held this or a newer state.
    Ignored,
    /// The entry's name already has [`MAX_ADDRS_PER_NAME`] addresses: not stored.
    Refused,
}

/// Most addresses one name answers with (a DNS answer over UDP holds far fewer anyway).
pub const MAX_ADDRS_PER_NAME: usize = 256;

/// The record store with indexes for forward and reverse lookups.
#[derive(Debug, Default)]
pub struct Records {
    entries: BTreeMap<EntryKey, Slot>,
    /// Live addresses per name, with how many live entries give each (for duplicates).
    by_name: HashMap<String, BTreeMap<Ipv4Addr, u32>>,
    /// Live names per address.
    by_addr: HashMap<Ipv4Addr, BTreeMap<String, u32>>,
    tombstone_ttl: Millis,
}

/// Turns a user-given hostname into the stored form: lowercase, final dot, checked.
pub fn normalize_name(name: &str) -> Result<String, DnsError> {
    let bad = |why: &str| DnsError::BadName {
        name: name.chars().take(300).collect(),
        why: why.to_string(),
    };
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed == "." {
        return Err(bad("it is empty"));
    }
    let mut out = trimmed.to_ascii_lowercase();
    if !out.ends_with('.') {
        out.push('.');
    }
    if out.len() > MAX_NAME_LEN {
        return Err(bad("it is longer than 253 characters"));
    }
    for label in out[..out.len() - 1].split('.') {
        if label.is_empty() {
            return Err(bad("it has an empty label (two dots in a row)"));
        }
        if label.len() > 63 {
            return Err(bad("a label is longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad(
                "only letters, digits, '-' and '_' are allowed in a label",
            ));
        }
    }
    Ok(out)
}

pub(crate) fn check_id(what: &'static str, value: &str) -> Result<(), DnsError> {
    if value.is_empty() || value.len() > MAX_ID_LEN {
        return Err(DnsError::BadId {
            what,
            value: value.chars().take(300).collect(),
        });
    }
    Ok(())
}

impl EntryKey {
    /// Builds a key, normalizing the hostname and checking lengths.
    pub fn new(
        origin: &str,
        container: &str,
        hostname: &str,
        addr: Ipv4Addr,
    ) -> Result<Self, DnsError> {
        check_id("peer name", origin)?;
        check_id("container", container)?;
        Ok(EntryKey {
            origin: origin.to_string(),
            container: container.to_string(),
            hostname: normalize_name(hostname)?,
            addr,
        })
    }
}

impl Records {
    /// An empty store whose tombstones are forgotten `tombstone_ttl` ms after removal.
    pub fn new(tombstone_ttl: Millis) -> Self {
        Records {
            tombstone_ttl,
            ..Default::default()
        }
    }

    /// Merges one entry (local or received); `now` dates a new tombstone.
    pub fn merge(&mut self, entry: Entry, now: Millis) -> Merge {
        let Entry { key, state } = entry;
        let old = self.entries.get(&key).map(|s| s.state);
        if let Some(old) = old {
            if !state.beats(&old) {
                return Merge::Ignored;
            }
        }
        let was_live = matches!(old, Some(s) if !s.tombstone);
        if !was_live && !state.tombstone && self.name_is_full(&key) {
            return Merge::Refused;
        }
        if was_live && state.tombstone {
            self.unindex(&key);
        } else if !was_live && !state.tombstone {
            self.index(&key);
        }
        let expires = state
            .tombstone
            .then(|| now.saturating_add(self.tombstone_ttl));
        self.entries.insert(key, Slot { state, expires });
        Merge::Applied
    }

    /// Whether `key`'s name already has [`MAX_ADDRS_PER_NAME`] addresses, `key`'s not among
    /// them: a hostile or broken peer cannot make one name answer without bound.
    fn name_is_full(&self, key: &EntryKey) -> bool {
        self.by_name
            .get(&key.hostname)
            .is_some_and(|m| m.len() >= MAX_ADDRS_PER_NAME && !m.contains_key(&key.addr))
    }

    /// The state stored for `key`, live or tombstone.
    pub fn get(&self, key: &EntryKey) -> Option<EntryState> {
        self.entries.get(key).map(|s| s.state)
    }

    /// Forgets `key` entirely (no tombstone); returns whether it existed.
    pub fn forget(&mut self, key: &EntryKey) -> bool {
        match self.entries.remove(key) {
            Some(slot) => {
                if !slot.state.tombstone {
                    self.unindex(key);
                }
                true
            }
            None => false,
        }
    }

    /// Drops every entry (live and tombstone) of `origin`, e.g. when that peer died.
    pub fn remove_origin(&mut self, origin: &str) -> usize {
        let keys: Vec<EntryKey> = self.origin_entries(origin).map(|e| e.key).collect();
        for key in &keys {
            self.forget(key);
        }
        keys.len()
    }

    /// Forgets tombstones whose time is up; returns how many.
    pub fn expire(&mut self, now: Millis) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|_, slot| !matches!(slot.expires, Some(t) if t <= now));
        before - self.entries.len()
    }

    /// Every entry of `origin` (live and tombstone), in key order.
    pub fn origin_entries<'a>(&'a self, origin: &'a str) -> impl Iterator<Item = Entry> + 'a {
        self.origin_states(origin).map(|(key, state)| Entry {
            key: key.clone(),
            state,
        })
    }

    /// The keys and states of `origin`'s entries, in key order, without copying them.
    pub fn origin_states<'a>(
        &'a self,
        origin: &'a str,
    ) -> impl Iterator<Item = (&'a EntryKey, EntryState)> + 'a {
        // Keys sort by origin first: its entries are one range, from its smallest key.
        let first = EntryKey {
            origin: origin.to_string(),
            container: String::new(),
            hostname: String::new(),
            addr: Ipv4Addr::UNSPECIFIED,
        };
        self.entries
            .range(first..)
            .take_while(move |(k, _)| k.origin == origin)
            .map(|(k, s)| (k, s.state))
    }

    /// `origin`'s live entries as (container, hostname, address), e.g. to persist them.
    pub fn origin_live(&self, origin: &str) -> Vec<(String, String, Ipv4Addr)> {
        self.origin_states(origin)
            .filter(|(_, s)| !s.tombstone)
            .map(|(k, _)| (k.container.clone(), k.hostname.clone(), k.addr))
            .collect()
    }

    /// Every live entry, in key order.
    pub fn live_entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.entries
            .iter()
            .filter(|(_, s)| !s.state.tombstone)
            .map(|(k, s)| Entry {
                key: k.clone(),
                state: s.state,
            })
    }

    /// Distinct origins present (live or tombstone).
    pub fn origins(&self) -> Vec<String> {
        let mut v: Vec<String> = self.entries.keys().map(|k| k.origin.clone()).collect();
        v.dedup();
        v.sort();
        v.dedup();
        v
    }

    /// Live addresses for a lowercase FQDN, sorted, without duplicates.
    pub fn lookup(&self, fqdn: &str) -> Vec<Ipv4Addr> {
        self.by_name
            .get(fqdn)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    /// True when the name has at least one live address.
    pub fn contains_name(&self, fqdn: &str) -> bool {
        self.by_name.contains_key(fqdn)
    }

    /// Live names for an address, sorted (reverse lookup, PTR).
    pub fn reverse(&self, addr: Ipv4Addr) -> Vec<String> {
        self.by_addr
            .get(&addr)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of stored entries, live and tombstone.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Live entries in the API's report form.
    pub fn report(&self) -> Vec<weft_api::DnsEntry> {
        self.live_entries()
            .map(|e| weft_api::DnsEntry {
                hostname: e.key.hostname,
                address: e.key.addr.to_string(),
                origin: e.key.origin,
                container: e.key.container,
            })
            .collect()
    }

    fn index(&mut self, key: &EntryKey) {
        *self
            .by_name
            .entry(key.hostname.clone())
            .or_default()
            .entry(key.addr)
            .or_default() += 1;
        *self
            .by_addr
            .entry(key.addr)
            .or_default()
            .entry(key.hostname.clone())
            .or_default() += 1;
    }

    fn unindex(&mut self, key: &EntryKey) {
        if let Some(addrs) = self.by_name.get_mut(&key.hostname) {
            dec(addrs, &key.addr);
            if addrs.is_empty() {
                self.by_name.remove(&key.hostname);
            }
        }
        if let Some(names) = self.by_addr.get_mut(&key.addr) {
            dec(names, &key.hostname);
            if names.is_empty() {
                self.by_addr.remove(&key.addr);
            }
        }
    }
}

fn dec<K: Ord>(map: &mut BTreeMap<K, u32>, k: &K) {
    if let Some(n) = map.get_mut(k) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(origin: &str, c: &str, name: &str, a: [u8; 4]) -> EntryKey {
        EntryKey::new(origin, c, name, Ipv4Addr::from(a)).unwrap()
    }
    fn e(k: &EntryKey, version: u64, tombstone: bool) -> Entry {
        Entry {
            key: k.clone(),
            state: EntryState { version, tombstone },
        }
    }

    #[test]
    fn names_are_normalized_and_checked() {
        assert_eq!(normalize_name("Web.Weft.Local").unwrap(), "web.weft.local.");
        assert_eq!(normalize_name("a.b.").unwrap(), "a.b.");
        for bad in ["", ".", "a..b", "a b.c", &"x".repeat(64), &"a.".repeat(130)] {
            assert!(normalize_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(EntryKey::new("", "c", "a.b", Ipv4Addr::LOCALHOST).is_err());
    }

    #[test]
    fn merge_is_order_independent() {
        let k = key("p1", "c1", "web.weft.local", [10, 32, 0, 1]);
        let ops = [
            e(&k, 1, false),
            e(&k, 2, true),
            e(&k, 3, false),
            e(&k, 3, true),
        ];
        let now: Millis = 1_000;
        // Every permutation of the four ops ends in the same state: v3 tombstone.
        let mut perms = Vec::new();
        for a in 0..4usize {
            for b in 0..4usize {
                for c in 0..4usize {
                    let Some(d) = 6usize.checked_sub(a + b + c) else {
                        continue;
                    };
                    let p = [a, b, c, d];
                    if (0..4).all(|x| p.contains(&x)) {
                        perms.push(p);
                    }
                }
            }
        }
        assert_eq!(perms.len(), 24);
        for p in perms {
            let mut r = Records::new(60_000);
            for &i in &p {
                r.merge(ops[i].clone(), now);
            }
            assert_eq!(
                r.get(&k),
                Some(EntryState {
                    version: 3,
                    tombstone: true
                }),
                "order {p:?}"
            );
            assert!(r.lookup("web.weft.local.").is_empty());
            assert!(r.reverse(Ipv4Addr::new(10, 32, 0, 1)).is_empty());
        }
    }

    #[test]
    fn a_name_holds_a_bounded_number_of_addresses() {
        let now: Millis = 1_000;
        let mut r = Records::new(60_000);
        for i in 0..MAX_ADDRS_PER_NAME as u32 {
            let a = (Ipv4Addr::new(10, 32, 0, 0).to_bits() + i).to_be_bytes();
            let m = r.merge(
                e(
                    &key("evil", &format!("c{i}"), "web.weft.local", a),
                    1,
                    false,
                ),
                now,
            );
            assert_eq!(m, Merge::Applied);
        }
        let over = e(
            &key("evil", "cx", "web.weft.local", [10, 33, 0, 1]),
            1,
            false,
        );
        assert_eq!(r.merge(over.clone(), now), Merge::Refused);
        assert_eq!(r.get(&over.key), None);
        assert_eq!(r.lookup("web.weft.local.").len(), MAX_ADDRS_PER_NAME);
        // Another name, and one more container on an address the name has, still work.
        let other = e(
            &key("evil", "cy", "db.weft.local", [10, 33, 0, 1]),
            1,
            false,
        );
        assert_eq!(r.merge(other, now), Merge::Applied);
        let dup = e(&key("p2", "cz", "web.weft.local", [10, 32, 0, 0]), 1, false);
        assert_eq!(r.merge(dup, now), Merge::Applied);
    }

    /// Merges a live entry at version 1.
    fn live(r: &mut Records, origin: &str, c: &str, name: &str, a: [u8; 4]) {
        r.merge(e(&key(origin, c, name, a), 1, false), 1_000);
    }

    /// Removes an entry at version 2.
    fn gone(r: &mut Records, origin: &str, c: &str, name: &str, a: [u8; 4]) {
        r.merge(e(&key(origin, c, name, a), 2, true), 1_000);
    }

    #[test]
    fn lookup_collects_all_live_addresses_once() {
        let mut r = Records::new(60_000);
        live(&mut r, "p1", "c1", "web.weft.local", [10, 32, 0, 2]);
        live(&mut r, "p2", "c2", "WEB.weft.local", [10, 32, 0, 1]);
        // Same address given twice (two containers of one name): answered once.
        live(&mut r, "p2", "c3", "web.weft.local", [10, 32, 0, 1]);
        live(&mut r, "p2", "c3", "db.weft.local", [10, 32, 0, 3]);
        let both = vec![Ipv4Addr::new(10, 32, 0, 1), Ipv4Addr::new(10, 32, 0, 2)];
        assert_eq!(r.lookup("web.weft.local."), both);
        gone(&mut r, "p2", "c2", "web.weft.local", [10, 32, 0, 1]);
        assert_eq!(r.lookup("web.weft.local."), both);
        gone(&mut r, "p2", "c3", "web.weft.local", [10, 32, 0, 1]);
        assert_eq!(
            r.lookup("web.weft.local."),
            vec![Ipv4Addr::new(10, 32, 0, 2)]
        );
        assert_eq!(
            r.reverse(Ipv4Addr::new(10, 32, 0, 3)),
            vec!["db.weft.local.".to_string()]
        );
        assert_eq!(r.report().len(), 2);
    }

    #[test]
    fn tombstones_expire_and_dead_origins_vanish() {
        let now: Millis = 1_000;
        let mut r = Records::new(30_000);
        let k1 = key("p1", "c1", "a.weft.local", [10, 32, 0, 1]);
        let k2 = key("p2", "c2", "b.weft.local", [10, 32, 0, 2]);
        let k3 = key("p2", "c3", "c.weft.local", [10, 32, 0, 3]);
        r.merge(e(&k1, 1, false), now);
        r.merge(e(&k2, 1, false), now);
        r.merge(e(&k3, 2, true), now);
        assert_eq!(r.expire(now + 29_000), 0);
        assert_eq!(r.expire(now + 30_000), 1);
        assert_eq!(r.get(&k3), None);
        assert_eq!(r.origins(), vec!["p1".to_string(), "p2".to_string()]);
        assert_eq!(r.remove_origin("p2"), 1);
        assert!(r.lookup("b.weft.local.").is_empty());
        assert_eq!(r.lookup("a.weft.local."), vec![Ipv4Addr::new(10, 32, 0, 1)]);
        assert_eq!(r.len(), 1);
    }
}
