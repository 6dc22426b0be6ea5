//! The IPAM state machine: requests, messages, peer changes and ticks in; sends, persists and
//! replies out.
//!
//! Sequencing contract for the driver: execute actions in the order given. A `Persist` must
//! be made durable and then reported with `Event::Persisted { token }`. Every `Send`,
//! `Broadcast` and `Reply` that depends on state not yet persisted is held inside the core and
//! only returned by the `handle` call that receives the matching `Persisted`. So a reply is
//! never sent, and space never leaves this peer, before the state behind it is on disk.
//! At most one `Persist` is outstanding: changes made while it is in flight go out in one
//! snapshot when it is acknowledged (group commit), so the driver never queues persists.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::addr::{fmt_addr, Addr, Cidr};
use crate::consensus::{
    choose_value, consensus_ring, quorum, seed_ring, AcceptorState, Ballot, InitMode, Phase,
    Proposal,
};
use crate::error::IpamError;
use crate::messages::{DenyReason, Message, RingKind};
use crate::persist::{usable, PersistedAlloc, PersistedState, Quarantine};
use crate::ring::Ring;
use crate::space::Space;

pub use crate::events::{Action, Event, IpamConfig, Millis, Reply, RequestId};

#[derive(Debug, Clone)]
pub(crate) enum Want {
    Alloc(Cidr),
    Claim(Cidr),
    Prime,
}

#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) id: RequestId,
    pub(crate) owner: String,
    pub(crate) want: Want,
    pub(crate) since: Millis,
}

#[derive(Debug, Clone)]
pub(crate) struct Ask {
    pub(crate) to: String,
    pub(crate) nonce: u64,
    pub(crate) sent: Millis,
    /// The peer said it does not own what we asked for: ask again once its ring arrives.
    pub(crate) stale: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Leaving {
    pub(crate) id: RequestId,
    pub(crate) waiting: BTreeSet<String>,
    pub(crate) given: Vec<(String, u64)>,
    pub(crate) since: Millis,
    pub(crate) last_sent: Millis,
}

/// The IPAM core of one peer.
#[derive(Debug)]
pub struct Allocator {
    pub(crate) name: String,
    pub(crate) config: IpamConfig,
    pub(crate) default_subnet: Cidr,
    pub(crate) ring: Option<Ring>,
    pub(crate) space: Space,
    pub(crate) acceptor: AcceptorState,
    pub(crate) proposal: Option<Proposal>,
    pub(crate) last_proposal: Option<Millis>,
    pub(crate) max_round: u64,
    pub(crate) wanting: bool,
    pub(crate) last_want_sent: Option<Millis>,
    pub(crate) participants: BTreeMap<String, u8>,
    pub(crate) reachable: BTreeSet<String>,
    pub(crate) pending: Vec<Pending>,
    /// Outstanding space requests by (subnet, wanted address).
    pub(crate) asks: BTreeMap<(Cidr, Option<Addr>), Ask>,
    /// Peers that said "no space" in a subnet, and when.
    pub(crate) denied: BTreeMap<Cidr, BTreeMap<String, Millis>>,
    pub(crate) next_nonce: u64,
    pub(crate) persist_token: u64,
    pub(crate) acked_token: u64,
    pub(crate) held: VecDeque<(u64, Action)>,
    pub(crate) out: Vec<Action>,
    pub(crate) dirty: bool,
    pub(crate) gossip_due: bool,
    pub(crate) last_gossip: Millis,
    pub(crate) leaving: Option<Leaving>,
    pub(crate) left: bool,
    pub(crate) notes: BTreeMap<String, String>,
    pub(crate) bad_messages: u64,
    pub(crate) quarantines: Vec<Quarantine>,
    pub(crate) last_sync_sent: Millis,
    /// A persist is wanted but one is in flight: the next goes out when it is acknowledged
    /// (group commit: one snapshot per durable write, however many changes came in between).
    pub(crate) persist_wanted: bool,
    /// Allocation changes since free counts were last advertised: (address, +1 taken / -1 freed).
    pub(crate) touched: Vec<(Addr, i64)>,
    /// What we owned when free counts were last computed in full.
    pub(crate) counted_owned: Vec<(u64, u64)>,
    /// Next-fit cursor per subnet, so a released address is not handed out again at once.
    pub(crate) cursor: BTreeMap<Cidr, u64>,
    /// Whose turn it is for the periodic anti-entropy exchange.
    pub(crate) gossip_turn: usize,
    pub(crate) now: Millis,
}

impl Allocator {
    /// A core for peer `name`, restored from `restored` if the peer ran before.
    pub fn new(
        name: String,
        config: IpamConfig,
        restored: Option<PersistedState>,
    ) -> Result<Allocator, IpamError> {
        let range = config.range.subnet();
        if range != config.range {
            return Err(IpamError::BadConfig(format!(
                "--ipalloc-range {} has host bits set; use {}",
                config.range, range
            )));
        }
        if range.prefix > 30 {
            return Err(IpamError::BadConfig(format!(
                "--ipalloc-range {range} is too small; use a /30 or bigger"
            )));
        }
        let default_subnet = config.default_subnet.unwrap_or(range);
        if default_subnet.subnet() != default_subnet {
            return Err(IpamError::BadConfig(format!(
                "--ipalloc-default-subnet {} has host bits set; use {}",
                default_subnet,
                default_subnet.subnet()
            )));
        }
        if !range.contains_subnet(&default_subnet) {
            return Err(IpamError::BadConfig(format!(
                "--ipalloc-default-subnet {default_subnet} is not inside --ipalloc-range {range}"
            )));
        }
        match &config.init {
            InitMode::Consensus(0) => {
                return Err(IpamError::BadConfig(
                    "--ipalloc-init consensus=N needs N of 1 or more".into(),
                ))
            }
            InitMode::Seed(s) if s.is_empty() => {
                return Err(IpamError::BadConfig(
                    "--ipalloc-init seed= needs at least one peer name".into(),
                ))
            }
            _ => {}
        }
        if name.is_empty() {
            return Err(IpamError::BadConfig("peer name is empty".into()));
        }
        let mut a = Allocator {
            name: name.clone(),
            config: IpamConfig {
                range,
                default_subnet: Some(default_subnet),
                ..config
            },
            default_subnet,
            ring: None,
            space: Space::default(),
            acceptor: AcceptorState::default(),
            proposal: None,
            last_proposal: None,
            max_round: 0,
            wanting: false,
            last_want_sent: None,
            participants: BTreeMap::new(),
            reachable: BTreeSet::from([name.clone()]),
            pending: Vec::new(),
            asks: BTreeMap::new(),
            denied: BTreeMap::new(),
            next_nonce: 1,
            persist_token: 0,
            acked_token: 0,
            held: VecDeque::new(),
            out: Vec::new(),
            dirty: false,
            gossip_due: false,
            last_gossip: 0,
            leaving: None,
            left: false,
            notes: BTreeMap::new(),
            bad_messages: 0,
            quarantines: Vec::new(),
            last_sync_sent: 0,
            persist_wanted: false,
            touched: Vec::new(),
            counted_owned: Vec::new(),
            cursor: BTreeMap::new(),
            gossip_turn: crate::ring::stable_hash(&[name.as_str()]) as usize,
            now: 0,
        };
        if let Some(st) = restored {
            if st.name != name {
                return Err(IpamError::RestoreName {
                    persisted: st.name,
                    ours: name,
                });
            }
            if let Some(r) = &st.ring {
                if r.range() != range {
                    return Err(IpamError::RestoreRange {
                        persisted: r.range(),
                        configured: range,
                    });
                }
            }
            a.ring = st.ring;
            for pa in st.allocations {
                a.space.insert(pa.addr, &pa.owner, pa.prefix);
            }
            a.max_round = st.acceptor.promised.as_ref().map(|b| b.round).unwrap_or(0);
            a.acceptor = st.acceptor;
            a.quarantines = st.quarantines;
            a.check_lost_space();
        }
        Ok(a)
    }

