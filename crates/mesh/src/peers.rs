//! The peer bookkeeping of a gossip core on the mesh (DNS, services): which peers are
//! reachable, which were refused for breaking the protocol, and what is queued for the
//! mesh on the core's channel. The cores keep what they gossip; this keeps who with.

use std::collections::{BTreeSet, VecDeque};
use std::fmt::Display;

use crate::app::{Disconnect, TopologyView, Transmit};

/// The peers of one gossip core and its queues towards the mesh.
#[derive(Debug, Clone)]
pub struct GossipPeers {
    me: String,
    channel: u16,
    /// Reachable peers, without us.
    reachable: BTreeSet<String>,
    /// Peers dropped for breaking the protocol: ignored until they are unreachable.
    refused: BTreeSet<String>,
    transmits: VecDeque<Transmit>,
    disconnects: VecDeque<Disconnect>,
}

/// How the set of reachable peers changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerChange {
    /// Peers that became reachable, sorted.
    pub added: Vec<String>,
    /// Peers that are not reachable any more, sorted.
    pub gone: Vec<String>,
}

impl GossipPeers {
    /// No peers yet, for peer `me` sending on mesh channel `channel`.
    pub fn new(me: &str, channel: u16) -> Self {
        GossipPeers {
            me: me.to_string(),
            channel,
            reachable: BTreeSet::new(),
            refused: BTreeSet::new(),
            transmits: VecDeque::new(),
            disconnects: VecDeque::new(),
        }
    }

    /// Our own peer name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The mesh channel the core sends and takes on.
    pub fn channel(&self) -> u16 {
        self.channel
    }

    /// Reachable peers, without us.
    pub fn reachable(&self) -> &BTreeSet<String> {
        &self.reachable
    }

    /// Whether `peer` is reachable.
    pub fn is_reachable(&self, peer: &str) -> bool {
        self.reachable.contains(peer)
    }

    /// Whether `peer` was refused (and is still reachable).
    pub fn is_refused(&self, peer: &str) -> bool {
        self.refused.contains(peer)
    }

    /// The reachable peers of `topology` (without us), when they are not those held.
    pub fn changed(&self, topology: &TopologyView) -> Option<BTreeSet<String>> {
        let peers: BTreeSet<String> = topology
            .names()
            .filter(|n| *n != self.me)
            .map(String::from)
            .collect();
        (peers != self.reachable).then_some(peers)
    }

    /// Takes the set of reachable peers (without us); a refused peer that went gets
    /// another chance when it comes back.
    pub fn set(&mut self, peers: BTreeSet<String>) -> PeerChange {
        let change = PeerChange {
            added: peers.difference(&self.reachable).cloned().collect(),
            gone: self.reachable.difference(&peers).cloned().collect(),
        };
        self.reachable = peers;
        self.refused.retain(|p| self.reachable.contains(p));
        change
    }

    /// Queues `payload` for peer `dst`.
    pub fn send(&mut self, dst: &str, payload: Vec<u8>) {
        self.transmits.push_back(Transmit::To {
            channel: self.channel,
            dst: dst.to_string(),
            payload,
        });
    }

    /// Queues `payload` for every reachable peer.
    pub fn broadcast(&mut self, payload: Vec<u8>) {
        self.transmits.push_back(Transmit::Broadcast {
            channel: self.channel,
            payload,
        });
    }

    /// Refuses `peer` for `why`: ignored while it stays reachable, and the mesh is asked to
    /// drop it. False when it was refused already (nothing more to do).
    pub fn refuse(&mut self, peer: &str, why: &dyn Display) -> bool {
        if !self.refused.insert(peer.to_string()) {
            return false;
        }
        self.disconnects.push_back(Disconnect {
            peer: peer.to_string(),
            reason: why.to_string(),
        });
        true
    }

    /// The next payload to send ([`crate::MeshApp::poll_transmit`]).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next peer to drop ([`crate::MeshApp::poll_disconnect`]).
    pub fn poll_disconnect(&mut self) -> Option<Disconnect> {
        self.disconnects.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Reachable;

    fn view(names: &[&str]) -> TopologyView {
        TopologyView {
            me: "me".into(),
            peers: names
                .iter()
                .map(|n| Reachable {
                    name: n.to_string(),
                    ..Reachable::default()
                })
                .collect(),
        }
    }

    #[test]
    fn a_refused_peer_is_dropped_once_and_forgiven_after_it_went() {
        let mut p = GossipPeers::new("me", 3);
        let set = p.changed(&view(&["a", "me"])).unwrap();
        assert_eq!(
            p.set(set),
            PeerChange {
                added: vec!["a".into()],
                gone: vec![]
            }
        );
        assert_eq!(p.changed(&view(&["a", "me"])), None);
        assert!(p.refuse("a", &"bad"));
        assert!(!p.refuse("a", &"bad again"));
        assert!(p.is_refused("a"));
        let d = p.poll_disconnect().unwrap();
        assert_eq!((d.peer.as_str(), d.reason.as_str()), ("a", "bad"));
        assert_eq!(p.poll_disconnect(), None);
        let change = p.set(BTreeSet::new());
        assert_eq!(change.gone, vec!["a".to_string()]);
        assert!(!p.is_refused("a") && !p.is_reachable("a"));
        p.send("a", vec![1]);
        p.broadcast(vec![2]);
        assert!(matches!(
            p.poll_transmit(),
            Some(Transmit::To { channel: 3, .. })
        ));
        assert!(matches!(
            p.poll_transmit(),
            Some(Transmit::Broadcast { channel: 3, .. })
        ));
    }
}
