//! Sans-IO gossip of DNS records between routers.
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
//! Versions are a hybrid logical clock: `max(last + 1, wall-clock milliseconds)`, with the
//! wall clock derived from the `wall_ms` given at creation and the `Instant`s given since.
//! A restarted router therefore issues versions above those of its previous life, and its
//! first full state replaces whatever the others still hold of it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::records::{check_id, normalize_name, Entry, EntryKey, EntryState, Merge, Records};
use crate::wire::{checksum, Message, WireError};
use crate::{read_records, write_records, DnsError, SharedRecords};

/// Timing of the gossip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GossipConfig {
    /// How often a digest of our own entries is broadcast (repairs lost deltas).
    pub digest_interval: Duration,
    /// How long removed entries are remembered (orders late deltas correctly).
    pub tombstone_ttl: Duration,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            digest_interval: Duration::from_secs(5),
            tombstone_ttl: Duration::from_secs(60),
        }
    }
}

/// What the router must do for the gossip core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipAction {
    /// Send the payload to every reachable peer.
    Broadcast(Vec<u8>),
    /// Send the payload to one peer.
    Send {
        /// Peer name as given in `peers_changed`.
        peer: String,
        /// Opaque payload for that peer's `on_payload`.
        payload: Vec<u8>,
    },
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

/// The DNS gossip core of one router.
#[derive(Debug)]
pub struct DnsGossip {
    me: String,
    config: GossipConfig,
    records: SharedRecords,
    peers: BTreeSet<String>,
    clock: u64,
    start: Instant,
    start_wall_ms: u64,
    next_digest: Instant,
    /// When we last asked a peer for its full state (asks at most once per digest interval).
    asked: HashMap<String, Instant>,
}

impl DnsGossip {
    /// A core for peer `me`; `now` and `wall_ms` (Unix time in ms) anchor the clock.
    pub fn new(
        me: &str,
        config: GossipConfig,
        now: Instant,
        wall_ms: u64,
    ) -> Result<Self, DnsError> {
        check_id("peer name", me)?;
        Ok(DnsGossip {
            me: me.to_string(),
            config,
            records: Arc::new(RwLock::new(Records::new(config.tombstone_ttl))),
            peers: BTreeSet::new(),
            // A new life holds no entry older than now: its first full state says so.
            clock: wall_ms,
            start: now,
            start_wall_ms: wall_ms,
            next_digest: now + config.digest_interval,
            asked: HashMap::new(),
        })
    }

    /// The store this core writes; give it to the servers.
    pub fn records(&self) -> SharedRecords {
        Arc::clone(&self.records)
    }

    /// This router's peer name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Reachable peers as last given to `peers_changed`.
    pub fn peers(&self) -> impl Iterator<Item = &str> {
        self.peers.iter().map(String::as_str)
    }

    /// Our own live entries as (container, hostname, address), e.g. to persist them.
    pub fn local_entries(&self) -> Vec<(String, String, Ipv4Addr)> {
        read_records(&self.records)
            .origin_entries(&self.me)
            .filter(|e| !e.state.tombstone)
            .map(|e| (e.key.container, e.key.hostname, e.key.addr))
            .collect()
    }

    /// When `tick` wants to be called next.
    pub fn next_tick(&self) -> Instant {
        self.next_digest
    }

    /// Adds `hostname` → `addr` for a local container; no action if it is already there.
    pub fn add(
        &mut self,
        container: &str,
        hostname: &str,
        addr: Ipv4Addr,
        now: Instant,
    ) -> Result<Vec<GossipAction>, DnsError> {
        let key = EntryKey::new(&self.me, container, hostname, addr)?;
        let records = Arc::clone(&self.records);
        let mut recs = write_records(&records);
        if matches!(recs.get(&key), Some(s) if !s.tombstone) {
            return Ok(Vec::new());
        }
        let version = self.next_version(now);
        let entry = Entry {
            key,
            state: EntryState {
                version,
                tombstone: false,
            },
        };
        recs.merge(entry.clone(), now);
        drop(recs);
        Ok(self.delta(vec![entry]))
    }

