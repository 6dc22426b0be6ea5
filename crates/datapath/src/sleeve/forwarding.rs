//! Forwarding decisions: which peer a MAC sits behind, unicast next hops (relay) and
//! flooding along broadcast routes. Pure data; time is an input (nanoseconds on the
//! engine's clock).

use std::collections::HashMap;

use super::{Mac, PeerId};

/// How long a MAC learned from traffic stays valid without being seen again.
pub const MAC_AGE_NANOS: u64 = 300 * 1_000_000_000;

#[derive(Debug, Clone, Copy)]
struct MacEntry {
    peer: PeerId,
    /// None for entries the router programmed (they do not age).
    learned_at: Option<u64>,
}

/// Where a frame read from the TAP goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// To one peer (`dst`), sent to `hop` (== dst when direct).
    Unicast {
        /// Final destination peer.
        dst: PeerId,
        /// The peer the datagrams are sent to.
        hop: PeerId,
    },
    /// Broadcast, multicast or unknown unicast: flood along our broadcast route.
    Flood,
    /// Known destination without a usable path.
    Unreachable(PeerId),
}

/// MAC table, relay routes and broadcast routes of one sleeve.
#[derive(Debug)]
pub struct Forwarding {
    local: PeerId,
    /// Peers and whether we can send to them directly (they have an underlay address).
    peers: HashMap<PeerId, bool>,
    macs: HashMap<Mac, MacEntry>,
    routes: HashMap<PeerId, PeerId>,
    broadcast: HashMap<PeerId, Vec<PeerId>>,
    /// Scratch list of direct peers, kept sorted for the default flood.
    direct: Vec<PeerId>,
}

impl Forwarding {
    /// An empty table for the sleeve of peer `local`.
    pub fn new(local: PeerId) -> Forwarding {
        Forwarding {
            local,
            peers: HashMap::new(),
            macs: HashMap::new(),
            routes: HashMap::new(),
            broadcast: HashMap::new(),
            direct: Vec::new(),
        }
    }

    /// Our own id.
    pub fn local(&self) -> PeerId {
        self.local
    }

    fn rebuild_direct(&mut self) {
        self.direct = self
            .peers
            .iter()
            .filter(|(_, d)| **d)
            .map(|(p, _)| *p)
            .collect();
        self.direct.sort();
    }

    /// Adds or updates a peer; `direct` says whether it has an underlay address.
    pub fn set_peer(&mut self, peer: PeerId, direct: bool) {
        self.peers.insert(peer, direct);
        self.rebuild_direct();
    }

    /// Removes a peer and everything that points at it.
    pub fn remove_peer(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
        self.macs.retain(|_, e| e.peer != peer);
        self.routes.retain(|d, h| *d != peer && *h != peer);
        self.broadcast.remove(&peer);
        for hops in self.broadcast.values_mut() {
            hops.retain(|h| *h != peer);
        }
        self.rebuild_direct();
    }

    /// Whether `peer` is known.
    pub fn has_peer(&self, peer: PeerId) -> bool {
        self.peers.contains_key(&peer)
    }

    /// Programs `mac` as sitting behind `peer` (from gossip); does not age.
    pub fn set_mac(&mut self, mac: Mac, peer: PeerId) {
        self.macs.insert(
            mac,
            MacEntry {
                peer,
                learned_at: None,
            },
        );
    }

    /// Removes a MAC entry. Returns whether there was one.
    pub fn remove_mac(&mut self, mac: &Mac) -> bool {
        self.macs.remove(mac).is_some()
    }

    /// Whether learning `mac` behind `peer` at `now` would change the table (cheap check
    /// under a read lock before taking the write lock).
    pub fn needs_learn(&self, mac: &Mac, peer: PeerId, now: u64) -> bool {
        if mac[0] & 1 != 0 || peer == self.local {
            return false;
        }
        match self.macs.get(mac) {
            Some(e) => match e.learned_at {
                // Refresh at most every few seconds to keep write locks rare.
                Some(t) => e.peer != peer || now.saturating_sub(t) > MAC_AGE_NANOS / 64,
                None => e.peer != peer,
            },
            None => true,
        }
    }

    /// Learns that `mac` (a frame's source) sits behind `peer`. Fresh traffic wins over
    /// programmed entries: a container that moved must not be black-holed.
    pub fn learn(&mut self, mac: Mac, peer: PeerId, now: u64) {
        if mac[0] & 1 != 0 || peer == self.local || !self.peers.contains_key(&peer) {
            return;
        }
        self.macs.insert(
            mac,
            MacEntry {
                peer,
                learned_at: Some(now),
            },
        );
    }

    /// Whether `mac` has an entry (a frame from our own TAP with this source means it moved here).
    pub fn knows_mac(&self, mac: &Mac) -> bool {
        self.macs.contains_key(mac)
    }

    /// The peer behind `mac`, if known and not aged out.
    pub fn lookup(&self, mac: &Mac, now: u64) -> Option<PeerId> {
        let e = self.macs.get(mac)?;
        match e.learned_at {
            Some(t) if now.saturating_sub(t) > MAC_AGE_NANOS => None,
            _ => Some(e.peer),
        }
    }

