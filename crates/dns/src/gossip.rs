//! Sans-IO gossip of DNS records between routers, as a mesh application
//! ([`weft_mesh::MeshApp`]): the router's one app driver and the seeded mesh simulation
//! run it like every other core.
//!
//! Each router is the only writer of its own entries (its "origin"). Changes go out at
//! once as a broadcast delta (so a removal reaches every peer in one mesh hop). Every
//! `digest_interval` each router broadcasts a digest of its own live entries; a peer whose
//! copy differs asks for the full state and replaces that origin's entries with it. A new
//! peer gets our full state and is asked for its own. Entries of peers that are not
//! reachable any more are dropped, and nothing from them is taken until they are back.
//!
//! Assumption about the mesh: a broadcast reaches every reachable peer, and `from` is the
//! peer that created the payload (not a relay).
//!
//! A peer whose gossip breaks the protocol or a bound ([`crate::limits`]) loses its names
//! here, is ignored while it stays reachable, and the mesh is asked to drop it
//! ([`Disconnect`]).
//!
//! Versions are a hybrid logical clock: `max(last + 1, wall-clock milliseconds)`, the wall
//! clock being the Unix time at which the driver's clock read 0 plus that clock. A
//! restarted router therefore issues versions above those of its previous life, and its
//! first full state replaces whatever the others still hold of it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

use weft_mesh::{Disconnect, GossipPeers, MeshApp, Millis, TopologyView, Transmit};

use crate::limits::{check_entries, MAX_OWN_ENTRIES};
use crate::records::{
    check_id, normalize_name, Entry, EntryKey, EntryState, Merge, Records, MAX_ADDRS_PER_NAME,
};
use crate::wire::{checksum, Message, WireError};
use crate::{read_records, write_records, DnsError, SharedRecords};

/// Timing of the gossip, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GossipConfig {
    /// How often a digest of our own entries is broadcast (repairs lost deltas).
    pub digest_interval: Millis,
    /// How long removed entries are remembered (orders late deltas correctly).
    pub tombstone_ttl: Millis,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            digest_interval: 5_000,
            tombstone_ttl: 60_000,
        }
    }
}

/// Which of our own entries to remove; every given field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoveFilter {
    /// Container id or name.
    pub container: Option<String>,
    /// Hostname (normalized before matching).
    pub hostname: Option<String>,
    /// Address.
    pub addr: Option<Ipv4Addr>,
}

/// Why a payload from a peer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GossipError {
    /// The payload does not decode.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The payload speaks for another peer, or asks us for another peer's state.
    #[error("DNS gossip from {from} names {origin} as its origin")]
    Origin {
        /// The sender.
        from: String,
        /// The origin it named.
        origin: String,
    },
    /// The payload breaks a bound of [`crate::limits`].
    #[error("{0}")]
    Limit(String),
}

impl GossipError {
    /// Whether the sender is broken or hostile (dropped), rather than speaking another
    /// version of the encoding (ignored, as during a rolling upgrade).
    pub fn drops_peer(&self) -> bool {
        !matches!(self, GossipError::Wire(WireError::Version(_)))
    }
}

/// The DNS gossip core of one router.
#[derive(Debug)]
pub struct DnsGossip {
    config: GossipConfig,
    records: SharedRecords,
    /// Who we gossip with, and what is queued for the mesh.
    peers: GossipPeers,
    clock: u64,
    epoch_wall_ms: u64,
    next_digest: Millis,
    /// When we last asked a peer for its full state (asks at most once per digest interval).
    asked: HashMap<String, Millis>,
}

impl DnsGossip {
    /// A core for peer `me` on mesh channel `channel`; `epoch_wall_ms` is the Unix time in
    /// ms at which the driver's clock ([`Millis`]) read 0.
    pub fn new(
        me: &str,
        channel: u16,
        config: GossipConfig,
        epoch_wall_ms: u64,
    ) -> Result<Self, DnsError> {
        check_id("peer name", me)?;
        Ok(DnsGossip {
            config,
            records: Arc::new(RwLock::new(Records::new(config.tombstone_ttl))),
            peers: GossipPeers::new(me, channel),
            // A new life holds no entry older than now: its first full state says so.
            clock: epoch_wall_ms,
            epoch_wall_ms,
            next_digest: config.digest_interval,
            asked: HashMap::new(),
        })
    }

