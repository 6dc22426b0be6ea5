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
//!
//! One file per protocol, each owning its part of the state: `requests.rs` (space requests and
//! serving allocations), `merge.rs` (ring merge, gossip and free counts), `consensus.rs` (lazy
//! initialisation of the ring), `leave.rs` (handover on shutdown and rmpeer). This file holds
//! the event dispatch and the durability gate.

mod consensus;
mod leave;
mod merge;
mod requests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use weft_mesh::Transmit;

use crate::addr::Cidr;
use crate::consensus::InitMode;
use crate::error::IpamError;
use crate::messages::Message;
use crate::persist::{usable, PersistedAlloc, PersistedState};
use crate::ring::Ring;
use crate::space::Space;

pub use crate::events::{Action, Event, IpamConfig, IpamEffect, Millis, Reply, RequestId};

use consensus::Init;
use leave::Leave;
use merge::Gossip;
pub(crate) use requests::{Pending, Requests, Want};

/// Persists in flight and the actions held until they are durable.
#[derive(Debug, Default)]
struct Durability {
    persist_token: u64,
    acked_token: u64,
    held: VecDeque<(u64, Action)>,
    /// A persist is wanted but one is in flight: the next goes out when it is acknowledged
    /// (group commit: one snapshot per durable write, however many changes came in between).
    persist_wanted: bool,
}

