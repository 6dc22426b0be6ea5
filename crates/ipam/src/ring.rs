//! The ring of ranges: a CRDT that says which peer owns which part of the allocation range.
//!
//! The range is cut at tokens; a token owns the addresses from itself up to the next token.
//! Each token carries the owner, a version and the owner's advertised free count. Merging two
//! rings takes the union of tokens and, per token, the entry with the highest
//! `(version, owner, free)`: a join, so merge is commutative, associative and idempotent.
//! Tokens are never removed. Only the current owner changes an entry (bumping its version);
//! `take_over` (rmpeer) is the one exception, for peers that are gone.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::addr::{intersect, Addr, Cidr};

/// One token's entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Entry {
    /// Version, bumped by the owner on each change.
    pub version: u32,
    /// The peer that owns the addresses from this token to the next.
    pub owner: String,
    /// Free addresses the owner advertises in this entry (a hint for space requests).
    pub free: u32,
}

/// Why a ring operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The other ring covers another range.
    #[error("ring for range {theirs} cannot merge into ring for range {ours}")]
    RangeMismatch {
        /// Our range.
        ours: Cidr,
        /// Their range.
        theirs: Cidr,
    },
    /// The other ring was created by another initialisation (another consensus or seed list).
    #[error("ring from another initialisation (origin {theirs:016x}, ours {ours:016x}): the peers were initialised apart; reset one side")]
    OriginMismatch {
        /// Our origin.
        ours: u64,
        /// Their origin.
        theirs: u64,
    },
    /// A transfer of addresses the peer does not own.
    #[error("peer {by} does not own all of the range being transferred")]
    NotOwner {
        /// The peer that tried.
        by: String,
    },
    /// An empty or out-of-range interval.
    #[error("interval is empty or outside the ring's range")]
    BadInterval,
}

/// The ring: tokens in address order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ring {
    range: Cidr,
    origin: u64,
    tokens: BTreeMap<Addr, Entry>,
}

/// FNV-1a, a stable hash for ring origins (std's hasher is not stable across releases).
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0u8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

impl Ring {
    /// A ring split in equal contiguous parts among `names` (sorted, deduplicated).
    /// Every peer that computes this from the same inputs gets the same ring.
    pub fn split(range: Cidr, names: &[String], origin: u64) -> Ring {
        let mut names: Vec<String> = names.to_vec();
        names.sort();
        names.dedup();
        let range = range.subnet();
        let mut tokens = BTreeMap::new();
        let n = names.len().max(1) as u64;
        let size = range.size();
        let start = u64::from(range.network());
        for (i, name) in names.iter().enumerate() {
            let s = start + size * i as u64 / n;
            let e = start + size * (i as u64 + 1) / n;
            if e > s {
                tokens.insert(
                    s as Addr,
                    Entry {
                        version: 0,
                        owner: name.clone(),
                        free: (e - s).min(u64::from(u32::MAX)) as u32,
                    },
                );
            }
        }
        Ring {
            range,
            origin,
            tokens,
        }
    }

    /// Build a ring from decoded parts; `None` if the tokens are not a valid cover of the range.
    pub fn from_parts(range: Cidr, origin: u64, tokens: BTreeMap<Addr, Entry>) -> Option<Ring> {
        let range = range.subnet();
        let first = tokens.keys().next().copied();
        if first != Some(range.network()) || tokens.keys().any(|t| !range.contains(*t)) {
            return None;
        }
        Some(Ring {
            range,
            origin,
            tokens,
        })
    }

    /// The allocation range this ring covers.
    pub fn range(&self) -> Cidr {
        self.range
    }

    /// The origin: a hash of how this ring was initialised.
    pub fn origin(&self) -> u64 {
        self.origin
    }

    /// The raw tokens.
    pub fn tokens(&self) -> &BTreeMap<Addr, Entry> {
        &self.tokens
    }