    /// The store this core writes; give it to the servers.
    pub fn records(&self) -> SharedRecords {
        Arc::clone(&self.records)
    }

    /// This router's peer name.
    pub fn me(&self) -> &str {
        self.peers.me()
    }

    /// Reachable peers as last seen in the topology (without us).
    pub fn peers(&self) -> impl Iterator<Item = &str> {
        self.peers.reachable().iter().map(String::as_str)
    }

    /// Our own live entries as (container, hostname, address), e.g. to persist them.
    pub fn local_entries(&self) -> Vec<(String, String, Ipv4Addr)> {
        read_records(&self.records).origin_live(self.peers.me())
    }

    /// Adds `hostname` → `addr` for a local container; nothing is sent if it is already
    /// there. Refused past [`MAX_OWN_ENTRIES`] entries or [`MAX_ADDRS_PER_NAME`] addresses
    /// of one name, so that our peers never have to drop us.
    pub fn add(
        &mut self,
        now: Millis,
        container: &str,
        hostname: &str,
        addr: Ipv4Addr,
    ) -> Result<(), DnsError> {
        let key = EntryKey::new(self.peers.me(), container, hostname, addr)?;
        let recs = read_records(&self.records);
        let held = recs.get(&key);
        if matches!(held, Some(s) if !s.tombstone) {
            return Ok(());
        }
        let mut count = 0;
        let mut addrs = HashSet::new();
        for (k, s) in recs.origin_states(self.peers.me()) {
            count += 1;
            if !s.tombstone && k.hostname == key.hostname {
                addrs.insert(k.addr);
            }
        }
        if held.is_none() && count >= MAX_OWN_ENTRIES {
            return Err(DnsError::Full {
                what: format!("this router already has {count} DNS entries"),
                limit: MAX_OWN_ENTRIES,
            });
        }
        if !addrs.contains(&addr) && addrs.len() >= MAX_ADDRS_PER_NAME {
            return Err(DnsError::Full {
                what: format!("{} already has {} addresses", key.hostname, addrs.len()),
                limit: MAX_ADDRS_PER_NAME,
            });
        }
        drop(recs);
        self.change(now, vec![key], false);
        Ok(())
    }

    /// Removes our own live entries that match `filter`; returns how many.
    pub fn remove(&mut self, now: Millis, filter: &RemoveFilter) -> Result<usize, DnsError> {
        if filter.container.is_none() && filter.hostname.is_none() && filter.addr.is_none() {
            return Err(DnsError::EmptyRemoval);
        }
        let hostname = filter.hostname.as_deref().map(normalize_name).transpose()?;
        let recs = read_records(&self.records);
        let doomed: Vec<EntryKey> = recs
            .origin_states(self.peers.me())
            .filter(|(k, s)| {
                !s.tombstone
                    && filter.container.as_ref().is_none_or(|c| &k.container == c)
                    && hostname.as_ref().is_none_or(|h| &k.hostname == h)
                    && filter.addr.is_none_or(|a| k.addr == a)
            })
            .map(|(k, _)| k.clone())
            .collect();
        drop(recs);
        let n = doomed.len();
        if n > 0 {
            self.change(now, doomed, true);
        }
        Ok(n)
    }

    /// Gives our entries `keys` a new version, live or removed, and broadcasts them.
    fn change(&mut self, now: Millis, keys: Vec<EntryKey>, tombstone: bool) {
        let version = self.next_version(now);
        let mut recs = write_records(&self.records);
        let entries: Vec<Entry> = keys
            .into_iter()
            .map(|key| Entry {
                key,
                state: EntryState { version, tombstone },
            })
            .collect();
        for e in &entries {
            recs.merge(e.clone(), now);
        }
        drop(recs);
        self.delta(entries);
    }

