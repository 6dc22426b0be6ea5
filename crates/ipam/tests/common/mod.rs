//! A deterministic network of IPAM peers for tests: seeded randomness, latency, loss,
//! partitions, crashes with restart from the last acknowledged persist, and a record of which
//! container holds which address (to check that no address is ever held twice).

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use weft_ipam::{
    Action, Addr, Allocator, Cidr, Event, IpamConfig, IpamEffect, IpamError, PersistedState, Reply,
    RequestId,
};
use weft_mesh::Transmit;

/// splitmix64: small, seeded, good enough for fault schedules.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// A message on the wire: (arrives at, sequence, from, to, receiver incarnation, payload).
type InFlight = (u64, u64, usize, usize, u64, Vec<u8>);

pub struct Peer {
    pub name: String,
    pub cfg: IpamConfig,
    pub node: Option<Allocator>,
    /// The last state whose persist completed: what survives a crash.
    pub disk: Option<PersistedState>,
    /// Persists in flight: (completes at, token, state).
    pub persists: VecDeque<(u64, u64, PersistedState)>,
    pub removed: bool,
    pub incarnation: u64,
}

#[derive(Debug, Clone)]
pub struct Req {
    pub peer: usize,
    pub container: String,
    pub issued: u64,
    pub kind: &'static str,
}

pub struct Sim {
    pub now: u64,
    pub rng: Rng,
    pub peers: Vec<Peer>,
    seq: u64,
    net: BinaryHeap<Reverse<InFlight>>,
    pub side: Vec<u8>,
    pub loss_pct: u64,
    pub latency: (u64, u64),
    pub persist_delay: (u64, u64),
    pub tick_ms: u64,
    next_tick: u64,
    next_id: RequestId,
    pub outstanding: BTreeMap<RequestId, Req>,
    pub replies: BTreeMap<RequestId, Result<Reply, IpamError>>,
    /// Address -> (peer, container) for every container that got an address and still holds it.
    pub holders: BTreeMap<Addr, (usize, String)>,
    pub violations: Vec<String>,
    pub steps: u64,
    pub messages: u64,
    /// Chance (per mille) that a peer is killed right after it handled a message or a
    /// completed persist: crashes land between a reply and the next persist, mid-handover...
    pub crash_per_mille: u64,
    /// Peers crashed by `crash_per_mille`, for the test to restart.
    pub crashed: Vec<usize>,
}

impl Sim {
    pub fn new(seed: u64, cfgs: Vec<(String, IpamConfig)>) -> Sim {
        let peers = cfgs
            .into_iter()
            .map(|(name, cfg)| Peer {
                node: Some(Allocator::new(name.clone(), cfg.clone(), None).expect("config")),
                name,
                cfg,
                disk: None,
                persists: VecDeque::new(),
                removed: false,
                incarnation: 0,
            })
            .collect::<Vec<_>>();
        let n = peers.len();
        let mut s = Sim {
            now: 0,
            rng: Rng(seed),
            peers,
            seq: 0,
            net: BinaryHeap::new(),
            side: vec![0; n],
            loss_pct: 0,
            latency: (1, 5),
            persist_delay: (0, 3),
            tick_ms: 100,
            next_tick: 0,
            next_id: 1,
            outstanding: BTreeMap::new(),
            replies: BTreeMap::new(),
            holders: BTreeMap::new(),
            violations: Vec::new(),
            steps: 0,
            messages: 0,
            crash_per_mille: 0,
            crashed: Vec::new(),
        };
        s.notify_peers();
        s
    }

    pub fn up(&self, i: usize) -> bool {
        self.peers[i].node.is_some() && !self.peers[i].removed
    }

    pub fn connected(&self, i: usize, j: usize) -> bool {
        self.up(i) && self.up(j) && self.side[i] == self.side[j]
    }

    pub fn idx(&self, name: &str) -> Option<usize> {
        self.peers.iter().position(|p| p.name == name)
    }

    pub fn node(&self, i: usize) -> &Allocator {
        self.peers[i].node.as_ref().expect("peer is up")
    }

    pub fn notify_peers(&mut self) {
        for i in 0..self.peers.len() {
            if !self.up(i) {
                continue;
            }
            let reachable: BTreeSet<String> = (0..self.peers.len())
                .filter(|j| self.connected(i, *j))
                .map(|j| self.peers[j].name.clone())
                .collect();
            self.handle(i, Event::PeersChanged { reachable });
        }
    }

    pub fn handle(&mut self, i: usize, ev: Event) {
        self.steps += 1;
        let now = self.now;
        let Some(node) = self.peers[i].node.as_mut() else {
            return;
        };
        let actions = node.handle(now, ev);
        self.apply(i, actions);
    }