    /// This peer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ring, once initialised.
    pub fn ring(&self) -> Option<&Ring> {
        self.ring.as_ref()
    }

    /// The allocations of this peer.
    pub fn space(&self) -> &Space {
        &self.space
    }

    /// The configuration in force (range and default subnet resolved).
    pub fn config(&self) -> &IpamConfig {
        &self.config
    }

    /// The state to persist now (the same as the last `Persist` once it is acknowledged).
    pub fn persisted_state(&self) -> PersistedState {
        PersistedState {
            name: self.name.clone(),
            ring: self.ring.clone(),
            allocations: self
                .space
                .all()
                .map(|(a, h)| PersistedAlloc {
                    addr: a,
                    prefix: h.prefix,
                    owner: h.owner.clone(),
                })
                .collect(),
            acceptor: self.acceptor.clone(),
            quarantines: self.quarantines.clone(),
        }
    }

    /// The intervals this peer allocates from: what it owns minus quarantined rmpeer space.
    pub fn usable_ranges(&self) -> Vec<(u64, u64)> {
        usable(self.ring.as_ref(), &self.name, &self.quarantines)
    }

    /// Feed one event; returns the actions to execute in order.
    pub fn handle(&mut self, now: Millis, event: Event) -> Vec<Action> {
        self.now = self.now.max(now);
        let mut released = Vec::new();
        match event {
            Event::Persisted { token } => {
                self.acked_token = self.acked_token.max(token.min(self.persist_token));
                while let Some((t, _)) = self.held.front() {
                    if *t > self.acked_token {
                        break;
                    }
                    if let Some((_, a)) = self.held.pop_front() {
                        released.push(a);
                    }
                }
                if self.persist_wanted && self.acked_token == self.persist_token {
                    self.persist_wanted = false;
                    self.persist_token += 1;
                    released.push(Action::Persist {
                        state: self.persisted_state(),
                        token: self.persist_token,
                    });
                }
            }
            Event::Allocate { id, owner, subnet } => {
                let subnet = subnet.map(|s| s.subnet()).unwrap_or(self.default_subnet);
                if let Err(e) = self.check_subnet(&subnet) {
                    self.reply(id, Err(e));
                } else {
                    self.queue(id, owner, Want::Alloc(subnet));
                }
            }
            Event::Claim { id, owner, addr } => {
                if let Err(e) = self.check_subnet(&addr.subnet()) {
                    self.reply(id, Err(e));
                } else if !addr.usable(addr.addr) {
                    self.reply(id, Err(IpamError::NotUsable { addr }));
                } else {
                    self.queue(id, owner, Want::Claim(addr));
                }
            }
            Event::Release { id, owner, addr } => {
                let r = self.space.release(&owner, addr);
                self.touched.extend(r.iter().map(|c| (c.addr, -1)));
                if !r.is_empty() {
                    self.dirty = true;
                }
                self.reply(id, Ok(Reply::Released(r)));
            }
            Event::Lookup { id, owner } => {
                let r = self.space.lookup(&owner);
                self.reply(id, Ok(Reply::Addresses(r)));
            }
            Event::Prime { id } => self.queue(id, String::new(), Want::Prime),
            Event::RmPeer { id, name } => {
                let r = self.rmpeer(&name);
                self.reply(id, r);
            }
            Event::Shutdown { id } => self.shutdown(id),
            Event::PeersChanged { reachable } => self.peers_changed(reachable),
            Event::Received { from, payload } => {
                if from != self.name {
                    match Message::decode(&payload) {
                        Ok(m) => self.on_message(&from, m),
                        Err(_) => self.bad_messages += 1,
                    }
                }
            }
            Event::Tick => self.tick(),
        }
        self.progress();
        self.finish(released)
    }

