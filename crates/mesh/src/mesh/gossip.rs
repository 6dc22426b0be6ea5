//! Topology gossip: digests, then the entries the other side lacks; forwarding new entries
//! along broadcast trees; our own entry and its refutation; what follows a change.

use std::collections::{BTreeMap, HashMap};

use super::{Action, ConnId, Mesh};
use crate::wire::{DigestItem, EdgeInfo, Message, PeerEntry, MAX_MESSAGE};

impl Mesh {
    pub(super) fn send_entries(&mut self, now: u64, conn: ConnId, entries: Vec<PeerEntry>) {
        // Split so that every message fits in a frame.
        let mut batch = Vec::new();
        let mut size = 5;
        for e in entries {
            let s = Message::entry_size(&e);
            if !batch.is_empty() && size + s > MAX_MESSAGE {
                self.counters.entries_sent += batch.len() as u64;
                self.send(
                    now,
                    conn,
                    Message::Gossip {
                        entries: std::mem::take(&mut batch),
                    },
                );
                size = 5;
            }
            size += s;
            batch.push(e);
        }
        if !batch.is_empty() {
            self.counters.entries_sent += batch.len() as u64;
            self.send(now, conn, Message::Gossip { entries: batch });
        }
    }

    pub(super) fn digest_items(&mut self) -> Vec<DigestItem> {
        self.topo
            .reachable_entries()
            .into_iter()
            .map(|e| DigestItem {
                name: e.name,
                version: e.version,
            })
            .collect()
    }

    pub(super) fn on_digest(&mut self, now: u64, conn: ConnId, items: Vec<DigestItem>) {
        let theirs: HashMap<&str, u64> =
            items.iter().map(|i| (i.name.as_str(), i.version)).collect();
        let push: Vec<PeerEntry> = self
            .topo
            .reachable_entries()
            .into_iter()
            .filter(|e| theirs.get(e.name.as_str()).is_none_or(|v| *v < e.version))
            .collect();
        let want: Vec<String> = items
            .iter()
            .filter(|i| self.topo.get(&i.name).is_none_or(|e| e.version < i.version))
            .map(|i| i.name.clone())
            .collect();
        self.send_entries(now, conn, push);
        if !want.is_empty() {
            self.send(now, conn, Message::Request { names: want });
        }
    }

    /// Refuses and closes our connection to `peer`, which broke a bound of a core's protocol
    /// ([`crate::Disconnect`]); false when we have no direct connection to it.
    pub fn disconnect_peer(&mut self, now: u64, peer: &str, why: &str) -> bool {
        let Some(conn) = self.conn_of(peer) else {
            return false;
        };
        self.disconnect(now, conn, format!("peer {peer} dropped: {why}"));
        true
    }

    /// Refuses and closes a connection whose peer broke a bound (the mesh's, [`crate::limits`],
    /// or a core's), with the reason.
    fn disconnect(&mut self, now: u64, conn: ConnId, reason: String) {
        self.send(
            now,
            conn,
            Message::Refuse {
                reason: reason.clone(),
            },
        );
        self.actions.push(Action::Close {
            conn,
            reason: reason.clone(),
        });
        self.closed(now, conn, &reason);
    }

    pub(super) fn on_gossip(&mut self, now: u64, conn: ConnId, entries: Vec<PeerEntry>) {
        let from = self
            .conns
            .get(&conn)
            .map(|c| c.peer.clone())
            .unwrap_or_default();
        let known = |n: &str| self.topo.get(n).is_some();
        if let Err(why) = crate::limits::check_gossip(&entries, self.topo.all().count(), known) {
            self.disconnect(now, conn, format!("peer {from} exceeded a limit: {why}"));
            return;
        }
        let mut changed = Vec::new();
        for e in entries {
            if e.name == self.cfg.name {
                self.maybe_refute(now, &e);
                continue;
            }
            if self.topo.merge(e.clone()) {
                self.counters.entries_merged += 1;
                changed.push(e);
            }
        }
        if changed.is_empty() {
            return;
        }
        // Forward each new entry along the broadcast tree rooted at its owner; if the owner
        // is not reachable in our view yet, to every neighbour but the sender.
        let mut out: BTreeMap<ConnId, Vec<PeerEntry>> = BTreeMap::new();
        for e in changed {
            let next: Vec<ConnId> = match self.topo.broadcast_children(&e.name) {
                Some(kids) => kids
                    .iter()
                    .filter(|k| **k != from)
                    .filter_map(|k| self.conn_of(k))
                    .collect(),
                None => self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.peer != from)
                    .map(|(id, _)| *id)
                    .collect(),
            };
            for c in next {
                out.entry(c).or_default().push(e.clone());
            }
        }
        for (c, es) in out {
            self.send_entries(now, c, es);
        }
        self.after_change(now);
    }

    fn maybe_refute(&mut self, now: u64, e: &PeerEntry) {
        let own = self.topo.own().clone();
        if e.version < own.version || (e.uid == own.uid && e.version == own.version) {
            return;
        }
        if e.uid != own.uid && !self.refuted_uids.insert(e.uid) {
            // A second round against the same other run: another live peer has our name.
            self.conflict = Some(format!(
                "another peer named {} (nickname {}) is in the mesh: give one a different --name",
                e.name, e.nickname
            ));
            return;
        }
        // An entry of an earlier run of ours: announce a newer one.
        let mut own = own;
        own.version = e.version + 1;
        self.topo.set_own(own.clone());
        self.announce_own(now);
    }

    pub(super) fn own_changed(&mut self, now: u64) {
        let mut own = self.topo.own().clone();
        let mut edges: Vec<EdgeInfo> = self
            .conns
            .values()
            .map(|c| EdgeInfo {
                name: c.peer.clone(),
                addr: c.addr.to_string(),
                outbound: c.outbound,
            })
            .collect();
        edges.sort();
        edges.dedup_by(|a, b| a.name == b.name);
        if edges == own.edges {
            return;
        }
        own.edges = edges;
        own.version += 1;
        self.topo.set_own(own);
        self.announce_own(now);
    }

    fn announce_own(&mut self, now: u64) {
        let own = self.topo.own().clone();
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.counters.entries_sent += 1;
            self.send(
                now,
                id,
                Message::Gossip {
                    entries: vec![own.clone()],
                },
            );
        }
    }

    /// After any change: notify, update discovery and the unreachable timers.
    pub(super) fn after_change(&mut self, now: u64) {
        self.actions.push(Action::TopologyChanged);
        // The generation is cheap to compare; only when it moved can the set differ.
        let gen = self.topo.reach_gen();
        if gen == self.last_reach_gen {
            return;
        }
        self.last_reach_gen = gen;
        if self.topo.reachable() != self.last_reachable.as_slice() {
            // Copy into the old strings' buffers: this runs on every peer at every join.
            let now_reachable = self.topo.reachable();
            self.last_reachable.truncate(now_reachable.len());
            let k = self.last_reachable.len();
            for (d, s) in self.last_reachable.iter_mut().zip(now_reachable) {
                d.clone_from(s);
            }
            self.last_reachable.extend_from_slice(&now_reachable[k..]);
            let topo = &self.topo;
            for name in topo.unreachable_names() {
                if !self.unreachable_since.contains_key(name) {
                    self.unreachable_since.insert(name.to_string(), now);
                }
            }
            self.unreachable_since.retain(|n, _| !topo.was_reachable(n));
            self.discover(now);
        }
    }
}
