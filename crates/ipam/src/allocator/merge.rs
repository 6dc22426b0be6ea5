//! Ring merge and gossip: merging peers' rings, the periodic anti-entropy exchange, and the
//! free counts this peer advertises in its entries.

use std::collections::BTreeSet;

use super::Allocator;
use crate::addr::{fmt_addr, Addr};
use crate::messages::{Message, RingKind};
use crate::ring::Ring;

/// The state of ring gossip and of the free counts this peer advertises.
#[derive(Debug)]
pub(super) struct Gossip {
    /// Our ring changed in a way everyone should hear at once.
    pub(super) gossip_due: bool,
    pub(super) last_gossip: super::Millis,
    /// Whose turn it is for the periodic anti-entropy exchange.
    pub(super) gossip_turn: usize,
    /// Allocation changes since free counts were last advertised: (address, +1 taken / -1 freed).
    pub(super) touched: Vec<(Addr, i64)>,
    /// What we owned when free counts were last computed in full.
    pub(super) counted_owned: Vec<(u64, u64)>,
}

impl Gossip {
    pub(super) fn new(name: &str) -> Gossip {
        Gossip {
            gossip_due: false,
            last_gossip: 0,
            gossip_turn: crate::ring::stable_hash(&[name]) as usize,
            touched: Vec::new(),
            counted_owned: Vec::new(),
        }
    }
}

impl Allocator {
    /// Sends our ring (if we have one) to one peer.
    pub(super) fn send_ring(&mut self, to: &str, kind: RingKind) {
        if let Some(ring) = self.ring.clone() {
            self.send(to, Message::Ring { ring, kind });
        }
    }

    pub(super) fn broadcast_ring(&mut self) {
        if let Some(r) = &self.ring {
            let m = Message::Ring {
                ring: r.clone(),
                kind: RingKind::Gossip,
            };
            self.broadcast(m);
            self.gossip.gossip_due = false;
            self.gossip.last_gossip = self.now;
        }
    }

    /// Advertise our current free counts in our ring entries.
    pub(super) fn refresh_free(&mut self) {
        let touched = std::mem::take(&mut self.gossip.touched);
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        let owned = ring.owned_by(&self.name);
        if owned == self.gossip.counted_owned {
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
                    self.gossip.gossip_due = true;
                }
            }
            return;
        }
        self.gossip.counted_owned = owned;
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

    pub(super) fn peers_changed(&mut self, reachable: BTreeSet<String>) {
        let mut reachable = reachable;
        reachable.insert(self.name.clone());
        let new_peer = reachable.difference(&self.reachable).next().is_some();
        self.reachable = reachable;
        if new_peer {
            if self.ring.is_some() {
                self.broadcast_ring();
            } else if self.init.wanting {
                self.send_want();
            }
        }
    }

    pub(super) fn on_ring(&mut self, from: &str, theirs: Ring, kind: RingKind) {
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
        self.req.asks.retain(|_, a| !(a.stale && a.to == from));
        let before = self.ring.as_ref().map(|r| r.owned_by(&self.name));
        let mine_before = self.my_entries();
        self.yield_taken_space(&theirs);
        match self.ring.as_mut() {
            None => {
                self.ring = Some(theirs);
                self.init.wanting = false;
                self.init.proposal = None;
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
        let before_q = self.leave.quarantines.len();
        for q in self.leave.quarantines.iter_mut() {
            q.waiting.remove(from);
        }
        self.leave.quarantines.retain(|q| !q.waiting.is_empty());
        if self.leave.quarantines.len() != before_q {
            self.dirty = true;
        }
        if self.my_entries() != mine_before {
            // Someone else wrote one of our entries (a yield, a handover): we are the
            // authority on our free counts, so recount them all (with a newer version).
            self.gossip.counted_owned.clear();
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
        for q in &self.leave.quarantines {
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
            self.gossip.gossip_due = true;
        }
    }

    /// Note allocations that lie in space this peer no longer owns (only rmpeer of a live
    /// peer, or two rmpeers at once, can do that).
    pub(super) fn check_lost_space(&mut self) {
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

    /// Broadcast a due ring, or exchange rings with one peer per gossip period.
    pub(super) fn tick_gossip(&mut self) {
        let now = self.now;
        if self.ring.is_some() {
            if self.gossip.gossip_due {
                self.broadcast_ring();
            } else if now.saturating_sub(self.gossip.last_gossip) >= self.config.gossip_ms {
                // Anti-entropy: one peer per period, in turn (it answers with what we lack,
                // we answer with what it lacks), so the cost grows with peers, not peers².
                let others: Vec<String> = self
                    .reachable
                    .iter()
                    .filter(|p| **p != self.name)
                    .cloned()
                    .collect();
                if !others.is_empty() {
                    let to = others[self.gossip.gossip_turn % others.len()].clone();
                    self.gossip.gossip_turn = self.gossip.gossip_turn.wrapping_add(1);
                    self.send_ring(&to, RingKind::Exchange);
                }
                self.gossip.last_gossip = now;
            }
        }
    }
}
