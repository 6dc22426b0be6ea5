//! A deterministic simulation of many peers: simulated clock and network (latency,
//! loss, partitions), crashes (with or without the kernel resetting the sockets) and
//! restarts. Every run is reproducible from its seed.
//!
//! Cores plug in as a [`MeshApp`] on each peer, exactly as the router runs them: they get
//! the payloads the mesh delivers, its topology changes and the times they asked for; what
//! they transmit goes through the simulated mesh, their effects are kept for the test
//! ([`Sim::take_effects`]).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use rand::{Rng, SeedableRng};

use crate::app::{MeshApp, Millis, TopologyView, Transmit};
use crate::mesh::{Action, ConnEvent, ConnId, Mesh, MeshConfig, Timing};

/// A view of the mesh: peers and established edges (smaller name first).
pub type View = (Vec<String>, Vec<(String, String)>);

/// The empty application.
#[derive(Debug, Default)]
pub struct NoApp;

impl MeshApp for NoApp {
    type Effect = ();
    fn handle_message(&mut self, _: Millis, _: u16, _: &str, _: &[u8]) {}
    fn handle_topology(&mut self, _: Millis, _: &TopologyView) {}
    fn wants_topology(&self) -> bool {
        false
    }
}

/// Whom a new peer `i` dials: up to `dials` distinct earlier peers, at random.
pub fn earlier_targets(i: usize, dials: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut t: Vec<usize> = (0..dials.min(i)).map(|_| rng.random_range(0..i)).collect();
    t.sort();
    t.dedup();
    t
}

/// Knobs of a simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of everything random.
    pub seed: u64,
    /// One-way latency range, ms.
    pub latency: (u64, u64),
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that an application payload is lost on delivery, the mesh's own
    /// messages getting through: only the cores have to repair it.
    pub app_loss: f64,
    /// Tick period of each peer, ms.
    pub tick: u64,
    /// Peers dial addresses learned from gossip.
    pub discovery: bool,
    /// Connection limit of each peer.
    pub conn_limit: usize,
    /// Core timers.
    pub timing: Timing,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            latency: (1, 20),
            loss: 0.0,
            app_loss: 0.0,
            tick: 100,
            discovery: false,
            conn_limit: 200,
            timing: Timing::default(),
        }
    }
}

/// Bytes and messages sent, per peer and in total.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    /// Messages sent.
    pub messages: u64,
    /// Bytes sent, counted as on the wire (frame header and AEAD tag included).
    pub bytes: u64,
}

#[derive(Debug)]
enum Ev {
    Tick,
    /// The application's timer.
    Wake,
    /// What a connection reports, as the router's connection tasks do.
    Conn(ConnEvent),
}

struct Node<A: MeshApp> {
    name: String,
    addr: SocketAddr,
    mesh: Option<Mesh>,
    app: A,
    /// When the application's timer is scheduled (None: not scheduled).
    wake: Option<u64>,
    /// The mesh reported a topology change the application was not told of yet.
    topo_dirty: bool,
    /// Effects the application returned, for the test to take.
    effects: Vec<A::Effect>,
    incarnation: u64,
    group: u32,
    targets: Vec<String>,
    traffic: Traffic,
}

#[derive(Debug, Clone, Copy)]
struct Link {
    node: usize,
    peer: usize,
    peer_conn: ConnId,
    /// Deliveries on a link keep their order, as on TCP.
    last_at: u64,
}

/// The simulated world.
pub struct Sim<A: MeshApp> {
    cfg: SimConfig,
    now: u64,
    seq: u64,
    rng: rand::rngs::StdRng,
    nodes: Vec<Node<A>>,
    by_addr: HashMap<String, usize>,
    links: HashMap<ConnId, Link>,
    next_conn: ConnId,
    queue: BinaryHeap<Reverse<(u64, u64, usize, u64)>>,
    events: HashMap<u64, Ev>,
    make_app: Box<dyn FnMut(usize) -> A>,
}