    /// Removes our own live entries that match `filter`; returns how many and the actions.
    pub fn remove(
        &mut self,
        filter: &RemoveFilter,
        now: Instant,
    ) -> Result<(usize, Vec<GossipAction>), DnsError> {
        if filter.container.is_none() && filter.hostname.is_none() && filter.addr.is_none() {
            return Err(DnsError::EmptyRemoval);
        }
        let hostname = filter.hostname.as_deref().map(normalize_name).transpose()?;
        let records = Arc::clone(&self.records);
        let mut recs = write_records(&records);
        let doomed: Vec<EntryKey> = recs
            .origin_entries(&self.me)
            .filter(|e| !e.state.tombstone)
            .map(|e| e.key)
            .filter(|k| {
                filter.container.as_ref().is_none_or(|c| &k.container == c)
                    && hostname.as_ref().is_none_or(|h| &k.hostname == h)
                    && filter.addr.is_none_or(|a| k.addr == a)
            })
            .collect();
        if doomed.is_empty() {
            return Ok((0, Vec::new()));
        }
        let version = self.next_version(now);
        let mut changed = Vec::with_capacity(doomed.len());
        for key in doomed {
            let entry = Entry {
                key,
                state: EntryState {
                    version,
                    tombstone: true,
                },
            };
            recs.merge(entry.clone(), now);
            changed.push(entry);
        }
        drop(recs);
        let n = changed.len();
        Ok((n, self.delta(changed)))
    }

