//! Initial ring creation.
//!
//! `seed=NAMES` needs no agreement: every peer splits the range among the sorted names.
//! `consensus=N` runs single-decree Paxos among the consensus peers: the value is the list of
//! peers the ring is split among; a quorum is N/2+1. Only the lowest-named reachable
//! participant proposes, so once the network heals there is one proposer and it completes.
//! `observer` never proposes or accepts; it takes the ring from the first peer that has one.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::addr::Cidr;
use crate::ring::{stable_hash, Ring};

/// How this peer's ring comes to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum InitMode {
    /// Paxos among this many peers (quorum N/2+1).
    Consensus(u32),
    /// A deterministic split among these names; no agreement needed.
    Seed(Vec<String>),
    /// Never proposes or accepts; takes the ring from others, asks them for space.
    Observer,
}

impl InitMode {
    /// The one-byte tag sent in `Want` messages.
    pub fn tag(&self) -> u8 {
        match self {
            InitMode::Consensus(_) => 0,
            InitMode::Seed(_) => 1,
            InitMode::Observer => 2,
        }
    }
}

/// A Paxos ballot: round first, proposer name breaks ties.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Ballot {
    /// The round number.
    pub round: u64,
    /// The proposing peer.
    pub proposer: String,
}

/// A value accepted at a ballot.
pub type AcceptedValue = (Ballot, Vec<String>);

/// What an acceptor must remember across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AcceptorState {
    /// The highest ballot promised.
    pub promised: Option<Ballot>,
    /// The last value accepted and its ballot.
    pub accepted: Option<AcceptedValue>,
}

impl AcceptorState {
    /// Handle a prepare: `Ok(previously accepted)` as a promise, or `Err(promised)` to refuse.
    pub fn on_prepare(&mut self, b: &Ballot) -> Result<Option<AcceptedValue>, Ballot> {
        match &self.promised {
            Some(p) if p > b => Err(p.clone()),
            _ => {
                self.promised = Some(b.clone());
                Ok(self.accepted.clone())
            }
        }
    }

    /// Handle an accept: `Ok` if accepted, `Err(promised)` to refuse.
    pub fn on_accept(&mut self, b: &Ballot, value: &[String]) -> Result<(), Ballot> {
        match &self.promised {
            Some(p) if p > b => Err(p.clone()),
            _ => {
                self.promised = Some(b.clone());
                self.accepted = Some((b.clone(), value.to_vec()));
                Ok(())
            }
        }
    }
}

/// The proposer's progress in one ballot.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Collecting promises: who promised, with what they had accepted.
    Preparing(BTreeMap<String, Option<AcceptedValue>>),
    /// Collecting accepts for this value.
    Accepting(Vec<String>, BTreeSet<String>),
}

/// A running proposal.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// Our ballot.
    pub ballot: Ballot,
    /// When it started (ms).
    pub started: u64,
    /// Where it is.
    pub phase: Phase,
}

/// Quorum size for `n` consensus peers.
pub fn quorum(n: u32) -> usize {
    (n as usize) / 2 + 1
}

/// The value to propose after a quorum of promises: the highest accepted value if any,
/// else the peers that promised.
pub fn choose_value(promises: &BTreeMap<String, Option<AcceptedValue>>) -> Vec<String> {
    // An empty value can only come from a broken peer; it would make an empty ring.
    let best = promises
        .values()
        .flatten()
        .filter(|(_, v)| !v.is_empty())
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, v)| v.clone());
    best.unwrap_or_else(|| promises.keys().cloned().collect())
}

/// The ring a decided consensus value gives (the same on every peer).
pub fn consensus_ring(range: Cidr, value: &[String]) -> Ring {
    ring_of("consensus", range, value)
}

/// The ring a seed list gives (the same on every peer).
pub fn seed_ring(range: Cidr, seeds: &[String]) -> Ring {
    ring_of("seed", range, seeds)
}

/// `range` split among the distinct `names`, hashed with `origin` (how they were agreed):
/// a function of the sorted set only, so every peer computes the same ring.
fn ring_of(origin: &str, range: Cidr, names: &[String]) -> Ring {
    let mut names = names.to_vec();
    names.sort();
    names.dedup();
    let mut parts: Vec<&str> = vec![origin];
    parts.extend(names.iter().map(|s| s.as_str()));
    Ring::split(range, &names, stable_hash(&parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(r: u64, p: &str) -> Ballot {
        Ballot {
            round: r,
            proposer: p.into(),
        }
    }

    #[test]
    fn acceptor_keeps_promises() {
        let mut a = AcceptorState::default();
        assert_eq!(a.on_prepare(&b(1, "x")), Ok(None));
        assert_eq!(a.on_prepare(&b(0, "y")), Err(b(1, "x")));
        assert!(a.on_accept(&b(1, "x"), &["x".into()]).is_ok());
        assert_eq!(
            a.on_prepare(&b(2, "y")),
            Ok(Some((b(1, "x"), vec!["x".to_string()])))
        );
        assert!(a.on_accept(&b(1, "x"), &["z".into()]).is_err());
        assert_eq!(quorum(3), 2);
        assert_eq!(quorum(4), 3);
    }

    #[test]
    fn value_prefers_accepted() {
        let mut p = BTreeMap::new();
        p.insert("a".to_string(), None);
        p.insert("b".to_string(), Some((b(3, "c"), vec!["c".to_string()])));
        assert_eq!(choose_value(&p), vec!["c".to_string()]);
        p.insert("b".to_string(), None);
        assert_eq!(choose_value(&p), vec!["a".to_string(), "b".to_string()]);
    }
}
