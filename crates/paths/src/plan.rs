//! What the path core decides and asks the driver to carry out: the path per peer and the
//! changes to the VXLAN FDB and the sleeve's tables, one operation at a time.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{Ipv4Addr, SocketAddr};

use weft_mesh::Millis;
use weft_types::CipherKind;

/// The path a peer's unicast traffic takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Kernel VXLAN to this underlay address.
    Fastdp(Ipv4Addr),
    /// Sleeve, straight to the peer.
    Sleeve(SocketAddr),
    /// Sleeve, relayed by this peer.
    Relay(String),
}

impl Mode {
    /// Whether this is fastdp.
    pub fn is_fastdp(&self) -> bool {
        matches!(self, Mode::Fastdp(_))
    }
}

/// What the sleeve key of a peer derives from (the driver holds the password and computes
/// HMAC-SHA256(password, "weft-sleeve-1 LO HI")).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SleeveKey {
    /// No password: frames go in clear.
    Clear,
    /// Sealed with a key per pair of router runs (the smaller run id first).
    Derive {
        /// The smaller run id.
        lo: String,
        /// The larger run id.
        hi: String,
        /// The cipher both sides chose from their offers (AES-256-GCM when both offer it).
        cipher: CipherKind,
    },
}

/// One change to the kernel's VXLAN FDB or to the sleeve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// VXLAN unicast entry MAC → VTEP (None: remove it).
    VxlanMac {
        /// The MAC.
        mac: [u8; 6],
        /// The VTEP.
        ip: Option<Ipv4Addr>,
    },
    /// VXLAN flood entry towards a VTEP (added or removed).
    VxlanFlood {
        /// The VTEP.
        ip: Ipv4Addr,
        /// Present or not.
        on: bool,
    },
    /// Add (or replace) a sleeve peer.
    SleevePeer {
        /// Its short id.
        id: u32,
        /// Its name.
        name: String,
        /// Underlay address when direct (None: reached through a relay).
        addr: Option<SocketAddr>,
        /// Its key.
        key: SleeveKey,
    },
    /// Remove a sleeve peer (the sleeve drops its MAC entries and routes too).
    SleevePeerGone {
        /// Its short id.
        id: u32,
    },
    /// Sleeve relay route: destination → next hop (None: remove).
    SleeveRoute {
        /// Destination id.
        dst: u32,
        /// Next hop id.
        via: Option<u32>,
    },
    /// Sleeve MAC entry (None: remove).
    SleeveMac {
        /// The MAC.
        mac: [u8; 6],
        /// The peer id.
        id: Option<u32>,
    },
    /// Whether the sleeve keeps its own heartbeats (round-trip time, path-MTU search) to a
    /// direct peer: not while the peer is on fastdp, whose heartbeats decide the path.
    SleeveQuiet {
        /// The peer's id.
        id: u32,
        /// No sleeve heartbeats.
        quiet: bool,
    },
    /// Sleeve broadcast route: origin → next hops (None: remove).
    Broadcast {
        /// Origin id.
        origin: u32,
        /// Next hop ids.
        hops: Option<Vec<u32>>,
    },
}

/// What the path core asks its driver to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathEffect {
    /// Change the kernel or the sleeve.
    Apply(Op),
    /// A peer changed between fastdp and the sleeve (or got its first path): the bridge
    /// must forget where it learned these MACs so the next frame is flooded.
    Switched {
        /// The peer.
        peer: String,
        /// Its previous path.
        from: Option<Mode>,
        /// Its new path.
        to: Mode,
        /// Its bridge and container MACs.
        macs: Vec<[u8; 6]>,
    },
    /// The path of a peer for the status (None: no path any more).
    Path {
        /// The peer.
        peer: String,
        /// Its path.
        mode: Option<Mode>,
        /// Its underlay address when direct.
        direct: Option<Ipv4Addr>,
    },
    /// Send a fastdp heartbeat to this bridge MAC. Only the peer with the smaller id of a
    /// pair sends them; the token tells the other whether its answers arrive (1) or not
    /// (0), so each side knows the round trip with one ping and one answer per period.
    /// A size probe ([`crate::core::TOKEN_PROBE`]) is padded to `size` and answered
    /// with an answer of the same size: fastdp must carry the overlay MTU both ways. To a
    /// peer that knows it, the size probe is the heartbeat too ([`crate::core::TOKEN_BEAT`]).
    Ping {
        /// The peer's bridge MAC.
        dst: [u8; 6],
        /// 1: your answers arrive; 0: they do not; [`crate::core::TOKEN_PROBE`]: a size
        /// probe (with [`crate::core::TOKEN_BEAT`] and the verdict: the heartbeat too).
        token: Millis,
        /// 0: an ordinary heartbeat (the smallest frame); else the bytes after the
        /// Ethernet header, as a packet of the overlay of that size would have.
        size: u32,
    },
}

/// A table entry several peers may ask for (a container that moved is announced by its
/// old and its new host for a moment): the latest asker wins, and the entry goes only when
/// nobody asks for it.
#[derive(Debug)]
pub(crate) struct Owned<K, V> {
    map: HashMap<K, Vec<(usize, V)>>,
}

impl<K, V> Default for Owned<K, V> {
    fn default() -> Self {
        Owned {
            map: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Copy, V: Clone + PartialEq> Owned<K, V> {
    /// The value in effect.
    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k).and_then(|v| v.last()).map(|(_, v)| v)
    }

    /// `owner` asks for `k` → `v`; returns the new value in effect if it changed.
    pub(crate) fn insert(&mut self, k: K, owner: usize, v: V) -> Option<V> {
        let before = self.get(&k).cloned();
        let list = self.map.entry(k).or_default();
        list.retain(|(o, _)| *o != owner);
        list.push((owner, v.clone()));
        (before.as_ref() != Some(&v)).then_some(v)
    }

    /// `owner` no longer asks for `k`; returns the value in effect if it changed.
    pub(crate) fn remove(&mut self, k: K, owner: usize) -> Option<Option<V>> {
        let list = self.map.get_mut(&k)?;
        let before = list.last().map(|(_, v)| v.clone());
        list.retain(|(o, _)| *o != owner);
        let after = list.last().map(|(_, v)| v.clone());
        if list.is_empty() {
            self.map.remove(&k);
        }
        (before != after).then_some(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_owner_wins_and_the_entry_goes_with_the_last() {
        let mut o: Owned<u8, u32> = Owned::default();
        assert_eq!(o.insert(1, 10, 100), Some(100));
        assert_eq!(o.insert(1, 10, 100), None);
        assert_eq!(o.insert(1, 11, 111), Some(111));
        assert_eq!(o.remove(1, 10), None, "the winner stays");
        assert_eq!(o.remove(1, 11), Some(None));
        assert_eq!(o.get(&1), None);
    }
}
