//! The services core as a mesh application ([`weft_mesh::MeshApp`]): what peers send
//! each other and when.
//!
//! - Definitions: a create or removal is broadcast at once (the name's whole record);
//!   a newly reachable peer gets every name we hold. Names are not owned: any peer may
//!   pass on any name, and merging is a union, so it does not matter who sends.
//! - Tasks: only their host sends them. A change goes out as a delta from sequence
//!   number `base` to `seq`; a peer holding `base` applies it, one that is behind asks
//!   for the whole set, which replaces what it held (a host's own word is final, so a
//!   host restarted without its state is believed too). A newly reachable peer gets our
//!   set and is asked for its own; until its set arrives, its tasks stay out of rotation.
//! - Every digest interval each peer broadcasts a digest (counts and hashes of its names
//!   and of its task set). A task set that differs is asked for at once; names that
//!   differ are asked for when the difference outlasts one interval (not while changes
//!   are on their way).
//!
//! Assumption about the mesh, as for DNS: `from` is the peer that made the payload.

use std::collections::BTreeSet;

use weft_mesh::{Disconnect, MeshApp, Millis, PeerChange, TopologyView, Transmit};

use crate::core::{ServiceEffect, ServicesCore};
use crate::limits::{check_names, MAX_TASKS_PER_HOST};
use crate::tasks::{Task, TaskKey};
use crate::wire::{Digest, Message, WireError};
use crate::CHANNEL;

/// How long the tasks of an unreachable peer are kept (out of rotation), ms.
pub const FORGET_AFTER: Millis = 3_600_000;

/// Why a payload from a peer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GossipError {
    /// The payload does not decode.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The payload breaks a bound of [`crate::limits`].
    #[error("{0}")]
    Limit(String),
}

impl GossipError {
    /// Whether the sender is dropped for it (not for another encoding version).
    pub fn drops_peer(&self) -> bool {
        match self {
            GossipError::Wire(e) => e.drops_peer(),
            GossipError::Limit(_) => true,
        }
    }
}

impl ServicesCore {
    /// Takes a payload from peer `from`; a payload in error changes nothing.
    pub(crate) fn receive(
        &mut self,
        now: Millis,
        from: &str,
        payload: &[u8],
    ) -> Result<(), GossipError> {
        if self.peers.is_refused(from) || from == self.peers.me() {
            return Ok(());
        }
        let msg = Message::decode(payload, from)?;
        // Tasks of a peer not (yet) reachable would be in rotation without it; it is
        // asked for them when it is.
        let reachable = self.peers.is_reachable(from);
        match msg {
            Message::Names { names, .. } => {
                check_names(&self.names, &names).map_err(GossipError::Limit)?;
                let top = names
                    .iter()
                    .flat_map(|n| n.entries.iter().map(|e| e.version).chain([n.removed]))
                    .max()
                    .unwrap_or(0);
                self.clock = self.clock.max(top);
                self.merge_names(names);
            }
            Message::TaskDelta {
                base,
                seq,
                upserts,
                removes,
            } if reachable => self.task_delta(now, from, base, seq, upserts, removes)?,
            Message::TaskSet { seq, tasks } if reachable => {
                let mut touched = self.tasks.replace(from, &tasks);
                let h = self.tasks.host_mut(from);
                h.seq = seq;
                touched.extend(self.tasks.set_up(from, true));
                self.replan_all(touched);
            }
            Message::TaskDelta { .. } | Message::TaskSet { .. } => {}
            Message::Digest(d) => self.on_digest(now, from, reachable, d),
            Message::Request { names, tasks } => {
                if names {
                    let msg = Message::Names {
                        full: true,
                        names: self.names.states(),
                    };
                    self.peers.send(from, msg.encode());
                }
                if tasks {
                    let set = self.own_set();
                    self.peers.send(from, set);
                }
            }
        }
        Ok(())
    }

    /// Takes a peer's digest: asks for its task set when ours of it differs, and for the
    /// names when they differ for longer than one interval.
    fn on_digest(&mut self, now: Millis, from: &str, reachable: bool, d: Digest) {
        let ours = self.names.hash();
        let names_differ = (d.names as usize, d.names_hash) != (self.names.len(), ours);
        let mut ask_names = false;
        if names_differ {
            let pair = (d.names_hash, ours);
            ask_names = self.mismatch.get(from) == Some(&pair);
            self.mismatch.insert(from.to_string(), pair);
        } else {
            self.mismatch.remove(from);
        }
        let mut ask_tasks = false;
        if reachable {
            let held = self.tasks.host(from);
            let same = held.is_some_and(|h| {
                (h.seq, h.len(), h.hash) == (d.seq, d.tasks as usize, d.tasks_hash)
            }) || (held.is_none_or(|h| h.len() == 0) && d.tasks == 0);
            if same {
                let touched = self.tasks.set_up(from, true);
                self.replan_all(touched);
            } else {
                ask_tasks = true;
            }
        }
        if ask_names || ask_tasks {
            self.ask(now, from, ask_names, ask_tasks);
        }
    }