    /// Drops learned entries older than the age limit.
    pub fn expire(&mut self, now: u64) {
        self.macs.retain(|_, e| {
            e.learned_at
                .is_none_or(|t| now.saturating_sub(t) <= MAC_AGE_NANOS)
        });
    }

    /// Sets (Some) or clears (None) the next hop for traffic to `dst`.
    pub fn set_route(&mut self, dst: PeerId, via: Option<PeerId>) {
        match via {
            Some(v) if v != dst => {
                self.routes.insert(dst, v);
            }
            _ => {
                self.routes.remove(&dst);
            }
        }
    }

    /// Sets (Some) or clears (None) the peers to pass on broadcasts that originate at
    /// `origin`. Without an entry, our own broadcasts go to every direct peer and other
    /// peers' broadcasts are not passed on.
    pub fn set_broadcast_route(&mut self, origin: PeerId, next_hops: Option<Vec<PeerId>>) {
        match next_hops {
            Some(h) => {
                self.broadcast.insert(origin, h);
            }
            None => {
                self.broadcast.remove(&origin);
            }
        }
    }

    /// The peer to send datagrams for `dst` to: the programmed next hop, else `dst`
    /// itself when it is direct.
    pub fn next_hop(&self, dst: PeerId) -> Option<PeerId> {
        if let Some(h) = self.routes.get(&dst) {
            return (self.peers.get(h) == Some(&true)).then_some(*h);
        }
        (self.peers.get(&dst) == Some(&true)).then_some(dst)
    }

    /// Where a frame with destination `dst_mac` read from our TAP goes.
    pub fn egress(&self, dst_mac: &Mac, now: u64) -> Egress {
        if dst_mac[0] & 1 != 0 {
            return Egress::Flood;
        }
        match self.lookup(dst_mac, now) {
            Some(p) if p == self.local => Egress::Flood,
            Some(p) => match self.next_hop(p) {
                Some(hop) => Egress::Unicast { dst: p, hop },
                None => Egress::Unreachable(p),
            },
            None => Egress::Flood,
        }
    }

    /// The peers to pass a broadcast from `origin` on to, never back to `came_from`
    /// and never to the origin itself.
    pub fn flood_hops(
        &self,
        origin: PeerId,
        came_from: Option<PeerId>,
    ) -> impl Iterator<Item = PeerId> + '_ {
        let list: &[PeerId] = match self.broadcast.get(&origin) {
            Some(h) => h,
            None if origin == self.local => &self.direct,
            None => &[],
        };
        list.iter().copied().filter(move |p| {
            Some(*p) != came_from
                && *p != origin
                && *p != self.local
                && self.peers.get(p) == Some(&true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: PeerId = PeerId(1);
    const B: PeerId = PeerId(2);
    const C: PeerId = PeerId(3);
    const M: Mac = [2, 0, 0, 0, 0, 9];

    #[test]
    fn learned_macs_route_unicast_and_age_out() {
        let mut f = Forwarding::new(A);
        f.set_peer(B, true);
        assert_eq!(f.egress(&M, 0), Egress::Flood);
        f.learn(M, B, 10);
        assert_eq!(f.egress(&M, 20), Egress::Unicast { dst: B, hop: B });
        assert_eq!(f.egress(&M, 11 + MAC_AGE_NANOS), Egress::Flood);
        f.expire(11 + MAC_AGE_NANOS);
        assert!(!f.knows_mac(&M));
        // Broadcast/multicast always floods; multicast sources are never learned.
        assert_eq!(f.egress(&[0xff; 6], 0), Egress::Flood);
        f.learn([1, 0, 0, 0, 0, 1], B, 0);
        assert_eq!(f.lookup(&[1, 0, 0, 0, 0, 1], 0), None);
    }

    #[test]
    fn relay_routes_pick_the_next_hop() {
        let mut f = Forwarding::new(A);
        f.set_peer(B, true);
        f.set_peer(C, false);
        f.set_mac(M, C);
        assert_eq!(f.egress(&M, 0), Egress::Unreachable(C));
        f.set_route(C, Some(B));
        assert_eq!(f.egress(&M, 0), Egress::Unicast { dst: C, hop: B });
        f.remove_peer(B);
        assert_eq!(f.egress(&M, 0), Egress::Unreachable(C));
    }

    #[test]
    fn floods_follow_broadcast_routes() {
        let mut f = Forwarding::new(B);
        f.set_peer(A, true);
        f.set_peer(C, true);
        let own: Vec<_> = f.flood_hops(B, None).collect();
        assert_eq!(own, vec![A, C]);
        assert_eq!(f.flood_hops(A, Some(A)).count(), 0);
        f.set_broadcast_route(A, Some(vec![A, C]));
        let fwd: Vec<_> = f.flood_hops(A, Some(A)).collect();
        assert_eq!(fwd, vec![C]);
    }
}