impl<A: MeshApp> Sim<A> {
    /// An empty world; `make_app` builds the application of peer `i` (also on restart).
    pub fn new(cfg: SimConfig, make_app: impl FnMut(usize) -> A + 'static) -> Self {
        Sim {
            rng: rand::rngs::StdRng::seed_from_u64(cfg.seed),
            cfg,
            now: 0,
            seq: 0,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            links: HashMap::new(),
            next_conn: 1,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            make_app: Box::new(make_app),
        }
    }

    /// Simulated time, ms.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Number of peers ever added.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no peer was added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Name of peer `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The `IP:PORT` of peer `i`.
    pub fn addr(&self, i: usize) -> String {
        self.nodes[i].addr.to_string()
    }

    /// Peer `i`'s mesh, if it runs.
    pub fn mesh(&mut self, i: usize) -> Option<&mut Mesh> {
        self.nodes[i].mesh.as_mut()
    }

    /// Peer `i`'s application.
    pub fn app(&mut self, i: usize) -> &mut A {
        &mut self.nodes[i].app
    }

    /// Whether peer `i` runs.
    pub fn alive(&self, i: usize) -> bool {
        self.nodes[i].mesh.is_some()
    }

    /// Traffic sent by peer `i` since it was added.
    pub fn traffic(&self, i: usize) -> &Traffic {
        &self.nodes[i].traffic
    }

    /// Traffic summed over every peer.
    pub fn total_traffic(&self) -> Traffic {
        let mut t = Traffic::default();
        for n in &self.nodes {
            t.messages += n.traffic.messages;
            t.bytes += n.traffic.bytes;
        }
        t
    }

    /// Adds and starts a peer that will dial the given peers.
    pub fn add_peer(&mut self, targets: &[usize]) -> usize {
        let i = self.nodes.len();
        let name = format!("p{i:04}");
        let ip = Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
        let addr = SocketAddr::V4(SocketAddrV4::new(ip, 6783));
        self.by_addr.insert(addr.to_string(), i);
        let app = (self.make_app)(i);
        self.nodes.push(Node {
            name,
            addr,
            mesh: None,
            app,
            wake: None,
            topo_dirty: true,
            effects: Vec::new(),
            incarnation: 0,
            group: 0,
            targets: targets.iter().map(|t| self.by_addr_of(*t)).collect(),
            traffic: Traffic::default(),
        });
        self.start(i);
        i
    }

    fn by_addr_of(&self, i: usize) -> String {
        format!("10.{}.{}.{}:6783", (i >> 16) as u8, (i >> 8) as u8, i as u8)
    }

    fn start(&mut self, i: usize) {
        let uid = self.rng.random();
        let n = &mut self.nodes[i];
        n.incarnation += 1;
        let mut mesh = Mesh::new(MeshConfig {
            name: n.name.clone(),
            nickname: format!("host{i}"),
            uid,
            listen_port: 6783,
            conn_limit: self.cfg.conn_limit,
            discovery: self.cfg.discovery,
            initial_version: self.now,
            timing: self.cfg.timing.clone(),
        });
        let targets = n.targets.clone();
        mesh.add_targets(self.now, &targets, false);
        n.mesh = Some(mesh);
        n.wake = None;
        n.topo_dirty = true;
        let phase = self.rng.random_range(0..self.cfg.tick.max(1));
        self.schedule(self.now + phase, i, Ev::Tick);
        self.drain(i);
    }

    /// Adds `n` peers with random connectivity: each names one earlier peer, some name a
    /// second. With `wave`, the mesh runs for 500 ms after every `wave` peers, as a cluster
    /// that is rolled out.
    pub fn add_random_peers(&mut self, n: usize, rng: &mut impl Rng, wave: Option<usize>) {
        self.add_peer(&[]);
        for i in 1..n {
            let mut t = vec![rng.random_range(0..i)];
            if rng.random_bool(0.3) {
                t.push(rng.random_range(0..i));
            }
            self.add_peer(&t);
            if wave.is_some_and(|w| i % w == 0) {
                self.run_for(500);
            }
        }
    }

