//! Space requests: serving allocations and claims from what this peer owns, asking peers for
//! space, and answering their asks.

use std::collections::{BTreeMap, BTreeSet};

use super::{Allocator, Millis, Reply, RequestId};
use crate::addr::{Addr, Cidr};
use crate::error::IpamError;
use crate::messages::{DenyReason, Message, RingKind};
use crate::ring::Ring;

/// What a pending request wants.
#[derive(Debug, Clone)]
pub(crate) enum Want {
    Alloc(Cidr),
    Claim(Cidr),
    Prime,
}

/// A request that waits for space or for the ring.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) id: RequestId,
    pub(crate) owner: String,
    pub(crate) want: Want,
    pub(crate) since: Millis,
}

/// A space request sent to a peer.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    pub(crate) to: String,
    pub(crate) nonce: u64,
    pub(crate) sent: Millis,
    /// The peer said it does not own what we asked for: ask again once its ring arrives.
    pub(crate) stale: bool,
}

/// The state of space requests, ours and our peers'.
#[derive(Debug)]
pub(crate) struct Requests {
    pub(crate) pending: Vec<Pending>,
    /// Outstanding space requests by (subnet, wanted address).
    pub(crate) asks: BTreeMap<(Cidr, Option<Addr>), Ask>,
    /// Peers that said "no space" in a subnet, and when.
    pub(crate) denied: BTreeMap<Cidr, BTreeMap<String, Millis>>,
    pub(crate) next_nonce: u64,
    /// Next-fit cursor per subnet, so a released address is not handed out again at once.
    pub(crate) cursor: BTreeMap<Cidr, u64>,
}

impl Requests {
    pub(super) fn new() -> Requests {
        Requests {
            pending: Vec::new(),
            asks: BTreeMap::new(),
            denied: BTreeMap::new(),
            next_nonce: 1,
            cursor: BTreeMap::new(),
        }
    }
}

enum Served {
    Done(Result<Reply, IpamError>),
    Wait(Option<(Cidr, Option<Addr>)>),
}

impl Allocator {
    /// Serve what can be served, start what must be asked for.
    pub(super) fn progress(&mut self) {
        if self.req.pending.is_empty() {
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
        let pending = std::mem::take(&mut self.req.pending);
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
        self.req.pending = keep;
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
                let from = self.req.cursor.get(subnet).copied().unwrap_or(0);
                if let Some(a) = self.space.next_free(&owned, subnet, from) {
                    self.space.insert(a, &p.owner, subnet.prefix);
                    self.gossip.touched.push((a, 1));
                    self.req.cursor.insert(*subnet, u64::from(a) + 1);
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
                if self.leave.quarantines.iter().any(|q| {
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
                            self.gossip.touched.push((a, 1));
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
        let denied = self.req.denied.get(subnet);
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
        let denied = self.req.denied.get(subnet);
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

    pub(super) fn ensure_ask(&mut self, key: (Cidr, Option<Addr>)) {
        if self.req.asks.contains_key(&key) {
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
        let nonce = self.req.next_nonce;
        self.req.next_nonce += 1;
        self.req.asks.insert(
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

    pub(super) fn on_space_request(
        &mut self,
        from: &str,
        nonce: u64,
        subnet: Cidr,
        want: Option<Addr>,
    ) {
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

    pub(super) fn on_denied(&mut self, from: &str, nonce: u64, reason: DenyReason) {
        let Some(key) = self
            .req
            .asks
            .iter()
            .find(|(_, a)| a.nonce == nonce && a.to == from)
            .map(|(k, _)| *k)
        else {
            return;
        };
        match reason {
            DenyReason::NoSpace => {
                self.req.asks.remove(&key);
                self.req
                    .denied
                    .entry(key.0)
                    .or_default()
                    .insert(from.to_string(), self.now);
            }
            DenyReason::InUse(holder) => {
                self.req.asks.remove(&key);
                let Some(a) = key.1 else { return };
                let failed: Vec<Pending> = self
                    .req
                    .pending
                    .iter()
                    .filter(|p| matches!(&p.want, Want::Claim(c) if c.addr == a))
                    .cloned()
                    .collect();
                for p in failed {
                    self.req.pending.retain(|q| q.id != p.id);
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
                if let Some(a) = self.req.asks.get_mut(&key) {
                    a.stale = true;
                }
            }
        }
    }

    /// Time out requests that waited too long; expire denials and asks so peers are asked again.
    pub(super) fn tick_requests(&mut self) {
        let now = self.now;
        let retry = self.config.retry_ms;
        let timeout = self.config.request_timeout_ms;
        let expired: Vec<Pending> = self
            .req
            .pending
            .iter()
            .filter(|p| now.saturating_sub(p.since) >= timeout)
            .cloned()
            .collect();
        for p in expired {
            let waiting_for = self.waiting_for(&p);
            self.req.pending.retain(|q| q.id != p.id);
            self.reply(
                p.id,
                Err(IpamError::TimedOut {
                    waited_ms: now.saturating_sub(p.since),
                    waiting_for,
                }),
            );
        }
        // Expire denials so a peer that freed space is asked again.
        for m in self.req.denied.values_mut() {
            m.retain(|_, t| now.saturating_sub(*t) < retry);
        }
        self.req.denied.retain(|_, m| !m.is_empty());
        self.req
            .asks
            .retain(|_, a| now.saturating_sub(a.sent) < retry);
    }

    /// A peer granted our ask: merge the ring it sent.
    pub(super) fn on_granted(&mut self, from: &str, nonce: u64, ring: Ring) {
        // Answered: if the space given is not enough, the next ask goes out at once.
        self.req.asks.retain(|_, a| a.nonce != nonce);
        self.on_ring(from, ring, RingKind::Gossip);
    }
}
