//! Leaving: handing this peer's space over on shutdown, and taking a dead peer's space with
//! rmpeer (quarantined until every peer has seen the dead peer's last ring).

use std::collections::BTreeSet;

use super::{Action, Allocator, IpamEffect, Millis, Reply, RequestId};
use crate::addr::Addr;
use crate::error::IpamError;
use crate::messages::{Message, RingKind};
use crate::persist::Quarantine;

/// A shutdown waiting for the peers given our space to confirm.
#[derive(Debug, Clone)]
pub(crate) struct Leaving {
    pub(crate) id: RequestId,
    pub(crate) waiting: BTreeSet<String>,
    pub(crate) given: Vec<(String, u64)>,
    pub(crate) since: Millis,
    pub(crate) last_sent: Millis,
}

/// The state of leaving and of rmpeer.
#[derive(Debug, Default)]
pub(crate) struct Leave {
    pub(crate) leaving: Option<Leaving>,
    /// This peer handed its space over (or is doing so): it serves no more requests.
    pub(crate) left: bool,
    /// Space taken with rmpeer, not used until the peers named have seen it.
    pub(crate) quarantines: Vec<Quarantine>,
    pub(crate) last_sync_sent: Millis,
}

impl Allocator {
    pub(super) fn rmpeer(&mut self, name: &str) -> Result<Reply, IpamError> {
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
        for q in self.leave.quarantines.iter_mut() {
            q.waiting.remove(name);
        }
        self.leave.quarantines.retain(|q| !q.waiting.is_empty());
        if !waiting.is_empty() {
            self.leave.quarantines.push(Quarantine {
                dead: name.to_string(),
                ranges,
                tokens,
                waiting,
            });
            self.send_sync();
        }
        self.init.participants.remove(name);
        self.dirty = true;
        self.broadcast_ring();
        Ok(Reply::RemovedPeer {
            name: name.to_string(),
            addresses: n,
        })
    }

    /// Ask the peers a quarantine waits for to send their rings (they answer `Want` with it).
    pub(super) fn send_sync(&mut self) {
        self.leave.last_sync_sent = self.now;
        let to: BTreeSet<String> = self
            .leave
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

    pub(super) fn shutdown(&mut self, id: RequestId) {
        if self.leave.left {
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
        self.leave.left = true;
        for p in std::mem::take(&mut self.req.pending) {
            self.reply(p.id, Err(IpamError::ShuttingDown));
        }
        // Addresses given but not yet answered (their persist is in flight) go with the
        // space: the container must not get an address this peer no longer holds.
        for a in self
            .durable
            .held
            .iter_mut()
            .map(|(_, a)| a)
            .chain(self.out.iter_mut())
        {
            if let Action::Effect(IpamEffect::Reply { result, .. }) = a {
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
        for p in &waiting {
            self.send_ring(p, RingKind::Handover);
        }
        self.broadcast_ring();
        self.leave.leaving = Some(Leaving {
            id,
            waiting,
            given,
            since: self.now,
            last_sent: self.now,
        });
    }

    /// Give up or resend a handover, and ask for rings a quarantine waits for.
    pub(super) fn tick_leave(&mut self) {
        let now = self.now;
        let retry = self.config.retry_ms;
        let timeout = self.config.request_timeout_ms;
        if let Some(l) = &self.leave.leaving {
            if now.saturating_sub(l.since) >= timeout {
                let peers: Vec<String> = l.waiting.iter().cloned().collect();
                let id = l.id;
                self.leave.leaving = None;
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
                if let Some(l) = self.leave.leaving.as_mut() {
                    l.last_sent = now;
                }
                for p in to {
                    self.send_ring(&p, RingKind::Handover);
                }
            }
        }
        if !self.leave.quarantines.is_empty()
            && now.saturating_sub(self.leave.last_sync_sent) >= retry
        {
            self.send_sync();
        }
    }

    /// A peer confirmed it holds the space we handed it.
    pub(super) fn on_handover_ack(&mut self, from: &str) {
        let mut done = None;
        if let Some(l) = self.leave.leaving.as_mut() {
            l.waiting.remove(from);
            if l.waiting.is_empty() {
                done = Some((l.id, l.given.clone()));
            }
        }
        if let Some((id, given)) = done {
            self.leave.leaving = None;
            self.reply(id, Ok(Reply::HandedOver(given)));
        }
    }
}