    /// Takes a payload from peer `from`; a payload in error changes nothing.
    pub fn receive(&mut self, now: Millis, from: &str, payload: &[u8]) -> Result<(), GossipError> {
        self.tick_clock(now);
        let msg = Message::decode(payload)?;
        if !self.peers.is_reachable(from) || self.peers.is_refused(from) {
            // Not (yet) reachable: its entries would outlive its departure. It is asked on join.
            return Ok(());
        }
        let own = |origin: String| {
            if origin == from {
                Ok(origin)
            } else {
                Err(GossipError::Origin {
                    from: from.to_string(),
                    origin,
                })
            }
        };
        match msg {
            Message::Delta {
                origin, entries, ..
            } => {
                let origin = own(origin)?;
                let mut recs = write_records(&self.records);
                check_entries(&recs, &origin, &entries, false).map_err(GossipError::Limit)?;
                for e in entries {
                    recs.merge(e, now);
                }
            }
            Message::Full {
                origin,
                clock,
                entries,
            } => {
                let origin = own(origin)?;
                check_entries(&read_records(&self.records), &origin, &entries, true)
                    .map_err(GossipError::Limit)?;
                self.apply_full(&origin, clock, entries, now);
            }
            Message::Digest {
                origin,
                live,
                checksum: sum,
                ..
            } => {
                let origin = own(origin)?;
                let (mine_live, mine_sum) = self.summary(&origin);
                if mine_live == live && mine_sum == sum {
                    self.asked.remove(&origin);
                    return Ok(());
                }
                let recently = self
                    .asked
                    .get(&origin)
                    .is_some_and(|&t| now < t.saturating_add(self.config.digest_interval));
                if recently {
                    return Ok(());
                }
                self.asked.insert(origin.clone(), now);
                self.ask(origin);
            }
            Message::Request { origin } => {
                if origin != self.peers.me() {
                    return Err(GossipError::Origin {
                        from: from.to_string(),
                        origin,
                    });
                }
                let full = self.full_state().encode();
                self.peers.send(from, full);
            }
        }
        Ok(())
    }

    /// Takes the set of reachable peers (without us); drops the entries of peers gone.
    fn peers_changed(&mut self, now: Millis, peers: BTreeSet<String>) {
        // A dropped peer gets another chance once it has been gone.
        let added = self.peers.set(peers).added;
        self.asked.retain(|p, _| self.peers.is_reachable(p));
        let mut recs = write_records(&self.records);
        for origin in recs.origins() {
            if origin != self.peers.me() && !self.peers.is_reachable(&origin) {
                let n = recs.remove_origin(&origin);
                tracing::debug!(
                    origin,
                    entries = n,
                    "dropped DNS entries of a peer that is gone"
                );
            }
        }
        drop(recs);
        if added.is_empty() {
            return;
        }
        self.tick_clock(now);
        let full = self.full_state().encode();
        for peer in added {
            self.peers.send(&peer, full.clone());
            // Ask too: its own copy of our joining may have been sent before it knew us.
            self.ask(peer);
        }
    }

    /// Drops a peer that broke the protocol: its names go, it is ignored while it stays
    /// reachable, and the mesh is asked to disconnect it.
    fn refuse(&mut self, peer: &str, why: &GossipError) {
        if !self.peers.refuse(peer, why) {
            return;
        }
        let n = write_records(&self.records).remove_origin(peer);
        tracing::warn!(peer, entries = n, "dropping a peer's DNS names: {why}");
        self.asked.remove(peer);
    }

    /// Raises the clock to the wall clock: a full state sent now covers every version an
    /// earlier life of this router can have issued.
    fn tick_clock(&mut self, now: Millis) {
        self.clock = self.clock.max(self.epoch_wall_ms.saturating_add(now));
    }

    fn next_version(&mut self, now: Millis) -> u64 {
        let wall = self.epoch_wall_ms.saturating_add(now);
        self.clock = self.clock.saturating_add(1).max(wall);
        self.clock
    }

    /// Asks `origin` for its full state.
    fn ask(&mut self, origin: String) {
        let payload = Message::Request {
            origin: origin.clone(),
        }
        .encode();
        self.peers.send(&origin, payload);
    }

    fn delta(&mut self, entries: Vec<Entry>) {
        if self.peers.reachable().is_empty() {
            return;
        }
        let msg = Message::Delta {
            origin: self.peers.me().to_string(),
            clock: self.clock,
            entries,
        };
        self.peers.broadcast(msg.encode());
    }

    fn full_state(&self) -> Message {
        let entries = read_records(&self.records)
            .origin_entries(self.peers.me())
            .collect();
        Message::Full {
            origin: self.peers.me().to_string(),
            clock: self.clock,
            entries,
        }
    }