    fn task_delta(
        &mut self,
        now: Millis,
        from: &str,
        base: u64,
        seq: u64,
        upserts: Vec<Task>,
        removes: Vec<TaskKey>,
    ) -> Result<(), GossipError> {
        let held = self.tasks.host(from);
        let held_seq = held.map_or(0, |h| h.seq);
        if held_seq >= seq {
            return Ok(());
        }
        if held_seq != base {
            // A delta was lost (or we never had its set): the whole set repairs it.
            self.ask(now, from, false, true);
            return Ok(());
        }
        let len = held.map_or(0, |h| h.len());
        let gone = removes
            .iter()
            .filter(|k| held.is_some_and(|h| h.contains(&k.service, k.addr)))
            .count();
        let new = upserts
            .iter()
            .filter(|t| {
                !held.is_some_and(|h| h.contains(&t.service, t.addr))
                    || removes
                        .binary_search_by(|k| {
                            (k.service.as_str(), k.addr).cmp(&(t.service.as_str(), t.addr))
                        })
                        .is_ok()
            })
            .count();
        if len - gone + new > MAX_TASKS_PER_HOST {
            return Err(GossipError::Limit(format!(
                "{} tasks of peer {from} (at most {MAX_TASKS_PER_HOST} per host)",
                len - gone + new
            )));
        }
        let mut touched = BTreeSet::new();
        for k in &removes {
            if self.tasks.remove(from, &k.service, k.addr) {
                touched.insert(k.service.clone());
            }
        }
        for t in &upserts {
            if self.tasks.upsert(t) {
                touched.insert(t.service.clone());
            }
        }
        self.tasks.host_mut(from).seq = seq;
        touched.extend(self.tasks.set_up(from, true));
        self.replan_all(touched);
        Ok(())
    }

    fn replan_all(&mut self, services: BTreeSet<String>) {
        for s in services {
            self.replan(&s);
        }
    }

    /// Our whole task set, encoded.
    fn own_set(&self) -> Vec<u8> {
        let me = self.peers.me().to_string();
        Message::TaskSet {
            seq: self.tasks.host(&me).map_or(0, |h| h.seq),
            tasks: self.tasks.of_host(&me),
        }
        .encode()
    }

    /// Asks `peer` for its names and/or task set, at most once per digest interval.
    fn ask(&mut self, now: Millis, peer: &str, names: bool, tasks: bool) {
        let recently = self
            .asked
            .get(peer)
            .is_some_and(|&t| now < t.saturating_add(self.digest_interval));
        if recently {
            return;
        }
        self.asked.insert(peer.to_string(), now);
        self.peers
            .send(peer, Message::Request { names, tasks }.encode());
    }

    /// Takes the set of reachable peers (without us).
    fn peers_changed(&mut self, now: Millis, peers: BTreeSet<String>) {
        // A dropped peer gets another chance once it has been gone.
        let PeerChange { added, gone } = self.peers.set(peers);
        for p in &added {
            self.down_since.remove(p);
        }
        for p in &gone {
            self.down_since.insert(p.clone(), now);
            self.asked.remove(p);
            self.mismatch.remove(p);
            let touched = self.tasks.set_up(p, false);
            self.replan_all(touched);
        }
        if added.is_empty() {
            return;
        }
        let names = Message::Names {
            full: true,
            names: self.names.states(),
        }
        .encode();
        let set = self.own_set();
        for (k, p) in added.iter().enumerate() {
            self.peers.send(p, names.clone());
            self.peers.send(p, set.clone());
            // Its task set, and once its names: it may not see us as new (we restarted
            // before it noticed), and any one peer's names are as good as another's.
            let request = Message::Request {
                names: k == 0,
                tasks: true,
            };
            self.peers.send(p, request.encode());
        }
    }

    /// Forgets the tasks of peers unreachable for [`FORGET_AFTER`] (they announce them
    /// again if they come back): departed peers do not add up.
    fn forget_departed(&mut self, now: Millis) {
        let old: Vec<String> = self
            .down_since
            .iter()
            .filter(|(_, &t)| now.saturating_sub(t) >= FORGET_AFTER)
            .map(|(p, _)| p.clone())
            .collect();
        for p in old {
            self.down_since.remove(&p);
            let touched = self.tasks.drop_host(&p);
            self.replan_all(touched);
        }
    }

    /// Drops a peer that broke the protocol: its tasks go, it is ignored while it stays
    /// reachable, and the mesh is asked to disconnect it.
    fn refuse(&mut self, peer: &str, why: &GossipError) {
        if !self.peers.refuse(peer, why) {
            return;
        }
        let touched = self.tasks.drop_host(peer);
        self.replan_all(touched);
        self.asked.remove(peer);
    }
}

impl MeshApp for ServicesCore {
    type Effect = ServiceEffect;

    fn handle_message(&mut self, now: Millis, channel: u16, from: &str, payload: &[u8]) {
        if channel != CHANNEL {
            return;
        }
        if let Err(e) = self.receive(now, from, payload) {
            if e.drops_peer() {
                self.refuse(from, &e);
            }
        }
    }

    fn handle_topology(&mut self, now: Millis, topology: &TopologyView) {
        if let Some(peers) = self.peers.changed(topology) {
            self.peers_changed(now, peers);
        }
    }

    /// Broadcasts the digest; forgets the tasks of peers gone for [`FORGET_AFTER`].
    fn handle_timeout(&mut self, now: Millis) {
        if now < self.next_digest {
            return;
        }
        self.next_digest = now.saturating_add(self.digest_interval);
        self.forget_departed(now);
        if self.peers.reachable().is_empty() {
            return;
        }
        let own = self.tasks.host(self.peers.me());
        let digest = Message::Digest(Digest {
            names: self.names.len() as u32,
            names_hash: self.names.hash(),
            seq: own.map_or(0, |h| h.seq),
            tasks: own.map_or(0, |h| h.len()) as u32,
            tasks_hash: own.map_or(0, |h| h.hash),
        });
        self.peers.broadcast(digest.encode());
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.peers.poll_transmit()
    }

    fn poll_effect(&mut self) -> Option<ServiceEffect> {
        self.next_effect()
    }

    fn poll_timeout(&self) -> Option<Millis> {
        Some(self.next_digest)
    }

    fn poll_disconnect(&mut self) -> Option<Disconnect> {
        self.peers.poll_disconnect()
    }
}