    /// Makes peer `i` also dial peer `j` (like `weft connect`).
    pub fn connect(&mut self, i: usize, j: usize) {
        let t = self.by_addr_of(j);
        self.nodes[i].targets.push(t.clone());
        let now = self.now;
        if let Some(m) = self.nodes[i].mesh.as_mut() {
            m.add_targets(now, &[t], false);
        }
        self.drain(i);
    }

    /// Kills peer `i`. With `reset`, its neighbours see their connections close (the
    /// kernel resets the sockets of a killed process); without, they must notice by
    /// silence (a cut cable).
    pub fn crash(&mut self, i: usize, reset: bool) {
        self.nodes[i].mesh = None;
        let mut conns: Vec<(ConnId, Link)> = self
            .links
            .iter()
            .filter(|(_, l)| l.node == i)
            .map(|(c, l)| (*c, *l))
            .collect();
        // HashMap order varies between runs; the events scheduled below must not.
        conns.sort_by_key(|(c, _)| *c);
        for (c, l) in conns {
            self.links.remove(&c);
            self.links.remove(&l.peer_conn);
            if reset && self.reachable(i, l.peer) {
                let at = self.now + self.latency();
                self.schedule(
                    at,
                    l.peer,
                    Ev::Conn(ConnEvent::Closed {
                        conn: l.peer_conn,
                        reason: "connection reset by peer".into(),
                    }),
                );
            }
        }
    }