    fn check_subnet(&self, subnet: &Cidr) -> Result<(), IpamError> {
        if self.left {
            return Err(IpamError::ShuttingDown);
        }
        if !self.config.range.contains_subnet(subnet) {
            return Err(IpamError::OutsideRange {
                subnet: *subnet,
                range: self.config.range,
            });
        }
        Ok(())
    }

    fn queue(&mut self, id: RequestId, owner: String, want: Want) {
        if self.left {
            self.reply(id, Err(IpamError::ShuttingDown));
            return;
        }
        self.pending.push(Pending {
            id,
            owner,
            want,
            since: self.now,
        });
    }

    pub(crate) fn reply(&mut self, id: RequestId, result: Result<Reply, IpamError>) {
        self.out.push(Action::Reply { id, result });
    }

    fn send(&mut self, to: &str, m: Message) {
        self.out.push(Action::Send {
            to: to.to_string(),
            payload: m.encode(),
        });
    }

    fn broadcast(&mut self, m: Message) {
        self.out.push(Action::Broadcast {
            payload: m.encode(),
        });
    }

    fn broadcast_ring(&mut self) {
        if let Some(r) = &self.ring {
            let m = Message::Ring {
                ring: r.clone(),
                kind: RingKind::Gossip,
            };
            self.broadcast(m);
            self.gossip_due = false;
            self.last_gossip = self.now;
        }
    }

    /// Wrap up one `handle`: persist if needed and hold what depends on it.
    fn finish(&mut self, mut released: Vec<Action>) -> Vec<Action> {
        let out = std::mem::take(&mut self.out);
        if self.dirty {
            self.dirty = false;
            self.refresh_free();
            if self.acked_token < self.persist_token {
                self.persist_wanted = true;
            } else {
                self.persist_token += 1;
                released.push(Action::Persist {
                    state: self.persisted_state(),
                    token: self.persist_token,
                });
            }
        }
        if self.persist_wanted {
            // Depends on the persist that goes out once the one in flight is acknowledged.
            let t = self.persist_token + 1;
            self.held.extend(out.into_iter().map(|a| (t, a)));
        } else if self.acked_token < self.persist_token {
            let t = self.persist_token;
            self.held.extend(out.into_iter().map(|a| (t, a)));
        } else {
            released.extend(out);
        }
        released
    }

    /// Advertise our current free counts in our ring entries.
    fn refresh_free(&mut self) {
        let touched = std::mem::take(&mut self.touched);
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        let owned = ring.owned_by(&self.name);
        if owned == self.counted_owned {
            // Ownership unchanged: apply the allocation changes to the entries they hit.
            for (a, d) in touched {
                let Some((s, _, ent)) = ring.entry_at(u64::from(a)) else {
                    continue;
                };
                if ent.owner != self.name {
                    continue;
                }
                let was = ent.free;
                let free = (i64::from(was) - d).clamp(0, i64::from(u32::MAX)) as u32;
                // Free counts are hints that ride on the periodic exchange; only an entry
                // becoming full or no longer full is worth telling everyone at once.
                if ring.set_free(&self.name, s as Addr, free) && (was == 0) != (free == 0) {
                    self.gossip_due = true;
                }
            }
            return;
        }
        self.counted_owned = owned;
        let ours: Vec<(u64, u64)> = ring
            .entries()
            .filter(|(_, _, e)| e.owner == self.name)
            .map(|(s, e, _)| (s, e))
            .collect();
        // Ownership changed: whoever changed it broadcasts the ring.
        for (s, e) in ours {
            let free = (e - s).saturating_sub(self.space.count_in(s, e));
            ring.set_free(&self.name, s as Addr, free.min(u64::from(u32::MAX)) as u32);
        }
    }

    fn peers_changed(&mut self, reachable: BTreeSet<String>) {
        let mut reachable = reachable;
        reachable.insert(self.name.clone());
        let new_peer = reachable.difference(&self.reachable).next().is_some();
        self.reachable = reachable;
        if new_peer {
            if self.ring.is_some() {
                self.broadcast_ring();
            } else if self.wanting {
                self.send_want();
            }
        }
    }

    fn send_want(&mut self) {
        self.last_want_sent = Some(self.now);
        let mode = self.config.init.tag();
        self.broadcast(Message::Want { mode });
    }

    /// Start lazy initialisation.
    fn want_ring(&mut self) {
        if self.ring.is_some() {
            return;
        }
        if let InitMode::Seed(seeds) = &self.config.init {
            self.ring = Some(seed_ring(self.config.range, seeds));
            self.dirty = true;
            self.broadcast_ring();
            return;
        }
        if !self.wanting {
            self.wanting = true;
            self.send_want();
        }
    }