/// The IPAM core of one peer.
#[derive(Debug)]
pub struct Allocator {
    /// The mesh channel its sends carry.
    channel: u16,
    pub(crate) name: String,
    pub(crate) config: IpamConfig,
    pub(crate) default_subnet: Cidr,
    pub(crate) ring: Option<Ring>,
    pub(crate) space: Space,
    /// Peers the mesh reaches, this one included.
    pub(crate) reachable: BTreeSet<String>,
    /// Warnings for the status report, by topic.
    pub(crate) notes: BTreeMap<String, String>,
    pub(crate) bad_messages: u64,
    pub(crate) now: Millis,
    /// Actions of the current `handle`, before the durability gate.
    out: Vec<Action>,
    /// State changed in this `handle`: persist it.
    dirty: bool,
    durable: Durability,
    pub(crate) req: Requests,
    pub(crate) init: Init,
    pub(crate) leave: Leave,
    gossip: Gossip,
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
            channel: 0,
            name: name.clone(),
            config: IpamConfig {
                range,
                default_subnet: Some(default_subnet),
                ..config
            },
            default_subnet,
            ring: None,
            space: Space::default(),
            reachable: BTreeSet::from([name.clone()]),
            notes: BTreeMap::new(),
            bad_messages: 0,
            now: 0,
            out: Vec::new(),
            dirty: false,
            durable: Durability::default(),
            req: Requests::new(),
            init: Init::default(),
            leave: Leave::default(),
            gossip: Gossip::new(&name),
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
            a.init.max_round = st.acceptor.promised.as_ref().map(|b| b.round).unwrap_or(0);
            a.init.acceptor = st.acceptor;
            a.leave.quarantines = st.quarantines;
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
            acceptor: self.init.acceptor.clone(),
            quarantines: self.leave.quarantines.clone(),
        }
    }

    /// The intervals this peer allocates from: what it owns minus quarantined rmpeer space.
    pub fn usable_ranges(&self) -> Vec<(u64, u64)> {
        usable(self.ring.as_ref(), &self.name, &self.leave.quarantines)
    }

    /// Feed one event; returns the actions to execute in order.
    pub fn handle(&mut self, now: Millis, event: Event) -> Vec<Action> {
        self.now = self.now.max(now);
        let mut released = Vec::new();
        match event {
            Event::Persisted { token } => {
                self.durable.acked_token = self
                    .durable
                    .acked_token
                    .max(token.min(self.durable.persist_token));
                while let Some((t, _)) = self.durable.held.front() {
                    if *t > self.durable.acked_token {
                        break;
                    }
                    if let Some((_, a)) = self.durable.held.pop_front() {
                        released.push(a);
                    }
                }
                if self.durable.persist_wanted
                    && self.durable.acked_token == self.durable.persist_token
                {
                    self.durable.persist_wanted = false;
                    self.durable.persist_token += 1;
                    released.push(Action::Effect(IpamEffect::Persist {
                        state: self.persisted_state(),
                        token: self.durable.persist_token,
                    }));
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
                self.gossip.touched.extend(r.iter().map(|c| (c.addr, -1)));
                if !r.is_empty() {
                    self.dirty = true;
                }
                self.reply(id, Ok(Reply::Released(r)));
            }
            Event::Lookup { id, owner } => {
                let r = self.space.lookup(&owner);
                self.reply(id, Ok(Reply::Addresses(r)));
            }
            Event::Holdings { id } => {
                let all = self.space.holdings();
                self.reply(id, Ok(Reply::Holdings(all)));
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
        if self.leave.left {
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

    pub(super) fn queue(&mut self, id: RequestId, owner: String, want: Want) {
        if self.leave.left {
            self.reply(id, Err(IpamError::ShuttingDown));
            return;
        }
        self.req.pending.push(Pending {
            id,
            owner,
            want,
            since: self.now,
        });
    }

    pub(crate) fn reply(&mut self, id: RequestId, result: Result<Reply, IpamError>) {
        self.out
            .push(Action::Effect(IpamEffect::Reply { id, result }));
    }

    pub(super) fn send(&mut self, to: &str, m: Message) {
        self.out.push(Action::Transmit(Transmit::To {
            channel: self.channel,
            dst: to.to_string(),
            payload: m.encode(),
        }));
    }

    pub(super) fn broadcast(&mut self, m: Message) {
        self.out.push(Action::Transmit(Transmit::Broadcast {
            channel: self.channel,
            payload: m.encode(),
        }));
    }

    /// Sets the mesh channel its sends carry ([`crate::IpamApp`] does; 0 when the
    /// allocator runs on its own).
    pub(crate) fn set_channel(&mut self, channel: u16) {
        self.channel = channel;
    }

    /// Wrap up one `handle`: persist if needed and hold what depends on it.
    fn finish(&mut self, mut released: Vec<Action>) -> Vec<Action> {
        let out = std::mem::take(&mut self.out);
        if self.dirty {
            self.dirty = false;
            self.refresh_free();
            if self.durable.acked_token < self.durable.persist_token {
                self.durable.persist_wanted = true;
            } else {
                self.durable.persist_token += 1;
                released.push(Action::Effect(IpamEffect::Persist {
                    state: self.persisted_state(),
                    token: self.durable.persist_token,
                }));
            }
        }
        if self.durable.persist_wanted {
            // Depends on the persist that goes out once the one in flight is acknowledged.
            let t = self.durable.persist_token + 1;
            self.durable.held.extend(out.into_iter().map(|a| (t, a)));
        } else if self.durable.acked_token < self.durable.persist_token {
            let t = self.durable.persist_token;
            self.durable.held.extend(out.into_iter().map(|a| (t, a)));
        } else {
            released.extend(out);
        }
        released
    }

    fn tick(&mut self) {
        self.tick_requests();
        self.tick_init();
        self.tick_leave();
        self.tick_gossip();
    }

    fn on_message(&mut self, from: &str, m: Message) {
        match m {
            Message::Ring { ring, kind } => self.on_ring(from, ring, kind),
            Message::SpaceGranted { nonce, ring } => self.on_granted(from, nonce, ring),
            Message::HandoverAck => self.on_handover_ack(from),
            Message::SpaceRequest {
                nonce,
                subnet,
                want,
            } => self.on_space_request(from, nonce, subnet, want),
            Message::SpaceDenied { nonce, reason } => self.on_denied(from, nonce, reason),
            other => self.on_consensus(from, other),
        }
    }
}