    /// Restarts peer `i` with a fresh run id and application.
    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].mesh.is_none() {
            self.nodes[i].app = (self.make_app)(i);
            self.start(i);
        }
    }

    /// Splits the network: peers in different groups cannot reach each other.
    pub fn partition(&mut self, group_of: impl Fn(usize) -> u32) {
        for (i, n) in self.nodes.iter_mut().enumerate() {
            n.group = group_of(i);
        }
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        for n in &mut self.nodes {
            n.group = 0;
        }
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        self.nodes[a].group == self.nodes[b].group
    }

    fn latency(&mut self) -> u64 {
        let (lo, hi) = self.cfg.latency;
        self.rng.random_range(lo..=hi.max(lo))
    }

    fn schedule(&mut self, at: u64, node: usize, ev: Ev) {
        self.seq += 1;
        let inc = self.nodes[node].incarnation;
        self.events.insert(self.seq, ev);
        self.queue.push(Reverse((at, self.seq, node, inc)));
    }

    /// Runs the world until `until` (ms).
    pub fn run_until(&mut self, until: u64) {
        while let Some(Reverse((at, seq, node, inc))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            let Some(ev) = self.events.remove(&seq) else {
                continue;
            };
            self.now = at;
            if self.nodes[node].incarnation != inc || self.nodes[node].mesh.is_none() {
                continue;
            }
            self.handle(node, ev);
        }
        self.now = until.max(self.now);
    }

    /// Runs for `ms` more.
    pub fn run_for(&mut self, ms: u64) {
        let until = self.now + ms;
        self.run_until(until);
    }

    /// Runs until every running peer's view matches the real topology of its part of the
    /// network, checking every `step` ms; returns the time it took, or why it did not
    /// converge by `limit` ms.
    pub fn run_until_converged(&mut self, limit: u64, step: u64) -> Result<u64, String> {
        let start = self.now;
        loop {
            if let Ok(()) = self.check_converged() {
                return Ok(self.now - start);
            }
            if self.now - start >= limit {
                return Err(self.check_converged().unwrap_err());
            }
            self.run_for(step);
        }
    }

    /// Ok when every running peer sees exactly the peers and established edges of its
    /// connected component (computed from the connections the peers really hold).
    pub fn check_converged(&mut self) -> Result<(), String> {
        let n = self.nodes.len();
        let names: Vec<String> = self.nodes.iter().map(|x| x.name.clone()).collect();
        let index: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i))
            .collect();
        let mut nbrs: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(m) = &node.mesh {
                for nb in m.neighbours() {
                    if let Some(&j) = index.get(nb.name.as_str()) {
                        nbrs[i].push(j);
                    }
                }
            }
        }
        // Established = both ends hold the connection.
        let adj: Vec<Vec<usize>> = (0..n)
            .map(|i| {
                let mut v: Vec<usize> = nbrs[i]
                    .iter()
                    .copied()
                    .filter(|&j| nbrs[j].contains(&i))
                    .collect();
                v.sort();
                v.dedup();
                v
            })
            .collect();
        let mut comp = vec![usize::MAX; n];
        let mut truths: Vec<View> = Vec::new();
        for s in 0..n {
            if comp[s] != usize::MAX || self.nodes[s].mesh.is_none() {
                continue;
            }
            let id = truths.len();
            let mut stack = vec![s];
            comp[s] = id;
            let mut members = vec![s];
            while let Some(p) = stack.pop() {
                for &q in &adj[p] {
                    if comp[q] == usize::MAX {
                        comp[q] = id;
                        members.push(q);
                        stack.push(q);
                    }
                }
            }
            let mut peers: Vec<String> = members.iter().map(|&i| names[i].clone()).collect();
            peers.sort();
            let mut edges = Vec::new();
            for &p in &members {
                for &q in &adj[p] {
                    if names[p] < names[q] {
                        edges.push((names[p].clone(), names[q].clone()));
                    }
                }
            }
            edges.sort();
            truths.push((peers, edges));
        }
        // Settled: every peer is connected to each target that runs and can be reached.
        for i in 0..n {
            let Some(m) = self.nodes[i].mesh.as_ref() else {
                continue;
            };
            for t in m.target_status() {
                let Some(&j) = self.by_addr.get(&t.address) else {
                    continue;
                };
                if t.explicit
                    && t.state != "connected"
                    && self.nodes[j].mesh.is_some()
                    && self.nodes[i].group == self.nodes[j].group
                {
                    return Err(format!(
                        "peer {} is not connected to its target {} yet (t={} ms)",
                        names[i], names[j], self.now
                    ));
                }
            }
        }
        for i in 0..n {
            let Some(m) = self.nodes[i].mesh.as_mut() else {
                continue;
            };
            let (peers, mut edges) = m.view();
            edges.sort();
            let truth = &truths[comp[i]];
            let seen = [
                ("peers", peers.len(), truth.0.len(), peers == truth.0),
                ("edges", edges.len(), truth.1.len(), edges == truth.1),
            ];
            if let Some((what, sees, has, _)) = seen.iter().find(|s| !s.3) {
                return Err(format!(
                    "peer {} sees {sees} {what}, its component has {has} (t={} ms)",
                    names[i], self.now
                ));
            }
        }
        Ok(())
    }

    /// Runs `f` on peer `i`'s application now (a local request, like the router's API
    /// does), then carries out what it asks for.
    pub fn with_app<R>(&mut self, i: usize, f: impl FnOnce(&mut A, Millis) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.nodes[i].app, now);
        self.pump(i);
        self.drain(i);
        r
    }

    /// Sends a payload from peer `i` now, as if its application had asked to.
    pub fn app_send(&mut self, i: usize, t: Transmit) {
        let now = self.now;
        if let Some(m) = self.nodes[i].mesh.as_mut() {
            let _ = m.transmit(now, t);
        }
        self.drain(i);
    }

    /// Takes the effects peer `i`'s application returned so far.
    pub fn take_effects(&mut self, i: usize) -> Vec<A::Effect> {
        std::mem::take(&mut self.nodes[i].effects)
    }

    /// Sends what peer `i`'s application asks to, keeps its effects and schedules its
    /// timer.
    fn pump(&mut self, i: usize) {
        let now = self.now;
        let node = &mut self.nodes[i];
        while let Some(e) = node.app.poll_effect() {
            node.effects.push(e);
        }
        let Some(m) = node.mesh.as_mut() else {
            return;
        };
        while let Some(t) = node.app.poll_transmit() {
            // Sends to unreachable peers are dropped, as a real caller would see an error.
            let _ = m.transmit(now, t);
        }
        while let Some(d) = node.app.poll_disconnect() {
            m.disconnect_peer(now, &d.peer, &d.reason);
        }
        if let Some(at) = node.app.poll_timeout() {
            let at = at.max(now);
            if node.wake.is_none_or(|w| at < w) {
                node.wake = Some(at);
                self.schedule(at, i, Ev::Wake);
            }
        }
    }

    /// Tells peer `i`'s application of a topology change the mesh reported.
    fn topology(&mut self, i: usize) {
        let now = self.now;
        let node = &mut self.nodes[i];
        if !node.topo_dirty {
            return;
        }
        node.topo_dirty = false;
        if !node.app.wants_topology() {
            return;
        }
        let Some(m) = node.mesh.as_mut() else { return };
        let view = m.topology_view();
        node.app.handle_topology(now, &view);
        self.pump(i);
    }

    fn handle(&mut self, i: usize, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Tick => {
                let tick = self.cfg.tick;
                self.schedule(now + tick, i, Ev::Tick);
                let Some(m) = self.nodes[i].mesh.as_mut() else {
                    return;
                };
                m.tick(now);
            }
            Ev::Wake => {
                let node = &mut self.nodes[i];
                if node.wake != Some(now) {
                    return; // superseded by an earlier wake-up
                }
                node.wake = None;
                if node.app.poll_timeout().is_some_and(|at| at <= now) {
                    node.app.handle_timeout(now);
                }
                self.pump(i);
            }
            Ev::Conn(ConnEvent::Up {
                conn, addr, target, ..
            }) if !self.links.contains_key(&conn) => {
                // The other side is gone already.
                if let (Some(m), Some(t)) = (self.nodes[i].mesh.as_mut(), target) {
                    m.connect_failed(
                        now,
                        Some(&t),
                        Some(addr),
                        true,
                        "connection closed during handshake",
                    );
                }
            }
            Ev::Conn(ev) => {
                if let ConnEvent::Closed { conn, .. } = &ev {
                    self.links.remove(conn);
                }
                if let Some(m) = self.nodes[i].mesh.as_mut() {
                    m.handle_conn(now, ev);
                }
            }
        }
        self.drain(i);
    }

    /// Carries out the actions peer `i` queued.
    fn drain(&mut self, i: usize) {
        loop {
            let Some(m) = self.nodes[i].mesh.as_mut() else {
                return;
            };
            let actions = m.take_actions();
            if actions.is_empty() {
                if !self.nodes[i].topo_dirty {
                    return;
                }
                self.topology(i);
                continue;
            }
            for a in actions {
                self.act(i, a);
            }
        }
    }

    fn act(&mut self, i: usize, a: Action) {
        let now = self.now;
        match a {
            Action::Send { conn, msg } => {
                let size = msg.encode().len() as u64 + 5 + 16;
                let t = &mut self.nodes[i].traffic;
                t.messages += 1;
                t.bytes += size;
                let Some(link) = self.links.get(&conn).copied() else {
                    return;
                };
                if !self.reachable(i, link.peer)
                    || self.rng.random_bool(self.cfg.loss.clamp(0.0, 1.0))
                {
                    return;
                }
                let at = (now + self.latency()).max(link.last_at);
                if let Some(l) = self.links.get_mut(&conn) {
                    l.last_at = at;
                }
                self.schedule(
                    at,
                    link.peer,
                    Ev::Conn(ConnEvent::Msg {
                        conn: link.peer_conn,
                        msg,
                    }),
                );
            }
            Action::Close { conn, reason } => {
                if let Some(link) = self.links.remove(&conn) {
                    self.links.remove(&link.peer_conn);
                    if self.reachable(i, link.peer) {
                        let at = now + self.latency();
                        self.schedule(
                            at,
                            link.peer,
                            Ev::Conn(ConnEvent::Closed {
                                conn: link.peer_conn,
                                reason: format!("closed by the remote: {reason}"),
                            }),
                        );
                    }
                }
                if let Some(m) = self.nodes[i].mesh.as_mut() {
                    m.closed(now, conn, &reason);
                }
            }
            Action::Dial { target } => {
                let Some(&j) = self.by_addr.get(&target) else {
                    return self.dial_failed(i, now + 1, target, "no such host");
                };
                let rtt = self.latency() + self.latency();
                if !self.reachable(i, j) {
                    return self.dial_failed(i, now + 3_000, target, "connection timed out");
                }
                let Some(hello_j) = self.nodes[j].mesh.as_ref().map(|m| m.hello()) else {
                    return self.dial_failed(i, now + rtt, target, "connection refused");
                };
                let Some(hello_i) = self.nodes[i].mesh.as_ref().map(|m| m.hello()) else {
                    return;
                };
                let (ci, cj) = (self.next_conn, self.next_conn + 1);
                self.next_conn += 2;
                self.links.insert(
                    ci,
                    Link {
                        node: i,
                        peer: j,
                        peer_conn: cj,
                        last_at: 0,
                    },
                );
                self.links.insert(
                    cj,
                    Link {
                        node: j,
                        peer: i,
                        peer_conn: ci,
                        last_at: 0,
                    },
                );
                // The handshake takes about two round trips.
                let at = now + 2 * rtt;
                let (ai, aj) = (self.nodes[i].addr, self.nodes[j].addr);
                let ephemeral = SocketAddr::new(ai.ip(), 40_000 + (ci % 20_000) as u16);
                self.schedule(
                    at,
                    i,
                    Ev::Conn(ConnEvent::Up {
                        conn: ci,
                        addr: aj,
                        outbound: true,
                        target: Some(target),
                        hello: hello_j,
                    }),
                );
                self.schedule(
                    at,
                    j,
                    Ev::Conn(ConnEvent::Up {
                        conn: cj,
                        addr: ephemeral,
                        outbound: false,
                        target: None,
                        hello: hello_i,
                    }),
                );
            }
            Action::Deliver {
                channel,
                from,
                payload,
            } => {
                // Drawn only when asked for, so that other runs keep their sequence.
                let loss = self.cfg.app_loss.clamp(0.0, 1.0);
                if loss > 0.0 && self.rng.random_bool(loss) {
                    return;
                }
                self.nodes[i]
                    .app
                    .handle_message(now, channel, &from, &payload);
                self.pump(i);
            }
            Action::TopologyChanged => self.nodes[i].topo_dirty = true,
        }
    }

    /// Peer `i`'s dial of `target` fails at `at`.
    fn dial_failed(&mut self, i: usize, at: u64, target: String, reason: &str) {
        let reason = reason.to_string();
        // The simulation gives a dial no connection id before it succeeds.
        let failed = ConnEvent::Failed {
            conn: 0,
            target: Some(target),
            addr: None,
            outbound: true,
            reason,
        };
        self.schedule(at, i, Ev::Conn(failed));
    }

    /// Names of the running peers.
    pub fn alive_names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.mesh.is_some())
            .map(|n| n.name.clone())
            .collect()
    }

    /// Number of connected components among running peers (by established connections).
    pub fn components(&self) -> usize {
        let idx: HashMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let mut comp: Vec<Option<usize>> = vec![None; self.nodes.len()];
        let mut count = 0;
        for s in 0..self.nodes.len() {
            if comp[s].is_some() || self.nodes[s].mesh.is_none() {
                continue;
            }
            count += 1;
            let mut stack = vec![s];
            comp[s] = Some(count);
            while let Some(p) = stack.pop() {
                let Some(m) = &self.nodes[p].mesh else {
                    continue;
                };
                for nb in m.neighbours() {
                    if let Some(&q) = idx.get(nb.name.as_str()) {
                        if comp[q].is_none() && self.nodes[q].mesh.is_some() {
                            comp[q] = Some(count);
                            stack.push(q);
                        }
                    }
                }
            }
        }
        count
    }

    /// Connected components of peers by their group, for tests.
    pub fn groups(&self) -> BTreeMap<u32, usize> {
        let mut m = BTreeMap::new();
        for n in &self.nodes {
            *m.entry(n.group).or_default() += 1;
        }
        m
    }
}