    fn tick(&mut self) {
        let now = self.now;
        let retry = self.config.retry_ms;
        // Requests that waited too long.
        let timeout = self.config.request_timeout_ms;
        let expired: Vec<Pending> = self
            .pending
            .iter()
            .filter(|p| now.saturating_sub(p.since) >= timeout)
            .cloned()
            .collect();
        for p in expired {
            let waiting_for = self.waiting_for(&p);
            self.pending.retain(|q| q.id != p.id);
            self.reply(
                p.id,
                Err(IpamError::TimedOut {
                    waited_ms: now.saturating_sub(p.since),
                    waiting_for,
                }),
            );
        }
        if self.ring.is_none() && self.wanting {
            if self
                .last_want_sent
                .is_none_or(|t| now.saturating_sub(t) >= retry)
            {
                self.send_want();
            }
            if let Some(p) = &self.proposal {
                if now.saturating_sub(p.started) >= retry {
                    self.proposal = None;
                }
            }
        }
        // Expire denials so a peer that freed space is asked again.
        for m in self.denied.values_mut() {
            m.retain(|_, t| now.saturating_sub(*t) < retry);
        }
        self.denied.retain(|_, m| !m.is_empty());
        self.asks.retain(|_, a| now.saturating_sub(a.sent) < retry);
        if let Some(l) = &self.leaving {
            if now.saturating_sub(l.since) >= timeout {
                let peers: Vec<String> = l.waiting.iter().cloned().collect();
                let id = l.id;
                self.leaving = None;
                let name = self.name.clone();
                self.reply(
                    id,
                    Err(IpamError::HandoverUnconfirmed {
                        peers: peers.join(", "),
                        name,
                    }),
                );
            } else if now.saturating_sub(l.last_sent) >= retry {
                let to: Vec<String> = l.waiting.iter().cloned().collect();
                if let Some(l) = self.leaving.as_mut() {
                    l.last_sent = now;
                }
                if let Some(r) = self.ring.clone() {
                    for p in to {
                        self.send(
                            &p,
                            Message::Ring {
                                ring: r.clone(),
                                kind: RingKind::Handover,
                            },
                        );
                    }
                }
            }
        }
        if !self.quarantines.is_empty() && now.saturating_sub(self.last_sync_sent) >= retry {
            self.send_sync();
        }
        if self.ring.is_some() {
            if self.gossip_due {
                self.broadcast_ring();
            } else if now.saturating_sub(self.last_gossip) >= self.config.gossip_ms {
                // Anti-entropy: one peer per period, in turn (it answers with what we lack,
                // we answer with what it lacks), so the cost grows with peers, not peers².
                let others: Vec<String> = self
                    .reachable
                    .iter()
                    .filter(|p| **p != self.name)
                    .cloned()
                    .collect();
                if !others.is_empty() {
                    let to = others[self.gossip_turn % others.len()].clone();
                    self.gossip_turn = self.gossip_turn.wrapping_add(1);
                    if let Some(ring) = self.ring.clone() {
                        self.send(
                            &to,
                            Message::Ring {
                                ring,
                                kind: RingKind::Exchange,
                            },
                        );
                    }
                }
                self.last_gossip = now;
            }
        }
    }

    /// Serve what can be served, start what must be asked for.
    fn progress(&mut self) {
        if self.pending.is_empty() {
            self.consensus_step();
            return;
        }
        if self.ring.is_none() {
            self.want_ring();
            self.consensus_step();
            if self.ring.is_none() {
                return;
            }
        }
        let pending = std::mem::take(&mut self.pending);
        let mut keep = Vec::new();
        let mut needed: BTreeSet<(Cidr, Option<Addr>)> = BTreeSet::new();
        for p in pending {
            match self.try_serve(&p) {
                Served::Done(r) => self.reply(p.id, r),
                Served::Wait(key) => {
                    if let Some(k) = key {
                        needed.insert(k);
                    }
                    keep.push(p);
                }
            }
        }
        self.pending = keep;
        for k in needed {
            self.ensure_ask(k);
        }
    }

    fn try_serve(&mut self, p: &Pending) -> Served {
        let Some(ring) = &self.ring else {
            return Served::Wait(None);
        };
        match &p.want {
            Want::Prime => Served::Done(Ok(Reply::Primed)),
            Want::Alloc(subnet) => {
                if let Some(a) = self.space.existing_in(&p.owner, subnet) {
                    return Served::Done(Ok(Reply::Allocated(Cidr {
                        addr: a,
                        prefix: subnet.prefix,
                    })));
                }
                let owned = self.usable_ranges();
                let from = self.cursor.get(subnet).copied().unwrap_or(0);
                if let Some(a) = self.space.next_free(&owned, subnet, from) {
                    self.space.insert(a, &p.owner, subnet.prefix);
                    self.touched.push((a, 1));
                    self.cursor.insert(*subnet, u64::from(a) + 1);
                    self.dirty = true;
                    return Served::Done(Ok(Reply::Allocated(Cidr {
                        addr: a,
                        prefix: subnet.prefix,
                    })));
                }
                if self.subnet_full(subnet) {
                    return Served::Done(Err(IpamError::SubnetFull { subnet: *subnet }));
                }
                Served::Wait(Some((*subnet, None)))
            }
            Want::Claim(c) => {
                let a = c.addr;
                if self.quarantines.iter().any(|q| {
                    q.ranges
                        .iter()
                        .any(|(s, e)| (*s..*e).contains(&u64::from(a)))
                }) {
                    return Served::Wait(None);
                }
                match ring.owner_of(a) {
                    Some(o) if o == self.name => match self.space.holder(a) {
                        Some(h) if h.owner == p.owner => Served::Done(Ok(Reply::Claimed(*c))),
                        Some(h) => Served::Done(Err(IpamError::AddressInUse {
                            addr: *c,
                            holder: h.owner.clone(),
                            peer: self.name.clone(),
                        })),
                        None => {
                            self.space.insert(a, &p.owner, c.prefix);
                            self.touched.push((a, 1));
                            self.dirty = true;
                            Served::Done(Ok(Reply::Claimed(*c)))
                        }
                    },
                    _ => Served::Wait(Some((c.subnet(), Some(a)))),
                }
            }
        }
    }