    /// Live count and checksum of what we hold of `origin`.
    fn summary(&self, origin: &str) -> (u32, u64) {
        let recs = read_records(&self.records);
        let live: Vec<Entry> = recs
            .origin_entries(origin)
            .filter(|e| !e.state.tombstone)
            .collect();
        (live.len() as u32, checksum(&live))
    }

    /// Replaces what we hold of `origin` up to `clock` with its full state.
    fn apply_full(&mut self, origin: &str, clock: u64, entries: Vec<Entry>, now: Millis) {
        let mut recs = write_records(&self.records);
        let keep: HashSet<&EntryKey> = entries.iter().map(|e| &e.key).collect();
        let stale: Vec<EntryKey> = recs
            .origin_states(origin)
            .filter(|(k, s)| s.version <= clock && !keep.contains(k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &stale {
            recs.forget(k);
        }
        let mut applied = 0;
        for e in entries {
            match recs.merge(e, now) {
                Merge::Applied => applied += 1,
                Merge::Refused => tracing::warn!(
                    origin,
                    "DNS entry refused: its name already has {MAX_ADDRS_PER_NAME} addresses"
                ),
                Merge::Ignored => {}
            }
        }
        tracing::trace!(
            origin,
            dropped = stale.len(),
            applied,
            "applied full DNS state"
        );
    }
}

impl MeshApp for DnsGossip {
    /// Everything DNS gossip does besides sending is in the shared store.
    type Effect = std::convert::Infallible;

    fn handle_message(&mut self, now: Millis, channel: u16, from: &str, payload: &[u8]) {
        if channel != self.peers.channel() {
            return;
        }
        if let Err(e) = self.receive(now, from, payload) {
            if e.drops_peer() {
                self.refuse(from, &e);
            } else {
                tracing::debug!(from, "DNS gossip not taken: {e}");
            }
        }
    }

    fn handle_topology(&mut self, now: Millis, topology: &TopologyView) {
        if let Some(peers) = self.peers.changed(topology) {
            self.peers_changed(now, peers);
        }
    }

    /// Expires tombstones and broadcasts the digest.
    fn handle_timeout(&mut self, now: Millis) {
        self.tick_clock(now);
        write_records(&self.records).expire(now);
        if now < self.next_digest {
            return;
        }
        self.next_digest = now.saturating_add(self.config.digest_interval.max(1));
        if self.peers.reachable().is_empty() {
            return;
        }
        let me = self.peers.me().to_string();
        let (live, sum) = self.summary(&me);
        let digest = Message::Digest {
            origin: me,
            clock: self.clock,
            live,
            checksum: sum,
        };
        self.peers.broadcast(digest.encode());
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.peers.poll_transmit()
    }

    fn poll_timeout(&self) -> Option<Millis> {
        Some(self.next_digest)
    }

    fn poll_disconnect(&mut self) -> Option<Disconnect> {
        self.peers.poll_disconnect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core_with_peers(me: &str, peers: &[&str]) -> DnsGossip {
        let mut g = DnsGossip::new(me, 2, GossipConfig::default(), 0).unwrap();
        let set = peers.iter().map(|p| p.to_string()).collect();
        g.peers_changed(0, set);
        while g.poll_transmit().is_some() {}
        g
    }

    #[test]
    fn bad_payloads_and_impostors_change_nothing() {
        let now = 0;
        let mut g = core_with_peers("me", &["a", "b"]);
        assert!(g.receive(now, "a", &[1, 2, 3]).is_err());
        // "a" speaking for "b" is refused.
        let forged = Message::Delta {
            origin: "b".into(),
            clock: 1,
            entries: vec![Entry {
                key: EntryKey::new("b", "c", "x.weft.local", Ipv4Addr::LOCALHOST).unwrap(),
                state: EntryState {
                    version: 1,
                    tombstone: false,
                },
            }],
        };
        assert!(g.receive(now, "a", &forged.encode()).is_err());
        assert!(read_records(&g.records).is_empty());
        assert!(matches!(
            g.remove(now, &RemoveFilter::default()),
            Err(DnsError::EmptyRemoval)
        ));
        assert!(g.add(now, "c", "bad name", Ipv4Addr::LOCALHOST).is_err());
    }

    #[test]
    fn a_peer_over_a_bound_is_dropped_with_its_names_and_ignored_until_gone() {
        let mut g = core_with_peers("me", &["good", "evil"]);
        let entry = |origin: &str, c: &str, name: &str, addr: u32| Entry {
            key: EntryKey::new(origin, c, name, Ipv4Addr::from(addr)).unwrap(),
            state: EntryState {
                version: 1,
                tombstone: false,
            },
        };
        let full = |origin: &str, entries: Vec<Entry>| {
            Message::Full {
                origin: origin.into(),
                clock: 1,
                entries,
            }
            .encode()
        };
        g.handle_message(
            0,
            2,
            "good",
            &full("good", vec![entry("good", "g", "g.weft.local", 1)]),
        );
        g.handle_message(
            0,
            2,
            "evil",
            &full("evil", vec![entry("evil", "e", "e.weft.local", 2)]),
        );
        let lookup = |g: &DnsGossip, n: &str| read_records(&g.records).lookup(n);
        assert_eq!(lookup(&g, "e.weft.local.").len(), 1);
        assert!(g.poll_disconnect().is_none());
        // One name with more addresses than a name may have.
        let wide = (0..=MAX_ADDRS_PER_NAME as u32)
            .map(|i| entry("evil", &format!("w{i}"), "web.weft.local", 100 + i))
            .collect();
        g.handle_message(5, 2, "evil", &full("evil", wide));
        let d = g.poll_disconnect().expect("evil is dropped");
        assert_eq!(d.peer, "evil");
        assert!(d.reason.contains("per name"), "{}", d.reason);
        assert!(lookup(&g, "e.weft.local.").is_empty(), "its names go");
        assert!(lookup(&g, "web.weft.local.").is_empty());
        assert_eq!(lookup(&g, "g.weft.local.").len(), 1, "the others' stay");
        // Ignored while it stays reachable (say through another peer), once dropped.
        g.handle_message(
            6,
            2,
            "evil",
            &full("evil", vec![entry("evil", "e", "e.weft.local", 2)]),
        );
        g.handle_message(6, 2, "evil", &[9, 9]);
        assert!(lookup(&g, "e.weft.local.").is_empty());
        assert!(g.poll_disconnect().is_none());
        // Gone, then back: it is taken again.
        g.peers_changed(7, ["good".to_string()].into());
        g.peers_changed(8, ["good".to_string(), "evil".to_string()].into());
        g.handle_message(
            9,
            2,
            "evil",
            &full("evil", vec![entry("evil", "e", "e.weft.local", 2)]),
        );
        assert_eq!(lookup(&g, "e.weft.local.").len(), 1);
        // Another encoding version is not a reason to drop a peer (rolling upgrades).
        g.handle_message(10, 2, "good", &[crate::wire::VERSION + 1, 1]);
        assert!(g.poll_disconnect().is_none());
        // Malformed gossip is.
        g.handle_message(10, 2, "good", &[crate::wire::VERSION, 1, 0]);
        assert_eq!(g.poll_disconnect().map(|d| d.peer), Some("good".into()));
    }

    #[test]
    fn own_entries_stay_within_what_peers_accept() {
        let mut g = core_with_peers("me", &[]);
        for i in 0..MAX_ADDRS_PER_NAME as u32 {
            g.add(0, &format!("c{i}"), "web.weft.local", Ipv4Addr::from(i))
                .unwrap();
        }
        let err = g
            .add(0, "cx", "web.weft.local", Ipv4Addr::from(9_999))
            .unwrap_err();
        assert!(err.to_string().contains("addresses"), "{err}");
        // Another container on an address the name has is fine.
        g.add(0, "cy", "web.weft.local", Ipv4Addr::from(1)).unwrap();
        for i in g.local_entries().len()..MAX_OWN_ENTRIES {
            g.add(
                0,
                &format!("d{i}"),
                &format!("d{i}.weft.local"),
                Ipv4Addr::from(7),
            )
            .unwrap();
        }
        let err = g
            .add(0, "z", "z.weft.local", Ipv4Addr::from(7))
            .unwrap_err();
        assert!(err.to_string().contains("entries"), "{err}");
    }
}