    fn transmit(&mut self, from: usize, to: usize, payload: Vec<u8>) {
        if self.rng.chance(self.loss_pct) {
            return;
        }
        let at = self.now + self.rng.between(self.latency.0, self.latency.1);
        self.seq += 1;
        let inc = self.peers[to].incarnation;
        self.net
            .push(Reverse((at, self.seq, from, to, inc, payload)));
    }

    fn apply(&mut self, i: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Transmit(Transmit::To { dst, payload, .. }) => {
                    if let Some(j) = self.idx(&dst) {
                        if self.connected(i, j) {
                            self.transmit(i, j, payload);
                        }
                    }
                }
                Action::Transmit(Transmit::Broadcast { payload, .. }) => {
                    for j in 0..self.peers.len() {
                        if j != i && self.connected(i, j) {
                            self.transmit(i, j, payload.clone());
                        }
                    }
                }
                Action::Effect(IpamEffect::Persist { state, token }) => {
                    let d = self.rng.between(self.persist_delay.0, self.persist_delay.1);
                    let last = self.peers[i].persists.back().map(|p| p.0).unwrap_or(0);
                    let at = (self.now + d).max(last);
                    self.peers[i].persists.push_back((at, token, state));
                }
                Action::Effect(IpamEffect::Reply { id, result }) => self.on_reply(i, id, result),
            }
        }
    }

    fn on_reply(&mut self, i: usize, id: RequestId, result: Result<Reply, IpamError>) {
        let Some(req) = self.outstanding.remove(&id) else {
            self.violations
                .push(format!("peer {i} answered unknown or lost request {id}"));
            return;
        };
        if req.peer != i {
            self.violations
                .push(format!("request {id} answered by wrong peer"));
        }
        match &result {
            Ok(Reply::Allocated(c)) | Ok(Reply::Claimed(c)) => {
                match self.holders.get(&c.addr) {
                    Some((p, cont)) if (*p, cont.as_str()) != (i, req.container.as_str()) => {
                        self.violations.push(format!(
                            "t={} address {c} given to {} on peer {} while {} on peer {} holds it",
                            self.now, req.container, self.peers[i].name, cont, self.peers[*p].name
                        ));
                    }
                    _ => {}
                }
                self.holders.insert(c.addr, (i, req.container.clone()));
            }
            Ok(Reply::Released(list)) => {
                for c in list {
                    if self.holders.get(&c.addr).is_some_and(|(p, _)| *p == i) {
                        self.holders.remove(&c.addr);
                    }
                }
            }
            _ => {}
        }
        self.replies.insert(id, result);
    }

    pub fn request(
        &mut self,
        i: usize,
        container: &str,
        make: impl FnOnce(RequestId) -> Event,
    ) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        let ev = make(id);
        let kind = match &ev {
            Event::Allocate { .. } => "allocate",
            Event::Claim { .. } => "claim",
            Event::Release { .. } => "release",
            Event::RmPeer { .. } => "rmpeer",
            Event::Shutdown { .. } => "shutdown",
            Event::Prime { .. } => "prime",
            _ => "other",
        };
        self.outstanding.insert(
            id,
            Req {
                peer: i,
                container: container.to_string(),
                issued: self.now,
                kind,
            },
        );
        self.handle(i, ev);
        id
    }

    pub fn allocate(&mut self, i: usize, container: &str, subnet: Option<Cidr>) -> RequestId {
        let owner = container.to_string();
        self.request(i, container, |id| Event::Allocate { id, owner, subnet })
    }

    /// Kill -9: in-flight persists and the in-memory core are lost; requests die with it.
    pub fn crash(&mut self, i: usize) {
        self.peers[i].node = None;
        self.peers[i].persists.clear();
        self.peers[i].incarnation += 1;
        self.outstanding.retain(|_, r| r.peer != i);
        self.notify_peers();
    }

    fn maybe_crash(&mut self, i: usize) {
        if self.crash_per_mille == 0 || !self.up(i) || self.rng.below(1000) >= self.crash_per_mille
        {
            return;
        }
        if (0..self.peers.len()).filter(|j| self.up(*j)).count() > 1 {
            self.crash(i);
            self.crashed.push(i);
        }
    }

    pub fn restart(&mut self, i: usize) {
        let p = &mut self.peers[i];
        let node = Allocator::new(p.name.clone(), p.cfg.clone(), p.disk.clone())
            .expect("restore from own persisted state");
        // What the restarted peer believes its containers hold must match what they were told.
        for (a, (peer, cont)) in &self.holders {
            if *peer == i
                && node.space().holder(*a).map(|h| h.owner.as_str()) != Some(cont.as_str())
            {
                self.violations.push(format!(
                    "peer {} restarted without {}'s address {}",
                    p.name,
                    cont,
                    weft_ipam::addr::fmt_addr(*a)
                ));
            }
        }
        p.node = Some(node);
        self.notify_peers();
    }

    /// Run for `ms` of simulated time.
    pub fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        loop {
            let next_msg = self.net.peek().map(|Reverse(m)| m.0);
            let next_persist = self
                .peers
                .iter()
                .filter_map(|p| p.persists.front().map(|x| x.0))
                .min();
            let t = [Some(self.next_tick), next_msg, next_persist]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(end);
            if t > end {
                self.now = end;
                return;
            }
            self.now = self.now.max(t);
            if next_persist == Some(t) {
                for i in 0..self.peers.len() {
                    while self.peers[i].persists.front().is_some_and(|p| p.0 <= t) {
                        if let Some((_, token, state)) = self.peers[i].persists.pop_front() {
                            self.peers[i].disk = Some(state);
                            self.handle(i, Event::Persisted { token });
                            self.maybe_crash(i);
                        }
                    }
                }
            } else if next_msg == Some(t) {
                if let Some(Reverse((_, _, from, to, inc, payload))) = self.net.pop() {
                    if self.connected(from, to) && self.peers[to].incarnation == inc {
                        self.messages += 1;
                        let from = self.peers[from].name.clone();
                        self.handle(to, Event::Received { from, payload });
                        self.maybe_crash(to);
                    }
                }
            } else {
                self.next_tick = t + self.tick_ms;
                for i in 0..self.peers.len() {
                    self.handle(i, Event::Tick);
                }
                self.check_ownership();
            }
        }
    }

    /// Run until `cond` holds or `max_ms` passes; returns the time it took.
    pub fn run_until(&mut self, max_ms: u64, mut cond: impl FnMut(&Sim) -> bool) -> Option<u64> {
        let start = self.now;
        while self.now < start + max_ms {
            if cond(self) {
                return Some(self.now - start);
            }
            self.run(1);
        }
        cond(self).then(|| self.now - start)
    }

    /// No two peers that are alive or will restart believe they own the same address.
    pub fn check_ownership(&mut self) {
        let mut spans: Vec<(u64, u64, usize)> = Vec::new();
        for (i, p) in self.peers.iter().enumerate() {
            if p.removed {
                continue;
            }
            let usable = match &p.node {
                Some(n) => n.usable_ranges(),
                None => p
                    .disk
                    .as_ref()
                    .map(|d| d.usable_ranges())
                    .unwrap_or_default(),
            };
            for (s, e) in usable {
                spans.push((s, e, i));
            }
        }
        spans.sort();
        for w in spans.windows(2) {
            if w[1].0 < w[0].1 {
                self.violations.push(format!(
                    "t={} peers {} and {} both believe they own {}",
                    self.now,
                    self.peers[w[0].2].name,
                    self.peers[w[1].2].name,
                    weft_ipam::addr::fmt_addr(w[1].0 as u32)
                ));
            }
        }
        // One initialisation only: every ring anywhere (memory or disk) has the same origin.
        let origins: BTreeSet<u64> = self
            .peers
            .iter()
            .filter_map(|p| match &p.node {
                Some(n) => n.ring().map(|r| r.origin()),
                None => p
                    .disk
                    .as_ref()
                    .and_then(|d| d.ring.as_ref())
                    .map(|r| r.origin()),
            })
            .collect();
        if origins.len() > 1 {
            self.violations.push(format!(
                "t={} rings of {} origins: consensus decided twice",
                self.now,
                origins.len()
            ));
        }
        // Advertised free counts match the allocations (they steer space requests).
        for p in &self.peers {
            let Some(n) = &p.node else { continue };
            let Some(r) = n.ring() else { continue };
            for (s, e, ent) in r.entries() {
                if ent.owner == p.name {
                    let free = (e - s) - n.space().count_in(s, e);
                    if u64::from(ent.free) != free {
                        self.violations.push(format!(
                            "t={} {} advertises {} free in an entry with {free} free",
                            self.now, p.name, ent.free
                        ));
                    }
                }
            }
        }
        // Every live container's address is owned by its peer, in that peer's view.
        for (a, (i, cont)) in &self.holders {
            let p = &self.peers[*i];
            if p.removed {
                continue;
            }
            if let Some(n) = &p.node {
                if n.ring().and_then(|r| r.owner_of(*a)) != Some(p.name.as_str()) {
                    self.violations.push(format!(
                        "t={} {cont}'s address {} is not owned by its peer {}",
                        self.now,
                        weft_ipam::addr::fmt_addr(*a),
                        p.name
                    ));
                }
            }
        }
        self.violations.dedup();
    }
}