    /// Every other owner of space in `subnet` is reachable and recently said it has none.
    fn subnet_full(&self, subnet: &Cidr) -> bool {
        let Some(ring) = &self.ring else {
            return false;
        };
        let denied = self.denied.get(subnet);
        let sub = (u64::from(subnet.network()), subnet.end());
        let mut owners: BTreeSet<&str> = BTreeSet::new();
        for (s, e, ent) in ring.entries() {
            if crate::addr::intersect((s, e), sub).is_some() && ent.owner != self.name {
                owners.insert(ent.owner.as_str());
            }
        }
        owners
            .iter()
            .all(|o| self.reachable.contains(*o) && denied.is_some_and(|d| d.contains_key(*o)))
    }

    /// The reachable peer to ask for space in `subnet`: most advertised free first.
    pub(crate) fn choose_donor(&self, subnet: &Cidr) -> Option<String> {
        let ring = self.ring.as_ref()?;
        let denied = self.denied.get(subnet);
        ring.owners()
            .into_iter()
            .filter(|o| *o != self.name && self.reachable.contains(o))
            .filter(|o| !denied.is_some_and(|d| d.contains_key(o)))
            .map(|o| (ring.advertised_free(&o, subnet), o))
            .filter(|(f, _)| *f > 0)
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
            .map(|(_, o)| o)
            .or_else(|| {
                // Hints may be stale: ask any reachable owner in the subnet not yet denied.
                let sub = (u64::from(subnet.network()), subnet.end());
                ring.entries()
                    .filter(|(s, e, _)| crate::addr::intersect((*s, *e), sub).is_some())
                    .map(|(_, _, ent)| ent.owner.clone())
                    .find(|o| {
                        *o != self.name
                            && self.reachable.contains(o)
                            && !denied.is_some_and(|d| d.contains_key(o))
                    })
            })
    }

    fn ensure_ask(&mut self, key: (Cidr, Option<Addr>)) {
        if self.asks.contains_key(&key) {
            return;
        }
        let to = match key.1 {
            Some(a) => self
                .ring
                .as_ref()
                .and_then(|r| r.owner_of(a))
                .map(|s| s.to_string())
                .filter(|o| *o != self.name && self.reachable.contains(o)),
            None => self.choose_donor(&key.0),
        };
        let Some(to) = to else {
            return;
        };
        let nonce = self.next_nonce;
        self.next_nonce += 1;
        self.asks.insert(
            key,
            Ask {
                to: to.clone(),
                nonce,
                sent: self.now,
                stale: false,
            },
        );
        self.send(
            &to,
            Message::SpaceRequest {
                nonce,
                subnet: key.0,
                want: key.1,
            },
        );
    }

    fn on_message(&mut self, from: &str, m: Message) {
        match m {
            Message::Ring { ring, kind } => self.on_ring(from, ring, kind),
            Message::SpaceGranted { nonce, ring } => {
                // Answered: if the space given is not enough, the next ask goes out at once.
                self.asks.retain(|_, a| a.nonce != nonce);
                self.on_ring(from, ring, RingKind::Gossip);
            }
            Message::HandoverAck => {
                let mut done = None;
                if let Some(l) = self.leaving.as_mut() {
                    l.waiting.remove(from);
                    if l.waiting.is_empty() {
                        done = Some((l.id, l.given.clone()));
                    }
                }
                if let Some((id, given)) = done {
                    self.leaving = None;
                    self.reply(id, Ok(Reply::HandedOver(given)));
                }
            }
            Message::SpaceRequest {
                nonce,
                subnet,
                want,
            } => self.on_space_request(from, nonce, subnet, want),
            Message::SpaceDenied { nonce, reason } => self.on_denied(from, nonce, reason),
            Message::Want { mode } => {
                self.participants.insert(from.to_string(), mode);
                if self.ring.is_some() {
                    if let Some(r) = self.ring.clone() {
                        self.send(
                            from,
                            Message::Ring {
                                ring: r,
                                kind: RingKind::Gossip,
                            },
                        );
                    }
                } else if !matches!(self.config.init, InitMode::Observer) {
                    self.want_ring();
                }
            }
            Message::Prepare { ballot } => {
                self.participants.insert(from.to_string(), 0);
                self.max_round = self.max_round.max(ballot.round);
                if let Some(r) = self.ring.clone() {
                    self.send(
                        from,
                        Message::Ring {
                            ring: r,
                            kind: RingKind::Gossip,
                        },
                    );
                    return;
                }
                if !matches!(self.config.init, InitMode::Consensus(_)) {
                    return;
                }
                self.wanting = true;
                match self.acceptor.on_prepare(&ballot) {
                    Ok(accepted) => {
                        self.dirty = true;
                        self.send(from, Message::Promise { ballot, accepted });
                    }
                    Err(promised) => self.send(from, Message::Nack { ballot, promised }),
                }
            }
            Message::Accept { ballot, value } => {
                if self.ring.is_some()
                    || value.is_empty()
                    || !matches!(self.config.init, InitMode::Consensus(_))
                {
                    return;
                }
                self.max_round = self.max_round.max(ballot.round);
                match self.acceptor.on_accept(&ballot, &value) {
                    Ok(()) => {
                        self.dirty = true;
                        self.send(from, Message::Accepted { ballot });
                    }
                    Err(promised) => self.send(from, Message::Nack { ballot, promised }),
                }
            }
            Message::Promise { ballot, accepted } => {
                if let Some(p) = self.proposal.as_mut() {
                    if p.ballot == ballot {
                        if let Phase::Preparing(promises) = &mut p.phase {
                            promises.insert(from.to_string(), accepted);
                        }
                    }
                }
                self.consensus_step();
            }
            Message::Accepted { ballot } => {
                if let Some(p) = self.proposal.as_mut() {
                    if p.ballot == ballot {
                        if let Phase::Accepting(_, acks) = &mut p.phase {
                            acks.insert(from.to_string());
                        }
                    }
                }
                self.consensus_step();
            }
            Message::Nack { ballot, promised } => {
                self.max_round = self.max_round.max(promised.round);
                if self.proposal.as_ref().is_some_and(|p| p.ballot == ballot) {
                    self.proposal = None;
                }
            }
        }
    }

