//! The contract between the mesh and the cores that run on it (IPAM, DNS gossip, path
//! choice): a [`MeshApp`] is sans-IO. It is handed a message from a peer, a topology change
//! or the time it asked to be woken at, and is polled for what to send ([`Transmit`]), for
//! its own effects (kernel plans, persistence, replies: [`MeshApp::Effect`]), for peers to
//! drop ([`Disconnect`]) and for when it next wants the time. The router's generic driver
//! and the seeded simulation ([`crate::sim`]) run every core through this one trait (the
//! shape of firezone's snownet: handle input, handle timeout, poll transmit, poll event).

use std::net::SocketAddr;

use crate::topology::Topology;

/// Milliseconds on a monotonic clock chosen by the driver (the simulation's clock in
/// tests): the one time type of every core.
pub type Millis = u64;

/// What a core asks the mesh to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// To one peer (routed through next hops).
    To {
        /// Mesh channel.
        channel: u16,
        /// Destination peer name.
        dst: String,
        /// Payload.
        payload: Vec<u8>,
    },
    /// To every other reachable peer (along our broadcast tree).
    Broadcast {
        /// Mesh channel.
        channel: u16,
        /// Payload.
        payload: Vec<u8>,
    },
}

/// A peer a core asks the mesh to drop: it broke a bound of the core's protocol (a hostile
/// or broken peer). The mesh closes its direct connection to it, if it has one, with the
/// reason; the core itself stops taking that peer's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// The peer.
    pub peer: String,
    /// Which bound it broke, for the log and the peer's refusal.
    pub reason: String,
}

/// A reachable peer as the cores see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reachable {
    /// Peer name.
    pub name: String,
    /// Nickname.
    pub nickname: String,
    /// Its control (and sleeve) port.
    pub listen_port: u16,
    /// Underlay address of our connection to it, when directly connected.
    pub direct: Option<SocketAddr>,
    /// Next hop towards it (None for ourselves).
    pub next_hop: Option<String>,
    /// Our children in the broadcast tree rooted at it (the mesh's one BFS).
    pub children: Vec<String>,
    /// In our own broadcast tree it has children: it passes our broadcasts on.
    pub relays_ours: bool,
}

/// The topology as of a change: every reachable peer (us included), sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopologyView {
    /// Our own name.
    pub me: String,
    /// Reachable peers, us included, sorted by name.
    pub peers: Vec<Reachable>,
}

impl TopologyView {
    /// Builds the view from the topology and our direct connections.
    pub(crate) fn build(topo: &mut Topology, me: &str, direct: &[(String, SocketAddr)]) -> Self {
        let names = topo.reachable().to_vec();
        let relays = topo.own_relays();
        let mut peers = Vec::with_capacity(names.len());
        for name in names {
            let Some(e) = topo.get(&name) else { continue };
            let (nickname, listen_port) = (e.nickname.clone(), e.listen_port);
            peers.push(Reachable {
                direct: direct.iter().find(|(n, _)| *n == name).map(|(_, a)| *a),
                next_hop: topo.next_hop(&name),
                children: topo.broadcast_children(&name).unwrap_or_default(),
                relays_ours: relays.binary_search(&name).is_ok(),
                nickname,
                listen_port,
                name,
            });
        }
        TopologyView {
            me: me.to_string(),
            peers,
        }
    }

    /// The reachable peer of that name.
    pub fn get(&self, name: &str) -> Option<&Reachable> {
        self.peers
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.peers[i])
    }

    /// Names of the reachable peers, us included.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.peers.iter().map(|p| p.name.as_str())
    }
}

/// A sans-IO core that runs on the mesh. Inputs specific to a core (a local request, a
/// heartbeat answer) are its own methods; the driver polls after each of them too.
pub trait MeshApp {
    /// What the core asks its driver to carry out besides sending (kernel plans, writes,
    /// replies to local requests).
    type Effect;

    /// A payload from peer `from` on `channel` (cores ignore channels not theirs).
    fn handle_message(&mut self, now: Millis, channel: u16, from: &str, payload: &[u8]);

    /// The topology changed (peers, connections, routes or broadcast trees).
    fn handle_topology(&mut self, now: Millis, topology: &TopologyView);

    /// Whether the core reads the topology at all: building a view costs a walk of the
    /// whole mesh, which a core that ignores it should not pay on every change.
    fn wants_topology(&self) -> bool {
        true
    }

    /// The time asked for by [`MeshApp::poll_timeout`] has come (or passed).
    fn handle_timeout(&mut self, _now: Millis) {}

    /// The next payload to send, in order (a core that only listens has none).
    fn poll_transmit(&mut self) -> Option<Transmit> {
        None
    }

    /// The next effect to carry out, in order (a core whose work is all in what it sends
    /// or in a shared store has none).
    fn poll_effect(&mut self) -> Option<Self::Effect> {
        None
    }

    /// When the core next wants [`MeshApp::handle_timeout`] (None, the default: only on
    /// input).
    fn poll_timeout(&self) -> Option<Millis> {
        None
    }

    /// The next peer to drop (a core whose peers cannot break its bounds has none).
    fn poll_disconnect(&mut self) -> Option<Disconnect> {
        None
    }
}