    /// Entries as `(start, end, entry)` half-open intervals in address order.
    pub fn entries(&self) -> impl Iterator<Item = (u64, u64, &Entry)> + '_ {
        let end = self.range.end();
        let mut it = self.tokens.iter().peekable();
        std::iter::from_fn(move || {
            let (t, e) = it.next()?;
            let next = it.peek().map(|(n, _)| u64::from(**n)).unwrap_or(end);
            Some((u64::from(*t), next, e))
        })
    }

    /// The entry covering `a`: `(start, end, entry)`.
    pub fn entry_at(&self, a: u64) -> Option<(u64, u64, &Entry)> {
        if a < u64::from(self.range.network()) || a >= self.range.end() {
            return None;
        }
        let (t, e) = self.tokens.range(..=(a as Addr)).next_back()?;
        let next = self
            .tokens
            .range((a as Addr).saturating_add(1)..)
            .next()
            .map(|(n, _)| u64::from(*n))
            .filter(|n| *n > a)
            .unwrap_or(self.range.end());
        Some((u64::from(*t), next, e))
    }

    /// The owner of address `a`.
    pub fn owner_of(&self, a: Addr) -> Option<&str> {
        self.entry_at(u64::from(a))
            .map(|(_, _, e)| e.owner.as_str())
    }

    /// The intervals `name` owns, adjacent ones joined.
    pub fn owned_by(&self, name: &str) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (s, e, ent) in self.entries() {
            if ent.owner == name {
                match out.last_mut() {
                    Some(last) if last.1 == s => last.1 = e,
                    _ => out.push((s, e)),
                }
            }
        }
        out
    }

    /// Number of addresses `name` owns.
    pub fn owned_count(&self, name: &str) -> u64 {
        self.owned_by(name).iter().map(|(s, e)| e - s).sum()
    }

    /// Free addresses `name` advertises inside `subnet` (entry free counts, capped by overlap).
    pub fn advertised_free(&self, name: &str, subnet: &Cidr) -> u64 {
        let sub = (u64::from(subnet.network()), subnet.end());
        self.entries()
            .filter(|(_, _, e)| e.owner == name)
            .filter_map(|(s, e, ent)| {
                intersect((s, e), sub).map(|(a, b)| (b - a).min(u64::from(ent.free)))
            })
            .sum()
    }

    /// All peers that own something, sorted.
    pub fn owners(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tokens.values().map(|e| e.owner.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Make `t` a token (splitting the entry that covers it, same owner); returns nothing if
    /// it already is one or lies at the range end.
    fn cut(&mut self, t: u64) {
        if t >= self.range.end() || self.tokens.contains_key(&(t as Addr)) {
            return;
        }
        if let Some((_, _, e)) = self.entry_at(t) {
            let e = Entry {
                version: 0,
                owner: e.owner.clone(),
                free: 0,
            };
            self.tokens.insert(t as Addr, e);
        }
    }

    /// `by` gives `[start, end)` to `to`. `by` must own all of it in this ring.
    pub fn transfer(&mut self, by: &str, start: u64, end: u64, to: &str) -> Result<(), RingError> {
        if start >= end || start < u64::from(self.range.network()) || end > self.range.end() {
            return Err(RingError::BadInterval);
        }
        let owns = self
            .entries()
            .filter_map(|(s, e, ent)| intersect((s, e), (start, end)).map(|_| ent))
            .all(|ent| ent.owner == by);
        if !owns {
            return Err(RingError::NotOwner { by: by.to_string() });
        }
        self.cut(start);
        self.cut(end);
        let keys: Vec<Addr> = self
            .tokens
            .range(start as Addr..)
            .take_while(|(k, _)| u64::from(**k) < end)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if let Some(ent) = self.tokens.get_mut(&k) {
                ent.version = ent.version.saturating_add(1);
                ent.owner = to.to_string();
                ent.free = 0;
            }
        }
        Ok(())
    }

    /// Set the advertised free count of `by`'s token `t`; bumps the version if it changed.
    pub fn set_free(&mut self, by: &str, t: Addr, free: u32) -> bool {
        match self.tokens.get_mut(&t) {
            Some(ent) if ent.owner == by && ent.free != free => {
                ent.free = free;
                ent.version = ent.version.saturating_add(1);
                true
            }
            _ => false,
        }
    }

    /// rmpeer: `by` takes every token of `dead`. Returns the number of addresses taken.
    pub fn take_over(&mut self, dead: &str, by: &str) -> u64 {
        let taken = self.owned_count(dead);
        for ent in self.tokens.values_mut() {
            if ent.owner == dead {
                ent.owner = by.to_string();
                ent.version = ent.version.saturating_add(1);
            }
        }
        taken
    }

    /// `by` gives its token `t` to `to` with a version above `seen` (used when rmpeer took a
    /// token that the dead peer had already given to `to`).
    pub fn yield_token(&mut self, by: &str, t: Addr, to: &str, seen: u32) -> bool {
        match self.tokens.get_mut(&t) {
            Some(ent) if ent.owner == by => {
                ent.version = ent.version.max(seen).saturating_add(1);
                ent.owner = to.to_string();
                true
            }
            _ => false,
        }
    }

    /// Give every token of `by` to the peers in `to`, round robin. Returns who got what count.
    pub fn hand_over(&mut self, by: &str, to: &[String]) -> Vec<(String, u64)> {
        let mut given: BTreeMap<String, u64> = BTreeMap::new();
        if to.is_empty() {
            return Vec::new();
        }
        let spans: Vec<(u64, u64)> = self
            .entries()
            .filter(|(_, _, e)| e.owner == by)
            .map(|(s, e, _)| (s, e))
            .collect();
        for (i, (s, e)) in spans.into_iter().enumerate() {
            let who = &to[i % to.len()];
            if let Some(ent) = self.tokens.get_mut(&(s as Addr)) {
                ent.owner = who.clone();
                ent.version = ent.version.saturating_add(1);
                ent.free = (e - s).min(u64::from(u32::MAX)) as u32;
                *given.entry(who.clone()).or_default() += e - s;
            }
        }
        given.into_iter().collect()
    }

    /// Merge `other` into this ring. Returns whether anything changed, and the tokens where
    /// both sides had the same version with different owners (a conflict only rmpeer can cause).
    pub fn merge(&mut self, other: &Ring) -> Result<MergeOutcome, RingError> {
        if other.range != self.range {
            return Err(RingError::RangeMismatch {
                ours: self.range,
                theirs: other.range,
            });
        }
        if other.origin != self.origin {
            return Err(RingError::OriginMismatch {
                ours: self.origin,
                theirs: other.origin,
            });
        }
        let mut out = MergeOutcome::default();
        for (t, theirs) in &other.tokens {
            match self.tokens.get_mut(t) {
                None => {
                    self.tokens.insert(*t, theirs.clone());
                    out.changed = true;
                }
                Some(ours) => {
                    if ours.version == theirs.version && ours.owner != theirs.owner {
                        out.conflicts.push(*t);
                    }
                    if theirs > ours {
                        *ours = theirs.clone();
                        out.changed = true;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// What a merge did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Whether the ring changed.
    pub changed: bool,
    /// Tokens with equal versions and different owners.
    pub conflicts: Vec<Addr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn split_and_transfer() {
        let range: Cidr = "10.0.0.0/24".parse().unwrap();
        let mut r = Ring::split(range, &names(&["b", "a"]), 1);
        assert_eq!(r.owned_count("a"), 128);
        assert_eq!(r.owner_of(range.network() + 200), Some("b"));
        let base = u64::from(range.network());
        r.transfer("a", base + 64, base + 96, "c").unwrap();
        assert_eq!(r.owned_by("c"), vec![(base + 64, base + 96)]);
        assert_eq!(
            r.owned_by("a"),
            vec![(base, base + 64), (base + 96, base + 128)]
        );
        assert!(r.transfer("a", base + 60, base + 70, "d").is_err());
        let mut r2 = Ring::split(range, &names(&["a", "b"]), 1);
        assert!(r2.merge(&r).unwrap().changed);
        assert_eq!(r2, r);
        assert!(!r2.merge(&r).unwrap().changed);
        assert_eq!(r2.take_over("b", "c"), 128);
        assert_eq!(r2.owned_count("c"), 160);
    }
}