    fn on_ring(&mut self, from: &str, theirs: Ring, kind: RingKind) {
        if theirs.range() != self.config.range {
            self.notes.insert(
                format!("range:{from}"),
                format!(
                    "peer {from} uses range {}, this peer {}: they cannot share addresses; give both the same --ipalloc-range",
                    theirs.range(),
                    self.config.range
                ),
            );
            return;
        }
        self.asks.retain(|_, a| !(a.stale && a.to == from));
        let before = self.ring.as_ref().map(|r| r.owned_by(&self.name));
        let mine_before = self.my_entries();
        self.yield_taken_space(&theirs);
        match self.ring.as_mut() {
            None => {
                self.ring = Some(theirs);
                self.wanting = false;
                self.proposal = None;
                self.dirty = true;
            }
            Some(ours) => match ours.merge(&theirs) {
                Err(e) => {
                    self.notes
                        .insert(format!("ring:{from}"), format!("peer {from}: {e}"));
                    return;
                }
                Ok(outcome) => {
                    // A broadcast reached everyone, so nothing to re-gossip; in an exchange,
                    // tell the sender what it lacks (directly, not to all).
                    if kind == RingKind::Exchange && *ours != theirs {
                        let ring = ours.clone();
                        self.send(
                            from,
                            Message::Ring {
                                ring,
                                kind: RingKind::Gossip,
                            },
                        );
                    }
                    if !outcome.conflicts.is_empty() {
                        self.notes.insert(
                            "conflict".into(),
                            format!(
                                "ring conflict at {} tokens (two peers ran rmpeer on the same peer?)",
                                outcome.conflicts.len()
                            ),
                        );
                    }
                }
            },
        }
        let before_q = self.quarantines.len();
        for q in self.quarantines.iter_mut() {
            q.waiting.remove(from);
        }
        self.quarantines.retain(|q| !q.waiting.is_empty());
        if self.quarantines.len() != before_q {
            self.dirty = true;
        }
        if self.my_entries() != mine_before {
            // Someone else wrote one of our entries (a yield, a handover): we are the
            // authority on our free counts, so recount them all (with a newer version).
            self.counted_owned.clear();
            self.dirty = true;
        }
        let after = self.ring.as_ref().map(|r| r.owned_by(&self.name));
        if before != after {
            self.dirty = true;
            self.check_lost_space();
        }
        if kind == RingKind::Handover {
            // The ack must follow the persist of the merged ring.
            self.dirty = true;
            self.send(from, Message::HandoverAck);
        }
    }