    /// Takes the set of reachable peers (without us); drops the entries of peers gone.
    pub fn peers_changed<I, S>(&mut self, peers: I, _now: Instant) -> Vec<GossipAction>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let new: BTreeSet<String> = peers
            .into_iter()
            .map(Into::into)
            .filter(|p| p != &self.me)
            .collect();
        let added: Vec<String> = new.difference(&self.peers).cloned().collect();
        self.peers = new;
        self.asked.retain(|p, _| self.peers.contains(p));
        let mut recs = write_records(&self.records);
        for origin in recs.origins() {
            if origin != self.me && !self.peers.contains(&origin) {
                let n = recs.remove_origin(&origin);
                tracing::debug!(
                    origin,
                    entries = n,
                    "dropped DNS entries of a peer that is gone"
                );
            }
        }
        drop(recs);
        let mut actions = Vec::new();
        if added.is_empty() {
            return actions;
        }
        let full = self.full_state().encode();
        for peer in added {
            actions.push(GossipAction::Send {
                peer: peer.clone(),
                payload: full.clone(),
            });
            // Ask too: its own copy of our joining may have been sent before it knew us.
            let ask = Message::Request {
                origin: peer.clone(),
            }
            .encode();
            actions.push(GossipAction::Send { peer, payload: ask });
        }
        actions
    }

    /// Handles a payload from peer `from`; a bad payload changes nothing.
    pub fn on_payload(
        &mut self,
        from: &str,
        payload: &[u8],
        now: Instant,
    ) -> Result<Vec<GossipAction>, WireError> {
        let msg = Message::decode(payload)?;
        if !self.peers.contains(from) {
            // Not (yet) reachable: its entries would outlive its departure. It is asked on join.
            return Ok(Vec::new());
        }
        match msg {
            Message::Delta {
                origin, entries, ..
            } => {
                if origin != from {
                    return Err(WireError::Bad {
                        field: "origin",
                        at: 2,
                    });
                }
                let mut recs = write_records(&self.records);
                for e in entries {
                    recs.merge(e, now);
                }
                Ok(Vec::new())
            }
            Message::Full {
                origin,
                clock,
                entries,
            } => {
                if origin != from {
                    return Err(WireError::Bad {
                        field: "origin",
                        at: 2,
                    });
                }
                self.apply_full(&origin, clock, entries, now);
                Ok(Vec::new())
            }
            Message::Digest {
                origin,
                live,
                checksum: sum,
                ..
            } => {
                if origin != from {
                    return Err(WireError::Bad {
                        field: "origin",
                        at: 2,
                    });
                }
                let (mine_live, mine_sum) = self.summary(&origin);
                if mine_live == live && mine_sum == sum {
                    self.asked.remove(&origin);
                    return Ok(Vec::new());
                }
                let recently = self
                    .asked
                    .get(&origin)
                    .is_some_and(|&t| now < t + self.config.digest_interval);
                if recently {
                    return Ok(Vec::new());
                }
                self.asked.insert(origin.clone(), now);
                let payload = Message::Request {
                    origin: origin.clone(),
                }
                .encode();
                Ok(vec![GossipAction::Send {
                    peer: origin,
                    payload,
                }])
            }
            Message::Request { origin } => {
                if origin != self.me {
                    return Err(WireError::Bad {
                        field: "origin",
                        at: 2,
                    });
                }
                Ok(vec![GossipAction::Send {
                    peer: from.to_string(),
                    payload: self.full_state().encode(),
                }])
            }
        }
    }

    /// Timer: expires tombstones and broadcasts the digest when due.
    pub fn tick(&mut self, now: Instant) -> Vec<GossipAction> {
        write_records(&self.records).expire(now);
        if now < self.next_digest {
            return Vec::new();
        }
        self.next_digest = now + self.config.digest_interval;
        if self.peers.is_empty() {
            return Vec::new();
        }
        let (live, sum) = self.summary(&self.me.clone());
        let digest = Message::Digest {
            origin: self.me.clone(),
            clock: self.clock,
            live,
            checksum: sum,
        };
        vec![GossipAction::Broadcast(digest.encode())]
    }

    fn next_version(&mut self, now: Instant) -> u64 {
        let wall = self
            .start_wall_ms
            .saturating_add(now.saturating_duration_since(self.start).as_millis() as u64);
        self.clock = self.clock.saturating_add(1).max(wall);
        self.clock
    }

    fn delta(&self, entries: Vec<Entry>) -> Vec<GossipAction> {
        if self.peers.is_empty() {
            return Vec::new();
        }
        let msg = Message::Delta {
            origin: self.me.clone(),
            clock: self.clock,
            entries,
        };
        vec![GossipAction::Broadcast(msg.encode())]
    }

    fn full_state(&self) -> Message {
        let entries = read_records(&self.records)
            .origin_entries(&self.me)
            .collect();
        Message::Full {
            origin: self.me.clone(),
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
    fn apply_full(&mut self, origin: &str, clock: u64, entries: Vec<Entry>, now: Instant) {
        let mut recs = write_records(&self.records);
        let keep: HashSet<&EntryKey> = entries.iter().map(|e| &e.key).collect();
        let stale: Vec<EntryKey> = recs
            .origin_entries(origin)
            .filter(|e| e.state.version <= clock && !keep.contains(&e.key))
            .map(|e| e.key)
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
                    "DNS entry refused: its name already has {} addresses",
                    crate::records::MAX_ADDRS_PER_NAME
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, VecDeque};

    /// Small deterministic generator (xorshift64*) so runs repeat exactly per seed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// In-memory mesh of gossip cores with message loss.
    struct Sim {
        nodes: BTreeMap<String, DnsGossip>,
        queue: VecDeque<(String, String, Vec<u8>)>,
        rng: Rng,
        loss_percent: u64,
        now: Instant,
        wall: u64,
    }

    impl Sim {
        fn new(n: usize, seed: u64, loss_percent: u64) -> Sim {
            let now = Instant::now();
            let mut sim = Sim {
                nodes: BTreeMap::new(),
                queue: VecDeque::new(),
                rng: Rng(seed | 1),
                loss_percent,
                now,
                wall: 1_000_000,
            };
            for i in 0..n {
                sim.start(&format!("p{i}"));
            }
            sim.connect_all();
            sim
        }
        fn start(&mut self, name: &str) {
            let g = DnsGossip::new(name, GossipConfig::default(), self.now, self.wall).unwrap();
            self.nodes.insert(name.to_string(), g);
        }
        fn connect_all(&mut self) {
            let names: Vec<String> = self.nodes.keys().cloned().collect();
            for n in names.clone() {
                let acts = self
                    .nodes
                    .get_mut(&n)
                    .unwrap()
                    .peers_changed(names.clone(), self.now);
                self.push(&n, acts);
            }
        }
        fn push(&mut self, from: &str, actions: Vec<GossipAction>) {
            for a in actions {
                match a {
                    GossipAction::Broadcast(p) => {
                        for to in self.nodes.keys() {
                            if to != from {
                                self.queue
                                    .push_back((from.to_string(), to.clone(), p.clone()));
                            }
                        }
                    }
                    GossipAction::Send { peer, payload } => {
                        self.queue.push_back((from.to_string(), peer, payload))
                    }
                }
            }
        }
        /// Delivers queued messages (dropping some) until the queue is empty.
        fn deliver(&mut self) {
            while let Some((from, to, p)) = self.queue.pop_front() {
                if self.rng.below(100) < self.loss_percent {
                    continue;
                }
                if let Some(node) = self.nodes.get_mut(&to) {
                    let acts = node.on_payload(&from, &p, self.now).expect("valid payload");
                    self.push(&to, acts);
                }
            }
        }
        fn advance(&mut self, d: Duration) {
            self.now += d;
            self.wall += d.as_millis() as u64;
            let names: Vec<String> = self.nodes.keys().cloned().collect();
            for n in names {
                let acts = self.nodes.get_mut(&n).unwrap().tick(self.now);
                self.push(&n, acts);
            }
            self.deliver();
        }
        fn view(&self, node: &str) -> Vec<(String, String, String, Ipv4Addr)> {
            let recs = read_records(&self.nodes[node].records);
            recs.live_entries()
                .map(|e| (e.key.origin, e.key.container, e.key.hostname, e.key.addr))
                .collect()
        }
        fn converged(&self) -> bool {
            let first = self.nodes.keys().next().unwrap();
            self.nodes.keys().all(|n| self.view(n) == self.view(first))
        }
        fn lookup(&self, node: &str, name: &str) -> Vec<Ipv4Addr> {
            read_records(&self.nodes[node].records).lookup(name)
        }
    }

    #[test]
    fn add_and_remove_reach_every_peer_at_once_without_loss() {
        let mut sim = Sim::new(3, 1, 0);
        sim.deliver();
        let acts = sim
            .nodes
            .get_mut("p0")
            .unwrap()
            .add("c1", "web.weft.local", Ipv4Addr::new(10, 32, 0, 1), sim.now)
            .unwrap();
        sim.push("p0", acts);
        let acts = sim
            .nodes
            .get_mut("p1")
            .unwrap()
            .add("c2", "web.weft.local", Ipv4Addr::new(10, 32, 0, 2), sim.now)
            .unwrap();
        sim.push("p1", acts);
        sim.deliver();
        for n in ["p0", "p1", "p2"] {
            assert_eq!(
                sim.lookup(n, "web.weft.local."),
                vec![Ipv4Addr::new(10, 32, 0, 1), Ipv4Addr::new(10, 32, 0, 2)]
            );
        }
        // Removal goes out as a delta: delivered without any tick.
        let filter = RemoveFilter {
            container: Some("c1".into()),
            ..Default::default()
        };
        let (n, acts) = sim
            .nodes
            .get_mut("p0")
            .unwrap()
            .remove(&filter, sim.now)
            .unwrap();
        assert_eq!(n, 1);
        sim.push("p0", acts);
        sim.deliver();
        for n in ["p0", "p1", "p2"] {
            assert_eq!(
                sim.lookup(n, "web.weft.local."),
                vec![Ipv4Addr::new(10, 32, 0, 2)],
                "on {n}"
            );
        }
    }

    #[test]
    fn peers_converge_under_message_loss() {
        for seed in [3, 17, 99, 1234, 98765] {
            let mut sim = Sim::new(5, seed, 30);
            sim.deliver();
            let names: Vec<String> = sim.nodes.keys().cloned().collect();
            for step in 0..200u32 {
                let who = names[sim.rng.below(names.len() as u64) as usize].clone();
                let c = format!("c{}", sim.rng.below(8));
                let host = format!("h{}.weft.local", sim.rng.below(4));
                let addr = Ipv4Addr::new(10, 32, sim.rng.below(4) as u8, sim.rng.below(8) as u8);
                let now = sim.now;
                let node = sim.nodes.get_mut(&who).unwrap();
                let acts = if sim.rng.below(3) == 0 {
                    let f = RemoveFilter {
                        container: Some(c),
                        ..Default::default()
                    };
                    node.remove(&f, now).unwrap().1
                } else {
                    node.add(&c, &host, addr, now).unwrap()
                };
                sim.push(&who, acts);
                if step % 10 == 0 {
                    sim.advance(Duration::from_millis(700));
                }
            }
            // Keep losing messages: digests repeat, so the peers still agree in bounded time.
            let mut rounds = 0;
            while !sim.converged() {
                rounds += 1;
                assert!(
                    rounds < 60,
                    "seed {seed}: no convergence after {rounds} digest rounds"
                );
                sim.advance(Duration::from_secs(5));
            }
            // And every peer holds exactly each origin's own view of itself.
            let mut truth: Vec<_> = names
                .iter()
                .flat_map(|n| sim.view(n).into_iter().filter(move |e| &e.0 == n))
                .collect();
            truth.sort();
            assert_eq!(sim.view("p0"), truth, "seed {seed}");
        }
    }

    #[test]
    fn dead_peer_names_vanish_and_come_back_with_it() {
        let mut sim = Sim::new(3, 5, 0);
        let acts = sim
            .nodes
            .get_mut("p2")
            .unwrap()
            .add("c9", "db.weft.local", Ipv4Addr::new(10, 32, 9, 9), sim.now)
            .unwrap();
        sim.push("p2", acts);
        sim.deliver();
        assert_eq!(
            sim.lookup("p0", "db.weft.local."),
            vec![Ipv4Addr::new(10, 32, 9, 9)]
        );
        // p2 becomes unreachable for p0 and p1.
        for n in ["p0", "p1"] {
            let now = sim.now;
            let acts = sim
                .nodes
                .get_mut(n)
                .unwrap()
                .peers_changed(["p0", "p1"], now);
            sim.push(n, acts);
        }
        // A late delta of p2 arriving after it is gone is not taken.
        let acts = sim
            .nodes
            .get_mut("p2")
            .unwrap()
            .add("c8", "x.weft.local", Ipv4Addr::new(10, 32, 9, 8), sim.now)
            .unwrap();
        sim.push("p2", acts);
        sim.deliver();
        assert!(sim.lookup("p0", "db.weft.local.").is_empty());
        assert!(sim.lookup("p1", "x.weft.local.").is_empty());
        // It comes back: the join exchange brings its names back.
        sim.connect_all();
        sim.deliver();
        assert_eq!(
            sim.lookup("p1", "db.weft.local."),
            vec![Ipv4Addr::new(10, 32, 9, 9)]
        );
        assert_eq!(
            sim.lookup("p0", "x.weft.local."),
            vec![Ipv4Addr::new(10, 32, 9, 8)]
        );
    }

    #[test]
    fn a_new_peer_catches_up_and_a_restarted_peer_replaces_its_old_names() {
        let mut sim = Sim::new(2, 11, 0);
        let acts = sim
            .nodes
            .get_mut("p0")
            .unwrap()
            .add("c1", "a.weft.local", Ipv4Addr::new(10, 32, 0, 1), sim.now)
            .unwrap();
        sim.push("p0", acts);
        let acts = sim
            .nodes
            .get_mut("p1")
            .unwrap()
            .add("c2", "b.weft.local", Ipv4Addr::new(10, 32, 0, 2), sim.now)
            .unwrap();
        sim.push("p1", acts);
        sim.deliver();
        sim.start("p2");
        sim.connect_all();
        sim.deliver();
        assert!(sim.converged());
        assert_eq!(
            sim.lookup("p2", "a.weft.local."),
            vec![Ipv4Addr::new(10, 32, 0, 1)]
        );
        // p1 restarts (same name, empty store) without the others noticing it was gone,
        // then re-adds only one of its old names, under a new address.
        sim.advance(Duration::from_secs(1));
        sim.start("p1");
        let names: Vec<String> = sim.nodes.keys().cloned().collect();
        let now = sim.now;
        let acts = sim.nodes.get_mut("p1").unwrap().peers_changed(names, now);
        sim.push("p1", acts);
        let acts = sim
            .nodes
            .get_mut("p1")
            .unwrap()
            .add("c3", "c.weft.local", Ipv4Addr::new(10, 32, 0, 3), now)
            .unwrap();
        sim.push("p1", acts);
        sim.deliver();
        assert!(sim.converged());
        for n in ["p0", "p2"] {
            assert!(
                sim.lookup(n, "b.weft.local.").is_empty(),
                "stale name of old p1 on {n}"
            );
            assert_eq!(
                sim.lookup(n, "c.weft.local."),
                vec![Ipv4Addr::new(10, 32, 0, 3)]
            );
        }
    }

    #[test]
    fn bad_payloads_and_impostors_change_nothing() {
        let now = Instant::now();
        let mut g = DnsGossip::new("me", GossipConfig::default(), now, 0).unwrap();
        g.peers_changed(["a", "b"], now);
        assert!(g.on_payload("a", &[1, 2, 3], now).is_err());
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
        assert!(g.on_payload("a", &forged.encode(), now).is_err());
        assert!(read_records(&g.records).is_empty());
        assert!(matches!(
            g.remove(&RemoveFilter::default(), now),
            Err(DnsError::EmptyRemoval)
        ));
        assert!(g.add("c", "bad name", Ipv4Addr::LOCALHOST, now).is_err());
    }
}