    /// Our entries: (token, version, free).
    fn my_entries(&self) -> Vec<(Addr, u32, u32)> {
        self.ring
            .as_ref()
            .map(|r| {
                r.tokens()
                    .iter()
                    .filter(|(_, e)| e.owner == self.name)
                    .map(|(t, e)| (*t, e.version, e.free))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Space taken with rmpeer that the dead peer had given to a live peer (which we learn from
    /// that peer's ring, the reason for the quarantine) goes to that peer: same generation of
    /// version, another live owner means the dead peer handed it over before dying.
    fn yield_taken_space(&mut self, theirs: &Ring) {
        let Some(ours) = self.ring.as_mut() else {
            return;
        };
        let mut yields = Vec::new();
        for q in &self.quarantines {
            for (t, taken_at) in &q.tokens {
                let Some(te) = theirs.tokens().get(t) else {
                    continue;
                };
                // Another live owner at or above the take-over's version got the token from
                // the dead peer (or by a concurrent rmpeer): it keeps it.
                if te.owner == q.dead || te.owner == self.name || te.version < *taken_at {
                    continue;
                }
                if ours.tokens().get(t).is_some_and(|oe| oe.owner == self.name) {
                    yields.push((*t, te.owner.clone(), te.version));
                }
            }
        }
        for (t, to, v) in yields {
            ours.yield_token(&self.name, t, &to, v);
            self.gossip_due = true;
        }
    }

    /// Note allocations that lie in space this peer no longer owns (only rmpeer of a live
    /// peer, or two rmpeers at once, can do that).
    fn check_lost_space(&mut self) {
        let Some(ring) = &self.ring else { return };
        let lost: Vec<Addr> = self
            .space
            .all()
            .filter(|(a, _)| ring.owner_of(*a) != Some(self.name.as_str()))
            .map(|(a, _)| a)
            .collect();
        if let Some(a) = lost.first() {
            self.notes.insert(
                "lost".into(),
                format!(
                    "{} addresses held here (first {}) are owned by other peers now: was this peer removed with rmpeer while it was alive?",
                    lost.len(),
                    fmt_addr(*a)
                ),
            );
        }
    }

    fn on_space_request(&mut self, from: &str, nonce: u64, subnet: Cidr, want: Option<Addr>) {
        let deny = |s: &mut Allocator, reason| s.send(from, Message::SpaceDenied { nonce, reason });
        // Someone needs space: a reason to initialise (a seed peer creates its ring now).
        self.want_ring();
        let Some(ring) = &self.ring else {
            return deny(self, DenyReason::NotOwner);
        };
        if ring.range() != self.config.range || !self.config.range.contains_subnet(&subnet) {
            return deny(self, DenyReason::NotOwner);
        }
        let give = match want {
            Some(a) => {
                let usable = self
                    .usable_ranges()
                    .iter()
                    .any(|(s, e)| (*s..*e).contains(&u64::from(a)));
                if !usable {
                    return deny(self, DenyReason::NotOwner);
                }
                if let Some(h) = self.space.holder(a) {
                    let h = h.owner.clone();
                    return deny(self, DenyReason::InUse(h));
                }
                (u64::from(a), u64::from(a) + 1)
            }
            None => {
                let owned = self.usable_ranges();
                match self.space.largest_free_run(&owned, &subnet) {
                    None => return deny(self, DenyReason::NoSpace),
                    Some((s, e)) if e - s == 1 => (s, e),
                    Some((s, e)) => (s + (e - s) / 2, e),
                }
            }
        };
        let name = self.name.clone();
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        if ring.transfer(&name, give.0, give.1, from).is_err() {
            return deny(self, DenyReason::NotOwner);
        }
        self.dirty = true;
        if let Some(ring) = self.ring.clone() {
            self.send(from, Message::SpaceGranted { nonce, ring });
        }
        self.broadcast_ring();
    }

    fn on_denied(&mut self, from: &str, nonce: u64, reason: DenyReason) {
        let Some(key) = self
            .asks
            .iter()
            .find(|(_, a)| a.nonce == nonce && a.to == from)
            .map(|(k, _)| *k)
        else {
            return;
        };
        match reason {
            DenyReason::NoSpace => {
                self.asks.remove(&key);
                self.denied
                    .entry(key.0)
                    .or_default()
                    .insert(from.to_string(), self.now);
            }
            DenyReason::InUse(holder) => {
                self.asks.remove(&key);
                let Some(a) = key.1 else { return };
                let failed: Vec<Pending> = self
                    .pending
                    .iter()
                    .filter(|p| matches!(&p.want, Want::Claim(c) if c.addr == a))
                    .cloned()
                    .collect();
                for p in failed {
                    self.pending.retain(|q| q.id != p.id);
                    if let Want::Claim(c) = p.want {
                        self.reply(
                            p.id,
                            Err(IpamError::AddressInUse {
                                addr: c,
                                holder: holder.clone(),
                                peer: from.to_string(),
                            }),
                        );
                    }
                }
            }
            // One of the rings is stale: ask again when the peer's ring arrives (or the ask
            // expires), not at once, so we do not hammer the peer.
            DenyReason::NotOwner => {
                if let Some(a) = self.asks.get_mut(&key) {
                    a.stale = true;
                }
            }
        }
    }

    /// The consensus peers we know of that are reachable (us included when we take part).
    pub(crate) fn consensus_peers(&self) -> BTreeSet<String> {
        let mut s: BTreeSet<String> = self
            .participants
            .iter()
            .filter(|(n, tag)| **tag == 0 && self.reachable.contains(*n))
            .map(|(n, _)| n.clone())
            .collect();
        if matches!(self.config.init, InitMode::Consensus(_)) {
            s.insert(self.name.clone());
        }
        s
    }

    fn consensus_step(&mut self) {
        let InitMode::Consensus(n) = self.config.init else {
            return;
        };
        if self.ring.is_some() || !self.wanting {
            return;
        }
        let q = quorum(n);
        // Advance a running proposal.
        let mut decided = None;
        let mut accept = None;
        if let Some(p) = self.proposal.as_mut() {
            match &mut p.phase {
                Phase::Preparing(promises) if promises.len() >= q => {
                    let value = choose_value(promises);
                    let mut acks = BTreeSet::new();
                    if self.acceptor.on_accept(&p.ballot, &value).is_ok() {
                        acks.insert(self.name.clone());
                    }
                    accept = Some((p.ballot.clone(), value.clone()));
                    p.phase = Phase::Accepting(value, acks);
                }
                Phase::Accepting(value, acks) if acks.len() >= q => {
                    decided = Some(value.clone());
                }
                _ => {}
            }
        }
        if let Some((ballot, value)) = accept {
            self.dirty = true;
            self.broadcast(Message::Accept { ballot, value });
            // A single-peer quorum decides at once.
            return self.consensus_step();
        }
        if let Some(value) = decided {
            self.ring = Some(consensus_ring(self.config.range, &value));
            self.proposal = None;
            self.wanting = false;
            self.dirty = true;
            self.broadcast_ring();
            return;
        }
        if self.proposal.is_some() {
            return;
        }
        // Only the lowest-named reachable participant proposes; others wait for it.
        let peers = self.consensus_peers();
        if peers.iter().next() != Some(&self.name) {
            return;
        }
        if self
            .last_proposal
            .is_some_and(|t| self.now.saturating_sub(t) < self.config.retry_ms)
        {
            return;
        }
        let ballot = Ballot {
            round: self.max_round + 1,
            proposer: self.name.clone(),
        };
        self.max_round = ballot.round;
        self.last_proposal = Some(self.now);
        let mut promises = BTreeMap::new();
        if let Ok(acc) = self.acceptor.on_prepare(&ballot) {
            promises.insert(self.name.clone(), acc);
        }
        self.dirty = true;
        self.proposal = Some(Proposal {
            ballot: ballot.clone(),
            started: self.now,
            phase: Phase::Preparing(promises),
        });
        self.broadcast(Message::Prepare { ballot });
        self.consensus_step();
    }

    fn rmpeer(&mut self, name: &str) -> Result<Reply, IpamError> {
        if name == self.name {
            return Err(IpamError::RmPeerSelf {
                name: name.to_string(),
            });
        }
        if self.reachable.contains(name) {
            return Err(IpamError::PeerReachable {
                name: name.to_string(),
            });
        }
        let status = self.status_line();
        let me = self.name.clone();
        let Some(ring) = self.ring.as_mut() else {
            return Err(IpamError::NotInitialised { status });
        };
        if ring.owned_count(name) == 0 {
            return Err(IpamError::UnknownPeer {
                name: name.to_string(),
                owners: ring.owners().join(", "),
            });
        }
        let ranges = ring.owned_by(name);
        let tokens: Vec<(Addr, u32)> = ring
            .tokens()
            .iter()
            .filter(|(_, e)| e.owner == name)
            .map(|(t, e)| (*t, e.version.saturating_add(1)))
            .collect();
        let mut waiting: BTreeSet<String> = ring.owners().into_iter().collect();
        let n = ring.take_over(name, &me);
        waiting.extend(self.reachable.iter().cloned());
        waiting.remove(name);
        waiting.remove(&me);
        for q in self.quarantines.iter_mut() {
            q.waiting.remove(name);
        }
        self.quarantines.retain(|q| !q.waiting.is_empty());
        if !waiting.is_empty() {
            self.quarantines.push(Quarantine {
                dead: name.to_string(),
                ranges,
                tokens,
                waiting,
            });
            self.send_sync();
        }
        self.participants.remove(name);
        self.dirty = true;
        self.broadcast_ring();
        Ok(Reply::RemovedPeer {
            name: name.to_string(),
            addresses: n,
        })
    }

    /// Ask the peers a quarantine waits for to send their rings (they answer `Want` with it).
    fn send_sync(&mut self) {
        self.last_sync_sent = self.now;
        let to: BTreeSet<String> = self
            .quarantines
            .iter()
            .flat_map(|q| q.waiting.iter().cloned())
            .filter(|p| self.reachable.contains(p))
            .collect();
        let mode = self.config.init.tag();
        for p in to {
            self.send(&p, Message::Want { mode });
        }
    }

    fn shutdown(&mut self, id: RequestId) {
        if self.left {
            self.reply(id, Err(IpamError::ShuttingDown));
            return;
        }
        let me = self.name.clone();
        let to: Vec<String> = self
            .reachable
            .iter()
            .filter(|p| **p != me)
            .cloned()
            .collect();
        let owned = self.ring.as_ref().map(|r| r.owned_count(&me)).unwrap_or(0);
        if owned > 0 && to.is_empty() {
            self.reply(id, Err(IpamError::NoPeerForHandover { name: me }));
            return;
        }
        self.left = true;
        for p in std::mem::take(&mut self.pending) {
            self.reply(p.id, Err(IpamError::ShuttingDown));
        }
        // Addresses given but not yet answered (their persist is in flight) go with the
        // space: the container must not get an address this peer no longer holds.
        for a in self
            .held
            .iter_mut()
            .map(|(_, a)| a)
            .chain(self.out.iter_mut())
        {
            if let Action::Reply { result, .. } = a {
                if matches!(result, Ok(Reply::Allocated(_)) | Ok(Reply::Claimed(_))) {
                    *result = Err(IpamError::ShuttingDown);
                }
            }
        }
        if owned == 0 {
            self.reply(id, Ok(Reply::HandedOver(Vec::new())));
            return;
        }
        self.space.clear();
        let given = match self.ring.as_mut() {
            Some(r) => r.hand_over(&me, &to),
            None => Vec::new(),
        };
        self.dirty = true;
        let waiting: BTreeSet<String> = given.iter().map(|(p, _)| p.clone()).collect();
        if let Some(r) = self.ring.clone() {
            for p in &waiting {
                self.send(
                    p,
                    Message::Ring {
                        ring: r.clone(),
                        kind: RingKind::Handover,
                    },
                );
            }
        }
        self.broadcast_ring();
        self.leaving = Some(Leaving {
            id,
            waiting,
            given,
            since: self.now,
            last_sent: self.now,
        });
    }
}

enum Served {
    Done(Result<Reply, IpamError>),
    Wait(Option<(Cidr, Option<Addr>)>),
}
